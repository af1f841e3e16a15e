//! The service's metrics, defined once: names, units and meanings here,
//! recorded through the `metrics` facade where things happen. Lambda exports
//! them as CloudWatch Embedded Metric Format lines on stdout after each
//! invocation (`install_emf`, `flush`: no PutMetricData on the hot path);
//! server mode as Prometheus text at `GET /metrics`. Without an exporter
//! installed, recording costs next to nothing.
//!
//! A leaf: recorders take plain figures. What a domain run did is turned
//! into figures by that domain (`ingest::BatchOutcome::record`,
//! `reconcile::Summary::record`), once per batch or run.

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::Duration;

use metrics::Unit;
use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};

// Ingest.
pub const INGEST_RECORDS: &str = "ingest_records";
pub const INGEST_LAG_MAX: &str = "ingest_lag_max_seconds";
pub const INGEST_LAG_P50: &str = "ingest_lag_p50_seconds";
pub const INGEST_DURATION: &str = "ingest_invocation_seconds";
pub const INGEST_DESCRIBE_CALLS: &str = "ingest_describe_services_calls";
// Reconcile.
pub const RECONCILE_DRIFT: &str = "reconcile_drift";
pub const RECONCILE_UNCHANGED: &str = "reconcile_unchanged";
pub const RECONCILE_ERRORS: &str = "reconcile_errors";
pub const RECONCILE_API_CALLS: &str = "reconcile_api_calls";
pub const RECONCILE_DURATION: &str = "reconcile_run_seconds";
pub const RECONCILE_CALLS: &str = "reconcile_calls";
pub const RECONCILE_THROTTLES: &str = "reconcile_throttles";
pub const RECONCILE_PASS_CLUSTERS_DONE: &str = "reconcile_pass_clusters_done";
pub const RECONCILE_PASS_CLUSTERS: &str = "reconcile_pass_clusters";
pub const RECONCILE_PASSES: &str = "reconcile_passes_completed";
pub const COMPACTED_REVISION: &str = "store_compacted_revision";
pub const ETCD_MEMBERS: &str = "etcd_members";
pub const ETCD_MEMBERS_DOWN: &str = "etcd_members_down";
pub const ETCD_HAS_LEADER: &str = "etcd_has_leader";
pub const ETCD_LEADER_CHANGES: &str = "etcd_leader_changes";
pub const ETCD_DB_SIZE: &str = "etcd_db_size_bytes";
pub const ETCD_QUOTA_USED: &str = "etcd_db_quota_used_ratio";
pub const ETCD_RAFT_LAG: &str = "etcd_raft_index_lag";
pub const ETCD_DEFRAGMENTATIONS: &str = "etcd_defragmentations";
pub const ETCD_TLS_RELOADS: &str = "etcd_tls_reloads";
pub const ETCD_CERT_DAYS_LEFT: &str = "etcd_certificate_days_left";
pub const ETCD_CERTS_RENEWED: &str = "etcd_certificates_renewed";
pub const BACKUP_AGE: &str = "backup_age_seconds";
pub const BACKUP_AGE_INTERVALS: &str = "backup_age_intervals";
pub const BACKUP_BYTES: &str = "backup_bytes";
pub const BACKUP_FAILURES: &str = "backup_failures";
// API and watch.
pub const HTTP_REQUESTS: &str = "http_requests";
pub const HTTP_LATENCY: &str = "http_request_seconds";
pub const WATCH_ANSWERS: &str = "watch_answers";
pub const WATCH_EVENTS: &str = "watch_events_delivered";
pub const WATCH_EXPIRED: &str = "watch_expired";
pub const SUBSCRIPTIONS: &str = "subscriptions";
// Store.
pub const STORE_ERRORS: &str = "store_errors";
pub const STORE_REVISION: &str = "store_revision";
pub const STORE_LIST_RECORDS: &str = "store_list_records";

