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

#[derive(Clone)]
struct Version {
    mod_revision: i64,
    create_revision: i64,
    /// None marks a delete.
    value: Option<Bytes>,
}

/// A primary key's change as the watch log keeps it. The key is shared with
/// the map and the values with the versions, so a write's history costs
/// little more than this struct.
struct Change {
    revision: i64,
    kind: Kind,
    key: Arc<str>,
    /// (create_revision, value) of the version a put wrote; None after a delete.
    put: Option<(i64, Bytes)>,
    /// (mod_revision, create_revision, value) before the change.
    prev: Option<(i64, i64, Bytes)>,
}

struct Inner {
    revision: i64,
    compacted: i64,
    keys: BTreeMap<Arc<str>, Vec<Version>>,
    /// Changes of primary keys, in revision order, for watches.
    log: VecDeque<Change>,
}

impl Inner {
    fn check_read(&self, revision: Option<i64>) -> StoreResult<i64> {
        let rev = revision.unwrap_or(self.revision);
        if rev > self.revision {
            return Err(StoreError::FutureRevision {
                requested: rev,
                current: self.revision,
            });
        }
        if rev < self.compacted {
            return Err(StoreError::Compacted {
                requested: rev,
                oldest: self.compacted,
                current: self.revision,
            });
        }
        Ok(rev)
    }

    /// The live version of `key` at `rev`.
    fn at(&self, key: &str, rev: i64) -> Option<(i64, i64, Bytes)> {
        let versions = self.keys.get(key)?;
        version_at(versions, rev)
    }

    /// Appends a version; returns the map's shared copy of the key.
    fn put(&mut self, key: &str, value: Bytes, rev: i64) -> (Arc<str>, i64) {
        let shared = self.shared_key(key);
        let versions = self.keys.entry(shared.clone()).or_default();
        let create_revision = match versions.last() {
            Some(Version {
                value: Some(_),
                create_revision,
                ..
            }) => *create_revision,
            _ => rev,
        };
        push_version(
            versions,
            Version {
                mod_revision: rev,
                create_revision,
                value: Some(value),
            },
        );
        (shared, create_revision)
    }

    fn delete(&mut self, key: &str, rev: i64) {
        if let Some(versions) = self.keys.get_mut(key) {
            if matches!(versions.last(), Some(Version { value: Some(_), .. })) {
                push_version(
                    versions,
                    Version {
                        mod_revision: rev,
                        create_revision: 0,
                        value: None,
                    },
                );
            }
        }
    }

    /// The map's shared copy of a key, or a new one for a key not yet held.
    fn shared_key(&self, key: &str) -> Arc<str> {
        self.keys
            .get_key_value(key)
            .map_or_else(|| Arc::from(key), |(k, _)| k.clone())
    }

    /// Ends a write transaction.
    fn commit(&mut self, change: Change) {
        self.revision = change.revision;
        self.log.push_back(change);
    }
}

/// Exact growth while a key has few versions (most hold one or two between
/// compactions, and a Vec's first allocation is room for four); amortized
/// doubling beyond, so a key rewritten often stays linear.
fn push_version(versions: &mut Vec<Version>, v: Version) {
    if versions.len() < 4 {
        versions.reserve_exact(1);
    }
    versions.push(v);
}

/// Values are held LZ4-compressed: records are JSON with much repetition
/// (ARNs, field names), and they are most of what the store holds.
fn pack(value: &[u8]) -> Bytes {
    // Copied into a fresh exact-size allocation: shrinking the compressor's
    // worst-case buffer in place would leave a small free gap beside every
    // long-lived value, and those gaps add up to fragmentation.
    Bytes::copy_from_slice(&lz4_flex::compress_prepend_size(value))
}

/// Only this store's own `pack` output is ever unpacked; should that fail
/// anyway, the packed bytes come back and the record's parse reports it
/// as corrupt.
fn unpack(packed: &Bytes) -> Bytes {
    lz4_flex::decompress_size_prepended(packed).map_or_else(|_| packed.clone(), Bytes::from)
}

fn version_at(versions: &[Version], rev: i64) -> Option<(i64, i64, Bytes)> {
    let idx = versions.partition_point(|v| v.mod_revision <= rev);
    let v = versions.get(idx.checked_sub(1)?)?;
    let value = v.value.clone()?;
    Some((v.mod_revision, v.create_revision, value))
}

const MAX_WATCH_BATCH: usize = 1000;

pub struct EmbeddedStore {
    ks: Keyspace,
    inner: Arc<Mutex<Inner>>,
    /// Carries the current revision, so watches wake on every write.
    notify: watch::Sender<i64>,
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
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves the map consistent (every
        // write is applied fully before the revision moves), so go on.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn record(&self, key: &EntityKey, store_key: String, v: (i64, i64, Bytes)) -> StoredRecord {
        StoredRecord {
            key: key.clone(),
            store_key,
            mod_revision: v.0,
            create_revision: v.1,
            value: unpack(&v.2),
        }
    }

    /// Live entries of a list's range at its revision, mapped by `f`.
    fn scan<T>(
        &self,
        req: &ListRequest,
        f: impl Fn(&str, EntityKey, (i64, i64, Bytes)) -> T,
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
        if !should_write(&w, prev.as_ref())? {
            let mod_revision = prev.map_or(0, |p| p.mod_revision);
            return Ok(UpsertOutcome::Unchanged { mod_revision });
        }
        let rev = current + 1;
        let value = pack(&encode_record(&w));
        if let Some(p) = &prev {
            let old_status = p.meta()?.status;
            if old_status != w.entity.status {
                let old_index = self.ks.status_index(key, &old_status);
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
            put: Some((create_revision, value)),
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
        if v.0 != mod_revision {
            return Ok(false);
        }
        let prev = self.record(key, primary.clone(), v.clone());
        let status = prev.meta()?.status;
        let rev = current + 1;
        inner.delete(&primary, rev);
        inner.delete(&self.ks.status_index(key, &status), rev);
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
            mod_revision: v.0,
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
        Ok(inner.at(&self.ks.meta(name), rev).map(|v| unpack(&v.2)))
    }

    async fn put_meta(&self, name: &str, value: Bytes) -> StoreResult<()> {
        let mut inner = self.lock();
        let rev = inner.revision + 1;
        inner.put(&self.ks.meta(name), pack(&value), rev);
        inner.revision = rev;
        drop(inner);
        self.notify.send_replace(rev);
        Ok(())
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

struct EmbeddedWatcher {
    ks: Keyspace,
    inner: Arc<Mutex<Inner>>,
    rx: watch::Receiver<i64>,
    /// The next revision to deliver.
    next: i64,
    kind: Kind,
    progress_requested: bool,
}

impl EmbeddedWatcher {
    /// The watch event a logged change stands for.
    fn event(&self, c: &Change) -> Option<WatchEvent> {
        let key = self.ks.parse(&c.key)?;
        let record = |(mod_revision, create_revision, value): (i64, i64, Bytes)| StoredRecord {
            key: key.clone(),
            store_key: c.key.to_string(),
            mod_revision,
            create_revision,
            value: unpack(&value),
        };
        Some(WatchEvent {
            event_type: if c.put.is_some() {
                EventType::Put
            } else {
                EventType::Delete
            },
            revision: c.revision,
            record: c
                .put
                .clone()
                .map(|(create, v)| record((c.revision, create, v))),
            prev: c.prev.clone().map(record),
            key,
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
