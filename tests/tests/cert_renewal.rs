//! Certificates that renew, on the stack's etcd as boot.sh installs it:
//! three members booted with certificates living a minute (the custom resource's
//! issue, Secrets Manager in moto), the certificate function's renewal run
//! every 4 s (the stack runs it twice a day for year-long leaves), each
//! member's css-etcd-certs every 2 s (its systemd timer), and server mode
//! holding the client certificate of CSS_ETCD_TLS_SECRET. Members restart
//! in turn and fresh processes connect ("cold starts"), so new handshakes
//! happen with whatever is current: after the first minute every certificate
//! read at the start has expired. Throughout, the service ingests and
//! answers: no record and no request may fail.
//! Run with --nocapture for the figures.

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use clap::Parser;
use css::store::StateStore;
use css_server::{AwsOverrides, ServerConfig};
use css_tests::boot::{Boot, Member};
use css_tests::cfn::Cfn;
use css_tests::fixtures::{sqs_event, task_detail, task_event, ACCOUNT};
use css_tests::server::TestServer;
use serde_json::{json, Value};

const IPS: [&str; 3] = ["127.0.0.12", "127.0.0.13", "127.0.0.14"];
const LIFETIME: Duration = Duration::from_secs(60);
const LEAD: Duration = Duration::from_secs(25);
const RUN: Duration = Duration::from_secs(150);

#[derive(Default)]
struct Load {
    stop: AtomicBool,
    records: AtomicU64,
    failed_records: AtomicU64,
    requests: AtomicU64,
    failed_requests: AtomicU64,
}

