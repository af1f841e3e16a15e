//! Reconcile decisions over the embedded store, with an in-test ECS: what a
//! run inserts, updates, leaves and deletes, and what it must never touch.

use std::cell::Cell;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use super::{BudgetSettings, Reconciler, RunScope, Settings, Summary};
use crate::model::Kind;
use crate::store::StateStore;
use crate::testing::{cluster_arn, embedded, entity, instance, seed, task, Ecs, ACCOUNT, REGION};

const HOUR: Duration = Duration::from_secs(3600);

thread_local! {
    /// The verification marks' clock of this test (each test has a thread).
    static CLOCK_MS: Cell<u64> = const { Cell::new(1_000_000) };
}

fn test_now() -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(CLOCK_MS.with(Cell::get))
}

fn advance(d: Duration) {
    CLOCK_MS.with(|c| c.set(c.get() + d.as_millis() as u64));
}

fn settings(horizon: Duration) -> Settings {
    Settings {
        budget: BudgetSettings {
            calls_per_second: 1000.0,
            burst: 1000.0,
        },
        verify_horizon: horizon,
        now: test_now,
    }
}

fn reconciler<'a>(store: &'a dyn StateStore, ecs: &'a Ecs, horizon: Duration) -> Reconciler<'a> {
    Reconciler {
        store,
        source: ecs,
        scope: RunScope {
            account: ACCOUNT.into(),
            region: REGION.into(),
        },
        retention: HOUR,
        settings: settings(horizon),
    }
}

/// A pass that describes everything (a zero horizon): what every pass
/// converges to, whatever it slices.
async fn run(store: &dyn StateStore, ecs: &Ecs) -> Summary {
    reconciler(store, ecs, Duration::ZERO).run().await
}

/// The stored ECS version of a task, if the task is stored.
async fn version(store: &dyn StateStore, detail: &Value) -> Option<u64> {
    let key = entity(Kind::Task, detail).key;
    let rec = store
        .get(&key, None)
        .await
        .unwrap_or_else(|e| panic!("{e}"))?;
    Some(rec.meta().unwrap_or_else(|e| panic!("{e}")).ecs_version)
}

#[tokio::test]
async fn a_first_run_inserts_everything_and_a_second_changes_nothing() {
    let s = embedded();
    let ecs = Ecs::default()
        .with(
            "web",
            vec![
                task("web", "t1", "RUNNING", 1),
                task("web", "t2", "STOPPED", 3),
            ],
            vec![instance("web", "i1", "ACTIVE", 2)],
        )
        .with("batch", vec![task("batch", "t3", "PENDING", 1)], vec![]);
    let first = run(s.as_ref(), &ecs).await;
    assert_eq!(first.errors, vec![]);
    assert_eq!(
        (first.clusters, first.total.listed, first.total.described),
        (2, 4, 4)
    );
    assert_eq!(
        (
            first.total.inserted,
            first.total.updated,
            first.total.deleted
        ),
        (4, 0, 0)
    );
    assert!(first.api_calls >= 7, "calls counted: {first:?}");
    assert!(first.compaction.is_some());
    let second = run(s.as_ref(), &ecs).await;
    assert_eq!((second.total.inserted, second.total.updated), (0, 0));
    assert_eq!((second.total.unchanged, second.total.deleted), (4, 0));
}

#[tokio::test]
async fn newer_versions_update_and_older_ones_never_regress() {
    let s = embedded();
    seed(
        s.as_ref(),
        Kind::Task,
        &[
            task("web", "t1", "PENDING", 1),
            task("web", "t2", "STOPPED", 5),
        ],
    )
    .await;
    // ECS answers t1 newer than stored, and t2 older (an event was faster).
    let (t1, t2) = (
        task("web", "t1", "RUNNING", 2),
        task("web", "t2", "RUNNING", 4),
    );
    let ecs = Ecs::default().with("web", vec![t1.clone(), t2.clone()], vec![]);
    let sum = run(s.as_ref(), &ecs).await;
    assert_eq!(
        (sum.total.updated, sum.total.unchanged, sum.total.deleted),
        (1, 1, 0)
    );
    assert_eq!(version(s.as_ref(), &t1).await, Some(2));
    assert_eq!(version(s.as_ref(), &t2).await, Some(5));
}

