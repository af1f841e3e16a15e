//! The reconcile function's edge: a scheduled event in, one run for the
//! account of the invoked function's ARN, the summary out (and logged).

use std::time::Duration;

use crate::reconcile::{EcsSource, Reconciler, RunScope, SourceError};
use crate::store::StateStore;

/// The scheduled function's handler: one run for the account of the invoked
/// function's ARN; answers (and logs) the summary as JSON.
pub async fn handle_scheduled_event(
    store: &dyn StateStore,
    source: &dyn EcsSource,
    event: &serde_json::Value,
    invoked_function_arn: &str,
    region: &str,
    retention: Duration,
) -> Result<serde_json::Value, SourceError> {
    let account = invoked_function_arn
        .split(':')
        .nth(4)
        .filter(|a| a.len() == 12 && a.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| SourceError {
            operation: "Invoke",
            message: format!("no account in the function ARN {invoked_function_arn:?}"),
        })?;
    let summary = Reconciler {
        store,
        source,
        scope: RunScope {
            account: account.to_string(),
            region: region.to_string(),
        },
        retention,
    }
    .run()
    .await;
    let json = serde_json::to_value(&summary).unwrap_or_default();
    tracing::info!(event_id = event["id"].as_str().unwrap_or("-"), summary = %json, "reconcile run");
    Ok(json)
}
