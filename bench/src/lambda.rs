//! The Lambda bootstrap binaries as Lambda runs them, against a small local
//! Lambda runtime API the bench serves: cold start (exec to the first
//! `invocation/next` request), stripped sizes, and the ingest function's peak
//! RSS over a 6 MB invocation.
//!
//! Baseline for cold start: a program that does nothing but that request (this
//! binary's `runtime-probe` subcommand), exec'd the same way in the same run.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use css_tests::fixtures::{sqs_event, task_detail, task_event, ACCOUNT};
use css_tests::EtcdServer;
use tokio::sync::{mpsc, Notify};

use crate::median;

/// Task events in the memory test's invocation: just under Lambda's 6 MB
/// payload limit with these ~1.5 KB events.
const INGEST_EVENTS: usize = 4000;

pub const FUNCTIONS: [&str; 4] = ["css-ingest", "css-api", "css-watch", "css-reconcile"];

/// What the runtime API saw.
#[derive(Debug)]
enum Seen {
    Next(Instant),
    Response(String),
    Error(String),
}

#[derive(Clone)]
struct Runtime {
    seen: mpsc::UnboundedSender<Seen>,
    events: Arc<Mutex<VecDeque<String>>>,
    never: Arc<Notify>,
}

async fn next(State(rt): State<Runtime>) -> impl IntoResponse {
    let _ = rt.seen.send(Seen::Next(Instant::now()));
    let event = rt
        .events
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .pop_front();
    let Some(body) = event else {
        // No work: hold the request as Lambda does between invocations.
        rt.never.notified().await;
        return (StatusCode::GONE, HeaderMap::new(), String::new());
    };
    let mut h = HeaderMap::new();
    let deadline = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        + Duration::from_secs(60);
    for (k, v) in [
        ("lambda-runtime-aws-request-id", "bench-1".to_string()),
        (
            "lambda-runtime-deadline-ms",
            deadline.as_millis().to_string(),
        ),
        (
            "lambda-runtime-invoked-function-arn",
            format!("arn:aws:lambda:us-east-1:{ACCOUNT}:function:bench"),
        ),
        ("lambda-runtime-trace-id", "Root=1-0-0".to_string()),
    ] {
        if let Ok(v) = v.parse() {
            h.insert(k, v);
        }
    }
    (StatusCode::OK, h, body)
}

async fn response(
    State(rt): State<Runtime>,
    UrlPath(_id): UrlPath<String>,
    body: String,
) -> StatusCode {
    let _ = rt.seen.send(Seen::Response(body));
    StatusCode::ACCEPTED
}

async fn error(State(rt): State<Runtime>, body: String) -> StatusCode {
    let _ = rt.seen.send(Seen::Error(body));
    StatusCode::ACCEPTED
}

struct RuntimeApi {
    addr: String,
    seen: mpsc::UnboundedReceiver<Seen>,
    events: Arc<Mutex<VecDeque<String>>>,
}

async fn runtime_api() -> RuntimeApi {
    let (tx, rx) = mpsc::unbounded_channel();
    let events: Arc<Mutex<VecDeque<String>>> = Arc::default();
    let rt = Runtime {
        seen: tx,
        events: events.clone(),
        never: Arc::new(Notify::new()),
    };
    let app = Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next))
        .route(
            "/2018-06-01/runtime/invocation/{id}/response",
            post(response),
        )
        .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
        .route("/2018-06-01/runtime/init/error", post(error))
        .with_state(rt);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind runtime API");
    let addr = listener.local_addr().expect("addr").to_string();
    tokio::spawn(async move { axum::serve(listener, app).await });
    RuntimeApi {
        addr,
        seen: rx,
        events,
    }
}

