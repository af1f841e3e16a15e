//! The state model: ARNs, entity keys, statuses and the entities themselves.
//!
//! Entities are kept as ECS's own JSON, byte for byte (`RawValue`), so fields
//! ECS adds later survive untouched; only the few fields the service needs are
//! parsed out of them.

use std::fmt;

use serde::Deserialize;
use serde_json::value::RawValue;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    #[error("invalid ARN {arn:?}: {reason}")]
    Arn { arn: String, reason: &'static str },
    #[error("missing field `{0}`")]
    Missing(&'static str),
    #[error("invalid entity JSON: {0}")]
    Json(String),
    #[error("{0}")]
    Inconsistent(String),
}

/// What kind of ECS resource an entity is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Task,
    Instance,
}

impl Kind {
    pub const ALL: [Kind; 2] = [Kind::Task, Kind::Instance];

    /// The path segment used in keys and URLs, and a subscription's resource.
    pub fn plural(self) -> &'static str {
        match self {
            Kind::Task => "tasks",
            Kind::Instance => "instances",
        }
    }

    /// The kind a path segment or resource name (`plural`) stands for.
    pub fn from_plural(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.plural() == s)
    }

    /// The ARN resource type of this kind.
    pub fn arn_type(self) -> &'static str {
        match self {
            Kind::Task => "task",
            Kind::Instance => "container-instance",
        }
    }

    /// Valid status values, upper case (SPEC §4).
    pub fn statuses(self) -> &'static [&'static str] {
        match self {
            Kind::Task => TASK_STATUSES,
            Kind::Instance => INSTANCE_STATUSES,
        }
    }

    /// Normalizes a status given by a user: case-insensitive, must be known.
    pub fn parse_status(self, s: &str) -> Option<&'static str> {
        self.statuses()
            .iter()
            .copied()
            .find(|known| known.eq_ignore_ascii_case(s))
    }
}

pub const TASK_STATUSES: &[&str] = &[
    "PROVISIONING",
    "PENDING",
    "ACTIVATING",
    "RUNNING",
    "DEACTIVATING",
    "STOPPING",
    "DEPROVISIONING",
    "STOPPED",
    "DELETED",
];

pub const INSTANCE_STATUSES: &[&str] = &[
    "REGISTERING",
    "REGISTRATION_FAILED",
    "ACTIVE",
    "DRAINING",
    "DEREGISTERING",
    "INACTIVE",
];

/// A parsed ECS ARN: `arn:<partition>:ecs:<region>:<account>:<type>/[<cluster>/]<id>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arn {
    pub partition: String,
    pub region: String,
    pub account: String,
    pub resource_type: String,
    /// The cluster name, for the long task/container-instance format.
    pub cluster: Option<String>,
    /// The resource id (for a cluster ARN: the cluster name).
    pub id: String,
}

fn is_partition(s: &str) -> bool {
    // ARN grammar: a lower-case word, optionally hyphenated (aws, aws-cn, aws-us-gov, aws-iso-b...).
    !s.is_empty()
        && s.len() <= 32
        && s.starts_with(|c: char| c.is_ascii_lowercase())
        && s.split('-').all(|part| {
            !part.is_empty()
                && part
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        })
}

fn is_region(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 32
        && s.split('-').all(|part| {
            !part.is_empty()
                && part
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        })
}

