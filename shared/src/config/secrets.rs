//! etcd's TLS material and credentials from Secrets Manager, read at
//! start-up (no secret value sits in a function's environment, where
//! GetFunctionConfiguration would show it), and the TLS secret again when
//! etcd refuses a certificate that a renewal replaced.

use std::sync::Arc;

use super::{aws_sdk_config, ConfigError, StoreArgs};
use crate::store::etcd::tls::{TlsMaterial, TlsSource};
use crate::store::etcd::EtcdSettings;

/// CSS_ETCD_TLS_SECRET's JSON: {"ca", and for mutual TLS "cert" and "key"}.
struct TlsSecret {
    ca: Option<String>,
    cert: Option<String>,
    key: Option<String>,
}

/// CSS_ETCD_CREDENTIALS_SECRET's JSON: {"username", "password"}.
struct Credentials {
    username: String,
    password: String,
}

/// A secret's fields. Every error names a field, never a value: serde's
/// own messages quote what they could not read ("invalid type: string
/// \"hunter2\""), which would put a password or key in a log line.
struct Fields(serde_json::Map<String, serde_json::Value>);

impl Fields {
    fn parse(text: &str) -> Result<Fields, String> {
        match serde_json::from_str::<serde_json::Value>(text) {
            Ok(serde_json::Value::Object(m)) => Ok(Fields(m)),
            Ok(_) => Err("not a JSON object".into()),
            // Syntax errors say where, not what.
            Err(e) => Err(format!(
                "not JSON (line {}, column {})",
                e.line(),
                e.column()
            )),
        }
    }

    fn optional(&self, field: &str) -> Result<Option<String>, String> {
        match self.0.get(field) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(serde_json::Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(format!("\"{field}\" is not a string")),
        }
    }

    fn required(&self, field: &str) -> Result<String, String> {
        self.optional(field)?
            .ok_or_else(|| format!("\"{field}\" is missing"))
    }
}

impl TlsSecret {
    fn from(f: &Fields) -> Result<TlsSecret, String> {
        Ok(TlsSecret {
            ca: f.optional("ca")?,
            cert: f.optional("cert")?,
            key: f.optional("key")?,
        })
    }
}

impl Credentials {
    fn from(f: &Fields) -> Result<Credentials, String> {
        Ok(Credentials {
            username: f.required("username")?,
            password: f.required("password")?,
        })
    }
}

async fn fetch<T>(
    client: &aws_sdk_secretsmanager::Client,
    name: &'static str,
    secret: &str,
    read: fn(&Fields) -> Result<T, String>,
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
    Fields::parse(text)
        .and_then(|f| read(&f))
        .map_err(|e| fail(format!("unexpected JSON: {e}")))
}

/// CSS_ETCD_TLS_SECRET, read at start-up and after a refused handshake.
struct SecretTls {
    client: aws_sdk_secretsmanager::Client,
    secret: String,
}

impl SecretTls {
    async fn read(&self) -> Result<TlsMaterial, ConfigError> {
        let name = "CSS_ETCD_TLS_SECRET";
        let tls = fetch(&self.client, name, &self.secret, TlsSecret::from).await?;
        let client_cert_pem = match (tls.cert, tls.key) {
            (Some(c), Some(k)) => Some((c.into_bytes(), k.into_bytes())),
            (None, None) => None,
            _ => {
                return Err(ConfigError::Secret {
                    name,
                    secret: self.secret.clone(),
                    reason: "\"cert\" and \"key\" go together".into(),
                })
            }
        };
        Ok(TlsMaterial {
            ca_pem: tls.ca.map(String::into_bytes),
            client_cert_pem,
        })
    }
}

impl TlsSource for SecretTls {
    fn load(&self) -> futures::future::BoxFuture<'_, Result<TlsMaterial, String>> {
        Box::pin(async move { self.read().await.map_err(|e| e.to_string()) })
    }
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
        let source = SecretTls {
            client: client.clone(),
            secret: secret.clone(),
        };
        let tls = source.read().await?;
        settings.ca_pem = tls.ca_pem;
        settings.client_cert_pem = tls.client_cert_pem;
        settings.tls_source = Some(Arc::new(source));
    }
    if let Some(secret) = &args.etcd_credentials_secret {
        let c = fetch(
            &client,
            "CSS_ETCD_CREDENTIALS_SECRET",
            secret,
            Credentials::from,
        )
        .await?;
        settings.username = Some(c.username);
        settings.password = Some(c.password);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_field_never_the_value() {
        let secret = "hunter2-do-not-log";
        for (text, expected) in [
            (
                format!(r#"{{"username": "u", "password": {{"v": "{secret}"}}}}"#),
                "\"password\" is not a string",
            ),
            (
                format!(r#"{{"username": "{secret}"}}"#),
                "\"password\" is missing",
            ),
            (
                format!(r#"{{"username": "{secret}", "password": 1"#),
                "not JSON (line 1",
            ),
            (format!(r#"["{secret}"]"#), "not a JSON object"),
        ] {
            let err = match Fields::parse(&text).and_then(|f| Credentials::from(&f)) {
                Ok(_) => panic!("{text} was accepted"),
                Err(e) => e,
            };
            assert!(err.contains(expected), "{err}");
            assert!(!err.contains(secret), "the value leaked: {err}");
        }
        for (text, expected) in [
            (
                format!(r#"{{"ca": 7, "key": "{secret}"}}"#),
                "\"ca\" is not a string",
            ),
            (
                format!(r#"{{"ca": "x", "cert": ["{secret}"]}}"#),
                "\"cert\" is not a string",
            ),
        ] {
            let err = match Fields::parse(&text).and_then(|f| TlsSecret::from(&f)) {
                Ok(_) => panic!("{text} was accepted"),
                Err(e) => e,
            };
            assert!(err.contains(expected) && !err.contains(secret), "{err}");
        }
        let ok = Fields::parse(r#"{"ca": "C", "cert": "X", "key": "K"}"#)
            .and_then(|f| TlsSecret::from(&f));
        assert!(ok.is_ok_and(|t| t.ca.as_deref() == Some("C") && t.key.as_deref() == Some("K")));
    }
}
