//! Test harness shared by the integration tests and benchmarks: a real etcd
//! on loopback, fixtures, and the store conformance suite.

pub mod conformance;
pub mod etcd;
pub mod fixtures;

pub use etcd::EtcdServer;
pub mod moto;
pub mod openapi;
pub mod server;
