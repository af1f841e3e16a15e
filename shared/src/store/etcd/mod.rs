//! The etcd store: every write is one transaction guarded by the stored
//! record's mod_revision; index keys move in the same transaction.
//! `connection` reaches etcd, `write` makes the guarded writes, `read` the
//! list ranges and multi-gets, `watcher` follows changes; single reads and
//! maintenance are here.

use async_trait::async_trait;
use bytes::Bytes;
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{
    AlarmAction, AlarmType, Client, CompactionOptions, Compare, CompareOp, GetOptions, GetResponse,
    KeyValue, Txn, TxnOp, TxnResponse,
};

use super::*;

mod cache;
mod compaction_point;
mod connection;
mod members;
mod read;
pub mod tls;
mod watcher;
mod write;

use members::Members;

pub use cache::CacheUsage;
use cache::RecordCache;
pub use connection::{EtcdSettings, DEFAULT_RECORD_CACHE_MIB};
use watcher::EtcdWatcher;

/// Batch transactions in flight at once.
const BATCH_CONCURRENCY: usize = 8;
/// Largest gRPC answer accepted (a 1,000-record page of big tasks).
const MAX_MESSAGE: usize = 64 << 20;

#[derive(Clone)]
pub struct EtcdStore {
    members: Arc<Members>,
    ks: Keyspace,
    format: Format,
    /// The compaction point this process last found or made (0: none yet),
    /// shared by clones: confirmed with two reads instead of searched for.
    compacted: Arc<std::sync::atomic::AtomicI64>,
    /// Shared by clones, as the connections are.
    cache: Arc<RecordCache>,
    /// The store identity this process last read: the cache is flushed
    /// when it changes.
    identity: Arc<std::sync::Mutex<Option<String>>>,
}

/// How records and index keys are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Records compressed (`record.rs`); status-index keys hold no value
    /// and point at the record: a filtered list reads the index keys, then
    /// the records at the same revision.
    Compact,
    /// As records were written before: plain JSON, and every index key a
    /// full copy of its record, read by the list itself. Kept to measure
    /// against and to test upgrades (feature `testing`); `Compact` reads
    /// what it wrote.
    // Only `with_format` (feature `testing`) makes one.
    #[cfg_attr(not(feature = "testing"), allow(dead_code))]
    Legacy,
}

fn map_err(e: etcd_client::Error) -> StoreError {
    if let Some(line) = connection::explain(&e, None) {
        return StoreError::Unavailable(line.to_string());
    }
    let msg = e.to_string();
    if msg.contains("database space exceeded") {
        return StoreError::NoSpace(msg);
    }
    if msg.contains("required revision has been compacted") {
        // The caller fills in the revisions (etcd's error does not carry them).
        return StoreError::Compacted {
            requested: 0,
            oldest: 0,
            current: 0,
        };
    }
    StoreError::Unavailable(msg)
}

/// The entity key a key-value was stored under.
fn entity_key<'a>(ks: &Keyspace, kv: &'a KeyValue) -> StoreResult<(EntityKey, &'a str)> {
    let store_key = kv.key_str().map_err(|e| StoreError::Corrupt {
        key: String::from_utf8_lossy(kv.key()).into_owned(),
        reason: e.to_string(),
    })?;
    let key = ks.parse(store_key).ok_or_else(|| StoreError::Corrupt {
        key: store_key.to_string(),
        reason: "not an entity key".into(),
    })?;
    Ok((key, store_key))
}

fn record_from_kv(ks: &Keyspace, kv: &KeyValue) -> StoreResult<StoredRecord> {
    let (key, store_key) = entity_key(ks, kv)?;
    Ok(StoredRecord::new(
        key,
        store_key.to_string(),
        kv.mod_revision(),
        kv.create_revision(),
        Bytes::copy_from_slice(kv.value()),
    ))
}

/// A KV client with room for pages of large records (gRPC's default cap is 4 MiB).
fn kv(c: Client) -> etcd_client::KvClient {
    c.kv_client().max_decoding_message_size(MAX_MESSAGE)
}

