//! ECS entities and EventBridge/SQS envelopes for tests and benchmarks.

use aws_lambda_events::event::sqs::SqsEvent;
use css::ingest::Message;
use css::model::{Entity, Kind};
use serde_json::{json, Value};

pub const ACCOUNT: &str = "111122223333";
pub const OTHER_ACCOUNT: &str = "444455556666";
pub const REGION: &str = "eu-west-1";

pub fn cluster_arn(account: &str, region: &str, name: &str) -> String {
    format!("arn:aws:ecs:{region}:{account}:cluster/{name}")
}

/// A task detail in ECS's shape; `long_arn` picks the ARN format.
pub fn task_detail(
    cluster: &str,
    account: &str,
    id: &str,
    status: &str,
    version: u64,
    long_arn: bool,
) -> Value {
    let task_arn = if long_arn {
        format!("arn:aws:ecs:{REGION}:{account}:task/{cluster}/{id}")
    } else {
        format!("arn:aws:ecs:{REGION}:{account}:task/{id}")
    };
    json!({
        "attachments": [],
        "availabilityZone": "eu-west-1a",
        "clusterArn": cluster_arn(account, REGION, cluster),
        "containerInstanceArn": format!("arn:aws:ecs:{REGION}:{account}:container-instance/{cluster}/ci-{}", &id[..id.len().min(4)]),
        "containers": [{
            "containerArn": format!("arn:aws:ecs:{REGION}:{account}:container/{cluster}/{id}/c1"),
            "lastStatus": status,
            "name": "web",
            "image": "public.ecr.aws/nginx/nginx:1.27",
            "taskArn": task_arn,
            "networkInterfaces": [],
            "cpu": "256",
            "memory": "512"
        }],
        "createdAt": "2026-11-20T10:00:00.000Z",
        "launchType": "EC2",
        "cpu": "256",
        "memory": "512",
        "desiredStatus": if status == "STOPPED" { "STOPPED" } else { "RUNNING" },
        "group": "service:web",
        "lastStatus": status,
        "overrides": {"containerOverrides": [{"name": "web"}]},
        "startedBy": "ecs-svc/1234567890",
        "taskArn": task_arn,
        "taskDefinitionArn": format!("arn:aws:ecs:{REGION}:{account}:task-definition/web:7"),
        "updatedAt": "2026-11-20T10:00:05.000Z",
        "version": version
    })
}

pub fn instance_detail(
    cluster: &str,
    account: &str,
    id: &str,
    status: &str,
    version: u64,
) -> Value {
    json!({
        "agentConnected": true,
        "attributes": [{"name": "ecs.os-type", "value": "linux"}],
        "clusterArn": cluster_arn(account, REGION, cluster),
        "containerInstanceArn": format!("arn:aws:ecs:{REGION}:{account}:container-instance/{cluster}/{id}"),
        "ec2InstanceId": "i-0123456789abcdef0",
        "registeredResources": [{"name": "CPU", "type": "INTEGER", "integerValue": 2048}],
        "remainingResources": [{"name": "CPU", "type": "INTEGER", "integerValue": 1024}],
        "status": status,
        "version": version,
        "versionInfo": {"agentVersion": "1.89.0"},
        "updatedAt": "2026-11-20T10:00:05.000Z"
    })
}

pub fn envelope(detail_type: &str, detail: &Value) -> String {
    json!({
        "version": "0",
        "id": "3fbc1f1c-0000-4000-8000-000000000000",
        "detail-type": detail_type,
        "source": "aws.ecs",
        "account": ACCOUNT,
        "time": "2026-11-20T10:00:05Z",
        "region": REGION,
        "resources": [],
        "detail": detail
    })
    .to_string()
}

pub fn task_event(detail: &Value) -> String {
    envelope("ECS Task State Change", detail)
}

pub fn instance_event(detail: &Value) -> String {
    envelope("ECS Container Instance State Change", detail)
}

/// An SQS event with message ids m0, m1, ...
pub fn sqs_event(bodies: &[String]) -> SqsEvent {
    let records: Vec<Value> = bodies
        .iter()
        .enumerate()
        .map(|(i, b)| {
            json!({
                "messageId": format!("m{i}"),
                "receiptHandle": format!("rh{i}"),
                "body": b,
                "attributes": {},
                "messageAttributes": {},
                "eventSource": "aws:sqs",
                "awsRegion": REGION
            })
        })
        .collect();
    serde_json::from_value(json!({ "Records": records })).expect("valid SQS event")
}

