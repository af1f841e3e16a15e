//! One store watch per kind, shared by every long poll of a process.
//!
//! Without it each long poll opens its own etcd watch (plus a probe read), and
//! with many watchers all of them re-open at once after every change. Here one
//! pump per kind keeps a window of recent changes in memory; a watch starting
//! inside the window is served from it, one starting before it (a client
//! catching up on history) gets its own store watch, as before. Meant for a
//! long-running process (server mode); a Lambda serves one request at a time
//! and is frozen between them, so it watches the store directly.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::{watch, Notify};

use super::shared_read::SharedRead;
use super::{
    EntityKey, KeyPage, ListPage, ListRequest, StateStore, StoreError, StoreResult, StoredRecord,
    Upsert, UpsertOutcome, WatchBatch, WatchEvent, WatchStream, Watcher,
};
use crate::model::Kind;

/// Changes kept per kind; a watcher further behind gets its own store watch.
const WINDOW: usize = 1024;

pub struct SharedWatchStore {
    inner: Arc<dyn StateStore>,
    tasks: Arc<Hub>,
    instances: Arc<Hub>,
    services: Arc<Hub>,
    /// The identity read under way, which requests arriving meanwhile share.
    identity_read: SharedRead<String>,
    /// The revision read under way (`recent_revision`), shared likewise.
    revision_read: Arc<SharedRead<i64>>,
}

/// The store's revision through `shared`.
async fn recent(shared: &SharedRead<i64>, store: &Arc<dyn StateStore>) -> StoreResult<i64> {
    shared
        .read(|| {
            let store = store.clone();
            async move { store.current_revision().await }
        })
        .await
}

impl SharedWatchStore {
    pub fn new(inner: Arc<dyn StateStore>) -> SharedWatchStore {
        let revision_read = Arc::new(SharedRead::new());
        SharedWatchStore {
            tasks: Hub::new(inner.clone(), Kind::Task, revision_read.clone()),
            instances: Hub::new(inner.clone(), Kind::Instance, revision_read.clone()),
            services: Hub::new(inner.clone(), Kind::Service, revision_read.clone()),
            inner,
            identity_read: SharedRead::new(),
            revision_read,
        }
    }

    fn hub(&self, kind: Kind) -> &Arc<Hub> {
        match kind {
            Kind::Task => &self.tasks,
            Kind::Instance => &self.instances,
            Kind::Service => &self.services,
        }
    }
}

struct Hub {
    kind: Kind,
    inner: Arc<dyn StateStore>,
    window: Mutex<Option<Window>>,
    /// Serializes (re)starts of the pump.
    starting: tokio::sync::Mutex<()>,
    /// Bumped after every change to the window.
    changed: watch::Sender<u64>,
    /// Asks the pump for a progress batch from its store watch.
    progress_wanted: Arc<Notify>,
    pump: Mutex<Option<tokio::task::AbortHandle>>,
    /// The store's shared revision read (bookmark targets).
    revision_read: Arc<SharedRead<i64>>,
}

impl Drop for Hub {
    fn drop(&mut self) {
        // The pump would otherwise hold its store watch until the store fails.
        if let Some(p) = self.pump.get_mut().ok().and_then(|p| p.take()) {
            p.abort();
        }
    }
}

/// Every change of the kind with a revision in `start..=progress`, in order.
struct Window {
    start: i64,
    progress: i64,
    events: VecDeque<WatchEvent>,
    /// The pump stopped with this error; the next watch restarts it.
    failed: Option<StoreError>,
}

impl Window {
    fn append(&mut self, batch: WatchBatch) {
        self.events.extend(batch.events);
        self.progress = self.progress.max(batch.progress);
        // Drop whole revisions from the front.
        while self.events.len() > WINDOW {
            let Some(first) = self.events.pop_front() else {
                break;
            };
            while self
                .events
                .front()
                .is_some_and(|e| e.revision == first.revision)
            {
                self.events.pop_front();
            }
            self.start = first.revision + 1;
        }
    }

    /// History before `revision` is gone from the store: no longer served.
    fn compacted(&mut self, revision: i64) {
        while self.events.front().is_some_and(|e| e.revision < revision) {
            self.events.pop_front();
        }
        self.start = self.start.max(revision);
    }
}

