//! Reconcile across member accounts and Regions (README "Organizations"):
//! the home pass and one pass per member (account, Region), all at once,
//! each with its own ECS source (the member's assumed role) and its own call
//! budget (ECS throttles per account and Region), and its own saved place
//! (meta names under `members/<account>/<region>/`). A member that fails
//! (role missing, access denied, throttled) is reported in the run's errors
//! and its own status, and never stops or slows the others. Records of
//! pairs that are no longer read are deleted, guarded, only when configured
//! to and only when the member list is known.

use serde::Serialize;
use tokio::time::Instant;

use super::{Reconciler, RunError, Summary};
use crate::ecs::members::Members;
use crate::ecs::RunScope;
use crate::model::Kind;
use crate::store::{ClusterScope, StateStore};

/// One member's pass in a run.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MemberRun {
    pub account: String,
    pub region: String,
    #[serde(flatten)]
    pub summary: Summary,
}

impl MemberRun {
    /// What status shows of it.
    fn status(&self) -> serde_json::Value {
        let s = &self.summary;
        serde_json::json!({
            "account": self.account,
            "region": self.region,
            "pass": s.pass,
            "clusters": s.clusters,
            "calls": s.calls.total(),
            "throttles": s.calls.throttles,
            "errors": s.errors,
            "inserted": s.total.inserted,
            "updated": s.total.updated,
            "deleted": s.total.deleted,
        })
    }
}

/// Where a member's pass keeps its state.
pub fn namespace(member: &RunScope) -> String {
    format!("members/{}/{}/", member.account, member.region)
}

/// The home pass, every member's pass, compaction once, and the purge of
/// former members when configured. The home summary carries the members'
/// (`members`), and their errors prefixed with their account and Region.
pub async fn run_with_members(
    home: &Reconciler<'_>,
    members: &dyn Members,
    deadline: Option<Instant>,
) -> Summary {
    let started = Instant::now();
    let settings = members.settings();
    let (accounts, listed) = match members.accounts().await {
        Ok(a) => (a, Ok(())),
        // Without the list, only the home account's other Regions are read.
        Err(e) => (Vec::new(), Err(e)),
    };
    let pairs = settings.pairs(&home.scope, &accounts);
    let mut sources = Vec::with_capacity(pairs.len());
    for p in &pairs {
        sources.push(members.source(&home.scope, p).await);
    }
    let passes = pairs
        .iter()
        .zip(&sources)
        .map(|(scope, source)| async move {
            let r = Reconciler {
                store: home.store,
                source: source.as_ref(),
                scope: scope.clone(),
                retention: home.retention,
                settings: home.settings,
            };
            let summary = r.pass_until(&namespace(scope), deadline).await;
            MemberRun {
                account: scope.account.clone(),
                region: scope.region.clone(),
                summary,
            }
        });
    let (mut sum, runs) = futures::join!(
        home.pass_until("", deadline),
        futures::future::join_all(passes)
    );
    if let Err(e) = &listed {
        sum.error("*", e.operation, &e.message);
    }
    for run in &runs {
        for e in &run.summary.errors {
            sum.errors.push(RunError {
                cluster: match e.cluster.as_str() {
                    "*" => format!("{}/{}", run.account, run.region),
                    c => c.to_string(),
                },
                operation: e.operation.clone(),
                message: e.message.clone(),
            });
        }
    }
    let entries = runs.iter().map(MemberRun::status).collect();
    crate::status::record_members(home.store, entries).await;
    if settings.purge_former && listed.is_ok() {
        let mut read = pairs;
        read.push(home.scope.clone());
        match purge_former(home.store, &read).await {
            Ok(n) => sum.purged = Some(n),
            Err(e) => sum.error("*", "PurgeFormerMembers", e),
        }
    }
    home.compact(&mut sum).await;
    sum.members = runs;
    sum.duration_ms = started.elapsed().as_millis() as u64;
    sum
}

/// Deletes every record of a pair not in `read`, each only if unchanged
/// since it was listed; answers how many.
async fn purge_former(
    store: &dyn StateStore,
    read: &[RunScope],
) -> Result<usize, crate::store::StoreError> {
    let mut deleted = 0;
    for kind in Kind::ALL {
        let (keys, _) = super::snapshot(store, kind, ClusterScope::All, None).await?;
        for k in keys {
            let c = &k.key.cluster;
            let kept = read
                .iter()
                .any(|p| p.account == c.account && p.region == c.region);
            if !kept && store.delete_if_unchanged(&k.key, k.mod_revision).await? {
                deleted += 1;
            }
        }
    }
    Ok(deleted)
}
