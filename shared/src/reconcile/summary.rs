//! What a reconcile run did, per kind and in all: the function's result,
//! and what the run records once (metrics, status, one log line).

use std::collections::BTreeMap;

use serde::Serialize;

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
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct KindCounts {
    pub listed: usize,
    pub described: usize,
    pub inserted: usize,
    pub updated: usize,
    pub unchanged: usize,
    pub deleted: usize,
}

impl KindCounts {
    fn add(&mut self, o: &KindCounts) {
        self.listed += o.listed;
        self.described += o.described;
        self.inserted += o.inserted;
        self.updated += o.updated;
        self.unchanged += o.unchanged;
        self.deleted += o.deleted;
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
    pub errors: Vec<RunError>,
    pub duration_ms: u64,
    pub compaction: Option<CompactionReport>,
    /// Per kind (`tasks`, `instances`, `services`).
    pub kinds: BTreeMap<&'static str, KindCounts>,
}

impl Summary {
    /// Records the run, once, wherever it ran (the Lambda, server mode):
    /// metrics (every drift counter, zeros included), the status document,
    /// and one JSON log line of its figures.
    pub async fn record(&self, store: &dyn StateStore) {
        let t = &self.total;
        let compacted_to = self.compaction.as_ref().and_then(|c| c.compacted_to);
        crate::metrics::reconcile(&crate::metrics::ReconcileFigures {
            inserted: t.inserted as u64,
            updated: t.updated as u64,
            deleted: t.deleted as u64,
            unchanged: t.unchanged as u64,
            errors: self.errors.len() as u64,
            api_calls: self.api_calls,
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
            errors = self.errors.len(),
            first_error = self.errors.first().map(ToString::to_string),
            duration_ms = self.duration_ms,
            compacted_to,
            "reconcile run"
        );
    }

    pub(super) fn add(&mut self, o: Summary) {
        for (kind, counts) in &o.kinds {
            self.kinds.entry(kind).or_default().add(counts);
        }
        self.errors.extend(o.errors);
        self.total();
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