/// Describes every metric to the installed exporter (units, meaning).
pub fn describe() {
    describe_counter!(INGEST_RECORDS, Unit::Count, "ingested records by outcome: applied, deleted (service gone), stale (duplicate or older), ignored (other detail-types), foreign (service events of other accounts or regions), malformed, failed (store), describe_failed (DescribeServices)");
    describe_counter!(
        INGEST_DESCRIBE_CALLS,
        Unit::Count,
        "DescribeServices calls made by the ingest (at most 10 services each)"
    );
    describe_gauge!(
        INGEST_LAG_MAX,
        Unit::Seconds,
        "per invocation: largest (applied time - event time)"
    );
    describe_gauge!(
        INGEST_LAG_P50,
        Unit::Seconds,
        "per invocation: median (applied time - event time)"
    );
    describe_histogram!(INGEST_DURATION, Unit::Seconds, "ingest invocation duration");
    describe_counter!(
        RECONCILE_DRIFT,
        Unit::Count,
        "what events missed, by change: inserted, updated, deleted"
    );
    describe_counter!(
        RECONCILE_UNCHANGED,
        Unit::Count,
        "records reconcile found as the store had them"
    );
    describe_counter!(
        RECONCILE_ERRORS,
        Unit::Count,
        "errors met by reconcile runs"
    );
    describe_counter!(
        RECONCILE_API_CALLS,
        Unit::Count,
        "ECS API requests sent by reconcile runs"
    );
    describe_histogram!(RECONCILE_DURATION, Unit::Seconds, "reconcile run duration");
    describe_counter!(
        RECONCILE_CALLS,
        Unit::Count,
        "ECS calls of reconcile runs through the call budget, by operation (ListTasks, DescribeTasks, ...)"
    );
    describe_counter!(
        RECONCILE_THROTTLES,
        Unit::Count,
        "ECS calls of reconcile runs refused with a ThrottlingException (each halves the run's rate)"
    );
    describe_gauge!(
        RECONCILE_PASS_CLUSTERS_DONE,
        Unit::Count,
        "clusters the reconcile pass under way has done"
    );
    describe_gauge!(
        RECONCILE_PASS_CLUSTERS,
        Unit::Count,
        "clusters the reconcile pass under way goes through"
    );
    describe_counter!(
        RECONCILE_PASSES,
        Unit::Count,
        "reconcile passes completed (a pass may take several runs)"
    );
    describe_gauge!(ETCD_MEMBERS, Unit::Count, "etcd members of the store");
    describe_gauge!(
        ETCD_MEMBERS_DOWN,
        Unit::Count,
        "etcd members that did not answer a status request"
    );
    describe_gauge!(
        ETCD_HAS_LEADER,
        Unit::Count,
        "1 when the members that answered name a leader, else 0"
    );
    describe_counter!(ETCD_LEADER_CHANGES, Unit::Count, "etcd leader changes seen");
    describe_gauge!(
        ETCD_DB_SIZE,
        Unit::Bytes,
        "the largest member database file"
    );
    describe_gauge!(
        ETCD_QUOTA_USED,
        Unit::Count,
        "the largest member database file over the space quota (NOSPACE at 1)"
    );
    describe_gauge!(
        ETCD_RAFT_LAG,
        Unit::Count,
        "raft index of the furthest member minus that of the one furthest behind"
    );
    describe_counter!(
        ETCD_DEFRAGMENTATIONS,
        Unit::Count,
        "members defragmented (one at a time)"
    );
    describe_counter!(
        ETCD_TLS_RELOADS,
        Unit::Count,
        "etcd TLS material read again after etcd refused the client certificate (renewed)"
    );
    describe_gauge!(
        ETCD_CERT_DAYS_LEFT,
        Unit::Count,
        "days until the earliest certificate of the stack's etcd expires (the alarm fires below 14)"
    );
    describe_counter!(
        ETCD_CERTS_RENEWED,
        Unit::Count,
        "certificates of the stack's etcd issued again by a renewal run"
    );
    describe_gauge!(
        BACKUP_AGE,
        Unit::Seconds,
        "age of the last good backup of the store (not written before the first)"
    );
    describe_gauge!(
        BACKUP_AGE_INTERVALS,
        Unit::Count,
        "age of the last good backup in backup intervals (the alarm fires at 2)"
    );
    describe_gauge!(BACKUP_BYTES, Unit::Bytes, "size of the last backup taken");
    describe_counter!(BACKUP_FAILURES, Unit::Count, "backups that failed");
    describe_gauge!(
        COMPACTED_REVISION,
        Unit::Count,
        "the store's history is compacted up to this revision"
    );
    describe_counter!(
        HTTP_REQUESTS,
        Unit::Count,
        "API requests by route and status class"
    );
    describe_histogram!(HTTP_LATENCY, Unit::Seconds, "API request latency by route");
    describe_counter!(
        WATCH_ANSWERS,
        Unit::Count,
        "watch answers by cause: events, timeout, limit"
    );
    describe_counter!(WATCH_EVENTS, Unit::Count, "events delivered to watchers");
    describe_counter!(
        WATCH_EXPIRED,
        Unit::Count,
        "watches answered 410 (history compacted)"
    );
    describe_counter!(
        SUBSCRIPTIONS,
        Unit::Count,
        "subscriptions created and deleted"
    );
    describe_counter!(
        STORE_ERRORS,
        Unit::Count,
        "store requests that failed, by kind"
    );
    describe_gauge!(
        STORE_REVISION,
        Unit::Count,
        "the store's current revision, as last seen"
    );
    describe_counter!(
        STORE_LIST_RECORDS,
        Unit::Count,
        "records of filtered lists on etcd, by source: cache (held by this process at that revision) or etcd (read)"
    );
}

