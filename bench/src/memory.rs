//! Server mode's memory: RSS of a fresh process (this binary's hidden
//! `memory-child`) before and after 100,000 tasks go into the embedded store
//! through the ingest path, next to the size of the tasks' JSON.

use css::ingest::apply_batch;
use css::store::{EmbeddedStore, StateStore};
use css_tests::fixtures::{messages, task_detail, task_event, ACCOUNT};

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

pub async fn run(runs: usize) {
    let me = std::env::current_exe().expect("own path");
    let tasks = 100_000;
    let mut rows: Vec<[f64; 4]> = Vec::new();
    for _ in 0..runs.clamp(1, 3) {
        let out = tokio::process::Command::new(&me)
            .args(["memory-child", "--tasks", &tasks.to_string()])
            .output()
            .await
            .expect("run memory-child");
        let text = String::from_utf8_lossy(&out.stdout);
        let v: Vec<f64> = text
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        assert!(
            v.len() == 4,
            "memory-child said: {text} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        rows.push([v[0], v[1], v[2], v[3]]);
    }
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
}
