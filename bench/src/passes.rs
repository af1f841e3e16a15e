//! Reconcile passes at scale, on a simulated ECS and simulated time.
//!
//! The simulated ECS (`SimEcs`, an `EcsSource` of this benchmark) answers as
//! ECS does per call: List* pages of 100 ARNs, Describe* batches of 100, 30 ms
//! a call, and one token bucket for the account's read calls (50 tokens,
//! 20 a second, as ECS documents for its read actions) shared with the
//! account's own tooling (`--background`, calls a second): an empty bucket
//! answers ThrottlingException. Time is tokio's paused clock, so a pass of
//! an hour at 5 calls a second takes the CPU time it needs, not an hour.
//! The scheduled function is played as Lambda runs it: an invocation every
//! 5 minutes, each stopping its pass 20 s before its 300 s timeout.
//!
//! Per size (tasks in 100 clusters, a tenth STOPPED; 10 container instances
//! per cluster): the store is loaded with what ECS has, then
//! 1. a pass that describes everything (horizon 0: today's reconcile, at the
//!    budget), 2. two passes with the 1 h horizon and no drift (the second
//!    is the steady state, checked against the formula), 3. drift injected
//!    (tasks missing from the store, extra in it, stale in it) and passes
//!    until every one is corrected. Peak memory: the heap a pass allocated
//!    beyond what the process held when it started (the store is in this
//!    process; in Lambda it is etcd's).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use css::ecs::{page_of, EcsSource, Page, ServicesAnswer, SourceError, LIST_PAGE};
use css::model::{Entity, EntityKey, Kind};
use css::reconcile::{BudgetSettings, Reconciler, RunScope, Settings, Summary, DEADLINE_MARGIN};
use css::store::{EmbeddedStore, StateStore, Upsert};
use serde_json::json;
use serde_json::value::RawValue;
use tokio::time::Instant;

use crate::alloc;

const ACCOUNT: &str = "123456789012";
const REGION: &str = "us-east-1";
const CLUSTERS: usize = 100;
const INSTANCES: usize = 10;
const LATENCY: Duration = Duration::from_millis(30);
const ECS_BUCKET: f64 = 50.0;
const ECS_REFILL: f64 = 20.0;
const SCHEDULE: Duration = Duration::from_secs(300);
const TIMEOUT: Duration = Duration::from_secs(300);
const HOUR: Duration = Duration::from_secs(3600);
/// Injected drift of each kind (missing, extra, stale), per size.
const DRIFT: usize = 100;

struct SimCluster {
    name: String,
    arn: String,
    /// ECS's version of each task; index = task number in the cluster.
    versions: Vec<u32>,
    stopped_from: usize,
}

/// The ECS API of one account and Region, as far as reconcile reads it.
pub struct SimEcs {
    clusters: Vec<SimCluster>,
    bucket: Mutex<(f64, Instant)>,
    background: f64,
    calls: AtomicU64,
    throttled: AtomicU64,
}

fn task_id(cluster: usize, i: usize) -> String {
    format!("{i:08x}{cluster:024x}")
}

impl SimEcs {
    fn new(tasks: usize, background: f64) -> SimEcs {
        let per = tasks / CLUSTERS;
        let clusters = (0..CLUSTERS)
            .map(|c| {
                let name = format!("fleet-{c:03}");
                SimCluster {
                    arn: format!("arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/{name}"),
                    name,
                    versions: vec![1; per],
                    stopped_from: per - per / 10,
                }
            })
            .collect();
        SimEcs {
            clusters,
            bucket: Mutex::new((ECS_BUCKET, Instant::now())),
            background,
            calls: AtomicU64::new(0),
            throttled: AtomicU64::new(0),
        }
    }

    fn cluster(&self, arn: &str) -> Option<(usize, &SimCluster)> {
        self.clusters.iter().enumerate().find(|(_, c)| c.arn == arn)
    }

