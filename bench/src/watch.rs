//! Watch latency: from a write to etcd to the long-poll answer carrying it,
//! through server mode over loopback HTTP, with 1 and 100 concurrent
//! watchers; next to raw etcd watches (same client library) in the same run.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use css::model::Kind;
use css::store::{Keyspace, StateStore, Upsert, UpsertOutcome};
use css_tests::fixtures::{entity, task_detail, ACCOUNT};
use css_tests::server::TestServer;
use css_tests::EtcdServer;
use etcd_client::WatchOptions;
use serde_json::Value;

type Deliveries = Arc<Mutex<Vec<(i64, Instant)>>>;

fn percentile(mut xs: Vec<f64>, p: f64) -> f64 {
    xs.sort_by(|a, b| a.total_cmp(b));
    let i = ((xs.len() as f64 - 1.0) * p).round() as usize;
    xs[i.min(xs.len() - 1)]
}

/// Writes `n` task changes ~20 ms apart; answers revision -> time just before the write.
async fn writer(store: Arc<dyn StateStore>, n: usize, tag: &str) -> HashMap<i64, Instant> {
    let mut sent = HashMap::new();
    for i in 0..n {
        let e = entity(
            Kind::Task,
            &task_detail(
                "lat",
                ACCOUNT,
                &format!("{tag}{:04}", i % 50),
                "RUNNING",
                1 + i as u64,
                true,
            ),
        );
        let t = Instant::now();
        match store
            .upsert_if_newer(Upsert::event(&e))
            .await
            .expect("write")
        {
            UpsertOutcome::Inserted { revision } | UpsertOutcome::Updated { revision } => {
                sent.insert(revision, t);
            }
            UpsertOutcome::Unchanged { .. } => {}
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    sent
}

fn latencies(sent: &HashMap<i64, Instant>, got: &[Deliveries]) -> Vec<f64> {
    let mut out = Vec::new();
    for d in got {
        for (rev, at) in d.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            if let Some(t) = sent.get(rev) {
                out.push(at.saturating_duration_since(*t).as_secs_f64() * 1000.0);
            }
        }
    }
    out
}

async fn via_service(s: &TestServer, watchers: usize, writes: usize, tag: &str) -> Vec<f64> {
    let store = s.server.store();
    let start = store.current_revision().await.expect("revision");
    let stop = Arc::new(AtomicBool::new(false));
    let mut got = Vec::new();
    let mut handles = Vec::new();
    for _ in 0..watchers {
        let d: Deliveries = Arc::default();
        got.push(d.clone());
        let (base, http, stop) = (s.base.clone(), s.http.clone(), stop.clone());
        handles.push(tokio::spawn(async move {
            let mut since = start;
            while !stop.load(Ordering::Relaxed) {
                let url = format!("{base}/v1/stream/tasks?cluster=lat&since={since}&wait=2");
                let Ok(resp) = http.get(url).send().await else {
                    continue;
                };
                let Ok(v) = resp.json::<Value>().await else {
                    continue;
                };
                let now = Instant::now();
                let mut d = d.lock().unwrap_or_else(|e| e.into_inner());
                for ev in v["events"].as_array().into_iter().flatten() {
                    if let Some(r) = ev["revision"].as_str().and_then(|r| r.parse().ok()) {
                        d.push((r, now));
                    }
                }
                since = v["revision"]
                    .as_str()
                    .and_then(|r| r.parse().ok())
                    .unwrap_or(since);
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sent = writer(store, writes, tag).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        let _ = h.await;
    }
    let l = latencies(&sent, &got);
    assert_eq!(
        l.len(),
        watchers * sent.len(),
        "every watcher saw every write"
    );
    l
}

async fn via_raw_etcd(
    etcd: &EtcdServer,
    store: Arc<dyn StateStore>,
    watchers: usize,
    writes: usize,
    tag: &str,
) -> Vec<f64> {
    let client = etcd
        .store("/ecs-css/v1/")
        .await
        .client()
        .await
        .expect("an etcd member");
    let prefix = Keyspace::new("/ecs-css/v1/").kind_prefix(Kind::Task);
    let stop = Arc::new(AtomicBool::new(false));
    let mut got = Vec::new();
    let mut handles = Vec::new();
    for _ in 0..watchers {
        let d: Deliveries = Arc::default();
        got.push(d.clone());
        let (mut wc, stop, prefix) = (client.watch_client(), stop.clone(), prefix.clone());
        let mut stream = wc
            .watch(
                prefix,
                Some(WatchOptions::new().with_prefix().with_prev_key()),
            )
            .await
            .expect("raw watch");
        handles.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let Ok(Ok(Some(resp))) =
                    tokio::time::timeout(Duration::from_millis(200), stream.message()).await
                else {
                    continue;
                };
                let now = Instant::now();
                let mut d = d.lock().unwrap_or_else(|e| e.into_inner());
                for ev in resp.events() {
                    if let Some(kv) = ev.kv() {
                        d.push((kv.mod_revision(), now));
                    }
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sent = writer(store, writes, tag).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        let _ = h.await;
    }
    latencies(&sent, &got)
}

/// One watcher through the client library's list+watch loop.
async fn via_client(s: &TestServer, writes: usize, tag: &str) -> Vec<f64> {
    use css_client::{Client, Filters, Signing, Task, WatchEvent};
    let client = Client::new(&s.base, Signing::Never).await.expect("client");
    let mut w = client.watch::<Task>(Filters {
        cluster: Some("lat".into()),
        ..Default::default()
    });
    w.wait = Duration::from_secs(2);
    let d: Deliveries = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    // The first event is the list: the watch is running after it.
    let _ = w.next().await.expect("list");
    let (sink, stop2) = (d.clone(), stop.clone());
    let h = tokio::spawn(async move {
        while !stop2.load(Ordering::Relaxed) {
            let Ok(Ok(ev)) = tokio::time::timeout(Duration::from_millis(200), w.next()).await
            else {
                continue;
            };
            let now = Instant::now();
            if let WatchEvent::Added(_, r) | WatchEvent::Modified(_, r) = ev {
                sink.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push((r, now));
            }
        }
    });
    let sent = writer(s.server.store(), writes, tag).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let _ = h.await;
    latencies(&sent, &[d])
}

/// Writes per round; each figure is the median of the rounds' own figures,
/// so that one hiccup of the machine moves one round, not the result.
const PER_ROUND: usize = 200;

/// One round's row: median and p99 of two latency series.
fn round_row(a: Vec<f64>, b: Vec<f64>) -> [f64; 4] {
    [
        percentile(a.clone(), 0.5),
        percentile(a, 0.99),
        percentile(b.clone(), 0.5),
        percentile(b, 0.99),
    ]
}

fn median_of(rows: &[[f64; 4]], col: usize) -> f64 {
    crate::median(rows.iter().map(|r| r[col]).collect())
}

pub async fn run(etcd: &EtcdServer, runs: usize) {
    let s = TestServer::start(Some(etcd), &[]).await;
    let runs = runs.max(1);
    println!(
        "# Watch: write -> long-poll answer carrying it (server mode over loopback HTTP, etcd)"
    );
    println!();
    println!(
        "{runs} rounds of {PER_ROUND} writes 20 ms apart, the service's and raw etcd's rounds\n\
         alternating; each figure is the median of the rounds' medians or p99s.\n"
    );
    println!("| watchers | service median ms | service p99 ms | raw etcd watch median ms | raw p99 ms | p99 ratio |");
    println!("|---:|---:|---:|---:|---:|---:|");
    for (i, watchers) in [1usize, 100].into_iter().enumerate() {
        let mut rows = Vec::new();
        for r in 0..runs {
            let svc = via_service(&s, watchers, PER_ROUND, &format!("s{i}r{r}")).await;
            let raw = via_raw_etcd(
                etcd,
                s.server.store(),
                watchers,
                PER_ROUND,
                &format!("r{i}r{r}"),
            )
            .await;
            rows.push(round_row(svc, raw));
        }
        let [sm, sp, rm, rp] = [0, 1, 2, 3].map(|c| median_of(&rows, c));
        println!(
            "| {watchers} | {sm:.2} | {sp:.2} | {rm:.2} | {rp:.2} | {:.2} |",
            sp / rp
        );
    }
    // The client library (cssctl --watch) on top of the same long polls.
    let mut rows = Vec::new();
    for r in 0..runs {
        let svc = via_service(&s, 1, PER_ROUND, &format!("csr{r}")).await;
        let lib = via_client(&s, PER_ROUND, &format!("clr{r}")).await;
        rows.push(round_row(svc, lib));
    }
    let [sm, sp, lm, lp] = [0, 1, 2, 3].map(|c| median_of(&rows, c));
    println!();
    println!("| one watcher | median ms | p99 ms | median added by the client |");
    println!("|---|---:|---:|---:|");
    println!("| plain long polls (HTTP) | {sm:.2} | {sp:.2} | - |");
    println!(
        "| css-client watch (cssctl --watch) | {lm:.2} | {lp:.2} | {:.2} ms |",
        lm - sm
    );
    let _ = s.server.shutdown().await;
}
