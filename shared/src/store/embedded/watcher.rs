//! Watches over the embedded store's change log.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tokio::sync::watch;

use super::mvcc::{Change, Inner, Live};
use super::{record, MAX_WATCH_BATCH};
use crate::model::Kind;
use crate::store::{EventType, Keyspace, StoreError, StoreResult, WatchBatch, WatchEvent, Watcher};

pub(super) struct EmbeddedWatcher {
    pub ks: Keyspace,
    pub inner: Arc<Mutex<Inner>>,
    pub rx: watch::Receiver<i64>,
    /// The next revision to deliver.
    pub next: i64,
    pub kind: Kind,
    pub progress_requested: bool,
}

impl EmbeddedWatcher {
    /// The watch event a logged change stands for.
    fn event(&self, c: &Change) -> Option<WatchEvent> {
        let key = self.ks.parse(&c.key)?;
        let record = |v: Live| record(key.clone(), c.key.to_string(), v);
        Some(WatchEvent {
            event_type: if c.put.is_some() {
                EventType::Put
            } else {
                EventType::Delete
            },
            revision: c.revision,
            record: c.put.clone().map(record),
            prev: c.prev.clone().map(record),
        })
    }
}

#[async_trait]
impl Watcher for EmbeddedWatcher {
    async fn next(&mut self) -> StoreResult<WatchBatch> {
        loop {
            let batch = {
                let guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
                if self.next < guard.compacted {
                    return Err(StoreError::Compacted {
                        requested: self.next,
                        oldest: guard.compacted,
                        current: guard.revision,
                    });
                }
                let start = guard.log.partition_point(|e| e.revision < self.next);
                let mut events: Vec<WatchEvent> = Vec::new();
                let mut end = guard.revision + 1;
                for e in guard.log.range(start..) {
                    // Bounded batches, but never split one revision.
                    if events.len() >= MAX_WATCH_BATCH
                        && events.last().is_some_and(|l| l.revision != e.revision)
                    {
                        end = e.revision;
                        break;
                    }
                    if e.kind == self.kind {
                        events.extend(self.event(e));
                    }
                }
                self.next = self.next.max(end);
                WatchBatch {
                    events,
                    progress: self.next - 1,
                }
            };
            if !batch.events.is_empty() || self.progress_requested {
                self.progress_requested = false;
                return Ok(batch);
            }
            if self.rx.changed().await.is_err() {
                return Err(StoreError::Unavailable("store closed".into()));
            }
        }
    }

    async fn request_progress(&mut self) -> StoreResult<()> {
        self.progress_requested = true;
        Ok(())
    }
}
