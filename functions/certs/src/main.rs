//! css-certs: the CloudFormation custom resources of the stack's etcd
//! (placement check, certificates in Secrets Manager).
#![forbid(unsafe_code)]

use lambda_runtime::{service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    css::config::init_logging(true, std::env::var("CSS_LOG_LEVEL").ok().as_deref());
    let sdk = css::config::aws_sdk_config().await;
    let http = reqwest::Client::new();
    let clients = css_certs::Clients {
        sm: aws_sdk_secretsmanager::Client::new(&sdk),
        ec2: css_certs::placement::Ec2::new(&sdk, http.clone())?,
        http,
        deadline: css_certs::resource::DEADLINE,
    };
    // Any JSON: a request that does not parse is still answered, FAILED.
    lambda_runtime::run(service_fn(|event: LambdaEvent<serde_json::Value>| {
        let clients = &clients;
        async move {
            css_certs::handle(clients, event.payload)
                .await
                .map_err(Error::from)
        }
    }))
    .await
}
