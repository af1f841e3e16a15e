//! One set of settings for every function and server mode (SPEC §7): each is
//! an environment variable, and in server mode a flag of the same name.

use std::sync::Arc;
use std::time::Duration;

use clap::Args;

use crate::store::etcd::EtcdSettings;
use crate::store::{EmbeddedStore, EtcdStore, StateStore, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0} is required")]
    Missing(&'static str),
    #[error("{name} is invalid: {reason}")]
    Invalid { name: &'static str, reason: String },
    #[error("cannot reach the state store: {0}")]
    Store(#[from] StoreError),
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (examples: 90s, 15m, 1h)"))
}

/// A value that `Debug` (and so every log of the settings) never prints.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Self {
        Secret(s)
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("\"***\"")
    }
}

/// Settings shared by the Lambdas and server mode.
#[derive(Debug, Clone, Args)]
pub struct StoreArgs {
    /// etcd endpoints, comma-separated (e.g. http://10.0.0.5:2379). Without
    /// them server mode uses its embedded store; the Lambdas require them.
    #[arg(
        long,
        env = "CSS_ETCD_ENDPOINTS",
        value_delimiter = ',',
        value_name = "CSS_ETCD_ENDPOINTS"
    )]
    pub etcd_endpoints: Vec<String>,
    /// etcd user name (with CSS_ETCD_PASSWORD).
    #[arg(long, env = "CSS_ETCD_USERNAME", value_name = "CSS_ETCD_USERNAME")]
    pub etcd_username: Option<String>,
    /// etcd password.
    #[arg(
        long,
        env = "CSS_ETCD_PASSWORD",
        hide_env_values = true,
        value_name = "CSS_ETCD_PASSWORD"
    )]
    pub etcd_password: Option<Secret>,
    /// PEM file of the CA that signed etcd's certificate. TLS follows the
    /// endpoints' `https://` scheme; without this file the system's roots
    /// verify the server.
    #[arg(long, env = "CSS_ETCD_CA_FILE", value_name = "CSS_ETCD_CA_FILE")]
    pub etcd_ca_file: Option<String>,
    /// PEM client certificate for mutual TLS (with CSS_ETCD_KEY_FILE).
    #[arg(long, env = "CSS_ETCD_CERT_FILE", value_name = "CSS_ETCD_CERT_FILE")]
    pub etcd_cert_file: Option<String>,
    /// PEM client key for mutual TLS.
    #[arg(long, env = "CSS_ETCD_KEY_FILE", value_name = "CSS_ETCD_KEY_FILE")]
    pub etcd_key_file: Option<String>,
    /// Timeout of one etcd request.
    #[arg(long, env = "CSS_ETCD_TIMEOUT", default_value = "5s", value_parser = parse_duration, value_name = "CSS_ETCD_TIMEOUT")]
    pub etcd_timeout: Duration,
    /// Key prefix of everything the service stores.
    #[arg(
        long,
        env = "CSS_KEY_PREFIX",
        default_value = "/ecs-css/v1/",
        value_name = "CSS_KEY_PREFIX"
    )]
    pub key_prefix: String,
    /// DynamoDB table of subscription cursors (partition key `id`). The watch
    /// Lambda requires it; server mode keeps cursors in memory without it.
    #[arg(long, env = "CSS_CURSOR_TABLE", value_name = "CSS_CURSOR_TABLE")]
    pub cursor_table: Option<String>,
    /// Live subscriptions one principal (an IAM role or user) may hold;
    /// beyond, creating one answers 429 TooManySubscriptions.
    #[arg(long, env = "CSS_SUBSCRIPTIONS_PER_OWNER", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..), value_name = "CSS_SUBSCRIPTIONS_PER_OWNER")]
    pub subscriptions_per_owner: u32,
    /// How much store history to keep for watches and paginated lists.
    #[arg(long, env = "CSS_HISTORY_RETENTION", default_value = "1h", value_parser = parse_duration, value_name = "CSS_HISTORY_RETENTION")]
    pub history_retention: Duration,
    /// Log level or filter (e.g. info, debug, css=trace); RUST_LOG also works.
    #[arg(long, env = "CSS_LOG_LEVEL", value_name = "CSS_LOG_LEVEL")]
    pub log_level: Option<String>,
}

