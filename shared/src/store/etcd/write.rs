//! Guarded writes to etcd: one entity (compare-and-swap, retried on a lost
//! race), and batches in three steps: prepare (read the current records and
//! decide each write), chunk (bounded transactions), commit (one guarded
//! transaction per chunk; a lost race falls back to single writes).

use bytes::Bytes;
use etcd_client::{Compare, CompareOp, Txn, TxnOp, TxnOpResponse};
use futures::{FutureExt, StreamExt};

use super::{map_err, record_from_kv, EtcdStore, BATCH_CONCURRENCY};
use crate::store::{
    unchanged_unless_newer, StoreError, StoreResult, StoredRecord, Upsert, UpsertOutcome,
};

/// Lost races tolerated before a write is reported as failed (and retried
/// by SQS). Races only happen between writers of the same entity.
const MAX_ATTEMPTS: usize = 64;
/// Entities per multi-entity write transaction (up to 3 operations each).
const WRITE_CHUNK: usize = 32;
/// Bytes per multi-entity write transaction.
const WRITE_CHUNK_BYTES: usize = 1 << 20;

/// Outcomes of a batch's writes, by their place in the batch.
type Written = Vec<(usize, StoreResult<UpsertOutcome>)>;

/// One decided write of a batch: its place in the batch, its guard and
/// operations, and its size on the wire.
struct Pending {
    index: usize,
    compare: Compare,
    ops: Vec<TxnOp>,
    size: usize,
}

/// A batch after `prepare`: the answers already known (stale writes, read
/// failures), the writes to commit, and the records they were decided over.
struct Prepared {
    results: Vec<Option<StoreResult<UpsertOutcome>>>,
    pending: Vec<Pending>,
    existed: Vec<bool>,
}

