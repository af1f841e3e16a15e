//! css-reconcile: scheduled Lambda reconciling the store with the ECS API.

use css::config::{from_env, init_logging, StoreArgs};
use css::reconcile::aws::AwsEcs;
use css::reconcile::{Reconciler, RunScope};
use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args: StoreArgs = from_env()?;
    init_logging(true, args.log_level.as_deref());
    let store = args.connect_etcd().await?;
    let sdk = aws_config::load_from_env().await;
    let region = sdk
        .region()
        .map(|r| r.to_string())
        .ok_or("AWS_REGION is required")?;
    let ecs = AwsEcs::new(&sdk);
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| {
        let (store, ecs, region, retention) =
            (store.clone(), &ecs, region.clone(), args.history_retention);
        async move {
            // The run acts only on records of this function's own account.
            let account = event
                .context
                .invoked_function_arn
                .split(':')
                .nth(4)
                .unwrap_or_default()
                .to_string();
            let scope = RunScope { account, region };
            let summary = Reconciler {
                store: store.as_ref(),
                source: ecs,
                scope,
                retention,
            }
            .run()
            .await;
            let json = serde_json::to_value(&summary)?;
            tracing::info!(summary = %json, "reconcile run");
            Ok::<Value, Error>(json)
        }
    }))
    .await
}
