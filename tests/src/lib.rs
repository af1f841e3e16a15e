//! Test harness shared by the integration tests and benchmarks: a real etcd
//! on loopback, fixtures, and the store conformance suite.

pub mod boot;
pub mod cfn;
pub mod cluster;
pub mod conformance;
pub mod etcd;
pub mod fixtures;
pub mod images;

pub use cluster::EtcdCluster;
pub use etcd::EtcdServer;
pub mod moto;
pub mod openapi;
pub mod pki;
pub mod server;
pub mod throttle;

/// Runs each `async fn name(&TestServer, &OpenApi)` scenario of the calling
/// module against server mode twice: on the embedded store (module
/// `embedded`) and on a real etcd (module `etcd`).
#[macro_export]
macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let s = $crate::server::TestServer::start(None, &[]).await;
                    super::$name(&s, &$crate::openapi::OpenApi::load()).await;
                    s.server.shutdown().await.unwrap();
                }
            )*
        }
        mod etcd {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let etcd = $crate::EtcdServer::start();
                    let s = $crate::server::TestServer::start(Some(&etcd), &[]).await;
                    super::$name(&s, &$crate::openapi::OpenApi::load()).await;
                    s.server.shutdown().await.unwrap();
                }
            )*
        }
    };
}
