//! The custom resources as CloudFormation drives them: a request in, an
//! answer PUT to its pre-signed response URL, always. A request this
//! function cannot parse, of an unknown type or for an unknown resource is
//! answered FAILED with the reason, never left to CloudFormation's hour-long
//! timeout; once answered, the invocation succeeds, so Lambda never runs it
//! again (the template also sets its asynchronous retries to 0).

use std::net::IpAddr;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::pki::{Ca, Pem, Policy};
use crate::{placement, CertError};

/// The AWS clients a request may need, how long it may take, and how long
/// the certificates it issues live.
pub struct Clients {
    pub sm: aws_sdk_secretsmanager::Client,
    pub ec2: placement::Ec2,
    pub http: reqwest::Client,
    /// The work's deadline, well inside the function's timeout: what has
    /// not finished by then is answered FAILED while there is time to answer.
    pub deadline: Duration,
    pub policy: Policy,
}

/// The deadline in the function (its timeout is 60 s): 40 s of work leaves
/// time for the answer and its retries.
pub const DEADLINE: Duration = Duration::from_secs(40);

/// Custom::EtcdCertificates' properties (CloudFormation passes strings).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Properties {
    /// The members' private IPs, in member order.
    pub member_ips: Vec<String>,
    /// One secret per member, in the same order: {"ca","cert","key"}.
    pub member_secret_arns: Vec<String>,
    /// The functions' secret: {"ca","cert","key"} (CSS_ETCD_TLS_SECRET).
    pub client_secret_arn: String,
    /// The CA's own secret: {"cert","key","memberIps"} (what was issued).
    pub ca_secret_arn: String,
    #[serde(default = "default_cluster")]
    pub cluster_name: String,
    /// "none", or the one member whose IP this update may change.
    #[serde(default)]
    pub replace_member: Option<String>,
}

fn default_cluster() -> String {
    "css".into()
}

/// What the CA's secret keeps besides the CA: the IPs it issued for, so an
/// update compares against what members run with (a rollback included).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CaSecret {
    pub(crate) cert: String,
    pub(crate) key: String,
    pub(crate) member_ips: Vec<String>,
}

impl CaSecret {
    pub(crate) fn ca(self, cluster: &str, policy: &Policy) -> Result<Ca, CertError> {
        let pem = Pem {
            cert: self.cert,
            key: self.key,
        };
        Ca::existing(cluster, pem, policy.lifetime)
    }
}

/// Handles one request (the Lambda event as JSON) and answers it.
pub async fn handle(clients: &Clients, request: Value) -> Result<(), CertError> {
    let text = |k: &str| request.get(k).and_then(Value::as_str).map(str::to_string);
    let Some(url) = text("ResponseURL") else {
        return Err(CertError::Request(
            "no ResponseURL: not a CloudFormation custom resource request, nothing to answer"
                .into(),
        ));
    };
    let logical = text("LogicalResourceId").unwrap_or_default();
    let physical = text("PhysicalResourceId").unwrap_or_else(|| format!("{logical}-etcd"));
    let outcome = tokio::time::timeout(clients.deadline, decide(clients, &request))
        .await
        .unwrap_or_else(|_| {
            Err(CertError::Request(format!(
                "not finished within {} s (Secrets Manager or EC2 did not answer)",
                clients.deadline.as_secs()
            )))
        });
    let (status, reason, data) = match outcome {
        Ok(data) => ("SUCCESS", "done".to_string(), data),
        Err(e) => {
            tracing::error!(error = %e, resource = %logical, "custom resource failed");
            ("FAILED", e.to_string(), Map::new())
        }
    };
    let body = json!({
        "Status": status,
        // CloudFormation shows the reason in the stack's events; it keeps 4 KB.
        "Reason": reason.chars().take(1000).collect::<String>(),
        "PhysicalResourceId": physical,
        "StackId": text("StackId").unwrap_or_default(),
        "RequestId": text("RequestId").unwrap_or_default(),
        "LogicalResourceId": logical,
        "NoEcho": true,
        "Data": data,
    });
    respond(&clients.http, &url, &body.to_string()).await
}