fn is_account(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

/// Cluster names: up to 255 letters, digits, hyphens and underscores.
pub fn is_cluster_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 255
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Task and container-instance ids: hex ids, or UUIDs for old instances.
pub fn is_resource_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl Arn {
    pub fn parse(arn: &str) -> Result<Arn, ModelError> {
        let err = |reason| ModelError::Arn {
            arn: arn.to_string(),
            reason,
        };
        let mut parts = arn.splitn(6, ':');
        let (Some("arn"), Some(partition), Some(service), Some(region), Some(account), Some(rest)) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(err(
                "expected arn:<partition>:ecs:<region>:<account>:<resource>",
            ));
        };
        if !is_partition(partition) {
            return Err(err("bad partition"));
        }
        if service != "ecs" {
            return Err(err("not an ECS ARN"));
        }
        if !is_region(region) {
            return Err(err("bad region"));
        }
        if !is_account(account) {
            return Err(err("bad account id"));
        }
        let segs: Vec<&str> = rest.split('/').collect();
        let (resource_type, cluster, id) = match segs.as_slice() {
            [t, id] => (*t, None, *id),
            [t, cluster, id] if *t != "cluster" => (*t, Some(*cluster), *id),
            _ => return Err(err("bad resource part")),
        };
        match resource_type {
            "cluster" => {
                if !is_cluster_name(id) {
                    return Err(err("bad cluster name"));
                }
            }
            "task" | "container-instance" => {
                if !is_resource_id(id) {
                    return Err(err("bad resource id"));
                }
                if let Some(c) = cluster {
                    if !is_cluster_name(c) {
                        return Err(err("bad cluster name"));
                    }
                }
            }
            _ => return Err(err("unsupported resource type")),
        }
        Ok(Arn {
            partition: partition.to_string(),
            region: region.to_string(),
            account: account.to_string(),
            resource_type: resource_type.to_string(),
            cluster: cluster.map(str::to_string),
            id: id.to_string(),
        })
    }

    /// Partition, region and account: where the resource lives.
    pub fn place(&self) -> (&str, &str, &str) {
        (&self.partition, &self.region, &self.account)
    }

    pub fn parse_as(arn: &str, resource_type: &'static str) -> Result<Arn, ModelError> {
        let parsed = Arn::parse(arn)?;
        if parsed.resource_type != resource_type {
            return Err(ModelError::Arn {
                arn: arn.to_string(),
                reason: match resource_type {
                    "cluster" => "not a cluster ARN",
                    "task" => "not a task ARN",
                    _ => "not a container-instance ARN",
                },
            });
        }
        Ok(parsed)
    }
}

/// One cluster, identified by its ARN's components so that same-named
/// clusters in different accounts or regions never collide.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClusterId {
    pub name: String,
    pub partition: String,
    pub region: String,
    pub account: String,
}

impl ClusterId {
    pub fn from_arn(arn: &str) -> Result<ClusterId, ModelError> {
        let a = Arn::parse_as(arn, "cluster")?;
        Ok(ClusterId {
            name: a.id,
            partition: a.partition,
            region: a.region,
            account: a.account,
        })
    }

    /// Partition, region and account: where the cluster lives.
    pub fn place(&self) -> (&str, &str, &str) {
        (&self.partition, &self.region, &self.account)
    }

    pub fn arn(&self) -> String {
        format!(
            "arn:{}:ecs:{}:{}:cluster/{}",
            self.partition, self.region, self.account, self.name
        )
    }
}

