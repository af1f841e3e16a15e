//! The ingest handler against a real etcd (and the embedded store where the
//! behaviour is the store's): what is acknowledged, what is written.

use std::collections::HashMap;
use std::sync::Arc;

use css::ingest::apply_batch;
use css::lambda::handle_sqs;
use css::model::{ClusterId, EntityKey, Kind};
use css::store::{ClusterScope, EmbeddedStore, ListRequest, StateStore};
use css_tests::fixtures::*;
use css_tests::EtcdServer;
use serde_json::{json, Value};

fn failed_ids(resp: &aws_lambda_events::event::sqs::SqsBatchResponse) -> Vec<String> {
    let mut ids: Vec<String> = resp
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone())
        .collect();
    ids.sort();
    ids
}

fn task_key(account: &str, cluster: &str, id: &str) -> EntityKey {
    EntityKey {
        kind: Kind::Task,
        cluster: ClusterId::from_arn(&cluster_arn(account, REGION, cluster)).unwrap(),
        id: id.into(),
    }
}

async fn stored_entity(store: &dyn StateStore, key: &EntityKey) -> Option<Value> {
    let rec = store.get(key, None).await.unwrap()?;
    let meta = rec.meta().unwrap();
    Some(serde_json::from_str(meta.entity.get()).unwrap())
}

async fn etcd_store() -> (EtcdServer, Arc<dyn StateStore>) {
    let etcd = EtcdServer::start();
    let store: Arc<dyn StateStore> = etcd.store("/ecs-css/v1/").await;
    (etcd, store)
}

#[tokio::test]
async fn duplicates_and_out_of_order_never_regress() {
    let (_etcd, store) = etcd_store().await;
    let d = |status: &str, v| task_detail("c1", ACCOUNT, "t1", status, v, true);
    // Same batch: v3, a duplicate of v3, an older v2; highest wins.
    let batch = vec![
        task_event(&d("RUNNING", 3)),
        task_event(&d("RUNNING", 3)),
        task_event(&d("PENDING", 2)),
    ];
    let resp = handle_sqs(store.as_ref(), sqs_event(&batch)).await.unwrap();
    assert!(resp.batch_item_failures.is_empty());
    let key = task_key(ACCOUNT, "c1", "t1");
    assert_eq!(
        stored_entity(store.as_ref(), &key).await.unwrap()["version"],
        3
    );
    let rev = store.current_revision().await.unwrap();

    // Later batches: older, equal with other content, then newer.
    for (status, v) in [("PENDING", 1), ("STOPPED", 3)] {
        let resp = handle_sqs(store.as_ref(), sqs_event(&[task_event(&d(status, v))]))
            .await
            .unwrap();
        assert!(
            resp.batch_item_failures.is_empty(),
            "stale events are acknowledged"
        );
    }
    assert_eq!(
        store.current_revision().await.unwrap(),
        rev,
        "stale events write nothing"
    );
    let stored = stored_entity(store.as_ref(), &key).await.unwrap();
    assert_eq!(
        stored["lastStatus"], "RUNNING",
        "an equal version does not overwrite"
    );

    handle_sqs(store.as_ref(), sqs_event(&[task_event(&d("STOPPED", 4))]))
        .await
        .unwrap();
    assert_eq!(
        stored_entity(store.as_ref(), &key).await.unwrap()["lastStatus"],
        "STOPPED"
    );
}

#[tokio::test]
async fn bad_records_are_batch_item_failures() {
    let (_etcd, store) = etcd_store().await;
    let good = task_event(&task_detail("c1", ACCOUNT, "ok1", "RUNNING", 1, true));
    let mut no_version = task_detail("c1", ACCOUNT, "t2", "RUNNING", 1, true);
    no_version.as_object_mut().unwrap().remove("version");
    let mut no_arn = task_detail("c1", ACCOUNT, "t3", "RUNNING", 1, true);
    no_arn.as_object_mut().unwrap().remove("taskArn");
    let mut no_cluster = instance_detail("c1", ACCOUNT, "i1", "ACTIVE", 1);
    no_cluster.as_object_mut().unwrap().remove("clusterArn");
    let mut wrong_source: Value = serde_json::from_str(&good).unwrap();
    wrong_source["source"] = json!("aws.ec2");
    let service_action = service_event("ECS Service Action", ACCOUNT, REGION, "c1", "web");
    let deployment = service_event("ECS Deployment State Change", ACCOUNT, REGION, "c1", "web");
    let bodies = vec![
        good,                                  // m0 ok
        "{not json".to_string(),               // m1
        task_event(&no_version),               // m2
        wrong_source.to_string(),              // m3
        service_action,                        // m4 acknowledged
        task_event(&no_arn),                   // m5
        instance_event(&no_cluster),           // m6
        json!({"hello": "world"}).to_string(), // m7
        deployment,                            // m8 acknowledged
        task_event(&json!("a string detail")), // m9
    ];
    let before = store.current_revision().await.unwrap();
    let resp = handle_sqs(store.as_ref(), sqs_event(&bodies))
        .await
        .unwrap();
    assert_eq!(
        failed_ids(&resp),
        vec!["m1", "m2", "m3", "m5", "m6", "m7", "m9"]
    );
    // Only the good record is written (the status of the batch, a
    // bookkeeping key, may be written too: records are counted).
    assert!(store.current_revision().await.unwrap() > before);
    let mut written = 0;
    for kind in [Kind::Task, Kind::Instance] {
        let page = store
            .list(&css::store::ListRequest {
                kind,
                cluster: css::store::ClusterScope::All,
                status: None,
                start_after: None,
                limit: 100,
                revision: None,
            })
            .await
            .unwrap();
        written += page.records.len();
    }
    assert_eq!(written, 1, "only the good record is written");
    let outcome = apply_batch(store.as_ref(), &messages(&bodies)).await;
    assert_eq!(outcome.stats.ignored, 2);
    assert_eq!(outcome.stats.malformed, 7);
    assert_eq!(outcome.stats.unchanged, 1);
}

