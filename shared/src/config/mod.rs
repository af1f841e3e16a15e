//! One set of settings for every function and server mode (docs/reference.md#configuration): each is
//! an environment variable, and in server mode a flag of the same name.

use std::sync::Arc;
use std::time::Duration;

use clap::Args;

mod aws;
mod logging;
mod members;
mod secrets;

pub use aws::{aws_http_client, aws_sdk_config, region};
pub use logging::init_logging;
pub use members::MemberArgs;

use crate::store::etcd::EtcdSettings;
use crate::store::{EmbeddedStore, EtcdStore, StateStore, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A setting clap refused, as its one line naming the setting.
    #[error("{0}")]
    Environment(String),
    #[error("{0} is required")]
    Missing(&'static str),
    #[error("{name} is invalid: {reason}")]
    Invalid { name: &'static str, reason: String },
    #[error("{name}: cannot read secret {secret}: {reason}")]
    Secret {
        name: &'static str,
        secret: String,
        reason: String,
    },
    #[error("cannot reach the state store: {0}")]
    Store(#[from] StoreError),
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (examples: 90s, 15m, 1h)"))
}

fn parse_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if r.is_finite() && (0.1..=1000.0).contains(&r) => Ok(r),
        _ => Err(format!(
            "{s:?} is not a rate from 0.1 to 1000 (calls per second)"
        )),
    }
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
    /// Secrets Manager secret (ARN or name) holding etcd's TLS material as
    /// JSON: "ca" (PEM of the CA that signed etcd's certificate), and for
    /// mutual TLS "cert" and "key" (the client's), instead of the three
    /// files. Read at start-up, and again when etcd refuses the certificate
    /// (a renewal replaced it).
    #[arg(long, env = "CSS_ETCD_TLS_SECRET", value_name = "CSS_ETCD_TLS_SECRET")]
    pub etcd_tls_secret: Option<String>,
    /// Secrets Manager secret (ARN or name) holding etcd credentials as JSON
    /// "username" and "password". Read once at start-up, instead of
    /// CSS_ETCD_USERNAME and CSS_ETCD_PASSWORD.
    #[arg(
        long,
        env = "CSS_ETCD_CREDENTIALS_SECRET",
        value_name = "CSS_ETCD_CREDENTIALS_SECRET"
    )]
    pub etcd_credentials_secret: Option<String>,
    /// Timeout of one etcd request.
    #[arg(long, env = "CSS_ETCD_TIMEOUT", default_value = "5s", value_parser = parse_duration, value_name = "CSS_ETCD_TIMEOUT")]
    pub etcd_timeout: Duration,
    /// MiB of decoded records each process keeps for filtered lists (records
    /// unchanged since the last list are not read from etcd again); 0: none.
    #[arg(long, env = "CSS_RECORD_CACHE_MB", default_value_t = crate::store::etcd::DEFAULT_RECORD_CACHE_MIB, value_parser = clap::value_parser!(u32).range(0..=16384), value_name = "CSS_RECORD_CACHE_MB")]
    pub record_cache_mb: u32,
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
    /// ECS calls per second a reconcile run may make (one bucket for all of
    /// its calls; a ThrottlingException halves the rate for the run).
    #[arg(long, env = "CSS_RECONCILE_CALLS_PER_SECOND", default_value_t = 5.0, value_parser = parse_rate, value_name = "CSS_RECONCILE_CALLS_PER_SECOND")]
    pub reconcile_calls_per_second: f64,
    /// Every entity reconcile keeps is re-described at least this often
    /// (a rolling slice per pass); 0s: every entity every pass.
    #[arg(long, env = "CSS_RECONCILE_VERIFY_HORIZON", default_value = "1h", value_parser = parse_duration, value_name = "CSS_RECONCILE_VERIFY_HORIZON")]
    pub reconcile_verify_horizon: Duration,
    /// etcd's space quota (its --quota-backend-bytes): the database size
    /// is reported against it, and alarmed at 80%.
    #[arg(long, env = "CSS_ETCD_QUOTA_BYTES", default_value_t = 4 << 30, value_parser = clap::value_parser!(i64).range(1..), value_name = "CSS_ETCD_QUOTA_BYTES")]
    pub etcd_quota_bytes: i64,
    /// S3 bucket of scheduled store backups (etcd snapshots); none: no
    /// backups. Taken by the reconcile function (server mode: its
    /// background loop) when the last good one is older than the interval.
    #[arg(long, env = "CSS_BACKUP_BUCKET", value_name = "CSS_BACKUP_BUCKET")]
    pub backup_bucket: Option<String>,
    /// How often the store is backed up (with CSS_BACKUP_BUCKET).
    #[arg(long, env = "CSS_BACKUP_INTERVAL", default_value = "1h", value_parser = parse_duration, value_name = "CSS_BACKUP_INTERVAL")]
    pub backup_interval: Duration,
    /// CloudWatch namespace of the Lambdas' metrics (EMF).
    #[arg(
        long,
        env = "CSS_METRICS_NAMESPACE",
        default_value = "ClusterStateService",
        value_name = "CSS_METRICS_NAMESPACE"
    )]
    pub metrics_namespace: String,
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

