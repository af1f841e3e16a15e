//! The conformance suite: one list of scenarios, run against the embedded
//! store, a real etcd (in the record format and in the legacy one), the
//! shared-watch wrapper server mode puts over etcd, and a 3-member etcd
//! cluster with mutual TLS.

use std::sync::Arc;

use css::store::{EmbeddedStore, SharedWatchStore, StateStore};
use css_tests::{conformance, EtcdCluster, EtcdServer};

/// A store under test and what keeps it alive (the etcd processes).
struct Backend {
    store: Arc<dyn StateStore>,
    _etcd: Option<EtcdServer>,
    _cluster: Option<EtcdCluster>,
}

async fn embedded() -> Backend {
    Backend {
        store: Arc::new(EmbeddedStore::new("/ecs-css/v1/")),
        _etcd: None,
        _cluster: None,
    }
}

async fn etcd() -> Backend {
    let etcd = EtcdServer::start();
    Backend {
        store: etcd.store("/ecs-css/v1/").await,
        _etcd: Some(etcd),
        _cluster: None,
    }
}

async fn shared_watch_over_etcd() -> Backend {
    let etcd = EtcdServer::start();
    Backend {
        store: Arc::new(SharedWatchStore::new(etcd.store("/ecs-css/v1/").await)),
        _etcd: Some(etcd),
        _cluster: None,
    }
}

/// etcd written in the legacy format (plain JSON, index copies): what the
/// benchmark and the upgrade test write with behaves the same.
async fn legacy_etcd() -> Backend {
    let etcd = EtcdServer::start();
    let store = (*etcd.store("/ecs-css/v1/").await).clone();
    Backend {
        store: Arc::new(store.with_format(css::store::Format::Legacy)),
        _etcd: Some(etcd),
        _cluster: None,
    }
}

/// Three members with mutual TLS, the store's client on all of them.
async fn tls_cluster() -> Backend {
    let cluster = EtcdCluster::start(3, true).await;
    Backend {
        store: cluster.store("/ecs-css/v1/").await,
        _etcd: None,
        _cluster: Some(cluster),
    }
}

/// The scenarios, each a test in the backend's module: `borrowed` ones
/// take the store by reference, `shared` ones an `Arc` (they spawn tasks).
macro_rules! scenarios {
    ($backend:ident, borrowed: [$($name:ident),*], shared: [$($arc:ident),*]) => {
        mod $backend {
            use super::*;
            $(
                #[tokio::test]
                async fn $name() {
                    let b = super::$backend().await;
                    conformance::$name(b.store.as_ref()).await;
                }
            )*
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $arc() {
                    let b = super::$backend().await;
                    conformance::$arc(b.store.clone()).await;
                }
            )*
        }
    };
}

/// The one list, run against every backend.
macro_rules! conformance {
    ($($backend:ident),*) => {
        $(
            scenarios!(
                $backend,
                borrowed: [
                    version_guard,
                    status_index_and_scopes,
                    snapshot_pagination,
                    guarded_delete,
                    snapshot_guard_without_version,
                    watch_from_revision,
                    compaction,
                    watch_progress,
                    identity_and_meta
                ],
                shared: [racing_writers, shared_watch, batched_writes]
            );
        )*
    };
}

conformance!(
    embedded,
    etcd,
    legacy_etcd,
    shared_watch_over_etcd,
    tls_cluster
);

/// Writes version `n` of one task; answers the store's revision after it.
async fn write_version(store: &dyn StateStore, n: u64) -> i64 {
    let e = css_tests::fixtures::entity(
        css::model::Kind::Task,
        &css_tests::fixtures::task_detail(
            "c",
            css_tests::fixtures::ACCOUNT,
            "t1",
            "RUNNING",
            n,
            true,
        ),
    );
    store
        .upsert_if_newer(css::store::Upsert::event(&e))
        .await
        .expect("write");
    store.current_revision().await.expect("revision")
}

/// The compaction point a process knows is confirmed, not trusted: another
/// process (the reconcile function) compacting further is found, from the
/// known point on.
#[tokio::test]
async fn the_compaction_point_follows_another_process_compacting() {
    let etcd = EtcdServer::start();
    let reconcile = etcd.store("/ecs-css/v1/").await;
    let api = etcd.store("/ecs-css/v1/").await;
    let first = write_version(reconcile.as_ref(), 1).await;
    write_version(reconcile.as_ref(), 2).await;
    assert_eq!(api.compacted_revision().await.unwrap(), 0);
    reconcile.compact(first).await.unwrap();
    assert_eq!(api.compacted_revision().await.unwrap(), first);
    assert_eq!(reconcile.compacted_revision().await.unwrap(), first);
    let mut last = first;
    for n in 3..40 {
        last = write_version(reconcile.as_ref(), n).await;
    }
    reconcile.compact(last - 1).await.unwrap();
    assert_eq!(
        api.compacted_revision().await.unwrap(),
        last - 1,
        "found past what the api process knew"
    );
    assert_eq!(reconcile.compacted_revision().await.unwrap(), last - 1);
}

/// A process that never compacted (a new API instance answering
/// `GET /v1/status`) takes the point compaction recorded and confirms it
/// with a few reads, where searching it takes one read per halving of the
/// store's revisions.
#[tokio::test]
async fn a_new_process_confirms_the_recorded_compaction_point_in_a_few_reads() {
    let etcd = EtcdServer::start();
    let reconcile = etcd.store("/ecs-css/v1/").await;
    for n in 1..=300 {
        write_version(reconcile.as_ref(), n).await;
    }
    let report = css::compaction::checkpoint_and_compact(
        reconcile.as_ref(),
        std::time::Duration::ZERO,
        std::time::SystemTime::now(),
    )
    .await
    .expect("compaction");
    let cut = report.compacted_to.expect("compacted");

    let api = etcd.store("/ecs-css/v1/").await;
    let before = etcd.ranges_served().await;
    assert_eq!(api.compacted_revision().await.unwrap(), cut);
    let with_hint = etcd.ranges_served().await - before;

    // The same question without the record: a search.
    reconcile
        .put_meta(
            css::store::COMPACTED_META,
            bytes::Bytes::from_static(b"none"),
        )
        .await
        .unwrap();
    let searching = etcd.store("/ecs-css/v1/").await;
    let before = etcd.ranges_served().await;
    assert_eq!(searching.compacted_revision().await.unwrap(), cut);
    let without = etcd.ranges_served().await - before;
    eprintln!("range reads to find the compaction point: {with_hint} from the record, {without} searching");
    assert!(
        with_hint <= 4.0,
        "{with_hint} reads with the recorded point"
    );
    assert!(without >= 8.0, "{without} reads searching 300 revisions");
}
