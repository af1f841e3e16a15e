//! The rolling verification slice (docs/reference.md#reconciliation).
//! Listing finds missing and extra entities; only a describe finds a stale
//! one, at 100 (services 10) a call. So each pass re-describes a slice of
//! the records both ECS and the store hold: the ids after where the last
//! slice stopped, in id order (wrapping round), so the ids next in line are
//! those verified longest ago. The slice's size follows the time since the
//! last one: `ceil(n * elapsed / horizon)`, so every entity is re-described
//! at least once per horizon whatever the passes' pace. A (cluster, kind)
//! never sliced before is described whole.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::pass::{get_chunks, put_chunks};
use crate::store::StateStore;

/// The number of chunks; the marks themselves in `reconcile/verified/<i>`
/// (10,000 clusters' marks are more than etcd takes in one request).
const MARKS: &str = "reconcile/verified";
const MARK_CHUNKS: &str = "reconcile/verified/";

/// Where the last slice of one (cluster, kind) stopped, and when.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Mark {
    /// The last id verified.
    pub after: String,
    /// When (milliseconds since the epoch).
    pub at_ms: i64,
}

/// Every (cluster, kind)'s mark, keyed `"<kind> <cluster ARN>"`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Marks(pub BTreeMap<String, Mark>);

impl Marks {
    pub fn key(kind: &str, cluster_arn: &str) -> String {
        format!("{kind} {cluster_arn}")
    }

    /// Unreadable or missing marks cost one full describe, nothing else.
    pub async fn load(store: &dyn StateStore, ns: &str) -> Marks {
        let chunks = match store.get_meta(&format!("{ns}{MARKS}")).await {
            Ok(Some(b)) => std::str::from_utf8(&b).ok().and_then(|s| s.parse().ok()),
            _ => None,
        };
        let Some(chunks) = chunks else {
            return Marks::default();
        };
        match get_chunks(store, &format!("{ns}{MARK_CHUNKS}"), chunks).await {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_default(),
            Err(_) => Marks::default(),
        }
    }

    pub async fn save(&self, store: &dyn StateStore, ns: &str) {
        let bytes = serde_json::to_vec(self).unwrap_or_default();
        let saved = match put_chunks(store, &format!("{ns}{MARK_CHUNKS}"), &bytes).await {
            Ok(n) => {
                let chunks = Bytes::from(n.to_string());
                store.put_meta(&format!("{ns}{MARKS}"), chunks).await
            }
            Err(e) => Err(e),
        };
        if let Err(e) = saved {
            tracing::warn!(error = %e, "verification marks not saved");
        }
    }

    /// Drops the marks of clusters that no longer exist.
    pub fn retain_clusters(&mut self, clusters: &[String]) {
        let live: std::collections::HashSet<&str> = clusters.iter().map(String::as_str).collect();
        self.0
            .retain(|k, _| k.split_once(' ').is_some_and(|(_, arn)| live.contains(arn)));
    }
}