pub fn messages(bodies: &[String]) -> Vec<Message> {
    bodies
        .iter()
        .enumerate()
        .map(|(i, b)| Message {
            id: Some(format!("m{i}")),
            body: Some(b.clone()),
        })
        .collect()
}

pub fn entity(kind: Kind, detail: &Value) -> Entity {
    let raw = serde_json::value::RawValue::from_string(detail.to_string()).expect("raw json");
    Entity::from_raw(kind, raw, false).expect("valid entity")
}

/// Settings as a function has them: endpoints and the names of secrets.
pub fn store_args(endpoints: Vec<String>) -> css::config::StoreArgs {
    css::config::StoreArgs {
        etcd_endpoints: endpoints,
        etcd_username: None,
        etcd_password: None,
        etcd_ca_file: None,
        etcd_cert_file: None,
        etcd_key_file: None,
        etcd_tls_secret: None,
        etcd_credentials_secret: None,
        etcd_timeout: std::time::Duration::from_secs(2),
        record_cache_mb: css::store::etcd::DEFAULT_RECORD_CACHE_MIB,
        key_prefix: "/ecs-css/v1/".into(),
        cursor_table: None,
        subscriptions_per_owner: 100,
        history_retention: std::time::Duration::from_secs(3600),
        reconcile_calls_per_second: 5.0,
        reconcile_verify_horizon: std::time::Duration::from_secs(3600),
        backup_bucket: None,
        etcd_quota_bytes: 4 << 30,
        backup_interval: std::time::Duration::from_secs(3600),
        metrics_namespace: "ClusterStateService".into(),
        log_level: None,
    }
}

/// Reconcile settings of tests about what a pass decides rather than what
/// it spends: every entity described every pass (a zero horizon) and a
/// budget that never makes a local ECS wait.
pub fn describe_all() -> css::reconcile::Settings {
    css::reconcile::Settings {
        budget: css::reconcile::BudgetSettings {
            calls_per_second: 1000.0,
            burst: 1000.0,
        },
        verify_horizon: std::time::Duration::ZERO,
        now: std::time::SystemTime::now,
    }
}

/// A service as DescribeServices answers it (the shape of the ECS API
/// reference's example), timestamps ISO-8601. `rollouts`: each deployment's
/// rolloutState, PRIMARY first; `updated`: their updatedAt.
#[allow(clippy::too_many_arguments)]
pub fn service_detail(
    cluster: &str,
    account: &str,
    name: &str,
    status: &str,
    launch_type: &str,
    strategy: &str,
    rollouts: &[&str],
    updated: &str,
) -> Value {
    let deployments: Vec<Value> = (rollouts.iter().enumerate())
        .map(|(i, state)| {
            json!({
                "id": format!("ecs-svc/92233705643423483{i:02}"),
                "status": if i == 0 { "PRIMARY" } else { "ACTIVE" },
                "taskDefinition": format!("arn:aws:ecs:{REGION}:{account}:task-definition/{name}:{}", 10 - i),
                "desiredCount": 2, "pendingCount": 0, "runningCount": 1, "failedTasks": 0,
                "createdAt": "2026-11-20T09:00:00.000Z", "updatedAt": updated,
                "launchType": launch_type,
                "rolloutState": state,
                "rolloutStateReason": format!("ECS deployment {state}.")
            })
        })
        .collect();
    json!({
        "serviceArn": format!("arn:aws:ecs:{REGION}:{account}:service/{cluster}/{name}"),
        "serviceName": name,
        "clusterArn": cluster_arn(account, REGION, cluster),
        "loadBalancers": [],
        "serviceRegistries": [],
        "status": status,
        "desiredCount": 2,
        "runningCount": 2,
        "pendingCount": 0,
        "launchType": launch_type,
        "taskDefinition": format!("arn:aws:ecs:{REGION}:{account}:task-definition/{name}:10"),
        "deploymentConfiguration": {"maximumPercent": 200, "minimumHealthyPercent": 100},
        "deployments": deployments,
        "events": [{"id": "e1", "createdAt": "2026-11-20T08:59:00.000Z", "message": format!("(service {name}) has reached a steady state.")}],
        "createdAt": "2026-11-01T00:00:00.000Z",
        "schedulingStrategy": strategy,
        "propagateTags": "NONE"
    })
}

