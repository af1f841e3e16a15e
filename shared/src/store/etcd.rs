//! The etcd store: every write is one transaction guarded by the stored
//! record's mod_revision; index keys move in the same transaction.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use etcd_client::{
    Certificate, Client, CompactionOptions, Compare, CompareOp, ConnectOptions, GetOptions,
    Identity, KeyValue, TlsOptions, Txn, TxnOp, TxnOpResponse, WatchOptions,
};
use futures::{FutureExt, StreamExt};

use super::*;

/// Lost races tolerated before a write is reported as failed (and retried
/// by SQS). Races only happen between writers of the same entity.
const MAX_ATTEMPTS: usize = 64;
/// Gets per multi-get transaction (etcd's default --max-txn-ops is 128).
const READ_CHUNK: usize = 100;
/// Entities per multi-entity write transaction (up to 3 operations each).
const WRITE_CHUNK: usize = 32;
/// Bytes per multi-entity write transaction.
const WRITE_CHUNK_BYTES: usize = 1 << 20;
/// Batch transactions in flight at once.
const BATCH_CONCURRENCY: usize = 8;
/// Largest gRPC answer accepted (a 1,000-record page of big tasks).
const MAX_MESSAGE: usize = 64 << 20;

/// How to reach etcd.
#[derive(Clone, Default)]
pub struct EtcdSettings {
    pub endpoints: Vec<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    /// TLS (the endpoints are `https://`).
    pub tls: bool,
    /// PEM CA bundle to verify the server; without it, the system's roots.
    pub ca_pem: Option<Vec<u8>>,
    /// PEM client certificate and key for mutual TLS.
    pub client_cert_pem: Option<(Vec<u8>, Vec<u8>)>,
    pub request_timeout: Duration,
}

/// Never prints the password or the client key.
impl std::fmt::Debug for EtcdSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdSettings")
            .field("endpoints", &self.endpoints)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("tls", &self.tls)
            .field("ca_pem", &self.ca_pem.as_ref().map(Vec::len))
            .field("client_cert", &self.client_cert_pem.is_some())
            .field("request_timeout", &self.request_timeout)
            .finish()
    }
}

impl EtcdSettings {
    /// What an operator should hear about these settings before connecting.
    pub fn warnings(&self) -> Vec<&'static str> {
        let mut w = Vec::new();
        if self.password.is_some() && !self.tls {
            w.push("etcd credentials are sent over plain http://: use https:// endpoints");
        }
        w
    }

    fn tls_options(&self) -> Option<TlsOptions> {
        if !self.tls {
            return None;
        }
        let mut tls = TlsOptions::new();
        tls = match &self.ca_pem {
            Some(ca) => tls.ca_certificate(Certificate::from_pem(ca)),
            // No CA named: verify against the system's trusted roots, as any
            // HTTPS client would (a public or corporate CA).
            None => tls.with_native_roots(),
        };
        if let Some((cert, key)) = &self.client_cert_pem {
            tls = tls.identity(Identity::from_pem(cert, key));
        }
        Some(tls)
    }
}

#[derive(Clone)]
pub struct EtcdStore {
    client: Client,
    ks: Keyspace,
}

