//! ECS-shaped records for the record format: a generator of tasks (EC2 and
//! Fargate, with ENI attachments, containers, image digests), container
//! instances (with their capability attributes) and services, and the
//! training of the zstd dictionary the format ships (`train-dict`).
//!
//! The dictionary is trained on the entities of seeds 1000..=8000;
//! measurements use `MEASURE_SEED`'s, so no measured record was seen in
//! training.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use css::model::{Entity, Kind};
use css::store::{record_json, Upsert};

/// The first seed the shipped dictionary is trained on (of eight).
pub const TRAINING_SEED: u64 = 1;
/// The seed of measured workloads.
pub const MEASURE_SEED: u64 = 99;
/// Bytes of dictionary (zstd's default size).
const DICT_SIZE: usize = 112_640;

pub struct Gen {
    rng: StdRng,
    pub account: String,
    pub region: &'static str,
    /// `arn:aws:ecs:REGION:ACCOUNT:`
    prefix: String,
}

fn arn(prefix: &str, rest: &str) -> String {
    format!("{prefix}{rest}")
}

fn hex(rng: &mut StdRng, n: usize) -> String {
    (0..n)
        .map(|_| format!("{:x}", rng.random_range(0..16u8)))
        .collect()
}

const REGIONS: &[&str] = &["us-east-1", "eu-west-1", "ap-southeast-2", "us-west-2"];
const IMAGES: &[&str] = &[
    "web",
    "api",
    "worker",
    "nginx",
    "envoy",
    "datadog-agent",
    "fluent-bit",
];
const ATTRIBUTES: &[&str] = &[
    "ecs.capability.secrets.asm.environment-variables",
    "ecs.capability.branch-cni-plugin-version",
    "ecs.ami-id",
    "ecs.capability.secrets.asm.bootstrap.log-driver",
    "ecs.capability.task-eia.optimized-cpu",
    "com.amazonaws.ecs.capability.logging-driver.none",
    "ecs.capability.ecr-endpoint",
    "ecs.capability.docker-plugin.local",
    "ecs.capability.task-cpu-mem-limit",
    "ecs.capability.secrets.ssm.bootstrap.log-driver",
    "ecs.capability.efsAuth",
    "ecs.capability.full-sync",
    "com.amazonaws.ecs.capability.docker-remote-api.1.30",
    "com.amazonaws.ecs.capability.docker-remote-api.1.31",
    "com.amazonaws.ecs.capability.docker-remote-api.1.32",
    "ecs.capability.firelens.options.config.file",
    "ecs.availability-zone",
    "ecs.capability.aws-appmesh",
    "com.amazonaws.ecs.capability.logging-driver.awslogs",
    "ecs.capability.execution-role-awslogs",
    "ecs.capability.container-health-check",
    "ecs.capability.task-eni",
    "ecs.capability.firelens.fluentbit",
    "ecs.os-type",
    "ecs.capability.service-connect-v1",
    "ecs.capability.container-ordering",
    "com.amazonaws.ecs.capability.privileged-container",
    "ecs.cpu-architecture",
    "ecs.instance-type",
    "com.amazonaws.ecs.capability.ecr-auth",
    "ecs.capability.execution-role-ecr-pull",
];

impl Gen {
    pub fn new(seed: u64) -> Gen {
        let mut rng = StdRng::seed_from_u64(seed);
        let account = format!(
            "{:012}",
            rng.random_range(100_000_000_000u64..999_999_999_999)
        );
        let region = REGIONS[rng.random_range(0..REGIONS.len())];
        Gen {
            rng,
            prefix: format!("arn:aws:ecs:{region}:{account}:"),
            account,
            region,
        }
    }

    fn time(&mut self) -> String {
        let s = self.rng.random_range(0..86_400 * 30);
        let t = chrono::DateTime::from_timestamp(
            1_790_000_000 + s,
            self.rng.random_range(0..1000) * 1_000_000,
        );
        t.unwrap_or_default()
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    }