/// Ingests 20 tasks' next versions, batch after batch.
async fn writer(store: Arc<dyn StateStore>, load: Arc<Load>) {
    let mut version = 1;
    while !load.stop.load(Ordering::SeqCst) {
        version += 1;
        let bodies: Vec<String> = (0..20)
            .map(|t| {
                task_event(&task_detail(
                    "renewal",
                    ACCOUNT,
                    &format!("t{t:02}"),
                    "RUNNING",
                    version,
                    true,
                ))
            })
            .collect();
        let res = css::lambda::handle_sqs(store.as_ref(), sqs_event(&bodies)).await;
        let failed = res
            .map(|r| r.batch_item_failures.len())
            .unwrap_or(bodies.len());
        load.records
            .fetch_add(bodies.len() as u64, Ordering::SeqCst);
        if failed > 0 {
            eprintln!("  {failed} records failed");
        }
        load.failed_records
            .fetch_add(failed as u64, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Lists through the HTTP API, every 25 ms.
async fn reader(srv: Arc<TestServer>, load: Arc<Load>) {
    while !load.stop.load(Ordering::SeqCst) {
        let r = srv.get("/v1/tasks?cluster=renewal&limit=5").await;
        load.requests.fetch_add(1, Ordering::SeqCst);
        if r.status != 200 {
            load.failed_requests.fetch_add(1, Ordering::SeqCst);
            eprintln!("  request failed: {} {}", r.status, r.body);
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The end of the member certificate on `m`'s disk.
fn member_cert_end(m: &Member) -> Option<SystemTime> {
    let pem = std::fs::read(m.root.join("etc/etcd/pki/member.pem")).ok()?;
    css::store::etcd::tls::not_after(&pem)
}

/// A counter's value in Prometheus text (0 when absent).
fn counter(metrics: &str, name: &str) -> f64 {
    (metrics.lines())
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn certificates_renew_across_periods_with_no_failed_request() {
    css::config::init_logging(false, Some("warn"));
    let mut cfn = Cfn::new().await;
    let policy = css_certs::Policy::new(LIFETIME, LEAD).expect("policy");
    cfn.clients.policy = policy;
    let dir = tempfile::tempdir().expect("temp dir");

    let props = cfn.certificate_properties(&IPS).await;
    let (ok, answer) = cfn.send("Create", &props).await;
    assert!(ok && answer["Status"] == "SUCCESS", "{answer}");
    let issued_at = SystemTime::now();
    let arn = |v: &Value| v.as_str().expect("ARN").to_string();
    let members_secrets: Vec<String> = (0..3).map(|i| arn(&props["MemberSecretArns"][i])).collect();
    let client_secret = arn(&props["ClientSecretArn"]);
    let renew_event = json!({"Renew": {
        "ClusterName": props["ClusterName"],
        "CaSecretArn": props["CaSecretArn"],
        "MemberSecretArns": props["MemberSecretArns"],
        "ClientSecretArn": props["ClientSecretArn"],
    }});

    let cluster = Boot::cluster(&cfn.moto, dir.path(), &IPS, &[], &members_secrets);
    let client_port = cluster.client_port;
    let boot = cluster.boot.set("GATE_TIMEOUT", "60");
    let boot_member = |m: &Member| {
        let out = boot.member(m);
        assert!(
            out.status.success(),
            "m{} did not boot:\n{}",
            m.index,
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let members: Vec<Member> = (IPS.iter().enumerate())
        .map(|(i, ip)| Member {
            index: i,
            ip: ip.to_string(),
            root: dir.path().join(format!("m{i}")),
            data: dir.path().join(format!("m{i}-volume")),
        })
        .collect();
    for m in &members {
        boot_member(m);
    }
    let first_ends: Vec<Option<SystemTime>> = members.iter().map(member_cert_end).collect();
    assert!(first_ends
        .iter()
        .all(|e| e.is_some_and(|e| e <= issued_at + LIFETIME + Duration::from_secs(5))));

    // Server mode as a container would run it: the client certificate from
    // CSS_ETCD_TLS_SECRET, read at start-up.
    let endpoints: Vec<String> = (IPS.iter())
        .map(|ip| format!("https://{ip}:{client_port}"))
        .collect();
    let cfg = ServerConfig::try_parse_from([
        "css-server",
        "--bind",
        "127.0.0.1:0",
        "--etcd-endpoints",
        &endpoints.join(","),
        "--etcd-tls-secret",
        &client_secret,
        "--etcd-timeout",
        "2s",
    ])
    .expect("server flags");
    let aws = AwsOverrides {
        sdk: Some(cfn.moto.sdk_config()),
        ..Default::default()
    };
    let srv = Arc::new(TestServer::start_with(cfg, aws).await);
    let started = Instant::now();
    let load = Arc::new(Load::default());
    let writing = tokio::spawn(writer(srv.server.store(), load.clone()));
    let reading = tokio::spawn(reader(srv.clone(), load.clone()));

    let mut renewed: BTreeMap<String, usize> = BTreeMap::new();
    let mut min_days_left = f64::MAX;
    let mut replaced = [0usize; 3];
    let (mut restarts, mut cold_starts, mut cold_failures) = (0, 0, 0);
    let mut tick = 0u64;
    while started.elapsed() < RUN {
        tokio::time::sleep(Duration::from_secs(1)).await;
        tick += 1;
        // The renewal schedule.
        if tick % 4 == 0 {
            let out = css_certs::invoke(&cfn.clients, renew_event.clone())
                .await
                .expect("renewal run");
            for s in out["renewed"].as_array().expect("renewed") {
                *renewed.entry(arn(s)).or_default() += 1;
            }
            let days = out["daysLeft"].as_f64().expect("days left");
            min_days_left = min_days_left.min(days);
        }
        // Each member's timer.
        if tick % 2 == 0 {
            for m in &members {
                let out = Command::new(m.root.join("usr/local/bin/css-etcd-certs"))
                    .envs(boot.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                    .output()
                    .expect("css-etcd-certs");
                let err = String::from_utf8_lossy(&out.stderr);
                assert!(
                    out.status.success(),
                    "css-etcd-certs on m{}: {err}",
                    m.index
                );
                if err.contains("replaced") {
                    replaced[m.index] += 1;
                }
            }
        }
        // A member restarts (an instance replaced, a crash): its peers and
        // clients connect to it again.
        if tick % 15 == 0 {
            let m = &members[restarts % 3];
            m.stop();
            boot_member(m);
            restarts += 1;
        }
        // A cold start: a new process reads the secret and connects.
        if tick % 10 == 5 {
            let mut args = css_tests::fixtures::store_args(endpoints.clone());
            args.etcd_tls_secret = Some(client_secret.clone());
            let overrides = css::setup::Overrides {
                sdk: Some(cfn.moto.sdk_config()),
                ..Default::default()
            };
            let built = css::setup::build(&args, css::setup::Wants::default(), overrides).await;
            let ok = match built {
                Ok(parts) => parts.store.current_revision().await.is_ok(),
                Err(e) => {
                    eprintln!("  cold start failed: {e}");
                    false
                }
            };
            cold_starts += 1;
            if !ok {
                cold_failures += 1;
            }
        }
    }
    load.stop.store(true, Ordering::SeqCst);
    writing.await.expect("writer");
    reading.await.expect("reader");

    let metrics = srv
        .http
        .get(format!("{}/metrics", srv.base))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    let reloads = counter(&metrics, css::metrics::ETCD_TLS_RELOADS);
    let (records, failed_records) = (
        load.records.load(Ordering::SeqCst),
        load.failed_records.load(Ordering::SeqCst),
    );
    let (requests, failed_requests) = (
        load.requests.load(Ordering::SeqCst),
        load.failed_requests.load(Ordering::SeqCst),
    );
    eprintln!(
        "== {} s with {} s certificates renewed {} s before their end: {records} records ({failed_records} failed), \
         {requests} requests ({failed_requests} failed), {cold_starts} cold starts ({cold_failures} failed), {restarts} member restarts",
        RUN.as_secs(),
        LIFETIME.as_secs(),
        LEAD.as_secs()
    );
    eprintln!("   renewals per secret: {renewed:?}");
    eprintln!("   member files replaced (m0, m1, m2): {replaced:?}; server re-read its secret {reloads} times; least days left seen {min_days_left:.6} ({:.1} s)", min_days_left * 86_400.0);

    assert_eq!(failed_records, 0, "records failed");
    assert_eq!(failed_requests, 0, "requests failed");
    assert_eq!(cold_failures, 0, "cold starts failed");
    assert!(records > 1000 && requests > 1000, "{records} {requests}");
    // Several periods: every leaf renewed at least three times, every
    // member's files replaced as often, none expired on any disk.
    for s in members_secrets.iter().chain([&client_secret]) {
        assert!(renewed.get(s).is_some_and(|n| *n >= 3), "{s}: {renewed:?}");
    }
    assert!(replaced.iter().all(|n| *n >= 3), "{replaced:?}");
    for m in &members {
        let end = member_cert_end(m).expect("certificate on disk");
        assert!(
            end > SystemTime::now(),
            "m{}'s certificate has expired",
            m.index
        );
        assert!(first_ends[m.index].is_some_and(|f| end > f));
    }
    // The days-left figure never reached the end: renewal kept ahead.
    assert!(min_days_left > 0.0, "{min_days_left}");
    // The server outlived the client certificate it started with, and read
    // its secret again when etcd refused it.
    assert!(
        reloads >= 1.0,
        "the server never re-read its secret:\n{metrics}"
    );
    let status = srv.get("/v1/status").await;
    assert_eq!(status.status, 200, "{}", status.body);
    assert_eq!(status.body["members"]["membersUp"], 3, "{}", status.body);
    for m in &members {
        m.stop();
    }
}
