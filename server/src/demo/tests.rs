//! The demo fleet: its size, its events, and its services through the ingest.
use super::*;

#[test]
fn fleet_keeps_its_size_and_emits_valid_events() {
    let mut f = Fleet::new(7);
    let first: usize = f.drain_events().values().map(Vec::len).sum();
    assert_eq!(
        first,
        CLUSTERS.len() * (INSTANCES_PER_CLUSTER + TASKS_PER_CLUSTER + 3)
    );
    let mut rollouts = 0;
    for _ in 0..60 {
        f.tick();
        for m in f.drain_events().into_values().flatten() {
            let body = m.body.unwrap_or_default();
            rollouts += usize::from(body.contains("SERVICE_DEPLOYMENT_IN_PROGRESS"));
            assert!(
                css::events::parse(&body).is_ok(),
                "demo event parses: {body}"
            );
        }
    }
    for c in 0..CLUSTERS.len() {
        let live = f
            .tasks
            .iter()
            .filter(|t| t.cluster == c && t.desired == "RUNNING")
            .count();
        assert_eq!(live, TASKS_PER_CLUSTER);
    }
    assert!(rollouts > 0, "services roll out new deployments");
}

#[tokio::test]
async fn services_are_described_into_the_store_with_rollouts() {
    let store = css::store::EmbeddedStore::new("/demo/");
    let mut f = Fleet::new(11);
    apply(&store, &mut f).await;
    let mut rolling_seen = false;
    for _ in 0..60 {
        f.tick();
        apply(&store, &mut f).await;
        let q = css::query::ListQuery {
            filters: css::filter::Filters {
                rollout_state: Some("IN_PROGRESS"),
                ..css::filter::Filters::all(css::model::Kind::Service)
            },
            limit: 100,
            next_token: None,
        };
        let out = css::query::list(&store, &q)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        rolling_seen |= !out.records.is_empty();
    }
    let q = css::query::ListQuery {
        filters: css::filter::Filters::all(css::model::Kind::Service),
        limit: 100,
        next_token: None,
    };
    let all = css::query::list(&store, &q)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        all.records.len(),
        CLUSTERS.len() * 3,
        "every service of both accounts"
    );
    assert!(rolling_seen, "a rollout in progress was listed");
}