/// Parses settings from the environment alone (the Lambdas), returning a
/// one-line error naming the setting.
pub fn from_env<T: Args>() -> Result<T, String> {
    #[derive(clap::Parser)]
    struct Wrapper<T: Args> {
        #[command(flatten)]
        inner: T,
    }
    use clap::Parser;
    Wrapper::<T>::try_parse_from(["css"])
        .map(|w| w.inner)
        .map_err(|e| first_line(&e.to_string()))
}

fn first_line(s: &str) -> String {
    s.lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("invalid configuration")
        .trim_start_matches("error: ")
        .to_string()
}

fn read_file(name: &'static str, path: &str) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(path).map_err(|e| ConfigError::Invalid {
        name,
        reason: format!("cannot read {path}: {e}"),
    })
}

/// A setting given as an empty string (as templates do for optional ones)
/// counts as not given.
fn given(v: &Option<String>) -> Option<&str> {
    v.as_deref().filter(|s| !s.trim().is_empty())
}

impl StoreArgs {
    /// The Lambdas' settings: the environment alone, empty values dropped.
    pub fn from_env() -> Result<StoreArgs, String> {
        from_env::<StoreArgs>().map(StoreArgs::normalized)
    }

    /// Drops empty values, so `CSS_ETCD_USERNAME=""` means "no username".
    pub fn normalized(mut self) -> Self {
        if self
            .etcd_password
            .as_ref()
            .is_some_and(|p| p.expose().trim().is_empty())
        {
            self.etcd_password = None;
        }
        for f in [
            &mut self.etcd_username,
            &mut self.etcd_ca_file,
            &mut self.etcd_cert_file,
            &mut self.etcd_key_file,
            &mut self.cursor_table,
            &mut self.log_level,
        ] {
            if given(f).is_none() {
                *f = None;
            }
        }
        self.etcd_endpoints.retain(|e| !e.trim().is_empty());
        self
    }

    fn validate(&self) -> Result<(), ConfigError> {
        for ep in &self.etcd_endpoints {
            let ep = ep.trim();
            if ep.is_empty() || ep.contains(char::is_whitespace) {
                return Err(ConfigError::Invalid {
                    name: "CSS_ETCD_ENDPOINTS",
                    reason: format!("bad endpoint {ep:?}"),
                });
            }
        }
        if self.etcd_username.is_some() != self.etcd_password.is_some() {
            return Err(ConfigError::Invalid {
                name: "CSS_ETCD_USERNAME",
                reason: "CSS_ETCD_USERNAME and CSS_ETCD_PASSWORD go together".into(),
            });
        }
        if self.etcd_cert_file.is_some() != self.etcd_key_file.is_some() {
            return Err(ConfigError::Invalid {
                name: "CSS_ETCD_CERT_FILE",
                reason: "CSS_ETCD_CERT_FILE and CSS_ETCD_KEY_FILE go together".into(),
            });
        }
        self.tls()?;
        if self.key_prefix.is_empty() || !self.key_prefix.starts_with('/') {
            return Err(ConfigError::Invalid {
                name: "CSS_KEY_PREFIX",
                reason: "must start with '/'".into(),
            });
        }
        Ok(())
    }

    /// Whether etcd is reached over TLS: it follows the endpoints' scheme
    /// (`https://`). An endpoint without a scheme takes TLS when a CA or client
    /// certificate is given, as etcd's own client does.
    fn tls(&self) -> Result<bool, ConfigError> {
        let tls_files = self.etcd_ca_file.is_some() || self.etcd_cert_file.is_some();
        let mut schemes = self.etcd_endpoints.iter().map(|e| {
            let e = e.trim();
            if e.starts_with("https://") {
                true
            } else if e.starts_with("http://") {
                false
            } else {
                tls_files
            }
        });
        let Some(first) = schemes.next() else {
            return Ok(false);
        };
        if schemes.any(|t| t != first) {
            return Err(ConfigError::Invalid {
                name: "CSS_ETCD_ENDPOINTS",
                reason: "mixes http:// and https:// endpoints; use one scheme".into(),
            });
        }
        if !first && tls_files {
            let name = if self.etcd_ca_file.is_some() {
                "CSS_ETCD_CA_FILE"
            } else {
                "CSS_ETCD_CERT_FILE"
            };
            return Err(ConfigError::Invalid {
                name,
                reason: "TLS settings need https:// endpoints (TLS follows the scheme of CSS_ETCD_ENDPOINTS)".into(),
            });
        }
        Ok(first)
    }

