//! css-reconcile: scheduled Lambda reconciling the store with the ECS API.
#![forbid(unsafe_code)]

use css::config::ConfigError;
use css::lambda::{handle_scheduled_event, run_deadline, ReconcileSetup};
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
    let backups = args.backups(parts.sdk().await);
    let members = css::setup::members(parts.sdk().await, true)?;
    let ecs = parts.ecs.ok_or(ConfigError::Missing("the ECS API"))?;
    let store = parts.store;
    let setup = ReconcileSetup {
        retention: args.history_retention,
        settings: args.reconcile_settings(),
        backups,
        etcd_quota_bytes: args.etcd_quota_bytes,
        members: members.map(|m| m as _),
    };
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| {
        let (store, ecs, setup) = (store.clone(), &ecs, &setup);
        async move {
            let arn = event.context.invoked_function_arn.clone();
            let deadline = run_deadline(event.context.deadline);
            handle_scheduled_event(
                store.as_ref(),
                ecs.reconcile.as_ref(),
                &event.payload,
                &arn,
                &ecs.region,
                setup,
                Some(deadline),
            )
            .await
            .map_err(Error::from)
        }
    }))
    .await
}