#[tokio::test]
async fn records_ecs_no_longer_lists_are_deleted() {
    let s = embedded();
    let (kept, gone) = (
        task("web", "t1", "RUNNING", 1),
        task("web", "t2", "RUNNING", 1),
    );
    seed(s.as_ref(), Kind::Task, &[kept.clone(), gone.clone()]).await;
    seed(
        s.as_ref(),
        Kind::Instance,
        &[instance("web", "i9", "ACTIVE", 1)],
    )
    .await;
    let ecs = Ecs::default().with("web", vec![kept.clone()], vec![]);
    let sum = run(s.as_ref(), &ecs).await;
    assert_eq!((sum.total.unchanged, sum.total.deleted), (1, 2));
    assert_eq!(version(s.as_ref(), &kept).await, Some(1));
    assert_eq!(version(s.as_ref(), &gone).await, None);
}

#[tokio::test]
async fn a_failed_listing_keeps_every_record_of_that_cluster() {
    for failing in ["ListTasks", "ListContainerInstances"] {
        let s = embedded();
        let old = task("web", "t-old", "RUNNING", 1);
        seed(s.as_ref(), Kind::Task, std::slice::from_ref(&old)).await;
        let mut ecs = Ecs::default().with("web", vec![task("web", "t1", "RUNNING", 1)], vec![]);
        ecs.failing = vec![failing];
        let sum = run(s.as_ref(), &ecs).await;
        assert_eq!(sum.total.deleted, 0, "{failing}");
        assert_eq!(version(s.as_ref(), &old).await, Some(1), "{failing}");
        assert!(
            sum.errors
                .iter()
                .any(|e| e.operation == failing && e.cluster == cluster_arn("web")),
            "{failing}: {:?}",
            sum.errors
        );
    }
}

#[tokio::test]
async fn a_failed_describe_is_an_error_and_deletes_nothing_it_listed() {
    let s = embedded();
    let i1 = instance("web", "i1", "ACTIVE", 1);
    seed(s.as_ref(), Kind::Instance, std::slice::from_ref(&i1)).await;
    let mut ecs = Ecs::default().with("web", vec![task("web", "t1", "RUNNING", 1)], vec![i1]);
    ecs.failing = vec!["DescribeContainerInstances"];
    let sum = run(s.as_ref(), &ecs).await;
    assert_eq!((sum.total.inserted, sum.total.deleted), (1, 0));
    assert_eq!(sum.errors.len(), 1, "{:?}", sum.errors);
    assert_eq!(sum.errors[0].operation, "DescribeContainerInstances");
}

#[tokio::test]
async fn a_failed_cluster_listing_is_one_error_and_touches_nothing() {
    let s = embedded();
    let t = task("web", "t1", "RUNNING", 1);
    seed(s.as_ref(), Kind::Task, std::slice::from_ref(&t)).await;
    let ecs = Ecs {
        failing: vec!["ListClusters"],
        ..Ecs::default()
    };
    let sum = run(s.as_ref(), &ecs).await;
    assert_eq!(sum.errors.len(), 1);
    assert_eq!(
        (
            sum.errors[0].cluster.as_str(),
            sum.errors[0].operation.as_str()
        ),
        ("*", "ListClusters")
    );
    assert_eq!(version(s.as_ref(), &t).await, Some(1));
}

#[tokio::test]
async fn vanished_clusters_are_purged_only_in_the_runs_account_and_region() {
    let s = embedded();
    let ours = task("gone", "t1", "RUNNING", 1);
    let mut theirs = ours.clone();
    let other =
        |v: &Value| Value::String(v.as_str().unwrap_or("").replace(ACCOUNT, "999988887777"));
    for field in ["taskArn", "clusterArn", "containerInstanceArn"] {
        theirs[field] = other(&theirs[field]);
    }
    seed(s.as_ref(), Kind::Task, &[ours.clone(), theirs.clone()]).await;
    let ecs = Ecs::default().with("web", vec![], vec![]);
    let sum = run(s.as_ref(), &ecs).await;
    assert_eq!(sum.total.deleted, 1);
    assert_eq!(version(s.as_ref(), &ours).await, None);
    assert_eq!(version(s.as_ref(), &theirs).await, Some(1));
}

#[tokio::test]
async fn an_event_written_during_the_run_survives_the_delete_phase() {
    // Stored before the run (so in its snapshot), not listed by ECS, and
    // changed by an event while the run lists: the newer event wins.
    let s = embedded();
    seed(
        s.as_ref(),
        Kind::Task,
        &[task("web", "t-late", "PENDING", 1)],
    )
    .await;
    let late = task("web", "t-late", "RUNNING", 2);
    let ecs = Ecs::default().with("web", vec![task("web", "t1", "RUNNING", 1)], vec![]);
    *ecs.mid_run.lock().unwrap_or_else(|e| e.into_inner()) = Some((s.clone(), late.clone()));
    let sum = run(s.as_ref(), &ecs).await;
    assert_eq!((sum.total.inserted, sum.total.deleted), (1, 0), "{sum:?}");
    assert_eq!(version(s.as_ref(), &late).await, Some(2));
}