    fn task_json(&self, c: usize, i: usize) -> String {
        let cl = &self.clusters[c];
        let status = if i >= cl.stopped_from {
            "STOPPED"
        } else {
            "RUNNING"
        };
        let v = cl.versions[i];
        // A stale record's ECS side moved on: new version, new health.
        let health = if v > 1 { "UNHEALTHY" } else { "HEALTHY" };
        json!({
            "taskArn": format!("arn:aws:ecs:{REGION}:{ACCOUNT}:task/{}/{}", cl.name, task_id(c, i)),
            "clusterArn": cl.arn,
            "lastStatus": status,
            "desiredStatus": status,
            "healthStatus": health,
            "launchType": "FARGATE",
            "group": format!("service:svc-{}", i % 20),
            "cpu": "256",
            "memory": "512",
            "createdAt": "2026-12-01T10:00:00.000Z",
            "containers": [{"name": "app", "lastStatus": status}],
            "version": v
        })
        .to_string()
    }

    fn instance_json(&self, c: usize, i: usize) -> String {
        let cl = &self.clusters[c];
        json!({
            "containerInstanceArn": format!("arn:aws:ecs:{REGION}:{ACCOUNT}:container-instance/{}/{}", cl.name, task_id(c, i)),
            "clusterArn": cl.arn,
            "ec2InstanceId": format!("i-{c:04x}{i:013x}"),
            "status": "ACTIVE",
            "agentConnected": true,
            "version": 1
        })
        .to_string()
    }

    /// One call: 30 ms, and a token of the account's bucket (or throttled).
    async fn call(&self, operation: &'static str) -> Result<(), SourceError> {
        tokio::time::sleep(LATENCY).await;
        self.calls.fetch_add(1, Ordering::Relaxed);
        let mut b = self.bucket.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let dt = now.saturating_duration_since(b.1).as_secs_f64();
        b.0 = (b.0 + dt * (ECS_REFILL - self.background)).clamp(0.0, ECS_BUCKET);
        b.1 = now;
        if b.0 < 1.0 {
            self.throttled.fetch_add(1, Ordering::Relaxed);
            return Err(SourceError::throttled(operation, "Rate exceeded"));
        }
        b.0 -= 1.0;
        Ok(())
    }
}

fn index_of(arn: &str) -> Option<usize> {
    let id = arn.rsplit('/').next()?;
    usize::from_str_radix(id.get(..8)?, 16).ok()
}

fn raws(items: Vec<String>) -> Vec<Box<RawValue>> {
    items
        .into_iter()
        .filter_map(|s| RawValue::from_string(s).ok())
        .collect()
}

#[async_trait]
impl EcsSource for SimEcs {
    async fn list_clusters(&self, next: Option<&str>) -> Result<Page, SourceError> {
        self.call("ListClusters").await?;
        let all = self.clusters.iter().map(|c| c.arn.clone()).collect();
        Ok(page_of(all, next, LIST_PAGE))
    }

    async fn list_container_instances(
        &self,
        cluster: &str,
        next: Option<&str>,
    ) -> Result<Page, SourceError> {
        self.call("ListContainerInstances").await?;
        let Some((c, cl)) = self.cluster(cluster) else {
            return Ok(Page::default());
        };
        let all = (0..INSTANCES)
            .map(|i| {
                let id = task_id(c, i);
                format!(
                    "arn:aws:ecs:{REGION}:{ACCOUNT}:container-instance/{}/{id}",
                    cl.name
                )
            })
            .collect();
        Ok(page_of(all, next, LIST_PAGE))
    }

    async fn describe_container_instances(
        &self,
        cluster: &str,
        arns: &[String],
    ) -> Result<Vec<Box<RawValue>>, SourceError> {
        self.call("DescribeContainerInstances").await?;
        let Some((c, _)) = self.cluster(cluster) else {
            return Ok(Vec::new());
        };
        let found = (arns.iter())
            .filter_map(|a| index_of(a).filter(|i| *i < INSTANCES))
            .map(|i| self.instance_json(c, i))
            .collect();
        Ok(raws(found))
    }

    async fn list_tasks(
        &self,
        cluster: &str,
        desired: &str,
        next: Option<&str>,
    ) -> Result<Page, SourceError> {
        self.call("ListTasks").await?;
        let Some((c, cl)) = self.cluster(cluster) else {
            return Ok(Page::default());
        };
        let range = match desired {
            "STOPPED" => cl.stopped_from..cl.versions.len(),
            _ => 0..cl.stopped_from,
        };
        // Only the page asked for is built (page_of over the range's page).
        let from = next.and_then(|t| t.parse::<usize>().ok()).unwrap_or(0);
        let start = range.start + from;
        let end = (start + LIST_PAGE).min(range.end);
        let arns = (start..end)
            .map(|i| {
                format!(
                    "arn:aws:ecs:{REGION}:{ACCOUNT}:task/{}/{}",
                    cl.name,
                    task_id(c, i)
                )
            })
            .collect();
        let next = (end < range.end).then(|| (from + LIST_PAGE).to_string());
        Ok(Page { arns, next })
    }

