//! The conformance suite, run against the embedded store and a real etcd.

use std::sync::Arc;

use css::store::{EmbeddedStore, StateStore};
use css_tests::{conformance, EtcdServer};

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod embedded {
            use super::*;
            $(
                #[tokio::test]
                async fn $name() {
                    let store = EmbeddedStore::new("/ecs-css/v1/");
                    conformance::$name(&store).await;
                }
            )*
            #[tokio::test]
            async fn racing_writers() {
                let store: Arc<dyn StateStore> = Arc::new(EmbeddedStore::new("/ecs-css/v1/"));
                conformance::racing_writers(store).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn shared_watch() {
                let store: Arc<dyn StateStore> = Arc::new(EmbeddedStore::new("/ecs-css/v1/"));
                conformance::shared_watch(store).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn batched_writes() {
                let store: Arc<dyn StateStore> = Arc::new(EmbeddedStore::new("/ecs-css/v1/"));
                conformance::batched_writes(store).await;
            }
        }
        mod etcd {
            use super::*;
            $(
                #[tokio::test]
                async fn $name() {
                    let etcd = EtcdServer::start();
                    let store = etcd.store("/ecs-css/v1/").await;
                    conformance::$name(store.as_ref()).await;
                }
            )*
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn racing_writers() {
                let etcd = EtcdServer::start();
                let store: Arc<dyn StateStore> = etcd.store("/ecs-css/v1/").await;
                conformance::racing_writers(store).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn shared_watch() {
                let etcd = EtcdServer::start();
                let store: Arc<dyn StateStore> = etcd.store("/ecs-css/v1/").await;
                conformance::shared_watch(store).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn batched_writes() {
                let etcd = EtcdServer::start();
                let store: Arc<dyn StateStore> = etcd.store("/ecs-css/v1/").await;
                conformance::batched_writes(store).await;
            }
        }
    };
}

conformance!(
    version_guard,
    status_index_and_scopes,
    snapshot_pagination,
    guarded_delete,
    snapshot_guard_without_version,
    watch_from_revision,
    compaction,
    watch_progress,
);
