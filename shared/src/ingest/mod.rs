//! SQS batch -> events -> version-guarded upserts; batch item failures.
//!
//! Records of one batch that name the same entity are collapsed: only the
//! highest version is written, and the others share its outcome (once the
//! highest is stored, a lower one is stale by definition). The distinct
//! entities go to the store in one `upsert_many`, which batches them.
//!
//! Service and deployment events carry no service state: the services they
//! name are described (`services.rs`), batched per cluster.

use std::collections::HashMap;

use serde::Serialize;

use crate::ecs::members::Members;
use crate::ecs::{EcsSource, RunScope, SourceError};
use crate::events::{self, Change, ServiceRef};
use crate::model::{ClusterId, Entity, EntityKey};
use crate::store::{StateStore, StoreError, Upsert, UpsertOutcome};

mod services;

use services::Counted;

/// Where the ingest describes the services that events name: the ECS API
/// of its own account and region, and of the members' (README
/// "Organizations") through their role; events of others are acknowledged
/// only.
#[derive(Clone, Copy)]
pub struct Describer<'a> {
    pub ecs: &'a dyn EcsSource,
    pub scope: &'a RunScope,
    pub members: Option<&'a dyn Members>,
}

impl Describer<'_> {
    /// Whether services of this cluster are described here.
    pub fn reads(&self, c: &ClusterId) -> bool {
        self.is_home(c)
            || (self.members).is_some_and(|m| m.settings().reads(self.scope, &c.account, &c.region))
    }

    /// The process's own account and Region.
    fn is_home(&self, c: &ClusterId) -> bool {
        c.account == self.scope.account && c.region == self.scope.region
    }

    /// Whether records of accounts and Regions not read here are purged
    /// (`CSS_PURGE_FORMER_MEMBERS`): then their events are not stored.
    pub fn purges_others(&self) -> bool {
        self.members.is_some_and(|m| m.settings().purge_former)
    }

    /// DescribeServices in the cluster's own account and Region.
    pub(crate) async fn describe_services(
        &self,
        c: &ClusterId,
        names: &[String],
    ) -> Result<crate::ecs::ServicesAnswer, SourceError> {
        if self.is_home(c) {
            return self.ecs.describe_services(&c.arn(), names).await;
        }
        let Some(members) = self.members.filter(|_| self.reads(c)) else {
            let message = format!("{} is not read here", c.arn());
            return Err(SourceError::new("DescribeServices", message));
        };
        let member = RunScope {
            account: c.account.clone(),
            region: c.region.clone(),
        };
        let ecs = members.source(self.scope, &member).await;
        ecs.describe_services(&c.arn(), names).await
    }
}

/// One message to apply: its id (for batch item failures) and body.
#[derive(Debug, Clone)]
pub struct Message {
    pub id: Option<String>,
    pub body: Option<String>,
}

/// Why one message was not acknowledged.
#[derive(Debug, Clone)]
pub enum Failure {
    Malformed(String),
    Store(StoreError),
    /// Describing the service failed (retried by SQS, then dead-lettered).
    Describe(SourceError),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Malformed(m) => write!(f, "malformed: {m}"),
            Failure::Store(e) => write!(f, "store: {e}"),
            Failure::Describe(e) => write!(f, "describe: {e}"),
        }
    }
}

/// Counts for one batch; logged as one line.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IngestStats {
    pub received: usize,
    pub inserted: usize,
    pub updated: usize,
    /// Duplicates and out-of-order events: acknowledged, not written.
    pub unchanged: usize,
    /// Other aws.ecs detail-types: acknowledged, not stored.
    pub ignored: usize,
    pub malformed: usize,
    pub store_failures: usize,
    /// Service events of other accounts or regions: acknowledged, not
    /// described; with former members purged, any event of theirs.
    pub foreign: usize,
    /// Service events whose describe failed (retried).
    pub describe_failures: usize,
    /// Services ECS no longer knows (MISSING), deleted from the store.
    pub deleted: usize,
    /// DescribeServices calls made (at most 10 names each, per cluster).
    pub describe_calls: usize,
    /// Applied time - event time over the acknowledged upserts: largest and
    /// median, in milliseconds (events without a time are left out).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lag_max_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lag_p50_ms: Option<u64>,
}

#[derive(Debug, Default)]
pub struct BatchOutcome {
    /// Index into the batch and the reason, for every record not acknowledged.
    pub failures: Vec<(usize, Failure)>,
    pub stats: IngestStats,
}

