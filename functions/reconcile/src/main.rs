//! css-reconcile: scheduled Lambda reconciling the store with the ECS API.
#![forbid(unsafe_code)]

use css::config::{init_logging, StoreArgs};
use css::lambda::handle_scheduled_event;
use css::reconcile::aws::AwsEcs;
use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args = StoreArgs::from_env()?;
    init_logging(true, args.log_level.as_deref());
    let store = args.connect_etcd().await?;
    let sdk = css::config::aws_sdk_config().await;
    let region = css::config::region(&sdk)?;
    let ecs = AwsEcs::new(&sdk);
    let retention = args.history_retention;
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| {
        let (store, ecs, region) = (store.clone(), &ecs, region.clone());
        async move {
            let arn = event.context.invoked_function_arn.clone();
            handle_scheduled_event(
                store.as_ref(),
                ecs,
                &event.payload,
                &arn,
                &region,
                retention,
            )
            .await
            .map_err(Error::from)
        }
    }))
    .await
}
