//! What an operator checks first (`GET /v1/status`): is the store reachable,
//! its current and compacted revision, and when the last reconcile run and
//! the last ingest batch happened and how they went, as the processes that
//! ran them recorded it in the store (so every function and server mode
//! answer the same).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::{json, Value};

use crate::ingest::IngestStats;
use crate::reconcile::Summary;
use crate::store::StateStore;

const RECONCILE: &str = "status/reconcile";
const INGEST: &str = "status/ingest";
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

/// After a reconcile run.
pub async fn record_reconcile(store: &dyn StateStore, summary: &Summary) {
    let value = json!({"time": now(), "summary": summary});
    put(store, RECONCILE, value).await;
}

/// After an ingest batch; at most every `INGEST_RECORD_INTERVAL`.
pub async fn record_ingest(store: &dyn StateStore, stats: &IngestStats) {
    static LAST: Mutex<Option<Instant>> = Mutex::new(None);
    {
        let Ok(mut last) = LAST.lock() else { return };
        if last.is_some_and(|t| t.elapsed() < INGEST_RECORD_INTERVAL) {
            return;
        }
        *last = Some(Instant::now());
    }
    let value = json!({
        "time": now(),
        "received": stats.received,
        "applied": stats.inserted + stats.updated,
        "lagMaxMs": stats.lag_max_ms,
        "lagP50Ms": stats.lag_p50_ms,
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
        "ingest": recorded(store, INGEST).await,
    })
}
