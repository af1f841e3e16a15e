//! EventBridge envelopes from the SQS queue, classified and validated (docs/reference.md#events-in).

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::model::{Arn, ClusterId, Entity, Kind, ModelError};

pub const TASK_STATE_CHANGE: &str = "ECS Task State Change";
pub const INSTANCE_STATE_CHANGE: &str = "ECS Container Instance State Change";
pub const SERVICE_ACTION: &str = "ECS Service Action";
pub const DEPLOYMENT_STATE_CHANGE: &str = "ECS Deployment State Change";

#[derive(Debug, thiserror::Error)]
pub enum EventError {
    #[error("body is not JSON: {0}")]
    NotJson(String),
    #[error("not an EventBridge event: {0}")]
    NotEventBridge(String),
    #[error("event source is {0:?}, not \"aws.ecs\"")]
    WrongSource(String),
    #[error("{detail_type} event: {reason}")]
    Service {
        detail_type: &'static str,
        reason: String,
    },
    #[error("invalid {detail_type} detail: {source}")]
    Detail {
        detail_type: &'static str,
        source: ModelError,
    },
}

/// What one event means for the store.
#[derive(Debug)]
pub enum Change {
    /// A task or container instance to upsert, and when ECS emitted the
    /// event (the envelope's `time`; for ingest lag).
    Upsert {
        entity: Entity,
        time: Option<chrono::DateTime<chrono::Utc>>,
    },
    /// A service or deployment event: the services it names are to be
    /// described (services carry no state or version in these events).
    Services {
        services: Vec<ServiceRef>,
        time: Option<chrono::DateTime<chrono::Utc>>,
    },
    /// Another `aws.ecs` detail-type: acknowledged and counted, not stored.
    Ignored { detail_type: String },
}

/// A service named by an event: its cluster (account and region included)
/// and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceRef {
    pub cluster: ClusterId,
    pub name: String,
}

/// The services of a service or deployment event: every service ARN in
/// `resources`; the cluster from the ARN (long format) or `detail.clusterArn`.
fn service_refs(
    detail_type: &'static str,
    resources: &[String],
    detail: &RawValue,
) -> Result<Vec<ServiceRef>, EventError> {
    let fail = |reason: String| EventError::Service {
        detail_type,
        reason,
    };
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Detail {
        cluster_arn: Option<String>,
    }
    let detail: Detail = serde_json::from_str(detail.get())
        .map_err(|e| fail(format!("detail is not an object: {e}")))?;
    let cluster = match &detail.cluster_arn {
        Some(c) => Some(ClusterId::from_arn(c).map_err(|e| fail(e.to_string()))?),
        None => None,
    };
    let mut out: Vec<ServiceRef> = Vec::new();
    for r in resources {
        let Ok(arn) = Arn::parse_as(r, "service") else {
            continue;
        };
        let cluster = match (&arn.cluster, &cluster) {
            (Some(name), _) => ClusterId {
                name: name.clone(),
                partition: arn.partition.clone(),
                region: arn.region.clone(),
                account: arn.account.clone(),
            },
            (None, Some(c)) if c.place() == arn.place() => c.clone(),
            (None, _) => {
                return Err(fail(format!(
                "{r} names no cluster and the detail has no clusterArn of its account and region"
            )))
            }
        };
        let service = ServiceRef {
            cluster,
            name: arn.id,
        };
        if !out.contains(&service) {
            out.push(service);
        }
    }
    if out.is_empty() {
        return Err(fail("no service ARN in resources".into()));
    }
    Ok(out)
}

#[derive(Deserialize)]
struct Envelope<'a> {
    id: String,
    #[serde(rename = "detail-type")]
    detail_type: String,
    source: String,
    account: String,
    region: String,
    #[serde(default)]
    time: Option<String>,
    #[serde(default)]
    resources: Vec<String>,
    #[serde(borrow)]
    detail: &'a RawValue,
}

