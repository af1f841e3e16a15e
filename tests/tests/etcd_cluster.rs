//! The service on a real 3-member etcd cluster with mutual TLS (client and
//! peer certificates from the same code as the stack's certificate custom
//! resource, client certificates required): the settings path, failover
//! when the leader dies mid-ingest or mid-watch, a member lost for good and
//! rejoining.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use css::model::Kind;
use css::reconcile::aws::AwsEcs;
use css::reconcile::{Reconciler, RunScope};
use css::store::StateStore;
use css_server::{AwsOverrides, ServerConfig};
use css_tests::fixtures::{all_tasks, entity, sqs_event, task_detail, task_event, ACCOUNT};
use css_tests::moto::MotoServer;
use css_tests::server::TestServer;
use css_tests::EtcdCluster;
use serde_json::json;

/// Server mode on the cluster, configured as an operator would: every
/// endpoint and the certificate files.
fn flags(cluster: &EtcdCluster, first: usize) -> Vec<String> {
    let pki = cluster.pki.as_ref().expect("a TLS cluster");
    let path = |p: &std::path::PathBuf| p.to_string_lossy().into_owned();
    vec![
        "css-server".into(),
        "--bind".into(),
        "127.0.0.1:0".into(),
        "--etcd-endpoints".into(),
        cluster.endpoints_from(first).join(","),
        "--etcd-ca-file".into(),
        path(&pki.ca),
        "--etcd-cert-file".into(),
        path(&pki.client_cert),
        "--etcd-key-file".into(),
        path(&pki.client_key),
        "--etcd-timeout".into(),
        "2s".into(),
    ]
}

/// Server mode whose etcd client starts on member `first`.
async fn server(cluster: &EtcdCluster, first: usize) -> TestServer {
    let cfg = ServerConfig::try_parse_from(flags(cluster, first)).expect("valid flags");
    TestServer::start_with(cfg, AwsOverrides::default()).await
}

/// `versions` events per task for `tasks` tasks of cluster `c`, in an
/// order that is not the versions' (out-of-order delivery).
fn events(c: &str, tasks: usize, versions: u64) -> Vec<String> {
    let mut out = Vec::new();
    for v in (1..=versions).rev() {
        for t in 0..tasks {
            let status = if v == versions { "RUNNING" } else { "PENDING" };
            out.push(task_event(&task_detail(
                c,
                ACCOUNT,
                &format!("t{t:04}"),
                status,
                v,
                true,
            )));
        }
    }
    out
}

