//! What metrics cost on the ingest path: the handler's events/s with the
//! CloudWatch EMF exporter installed (metrics recorded, and written to stdout
//! after every invocation, as in Lambda) and without, each in a fresh child
//! process (an installed exporter cannot be removed), alternating, in one run.

use std::process::Command;

use css_tests::EtcdServer;

use crate::{ingest, median};

const EVENTS: usize = 5_000;

/// One measurement, printed as `rate <events/s>` for the parent.
pub async fn child(emf: bool) {
    if emf {
        css::metrics::install_emf("ClusterStateServiceBench", "css-bench").expect("exporter");
    }
    let etcd = EtcdServer::start();
    let w = ingest::workload(EVENTS);
    let store = etcd.store("/bench/metrics/").await;
    let rate = ingest::handler_run(store, &w, Some(10), 4).await;
    println!("rate {rate}");
}

fn measure(emf: bool) -> f64 {
    let exe = std::env::current_exe().expect("this binary");
    let mut cmd = Command::new(exe);
    cmd.arg("metrics-child");
    if emf {
        cmd.arg("--emf");
    }
    let out = cmd.output().expect("child");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let emf_lines = text.lines().filter(|l| l.contains("\"_aws\"")).count();
    assert_eq!(emf_lines > 0, emf, "EMF lines only with the exporter");
    text.lines()
        .find_map(|l| l.strip_prefix("rate "))
        .and_then(|r| r.parse().ok())
        .expect("a rate")
}

pub async fn run(runs: usize) {
    let runs = runs.max(3);
    println!("# Metrics on the ingest path: {EVENTS} events in 10-event invocations, 4 at a time, fresh process each");
    let (mut off, mut on) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        off.push(measure(false));
        on.push(measure(true));
    }
    let (off, on) = (median(off), median(on));
    println!();
    println!("| metrics | events/s (median of {runs}) | ratio |");
    println!("|---|---:|---:|");
    println!("| off (no exporter) | {off:.0} | 1.00 |");
    println!(
        "| on (EMF recorded and written after each invocation) | {on:.0} | {:.3} |",
        on / off
    );
}