    /// A task of `cluster`, `id` (32 hex digits), in `status`, at `version`.
    pub fn task(&mut self, cluster: &str, id: &str, status: &str, version: u64) -> Value {
        let fargate = self.rng.random_bool(0.5);
        let task_arn = arn(&self.prefix, &format!("task/{cluster}/{id}"));
        let image = IMAGES[self.rng.random_range(0..IMAGES.len())];
        let n_containers = self.rng.random_range(1..=3);
        let ip = format!(
            "10.{}.{}.{}",
            self.rng.random_range(0..255),
            self.rng.random_range(0..255),
            self.rng.random_range(1..255)
        );
        let containers: Vec<Value> = (0..n_containers)
            .map(|c| {
                let name = if c == 0 { image } else { IMAGES[self.rng.random_range(0..IMAGES.len())] };
                json!({
                    "containerArn": arn(&self.prefix, &format!("container/{cluster}/{id}/{}", hex(&mut self.rng, 36))),
                    "taskArn": task_arn,
                    "name": name,
                    "image": format!("{}.dkr.ecr.{}.amazonaws.com/{name}:{}.{}.{}", self.account, self.region, self.rng.random_range(1..4), self.rng.random_range(0..20), self.rng.random_range(0..50)),
                    "imageDigest": format!("sha256:{}", hex(&mut self.rng, 64)),
                    "runtimeId": format!("{id}-{}", self.rng.random_range(1_000_000_000u64..9_999_999_999)),
                    "lastStatus": status,
                    "networkBindings": [],
                    "networkInterfaces": if fargate { json!([{"attachmentId": hex(&mut self.rng, 32), "privateIpv4Address": ip}]) } else { json!([]) },
                    "healthStatus": (["HEALTHY", "UNKNOWN"])[self.rng.random_range(0..2)],
                    "cpu": "0",
                    "memory": "512",
                    "managedAgents": []
                })
            })
            .collect();
        let created = self.time();
        let mut t = json!({
            "attachments": if fargate { json!([{"id": hex(&mut self.rng, 32), "type": "ElasticNetworkInterface", "status": "ATTACHED", "details": [
                {"name": "subnetId", "value": format!("subnet-{}", hex(&mut self.rng, 17))},
                {"name": "networkInterfaceId", "value": format!("eni-{}", hex(&mut self.rng, 17))},
                {"name": "macAddress", "value": "0a:1b:2c:3d:4e:5f"},
                {"name": "privateDnsName", "value": format!("ip-{}.ec2.internal", ip.replace('.', "-"))},
                {"name": "privateIPv4Address", "value": ip}]}]) } else { json!([]) },
            "attributes": [{"name": "ecs.cpu-architecture", "value": "x86_64"}],
            "availabilityZone": format!("{}{}", self.region, (["a", "b", "c"])[self.rng.random_range(0..3)]),
            "clusterArn": arn(&self.prefix, &format!("cluster/{cluster}")),
            "connectivity": "CONNECTED",
            "connectivityAt": created,
            "containers": containers,
            "cpu": "512",
            "createdAt": created,
            "desiredStatus": if status == "STOPPED" { "STOPPED" } else { "RUNNING" },
            "enableExecuteCommand": false,
            "group": format!("service:{image}"),
            "healthStatus": "HEALTHY",
            "lastStatus": status,
            "launchType": if fargate { "FARGATE" } else { "EC2" },
            "memory": "1024",
            "overrides": {"containerOverrides": [{"name": image}], "inferenceAcceleratorOverrides": []},
            "pullStartedAt": created,
            "pullStoppedAt": created,
            "startedAt": created,
            "startedBy": format!("ecs-svc/{}", self.rng.random_range(1_000_000_000_000_000_000u64..9_999_999_999_999_999_999)),
            "tags": [],
            "taskArn": task_arn,
            "taskDefinitionArn": arn(&self.prefix, &format!("task-definition/{image}:{}", self.rng.random_range(1..200))),
            "updatedAt": self.time(),
            "version": version
        });
        if fargate {
            t["platformVersion"] = json!("1.4.0");
            t["platformFamily"] = json!("Linux");
            t["ephemeralStorage"] = json!({"sizeInGiB": 20});
        } else {
            t["containerInstanceArn"] = json!(arn(
                &self.prefix,
                &format!("container-instance/{cluster}/{}", hex(&mut self.rng, 32))
            ));
        }
        if status == "STOPPED" {
            t["stoppedAt"] = json!(self.time());
            t["stopCode"] = json!("ServiceSchedulerInitiated");
            t["stoppedReason"] =
                json!("Scaling activity initiated by (deployment ecs-svc/1234567890123456789)");
        }
        t
    }

