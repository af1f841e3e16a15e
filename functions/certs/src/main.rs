//! css-certs: the CloudFormation custom resources of the stack's etcd
//! (placement check, certificates in Secrets Manager) and the scheduled
//! renewal of its certificates.
#![forbid(unsafe_code)]

use lambda_runtime::{service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let env = |k: &str| std::env::var(k).ok();
    css::config::init_logging(true, env("CSS_LOG_LEVEL").as_deref());
    if let (Some(namespace), Some(function)) = (
        env("CSS_METRICS_NAMESPACE"),
        env("AWS_LAMBDA_FUNCTION_NAME"),
    ) {
        css::metrics::install_emf(&namespace, &function)?;
    }
    let policy = css_certs::Policy::from_days(
        env("CSS_CERT_VALIDITY_DAYS").as_deref(),
        env("CSS_CERT_RENEW_DAYS").as_deref(),
    )?;
    let sdk = css::config::aws_sdk_config().await;
    let http = reqwest::Client::new();
    let clients = css_certs::Clients {
        sm: aws_sdk_secretsmanager::Client::new(&sdk),
        ec2: css_certs::placement::Ec2::new(&sdk, http.clone())?,
        http,
        deadline: css_certs::resource::DEADLINE,
        policy,
    };
    // Any JSON: a request that does not parse is still answered, FAILED.
    lambda_runtime::run(service_fn(|event: LambdaEvent<serde_json::Value>| {
        let clients = &clients;
        async move {
            let out = css_certs::invoke(clients, event.payload).await;
            css::metrics::flush();
            out.map_err(Error::from)
        }
    }))
    .await
}
