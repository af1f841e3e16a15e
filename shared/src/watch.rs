//! Long-poll watching (SPEC §6): every change after `since` that matches the
//! filters, whole revisions at a time, answered as soon as there is one; with
//! nothing to say by the end of `wait`, a bookmark at the store's revision.
//!
//! Filters apply before and after each change, as Kubernetes watch caches do:
//! an entity that stops matching arrives as a DELETE carrying its new state,
//! one that starts matching as a PUT, so a filtered client's rebuilt state
//! always equals the filtered list.

use std::time::Duration;

use tokio::time::{timeout_at, Instant};

use crate::filter::Filters;
use crate::limits::{item_size, EVENT_OVERHEAD, MAX_ITEMS_BYTES};
use crate::store::{EventType, StateStore, StoreError, StoredRecord, WatchEvent};

/// After `wait`, how long to wait for the store to confirm progress.
const PROGRESS_GRACE: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("'since' {since} is ahead of the current revision {current}")]
    FutureSince { since: i64, current: i64 },
    #[error("'ack' {ack} is ahead of the current revision {current}")]
    FutureAck { ack: i64, current: i64 },
    #[error("revision {since} has been compacted")]
    Expired {
        since: i64,
        oldest: i64,
        current: i64,
    },
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for WatchError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Compacted {
                requested,
                oldest,
                current,
            } => WatchError::Expired {
                since: requested - 1,
                // `since` is exclusive: the oldest one served is one below
                // the oldest readable revision.
                oldest: (oldest - 1).max(0),
                current,
            },
            other => WatchError::Store(other),
        }
    }
}

#[derive(Debug, Clone)]
pub struct PollRequest {
    pub filters: Filters,
    /// Exclusive; None starts at the current revision.
    pub since: Option<i64>,
    pub wait: Duration,
    pub limit: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    Put,
    Delete,
}

/// One change as a filtered watcher sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub kind: ChangeKind,
    pub revision: i64,
    /// The entity now; for a DELETE, as last known (or as it is now, when
    /// it only stopped matching).
    pub record: StoredRecord,
}

#[derive(Debug, Default)]
pub struct PollOutput {
    pub changes: Vec<Change>,
    /// Everything matching up to here has been delivered: the next `since`.
    pub revision: i64,
    pub more: bool,
}

/// What one change means to a filtered watcher, if anything.
fn translate(filters: &Filters, ev: &WatchEvent) -> Option<Change> {
    let before = ev.prev.as_ref().filter(|p| filters.matches(p));
    let change = |kind, record: &StoredRecord| Change {
        kind,
        revision: ev.revision,
        record: record.clone(),
    };
    match (ev.event_type, &ev.record) {
        (EventType::Put, Some(new)) if filters.matches(new) => Some(change(ChangeKind::Put, new)),
        // Stopped matching: gone from this watcher's view, as it is now.
        (EventType::Put, Some(new)) => before.map(|_| change(ChangeKind::Delete, new)),
        _ => before.map(|last| change(ChangeKind::Delete, last)),
    }
}

/// Where a new subscription starts: `since` (not ahead of the store, not
/// compacted away), else the current revision.
pub async fn subscription_start(
    store: &dyn StateStore,
    since: Option<i64>,
) -> Result<i64, WatchError> {
    let current = store.current_revision().await?;
    match since {
        Some(r) if r > current => Err(WatchError::FutureSince { since: r, current }),
        Some(r) => {
            let compacted = store.compacted_revision().await?;
            if r + 1 < compacted {
                return Err(WatchError::Expired {
                    since: r,
                    oldest: compacted - 1,
                    current,
                });
            }
            Ok(r)
        }
        None => Ok(current),
    }
}

/// An acknowledgement may not be ahead of the store.
pub async fn check_ack(store: &dyn StateStore, ack: i64) -> Result<(), WatchError> {
    let current = store.current_revision().await?;
    if ack > current {
        return Err(WatchError::FutureAck { ack, current });
    }
    Ok(())
}

