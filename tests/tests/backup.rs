//! Backups and README's restore procedure, end to end: a store filled
//! through the ingest path is backed up into moto's S3 (the real SDK,
//! multipart for a large snapshot), README's restore steps run as written
//! (aws CLI against moto, etcdctl snapshot restore, etcd started on the
//! restored data, the identity deleted), and server mode on the restored
//! etcd answers with the restored records, under a new identity: the old
//! store's cursor, page token and subscription (kept in moto's DynamoDB,
//! which outlives the store) get 410, and a relist equals the store.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use css::backup::Backups;
use css::ingest::apply_batch;
use css_tests::etcd::free_port;
use css_tests::fixtures::{messages, task_detail, task_event, ACCOUNT};
use css_tests::moto::{aws_cli, MotoServer};
use css_tests::openapi::OpenApi;
use css_tests::server::TestServer;
use css_tests::EtcdServer;
use reqwest::StatusCode;
use serde_json::Value;

const PREFIX: &str = "/ecs-css/v1/";
const TASKS: usize = 12_000;

/// Server mode on `endpoint` with its subscriptions in moto's DynamoDB.
async fn server(moto: &MotoServer, endpoint: &str) -> TestServer {
    use clap::Parser;
    let cfg = css_server::ServerConfig::try_parse_from([
        "css-server",
        "--bind",
        "127.0.0.1:0",
        "--etcd-endpoints",
        endpoint,
        "--etcd-timeout",
        "2s",
        "--cursor-table",
        "css-cursors",
    ])
    .expect("flags");
    let aws = css_server::AwsOverrides {
        sdk: Some(moto.sdk_config()),
        dynamodb: Some(aws_sdk_dynamodb::Client::new(&moto.sdk_config())),
        ..Default::default()
    };
    TestServer::start_with(cfg, aws).await
}

/// Every task as (ARN, entityVersion) in a list answer, all pages.
async fn listed(s: &TestServer) -> (Vec<(String, String)>, String, String) {
    let (mut out, mut token) = (Vec::new(), None::<String>);
    loop {
        let q = match &token {
            Some(t) => format!("/v1/tasks?limit=1000&nextToken={t}"),
            None => "/v1/tasks?limit=1000".to_string(),
        };
        let r = s.get(&q).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        for i in r.body["items"].as_array().into_iter().flatten() {
            let arn = i["entity"]["taskArn"].as_str().unwrap_or_default();
            let v = i["metadata"]["entityVersion"].as_str().unwrap_or_default();
            out.push((arn.to_string(), v.to_string()));
        }
        token = r.body["nextToken"].as_str().map(String::from);
        if token.is_none() {
            out.sort();
            let store = r.body["store"].as_str().unwrap_or_default().to_string();
            let rev = r.body["revision"].as_str().unwrap_or_default().to_string();
            return (out, store, rev);
        }
    }
}

struct Background(Vec<Child>);

impl Drop for Background {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_restored_by_readmes_steps_serves_its_records_under_a_new_identity() {
    let api = OpenApi::load();
    let moto = MotoServer::start();
    moto.aws(&["s3api", "create-bucket", "--bucket", "css-backups"]);
    let dynamodb = aws_sdk_dynamodb::Client::new(&moto.sdk_config());
    css_tests::moto::create_cursor_table(&dynamodb, "css-cursors").await;
    let etcd = EtcdServer::start();
    let store = etcd.store(PREFIX).await;
    // Tasks with container details: a snapshot of several MiB (multipart).
    for start in (0..TASKS).step_by(500) {
        let bodies: Vec<String> = (start..start + 500)
            .map(|i| {
                let status = if i % 3 == 0 { "STOPPED" } else { "RUNNING" };
                let d = task_detail(
                    &format!("c{}", i % 4),
                    ACCOUNT,
                    &format!("t{i:05}"),
                    status,
                    2,
                    true,
                );
                task_event(&d)
            })
            .collect();
        let out = apply_batch(store.as_ref(), &messages(&bodies)).await;
        assert!(out.failures.is_empty(), "{:?}", out.failures);
    }
    let before = server(&moto, &etcd.endpoint()).await;
    let (records, old_store, old_rev) = listed(&before).await;
    assert_eq!(records.len(), TASKS);
    let token = before.get("/v1/tasks?limit=10").await.body["nextToken"]
        .as_str()
        .expect("a next page")
        .to_string();
    let body = serde_json::json!({"resource": "tasks", "since": old_rev});
    let sub = before
        .request(reqwest::Method::POST, "/v1/subscriptions", Some(body))
        .await;
    assert_eq!(sub.status, StatusCode::CREATED, "{}", sub.body);
    let sub_id = sub.body["id"].as_str().expect("id").to_string();

    let backups = Backups {
        s3: aws_sdk_s3::Client::new(&moto.sdk_config()),
        bucket: "css-backups".into(),
        interval: Duration::from_secs(3600),
        // S3's smallest part: a snapshot of a few MiB goes in several.
        part_size: css::backup::MIN_PART,
    };
    let now = SystemTime::now();
    let taken = backups
        .run_if_due(store.as_ref(), now)
        .await
        .expect("backup");
    let record = taken.expect("due: none was ever taken");
    assert!(
        record.key.starts_with(&format!("etcd/{old_store}/")),
        "{}",
        record.key
    );
    assert!(
        record.bytes as usize > css::backup::MIN_PART,
        "{} bytes: one part only",
        record.bytes
    );
    // Recorded: not due again within the interval; due after it.
    assert!(backups
        .run_if_due(store.as_ref(), now + Duration::from_secs(60))
        .await
        .expect("check")
        .is_none());
    let age = css::backup::age(store.as_ref(), now + Duration::from_secs(90))
        .await
        .expect("age");
    assert_eq!(age, Some(Duration::from_secs(90)));

