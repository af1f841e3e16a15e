//! Reconcile passes on moto's ECS (the real SDK, one attempt per call) and
//! a real etcd: a pass cut by short deadlines goes on in the next
//! invocation and ends where one uninterrupted pass ends; a throttling ECS
//! slows a pass down without failing it.

use std::sync::atomic::Ordering;
use std::time::Duration;

use css::ecs::aws::AwsEcs;
use css::lambda::{handle_scheduled_event, ReconcileSetup};
use css::model::Kind;
use css::reconcile::{BudgetSettings, Reconciler, RunScope, Settings, Summary};
use css::store::StateStore;
use css_tests::fixtures::task_detail;
use css_tests::moto::{sdk_config_at, MotoServer};
use css_tests::throttle::ThrottlingProxy;
use css_tests::EtcdServer;
use serde_json::{json, Value};

const ACCOUNT: &str = "123456789012";
const REGION: &str = "us-east-1";
const FUNCTION: &str = "arn:aws:lambda:us-east-1:123456789012:function:css-reconcile";

fn settings(calls_per_second: f64) -> Settings {
    Settings {
        budget: BudgetSettings {
            calls_per_second,
            burst: calls_per_second,
        },
        ..Settings::default()
    }
}

/// Every record of every kind: (kind, id, the record's JSON).
async fn contents(store: &dyn StateStore) -> Vec<(Kind, String, String)> {
    let records = css_tests::fixtures::all_records(store).await;
    let raw = |r: &css::store::StoredRecord| r.meta().expect("record").entity.get().to_string();
    let mut out: Vec<_> = (records.iter())
        .map(|r| (r.key.kind, r.key.id.clone(), raw(r)))
        .collect();
    out.sort();
    out
}

