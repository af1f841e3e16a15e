//! css-certs: CloudFormation custom resource issuing the etcd cluster's
//! certificates into Secrets Manager.
#![forbid(unsafe_code)]

use aws_lambda_events::event::cloudformation::CloudFormationCustomResourceRequest;
use lambda_runtime::{service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    css::config::init_logging(true, std::env::var("CSS_LOG_LEVEL").ok().as_deref());
    let sdk = css::config::aws_sdk_config().await;
    let sm = aws_sdk_secretsmanager::Client::new(&sdk);
    let http = reqwest::Client::new();
    lambda_runtime::run(service_fn(
        |event: LambdaEvent<
            CloudFormationCustomResourceRequest<serde_json::Value, css_certs::Properties>,
        >| {
            let (sm, http) = (&sm, &http);
            async move {
                css_certs::handle(sm, http, event.payload)
                    .await
                    .map_err(Error::from)
            }
        },
    ))
    .await
}
