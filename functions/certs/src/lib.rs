//! The stack's etcd certificates: a CA, one server-and-peer certificate per
//! member (its private IP as SAN) and one client certificate for the
//! functions, issued by rcgen. As a CloudFormation custom resource it writes
//! them into the Secrets Manager secrets the template creates; members read
//! theirs at boot, the functions the client's (`CSS_ETCD_TLS_SECRET`).
//! The CA's key is never stored: replacing members (new IPs) re-issues all.
#![forbid(unsafe_code)]

use std::net::IpAddr;

use aws_lambda_events::event::cloudformation::CloudFormationCustomResourceRequest;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};
use serde::{Deserialize, Serialize};
use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("cannot issue certificates: {0}")]
    Issue(#[from] rcgen::Error),
    #[error("invalid resource properties: {0}")]
    Properties(String),
    #[error("cannot write secret {secret}: {reason}")]
    Secret { secret: String, reason: String },
    #[error("cannot answer CloudFormation: {0}")]
    Respond(String),
}

/// A certificate and its private key, as PEM.
#[derive(Debug, Clone)]
pub struct Pem {
    pub cert: String,
    pub key: String,
}

/// Everything issued at once.
#[derive(Debug, Clone)]
pub struct Issued {
    pub ca: String,
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

/// Issues the CA, one certificate per member IP (serving clients and
/// peers, so both server and client use) and the functions' client
/// certificate. `names` are extra DNS SANs of the members (e.g. localhost).
pub fn issue(cluster: &str, member_ips: &[IpAddr], names: &[String]) -> Result<Issued, CertError> {
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.distinguished_name
        .push(DnType::CommonName, format!("{cluster} etcd CA"));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    validity(&mut ca);
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate()?)?;

    let leaf = |cn: String, ips: &[IpAddr], names: &[String], server: bool| {
        let mut p = CertificateParams::new(names.to_vec())?;
        p.distinguished_name.push(DnType::CommonName, cn);
        p.subject_alt_names
            .extend(ips.iter().map(|ip| SanType::IpAddress(*ip)));
        p.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        p.extended_key_usages = match server {
            // Members dial each other with the same certificate.
            true => vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
            false => vec![ExtendedKeyUsagePurpose::ClientAuth],
        };
        validity(&mut p);
        let key = KeyPair::generate()?;
        let cert = p.signed_by(&key, &ca)?;
        Ok::<_, CertError>(Pem {
            cert: cert.pem(),
            key: key.serialize_pem(),
        })
    };
    let members = (member_ips.iter().enumerate())
        .map(|(i, ip)| leaf(format!("{cluster}-etcd-{i}"), &[*ip], names, true))
        .collect::<Result<Vec<_>, _>>()?;
    let client = leaf(format!("{cluster}-functions"), &[], &[], false)?;
    Ok(Issued {
        ca: ca.pem(),
        members,
        client,
    })
}

/// The custom resource's properties (CloudFormation passes strings).
#[derive(Debug, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Properties {
    /// The members' private IPs, in member order.
    pub member_ips: Vec<String>,
    /// One secret per member, in the same order: {"ca","cert","key"}.
    pub member_secret_arns: Vec<String>,
    /// The functions' secret: {"ca","cert","key"} (CSS_ETCD_TLS_SECRET).
    pub client_secret_arn: String,
    #[serde(default = "default_cluster")]
    pub cluster_name: String,
}

fn default_cluster() -> String {
    "css".into()
}

type Request = CloudFormationCustomResourceRequest<serde_json::Value, Properties>;

fn secret_json(ca: &str, pem: &Pem) -> String {
    json!({"ca": ca, "cert": pem.cert, "key": pem.key}).to_string()
}

async fn put(
    sm: &aws_sdk_secretsmanager::Client,
    arn: &str,
    value: String,
) -> Result<(), CertError> {
    let res = sm
        .put_secret_value()
        .secret_id(arn)
        .secret_string(value)
        .send()
        .await;
    res.map(|_| ()).map_err(|e| CertError::Secret {
        secret: arn.to_string(),
        reason: aws_sdk_secretsmanager::error::DisplayErrorContext(e).to_string(),
    })
}

/// Issues and stores everything `props` names.
pub async fn issue_into(
    sm: &aws_sdk_secretsmanager::Client,
    props: &Properties,
) -> Result<(), CertError> {
    if props.member_ips.len() != props.member_secret_arns.len() || props.member_ips.is_empty() {
        return Err(CertError::Properties(
            "MemberIps and MemberSecretArns need one entry per member".into(),
        ));
    }
    let ips = (props.member_ips.iter())
        .map(|ip| {
            ip.parse::<IpAddr>()
                .map_err(|e| CertError::Properties(format!("MemberIps {ip:?}: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let issued = issue(&props.cluster_name, &ips, &[])?;
    for (pem, arn) in issued.members.iter().zip(&props.member_secret_arns) {
        put(sm, arn, secret_json(&issued.ca, pem)).await?;
    }
    put(
        sm,
        &props.client_secret_arn,
        secret_json(&issued.ca, &issued.client),
    )
    .await
}

/// Handles one custom-resource request and answers CloudFormation at its
/// response URL (always, so a failure never leaves the stack waiting).
pub async fn handle(
    sm: &aws_sdk_secretsmanager::Client,
    http: &reqwest::Client,
    request: Request,
) -> Result<(), CertError> {
    let (result, url, stack, req_id, logical, physical) = match request {
        CloudFormationCustomResourceRequest::Create(r) => {
            let physical = format!("{}-certificates", r.logical_resource_id);
            (
                issue_into(sm, &r.resource_properties).await,
                r.response_url,
                r.stack_id,
                r.request_id,
                r.logical_resource_id,
                physical,
            )
        }
        // New member IPs (replaced members) or secrets: issue everything again.
        CloudFormationCustomResourceRequest::Update(r) => (
            issue_into(sm, &r.resource_properties).await,
            r.response_url,
            r.stack_id,
            r.request_id,
            r.logical_resource_id,
            r.physical_resource_id,
        ),
        // The secrets are the template's own resources: CloudFormation deletes them.
        CloudFormationCustomResourceRequest::Delete(r) => (
            Ok(()),
            r.response_url,
            r.stack_id,
            r.request_id,
            r.logical_resource_id,
            r.physical_resource_id,
        ),
        // A request type CloudFormation may add later: nothing to answer to
        // without its response URL, so fail the invocation (it is logged).
        _ => return Err(CertError::Properties("unknown request type".into())),
    };
    let (status, reason) = match &result {
        Ok(()) => ("SUCCESS", "certificates issued".to_string()),
        Err(e) => ("FAILED", e.to_string()),
    };
    if let Err(e) = &result {
        tracing::error!(error = %e, "certificates not issued");
    }
    let body = json!({
        "Status": status,
        "Reason": reason,
        "PhysicalResourceId": physical,
        "StackId": stack,
        "RequestId": req_id,
        "LogicalResourceId": logical,
        "NoEcho": true,
        "Data": {},
    });
    // The pre-signed URL is signed for an empty content type.
    let sent = http
        .put(&url)
        .header("content-type", "")
        .body(body.to_string())
        .send()
        .await
        .and_then(reqwest::Response::error_for_status);
    sent.map(|_| ())
        .map_err(|e| CertError::Respond(e.to_string()))?;
    result
}
