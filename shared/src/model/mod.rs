//! The state model: ARNs, entity keys, statuses and the entities themselves.
//!
//! Entities are kept as ECS's own JSON, byte for byte (`RawValue`), so fields
//! ECS adds later survive untouched; only the few fields the service needs are
//! parsed out of them.

mod arn;
mod entity;

pub use arn::{is_account, is_cluster_name, is_region_name, is_resource_id, Arn, ClusterId};
pub use entity::{Entity, EntityKey, Fields, Stamp, UNKNOWN_STATUS};

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
    Service,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Task, Kind::Instance, Kind::Service];

    /// The path segment used in keys and URLs, and a subscription's resource.
    pub fn plural(self) -> &'static str {
        match self {
            Kind::Task => "tasks",
            Kind::Instance => "instances",
            Kind::Service => "services",
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
            Kind::Service => "service",
        }
    }

    /// Valid status values, upper case (docs/reference.md#http-api).
    pub fn statuses(self) -> &'static [&'static str] {
        match self {
            Kind::Task => TASK_STATUSES,
            Kind::Instance => INSTANCE_STATUSES,
            Kind::Service => SERVICE_STATUSES,
        }
    }

    /// The field of the entity's JSON holding its ARN.
    pub fn arn_field(self) -> &'static str {
        match self {
            Kind::Task => "taskArn",
            Kind::Instance => "containerInstanceArn",
            Kind::Service => "serviceArn",
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

pub const SERVICE_STATUSES: &[&str] = &["ACTIVE", "DRAINING", "INACTIVE"];

/// A deployment's rolloutState (DescribeServices).
pub const ROLLOUT_STATES: &[&str] = &["COMPLETED", "FAILED", "IN_PROGRESS"];

/// A service's schedulingStrategy.
pub const SCHEDULING_STRATEGIES: &[&str] = &["REPLICA", "DAEMON"];

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::value::RawValue;

    #[test]
    fn every_kind_has_one_plural_and_back() {
        for kind in Kind::ALL {
            assert_eq!(Kind::from_plural(kind.plural()), Some(kind));
        }
        assert_eq!(Kind::from_plural("service"), None);
        assert_eq!(Kind::from_plural("Tasks"), None);
    }

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
            "arn:aws:ecs:us-east-1:123456789012:capacity-provider/x",
            "arn:aws:ecs:us-east-1:123456789012:service/a/b/c",
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
