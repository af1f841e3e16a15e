//! Reconciliation (docs/reference.md#reconciliation): make the store equal what the ECS API says,
//! without ever losing a newer event that arrives while a run is under way,
//! and within a budget of ECS calls.
//!
//! A pass goes through every cluster, one step per kind of entity (`step`): read a
//! keys-only snapshot (keys and mod_revisions) first, then list page by
//! page; describe what a listing shows that the store lacks; set aside what
//! the store holds that no listing shows; re-describe a rolling slice of
//! the rest (`verify`). Every described entity goes through the same
//! version-guarded upsert as events (entities without a version lose to
//! records changed after the snapshot, an unchanged one is not rewritten).
//! When every listing of a cluster succeeded, the records set aside are
//! deleted, each only if unchanged since its snapshot. Clusters
//! ListClusters no longer returns are purged the same way. Only records of
//! the run's own account and region are touched. Every ECS call waits for
//! the budget (`budget`); a pass that reaches its deadline saves where it
//! stands and the next run goes on from there (`pass`).

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use crate::compaction::checkpoint_and_compact;
use crate::model::{ClusterId, EntityKey, Kind};
use crate::store::{ClusterScope, KeyRef, ListRequest, StateStore, StoreError};

pub use crate::ecs::{aws, EcsSource, RunScope, ServicesAnswer, SourceError};

pub mod budget;
pub mod fleet;
mod pass;
mod step;
mod summary;
mod verify;
pub use budget::{BudgetSettings, Budgeted, CallFigures};
pub use fleet::{run_with_members, MemberRun};
use pass::{Carry, ClusterState, PassState};
pub use summary::{KindCounts, PassProgress, RunError, Summary};
use verify::Marks;

/// ECS Describe* calls take at most 100 ARNs.
pub const DESCRIBE_BATCH: usize = 100;
/// A (cluster, kind) whose listing and store disagree on more entities
/// than this share (and `WHOLE_MIN`) looks wrong: it is described whole.
pub const WHOLE_SHARE: f64 = 0.1;
pub const WHOLE_MIN: usize = 10;
/// A Lambda invocation's pass stops this long before the invocation's
/// deadline (saving its place, compacting, recording the run).
pub const DEADLINE_MARGIN: Duration = Duration::from_secs(20);

/// The steps of a cluster: one kind of entity each.
const STEPS: [Kind; 3] = [Kind::Instance, Kind::Task, Kind::Service];

/// How a pass spends its calls.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub budget: BudgetSettings,
    /// Every entity is re-described at least once this often
    /// (`ReconcileVerifyHorizon`); zero: every entity every pass.
    pub verify_horizon: Duration,
    /// The clock of the verification marks (a benchmark's simulated time).
    pub now: fn() -> SystemTime,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            budget: BudgetSettings::default(),
            verify_horizon: Duration::from_secs(3600),
            now: SystemTime::now,
        }
    }
}

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
    pub settings: Settings,
}

/// How a step or a cluster ended.
enum End {
    Done,
    /// The deadline came first: its place is saved.
    Paused,
}

/// One run (an invocation): the pass's budget, deadline and figures.
struct Run<'r, 'a> {
    r: &'r Reconciler<'a>,
    /// The namespace of the pass's meta names.
    ns: &'r str,
    budget: Budgeted<'a>,
    deadline: Option<Instant>,
    marks: Marks,
    sum: Summary,
}

impl Reconciler<'_> {
    /// A run without a deadline (server mode, tests): the pass goes to its end.
    pub async fn run(&self) -> Summary {
        self.run_until(None).await
    }

    /// A run that stops at `deadline`, saving its place for the next one.
    pub async fn run_until(&self, deadline: Option<Instant>) -> Summary {
        let started = Instant::now();
        let mut sum = self.pass_until("", deadline).await;
        self.compact(&mut sum).await;
        sum.duration_ms = started.elapsed().as_millis() as u64;
        sum
    }

    /// Checkpoints and compacts history (once a run, after its passes).
    pub async fn compact(&self, sum: &mut Summary) {
        match checkpoint_and_compact(self.store, self.retention, SystemTime::now()).await {
            Ok(report) => sum.compaction = Some(report),
            Err(e) => sum.error("*", "Compact", e),
        }
    }

    /// Goes on with the pass whose state is kept under `ns` (a member's
    /// namespace of meta names; "" for the home account and Region) until
    /// `deadline`; no compaction.
    pub async fn pass_until(&self, ns: &str, deadline: Option<Instant>) -> Summary {
        let started = Instant::now();
        let calls_before = self.source.api_calls();
        let mut run = Run {
            r: self,
            ns,
            budget: Budgeted::new(self.source, self.settings.budget),
            deadline,
            marks: Marks::load(self.store, ns).await,
            sum: Summary::default(),
        };
        let mut state = match PassState::load(self.store, ns).await {
            Ok(s) => s.unwrap_or_else(PassState::new),
            Err(e) => {
                run.sum.error("*", "PassState", e);
                PassState::new()
            }
        };
        state.invocations += 1;
        let complete = run.pass(&mut state).await;
        run.marks.save(self.store, ns).await;
        let mut sum = run.sum;
        sum.calls = run.budget.figures();
        for (kind, counts) in &sum.kinds {
            state.kinds.entry(kind.to_string()).or_default().add(counts);
        }
        state.calls.add(&sum.calls);
        state.errors += sum.errors.len();
        sum.pass = PassProgress::of(&state, complete);
        let saved = if complete {
            if ns.is_empty() {
                crate::status::record_pass(self.store, sum.pass.completed(&state)).await;
            }
            PassState::clear(self.store, ns).await
        } else {
            state.save(self.store, ns).await
        };
        if let Err(e) = saved {
            sum.error("*", "PassState", e);
        }
        sum.api_calls = self.source.api_calls() - calls_before;
        sum.duration_ms = started.elapsed().as_millis() as u64;
        sum
    }
}

