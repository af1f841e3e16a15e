//! Reconcile decisions over the embedded store, with an in-test ECS: what a
//! run inserts, updates, leaves and deletes, and what it must never touch.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::value::RawValue;
use serde_json::Value;

use super::{EcsSource, Reconciler, RunScope, SourceError, Summary};
use crate::model::{Entity, Kind};
use crate::store::{EmbeddedStore, Source, StateStore, Upsert};
use crate::testing::{cluster_arn, entity, instance, task, ACCOUNT, REGION};

/// An ECS account in memory: clusters with their tasks and instances, the
/// operations told to fail, and an event to write into the store while
/// ListTasks is answered (as an event arriving mid-run would).
#[derive(Default)]
struct Ecs {
    clusters: BTreeMap<String, (Vec<Value>, Vec<Value>)>,
    failing: Vec<&'static str>,
    calls: AtomicU64,
    mid_run: Mutex<Option<(Arc<EmbeddedStore>, Value)>>,
}

impl Ecs {
    fn with(mut self, cluster: &str, tasks: Vec<Value>, instances: Vec<Value>) -> Ecs {
        self.clusters
            .insert(cluster_arn(cluster), (tasks, instances));
        self
    }

    fn call(&self, operation: &'static str) -> Result<(), SourceError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        match self.failing.contains(&operation) {
            true => Err(SourceError {
                operation,
                message: "injected".into(),
            }),
            false => Ok(()),
        }
    }

    fn of(&self, cluster: &str) -> (Vec<Value>, Vec<Value>) {
        self.clusters.get(cluster).cloned().unwrap_or_default()
    }
}

fn arns(items: &[Value], field: &str) -> Vec<String> {
    let arn = |v: &Value| v[field].as_str().map(String::from);
    items.iter().filter_map(arn).collect()
}

fn described(items: Vec<Value>, field: &str, asked: &[String]) -> Vec<Box<RawValue>> {
    let wanted = |v: &Value| asked.iter().any(|a| v[field].as_str() == Some(a));
    let raw = |v: Value| RawValue::from_string(v.to_string()).ok();
    items.into_iter().filter(wanted).filter_map(raw).collect()
}

#[async_trait]
impl EcsSource for Ecs {
    async fn list_clusters(&self) -> Result<Vec<String>, SourceError> {
        self.call("ListClusters")?;
        Ok(self.clusters.keys().cloned().collect())
    }

    async fn list_container_instances(&self, cluster: &str) -> Result<Vec<String>, SourceError> {
        self.call("ListContainerInstances")?;
        Ok(arns(&self.of(cluster).1, "containerInstanceArn"))
    }

    async fn describe_container_instances(
        &self,
        cluster: &str,
        asked: &[String],
    ) -> Result<Vec<Box<RawValue>>, SourceError> {
        self.call("DescribeContainerInstances")?;
        Ok(described(self.of(cluster).1, "containerInstanceArn", asked))
    }

    async fn list_tasks(&self, cluster: &str, desired: &str) -> Result<Vec<String>, SourceError> {
        self.call("ListTasks")?;
        let late = self.mid_run.lock().ok().and_then(|mut m| m.take());
        if let Some((store, detail)) = late {
            put(store.as_ref(), &entity(Kind::Task, &detail)).await;
        }
        let (tasks, _) = self.of(cluster);
        let wanted = |t: &&Value| t["desiredStatus"] == desired;
        let tasks: Vec<Value> = tasks.iter().filter(wanted).cloned().collect();
        Ok(arns(&tasks, "taskArn"))
    }

    async fn describe_tasks(
        &self,
        cluster: &str,
        asked: &[String],
    ) -> Result<Vec<Box<RawValue>>, SourceError> {
        self.call("DescribeTasks")?;
        Ok(described(self.of(cluster).0, "taskArn", asked))
    }

    fn api_calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }
}

/// Writes an entity as an event would.
async fn put(store: &dyn StateStore, e: &Entity) {
    let w = Upsert {
        entity: e,
        source: Source::Event,
        snapshot: None,
    };
    for r in store.upsert_many(&[w]).await {
        r.unwrap_or_else(|e| panic!("seeding the store: {e}"));
    }
}