    pub fn instance(&mut self, cluster: &str, status: &str, version: u64) -> Value {
        let id = hex(&mut self.rng, 32);
        let attrs: Vec<Value> = ATTRIBUTES
            .iter()
            .map(|a| match *a {
                "ecs.ami-id" => {
                    json!({"name": a, "value": format!("ami-{}", hex(&mut self.rng, 17))})
                }
                "ecs.availability-zone" => json!({"name": a, "value": format!("{}a", self.region)}),
                "ecs.os-type" => json!({"name": a, "value": "linux"}),
                "ecs.cpu-architecture" => json!({"name": a, "value": "x86_64"}),
                "ecs.instance-type" => json!({"name": a, "value": "m6i.xlarge"}),
                _ => json!({"name": a}),
            })
            .collect();
        let res = |cpu: i64, mem: i64| {
            json!([
                {"name": "CPU", "type": "INTEGER", "integerValue": cpu, "doubleValue": 0.0, "longValue": 0},
                {"name": "MEMORY", "type": "INTEGER", "integerValue": mem, "doubleValue": 0.0, "longValue": 0},
                {"name": "PORTS", "type": "STRINGSET", "stringSetValue": ["22", "2376", "2375", "51678", "51679"], "doubleValue": 0.0, "longValue": 0, "integerValue": 0},
                {"name": "PORTS_UDP", "type": "STRINGSET", "stringSetValue": [], "doubleValue": 0.0, "longValue": 0, "integerValue": 0}
            ])
        };
        json!({
            "agentConnected": true,
            "attributes": attrs,
            "clusterArn": arn(&self.prefix, &format!("cluster/{cluster}")),
            "containerInstanceArn": arn(&self.prefix, &format!("container-instance/{cluster}/{id}")),
            "ec2InstanceId": format!("i-{}", hex(&mut self.rng, 17)),
            "registeredAt": self.time(),
            "registeredResources": res(4096, 15_788),
            "remainingResources": res(self.rng.random_range(0..4096), self.rng.random_range(0..15_788)),
            "runningTasksCount": self.rng.random_range(0..20),
            "pendingTasksCount": 0,
            "status": status,
            "statusReason": "",
            "tags": [],
            "updatedAt": self.time(),
            "version": version,
            "versionInfo": {"agentHash": hex(&mut self.rng, 8), "agentVersion": "1.89.2", "dockerVersion": "DockerVersion: 25.0.6"}
        })
    }