/// Parses an SQS message body holding one EventBridge event.
pub fn parse(body: &str) -> Result<Change, EventError> {
    let env: Envelope = serde_json::from_str(body).map_err(|e| {
        // Tell "not JSON at all" apart from "JSON but not an envelope".
        if serde_json::from_str::<serde::de::IgnoredAny>(body).is_err() {
            EventError::NotJson(e.to_string())
        } else {
            EventError::NotEventBridge(e.to_string())
        }
    })?;
    if env.id.is_empty() || env.account.is_empty() || env.region.is_empty() {
        return Err(EventError::NotEventBridge(
            "empty id, account or region".into(),
        ));
    }
    if env.source != "aws.ecs" {
        return Err(EventError::WrongSource(env.source));
    }
    let time = (env.time.as_deref())
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&chrono::Utc));
    let (kind, detail_type) = match env.detail_type.as_str() {
        TASK_STATE_CHANGE => (Kind::Task, TASK_STATE_CHANGE),
        INSTANCE_STATE_CHANGE => (Kind::Instance, INSTANCE_STATE_CHANGE),
        SERVICE_ACTION | DEPLOYMENT_STATE_CHANGE => {
            let detail_type = match env.detail_type.as_str() {
                SERVICE_ACTION => SERVICE_ACTION,
                _ => DEPLOYMENT_STATE_CHANGE,
            };
            let services = service_refs(detail_type, &env.resources, env.detail)?;
            return Ok(Change::Services { services, time });
        }
        _ => {
            return Ok(Change::Ignored {
                detail_type: env.detail_type,
            })
        }
    };
    let entity = Entity::from_raw(kind, env.detail.to_owned(), true).map_err(|source| {
        EventError::Detail {
            detail_type,
            source,
        }
    })?;
    Ok(Change::Upsert { entity, time })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope(detail_type: &str, source: &str, detail: &str) -> String {
        format!(
            r#"{{"version":"0","id":"e1","detail-type":"{detail_type}","source":"{source}","account":"111122223333","time":"2026-01-01T00:00:00Z","region":"eu-west-1","resources":[],"detail":{detail}}}"#
        )
    }

    const TASK: &str = r#"{"taskArn":"arn:aws:ecs:eu-west-1:111122223333:task/c1/t1","clusterArn":"arn:aws:ecs:eu-west-1:111122223333:cluster/c1","lastStatus":"PENDING","version":1}"#;

    #[test]
    fn classifies_detail_types() {
        assert!(
            matches!(parse(&envelope(TASK_STATE_CHANGE, "aws.ecs", TASK)), Ok(Change::Upsert { entity: e, time: Some(_) }) if e.key.kind == Kind::Task)
        );
        assert!(matches!(
            parse(&envelope("ECS Task Protection Change", "aws.ecs", "{}")),
            Ok(Change::Ignored { detail_type }) if detail_type == "ECS Task Protection Change"
        ));
    }

    fn service_event(detail_type: &str, resources: &str, detail: &str) -> String {
        envelope(detail_type, "aws.ecs", detail)
            .replace(r#""resources":[]"#, &format!(r#""resources":{resources}"#))
    }

    #[test]
    fn service_and_deployment_events_name_their_services() {
        let long = r#"["arn:aws:ecs:eu-west-1:111122223333:service/c1/web"]"#;
        // As in the AWS documentation: a deployment event has no clusterArn.
        let deployment = r#"{"eventType":"INFO","eventName":"SERVICE_DEPLOYMENT_IN_PROGRESS","deploymentId":"ecs-svc/1","updatedAt":"2026-01-01T00:00:00Z","reason":"in progress"}"#;
        for detail_type in [SERVICE_ACTION, DEPLOYMENT_STATE_CHANGE] {
            match parse(&service_event(detail_type, long, deployment)) {
                Ok(Change::Services { services, time }) => {
                    assert_eq!(services.len(), 1);
                    assert_eq!(services[0].name, "web");
                    assert_eq!(services[0].cluster.name, "c1");
                    assert_eq!(services[0].cluster.account, "111122223333");
                    assert!(time.is_some());
                }
                other => panic!("{detail_type}: {other:?}"),
            }
        }
        // The short ARN format takes its cluster from the detail.
        let short = r#"["arn:aws:ecs:eu-west-1:111122223333:service/web"]"#;
        let action = r#"{"eventType":"INFO","eventName":"SERVICE_STEADY_STATE","clusterArn":"arn:aws:ecs:eu-west-1:111122223333:cluster/c2"}"#;
        match parse(&service_event(SERVICE_ACTION, short, action)) {
            Ok(Change::Services { services, .. }) => {
                assert_eq!(
                    (services[0].cluster.name.as_str(), services[0].name.as_str()),
                    ("c2", "web")
                )
            }
            other => panic!("{other:?}"),
        }
        // Without a cluster anywhere, or without a service ARN: refused.
        for (resources, detail) in [
            (short, deployment),
            ("[]", action),
            (
                r#"["arn:aws:ecs:eu-west-1:111122223333:cluster/c1"]"#,
                action,
            ),
        ] {
            assert!(
                matches!(
                    parse(&service_event(SERVICE_ACTION, resources, detail)),
                    Err(EventError::Service { .. })
                ),
                "{resources} {detail}"
            );
        }
    }

    #[test]
    fn rejects_bad_bodies() {
        assert!(matches!(parse("{not json"), Err(EventError::NotJson(_))));
        assert!(matches!(
            parse(r#"{"hello":1}"#),
            Err(EventError::NotEventBridge(_))
        ));
        assert!(matches!(parse("[]"), Err(EventError::NotEventBridge(_))));
        assert!(matches!(
            parse(&envelope(TASK_STATE_CHANGE, "aws.ec2", TASK)),
            Err(EventError::WrongSource(_))
        ));
        assert!(matches!(
            parse(&envelope(
                TASK_STATE_CHANGE,
                "aws.ecs",
                r#"{"taskArn":"x"}"#
            )),
            Err(EventError::Detail { .. })
        ));
        assert!(matches!(
            parse(&envelope(TASK_STATE_CHANGE, "aws.ecs", "[1]")),
            Err(EventError::Detail { .. })
        ));
    }
}