#[tokio::test]
async fn services_are_listed_described_ten_a_call_and_deleted_when_gone() {
    let s = embedded();
    let svc = |n: &str| {
        crate::testing::service(
            "web",
            n,
            "ACTIVE",
            &["COMPLETED"],
            "2026-11-20T09:00:00.000Z",
        )
    };
    let names: Vec<String> = (0..12).map(|i| format!("s{i}")).collect();
    let ecs = Ecs::default().with_services("web", names.iter().map(|n| svc(n)).collect());
    let first = run(s.as_ref(), &ecs).await;
    assert_eq!(first.errors, vec![]);
    let services = first.kinds["services"];
    assert_eq!(
        (services.listed, services.described, services.inserted),
        (12, 12, 12)
    );
    assert_eq!(first.total.inserted, 12, "totals include services");
    let asked = ecs.described_services.lock().unwrap().clone();
    assert_eq!(asked.iter().map(Vec::len).collect::<Vec<_>>(), vec![10, 2]);

    // One service rolls out a new deployment, one is deleted.
    let mut fewer: Vec<Value> = names[1..].iter().map(|n| svc(n)).collect();
    fewer[0] = crate::testing::service(
        "web",
        "s1",
        "ACTIVE",
        &["IN_PROGRESS", "COMPLETED"],
        "2026-11-20T10:00:00.000Z",
    );
    let ecs = Ecs::default().with_services("web", fewer);
    let second = run(s.as_ref(), &ecs).await;
    let services = second.kinds["services"];
    assert_eq!(
        (services.updated, services.deleted, services.unchanged),
        (1, 1, 10)
    );
    let gone = entity(Kind::Service, &svc("s0")).key;
    assert!(s.get(&gone, None).await.unwrap().is_none());
}

#[tokio::test]
async fn a_failed_service_listing_deletes_no_service() {
    let s = embedded();
    let svc = crate::testing::service(
        "web",
        "api",
        "ACTIVE",
        &["COMPLETED"],
        "2026-11-20T09:00:00.000Z",
    );
    run(
        s.as_ref(),
        &Ecs::default().with_services("web", vec![svc.clone()]),
    )
    .await;
    let mut ecs = Ecs::default().with_services("web", vec![]);
    ecs.failing.push("ListServices");
    let out = run(s.as_ref(), &ecs).await;
    assert_eq!(out.errors.len(), 1);
    assert_eq!(out.total.deleted, 0);
    assert!(s
        .get(&entity(Kind::Service, &svc).key, None)
        .await
        .unwrap()
        .is_some());
}

fn tasks(cluster: &str, n: usize, version: u64) -> Vec<Value> {
    (0..n)
        .map(|i| task(cluster, &format!("t{i:03}"), "RUNNING", version))
        .collect()
}

/// Every stored task record.
async fn task_records(store: &dyn StateStore) -> Vec<crate::store::StoredRecord> {
    let req = crate::store::ListRequest {
        kind: Kind::Task,
        cluster: crate::store::ClusterScope::All,
        status: None,
        start_after: None,
        limit: 100_000,
        revision: None,
    };
    store
        .list(&req)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .records
}

/// Every stored task as (id, version).
async fn stored(store: &dyn StateStore) -> Vec<(String, u64)> {
    let meta = |r: &crate::store::StoredRecord| r.meta().map(|m| m.ecs_version).unwrap_or(0);
    let records = task_records(store).await;
    records
        .iter()
        .map(|r| (r.key.id.clone(), meta(r)))
        .collect()
}

