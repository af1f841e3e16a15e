//! Services: the ingest handler on a mix where 10% of the events are service
//! or deployment events (each makes the ingest describe its service, here
//! against moto's ECS), next to the task-only mix of the same size, in one
//! run; and how many DescribeServices calls 1,000 service events cost.

use std::sync::Arc;
use std::time::Instant;

use css::ecs::aws::AwsEcs;
use css::ecs::{EcsSource, RunScope};
use css::ingest::Describer;
use css::lambda::handle_sqs_with;
use css::store::EtcdStore;
use css_tests::fixtures::{service_event, sqs_event};
use css_tests::moto::MotoServer;
use css_tests::EtcdServer;
use futures::StreamExt;
use rand::{Rng, SeedableRng};

use crate::ingest::{workload, Workload};
use crate::{median, timed};

const CLUSTERS: usize = 10;
const SERVICES_PER_CLUSTER: usize = 5;
const ACCOUNT: &str = "123456789012";
const REGION: &str = "us-east-1";

async fn moto_fleet(moto: &MotoServer) {
    let ecs = moto.ecs_with_task_definition().await;
    for c in 0..CLUSTERS {
        let cluster = format!("svc-{c}");
        ecs.create_cluster()
            .cluster_name(&cluster)
            .send()
            .await
            .expect("cluster");
        for s in 0..SERVICES_PER_CLUSTER {
            (ecs.create_service()
                .cluster(&cluster)
                .service_name(format!("app-{s}")))
            .task_definition("web")
            .desired_count(2)
            .send()
            .await
            .expect("service");
        }
    }
}

/// `n` events: the task workload with every tenth event a service or
/// deployment event naming one of the fleet's services.
fn mixed(n: usize) -> (Workload, usize) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let service_events = n / 10;
    let mut w = workload(n - service_events);
    for k in 0..service_events {
        let kind = ["ECS Service Action", "ECS Deployment State Change"][k % 2];
        let cluster = format!("svc-{}", rng.random_range(0..CLUSTERS));
        let name = format!("app-{}", rng.random_range(0..SERVICES_PER_CLUSTER));
        let at = (k * 10 + 9).min(w.bodies.len());
        w.bodies
            .insert(at, service_event(kind, ACCOUNT, REGION, &cluster, &name));
    }
    (w, service_events)
}

/// Events/s of the handler over `w` in `batch`-event invocations,
/// `parallel` at a time, describing with `ecs`.
async fn handler_run(
    store: Arc<EtcdStore>,
    ecs: &dyn EcsSource,
    w: &Workload,
    batch: usize,
    parallel: usize,
) -> f64 {
    let scope = RunScope {
        account: ACCOUNT.into(),
        region: REGION.into(),
    };
    let elapsed = timed(async {
        futures::stream::iter(w.bodies.chunks(batch).map(sqs_event))
            .map(|ev| {
                let (store, scope) = (store.clone(), &scope);
                async move {
                    let d = Describer {
                        ecs,
                        scope,
                        members: None,
                    };
                    let resp = handle_sqs_with(store.as_ref(), Some(d), ev)
                        .await
                        .expect("handler");
                    assert!(resp.batch_item_failures.is_empty(), "no failures expected");
                }
            })
            .buffer_unordered(parallel)
            .collect::<Vec<_>>()
            .await;
    })
    .await;
    w.bodies.len() as f64 / elapsed.as_secs_f64()
}

pub async fn run(etcd: &EtcdServer, n: usize, runs: usize) {
    let moto = MotoServer::start();
    let t = Instant::now();
    moto_fleet(&moto).await;
    eprintln!(
        "moto: {CLUSTERS} clusters x {SERVICES_PER_CLUSTER} services in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let ecs = AwsEcs::new(&moto.sdk_config());
    let tasks_only = workload(n);
    let (mix, service_events) = mixed(n);
    println!(
        "# Services: {n} events per workload; the mix has {service_events} service/deployment events over {} services in {CLUSTERS} clusters, each described from moto's ECS",
        CLUSTERS * SERVICES_PER_CLUSTER
    );
    let modes: [(&str, usize, usize); 2] = [
        ("10-event invocations, 4 at a time", 10, 4),
        ("1,000-event invocations, 1 at a time", 1000, 1),
    ];
    let mut rows = Vec::new();
    for (m, (name, batch, parallel)) in modes.iter().enumerate() {
        let (mut only, mut mixed_rate, mut calls) = (Vec::new(), Vec::new(), Vec::new());
        for r in 0..runs {
            let store = etcd.store(&format!("/bench/svc-tasks-{m}-{r}/")).await;
            only.push(handler_run(store, &ecs, &tasks_only, *batch, *parallel).await);
            let store = etcd.store(&format!("/bench/svc-mix-{m}-{r}/")).await;
            let before = ecs.api_calls();
            mixed_rate.push(handler_run(store, &ecs, &mix, *batch, *parallel).await);
            calls.push((ecs.api_calls() - before) as f64 * 1000.0 / service_events as f64);
        }
        rows.push((name, median(only), median(mixed_rate), median(calls)));
    }
    println!();
    println!("| invocations | task-only events/s | mix with 10% service events, events/s | ratio | DescribeServices calls per 1,000 service events |");
    println!("|---|---:|---:|---:|---:|");
    for (name, only, mix, calls) in rows {
        println!(
            "| {name} | {only:.0} | {mix:.0} | {:.2} | {calls:.0} |",
            mix / only
        );
    }
    // What one describe costs here, for reading the ratios above.
    let mut lat = Vec::new();
    for i in 0..20 {
        let t = Instant::now();
        let names = [format!("app-{}", i % SERVICES_PER_CLUSTER)];
        let cluster = format!(
            "arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/svc-{}",
            i % CLUSTERS
        );
        ecs.describe_services(&cluster, &names)
            .await
            .expect("describe");
        lat.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    println!();
    println!(
        "(median of {runs} runs each; a call is one HTTP request, SDK retries included; one DescribeServices against moto takes {:.1} ms, median of 20)",
        median(lat)
    );
}
