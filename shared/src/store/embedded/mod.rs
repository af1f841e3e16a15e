//! The embedded, in-process store: server mode's default.
//!
//! A small MVCC map with etcd's semantics: one global revision counter bumped
//! per write transaction, every key's versions kept until compacted, reads at
//! a past revision, a watch log replayable from any uncompacted revision.

use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::watch;

use super::*;

mod mvcc;
mod watcher;

use mvcc::{version_at, Change, Inner, Live};
use watcher::EmbeddedWatcher;

/// A stored record from a live version (values are kept as written:
/// records are compressed by their format).
fn record(key: EntityKey, store_key: String, v: Live) -> StoredRecord {
    StoredRecord::new(key, store_key, v.mod_revision, v.create_revision, v.value)
}

const MAX_WATCH_BATCH: usize = 1000;

pub struct EmbeddedStore {
    ks: Keyspace,
    inner: Arc<Mutex<Inner>>,
    /// Carries the current revision, so watches wake on every write.
    notify: watch::Sender<i64>,
    /// This store's identity: a new process holds a new store.
    identity: String,
}

impl EmbeddedStore {
    pub fn new(prefix: &str) -> EmbeddedStore {
        // Revision 1 is the empty store, as in etcd.
        let (notify, _) = watch::channel(1);
        EmbeddedStore {
            ks: Keyspace::new(prefix),
            inner: Arc::new(Mutex::new(Inner {
                revision: 1,
                compacted: 0,
                keys: BTreeMap::new(),
                log: VecDeque::new(),
            })),
            notify,
            identity: format!("{:032x}", rand::random::<u128>()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves the map consistent (every
        // write is applied fully before the revision moves), so go on.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn record(&self, key: &EntityKey, store_key: String, v: Live) -> StoredRecord {
        record(key.clone(), store_key, v)
    }

    /// Live entries of a list's range at its revision, mapped by `f`.
    fn scan<T>(
        &self,
        req: &ListRequest,
        f: impl Fn(&str, EntityKey, Live) -> T,
    ) -> StoreResult<(Vec<T>, i64, bool)> {
        let prefix = self
            .ks
            .list_prefix(req.kind, &req.cluster, req.status.as_deref());
        let end = String::from_utf8(prefix_end(&prefix)).unwrap_or_default();
        let start = match &req.start_after {
            Some(after) if after.as_str() >= prefix.as_str() => Bound::Excluded(after.as_str()),
            _ => Bound::Included(prefix.as_str()),
        };
        let inner = self.lock();
        let rev = inner.check_read(req.revision)?;
        let mut out = Vec::new();
        let mut more = false;
        for (k, versions) in inner
            .keys
            .range::<str, _>((start, Bound::Excluded(end.as_str())))
        {
            let Some(v) = version_at(versions, rev) else {
                continue;
            };
            if out.len() == req.limit {
                more = true;
                break;
            }
            let Some(key) = self.ks.parse(k) else {
                continue;
            };
            out.push(f(k, key, v));
        }
        Ok((out, rev, more))
    }
}

#[async_trait]
impl StateStore for EmbeddedStore {
    async fn upsert_if_newer(&self, w: Upsert<'_>) -> StoreResult<UpsertOutcome> {
        let key = &w.entity.key;
        let primary = self.ks.primary(key);
        let mut inner = self.lock();
        let current = inner.revision;
        let packed_prev = inner.at(&primary, current);
        let prev = packed_prev
            .clone()
            .map(|v| self.record(key, primary.clone(), v));
        if let Some(unchanged) = unchanged_unless_newer(&w, prev.as_ref())? {
            return Ok(unchanged);
        }
        let rev = current + 1;
        let value = encode_record(&w);
        if let Some(p) = &prev {
            let old_status = &p.meta()?.status;
            if *old_status != w.entity.status {
                let old_index = self.ks.status_index(key, old_status);
                inner.delete(&old_index, rev);
            }
        }
        let (shared, create_revision) = inner.put(&primary, value.clone(), rev);
        inner.put(
            &self.ks.status_index(key, &w.entity.status),
            value.clone(),
            rev,
        );
        inner.commit(Change {
            revision: rev,
            kind: key.kind,
            key: shared,
            put: Some(Live {
                mod_revision: rev,
                create_revision,
                value,
            }),
            prev: packed_prev,
        });
        drop(inner);
        self.notify.send_replace(rev);
        Ok(match prev {
            None => UpsertOutcome::Inserted { revision: rev },
            Some(_) => UpsertOutcome::Updated { revision: rev },
        })
    }

    async fn delete_if_unchanged(&self, key: &EntityKey, mod_revision: i64) -> StoreResult<bool> {
        let primary = self.ks.primary(key);
        let mut inner = self.lock();
        let current = inner.revision;
        let Some(v) = inner.at(&primary, current) else {
            return Ok(false);
        };
        if v.mod_revision != mod_revision {
            return Ok(false);
        }
        let prev = self.record(key, primary.clone(), v.clone());
        let status = &prev.meta()?.status;
        let rev = current + 1;
        inner.delete(&primary, rev);
        inner.delete(&self.ks.status_index(key, status), rev);
        let shared = inner.shared_key(&primary);
        inner.commit(Change {
            revision: rev,
            kind: key.kind,
            key: shared,
            put: None,
            prev: Some(v),
        });
        drop(inner);
        self.notify.send_replace(rev);
        Ok(true)
    }

    async fn get(
        &self,
        key: &EntityKey,
        revision: Option<i64>,
    ) -> StoreResult<Option<StoredRecord>> {
        let primary = self.ks.primary(key);
        let inner = self.lock();
        let rev = inner.check_read(revision)?;
        Ok(inner
            .at(&primary, rev)
            .map(|v| self.record(key, primary, v)))
    }

    async fn list(&self, req: &ListRequest) -> StoreResult<ListPage> {
        let (records, revision, more) =
            self.scan(req, |k, key, v| self.record(&key, k.to_string(), v))?;
        Ok(ListPage {
            records,
            revision,
            more,
        })
    }

    async fn list_keys(&self, req: &ListRequest) -> StoreResult<KeyPage> {
        let (keys, revision, more) = self.scan(req, |k, key, v| KeyRef {
            key,
            store_key: k.to_string(),
            mod_revision: v.mod_revision,
        })?;
        Ok(KeyPage {
            keys,
            revision,
            more,
        })
    }

    async fn get_meta(&self, name: &str) -> StoreResult<Option<Bytes>> {
        let inner = self.lock();
        let rev = inner.revision;
        Ok(inner.at(&self.ks.meta(name), rev).map(|v| v.value))
    }

    async fn put_meta(&self, name: &str, value: Bytes) -> StoreResult<()> {
        let mut inner = self.lock();
        let rev = inner.revision + 1;
        inner.put(&self.ks.meta(name), value, rev);
        inner.revision = rev;
        drop(inner);
        self.notify.send_replace(rev);
        Ok(())
    }

    async fn identity(&self) -> StoreResult<String> {
        Ok(self.identity.clone())
    }

    async fn create_meta(&self, name: &str, value: Bytes) -> StoreResult<bool> {
        let key = self.ks.meta(name);
        let mut inner = self.lock();
        if inner.at(&key, inner.revision).is_some() {
            return Ok(false);
        }
        let rev = inner.revision + 1;
        inner.put(&key, value, rev);
        inner.revision = rev;
        drop(inner);
        self.notify.send_replace(rev);
        Ok(true)
    }

    async fn watch(&self, kind: Kind, from_revision: i64) -> StoreResult<WatchStream> {
        {
            let inner = self.lock();
            if from_revision < inner.compacted {
                return Err(StoreError::Compacted {
                    requested: from_revision,
                    oldest: inner.compacted,
                    current: inner.revision,
                });
            }
        }
        Ok(Box::new(EmbeddedWatcher {
            ks: self.ks.clone(),
            inner: self.inner.clone(),
            rx: self.notify.subscribe(),
            next: from_revision,
            kind,
            progress_requested: false,
        }))
    }

    async fn current_revision(&self) -> StoreResult<i64> {
        Ok(self.lock().revision)
    }

    async fn compacted_revision(&self) -> StoreResult<i64> {
        Ok(self.lock().compacted)
    }

    async fn compact(&self, revision: i64) -> StoreResult<()> {
        let mut inner = self.lock();
        if revision > inner.revision {
            return Err(StoreError::FutureRevision {
                requested: revision,
                current: inner.revision,
            });
        }
        if revision <= inner.compacted {
            return Ok(());
        }
        // Keep, per key, the version visible at `revision` and all later ones.
        inner.keys.retain(|_, versions| {
            let visible = versions.partition_point(|v| v.mod_revision <= revision);
            let drop_n = visible.saturating_sub(1);
            versions.drain(..drop_n);
            versions.shrink_to_fit();
            !(versions.len() == 1
                && versions[0].value.is_none()
                && versions[0].mod_revision <= revision)
        });
        let keep_from = inner.log.partition_point(|e| e.revision < revision);
        inner.log.drain(..keep_from);
        // Hand back what a large burst left behind, not just its entries.
        if inner.log.capacity() > 2 * inner.log.len() + 1024 {
            inner.log.shrink_to_fit();
        }
        inner.compacted = revision;
        drop(inner);
        // Wake watches so that a lagging one reports the compaction.
        self.notify.send_modify(|_| {});
        Ok(())
    }
}
