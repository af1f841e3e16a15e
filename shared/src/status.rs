//! What an operator checks first (`GET /v1/status`): is the store reachable,
//! its current and compacted revision, and when the last reconcile run and
//! the last ingest batch happened and how they went, as the processes that
//! ran them recorded it in the store (so every function and server mode
//! answer the same).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::{json, Value};

use crate::store::StateStore;

const RECONCILE: &str = "status/reconcile";
const INGEST: &str = "status/ingest";
const PASS: &str = "status/reconcile-pass";
const MEMBERS: &str = "status/members";
/// Ingest records its last batch at most this often per process (each
/// record is a store write).
pub const INGEST_RECORD_INTERVAL: Duration = Duration::from_secs(10);

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

async fn put(store: &dyn StateStore, name: &str, value: Value) {
    // Status is a convenience: failing to record it fails nothing else.
    if let Err(e) = store.put_meta(name, Bytes::from(value.to_string())).await {
        tracing::warn!(error = %e, name, "status not recorded");
    }
}

/// After a reconcile run: its summary as JSON.
pub async fn record_reconcile(store: &dyn StateStore, summary: Value) {
    let value = json!({"time": now(), "summary": summary});
    put(store, RECONCILE, value).await;
}

/// After the run that completed a reconcile pass: the pass's figures.
pub async fn record_pass(store: &dyn StateStore, pass: Value) {
    put(store, PASS, pass).await;
}

/// Each member's pass of the last run (`entries`: objects with `account`,
/// `region` and `pass.complete`), each kept with the time of its last
/// finished pass, as `GET /v1/status` shows them under `accounts`.
pub async fn record_members(store: &dyn StateStore, entries: Vec<Value>) {
    let before = recorded(store, MEMBERS).await;
    let at = now();
    let entries: Vec<Value> = entries
        .into_iter()
        .map(|mut e| {
            e["lastRun"] = Value::String(at.clone());
            e["lastCompletedPass"] = if e["pass"]["complete"] == true {
                Value::String(at.clone())
            } else {
                // Kept from the record before, if that member had one.
                (before.as_array().into_iter().flatten())
                    .find(|b| b["account"] == e["account"] && b["region"] == e["region"])
                    .map(|b| b["lastCompletedPass"].clone())
                    .unwrap_or(Value::Null)
            };
            e
        })
        .collect();
    put(store, MEMBERS, Value::Array(entries)).await;
}

/// An ingest batch, as status shows it.
#[derive(Debug, Clone, Copy, Default)]
pub struct IngestBatch {
    pub received: usize,
    pub applied: usize,
    pub lag_max_ms: Option<u64>,
    pub lag_p50_ms: Option<u64>,
}

/// After an ingest batch; at most every `INGEST_RECORD_INTERVAL` per store.
pub async fn record_ingest(store: &dyn StateStore, batch: IngestBatch) {
    // Per store, not per process: tests (and a server with two stores) run
    // several in one process. A store is known by its address; one freed
    // and another at its address inherits at most one interval's wait.
    static LAST: Mutex<BTreeMap<usize, Instant>> = Mutex::new(BTreeMap::new());
    let id = store as *const dyn StateStore as *const () as usize;
    {
        let Ok(mut last) = LAST.lock() else { return };
        if last
            .get(&id)
            .is_some_and(|t| t.elapsed() < INGEST_RECORD_INTERVAL)
        {
            return;
        }
        last.insert(id, Instant::now());
    }
    let value = json!({
        "time": now(),
        "received": batch.received,
        "applied": batch.applied,
        "lagMaxMs": batch.lag_max_ms,
        "lagP50Ms": batch.lag_p50_ms,
    });
    put(store, INGEST, value).await;
}

async fn recorded(store: &dyn StateStore, name: &str) -> Value {
    match store.get_meta(name).await {
        Ok(Some(b)) => serde_json::from_slice(&b).unwrap_or(Value::Null),
        _ => Value::Null,
    }
}

/// The status document. The store being unreachable is an answer too.
pub async fn status(store: &dyn StateStore) -> Value {
    let revision = match store.current_revision().await {
        Ok(r) => r,
        Err(e) => return json!({"store": {"reachable": false, "error": e.to_string()}}),
    };
    let compacted = store.compacted_revision().await.ok();
    // NOSPACE: reads work, writes fail until space is freed.
    let alarms = store.alarms().await.unwrap_or_default();
    json!({
        "store": {
            "reachable": true,
            "writable": !alarms.iter().any(|a| a == "NOSPACE"),
            "alarms": alarms,
            "revision": revision.to_string(),
            "compactedRevision": compacted.map(|c| c.to_string()),
        },
        "reconcile": recorded(store, RECONCILE).await,
        "lastCompletedPass": recorded(store, PASS).await,
        // Written by the backup itself (crate::backup): the last good one.
        "lastBackup": recorded(store, "backup/last").await,
        "ingest": recorded(store, INGEST).await,
        // Member accounts and Regions (README "Organizations"), each pass.
        "accounts": recorded(store, MEMBERS).await,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::EmbeddedStore;

    #[tokio::test]
    async fn each_store_records_its_first_batch_however_many_a_process_runs() {
        let batch = |received| IngestBatch {
            received,
            applied: received,
            lag_max_ms: Some(5),
            lag_p50_ms: Some(2),
        };
        let a = EmbeddedStore::new("/a/");
        let b = EmbeddedStore::new("/b/");
        record_ingest(&a, batch(3)).await;
        // Another store of the same process is not held back by the first.
        record_ingest(&b, batch(4)).await;
        assert_eq!(recorded(&a, INGEST).await["received"], 3);
        assert_eq!(recorded(&b, INGEST).await["received"], 4);
        // The same store within the interval: the first batch stands.
        record_ingest(&a, batch(9)).await;
        assert_eq!(recorded(&a, INGEST).await["received"], 3);
    }
}
