//! The client's TLS material, and reading it again. Certificates renew
//! (the stack's leaves live `CertificateValidityDays`): a process that
//! outlives its client certificate keeps its open connections, but etcd
//! refuses the next handshake. So when a handshake is refused for the
//! certificate, or ours has expired, the store reads its source again (the
//! Secrets Manager secret or the files it was configured with), reconnects
//! with what it found and retries the request.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use etcd_client::{Certificate, Identity, TlsOptions};
use futures::future::BoxFuture;

/// A CA bundle to verify etcd with, and a client certificate and key.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct TlsMaterial {
    /// PEM CA bundle; without it, the system's roots.
    pub ca_pem: Option<Vec<u8>>,
    /// PEM client certificate and key, for mutual TLS.
    pub client_cert_pem: Option<(Vec<u8>, Vec<u8>)>,
}

/// Where the material comes from, read again when a renewal may have
/// replaced it.
pub trait TlsSource: Send + Sync {
    fn load(&self) -> BoxFuture<'_, Result<TlsMaterial, String>>;
}

/// Reads of the source at most this often: a store that is down for good
/// asks Secrets Manager a few times a minute, not per request.
const RELOAD_PAUSE: Duration = Duration::from_secs(10);

/// The end of the first certificate's validity in a PEM text (None: no
/// certificate that parses).
pub fn not_after(pem: &[u8]) -> Option<SystemTime> {
    let (_, block) = x509_parser::pem::parse_x509_pem(pem).ok()?;
    let cert = block.parse_x509().ok()?;
    let secs = cert.validity().not_after.timestamp();
    let secs = u64::try_from(secs).ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
}

/// An error's text with every source's, lower case: the transport names
/// a TLS alert only in a source.
pub(super) fn error_text(e: &etcd_client::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text.to_ascii_lowercase()
}

/// Whether etcd refused our certificate (an alert from its side).
pub(super) fn refused_our_certificate(text: &str) -> bool {
    [
        "certificaterequired",
        "certificate required",
        "badcertificate",
        "bad certificate",
        "certificateexpired",
        "certificate expired",
        "unknownca",
        "unknown ca",
    ]
    .iter()
    .any(|p| text.contains(p))
}

/// The material in use, its source, and how often it was read again.
pub(super) struct Tls {
    material: RwLock<TlsMaterial>,
    source: Option<Arc<dyn TlsSource>>,
    last_read: Mutex<Option<Instant>>,
    reloads: AtomicU64,
}

impl Tls {
    pub(super) fn new(material: TlsMaterial, source: Option<Arc<dyn TlsSource>>) -> Tls {
        Tls {
            material: RwLock::new(material),
            source,
            last_read: Mutex::new(None),
            reloads: AtomicU64::new(0),
        }
    }

    pub(super) fn options(&self) -> TlsOptions {
        let m = self.material.read().unwrap_or_else(|e| e.into_inner());
        let tls = TlsOptions::new();
        let mut tls = match &m.ca_pem {
            Some(ca) => tls.ca_certificate(Certificate::from_pem(ca)),
            // No CA named: verify against the system's trusted roots, as any
            // HTTPS client would (a public or corporate CA).
            None => tls.with_native_roots(),
        };
        if let Some((cert, key)) = &m.client_cert_pem {
            tls = tls.identity(Identity::from_pem(cert, key));
        }
        tls
    }

    /// When our client certificate (else the CA) stops being valid.
    pub(super) fn expires(&self) -> Option<SystemTime> {
        let m = self.material.read().unwrap_or_else(|e| e.into_inner());
        let cert = m.client_cert_pem.as_ref().and_then(|(c, _)| not_after(c));
        let ca = m.ca_pem.as_deref().and_then(not_after);
        cert.into_iter().chain(ca).min()
    }

    pub(super) fn reloads(&self) -> u64 {
        self.reloads.load(Ordering::Relaxed)
    }

    /// After `e`: whether the material was read again and changed (then
    /// every connection must be made again). Only when reading may help:
    /// etcd refused our certificate, or it has expired (over TLS 1.3 the
    /// refusal may arrive as a bare reset).
    pub(super) async fn renewed_after(&self, e: &etcd_client::Error) -> bool {
        let Some(source) = &self.source else {
            return false;
        };
        let expired = self.expires().is_some_and(|t| t <= SystemTime::now());
        if !expired && !refused_our_certificate(&error_text(e)) {
            return false;
        }
        {
            let mut last = self.last_read.lock().unwrap_or_else(|e| e.into_inner());
            if last.is_some_and(|t| t.elapsed() < RELOAD_PAUSE) {
                return false;
            }
            *last = Some(Instant::now());
        }
        let fresh = match source.load().await {
            Ok(m) => m,
            Err(why) => {
                tracing::warn!(error = %why, "cannot read the etcd TLS material again");
                return false;
            }
        };
        let mut m = self.material.write().unwrap_or_else(|e| e.into_inner());
        if *m == fresh {
            tracing::warn!(error = %e, "etcd refused the TLS handshake; the TLS material read again is unchanged");
            return false;
        }
        *m = fresh;
        self.reloads.fetch_add(1, Ordering::Relaxed);
        crate::metrics::etcd_tls_reload();
        tracing::info!("etcd TLS material read again after a refused handshake: reconnecting");
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_of_our_certificate_is_told_from_other_failures() {
        for t in [
            "transport error: received fatal alert: badcertificate",
            "tls handshake: received fatal alert: certificateexpired",
            "remote error: tls: bad certificate",
            "invalid peer message: unknown ca",
        ] {
            assert!(refused_our_certificate(t), "{t}");
        }
        for t in [
            "transport error: connection refused",
            "invalid peer certificate: expired",
            "etcdserver: leader changed",
        ] {
            assert!(!refused_our_certificate(t), "{t}");
        }
    }

    #[test]
    fn not_after_reads_a_certificate_and_nothing_else() {
        assert_eq!(not_after(b"not a certificate"), None);
        assert_eq!(
            not_after(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
            None
        );
    }
}
