//! The stack's etcd custom resources (css-certs): `Custom::EtcdPlacement`
//! checks the members' subnets and answers their zones; `Custom::EtcdCertificates`
//! issues a CA, one server-and-peer certificate per member (its private IP as
//! SAN) and one client certificate for the functions into the Secrets Manager
//! secrets the template creates. Members read theirs at boot, the functions
//! the client's (`CSS_ETCD_TLS_SECRET`).
#![forbid(unsafe_code)]

pub mod pki;
pub mod placement;
pub mod resource;

pub use pki::{issue, Ca, Issued, Pem};
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
    #[error("cannot answer CloudFormation: {0}")]
    Respond(String),
}
