//! The reconcile function's edge: a scheduled event in, one run for the
//! account of the invoked function's ARN, the summary out (and logged).

use std::time::Duration;

use crate::reconcile::{EcsSource, Reconciler, RunScope, SourceError};
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
        .filter(|a| a.len() == 12 && a.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| SourceError {
            operation: "Invoke",
            message: format!("no account in the function ARN {invoked_function_arn:?}"),
        })?;
    Ok(RunScope {
        account: account.to_string(),
        region: region.to_string(),
    })
}

/// The scheduled function's handler: one run for the account of the invoked
/// function's ARN; answers (and logs) the summary as JSON, or fails after the
/// run when it met errors.
pub async fn handle_scheduled_event(
    store: &dyn StateStore,
    source: &dyn EcsSource,
    event: &serde_json::Value,
    invoked_function_arn: &str,
    region: &str,
    retention: Duration,
) -> Result<serde_json::Value, ReconcileError> {
    let summary = Reconciler {
        store,
        source,
        scope: function_scope(invoked_function_arn, region)?,
        retention,
    }
    .run()
    .await;
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
