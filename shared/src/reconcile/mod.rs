//! Reconciliation (docs/reference.md#reconciliation): make the store equal what the ECS API says,
//! without ever losing a newer event that arrives while a run is under way,
//! and within a budget of ECS calls.
//!
//! A pass goes through every cluster, one step per kind of entity: read a
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

use std::collections::{HashMap, HashSet};
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use crate::compaction::checkpoint_and_compact;
use crate::ecs::{Page, DESCRIBE_SERVICES_BATCH};
use crate::model::{Arn, ClusterId, Entity, EntityKey, Kind};
use crate::store::{
    ClusterScope, KeyRef, ListRequest, Source, StateStore, StoreError, Upsert, UpsertOutcome,
};

pub use crate::ecs::{aws, EcsSource, RunScope, ServicesAnswer, SourceError};

pub mod budget;
pub mod fleet;
mod pass;
mod summary;
mod verify;
pub use budget::{BudgetSettings, Budgeted, CallFigures};
pub use fleet::{run_with_members, MemberRun};
use pass::{Carry, ClusterState, PassState, StepState};
pub use summary::{KindCounts, PassProgress, RunError, Summary};
use verify::{Mark, Marks};

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

/// The listings of a kind (tasks: both desired statuses).
fn listings(kind: Kind) -> &'static [&'static str] {
    match kind {
        Kind::Task => &["RUNNING", "STOPPED"],
        Kind::Instance | Kind::Service => &[""],
    }
}