impl Run<'_, '_> {
    fn out_of_time(&self) -> bool {
        self.deadline.is_some_and(|d| Instant::now() >= d)
    }

    /// Goes on with the pass; true when it reached its end.
    async fn pass(&mut self, state: &mut PassState) -> bool {
        while !state.clusters_listed {
            if self.out_of_time() {
                return false;
            }
            match self
                .budget
                .list_clusters(state.clusters_token.as_deref())
                .await
            {
                Ok(page) => {
                    state.clusters.extend(page.arns);
                    state.clusters_listed = page.next.is_none();
                    state.clusters_token = page.next;
                }
                Err(e) => {
                    // The next run lists the clusters again from the start.
                    state.clusters.clear();
                    state.clusters_token = None;
                    self.sum.error("*", e.operation, e.message);
                    return false;
                }
            }
        }
        self.sum.clusters = state.clusters.len();
        while let Some(arn) = state.clusters.get(state.next_cluster).cloned() {
            let mut cluster = state.cluster.take().unwrap_or_default();
            match self.cluster(&arn, &mut cluster).await {
                End::Done => {
                    state.next_cluster += 1;
                    // A checkpoint: a crash redoes at most the next cluster.
                    if let Err(e) = state.save(self.r.store, self.ns).await {
                        self.sum.error(&arn, "PassState", e);
                    }
                }
                End::Paused => {
                    state.cluster = Some(cluster);
                    return false;
                }
            }
        }
        self.purge_vanished(&state.clusters).await;
        self.marks.retain_clusters(&state.clusters);
        true
    }

    async fn cluster(&mut self, arn: &str, cs: &mut ClusterState) -> End {
        let cluster = match ClusterId::from_arn(arn) {
            Ok(c) => c,
            Err(e) => {
                self.sum.error(arn, "ListClusters", e);
                return End::Done;
            }
        };
        let mut carry = match Carry::load(self.r.store, self.ns, cs.carry_chunks).await {
            Ok(c) => c,
            Err(e) => {
                // Without what it carried, the cluster starts again.
                self.sum.error(arn, "PassState", e);
                *cs = ClusterState::default();
                Carry::default()
            }
        };
        while cs.step < STEPS.len() {
            let paused = cs.paused.take();
            match self.step(arn, &cluster, cs, paused, &mut carry).await {
                Ok(()) => {
                    cs.step += 1;
                    carry.listed.clear();
                }
                Err(st) => {
                    cs.paused = Some(st);
                    match carry.save(self.r.store, self.ns).await {
                        Ok(n) => cs.carry_chunks = n,
                        Err(e) => {
                            self.sum.error(arn, "PassState", e);
                            *cs = ClusterState::default();
                        }
                    }
                    return End::Paused;
                }
            }
        }
        // Deletes only when every listing of the cluster completed.
        if !cs.failed {
            for (step, id, rev) in std::mem::take(&mut carry.deletes) {
                let key = EntityKey {
                    kind: STEPS[step],
                    cluster: cluster.clone(),
                    id,
                };
                self.delete(&key, rev, arn).await;
            }
        }
        *cs = ClusterState::default();
        End::Done
    }

    async fn delete(&mut self, key: &EntityKey, mod_revision: i64, cluster: &str) {
        match self.r.store.delete_if_unchanged(key, mod_revision).await {
            Ok(true) => self.sum.count(key.kind, |c| c.deleted += 1),
            // Changed since the snapshot: a newer event wins.
            Ok(false) => {}
            Err(e) => self.sum.error(cluster, "Delete", e),
        }
    }

    /// Deletes every record of this account and region whose cluster
    /// ListClusters no longer returns. Read a page at a time, keeping only
    /// those records: a million records are never held at once.
    async fn purge_vanished(&mut self, clusters: &[String]) {
        let listed: HashSet<ClusterId> = (clusters.iter())
            .filter_map(|a| ClusterId::from_arn(a).ok())
            .collect();
        let scope = &self.r.scope;
        let vanished = |c: &ClusterId| {
            c.account == scope.account && c.region == scope.region && !listed.contains(c)
        };
        for kind in Kind::ALL {
            let gone: Vec<_> = match snapshot(self.r.store, kind, ClusterScope::All, None).await {
                Ok((keys, _)) => keys,
                Err(e) => {
                    self.sum.error("*", "Snapshot", e);
                    return;
                }
            };
            let gone = gone.into_iter().filter(|k| vanished(&k.key.cluster));
            for k in gone {
                let arn = k.key.cluster.arn();
                self.delete(&k.key, k.mod_revision, &arn).await;
            }
        }
    }
}

#[cfg(test)]
mod tests;
