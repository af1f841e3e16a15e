//! cssctl's memory while it prints 100,000 tasks as JSON: the list streams
//! page by page, so its peak RSS should stay far below the output's size.

use std::process::Stdio;
use std::time::Instant;

use css::ingest::apply_batch;
use css_tests::fixtures::{messages, task_detail, task_event, ACCOUNT};
use css_tests::server::TestServer;

use crate::median;

/// Runs cssctl to completion; answers (peak RSS MiB, output bytes, seconds).
fn run_cssctl(bin: &std::path::Path, base: &str) -> (f64, u64, f64) {
    let out = tempfile_path();
    let file = std::fs::File::create(&out).expect("output file");
    let t = Instant::now();
    let child = std::process::Command::new(bin)
        .args(["--endpoint", base, "tasks", "-o", "json"])
        .stdout(Stdio::from(file))
        .spawn()
        .expect("exec cssctl");
    // VmHWM of the exec'd image, polled until it exits (rusage would also
    // count the parent's pages shared before exec).
    let mut child = child;
    let pid = child.id();
    let mut peak_kib = 0;
    let status = loop {
        if let Some(k) = crate::lambda::rss_field(&format!("/proc/{pid}/status"), "VmHWM:") {
            peak_kib = peak_kib.max(k);
        }
        match child.try_wait() {
            Ok(Some(st)) => break st,
            Ok(None) => std::thread::sleep(std::time::Duration::from_millis(2)),
            Err(e) => panic!("waiting for cssctl: {e}"),
        }
    };
    let secs = t.elapsed().as_secs_f64();
    assert!(status.success(), "cssctl failed ({status})");
    let size = std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0);
    let _ = std::fs::remove_file(&out);
    (peak_kib as f64 / 1024.0, size, secs)
}

fn tempfile_path() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("cssctl-bench-{}.json", std::process::id()))
}

pub async fn run(runs: usize) {
    let bin = std::env::current_exe()
        .expect("own path")
        .with_file_name("cssctl");
    let s = TestServer::start(None, &["--compaction-interval", "1h"]).await;
    let tasks = 100_000;
    for start in (0..tasks).step_by(2000) {
        let bodies: Vec<String> = (start..start + 2000)
            .map(|i| {
                task_event(&task_detail(
                    &format!("ctl{}", i % 10),
                    ACCOUNT,
                    &format!("t{i:06}"),
                    if i % 10 == 0 { "RUNNING" } else { "STOPPED" },
                    1,
                    true,
                ))
            })
            .collect();
        let out = apply_batch(s.server.store().as_ref(), &messages(&bodies)).await;
        assert!(out.failures.is_empty());
    }
    let mut rows = Vec::new();
    for _ in 0..runs.clamp(1, 3) {
        let base = s.base.clone();
        let bin = bin.clone();
        rows.push(
            tokio::task::spawn_blocking(move || run_cssctl(&bin, &base))
                .await
                .expect("cssctl run"),
        );
    }
    let rss = median(rows.iter().map(|r| r.0).collect());
    let secs = median(rows.iter().map(|r| r.2).collect());
    let size = rows[0].1 as f64 / 1e6;
    println!("## cssctl memory\n");
    println!(
        "`cssctl tasks -o json` over {tasks} tasks in server mode (embedded store, 500 per page,\n\
         output to a file), median of {} runs.\n",
        rows.len()
    );
    println!("| what | MB | ratio to output |");
    println!("|---|---:|---:|");
    println!("| JSON written | {size:.1} | 1.00 |");
    println!("| cssctl peak RSS | {rss:.1} | {:.3} |", rss / size);
    println!("\n({secs:.2} s per run)");
    let _ = s.server.shutdown().await;
}