    pub fn service(&mut self, cluster: &str) -> Value {
        let name = format!(
            "{}-{}",
            IMAGES[self.rng.random_range(0..IMAGES.len())],
            self.rng.random_range(0..100)
        );
        let rolling = self.rng.random_bool(0.2);
        let states: &[&str] = if rolling {
            &["IN_PROGRESS", "COMPLETED"]
        } else {
            &["COMPLETED"]
        };
        let desired = self.rng.random_range(1..50);
        let deployments: Vec<Value> = states
            .iter()
            .enumerate()
            .map(|(i, st)| {
                let id = self.rng.random_range(1_000_000_000_000_000_000u64..9_999_999_999_999_999_999);
                json!({"id": format!("ecs-svc/{id}"), "status": if i == 0 { "PRIMARY" } else { "ACTIVE" },
                       "taskDefinition": arn(&self.prefix, &format!("task-definition/{name}:{}", 40 - i)),
                       "desiredCount": desired, "pendingCount": 0, "runningCount": desired, "failedTasks": 0,
                       "createdAt": self.time(), "updatedAt": self.time(), "launchType": "FARGATE",
                       "platformVersion": "1.4.0", "platformFamily": "Linux",
                       "networkConfiguration": {"awsvpcConfiguration": {"subnets": [format!("subnet-{}", hex(&mut self.rng, 17))], "securityGroups": [format!("sg-{}", hex(&mut self.rng, 17))], "assignPublicIp": "DISABLED"}},
                       "rolloutState": st, "rolloutStateReason": format!("ECS deployment ecs-svc/{id} {}.", st.to_lowercase())})
            })
            .collect();
        let events: Vec<Value> = (0..self.rng.random_range(1..20))
            .map(|_| json!({"id": format!("{}-{}-{}-{}-{}", hex(&mut self.rng, 8), hex(&mut self.rng, 4), hex(&mut self.rng, 4), hex(&mut self.rng, 4), hex(&mut self.rng, 12)),
                            "createdAt": self.time(), "message": format!("(service {name}) has reached a steady state.")}))
            .collect();
        json!({
            "serviceArn": arn(&self.prefix, &format!("service/{cluster}/{name}")), "serviceName": name,
            "clusterArn": arn(&self.prefix, &format!("cluster/{cluster}")), "loadBalancers": [], "serviceRegistries": [],
            "status": "ACTIVE", "desiredCount": desired, "runningCount": desired, "pendingCount": 0,
            "launchType": "FARGATE", "platformVersion": "LATEST", "platformFamily": "Linux",
            "taskDefinition": arn(&self.prefix, &format!("task-definition/{name}:40")),
            "deploymentConfiguration": {"deploymentCircuitBreaker": {"enable": true, "rollback": true}, "maximumPercent": 200, "minimumHealthyPercent": 100},
            "deployments": deployments, "roleArn": format!("arn:aws:iam::{}:role/aws-service-role/ecs.amazonaws.com/AWSServiceRoleForECS", self.account),
            "events": events, "createdAt": self.time(), "placementConstraints": [], "placementStrategy": [],
            "schedulingStrategy": "REPLICA", "deploymentController": {"type": "ECS"}, "createdBy": format!("arn:aws:iam::{}:role/deployer", self.account),
            "enableECSManagedTags": true, "propagateTags": "SERVICE", "enableExecuteCommand": false
        })
    }

    /// A random 32-hex-digit task id.
    pub fn task_id(&mut self) -> String {
        hex(&mut self.rng, 32)
    }
}

/// The record (uncompressed JSON) of an entity.
pub fn record_of(kind: Kind, detail: &Value) -> Vec<u8> {
    let raw = serde_json::value::RawValue::from_string(detail.to_string()).expect("json");
    let e = Entity::from_raw(kind, raw, false).expect("entity");
    record_json(&Upsert::event(&e))
}

/// Trains the dictionary on `TRAINING_SEED`'s entities and writes it.
pub fn train(out: &std::path::Path) {
    let mut samples: Vec<Vec<u8>> = Vec::new();
    for seed in TRAINING_SEED..TRAINING_SEED + 8 {
        let mut g = Gen::new(seed * 1000);
        for i in 0..1500 {
            let cluster = format!("cluster-{}", i % 7);
            let status = ["PENDING", "RUNNING", "RUNNING", "STOPPED"][i % 4];
            let id = g.task_id();
            samples.push(record_of(
                Kind::Task,
                &g.task(&cluster, &id, status, (i % 9) as u64 + 1),
            ));
            if i % 10 == 0 {
                samples.push(record_of(
                    Kind::Instance,
                    &g.instance(&cluster, "ACTIVE", 3),
                ));
                samples.push(record_of(Kind::Service, &g.service(&cluster)));
            }
        }
    }
    let dict = zstd::dict::from_samples(&samples, DICT_SIZE).expect("dictionary training");
    std::fs::write(out, &dict).expect("writing the dictionary");
    println!(
        "trained a {} byte dictionary on {} records: {}",
        dict.len(),
        samples.len(),
        out.display()
    );
}