impl BatchOutcome {
    /// Records what the batch did, once, wherever it ran (the Lambda edge,
    /// server mode's SQS poller, the demo): metrics (every outcome, zeros
    /// included; the store errors behind failed records by kind), the
    /// status document, and one JSON log line of its figures.
    pub async fn record(&self, store: &dyn StateStore, took: std::time::Duration) {
        let s = &self.stats;
        for (_, f) in &self.failures {
            if let Failure::Store(e) = f {
                crate::metrics::store_error(e.kind());
            }
        }
        crate::metrics::ingest(&crate::metrics::IngestFigures {
            records: vec![
                ("applied", (s.inserted + s.updated) as u64),
                ("stale", s.unchanged as u64),
                ("ignored", s.ignored as u64),
                ("malformed", s.malformed as u64),
                ("failed", s.store_failures as u64),
                ("deleted", s.deleted as u64),
                ("foreign", s.foreign as u64),
                ("describe_failed", s.describe_failures as u64),
            ],
            describe_calls: s.describe_calls as u64,
            lag_max_ms: s.lag_max_ms,
            lag_p50_ms: s.lag_p50_ms,
            took,
        });
        let batch = crate::status::IngestBatch {
            received: s.received,
            applied: s.inserted + s.updated,
            lag_max_ms: s.lag_max_ms,
            lag_p50_ms: s.lag_p50_ms,
        };
        crate::status::record_ingest(store, batch).await;
        tracing::info!(
            received = s.received,
            inserted = s.inserted,
            updated = s.updated,
            unchanged = s.unchanged,
            ignored = s.ignored,
            malformed = s.malformed,
            store_failures = s.store_failures,
            foreign = s.foreign,
            deleted = s.deleted,
            describe_calls = s.describe_calls,
            describe_failures = s.describe_failures,
            lag_max_ms = s.lag_max_ms,
            lag_p50_ms = s.lag_p50_ms,
            "batch applied"
        );
    }
}

/// Applies a batch without describing services (their events are counted
/// as ignored); never fails as a whole.
pub async fn apply_batch(store: &dyn StateStore, messages: &[Message]) -> BatchOutcome {
    apply(store, None, messages).await
}

