//! etcd watches: one stream over the service's keys, filtered to a kind.

use async_trait::async_trait;

use super::{map_err, record_from_kv, EtcdStore};
use crate::model::Kind;
use crate::store::{
    EventType, StateStore, StoreError, StoreResult, WatchBatch, WatchEvent, Watcher,
};

pub(super) struct EtcdWatcher {
    pub stream: etcd_client::WatchStream,
    pub store: EtcdStore,
    pub kind: Kind,
    pub from_revision: i64,
    /// Highest revision seen on the watch (of any key it covers).
    pub progress: i64,
    /// A requested progress point not yet reached.
    pub target: Option<i64>,
}

#[async_trait]
impl Watcher for EtcdWatcher {
    async fn next(&mut self) -> StoreResult<WatchBatch> {
        loop {
            if self.target.is_some_and(|t| self.progress >= t) {
                self.target = None;
                return Ok(WatchBatch {
                    events: Vec::new(),
                    progress: self.progress,
                });
            }
            let resp = match self.stream.message().await {
                Ok(Some(resp)) => resp,
                Ok(None) => return Err(StoreError::Unavailable("watch closed by etcd".into())),
                Err(e) => return Err(map_err(e)),
            };
            if resp.compact_revision() > 0 {
                return Err(self
                    .store
                    .compacted_error(self.from_revision.max(self.progress + 1))
                    .await);
            }
            if resp.canceled() {
                let reason = resp.cancel_reason().to_string();
                return Err(StoreError::Unavailable(format!("watch canceled: {reason}")));
            }
            let ks = &self.store.ks;
            let mut events = Vec::with_capacity(resp.events().len());
            for ev in resp.events() {
                let Some(kv) = ev.kv() else { continue };
                self.progress = self.progress.max(kv.mod_revision());
                let Some(key) = kv.key_str().ok().and_then(|k| ks.parse(k)) else {
                    continue;
                };
                if key.kind != self.kind || kv.key_str().is_ok_and(|k| k != ks.primary(&key)) {
                    continue;
                }
                let prev = ev.prev_kv().map(|p| record_from_kv(ks, p)).transpose()?;
                let (event_type, record) = match ev.event_type() {
                    etcd_client::EventType::Put => (EventType::Put, Some(record_from_kv(ks, kv)?)),
                    etcd_client::EventType::Delete => (EventType::Delete, None),
                };
                events.push(WatchEvent {
                    event_type,
                    revision: kv.mod_revision(),
                    key,
                    record,
                    prev,
                });
            }
            if !events.is_empty() {
                return Ok(WatchBatch {
                    events,
                    progress: self.progress,
                });
            }
        }
    }

    async fn request_progress(&mut self) -> StoreResult<()> {
        // Reached once an event at or past the current revision arrives
        // (the caller bounds the wait when the last write was elsewhere).
        self.target = Some(self.store.current_revision().await?);
        Ok(())
    }
}
