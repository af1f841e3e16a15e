//! Service and deployment events: the services they name are described
//! (DescribeServices, per cluster, at most 10 names a call) and the answers
//! stored through the snapshot guard (`model::Stamp`). A service ECS no
//! longer knows (`MISSING`) is deleted, unless the stored snapshot was read
//! after the answer that said so. A failed describe fails exactly the
//! records that named its services.

use std::collections::{BTreeMap, HashMap};

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

fn failure(e: &ServiceResult) -> Option<Failure> {
    match e {
        Ok(_) => None,
        Err(Failure::Describe(e)) => Some(Failure::Describe(e.clone())),
        Err(Failure::Store(e)) => Some(Failure::Store(e.clone())),
        Err(Failure::Malformed(m)) => Some(Failure::Malformed(m.clone())),
    }
}

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
            let ecs = d.ecs;
            async move {
                let answer = ecs.describe_services(&c.arn(), &names).await;
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
        for raw in answer.services {
            match Entity::from_raw(Kind::Service, raw, false) {
                Ok(e) if e.key.cluster == *cluster && names.contains(&e.key.id) => {
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
            missing.push((service(&name), answer.sent_at));
        }
        for (arn, reason) in answer.failed {
            let name = crate::ecs::service_name(&arn);
            results.insert(
                service(name),
                Err(Failure::Describe(SourceError {
                    operation: "DescribeServices",
                    message: format!("{arn}: {reason}"),
                })),
            );
        }
        for n in &names {
            let answered = entities
                .iter()
                .any(|(s, _)| s.cluster == *cluster && s.name == *n)
                || missing
                    .iter()
                    .any(|(s, _)| s.cluster == *cluster && s.name == *n);
            if !answered {
                results.entry(service(n)).or_insert_with(|| {
                    Err(Failure::Describe(SourceError {
                        operation: "DescribeServices",
                        message: format!("{n} is not in the answer"),
                    }))
                });
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
            let failed = refs.iter().find_map(|r| results.get(r).and_then(failure));
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
mod tests {
    use super::super::{apply, apply_batch, BatchOutcome, Describer, Message};
    use super::*;
    use crate::ecs::RunScope;
    use crate::events::{DEPLOYMENT_STATE_CHANGE, SERVICE_ACTION};
    use crate::testing::{embedded, entity, service, service_event, Ecs, ACCOUNT, REGION};

    fn scope() -> RunScope {
        RunScope {
            account: ACCOUNT.into(),
            region: REGION.into(),
        }
    }

    fn messages(bodies: &[String]) -> Vec<Message> {
        (bodies.iter().enumerate())
            .map(|(i, b)| Message {
                id: Some(format!("m{i}")),
                body: Some(b.clone()),
            })
            .collect()
    }

    async fn run(store: &dyn StateStore, ecs: &Ecs, bodies: &[String]) -> BatchOutcome {
        let scope = scope();
        let d = Describer { ecs, scope: &scope };
        apply(store, Some(d), &messages(bodies)).await
    }

    fn key(cluster: &str, name: &str) -> EntityKey {
        entity(
            Kind::Service,
            &service(
                cluster,
                name,
                "ACTIVE",
                &["COMPLETED"],
                "2026-11-20T09:00:00.000Z",
            ),
        )
        .key
    }

    #[tokio::test]
    async fn events_of_both_types_store_what_describe_services_answers() {
        let store = embedded();
        let web = service(
            "c1",
            "web",
            "ACTIVE",
            &["IN_PROGRESS", "COMPLETED"],
            "2026-11-20T10:00:00.000Z",
        );
        let ecs = Ecs::default().with_services("c1", vec![web.clone()]);
        for detail_type in [SERVICE_ACTION, DEPLOYMENT_STATE_CHANGE] {
            let out = run(
                store.as_ref(),
                &ecs,
                &[service_event(detail_type, ACCOUNT, "c1", "web")],
            )
            .await;
            assert!(out.failures.is_empty(), "{:?}", out.failures);
            assert_eq!(out.stats.describe_calls, 1);
        }
        let rec = store.get(&key("c1", "web"), None).await.unwrap().unwrap();
        let meta = rec.meta().unwrap();
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(meta.entity.get()).unwrap(),
            web,
            "every field kept"
        );
        assert_eq!(meta.status, "ACTIVE");
        assert!(meta.stamp.is_some_and(|s| s.read_time_us > 0));
    }

    #[tokio::test]
    async fn describes_are_batched_per_cluster_ten_names_a_call() {
        let store = embedded();
        let names: Vec<String> = (0..25).map(|i| format!("s{i}")).collect();
        let svcs = |c: &str| {
            names
                .iter()
                .map(|n| service(c, n, "ACTIVE", &["COMPLETED"], "2026-11-20T09:00:00.000Z"))
                .collect()
        };
        let ecs = Ecs::default()
            .with_services("a", svcs("a"))
            .with_services("b", svcs("b"));
        let mut bodies = Vec::new();
        for n in &names {
            bodies.push(service_event(SERVICE_ACTION, ACCOUNT, "a", n));
            bodies.push(service_event(DEPLOYMENT_STATE_CHANGE, ACCOUNT, "a", n));
            bodies.push(service_event(SERVICE_ACTION, ACCOUNT, "b", n));
        }
        let out = run(store.as_ref(), &ecs, &bodies).await;
        assert!(out.failures.is_empty());
        // 25 distinct names in each of 2 clusters: 3 + 3 calls.
        assert_eq!(out.stats.describe_calls, 6);
        let asked = ecs.described_services.lock().unwrap().clone();
        assert!(asked.iter().all(|a| a.len() <= 10));
        assert_eq!(asked.iter().map(Vec::len).sum::<usize>(), 50);
        assert_eq!((out.stats.inserted, out.stats.unchanged), (50, 25));
    }

    #[tokio::test]
    async fn other_accounts_are_acknowledged_not_described() {
        let store = embedded();
        let ecs = Ecs::default();
        let out = run(
            store.as_ref(),
            &ecs,
            &[service_event(SERVICE_ACTION, "999988887777", "c1", "web")],
        )
        .await;
        assert!(out.failures.is_empty());
        assert_eq!((out.stats.foreign, out.stats.describe_calls), (1, 0));
        // Without a describer, service events are counted as ignored.
        let out = apply_batch(
            store.as_ref(),
            &messages(&[service_event(SERVICE_ACTION, ACCOUNT, "c1", "web")]),
        )
        .await;
        assert_eq!((out.stats.ignored, out.failures.len()), (1, 0));
    }

    #[tokio::test]
    async fn a_failed_describe_fails_exactly_its_records() {
        let store = embedded();
        let mut ecs = Ecs::default().with_services(
            "c1",
            vec![service(
                "c1",
                "web",
                "ACTIVE",
                &["COMPLETED"],
                "2026-11-20T09:00:00.000Z",
            )],
        );
        ecs.failing.push("DescribeServices");
        let bodies = [
            crate::testing::task_event(&crate::testing::task("c1", "t1", "RUNNING", 1)),
            service_event(SERVICE_ACTION, ACCOUNT, "c1", "web"),
            service_event(DEPLOYMENT_STATE_CHANGE, ACCOUNT, "c1", "web"),
        ];
        let out = run(store.as_ref(), &ecs, &bodies).await;
        let failed: Vec<usize> = out.failures.iter().map(|(i, _)| *i).collect();
        assert_eq!(failed, vec![1, 2]);
        assert!(matches!(out.failures[0].1, Failure::Describe(_)));
        assert_eq!((out.stats.describe_failures, out.stats.inserted), (2, 1));
        assert!(store.get(&key("c1", "web"), None).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_missing_service_is_deleted_unless_read_again_since() {
        let store = embedded();
        let ecs = Ecs::default().with_services(
            "c1",
            vec![service(
                "c1",
                "web",
                "ACTIVE",
                &["COMPLETED"],
                "2026-11-20T09:00:00.000Z",
            )],
        );
        run(
            store.as_ref(),
            &ecs,
            &[service_event(SERVICE_ACTION, ACCOUNT, "c1", "web")],
        )
        .await;
        assert!(store.get(&key("c1", "web"), None).await.unwrap().is_some());
        let gone = Ecs::default().with_services("c1", vec![]);
        let out = run(
            store.as_ref(),
            &gone,
            &[service_event(SERVICE_ACTION, ACCOUNT, "c1", "web")],
        )
        .await;
        assert_eq!((out.stats.deleted, out.failures.len()), (1, 0));
        assert!(store.get(&key("c1", "web"), None).await.unwrap().is_none());

        // A MISSING answer sent before the stored snapshot was read deletes nothing.
        let e = entity(
            Kind::Service,
            &service(
                "c1",
                "web",
                "ACTIVE",
                &["COMPLETED"],
                "2026-11-20T09:00:00.000Z",
            ),
        );
        let before = chrono::Utc::now();
        let e = e.read_at(before + chrono::Duration::seconds(1));
        store.upsert_if_newer(Upsert::event(&e)).await.unwrap();
        assert_eq!(
            delete_missing(store.as_ref(), &e.key, before)
                .await
                .unwrap(),
            Counted::Nothing
        );
        assert!(store.get(&e.key, None).await.unwrap().is_some());
    }
}
