//! The stack's etcd custom resources (css-certs): `Custom::EtcdPlacement`
//! checks the members' subnets and answers their zones; `Custom::EtcdCertificates`
//! issues a CA, one server-and-peer certificate per member (its private IP as
//! SAN) and one client certificate for the functions into the Secrets Manager
//! secrets the template creates. Members read theirs at boot and on a timer,
//! the functions the client's (`CSS_ETCD_TLS_SECRET`). On the etcd stack's
//! schedule, the same function renews the leaves nearing their end (`renew`).
#![forbid(unsafe_code)]

pub mod pki;
pub mod placement;
pub mod renew;
pub mod resource;

pub use pki::{issue, Ca, Issued, Pem, Policy};
pub use resource::{handle, Clients, Properties};

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("cannot issue certificates: {0}")]
    Issue(#[from] rcgen::Error),
    #[error("invalid resource properties: {0}")]
    Properties(String),
    #[error("invalid request: {0}")]
    Request(String),
    #[error("cannot read the subnets: {0}")]
    Placement(String),
    #[error("cannot write secret {secret}: {reason}")]
    Secret { secret: String, reason: String },
    #[error("cannot read secret {0}: {1}")]
    Unreadable(String, String),
    #[error("secret {0} does not hold {1} (was it issued?)")]
    NotIssued(String, &'static str),
    #[error("cannot answer CloudFormation: {0}")]
    Respond(String),
}

/// One invocation: the schedule's renewal (`{"Renew": {...}}`), else a
/// CloudFormation request. After certificates were issued by one, the same
/// check runs (it finds nothing due) for its figure: the expiry alarm then
/// has one from the start, not only after the first scheduled run.
pub async fn invoke(
    clients: &Clients,
    event: serde_json::Value,
) -> Result<serde_json::Value, CertError> {
    if let Some(targets) = renew::targets(&event) {
        return check(clients, &targets?).await;
    }
    let issued = event.get("ResourceType").and_then(|v| v.as_str())
        == Some("Custom::EtcdCertificates")
        && matches!(
            event.get("RequestType").and_then(|v| v.as_str()),
            Some("Create" | "Update")
        );
    let targets = (event.get("ResourceProperties").cloned())
        .and_then(|p| serde_json::from_value::<renew::Targets>(p).ok());
    handle(clients, event).await?;
    if let (true, Some(t)) = (issued, targets) {
        // The resource's answer is sent: a failure here is only logged.
        if let Err(e) = check(clients, &t).await {
            tracing::warn!(error = %e, "certificates issued, but not checked");
        }
    }
    Ok(serde_json::Value::Null)
}

/// Renews what is due; publishes the days left and how many were renewed.
async fn check(clients: &Clients, t: &renew::Targets) -> Result<serde_json::Value, CertError> {
    let now = std::time::SystemTime::now();
    let report = renew::renew(&clients.sm, t, &clients.policy, now).await?;
    let days = report.days_left(now);
    css::metrics::etcd_certificates(days, report.renewed.len());
    tracing::info!(renewed = ?report.renewed, days_left = days, "etcd certificates checked");
    Ok(serde_json::json!({"renewed": report.renewed, "daysLeft": days}))
}
