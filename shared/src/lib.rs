//! cluster-state-service: a live, queryable and watchable copy of the state
//! of ECS tasks and container instances.
//!
//! Layers, bottom up: `model` and `events` (pure), `store` (state stores),
//! `ingest` (SQS batches into the store), `config` (settings, logging).
#![forbid(unsafe_code)]

pub mod api;
pub mod compaction;
pub mod config;
pub mod cursor;
pub mod events;
pub mod filter;
pub mod ingest;
pub mod lambda;
pub mod model;
pub mod query;
pub mod reconcile;
pub mod store;
pub mod watch;