fn map_err(e: etcd_client::Error) -> StoreError {
    let msg = e.to_string();
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

fn record_from_kv(ks: &Keyspace, kv: &KeyValue) -> StoreResult<StoredRecord> {
    let store_key = kv.key_str().map_err(|e| StoreError::Corrupt {
        key: String::from_utf8_lossy(kv.key()).into_owned(),
        reason: e.to_string(),
    })?;
    let key = ks.parse(store_key).ok_or_else(|| StoreError::Corrupt {
        key: store_key.to_string(),
        reason: "not an entity key".into(),
    })?;
    Ok(StoredRecord {
        key,
        store_key: store_key.to_string(),
        mod_revision: kv.mod_revision(),
        create_revision: kv.create_revision(),
        value: Bytes::copy_from_slice(kv.value()),
    })
}

impl EtcdStore {
    pub async fn connect(settings: &EtcdSettings, prefix: &str) -> StoreResult<EtcdStore> {
        let timeout = if settings.request_timeout.is_zero() {
            Duration::from_secs(5)
        } else {
            settings.request_timeout
        };
        let mut opts = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(3))
            .with_timeout(timeout)
            .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5));
        if let (Some(user), Some(password)) = (&settings.username, &settings.password) {
            opts = opts.with_user(user.clone(), password.clone());
        }
        for warning in settings.warnings() {
            tracing::warn!("{warning}");
        }
        if let Some(tls) = settings.tls_options() {
            opts = opts.with_tls(tls);
        }
        let client = Client::connect(&settings.endpoints, Some(opts))
            .await
            .map_err(map_err)?;
        Ok(EtcdStore {
            client,
            ks: Keyspace::new(prefix),
        })
    }

    /// The compare and operations of one guarded write over `current`.
    fn write_ops(
        &self,
        w: &Upsert<'_>,
        current: Option<&StoredRecord>,
        value: &Bytes,
    ) -> StoreResult<(Compare, Vec<TxnOp>)> {
        let key = &w.entity.key;
        let primary = self.ks.primary(key);
        let mut ops = vec![
            TxnOp::put(
                self.ks.status_index(key, &w.entity.status),
                value.to_vec(),
                None,
            ),
            TxnOp::put(primary.as_str(), value.to_vec(), None),
        ];
        let guard = match current {
            Some(c) => {
                let old_status = c.meta()?.status;
                if old_status != w.entity.status {
                    ops.push(TxnOp::delete(self.ks.status_index(key, &old_status), None));
                }
                Compare::mod_revision(primary, CompareOp::Equal, c.mod_revision)
            }
            None => Compare::version(primary, CompareOp::Equal, 0),
        };
        Ok((guard, ops))
    }

    /// Reads the current records of `keys` in a few multi-get transactions.
    async fn read_many(&self, keys: &[String]) -> Vec<StoreResult<Option<StoredRecord>>> {
        let futs: Vec<futures::future::BoxFuture<'_, Vec<StoreResult<Option<StoredRecord>>>>> =
            keys.chunks(READ_CHUNK)
                .map(|chunk| {
                    async move {
                        let txn = Txn::new().and_then(
                            chunk
                                .iter()
                                .map(|k| TxnOp::get(k.as_str(), None))
                                .collect::<Vec<_>>(),
                        );
                        match self.kv().txn(txn).await {
                            Ok(resp) => resp
                                .op_responses()
                                .into_iter()
                                .map(|op| match op {
                                    TxnOpResponse::Get(g) => g
                                        .kvs()
                                        .first()
                                        .map(|kv| record_from_kv(&self.ks, kv))
                                        .transpose(),
                                    _ => Err(StoreError::Unavailable(
                                        "unexpected transaction response".into(),
                                    )),
                                })
                                .collect(),
                            Err(e) => {
                                let e = map_err(e);
                                chunk.iter().map(|_| Err(e.clone())).collect()
                            }
                        }
                    }
                    .boxed()
                })
                .collect();
        let chunks: Vec<Vec<StoreResult<Option<StoredRecord>>>> = futures::stream::iter(futs)
            .buffered(BATCH_CONCURRENCY)
            .collect()
            .await;
        chunks.into_iter().flatten().collect()
    }

    /// Clients with room for pages of large records (gRPC's default cap is 4 MiB).
    fn kv(&self) -> etcd_client::KvClient {
        self.client
            .kv_client()
            .max_decoding_message_size(MAX_MESSAGE)
    }

    fn watcher(&self) -> etcd_client::WatchClient {
        self.client
            .watch_client()
            .max_decoding_message_size(MAX_MESSAGE)
    }

    /// One range read for a list request; answers the response and its revision.
    async fn range(
        &self,
        req: &ListRequest,
        keys_only: bool,
    ) -> StoreResult<(etcd_client::GetResponse, i64)> {
        let prefix = self
            .ks
            .list_prefix(req.kind, &req.cluster, req.status.as_deref());
        let start = match &req.start_after {
            Some(after) if after.as_str() >= prefix.as_str() => {
                let mut k = after.as_bytes().to_vec();
                k.push(0);
                k
            }
            _ => prefix.as_bytes().to_vec(),
        };
        let mut opts = GetOptions::new()
            .with_range(prefix_end(&prefix))
            .with_limit(req.limit.max(1) as i64);
        if keys_only {
            opts = opts.with_keys_only();
        }
        if let Some(rev) = req.revision {
            opts = opts.with_revision(rev);
        }
        let resp = match self.kv().get(start, Some(opts)).await {
            Ok(r) => r,
            Err(e) => return Err(self.read_err(e, req.revision).await),
        };
        let revision = req
            .revision
            .unwrap_or_else(|| resp.header().map_or(0, |h| h.revision()));
        Ok((resp, revision))
    }

    pub fn keyspace(&self) -> &Keyspace {
        &self.ks
    }

    /// The raw client, for benchmarks that compare against plain etcd calls.
    pub fn client(&self) -> &Client {
        &self.client
    }

    async fn compacted_error(&self, requested: i64) -> StoreError {
        match (
            self.compacted_revision().await,
            self.current_revision().await,
        ) {
            (Ok(oldest), Ok(current)) => StoreError::Compacted {
                requested,
                oldest,
                current,
            },
            (Err(e), _) | (_, Err(e)) => e,
        }
    }

    /// Maps a read error, filling in the revisions of a compaction error.
    async fn read_err(&self, e: etcd_client::Error, requested: Option<i64>) -> StoreError {
        match map_err(e) {
            StoreError::Compacted { .. } => self.compacted_error(requested.unwrap_or(0)).await,
            other => {
                if let (Some(req), true) =
                    (requested, other.to_string().contains("future revision"))
                {
                    if let Ok(current) = self.current_revision().await {
                        return StoreError::FutureRevision {
                            requested: req,
                            current,
                        };
                    }
                }
                other
            }
        }
    }
}