fn command(bin: &Path, api: &str, etcd: &EtcdServer) -> tokio::process::Command {
    let mut c = tokio::process::Command::new(bin);
    c.env_clear()
        .env("AWS_LAMBDA_RUNTIME_API", api)
        .env("AWS_LAMBDA_FUNCTION_NAME", "bench")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/bench")
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "bench")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "bench")
        .env("AWS_SECRET_ACCESS_KEY", "bench")
        .env("CSS_ETCD_ENDPOINTS", etcd.endpoint())
        .env("CSS_CURSOR_TABLE", "bench-cursors")
        .env("CSS_LOG_LEVEL", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    c
}

/// Where the release binaries are: next to this one.
fn bin_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("target/release"))
}

/// Exec to first `invocation/next`, one fresh process per run.
async fn cold_start(bin: &Path, args: &[&str], etcd: &EtcdServer, runs: usize) -> f64 {
    let mut times = Vec::new();
    for _ in 0..runs {
        let mut api = runtime_api().await;
        let mut cmd = command(bin, &api.addr, etcd);
        cmd.args(args);
        let t0 = Instant::now();
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("exec {}: {e}", bin.display()));
        let seen = tokio::time::timeout(Duration::from_secs(10), api.seen.recv()).await;
        match seen {
            Ok(Some(Seen::Next(t))) => times.push((t - t0).as_secs_f64() * 1000.0),
            Ok(Some(Seen::Error(e))) => panic!("{}: init error {e}", bin.display()),
            other => panic!("{}: no invocation/next ({other:?})", bin.display()),
        }
        let _ = child.kill().await;
    }
    median(times)
}

/// Peak RSS (VmHWM) of a process, in KiB.
fn peak_rss_kib(pid: u32) -> Option<u64> {
    rss_field(&format!("/proc/{pid}/status"), "VmHWM:")
}

