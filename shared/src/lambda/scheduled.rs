//! The reconcile function's edge: a scheduled event in, one run for the
//! account of the invoked function's ARN, the summary out (and logged).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::backup::Backups;
use crate::ecs::members::Members;
use crate::reconcile::{
    run_with_members, EcsSource, Reconciler, RunError, RunScope, Settings, SourceError,
    DEADLINE_MARGIN,
};
use crate::store::StateStore;

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error(transparent)]
    Invoke(#[from] SourceError),
    /// The run wrote what it could; the invocation fails so that Lambda's
    /// Errors metric (and its alarm) sees it.
    #[error("reconcile run finished with {count} error(s), first: {first}")]
    RunErrors {
        count: usize,
        first: String,
        summary: serde_json::Value,
    },
}

/// The account and region a function reads ECS for: the account of its
/// own ARN (each invocation names it), the region it runs in.
pub fn function_scope(invoked_function_arn: &str, region: &str) -> Result<RunScope, SourceError> {
    let account = invoked_function_arn
        .split(':')
        .nth(4)
        .filter(|a| crate::model::is_account(a))
        .ok_or_else(|| {
            let message = format!("no account in the function ARN {invoked_function_arn:?}");
            SourceError::new("Invoke", message)
        })?;
    Ok(RunScope {
        account: account.to_string(),
        region: region.to_string(),
    })
}

/// What the scheduled function was configured with.
#[derive(Clone)]
pub struct ReconcileSetup {
    pub retention: Duration,
    pub settings: Settings,
    /// Where store backups go, when they are on.
    pub backups: Option<Backups>,
    /// etcd's space quota (member health is reported against it).
    pub etcd_quota_bytes: i64,
    /// Member accounts and Regions, each a pass of its own (README
    /// "Organizations"); None: the function's own account and Region alone.
    pub members: Option<std::sync::Arc<dyn Members>>,
}

/// When a run invoked with `deadline_ms` (Lambda's deadline, milliseconds
/// since the epoch) stops its pass: `DEADLINE_MARGIN` before it.
pub fn run_deadline(deadline_ms: u64) -> tokio::time::Instant {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let left = Duration::from_millis(deadline_ms.saturating_sub(now_ms));
    tokio::time::Instant::now() + left.saturating_sub(DEADLINE_MARGIN)
}

/// The scheduled function's handler: one run for the account of the invoked
/// function's ARN, going on with the pass under way until `deadline`;
/// answers (and logs) the summary as JSON, or fails after the run when it
/// met errors.
pub async fn handle_scheduled_event(
    store: &dyn StateStore,
    source: &dyn EcsSource,
    event: &serde_json::Value,
    invoked_function_arn: &str,
    region: &str,
    setup: &ReconcileSetup,
    deadline: Option<tokio::time::Instant>,
) -> Result<serde_json::Value, ReconcileError> {
    let scope = function_scope(invoked_function_arn, region)?;
    // A backup first, when due: it does not wait for a long pass.
    let backup_failed = match &setup.backups {
        Some(b) => backup(store, b).await,
        None => None,
    };
    // Member health each run: the alarms' figures; one member defragmented
    // when due.
    if let Err(e) = crate::health::tick(store, setup.etcd_quota_bytes).await {
        tracing::warn!(error = %e, "member health not read");
    }
    let reconciler = Reconciler {
        store,
        source,
        scope,
        retention: setup.retention,
        settings: setup.settings,
    };
    let mut summary = match &setup.members {
        Some(m) => run_with_members(&reconciler, m.as_ref(), deadline).await,
        None => reconciler.run_until(deadline).await,
    };
    summary.errors.extend(backup_failed);
    summary.record(store).await;
    crate::metrics::flush();
    let json = serde_json::to_value(&summary).unwrap_or_default();
    tracing::debug!(
        event_id = event["id"].as_str().unwrap_or("-"),
        "scheduled event"
    );
    match summary.errors.first() {
        None => Ok(json),
        Some(e) => Err(ReconcileError::RunErrors {
            count: summary.errors.len(),
            first: e.to_string(),
            summary: json,
        }),
    }
}

/// Takes a backup when due (and records the last good one's age); a
/// failure as a run error (the invocation then fails: its alarm).
async fn backup(store: &dyn StateStore, b: &Backups) -> Option<RunError> {
    b.tick(store).await.err().map(|e| RunError {
        cluster: "*".into(),
        operation: "Backup".into(),
        message: e.to_string(),
    })
}
