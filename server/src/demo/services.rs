//! The demo fleet's ECS services: each cluster runs `frontend` and `worker`
//! (whose tasks carry `group: service:NAME`), EC2 clusters also a `log-agent`
//! daemon. Now and then a service rolls out a new task definition: a second
//! deployment appears IN_PROGRESS, then completes (or fails and rolls back).
//! Changes are announced as ECS Service Action / Deployment State Change
//! events; the ingest then describes the service, as it would in AWS, from
//! `DemoEcs` (the fleet's services in DescribeServices' shape).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use css::ecs::{page_of, service_name, EcsSource, Page, ServicesAnswer, SourceError, LIST_PAGE};
use serde_json::value::RawValue;
use serde_json::{json, Value};

use super::{cluster_arn, envelope, now, Fleet, CLUSTERS};
use rand::Rng;

/// Ticks a rollout takes.
const ROLLOUT_TICKS: u32 = 6;

pub struct Rollout {
    pub id: u64,
    pub ticks_left: u32,
    pub fails: bool,
    pub started_at: String,
}

pub struct Service {
    pub cluster: usize,
    pub name: &'static str,
    pub daemon: bool,
    pub launch_type: &'static str,
    /// The task definition revision of the PRIMARY deployment.
    pub revision: u32,
    pub deployment: u64,
    pub deployed_at: String,
    pub rollout: Option<Rollout>,
    pub failed_last: bool,
    pub created_at: String,
    /// The newest service events, newest first (ECS keeps 100).
    pub events: Vec<(String, String)>,
}

/// Counts of a service's tasks: (desired, running, pending).
pub type Counts = (u64, u64, u64);

impl Service {
    pub fn new(cluster: usize, name: &'static str, launch_type: &'static str, at: &str) -> Service {
        Service {
            cluster,
            name,
            daemon: name == "log-agent",
            launch_type,
            revision: 12,
            deployment: 1_000_000 + cluster as u64 * 10 + name.len() as u64,
            deployed_at: at.to_string(),
            rollout: None,
            failed_last: false,
            created_at: at.to_string(),
            events: Vec::new(),
        }
    }

    pub fn note(&mut self, at: &str, message: String) {
        self.events.insert(0, (at.to_string(), message));
        self.events.truncate(10);
    }

    /// Starts a rollout of the next task definition revision.
    pub fn start_rollout(&mut self, id: u64, fails: bool, at: &str) {
        self.rollout = Some(Rollout {
            id,
            ticks_left: ROLLOUT_TICKS,
            fails,
            started_at: at.to_string(),
        });
        self.note(
            at,
            format!(
                "(service {}) has started a deployment of revision {}.",
                self.name,
                self.revision + 1
            ),
        );
    }

