//! AWS SDK set-up shared by every process: one HTTPS client, the SDK
//! configuration from the environment, and the region it names.

use super::ConfigError;

/// The HTTPS client every AWS SDK client uses: hyper 1.x on rustls with
/// ring (the SDK's default features would add aws-lc-rs and a second,
/// legacy hyper stack to every binary).
pub fn aws_http_client() -> aws_smithy_runtime_api::client::http::SharedHttpClient {
    use aws_smithy_http_client::tls;
    aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https()
}

/// AWS settings from the environment (region, credentials, endpoint
/// overrides such as AWS_ENDPOINT_URL), on `aws_http_client`.
pub async fn aws_sdk_config() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(aws_http_client())
        .load()
        .await
}

/// The region of the SDK configuration (AWS_REGION and friends).
pub fn region(sdk: &aws_config::SdkConfig) -> Result<String, ConfigError> {
    sdk.region()
        .map(|r| r.to_string())
        .ok_or(ConfigError::Missing("AWS_REGION"))
}
