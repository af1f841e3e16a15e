//! Reconciliation: one run over a moto fleet of 3 clusters x 300 tasks into
//! a local etcd; ECS API calls and wall time (first run: all inserts; second
//! run: nothing to change).

use std::time::{Duration, Instant};

use css::reconcile::aws::AwsEcs;
use css::reconcile::{Reconciler, RunScope};
use css_tests::moto::MotoServer;
use css_tests::EtcdServer;
use serde_json::json;

use crate::median;

pub async fn run(etcd: &EtcdServer, runs: usize) {
    let moto = MotoServer::start();
    let t = Instant::now();
    moto.seed_ecs(&json!({"clusters": {
        "fleet-a": {"instances": 3, "running": 250, "stopped": 50},
        "fleet-b": {"instances": 3, "running": 250, "stopped": 50},
        "fleet-c": {"instances": 3, "running": 250, "stopped": 50}
    }}));
    eprintln!("moto fleet seeded in {:.1} s", t.elapsed().as_secs_f64());
    let source = AwsEcs::new(&moto.sdk_config());
    let scope = RunScope {
        account: "123456789012".into(),
        region: "us-east-1".into(),
    };
    println!("# Reconcile: moto fleet of 3 clusters x 300 tasks (250 running, 50 stopped) + 9 instances, local etcd");
    println!();
    println!("| run | ECS API calls | described | inserted | unchanged | deleted | wall ms (median of {runs}) |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    let mut first = Vec::new();
    let mut second = Vec::new();
    let mut rows = Vec::new();
    for r in 0..runs.max(1) {
        let store = etcd.store(&format!("/bench/reconcile-{r}/")).await;
        for (i, out) in [&mut first, &mut second].into_iter().enumerate() {
            let s = Reconciler {
                store: store.as_ref(),
                source: &source,
                scope: scope.clone(),
                retention: Duration::from_secs(3600),
                settings: css_tests::fixtures::describe_all(),
            }
            .run()
            .await;
            assert!(s.errors.is_empty(), "{:?}", s.errors);
            out.push(s.duration_ms as f64);
            if r == 0 {
                rows.push((i, s));
            }
        }
    }
    for (i, s) in rows {
        let (name, ms) = if i == 0 {
            ("first (empty store)", median(first.clone()))
        } else {
            ("second (converged)", median(second.clone()))
        };
        println!(
            "| {name} | {} | {} | {} | {} | {} | {ms:.0} |",
            s.api_calls, s.total.described, s.total.inserted, s.total.unchanged, s.total.deleted
        );
    }
}