/// One ingest batch's figures.
#[derive(Debug, Clone, Default)]
pub struct IngestFigures {
    /// Records by outcome: every outcome, zeros included.
    pub records: Vec<(&'static str, u64)>,
    pub describe_calls: u64,
    pub lag_max_ms: Option<u64>,
    pub lag_p50_ms: Option<u64>,
    pub took: Duration,
}

/// One ingest invocation: its records by outcome, lag and duration.
pub fn ingest(f: &IngestFigures) {
    for (outcome, n) in &f.records {
        // Every outcome, zeros included (each is its own EMF document).
        counter!(INGEST_RECORDS, "outcome" => *outcome).increment(*n);
    }
    if f.describe_calls > 0 {
        counter!(INGEST_DESCRIBE_CALLS).increment(f.describe_calls);
    }
    if let Some(ms) = f.lag_max_ms {
        gauge!(INGEST_LAG_MAX).set(ms as f64 / 1000.0);
    }
    if let Some(ms) = f.lag_p50_ms {
        gauge!(INGEST_LAG_P50).set(ms as f64 / 1000.0);
    }
    histogram!(INGEST_DURATION).record(f.took.as_secs_f64());
}

/// One reconcile run's figures.
#[derive(Debug, Clone, Default)]
pub struct ReconcileFigures {
    pub inserted: u64,
    pub updated: u64,
    pub deleted: u64,
    pub unchanged: u64,
    pub errors: u64,
    pub api_calls: u64,
    /// Calls through the budget, by ECS operation.
    pub calls: BTreeMap<String, u64>,
    pub throttles: u64,
    pub clusters_done: u64,
    pub clusters: u64,
    pub pass_complete: bool,
    pub duration_ms: u64,
    pub compacted_to: Option<i64>,
}

/// One reconcile run: drift by change (every change, zeros included),
/// errors, calls, duration, compaction.
pub fn reconcile(f: &ReconcileFigures) {
    for (change, n) in [
        ("inserted", f.inserted),
        ("updated", f.updated),
        ("deleted", f.deleted),
    ] {
        counter!(RECONCILE_DRIFT, "change" => change).increment(n);
    }
    counter!(RECONCILE_UNCHANGED).increment(f.unchanged);
    counter!(RECONCILE_ERRORS).increment(f.errors);
    counter!(RECONCILE_API_CALLS).increment(f.api_calls);
    for (operation, n) in &f.calls {
        counter!(RECONCILE_CALLS, "operation" => operation.clone()).increment(*n);
    }
    counter!(RECONCILE_THROTTLES).increment(f.throttles);
    gauge!(RECONCILE_PASS_CLUSTERS_DONE).set(f.clusters_done as f64);
    gauge!(RECONCILE_PASS_CLUSTERS).set(f.clusters as f64);
    counter!(RECONCILE_PASSES).increment(u64::from(f.pass_complete));
    histogram!(RECONCILE_DURATION).record(f.duration_ms as f64 / 1000.0);
    if let Some(rev) = f.compacted_to {
        gauge!(COMPACTED_REVISION).set(rev as f64);
    }
}

/// The etcd members' figures, as `health::Health` reads them.
#[derive(Debug, Clone, Default)]
pub struct EtcdFigures {
    pub members: u64,
    pub members_up: u64,
    pub has_leader: bool,
    pub db_size_max: u64,
    pub quota_used: f64,
    pub raft_index_lag: u64,
}

pub fn etcd_health(f: &EtcdFigures) {
    gauge!(ETCD_MEMBERS).set(f.members as f64);
    gauge!(ETCD_MEMBERS_DOWN).set(f.members.saturating_sub(f.members_up) as f64);
    gauge!(ETCD_HAS_LEADER).set(if f.has_leader { 1.0 } else { 0.0 });
    gauge!(ETCD_DB_SIZE).set(f.db_size_max as f64);
    gauge!(ETCD_QUOTA_USED).set(f.quota_used);
    gauge!(ETCD_RAFT_LAG).set(f.raft_index_lag as f64);
    counter!(ETCD_LEADER_CHANGES).increment(0);
    counter!(ETCD_DEFRAGMENTATIONS).increment(0);
}

pub fn etcd_leader_change() {
    counter!(ETCD_LEADER_CHANGES).increment(1);
}

/// The etcd TLS material was read again after a refused handshake.
pub fn etcd_tls_reload() {
    counter!(ETCD_TLS_RELOADS).increment(1);
}

/// A certificate renewal run: days until the earliest certificate of the
/// store's PKI expires (after the run), and how many it issued again.
pub fn etcd_certificates(days_left: f64, renewed: usize) {
    gauge!(ETCD_CERT_DAYS_LEFT).set(days_left);
    counter!(ETCD_CERTS_RENEWED).increment(renewed as u64);
}

pub fn etcd_defragmented() {
    counter!(ETCD_DEFRAGMENTATIONS).increment(1);
}

/// The last good backup's age, and in intervals (the alarm's figure).
pub fn backup_age(age: Option<Duration>, interval: Duration) {
    if let Some(age) = age {
        gauge!(BACKUP_AGE).set(age.as_secs_f64());
        let intervals = age.as_secs_f64() / interval.as_secs_f64().max(1.0);
        gauge!(BACKUP_AGE_INTERVALS).set(intervals);
    }
}

/// A backup taken (its size) or failed.
pub fn backup(bytes: Option<u64>) {
    match bytes {
        Some(b) => gauge!(BACKUP_BYTES).set(b as f64),
        None => counter!(BACKUP_FAILURES).increment(1),
    }
    counter!(BACKUP_FAILURES).increment(0);
}

/// One API request.
pub fn http(route: &'static str, status: u16, took: Duration) {
    let class = match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    };
    counter!(HTTP_REQUESTS, "route" => route, "status" => class).increment(1);
    histogram!(HTTP_LATENCY, "route" => route).record(took.as_secs_f64());
}

