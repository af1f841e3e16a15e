//! A simulated, lively ECS fleet fed through the real ingest path: EventBridge
//! envelopes in, version-guarded upserts out; service events are answered
//! by describing the fleet's services (`services.rs`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use css::ecs::RunScope;
use css::ingest::{Describer, Message};
use css::store::StateStore;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use tokio::sync::watch;

mod services;

use services::{DemoEcs, Service};

/// (name, account, region): two clusters named "web" in different accounts.
const CLUSTERS: &[(&str, &str, &str)] = &[
    ("web", "123456789012", "us-east-1"),
    ("batch", "123456789012", "us-east-1"),
    ("web", "210987654321", "eu-west-1"),
];
const INSTANCES_PER_CLUSTER: usize = 8;
const TASKS_PER_CLUSTER: usize = 100;
/// Ticks a STOPPED task is remembered (it stays in the store).
const STOPPED_TICKS: u32 = 5;

struct Instance {
    cluster: usize,
    id: String,
    version: u64,
    status: &'static str,
}

struct Task {
    cluster: usize,
    id: String,
    version: u64,
    status: &'static str,
    desired: &'static str,
    instance: usize,
    group: &'static str,
    created_at: String,
    stopped_for: u32,
}

struct Fleet {
    rng: StdRng,
    instances: Vec<Instance>,
    tasks: Vec<Task>,
    services: Vec<Service>,
    ecs: DemoEcs,
    /// (cluster, message body), in order.
    events: Vec<(usize, String)>,
}

fn now() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

fn cluster_arn(c: usize) -> String {
    let (name, account, region) = CLUSTERS[c];
    format!("arn:aws:ecs:{region}:{account}:cluster/{name}")
}

fn envelope(c: usize, detail_type: &str, resource: &str, detail: Value) -> String {
    let (_, account, region) = CLUSTERS[c];
    json!({
        "version": "0",
        "id": format!("demo-{}", resource.len() ^ detail.to_string().len()),
        "detail-type": detail_type,
        "source": "aws.ecs",
        "account": account,
        "time": now(),
        "region": region,
        "resources": [resource],
        "detail": detail,
    })
    .to_string()
}

impl Fleet {
    fn new(seed: u64) -> Fleet {
        let mut f = Fleet {
            rng: StdRng::seed_from_u64(seed),
            instances: Vec::new(),
            tasks: Vec::new(),
            services: Vec::new(),
            ecs: DemoEcs::default(),
            events: Vec::new(),
        };
        for (c, (cluster, _, _)) in CLUSTERS.iter().enumerate() {
            for _ in 0..INSTANCES_PER_CLUSTER {
                let id = f.hex_id();
                f.instances.push(Instance {
                    cluster: c,
                    id,
                    version: 1,
                    status: "ACTIVE",
                });
                let i = f.instances.len() - 1;
                f.emit_instance(i);
            }
            for _ in 0..TASKS_PER_CLUSTER {
                f.start_task(c, "RUNNING");
            }
            let at = now();
            // The batch cluster's workers run on Fargate.
            let worker_launch = if *cluster == "batch" {
                "FARGATE"
            } else {
                "EC2"
            };
            f.services.push(Service::new(c, "frontend", "EC2", &at));
            f.services
                .push(Service::new(c, "worker", worker_launch, &at));
            f.services.push(Service::new(c, "log-agent", "EC2", &at));
        }
        f.publish_services(true);
        f
    }

    fn hex_id(&mut self) -> String {
        format!(
            "{:016x}{:016x}",
            self.rng.random::<u64>(),
            self.rng.random::<u64>()
        )
    }

    fn instance_arn(&self, i: usize) -> String {
        let inst = &self.instances[i];
        let (name, account, region) = CLUSTERS[inst.cluster];
        format!(
            "arn:aws:ecs:{region}:{account}:container-instance/{name}/{}",
            inst.id
        )
    }

    fn emit_instance(&mut self, i: usize) {
        let inst = &self.instances[i];
        let arn = self.instance_arn(i);
        let running = self
            .tasks
            .iter()
            .filter(|t| t.instance == i && t.status == "RUNNING")
            .count();
        let detail = json!({
            "agentConnected": true,
            "attributes": [{"name": "ecs.os-type", "value": "linux"}, {"name": "ecs.cpu-architecture", "value": "arm64"}],
            "clusterArn": cluster_arn(inst.cluster),
            "containerInstanceArn": arn,
            "ec2InstanceId": format!("i-0{}", &inst.id[..16]),
            "pendingTasksCount": 0,
            "registeredResources": [{"name": "CPU", "type": "INTEGER", "integerValue": 4096}, {"name": "MEMORY", "type": "INTEGER", "integerValue": 15360}],
            "remainingResources": [{"name": "CPU", "type": "INTEGER", "integerValue": 4096 - 256 * running.min(16) as i64}],
            "runningTasksCount": running,
            "status": inst.status,
            "updatedAt": now(),
            "version": inst.version,
            "versionInfo": {"agentVersion": "1.89.2", "dockerVersion": "DockerVersion: 25.0.6"}
        });
        let ev = envelope(
            inst.cluster,
            "ECS Container Instance State Change",
            &arn,
            detail,
        );
        self.events.push((inst.cluster, ev));
    }