#[tokio::test]
async fn record_without_message_id_fails_the_whole_batch() {
    let store = EmbeddedStore::new("/x/");
    let mut event = sqs_event(&["{bad".to_string()]);
    event.records[0].message_id = None;
    assert!(handle_sqs(&store, event).await.is_err());
}

#[tokio::test]
async fn unknown_fields_are_kept_verbatim() {
    let (_etcd, store) = etcd_store().await;
    let mut d = task_detail("c1", ACCOUNT, "t1", "RUNNING", 7, true);
    d["brandNewEcsField"] = json!({"nested": [1, 2, {"deep": true}], "s": "ü"});
    d["containers"][0]["futureContainerField"] = json!(42);
    let body = task_event(&d);
    handle_sqs(store.as_ref(), sqs_event(std::slice::from_ref(&body)))
        .await
        .unwrap();
    let rec = store
        .get(&task_key(ACCOUNT, "c1", "t1"), None)
        .await
        .unwrap()
        .unwrap();
    let meta = rec.meta().unwrap();
    // Byte for byte what the event's detail held.
    let envelope: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(meta.entity.get(), envelope["detail"].to_string());
    let stored: Value = serde_json::from_str(meta.entity.get()).unwrap();
    assert_eq!(stored["brandNewEcsField"]["nested"][2]["deep"], true);
    assert_eq!(stored["containers"][0]["futureContainerField"], 42);
}

#[tokio::test]
async fn both_arn_formats_and_same_named_clusters() {
    let (_etcd, store) = etcd_store().await;
    let bodies = vec![
        task_event(&task_detail("prod", ACCOUNT, "aaa", "RUNNING", 1, false)),
        task_event(&task_detail("prod", ACCOUNT, "bbb", "RUNNING", 1, true)),
        task_event(&task_detail(
            "prod",
            OTHER_ACCOUNT,
            "aaa",
            "RUNNING",
            1,
            true,
        )),
        instance_event(&instance_detail("prod", ACCOUNT, "0f3e5d", "ACTIVE", 1)),
        instance_event(&instance_detail(
            "prod",
            OTHER_ACCOUNT,
            "0f3e5d",
            "DRAINING",
            2,
        )),
    ];
    let resp = handle_sqs(store.as_ref(), sqs_event(&bodies))
        .await
        .unwrap();
    assert!(resp.batch_item_failures.is_empty());
    assert!(
        stored_entity(store.as_ref(), &task_key(ACCOUNT, "prod", "aaa"))
            .await
            .is_some()
    );
    assert!(
        stored_entity(store.as_ref(), &task_key(ACCOUNT, "prod", "bbb"))
            .await
            .is_some()
    );
    let other = stored_entity(store.as_ref(), &task_key(OTHER_ACCOUNT, "prod", "aaa"))
        .await
        .unwrap();
    assert!(other["clusterArn"]
        .as_str()
        .unwrap()
        .contains(OTHER_ACCOUNT));
    let list = |kind| ListRequest {
        kind,
        cluster: ClusterScope::Named("prod".into()),
        status: None,
        start_after: None,
        limit: 100,
        revision: None,
    };
    assert_eq!(
        store.list(&list(Kind::Task)).await.unwrap().records.len(),
        3
    );
    assert_eq!(
        store
            .list(&list(Kind::Instance))
            .await
            .unwrap()
            .records
            .len(),
        2
    );
}

