//! The ECS API as the service reads it: `EcsSource` (the calls reconcile
//! and the ingest's service describes need) and `aws.rs`, its AWS SDK
//! implementation. Tests give their own sources.

use async_trait::async_trait;
use serde_json::value::RawValue;

pub mod aws;

/// DescribeServices takes at most 10 names.
pub const DESCRIBE_SERVICES_BATCH: usize = 10;

#[derive(Debug, Clone, thiserror::Error)]
#[error("{operation}: {message}")]
pub struct SourceError {
    pub operation: &'static str,
    pub message: String,
}

/// A DescribeServices answer.
#[derive(Debug)]
pub struct ServicesAnswer {
    /// The services found, in ECS's shape (ISO-8601 timestamps).
    pub services: Vec<Box<RawValue>>,
    /// Names ECS answered `MISSING` for: the service no longer exists.
    pub missing: Vec<String>,
    /// Other failures: (service ARN or name, ECS's reason).
    pub failed: Vec<(String, String)>,
    /// When the request attempt that got this answer was sent: the answer
    /// was produced after it (the order of snapshots, `model::Stamp`).
    pub sent_at: chrono::DateTime<chrono::Utc>,
}

/// The ECS calls the service makes. Listing calls return every page.
#[async_trait]
pub trait EcsSource: Send + Sync {
    async fn list_clusters(&self) -> Result<Vec<String>, SourceError>;
    async fn list_container_instances(&self, cluster: &str) -> Result<Vec<String>, SourceError>;
    async fn describe_container_instances(
        &self,
        cluster: &str,
        arns: &[String],
    ) -> Result<Vec<Box<RawValue>>, SourceError>;
    /// Task ARNs with the given desired status (RUNNING or STOPPED).
    async fn list_tasks(&self, cluster: &str, desired: &str) -> Result<Vec<String>, SourceError>;
    async fn describe_tasks(
        &self,
        cluster: &str,
        arns: &[String],
    ) -> Result<Vec<Box<RawValue>>, SourceError>;
    /// Service ARNs of a cluster.
    async fn list_services(&self, cluster: &str) -> Result<Vec<String>, SourceError>;
    /// At most `DESCRIBE_SERVICES_BATCH` names or ARNs of one cluster.
    async fn describe_services(
        &self,
        cluster: &str,
        names: &[String],
    ) -> Result<ServicesAnswer, SourceError>;
    /// Requests sent so far, retries included.
    fn api_calls(&self) -> u64;
}

/// The account and region whose ECS API a process reads: a reconcile run
/// touches only their records, and the ingest describes only their services.
#[derive(Debug, Clone)]
pub struct RunScope {
    pub account: String,
    pub region: String,
}

/// The service name in a service ARN (either format) or a bare name.
pub fn service_name(arn_or_name: &str) -> &str {
    arn_or_name.rsplit('/').next().unwrap_or(arn_or_name)
}
