//! Service and deployment events: the services they name are described
//! (DescribeServices, per cluster, at most 10 names a call) and the answers
//! stored through the snapshot guard (`model::Stamp`). A service ECS no
//! longer knows (`MISSING`) is deleted, unless the stored snapshot was read
//! after the answer that said so. A failed describe fails exactly the
//! records that named its services.

use std::collections::{BTreeMap, HashMap, HashSet};

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};

use super::{Describer, Failure};
use crate::ecs::{ServicesAnswer, SourceError, DESCRIBE_SERVICES_BATCH};
use crate::events::ServiceRef;
use crate::model::{ClusterId, Entity, EntityKey, Kind};
use crate::store::{StateStore, StoreError, StoreResult, Upsert, UpsertOutcome};

/// DescribeServices calls in flight at once for one batch.
const DESCRIBE_CONCURRENCY: usize = 4;
/// Lost races before a delete of a missing service gives up (and is retried).
const DELETE_ATTEMPTS: usize = 5;

/// What one message counts as once its services were applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Counted {
    Written(UpsertOutcome),
    Deleted,
    /// Nothing to do: already as new, or gone and not stored.
    Nothing,
}

pub(super) struct Done {
    /// Per message index: what it counts as, or why it failed.
    pub messages: Vec<(usize, Result<Counted, Failure>)>,
    pub calls: usize,
}

/// What happened to one service.
type ServiceResult = Result<Counted, Failure>;

pub(super) async fn apply(
    store: &dyn StateStore,
    d: Describer<'_>,
    msgs: &[(usize, Vec<ServiceRef>)],
) -> Done {
    // Distinct services per cluster, in a stable order.
    let mut by_cluster: BTreeMap<&ClusterId, Vec<&str>> = BTreeMap::new();
    for (_, refs) in msgs {
        for r in refs {
            let names = by_cluster.entry(&r.cluster).or_default();
            if !names.contains(&r.name.as_str()) {
                names.push(&r.name);
            }
        }
    }
    let calls: Vec<(&ClusterId, Vec<String>)> = by_cluster
        .iter()
        .flat_map(|(c, names)| {
            names
                .chunks(DESCRIBE_SERVICES_BATCH)
                .map(|chunk| (*c, chunk.iter().map(|n| n.to_string()).collect()))
        })
        .collect();
    let n_calls = calls.len();
    // Boxed and collected first: a closure held across the await trips the
    // Send proof the runtimes need.
    type Answer<'c> = (
        &'c ClusterId,
        Vec<String>,
        Result<ServicesAnswer, SourceError>,
    );
    let futs: Vec<BoxFuture<'_, Answer<'_>>> = calls
        .into_iter()
        .map(|(c, names)| {
            async move {
                let answer = d.describe_services(c, &names).await;
                (c, names, answer)
            }
            .boxed()
        })
        .collect();
    let answers: Vec<Answer<'_>> = futures::stream::iter(futs)
        .buffer_unordered(DESCRIBE_CONCURRENCY)
        .collect()
        .await;

    let mut results: HashMap<ServiceRef, ServiceResult> = HashMap::new();
    let mut entities: Vec<(ServiceRef, Entity)> = Vec::new();
    let mut missing: Vec<(ServiceRef, chrono::DateTime<chrono::Utc>)> = Vec::new();
    // Asked names the answers accounted for (found or MISSING).
    let mut answered: HashSet<ServiceRef> = HashSet::new();
    for (cluster, names, answer) in answers {
        let service = |name: &str| ServiceRef {
            cluster: cluster.clone(),
            name: name.to_string(),
        };
        let answer = match answer {
            Ok(a) => a,
            Err(e) => {
                for n in &names {
                    results.insert(service(n), Err(Failure::Describe(e.clone())));
                }
                continue;
            }
        };
        let failed = |message: String| {
            Err(Failure::Describe(SourceError::new(
                "DescribeServices",
                message,
            )))
        };
        for raw in answer.services {
            match Entity::from_raw(Kind::Service, raw, false) {
                Ok(e) if e.key.cluster == *cluster && names.contains(&e.key.id) => {
                    answered.insert(service(&e.key.id));
                    entities.push((service(&e.key.id), e.read_at(answer.sent_at)))
                }
                // Not what was asked: nothing to store; asked names without
                // an answer fail below.
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(cluster = %cluster, error = %e, "DescribeServices answered an unusable service")
                }
            }
        }
        for name in answer.missing {
            answered.insert(service(&name));
            missing.push((service(&name), answer.sent_at));
        }
        for (arn, reason) in answer.failed {
            let name = crate::ecs::service_name(&arn);
            results.insert(service(name), failed(format!("{arn}: {reason}")));
        }
        for n in &names {
            if !answered.contains(&service(n)) {
                (results.entry(service(n)))
                    .or_insert_with(|| failed(format!("{n} is not in the answer")));
            }
        }
    }

    let writes: Vec<Upsert<'_>> = entities.iter().map(|(_, e)| Upsert::event(e)).collect();
    for ((s, _), r) in entities.iter().zip(store.upsert_many(&writes).await) {
        let r = r.map(Counted::Written).map_err(Failure::Store);
        results.insert(s.clone(), r);
    }
    for (s, sent_at) in missing {
        let key = EntityKey {
            kind: Kind::Service,
            cluster: s.cluster.clone(),
            id: s.name.clone(),
        };
        let r = delete_missing(store, &key, sent_at).await;
        results.insert(s, r.map_err(Failure::Store));
    }

    // A message fails if any of its services failed; otherwise the first
    // message naming a service counts its outcome, later ones nothing.
    let mut counted: Vec<&ServiceRef> = Vec::new();
    let messages = msgs
        .iter()
        .map(|(i, refs)| {
            let failed = refs
                .iter()
                .find_map(|r| results.get(r).and_then(|res| res.as_ref().err().cloned()));
            if let Some(f) = failed {
                return (*i, Err(f));
            }
            let first = &refs[0];
            let outcome = match counted.contains(&first) {
                true => Counted::Nothing,
                false => {
                    counted.push(first);
                    match results.get(first) {
                        Some(Ok(c)) => *c,
                        _ => Counted::Nothing,
                    }
                }
            };
            (*i, Ok(outcome))
        })
        .collect();
    Done {
        messages,
        calls: n_calls,
    }
}

/// Deletes a service ECS answered MISSING for, unless the stored snapshot
/// was read after that answer (the service was re-created since).
async fn delete_missing(
    store: &dyn StateStore,
    key: &EntityKey,
    sent_at: chrono::DateTime<chrono::Utc>,
) -> StoreResult<Counted> {
    for _ in 0..DELETE_ATTEMPTS {
        let Some(rec) = store.get(key, None).await? else {
            return Ok(Counted::Nothing);
        };
        let stored = rec.meta()?.stamp;
        if stored.is_some_and(|s| s.read_time_us >= sent_at.timestamp_micros()) {
            return Ok(Counted::Nothing);
        }
        if store.delete_if_unchanged(key, rec.mod_revision).await? {
            return Ok(Counted::Deleted);
        }
    }
    Err(StoreError::Contended {
        attempts: DELETE_ATTEMPTS,
        key: format!("{}/{}/{}", key.kind.plural(), key.cluster.name, key.id),
    })
}

#[cfg(test)]
#[path = "services_tests.rs"]
mod tests;
