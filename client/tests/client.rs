//! The client library and cssctl against server mode, on the embedded store
//! and on a real etcd.

use std::collections::{BTreeMap, HashSet};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use css::ingest::apply_batch;
use css_client::{Client, Filters, Signing, Task, WatchEvent};
use css_server::{AwsOverrides, Server, ServerConfig};
use css_tests::fixtures::*;
use css_tests::openapi::OpenApi;
use css_tests::server::TestServer;
use css_tests::EtcdServer;
use futures::TryStreamExt;
use tokio::io::AsyncBufReadExt;

fn task(cluster: &str, id: &str, status: &str, version: u64) -> String {
    task_event(&task_detail(cluster, ACCOUNT, id, status, version, true))
}

async fn write(s: &Server, bodies: &[String]) {
    let out = apply_batch(s.store().as_ref(), &messages(bodies)).await;
    assert!(out.failures.is_empty(), "{:?}", out.failures);
}

/// The store's tasks: ARN -> entityVersion, through a fresh client.
async fn store_state(base: &str) -> BTreeMap<String, String> {
    let c = Client::new(base, Signing::Never).await.unwrap();
    let (items, _) = c.list_all::<Task>(&Filters::default()).await.unwrap();
    items
        .into_iter()
        .map(|i| (i.entity.task_arn, i.metadata.entity_version))
        .collect()
}

/// cssctl against `base` with `args`; it must succeed; its stdout.
async fn cssctl_ok(base: &str, args: &[&str]) -> String {
    let mut full = vec!["--endpoint".to_string(), base.to_string()];
    full.extend(args.iter().map(|a| a.to_string()));
    let out = cssctl().args(&full).output().await.unwrap();
    assert!(
        out.status.success(),
        "{full:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn cssctl() -> tokio::process::Command {
    let mut c = tokio::process::Command::new(env!("CARGO_BIN_EXE_cssctl"));
    c.env_remove("CSS_ENDPOINT").kill_on_drop(true);
    c
}

async fn server_on(etcd: Option<&EtcdServer>, bind: &str) -> Server {
    let mut args = vec!["css-server".to_string(), "--bind".into(), bind.into()];
    if let Some(e) = etcd {
        args.extend(["--etcd-endpoints".into(), e.endpoint()]);
    }
    let cfg = ServerConfig::try_parse_from(args).unwrap();
    Server::start(cfg, AwsOverrides::default()).await.unwrap()
}

async fn listing_covers_every_page(s: &TestServer, _api: &OpenApi) {
    let bodies: Vec<String> = (0..230)
        .map(|i| task(&format!("pg{}", i % 3), &format!("t{i:03}"), "RUNNING", 1))
        .collect();
    write(&s.server, &bodies).await;
    let c = Client::new(&s.base, Signing::Auto).await.unwrap();
    assert!(!c.signs(), "server mode is not signed");
    let items: Vec<_> = c
        .list::<Task>(Filters::default(), Some(17))
        .try_collect()
        .await
        .unwrap();
    let arns: HashSet<String> = items.iter().map(|i| i.entity.task_arn.clone()).collect();
    assert_eq!(items.len(), 230, "no duplicates across pages");
    assert_eq!(arns.len(), 230);
    let want: HashSet<String> = store_state(&s.base).await.into_keys().collect();
    assert_eq!(arns, want);

    // A filtered list across pages: the filters go with every token.
    let pg1: Vec<_> = c
        .list::<Task>(
            Filters {
                cluster: Some("pg1".into()),
                status: Some("RUNNING".into()),
                ..Default::default()
            },
            Some(7),
        )
        .try_collect()
        .await
        .unwrap();
    let pg1: HashSet<String> = pg1.into_iter().map(|i| i.entity.task_arn).collect();
    let want_pg1: HashSet<String> = want
        .iter()
        .filter(|a| a.contains("/pg1/"))
        .cloned()
        .collect();
    assert_eq!(want_pg1.len(), 77);
    assert_eq!(pg1, want_pg1);

    // cssctl -o json: one JSON array with every task.
    let out = cssctl()
        .args([
            "--endpoint",
            &s.base,
            "tasks",
            "-o",
            "json",
            "--page-size",
            "17",
        ])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("-o json parses");
    let got: HashSet<String> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["entity"]["taskArn"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(got, want);

    // The table: a header, then one line per task, filters applied.
    let out = cssctl()
        .args([
            "--endpoint",
            &s.base,
            "tasks",
            "--cluster",
            "pg1",
            "--status",
            "running",
        ])
        .output()
        .await
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with("CLUSTER") && lines[0].contains("AGE"),
        "{text}"
    );
    assert_eq!(lines.len(), 1 + 77, "{text}");
    assert!(lines[1..]
        .iter()
        .all(|l| l.starts_with("pg1 ") && l.contains("RUNNING")));

    // describe, by cluster name and bare id.
    let out = cssctl()
        .args(["--endpoint", &s.base, "describe", "task", "pg0", "t000"])
        .output()
        .await
        .unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["entity"]["taskArn"]
        .as_str()
        .unwrap()
        .ends_with("/pg0/t000"));
}

