//! Reconcile decisions over the embedded store, with an in-test ECS: what a
//! run inserts, updates, leaves and deletes, and what it must never touch.

use std::time::Duration;

use serde_json::Value;

use super::{Reconciler, RunScope, Summary};
use crate::model::Kind;
use crate::store::StateStore;
use crate::testing::{cluster_arn, embedded, entity, instance, seed, task, Ecs, ACCOUNT, REGION};

async fn run(store: &dyn StateStore, ecs: &Ecs) -> Summary {
    Reconciler {
        store,
        source: ecs,
        scope: RunScope {
            account: ACCOUNT.into(),
            region: REGION.into(),
        },
        retention: Duration::from_secs(3600),
    }
    .run()
    .await
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
