//! History compaction: (time, revision) checkpoints kept in the store, and
//! history older than the retention compacted away (docs/reference.md#state, docs/reference.md#reconciliation).
//!
//! Checkpoints live in the store, not in memory, because each Lambda
//! invocation may run in a fresh instance.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::store::{StateStore, StoreResult};

const CHECKPOINTS: &str = "checkpoints";
/// Checkpoints kept at most (a run every 5 minutes for a day is 288).
const MAX_CHECKPOINTS: usize = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Unix seconds.
    pub at: u64,
    pub revision: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CompactionReport {
    /// The revision history was compacted to in this run, if any.
    pub compacted_to: Option<i64>,
    pub checkpoints: usize,
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Records a checkpoint at the current revision, then compacts to the newest
/// checkpoint at least `retention` old, so at least `retention` of history stays.
pub async fn checkpoint_and_compact(
    store: &dyn StateStore,
    retention: Duration,
    now: SystemTime,
) -> StoreResult<CompactionReport> {
    let mut cps: Vec<Checkpoint> = match store.get_meta(CHECKPOINTS).await? {
        // Unreadable bookkeeping is rebuilt rather than blocking compaction.
        Some(b) => serde_json::from_slice(&b).unwrap_or_default(),
        None => Vec::new(),
    };
    let revision = store.current_revision().await?;
    let now_s = unix(now);
    cps.push(Checkpoint {
        at: now_s,
        revision,
    });
    let cutoff = now_s.saturating_sub(retention.as_secs());
    let target = cps
        .iter()
        .filter(|c| c.at <= cutoff)
        .map(|c| c.revision)
        .max();
    let mut compacted_to = None;
    if let Some(t) = target {
        if t > store.compacted_revision().await? {
            store.compact(t).await?;
            compacted_to = Some(t);
            // Where every process finds it (GET /v1/status, 410 answers).
            let meta = Bytes::from(t.to_string());
            store.put_meta(crate::store::COMPACTED_META, meta).await?;
        }
        // The target stays as the oldest checkpoint; older ones are spent.
        cps.retain(|c| c.revision >= t);
    }
    if cps.len() > MAX_CHECKPOINTS {
        let excess = cps.len() - MAX_CHECKPOINTS;
        cps.drain(..excess);
    }
    let checkpoints = cps.len();
    store
        .put_meta(
            CHECKPOINTS,
            Bytes::from(serde_json::to_vec(&cps).unwrap_or_default()),
        )
        .await?;
    Ok(CompactionReport {
        compacted_to,
        checkpoints,
    })
}
