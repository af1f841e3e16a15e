//! Builders for the library's unit tests: ECS JSON, entities and EventBridge
//! messages, on the embedded store (no etcd or moto needed).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde_json::value::RawValue;
use serde_json::{json, Value};

use crate::ecs::{page_of, EcsSource, Page, ServicesAnswer, SourceError, LIST_PAGE};
use crate::model::{Entity, Kind};
use crate::store::{EmbeddedStore, Source, StateStore, StoredRecord, Upsert};

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

/// A service as DescribeServices answers it (the shape of the ECS API
/// reference's example: two deployments during a rollout, service events),
/// timestamps already ISO-8601. `rollouts` gives each deployment's
/// rolloutState, newest (PRIMARY) first; `updated` its updatedAt.
pub fn service(cluster: &str, name: &str, status: &str, rollouts: &[&str], updated: &str) -> Value {
    let deployments: Vec<Value> = rollouts
        .iter()
        .enumerate()
        .map(|(i, state)| {
            json!({
                "id": format!("ecs-svc/92233705643423483{i:02}"),
                "status": if i == 0 { "PRIMARY" } else { "ACTIVE" },
                "taskDefinition": format!("arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/{name}:{}", 10 - i),
                "desiredCount": 2, "pendingCount": 0, "runningCount": 1,
                "failedTasks": 0,
                "createdAt": "2026-11-20T09:00:00.000Z",
                "updatedAt": updated,
                "launchType": "FARGATE",
                "rolloutState": state,
                "rolloutStateReason": format!("ECS deployment ecs-svc/92233705643423483{i:02} {state}.")
            })
        })
        .collect();
    json!({
        "serviceArn": format!("arn:aws:ecs:{REGION}:{ACCOUNT}:service/{cluster}/{name}"),
        "serviceName": name,
        "clusterArn": cluster_arn(cluster),
        "loadBalancers": [],
        "serviceRegistries": [],
        "status": status,
        "desiredCount": 2,
        "runningCount": 2,
        "pendingCount": 0,
        "launchType": "FARGATE",
        "taskDefinition": format!("arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/{name}:10"),
        "deploymentConfiguration": {"deploymentCircuitBreaker": {"enable": true, "rollback": true}, "maximumPercent": 200, "minimumHealthyPercent": 100},
        "deployments": deployments,
        "events": [{"id": "4d9e7f2c", "createdAt": "2026-11-20T08:59:00.000Z", "message": format!("(service {name}) has reached a steady state.")}],
        "createdAt": "2026-11-01T00:00:00.000Z",
        "placementConstraints": [],
        "placementStrategy": [],
        "schedulingStrategy": "REPLICA",
        "enableECSManagedTags": false,
        "propagateTags": "NONE",
        "enableExecuteCommand": false
    })
}

/// A service or deployment event naming `cluster`/`name` (long ARN format).
pub fn service_event(detail_type: &str, account: &str, cluster: &str, name: &str) -> String {
    json!({
        "version": "0", "id": "e2", "detail-type": detail_type, "source": "aws.ecs",
        "account": account, "time": "2026-11-20T10:00:05Z", "region": REGION,
        "resources": [format!("arn:aws:ecs:{REGION}:{account}:service/{cluster}/{name}")],
        "detail": {"eventType": "INFO", "eventName": "SERVICE_DEPLOYMENT_IN_PROGRESS", "deploymentId": "ecs-svc/1", "updatedAt": "2026-11-20T10:00:04Z", "reason": "in progress"}
    })
    .to_string()
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

/// SQS messages with ids m0, m1, ... carrying `bodies`.
pub fn messages(bodies: &[String]) -> Vec<crate::ingest::Message> {
    (bodies.iter().enumerate())
        .map(|(i, b)| crate::ingest::Message {
            id: Some(format!("m{i}")),
            body: Some(b.clone()),
        })
        .collect()
}

pub fn task_event(detail: &Value) -> String {
    event("ECS Task State Change", detail)
}

/// An ECS account in memory: clusters with their tasks and instances, the
/// operations told to fail, and an event to write into the store while
/// ListTasks is answered (as an event arriving mid-run would).
#[derive(Default)]
pub struct Ecs {
    pub clusters: BTreeMap<String, (Vec<Value>, Vec<Value>)>,
    /// Services per cluster ARN.
    pub services: BTreeMap<String, Vec<Value>>,
    /// DescribeServices calls and the names each asked for.
    pub described_services: Mutex<Vec<Vec<String>>>,
    pub failing: Vec<&'static str>,
    /// Every call refused as ECS refuses a rate (ThrottlingException).
    pub throttling: bool,
    pub calls: AtomicU64,
    pub mid_run: Mutex<Option<(Arc<EmbeddedStore>, Value)>>,
}

impl Ecs {
    pub fn with(mut self, cluster: &str, tasks: Vec<Value>, instances: Vec<Value>) -> Ecs {
        self.clusters
            .insert(cluster_arn(cluster), (tasks, instances));
        self
    }

    pub fn with_services(mut self, cluster: &str, services: Vec<Value>) -> Ecs {
        self.clusters.entry(cluster_arn(cluster)).or_default();
        self.services.insert(cluster_arn(cluster), services);
        self
    }

    fn call(&self, operation: &'static str) -> Result<(), SourceError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        if self.throttling {
            return Err(SourceError::throttled(operation, "Rate exceeded"));
        }
        match self.failing.contains(&operation) {
            true => Err(SourceError::new(operation, "injected")),
            false => Ok(()),
        }
    }

    fn of(&self, cluster: &str) -> (Vec<Value>, Vec<Value>) {
        self.clusters.get(cluster).cloned().unwrap_or_default()
    }

    fn services_of(&self, cluster: &str) -> Vec<Value> {
        self.services.get(cluster).cloned().unwrap_or_default()
    }
}