#[async_trait]
impl StateStore for EtcdStore {
    async fn upsert_if_newer(&self, w: Upsert<'_>) -> StoreResult<UpsertOutcome> {
        let key = &w.entity.key;
        let primary = self.ks.primary(key);
        let mut kv = self.kv();
        let resp = kv.get(primary.as_str(), None).await.map_err(map_err)?;
        let mut current = match resp.kvs().first() {
            Some(kv) => Some(record_from_kv(&self.ks, kv)?),
            None => None,
        };
        let value = encode_record(&w);
        for _ in 0..MAX_ATTEMPTS {
            if !should_write(&w, current.as_ref())? {
                let mod_revision = current.map_or(0, |c| c.mod_revision);
                return Ok(UpsertOutcome::Unchanged { mod_revision });
            }
            let (guard, ops) = self.write_ops(&w, current.as_ref(), &value)?;
            let txn = Txn::new()
                .when([guard])
                .and_then(ops)
                .or_else([TxnOp::get(primary.as_str(), None)]);
            let resp = kv.txn(txn).await.map_err(map_err)?;
            if resp.succeeded() {
                let revision = resp.header().map_or(0, |h| h.revision());
                return Ok(match current {
                    None => UpsertOutcome::Inserted { revision },
                    Some(_) => UpsertOutcome::Updated { revision },
                });
            }
            // Lost a race: the else branch read the winner; decide again.
            current = None;
            for op in resp.op_responses() {
                if let TxnOpResponse::Get(get) = op {
                    if let Some(kv) = get.kvs().first() {
                        current = Some(record_from_kv(&self.ks, kv)?);
                    }
                }
            }
        }
        Err(StoreError::Contended(MAX_ATTEMPTS, primary))
    }