pub fn millis(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// How many of `n` records to verify now, given the last mark.
pub fn slice_len(n: usize, mark: Option<&Mark>, now_ms: i64, horizon: Duration) -> usize {
    let Some(mark) = mark else { return n };
    if horizon.is_zero() {
        return n;
    }
    let elapsed = now_ms - mark.at_ms;
    if elapsed <= 0 {
        return 0;
    }
    // Passes left in a horizon if they keep this pace; the slice covers
    // its share of them, so an id waits at most that many passes.
    let passes = (horizon.as_millis() as i64 / elapsed).max(1) as usize;
    n.div_ceil(passes)
}

/// The `len` ids to verify: those after `after` in order, wrapping round.
/// `ids` must be sorted.
pub fn slice<'a>(ids: &'a [&'a str], after: &str, len: usize) -> Vec<&'a str> {
    let start = ids.partition_point(|id| *id <= after);
    ids[start..]
        .iter()
        .chain(&ids[..start])
        .take(len)
        .copied()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    #[tokio::test]
    async fn marks_of_ten_thousand_clusters_are_saved_in_chunks() {
        let store = crate::store::EmbeddedStore::new("/m/");
        let mut marks = Marks::default();
        for c in 0..10_000 {
            let arn = format!("arn:aws:ecs:eu-west-1:123456789012:cluster/fleet-{c:05}");
            for kind in ["tasks", "instances", "services"] {
                let mark = Mark {
                    after: format!("{c:032x}"),
                    at_ms: c,
                };
                marks.0.insert(Marks::key(kind, &arn), mark);
            }
        }
        marks.save(&store, "").await;
        let chunks = store
            .get_meta(MARKS)
            .await
            .ok()
            .flatten()
            .unwrap_or_default();
        let chunks: usize = std::str::from_utf8(&chunks)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        // 30,000 marks of about 130 bytes: several chunks of 512 KiB.
        assert!(chunks > 1, "{chunks} chunks");
        let loaded = Marks::load(&store, "").await;
        assert_eq!(loaded.0, marks.0);
    }

    #[test]
    fn the_slice_follows_the_time_since_the_last_one() {
        let mark = |at_ms| Mark {
            after: String::new(),
            at_ms,
        };
        let now = 10_000_000;
        // Never sliced: everything; a zero horizon: everything.
        assert_eq!(slice_len(1000, None, now, HOUR), 1000);
        assert_eq!(slice_len(1000, Some(&mark(now)), now, Duration::ZERO), 1000);
        // Five minutes of an hour: a twelfth, rounded up.
        assert_eq!(slice_len(1000, Some(&mark(now - 300_000)), now, HOUR), 84);
        assert_eq!(slice_len(7, Some(&mark(now - 300_000)), now, HOUR), 1);
        // Seven minutes: 8 such passes fit in an hour, so an eighth.
        assert_eq!(slice_len(1000, Some(&mark(now - 420_000)), now, HOUR), 125);
        // More than a horizon since: everything, never more.
        assert_eq!(
            slice_len(1000, Some(&mark(now - 7_200_000)), now, HOUR),
            1000
        );
        // A clock that went back: nothing this time.
        assert_eq!(slice_len(1000, Some(&mark(now + 5)), now, HOUR), 0);
        assert_eq!(slice_len(1000, Some(&mark(now)), now, HOUR), 0);
    }

    #[test]
    fn slices_go_round_the_ids_in_order() {
        let ids = ["a", "c", "e", "g", "i"];
        assert_eq!(slice(&ids, "", 2), ["a", "c"]);
        assert_eq!(slice(&ids, "c", 2), ["e", "g"]);
        assert_eq!(slice(&ids, "d", 2), ["e", "g"], "a mark between ids");
        assert_eq!(slice(&ids, "g", 3), ["i", "a", "c"], "wraps round");
        assert_eq!(slice(&ids, "i", 9), ["a", "c", "e", "g", "i"], "each once");
        assert!(slice(&ids, "a", 0).is_empty());
    }

    #[test]
    fn every_id_is_verified_within_a_horizon_of_passes() {
        // 1,000 ids, a pass every 7 minutes: no id waits more than an hour
        // between two verifications.
        let ids: Vec<String> = (0..1000).map(|i| format!("{i:04}")).collect();
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        // Everything was described at 0 (the first pass), the mark at the end.
        let mut mark = Mark {
            after: "0999".into(),
            at_ms: 0,
        };
        let mut last_seen = vec![0i64; ids.len()];
        for pass in 1..40i64 {
            let now = pass * 420_000;
            let n = slice_len(ids.len(), Some(&mark), now, HOUR);
            let s = slice(&ids, &mark.after, n);
            for id in &s {
                let i: usize = id.parse().unwrap_or(0);
                last_seen[i] = now;
            }
            if let Some(last) = s.last() {
                mark.after = last.to_string();
            }
            mark.at_ms = now;
            let oldest = last_seen.iter().min().copied().unwrap_or(0);
            assert!(
                now - oldest < 3_600_000,
                "pass {pass}: waited {}",
                now - oldest
            );
        }
    }
}
