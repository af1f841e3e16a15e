use super::super::{apply, apply_batch, BatchOutcome, Describer};
use super::*;
use crate::ecs::RunScope;
use crate::events::{DEPLOYMENT_STATE_CHANGE, SERVICE_ACTION};
use crate::testing::{embedded, entity, messages, service, service_event, Ecs, ACCOUNT, REGION};

fn scope() -> RunScope {
    RunScope {
        account: ACCOUNT.into(),
        region: REGION.into(),
    }
}

async fn run(store: &dyn StateStore, ecs: &Ecs, bodies: &[String]) -> BatchOutcome {
    let scope = scope();
    let d = Describer {
        ecs,
        scope: &scope,
        members: None,
    };
    apply(store, Some(d), &messages(bodies)).await
}

fn key(cluster: &str, name: &str) -> EntityKey {
    entity(
        Kind::Service,
        &service(
            cluster,
            name,
            "ACTIVE",
            &["COMPLETED"],
            "2026-11-20T09:00:00.000Z",
        ),
    )
    .key
}

#[tokio::test]
async fn events_of_both_types_store_what_describe_services_answers() {
    let store = embedded();
    let web = service(
        "c1",
        "web",
        "ACTIVE",
        &["IN_PROGRESS", "COMPLETED"],
        "2026-11-20T10:00:00.000Z",
    );
    let ecs = Ecs::default().with_services("c1", vec![web.clone()]);
    for detail_type in [SERVICE_ACTION, DEPLOYMENT_STATE_CHANGE] {
        let out = run(
            store.as_ref(),
            &ecs,
            &[service_event(detail_type, ACCOUNT, "c1", "web")],
        )
        .await;
        assert!(out.failures.is_empty(), "{:?}", out.failures);
        assert_eq!(out.stats.describe_calls, 1);
    }
    let rec = store.get(&key("c1", "web"), None).await.unwrap().unwrap();
    let meta = rec.meta().unwrap();
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(meta.entity.get()).unwrap(),
        web,
        "every field kept"
    );
    assert_eq!(meta.status, "ACTIVE");
    assert!(meta.stamp.is_some_and(|s| s.read_time_us > 0));
}

#[tokio::test]
async fn describes_are_batched_per_cluster_ten_names_a_call() {
    let store = embedded();
    let names: Vec<String> = (0..25).map(|i| format!("s{i}")).collect();
    let svcs = |c: &str| {
        names
            .iter()
            .map(|n| service(c, n, "ACTIVE", &["COMPLETED"], "2026-11-20T09:00:00.000Z"))
            .collect()
    };
    let ecs = Ecs::default()
        .with_services("a", svcs("a"))
        .with_services("b", svcs("b"));
    let mut bodies = Vec::new();
    for n in &names {
        bodies.push(service_event(SERVICE_ACTION, ACCOUNT, "a", n));
        bodies.push(service_event(DEPLOYMENT_STATE_CHANGE, ACCOUNT, "a", n));
        bodies.push(service_event(SERVICE_ACTION, ACCOUNT, "b", n));
    }
    let out = run(store.as_ref(), &ecs, &bodies).await;
    assert!(out.failures.is_empty());
    // 25 distinct names in each of 2 clusters: 3 + 3 calls.
    assert_eq!(out.stats.describe_calls, 6);
    let asked = ecs.described_services.lock().unwrap().clone();
    assert!(asked.iter().all(|a| a.len() <= 10));
    assert_eq!(asked.iter().map(Vec::len).sum::<usize>(), 50);
    assert_eq!((out.stats.inserted, out.stats.unchanged), (50, 25));
}

#[tokio::test]
async fn other_accounts_are_acknowledged_not_described() {
    let store = embedded();
    let ecs = Ecs::default();
    let out = run(
        store.as_ref(),
        &ecs,
        &[service_event(SERVICE_ACTION, "999988887777", "c1", "web")],
    )
    .await;
    assert!(out.failures.is_empty());
    assert_eq!((out.stats.foreign, out.stats.describe_calls), (1, 0));
    // Without a describer, service events are counted as ignored.
    let out = apply_batch(
        store.as_ref(),
        &messages(&[service_event(SERVICE_ACTION, ACCOUNT, "c1", "web")]),
    )
    .await;
    assert_eq!((out.stats.ignored, out.failures.len()), (1, 0));
}

#[tokio::test]
async fn a_failed_describe_fails_exactly_its_records() {
    let store = embedded();
    let mut ecs = Ecs::default().with_services(
        "c1",
        vec![service(
            "c1",
            "web",
            "ACTIVE",
            &["COMPLETED"],
            "2026-11-20T09:00:00.000Z",
        )],
    );
    ecs.failing.push("DescribeServices");
    let bodies = [
        crate::testing::task_event(&crate::testing::task("c1", "t1", "RUNNING", 1)),
        service_event(SERVICE_ACTION, ACCOUNT, "c1", "web"),
        service_event(DEPLOYMENT_STATE_CHANGE, ACCOUNT, "c1", "web"),
    ];
    let out = run(store.as_ref(), &ecs, &bodies).await;
    let failed: Vec<usize> = out.failures.iter().map(|(i, _)| *i).collect();
    assert_eq!(failed, vec![1, 2]);
    assert!(matches!(out.failures[0].1, Failure::Describe(_)));
    assert_eq!((out.stats.describe_failures, out.stats.inserted), (2, 1));
    assert!(store.get(&key("c1", "web"), None).await.unwrap().is_none());
}

#[tokio::test]
async fn a_missing_service_is_deleted_unless_read_again_since() {
    let store = embedded();
    let ecs = Ecs::default().with_services(
        "c1",
        vec![service(
            "c1",
            "web",
            "ACTIVE",
            &["COMPLETED"],
            "2026-11-20T09:00:00.000Z",
        )],
    );
    run(
        store.as_ref(),
        &ecs,
        &[service_event(SERVICE_ACTION, ACCOUNT, "c1", "web")],
    )
    .await;
    assert!(store.get(&key("c1", "web"), None).await.unwrap().is_some());
    let gone = Ecs::default().with_services("c1", vec![]);
    let out = run(
        store.as_ref(),
        &gone,
        &[service_event(SERVICE_ACTION, ACCOUNT, "c1", "web")],
    )
    .await;
    assert_eq!((out.stats.deleted, out.failures.len()), (1, 0));
    assert!(store.get(&key("c1", "web"), None).await.unwrap().is_none());

    // A MISSING answer sent before the stored snapshot was read deletes nothing.
    let e = entity(
        Kind::Service,
        &service(
            "c1",
            "web",
            "ACTIVE",
            &["COMPLETED"],
            "2026-11-20T09:00:00.000Z",
        ),
    );
    let before = chrono::Utc::now();
    let e = e.read_at(before + chrono::Duration::seconds(1));
    store.upsert_if_newer(Upsert::event(&e)).await.unwrap();
    assert_eq!(
        delete_missing(store.as_ref(), &e.key, before)
            .await
            .unwrap(),
        Counted::Nothing
    );
    assert!(store.get(&e.key, None).await.unwrap().is_some());
}