    /// One tick of a rollout; answers the deployment event's name when it ends.
    pub fn advance_rollout(&mut self, at: &str) -> Option<&'static str> {
        let r = self.rollout.as_mut()?;
        r.ticks_left = r.ticks_left.saturating_sub(1);
        if r.ticks_left > 0 {
            return None;
        }
        let r = self.rollout.take()?;
        self.failed_last = r.fails;
        if r.fails {
            self.note(
                at,
                format!(
                    "(service {}) deployment ecs-svc/{} failed: rolling back.",
                    self.name, r.id
                ),
            );
            return Some("SERVICE_DEPLOYMENT_FAILED");
        }
        self.revision += 1;
        self.deployment = r.id;
        self.deployed_at = at.to_string();
        self.note(
            at,
            format!("(service {}) has reached a steady state.", self.name),
        );
        Some("SERVICE_DEPLOYMENT_COMPLETED")
    }

    /// The service as DescribeServices answers it.
    pub fn describe(
        &self,
        cluster_arn: &str,
        arn: &str,
        task_def: &str,
        counts: Counts,
        at: &str,
    ) -> Value {
        let (desired, running, pending) = counts;
        let deployment = |id: u64,
                          status: &str,
                          rev: u32,
                          state: &str,
                          since: &str,
                          share: (u64, u64, u64)| {
            json!({
                "id": format!("ecs-svc/{id}"),
                "status": status,
                "taskDefinition": format!("{task_def}:{rev}"),
                "desiredCount": share.0, "runningCount": share.1, "pendingCount": share.2,
                "failedTasks": 0,
                "createdAt": since, "updatedAt": at,
                "launchType": self.launch_type,
                "rolloutState": state,
                "rolloutStateReason": format!("ECS deployment ecs-svc/{id} {}.", state.to_lowercase().replace('_', " ")),
            })
        };
        let deployments = match &self.rollout {
            None => vec![deployment(
                self.deployment,
                "PRIMARY",
                self.revision,
                if self.failed_last {
                    "FAILED"
                } else {
                    "COMPLETED"
                },
                &self.deployed_at,
                counts,
            )],
            Some(r) => {
                // The new deployment takes over the tasks as the rollout goes on.
                let moved =
                    desired * u64::from(ROLLOUT_TICKS - r.ticks_left) / u64::from(ROLLOUT_TICKS);
                vec![
                    deployment(
                        r.id,
                        "PRIMARY",
                        self.revision + 1,
                        "IN_PROGRESS",
                        &r.started_at,
                        (desired, moved.min(running), pending),
                    ),
                    deployment(
                        self.deployment,
                        "ACTIVE",
                        self.revision,
                        "COMPLETED",
                        &self.deployed_at,
                        (0, running - moved.min(running), 0),
                    ),
                ]
            }
        };
        let events: Vec<Value> = (self.events.iter().enumerate())
            .map(|(i, (t, m))| json!({"id": format!("{:08x}", self.deployment as usize + i), "createdAt": t, "message": m}))
            .collect();
        // A daemon replaces its tasks in place.
        let (max, min) = if self.daemon { (100, 0) } else { (200, 100) };
        json!({
            "serviceArn": arn,
            "serviceName": self.name,
            "clusterArn": cluster_arn,
            "loadBalancers": [],
            "serviceRegistries": [],
            "status": "ACTIVE",
            "desiredCount": desired,
            "runningCount": running,
            "pendingCount": pending,
            "launchType": self.launch_type,
            "taskDefinition": format!("{task_def}:{}", self.revision),
            "deploymentConfiguration": {"deploymentCircuitBreaker": {"enable": true, "rollback": true}, "maximumPercent": max, "minimumHealthyPercent": min},
            "deployments": deployments,
            "events": events,
            "createdAt": self.created_at,
            "placementConstraints": [],
            "placementStrategy": [],
            "schedulingStrategy": if self.daemon { "DAEMON" } else { "REPLICA" },
            "enableECSManagedTags": true,
            "propagateTags": "SERVICE",
            "enableExecuteCommand": false
        })
    }
}

/// The demo's ECS API: DescribeServices and ListServices over the fleet's
/// services as last published (cluster ARN -> service name -> JSON).
#[derive(Clone, Default)]
pub struct DemoEcs(pub Arc<Mutex<BTreeMap<String, BTreeMap<String, Value>>>>);

impl DemoEcs {
    fn cluster(&self, cluster: &str) -> BTreeMap<String, Value> {
        let all = self.0.lock().unwrap_or_else(|e| e.into_inner());
        all.get(cluster).cloned().unwrap_or_default()
    }
}

/// The fleet's tasks and instances are fed by events only.
fn only_services(operation: &'static str) -> SourceError {
    let message = "the demo fleet answers ListServices and DescribeServices only";
    SourceError::new(operation, message)
}

#[async_trait]
impl EcsSource for DemoEcs {
    async fn list_clusters(&self, _: Option<&str>) -> Result<Page, SourceError> {
        Err(only_services("ListClusters"))
    }
    async fn list_container_instances(
        &self,
        _: &str,
        _: Option<&str>,
    ) -> Result<Page, SourceError> {
        Err(only_services("ListContainerInstances"))
    }
    async fn describe_container_instances(
        &self,
        _: &str,
        _: &[String],
    ) -> Result<Vec<Box<RawValue>>, SourceError> {
        Err(only_services("DescribeContainerInstances"))
    }
    async fn list_tasks(&self, _: &str, _: &str, _: Option<&str>) -> Result<Page, SourceError> {
        Err(only_services("ListTasks"))
    }
    async fn describe_tasks(
        &self,
        _: &str,
        _: &[String],
    ) -> Result<Vec<Box<RawValue>>, SourceError> {
        Err(only_services("DescribeTasks"))
    }
    async fn list_services(&self, cluster: &str, next: Option<&str>) -> Result<Page, SourceError> {
        let services = self.cluster(cluster);
        let arns = (services.values())
            .filter_map(|s| s["serviceArn"].as_str().map(String::from))
            .collect();
        Ok(page_of(arns, next, LIST_PAGE))
    }
    async fn describe_services(
        &self,
        cluster: &str,
        names: &[String],
    ) -> Result<ServicesAnswer, SourceError> {
        let sent_at = chrono::Utc::now();
        let services = self.cluster(cluster);
        let (mut found, mut missing) = (Vec::new(), Vec::new());
        for n in names {
            match services.get(service_name(n)) {
                Some(s) => found.push(
                    serde_json::value::to_raw_value(s)
                        .map_err(|e| SourceError::new("DescribeServices", e.to_string()))?,
                ),
                None => missing.push(service_name(n).to_string()),
            }
        }
        Ok(ServicesAnswer {
            services: found,
            missing,
            failed: Vec::new(),
            sent_at,
        })
    }
    fn api_calls(&self) -> u64 {
        0
    }
}

