//! One step of a cluster's pass: one kind of entity. Read the store's
//! keys (the snapshot), list what ECS holds page by page, describe what the
//! store lacks, set aside for deletion what no listing shows, and re-describe
//! this pass's slice of the rest (`verify`). Every described entity goes
//! through the version-guarded upsert the events use.

use std::collections::{HashMap, HashSet};

use super::pass::{Carry, ClusterState, StepState};
use super::verify::{self, Mark, Marks};
use super::{snapshot, Run, DESCRIBE_BATCH, STEPS, WHOLE_MIN, WHOLE_SHARE};
use crate::ecs::{EcsSource, Page, SourceError, DESCRIBE_SERVICES_BATCH};
use crate::model::{Arn, ClusterId, Entity, Kind};
use crate::store::{ClusterScope, Source, Upsert, UpsertOutcome};

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

impl Run<'_, '_> {
    /// One kind of one cluster: snapshot, listing, describes of what the
    /// store lacks, deletes set aside, the verification slice. `Err`: paused.
    pub(super) async fn step(
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
}
