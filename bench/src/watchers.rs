//! Many long-poll watchers on one server-mode process (the Fargate watch
//! tier's task): css-server (the release binary beside css-bench) on a
//! local etcd, N watchers in this process each looping on
//! `/v1/stream/tasks?since=..&wait=20`, while writes go to etcd at a fixed
//! rate (what the ingest does). Per size: delivery latency from the write's
//! acknowledgement to each watcher's answer carrying it (p50, p99, max),
//! answers per second, the server's RSS per watcher, and whether every
//! watcher saw every write.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use css::model::Kind;
use css::store::{StateStore, Upsert, UpsertOutcome};
use css_tests::fixtures::{entity, task_detail, ACCOUNT};
use css_tests::EtcdServer;

/// What a watcher reads of an answer: its events' revisions and its own.
struct Answer {
    events: Vec<i64>,
    revision: i64,
}

impl Answer {
    /// Found by the answer's framing (each event starts
    /// `{"type":"PUT","revision":"<n>"` or DELETE, and the answer's revision
    /// follows the events array), never parsing the items: a real watcher
    /// runs elsewhere, and here its CPU would be taken from the server's.
    fn read(body: &[u8]) -> Result<Answer, ConnError> {
        use memchr::memmem;
        let number = |at: usize| -> Result<i64, ConnError> {
            let digits = body[at..].iter().take_while(|b| b.is_ascii_digit()).count();
            Ok(std::str::from_utf8(&body[at..at + digits])?.parse()?)
        };
        if !body.starts_with(br#"{"events":["#) {
            return Err("not a watch answer".into());
        }
        let mut events = Vec::new();
        for head in [
            &br#"{"type":"PUT","revision":""#[..],
            &br#"{"type":"DELETE","revision":""#[..],
        ] {
            for at in memmem::find_iter(body, head) {
                events.push(number(at + head.len())?);
            }
        }
        events.sort_unstable();
        let tail = br#"],"revision":""#;
        let at = memmem::rfind(body, tail).ok_or("an answer without its revision")?;
        Ok(Answer {
            events,
            revision: number(at + tail.len())?,
        })
    }
}

/// A watcher's connection: one keep-alive HTTP/1.1 connection written and
/// read in the watcher's own task (no client pool, no connection task), as
/// a load generator such as wrk does, so the watchers' CPU (on the same two
/// cores as the server) stays small beside the server's.
struct Conn {
    tcp: tokio::net::TcpStream,
    host: String,
    buf: Vec<u8>,
}

type ConnError = Box<dyn std::error::Error + Send + Sync>;

impl Conn {
    async fn open(addr: &str) -> Result<Conn, ConnError> {
        let tcp = tokio::net::TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        Ok(Conn {
            tcp,
            host: addr.to_string(),
            buf: Vec::with_capacity(16 << 10),
        })
    }

    async fn get(&mut self, path: &str) -> Result<Answer, ConnError> {
        tokio::time::timeout(Duration::from_secs(30), self.exchange(path)).await?
    }

    async fn exchange(&mut self, path: &str) -> Result<Answer, ConnError> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let req = format!("GET {path} HTTP/1.1\r\nhost: {}\r\n\r\n", self.host);
        self.tcp.write_all(req.as_bytes()).await?;
        self.buf.clear();
        loop {
            if self.tcp.read_buf(&mut self.buf).await? == 0 {
                return Err("the server closed the connection".into());
            }
            let mut headers = [httparse::EMPTY_HEADER; 16];
            let mut resp = httparse::Response::new(&mut headers);
            let httparse::Status::Complete(head) = resp.parse(&self.buf)? else {
                continue;
            };
            let status = resp.code.unwrap_or(0);
            let length = resp
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                .and_then(|h| std::str::from_utf8(h.value).ok()?.parse::<usize>().ok())
                .ok_or("an answer without content-length")?;
            if self.buf.len() < head + length {
                self.buf.reserve(head + length - self.buf.len());
                continue;
            }
            if !(200..300).contains(&status) {
                return Err(format!("status {status}").into());
            }
            return Answer::read(&self.buf[head..head + length]);
        }
    }
}

/// The server under test, a process of its own (its RSS is the figure).
struct Server {
    child: Child,
    base: String,
    addr: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// css-server beside css-bench (this build).
fn this_build() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| Some(p.parent()?.join("css-server")))
        .filter(|p| p.exists())
        .unwrap_or_else(|| {
            panic!("css-server is not built beside css-bench: cargo build --release -p css-server")
        })
}