    pub fn etcd_settings(&self) -> Result<EtcdSettings, ConfigError> {
        self.validate()?;
        let client_cert_pem = match (&self.etcd_cert_file, &self.etcd_key_file) {
            (Some(c), Some(k)) => Some((
                read_file("CSS_ETCD_CERT_FILE", c)?,
                read_file("CSS_ETCD_KEY_FILE", k)?,
            )),
            _ => None,
        };
        Ok(EtcdSettings {
            endpoints: self
                .etcd_endpoints
                .iter()
                .map(|e| e.trim().to_string())
                .collect(),
            username: self.etcd_username.clone(),
            password: self.etcd_password.as_ref().map(|p| p.expose().to_string()),
            tls: self.tls()?,
            ca_pem: self
                .etcd_ca_file
                .as_deref()
                .map(|p| read_file("CSS_ETCD_CA_FILE", p))
                .transpose()?,
            client_cert_pem,
            request_timeout: self.etcd_timeout,
        })
    }

    /// The etcd store; the Lambdas always use etcd.
    pub async fn connect_etcd(&self) -> Result<Arc<EtcdStore>, ConfigError> {
        if self.etcd_endpoints.is_empty() {
            return Err(ConfigError::Missing("CSS_ETCD_ENDPOINTS"));
        }
        let settings = self.etcd_settings()?;
        Ok(Arc::new(
            EtcdStore::connect(&settings, &self.key_prefix).await?,
        ))
    }

    /// etcd when endpoints are given, else the embedded store (server mode).
    pub async fn connect_any(&self) -> Result<Arc<dyn StateStore>, ConfigError> {
        if self.etcd_endpoints.is_empty() {
            self.validate()?;
            return Ok(Arc::new(EmbeddedStore::new(&self.key_prefix)));
        }
        Ok(self.connect_etcd().await?)
    }
}

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

/// Structured logs: JSON in Lambda (with the runtime's request-id spans),
/// plain text for people in server mode.
pub fn init_logging(json: bool, level: Option<&str>) {
    use tracing_subscriber::{layer::SubscriberExt, util::SubscriberInitExt};
    let wanted = level
        .map(str::to_owned)
        .or_else(|| std::env::var("RUST_LOG").ok());
    let (filter, refused) = log_filter(wanted.as_deref());
    let builder = tracing_subscriber::fmt().with_writer(std::io::stderr);
    let _ = if json {
        builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .finish()
            .with(filter)
            .try_init()
    } else {
        builder.finish().with(filter).try_init()
    };
    if let Some((spec, e)) = refused {
        tracing::warn!(log_level = %spec, error = %e, "not a log filter; logging at info");
    }
}

