//! etcd watches: one stream over the service's keys, filtered to a kind.
//! A stream that breaks (its member died or lost its leader) is opened
//! again on a live member from the revision after the last one seen, so
//! the watcher sees no gap and no repeat.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use etcd_client::{Client, GetOptions, WatchOptions};

use super::MAX_MESSAGE;
use super::{map_err, members::is_member_failure, prefix_end, record_from_kv, EtcdStore};
use crate::model::Kind;
use crate::store::{
    EventType, StateStore, StoreError, StoreResult, WatchBatch, WatchEvent, Watcher,
};

/// How long a broken watch keeps trying to reopen before it reports the
/// store unavailable (an election's worth).
const REOPEN_WINDOW: Duration = Duration::from_secs(5);

impl EtcdStore {
    /// A watch stream from `from_revision` on a live member, confirmed by
    /// etcd's first answer.
    pub(super) async fn open_stream(
        &self,
        from_revision: i64,
    ) -> StoreResult<etcd_client::WatchStream> {
        // etcd reports a compacted start revision only some time after the
        // watch is created (and may send progress before that), so check it
        // first: a read at a revision fails exactly when it is compacted.
        let probe = GetOptions::new()
            .with_count_only()
            .with_revision(from_revision.max(1));
        match self
            .get_kv(self.ks.meta("revision-probe"), Some(probe))
            .await
        {
            Ok(_) => {}
            Err(e) => match map_err(e) {
                StoreError::Compacted { .. } => {
                    return Err(self.compacted_error(from_revision).await)
                }
                // Ahead of the store: nothing compacted there.
                StoreError::Unavailable(m) if m.contains("future revision") => {}
                other => return Err(other),
            },
        }
        // Watch every key after the index range (both kinds' records and the
        // service's bookkeeping), not only this kind's: events come in
        // revision order, so any event at or past a revision proves that
        // everything before it was delivered. etcd 3.4's progress
        // notifications can overtake pending events, so they are not used.
        let first_kind = Kind::ALL.into_iter().min_by_key(|k| k.plural());
        let start = self.ks.kind_prefix(first_kind.unwrap_or(Kind::Instance));
        let opts = WatchOptions::new()
            .with_range(prefix_end(self.ks.prefix()))
            .with_start_revision(from_revision)
            .with_prev_key();
        let open = |c: Client| {
            let (start, opts) = (start.clone(), opts.clone());
            async move {
                let mut w = c.watch_client().max_decoding_message_size(MAX_MESSAGE);
                let mut stream = w.watch(start, Some(opts)).await?;
                let first = stream.message().await?;
                Ok((stream, first))
            }
        };
        let (stream, first) = self.members.call(open).await.map_err(map_err)?;
        // The first answer confirms the watch, or cancels it as compacted.
        match first {
            Some(resp) if resp.compact_revision() > 0 || resp.canceled() => {
                Err(self.compacted_error(from_revision).await)
            }
            Some(_) => Ok(stream),
            None => Err(StoreError::Unavailable("watch closed by etcd".into())),
        }
    }
}

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

impl EtcdWatcher {
    /// Opens the stream again after the last revision seen: everything up
    /// to `progress` was delivered, so nothing is lost or repeated.
    async fn reopen(&mut self, why: &str) -> StoreResult<()> {
        let from = self.from_revision.max(self.progress + 1);
        tracing::warn!(
            reason = why,
            from_revision = from,
            "etcd watch broke; reopening"
        );
        let deadline = Instant::now() + REOPEN_WINDOW;
        loop {
            match self.store.open_stream(from).await {
                Ok(stream) => {
                    self.stream = stream;
                    return Ok(());
                }
                Err(StoreError::Unavailable(m)) if Instant::now() < deadline => {
                    tracing::debug!(error = %m, "watch not reopened yet");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }
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
                Ok(None) => {
                    self.reopen("watch closed by etcd").await?;
                    continue;
                }
                Err(e) if is_member_failure(&e) => {
                    self.reopen(&e.to_string()).await?;
                    continue;
                }
                Err(e) => return Err(map_err(e)),
            };
            if resp.compact_revision() > 0 {
                return Err(self
                    .store
                    .compacted_error(self.from_revision.max(self.progress + 1))
                    .await);
            }
            if resp.canceled() {
                // A member that lost its leader cancels its watches.
                let reason = format!("watch canceled: {}", resp.cancel_reason());
                self.reopen(&reason).await?;
                continue;
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
