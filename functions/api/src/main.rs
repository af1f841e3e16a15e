//! css-api: API Gateway HTTP API Lambda serving list and describe.
#![forbid(unsafe_code)]

use css::api::{self, AppState, Identity};
use css::setup::Wants;
use lambda_http::Error;

#[tokio::main]
async fn main() -> Result<(), Error> {
    // Subscriptions are served by css-watch, which has the cursor table.
    let (args, parts) = css::setup::lambda(Wants::default()).await?;
    let app = api::router(AppState::new(&parts, Identity::Iam, &args));
    lambda_http::run(css::lambda::service(app)).await
}