/// The log filter for CSS_LOG_LEVEL / RUST_LOG: a level, or `target=level`
/// pairs. `Targets` parses these without EnvFilter's regex engine, which was
/// ~0.5 MB of every Lambda binary. What does not parse falls back to info and
/// is handed back, to be logged once logging is up.
fn log_filter(
    spec: Option<&str>,
) -> (
    tracing_subscriber::filter::Targets,
    Option<(String, tracing_subscriber::filter::ParseError)>,
) {
    use tracing_subscriber::filter::Targets;
    let info = || Targets::new().with_default(tracing::Level::INFO);
    // An empty filter would enable nothing: treat it as unset.
    let spec = spec.map(str::trim).filter(|s| !s.is_empty());
    match spec.map(|s| (s, s.parse::<Targets>())) {
        None => (info(), None),
        Some((_, Ok(targets))) => (targets, None),
        Some((s, Err(e))) => (info(), Some((s.to_owned(), e))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_filters_take_levels_and_targets() {
        use tracing::Level;
        let (f, refused) = log_filter(Some("warn,css::ingest=debug"));
        assert!(refused.is_none());
        assert!(f.would_enable("css::ingest", &Level::DEBUG));
        assert!(!f.would_enable("css::api", &Level::INFO));
        assert!(f.would_enable("hyper", &Level::WARN));

        for unset in [None, Some(""), Some("  ")] {
            let (f, refused) = log_filter(unset);
            assert!(refused.is_none());
            assert!(f.would_enable("css", &Level::INFO));
            assert!(!f.would_enable("css", &Level::DEBUG));
        }

        let (f, refused) = log_filter(Some("css=loud"));
        assert_eq!(refused.map(|(s, _)| s).as_deref(), Some("css=loud"));
        assert!(f.would_enable("css", &Level::INFO));
        assert!(!f.would_enable("css", &Level::DEBUG));
    }

    #[test]
    fn first_line_of_clap_errors() {
        assert_eq!(
            first_line("error: invalid value\n\nUsage: x"),
            "invalid value"
        );
    }

    #[test]
    fn validation_names_the_setting() {
        let mut args = args(&["http://127.0.0.1:2379"]);
        args.etcd_username = Some("u".into());
        assert!(args
            .etcd_settings()
            .unwrap_err()
            .to_string()
            .contains("CSS_ETCD_USERNAME"));
        args.etcd_username = None;
        args.etcd_ca_file = Some("/nonexistent/ca.pem".into());
        assert!(args
            .etcd_settings()
            .unwrap_err()
            .to_string()
            .contains("CSS_ETCD_CA_FILE"));
        args.etcd_ca_file = None;
        args.key_prefix = "x".into();
        assert!(args
            .etcd_settings()
            .unwrap_err()
            .to_string()
            .contains("CSS_KEY_PREFIX"));
    }

    fn args(endpoints: &[&str]) -> StoreArgs {
        StoreArgs {
            etcd_endpoints: endpoints.iter().map(|e| e.to_string()).collect(),
            etcd_username: None,
            etcd_password: None,
            etcd_ca_file: None,
            etcd_cert_file: None,
            etcd_key_file: None,
            etcd_timeout: Duration::from_secs(5),
            key_prefix: "/x/".into(),
            cursor_table: None,
            subscriptions_per_owner: 100,
            history_retention: Duration::from_secs(3600),
            log_level: None,
        }
    }

    #[test]
    fn tls_follows_the_https_scheme() {
        let https = args(&["https://10.0.0.5:2379", "https://10.0.0.6:2379"])
            .etcd_settings()
            .unwrap();
        assert!(
            https.tls,
            "https:// without a CA file: TLS on the system's roots"
        );
        assert!(https.ca_pem.is_none());
        assert!(
            !args(&["http://127.0.0.1:2379"])
                .etcd_settings()
                .unwrap()
                .tls
        );
        assert!(!args(&["127.0.0.1:2379"]).etcd_settings().unwrap().tls);

        let ca = tempfile_with("ca");
        let mut a = args(&["10.0.0.5:2379"]);
        a.etcd_ca_file = Some(ca.clone());
        assert!(a.etcd_settings().unwrap().tls, "no scheme + CA: TLS");
        a.etcd_endpoints = vec!["http://10.0.0.5:2379".into()];
        let e = a.etcd_settings().unwrap_err().to_string();
        assert!(
            e.contains("CSS_ETCD_CA_FILE") && e.contains("https://"),
            "{e}"
        );
        let e = args(&["http://a:2379", "https://b:2379"])
            .etcd_settings()
            .unwrap_err()
            .to_string();
        assert!(e.contains("CSS_ETCD_ENDPOINTS"), "{e}");
        let _ = std::fs::remove_file(ca);
    }

    fn tempfile_with(text: &str) -> String {
        let path = std::env::temp_dir().join(format!("css-config-test-{}", rand::random::<u64>()));
        std::fs::write(&path, text).unwrap();
        path.to_string_lossy().into_owned()
    }

    #[test]
    fn passwords_over_plain_http_warn_once() {
        let mut a = args(&["http://127.0.0.1:2379"]);
        a.etcd_username = Some("root".into());
        a.etcd_password = Some(Secret("hunter2".into()));
        assert_eq!(a.etcd_settings().unwrap().warnings().len(), 1);
        a.etcd_endpoints = vec!["https://127.0.0.1:2379".into()];
        assert!(a.etcd_settings().unwrap().warnings().is_empty());
        a.etcd_password = None;
        a.etcd_username = None;
        a.etcd_endpoints = vec!["http://127.0.0.1:2379".into()];
        assert!(a.etcd_settings().unwrap().warnings().is_empty());
    }

    #[test]
    fn debug_never_prints_the_password() {
        let mut a = args(&["https://127.0.0.1:2379"]);
        a.etcd_username = Some("root".into());
        a.etcd_password = Some(Secret("hunter2-secret".into()));
        let settings = a.etcd_settings().unwrap();
        for text in [format!("{a:?}"), format!("{a:#?}"), format!("{settings:?}")] {
            assert!(!text.contains("hunter2"), "{text}");
            assert!(text.contains("***"), "{text}");
        }
        assert_eq!(settings.password.as_deref(), Some("hunter2-secret"));
    }
}
