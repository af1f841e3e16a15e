//! SQS batch -> events -> version-guarded upserts; batch item failures.
//!
//! Records of one batch that name the same entity are collapsed: only the
//! highest version is written, and the others share its outcome (once the
//! highest is stored, a lower one is stale by definition). The distinct
//! entities go to the store in one `upsert_many`, which batches them.

use std::collections::HashMap;

use serde::Serialize;

use crate::events::{self, Change};
use crate::model::{Entity, EntityKey};
use crate::store::{StateStore, StoreError, Upsert, UpsertOutcome};

/// One message to apply: its id (for batch item failures) and body.
#[derive(Debug, Clone)]
pub struct Message {
    pub id: Option<String>,
    pub body: Option<String>,
}

/// Why one message was not acknowledged.
#[derive(Debug)]
pub enum Failure {
    Malformed(String),
    Store(StoreError),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Malformed(m) => write!(f, "malformed: {m}"),
            Failure::Store(e) => write!(f, "store: {e}"),
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
}

#[derive(Debug, Default)]
pub struct BatchOutcome {
    /// Index into the batch and the reason, for every record not acknowledged.
    pub failures: Vec<(usize, Failure)>,
    pub stats: IngestStats,
}

/// Applies a batch; never fails as a whole.
pub async fn apply_batch(store: &dyn StateStore, messages: &[Message]) -> BatchOutcome {
    let mut out = BatchOutcome::default();
    out.stats.received = messages.len();
    let mut groups: HashMap<EntityKey, Vec<(usize, Entity)>> = HashMap::new();
    for (i, m) in messages.iter().enumerate() {
        let Some(body) = m.body.as_deref() else {
            out.failures
                .push((i, Failure::Malformed("message has no body".into())));
            continue;
        };
        match events::parse(body) {
            Ok(Change::Upsert(e)) => groups.entry(e.key.clone()).or_default().push((i, e)),
            Ok(Change::Ignored { .. }) => out.stats.ignored += 1,
            Err(e) => out.failures.push((i, Failure::Malformed(e.to_string()))),
        }
    }
    out.stats.malformed = out.failures.len();

    // One write per entity: the highest version of its group.
    let groups: Vec<Vec<(usize, Entity)>> = groups.into_values().collect();
    let newest: Vec<&Entity> = groups
        .iter()
        .filter_map(|g| g.iter().map(|(_, e)| e).max_by_key(|e| e.version))
        .collect();
    let writes: Vec<Upsert<'_>> = newest.iter().map(|e| Upsert::event(e)).collect();
    let outcomes = store.upsert_many(&writes).await;
    let results = groups
        .iter()
        .map(|g| g.iter().map(|(i, _)| *i).collect::<Vec<usize>>())
        .zip(outcomes);

    for (indexes, res) in results {
        match res {
            Ok(outcome) => {
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
    out
}