    async fn describe_tasks(
        &self,
        cluster: &str,
        arns: &[String],
    ) -> Result<Vec<Box<RawValue>>, SourceError> {
        self.call("DescribeTasks").await?;
        let Some((c, cl)) = self.cluster(cluster) else {
            return Ok(Vec::new());
        };
        let found = (arns.iter())
            .filter_map(|a| index_of(a).filter(|i| *i < cl.versions.len()))
            .map(|i| self.task_json(c, i))
            .collect();
        Ok(raws(found))
    }

    async fn list_services(&self, _: &str, _: Option<&str>) -> Result<Page, SourceError> {
        self.call("ListServices").await?;
        Ok(Page::default())
    }

    async fn describe_services(
        &self,
        _: &str,
        names: &[String],
    ) -> Result<ServicesAnswer, SourceError> {
        self.call("DescribeServices").await?;
        Ok(ServicesAnswer {
            services: Vec::new(),
            missing: names.to_vec(),
            failed: Vec::new(),
            sent_at: chrono::Utc::now(),
        })
    }

    fn api_calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }
}

/// The verification marks' clock: simulated time from the benchmark's start.
static EPOCH: OnceLock<(Instant, SystemTime)> = OnceLock::new();

fn sim_now() -> SystemTime {
    let (i, t) = EPOCH.get_or_init(|| (Instant::now(), SystemTime::now()));
    *t + Instant::now().saturating_duration_since(*i)
}

/// What one pass did, over its invocations.
#[derive(Default)]
struct PassRow {
    name: String,
    calls: BTreeMap<String, u64>,
    throttles: u64,
    wall: Duration,
    invocations: u32,
    peak_mb: f64,
    verified: usize,
    inserted: usize,
    updated: usize,
    deleted: usize,
    errors: usize,
}

impl PassRow {
    fn total(&self) -> u64 {
        self.calls.values().sum()
    }
    fn of(&self, prefix: &str) -> u64 {
        (self.calls.iter())
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(_, v)| v)
            .sum()
    }
}

struct Bench<'a> {
    store: &'a EmbeddedStore,
    ecs: &'a SimEcs,
    rate: f64,
    /// The next scheduled invocation.
    next_tick: Instant,
}

impl Bench<'_> {
    /// One pass, invocation after invocation on the schedule.
    async fn pass(&mut self, name: &str, horizon: Duration) -> PassRow {
        let settings = Settings {
            budget: BudgetSettings {
                calls_per_second: self.rate,
                burst: self.rate.max(1.0),
            },
            verify_horizon: horizon,
            now: sim_now,
        };
        let mut row = PassRow {
            name: name.to_string(),
            ..PassRow::default()
        };
        let mut started = None;
        let base = alloc::reset_peak();
        let throttled_before = self.ecs.throttled.load(Ordering::Relaxed);
        loop {
            tokio::time::sleep_until(self.next_tick).await;
            let invoked = Instant::now();
            let started = *started.get_or_insert(invoked);
            self.next_tick = invoked + SCHEDULE;
            let deadline = invoked + TIMEOUT - DEADLINE_MARGIN;
            let sum: Summary = Reconciler {
                store: self.store,
                source: self.ecs,
                scope: RunScope {
                    account: ACCOUNT.into(),
                    region: REGION.into(),
                },
                retention: HOUR,
                settings,
            }
            .run_until(Some(deadline))
            .await;
            row.invocations += 1;
            for (op, n) in &sum.calls.by_operation {
                *row.calls.entry(op.clone()).or_default() += n;
            }
            row.throttles += sum.calls.throttles;
            row.verified += sum.total.verified;
            row.inserted += sum.total.inserted;
            row.updated += sum.total.updated;
            row.deleted += sum.total.deleted;
            row.errors += sum.errors.len();
            row.wall = Instant::now() - started;
            if sum.pass.complete {
                break;
            }
        }
        row.peak_mb = alloc::peak_since(base) as f64 / 1048576.0;
        assert_eq!(
            self.ecs.throttled.load(Ordering::Relaxed) - throttled_before,
            row.throttles,
            "every throttled call was seen by the budget"
        );
        row
    }
}

