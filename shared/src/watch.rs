//! Long-poll watching (docs/reference.md#watching): every change after `since` that matches the
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
    /// A `since` ahead of the store: a cursor of another store (rebuilt
    /// or restored), never a revision this one will reach meaningfully.
    #[error("'since' {since} is ahead of the current revision {current}")]
    FutureSince {
        since: i64,
        oldest: i64,
        current: i64,
    },
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
    /// Where the answer starts (exclusive): the request's `since`, or the
    /// revision a poll without one started at.
    pub since: i64,
    pub changes: Vec<Change>,
    /// Everything matching up to here has been delivered: the next `since`.
    pub revision: i64,
    pub more: bool,
}

/// What one change means to a filtered watcher, if anything.
fn translate(filters: &Filters, ev: &WatchEvent) -> Option<Change> {
    let before = || ev.prev.as_ref().filter(|p| filters.matches(p));
    let change = |kind, record: &StoredRecord| Change {
        kind,
        revision: ev.revision,
        record: record.clone(),
    };
    match (ev.event_type, &ev.record) {
        (EventType::Put, Some(new)) if filters.matches(new) => Some(change(ChangeKind::Put, new)),
        // Stopped matching: gone from this watcher's view, as it is now.
        (EventType::Put, Some(new)) => before().map(|_| change(ChangeKind::Delete, new)),
        _ => before().map(|last| change(ChangeKind::Delete, last)),
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
        Some(r) => {
            let compacted = store.compacted_revision().await?;
            if r > current {
                return Err(WatchError::FutureSince {
                    since: r,
                    oldest: (compacted - 1).max(0),
                    current,
                });
            }
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
    let since = match req.since {
        None => store.recent_revision().await?,
        Some(since) if store.has_revision(since).await? => since,
        Some(since) => {
            // Read, not assumed: the store may have moved on since.
            let current = store.current_revision().await?;
            if since > current {
                let oldest = (store.compacted_revision().await? - 1).max(0);
                return Err(WatchError::FutureSince {
                    since,
                    oldest,
                    current,
                });
            }
            since
        }
    };
    let mut watcher = store.watch(req.filters.kind, since + 1).await?;
    let deadline = Instant::now() + req.wait;
    let mut out = PollOutput {
        since,
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
                let target = store.recent_revision().await?;
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
            let before = out.changes.len();
            let mut size = 0;
            for c in events[i..end]
                .iter()
                .filter_map(|ev| translate(&req.filters, ev))
            {
                size += item_size(&c.record)? + EVENT_OVERHEAD;
                out.changes.push(c);
            }
            if before > 0 && bytes + size > MAX_ITEMS_BYTES {
                out.changes.truncate(before);
                out.more = true;
                return Ok(out);
            }
            bytes += size;
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
#[path = "watch_tests.rs"]
mod tests;
