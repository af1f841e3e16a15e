//! Entities: ECS's JSON kept verbatim, with the few fields the service
//! reads parsed out of it.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::{Arn, ClusterId, Kind, ModelError};

/// The identity of one stored entity.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EntityKey {
    pub kind: Kind,
    pub cluster: ClusterId,
    pub id: String,
}

/// Fields the service reads out of a task, container instance or service;
/// every other field stays in the raw JSON only.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Fields {
    pub task_arn: Option<String>,
    pub container_instance_arn: Option<String>,
    pub service_arn: Option<String>,
    pub scheduling_strategy: Option<String>,
    #[serde(default)]
    pub deployments: Vec<Deployment>,
    pub cluster_arn: Option<String>,
    pub last_status: Option<String>,
    pub status: Option<String>,
    pub desired_status: Option<String>,
    pub started_by: Option<String>,
    pub group: Option<String>,
    pub launch_type: Option<String>,
    pub version: Option<serde_json::Value>,
}

/// A service deployment, as far as filters look at it.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Deployment {
    pub rollout_state: Option<String>,
}

impl Fields {
    pub fn parse(raw: &RawValue) -> Result<Fields, ModelError> {
        serde_json::from_str(raw.get()).map_err(|e| ModelError::Json(e.to_string()))
    }

    /// The entity's status field: `lastStatus` for tasks, `status` for
    /// instances and services.
    pub fn status_of(&self, kind: Kind) -> Option<&str> {
        match kind {
            Kind::Task => self.last_status.as_deref(),
            Kind::Instance | Kind::Service => self.status.as_deref(),
        }
    }

    fn arn_of(&self, kind: Kind) -> Option<&str> {
        match kind {
            Kind::Task => self.task_arn.as_deref(),
            Kind::Instance => self.container_instance_arn.as_deref(),
            Kind::Service => self.service_arn.as_deref(),
        }
    }
}

/// When a service snapshot (a DescribeServices answer) was produced, for the
/// guard that keeps a snapshot from replacing one read later (services have
/// no `version`). Ordered by ECS's own newest timestamp inside the snapshot
/// first: a snapshot showing a later change was produced later, however
/// late it arrived. Snapshots showing the same newest change are ordered by
/// when the request attempt that got the answer was sent: the answer was
/// produced after that instant, so a slow or retried answer sorts by its
/// last attempt, never by its arrival.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Stamp {
    /// The newest `...At` timestamp in the snapshot (ms since the epoch).
    pub ecs_time_ms: i64,
    /// When the answering request attempt was sent (µs since the epoch).
    pub read_time_us: i64,
}

impl Stamp {
    /// The newest ISO-8601 `...At` timestamp anywhere in `raw` (deployments'
    /// `updatedAt`, events' `createdAt`, ...); 0 when there is none.
    pub fn newest_ecs_time(raw: &RawValue) -> i64 {
        fn walk(v: &serde_json::Value, newest: &mut i64) {
            match v {
                serde_json::Value::Object(map) => {
                    for (k, val) in map {
                        if let (true, Some(s)) = (k.ends_with("At"), val.as_str()) {
                            if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
                                *newest = (*newest).max(t.timestamp_millis());
                            }
                        }
                        walk(val, newest);
                    }
                }
                serde_json::Value::Array(items) => items.iter().for_each(|i| walk(i, newest)),
                _ => {}
            }
        }
        let mut newest = 0;
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(raw.get()) {
            walk(&v, &mut newest);
        }
        newest
    }
}

/// Status used in index keys when ECS sends none (or one with odd characters).
pub const UNKNOWN_STATUS: &str = "UNKNOWN";

fn index_status(s: Option<&str>) -> String {
    match s {
        Some(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') => {
            s.to_ascii_uppercase()
        }
        _ => UNKNOWN_STATUS.to_string(),
    }
}

/// A validated ECS entity ready to be stored.
#[derive(Debug, Clone)]
pub struct Entity {
    pub key: EntityKey,
    /// ECS's `version`; 0 when ECS gives none (the reconcile path).
    pub version: u64,
    /// Upper-case status (lastStatus / status), as used in the status index.
    pub status: String,
    /// The entity exactly as ECS sent it.
    pub raw: Box<RawValue>,
    /// Services only: when the snapshot was produced (see `Stamp`).
    pub stamp: Option<Stamp>,
}

impl Entity {
    /// Validates an ECS task, container-instance or service JSON object.
    /// `require_version` is true for task and instance events (docs/reference.md#events-in); the
    /// reconcile path accepts a missing one, and services never have one:
    /// their order comes from `stamp` (read time 0 until `read_at`).
    pub fn from_raw(
        kind: Kind,
        raw: Box<RawValue>,
        require_version: bool,
    ) -> Result<Entity, ModelError> {
        if !raw.get().trim_start().starts_with('{') {
            return Err(ModelError::Json("entity is not a JSON object".into()));
        }
        let f = Fields::parse(&raw)?;
        let arn_field = kind.arn_field();
        let arn = f.arn_of(kind).ok_or(ModelError::Missing(arn_field))?;
        let cluster_arn = f
            .cluster_arn
            .as_deref()
            .ok_or(ModelError::Missing("clusterArn"))?;
        let cluster = ClusterId::from_arn(cluster_arn)?;
        let parsed = Arn::parse_as(arn, kind.arn_type())?;
        if parsed.place() != cluster.place() {
            return Err(ModelError::Inconsistent(format!(
                "{arn_field} {arn} is not in the partition, region and account of clusterArn {cluster_arn}"
            )));
        }
        if let Some(c) = &parsed.cluster {
            if *c != cluster.name {
                return Err(ModelError::Inconsistent(format!(
                    "{arn_field} {arn} names cluster {c}, clusterArn names {}",
                    cluster.name
                )));
            }
        }
        let version = match &f.version {
            _ if kind == Kind::Service => 0,
            None | Some(serde_json::Value::Null) if !require_version => 0,
            None | Some(serde_json::Value::Null) => return Err(ModelError::Missing("version")),
            Some(v) => v.as_u64().ok_or_else(|| {
                ModelError::Json(format!("version {v} is not a non-negative integer"))
            })?,
        };
        let status = index_status(f.status_of(kind));
        let stamp = (kind == Kind::Service).then(|| Stamp {
            ecs_time_ms: Stamp::newest_ecs_time(&raw),
            read_time_us: 0,
        });
        Ok(Entity {
            key: EntityKey {
                kind,
                cluster,
                id: parsed.id,
            },
            version,
            status,
            raw,
            stamp,
        })
    }

    /// A service snapshot read by a request attempt sent at `sent`.
    pub fn read_at(mut self, sent: chrono::DateTime<chrono::Utc>) -> Entity {
        if let Some(stamp) = &mut self.stamp {
            stamp.read_time_us = sent.timestamp_micros();
        }
        self
    }
}