    // README's steps, as written, into a new data dir and ports.
    let dir = tempfile::tempdir().expect("temp dir");
    let (client, peer) = (free_port(), free_port());
    let env = [
        ("BUCKET", "css-backups".to_string()),
        ("KEY", record.key.clone()),
        (
            "DATA_DIR",
            dir.path().join("restored").display().to_string(),
        ),
        ("NAME", "restored".to_string()),
        ("PEER_URL", format!("http://127.0.0.1:{peer}")),
        ("CLIENT_URL", format!("http://127.0.0.1:{client}")),
        ("PREFIX", PREFIX.to_string()),
        (
            "PATH",
            format!(
                "{}:{}",
                aws_cli().parent().expect("venv bin").display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        ),
    ];
    let started = Instant::now();
    let mut background = Background(Vec::new());
    for line in css_tests::fixtures::readme_commands("<!-- restore-steps -->") {
        let sh = |l: &str| {
            let mut c = Command::new("sh");
            c.args(["-c", l])
                .current_dir(dir.path())
                .envs(env.clone())
                .envs(moto.cli_env());
            c
        };
        if let Some(bg) = line.strip_suffix('&') {
            let log = std::fs::File::create(dir.path().join("etcd.log")).expect("log");
            let child = sh(bg)
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("spawn");
            background.0.push(child);
            continue;
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let out = sh(&line).output().expect("run a step");
            if out.status.success() {
                break;
            }
            let err = String::from_utf8_lossy(&out.stderr).to_string();
            // "repeat until healthy"
            assert!(
                line.contains("endpoint health") && Instant::now() < deadline,
                "{line}: {err}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let restore_took = started.elapsed();

    let endpoint = format!("http://127.0.0.1:{client}");
    let after = server(&moto, &endpoint).await;
    let (restored, new_store, new_rev) = listed(&after).await;
    println!(
        "restored {} records ({} bytes of snapshot) in {:.1} s; old store {old_store} rev {old_rev}, new {new_store} rev {new_rev}",
        restored.len(),
        record.bytes,
        restore_took.as_secs_f64()
    );
    assert_eq!(
        restored, records,
        "the restored store answers the backed-up records"
    );
    assert_ne!(new_store, old_store, "a restored store has a new identity");
    // etcd 3.4 restores without a revision bump: the old cursor is a valid
    // revision here, and only the identity tells the stores apart.
    let old: i64 = old_rev.parse().expect("rev");
    let new: i64 = new_rev.parse().expect("rev");
    assert!(
        old <= new,
        "the old cursor is within the restored history ({old} <= {new})"
    );
    let stream = after
        .get(&format!(
            "/v1/stream/tasks?since={old_rev}&store={old_store}&wait=0"
        ))
        .await;
    assert_eq!(stream.status, StatusCode::GONE, "{}", stream.body);
    api.check("Expired", &stream.body);
    let page = after
        .get(&format!("/v1/tasks?limit=10&nextToken={token}"))
        .await;
    assert_eq!(page.status, StatusCode::GONE, "{}", page.body);
    // The subscription outlived the store (DynamoDB): its cursor counts in
    // the old one, so its events are 410 too, not a resume.
    let events = after
        .get(&format!("/v1/subscriptions/{sub_id}/events?wait=0"))
        .await;
    assert_eq!(events.status, StatusCode::GONE, "{}", events.body);
    api.check("Expired", &events.body);
    let ok = after
        .get(&format!(
            "/v1/stream/tasks?since={new_rev}&store={new_store}&wait=0"
        ))
        .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    let _: Value = ok.body;
}

/// Server mode with CSS_BACKUP_BUCKET backs its etcd up from its background
/// loop; status shows the last good backup, /metrics its age.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_mode_backs_its_store_up_and_says_so() {
    use clap::Parser;
    let moto = MotoServer::start();
    moto.aws(&["s3api", "create-bucket", "--bucket", "server-backups"]);
    let etcd = EtcdServer::start();
    let cfg = css_server::ServerConfig::try_parse_from([
        "css-server",
        "--bind",
        "127.0.0.1:0",
        "--etcd-endpoints",
        &etcd.endpoint(),
        "--backup-bucket",
        "server-backups",
        "--backup-interval",
        "1h",
    ])
    .expect("flags");
    let aws = css_server::AwsOverrides {
        sdk: Some(moto.sdk_config()),
        ..Default::default()
    };
    let s = TestServer::start_with(cfg, aws).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        let st = s.get("/v1/status").await;
        if st.body["lastBackup"].is_object() {
            break st.body;
        }
        assert!(Instant::now() < deadline, "no backup recorded: {}", st.body);
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    OpenApi::load().check("Status", &status);
    let key = status["lastBackup"]["key"].as_str().expect("key");
    let ping = s.get("/v1/ping").await;
    assert!(key.starts_with(&format!(
        "etcd/{}/",
        ping.body["store"].as_str().unwrap_or("?")
    )));
    let listed = moto.aws(&["s3api", "list-objects-v2", "--bucket", "server-backups"]);
    let keys: Vec<&str> = (listed["Contents"].as_array().into_iter().flatten())
        .filter_map(|o| o["Key"].as_str())
        .collect();
    assert_eq!(keys, [key]);
    let metrics = s
        .http
        .get(format!("{}/metrics", s.base))
        .send()
        .await
        .expect("metrics");
    let text = metrics.text().await.expect("text");
    assert!(text.contains("backup_age_seconds"), "{text}");
    assert!(text.contains("backup_bytes"), "{text}");
}
