//! css-watch: API Gateway HTTP API Lambda serving long-poll streams and
//! subscriptions (cursors in DynamoDB).
#![forbid(unsafe_code)]

use std::sync::Arc;

use css::api::{self, AppState, Identity};
use css::config::{init_logging, ConfigError, StoreArgs};
use css::cursor::DynamoCursorStore;
use lambda_http::Error;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args = StoreArgs::from_env()?;
    init_logging(true, args.log_level.as_deref());
    let table = args
        .cursor_table
        .clone()
        .ok_or(ConfigError::Missing("CSS_CURSOR_TABLE"))?;
    let store = args.connect_etcd().await?;
    let sdk = css::config::aws_sdk_config().await;
    let cursors = Arc::new(DynamoCursorStore::new(
        aws_sdk_dynamodb::Client::new(&sdk),
        table,
    ));
    let app = api::router(AppState {
        store,
        cursors: Some(cursors),
        identity: Identity::Iam,
        subscription_ttl: api::DEFAULT_SUBSCRIPTION_TTL,
        subscriptions_per_owner: args.subscriptions_per_owner as usize,
    });
    lambda_http::run(css::lambda::service(app)).await
}
