//! A store rebuilt from nothing under a running server (etcd started again
//! on the same address with an empty data dir, refilled by reconcile from
//! moto's ECS, its revision pushed past the old cursors): every cursor,
//! page token and subscription of the old store answers 410 Expired, never
//! a silent resume on unrelated history; the client's watch resyncs with
//! `StoreReplaced`; a relist equals the store; the record cache forgets the
//! old store's records.

use std::time::Duration;

use css::ecs::aws::AwsEcs;
use css::ingest::apply_batch;
use css::reconcile::{Reconciler, RunScope};
use css::store::StateStore;
use css_client::{Client, Filters, ResyncCause, Signing, Task, WatchEvent};
use css_tests::fixtures::{describe_all, messages, task_detail, task_event, ACCOUNT};
use css_tests::moto::MotoServer;
use css_tests::openapi::OpenApi;
use css_tests::server::TestServer;
use css_tests::EtcdServer;
use reqwest::StatusCode;
use serde_json::{json, Value};

const PREFIX: &str = "/ecs-css/v1/";

async fn reconcile(store: &dyn StateStore, moto: &MotoServer) {
    let source = AwsEcs::single_attempt(&moto.sdk_config());
    let s = Reconciler {
        store,
        source: &source,
        scope: RunScope {
            account: "123456789012".into(),
            region: "us-east-1".into(),
        },
        retention: Duration::from_secs(3600),
        settings: describe_all(),
    }
    .run()
    .await;
    assert!(s.errors.is_empty(), "{:?}", s.errors);
}

/// Writes task events until the store's revision is past `rev`.
async fn push_past(store: &dyn StateStore, rev: i64) {
    let mut v = 1;
    while store.current_revision().await.expect("revision") <= rev {
        let d = task_detail("pad", ACCOUNT, "p1", "RUNNING", v, true);
        let out = apply_batch(store, &messages(&[task_event(&d)])).await;
        assert!(out.failures.is_empty(), "{:?}", out.failures);
        v += 1;
    }
}

