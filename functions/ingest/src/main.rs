//! css-ingest: SQS-triggered Lambda applying ECS events to etcd (services
//! named by service and deployment events are described in their own
//! account: this one, or a member's through its read role).
#![forbid(unsafe_code)]

use aws_lambda_events::event::sqs::SqsEvent;
use css::config::ConfigError;
use css::ecs::members::Members;
use css::ingest::Describer;
use css::lambda::{function_scope, handle_sqs_with};
use css::setup::{EcsChoice, Wants};
use lambda_runtime::{service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let (_, parts) = css::setup::lambda(Wants {
        ecs: EcsChoice::InRegion,
        ..Wants::default()
    })
    .await?;
    let members = css::setup::members(parts.sdk().await, false)?;
    let ecs = parts.ecs.ok_or(ConfigError::Missing("the ECS API"))?;
    let store = parts.store;
    lambda_runtime::run(service_fn(|event: LambdaEvent<SqsEvent>| {
        let members: Option<&dyn Members> = members.as_deref().map(|m| m as _);
        let (store, ecs) = (store.clone(), &ecs);
        async move {
            let scope = function_scope(&event.context.invoked_function_arn, &ecs.region)?;
            let describer = Describer {
                ecs: ecs.source.as_ref(),
                scope: &scope,
                members,
            };
            handle_sqs_with(store.as_ref(), Some(describer), event.payload)
                .await
                .map_err(Error::from)
        }
    }))
    .await
}