/// PUTs the answer; a few tries, since an unanswered request holds the
/// stack for an hour.
async fn respond(http: &reqwest::Client, url: &str, body: &str) -> Result<(), CertError> {
    let mut last = String::new();
    for attempt in 0..4u32 {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(500 << attempt)).await;
        }
        // The pre-signed URL is signed for an empty content type.
        let sent = http
            .put(url)
            .header("content-type", "")
            .body(body.to_string())
            .send()
            .await
            .and_then(reqwest::Response::error_for_status);
        match sent {
            Ok(_) => return Ok(()),
            Err(e) => last = e.to_string(),
        }
    }
    Err(CertError::Respond(last))
}

fn props<T: serde::de::DeserializeOwned>(v: Option<&Value>) -> Result<T, CertError> {
    let v = v.ok_or_else(|| CertError::Properties("no ResourceProperties".into()))?;
    serde_json::from_value(v.clone()).map_err(|e| CertError::Properties(e.to_string()))
}

/// The outcome of a request: the resource's Data, or why it failed.
async fn decide(clients: &Clients, request: &Value) -> Result<Map<String, Value>, CertError> {
    let kind = request.get("RequestType").and_then(Value::as_str);
    let resource = request.get("ResourceType").and_then(Value::as_str);
    match kind {
        // Secrets and volumes are the template's resources: CloudFormation
        // deletes them; nothing of ours outlives the resource.
        Some("Delete") => return Ok(Map::new()),
        Some("Create" | "Update") => {}
        other => {
            return Err(CertError::Request(format!(
                "unknown request type {:?} (Create, Update or Delete)",
                other.unwrap_or_default()
            )))
        }
    }
    let new = request.get("ResourceProperties");
    match resource {
        Some("Custom::EtcdPlacement") => {
            let p: placement::Properties = props(new)?;
            let zones = placement::zones(&clients.ec2, &p).await?;
            Ok((zones.into_iter().enumerate())
                .map(|(i, z)| (format!("Zone{i}"), Value::String(z)))
                .collect())
        }
        Some("Custom::EtcdCertificates") => {
            let p: Properties = props(new)?;
            if kind == Some("Create") {
                create(&clients.sm, &p, &clients.policy).await?;
            } else {
                let old: Option<Properties> = match request.get("OldResourceProperties") {
                    Some(v) => Some(props(Some(v))?),
                    None => None,
                };
                update(&clients.sm, &p, old.as_ref(), &clients.policy).await?;
            }
            Ok(Map::new())
        }
        other => Err(CertError::Request(format!(
            "unknown resource type {:?} (Custom::EtcdPlacement or Custom::EtcdCertificates)",
            other.unwrap_or_default()
        ))),
    }
}

fn ips(p: &Properties) -> Result<Vec<IpAddr>, CertError> {
    if p.member_ips.len() != p.member_secret_arns.len() || p.member_ips.is_empty() {
        return Err(CertError::Properties(
            "MemberIps and MemberSecretArns need one entry per member".into(),
        ));
    }
    (p.member_ips.iter())
        .map(|ip| {
            ip.parse::<IpAddr>()
                .map_err(|e| CertError::Properties(format!("MemberIps {ip:?}: {e}")))
        })
        .collect()
}

pub(crate) fn secret_json(ca: &str, pem: &Pem) -> String {
    json!({"ca": ca, "cert": pem.cert, "key": pem.key}).to_string()
}

fn ca_json(ca: &Pem, member_ips: &[String]) -> String {
    json!({"cert": ca.cert, "key": ca.key, "memberIps": member_ips}).to_string()
}

