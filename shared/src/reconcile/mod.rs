//! Reconciliation (docs/reference.md#reconciliation): make the store equal what the ECS API says,
//! without ever losing a newer event that arrives while a run is under way.
//!
//! Per cluster: read a keys-only snapshot (keys and mod_revisions) first,
//! then list and describe; every described entity goes through the same
//! version-guarded upsert as events (entities without a version lose to
//! records changed after the snapshot); records no longer listed are deleted
//! only if unchanged since the snapshot, and only when every listing of that
//! cluster succeeded. Clusters ListClusters no longer returns are purged the
//! same way. Only records of the run's own account and region are touched.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant, SystemTime};

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};

use crate::compaction::checkpoint_and_compact;
use crate::ecs::DESCRIBE_SERVICES_BATCH;
use crate::model::{Arn, ClusterId, Entity, EntityKey, Kind};
use crate::store::{
    ClusterScope, KeyRef, ListRequest, Source, StateStore, StoreError, Upsert, UpsertOutcome,
};

pub use crate::ecs::{aws, EcsSource, RunScope, ServicesAnswer, SourceError};

mod summary;
pub use summary::{KindCounts, RunError, Summary};

/// ECS Describe* calls take at most 100 ARNs.
pub const DESCRIBE_BATCH: usize = 100;
/// Clusters reconciled at once.
pub const CLUSTER_CONCURRENCY: usize = 4;

/// Every key of a scope, read at one revision.
async fn snapshot(
    store: &dyn StateStore,
    kind: Kind,
    cluster: ClusterScope,
    revision: Option<i64>,
) -> Result<(Vec<KeyRef>, i64), StoreError> {
    let mut req = ListRequest {
        kind,
        cluster,
        status: None,
        start_after: None,
        limit: 1000,
        revision,
    };
    let mut keys = Vec::new();
    loop {
        let page = store.list_keys(&req).await?;
        req.revision = Some(page.revision);
        req.start_after = page.keys.last().map(|k| k.store_key.clone());
        keys.extend(page.keys);
        if !page.more {
            return Ok((keys, page.revision.max(req.revision.unwrap_or(0))));
        }
    }
}

pub struct Reconciler<'a> {
    pub store: &'a dyn StateStore,
    pub source: &'a dyn EcsSource,
    pub scope: RunScope,
    pub retention: Duration,
}

