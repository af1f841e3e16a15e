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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use async_trait::async_trait;

    use super::*;
    use crate::ecs::members::{Accounts, MemberSettings};
    use crate::ecs::{EcsSource, SourceError};
    use crate::reconcile::{BudgetSettings, Settings};
    use crate::testing::{embedded, instance, task, Ecs, ACCOUNT, REGION};

    const THROTTLED: &str = "999999999999";

    /// Members over in-test ECS APIs: one account refuses every call's rate.
    struct Fleet {
        settings: MemberSettings,
        healthy: Arc<Ecs>,
        throttled: Arc<Ecs>,
    }

    #[async_trait]
    impl Members for Fleet {
        fn settings(&self) -> &MemberSettings {
            &self.settings
        }
        async fn accounts(&self) -> Result<Vec<String>, SourceError> {
            Ok(vec![THROTTLED.into()])
        }
        async fn source(&self, _: &RunScope, member: &RunScope) -> Arc<dyn EcsSource> {
            match member.account.as_str() {
                THROTTLED => self.throttled.clone(),
                _ => self.healthy.clone(),
            }
        }
    }

    /// A member ECS throttles is reported, and the others' passes finish
    /// with their own budgets untouched (no throttle, the configured rate).
    #[tokio::test]
    async fn a_throttled_member_neither_stops_nor_slows_the_others() {
        let store = embedded();
        let fleet = Fleet {
            settings: MemberSettings {
                accounts: Accounts::Listed(vec![THROTTLED.into()]),
                regions: vec![REGION.into(), "eu-west-3".into()],
                role_name: "css-member-read".into(),
                ..MemberSettings::default()
            },
            healthy: Arc::new(Ecs::default().with(
                "web",
                vec![task("web", "t1", "RUNNING", 1)],
                vec![instance("web", "i1", "ACTIVE", 1)],
            )),
            throttled: Arc::new(Ecs {
                throttling: true,
                ..Ecs::default()
            }),
        };
        let home_ecs = Ecs::default();
        let rate = 1000.0;
        let home = Reconciler {
            store: store.as_ref(),
            source: &home_ecs,
            scope: RunScope {
                account: ACCOUNT.into(),
                region: REGION.into(),
            },
            retention: std::time::Duration::from_secs(3600),
            settings: Settings {
                budget: BudgetSettings {
                    calls_per_second: rate,
                    burst: rate,
                },
                ..Settings::default()
            },
        };
        let sum = run_with_members(&home, &fleet, None).await;
        assert_eq!(
            sum.members.len(),
            3,
            "(home account, eu-west-3) and the throttled account's two"
        );
        for m in &sum.members {
            let s = &m.summary;
            if m.account == THROTTLED {
                assert!(!s.pass.complete);
                assert!(s.calls.throttles >= 1, "{:?}", s.calls);
                assert!(s.calls.rate < rate, "its own rate halved: {}", s.calls.rate);
                assert_eq!(s.errors.len(), 1, "{:?}", s.errors);
            } else {
                assert!(s.pass.complete, "{}/{}", m.account, m.region);
                assert_eq!(s.calls.throttles, 0);
                assert_eq!(s.calls.rate, rate, "untouched by the other's throttles");
                assert!(s.errors.is_empty(), "{:?}", s.errors);
                assert_eq!(s.total.inserted, 2, "the task and the instance");
            }
        }
        // The run reports the throttled member's two Regions, and only them.
        assert_eq!(sum.errors.len(), 2, "{:?}", sum.errors);
        for e in &sum.errors {
            assert!(e.cluster.starts_with(THROTTLED), "{e}");
            assert_eq!(e.operation, "ListClusters");
        }
        // No member list, no purge configured: nothing purged.
        assert_eq!(sum.purged, None);
        // Their places are kept apart: the throttled member's pass is under way.
        let ns = namespace(&RunScope {
            account: THROTTLED.into(),
            region: REGION.into(),
        });
        assert!(ns.starts_with("members/999999999999/"));
    }
}
