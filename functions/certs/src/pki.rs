//! The certificates: a CA, one server-and-peer certificate per member (its
//! private IP as SAN) and one client certificate for the functions, issued
//! by rcgen. The CA's key is kept (in a secret only the certificate
//! function reads) so that leaves are issued again under the same CA,
//! which every member keeps trusting: a moved member's, and every leaf as
//! it nears its end (`renew`). Leaves live `Policy::lifetime`; the CA ten
//! years.

use std::net::IpAddr;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

use crate::CertError;

/// A certificate and its private key, as PEM.
#[derive(Debug, Clone)]
pub struct Pem {
    pub cert: String,
    pub key: String,
}

/// Everything issued at once.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The CA's certificate (PEM); `ca_key` its key.
    pub ca: String,
    pub ca_key: String,
    pub members: Vec<Pem>,
    pub client: Pem,
}

/// How long leaves live, and how long before their end a renewal issues
/// them again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub lifetime: Duration,
    pub renew_before: Duration,
}

const DAY: Duration = Duration::from_secs(86_400);

impl Default for Policy {
    /// `CertificateValidityDays` 365, renewed with 30 days left.
    fn default() -> Policy {
        Policy {
            lifetime: DAY * 365,
            renew_before: DAY * 30,
        }
    }
}

impl Policy {
    /// A renewal must come before the end, and a renewed leaf must not be
    /// due again at once.
    pub fn new(lifetime: Duration, renew_before: Duration) -> Result<Policy, CertError> {
        if renew_before.is_zero() || lifetime <= renew_before * 2 {
            return Err(CertError::Properties(format!(
                "certificates living {} s cannot be renewed {} s before their end: the lifetime must exceed twice the renewal lead",
                lifetime.as_secs(),
                renew_before.as_secs()
            )));
        }
        Ok(Policy {
            lifetime,
            renew_before,
        })
    }

    /// From CSS_CERT_VALIDITY_DAYS and CSS_CERT_RENEW_DAYS (365 and 30
    /// when unset).
    pub fn from_days(validity: Option<&str>, renew: Option<&str>) -> Result<Policy, CertError> {
        let days = |name: &str, v: Option<&str>, default: u64| match v.map(str::trim) {
            None | Some("") => Ok(default),
            Some(t) => t.parse::<u64>().ok().filter(|d| *d > 0).ok_or_else(|| {
                CertError::Properties(format!("{name}: {t:?} is not a whole number of days"))
            }),
        };
        Policy::new(
            DAY * days("CSS_CERT_VALIDITY_DAYS", validity, 365)? as u32,
            DAY * days("CSS_CERT_RENEW_DAYS", renew, 30)? as u32,
        )
    }
}

/// Valid from an hour ago (clock skew) for `lifetime`.
fn validity(p: &mut CertificateParams, lifetime: Duration) {
    let now = time::OffsetDateTime::now_utc();
    p.not_before = now - time::Duration::hours(1);
    p.not_after = now + lifetime;
}

/// The CA's own lifetime: leaves are renewed under it, it is not.
const CA_LIFETIME: Duration = Duration::from_secs(10 * 365 * 86_400);

/// The CA's parameters: a leaf names its issuer by this subject and by the
/// CA key's identifier, so the same parameters and key sign certificates
/// the CA's existing certificate verifies.
fn ca_params(cluster: &str) -> Result<CertificateParams, CertError> {
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.distinguished_name
        .push(DnType::CommonName, format!("{cluster} etcd CA"));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    validity(&mut ca, CA_LIFETIME);
    Ok(ca)
}

/// A CA that signs: a new one, or the one a cluster already trusts.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pem: Pem,
    /// How long the leaves it issues live.
    lifetime: Duration,
}