impl fmt::Display for ClusterId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.arn())
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(s: &str) -> Box<RawValue> {
        RawValue::from_string(s.to_string()).unwrap()
    }

    #[test]
    fn parses_both_task_arn_formats_and_partitions() {
        let short = Arn::parse("arn:aws:ecs:us-east-1:123456789012:task/abc123").unwrap();
        assert_eq!(short.cluster, None);
        assert_eq!(short.id, "abc123");
        let long =
            Arn::parse("arn:aws-us-gov:ecs:us-gov-west-1:123456789012:task/prod/abc123").unwrap();
        assert_eq!(long.cluster.as_deref(), Some("prod"));
        assert_eq!(long.partition, "aws-us-gov");
        let ci = Arn::parse("arn:aws-cn:ecs:cn-north-1:123456789012:container-instance/prod/0f3e")
            .unwrap();
        assert_eq!(ci.resource_type, "container-instance");
        let c = ClusterId::from_arn("arn:aws-iso-b:ecs:us-isob-east-1:123456789012:cluster/a_b-c")
            .unwrap();
        assert_eq!(c.name, "a_b-c");
        assert_eq!(
            c.arn(),
            "arn:aws-iso-b:ecs:us-isob-east-1:123456789012:cluster/a_b-c"
        );
    }

    #[test]
    fn rejects_malformed_arns() {
        for bad in [
            "",
            "arn:aws:ecs:us-east-1:123456789012",
            "arn:aws:ec2:us-east-1:123456789012:task/x",
            "arn:AWS:ecs:us-east-1:123456789012:task/x",
            "arn:aws:ecs:us-east-1:12345:task/x",
            "arn:aws:ecs:us-east-1:123456789012:task/",
            "arn:aws:ecs:us-east-1:123456789012:task/a/b/c",
            "arn:aws:ecs:us-east-1:123456789012:task/a b",
            "arn:aws:ecs:us-east-1:123456789012:service/x",
            "arn:aws:ecs::123456789012:task/x",
        ] {
            assert!(Arn::parse(bad).is_err(), "{bad:?} should be rejected");
        }
        assert!(ClusterId::from_arn("arn:aws:ecs:us-east-1:123456789012:task/x").is_err());
    }

    #[test]
    fn entity_requires_arns_and_version() {
        let ok = r#"{"taskArn":"arn:aws:ecs:eu-west-1:111122223333:task/c1/t1","clusterArn":"arn:aws:ecs:eu-west-1:111122223333:cluster/c1","lastStatus":"running","version":3,"newField":{"x":1}}"#;
        let e = Entity::from_raw(Kind::Task, raw(ok), true).unwrap();
        assert_eq!(e.version, 3);
        assert_eq!(e.status, "RUNNING");
        assert_eq!(e.key.id, "t1");
        assert_eq!(e.raw.get(), ok, "raw JSON kept verbatim");

        let no_version = r#"{"taskArn":"arn:aws:ecs:eu-west-1:111122223333:task/t1","clusterArn":"arn:aws:ecs:eu-west-1:111122223333:cluster/c1"}"#;
        assert_eq!(
            Entity::from_raw(Kind::Task, raw(no_version), true).unwrap_err(),
            ModelError::Missing("version")
        );
        assert_eq!(
            Entity::from_raw(Kind::Task, raw(no_version), false)
                .unwrap()
                .version,
            0
        );

        let wrong_cluster = r#"{"taskArn":"arn:aws:ecs:eu-west-1:111122223333:task/other/t1","clusterArn":"arn:aws:ecs:eu-west-1:111122223333:cluster/c1","version":1}"#;
        assert!(matches!(
            Entity::from_raw(Kind::Task, raw(wrong_cluster), true),
            Err(ModelError::Inconsistent(_))
        ));
        let wrong_account = r#"{"taskArn":"arn:aws:ecs:eu-west-1:999922223333:task/t1","clusterArn":"arn:aws:ecs:eu-west-1:111122223333:cluster/c1","version":1}"#;
        assert!(Entity::from_raw(Kind::Task, raw(wrong_account), true).is_err());
        let no_cluster = r#"{"containerInstanceArn":"arn:aws:ecs:eu-west-1:111122223333:container-instance/i1","version":1}"#;
        assert_eq!(
            Entity::from_raw(Kind::Instance, raw(no_cluster), true).unwrap_err(),
            ModelError::Missing("clusterArn")
        );
        let neg = r#"{"taskArn":"arn:aws:ecs:eu-west-1:111122223333:task/t1","clusterArn":"arn:aws:ecs:eu-west-1:111122223333:cluster/c1","version":-1}"#;
        assert!(Entity::from_raw(Kind::Task, raw(neg), true).is_err());
    }

    #[test]
    fn statuses_are_case_insensitive() {
        assert_eq!(Kind::Task.parse_status("running"), Some("RUNNING"));
        assert_eq!(Kind::Instance.parse_status("Draining"), Some("DRAINING"));
        assert_eq!(Kind::Task.parse_status("ACTIVE"), None);
    }
}
