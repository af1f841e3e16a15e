//! etcd's TLS material and credentials from Secrets Manager, read once at
//! start-up: no secret value sits in a function's environment, where
//! GetFunctionConfiguration would show it.

use serde::Deserialize;

use super::{aws_sdk_config, ConfigError, StoreArgs};
use crate::store::etcd::EtcdSettings;

/// CSS_ETCD_TLS_SECRET's JSON.
#[derive(Deserialize)]
struct TlsSecret {
    ca: Option<String>,
    cert: Option<String>,
    key: Option<String>,
}

/// CSS_ETCD_CREDENTIALS_SECRET's JSON.
#[derive(Deserialize)]
struct Credentials {
    username: String,
    password: String,
}

async fn fetch<T: serde::de::DeserializeOwned>(
    client: &aws_sdk_secretsmanager::Client,
    name: &'static str,
    secret: &str,
) -> Result<T, ConfigError> {
    let fail = |reason: String| ConfigError::Secret {
        name,
        secret: secret.to_string(),
        reason,
    };
    let out = client.get_secret_value().secret_id(secret).send().await;
    let out =
        out.map_err(|e| fail(aws_sdk_secretsmanager::error::DisplayErrorContext(e).to_string()))?;
    let text = out
        .secret_string()
        .ok_or_else(|| fail("not a string secret".into()))?;
    // The error names the field, never the value.
    serde_json::from_str(text).map_err(|e| fail(format!("unexpected JSON ({e})")))
}

/// Fills `settings` from the secrets `args` names (nothing when none).
pub(super) async fn apply(
    settings: &mut EtcdSettings,
    args: &StoreArgs,
    sdk: Option<&aws_config::SdkConfig>,
) -> Result<(), ConfigError> {
    if !args.reads_secrets() {
        return Ok(());
    }
    let loaded;
    let sdk = match sdk {
        Some(s) => s,
        None => {
            loaded = aws_sdk_config().await;
            &loaded
        }
    };
    let client = aws_sdk_secretsmanager::Client::new(sdk);
    if let Some(secret) = &args.etcd_tls_secret {
        let name = "CSS_ETCD_TLS_SECRET";
        let tls: TlsSecret = fetch(&client, name, secret).await?;
        settings.ca_pem = tls.ca.map(String::into_bytes);
        settings.client_cert_pem = match (tls.cert, tls.key) {
            (Some(c), Some(k)) => Some((c.into_bytes(), k.into_bytes())),
            (None, None) => None,
            _ => {
                return Err(ConfigError::Secret {
                    name,
                    secret: secret.clone(),
                    reason: "\"cert\" and \"key\" go together".into(),
                })
            }
        };
    }
    if let Some(secret) = &args.etcd_credentials_secret {
        let c: Credentials = fetch(&client, "CSS_ETCD_CREDENTIALS_SECRET", secret).await?;
        settings.username = Some(c.username);
        settings.password = Some(c.password);
    }
    Ok(())
}