fn task_entity(ecs: &SimEcs, c: usize, i: usize) -> Entity {
    let raw = RawValue::from_string(ecs.task_json(c, i)).expect("JSON");
    Entity::from_raw(Kind::Task, raw, true).expect("a valid task")
}

/// The store as events would have filled it: every task and instance.
async fn load(store: &EmbeddedStore, ecs: &SimEcs) {
    for c in 0..CLUSTERS {
        let n = ecs.clusters[c].versions.len();
        let mut entities: Vec<Entity> = (0..n).map(|i| task_entity(ecs, c, i)).collect();
        for i in 0..INSTANCES {
            let raw = RawValue::from_string(ecs.instance_json(c, i)).expect("JSON");
            entities.push(Entity::from_raw(Kind::Instance, raw, true).expect("instance"));
        }
        for chunk in entities.chunks(1000) {
            let writes: Vec<Upsert<'_>> = chunk.iter().map(Upsert::event).collect();
            for r in store.upsert_many(&writes).await {
                r.expect("load");
            }
        }
    }
}

/// The slice a steady pass describes per (cluster, kind), by the formula.
fn predicted(ecs: &SimEcs, elapsed: Duration, horizon: Duration) -> (u64, u64) {
    let passes = (horizon.as_secs() / elapsed.as_secs().max(1)).max(1) as usize;
    let mut list = 1u64; // ListClusters
    let mut describe = 0u64;
    for cl in &ecs.clusters {
        let running = cl.stopped_from;
        let stopped = cl.versions.len() - running;
        list += 1
            + running.div_ceil(LIST_PAGE).max(1) as u64
            + stopped.div_ceil(LIST_PAGE).max(1) as u64
            + 1;
        let tasks_slice = cl.versions.len().div_ceil(passes);
        let instances_slice = INSTANCES.div_ceil(passes);
        describe += tasks_slice.div_ceil(100) as u64 + instances_slice.div_ceil(100) as u64;
    }
    (list, describe)
}

fn minutes(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() / 60.0)
}

/// Where the injected drift stands: (key, what corrected means).
enum Drift {
    Missing(EntityKey),
    Extra(EntityKey),
    Stale(EntityKey, u64),
}

async fn corrected(store: &EmbeddedStore, d: &Drift) -> bool {
    let get = |k: &EntityKey| {
        let k = k.clone();
        async move { store.get(&k, None).await.ok().flatten() }
    };
    match d {
        Drift::Missing(k) => get(k).await.is_some(),
        Drift::Extra(k) => get(k).await.is_none(),
        Drift::Stale(k, v) => get(k)
            .await
            .and_then(|r| r.meta().ok().map(|m| m.ecs_version))
            .is_some_and(|stored| stored >= *v),
    }
}

