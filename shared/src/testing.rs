//! Builders for the library's unit tests: ECS JSON, entities and EventBridge
//! messages, on the embedded store (no etcd or moto needed).

use serde_json::{json, Value};

use crate::model::{Entity, Kind};

pub const ACCOUNT: &str = "111122223333";
pub const REGION: &str = "eu-west-1";

pub fn cluster_arn(cluster: &str) -> String {
    format!("arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/{cluster}")
}

/// A task in ECS's shape (long ARN format).
pub fn task(cluster: &str, id: &str, status: &str, version: u64) -> Value {
    json!({
        "taskArn": format!("arn:aws:ecs:{REGION}:{ACCOUNT}:task/{cluster}/{id}"),
        "clusterArn": cluster_arn(cluster),
        "containerInstanceArn": format!("arn:aws:ecs:{REGION}:{ACCOUNT}:container-instance/{cluster}/ci1"),
        "lastStatus": status,
        "desiredStatus": if status == "STOPPED" { "STOPPED" } else { "RUNNING" },
        "launchType": "EC2",
        "group": "service:web",
        "startedBy": "ecs-svc/1",
        "version": version
    })
}

pub fn instance(cluster: &str, id: &str, status: &str, version: u64) -> Value {
    json!({
        "containerInstanceArn": format!("arn:aws:ecs:{REGION}:{ACCOUNT}:container-instance/{cluster}/{id}"),
        "clusterArn": cluster_arn(cluster),
        "status": status,
        "version": version
    })
}

pub fn entity(kind: Kind, detail: &Value) -> Entity {
    let raw = serde_json::value::RawValue::from_string(detail.to_string())
        .unwrap_or_else(|e| panic!("{e}"));
    Entity::from_raw(kind, raw, false).unwrap_or_else(|e| panic!("{e}"))
}

/// An EventBridge message body with `detail`.
pub fn event(detail_type: &str, detail: &Value) -> String {
    json!({
        "version": "0", "id": "e1", "detail-type": detail_type, "source": "aws.ecs",
        "account": ACCOUNT, "time": "2026-11-20T10:00:05Z", "region": REGION,
        "resources": [], "detail": detail
    })
    .to_string()
}

pub fn task_event(detail: &Value) -> String {
    event("ECS Task State Change", detail)
}