pub fn rss_field(path: &str, field: &str) -> Option<u64> {
    let s = std::fs::read_to_string(path).ok()?;
    s.lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// An SQS event of `n` realistic task events (10 clusters, duplicates).
fn sqs_payload(n: usize) -> String {
    let bodies: Vec<String> = (0..n)
        .map(|i| {
            task_event(&task_detail(
                &format!("rss{}", i % 10),
                ACCOUNT,
                &format!("t{:05}", i % (n * 4 / 5).max(1)),
                "RUNNING",
                1 + (i / 7) as u64,
                i % 2 == 0,
            ))
        })
        .collect();
    serde_json::to_string(&sqs_event(&bodies)).expect("event JSON")
}

/// The ingest function's peak RSS: after start-up, and after one invocation.
async fn ingest_rss(bin: &Path, etcd: &EtcdServer, events: usize) -> (f64, f64, f64) {
    let mut api = runtime_api().await;
    let payload = sqs_payload(events);
    assert!(
        payload.len() <= 6 * 1024 * 1024,
        "over Lambda's 6 MB payload limit"
    );
    let size_mb = payload.len() as f64 / 1e6;
    let mut child = command(bin, &api.addr, etcd)
        .spawn()
        .expect("exec css-ingest");
    let pid = child.id().expect("pid");
    // First `next` answers nothing yet: read the start-up peak, then queue it.
    match tokio::time::timeout(Duration::from_secs(10), api.seen.recv()).await {
        Ok(Some(Seen::Next(_))) => {}
        other => panic!("css-ingest did not start: {other:?}"),
    }
    let idle = peak_rss_kib(pid).unwrap_or(0) as f64 / 1024.0;
    let _ = child.kill().await;
    // A fresh process whose first invocation is the 6 MB event.
    api.events
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push_back(payload);
    let mut child = command(bin, &api.addr, etcd)
        .spawn()
        .expect("exec css-ingest");
    let pid = child.id().expect("pid");
    loop {
        match tokio::time::timeout(Duration::from_secs(60), api.seen.recv()).await {
            Ok(Some(Seen::Next(_))) => continue,
            Ok(Some(Seen::Response(body))) => {
                // Every record applied: a real 6 MB invocation, not an early refusal.
                let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
                assert_eq!(
                    v["batchItemFailures"].as_array().map(Vec::len),
                    Some(0),
                    "css-ingest answered {body}"
                );
                break;
            }
            Ok(Some(Seen::Error(e))) => panic!("css-ingest reported an error: {e}"),
            other => panic!("css-ingest invocation failed: {other:?}"),
        }
    }
    // The runtime asks for the next invocation once the response is sent.
    let _ = tokio::time::timeout(Duration::from_secs(5), api.seen.recv()).await;
    let peak = peak_rss_kib(pid).unwrap_or(0) as f64 / 1024.0;
    let _ = child.kill().await;
    (size_mb, idle, peak)
}

pub async fn run(etcd: &EtcdServer, runs: usize) {
    let dir = bin_dir();
    let me = std::env::current_exe().expect("own path");
    let runs = (runs * 4).max(5);
    println!("## Lambda cold start and size\n");
    println!(
        "Exec of each release bootstrap binary (x86_64, this machine) to its first request to a local\n\
         Lambda runtime API, median of {runs}. Baseline: a program that does only that request.\n"
    );
    println!(
        "Sizes: stripped, x86_64 as built here, and arm64 (the template's default architecture)\n\
         from `cargo lambda build --release --arm64` as `sam build` makes it (scripts/bench.sh\n\
         builds both; `-` if the arm64 build is missing).\n"
    );
    println!("| binary | x86_64 MB | arm64 MB | cold start ms | ratio to baseline |");
    println!("|---|---:|---:|---:|---:|");
    let base = cold_start(&me, &["runtime-probe"], etcd, runs).await;
    println!("| baseline (`css-bench runtime-probe`) | - | - | {base:.2} | 1.00 |");
    for f in FUNCTIONS {
        let bin = dir.join(f);
        let size = std::fs::metadata(&bin)
            .unwrap_or_else(|e| {
                panic!(
                    "{}: {e} (build with `cargo build --release --workspace`)",
                    bin.display()
                )
            })
            .len() as f64
            / 1e6;
        let arm64 = std::fs::metadata(dir.join("../lambda").join(f).join("bootstrap")).map_or_else(
            |_| "-".to_string(),
            |m| format!("{:.2}", m.len() as f64 / 1e6),
        );
        let t = cold_start(&bin, &[], etcd, runs).await;
        println!("| {f} | {size:.2} | {arm64} | {t:.2} | {:.2} |", t / base);
    }
    println!();
    println!("## Ingest function memory\n");
    let mut peaks = Vec::new();
    let mut idles = Vec::new();
    let mut size = 0.0;
    for _ in 0..runs.min(5) {
        let (s, idle, peak) = ingest_rss(&dir.join("css-ingest"), etcd, INGEST_EVENTS).await;
        size = s;
        idles.push(idle);
        peaks.push(peak);
    }
    let (idle, peak) = (median(idles), median(peaks));
    println!("| what | MB | ratio to payload |");
    println!("|---|---:|---:|");
    println!("| SQS event payload ({INGEST_EVENTS} task events) | {size:.2} | 1.00 |");
    println!(
        "| css-ingest peak RSS after start-up | {idle:.1} | {:.2} |",
        idle / size
    );
    println!(
        "| css-ingest peak RSS over the invocation | {peak:.1} | {:.2} |",
        peak / size
    );
}

/// `css-bench runtime-probe`: the cold-start baseline, one request and exit.
pub fn probe() {
    use std::io::{Read, Write};
    let Ok(api) = std::env::var("AWS_LAMBDA_RUNTIME_API") else {
        return;
    };
    if let Ok(mut s) = std::net::TcpStream::connect(&api) {
        let _ = write!(
            s,
            "GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nHost: {api}\r\n\r\n"
        );
        let mut buf = [0u8; 1];
        let _ = s.read(&mut buf);
    }
}