/// Every certificate, under the CA the CA's secret already holds (a Create
/// run again) or else a new one.
async fn create(
    sm: &aws_sdk_secretsmanager::Client,
    p: &Properties,
    policy: &Policy,
) -> Result<(), CertError> {
    let ips = ips(p)?;
    let ca = match read::<CaSecret>(sm, &p.ca_secret_arn, CA_FIELDS).await {
        Ok(kept) => kept.ca(&p.cluster_name, policy)?,
        // The template creates the secret as "{}".
        Err(CertError::NotIssued(..)) => Ca::new(&p.cluster_name, policy.lifetime)?,
        Err(e) => return Err(e),
    };
    // The CA first: without it no member could be issued again.
    put(sm, &p.ca_secret_arn, ca_json(ca.pem(), &p.member_ips)).await?;
    for (i, (ip, arn)) in ips.iter().zip(&p.member_secret_arns).enumerate() {
        let pem = ca.member(&p.cluster_name, i, *ip, &[])?;
        put(sm, arn, secret_json(&ca.pem().cert, &pem)).await?;
    }
    let client = ca.client(&p.cluster_name)?;
    put(
        sm,
        &p.client_secret_arn,
        secret_json(&ca.pem().cert, &client),
    )
    .await
}

/// Members keep their IPs (etcd identifies a member by its peer URL, and a
/// data dir refuses another): an update may add members, and may change the
/// IP of the one member ReplaceMember names (in this update, or in the one
/// it rolls back), whose certificate is then issued again by the same CA.
async fn update(
    sm: &aws_sdk_secretsmanager::Client,
    p: &Properties,
    old: Option<&Properties>,
    policy: &Policy,
) -> Result<(), CertError> {
    let ips = ips(p)?;
    let stored: CaSecret = read(sm, &p.ca_secret_arn, CA_FIELDS).await?;
    let current = &stored.member_ips;
    if ips.len() < current.len() {
        return Err(CertError::Properties(format!(
            "the cluster cannot shrink from {} to {} members by an update (the members left would lose their quorum)",
            current.len(),
            ips.len()
        )));
    }
    let allowed = |i: usize| {
        let names = |p: Option<&Properties>| {
            p.and_then(|p| p.replace_member.as_deref()) == Some(i.to_string().as_str())
        };
        names(Some(p)) || names(old)
    };
    let mut reissue = Vec::new();
    for (i, ip) in p.member_ips.iter().enumerate() {
        match current.get(i) {
            Some(was) if was == ip => {}
            Some(was) if !allowed(i) => {
                return Err(CertError::Properties(format!(
                    "member m{i}'s IP would change from {was} to {ip} (its subnet changed): an etcd member keeps its IP. \
                     To move or rebuild m{i}, update with EtcdReplaceMember={i} (README \"Moving or rebuilding a member\")"
                )))
            }
            _ => reissue.push(i),
        }
    }
    if reissue.is_empty() {
        return Ok(());
    }
    let ca = stored.ca(&p.cluster_name, policy)?;
    for i in reissue {
        let pem = ca.member(&p.cluster_name, i, ips[i], &[])?;
        put(
            sm,
            &p.member_secret_arns[i],
            secret_json(&ca.pem().cert, &pem),
        )
        .await?;
    }
    put(sm, &p.ca_secret_arn, ca_json(ca.pem(), &p.member_ips)).await
}

pub(crate) async fn put(
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

/// A secret's JSON value as `T` (`what` names it): a secret that does not
/// hold one is an error naming the secret, never its value (it may hold a
/// key).
pub(crate) async fn read<T: serde::de::DeserializeOwned>(
    sm: &aws_sdk_secretsmanager::Client,
    arn: &str,
    what: &'static str,
) -> Result<T, CertError> {
    let out = sm.get_secret_value().secret_id(arn).send().await;
    let out = out.map_err(|e| {
        CertError::Unreadable(
            arn.to_string(),
            aws_sdk_secretsmanager::error::DisplayErrorContext(e).to_string(),
        )
    })?;
    let text = out.secret_string().unwrap_or_default();
    serde_json::from_str(text).map_err(|_| CertError::NotIssued(arn.to_string(), what))
}

/// What the CA's secret is read as.
pub(crate) const CA_FIELDS: &str = "the CA's {\"cert\",\"key\",\"memberIps\"}";