/// The library's watch: list, changes, and a resync with the full state
/// when its revision was compacted away.
async fn watch_resyncs_after_compaction(s: &TestServer, _api: &OpenApi) {
    write(
        &s.server,
        &[task("w", "a", "RUNNING", 1), task("w", "b", "RUNNING", 1)],
    )
    .await;
    let c = Client::new(&s.base, Signing::Never).await.unwrap();
    let mut w = c.watch::<Task>(Filters {
        cluster: Some("w".into()),
        ..Default::default()
    });
    w.wait = Duration::from_secs(2);
    let WatchEvent::Listed { items, .. } = w.next().await.unwrap() else {
        panic!("a watch starts with the list")
    };
    assert_eq!(items.len(), 2);
    write(&s.server, &[task("w", "c", "RUNNING", 1)]).await;
    match w.next().await.unwrap() {
        WatchEvent::Added(i, _) => assert!(i.entity.task_arn.ends_with("/c")),
        other => panic!("wanted ADDED c, got {other:?}"),
    }
    write(&s.server, &[task("w", "a", "STOPPED", 2)]).await;
    match w.next().await.unwrap() {
        WatchEvent::Modified(i, _) => assert_eq!(i.entity.last_status.as_deref(), Some("STOPPED")),
        other => panic!("wanted MODIFIED a, got {other:?}"),
    }
    // Changes the watch has not fetched, then their history compacted.
    write(&s.server, &[task("w", "d", "RUNNING", 1)]).await;
    write(&s.server, &[task("w", "b", "STOPPED", 2)]).await;
    let store = s.server.store();
    store
        .compact(store.current_revision().await.unwrap())
        .await
        .unwrap();
    match w.next().await.unwrap() {
        WatchEvent::Resync {
            items,
            revision,
            cause,
        } => {
            assert_eq!(cause, css_client::ResyncCause::Expired);
            let got: BTreeMap<String, String> = items
                .into_iter()
                .map(|i| (i.entity.task_arn, i.metadata.entity_version))
                .collect();
            let want: BTreeMap<String, String> = store_state(&s.base)
                .await
                .into_iter()
                .filter(|(k, _)| k.contains("/w/"))
                .collect();
            assert_eq!(got, want);
            assert_eq!(got.len(), 4);
            assert_eq!(revision, store.current_revision().await.unwrap());
        }
        other => panic!("wanted a resync, got {other:?}"),
    }
}

css_tests::on_both_stores!(listing_covers_every_page, watch_resyncs_after_compaction);

/// Rebuilds state from `cssctl --watch -o json` lines, checking that every
/// line follows from the ones before it (no duplicates, no impossible moves).
fn replay(lines: &[String]) -> BTreeMap<String, String> {
    let mut state = BTreeMap::new();
    for l in lines {
        let v: serde_json::Value = serde_json::from_str(l).expect("each line is JSON");
        let arn = v["item"]["entity"]["taskArn"].as_str().unwrap().to_string();
        let ver = v["item"]["metadata"]["entityVersion"]
            .as_str()
            .unwrap()
            .to_string();
        match v["type"].as_str().unwrap() {
            "ADDED" => assert!(state.insert(arn, ver).is_none(), "ADDED twice: {l}"),
            "MODIFIED" => {
                let old = state.insert(arn, ver.clone());
                assert!(old.is_some(), "MODIFIED before ADDED: {l}");
                assert_ne!(old, Some(ver), "MODIFIED without a change: {l}");
            }
            "DELETED" => assert!(state.remove(&arn).is_some(), "DELETED unknown: {l}"),
            t => panic!("unknown type {t}"),
        }
    }
    state
}