pub async fn size(tasks: usize, rate: f64, background: f64) {
    let _ = EPOCH.get_or_init(|| (Instant::now(), SystemTime::now()));
    let t = std::time::Instant::now();
    let mut ecs = SimEcs::new(tasks, background);
    let store = EmbeddedStore::new("/bench/passes/");
    load(&store, &ecs).await;
    eprintln!(
        "{tasks} tasks loaded in {:.1} s (CPU)",
        t.elapsed().as_secs_f64()
    );
    let mut bench = Bench {
        store: &store,
        ecs: &ecs,
        rate,
        next_tick: Instant::now(),
    };
    let mut rows = Vec::new();
    let all = "describe everything (horizon 0, today's reconcile)";
    rows.push(bench.pass(all, Duration::ZERO).await);
    let first = bench.pass("1 h horizon, first pass after it", HOUR).await;
    let steady = bench.pass("1 h horizon, no drift (steady)", HOUR).await;
    // The steady pass's slices were sized by the time since the last one:
    // the schedule's period, or the pass's own length rounded up to it.
    let period = Duration::from_secs(first.wall.as_secs().div_ceil(300).max(1) * 300);
    let (list, describe) = predicted(&ecs, period, HOUR);
    rows.push(first);
    rows.push(steady);
    let next_tick = bench.next_tick;

    // Drift: in each of DRIFT clusters, a task missing from the store, one
    // extra in it (ECS does not have it), one stale (ECS moved on).
    let mut drift = Vec::new();
    for d in 0..DRIFT {
        let c = (d * 37) % CLUSTERS;
        let n = ecs.clusters[c].versions.len();
        let missing = task_entity(&ecs, c, (d * 7) % n).key;
        let rec = store
            .get(&missing, None)
            .await
            .ok()
            .flatten()
            .expect("loaded");
        store
            .delete_if_unchanged(&missing, rec.mod_revision)
            .await
            .expect("delete");
        drift.push(Drift::Missing(missing));
        // An extra task: a number past the cluster's tasks.
        let mut extra = task_entity(&ecs, c, 0);
        let ghost = task_id(c, n + d);
        let raw = extra.raw.get().replace(&task_id(c, 0), &ghost);
        extra = Entity::from_raw(Kind::Task, RawValue::from_string(raw).expect("JSON"), true)
            .expect("ghost");
        store
            .upsert_if_newer(Upsert::event(&extra))
            .await
            .expect("ghost");
        drift.push(Drift::Extra(extra.key.clone()));
        let s = (d * 13 + 5) % n;
        ecs.clusters[c].versions[s] += 1;
        drift.push(Drift::Stale(task_entity(&ecs, c, s).key, 2));
    }
    let mut bench = Bench {
        store: &store,
        ecs: &ecs,
        rate,
        next_tick,
    };
    let injected = Instant::now();
    let mut fixed: Vec<Option<(usize, Duration)>> = vec![None; drift.len()];
    let mut pass_no = 0;
    while fixed.iter().any(Option::is_none) && pass_no < 40 {
        pass_no += 1;
        let row = bench
            .pass(&format!("with drift, pass {pass_no}"), HOUR)
            .await;
        // Corrected now: corrected by the end of this pass.
        let at = Instant::now() - injected;
        for (i, d) in drift.iter().enumerate() {
            if fixed[i].is_none() && corrected(&store, d).await {
                fixed[i] = Some((pass_no, at));
            }
        }
        rows.push(row);
    }
    // The latest correction of each kind of drift (None: one never was).
    let worst = |kind: usize| -> Option<(usize, Duration)> {
        let mut latest = (0, Duration::ZERO);
        for f in fixed.iter().skip(kind).step_by(3) {
            let f = (*f)?;
            if f.1 >= latest.1 {
                latest = f;
            }
        }
        Some(latest)
    };

    println!(
        "## {tasks} tasks in {CLUSTERS} clusters, {rate} calls/s{}",
        if background > 0.0 {
            format!(", the account's own tooling using {background} of ECS's {ECS_REFILL} calls/s")
        } else {
            String::new()
        }
    );
    println!();
    println!("| pass | List* | Describe* | calls | throttles | wall (min, simulated) | invocations | peak MB | verified | inserted | updated | deleted | errors |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in &rows {
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {:.1} | {} | {} | {} | {} | {} |",
            r.name,
            r.of("List"),
            r.of("Describe"),
            r.total(),
            r.throttles,
            minutes(r.wall),
            r.invocations,
            r.peak_mb,
            r.verified,
            r.inserted,
            r.updated,
            r.deleted,
            r.errors
        );
    }
    println!();
    let steady = &rows[2];
    if steady.throttles > 0 {
        println!("(The formula counts calls ECS answered; this pass also retried {} refused ones, and its slices follow its own pace.)", steady.throttles);
    }
    println!(
        "Steady pass, by the formula (slices sized for a pass every {} min): List* {list} + Describe* {describe} = {}; measured {} + {} = {}.",
        period.as_secs() / 60,
        list + describe,
        steady.of("List"),
        steady.of("Describe"),
        steady.total()
    );
    for (kind, label) in [(0, "missing"), (1, "extra"), (2, "stale")] {
        match worst(kind) {
            Some((p, d)) => println!(
                "- {DRIFT} {label}: all corrected by the end of drift pass {p}, at most {} min after injection",
                minutes(d)
            ),
            None => println!("- {DRIFT} {label}: NOT all corrected in {pass_no} passes"),
        }
    }
    println!();
}

/// Runs `size` for each size on a current-thread runtime with paused time.
pub fn run(sizes: &[usize], rate: f64, background: f64) {
    println!("# Reconcile passes: simulated ECS (pages and batches of 100, 30 ms a call, ECS's read bucket 50 / 20 per s), simulated time");
    println!();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a runtime");
    for &n in sizes {
        rt.block_on(size(n, rate, background));
    }
}