async fn seed(store: &dyn StateStore, kind: Kind, details: &[Value]) {
    for d in details {
        put(store, &entity(kind, d)).await;
    }
}

async fn run(store: &dyn StateStore, ecs: &Ecs) -> Summary {
    Reconciler {
        store,
        source: ecs,
        scope: RunScope {
            account: ACCOUNT.into(),
            region: REGION.into(),
        },
        retention: Duration::from_secs(3600),
    }
    .run()
    .await
}

/// The stored ECS version of a task, if the task is stored.
async fn version(store: &dyn StateStore, detail: &Value) -> Option<u64> {
    let key = entity(Kind::Task, detail).key;
    let rec = store
        .get(&key, None)
        .await
        .unwrap_or_else(|e| panic!("{e}"))?;
    Some(rec.meta().unwrap_or_else(|e| panic!("{e}")).ecs_version)
}

fn store() -> Arc<EmbeddedStore> {
    Arc::new(EmbeddedStore::new("/ecs-css/v1/"))
}

#[tokio::test]
async fn a_first_run_inserts_everything_and_a_second_changes_nothing() {
    let s = store();
    let ecs = Ecs::default()
        .with(
            "web",
            vec![
                task("web", "t1", "RUNNING", 1),
                task("web", "t2", "STOPPED", 3),
            ],
            vec![instance("web", "i1", "ACTIVE", 2)],
        )
        .with("batch", vec![task("batch", "t3", "PENDING", 1)], vec![]);
    let first = run(s.as_ref(), &ecs).await;
    assert_eq!(first.errors, vec![]);
    assert_eq!((first.clusters, first.listed, first.described), (2, 4, 4));
    assert_eq!((first.inserted, first.updated, first.deleted), (4, 0, 0));
    assert!(first.api_calls >= 7, "calls counted: {first:?}");
    assert!(first.compaction.is_some());
    let second = run(s.as_ref(), &ecs).await;
    assert_eq!((second.inserted, second.updated), (0, 0));
    assert_eq!((second.unchanged, second.deleted), (4, 0));
}

#[tokio::test]
async fn newer_versions_update_and_older_ones_never_regress() {
    let s = store();
    seed(
        s.as_ref(),
        Kind::Task,
        &[
            task("web", "t1", "PENDING", 1),
            task("web", "t2", "STOPPED", 5),
        ],
    )
    .await;
    // ECS answers t1 newer than stored, and t2 older (an event was faster).
    let (t1, t2) = (
        task("web", "t1", "RUNNING", 2),
        task("web", "t2", "RUNNING", 4),
    );
    let ecs = Ecs::default().with("web", vec![t1.clone(), t2.clone()], vec![]);
    let sum = run(s.as_ref(), &ecs).await;
    assert_eq!((sum.updated, sum.unchanged, sum.deleted), (1, 1, 0));
    assert_eq!(version(s.as_ref(), &t1).await, Some(2));
    assert_eq!(version(s.as_ref(), &t2).await, Some(5));
}

#[tokio::test]
async fn records_ecs_no_longer_lists_are_deleted() {
    let s = store();
    let (kept, gone) = (
        task("web", "t1", "RUNNING", 1),
        task("web", "t2", "RUNNING", 1),
    );
    seed(s.as_ref(), Kind::Task, &[kept.clone(), gone.clone()]).await;
    seed(
        s.as_ref(),
        Kind::Instance,
        &[instance("web", "i9", "ACTIVE", 1)],
    )
    .await;
    let ecs = Ecs::default().with("web", vec![kept.clone()], vec![]);
    let sum = run(s.as_ref(), &ecs).await;
    assert_eq!((sum.unchanged, sum.deleted), (1, 2));
    assert_eq!(version(s.as_ref(), &kept).await, Some(1));
    assert_eq!(version(s.as_ref(), &gone).await, None);
}