fn describe_batch(kind: Kind) -> usize {
    match kind {
        Kind::Service => DESCRIBE_SERVICES_BATCH,
        Kind::Task | Kind::Instance => DESCRIBE_BATCH,
    }
}

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

    /// One kind of one cluster: snapshot, listing, describes of what the
    /// store lacks, deletes set aside, the verification slice. `Err`: paused.
    async fn step(
        &mut self,
        arn: &str,
        cluster: &ClusterId,
        cs: &mut ClusterState,
        paused: Option<StepState>,
        carry: &mut Carry,
    ) -> Result<(), StepState> {
        let kind = STEPS[cs.step];
        let paused = match paused {
            // Paused in its slice: only the rest of the slice is left.
            Some(mut st) if st.verifying.is_some() => {
                let rest = st.verifying.take().unwrap_or_default();
                let snapshot = st.snapshot;
                return (self.verify_batches(kind, arn, rest, snapshot).await).map_err(|rest| {
                    StepState {
                        verifying: Some(rest),
                        ..st
                    }
                });
            }
            other => other,
        };
        let scope = ClusterScope::Exact(cluster.clone());
        // The snapshot comes before the listing; a paused step reads its own
        // again (or, compacted away, starts over with a new one).
        let resumed = match paused {
            Some(st) => {
                match snapshot(self.r.store, kind, scope.clone(), Some(st.snapshot)).await {
                    Ok((keys, _)) => Some((st, keys)),
                    Err(_) => None,
                }
            }
            None => None,
        };
        let (mut st, keys) = match resumed {
            Some(r) => r,
            None => {
                carry.listed.clear();
                match snapshot(self.r.store, kind, scope, None).await {
                    Ok((keys, rev)) => (
                        StepState {
                            snapshot: rev,
                            ..StepState::default()
                        },
                        keys,
                    ),
                    Err(e) => {
                        self.sum.error(arn, "Snapshot", e);
                        cs.failed = true;
                        return Ok(());
                    }
                }
            }
        };
        let in_store: HashMap<String, i64> = (keys.into_iter())
            .map(|k| (k.key.id, k.mod_revision))
            .collect();
        let mut listed: HashMap<String, String> = HashMap::new();
        for a in std::mem::take(&mut carry.listed) {
            if let Ok(p) = Arn::parse(&a) {
                listed.insert(p.id, a);
            }
        }
        let pause = |st: StepState, listed: HashMap<String, String>, carry: &mut Carry| {
            carry.listed = listed.into_values().collect();
            Err(st)
        };
        let batch = describe_batch(kind);
        let mut complete = true;
        while !st.listed_all {
            if self.out_of_time() {
                return pause(st, listed, carry);
            }
            let desired = listings(kind)[st.listing];
            let page = match self.list(kind, arn, desired, st.token.as_deref()).await {
                Ok(p) => p,
                Err(e) => {
                    self.sum.error(arn, e.operation, e.message);
                    cs.failed = true;
                    complete = false;
                    break;
                }
            };
            self.sum.count(kind, |c| c.listed += page.arns.len());
            for a in page.arns {
                match Arn::parse(&a) {
                    Ok(p) => {
                        let new = listed.insert(p.id.clone(), a.clone()).is_none();
                        if new && !in_store.contains_key(&p.id) {
                            st.pending.push(a);
                        }
                    }
                    Err(e) => self.sum.error(arn, "List", e),
                }
            }
            st.token = page.next;
            if st.token.is_none() {
                st.listing += 1;
                st.listed_all = st.listing >= listings(kind).len();
            }
            // Full batches as they fill.
            if !self.describe_pending(kind, arn, &mut st, batch).await {
                return pause(st, listed, carry);
            }
        }
        // The listing's tail (or what a resumed step had not described).
        if !self.describe_pending(kind, arn, &mut st, 1).await {
            return pause(st, listed, carry);
        }
        let missing = listed
            .keys()
            .filter(|id| !in_store.contains_key(*id))
            .count();
        let extra: Vec<(&String, &i64)> = (in_store.iter())
            .filter(|(id, _)| !listed.contains_key(*id))
            .collect();
        let disagree = missing + extra.len();
        if complete {
            let found = extra
                .iter()
                .map(|(id, rev)| (cs.step, id.to_string(), **rev));
            carry.deletes.extend(found);
        }
        let mut both: Vec<&str> = (listed.keys())
            .filter(|id| in_store.contains_key(*id))
            .map(String::as_str)
            .collect();
        both.sort_unstable();
        let whole_at =
            WHOLE_MIN.max((WHOLE_SHARE * listed.len().max(in_store.len()) as f64) as usize);
        let slice = self.slice(kind, arn, &both, &listed, disagree > whole_at);
        match self.verify_batches(kind, arn, slice, st.snapshot).await {
            Ok(()) => Ok(()),
            Err(rest) => Err(StepState {
                listed_all: true,
                verifying: Some(rest),
                ..st
            }),
        }
    }

    /// Describes the step's pending ARNs a batch at a time while at least
    /// `min` are pending; false when the deadline came first.
    async fn describe_pending(
        &mut self,
        kind: Kind,
        arn: &str,
        st: &mut StepState,
        min: usize,
    ) -> bool {
        while st.pending.len() >= min.max(1) {
            if self.out_of_time() {
                return false;
            }
            let n = describe_batch(kind).min(st.pending.len());
            let arns: Vec<String> = st.pending.drain(..n).collect();
            self.describe(kind, arn, &arns, st.snapshot, false).await;
        }
        true
    }

    /// This pass's slice of the records ECS and the store both hold (all
    /// of them when the cluster looks wrong), as ARNs; the mark moves past
    /// it now (a paused slice is finished by the next run).
    fn slice(
        &mut self,
        kind: Kind,
        arn: &str,
        ids: &[&str],
        arns: &HashMap<String, String>,
        whole: bool,
    ) -> Vec<String> {
        let key = Marks::key(kind.plural(), arn);
        let now = verify::millis((self.r.settings.now)());
        let mark = self.marks.0.get(&key);
        let horizon = self.r.settings.verify_horizon;
        let len = match whole {
            true => ids.len(),
            false => verify::slice_len(ids.len(), mark, now, horizon),
        };
        let after = mark.map_or("", |m| m.after.as_str());
        let slice = verify::slice(ids, after, len);
        let after = slice.last().map_or(after, |l| l).to_string();
        self.marks.0.insert(key, Mark { after, at_ms: now });
        (slice.iter())
            .filter_map(|id| arns.get(*id).cloned())
            .collect()
    }

    /// Re-describes `arns` a batch at a time; `Err`: those left at the deadline.
    async fn verify_batches(
        &mut self,
        kind: Kind,
        arn: &str,
        mut arns: Vec<String>,
        snapshot_rev: i64,
    ) -> Result<(), Vec<String>> {
        while !arns.is_empty() {
            if self.out_of_time() {
                return Err(arns);
            }
            let n = describe_batch(kind).min(arns.len());
            let batch: Vec<String> = arns.drain(..n).collect();
            self.describe(kind, arn, &batch, snapshot_rev, true).await;
        }
        Ok(())
    }

    async fn list(
        &self,
        kind: Kind,
        arn: &str,
        desired: &str,
        next: Option<&str>,
    ) -> Result<Page, SourceError> {
        match kind {
            Kind::Instance => self.budget.list_container_instances(arn, next).await,
            Kind::Task => self.budget.list_tasks(arn, desired, next).await,
            Kind::Service => self.budget.list_services(arn, next).await,
        }
    }

    /// Describes one batch and upserts what comes back.
    async fn describe(
        &mut self,
        kind: Kind,
        cluster_arn: &str,
        batch: &[String],
        snapshot_rev: i64,
        verifying: bool,
    ) {
        let src = &self.budget;
        let described = match kind {
            Kind::Task => src
                .describe_tasks(cluster_arn, batch)
                .await
                .map(|r| (r, None)),
            Kind::Instance => {
                (src.describe_container_instances(cluster_arn, batch).await).map(|r| (r, None))
            }
            // A service gone between list and describe (MISSING) is not
            // stored; the next pass deletes its record.
            Kind::Service => (src.describe_services(cluster_arn, batch).await)
                .map(|a| (a.services, Some(a.sent_at))),
        };
        let (raws, sent_at) = match described {
            Ok(r) => r,
            Err(e) => {
                self.sum.error(cluster_arn, e.operation, e.message);
                return;
            }
        };
        self.sum.count(kind, |c| {
            c.described += raws.len();
            if verifying {
                c.verified += raws.len();
            }
        });
        let mut entities = Vec::with_capacity(raws.len());
        for raw in raws {
            match Entity::from_raw(kind, raw, false) {
                Ok(e) => entities.push(match sent_at {
                    Some(t) => e.read_at(t),
                    None => e,
                }),
                Err(e) => self.sum.error(cluster_arn, "Describe", e),
            }
        }
        // One write per entity (ECS may repeat an ARN in an answer).
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
        for r in self.r.store.upsert_many(&writes).await {
            match r {
                Ok(UpsertOutcome::Inserted { .. }) => self.sum.count(kind, |c| c.inserted += 1),
                Ok(UpsertOutcome::Updated { .. }) => self.sum.count(kind, |c| c.updated += 1),
                Ok(UpsertOutcome::Unchanged { .. }) => self.sum.count(kind, |c| c.unchanged += 1),
                Err(e) => self.sum.error(cluster_arn, "Upsert", e),
            }
        }
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