    fn emit_task(&mut self, t: usize) {
        let task = &self.tasks[t];
        let (name, account, region) = CLUSTERS[task.cluster];
        let arn = format!("arn:aws:ecs:{region}:{account}:task/{name}/{}", task.id);
        let image = if task.group.ends_with("worker") {
            "worker"
        } else {
            "web"
        };
        let mut detail = json!({
            "attachments": [],
            "availabilityZone": format!("{region}a"),
            "clusterArn": cluster_arn(task.cluster),
            "containerInstanceArn": self.instance_arn(task.instance),
            "containers": [{
                "containerArn": format!("arn:aws:ecs:{region}:{account}:container/{name}/{}/{}", task.id, &task.id[..8]),
                "lastStatus": task.status,
                "name": image,
                "image": format!("{account}.dkr.ecr.{region}.amazonaws.com/{image}:1.4.2"),
                "taskArn": arn,
                "cpu": "256",
                "memory": "512"
            }],
            "cpu": "256",
            "memory": "512",
            "createdAt": task.created_at,
            "desiredStatus": task.desired,
            "group": task.group,
            "launchType": "EC2",
            "lastStatus": task.status,
            "startedBy": format!("ecs-svc/{}", task.group.len() * 1_000_003),
            "taskArn": arn,
            "taskDefinitionArn": format!("arn:aws:ecs:{region}:{account}:task-definition/{image}:12"),
            "updatedAt": now(),
            "version": task.version
        });
        // The batch cluster's workers run on Fargate: no container instance.
        if name == "batch" && task.group == "service:worker" {
            detail["launchType"] = json!("FARGATE");
            if let Some(d) = detail.as_object_mut() {
                d.remove("containerInstanceArn");
            }
        }
        if task.status == "STOPPED" {
            detail["stoppedAt"] = json!(now());
            detail["stopCode"] = json!("ServiceSchedulerInitiated");
            detail["stoppedReason"] = json!("Scaling activity initiated by deployment");
        }
        let ev = envelope(task.cluster, "ECS Task State Change", &arn, detail);
        self.events.push((task.cluster, ev));
    }

    fn start_task(&mut self, c: usize, status: &'static str) {
        let id = self.hex_id();
        let base = c * INSTANCES_PER_CLUSTER;
        let instance = base + self.rng.random_range(0..INSTANCES_PER_CLUSTER);
        let group = if self.rng.random_bool(0.7) {
            "service:frontend"
        } else {
            "service:worker"
        };
        self.tasks.push(Task {
            cluster: c,
            id,
            version: 1,
            status,
            desired: "RUNNING",
            instance,
            group,
            created_at: now(),
            stopped_for: 0,
        });
        let t = self.tasks.len() - 1;
        self.emit_task(t);
    }

    fn advance(&mut self, t: usize, status: &'static str, desired: &'static str) {
        let task = &mut self.tasks[t];
        task.status = status;
        task.desired = desired;
        task.version += 1;
        self.emit_task(t);
    }

    /// One step: pending tasks start, some running ones stop, replacements
    /// are launched, and now and then an instance drains or returns.
    fn tick(&mut self) {
        for t in 0..self.tasks.len() {
            match self.tasks[t].status {
                "PENDING" => self.advance(t, "RUNNING", "RUNNING"),
                "STOPPING" => self.advance(t, "STOPPED", "STOPPED"),
                "RUNNING" if self.rng.random_bool(0.015) => self.advance(t, "STOPPING", "STOPPED"),
                "STOPPED" => self.tasks[t].stopped_for += 1,
                _ => {}
            }
        }
        self.tasks.retain(|t| t.stopped_for < STOPPED_TICKS);
        for c in 0..CLUSTERS.len() {
            let live = self
                .tasks
                .iter()
                .filter(|t| t.cluster == c && t.desired == "RUNNING")
                .count();
            for _ in live..TASKS_PER_CLUSTER {
                self.start_task(c, "PENDING");
            }
        }
        if self.rng.random_bool(0.2) {
            let i = self.rng.random_range(0..self.instances.len());
            let inst = &mut self.instances[i];
            inst.status = if inst.status == "ACTIVE" {
                "DRAINING"
            } else {
                "ACTIVE"
            };
            inst.version += 1;
            self.emit_instance(i);
        }
        self.tick_services();
        self.publish_services(false);
    }

    /// The events so far, per (account, region): each is ingested as that
    /// account's own ingest would (describing its own services).
    fn drain_events(&mut self) -> BTreeMap<(&'static str, &'static str), Vec<Message>> {
        let mut out: BTreeMap<(&str, &str), Vec<Message>> = BTreeMap::new();
        for (i, (c, body)) in self.events.drain(..).enumerate() {
            let (_, account, region) = CLUSTERS[c];
            out.entry((account, region)).or_default().push(Message {
                id: Some(format!("demo-{i}")),
                body: Some(body),
            });
        }
        out
    }
}

async fn apply(store: &dyn StateStore, fleet: &mut Fleet) {
    let ecs = fleet.ecs.clone();
    for ((account, region), batch) in fleet.drain_events() {
        let scope = RunScope {
            account: account.into(),
            region: region.into(),
        };
        let describer = Describer {
            ecs: &ecs,
            scope: &scope,
            members: None,
        };
        let started = std::time::Instant::now();
        let outcome = css::ingest::apply(store, Some(describer), &batch).await;
        outcome.record(store, started.elapsed()).await;
        if !outcome.failures.is_empty() {
            tracing::warn!(failures = outcome.failures.len(), "demo events not applied");
        }
    }
}

pub async fn run(store: Arc<dyn StateStore>, every: Duration, mut stop: watch::Receiver<bool>) {
    let mut fleet = Fleet::new(rand::random());
    apply(store.as_ref(), &mut fleet).await;
    tracing::info!(
        clusters = CLUSTERS.len(),
        tasks = fleet.tasks.len(),
        instances = fleet.instances.len(),
        "demo fleet started"
    );
    let mut tick = tokio::time::interval(every.max(Duration::from_millis(50)));
    tick.tick().await;
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = tick.tick() => {}
        }
        fleet.tick();
        apply(store.as_ref(), &mut fleet).await;
    }
}

#[cfg(test)]
mod tests;
