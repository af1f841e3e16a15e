//! Reads from etcd beyond single gets: list ranges (a page of records, or
//! of index keys whose records are then taken from the record cache or read
//! at the same revision), records
//! by key in multi-get transactions, and the errors of reads at a revision.

use etcd_client::{GetOptions, Txn, TxnOp, TxnOpResponse};
use futures::{FutureExt, StreamExt};

use super::{entity_key, map_err, record_from_kv, EtcdStore};
use crate::metrics;
use crate::store::{
    prefix_end, ListPage, ListRequest, StateStore, StoreError, StoreResult, StoredRecord,
};

/// Gets per multi-get transaction (etcd's default --max-txn-ops is 128).
const READ_CHUNK: usize = 125;
/// Multi-get transactions in flight at once (a filtered list reads its
/// page's records this way: more in flight hides etcd's per-request cost).
const READ_CONCURRENCY: usize = 16;

impl EtcdStore {
    /// One range read for a list request; answers the response and its revision.
    pub(super) async fn range(
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
        let resp = match self.get_kv(start, Some(opts)).await {
            Ok(r) => r,
            Err(e) => return Err(self.read_err(e, req.revision).await),
        };
        let revision = req
            .revision
            .unwrap_or_else(|| resp.header().map_or(0, |h| h.revision()));
        Ok((resp, revision))
    }

    /// A filtered list: the index keys of the page, then their records at
    /// the same revision (each keeps its index key as its page cursor).
    /// Records the cache holds at the index key's mod_revision (the same
    /// transaction wrote both) are not read again.
    pub(super) async fn list_by_index(&self, req: &ListRequest) -> StoreResult<ListPage> {
        let (resp, revision) = self.range(req, true).await?;
        let mut records: Vec<Option<StoredRecord>> = Vec::with_capacity(resp.kvs().len());
        // Not held: (place in the page, primary key, index key).
        let mut missing: Vec<(usize, String, String)> = Vec::new();
        for kv in resp.kvs() {
            let (key, index_key) = entity_key(&self.ks, kv)?;
            let primary = self.ks.primary(&key);
            match self.cache.get(&primary, kv.mod_revision()) {
                Some(rec) => records.push(Some(rec.under(index_key.to_string()))),
                None => {
                    missing.push((records.len(), primary, index_key.to_string()));
                    records.push(None);
                }
            }
        }
        metrics::list_records(records.len() - missing.len(), missing.len());
        let primaries: Vec<String> = missing.iter().map(|(_, p, _)| p.clone()).collect();
        let got = self.read_many(&primaries, Some(revision)).await;
        for ((place, primary, index_key), rec) in missing.into_iter().zip(got) {
            // Written in one transaction with its index key: there at the
            // same revision.
            let Some(rec) = rec? else {
                return Err(StoreError::Corrupt {
                    key: index_key,
                    reason: "index key without its record".into(),
                });
            };
            self.cache.put(primary, &rec);
            records[place] = Some(rec.under(index_key));
        }
        Ok(ListPage {
            records: records.into_iter().flatten().collect(),
            revision,
            more: resp.more(),
        })
    }

    /// Reads the records of `keys` (now, or at `revision`) in a few
    /// multi-get transactions.
    pub(super) async fn read_many(
        &self,
        keys: &[String],
        revision: Option<i64>,
    ) -> Vec<StoreResult<Option<StoredRecord>>> {
        let opts = revision.map(|r| GetOptions::new().with_revision(r));
        let futs: Vec<futures::future::BoxFuture<'_, Vec<StoreResult<Option<StoredRecord>>>>> =
            keys.chunks(READ_CHUNK)
                .map(|chunk| {
                    let opts = opts.clone();
                    async move {
                        let txn = Txn::new().and_then(
                            chunk
                                .iter()
                                .map(|k| TxnOp::get(k.as_str(), opts.clone()))
                                .collect::<Vec<_>>(),
                        );
                        match self.txn(txn).await {
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
            .buffered(READ_CONCURRENCY)
            .collect()
            .await;
        chunks.into_iter().flatten().collect()
    }

    pub(super) async fn compacted_error(&self, requested: i64) -> StoreError {
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
    pub(super) async fn read_err(
        &self,
        e: etcd_client::Error,
        requested: Option<i64>,
    ) -> StoreError {
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