impl Fleet {
    fn service_arn(&self, s: usize) -> String {
        let svc = &self.services[s];
        let (name, account, region) = CLUSTERS[svc.cluster];
        format!("arn:aws:ecs:{region}:{account}:service/{name}/{}", svc.name)
    }

    /// (desired, running, pending) of a service from the fleet's tasks (a
    /// daemon: one task per active instance).
    fn counts(&self, s: usize) -> Counts {
        let svc = &self.services[s];
        if svc.daemon {
            let active = (self.instances.iter())
                .filter(|i| i.cluster == svc.cluster && i.status == "ACTIVE")
                .count() as u64;
            return (active, active, 0);
        }
        let group = format!("service:{}", svc.name);
        let ours = || (self.tasks.iter()).filter(|t| t.cluster == svc.cluster && t.group == group);
        let desired = ours().filter(|t| t.desired == "RUNNING").count() as u64;
        let running = ours().filter(|t| t.status == "RUNNING").count() as u64;
        let pending = ours().filter(|t| t.status == "PENDING").count() as u64;
        (desired, running, pending)
    }

    /// Publishes every service's DescribeServices shape to the demo's ECS
    /// API and announces the changed ones (all with `all`) with an ECS
    /// Service Action event, as ECS would.
    pub(super) fn publish_services(&mut self, all: bool) {
        for s in 0..self.services.len() {
            let c = self.services[s].cluster;
            let (_, account, region) = CLUSTERS[c];
            let arn = self.service_arn(s);
            let task_def = format!(
                "arn:aws:ecs:{region}:{account}:task-definition/{}",
                self.services[s].name
            );
            let described =
                self.services[s].describe(&cluster_arn(c), &arn, &task_def, self.counts(s), &now());
            let mut published = self.ecs.0.lock().unwrap_or_else(|e| e.into_inner());
            let cluster = published.entry(cluster_arn(c)).or_default();
            let svc_name = self.services[s].name.to_string();
            let changed = cluster.get(&svc_name).is_none_or(|old| {
                [
                    "desiredCount",
                    "runningCount",
                    "pendingCount",
                    "deployments",
                ]
                .iter()
                .any(|f| old[*f] != described[*f])
            });
            cluster.insert(svc_name, described);
            drop(published);
            if all || changed {
                let detail = json!({
                    "eventType": "INFO",
                    "eventName": "SERVICE_TASK_PLACEMENT_SUCCESS",
                    "clusterArn": cluster_arn(c),
                    "createdAt": now(),
                });
                let ev = envelope(c, "ECS Service Action", &arn, detail);
                self.events.push((c, ev));
            }
        }
    }

    /// Rollouts: now and then a service deploys a new revision; running ones
    /// advance and end (a few fail and roll back).
    pub(super) fn tick_services(&mut self) {
        for s in 0..self.services.len() {
            let at = now();
            let event = match self.services[s].rollout {
                Some(_) => self.services[s].advance_rollout(&at),
                None if self.rng.random_bool(0.04) => {
                    let id = self
                        .rng
                        .random_range(1_000_000_000_000u64..9_999_999_999_999);
                    let fails = self.rng.random_bool(0.2);
                    self.services[s].start_rollout(id, fails, &at);
                    Some("SERVICE_DEPLOYMENT_IN_PROGRESS")
                }
                None => None,
            };
            if let Some(name) = event {
                let c = self.services[s].cluster;
                let detail = json!({
                    "eventType": if name.ends_with("FAILED") { "ERROR" } else { "INFO" },
                    "eventName": name,
                    "deploymentId": format!("ecs-svc/{}", self.services[s].deployment),
                    "updatedAt": at,
                    "reason": format!("ECS deployment {}.", name.to_lowercase()),
                });
                let ev = envelope(
                    c,
                    "ECS Deployment State Change",
                    &self.service_arn(s),
                    detail,
                );
                self.events.push((c, ev));
            }
        }
    }
}
