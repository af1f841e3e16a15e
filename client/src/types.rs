//! The API's answers (docs/reference.md#http-api, docs/reference.md#watching) as Rust types. Entities keep every field
//! ECS sent: the ones a client commonly needs are typed, the rest stay in
//! `other`.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// `{"metadata": {"entityVersion"}, "entity"}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Item<T> {
    pub metadata: Metadata,
    pub entity: T,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Metadata {
    pub entity_version: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Task {
    pub task_arn: String,
    pub cluster_arn: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launch_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_definition_arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_instance_arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ContainerInstance {
    pub container_instance_arn: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ec2_instance_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub running_tasks_count: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_tasks_count: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_connected: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registered_at: Option<String>,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// An ECS service as DescribeServices answers it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Service {
    pub service_arn: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_count: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub running_count: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_count: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launch_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduling_strategy: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_definition: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deployments: Vec<Deployment>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// One deployment of a service (the PRIMARY one is the newest).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Deployment {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout_state: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

impl Service {
    /// The PRIMARY deployment (the one ECS is moving to).
    pub fn primary(&self) -> Option<&Deployment> {
        (self.deployments.iter())
            .find(|d| d.status.as_deref() == Some("PRIMARY"))
            .or(self.deployments.first())
    }
}

/// What the client needs of every kind.
pub trait Entity: DeserializeOwned + Serialize + Clone + Send + Sync + 'static {
    const RESOURCE: Resource;
    /// The ARN: unique across clusters, accounts and regions.
    fn arn(&self) -> &str;
}

impl Entity for Task {
    const RESOURCE: Resource = Resource::Tasks;
    fn arn(&self) -> &str {
        &self.task_arn
    }
}

impl Entity for ContainerInstance {
    const RESOURCE: Resource = Resource::Instances;
    fn arn(&self) -> &str {
        &self.container_instance_arn
    }
}

impl Entity for Service {
    const RESOURCE: Resource = Resource::Services;
    fn arn(&self) -> &str {
        &self.service_arn
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    Tasks,
    Instances,
    Services,
}

impl Resource {
    pub fn as_str(self) -> &'static str {
        match self {
            Resource::Tasks => "tasks",
            Resource::Instances => "instances",
            Resource::Services => "services",
        }
    }
}

/// One list page.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Page<T> {
    pub items: Vec<Item<T>>,
    pub revision: String,
    #[serde(default)]
    pub next_token: Option<String>,
    /// The store's identity (absent from servers older than identities).
    #[serde(default)]
    pub store: Option<String>,
}

/// One long-poll answer.
#[derive(Debug, Clone, Deserialize)]
pub struct Batch<T> {
    pub events: Vec<Change<T>>,
    pub revision: String,
    #[serde(default)]
    pub more: bool,
    #[serde(default)]
    pub store: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Change<T> {
    #[serde(rename = "type")]
    pub kind: ChangeKind,
    pub revision: String,
    pub item: Item<T>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "UPPERCASE")]
pub enum ChangeKind {
    Put,
    Delete,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Subscription {
    pub id: String,
    pub resource: String,
    pub filters: Map<String, Value>,
    pub cursor: String,
    #[serde(default)]
    pub created_at: Option<String>,
    #[serde(default)]
    pub expires_at: Option<String>,
}

/// The list filters of docs/reference.md#http-api (instances use `cluster` and `status`;
/// services also `launchType`, `schedulingStrategy` and `rolloutState`);
/// also cssctl's filter flags.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, clap::Args)]
#[serde(rename_all = "camelCase")]
pub struct Filters {
    /// Cluster name (every cluster of that name) or ARN.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// Last status (tasks) or status (instances, services), any case.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Tasks: desired status.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub desired_status: Option<String>,
    /// Tasks: startedBy.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_by: Option<String>,
    /// Tasks: group, e.g. service:web.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Tasks and services: launch type (EC2, FARGATE, EXTERNAL).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub launch_type: Option<String>,
    /// Tasks: container instance ARN or id.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container_instance: Option<String>,
    /// Tasks: of this service (group service:NAME).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// Services: REPLICA or DAEMON.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scheduling_strategy: Option<String>,
    /// Services: with a deployment in this rolloutState (COMPLETED, FAILED, IN_PROGRESS).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollout_state: Option<String>,
    /// Of this account (12 digits).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// Of this Region (e.g. eu-west-1).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
}

impl Filters {
    /// As query parameters, in the API's names.
    pub fn pairs(&self) -> Vec<(&'static str, String)> {
        [
            ("cluster", &self.cluster),
            ("status", &self.status),
            ("desiredStatus", &self.desired_status),
            ("startedBy", &self.started_by),
            ("group", &self.group),
            ("launchType", &self.launch_type),
            ("containerInstance", &self.container_instance),
            ("service", &self.service),
            ("schedulingStrategy", &self.scheduling_strategy),
            ("rolloutState", &self.rollout_state),
            ("account", &self.account),
            ("region", &self.region),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.clone().map(|v| (k, v)))
        .collect()
    }
}

/// The API's error body.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ErrorBody {
    #[serde(default)]
    pub code: String,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub parameter: Option<String>,
}
