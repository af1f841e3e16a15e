//! What a reconcile run did, per kind and in all: the function's result,
//! and what the run records once (metrics, status, one log line).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::pass::PassState;
use super::CallFigures;
use crate::compaction::CompactionReport;
use crate::model::Kind;
use crate::store::StateStore;

#[derive(Debug, Clone, Serialize, PartialEq, Eq, thiserror::Error)]
#[error("{cluster} {operation}: {message}")]
pub struct RunError {
    pub cluster: String,
    pub operation: String,
    pub message: String,
}

/// What a run did to one kind of entity.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct KindCounts {
    pub listed: usize,
    /// Described in all: what the store lacked, and the verified slice.
    pub described: usize,
    /// Described to verify records both ECS and the store hold.
    pub verified: usize,
    pub inserted: usize,
    pub updated: usize,
    pub unchanged: usize,
    pub deleted: usize,
}

impl KindCounts {
    pub(super) fn add(&mut self, o: &KindCounts) {
        self.listed += o.listed;
        self.described += o.described;
        self.verified += o.verified;
        self.inserted += o.inserted;
        self.updated += o.updated;
        self.unchanged += o.unchanged;
        self.deleted += o.deleted;
    }
}

/// Where a pass stands (`GET /v1/status`, the run's result).
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PassProgress {
    /// When the pass started (names it).
    pub started: String,
    /// Runs (invocations) it has taken, this one included.
    pub invocations: u32,
    /// Clusters done, of all the pass lists.
    pub clusters_done: usize,
    pub clusters: usize,
    /// This run finished the pass.
    pub complete: bool,
}

impl PassProgress {
    pub(super) fn of(state: &PassState, complete: bool) -> PassProgress {
        PassProgress {
            started: state.started.clone(),
            invocations: state.invocations,
            clusters_done: state.next_cluster.min(state.clusters.len()),
            clusters: state.clusters.len(),
            complete,
        }
    }

    /// A completed pass as status keeps it: its figures over every run.
    pub(super) fn completed(&self, state: &PassState) -> serde_json::Value {
        let mut total = KindCounts::default();
        state.kinds.values().for_each(|c| total.add(c));
        serde_json::json!({
            "started": state.started,
            "finished": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "invocations": state.invocations,
            "clusters": state.clusters.len(),
            "total": total,
            "kinds": state.kinds,
            "calls": state.calls,
            "errors": state.errors,
        })
    }
}

/// What a run did: the function's result and one log line. The entity
/// counts are totals over every kind; `kinds` has them per kind.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub clusters: usize,
    /// Every kind together (listed, described, inserted, ...).
    #[serde(flatten)]
    pub total: KindCounts,
    pub api_calls: u64,
    /// The calls through the budget, by operation, and the throttles.
    pub calls: CallFigures,
    /// Where the pass stands after this run.
    pub pass: PassProgress,
    pub errors: Vec<RunError>,
    pub duration_ms: u64,
    pub compaction: Option<CompactionReport>,
    /// Per kind (`tasks`, `instances`, `services`).
    pub kinds: BTreeMap<&'static str, KindCounts>,
    /// Each member account and Region's pass (README "Organizations").
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<super::fleet::MemberRun>,
    /// Records of former members deleted (`PurgeFormerMembers`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub purged: Option<usize>,
}

impl Summary {
    /// Records the run, once, wherever it ran (the Lambda, server mode):
    /// metrics (every drift counter, zeros included), the status document,
    /// and one JSON log line of its figures.
    pub async fn record(&self, store: &dyn StateStore) {
        // The metrics count every member's pass too (drift anywhere alarms).
        let mut t = self.total;
        let mut calls = self.calls.clone();
        let mut api_calls = self.api_calls;
        for m in &self.members {
            t.add(&m.summary.total);
            calls.add(&m.summary.calls);
            api_calls += m.summary.api_calls;
        }
        let compacted_to = self.compaction.as_ref().and_then(|c| c.compacted_to);
        crate::metrics::reconcile(&crate::metrics::ReconcileFigures {
            inserted: t.inserted as u64,
            updated: t.updated as u64,
            deleted: t.deleted as u64,
            unchanged: t.unchanged as u64,
            errors: self.errors.len() as u64,
            api_calls,
            calls: calls.by_operation,
            throttles: calls.throttles,
            clusters_done: self.pass.clusters_done as u64,
            clusters: self.pass.clusters as u64,
            pass_complete: self.pass.complete,
            duration_ms: self.duration_ms,
            compacted_to,
        });
        crate::status::record_reconcile(store, serde_json::to_value(self).unwrap_or_default())
            .await;
        tracing::info!(
            clusters = self.clusters,
            listed = t.listed,
            described = t.described,
            inserted = t.inserted,
            updated = t.updated,
            unchanged = t.unchanged,
            deleted = t.deleted,
            api_calls = self.api_calls,
            throttles = self.calls.throttles,
            pass_started = %self.pass.started,
            clusters_done = self.pass.clusters_done,
            pass_complete = self.pass.complete,
            errors = self.errors.len(),
            first_error = self.errors.first().map(ToString::to_string),
            duration_ms = self.duration_ms,
            compacted_to,
            "reconcile run"
        );
    }

    /// Counts `f` for `kind`; totals follow.
    pub(super) fn count(&mut self, kind: Kind, f: impl FnOnce(&mut KindCounts)) {
        f(self.kinds.entry(kind.plural()).or_default());
        self.total();
    }

    fn total(&mut self) {
        let mut t = KindCounts::default();
        self.kinds.values().for_each(|c| t.add(c));
        self.total = t;
    }

    pub(super) fn error(&mut self, cluster: &str, operation: &str, message: impl ToString) {
        self.errors.push(RunError {
            cluster: cluster.to_string(),
            operation: operation.to_string(),
            message: message.to_string(),
        });
    }
}