impl Hub {
    fn new(
        inner: Arc<dyn StateStore>,
        kind: Kind,
        revision_read: Arc<SharedRead<i64>>,
    ) -> Arc<Hub> {
        Arc::new(Hub {
            kind,
            inner,
            window: Mutex::new(None),
            starting: tokio::sync::Mutex::new(()),
            changed: watch::Sender::new(0),
            progress_wanted: Arc::new(Notify::new()),
            pump: Mutex::new(None),
            revision_read,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Option<Window>> {
        // The window is consistent after every statement: a panic elsewhere
        // cannot leave it half-updated.
        self.window.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn running(&self) -> bool {
        self.lock().as_ref().is_some_and(|w| w.failed.is_none())
    }

    /// Starts the pump if it is not running (first use, or after a failure).
    async fn ensure_running(self: &Arc<Self>) -> StoreResult<()> {
        if self.running() {
            return Ok(());
        }
        let _guard = self.starting.lock().await;
        if self.running() {
            return Ok(());
        }
        let current = self.inner.current_revision().await?;
        let watcher = self.inner.watch(self.kind, current + 1).await?;
        *self.lock() = Some(Window {
            start: current + 1,
            progress: current,
            events: VecDeque::new(),
            failed: None,
        });
        self.changed.send_modify(|g| *g += 1);
        let task = tokio::spawn(pump(
            Arc::downgrade(self),
            watcher,
            self.progress_wanted.clone(),
        ));
        let old = self
            .pump
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .replace(task.abort_handle());
        if let Some(old) = old {
            old.abort();
        }
        Ok(())
    }
}

async fn pump(hub: std::sync::Weak<Hub>, mut watcher: WatchStream, progress_wanted: Arc<Notify>) {
    loop {
        let batch = tokio::select! {
            biased;
            _ = progress_wanted.notified() => watcher.request_progress().await.map(|_| None),
            b = watcher.next() => b.map(Some),
        };
        // The store is gone: so is everyone who could want its changes.
        let Some(hub) = hub.upgrade() else { return };
        let failed = batch.is_err();
        {
            let mut window = hub.lock();
            let Some(w) = window.as_mut() else { return };
            match batch {
                Ok(Some(b)) => w.append(b),
                Ok(None) => continue,
                Err(e) => w.failed = Some(e),
            }
        }
        hub.changed.send_modify(|g| *g += 1);
        if failed {
            return;
        }
    }
}

/// A watch served from the shared window.
struct SharedWatcher {
    hub: Arc<Hub>,
    /// The next revision this watcher has not seen.
    cursor: i64,
    changed: watch::Receiver<u64>,
    target: Option<i64>,
    /// Set once this watcher fell behind the window.
    own: Option<WatchStream>,
}

impl SharedWatcher {
    /// What the window has for this watcher now; Err(None) when it fell behind.
    fn take(&mut self) -> Result<Option<WatchBatch>, Option<StoreError>> {
        let window = self.hub.lock();
        let Some(w) = window.as_ref() else {
            return Err(None);
        };
        if self.cursor < w.start {
            return Err(None);
        }
        if let Some(e) = &w.failed {
            return Err(Some(e.clone()));
        }
        let from = w.events.partition_point(|e| e.revision < self.cursor);
        let reached = self.target.is_some_and(|t| w.progress >= t);
        if from == w.events.len() && !reached {
            return Ok(None);
        }
        if reached {
            self.target = None;
        }
        let events: Vec<WatchEvent> = w.events.range(from..).cloned().collect();
        self.cursor = self.cursor.max(w.progress + 1);
        Ok(Some(WatchBatch {
            events,
            progress: w.progress,
        }))
    }
}

#[async_trait]
impl Watcher for SharedWatcher {
    async fn next(&mut self) -> StoreResult<WatchBatch> {
        loop {
            if let Some(own) = self.own.as_mut() {
                return own.next().await;
            }
            self.changed.borrow_and_update();
            match self.take() {
                Ok(Some(batch)) => return Ok(batch),
                Ok(None) => {}
                Err(Some(e)) => return Err(e),
                Err(None) => {
                    let mut own = self.hub.inner.watch(self.hub.kind, self.cursor).await?;
                    if self.target.is_some() {
                        own.request_progress().await?;
                    }
                    self.own = Some(own);
                    continue;
                }
            }
            if self.changed.changed().await.is_err() {
                return Err(StoreError::Unavailable("shared watch stopped".into()));
            }
        }
    }

    async fn request_progress(&mut self) -> StoreResult<()> {
        if let Some(own) = self.own.as_mut() {
            return own.request_progress().await;
        }
        self.target = Some(recent(&self.hub.revision_read, &self.hub.inner).await?);
        self.hub.progress_wanted.notify_one();
        Ok(())
    }
}

#[async_trait]
impl StateStore for SharedWatchStore {
    async fn upsert_if_newer(&self, w: Upsert<'_>) -> StoreResult<UpsertOutcome> {
        self.inner.upsert_if_newer(w).await
    }
    async fn upsert_many(&self, writes: &[Upsert<'_>]) -> Vec<StoreResult<UpsertOutcome>> {
        self.inner.upsert_many(writes).await
    }
    async fn delete_if_unchanged(&self, key: &EntityKey, mod_revision: i64) -> StoreResult<bool> {
        self.inner.delete_if_unchanged(key, mod_revision).await
    }
    async fn get(
        &self,
        key: &EntityKey,
        revision: Option<i64>,
    ) -> StoreResult<Option<StoredRecord>> {
        self.inner.get(key, revision).await
    }
    async fn list(&self, req: &ListRequest) -> StoreResult<ListPage> {
        self.inner.list(req).await
    }
    async fn list_keys(&self, req: &ListRequest) -> StoreResult<KeyPage> {
        self.inner.list_keys(req).await
    }
    async fn get_meta(&self, name: &str) -> StoreResult<Option<Bytes>> {
        self.inner.get_meta(name).await
    }
    async fn put_meta(&self, name: &str, value: Bytes) -> StoreResult<()> {
        self.inner.put_meta(name, value).await
    }
    async fn create_meta(&self, name: &str, value: Bytes) -> StoreResult<bool> {
        self.inner.create_meta(name, value).await
    }
    /// Every long poll checks its cursor's store: a thousand watchers would
    /// each read the identity. A request joins a read still under way, never
    /// one that has finished (`SharedRead`).
    async fn identity(&self) -> StoreResult<String> {
        self.identity_read
            .read(|| {
                let inner = self.inner.clone();
                async move { inner.identity().await }
            })
            .await
    }
    async fn snapshot(&self) -> StoreResult<Option<super::SnapshotStream>> {
        self.inner.snapshot().await
    }
    async fn members(&self) -> StoreResult<Vec<super::MemberStatus>> {
        self.inner.members().await
    }
    async fn defragment(&self, endpoint: &str) -> StoreResult<()> {
        self.inner.defragment(endpoint).await
    }
    async fn watch(&self, kind: Kind, from_revision: i64) -> StoreResult<WatchStream> {
        let hub = self.hub(kind);
        hub.ensure_running().await?;
        let inside = hub
            .lock()
            .as_ref()
            .is_some_and(|w| w.failed.is_none() && from_revision >= w.start);
        if !inside {
            return self.inner.watch(kind, from_revision).await;
        }
        Ok(Box::new(SharedWatcher {
            hub: hub.clone(),
            cursor: from_revision,
            changed: hub.changed.subscribe(),
            target: None,
            own: None,
        }))
    }
    async fn current_revision(&self) -> StoreResult<i64> {
        self.inner.current_revision().await
    }
    async fn recent_revision(&self) -> StoreResult<i64> {
        recent(&self.revision_read, &self.inner).await
    }
    /// A window that saw `revision` answers: every long poll resuming from
    /// a cursor checks it, and a thousand of them would otherwise each read
    /// the store's revision. A cursor past every window is read for.
    async fn has_revision(&self, revision: i64) -> StoreResult<bool> {
        let seen = [&self.tasks, &self.instances, &self.services]
            .iter()
            .any(|h| {
                h.lock()
                    .as_ref()
                    .is_some_and(|w| w.failed.is_none() && w.progress >= revision)
            });
        if seen {
            return Ok(true);
        }
        self.inner.has_revision(revision).await
    }
    async fn compacted_revision(&self) -> StoreResult<i64> {
        self.inner.compacted_revision().await
    }
    async fn alarms(&self) -> StoreResult<Vec<String>> {
        self.inner.alarms().await
    }
    async fn compact(&self, revision: i64) -> StoreResult<()> {
        self.inner.compact(revision).await?;
        // A watch from before the compaction must get the store's answer
        // (410), not the window's copy.
        for hub in [&self.tasks, &self.instances, &self.services] {
            if let Some(w) = hub.lock().as_mut() {
                w.compacted(revision);
            }
        }
        Ok(())
    }
}
