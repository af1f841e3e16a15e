//! css-watch: API Gateway HTTP API Lambda serving long-poll streams and
//! subscriptions (cursors in DynamoDB).
#![forbid(unsafe_code)]

use css::api::{self, AppState, Identity};
use css::setup::{CursorChoice, Wants};
use lambda_http::Error;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let (args, parts) = css::setup::lambda(Wants {
        cursors: CursorChoice::Dynamo,
        ..Wants::default()
    })
    .await?;
    let app = api::router(AppState::new(&parts, Identity::Iam, &args));
    lambda_http::run(css::lambda::service(app)).await
}
