//! The service's metrics, defined once: names, units and meanings here,
//! recorded through the `metrics` facade where things happen. Lambda exports
//! them as CloudWatch Embedded Metric Format lines on stdout after each
//! invocation (`install_emf`, `flush`: no PutMetricData on the hot path);
//! server mode as Prometheus text at `GET /metrics`. Without an exporter
//! installed, recording costs next to nothing.

use std::sync::OnceLock;
use std::time::Duration;

use metrics::Unit;
use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};

use crate::ingest::IngestStats;
use crate::reconcile::Summary;

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
pub const COMPACTED_REVISION: &str = "store_compacted_revision";
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

/// One JSON log line whose fields are the batch's figures (Logs Insights
/// can filter and aggregate them).
pub fn log_ingest(stats: &IngestStats) {
    tracing::info!(
        received = stats.received,
        inserted = stats.inserted,
        updated = stats.updated,
        unchanged = stats.unchanged,
        ignored = stats.ignored,
        malformed = stats.malformed,
        store_failures = stats.store_failures,
        foreign = stats.foreign,
        deleted = stats.deleted,
        describe_calls = stats.describe_calls,
        describe_failures = stats.describe_failures,
        lag_max_ms = stats.lag_max_ms,
        lag_p50_ms = stats.lag_p50_ms,
        "batch applied"
    );
}

/// One JSON log line whose fields are the run's summary.
pub fn log_reconcile(s: &Summary) {
    let first_error = s.errors.first().map(ToString::to_string);
    tracing::info!(
        clusters = s.clusters,
        listed = s.total.listed,
        described = s.total.described,
        inserted = s.total.inserted,
        updated = s.total.updated,
        unchanged = s.total.unchanged,
        deleted = s.total.deleted,
        api_calls = s.api_calls,
        errors = s.errors.len(),
        first_error,
        duration_ms = s.duration_ms,
        compacted_to = s.compaction.as_ref().and_then(|c| c.compacted_to),
        "reconcile run"
    );
}

/// One ingest invocation: its records by outcome, the store errors behind
/// the failed ones by kind, lag and duration.
pub fn ingest(outcome: &crate::ingest::BatchOutcome, took: Duration) {
    let stats = &outcome.stats;
    for (_, f) in &outcome.failures {
        if let crate::ingest::Failure::Store(e) = f {
            store_error(store_error_kind(e));
        }
    }
    let applied = (stats.inserted + stats.updated) as u64;
    for (outcome, n) in [
        ("applied", applied),
        ("stale", stats.unchanged as u64),
        ("ignored", stats.ignored as u64),
        ("malformed", stats.malformed as u64),
        ("failed", stats.store_failures as u64),
        ("deleted", stats.deleted as u64),
        ("foreign", stats.foreign as u64),
        ("describe_failed", stats.describe_failures as u64),
    ] {
        // Every outcome, zeros included (each is its own EMF document).
        counter!(INGEST_RECORDS, "outcome" => outcome).increment(n);
    }
    if stats.describe_calls > 0 {
        counter!(INGEST_DESCRIBE_CALLS).increment(stats.describe_calls as u64);
    }
    if let Some(ms) = stats.lag_max_ms {
        gauge!(INGEST_LAG_MAX).set(ms as f64 / 1000.0);
    }
    if let Some(ms) = stats.lag_p50_ms {
        gauge!(INGEST_LAG_P50).set(ms as f64 / 1000.0);
    }
    histogram!(INGEST_DURATION).record(took.as_secs_f64());
}

/// One reconcile run: its summary as figures.
pub fn reconcile(s: &Summary) {
    for (change, n) in [
        ("inserted", s.total.inserted),
        ("updated", s.total.updated),
        ("deleted", s.total.deleted),
    ] {
        counter!(RECONCILE_DRIFT, "change" => change).increment(n as u64);
    }
    counter!(RECONCILE_UNCHANGED).increment(s.total.unchanged as u64);
    counter!(RECONCILE_ERRORS).increment(s.errors.len() as u64);
    counter!(RECONCILE_API_CALLS).increment(s.api_calls);
    histogram!(RECONCILE_DURATION).record(s.duration_ms as f64 / 1000.0);
    if let Some(rev) = s.compaction.as_ref().and_then(|c| c.compacted_to) {
        gauge!(COMPACTED_REVISION).set(rev as f64);
    }
}

/// One API request.
pub fn http(route: &str, status: u16, took: Duration) {
    let class = match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    };
    counter!(HTTP_REQUESTS, "route" => route.to_string(), "status" => class).increment(1);
    histogram!(HTTP_LATENCY, "route" => route.to_string()).record(took.as_secs_f64());
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

/// The `kind` label of a store error.
pub fn store_error_kind(e: &crate::store::StoreError) -> &'static str {
    use crate::store::StoreError as E;
    match e {
        E::Unavailable(_) => "unavailable",
        E::NoSpace(_) => "nospace",
        E::Contended { .. } => "contended",
        E::Corrupt { .. } => "corrupt",
        E::Compacted { .. } => "compacted",
        E::FutureRevision { .. } => "future_revision",
    }
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