#[tokio::test]
async fn a_failed_listing_keeps_every_record_of_that_cluster() {
    for failing in ["ListTasks", "ListContainerInstances"] {
        let s = store();
        let old = task("web", "t-old", "RUNNING", 1);
        seed(s.as_ref(), Kind::Task, std::slice::from_ref(&old)).await;
        let mut ecs = Ecs::default().with("web", vec![task("web", "t1", "RUNNING", 1)], vec![]);
        ecs.failing = vec![failing];
        let sum = run(s.as_ref(), &ecs).await;
        assert_eq!(sum.deleted, 0, "{failing}");
        assert_eq!(version(s.as_ref(), &old).await, Some(1), "{failing}");
        assert!(
            sum.errors
                .iter()
                .any(|e| e.operation == failing && e.cluster == cluster_arn("web")),
            "{failing}: {:?}",
            sum.errors
        );
    }
}

#[tokio::test]
async fn a_failed_describe_is_an_error_and_deletes_nothing_it_listed() {
    let s = store();
    let i1 = instance("web", "i1", "ACTIVE", 1);
    seed(s.as_ref(), Kind::Instance, std::slice::from_ref(&i1)).await;
    let mut ecs = Ecs::default().with("web", vec![task("web", "t1", "RUNNING", 1)], vec![i1]);
    ecs.failing = vec!["DescribeContainerInstances"];
    let sum = run(s.as_ref(), &ecs).await;
    assert_eq!((sum.inserted, sum.deleted), (1, 0));
    assert_eq!(sum.errors.len(), 1, "{:?}", sum.errors);
    assert_eq!(sum.errors[0].operation, "DescribeContainerInstances");
}

#[tokio::test]
async fn a_failed_cluster_listing_is_one_error_and_touches_nothing() {
    let s = store();
    let t = task("web", "t1", "RUNNING", 1);
    seed(s.as_ref(), Kind::Task, std::slice::from_ref(&t)).await;
    let ecs = Ecs {
        failing: vec!["ListClusters"],
        ..Ecs::default()
    };
    let sum = run(s.as_ref(), &ecs).await;
    assert_eq!(sum.errors.len(), 1);
    assert_eq!(
        (
            sum.errors[0].cluster.as_str(),
            sum.errors[0].operation.as_str()
        ),
        ("*", "ListClusters")
    );
    assert_eq!(version(s.as_ref(), &t).await, Some(1));
}

#[tokio::test]
async fn vanished_clusters_are_purged_only_in_the_runs_account_and_region() {
    let s = store();
    let ours = task("gone", "t1", "RUNNING", 1);
    let mut theirs = ours.clone();
    let other =
        |v: &Value| Value::String(v.as_str().unwrap_or("").replace(ACCOUNT, "999988887777"));
    for field in ["taskArn", "clusterArn", "containerInstanceArn"] {
        theirs[field] = other(&theirs[field]);
    }
    seed(s.as_ref(), Kind::Task, &[ours.clone(), theirs.clone()]).await;
    let ecs = Ecs::default().with("web", vec![], vec![]);
    let sum = run(s.as_ref(), &ecs).await;
    assert_eq!(sum.deleted, 1);
    assert_eq!(version(s.as_ref(), &ours).await, None);
    assert_eq!(version(s.as_ref(), &theirs).await, Some(1));
}

#[tokio::test]
async fn an_event_written_during_the_run_survives_the_delete_phase() {
    // Stored before the run (so in its snapshot), not listed by ECS, and
    // changed by an event while the run lists: the newer event wins.
    let s = store();
    seed(
        s.as_ref(),
        Kind::Task,
        &[task("web", "t-late", "PENDING", 1)],
    )
    .await;
    let late = task("web", "t-late", "RUNNING", 2);
    let ecs = Ecs::default().with("web", vec![task("web", "t1", "RUNNING", 1)], vec![]);
    *ecs.mid_run.lock().unwrap_or_else(|e| e.into_inner()) = Some((s.clone(), late.clone()));
    let sum = run(s.as_ref(), &ecs).await;
    assert_eq!((sum.inserted, sum.deleted), (1, 0), "{sum:?}");
    assert_eq!(version(s.as_ref(), &late).await, Some(2));
}
