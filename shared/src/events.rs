//! EventBridge envelopes from the SQS queue, classified and validated (SPEC §2).

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::model::{Entity, Kind, ModelError};

pub const TASK_STATE_CHANGE: &str = "ECS Task State Change";
pub const INSTANCE_STATE_CHANGE: &str = "ECS Container Instance State Change";

#[derive(Debug, thiserror::Error)]
pub enum EventError {
    #[error("body is not JSON: {0}")]
    NotJson(String),
    #[error("not an EventBridge event: {0}")]
    NotEventBridge(String),
    #[error("event source is {0:?}, not \"aws.ecs\"")]
    WrongSource(String),
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
    /// Another `aws.ecs` detail-type: acknowledged and counted, not stored.
    Ignored { detail_type: String },
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
    let (kind, detail_type) = match env.detail_type.as_str() {
        TASK_STATE_CHANGE => (Kind::Task, TASK_STATE_CHANGE),
        INSTANCE_STATE_CHANGE => (Kind::Instance, INSTANCE_STATE_CHANGE),
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
    let time = (env.time.as_deref())
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&chrono::Utc));
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
            parse(&envelope("ECS Service Action", "aws.ecs", "{}")),
            Ok(Change::Ignored { detail_type }) if detail_type == "ECS Service Action"
        ));
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
