//! Server mode's memory: RSS of a fresh process (this binary's hidden
//! `memory-child`) before and after 100,000 tasks go into the embedded store
//! through the ingest path, next to the size of the tasks' JSON. Then the
//! etcd store's record cache: RSS of a fresh process (`cache-child`) before
//! and after it lists 20,000 tasks, next to what the cache's weigher counts
//! (the figure its bound is kept in).

use css::ingest::apply_batch;
use css::model::Kind;
use css::store::etcd::EtcdSettings;
use css::store::{ClusterScope, EmbeddedStore, EtcdStore, ListRequest, StateStore};
use css_tests::fixtures::{messages, task_detail, task_event, ACCOUNT};
use css_tests::EtcdServer;

use crate::lambda::rss_field;
use crate::median;

/// Resident memory after handing freed pages back to the OS, so that the
/// figure is what live data holds, not what the allocator keeps in reserve
/// (mimalloc also returns them by itself after a short delay).
fn rss_mb() -> f64 {
    // SAFETY: mi_collect only releases memory mimalloc holds unused.
    unsafe {
        libmimalloc_sys::mi_collect(true);
    }
    rss_field("/proc/self/status", "VmRSS:").unwrap_or(0) as f64 / 1024.0
}

/// In the child: loads `tasks` tasks (10 clusters, 90% STOPPED) in
/// 2,000-event batches and prints `json_mb rss_before rss_loaded rss_compacted`.
pub async fn child(tasks: usize) {
    let store = EmbeddedStore::new("/ecs-css/v1/");
    let before = rss_mb();
    let mut json_bytes = 0usize;
    for start in (0..tasks).step_by(2000) {
        let bodies: Vec<String> = (start..(start + 2000).min(tasks))
            .map(|i| {
                let status = if i % 10 == 0 { "RUNNING" } else { "STOPPED" };
                let detail = task_detail(
                    &format!("mem{}", i % 10),
                    ACCOUNT,
                    &format!("t{i:06}"),
                    status,
                    1,
                    true,
                );
                json_bytes += detail.to_string().len();
                task_event(&detail)
            })
            .collect();
        let out = apply_batch(&store, &messages(&bodies)).await;
        assert!(out.failures.is_empty(), "embedded store refused writes");
    }
    let loaded = rss_mb();
    let current = store.current_revision().await.expect("revision");
    store.compact(current).await.expect("compact");
    let compacted = rss_mb();
    println!("{} {before} {loaded} {compacted}", json_bytes as f64 / 1e6);
}

/// The record cache's size in `cache-child`: room for every task listed.
const CACHE_MIB: u32 = 512;
const CACHE_PREFIX: &str = "/bench/cache/";

/// In the child: lists the RUNNING tasks of cluster `mem` (all of them) in
/// pages of 1,000 through a store whose record cache holds them all, and
/// prints `records weighed_mb rss_before rss_after`.
pub async fn cache_child(endpoint: &str, tasks: usize) {
    let settings = EtcdSettings {
        endpoints: vec![endpoint.to_string()],
        record_cache_mib: Some(CACHE_MIB),
        ..Default::default()
    };
    let store = EtcdStore::connect(&settings, CACHE_PREFIX)
        .await
        .expect("etcd");
    let mut req = ListRequest {
        kind: Kind::Task,
        cluster: ClusterScope::Named("mem".into()),
        status: Some("RUNNING".into()),
        start_after: None,
        limit: 1000,
        revision: None,
    };
    // One page first, so that connections and buffers are not counted.
    store.list(&req).await.expect("list");
    let before = rss_mb();
    let mut listed = 0;
    loop {
        let page = store.list(&req).await.expect("list");
        listed += page.records.len();
        req.revision = Some(page.revision);
        req.start_after = page.records.last().map(|r| r.store_key.clone());
        if !page.more {
            break;
        }
    }
    assert_eq!(listed, tasks);
    let after = rss_mb();
    let held = store.record_cache_usage();
    assert_eq!(held.records, tasks, "the cache holds every task");
    println!(
        "{} {} {before} {after}",
        held.records,
        held.bytes as f64 / (1u64 << 20) as f64
    );
}

