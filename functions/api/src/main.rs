//! css-api: API Gateway HTTP API Lambda serving list and describe.
#![forbid(unsafe_code)]

use css::api::{self, AppState, Identity};
use css::config::{init_logging, StoreArgs};
use lambda_http::Error;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args = StoreArgs::from_env()?;
    init_logging(true, args.log_level.as_deref());
    let store = args.connect_etcd().await?;
    // Subscriptions are served by css-watch, which has the cursor table.
    let app = api::router(AppState {
        store,
        cursors: None,
        identity: Identity::Iam,
        subscription_ttl: api::DEFAULT_SUBSCRIPTION_TTL,
        subscriptions_per_owner: args.subscriptions_per_owner as usize,
    });
    lambda_http::run(css::lambda::service(app)).await
}