/// `cssctl tasks --watch` across a compaction it could not follow and a
/// server restart ends with exactly the store's state, and never repeats a line.
async fn cli_watch_survives_compaction_and_restart(etcd: Option<EtcdServer>) {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let bind = probe.local_addr().unwrap().to_string();
    drop(probe);
    let base = format!("http://{bind}");
    let server = server_on(etcd.as_ref(), &bind).await;
    write(
        &server,
        &(0..5)
            .map(|i| task("cw", &format!("t{i}"), "RUNNING", 1))
            .collect::<Vec<_>>(),
    )
    .await;

    let mut child = cssctl()
        .args(["--endpoint", &base, "tasks", "--watch", "-o", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines: Arc<Mutex<Vec<String>>> = Arc::default();
    let stdout = child.stdout.take().unwrap();
    let sink = lines.clone();
    tokio::spawn(async move {
        let mut r = tokio::io::BufReader::new(stdout).lines();
        while let Ok(Some(l)) = r.next_line().await {
            sink.lock().unwrap().push(l);
        }
    });
    // What the watch tells a person on stderr.
    let notices: Arc<Mutex<Vec<String>>> = Arc::default();
    let stderr = child.stderr.take().unwrap();
    let sink = notices.clone();
    tokio::spawn(async move {
        let mut r = tokio::io::BufReader::new(stderr).lines();
        while let Ok(Some(l)) = r.next_line().await {
            sink.lock().unwrap().push(l);
        }
    });
    let noticed = |what: &'static str| {
        let notices = notices.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(30);
            while !notices.lock().unwrap().iter().any(|l| l.contains(what)) {
                assert!(
                    Instant::now() < deadline,
                    "no stderr line with {what:?}: {:?}",
                    notices.lock().unwrap()
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    let converged = |want: BTreeMap<String, String>| {
        let lines = lines.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let got = replay(&lines.lock().unwrap());
                if got == want {
                    return;
                }
                assert!(
                    Instant::now() < deadline,
                    "watch state {got:?}\nstore {want:?}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    converged(store_state(&base).await).await;

    // Freeze the watcher, change things and compact that history away.
    // Signals sent directly (a minimal Debian has no `kill` command).
    let pid = rustix::process::Pid::from_raw(child.id().unwrap() as i32).unwrap();
    let signal = |sig: rustix::process::Signal| rustix::process::kill_process(pid, sig).is_ok();
    assert!(signal(rustix::process::Signal::STOP));
    write(&server, &[task("cw", "t0", "STOPPED", 2)]).await;
    // A long poll in flight when the watcher froze answers with t0 alone
    // (at once); what follows is compacted before the watcher can see it,
    // so it has to list again.
    tokio::time::sleep(Duration::from_millis(500)).await;
    write(&server, &[task("cw", "t9", "RUNNING", 1)]).await;
    let store = server.store();
    let key = css_tests::fixtures::entity(
        css::model::Kind::Task,
        &task_detail("cw", ACCOUNT, "t1", "RUNNING", 1, true),
    )
    .key;
    let rec = store.get(&key, None).await.unwrap().unwrap();
    assert!(store
        .delete_if_unchanged(&key, rec.mod_revision)
        .await
        .unwrap());
    store
        .compact(store.current_revision().await.unwrap())
        .await
        .unwrap();
    assert!(signal(rustix::process::Signal::CONT));
    converged(store_state(&base).await).await;
    noticed("410 Expired").await;
    noticed("listed again at revision").await;

    // A restart: the watcher retries until the server is back, then
    // continues (etcd) or resyncs to the new store (embedded).
    server.shutdown().await.unwrap();
    // The watch says that it retries, and why.
    noticed("retrying in").await;
    noticed("cannot reach").await;
    let server = server_on(etcd.as_ref(), &bind).await;
    write(
        &server,
        &[
            task("cw", "t2", "STOPPED", 3),
            task("cw", "n1", "PENDING", 1),
        ],
    )
    .await;
    converged(store_state(&base).await).await;
    assert!(
        child.try_wait().unwrap().is_none(),
        "the watch keeps running"
    );
    child.kill().await.unwrap();
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_watch_survives_compaction_and_restart_embedded() {
    cli_watch_survives_compaction_and_restart(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_watch_survives_compaction_and_restart_etcd() {
    cli_watch_survives_compaction_and_restart(Some(EtcdServer::start())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_errors_say_what_happened_with_distinct_exit_codes() {
    let s = TestServer::start(None, &[]).await;
    let run = |args: Vec<String>| async move {
        let out = cssctl().args(&args).output().await.unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}", free.local_addr().unwrap());
    drop(free);
    let (code, err) = run(vec!["--endpoint".into(), dead.clone(), "tasks".into()]).await;
    assert_eq!(code, Some(3), "{err}");
    assert!(err.contains("cannot reach") && err.contains(&dead), "{err}");

    let (code, err) = run(vec![
        "--endpoint".into(),
        s.base.clone(),
        "tasks".into(),
        "--status".into(),
        "sleeping".into(),
    ])
    .await;
    assert_eq!(code, Some(5), "{err}");
    assert!(err.contains("'status'"), "{err}");

    let (code, err) = run(vec![
        "--endpoint".into(),
        s.base.clone(),
        "describe".into(),
        "task".into(),
        "nope".into(),
        "t1".into(),
    ])
    .await;
    assert_eq!(code, Some(6), "{err}");

    let (code, _) = run(vec!["tasks".into(), "--output".into(), "xml".into()]).await;
    assert_eq!(code, Some(2), "usage errors are clap's 2");

    // Filters of another kind: refused here, naming the flag.
    let instances = [
        vec!["instances"],
        vec!["subscriptions", "create", "--resource", "instances"],
    ];
    let services = [
        vec!["services"],
        vec!["subscriptions", "create", "--resource", "services"],
    ];
    let tasks = [
        vec!["tasks"],
        vec!["subscriptions", "create", "--resource", "tasks"],
    ];
    let refused: Vec<(&str, &str, &[Vec<&str>])> = vec![
        ("--launch-type", "EC2", &instances),
        ("--desired-status", "RUNNING", &instances),
        ("--started-by", "me", &instances),
        ("--group", "service:web", &instances),
        ("--container-instance", "abc", &instances),
        ("--service", "web", &instances),
        ("--desired-status", "RUNNING", &services),
        ("--started-by", "me", &services),
        ("--group", "service:web", &services),
        ("--container-instance", "abc", &services),
        ("--service", "web", &services),
        ("--scheduling-strategy", "REPLICA", &tasks),
        ("--rollout-state", "FAILED", &tasks),
        ("--scheduling-strategy", "DAEMON", &instances),
        ("--rollout-state", "IN_PROGRESS", &instances),
    ];
    for (flag, value, cmds) in refused {
        for cmd in cmds {
            let mut args: Vec<String> = vec!["--endpoint".into(), dead.clone()];
            args.extend(cmd.iter().map(|s| s.to_string()));
            args.extend([flag.to_string(), value.to_string()]);
            let (code, err) = run(args).await;
            assert_eq!(code, Some(2), "{cmd:?} {flag}: {err}");
            assert!(err.contains(flag), "{err}");
        }
    }
    s.server.shutdown().await.unwrap();
}

/// SigV4 as AWS publishes it: the `get-vanilla` case of the SigV4 test suite.
#[test]
fn sigv4_matches_the_published_test_vector() {
    use aws_credential_types::Credentials;
    let creds = Credentials::new(
        "AKIDEXAMPLE",
        "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        None,
        None,
        "test",
    );
    // 2015-08-30T12:36:00Z
    let time = std::time::UNIX_EPOCH + Duration::from_secs(1_440_938_160);
    let headers = css_client::sign::sign_headers(
        "GET",
        "https://example.amazonaws.com/",
        &[("host", "example.amazonaws.com")],
        b"",
        &creds,
        "us-east-1",
        "service",
        time,
    )
    .unwrap();
    let get = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    assert_eq!(get("x-amz-date").as_deref(), Some("20150830T123600Z"));
    assert_eq!(
        get("authorization").as_deref(),
        Some(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
             SignedHeaders=host;x-amz-date, \
             Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
        )
    );

    // For API Gateway: the execute-api scope and a session token when present.
    let temp = Credentials::new("AKID", "secret", Some("token".into()), None, "test");
    let h = css_client::sign::sign_headers(
        "GET",
        "https://abc.execute-api.eu-west-1.amazonaws.com/prod/v1/tasks?cluster=web",
        &[],
        b"",
        &temp,
        "eu-west-1",
        css_client::sign::SERVICE,
        time,
    )
    .unwrap();
    let auth = h
        .iter()
        .find(|(k, _)| k == "authorization")
        .map(|(_, v)| v.as_str())
        .unwrap_or_default();
    assert!(
        auth.starts_with(
            "AWS4-HMAC-SHA256 Credential=AKID/20150830/eu-west-1/execute-api/aws4_request"
        ),
        "{auth}"
    );
    assert!(h
        .iter()
        .any(|(k, v)| k == "x-amz-security-token" && v == "token"));
}

/// `-o yaml` is the same data as `-o json`, for lists and watches;
/// `--no-headers` drops the table's header line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_yaml_and_no_headers() {
    let s = TestServer::start(None, &[]).await;
    write(
        &s.server,
        &(0..3)
            .map(|i| task("y", &format!("t{i}"), "RUNNING", 1))
            .collect::<Vec<_>>(),
    )
    .await;
    let run = |args: &'static [&'static str]| cssctl_ok(&s.base, args);
    let json: serde_json::Value =
        serde_json::from_str(&run(&["tasks", "-o", "json"]).await).unwrap();
    let yaml: serde_json::Value =
        serde_yaml_ng::from_str(&run(&["tasks", "-o", "yaml", "--page-size", "2"]).await).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 3);
    assert_eq!(
        yaml, json,
        "YAML across pages is one sequence of the same items"
    );
    // A YAML 1.1 reader (PyYAML, as most ops scripts) reads the same data:
    // timestamps and words like `on` stay strings.
    let text = run(&["tasks", "-o", "yaml"]).await;
    assert!(
        text.contains("createdAt: \"20"),
        "timestamps are quoted:\n{text}"
    );
    let py = std::process::Command::new(css_tests::moto::python())
        .args([
            "-c",
            "import sys, json, yaml; print(json.dumps(yaml.safe_load(sys.stdin.read())))",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python with PyYAML (scripts/prereqs.sh test)");
    {
        use std::io::Write;
        py.stdin
            .as_ref()
            .expect("stdin")
            .write_all(text.as_bytes())
            .unwrap();
    }
    let out = py.wait_with_output().expect("PyYAML");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let by_pyyaml: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(by_pyyaml, json, "PyYAML reads -o yaml as -o json");
    let empty: serde_json::Value =
        serde_yaml_ng::from_str(&run(&["tasks", "--cluster", "none", "-o", "yaml"]).await).unwrap();
    assert_eq!(empty, serde_json::json!([]));

    let table = run(&["tasks"]).await;
    assert!(table.starts_with("CLUSTER"), "{table}");
    assert_eq!(table.lines().count(), 4);
    let bare = run(&["tasks", "--no-headers"]).await;
    assert_eq!(bare.lines().count(), 3, "{bare}");
    assert!(bare.lines().all(|l| l.starts_with('y')), "{bare}");

    // A watch in YAML: one document per change.
    let mut child = cssctl()
        .args(["--endpoint", &s.base, "tasks", "--watch", "-o", "yaml"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let text: Arc<Mutex<String>> = Arc::default();
    let sink = text.clone();
    tokio::spawn(async move {
        let mut r = tokio::io::BufReader::new(stdout).lines();
        while let Ok(Some(l)) = r.next_line().await {
            let mut t = sink.lock().unwrap();
            t.push_str(&l);
            t.push('\n');
        }
    });
    let docs_seen = |n: usize| {
        let text = text.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let t = text.lock().unwrap().clone();
                let docs: Vec<serde_json::Value> = serde_yaml_ng::Deserializer::from_str(&t)
                    .filter_map(|d| serde::Deserialize::deserialize(d).ok())
                    .collect();
                if docs.len() >= n {
                    return docs;
                }
                assert!(Instant::now() < deadline, "watch YAML so far: {t}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    docs_seen(3).await;
    write(&s.server, &[task("y", "t0", "STOPPED", 2)]).await;
    let docs = docs_seen(4).await;
    assert_eq!(docs[..3].iter().filter(|d| d["type"] == "ADDED").count(), 3);
    assert_eq!(docs[3]["type"], "MODIFIED");
    assert_eq!(docs[3]["item"]["entity"]["lastStatus"], "STOPPED");
    child.kill().await.unwrap();
    s.server.shutdown().await.unwrap();
}

/// `cssctl services` in every output, `describe service`, and a watch that
/// sees a rollout complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_services() {
    let s = TestServer::start(None, &[]).await;
    let store = s.server.store();
    let put = |detail: serde_json::Value| {
        let store = store.clone();
        async move {
            let e = service_entity(&detail, chrono::Utc::now());
            store
                .upsert_if_newer(css::store::Upsert::event(&e))
                .await
                .unwrap();
        }
    };
    let t9 = "2026-11-20T09:00:00.000Z";
    put(service_detail(
        "shop",
        ACCOUNT,
        "web",
        "ACTIVE",
        "EC2",
        "REPLICA",
        &["IN_PROGRESS", "COMPLETED"],
        t9,
    ))
    .await;
    put(service_detail(
        "shop",
        ACCOUNT,
        "agent",
        "ACTIVE",
        "EC2",
        "DAEMON",
        &["COMPLETED"],
        t9,
    ))
    .await;
    put(service_detail(
        "shop",
        ACCOUNT,
        "old",
        "DRAINING",
        "FARGATE",
        "REPLICA",
        &["FAILED"],
        t9,
    ))
    .await;
    let run = |args: &'static [&'static str]| cssctl_ok(&s.base, args);
    let table = run(&["services"]).await;
    let lines: Vec<Vec<&str>> = table
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        lines[0],
        ["CLUSTER", "SERVICE", "STATUS", "DESIRED", "RUNNING", "PENDING", "ROLLOUT", "AGE"]
    );
    assert_eq!(lines.len(), 4, "{table}");
    let web = lines.iter().find(|l| l[1] == "web").expect("web listed");
    assert_eq!(
        &web[..7],
        ["shop", "web", "ACTIVE", "2", "2", "0", "IN_PROGRESS"]
    );
    assert!(web[7].ends_with('d'), "created days ago: {table}");

    let wide = run(&["services", "--rollout-state", "failed", "-o", "wide"]).await;
    let lines: Vec<Vec<&str>> = wide
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(lines.len(), 2, "{wide}");
    assert_eq!(&lines[1][..2], ["shop", "old"]);
    assert_eq!(&lines[0][8..10], ["ACCOUNT", "REGION"], "{wide}");
    assert_eq!(
        &lines[1][8..14],
        [ACCOUNT, "eu-west-1", "1", "REPLICA", "FARGATE", "old:10"],
        "{wide}"
    );
    // --account and --region: every service is this account's, in eu-west-1.
    let all = run(&["services", "--no-headers"]).await;
    assert!(all.lines().count() >= 3, "{all}");
    let mine = run(&[
        "services",
        "--no-headers",
        "--account",
        ACCOUNT,
        "--region",
        "eu-west-1",
    ])
    .await;
    assert_eq!(mine, all);
    let none = run(&["services", "--no-headers", "--account", "999999999999"]).await;
    assert_eq!(none.trim(), "");
    let none = run(&["services", "--no-headers", "--region", "ap-south-1"]).await;
    assert_eq!(none.trim(), "");
    let daemons = run(&[
        "services",
        "--scheduling-strategy",
        "DAEMON",
        "--no-headers",
    ])
    .await;
    assert_eq!(daemons.lines().count(), 1);
    assert!(daemons.contains("agent"), "{daemons}");

    let json: serde_json::Value =
        serde_json::from_str(&run(&["services", "-o", "json"]).await).unwrap();
    let yaml: serde_json::Value =
        serde_yaml_ng::from_str(&run(&["services", "-o", "yaml", "--page-size", "2"]).await)
            .unwrap();
    assert_eq!(json.as_array().map(Vec::len), Some(3));
    assert_eq!(yaml, json);
    let one: serde_json::Value =
        serde_json::from_str(&run(&["describe", "service", "shop", "web"]).await).unwrap();
    assert_eq!(
        one["entity"]["deployments"][0]["rolloutState"],
        "IN_PROGRESS"
    );
    assert_eq!(one["entity"]["events"][0]["id"], "e1", "every field kept");

    // Watching rollouts: the list, then the rollout that completes.
    let mut child = cssctl()
        .args([
            "--endpoint",
            &s.base,
            "services",
            "--watch",
            "--rollout-state",
            "IN_PROGRESS",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    assert!(next_line(&mut out).await.starts_with("EVENT"));
    let added = next_line(&mut out).await;
    assert!(
        added.starts_with("ADDED") && added.contains("web"),
        "{added}"
    );
    put(service_detail(
        "shop",
        ACCOUNT,
        "web",
        "ACTIVE",
        "EC2",
        "REPLICA",
        &["COMPLETED"],
        "2026-11-20T10:00:00.000Z",
    ))
    .await;
    let done = next_line(&mut out).await;
    assert!(
        done.starts_with("DELETED") && done.contains("COMPLETED"),
        "{done}"
    );
    child.kill().await.unwrap();
    s.server.shutdown().await.unwrap();
}

async fn next_line(
    out: &mut tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
) -> String {
    let line = tokio::time::timeout(Duration::from_secs(20), out.next_line()).await;
    line.expect("a line within 20 s")
        .expect("stdout")
        .expect("not closed")
}

/// `--account` and `--region` on tasks and instances, and the ACCOUNT and
/// REGION columns of `-o wide`, over two accounts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_account_and_region() {
    let s = TestServer::start(None, &[]).await;
    let other = "999988887777";
    write(
        &s.server,
        &[
            task("shop", "a1", "RUNNING", 1),
            task_event(&task_detail("shop", other, "b1", "RUNNING", 1, true)),
            task_event(&task_detail("shop", other, "b2", "RUNNING", 1, true)),
            instance_event(&instance_detail("shop", ACCOUNT, "i-a", "ACTIVE", 1)),
            instance_event(&instance_detail("shop", other, "i-b", "ACTIVE", 1)),
        ],
    )
    .await;
    let run = |args: &'static [&'static str]| cssctl_ok(&s.base, args);
    let ids = |out: String| -> Vec<String> {
        let mut v: Vec<String> = out
            .lines()
            .filter_map(|l| l.split_whitespace().nth(1).map(String::from))
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        ids(run(&["tasks", "--no-headers"]).await),
        ["a1", "b1", "b2"]
    );
    assert_eq!(
        ids(run(&["tasks", "--no-headers", "--account", ACCOUNT]).await),
        ["a1"]
    );
    assert_eq!(
        ids(run(&["tasks", "--no-headers", "--account", "999988887777"]).await),
        ["b1", "b2"]
    );
    assert_eq!(
        ids(run(&["tasks", "--no-headers", "--region", REGION]).await),
        ["a1", "b1", "b2"]
    );
    assert!(ids(run(&["tasks", "--no-headers", "--region", "ap-south-1"]).await).is_empty());
    assert_eq!(
        ids(run(&[
            "instances",
            "--no-headers",
            "--account",
            "999988887777",
            "--region",
            REGION
        ])
        .await),
        ["i-b"]
    );
    // -o wide: the ARN's account and Region.
    let wide = run(&["tasks", "-o", "wide", "--account", "999988887777"]).await;
    let lines: Vec<Vec<&str>> = wide
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(&lines[0][7..9], ["ACCOUNT", "REGION"], "{wide}");
    assert!(
        lines[1..].iter().all(|l| l[7] == other && l[8] == REGION),
        "{wide}"
    );
    let wide = run(&["instances", "-o", "wide", "--account", ACCOUNT]).await;
    let lines: Vec<Vec<&str>> = wide
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(&lines[0][7..9], ["ACCOUNT", "REGION"], "{wide}");
    assert_eq!(&lines[1][7..9], [ACCOUNT, REGION], "{wide}");
    // A bad value is the service's 400, naming the parameter (exit code 5).
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_cssctl"))
        .args(["--endpoint", &s.base, "tasks", "--account", "12"])
        .output()
        .await
        .expect("cssctl");
    assert_eq!(out.status.code(), Some(5));
    assert!(String::from_utf8_lossy(&out.stderr).contains("'account'"));
}
