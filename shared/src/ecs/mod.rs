//! The ECS API as the service reads it: `EcsSource` (the calls reconcile
//! and the ingest's service describes need) and `aws.rs`, its AWS SDK
//! implementation. Tests give their own sources.

use async_trait::async_trait;
use serde_json::value::RawValue;

pub mod aws;
pub mod members;

/// DescribeServices takes at most 10 names.
pub const DESCRIBE_SERVICES_BATCH: usize = 10;

#[derive(Debug, Clone, thiserror::Error)]
#[error("{operation}: {message}")]
pub struct SourceError {
    pub operation: &'static str,
    pub message: String,
    /// What a caller may do about it.
    pub retry: Retry,
}

/// Whether a failed call may succeed when sent again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// ECS refused the rate (ThrottlingException): slow down, then again.
    Throttled,
    /// The network, a timeout or a 5xx: again, after a pause.
    Transient,
    /// The request itself is refused (access, validation, ...).
    No,
}

impl SourceError {
    pub fn new(operation: &'static str, message: impl Into<String>) -> SourceError {
        SourceError {
            operation,
            message: message.into(),
            retry: Retry::No,
        }
    }

    pub fn throttled(operation: &'static str, message: impl Into<String>) -> SourceError {
        SourceError {
            retry: Retry::Throttled,
            ..SourceError::new(operation, message)
        }
    }
}

/// One page of a List* call: ARNs and the token of the next page.
#[derive(Debug, Clone, Default)]
pub struct Page {
    pub arns: Vec<String>,
    pub next: Option<String>,
}

/// ECS's page size for List* calls (the largest `maxResults` it accepts).
pub const LIST_PAGE: usize = 100;

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

/// The ECS calls the service makes, one request each: a List* call answers
/// one page (`next`: the previous page's token).
#[async_trait]
pub trait EcsSource: Send + Sync {
    async fn list_clusters(&self, next: Option<&str>) -> Result<Page, SourceError>;
    async fn list_container_instances(
        &self,
        cluster: &str,
        next: Option<&str>,
    ) -> Result<Page, SourceError>;
    async fn describe_container_instances(
        &self,
        cluster: &str,
        arns: &[String],
    ) -> Result<Vec<Box<RawValue>>, SourceError>;
    /// Task ARNs with the given desired status (RUNNING or STOPPED).
    async fn list_tasks(
        &self,
        cluster: &str,
        desired: &str,
        next: Option<&str>,
    ) -> Result<Page, SourceError>;
    async fn describe_tasks(
        &self,
        cluster: &str,
        arns: &[String],
    ) -> Result<Vec<Box<RawValue>>, SourceError>;
    /// Service ARNs of a cluster.
    async fn list_services(&self, cluster: &str, next: Option<&str>) -> Result<Page, SourceError>;
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
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RunScope {
    pub account: String,
    pub region: String,
}

/// The service name in a service ARN (either format) or a bare name.
pub fn service_name(arn_or_name: &str) -> &str {
    arn_or_name.rsplit('/').next().unwrap_or(arn_or_name)
}

/// One page of `all` for sources that hold their lists in memory (the demo
/// fleet, tests, the benchmark's simulated ECS): the token is the offset.
pub fn page_of(mut all: Vec<String>, next: Option<&str>, size: usize) -> Page {
    let from = next.and_then(|t| t.parse::<usize>().ok()).unwrap_or(0);
    let to = from.saturating_add(size).min(all.len());
    let more = to < all.len();
    all.truncate(to);
    Page {
        arns: all.split_off(from.min(to)),
        next: more.then(|| to.to_string()),
    }
}
