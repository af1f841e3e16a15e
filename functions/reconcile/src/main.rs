//! css-reconcile: scheduled Lambda reconciling the store with the ECS API.
#![forbid(unsafe_code)]

use css::config::ConfigError;
use css::lambda::handle_scheduled_event;
use css::setup::{EcsChoice, Wants};
use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let (args, parts) = css::setup::lambda(Wants {
        ecs: EcsChoice::InRegion,
        ..Wants::default()
    })
    .await?;
    let ecs = parts.ecs.ok_or(ConfigError::Missing("the ECS API"))?;
    let (store, retention) = (parts.store, args.history_retention);
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| {
        let (store, ecs) = (store.clone(), &ecs);
        async move {
            let arn = event.context.invoked_function_arn.clone();
            handle_scheduled_event(
                store.as_ref(),
                ecs.source.as_ref(),
                &event.payload,
                &arn,
                &ecs.region,
                retention,
            )
            .await
            .map_err(Error::from)
        }
    }))
    .await
}