impl EtcdStore {
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
                self.index_value(value),
                None,
            ),
            TxnOp::put(primary.as_str(), value.to_vec(), None),
        ];
        let guard = match current {
            Some(c) => {
                let old_status = c.meta()?.status.clone();
                if old_status != w.entity.status {
                    ops.push(TxnOp::delete(self.ks.status_index(key, &old_status), None));
                }
                Compare::mod_revision(primary, CompareOp::Equal, c.mod_revision)
            }
            None => Compare::version(primary, CompareOp::Equal, 0),
        };
        Ok((guard, ops))
    }

    /// One entity: read, decide, compare-and-swap; a lost race re-decides
    /// over the winner read in the transaction's else branch.
    pub(super) async fn upsert_one(&self, w: Upsert<'_>) -> StoreResult<UpsertOutcome> {
        let key = &w.entity.key;
        let primary = self.ks.primary(key);
        let resp = self.get_kv(primary.as_str(), None).await.map_err(map_err)?;
        let mut current = match resp.kvs().first() {
            Some(kv) => Some(record_from_kv(&self.ks, kv)?),
            None => None,
        };
        let value = self.encode(&w);
        for _ in 0..MAX_ATTEMPTS {
            if let Some(unchanged) = unchanged_unless_newer(&w, current.as_ref())? {
                return Ok(unchanged);
            }
            let (guard, ops) = self.write_ops(&w, current.as_ref(), &value)?;
            let txn = Txn::new()
                .when([guard])
                .and_then(ops)
                .or_else([TxnOp::get(primary.as_str(), None)]);
            let resp = self.txn(txn).await.map_err(map_err)?;
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
        Err(StoreError::Contended {
            attempts: MAX_ATTEMPTS,
            key: primary,
        })
    }

    /// Batched: the stored records read by multi-gets of up to 125 keys
    /// (`read.rs`), then one transaction per 32 entities guarded by all
    /// their compares.
    pub(super) async fn upsert_batch(
        &self,
        writes: &[Upsert<'_>],
    ) -> Vec<StoreResult<UpsertOutcome>> {
        let primaries: Vec<String> = writes
            .iter()
            .map(|w| self.ks.primary(&w.entity.key))
            .collect();
        let distinct: std::collections::HashSet<&String> = primaries.iter().collect();
        if distinct.len() != primaries.len() {
            // One transaction cannot put a key twice: go one by one.
            let mut out = Vec::with_capacity(writes.len());
            for w in writes {
                out.push(self.upsert_one(*w).await);
            }
            return out;
        }
        let Prepared {
            mut results,
            pending,
            existed,
        } = self.prepare(writes, &primaries).await;
        let committed = self.commit(chunk(pending), writes, &existed).await;
        for (i, r) in committed {
            results[i] = Some(r);
        }
        results
            .into_iter()
            .map(|r| {
                r.unwrap_or_else(|| Err(StoreError::Unavailable("write not attempted".into())))
            })
            .collect()
    }

    /// Reads the current records and decides every write over its record.
    async fn prepare(&self, writes: &[Upsert<'_>], primaries: &[String]) -> Prepared {
        let current = self.read_many(primaries, None).await;
        let mut results: Vec<Option<StoreResult<UpsertOutcome>>> = vec![None; writes.len()];
        let mut pending = Vec::new();
        for (i, (w, cur)) in writes.iter().zip(&current).enumerate() {
            let cur = match cur {
                Ok(c) => c.as_ref(),
                Err(e) => {
                    results[i] = Some(Err(e.clone()));
                    continue;
                }
            };
            let prepared = unchanged_unless_newer(w, cur).and_then(|unchanged| {
                if let Some(u) = unchanged {
                    return Ok(Err(u));
                }
                let value = self.encode(w);
                let size = 2 * (value.len() + primaries[i].len()) + 64;
                self.write_ops(w, cur, &value)
                    .map(|(compare, ops)| Ok((compare, ops, size)))
            });
            match prepared {
                Ok(Ok((compare, ops, size))) => pending.push(Pending {
                    index: i,
                    compare,
                    ops,
                    size,
                }),
                Ok(Err(unchanged)) => results[i] = Some(Ok(unchanged)),
                Err(e) => results[i] = Some(Err(e)),
            }
        }
        let existed = current.iter().map(|c| matches!(c, Ok(Some(_)))).collect();
        Prepared {
            results,
            pending,
            existed,
        }
    }

    /// One guarded transaction per chunk, a few in flight; a chunk that
    /// loses a race is written entity by entity.
    async fn commit(
        &self,
        chunks: Vec<Vec<Pending>>,
        writes: &[Upsert<'_>],
        existed: &[bool],
    ) -> Written {
        let futs: Vec<futures::future::BoxFuture<'_, Written>> = chunks
            .into_iter()
            .map(|chunk| {
                async move {
                    let idx: Vec<usize> = chunk.iter().map(|p| p.index).collect();
                    let (cmps, ops): (Vec<Compare>, Vec<Vec<TxnOp>>) =
                        chunk.into_iter().map(|p| (p.compare, p.ops)).unzip();
                    let txn = Txn::new()
                        .when(cmps)
                        .and_then(ops.into_iter().flatten().collect::<Vec<_>>());
                    match self.txn(txn).await {
                        Ok(resp) if resp.succeeded() => {
                            let revision = resp.header().map_or(0, |h| h.revision());
                            idx.iter()
                                .map(|&i| {
                                    let outcome = if existed[i] {
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
                                out.push((i, self.upsert_one(writes[i]).await));
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
        let written: Vec<Written> = futures::stream::iter(futs)
            .buffer_unordered(BATCH_CONCURRENCY)
            .collect()
            .await;
        written.into_iter().flatten().collect()
    }
}

/// Chunks bounded in entities and in bytes (etcd refuses requests over
/// --max-request-bytes, 1.5 MiB by default).
fn chunk(pending: Vec<Pending>) -> Vec<Vec<Pending>> {
    let mut chunks: Vec<Vec<Pending>> = Vec::new();
    let mut bytes = 0usize;
    for p in pending {
        let full = chunks
            .last()
            .is_none_or(|c| c.len() >= WRITE_CHUNK || bytes + p.size > WRITE_CHUNK_BYTES);
        if full {
            chunks.push(Vec::new());
            bytes = 0;
        }
        bytes += p.size;
        if let Some(c) = chunks.last_mut() {
            c.push(p);
        }
    }
    chunks
}