pub async fn poll(store: &dyn StateStore, req: &PollRequest) -> Result<PollOutput, WatchError> {
    let current = store.current_revision().await?;
    let since = req.since.unwrap_or(current);
    if since > current {
        return Err(WatchError::FutureSince { since, current });
    }
    let mut watcher = store.watch(req.filters.kind, since + 1).await?;
    let deadline = Instant::now() + req.wait;
    let mut out = PollOutput {
        revision: since,
        ..Default::default()
    };
    let mut bytes = 0usize;
    // The store revision a bookmark must reach, once `wait` is over.
    let mut bookmark_target: Option<(i64, Instant)> = None;
    loop {
        let until = bookmark_target.map_or(deadline, |(_, t)| t);
        let batch = match timeout_at(until, watcher.next()).await {
            Ok(b) => b?,
            Err(_) if bookmark_target.is_none() => {
                let target = store.current_revision().await?;
                watcher.request_progress().await?;
                bookmark_target = Some((target, Instant::now() + PROGRESS_GRACE));
                continue;
            }
            // The store did not confirm progress in time: answer with what
            // is known to be complete (never a revision not yet seen).
            Err(_) => return Ok(out),
        };
        // Whole revisions only; stop at a revision boundary past `limit`,
        // or before a revision that would take the answer over the byte cap
        // (a lone revision larger than the cap is still sent whole).
        let mut i = 0;
        let events = &batch.events;
        while i < events.len() {
            let rev = events[i].revision;
            let end = events[i..]
                .iter()
                .position(|e| e.revision != rev)
                .map_or(events.len(), |n| i + n);
            if out.changes.len() >= req.limit && !out.changes.is_empty() {
                out.more = true;
                return Ok(out);
            }
            let these: Vec<Change> = events[i..end]
                .iter()
                .filter_map(|ev| translate(&req.filters, ev))
                .collect();
            let mut size = 0;
            for c in &these {
                size += item_size(&c.record)? + EVENT_OVERHEAD;
            }
            if !out.changes.is_empty() && bytes + size > MAX_ITEMS_BYTES {
                out.more = true;
                return Ok(out);
            }
            bytes += size;
            out.changes.extend(these);
            out.revision = rev;
            i = end;
        }
        out.revision = out.revision.max(batch.progress);
        if !out.changes.is_empty() {
            return Ok(out);
        }
        if let Some((target, _)) = bookmark_target {
            if out.revision >= target {
                return Ok(out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Kind;
    use crate::store::{encode_record, ClusterScope, EmbeddedStore, Upsert};
    use crate::testing::{entity, task};

    fn record(id: &str, status: &str, version: u64, rev: i64) -> StoredRecord {
        let e = entity(Kind::Task, &task("c1", id, status, version));
        let value = encode_record(&Upsert::event(&e));
        StoredRecord::new(e.key, "k".into(), rev, 1, value)
    }

    fn running() -> Filters {
        Filters {
            status: Some("RUNNING"),
            ..Filters::all(Kind::Task)
        }
    }

    fn put(prev: Option<StoredRecord>, new: StoredRecord) -> WatchEvent {
        WatchEvent {
            event_type: EventType::Put,
            revision: new.mod_revision,
            key: new.key.clone(),
            record: Some(new),
            prev,
        }
    }

    fn delete(prev: StoredRecord, revision: i64) -> WatchEvent {
        WatchEvent {
            event_type: EventType::Delete,
            revision,
            key: prev.key.clone(),
            record: None,
            prev: Some(prev),
        }
    }

    #[test]
    fn a_put_that_matches_is_a_put() {
        let c = translate(&running(), &put(None, record("a", "RUNNING", 1, 5))).unwrap();
        assert_eq!((c.kind, c.revision), (ChangeKind::Put, 5));
    }

    #[test]
    fn starting_to_match_is_a_put() {
        let before = record("a", "PENDING", 1, 4);
        let c = translate(&running(), &put(Some(before), record("a", "RUNNING", 2, 5))).unwrap();
        assert_eq!(c.kind, ChangeKind::Put);
    }

    #[test]
    fn stopping_to_match_is_a_delete_carrying_the_new_state() {
        let before = record("a", "RUNNING", 1, 4);
        let c = translate(&running(), &put(Some(before), record("a", "STOPPED", 2, 5))).unwrap();
        assert_eq!(c.kind, ChangeKind::Delete);
        assert_eq!(c.record.meta().unwrap().status, "STOPPED");
    }

    #[test]
    fn changes_outside_the_filter_are_not_seen() {
        let before = record("a", "PENDING", 1, 4);
        assert!(translate(&running(), &put(Some(before), record("a", "STOPPED", 2, 5))).is_none());
        assert!(translate(&running(), &put(None, record("b", "STOPPED", 1, 6))).is_none());
        assert!(translate(&running(), &delete(record("c", "STOPPED", 1, 3), 7)).is_none());
    }

    #[test]
    fn a_delete_carries_the_last_known_state() {
        let c = translate(&running(), &delete(record("a", "RUNNING", 3, 4), 9)).unwrap();
        assert_eq!((c.kind, c.revision), (ChangeKind::Delete, 9));
        assert_eq!(c.record.meta().unwrap().ecs_version, 3);
    }

    #[test]
    fn other_clusters_and_kinds_are_filtered_out() {
        let f = Filters {
            cluster: ClusterScope::Named("other".into()),
            ..Filters::all(Kind::Task)
        };
        assert!(translate(&f, &put(None, record("a", "RUNNING", 1, 5))).is_none());
        let f = Filters::all(Kind::Instance);
        assert!(translate(&f, &put(None, record("a", "RUNNING", 1, 5))).is_none());
    }

    #[test]
    fn a_deployment_that_completes_leaves_the_rolling_view_as_a_delete() {
        let rec = |rollouts: &[&str], updated: &str, rev: i64| {
            let v = crate::testing::service("c1", "web", "ACTIVE", rollouts, updated);
            let e = entity(Kind::Service, &v);
            StoredRecord::new(
                e.key.clone(),
                "k".into(),
                rev,
                1,
                encode_record(&Upsert::event(&e)),
            )
        };
        let rolling = Filters {
            rollout_state: Some("IN_PROGRESS"),
            ..Filters::all(Kind::Service)
        };
        let started = rec(&["IN_PROGRESS", "COMPLETED"], "2026-11-20T10:00:00.000Z", 5);
        let steady = rec(&["COMPLETED"], "2026-11-20T09:00:00.000Z", 4);
        let c = translate(&rolling, &put(Some(steady.clone()), started.clone())).unwrap();
        assert_eq!(c.kind, ChangeKind::Put);
        let done = rec(&["COMPLETED"], "2026-11-20T10:05:00.000Z", 6);
        let c = translate(&rolling, &put(Some(started), done.clone())).unwrap();
        assert_eq!((c.kind, c.revision), (ChangeKind::Delete, 6));
        let failed = Filters {
            rollout_state: Some("FAILED"),
            ..Filters::all(Kind::Service)
        };
        assert!(translate(&failed, &put(Some(steady), done)).is_none());
    }

    async fn write(store: &EmbeddedStore, id: &str, status: &str, version: u64) -> i64 {
        let e = entity(Kind::Task, &task("c1", id, status, version));
        match store.upsert_if_newer(Upsert::event(&e)).await.unwrap() {
            crate::store::UpsertOutcome::Inserted { revision }
            | crate::store::UpsertOutcome::Updated { revision } => revision,
            other => panic!("{other:?}"),
        }
    }

    fn req(since: Option<i64>, limit: usize) -> PollRequest {
        PollRequest {
            filters: Filters::all(Kind::Task),
            since,
            wait: Duration::ZERO,
            limit,
        }
    }

    #[tokio::test]
    async fn answers_stop_at_revision_boundaries_past_the_limit() {
        let store = EmbeddedStore::new("/t/");
        let start = store.current_revision().await.unwrap();
        let r1 = write(&store, "a", "RUNNING", 1).await;
        let r2 = write(&store, "b", "RUNNING", 1).await;
        let out = poll(&store, &req(Some(start), 1)).await.unwrap();
        assert_eq!((out.changes.len(), out.revision, out.more), (1, r1, true));
        let out = poll(&store, &req(Some(out.revision), 1)).await.unwrap();
        assert_eq!(out.changes.len(), 1);
        assert_eq!(out.changes[0].revision, r2);
        assert_eq!(out.revision, r2);
    }

    #[tokio::test]
    async fn nothing_to_say_is_a_bookmark_at_the_current_revision() {
        let store = EmbeddedStore::new("/t/");
        let r = write(&store, "a", "RUNNING", 1).await;
        let out = poll(&store, &req(Some(r), 10)).await.unwrap();
        assert!(out.changes.is_empty());
        assert_eq!((out.revision, out.more), (r, false));
        let out = poll(&store, &req(None, 10)).await.unwrap();
        assert_eq!(out.revision, r, "no since: from now");
    }

    #[tokio::test]
    async fn future_and_compacted_cursors_are_refused() {
        let store = EmbeddedStore::new("/t/");
        write(&store, "a", "RUNNING", 1).await;
        let r = write(&store, "a", "STOPPED", 2).await;
        assert!(matches!(
            poll(&store, &req(Some(r + 5), 10)).await,
            Err(WatchError::FutureSince { .. })
        ));
        store.compact(r).await.unwrap();
        assert!(matches!(
            poll(&store, &req(Some(1), 10)).await,
            Err(WatchError::Expired { .. })
        ));
        assert!(matches!(
            subscription_start(&store, Some(1)).await,
            Err(WatchError::Expired { .. })
        ));
        assert!(matches!(
            subscription_start(&store, Some(r + 1)).await,
            Err(WatchError::FutureSince { .. })
        ));
        assert_eq!(subscription_start(&store, None).await.unwrap(), r);
        assert_eq!(
            subscription_start(&store, Some(r - 1)).await.unwrap(),
            r - 1
        );
        assert!(check_ack(&store, r).await.is_ok());
        assert!(matches!(
            check_ack(&store, r + 1).await,
            Err(WatchError::FutureAck { .. })
        ));
    }
}