fn start_server(etcd: &EtcdServer, exe: &Path, cpus: Option<&str>) -> Server {
    let port = css_tests::etcd::free_port();
    let mut cmd = match cpus {
        Some(cpus) => {
            let mut c = Command::new("taskset");
            c.args(["-c", cpus]).arg(exe);
            c
        }
        None => Command::new(exe),
    };
    let child = cmd
        .env("CSS_BIND", format!("127.0.0.1:{port}"))
        .env("CSS_ETCD_ENDPOINTS", etcd.endpoint())
        .env("CSS_COMPACTION_INTERVAL", "0s")
        .env("CSS_LOG_LEVEL", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("css-server");
    Server {
        child,
        base: format!("http://127.0.0.1:{port}"),
        addr: format!("127.0.0.1:{port}"),
    }
}

fn rss_mb(pid: u32) -> f64 {
    crate::lambda::rss_field(&format!("/proc/{pid}/status"), "VmRSS:").unwrap_or(0) as f64 / 1024.0
}

/// CPU seconds a process has used (user + system).
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command's closing parenthesis: utime and stime are
    // the 12th and 13th (14th and 15th of the line), in clock ticks.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

fn percentile(xs: &mut [f32], p: f64) -> f64 {
    xs.sort_by(|a, b| a.total_cmp(b));
    let i = ((xs.len() as f64 - 1.0) * p).round() as usize;
    xs[i.min(xs.len() - 1)] as f64
}

/// What one size measured.
struct Figures {
    watchers: usize,
    p50: f64,
    p99: f64,
    max: f64,
    answers_per_s: f64,
    rss_idle: f64,
    rss_peak: f64,
    /// CPU while writes arrived, in cores: the server, etcd, the watchers.
    cores: f64,
    etcd_cores: f64,
    client_cores: f64,
    complete: usize,
    errors: BTreeMap<String, u64>,
}

/// One watcher's deliveries: (revision, when its answer arrived).
type Seen = Arc<Mutex<Vec<(i64, Instant)>>>;

/// How one size is measured.
struct Setup<'a> {
    rate: u64,
    secs: u64,
    server_cpus: Option<&'a str>,
}