impl Ca {
    pub fn new(cluster: &str, lifetime: Duration) -> Result<Ca, CertError> {
        let key = KeyPair::generate()?;
        let key_pem = key.serialize_pem();
        let cert = ca_params(cluster)?.self_signed(&key)?;
        Ok(Ca {
            issuer: Issuer::new(ca_params(cluster)?, key),
            pem: Pem {
                cert: cert.pem(),
                key: key_pem,
            },
            lifetime,
        })
    }

    /// The CA of `pem` (its certificate as issued for `cluster`, and its key).
    pub fn existing(cluster: &str, pem: Pem, lifetime: Duration) -> Result<Ca, CertError> {
        let key = KeyPair::from_pem(&pem.key)?;
        Ok(Ca {
            issuer: Issuer::new(ca_params(cluster)?, key),
            pem,
            lifetime,
        })
    }

    pub fn pem(&self) -> &Pem {
        &self.pem
    }

    /// A member's certificate: serves clients and peers and dials peers, so
    /// both server and client use. `names` are extra DNS SANs (localhost).
    pub fn member(
        &self,
        cluster: &str,
        index: usize,
        ip: IpAddr,
        names: &[String],
    ) -> Result<Pem, CertError> {
        self.leaf(format!("{cluster}-etcd-{index}"), &[ip], names, true)
    }

    /// The functions' client certificate.
    pub fn client(&self, cluster: &str) -> Result<Pem, CertError> {
        self.leaf(format!("{cluster}-functions"), &[], &[], false)
    }

    fn leaf(
        &self,
        cn: String,
        ips: &[IpAddr],
        names: &[String],
        server: bool,
    ) -> Result<Pem, CertError> {
        let mut p = CertificateParams::new(names.to_vec())?;
        p.distinguished_name.push(DnType::CommonName, cn);
        p.subject_alt_names
            .extend(ips.iter().map(|ip| SanType::IpAddress(*ip)));
        p.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        p.extended_key_usages = match server {
            true => vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
            false => vec![ExtendedKeyUsagePurpose::ClientAuth],
        };
        validity(&mut p, self.lifetime);
        let key = KeyPair::generate()?;
        let cert = p.signed_by(&key, &self.issuer)?;
        Ok(Pem {
            cert: cert.pem(),
            key: key.serialize_pem(),
        })
    }
}

/// Issues a new CA, one certificate per member IP and the functions' client
/// certificate (living a year). `names` are extra DNS SANs of the members
/// (e.g. localhost).
pub fn issue(cluster: &str, member_ips: &[IpAddr], names: &[String]) -> Result<Issued, CertError> {
    let ca = Ca::new(cluster, Policy::default().lifetime)?;
    let members = (member_ips.iter().enumerate())
        .map(|(i, ip)| ca.member(cluster, i, *ip, names))
        .collect::<Result<Vec<_>, _>>()?;
    let client = ca.client(cluster)?;
    Ok(Issued {
        ca: ca.pem.cert,
        ca_key: ca.pem.key,
        members,
        client,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_policy_renews_before_the_end_and_not_at_once_again() {
        let p = Policy::from_days(None, None).expect("defaults");
        assert_eq!(p, Policy::default());
        assert_eq!(p.lifetime, DAY * 365);
        assert_eq!(p.renew_before, DAY * 30);
        assert!(Policy::from_days(Some("61"), Some("30")).is_ok());
        for (validity, renew, why) in [
            (Some("60"), Some("30"), "twice the renewal lead"),
            (Some("30"), Some("30"), "twice the renewal lead"),
            (Some("0"), None, "CSS_CERT_VALIDITY_DAYS"),
            (Some("a year"), None, "CSS_CERT_VALIDITY_DAYS"),
            (None, Some("-1"), "CSS_CERT_RENEW_DAYS"),
        ] {
            let err = Policy::from_days(validity, renew).expect_err("refused");
            assert!(err.to_string().contains(why), "{err}");
        }
        assert!(Policy::new(Duration::from_secs(40), Duration::from_secs(15)).is_ok());
        assert!(Policy::new(Duration::from_secs(40), Duration::ZERO).is_err());
    }
}
