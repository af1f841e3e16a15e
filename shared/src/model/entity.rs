//! Entities: ECS's JSON kept verbatim, with the few fields the service
//! reads parsed out of it.

use serde::Deserialize;
use serde_json::value::RawValue;

use super::{Arn, ClusterId, Kind, ModelError};

/// The identity of one stored entity.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EntityKey {
    pub kind: Kind,
    pub cluster: ClusterId,
    pub id: String,
}

/// Fields the service reads out of a task or container instance; every other
/// field stays in the raw JSON only.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Fields {
    pub task_arn: Option<String>,
    pub container_instance_arn: Option<String>,
    pub cluster_arn: Option<String>,
    pub last_status: Option<String>,
    pub status: Option<String>,
    pub desired_status: Option<String>,
    pub started_by: Option<String>,
    pub group: Option<String>,
    pub launch_type: Option<String>,
    pub version: Option<serde_json::Value>,
}

impl Fields {
    pub fn parse(raw: &RawValue) -> Result<Fields, ModelError> {
        serde_json::from_str(raw.get()).map_err(|e| ModelError::Json(e.to_string()))
    }

    /// The entity's status field: `lastStatus` for tasks, `status` for instances.
    pub fn status_of(&self, kind: Kind) -> Option<&str> {
        match kind {
            Kind::Task => self.last_status.as_deref(),
            Kind::Instance => self.status.as_deref(),
        }
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
}

impl Entity {
    /// Validates an ECS task or container-instance JSON object. `require_version`
    /// is true for events (SPEC §2); the reconcile path accepts a missing one.
    pub fn from_raw(
        kind: Kind,
        raw: Box<RawValue>,
        require_version: bool,
    ) -> Result<Entity, ModelError> {
        if !raw.get().trim_start().starts_with('{') {
            return Err(ModelError::Json("entity is not a JSON object".into()));
        }
        let f = Fields::parse(&raw)?;
        let (arn_field, arn) = match kind {
            Kind::Task => ("taskArn", f.task_arn.as_deref()),
            Kind::Instance => ("containerInstanceArn", f.container_instance_arn.as_deref()),
        };
        let arn = arn.ok_or(ModelError::Missing(arn_field))?;
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
            None | Some(serde_json::Value::Null) if !require_version => 0,
            None | Some(serde_json::Value::Null) => return Err(ModelError::Missing("version")),
            Some(v) => v.as_u64().ok_or_else(|| {
                ModelError::Json(format!("version {v} is not a non-negative integer"))
            })?,
        };
        let status = index_status(f.status_of(kind));
        Ok(Entity {
            key: EntityKey {
                kind,
                cluster,
                id: parsed.id,
            },
            version,
            status,
            raw,
        })
    }
}