/// A service entity as the ingest stores it after describing, read at `read_at`.
pub fn service_entity(detail: &Value, read_at: chrono::DateTime<chrono::Utc>) -> Entity {
    entity(Kind::Service, detail).read_at(read_at)
}

/// A service or deployment event naming `cluster`/`name` (long ARN format).
pub fn service_event(
    detail_type: &str,
    account: &str,
    region: &str,
    cluster: &str,
    name: &str,
) -> String {
    json!({
        "version": "0", "id": "5a1e0000-0000-4000-8000-000000000000",
        "detail-type": detail_type, "source": "aws.ecs",
        "account": account, "time": chrono::Utc::now().to_rfc3339(), "region": region,
        "resources": [format!("arn:aws:ecs:{region}:{account}:service/{cluster}/{name}")],
        "detail": {"eventType": "INFO", "eventName": "SERVICE_STEADY_STATE",
                   "clusterArn": format!("arn:aws:ecs:{region}:{account}:cluster/{cluster}"),
                   "createdAt": chrono::Utc::now().to_rfc3339()}
    })
    .to_string()
}

/// Every record of `kind` in `store`, read page by page at one revision.
pub async fn records_of(
    store: &dyn css::store::StateStore,
    kind: Kind,
) -> Vec<css::store::StoredRecord> {
    let mut out = Vec::new();
    let mut req = css::store::ListRequest {
        kind,
        cluster: css::store::ClusterScope::All,
        status: None,
        start_after: None,
        limit: 1000,
        revision: None,
    };
    loop {
        let page = store.list(&req).await.expect("list");
        req.revision = Some(page.revision);
        req.start_after = page.records.last().map(|r| r.store_key.clone());
        out.extend(page.records);
        if !page.more {
            return out;
        }
    }
}

/// Every task in `store` (`cluster/id`), with its mod_revision and ECS
/// version, read page by page at one revision.
pub async fn all_tasks(
    store: &dyn css::store::StateStore,
) -> std::collections::BTreeMap<String, (i64, u64)> {
    let records = records_of(store, Kind::Task).await;
    (records.iter())
        .map(|r| {
            let v = r.meta().expect("record").ecs_version;
            let key = format!("{}/{}", r.key.cluster.name, r.key.id);
            (key, (r.mod_revision, v))
        })
        .collect()
}

/// Every record of every kind in `store`, read page by page.
pub async fn all_records(store: &dyn css::store::StateStore) -> Vec<css::store::StoredRecord> {
    let mut out = Vec::new();
    for kind in Kind::ALL {
        out.extend(records_of(store, kind).await);
    }
    out
}

/// `GET /v1/status` through the router, checked against openapi.yaml.
pub async fn status(store: std::sync::Arc<dyn css::store::StateStore>) -> Value {
    use tower::ServiceExt;
    let app = css::api::router(css::api::AppState::local(
        store,
        std::sync::Arc::new(css::cursor::EmbeddedCursorStore::new()),
    ));
    let req = axum::http::Request::get("/v1/status")
        .body(axum::body::Body::empty())
        .expect("request");
    let resp = app.oneshot(req).await.expect("answer");
    assert_eq!(resp.status(), 200);
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .expect("body");
    let v: Value = serde_json::from_slice(&body).expect("JSON");
    crate::openapi::OpenApi::load().check("Status", &v);
    v
}

/// The commands of README's `sh` block after `marker` (an HTML comment),
/// without comments and blank lines: what the tests run as written.
pub fn readme_commands(marker: &str) -> Vec<String> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md");
    let readme = std::fs::read_to_string(path).expect("README.md");
    let block = readme
        .split_once(marker)
        .and_then(|(_, rest)| rest.split_once("```sh\n"))
        .and_then(|(_, rest)| rest.split_once("```"))
        .map(|(block, _)| block.to_string())
        .unwrap_or_else(|| panic!("README has a sh block after {marker}"));
    block
        .lines()
        .map(|l| l.split("  #").next().unwrap_or("").trim().to_string())
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect()
}