impl EtcdStore {
    /// A read on a live member (`members`: failover).
    async fn get_kv(
        &self,
        key: impl Into<Vec<u8>>,
        opts: Option<GetOptions>,
    ) -> Result<GetResponse, etcd_client::Error> {
        let key = key.into();
        let call = |c| {
            let (key, opts) = (key.clone(), opts.clone());
            async move { kv(c).get(key, opts).await }
        };
        self.members.call(call).await
    }

    /// A transaction on a live member. Every transaction of this store is
    /// read-only or guarded by a compare, so repeating it elsewhere after a
    /// failure that hid its outcome cannot apply it twice.
    async fn txn(&self, txn: Txn) -> Result<TxnResponse, etcd_client::Error> {
        let call = |c| {
            let txn = txn.clone();
            async move { kv(c).txn(txn).await }
        };
        self.members.call(call).await
    }

    pub fn keyspace(&self) -> &Keyspace {
        &self.ks
    }

    /// The same store writing (and listing) in `format`.
    #[cfg(feature = "testing")]
    pub fn with_format(mut self, format: Format) -> EtcdStore {
        self.format = format;
        self
    }

    /// The same store with its own record cache of `mib` MiB (0: none).
    pub fn with_record_cache(mut self, mib: u32) -> EtcdStore {
        self.cache = Arc::new(RecordCache::new(mib));
        self
    }

    /// What the record cache holds and has answered.
    pub fn record_cache_usage(&self) -> CacheUsage {
        self.cache.usage()
    }

    /// A record's value as this store writes it.
    fn encode(&self, w: &Upsert<'_>) -> Bytes {
        match self.format {
            Format::Compact => encode_record(w),
            Format::Legacy => Bytes::from(record_json(w)),
        }
    }

    /// What an index key holds: nothing (it points at its record), or a
    /// copy of the record in the legacy format.
    fn index_value(&self, value: &Bytes) -> Vec<u8> {
        match self.format {
            Format::Compact => Vec::new(),
            Format::Legacy => value.to_vec(),
        }
    }

    /// How many times the TLS material was read again after a refused
    /// handshake.
    pub fn tls_reloads(&self) -> u64 {
        self.members.tls.as_ref().map_or(0, |t| t.reloads())
    }

    /// When the client certificate in use (else the CA) expires.
    pub fn tls_expires(&self) -> Option<std::time::SystemTime> {
        self.members.tls.as_ref().and_then(|t| t.expires())
    }

    /// A raw client of a live member, for benchmarks that compare against
    /// plain etcd calls.
    #[cfg(feature = "testing")]
    pub async fn client(&self) -> StoreResult<Client> {
        self.members
            .call(|c| async move { Ok(c) })
            .await
            .map_err(map_err)
    }
}

#[async_trait]
impl StateStore for EtcdStore {
    async fn upsert_if_newer(&self, w: Upsert<'_>) -> StoreResult<UpsertOutcome> {
        self.upsert_one(w).await
    }