/// The store's tasks (ARN, entityVersion) as a list answers them.
fn arns(list: &Value) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = (list["items"].as_array().into_iter().flatten())
        .map(|i| {
            let arn = i["entity"]["taskArn"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let v = i["metadata"]["entityVersion"].as_str().unwrap_or_default();
            (arn, v.to_string())
        })
        .collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_cursor_of_a_rebuilt_store_is_410_and_a_relist_equals_the_new_store() {
    let api = OpenApi::load();
    let moto = MotoServer::start();
    moto.seed_ecs(&json!({"clusters": {"alpha": {"instances": 1, "running": 6}}}));
    let mut etcd = EtcdServer::start();
    let s = TestServer::start(Some(&etcd), &[]).await;
    let filler = etcd.store(PREFIX).await;
    reconcile(filler.as_ref(), &moto).await;
    // Some history, so that the old cursor is well past the empty store's.
    push_past(filler.as_ref(), 40).await;

    // What a client holds of the old store: a list's revision and store,
    // a page token, a subscription, and a running watch.
    let old = s.get("/v1/tasks").await;
    assert_eq!(old.status, StatusCode::OK);
    api.check("TaskList", &old.body);
    let old_store = old.body["store"].as_str().expect("store").to_string();
    let old_rev: i64 = old.body["revision"]
        .as_str()
        .and_then(|r| r.parse().ok())
        .expect("rev");
    let page = s.get("/v1/tasks?limit=2").await;
    let token = page.body["nextToken"]
        .as_str()
        .expect("a next page")
        .to_string();
    let sub = s
        .request(
            reqwest::Method::POST,
            "/v1/subscriptions",
            Some(json!({"resource": "tasks"})),
        )
        .await;
    assert_eq!(sub.status, StatusCode::CREATED, "{}", sub.body);
    assert_eq!(sub.body["store"], old_store.as_str());
    let sub_id = sub.body["id"].as_str().expect("id").to_string();
    let client = Client::new(&s.base, Signing::Never).await.expect("client");
    let mut watch = client.watch::<Task>(Filters::default());
    watch.wait = Duration::from_secs(1);
    assert!(matches!(watch.next().await, Ok(WatchEvent::Listed { .. })));

    // The store is rebuilt from nothing and refilled: ECS moved on meanwhile.
    moto.seed_ecs(&json!({"clusters": {"bravo": {"instances": 1, "running": 3}}}));
    etcd.rebuild();
    let refilled = etcd.store(PREFIX).await;
    reconcile(refilled.as_ref(), &moto).await;
    // Past the old cursor: a revision check alone would let it through.
    push_past(refilled.as_ref(), old_rev + 5).await;

    let gone = |r: &css_tests::server::Reply, what: &str| {
        assert_eq!(r.status, StatusCode::GONE, "{what}: {}", r.body);
        api.check("Expired", &r.body);
    };
    let since = format!("/v1/stream/tasks?since={old_rev}&store={old_store}&wait=0");
    gone(&s.get(&since).await, "the old store's cursor");
    gone(
        &s.get(&format!("/v1/tasks?limit=2&nextToken={token}")).await,
        "the old store's page token",
    );
    gone(
        &s.get(&format!("/v1/subscriptions/{sub_id}/events?wait=0"))
            .await,
        "a subscription of the old store",
    );
    // The relist: another store, and exactly what it holds.
    let new = s.get("/v1/tasks").await;
    assert_eq!(new.status, StatusCode::OK);
    let new_store = new.body["store"].as_str().expect("store").to_string();
    assert_ne!(new_store, old_store);
    let held: Vec<(String, String)> = {
        let mut v: Vec<(String, String)> = css_tests::fixtures::all_records(refilled.as_ref())
            .await
            .into_iter()
            .filter(|r| r.key.kind == css::model::Kind::Task)
            .map(|r| {
                let meta = r.meta().expect("record");
                let entity: Value = serde_json::from_str(meta.entity.get()).expect("JSON");
                let arn = entity["taskArn"].as_str().unwrap_or_default().to_string();
                (arn, r.mod_revision.to_string())
            })
            .collect();
        v.sort();
        v
    };
    assert_eq!(arns(&new.body), held);
    assert!(
        held.iter().any(|(a, _)| a.contains("/bravo/")),
        "ECS's new cluster"
    );
    // Watching the new store from the relist works.
    let rev = new.body["revision"].as_str().expect("rev");
    let ok = s
        .get(&format!(
            "/v1/stream/tasks?since={rev}&store={new_store}&wait=0"
        ))
        .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    assert_eq!(ok.body["store"], new_store.as_str());

    // The client's watch sent the old store with its cursor: it resyncs,
    // and its new state is the relist.
    let event = tokio::time::timeout(Duration::from_secs(30), watch.next())
        .await
        .expect("the watch answers")
        .expect("no error");
    match event {
        WatchEvent::Resync { items, cause, .. } => {
            assert_eq!(cause, ResyncCause::StoreReplaced);
            let mut got: Vec<(String, String)> = (items.into_iter())
                .map(|i| (i.entity.task_arn, i.metadata.entity_version))
                .collect();
            got.sort();
            assert_eq!(got, held);
        }
        other => panic!("expected a resync, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_record_cache_forgets_a_replaced_store() {
    let mut etcd = EtcdServer::start();
    let store = etcd.store(PREFIX).await;
    let d = task_detail("web", ACCOUNT, "t1", "RUNNING", 1, true);
    let out = apply_batch(store.as_ref(), &messages(&[task_event(&d)])).await;
    assert!(out.failures.is_empty());
    let first = store.identity().await.expect("identity");
    assert_eq!(store.identity().await.expect("identity"), first, "stable");
    let list = css::query::ListQuery {
        filters: css::filter::Filters::all(css::model::Kind::Task),
        limit: 100,
        next_token: None,
    };
    // A list by status fills the cache (it reads records by their index keys).
    let mut filtered = list.clone();
    filtered.filters.status = Some("RUNNING");
    css::query::list(store.as_ref(), &filtered)
        .await
        .expect("list");
    assert!(
        store.record_cache_usage().records > 0,
        "the cache holds the record"
    );
    etcd.rebuild();
    let other = loop {
        match store.identity().await {
            Ok(id) => break id,
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    };
    assert_ne!(other, first);
    assert_eq!(
        store.record_cache_usage().records,
        0,
        "flushed with the identity"
    );
}