/// Sends batches of 10 through the css-ingest handler, 4 at a time;
/// answers the bodies that came back as batch item failures.
async fn ingest(store: Arc<dyn StateStore>, bodies: Vec<String>) -> Vec<String> {
    use futures::StreamExt;
    let batches: Vec<Vec<String>> = bodies.chunks(10).map(<[String]>::to_vec).collect();
    let failed = futures::stream::iter(batches)
        .map(|batch| {
            let store = store.clone();
            async move {
                let res = css::lambda::handle_sqs(store.as_ref(), sqs_event(&batch)).await;
                let res = res.expect("no record without a message id");
                (res.batch_item_failures.iter())
                    .filter_map(|f| f.item_identifier.strip_prefix('m'))
                    .filter_map(|i| i.parse::<usize>().ok())
                    .map(|i| batch[i].clone())
                    .collect::<Vec<_>>()
            }
        })
        .buffer_unordered(4)
        .collect::<Vec<_>>()
        .await;
    failed.into_iter().flatten().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ingest_list_watch_and_reconcile_over_mutual_tls() {
    let cluster = EtcdCluster::start(3, true).await;
    let srv = server(&cluster, 0).await;
    let store = srv.server.store();
    let start = store.current_revision().await.expect("revision");

    assert_eq!(
        ingest(store.clone(), events("tls", 20, 2)).await,
        Vec::<String>::new()
    );
    let list = srv.get("/v1/tasks?cluster=tls&status=RUNNING").await;
    assert_eq!(list.status, 200);
    assert_eq!(list.body["items"].as_array().map(Vec::len), Some(20));
    let watch = srv
        .get(&format!("/v1/stream/tasks?since={start}&wait=1"))
        .await;
    assert_eq!(watch.status, 200, "{}", watch.body);
    assert!(!watch.body["events"].as_array().expect("events").is_empty());

    let moto = MotoServer::start();
    moto.seed_ecs(&json!({"clusters": {"alpha": {"instances": 1, "running": 3}}}));
    let ecs = AwsEcs::new(&moto.sdk_config());
    let summary = Reconciler {
        store: store.as_ref(),
        source: &ecs,
        scope: RunScope {
            account: "123456789012".into(),
            region: "us-east-1".into(),
        },
        retention: Duration::from_secs(3600),
        settings: css_tests::fixtures::describe_all(),
    }
    .run()
    .await;
    assert!(summary.errors.is_empty(), "{:?}", summary.errors);
    assert_eq!(summary.total.inserted, 4, "{summary:?}");
}

#[tokio::test]
async fn a_wrong_ca_or_no_client_certificate_stops_start_up_in_one_line() {
    let cluster = EtcdCluster::start(3, true).await;
    let other = tempfile::tempdir().expect("temp dir");
    let stranger = css_tests::pki::TestPki::issue(other.path());
    let cases = [
        (
            "--etcd-ca-file",
            Some(stranger.ca.to_string_lossy().into_owned()),
            "not signed by the CA of CSS_ETCD_CA_FILE",
        ),
        ("--etcd-cert-file", None, "requires a client certificate"),
    ];
    for (flag, value, expected) in cases {
        let mut args = flags(&cluster, 0);
        let at = args.iter().position(|a| a == flag).expect("flag");
        match value {
            Some(v) => args[at + 1] = v,
            None => {
                // No client certificate: drop its file and its key.
                args.drain(at..at + 4);
            }
        }
        let cfg = ServerConfig::try_parse_from(args).expect("valid flags");
        let err = match css_server::Server::start(cfg, AwsOverrides::default()).await {
            Ok(_) => panic!("{flag}: started without working TLS"),
            Err(e) => e.to_string(),
        };
        assert!(err.contains(expected), "{flag}: {err}");
        assert_eq!(err.lines().count(), 1, "one line: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_leader_killed_mid_ingest_loses_nothing() {
    let mut cluster = EtcdCluster::start(3, true).await;
    let store: Arc<dyn StateStore> = cluster.store("/ecs-css/v1/").await;
    // 500 tasks x 4 versions = 2,000 events, newest first.
    let bodies = events("kill", 500, 4);
    let (first, rest) = bodies.split_at(600);
    assert_eq!(
        ingest(store.clone(), first.to_vec()).await,
        Vec::<String>::new()
    );

    let leader = cluster.leader().await.expect("a leader");
    let killing = {
        let store = store.clone();
        let rest = rest.to_vec();
        tokio::spawn(async move { ingest(store, rest).await })
    };
    tokio::time::sleep(Duration::from_millis(150)).await;
    let killed_at = Instant::now();
    cluster.kill(leader);
    let mut failed = killing.await.expect("ingest task");
    eprintln!(
        "leader m{leader} killed mid-ingest: {} of {} records failed",
        failed.len(),
        rest.len()
    );
    // Failed records come back from SQS: they converge when retried.
    let mut rounds = 0;
    while !failed.is_empty() && rounds < 5 {
        failed = ingest(store.clone(), failed).await;
        rounds += 1;
    }
    assert!(failed.is_empty(), "{} records never applied", failed.len());
    let new_leader = cluster.wait_for_leader(Duration::from_secs(10)).await;
    eprintln!("new leader m{new_leader} within {:?}", killed_at.elapsed());

    // Every task holds its newest version, on the surviving members.
    let tasks = all_tasks(store.as_ref()).await;
    assert_eq!(tasks.len(), 500);
    assert!(
        tasks.values().all(|(_, v)| *v == 4),
        "a task kept an older version"
    );
}

/// One long-poll watcher through server mode's HTTP API: follows the stream
/// until `until`, rebuilding the state and recording every revision.
async fn follow(srv: Arc<TestServer>, since: i64, until: i64) -> (BTreeMap<String, i64>, Vec<i64>) {
    let mut state = BTreeMap::new();
    let mut seen = Vec::new();
    let mut since = since;
    let deadline = Instant::now() + Duration::from_secs(90);
    while since < until {
        assert!(Instant::now() < deadline, "watcher stuck at {since}");
        let r = srv
            .get(&format!("/v1/stream/tasks?since={since}&wait=2"))
            .await;
        assert_eq!(r.status, 200, "a watch answer during failover: {}", r.body);
        for e in r.body["events"].as_array().expect("events") {
            let rev: i64 = e["revision"]
                .as_str()
                .and_then(|s| s.parse().ok())
                .expect("revision");
            seen.push(rev);
            // cluster/id, the last two segments of a long task ARN.
            let arn = e["item"]["entity"]["taskArn"].as_str().unwrap_or("");
            let id = arn
                .split_once('/')
                .map_or(arn, |(_, rest)| rest)
                .to_string();
            match e["type"].as_str() {
                Some("PUT") => state.insert(id, rev),
                _ => state.remove(&id),
            };
        }
        since = r.body["revision"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .expect("revision");
    }
    (state, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_leader_killed_while_ten_watchers_follow() {
    let mut cluster = EtcdCluster::start(3, true).await;
    let leader = cluster.leader().await.expect("a leader");
    let srv = Arc::new(server(&cluster, leader).await);
    let store = srv.server.store();
    let since = store.current_revision().await.expect("revision");

    // Writes in the background: 60 tasks x 5 versions, one at a time.
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            let mut failures = 0;
            for v in 1..=5u64 {
                for t in 0..60 {
                    let d = task_detail("watch", ACCOUNT, &format!("w{t:02}"), "RUNNING", v, true);
                    let e = entity(Kind::Task, &d);
                    while store
                        .upsert_if_newer(css::store::Upsert::event(&e))
                        .await
                        .is_err()
                    {
                        failures += 1;
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
            failures
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    cluster.kill(leader);
    let write_failures = writer.await.expect("writer");
    let until = store.current_revision().await.expect("revision");

    let watchers: Vec<_> = (0..10)
        .map(|_| tokio::spawn(follow(srv.clone(), since, until)))
        .collect();
    let want: BTreeMap<String, i64> = all_tasks(store.as_ref())
        .await
        .into_iter()
        .map(|(id, (rev, _))| (id, rev))
        .collect();
    for w in watchers {
        let (state, seen) = w.await.expect("watcher");
        assert_eq!(
            state, want,
            "a watcher's rebuilt state differs from the store"
        );
        let distinct: BTreeSet<i64> = seen.iter().copied().collect();
        assert_eq!(distinct.len(), seen.len(), "a revision delivered twice");
        assert!(
            seen.windows(2).all(|p| p[0] < p[1]),
            "revisions out of order"
        );
    }
    eprintln!(
        "leader m{leader} killed while writing: {write_failures} writes retried by the writer"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_leader_killed_while_watchers_wait_delivers_every_write() {
    // Watchers already waiting on the dying member's watch stream.
    let mut cluster = EtcdCluster::start(3, true).await;
    let leader = cluster.leader().await.expect("a leader");
    let srv = Arc::new(server(&cluster, leader).await);
    let store = srv.server.store();
    let since = store.current_revision().await.expect("revision");
    let watchers: Vec<_> = (0..10)
        .map(|_| {
            let srv = srv.clone();
            tokio::spawn(async move {
                srv.get(&format!("/v1/stream/tasks?since={since}&wait=20"))
                    .await
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    cluster.kill(leader);
    cluster.wait_for_leader(Duration::from_secs(10)).await;
    let d = task_detail("wait", ACCOUNT, "late", "RUNNING", 1, true);
    let e = entity(Kind::Task, &d);
    store
        .upsert_if_newer(css::store::Upsert::event(&e))
        .await
        .expect("a write after the election");
    for w in watchers {
        let r = w.await.expect("watcher");
        assert_eq!(r.status, 200, "{}", r.body);
        let events = r.body["events"].as_array().expect("events");
        assert_eq!(events.len(), 1, "{}", r.body);
        assert_eq!(events[0]["item"]["entity"]["taskArn"], d["taskArn"].clone());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_member_lost_for_good_then_rejoining() {
    let mut cluster = EtcdCluster::start(3, true).await;
    let store: Arc<dyn StateStore> = cluster.store("/ecs-css/v1/").await;
    let leader = cluster.leader().await.expect("a leader");
    let follower = (leader + 1) % 3;
    cluster.kill(follower);
    // Two members serve everything, without a failed record.
    assert_eq!(
        ingest(store.clone(), events("two", 50, 2)).await,
        Vec::<String>::new()
    );
    assert_eq!(all_tasks(store.as_ref()).await.len(), 50);

    // Restarted on its data, it rejoins: with the other follower gone, the
    // cluster has a quorum only if it did.
    cluster.restart(follower);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let other = 3 - leader - follower;
    cluster.kill(other);
    assert_eq!(
        ingest(store.clone(), events("rejoined", 50, 1)).await,
        Vec::<String>::new()
    );
    assert_eq!(all_tasks(store.as_ref()).await.len(), 100);
}

async fn put_secret(moto: &MotoServer, name: &str, value: &serde_json::Value) -> String {
    let sm = aws_sdk_secretsmanager::Client::new(&moto.sdk_config());
    let out = sm
        .create_secret()
        .name(name)
        .secret_string(value.to_string())
        .send()
        .await;
    out.expect("secret created")
        .arn()
        .expect("secret ARN")
        .to_string()
}

/// What every function does at init: `setup::build` with the settings.
async fn build(
    args: &css::config::StoreArgs,
    moto: &MotoServer,
) -> Result<css::setup::Parts, String> {
    let overrides = css::setup::Overrides {
        sdk: Some(moto.sdk_config()),
        ..Default::default()
    };
    let wants = css::setup::Wants::default();
    css::setup::build(args, wants, overrides)
        .await
        .map_err(|e| e.to_string())
}

async fn round_trip(store: &dyn StateStore, id: &str) {
    let e = entity(
        Kind::Task,
        &task_detail("sec", ACCOUNT, id, "RUNNING", 1, true),
    );
    store
        .upsert_if_newer(css::store::Upsert::event(&e))
        .await
        .expect("write");
    assert!(store.get(&e.key, None).await.expect("read").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_and_credentials_come_from_secrets_manager() {
    let moto = MotoServer::start();
    let cluster = EtcdCluster::start(3, true).await;
    let pki = cluster.pki.as_ref().expect("a TLS cluster");
    let read = |p: &std::path::PathBuf| std::fs::read_to_string(p).expect("certificate");
    let tls =
        json!({"ca": read(&pki.ca), "cert": read(&pki.client_cert), "key": read(&pki.client_key)});
    let mut args = css_tests::fixtures::store_args(cluster.endpoints());
    args.etcd_tls_secret = Some(put_secret(&moto, "css/etcd-tls", &tls).await);
    let parts = build(&args, &moto)
        .await
        .expect("connects with the secret's certificates");
    round_trip(parts.store.as_ref(), "tls").await;

    // Without the client certificate in the secret: refused in one line.
    let ca_only = json!({"ca": read(&pki.ca)});
    args.etcd_tls_secret = Some(put_secret(&moto, "css/etcd-ca-only", &ca_only).await);
    let err = build(&args, &moto).await.err().expect("refused");
    assert!(err.contains("requires a client certificate"), "{err}");
    args.etcd_tls_secret = Some("css/no-such-secret".into());
    let err = build(&args, &moto).await.err().expect("refused");
    assert!(
        err.starts_with("CSS_ETCD_TLS_SECRET: cannot read secret css/no-such-secret"),
        "{err}"
    );

    // Credentials for an etcd with authentication on.
    let etcd = css_tests::EtcdServer::start();
    let mut c = etcd_client::Client::connect([etcd.endpoint()], None)
        .await
        .expect("etcd");
    c.user_add("root", "root-pw", None)
        .await
        .expect("root user");
    c.user_grant_role("root", "root").await.expect("root role");
    c.role_add("css").await.expect("role");
    let perm = etcd_client::Permission::read_write("/ecs-css/").with_prefix();
    c.role_grant_permission("css", perm)
        .await
        .expect("permission");
    c.user_add("css", "s3cret", None).await.expect("user");
    c.user_grant_role("css", "css").await.expect("grant");
    c.auth_enable().await.expect("auth on");
    let mut args = css_tests::fixtures::store_args(vec![etcd.endpoint()]);
    let creds = json!({"username": "css", "password": "s3cret"});
    args.etcd_credentials_secret = Some(put_secret(&moto, "css/etcd-credentials", &creds).await);
    let parts = build(&args, &moto)
        .await
        .expect("connects with the secret's credentials");
    round_trip(parts.store.as_ref(), "auth").await;
    let wrong = json!({"username": "css", "password": "wrong"});
    args.etcd_credentials_secret = Some(put_secret(&moto, "css/etcd-wrong", &wrong).await);
    let err = build(&args, &moto).await.err().expect("refused");
    assert!(
        err.contains("refused CSS_ETCD_USERNAME/CSS_ETCD_PASSWORD"),
        "{err}"
    );
}