    /// Batched: one multi-get per 100 entities, then one transaction per 32
    /// entities guarded by all their compares. A transaction that loses a
    /// race falls back to per-entity writes, which retry as usual.
    async fn upsert_many(&self, writes: &[Upsert<'_>]) -> Vec<StoreResult<UpsertOutcome>> {
        let primaries: Vec<String> = writes
            .iter()
            .map(|w| self.ks.primary(&w.entity.key))
            .collect();
        let distinct: std::collections::HashSet<&String> = primaries.iter().collect();
        if distinct.len() != primaries.len() {
            // One transaction cannot put a key twice: go one by one.
            let mut out = Vec::with_capacity(writes.len());
            for w in writes {
                out.push(self.upsert_if_newer(*w).await);
            }
            return out;
        }
        let current = self.read_many(&primaries).await;
        let mut results: Vec<Option<StoreResult<UpsertOutcome>>> = vec![None; writes.len()];
        let mut pending: Vec<(usize, Compare, Vec<TxnOp>)> = Vec::new();
        let mut sizes: Vec<usize> = Vec::new();
        for (i, (w, cur)) in writes.iter().zip(&current).enumerate() {
            let cur = match cur {
                Ok(c) => c.as_ref(),
                Err(e) => {
                    results[i] = Some(Err(e.clone()));
                    continue;
                }
            };
            let prepared = should_write(w, cur).and_then(|write| {
                if !write {
                    return Ok(None);
                }
                let value = encode_record(w);
                let size = 2 * (value.len() + primaries[i].len()) + 64;
                self.write_ops(w, cur, &value).map(|ops| Some((ops, size)))
            });
            match prepared {
                Ok(Some(((cmp, ops), size))) => {
                    pending.push((i, cmp, ops));
                    sizes.push(size);
                }
                Ok(None) => {
                    results[i] = Some(Ok(UpsertOutcome::Unchanged {
                        mod_revision: cur.map_or(0, |c| c.mod_revision),
                    }))
                }
                Err(e) => results[i] = Some(Err(e)),
            }
        }
        // Chunks bounded in entities and in bytes (etcd refuses requests
        // over --max-request-bytes, 1.5 MiB by default).
        let mut chunks: Vec<Vec<(usize, Compare, Vec<TxnOp>)>> = Vec::new();
        let mut bytes = 0usize;
        for (p, size) in pending.into_iter().zip(sizes) {
            let full = chunks
                .last()
                .is_none_or(|c| c.len() >= WRITE_CHUNK || bytes + size > WRITE_CHUNK_BYTES);
            if full {
                chunks.push(Vec::new());
                bytes = 0;
            }
            bytes += size;
            if let Some(c) = chunks.last_mut() {
                c.push(p);
            }
        }
        let futs: Vec<futures::future::BoxFuture<'_, Vec<(usize, StoreResult<UpsertOutcome>)>>> =
            chunks
                .into_iter()
                .map(|chunk| {
                    let current = &current;
                    async move {
                        let idx: Vec<usize> = chunk.iter().map(|(i, _, _)| *i).collect();
                        let (cmps, ops): (Vec<Compare>, Vec<Vec<TxnOp>>) =
                            chunk.into_iter().map(|(_, c, o)| (c, o)).unzip();
                        let txn = Txn::new()
                            .when(cmps)
                            .and_then(ops.into_iter().flatten().collect::<Vec<_>>());
                        match self.kv().txn(txn).await {
                            Ok(resp) if resp.succeeded() => {
                                let revision = resp.header().map_or(0, |h| h.revision());
                                idx.iter()
                                    .map(|&i| {
                                        let existed = matches!(current[i], Ok(Some(_)));
                                        let outcome = if existed {
                                            UpsertOutcome::Updated { revision }
                                        } else {
                                            UpsertOutcome::Inserted { revision }
                                        };
                                        (i, Ok(outcome))
                                    })
                                    .collect()
                            }
                            Ok(_) => {
                                let mut out = Vec::with_capacity(idx.len());
                                for i in idx {
                                    out.push((i, self.upsert_if_newer(writes[i]).await));
                                }
                                out
                            }
                            Err(e) => {
                                let e = map_err(e);
                                idx.into_iter().map(|i| (i, Err(e.clone()))).collect()
                            }
                        }
                    }
                    .boxed()
                })
                .collect();
        let written: Vec<Vec<(usize, StoreResult<UpsertOutcome>)>> = futures::stream::iter(futs)
            .buffer_unordered(BATCH_CONCURRENCY)
            .collect()
            .await;
        for (i, r) in written.into_iter().flatten() {
            results[i] = Some(r);
        }
        results
            .into_iter()
            .map(|r| {
                r.unwrap_or_else(|| Err(StoreError::Unavailable("write not attempted".into())))
            })
            .collect()
    }

    async fn delete_if_unchanged(&self, key: &EntityKey, mod_revision: i64) -> StoreResult<bool> {
        let primary = self.ks.primary(key);
        let mut kv = self.kv();
        let resp = kv.get(primary.as_str(), None).await.map_err(map_err)?;
        let Some(current) = resp.kvs().first() else {
            return Ok(false);
        };
        let current = record_from_kv(&self.ks, current)?;
        if current.mod_revision != mod_revision {
            return Ok(false);
        }
        let status = current.meta()?.status;
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
        let resp = kv.txn(txn).await.map_err(map_err)?;
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
        let resp = match self.kv().get(primary, Some(opts)).await {
            Ok(r) => r,
            Err(e) => return Err(self.read_err(e, revision).await),
        };
        resp.kvs()
            .first()
            .map(|kv| record_from_kv(&self.ks, kv))
            .transpose()
    }

    async fn list(&self, req: &ListRequest) -> StoreResult<ListPage> {
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
                let store_key = kv.key_str().map_err(|e| StoreError::Corrupt {
                    key: String::from_utf8_lossy(kv.key()).into_owned(),
                    reason: e.to_string(),
                })?;
                let key = self
                    .ks
                    .parse(store_key)
                    .ok_or_else(|| StoreError::Corrupt {
                        key: store_key.to_string(),
                        reason: "not an entity key".into(),
                    })?;
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
            .kv()
            .get(self.ks.meta(name), None)
            .await
            .map_err(map_err)?;
        Ok(resp
            .kvs()
            .first()
            .map(|kv| Bytes::copy_from_slice(kv.value())))
    }

    async fn put_meta(&self, name: &str, value: Bytes) -> StoreResult<()> {
        self.kv()
            .put(self.ks.meta(name), value.to_vec(), None)
            .await
            .map_err(map_err)?;
        Ok(())
    }

    async fn watch(&self, kind: Kind, from_revision: i64) -> StoreResult<WatchStream> {
        // etcd reports a compacted start revision only some time after the
        // watch is created (and may send progress before that), so check it
        // first: a read at a revision fails exactly when it is compacted.
        let probe = GetOptions::new()
            .with_count_only()
            .with_revision(from_revision.max(1));
        match self
            .kv()
            .get(self.ks.meta("revision-probe"), Some(probe))
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
        let start = self.ks.kind_prefix(Kind::Instance);
        let opts = WatchOptions::new()
            .with_range(prefix_end(self.ks.prefix()))
            .with_start_revision(from_revision)
            .with_prev_key();
        let mut stream = self
            .watcher()
            .watch(start, Some(opts))
            .await
            .map_err(map_err)?;
        // The first answer confirms the watch, or cancels it as compacted.
        match stream.message().await.map_err(map_err)? {
            Some(resp) if resp.compact_revision() > 0 || resp.canceled() => {
                return Err(self.compacted_error(from_revision).await);
            }
            Some(_) => {}
            None => return Err(StoreError::Unavailable("watch closed by etcd".into())),
        }
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
            .kv()
            .get(
                self.ks.meta("revision-probe"),
                Some(GetOptions::new().with_count_only()),
            )
            .await
            .map_err(map_err)?;
        Ok(resp.header().map_or(0, |h| h.revision()))
    }

    async fn compacted_revision(&self) -> StoreResult<i64> {
        // etcd does not report its compaction point, but a read at a revision
        // fails exactly when that revision is compacted: binary search it.
        // Only error paths (410 answers) and compaction ask for it.
        let current = self.current_revision().await?;
        let mut kv = self.kv();
        let probe = self.ks.meta("revision-probe");
        let (mut lo, mut hi) = (1i64, current);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let opts = GetOptions::new().with_count_only().with_revision(mid);
            match kv.get(probe.as_str(), Some(opts)).await.map_err(map_err) {
                Ok(_) => hi = mid,
                Err(StoreError::Compacted { .. }) => lo = mid + 1,
                Err(e) => return Err(e),
            }
        }
        // Revision 1 readable means nothing was compacted.
        Ok(if lo <= 1 { 0 } else { lo })
    }

    async fn compact(&self, revision: i64) -> StoreResult<()> {
        let res = self
            .kv()
            .compact(revision, Some(CompactionOptions::new().with_physical()))
            .await;
        match res {
            Ok(_) => Ok(()),
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

struct EtcdWatcher {
    stream: etcd_client::WatchStream,
    store: EtcdStore,
    kind: Kind,
    from_revision: i64,
    /// Highest revision seen on the watch (of any key it covers).
    progress: i64,
    /// A requested progress point not yet reached.
    target: Option<i64>,
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