/// Runs this binary with `args` in 1 to 3 fresh processes (`runs`), each
/// printing four numbers, and returns them.
async fn child_rows(args: &[&str], runs: usize) -> Vec<[f64; 4]> {
    let me = std::env::current_exe().expect("own path");
    let mut rows = Vec::new();
    for _ in 0..runs.clamp(1, 3) {
        let out = tokio::process::Command::new(&me)
            .args(args)
            .output()
            .await
            .expect("run the child");
        let text = String::from_utf8_lossy(&out.stdout);
        let v: Vec<f64> = text
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        assert!(
            v.len() == 4,
            "{} said: {text} {}",
            args[0],
            String::from_utf8_lossy(&out.stderr)
        );
        rows.push([v[0], v[1], v[2], v[3]]);
    }
    rows
}

/// RSS of the record cache, measured in `cache-child` processes.
async fn record_cache(etcd: &EtcdServer, runs: usize) {
    let tasks = 20_000;
    let store = etcd.store(CACHE_PREFIX).await;
    let mut g = crate::records::Gen::new(crate::records::MEASURE_SEED);
    let fleet: Vec<(String, String, &'static str)> = (0..tasks)
        .map(|_| ("mem".to_string(), g.task_id(), "RUNNING"))
        .collect();
    let json = crate::store::write(store.as_ref(), &mut g, &fleet, 1, false)
        .await
        .expect("seed write");
    let rows = child_rows(
        &[
            "cache-child",
            "--endpoint",
            &etcd.endpoint(),
            "--tasks",
            &tasks.to_string(),
        ],
        runs,
    )
    .await;
    let col = |i: usize| median(rows.iter().map(|r| r[i]).collect());
    let (records, weighed, grown) = (col(0), col(1), col(3) - col(2));
    let json_mb = json as f64 / (1u64 << 20) as f64;
    println!();
    println!("## The etcd store's record cache\n");
    println!(
        "{tasks} tasks (JSON {:.0} B each on average) listed in pages of 1,000 by a fresh \
         process whose record cache holds them all; median of {} processes.\n",
        json as f64 / tasks as f64,
        rows.len()
    );
    println!("| what | MiB | B per record | ratio to the weigher |");
    println!("|---|---:|---:|---:|");
    let per = |mb: f64| mb * (1u64 << 20) as f64 / records;
    println!("| tasks' JSON | {json_mb:.1} | {:.0} | |", per(json_mb));
    println!(
        "| what the weigher counts (the bound) | {weighed:.1} | {:.0} | 1.00 |",
        per(weighed)
    );
    println!(
        "| RSS growth | {grown:.1} | {:.0} | {:.2} |",
        per(grown),
        grown / weighed
    );
}

pub async fn run(etcd: &EtcdServer, runs: usize) {
    let tasks = 100_000;
    let rows = child_rows(&["memory-child", "--tasks", &tasks.to_string()], runs).await;
    let col = |i: usize| median(rows.iter().map(|r| r[i]).collect());
    let (json, before, loaded, compacted) = (col(0), col(1), col(2), col(3));
    println!("## Server mode memory (embedded store)\n");
    println!(
        "{tasks} tasks (10 clusters, 90% STOPPED) through the ingest path into a fresh process's\n\
         embedded store; RSS growth next to the tasks' JSON size. Median of {} processes.\n",
        rows.len()
    );
    println!("| what | MB | MB per 1,000 tasks | ratio to JSON |");
    println!("|---|---:|---:|---:|");
    let per = |mb: f64| mb / (tasks as f64 / 1000.0);
    println!("| tasks' JSON | {json:.1} | {:.2} | 1.00 |", per(json));
    let with_history = loaded - before;
    println!(
        "| RSS growth, history since start kept | {with_history:.1} | {:.2} | {:.2} |",
        per(with_history),
        with_history / json
    );
    let held = compacted - before;
    println!(
        "| RSS growth, after compaction (current state only) | {held:.1} | {:.2} | {:.2} |",
        per(held),
        held / json
    );
    record_cache(etcd, runs).await;
}