impl Reconciler<'_> {
    pub async fn run(&self) -> Summary {
        let started = Instant::now();
        let calls_before = self.source.api_calls();
        let mut sum = Summary::default();
        match self.source.list_clusters().await {
            Ok(arns) => {
                sum.clusters = arns.len();
                let futs: Vec<BoxFuture<'_, Summary>> =
                    arns.iter().map(|a| self.cluster(a).boxed()).collect();
                let results: Vec<Summary> = futures::stream::iter(futs)
                    .buffer_unordered(CLUSTER_CONCURRENCY)
                    .collect()
                    .await;
                for r in results {
                    sum.add(r);
                }
                let listed: HashSet<ClusterId> = arns
                    .iter()
                    .filter_map(|a| ClusterId::from_arn(a).ok())
                    .collect();
                self.purge_vanished(&listed, &mut sum).await;
            }
            Err(e) => sum.error("*", e.operation, e.message),
        }
        match checkpoint_and_compact(self.store, self.retention, SystemTime::now()).await {
            Ok(report) => sum.compaction = Some(report),
            Err(e) => sum.error("*", "Compact", e),
        }
        sum.api_calls = self.source.api_calls() - calls_before;
        sum.duration_ms = started.elapsed().as_millis() as u64;
        sum
    }

    async fn cluster(&self, cluster_arn: &str) -> Summary {
        let mut sum = Summary::default();
        let cluster = match ClusterId::from_arn(cluster_arn) {
            Ok(c) => c,
            Err(e) => {
                sum.error(cluster_arn, "ListClusters", e);
                return sum;
            }
        };
        // The snapshot comes before any listing of this cluster.
        let scope = ClusterScope::Exact(cluster.clone());
        let (tasks, rev) = match snapshot(self.store, Kind::Task, scope.clone(), None).await {
            Ok(s) => s,
            Err(e) => {
                sum.error(cluster_arn, "Snapshot", e);
                return sum;
            }
        };
        let mut others = Vec::new();
        for kind in [Kind::Instance, Kind::Service] {
            match snapshot(self.store, kind, scope.clone(), Some(rev)).await {
                Ok((k, _)) => others.extend(k),
                Err(e) => {
                    sum.error(cluster_arn, "Snapshot", e);
                    return sum;
                }
            }
        }

        let mut listed: HashSet<(Kind, String)> = HashSet::new();
        let mut complete = true;
        match self.source.list_container_instances(cluster_arn).await {
            Ok(arns) => {
                self.apply(
                    Kind::Instance,
                    cluster_arn,
                    &arns,
                    rev,
                    &mut listed,
                    &mut sum,
                )
                .await;
            }
            Err(e) => {
                complete = false;
                sum.error(cluster_arn, e.operation, e.message);
            }
        }
        for desired in ["RUNNING", "STOPPED"] {
            match self.source.list_tasks(cluster_arn, desired).await {
                Ok(arns) => {
                    self.apply(Kind::Task, cluster_arn, &arns, rev, &mut listed, &mut sum)
                        .await
                }
                Err(e) => {
                    complete = false;
                    sum.error(cluster_arn, e.operation, e.message);
                }
            }
        }
        match self.source.list_services(cluster_arn).await {
            Ok(arns) => {
                (self.apply(
                    Kind::Service,
                    cluster_arn,
                    &arns,
                    rev,
                    &mut listed,
                    &mut sum,
                ))
                .await
            }
            Err(e) => {
                complete = false;
                sum.error(cluster_arn, e.operation, e.message);
            }
        }
        if !complete {
            return sum;
        }
        for k in tasks.iter().chain(&others) {
            if !listed.contains(&(k.key.kind, k.key.id.clone())) {
                self.delete(&k.key, k.mod_revision, cluster_arn, &mut sum)
                    .await;
            }
        }
        sum
    }

    /// Describes listed ARNs in batches (100; services 10) and upserts what
    /// comes back.
    async fn apply(
        &self,
        kind: Kind,
        cluster_arn: &str,
        arns: &[String],
        snapshot_rev: i64,
        listed: &mut HashSet<(Kind, String)>,
        sum: &mut Summary,
    ) {
        sum.count(kind, |c| c.listed += arns.len());
        for a in arns {
            match Arn::parse(a) {
                Ok(p) => {
                    listed.insert((kind, p.id));
                }
                Err(e) => sum.error(cluster_arn, "List", e),
            }
        }
        let size = match kind {
            Kind::Service => DESCRIBE_SERVICES_BATCH,
            Kind::Task | Kind::Instance => DESCRIBE_BATCH,
        };
        for batch in arns.chunks(size) {
            let src = self.source;
            let described = match kind {
                Kind::Task => src
                    .describe_tasks(cluster_arn, batch)
                    .await
                    .map(|r| (r, None)),
                Kind::Instance => {
                    (src.describe_container_instances(cluster_arn, batch).await).map(|r| (r, None))
                }
                // A service gone between list and describe (MISSING) is
                // not stored; the next run deletes its record.
                Kind::Service => (src.describe_services(cluster_arn, batch).await)
                    .map(|a| (a.services, Some(a.sent_at))),
            };
            let (raws, sent_at) = match described {
                Ok(r) => r,
                Err(e) => {
                    sum.error(cluster_arn, e.operation, e.message);
                    continue;
                }
            };
            sum.count(kind, |c| c.described += raws.len());
            let mut entities = Vec::with_capacity(raws.len());
            for raw in raws {
                match Entity::from_raw(kind, raw, false) {
                    Ok(e) => entities.push(match sent_at {
                        Some(t) => e.read_at(t),
                        None => e,
                    }),
                    Err(e) => sum.error(cluster_arn, "Describe", e),
                }
            }
            // One write per entity (ECS may repeat an ARN across lists).
            let mut seen = HashSet::new();
            entities.retain(|e| seen.insert(e.key.clone()));
            let writes: Vec<Upsert<'_>> = entities
                .iter()
                .map(|e| Upsert {
                    entity: e,
                    source: Source::Reconcile,
                    snapshot: Some(snapshot_rev),
                })
                .collect();
            for r in self.store.upsert_many(&writes).await {
                match r {
                    Ok(UpsertOutcome::Inserted { .. }) => sum.count(kind, |c| c.inserted += 1),
                    Ok(UpsertOutcome::Updated { .. }) => sum.count(kind, |c| c.updated += 1),
                    Ok(UpsertOutcome::Unchanged { .. }) => sum.count(kind, |c| c.unchanged += 1),
                    Err(e) => sum.error(cluster_arn, "Upsert", e),
                }
            }
        }
    }

    async fn delete(&self, key: &EntityKey, mod_revision: i64, cluster: &str, sum: &mut Summary) {
        match self.store.delete_if_unchanged(key, mod_revision).await {
            Ok(true) => sum.count(key.kind, |c| c.deleted += 1),
            // Changed since the snapshot: a newer event wins.
            Ok(false) => {}
            Err(e) => sum.error(cluster, "Delete", e),
        }
    }

    /// Deletes every record of this account and region whose cluster
    /// ListClusters no longer returns.
    async fn purge_vanished(&self, listed: &HashSet<ClusterId>, sum: &mut Summary) {
        let mut gone: HashMap<ClusterId, Vec<KeyRef>> = HashMap::new();
        let mut rev = None;
        for kind in Kind::ALL {
            match snapshot(self.store, kind, ClusterScope::All, rev).await {
                Ok((keys, r)) => {
                    rev = Some(r);
                    for k in keys {
                        let c = &k.key.cluster;
                        if c.account == self.scope.account
                            && c.region == self.scope.region
                            && !listed.contains(c)
                        {
                            gone.entry(c.clone()).or_default().push(k);
                        }
                    }
                }
                Err(e) => {
                    sum.error("*", "Snapshot", e);
                    return;
                }
            }
        }
        for (cluster, keys) in gone {
            let arn = cluster.arn();
            for k in keys {
                self.delete(&k.key, k.mod_revision, &arn, sum).await;
            }
        }
    }
}

#[cfg(test)]
mod tests;