#[tokio::test]
async fn a_converged_pass_lists_and_verifies_only_its_slice() {
    let s = embedded();
    let ecs = Ecs::default().with("web", tasks("web", 240, 1), vec![]);
    let first = reconciler(s.as_ref(), &ecs, HOUR).run().await;
    assert_eq!((first.total.inserted, first.total.verified), (240, 0));
    // Five minutes later: a twelfth of the hour's verification, 20 tasks
    // (one DescribeTasks), and no write.
    advance(Duration::from_secs(300));
    let before = revisions(s.as_ref()).await;
    let second = reconciler(s.as_ref(), &ecs, HOUR).run().await;
    assert!(second.errors.is_empty(), "{:?}", second.errors);
    let t = second.kinds["tasks"];
    assert_eq!((t.listed, t.described, t.verified), (240, 20, 20));
    assert_eq!((t.inserted, t.updated, t.unchanged), (0, 0, 20));
    assert_eq!(second.calls.by_operation["DescribeTasks"], 1);
    assert_eq!(
        second.calls.by_operation["ListTasks"], 4,
        "3 RUNNING pages + 1 STOPPED"
    );
    assert_eq!(
        before,
        revisions(s.as_ref()).await,
        "a verified record was rewritten"
    );
}

/// Every stored task's mod_revision.
async fn revisions(store: &dyn StateStore) -> Vec<(String, i64)> {
    let records = task_records(store).await;
    records
        .iter()
        .map(|r| (r.key.id.clone(), r.mod_revision))
        .collect()
}

#[tokio::test]
async fn a_stale_record_is_corrected_within_the_horizon() {
    let s = embedded();
    let old = Ecs::default().with("web", tasks("web", 120, 1), vec![]);
    reconciler(s.as_ref(), &old, HOUR).run().await;
    // ECS moves one task on; its event is lost.
    let mut now = tasks("web", 120, 1);
    now[77] = task("web", "t077", "STOPPED", 2);
    let ecs = Ecs::default().with("web", now, vec![]);
    let mut passes = 0;
    while passes < 12 {
        advance(Duration::from_secs(300));
        reconciler(s.as_ref(), &ecs, HOUR).run().await;
        passes += 1;
        if stored(s.as_ref()).await.contains(&("t077".into(), 2)) {
            break;
        }
    }
    assert!(
        stored(s.as_ref()).await.contains(&("t077".into(), 2)),
        "not corrected in an hour of passes"
    );
    assert!(passes > 1, "found at once: the slice was not a slice");
}