fn arns(items: &[Value], field: &str) -> Vec<String> {
    let arn = |v: &Value| v[field].as_str().map(String::from);
    items.iter().filter_map(arn).collect()
}

fn described(items: Vec<Value>, field: &str, asked: &[String]) -> Vec<Box<RawValue>> {
    let wanted = |v: &Value| asked.iter().any(|a| v[field].as_str() == Some(a));
    let raw = |v: Value| RawValue::from_string(v.to_string()).ok();
    items.into_iter().filter(wanted).filter_map(raw).collect()
}

#[async_trait]
impl EcsSource for Ecs {
    async fn list_clusters(&self, next: Option<&str>) -> Result<Page, SourceError> {
        self.call("ListClusters")?;
        Ok(page_of(
            self.clusters.keys().cloned().collect(),
            next,
            LIST_PAGE,
        ))
    }

    async fn list_container_instances(
        &self,
        cluster: &str,
        next: Option<&str>,
    ) -> Result<Page, SourceError> {
        self.call("ListContainerInstances")?;
        let all = arns(&self.of(cluster).1, "containerInstanceArn");
        Ok(page_of(all, next, LIST_PAGE))
    }

    async fn describe_container_instances(
        &self,
        cluster: &str,
        asked: &[String],
    ) -> Result<Vec<Box<RawValue>>, SourceError> {
        self.call("DescribeContainerInstances")?;
        Ok(described(self.of(cluster).1, "containerInstanceArn", asked))
    }

    async fn list_tasks(
        &self,
        cluster: &str,
        desired: &str,
        next: Option<&str>,
    ) -> Result<Page, SourceError> {
        self.call("ListTasks")?;
        let late = self.mid_run.lock().ok().and_then(|mut m| m.take());
        if let Some((store, detail)) = late {
            put(store.as_ref(), &entity(Kind::Task, &detail)).await;
        }
        let (tasks, _) = self.of(cluster);
        let wanted = |t: &&Value| t["desiredStatus"] == desired;
        let tasks: Vec<Value> = tasks.iter().filter(wanted).cloned().collect();
        Ok(page_of(arns(&tasks, "taskArn"), next, LIST_PAGE))
    }

    async fn describe_tasks(
        &self,
        cluster: &str,
        asked: &[String],
    ) -> Result<Vec<Box<RawValue>>, SourceError> {
        self.call("DescribeTasks")?;
        Ok(described(self.of(cluster).0, "taskArn", asked))
    }

    async fn list_services(&self, cluster: &str, next: Option<&str>) -> Result<Page, SourceError> {
        self.call("ListServices")?;
        let all = arns(&self.services_of(cluster), "serviceArn");
        Ok(page_of(all, next, LIST_PAGE))
    }

    async fn describe_services(
        &self,
        cluster: &str,
        asked: &[String],
    ) -> Result<ServicesAnswer, SourceError> {
        self.call("DescribeServices")?;
        if let Ok(mut d) = self.described_services.lock() {
            d.push(asked.to_vec());
        }
        let names: Vec<&str> = asked.iter().map(|a| crate::ecs::service_name(a)).collect();
        let all = self.services_of(cluster);
        let found: Vec<Value> = (all.iter())
            .filter(|s| names.contains(&s["serviceName"].as_str().unwrap_or_default()))
            .cloned()
            .collect();
        let missing = (names.iter())
            .filter(|n| !found.iter().any(|s| s["serviceName"] == **n))
            .map(|n| n.to_string())
            .collect();
        let raw = |v: &Value| RawValue::from_string(v.to_string()).ok();
        Ok(ServicesAnswer {
            services: found.iter().filter_map(raw).collect(),
            missing,
            failed: Vec::new(),
            sent_at: chrono::Utc::now(),
        })
    }

    fn api_calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }
}

/// Writes an entity as an event would.
pub async fn put(store: &dyn StateStore, e: &Entity) {
    let w = Upsert {
        entity: e,
        source: Source::Event,
        snapshot: None,
    };
    for r in store.upsert_many(&[w]).await {
        r.unwrap_or_else(|e| panic!("seeding the store: {e}"));
    }
}

pub async fn seed(store: &dyn StateStore, kind: Kind, details: &[Value]) {
    for d in details {
        put(store, &entity(kind, d)).await;
    }
}

/// The stored record of `detail`, after writing it as an event would.
pub async fn stored(store: &dyn StateStore, kind: Kind, detail: &Value) -> StoredRecord {
    let e = entity(kind, detail);
    put(store, &e).await;
    let rec = store
        .get(&e.key, None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    rec.unwrap_or_else(|| panic!("{detail} was not stored"))
}

pub fn embedded() -> Arc<EmbeddedStore> {
    Arc::new(EmbeddedStore::new("/ecs-css/v1/"))
}

/// Settings as the parser's defaults give them, with these etcd endpoints.
pub fn store_args(endpoints: &[&str]) -> crate::config::StoreArgs {
    crate::config::StoreArgs {
        etcd_endpoints: endpoints.iter().map(|e| e.to_string()).collect(),
        etcd_username: None,
        etcd_password: None,
        etcd_ca_file: None,
        etcd_cert_file: None,
        etcd_key_file: None,
        etcd_tls_secret: None,
        etcd_credentials_secret: None,
        etcd_timeout: std::time::Duration::from_secs(5),
        record_cache_mb: crate::store::etcd::DEFAULT_RECORD_CACHE_MIB,
        key_prefix: "/x/".into(),
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