/// etcd dies in the middle of a batch: every record not reported as failed
/// is durably stored; after a restart, retrying the failures converges.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_outage_mid_batch_loses_nothing() {
    const TASKS: usize = 6000;
    let mut etcd = EtcdServer::start();
    let store: Arc<dyn StateStore> = etcd.store("/ecs-css/v1/").await;
    let mut bodies = Vec::new();
    for t in 0..TASKS {
        let cluster = format!("c{}", t % 5);
        bodies.push(task_event(&task_detail(
            &cluster,
            ACCOUNT,
            &format!("t{t:04}"),
            "RUNNING",
            1 + (t % 3) as u64,
            true,
        )));
    }
    let start = store.current_revision().await.unwrap();
    let handler = {
        let store = store.clone();
        let event = sqs_event(&bodies);
        tokio::spawn(async move { handle_sqs(store.as_ref(), event).await })
    };
    // Kill etcd as soon as the first writes of the batch are in (the batch
    // needs well over a hundred write transactions).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while store.current_revision().await.unwrap() <= start {
        assert!(
            std::time::Instant::now() < deadline,
            "the batch never started writing"
        );
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    etcd.stop();
    let resp = handler
        .await
        .unwrap()
        .expect("handler answers, it does not fail the invocation");
    let failed = failed_ids(&resp);
    assert!(!failed.is_empty(), "records after the outage are reported");
    assert!(
        failed.len() < bodies.len(),
        "records before the outage are acknowledged"
    );

    etcd.restart();
    let store: Arc<dyn StateStore> = etcd.store("/ecs-css/v1/").await;
    // Everything acknowledged is durably there.
    let failed_set: std::collections::HashSet<&str> = failed.iter().map(String::as_str).collect();
    for (i, body) in bodies.iter().enumerate() {
        if failed_set.contains(format!("m{i}").as_str()) {
            continue;
        }
        let v: Value = serde_json::from_str(body).unwrap();
        let key = task_key(
            ACCOUNT,
            v["detail"]["clusterArn"]
                .as_str()
                .unwrap()
                .rsplit('/')
                .next()
                .unwrap(),
            &format!("t{i:04}"),
        );
        let stored = stored_entity(store.as_ref(), &key).await;
        assert_eq!(
            stored.map(|s| s["version"].clone()),
            Some(v["detail"]["version"].clone()),
            "acknowledged m{i} is stored"
        );
    }
    // SQS redelivers the failures: the retry converges.
    let retry: Vec<String> = failed
        .iter()
        .map(|id| bodies[id[1..].parse::<usize>().unwrap()].clone())
        .collect();
    let resp = handle_sqs(store.as_ref(), sqs_event(&retry)).await.unwrap();
    assert!(resp.batch_item_failures.is_empty());
    let page = store
        .list(&ListRequest {
            kind: Kind::Task,
            cluster: ClusterScope::All,
            status: Some("RUNNING".into()),
            start_after: None,
            limit: 10_000,
            revision: None,
        })
        .await
        .unwrap();
    assert_eq!(page.records.len(), bodies.len());
    let mut versions: HashMap<String, u64> = HashMap::new();
    for r in &page.records {
        versions.insert(r.key.id.clone(), r.meta().unwrap().ecs_version);
    }
    for t in 0..TASKS {
        assert_eq!(versions[&format!("t{t:04}")], 1 + (t % 3) as u64);
    }
}

/// A store that is down from the start fails every record, never acks.
#[tokio::test]
async fn store_down_fails_every_record() {
    let (mut etcd, store) = etcd_store().await;
    etcd.stop();
    let bodies: Vec<String> = (0..5)
        .map(|t| {
            task_event(&task_detail(
                "c1",
                ACCOUNT,
                &format!("t{t}"),
                "RUNNING",
                1,
                true,
            ))
        })
        .chain(std::iter::once(service_event(
            "ECS Service Action",
            ACCOUNT,
            REGION,
            "c1",
            "web",
        )))
        .collect();
    let resp = handle_sqs(store.as_ref(), sqs_event(&bodies))
        .await
        .unwrap();
    assert_eq!(failed_ids(&resp), vec!["m0", "m1", "m2", "m3", "m4"]);
}

/// The sample events shipped in events/ go through the real handler.
#[tokio::test]
async fn sample_events_behave_as_documented() {
    let (_etcd, store) = etcd_store().await;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../events");
    // file -> message ids expected to fail
    let expected: &[(&str, &[&str])] = &[
        ("sqs-task-state-change.json", &[]),
        ("sqs-task-state-change-short-arn.json", &[]),
        ("sqs-instance-state-change.json", &[]),
        ("sqs-duplicate.json", &[]),
        ("sqs-out-of-order.json", &[]),
        ("sqs-service-action.json", &[]),
        ("sqs-deployment-state-change.json", &[]),
        (
            "sqs-malformed.json",
            &["malformed-1", "malformed-2", "malformed-3"],
        ),
    ];
    for (file, failures) in expected {
        let text =
            std::fs::read_to_string(dir.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        let event = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{file}: {e}"));
        let resp = handle_sqs(store.as_ref(), event).await.unwrap();
        assert_eq!(failed_ids(&resp), failures.to_vec(), "{file}");
    }
    // The out-of-order pair leaves the newer version.
    let page = store
        .list(&ListRequest {
            kind: Kind::Task,
            cluster: ClusterScope::Named("orders".into()),
            status: None,
            start_after: None,
            limit: 100,
            revision: None,
        })
        .await
        .unwrap();
    let ooo = page
        .records
        .iter()
        .find(|r| r.key.id == "5f0c8e1d9a2b4c3d8e7f6a5b4c3d2e1f")
        .expect("out-of-order task");
    assert_eq!(ooo.meta().unwrap().ecs_version, 9);
}