#[tokio::test]
async fn a_cluster_that_looks_wrong_is_described_whole() {
    let s = embedded();
    let old = Ecs::default().with("web", tasks("web", 100, 1), vec![]);
    reconciler(s.as_ref(), &old, HOUR).run().await;
    // 20 of 100 tasks gone from the store (more than a tenth): every one
    // of the other 80 is described again in the same pass.
    let mut now = tasks("web", 100, 2);
    now.truncate(100);
    for t in &tasks("web", 100, 1)[..20] {
        let key = entity(Kind::Task, t).key;
        let rec = s.get(&key, None).await.unwrap_or_else(|e| panic!("{e}"));
        let rev = rec.map_or(0, |r| r.mod_revision);
        s.delete_if_unchanged(&key, rev)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let ecs = Ecs::default().with("web", now, vec![]);
    advance(Duration::from_secs(60));
    let sum = reconciler(s.as_ref(), &ecs, HOUR).run().await;
    let t = sum.kinds["tasks"];
    assert_eq!((t.inserted, t.verified, t.updated), (20, 80, 80));
    assert!(stored(s.as_ref()).await.iter().all(|(_, v)| *v == 2));
}

#[tokio::test(start_paused = true)]
async fn a_pass_paused_at_its_deadline_resumes_and_converges_like_one_run() {
    // 3 clusters of 250 tasks and 20 extra records; a budget of 5 calls a
    // second and a deadline a second after each run starts (simulated time).
    let fleet = |ecs: Ecs| {
        ["a", "b", "c"]
            .iter()
            .fold(ecs, |e, c| e.with(c, tasks(c, 250, 3), vec![]))
    };
    let ecs = fleet(Ecs::default());
    let extra: Vec<Value> = tasks("b", 270, 1)[250..].to_vec();
    let slow = Settings {
        budget: BudgetSettings {
            calls_per_second: 5.0,
            burst: 5.0,
        },
        ..settings(HOUR)
    };
    let paused = embedded();
    seed(paused.as_ref(), Kind::Task, &extra).await;
    let mut runs = Vec::new();
    loop {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
        let r = Reconciler {
            settings: slow,
            ..reconciler(paused.as_ref(), &ecs, HOUR)
        };
        let sum = r.run_until(Some(deadline)).await;
        assert!(sum.errors.is_empty(), "{:?}", sum.errors);
        let done = sum.pass.complete;
        runs.push(sum);
        if done || runs.len() > 50 {
            break;
        }
    }
    assert!(
        runs.len() >= 3,
        "{} runs: the deadline never paused it",
        runs.len()
    );
    let last = runs.last().map(|r| r.pass.clone()).unwrap_or_default();
    assert!(last.complete && last.invocations as usize == runs.len());
    // Every run kept to the budget: calls <= burst + rate * its time.
    for r in &runs {
        let allowed = 5.0 + 5.0 * (r.duration_ms as f64 / 1000.0);
        assert!(r.calls.total() as f64 <= allowed + 1.0, "{:?}", r.calls);
    }
    let whole = embedded();
    seed(whole.as_ref(), Kind::Task, &extra).await;
    let one = reconciler(whole.as_ref(), &ecs, HOUR).run().await;
    assert!(one.pass.complete && one.pass.invocations == 1);
    let (a, b) = (stored(paused.as_ref()).await, stored(whole.as_ref()).await);
    assert_eq!(a.len(), 750);
    assert_eq!(a, b);
    let deleted: usize = runs.iter().map(|r| r.total.deleted).sum();
    assert_eq!(deleted, 20);
}

#[tokio::test(start_paused = true)]
async fn a_slice_cut_by_the_deadline_is_finished_by_the_next_run() {
    // 600 tasks all in the store; the whole of them verified (a zero
    // horizon) at 5 calls a second, a run a second long: the slice is cut
    // and each task is still described exactly once in the pass.
    let s = embedded();
    seed(s.as_ref(), Kind::Task, &tasks("web", 600, 1)).await;
    // One moved on in ECS, its event lost.
    let mut moved = tasks("web", 600, 1);
    moved[599] = task("web", "t599", "STOPPED", 2);
    let ecs_now = Ecs::default().with("web", moved, vec![]);
    let slow = Settings {
        budget: BudgetSettings {
            calls_per_second: 5.0,
            burst: 1.0,
        },
        ..settings(Duration::ZERO)
    };
    let (mut verified, mut runs) = (0, 0);
    loop {
        let deadline = tokio::time::Instant::now() + Duration::from_millis(1100);
        let r = Reconciler {
            settings: slow,
            ..reconciler(s.as_ref(), &ecs_now, Duration::ZERO)
        };
        let sum = r.run_until(Some(deadline)).await;
        assert!(sum.errors.is_empty(), "{:?}", sum.errors);
        verified += sum.kinds.get("tasks").map_or(0, |k| k.verified);
        runs += 1;
        if sum.pass.complete || runs > 20 {
            break;
        }
    }
    assert!(runs >= 3, "{runs} runs: never cut");
    assert_eq!(verified, 600, "each task once in the pass");
    assert!(stored(s.as_ref()).await.contains(&("t599".into(), 2)));
}

#[tokio::test(start_paused = true)]
async fn a_run_that_dies_mid_pass_is_continued_safely_by_the_next() {
    // A run dropped at arbitrary points (a crash: nothing saved at the
    // moment it died) and then runs to the pass's end: the same store as
    // one uninterrupted pass, every extra record deleted exactly once.
    let fleet = ["a", "b", "c"]
        .iter()
        .fold(Ecs::default(), |e, c| e.with(c, tasks(c, 250, 3), vec![]));
    let extra: Vec<Value> = tasks("b", 270, 1)[250..].to_vec();
    let slow = Settings {
        budget: BudgetSettings {
            calls_per_second: 5.0,
            burst: 1.0,
        },
        ..settings(HOUR)
    };
    let crashed = embedded();
    seed(crashed.as_ref(), Kind::Task, &extra).await;
    let r = || Reconciler {
        settings: slow,
        ..reconciler(crashed.as_ref(), &fleet, HOUR)
    };
    for died_after in [1700, 2300, 900] {
        let dying = r();
        let cut = tokio::time::timeout(Duration::from_millis(died_after), dying.run()).await;
        assert!(cut.is_err(), "the run finished before it was cut");
    }
    let last = r().run().await;
    assert!(last.errors.is_empty(), "{:?}", last.errors);
    // It went on with the pass the dead runs saved (a run counts once a
    // checkpoint of it was saved), not a new one.
    assert!(
        last.pass.complete && last.pass.invocations >= 2,
        "{:?}",
        last.pass
    );
    let whole = embedded();
    seed(whole.as_ref(), Kind::Task, &extra).await;
    reconciler(whole.as_ref(), &fleet, HOUR).run().await;
    assert_eq!(stored(crashed.as_ref()).await, stored(whole.as_ref()).await);
    assert_eq!(stored(crashed.as_ref()).await.len(), 750);
}