/// One watch answer: why it was sent, and how many events it carried.
pub fn watch_answer(cause: &'static str, events: usize, revision: i64) {
    counter!(WATCH_ANSWERS, "cause" => cause).increment(1);
    counter!(WATCH_EVENTS).increment(events as u64);
    gauge!(STORE_REVISION).set(revision as f64);
}

pub fn watch_expired() {
    counter!(WATCH_EXPIRED).increment(1);
}

pub fn subscription(action: &'static str) {
    counter!(SUBSCRIPTIONS, "action" => action).increment(1);
}

/// A filtered list's records: how many the record cache had, how many were read.
pub fn list_records(cached: usize, read: usize) {
    counter!(STORE_LIST_RECORDS, "source" => "cache").increment(cached as u64);
    counter!(STORE_LIST_RECORDS, "source" => "etcd").increment(read as u64);
}

pub fn store_error(kind: &'static str) {
    counter!(STORE_ERRORS, "kind" => kind).increment(1);
}

/// The EMF exporter of this process, when one is installed.
static EMF: OnceLock<&'static metrics_cloudwatch_embedded::Collector> = OnceLock::new();

/// Installs the CloudWatch EMF exporter (Lambda): `namespace` from the
/// template, the function's name as the one dimension.
pub fn install_emf(namespace: &str, function: &str) -> Result<(), String> {
    if EMF.get().is_some() {
        return Ok(());
    }
    // Zeros too: every counter of a run or batch has a datapoint, so a sum
    // of them (the drift alarm) exists whichever outcomes happened; a
    // missing datapoint then means "did not run".
    let collector = metrics_cloudwatch_embedded::Builder::new()
        .cloudwatch_namespace(namespace.to_string())
        .emit_zeros(true)
        .with_dimension("Function", function.to_string())
        .init()
        .map_err(|e| format!("cannot install the metrics exporter: {e}"))?;
    describe();
    let _ = EMF.set(collector);
    Ok(())
}

/// Writes what was recorded since the last flush as EMF lines on `out`
/// (stdout in Lambda, where CloudWatch Logs turns them into metrics).
pub fn flush_to(out: impl std::io::Write) {
    if let Some(c) = EMF.get() {
        if let Err(e) = c.flush(out) {
            tracing::warn!(error = %e, "metrics not written");
        }
    }
}

/// `flush_to` stdout: after every Lambda invocation. Buffered, so the
/// invocation's lines cost one write instead of one per line.
pub fn flush() {
    if EMF.get().is_none() {
        return;
    }
    let mut out = std::io::BufWriter::with_capacity(16 * 1024, std::io::stdout().lock());
    flush_to(&mut out);
    if let Err(e) = std::io::Write::flush(&mut out) {
        tracing::warn!(error = %e, "metrics not written");
    }
}
