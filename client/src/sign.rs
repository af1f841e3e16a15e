//! SigV4 for API Gateway (service `execute-api`), with the AWS SDK's signer
//! and its standard credential and region chain.

use std::time::SystemTime;

use aws_credential_types::provider::ProvideCredentials;
use aws_credential_types::Credentials;
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;

use crate::Error;

pub const SERVICE: &str = "execute-api";

/// Signs requests with credentials from the standard chain (environment,
/// profile, SSO, web identity, container and instance roles).
#[derive(Clone)]
pub struct Signer {
    provider: aws_credential_types::provider::SharedCredentialsProvider,
    pub region: String,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("region", &self.region)
            .finish()
    }
}

impl Signer {
    /// `region`: from the endpoint's host when it names one, else the chain's.
    pub async fn from_environment(region: Option<String>) -> Result<Signer, Error> {
        use aws_smithy_http_client::tls;
        // Credential providers (SSO, IMDS, container) speak HTTPS: rustls
        // with ring, as the service itself (no aws-lc-rs).
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(tls::Provider::Rustls(
                tls::rustls_provider::CryptoMode::Ring,
            ))
            .build_https();
        let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .http_client(http)
            .load()
            .await;
        let region = region
            .or_else(|| sdk.region().map(|r| r.to_string()))
            .ok_or_else(|| {
                Error::Credentials(
                    "no AWS region: set AWS_REGION or use an execute-api endpoint URL".into(),
                )
            })?;
        let provider = sdk.credentials_provider().ok_or_else(|| {
            Error::Credentials("no AWS credentials provider is configured".into())
        })?;
        Ok(Signer { provider, region })
    }

    pub async fn credentials(&self) -> Result<Credentials, Error> {
        self.provider
            .provide_credentials()
            .await
            .map_err(|e| Error::Credentials(format!("cannot load AWS credentials: {e}")))
    }

    /// Headers to add to the request.
    pub async fn headers(
        &self,
        method: &str,
        url: &str,
        body: &[u8],
    ) -> Result<Vec<(String, String)>, Error> {
        let creds = self.credentials().await?;
        sign_headers(
            method,
            url,
            &[],
            body,
            &creds,
            &self.region,
            SERVICE,
            SystemTime::now(),
        )
    }
}

/// SigV4 headers (`authorization`, `x-amz-date`, and the session token if
/// any) for a request; `headers` are the request's own, to be signed too.
#[allow(clippy::too_many_arguments)]
pub fn sign_headers(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    creds: &Credentials,
    region: &str,
    service: &str,
    time: SystemTime,
) -> Result<Vec<(String, String)>, Error> {
    let identity = creds.clone().into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(service)
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| Error::Credentials(format!("signing: {e}")))?
        .into();
    let request = SignableRequest::new(
        method,
        url,
        headers.iter().copied(),
        SignableBody::Bytes(body),
    )
    .map_err(|e| Error::Credentials(format!("signing: {e}")))?;
    let (instructions, _) = sign(request, &params)
        .map_err(|e| Error::Credentials(format!("signing: {e}")))?
        .into_parts();
    Ok(instructions
        .headers()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect())
}

/// The region of an API Gateway endpoint URL
/// (`https://{id}.execute-api.{region}.amazonaws.com[.cn]/...`), if it is one.
pub fn execute_api_region(endpoint: &str) -> Option<String> {
    let host = endpoint
        .split_once("://")
        .map_or(endpoint, |(_, rest)| rest)
        .split(['/', ':'])
        .next()?;
    let mut parts = host.split('.');
    let (_id, service, region) = (parts.next()?, parts.next()?, parts.next()?);
    let domain: Vec<&str> = parts.collect();
    let aws = matches!(
        domain.as_slice(),
        ["amazonaws", "com"] | ["amazonaws", "com", "cn"]
    );
    (service == SERVICE && aws && !region.is_empty()).then(|| region.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_of_execute_api_hosts() {
        assert_eq!(
            execute_api_region("https://abc123.execute-api.eu-west-1.amazonaws.com/prod"),
            Some("eu-west-1".into())
        );
        assert_eq!(
            execute_api_region("https://abc.execute-api.cn-north-1.amazonaws.com.cn"),
            Some("cn-north-1".into())
        );
        assert_eq!(execute_api_region("http://127.0.0.1:3000"), None);
        assert_eq!(execute_api_region("https://api.example.com/v1"), None);
    }
}
