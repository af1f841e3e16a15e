//! cluster-state-service: a live, queryable and watchable copy of the state
//! of ECS tasks and container instances. Every Lambda (`functions/*`) and
//! server mode (`server/`) is a thin main over this crate.
//!
//! The map, edges on top, arrows pointing down: a module imports only
//! modules of its own tier or below (tiers are split by `|`), and no import
//! loops (`cargo test -p css-tests --test layers` checks both):
//!
//! ```text
//! lambda      the Lambda edge: SQS event -> ingest, scheduled event -> reconcile,
//!             API Gateway request -> api (stage stripped, IAM caller attached)
//! api         the one axum Router: routes, params (query strings -> typed
//!             requests), render (records -> JSON), error (-> HTTP status)
//! setup       settings -> the parts a process runs on (store, cursor store,
//!             ECS source, account and region), for every main and server mode
//! config      settings from env/flags, logging, AWS SDK set-up, store connection
//!   |
//! query       list (filters, 5 MB pages, snapshot page tokens) and describe
//! watch       long polls over store watches; subscription cursor rules
//! ingest      messages -> events -> one guarded write per entity; records a batch
//! reconcile   the ECS API's lists and describes -> guarded upserts and deletes;
//!             records a run
//! compaction  (time, revision) checkpoints, history compacted past retention
//! backup      store snapshots streamed to S3 when due; the last good one's age
//! health      etcd members' status, the figures alarmed on, defragmentation
//!   |
//! status      what GET /v1/status answers; the last reconcile run and ingest batch
//! filter      the list filters as a value; matching a stored record
//! limits      answer sizes (5 MB) and counts
//! ecs         EcsSource: the ECS calls (aws.rs over the AWS SDK)
//! cursor      CursorStore: subscriptions (dynamodb.rs, embedded.rs), owners, quota
//! store       StateStore: record (format), keys (layout), etcd/, embedded/,
//!             shared_watch (one etcd watch per kind shared by long polls)
//!   |
//! metrics     every metric's name and meaning; recorders of plain figures; EMF export
//! events      EventBridge envelope -> a classified, validated change
//! model       Kind, Arn, ClusterId, EntityKey, Entity (ECS JSON kept verbatim)
//! ```
//!
//! Where a list request becomes a store range read: `api::list` parses the
//! query string (`api::params`) into a `query::ListQuery`; `query::list`
//! turns its cluster and status filters into one `store::ListRequest`, which
//! `store::keys::Keyspace::list_prefix` makes a key range over exactly the
//! matching records (the status index), read at one snapshot revision.
#![forbid(unsafe_code)]

pub mod api;
pub mod backup;
pub mod compaction;
pub mod config;
pub mod cursor;
pub mod ecs;
pub mod events;
pub mod filter;
pub mod health;
pub mod ingest;
pub mod lambda;
pub mod limits;
pub mod metrics;
pub mod model;
pub mod query;
pub mod reconcile;
pub mod setup;
pub mod status;
pub mod store;
pub mod watch;

#[cfg(test)]
mod testing;