/// Tasks ECS does not have, in a cluster it has: the store's drift.
async fn seed_extra(store: &dyn StateStore) {
    let bodies: Vec<String> = (0..15)
        .map(|i| {
            let d = task_detail("alpha", ACCOUNT, &format!("ghost{i}"), "RUNNING", 1, true);
            // In moto's region, where the run reads.
            let d = d.to_string().replace(css_tests::fixtures::REGION, REGION);
            css_tests::fixtures::task_event(&serde_json::from_str(&d).expect("JSON"))
        })
        .collect();
    let out = css::ingest::apply_batch(store, &css_tests::fixtures::messages(&bodies)).await;
    assert!(out.failures.is_empty(), "{:?}", out.failures);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pass_cut_by_deadlines_resumes_and_ends_like_one_uninterrupted_pass() {
    let moto = MotoServer::start();
    moto.seed_ecs(&json!({"clusters": {
        "alpha": {"instances": 2, "running": 160, "stopped": 30},
        "bravo": {"instances": 1, "running": 120},
        "charlie": {"instances": 1, "running": 40, "stopped": 10}
    }}));
    let etcd = EtcdServer::start();
    let source = AwsEcs::single_attempt(&moto.sdk_config());
    let (cut, whole) = (etcd.store("/cut/").await, etcd.store("/whole/").await);
    seed_extra(cut.as_ref()).await;
    seed_extra(whole.as_ref()).await;

    // The scheduled function, its invocations 250 ms long at 20 calls a
    // second and a burst of 2 (about 6 calls each): the pass takes several.
    let setup = ReconcileSetup {
        members: None,
        retention: Duration::from_secs(3600),
        settings: Settings {
            budget: BudgetSettings {
                calls_per_second: 20.0,
                burst: 2.0,
            },
            ..Settings::default()
        },
        backups: None,
        etcd_quota_bytes: 4 << 30,
    };
    let mut runs: Vec<Value> = Vec::new();
    while runs.len() < 30 {
        let deadline = tokio::time::Instant::now() + Duration::from_millis(250);
        let event = json!({"id": format!("run-{}", runs.len())});
        let out = handle_scheduled_event(
            cut.as_ref(),
            &source,
            &event,
            FUNCTION,
            REGION,
            &setup,
            Some(deadline),
        )
        .await
        .expect("a run without errors");
        let complete = out["pass"]["complete"] == true;
        if runs.is_empty() {
            // Status shows the pass under way, the last completed none yet.
            let st = css_tests::fixtures::status(cut.clone()).await;
            let pass = &st["reconcile"]["summary"]["pass"];
            assert_eq!(pass["complete"], false, "{st}");
            assert_eq!(pass["clusters"], 3, "{st}");
            assert!(pass["clustersDone"].as_u64() < Some(3), "{st}");
            assert_eq!(st["lastCompletedPass"], Value::Null, "{st}");
        }
        runs.push(out);
        if complete {
            break;
        }
    }
    let last = runs.last().cloned().unwrap_or_default();
    assert_eq!(last["pass"]["complete"], true, "{last}");
    assert!(runs.len() >= 3, "{} runs: never paused", runs.len());
    assert_eq!(last["pass"]["invocations"], runs.len());
    let mut done = vec![json!(0)];
    done.extend(runs.iter().map(|r| r["pass"]["clustersDone"].clone()));
    println!("{} runs; clusters done after each: {done:?}", runs.len());
    // A run that finished no cluster paused inside one (mid-listing or
    // mid-describe) and the next went on from there.
    assert!(done.windows(2).any(|w| w[0] == w[1]), "{done:?}");
    // One pass: each invocation went on where the last stopped.
    let started: Vec<&Value> = runs.iter().map(|r| &r["pass"]["started"]).collect();
    assert!(started.iter().all(|s| *s == started[0]), "{started:?}");

    let one: Summary = Reconciler {
        store: whole.as_ref(),
        source: &source,
        scope: RunScope {
            account: ACCOUNT.into(),
            region: REGION.into(),
        },
        retention: Duration::from_secs(3600),
        settings: settings(1000.0),
    }
    .run()
    .await;
    assert!(one.errors.is_empty(), "{:?}", one.errors);
    assert!(one.pass.complete && one.pass.invocations == 1);

    let (a, b) = (contents(cut.as_ref()).await, contents(whole.as_ref()).await);
    assert_eq!(a.len(), 4 + 360, "instances + tasks, no ghost left");
    assert!(a == b, "the cut pass and the whole one differ");
    let st = css_tests::fixtures::status(cut.clone()).await;
    let done = &st["lastCompletedPass"];
    assert_eq!(done["invocations"], runs.len(), "{st}");
    assert_eq!(done["total"]["inserted"], 364, "{st}");
    assert_eq!(done["total"]["deleted"], 15, "{st}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttling_ecs_slows_the_pass_without_failing_it() {
    let moto = MotoServer::start();
    moto.seed_ecs(&json!({"clusters": {
        "alpha": {"instances": 1, "running": 150},
        "bravo": {"instances": 1, "running": 50}
    }}));
    let etcd = EtcdServer::start();
    // Every third request through the proxy is refused.
    let proxy = ThrottlingProxy::start(&moto.endpoint(), 3).await;
    let throttled_source = AwsEcs::single_attempt(&sdk_config_at(&proxy.endpoint));
    let plain_source = AwsEcs::single_attempt(&moto.sdk_config());
    let run = |store, source| async move {
        let r = Reconciler {
            store,
            source,
            scope: RunScope {
                account: ACCOUNT.into(),
                region: REGION.into(),
            },
            retention: Duration::from_secs(3600),
            settings: settings(20.0),
        };
        r.run().await
    };
    let (a, b) = (etcd.store("/throttled/").await, etcd.store("/plain/").await);
    let slow = run(a.as_ref(), &throttled_source).await;
    let fast = run(b.as_ref(), &plain_source).await;
    assert!(slow.errors.is_empty(), "{:?}", slow.errors);
    assert!(slow.pass.complete);
    let refused = proxy.throttled.load(Ordering::SeqCst);
    assert!(refused >= 3, "{refused}");
    assert_eq!(slow.calls.throttles, refused, "{:?}", slow.calls);
    // Each refusal was paid for and retried: the calls ECS saw are the
    // plain pass's plus the refused ones.
    assert_eq!(slow.calls.total(), fast.calls.total() + refused);
    assert_eq!(
        slow.calls.total(),
        proxy.forwarded.load(Ordering::SeqCst) + refused
    );
    // The rate was cut (halved per refusal, a little back per success).
    assert!(slow.calls.rate < 20.0, "{:?}", slow.calls);
    assert!(
        slow.duration_ms > fast.duration_ms,
        "{} ms throttled, {} ms not",
        slow.duration_ms,
        fast.duration_ms
    );
    assert_eq!(contents(a.as_ref()).await, contents(b.as_ref()).await);
}
