//! Renewal, on the etcd stack's schedule: every leaf (member and client
//! certificates) with less than `Policy::renew_before` left, or not issued
//! by the CA the CA's secret keeps, is issued again by that CA into its
//! secret. Members re-read theirs on a timer (boot.sh) and etcd loads them
//! on its next handshake; the functions re-read theirs when etcd refuses
//! the old one. The CA itself stays: every member keeps trusting it.

use std::net::IpAddr;
use std::time::SystemTime;

use serde::Deserialize;

use crate::pki::{Pem, Policy};
use crate::resource::{put, read, secret_json, CaSecret, CA_FIELDS};
use crate::CertError;

/// The schedule's input (`{"Renew": {...}}`): the secrets the certificate
/// resource fills.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Targets {
    #[serde(default = "default_cluster")]
    pub cluster_name: String,
    pub ca_secret_arn: String,
    /// In member order, as the CA's secret lists their IPs.
    pub member_secret_arns: Vec<String>,
    pub client_secret_arn: String,
}

fn default_cluster() -> String {
    "css".into()
}

/// What a run did and found.
#[derive(Debug, Clone)]
pub struct Report {
    /// The secrets whose certificate was issued again.
    pub renewed: Vec<String>,
    /// The earliest end of any certificate (the CA's included), after the run.
    pub earliest: SystemTime,
}

impl Report {
    /// Days from `now` to the earliest end (negative once past).
    pub fn days_left(&self, now: SystemTime) -> f64 {
        match self.earliest.duration_since(now) {
            Ok(d) => d.as_secs_f64() / 86_400.0,
            Err(e) => -e.duration().as_secs_f64() / 86_400.0,
        }
    }
}

/// A leaf's secret as the certificate resource writes it.
#[derive(Deserialize)]
struct LeafSecret {
    ca: String,
    cert: String,
}

const LEAF_FIELDS: &str = "a certificate {\"ca\",\"cert\",\"key\"}";

/// When the leaf in `secret` ends, if it is one of `ca_cert`'s that should
/// stay (None: issue it again).
async fn keeps(
    sm: &aws_sdk_secretsmanager::Client,
    secret: &str,
    ca_cert: &str,
    policy: &Policy,
    now: SystemTime,
) -> Result<Option<SystemTime>, CertError> {
    let leaf: LeafSecret = match read(sm, secret, LEAF_FIELDS).await {
        Ok(l) => l,
        // Never issued (or emptied): issue it.
        Err(CertError::NotIssued(..)) => return Ok(None),
        Err(e) => return Err(e),
    };
    if leaf.ca.trim() != ca_cert.trim() {
        return Ok(None);
    }
    let end = css::store::etcd::tls::not_after(leaf.cert.as_bytes());
    Ok(end.filter(|end| *end > now + policy.renew_before))
}

/// Issues again what is due; answers what it did and the earliest end.
pub async fn renew(
    sm: &aws_sdk_secretsmanager::Client,
    t: &Targets,
    policy: &Policy,
    now: SystemTime,
) -> Result<Report, CertError> {
    let stored: CaSecret = read(sm, &t.ca_secret_arn, CA_FIELDS).await?;
    if stored.member_ips.len() != t.member_secret_arns.len() {
        return Err(CertError::Properties(format!(
            "the CA's secret lists {} members, the schedule {} member secrets",
            stored.member_ips.len(),
            t.member_secret_arns.len()
        )));
    }
    let ips = (stored.member_ips.iter())
        .map(|ip| {
            ip.parse::<IpAddr>()
                .map_err(|e| CertError::Properties(format!("memberIps {ip:?}: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let ca_end = css::store::etcd::tls::not_after(stored.cert.as_bytes())
        .ok_or_else(|| CertError::NotIssued(t.ca_secret_arn.clone(), CA_FIELDS))?;
    let ca = stored.ca(&t.cluster_name, policy)?;
    let ca_cert = ca.pem().cert.clone();
    let mut report = Report {
        renewed: Vec::new(),
        earliest: ca_end,
    };
    // A leaf issued now ends `lifetime` from now.
    let fresh = now + policy.lifetime;
    for (i, secret) in t.member_secret_arns.iter().enumerate() {
        let end = keeps(sm, secret, &ca_cert, policy, now).await?;
        if end.is_none() {
            let pem = ca.member(&t.cluster_name, i, ips[i], &[])?;
            put(sm, secret, secret_json(&ca_cert, &pem)).await?;
            report.renewed.push(secret.clone());
        }
        report.earliest = report.earliest.min(end.unwrap_or(fresh));
    }
    let end = keeps(sm, &t.client_secret_arn, &ca_cert, policy, now).await?;
    if end.is_none() {
        let pem: Pem = ca.client(&t.cluster_name)?;
        put(sm, &t.client_secret_arn, secret_json(&ca_cert, &pem)).await?;
        report.renewed.push(t.client_secret_arn.clone());
    }
    report.earliest = report.earliest.min(end.unwrap_or(fresh));
    Ok(report)
}

/// The schedule's event, if `event` is one.
pub fn targets(event: &serde_json::Value) -> Option<Result<Targets, CertError>> {
    let v = event.get("Renew")?;
    Some(serde_json::from_value(v.clone()).map_err(|e| CertError::Properties(e.to_string())))
}
