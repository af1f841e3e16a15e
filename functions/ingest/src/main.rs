//! css-ingest: SQS-triggered Lambda applying ECS events to etcd.
#![forbid(unsafe_code)]

use aws_lambda_events::event::sqs::SqsEvent;
use css::config::{init_logging, StoreArgs};
use lambda_runtime::{service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args = StoreArgs::from_env()?;
    init_logging(true, args.log_level.as_deref());
    let store = args.connect_etcd().await?;
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