/// Applies a batch, describing the services its events name with
/// `describer`; never fails as a whole.
pub async fn apply(
    store: &dyn StateStore,
    describer: Option<Describer<'_>>,
    messages: &[Message],
) -> BatchOutcome {
    let mut out = BatchOutcome::default();
    out.stats.received = messages.len();
    let mut groups: HashMap<EntityKey, Vec<(usize, Entity)>> = HashMap::new();
    let mut times: HashMap<usize, chrono::DateTime<chrono::Utc>> = HashMap::new();
    let mut service_msgs: Vec<(usize, Vec<ServiceRef>)> = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        let Some(body) = m.body.as_deref() else {
            out.failures
                .push((i, Failure::Malformed("message has no body".into())));
            continue;
        };
        match events::parse(body) {
            Ok(Change::Upsert { entity, time }) => {
                // With former members purged, the view is the members alone:
                // other accounts' events are acknowledged and counted.
                if describer.is_some_and(|d| d.purges_others() && !d.reads(&entity.key.cluster)) {
                    out.stats.foreign += 1;
                    continue;
                }
                if let Some(t) = time {
                    times.insert(i, t);
                }
                groups
                    .entry(entity.key.clone())
                    .or_default()
                    .push((i, entity));
            }
            Ok(Change::Services { services, time }) => {
                let Some(d) = describer else {
                    out.stats.ignored += 1;
                    continue;
                };
                let services: Vec<ServiceRef> = services
                    .into_iter()
                    .filter(|s| d.reads(&s.cluster))
                    .collect();
                if services.is_empty() {
                    out.stats.foreign += 1;
                    continue;
                }
                if let Some(t) = time {
                    times.insert(i, t);
                }
                service_msgs.push((i, services));
            }
            Ok(Change::Ignored { .. }) => out.stats.ignored += 1,
            Err(e) => out.failures.push((i, Failure::Malformed(e.to_string()))),
        }
    }
    out.stats.malformed = out.failures.len();
    // One write per entity: the highest version of its group. Services are
    // described and written meanwhile (distinct keys), so a describe's round
    // trip overlaps the task and instance writes.
    let groups: Vec<Vec<(usize, Entity)>> = groups.into_values().collect();
    let newest: Vec<&Entity> = groups
        .iter()
        .filter_map(|g| g.iter().map(|(_, e)| e).max_by_key(|e| e.version))
        .collect();
    let writes: Vec<Upsert<'_>> = newest.iter().map(|e| Upsert::event(e)).collect();
    let described = async {
        match describer.filter(|_| !service_msgs.is_empty()) {
            Some(d) => Some(services::apply(store, d, &service_msgs).await),
            None => None,
        }
    };
    let (outcomes, described) = futures::join!(store.upsert_many(&writes), described);
    let results = groups
        .iter()
        .map(|g| g.iter().map(|(i, _)| *i).collect::<Vec<usize>>())
        .zip(outcomes);
    let mut applied_msgs: Vec<usize> = Vec::new();
    if let Some(done) = described {
        out.stats.describe_calls += done.calls;
        for (i, result) in done.messages {
            match result {
                Ok(counted) => {
                    applied_msgs.push(i);
                    match counted {
                        Counted::Written(UpsertOutcome::Inserted { .. }) => out.stats.inserted += 1,
                        Counted::Written(UpsertOutcome::Updated { .. }) => out.stats.updated += 1,
                        Counted::Deleted => out.stats.deleted += 1,
                        Counted::Written(UpsertOutcome::Unchanged { .. }) | Counted::Nothing => {
                            out.stats.unchanged += 1
                        }
                    }
                }
                Err(f) => {
                    match f {
                        Failure::Describe(_) => out.stats.describe_failures += 1,
                        _ => out.stats.store_failures += 1,
                    }
                    out.failures.push((i, f));
                }
            }
        }
    }

    let applied_at = chrono::Utc::now();
    let lag = |i: &usize| {
        times
            .get(i)
            .map(|t| (applied_at - *t).num_milliseconds().max(0) as u64)
    };
    let mut lags: Vec<u64> = applied_msgs.iter().filter_map(lag).collect();
    for (indexes, res) in results {
        match res {
            Ok(outcome) => {
                lags.extend(indexes.iter().filter_map(lag));
                let dupes = indexes.len() - 1;
                match outcome {
                    UpsertOutcome::Inserted { .. } => out.stats.inserted += 1,
                    UpsertOutcome::Updated { .. } => out.stats.updated += 1,
                    UpsertOutcome::Unchanged { .. } => out.stats.unchanged += 1,
                }
                out.stats.unchanged += dupes;
            }
            Err(e) => {
                out.stats.store_failures += indexes.len();
                for i in indexes {
                    out.failures.push((i, Failure::Store(e.clone())));
                }
            }
        }
    }
    out.failures.sort_by_key(|(i, _)| *i);
    lags.sort_unstable();
    out.stats.lag_max_ms = lags.last().copied();
    out.stats.lag_p50_ms = lags.get(lags.len() / 2).copied();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Kind;
    use crate::store::EmbeddedStore;
    use crate::testing::{entity, event, instance, messages, task, task_event};

    async fn stored_version(store: &EmbeddedStore, id: &str) -> Option<u64> {
        let key = entity(Kind::Task, &task("c1", id, "RUNNING", 1)).key;
        let rec = store.get(&key, None).await.unwrap()?;
        let version = rec.meta().unwrap().ecs_version;
        Some(version)
    }

    #[tokio::test]
    async fn one_entitys_records_collapse_to_the_newest() {
        let store = EmbeddedStore::new("/t/");
        let start = store.current_revision().await.unwrap();
        let bodies: Vec<String> = [3, 1, 5, 2, 5]
            .iter()
            .map(|v| task_event(&task("c1", "a", "RUNNING", *v)))
            .collect();
        let out = apply_batch(&store, &messages(&bodies)).await;
        assert!(out.failures.is_empty());
        assert_eq!(out.stats.received, 5);
        assert_eq!((out.stats.inserted, out.stats.unchanged), (1, 4));
        assert_eq!(stored_version(&store, "a").await, Some(5));
        assert_eq!(
            store.current_revision().await.unwrap(),
            start + 1,
            "one write for the whole group"
        );
    }

    #[tokio::test]
    async fn older_and_duplicate_versions_are_acknowledged_not_written() {
        let store = EmbeddedStore::new("/t/");
        apply_batch(
            &store,
            &messages(&[task_event(&task("c1", "a", "RUNNING", 4))]),
        )
        .await;
        let rev = store.current_revision().await.unwrap();
        let out = apply_batch(
            &store,
            &messages(&[
                task_event(&task("c1", "a", "PENDING", 3)),
                task_event(&task("c1", "a", "RUNNING", 4)),
            ]),
        )
        .await;
        assert!(out.failures.is_empty());
        assert_eq!(out.stats.unchanged, 2);
        assert_eq!(store.current_revision().await.unwrap(), rev);
    }

    #[tokio::test]
    async fn malformed_records_fail_alone_and_other_types_are_counted() {
        let store = EmbeddedStore::new("/t/");
        let mut no_version = task("c1", "b", "RUNNING", 1);
        no_version["version"] = serde_json::Value::Null;
        let bodies = vec![
            task_event(&task("c1", "a", "RUNNING", 1)),
            "not json".to_string(),
            task_event(&no_version),
            event("ECS Future Event", &serde_json::json!({"eventName": "X"})),
            event(
                "ECS Container Instance State Change",
                &instance("c1", "i1", "ACTIVE", 1),
            ),
        ];
        let mut msgs = messages(&bodies);
        msgs.push(Message {
            id: Some("empty".into()),
            body: None,
        });
        let out = apply_batch(&store, &msgs).await;
        let failed: Vec<usize> = out.failures.iter().map(|(i, _)| *i).collect();
        assert_eq!(failed, vec![1, 2, 5]);
        assert!(out
            .failures
            .iter()
            .all(|(_, f)| matches!(f, Failure::Malformed(_))));
        assert_eq!(out.stats.malformed, 3);
        assert_eq!(out.stats.ignored, 1);
        assert_eq!(out.stats.inserted, 2, "the task and the instance");
    }
}