/// The first non-empty line of a clap error, without its "error: " prefix:
/// one line naming the setting instead of a usage screen.
pub fn first_line(s: &str) -> String {
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

/// CSS_ETCD_CA_FILE, and CSS_ETCD_CERT_FILE with CSS_ETCD_KEY_FILE.
struct TlsFiles {
    ca: Option<String>,
    cert: Option<(String, String)>,
}

impl TlsFiles {
    fn read(&self) -> Result<crate::store::etcd::tls::TlsMaterial, ConfigError> {
        let client_cert_pem = match &self.cert {
            Some((c, k)) => Some((
                read_file("CSS_ETCD_CERT_FILE", c)?,
                read_file("CSS_ETCD_KEY_FILE", k)?,
            )),
            None => None,
        };
        Ok(crate::store::etcd::tls::TlsMaterial {
            ca_pem: (self.ca.as_deref())
                .map(|p| read_file("CSS_ETCD_CA_FILE", p))
                .transpose()?,
            client_cert_pem,
        })
    }
}

impl crate::store::etcd::tls::TlsSource for TlsFiles {
    fn load(
        &self,
    ) -> futures::future::BoxFuture<'_, Result<crate::store::etcd::tls::TlsMaterial, String>> {
        Box::pin(async move { self.read().map_err(|e| e.to_string()) })
    }
}

/// A setting given as an empty string (as templates do for optional ones)
/// counts as not given.
fn given(v: &Option<String>) -> Option<&str> {
    v.as_deref().filter(|s| !s.trim().is_empty())
}

impl StoreArgs {
    /// How a reconcile run spends its ECS calls.
    pub fn reconcile_settings(&self) -> crate::reconcile::Settings {
        let rate = self.reconcile_calls_per_second;
        crate::reconcile::Settings {
            budget: crate::reconcile::BudgetSettings {
                calls_per_second: rate,
                // A small burst: a second's worth, at least one call.
                burst: rate.max(1.0),
            },
            verify_horizon: self.reconcile_verify_horizon,
            now: std::time::SystemTime::now,
        }
    }