    /// Batched (see `write`): a transaction that loses a race falls back to
    /// per-entity writes, which retry as usual.
    async fn upsert_many(&self, writes: &[Upsert<'_>]) -> Vec<StoreResult<UpsertOutcome>> {
        self.upsert_batch(writes).await
    }

    async fn delete_if_unchanged(&self, key: &EntityKey, mod_revision: i64) -> StoreResult<bool> {
        let primary = self.ks.primary(key);
        let resp = self.get_kv(primary.as_str(), None).await.map_err(map_err)?;
        let Some(current) = resp.kvs().first() else {
            return Ok(false);
        };
        let current = record_from_kv(&self.ks, current)?;
        if current.mod_revision != mod_revision {
            return Ok(false);
        }
        let status = current.meta()?.status.clone();
        let txn = Txn::new()
            .when([Compare::mod_revision(
                primary.as_str(),
                CompareOp::Equal,
                mod_revision,
            )])
            .and_then([
                TxnOp::delete(primary.as_str(), None),
                TxnOp::delete(self.ks.status_index(key, &status), None),
            ]);
        let resp = self.txn(txn).await.map_err(map_err)?;
        Ok(resp.succeeded())
    }

    async fn get(
        &self,
        key: &EntityKey,
        revision: Option<i64>,
    ) -> StoreResult<Option<StoredRecord>> {
        let primary = self.ks.primary(key);
        let mut opts = GetOptions::new();
        if let Some(rev) = revision {
            opts = opts.with_revision(rev);
        }
        let resp = match self.get_kv(primary, Some(opts)).await {
            Ok(r) => r,
            Err(e) => return Err(self.read_err(e, revision).await),
        };
        resp.kvs()
            .first()
            .map(|kv| record_from_kv(&self.ks, kv))
            .transpose()
    }

    async fn list(&self, req: &ListRequest) -> StoreResult<ListPage> {
        if req.status.is_some() && self.format == Format::Compact {
            return self.list_by_index(req).await;
        }
        let (resp, revision) = self.range(req, false).await?;
        let records = resp
            .kvs()
            .iter()
            .map(|kv| record_from_kv(&self.ks, kv))
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(ListPage {
            records,
            revision,
            more: resp.more(),
        })
    }

    async fn list_keys(&self, req: &ListRequest) -> StoreResult<KeyPage> {
        let (resp, revision) = self.range(req, true).await?;
        let keys = resp
            .kvs()
            .iter()
            .map(|kv| {
                let (key, store_key) = entity_key(&self.ks, kv)?;
                Ok(KeyRef {
                    key,
                    store_key: store_key.to_string(),
                    mod_revision: kv.mod_revision(),
                })
            })
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(KeyPage {
            keys,
            revision,
            more: resp.more(),
        })
    }

    async fn get_meta(&self, name: &str) -> StoreResult<Option<Bytes>> {
        let resp = self
            .get_kv(self.ks.meta(name), None)
            .await
            .map_err(map_err)?;
        Ok(resp
            .kvs()
            .first()
            .map(|kv| Bytes::copy_from_slice(kv.value())))
    }

    async fn put_meta(&self, name: &str, value: Bytes) -> StoreResult<()> {
        // The same value under the same key: repeating it is harmless.
        let key = self.ks.meta(name);
        let call = |c| {
            let (key, value) = (key.clone(), value.to_vec());
            async move { kv(c).put(key, value, None).await }
        };
        self.members.call(call).await.map_err(map_err)?;
        Ok(())
    }

    async fn create_meta(&self, name: &str, value: Bytes) -> StoreResult<bool> {
        let key = self.ks.meta(name);
        let txn = Txn::new()
            .when([Compare::create_revision(key.as_str(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key.as_str(), value.to_vec(), None)]);
        let resp = self.txn(txn).await.map_err(map_err)?;
        Ok(resp.succeeded())
    }

    async fn identity(&self) -> StoreResult<String> {
        let id = crate::store::read_or_create_identity(self).await?;
        // Another store under the same endpoints (rebuilt, restored): its
        // (key, mod_revision) pairs mean other records.
        let mut last = self.identity.lock().unwrap_or_else(|e| e.into_inner());
        if last.as_deref() != Some(id.as_str()) {
            if last.is_some() {
                self.cache.clear();
            }
            *last = Some(id.clone());
        }
        Ok(id)
    }

    async fn watch(&self, kind: Kind, from_revision: i64) -> StoreResult<WatchStream> {
        let stream = self.open_stream(from_revision).await?;
        Ok(Box::new(EtcdWatcher {
            stream,
            store: self.clone(),
            kind,
            from_revision,
            progress: from_revision - 1,
            target: None,
        }))
    }

    async fn current_revision(&self) -> StoreResult<i64> {
        let resp = self
            .get_kv(
                self.ks.meta("revision-probe"),
                Some(GetOptions::new().with_count_only()),
            )
            .await
            .map_err(map_err)?;
        Ok(resp.header().map_or(0, |h| h.revision()))
    }

    async fn compacted_revision(&self) -> StoreResult<i64> {
        self.compaction_point().await
    }

    async fn snapshot(&self) -> StoreResult<Option<crate::store::SnapshotStream>> {
        let call = |c: Client| async move {
            // etcd sends the file in chunks of 32 KiB.
            let mut m = c.maintenance_client();
            m.snapshot().await
        };
        let stream = self.members.call(call).await.map_err(map_err)?;
        let chunks = futures::stream::unfold(Some(stream), |state| async move {
            let mut stream = state?;
            match stream.message().await {
                Ok(Some(msg)) => Some((Ok(Bytes::copy_from_slice(msg.blob())), Some(stream))),
                Ok(None) => None,
                Err(e) => Some((Err(map_err(e)), None)),
            }
        });
        Ok(Some(Box::pin(chunks)))
    }

    async fn members(&self) -> StoreResult<Vec<crate::store::MemberStatus>> {
        let ask = |c: Client| async move { c.maintenance_client().status().await };
        let answers = self.members.each(Duration::from_secs(3), ask).await;
        let hex = |id: u64| (id != 0).then(|| format!("{id:x}"));
        Ok(answers
            .into_iter()
            .map(|(endpoint, res)| match res {
                Ok(s) => crate::store::MemberStatus {
                    endpoint,
                    up: true,
                    id: s.header().and_then(|h| hex(h.member_id())),
                    leader: hex(s.leader()),
                    raft_index: Some(s.raft_index()),
                    raft_term: Some(s.raft_term()),
                    db_size: Some(s.db_size()),
                    db_size_in_use: Some(s.raft_used_db_size()),
                    error: s.errors().first().cloned(),
                },
                Err(e) => crate::store::MemberStatus {
                    endpoint,
                    up: false,
                    id: None,
                    leader: None,
                    raft_index: None,
                    raft_term: None,
                    db_size: None,
                    db_size_in_use: None,
                    error: Some(e),
                },
            })
            .collect())
    }

    async fn defragment(&self, endpoint: &str) -> StoreResult<()> {
        // The named member's own client: only that member stalls.
        let defrag = |c: Client| async move { c.maintenance_client().defragment().await };
        let timeout = Duration::from_secs(60);
        (self.members.on(endpoint, timeout, defrag).await)
            .map(|_| ())
            .map_err(StoreError::Unavailable)
    }

    async fn alarms(&self) -> StoreResult<Vec<String>> {
        let call = |c: Client| async move {
            let mut m = c.maintenance_client();
            m.alarm(AlarmAction::Get, AlarmType::None, None).await
        };
        let resp = self.members.call(call).await.map_err(map_err)?;
        let mut out: Vec<String> = (resp.alarms().iter())
            .map(|a| a.alarm().as_str_name().to_string())
            .collect();
        out.sort();
        out.dedup();
        Ok(out)
    }

    async fn compact(&self, revision: i64) -> StoreResult<()> {
        // Compacting again to the same revision is refused as compacted,
        // which counts as done: repeating it is harmless.
        let call = |c| async move {
            let opts = CompactionOptions::new().with_physical();
            kv(c).compact(revision, Some(opts)).await
        };
        let res = self.members.call(call).await;
        match res {
            Ok(_) => {
                let known = &self.compacted;
                known.fetch_max(revision, std::sync::atomic::Ordering::Relaxed);
                Ok(())
            }
            Err(e) => match map_err(e) {
                // Already compacted at or past `revision`: nothing to do.
                StoreError::Compacted { .. } => Ok(()),
                StoreError::Unavailable(msg) if msg.contains("future revision") => {
                    Err(StoreError::FutureRevision {
                        requested: revision,
                        current: self.current_revision().await?,
                    })
                }
                other => Err(other),
            },
        }
    }
}
