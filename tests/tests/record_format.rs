//! The record format on a real etcd: compressed values behind a `Z` header
//! byte, index keys without values, and an upgrade in place from a store
//! filled by the legacy code path (plain JSON, index copies).

use css::filter::Filters;
use css::ingest::apply_batch;
use css::model::Kind;
use css::query::{list, ListQuery};
use css::store::{ClusterScope, Format, StateStore};
use css_tests::fixtures::*;
use css_tests::EtcdServer;

fn tasks(from: usize, to: usize, status: &str, version: u64) -> Vec<String> {
    (from..to)
        .map(|i| {
            let d = task_detail(
                &format!("c{}", i % 3),
                ACCOUNT,
                &format!("t{i:04}"),
                status,
                version,
                true,
            );
            task_event(&d)
        })
        .collect()
}

/// The raw value etcd holds under `key`.
async fn raw(client: &mut etcd_client::Client, key: &str) -> Vec<u8> {
    let resp = client.get(key, None).await.expect("get");
    resp.kvs()
        .first()
        .map(|kv| kv.value().to_vec())
        .unwrap_or_default()
}

async fn running(store: &dyn StateStore, cluster: &str) -> Vec<String> {
    let q = ListQuery {
        filters: Filters {
            cluster: ClusterScope::Named(cluster.into()),
            status: Some("RUNNING"),
            ..Filters::all(Kind::Task)
        },
        limit: 1000,
        next_token: None,
    };
    let out = list(store, &q).await.expect("list");
    out.records.iter().map(|r| r.key.id.clone()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_legacy_store_keeps_working_and_is_rewritten_on_write() {
    let etcd = EtcdServer::start();
    let compact = etcd.store("/ecs-css/v1/").await;
    let legacy = (*compact).clone().with_format(Format::Legacy);
    let mut client = etcd_client::Client::connect([etcd.endpoint()], None)
        .await
        .expect("client");

    // Filled by the legacy code path: 300 tasks, 100 stopped.
    let out = apply_batch(&legacy, &messages(&tasks(0, 200, "RUNNING", 1))).await;
    assert!(out.failures.is_empty());
    let out = apply_batch(&legacy, &messages(&tasks(200, 300, "STOPPED", 1))).await;
    assert!(out.failures.is_empty());
    let before = compact.current_revision().await.unwrap();
    let key = "/ecs-css/v1/tasks/c1/aws/eu-west-1/111122223333/t0001";
    let index = "/ecs-css/v1/idx/tasks/RUNNING/c1/aws/eu-west-1/111122223333/t0001";
    let old = raw(&mut client, key).await;
    assert_eq!(old[0], b'{', "legacy records are plain JSON");
    assert_eq!(
        raw(&mut client, index).await,
        old,
        "legacy index keys are copies"
    );

    // The new code reads it all: lists (index and primary ranges), describe.
    let want: Vec<String> = (0..200)
        .filter(|i| i % 3 == 1)
        .map(|i| format!("t{i:04}"))
        .collect();
    assert_eq!(running(compact.as_ref(), "c1").await, want);
    let e = entity(
        Kind::Task,
        &task_detail("c1", ACCOUNT, "t0001", "RUNNING", 1, true),
    );
    let rec = compact.get(&e.key, None).await.unwrap().expect("stored");
    assert_eq!(rec.meta().unwrap().ecs_version, 1);

    // The next write of a record rewrites it compressed, its index key empty.
    let out = apply_batch(compact.as_ref(), &messages(&tasks(0, 30, "RUNNING", 2))).await;
    assert_eq!((out.stats.updated, out.failures.len()), (30, 0));
    let new = raw(&mut client, key).await;
    assert_eq!(new[0], b'Z', "etcdctl shows the format in the first byte");
    assert!(new.len() * 2 < old.len(), "{} vs {}", new.len(), old.len());
    assert_eq!(raw(&mut client, index).await, Vec::<u8>::new());
    // Both formats side by side list and watch alike.
    assert_eq!(running(compact.as_ref(), "c1").await, want);
    let mut w = compact.watch(Kind::Task, before + 1).await.unwrap();
    let batch = w.next().await.unwrap();
    let ev = &batch.events[0];
    let (prev, now) = (ev.prev.as_ref().unwrap(), ev.record.as_ref().unwrap());
    assert_eq!(prev.value[0], b'{');
    assert_eq!(
        (
            prev.meta().unwrap().ecs_version,
            now.meta().unwrap().ecs_version
        ),
        (1, 2)
    );

    // What css-record decodes: either format, as etcdctl prints it.
    for value in [&old, &new] {
        let mut printed = value.clone();
        printed.push(b'\n');
        let json = css::store::decode_printed(&printed).expect("a record");
        let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert!(
            v["entity"]["taskArn"]
                .as_str()
                .unwrap()
                .ends_with("/c1/t0001"),
            "{v}"
        );
    }
}

/// A small quota filled through the real ingest handler: the records etcd
/// refuses come back as batch item failures, every acknowledged one is
/// stored, reads go on, and the status endpoint and metrics say why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_store_fails_writes_retryably_and_says_so() {
    let etcd = EtcdServer::start_with_quota(4 << 20);
    let s = css_tests::server::TestServer::start_with(
        clap::Parser::try_parse_from([
            "css-server",
            "--bind",
            "127.0.0.1:0",
            "--etcd-endpoints",
            &etcd.endpoint(),
        ])
        .expect("flags"),
        css_server::AwsOverrides::default(),
    )
    .await;
    let store = s.server.store();
    let (mut acked, mut failed) = (Vec::new(), 0usize);
    let mut n = 0;
    'fill: for _ in 0..400 {
        let bodies: Vec<String> = (n..n + 100)
            .map(|i| {
                task_event(&task_detail(
                    &format!("c{}", i % 3),
                    ACCOUNT,
                    &format!("{i:032x}"),
                    "RUNNING",
                    1,
                    true,
                ))
            })
            .collect();
        let resp = css::lambda::handle_sqs(store.as_ref(), sqs_event(&bodies))
            .await
            .expect("handler");
        let bad: std::collections::HashSet<String> = resp
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.clone())
            .collect();
        for i in 0..100 {
            if bad.contains(&format!("m{i}")) {
                failed += 1;
            } else {
                acked.push(n + i);
            }
        }
        n += 100;
        if failed > 0 {
            break 'fill;
        }
    }
    assert!(failed > 0, "4 MB holds fewer than {n} tasks");
    // Nothing acknowledged that was not written.
    for i in &acked {
        let d = task_detail(
            &format!("c{}", i % 3),
            ACCOUNT,
            &format!("{i:032x}"),
            "RUNNING",
            1,
            true,
        );
        let e = entity(Kind::Task, &d);
        assert!(
            store.get(&e.key, None).await.expect("reads work").is_some(),
            "task {i} acked"
        );
    }
    let status = s.get("/v1/status").await;
    assert_eq!(status.body["store"]["writable"], false, "{}", status.body);
    assert_eq!(
        status.body["store"]["alarms"],
        serde_json::json!(["NOSPACE"])
    );
    css_tests::openapi::OpenApi::load().check("Status", &status.body);
    let list = s.get("/v1/tasks?cluster=c1&status=RUNNING&limit=5").await;
    assert_eq!(list.status, reqwest::StatusCode::OK, "reads still answer");
    // The same page again: its records come from the record cache.
    let again = s.get("/v1/tasks?cluster=c1&status=RUNNING&limit=5").await;
    assert_eq!(again.body["items"], list.body["items"]);
    let metrics = s
        .http
        .get(format!("{}/metrics", s.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("store_errors") && l.contains("kind=\"nospace\"")),
        "{metrics}"
    );
    let listed = |source: &str| {
        let label = format!("store_list_records{{source=\"{source}\"}} ");
        (metrics.lines())
            .find_map(|l| l.strip_prefix(label.as_str()))
            .and_then(|v| v.trim().parse::<f64>().ok())
    };
    // (Earlier lists in this test count too.)
    assert!(listed("etcd").is_some_and(|n| n >= 5.0), "{metrics}");
    assert!(listed("cache").is_some_and(|n| n >= 5.0), "{metrics}");
    println!(
        "4 MB quota: {} tasks acknowledged before NOSPACE",
        acked.len()
    );
    s.server.shutdown().await.unwrap();
}