    /// Where store backups go, if CSS_BACKUP_BUCKET is set.
    pub fn backups(&self, sdk: &aws_config::SdkConfig) -> Option<crate::backup::Backups> {
        let bucket = self.backup_bucket.clone()?;
        Some(crate::backup::Backups {
            s3: aws_sdk_s3::Client::new(sdk),
            bucket,
            interval: self.backup_interval,
            part_size: crate::backup::PART,
        })
    }

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
            &mut self.etcd_tls_secret,
            &mut self.etcd_credentials_secret,
            &mut self.cursor_table,
            &mut self.backup_bucket,
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
        let both = |a: bool, b: bool, name, what: &str| match a && b {
            true => Err(ConfigError::Invalid {
                name,
                reason: format!("give {what}, not both"),
            }),
            false => Ok(()),
        };
        both(
            self.etcd_tls_secret.is_some(),
            self.etcd_ca_file.is_some() || self.etcd_cert_file.is_some(),
            "CSS_ETCD_TLS_SECRET",
            "the TLS material as files or as a secret",
        )?;
        both(
            self.etcd_credentials_secret.is_some(),
            self.etcd_username.is_some(),
            "CSS_ETCD_CREDENTIALS_SECRET",
            "the credentials as settings or as a secret",
        )?;
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
        let tls_files = self.etcd_ca_file.is_some()
            || self.etcd_cert_file.is_some()
            || self.etcd_tls_secret.is_some();
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
            } else if self.etcd_cert_file.is_some() {
                "CSS_ETCD_CERT_FILE"
            } else {
                "CSS_ETCD_TLS_SECRET"
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
        let files = TlsFiles {
            ca: self.etcd_ca_file.clone(),
            cert: self.etcd_cert_file.clone().zip(self.etcd_key_file.clone()),
        };
        let material = files.read()?;
        let read_again = files.ca.is_some() || files.cert.is_some();
        Ok(EtcdSettings {
            endpoints: self
                .etcd_endpoints
                .iter()
                .map(|e| e.trim().to_string())
                .collect(),
            username: self.etcd_username.clone(),
            password: self.etcd_password.as_ref().map(|p| p.expose().to_string()),
            tls: self.tls()?,
            ca_pem: material.ca_pem,
            client_cert_pem: material.client_cert_pem,
            // Files renewed in place (cert-manager, a mounted secret) are
            // read again when etcd refuses the certificate.
            tls_source: read_again
                .then(|| Arc::new(files) as Arc<dyn crate::store::etcd::tls::TlsSource>),
            request_timeout: self.etcd_timeout,
            record_cache_mib: Some(self.record_cache_mb),
        })
    }

    /// Keeps the record cache within half of `memory_mb` (a Lambda
    /// function's memory: the rest is the process and its requests, and an
    /// instance over its memory is killed). Answers the setting it lowered.
    pub fn fit_record_cache(&mut self, memory_mb: u32) -> Option<u32> {
        let asked = self.record_cache_mb;
        self.record_cache_mb = asked.min(memory_mb / 2);
        (self.record_cache_mb != asked).then_some(asked)
    }

    /// The etcd store; the Lambdas always use etcd. Secrets named in the
    /// settings are read with the SDK configuration from the environment.
    pub async fn connect_etcd(&self) -> Result<Arc<EtcdStore>, ConfigError> {
        self.connect_etcd_with(None).await
    }

    /// As `connect_etcd`, reading secrets with `sdk` when given.
    pub async fn connect_etcd_with(
        &self,
        sdk: Option<&aws_config::SdkConfig>,
    ) -> Result<Arc<EtcdStore>, ConfigError> {
        if self.etcd_endpoints.is_empty() {
            return Err(ConfigError::Missing("CSS_ETCD_ENDPOINTS"));
        }
        let mut settings = self.etcd_settings()?;
        secrets::apply(&mut settings, self, sdk).await?;
        Ok(Arc::new(
            EtcdStore::connect(&settings, &self.key_prefix).await?,
        ))
    }

    /// etcd when endpoints are given, else the embedded store (server mode).
    pub async fn connect_any(
        &self,
        sdk: Option<&aws_config::SdkConfig>,
    ) -> Result<Arc<dyn StateStore>, ConfigError> {
        if self.etcd_endpoints.is_empty() {
            self.validate()?;
            return Ok(Arc::new(EmbeddedStore::new(&self.key_prefix)));
        }
        Ok(self.connect_etcd_with(sdk).await?)
    }

    /// Whether connecting reads a secret (and so needs AWS settings).
    pub fn reads_secrets(&self) -> bool {
        self.etcd_tls_secret.is_some() || self.etcd_credentials_secret.is_some()
    }
}

#[cfg(test)]
mod tests;
