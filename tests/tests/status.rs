//! GET /v1/status after an ingest batch and a reconcile run, on both stores,
//! checked against openapi.yaml; and what it says when the store is down.
//! (Its own test binary: ingest records its status at most every 10 s per
//! process.)

use std::sync::Arc;
use std::time::Duration;

use css::store::{EmbeddedStore, StateStore};
use css_tests::fixtures::{sqs_event, task_detail, task_event, ACCOUNT};
use css_tests::moto::MotoServer;
use css_tests::EtcdServer;
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_reports_the_store_and_the_last_runs() {
    let etcd = EtcdServer::start();
    let moto = MotoServer::start();
    moto.seed_ecs(&json!({"clusters": {"alpha": {"instances": 1, "running": 1}}}));
    let stores: [Arc<dyn StateStore>; 2] = [
        Arc::new(EmbeddedStore::new("/ecs-css/v1/")),
        etcd.store("/ecs-css/v1/").await,
    ];
    for (n, store) in stores.into_iter().enumerate() {
        let before = css_tests::fixtures::status(store.clone()).await;
        assert_eq!(before["store"]["reachable"], true);
        assert_eq!(
            (before["reconcile"].clone(), before["ingest"].clone()),
            (Value::Null, Value::Null)
        );

        if n > 0 {
            // Ingest records its status at most every 10 s per process.
            tokio::time::sleep(css::status::INGEST_RECORD_INTERVAL).await;
        }
        let body = task_event(&task_detail("web", ACCOUNT, "t1", "RUNNING", 1, true));
        css::lambda::handle_sqs(store.as_ref(), sqs_event(&[body]))
            .await
            .expect("ingest");
        let ecs = css::reconcile::aws::AwsEcs::single_attempt(&moto.sdk_config());
        let event = json!({});
        let arn = "arn:aws:lambda:us-east-1:123456789012:function:css-reconcile";
        let setup = css::lambda::ReconcileSetup {
            members: None,
            retention: Duration::from_secs(3600),
            settings: css::reconcile::Settings::default(),
            backups: None,
            etcd_quota_bytes: 4 << 30,
        };
        let run = css::lambda::handle_scheduled_event(
            store.as_ref(),
            &ecs,
            &event,
            arn,
            "us-east-1",
            &setup,
            None,
        );
        run.await.expect("reconcile");

        let after = css_tests::fixtures::status(store.clone()).await;
        let revision: i64 = after["store"]["revision"]
            .as_str()
            .and_then(|r| r.parse().ok())
            .expect("revision");
        assert!(revision > 1, "{after}");
        assert_eq!(after["ingest"]["received"], 1, "{after}");
        assert_eq!(after["ingest"]["applied"], 1, "{after}");
        assert!(after["ingest"]["lagMaxMs"].as_u64().is_some(), "{after}");
        assert_eq!(after["reconcile"]["summary"]["inserted"], 2, "{after}");
        assert!(after["reconcile"]["time"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z')));
        // The pass: done in this run, and the last completed one.
        let pass = &after["reconcile"]["summary"]["pass"];
        assert_eq!(
            (pass["complete"].clone(), pass["clustersDone"].clone()),
            (json!(true), json!(1)),
            "{after}"
        );
        let last = &after["lastCompletedPass"];
        assert_eq!(
            (last["clusters"].clone(), last["invocations"].clone()),
            (json!(1), json!(1)),
            "{after}"
        );
        assert_eq!(last["total"]["inserted"], 2, "{after}");
        assert_eq!(last["calls"]["byOperation"]["ListTasks"], 2, "{after}");
        assert_eq!(last["calls"]["throttles"], 0, "{after}");
    }
}

#[tokio::test]
async fn status_says_when_the_store_is_unreachable() {
    let mut etcd = EtcdServer::start();
    let store = etcd.store("/ecs-css/v1/").await;
    etcd.stop();
    let v = css_tests::fixtures::status(store).await;
    assert_eq!(v["store"]["reachable"], false, "{v}");
    assert!(v["store"]["error"].as_str().is_some_and(|e| !e.is_empty()));
}