async fn measure(etcd: &EtcdServer, exe: &Path, watchers: usize, setup: &Setup<'_>) -> Figures {
    let (rate, secs) = (setup.rate, setup.secs);
    let server = start_server(etcd, exe, setup.server_cpus);
    let store = etcd.store("/ecs-css/v1/").await;
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while http
        .get(format!("{}/v1/ping", server.base))
        .send()
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "css-server never answered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rss_idle = rss_mb(server.child.id());
    let start = store.current_revision().await.expect("revision");
    let stop = Arc::new(AtomicBool::new(false));
    let answers = Arc::new(AtomicU64::new(0));
    // Failed polls by what failed (the first words of the error).
    let errors: Arc<Mutex<BTreeMap<String, u64>>> = Arc::default();
    let ready = Arc::new(AtomicU64::new(0));
    let mut seen: Vec<Seen> = Vec::new();
    let mut loops = Vec::new();
    for _ in 0..watchers {
        let s: Seen = Arc::default();
        seen.push(s.clone());
        let base = server.addr.clone();
        let (stop, answers, errors) = (stop.clone(), answers.clone(), errors.clone());
        let ready = ready.clone();
        loops.push(tokio::spawn(async move {
            let mut since = start;
            let mut conn: Option<Conn> = None;
            // The first poll answers at once: the watcher is connected.
            let mut wait = 0;
            while !stop.load(Ordering::Relaxed) {
                let path = format!("/v1/stream/tasks?cluster=watchers&since={since}&wait={wait}");
                let got = match conn.as_mut() {
                    Some(c) => c.get(&path).await,
                    None => match Conn::open(&base).await {
                        Ok(c) => {
                            conn = Some(c);
                            continue;
                        }
                        Err(e) => Err(e),
                    },
                };
                let v = match got {
                    Ok(v) => v,
                    Err(e) => {
                        conn = None;
                        let kind: String = e.to_string().chars().take(40).collect();
                        *errors
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .entry(kind)
                            .or_default() += 1;
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let now = Instant::now();
                if wait == 0 {
                    wait = 20;
                    ready.fetch_add(1, Ordering::Relaxed);
                }
                answers.fetch_add(1, Ordering::Relaxed);
                let mut s = s.lock().unwrap_or_else(|e| e.into_inner());
                s.extend(v.events.iter().map(|r| (*r, now)));
                since = v.revision;
            }
        }));
    }
    // Every watcher connected and waiting before the first write.
    let deadline = Instant::now() + Duration::from_secs(120);
    while ready.load(Ordering::Relaxed) < watchers as u64 {
        assert!(Instant::now() < deadline, "watchers never all connected");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let answers_before = answers.load(Ordering::Relaxed);

    // The writer: `rate` changes a second, acknowledged times by revision.
    let writes = (rate * secs) as usize;
    // Tasks of their own per measurement (the store outlives it).
    static MEASUREMENTS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let tag = MEASUREMENTS.fetch_add(1, Ordering::Relaxed);
    let mut acked: HashMap<i64, Instant> = HashMap::with_capacity(writes);
    let pid = server.child.id();
    let rss_peak = Arc::new(Mutex::new(rss_idle));
    let sampler = {
        let (stop, peak) = (stop.clone(), rss_peak.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let now = rss_mb(pid);
                {
                    let mut p = peak.lock().unwrap_or_else(|e| e.into_inner());
                    *p = p.max(now);
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    let began = Instant::now();
    let cpu_before = cpu_seconds(pid);
    let etcd_pid = etcd.pid().expect("etcd runs");
    let etcd_before = cpu_seconds(etcd_pid);
    let client_before = cpu_seconds(std::process::id());
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rate));
    for i in 0..writes {
        tick.tick().await;
        let e = entity(
            Kind::Task,
            &task_detail(
                "watchers",
                ACCOUNT,
                &format!("m{tag}t{:03}", i % 200),
                "RUNNING",
                1 + i as u64,
                true,
            ),
        );
        match store.upsert_if_newer(Upsert::event(&e)).await {
            Ok(UpsertOutcome::Inserted { revision } | UpsertOutcome::Updated { revision }) => {
                acked.insert(revision, Instant::now());
            }
            // The client sent the write again (its answer was late) and
            // found it applied: acknowledged now.
            Ok(UpsertOutcome::Unchanged { mod_revision }) => {
                acked.insert(mod_revision, Instant::now());
            }
            other => panic!("write: {other:?}"),
        }
    }
    // Time for the last answers.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let answered = answers.load(Ordering::Relaxed) - answers_before;
    let elapsed = began.elapsed();
    let cores = (cpu_seconds(pid) - cpu_before) / elapsed.as_secs_f64();
    let etcd_cores = (cpu_seconds(etcd_pid) - etcd_before) / elapsed.as_secs_f64();
    let client_cores = (cpu_seconds(std::process::id()) - client_before) / elapsed.as_secs_f64();
    // Late answers still count (a latency, not a loss): wait, up to 30 s,
    // for every watcher to have seen the last write.
    let last = acked.keys().max().copied().unwrap_or(0);
    let caught_up = |s: &Seen| {
        let s = s.lock().unwrap_or_else(|e| e.into_inner());
        s.last().is_some_and(|(r, _)| *r >= last)
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline && !seen.iter().all(caught_up) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::Relaxed);
    // Long polls end within their wait (the writes stopped).
    for l in loops {
        l.abort();
    }
    let _ = sampler.await;

    let mut lat: Vec<f32> = Vec::with_capacity(watchers * writes);
    let mut complete = 0;
    for s in &seen {
        let s = s.lock().unwrap_or_else(|e| e.into_inner());
        let mut mine = 0;
        for (rev, at) in s.iter() {
            if let Some(t) = acked.get(rev) {
                lat.push(at.saturating_duration_since(*t).as_secs_f32() * 1000.0);
                mine += 1;
            }
        }
        if mine == acked.len() {
            complete += 1;
        }
    }
    assert!(!lat.is_empty(), "no watcher saw any write");
    let rss_peak = *rss_peak.lock().unwrap_or_else(|e| e.into_inner());
    let failed = errors.lock().unwrap_or_else(|e| e.into_inner()).clone();
    Figures {
        watchers,
        p50: percentile(&mut lat, 0.5),
        p99: percentile(&mut lat, 0.99),
        max: percentile(&mut lat, 1.0),
        answers_per_s: answered as f64 / elapsed.as_secs_f64(),
        rss_idle,
        rss_peak,
        cores,
        etcd_cores,
        client_cores,
        complete,
        errors: failed,
    }
}

fn row(label: &str, f: &Figures) {
    println!(
        "| {} | {label} | {:.1} | {:.1} | {:.1} | {:.0} | {:.2} / {:.2} / {:.2} | {:.1} | {:.1} | {:.1} | {}/{} | {} |",
        f.watchers,
        f.p50,
        f.p99,
        f.max,
        f.answers_per_s,
        f.cores,
        f.etcd_cores,
        f.client_cores,
        f.rss_idle,
        f.rss_peak,
        (f.rss_peak - f.rss_idle).max(0.0) * 1024.0 / f.watchers as f64,
        f.complete,
        f.watchers,
        f.errors.values().sum::<u64>()
    );
    if !f.errors.is_empty() {
        println!("errors ({label}, {} watchers): {:?}", f.watchers, f.errors);
    }
}

/// `against`: another css-server binary (a baseline build), measured in
/// the same run right after this build, size by size.
pub async fn run(
    etcd: &EtcdServer,
    sizes: &[usize],
    rate: u64,
    secs: u64,
    against: Option<PathBuf>,
    server_cpus: Option<String>,
) {
    let setup = Setup {
        rate,
        secs,
        server_cpus: server_cpus.as_deref(),
    };
    println!("# Watchers: one server-mode process, N long-poll watchers, {rate} writes/s");
    println!();
    println!(
        "css-server (the build beside css-bench) on a local etcd; each watcher loops on one filtered stream\n\
         (cluster=watchers, wait=20) on an HTTP/1 connection of its own, from the same revision,\n\
         every watcher connected before the first write; writes go to etcd {rate}/s for {secs} s.\n\
         Latency: write acknowledged -> the answer carrying it received, every (watcher, write).\n\
         Server CPUs: {}.\n",
        server_cpus
            .as_deref()
            .unwrap_or("shared with etcd and the watchers")
    );
    println!("| watchers | server | p50 ms | p99 ms | max ms | answers/s | CPU cores: server / etcd / watchers | RSS idle MiB | RSS peak MiB | KiB per watcher | saw every write | errors |");
    println!("|---:|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|");
    let this = this_build();
    let mut ratios = Vec::new();
    for &n in sizes {
        let f = measure(etcd, &this, n, &setup).await;
        row("this build", &f);
        if let Some(base) = &against {
            let b = measure(etcd, base, n, &setup).await;
            row("baseline", &b);
            ratios.push((n, b.p50 / f.p50, b.p99 / f.p99));
        }
    }
    if !ratios.is_empty() {
        println!();
        println!("| watchers | baseline p50 / this p50 | baseline p99 / this p99 |");
        println!("|---:|---:|---:|");
        for (n, p50, p99) in ratios {
            println!("| {n} | {p50:.1}x | {p99:.1}x |");
        }
    }
}

#[cfg(test)]
mod tests {
    use css::api::render::watch_batch;
    use css::model::Kind;
    use css::store::embedded::EmbeddedStore;
    use css::store::{StateStore, Upsert};
    use css::watch::{Change, ChangeKind, PollOutput};
    use css_tests::fixtures::{entity, task_detail, ACCOUNT};

    use super::Answer;

    /// The watchers read answers by their framing: the server's own
    /// rendering, PUT and DELETE, with and without events.
    #[tokio::test]
    async fn a_watcher_reads_the_revisions_the_server_renders() {
        let store = EmbeddedStore::new("/ecs-css/v1/");
        let e = entity(
            Kind::Task,
            &task_detail("web", ACCOUNT, "t1", "RUNNING", 2, true),
        );
        store
            .upsert_if_newer(Upsert::event(&e))
            .await
            .expect("stored");
        let rec = store.get(&e.key, None).await.expect("read").expect("there");
        let change = |kind, revision| Change {
            kind,
            revision,
            record: rec.clone(),
        };
        for (changes, revision) in [
            (vec![], 41),
            (vec![change(ChangeKind::Put, 42)], 42),
            (
                vec![
                    change(ChangeKind::Delete, 43),
                    change(ChangeKind::Put, 44),
                    change(ChangeKind::Put, 44),
                ],
                45,
            ),
        ] {
            let want: Vec<i64> = changes.iter().map(|c| c.revision).collect();
            let out = PollOutput {
                since: 0,
                changes,
                revision,
                more: false,
            };
            let body = watch_batch(&out, "ab12").expect("rendered");
            let got = Answer::read(body.as_bytes()).expect("read");
            assert_eq!((got.events, got.revision), (want, revision), "{body}");
        }
        assert!(Answer::read(br#"{"items":[]}"#).is_err());
    }
}
