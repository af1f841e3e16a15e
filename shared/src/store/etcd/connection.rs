//! How the etcd store connects: settings (TLS follows the endpoints'
//! `https://` scheme), warnings about them, and the client's options.

use std::time::Duration;

use std::sync::Arc;

use etcd_client::ConnectOptions;

use super::cache::RecordCache;
use super::members::Members;
use super::tls::{error_text, refused_our_certificate, Tls, TlsMaterial, TlsSource};
use super::{EtcdStore, Format, Keyspace};
use crate::store::{StoreError, StoreResult};

/// How to reach etcd.
#[derive(Clone, Default)]
pub struct EtcdSettings {
    pub endpoints: Vec<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    /// TLS (the endpoints are `https://`).
    pub tls: bool,
    /// PEM CA bundle to verify the server; without it, the system's roots.
    pub ca_pem: Option<Vec<u8>>,
    /// PEM client certificate and key for mutual TLS.
    pub client_cert_pem: Option<(Vec<u8>, Vec<u8>)>,
    /// Where `ca_pem` and `client_cert_pem` came from, to read them again
    /// when etcd refuses a renewed-away certificate.
    pub tls_source: Option<Arc<dyn TlsSource>>,
    pub request_timeout: Duration,
    /// MiB of decoded records kept for filtered lists (`cache`); None: the
    /// default, 0: none.
    pub record_cache_mib: Option<u32>,
}

/// The record cache's size when none is configured.
pub const DEFAULT_RECORD_CACHE_MIB: u32 = 64;

/// Never prints the password or the client key.
impl std::fmt::Debug for EtcdSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdSettings")
            .field("endpoints", &self.endpoints)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("tls", &self.tls)
            .field("ca_pem", &self.ca_pem.as_ref().map(Vec::len))
            .field("client_cert", &self.client_cert_pem.is_some())
            .field("tls_source", &self.tls_source.is_some())
            .field("request_timeout", &self.request_timeout)
            .field("record_cache_mib", &self.record_cache_mib)
            .finish()
    }
}

impl EtcdSettings {
    /// What an operator should hear about these settings before connecting.
    pub fn warnings(&self) -> Vec<&'static str> {
        let mut w = Vec::new();
        if self.password.is_some() && !self.tls {
            w.push("etcd credentials are sent over plain http://: use https:// endpoints");
        }
        w
    }

    fn tls(&self) -> Option<Tls> {
        let material = TlsMaterial {
            ca_pem: self.ca_pem.clone(),
            client_cert_pem: self.client_cert_pem.clone(),
        };
        self.tls
            .then(|| Tls::new(material, self.tls_source.clone()))
    }
}

/// The one line that names a TLS or credentials mistake in an error from
/// etcd, where the transport's own text would not.
/// `client_cert`: over TLS, whether a client certificate was set (None:
/// not known, or not TLS).
pub(super) fn explain(e: &etcd_client::Error, client_cert: Option<bool>) -> Option<&'static str> {
    let t = error_text(e);
    if t.contains("unknownissuer") || t.contains("unknown issuer") || t.contains("badsignature") {
        Some("etcd's certificate is not signed by the CA of CSS_ETCD_CA_FILE (or, without it, by the system's roots)")
    } else if t.contains("notvalidforname") || t.contains("not valid for name") {
        Some("etcd's certificate does not name the host of CSS_ETCD_ENDPOINTS")
    } else if refused_our_certificate(&t) {
        // etcd answers a missing certificate as a bad one.
        Some(match client_cert {
            Some(false) => "etcd requires a client certificate: set CSS_ETCD_CERT_FILE and CSS_ETCD_KEY_FILE",
            Some(true) => "etcd refused the client certificate of CSS_ETCD_CERT_FILE (expired, or not signed by a CA it trusts?)",
            None => "etcd refused the TLS client certificate (none set, expired, or not signed by a CA etcd trusts)",
        })
    } else if client_cert == Some(false)
        && ["connection closed", "broken pipe", "connection reset"]
            .iter()
            .any(|p| t.contains(p))
    {
        // etcd closes a TLS 1.3 connection without a client certificate
        // right after the handshake; its alert may not reach the client.
        Some("etcd requires a client certificate: set CSS_ETCD_CERT_FILE and CSS_ETCD_KEY_FILE")
    } else if t.contains("authentication failed") || t.contains("invalid username or password") {
        Some("etcd refused CSS_ETCD_USERNAME/CSS_ETCD_PASSWORD")
    } else {
        None
    }
}

impl EtcdStore {
    pub async fn connect(settings: &EtcdSettings, prefix: &str) -> StoreResult<EtcdStore> {
        let timeout = if settings.request_timeout.is_zero() {
            Duration::from_secs(5)
        } else {
            settings.request_timeout
        };
        let mut opts = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(3))
            .with_timeout(timeout)
            .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5));
        if let (Some(user), Some(password)) = (&settings.username, &settings.password) {
            opts = opts.with_user(user.clone(), password.clone());
        }
        for warning in settings.warnings() {
            tracing::warn!("{warning}");
        }
        // A member without a leader refuses requests (and cancels watches)
        // instead of serving stale reads or stalling: the request moves on.
        opts = opts.with_require_leader(true);
        let members = Members::new(&settings.endpoints, opts, timeout, settings.tls());
        let ks = Keyspace::new(prefix);
        // Settings that cannot work on any member stop start-up here with
        // one line; members that are merely down are passed over later.
        let checked = members.check(&ks.meta("revision-probe")).await;
        if let Err(e) = checked {
            let client_cert = settings.tls.then_some(settings.client_cert_pem.is_some());
            match explain(&e, client_cert) {
                Some(line) => return Err(StoreError::Unavailable(line.to_string())),
                None => tracing::warn!(error = %e, "no etcd member answered yet"),
            }
        }
        let store = EtcdStore {
            members: Arc::new(members),
            ks,
            format: Format::Compact,
            compacted: Arc::new(std::sync::atomic::AtomicI64::new(0)),
            identity: Arc::default(),
            cache: Arc::new(RecordCache::new(
                settings
                    .record_cache_mib
                    .unwrap_or(DEFAULT_RECORD_CACHE_MIB),
            )),
        };
        // The identity exists from the start (its one write happens before
        // anything is read); if etcd does not answer yet, the first request
        // that needs it makes it.
        if let Err(e) = crate::store::StateStore::identity(&store).await {
            tracing::debug!(error = %e, "store identity not read yet");
        }
        Ok(store)
    }
}
