//! How the etcd store connects: settings (TLS follows the endpoints'
//! `https://` scheme), warnings about them, and the client's options.

use std::time::Duration;

use etcd_client::{Certificate, Client, ConnectOptions, Identity, TlsOptions};

use super::{map_err, EtcdStore, Keyspace};
use crate::store::StoreResult;

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
    pub request_timeout: Duration,
}

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
            .field("request_timeout", &self.request_timeout)
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

    fn tls_options(&self) -> Option<TlsOptions> {
        if !self.tls {
            return None;
        }
        let mut tls = TlsOptions::new();
        tls = match &self.ca_pem {
            Some(ca) => tls.ca_certificate(Certificate::from_pem(ca)),
            // No CA named: verify against the system's trusted roots, as any
            // HTTPS client would (a public or corporate CA).
            None => tls.with_native_roots(),
        };
        if let Some((cert, key)) = &self.client_cert_pem {
            tls = tls.identity(Identity::from_pem(cert, key));
        }
        Some(tls)
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
        if let Some(tls) = settings.tls_options() {
            opts = opts.with_tls(tls);
        }
        let client = Client::connect(&settings.endpoints, Some(opts))
            .await
            .map_err(map_err)?;
        Ok(EtcdStore {
            client,
            ks: Keyspace::new(prefix),
        })
    }
}
