//! The certificates: a CA, one server-and-peer certificate per member (its
//! private IP as SAN) and one client certificate for the functions, issued
//! by rcgen. The CA's key is kept (in a secret only the custom resource
//! reads) so that a moved member's certificate can be issued again under
//! the same CA, which the other members keep trusting.

use std::net::IpAddr;

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

/// Validity: from a day ago (clock skew) for ten years.
fn validity(p: &mut CertificateParams) {
    use chrono::Datelike;
    let now = chrono::Utc::now() - chrono::Duration::days(1);
    let (y, m, d) = (now.year(), now.month() as u8, now.day() as u8);
    p.not_before = rcgen::date_time_ymd(y, m, d);
    p.not_after = rcgen::date_time_ymd(y + 10, m, d.min(28));
}

/// The CA's parameters: a leaf names its issuer by this subject and by the
/// CA key's identifier, so the same parameters and key sign certificates
/// the CA's existing certificate verifies.
fn ca_params(cluster: &str) -> Result<CertificateParams, CertError> {
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.distinguished_name
        .push(DnType::CommonName, format!("{cluster} etcd CA"));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    validity(&mut ca);
    Ok(ca)
}

/// A CA that signs: a new one, or the one a cluster already trusts.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pem: Pem,
}

impl Ca {
    pub fn new(cluster: &str) -> Result<Ca, CertError> {
        let key = KeyPair::generate()?;
        let key_pem = key.serialize_pem();
        let cert = ca_params(cluster)?.self_signed(&key)?;
        Ok(Ca {
            issuer: Issuer::new(ca_params(cluster)?, key),
            pem: Pem {
                cert: cert.pem(),
                key: key_pem,
            },
        })
    }

    /// The CA of `pem` (its certificate as issued for `cluster`, and its key).
    pub fn existing(cluster: &str, pem: Pem) -> Result<Ca, CertError> {
        let key = KeyPair::from_pem(&pem.key)?;
        Ok(Ca {
            issuer: Issuer::new(ca_params(cluster)?, key),
            pem,
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
        validity(&mut p);
        let key = KeyPair::generate()?;
        let cert = p.signed_by(&key, &self.issuer)?;
        Ok(Pem {
            cert: cert.pem(),
            key: key.serialize_pem(),
        })
    }
}

/// Issues a new CA, one certificate per member IP and the functions' client
/// certificate. `names` are extra DNS SANs of the members (e.g. localhost).
pub fn issue(cluster: &str, member_ips: &[IpAddr], names: &[String]) -> Result<Issued, CertError> {
    let ca = Ca::new(cluster)?;
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
