//! css-ingest: SQS-triggered Lambda applying ECS events to etcd.
#![forbid(unsafe_code)]

use aws_lambda_events::event::sqs::SqsEvent;
use css::setup::Wants;
use lambda_runtime::{service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let (_, parts) = css::setup::lambda(Wants::default()).await?;
    let store = parts.store;
    lambda_runtime::run(service_fn(|event: LambdaEvent<SqsEvent>| {
        let store = store.clone();
        async move {
            css::lambda::handle_sqs(store.as_ref(), event.payload)
                .await
                .map_err(Error::from)
        }
    }))
    .await
}
