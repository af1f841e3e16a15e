//! Reconciliation against moto's server mode (ECS, with EC2 for container
//! instances) and a real etcd.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use css::compaction::checkpoint_and_compact;
use css::ecs::Page;
use css::ingest::apply_batch;
use css::model::{ClusterId, EntityKey, Kind};
use css::reconcile::aws::AwsEcs;
use css::reconcile::{EcsSource, Reconciler, RunScope, ServicesAnswer, SourceError, Summary};
use css::store::{ClusterScope, EmbeddedStore, ListRequest, StateStore, StoreError};
use css_tests::fixtures::{messages, task_event};
use css_tests::moto::MotoServer;
use css_tests::EtcdServer;
use futures::future::BoxFuture;
use serde_json::value::RawValue;
use serde_json::{json, Value};

const ACCOUNT: &str = "123456789012";
const REGION: &str = "us-east-1";

fn scope() -> RunScope {
    RunScope {
        account: ACCOUNT.into(),
        region: REGION.into(),
    }
}

/// A task event in moto's account and region.
fn task_body(account: &str, cluster: &str, id: &str, status: &str, version: u64) -> String {
    task_event(&json!({
        "taskArn": format!("arn:aws:ecs:{REGION}:{account}:task/{cluster}/{id}"),
        "clusterArn": format!("arn:aws:ecs:{REGION}:{account}:cluster/{cluster}"),
        "lastStatus": status,
        "desiredStatus": "RUNNING",
        "version": version
    }))
}

fn key(kind: Kind, cluster: &str, id: &str) -> EntityKey {
    EntityKey {
        kind,
        cluster: ClusterId::from_arn(&format!("arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/{cluster}"))
            .unwrap(),
        id: id.into(),
    }
}

fn id_of(arn: &Value) -> String {
    arn.as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_string()
}

async fn ids(store: &dyn StateStore, kind: Kind, cluster: ClusterScope) -> Vec<String> {
    let page = store
        .list(&ListRequest {
            kind,
            cluster,
            status: None,
            start_after: None,
            limit: 10_000,
            revision: None,
        })
        .await
        .unwrap();
    let mut ids: Vec<String> = page.records.iter().map(|r| r.key.id.clone()).collect();
    ids.sort();
    ids
}

async fn apply(store: &dyn StateStore, bodies: &[String]) {
    let out = apply_batch(store, &messages(bodies)).await;
    assert!(out.failures.is_empty(), "{:?}", out.failures);
}

/// The real ECS source with test hooks: a failing ListTasks for one cluster,
/// a callback during a cluster's ListTasks, and a count of DescribeTasks calls.
struct Hooked {
    inner: AwsEcs,
    fail_list_tasks: Option<String>,
    during_list_tasks: Mutex<Option<(String, BoxFuture<'static, ()>)>>,
    describe_tasks_calls: AtomicUsize,
}

impl Hooked {
    fn new(moto: &MotoServer) -> Hooked {
        Hooked {
            inner: AwsEcs::single_attempt(&moto.sdk_config()),
            fail_list_tasks: None,
            during_list_tasks: Mutex::new(None),
            describe_tasks_calls: AtomicUsize::new(0),
        }
    }
}

#[async_trait]
impl EcsSource for Hooked {
    async fn list_clusters(&self, next: Option<&str>) -> Result<Page, SourceError> {
        self.inner.list_clusters(next).await
    }
    async fn list_container_instances(
        &self,
        cluster: &str,
        next: Option<&str>,
    ) -> Result<Page, SourceError> {
        self.inner.list_container_instances(cluster, next).await
    }
    async fn describe_container_instances(
        &self,
        cluster: &str,
        arns: &[String],
    ) -> Result<Vec<Box<RawValue>>, SourceError> {
        self.inner.describe_container_instances(cluster, arns).await
    }
    async fn list_tasks(
        &self,
        cluster: &str,
        desired: &str,
        next: Option<&str>,
    ) -> Result<Page, SourceError> {
        if self
            .fail_list_tasks
            .as_deref()
            .is_some_and(|c| cluster.ends_with(&format!("/{c}")))
        {
            let message = "AccessDeniedException: not authorized (injected)";
            return Err(SourceError::new("ListTasks", message));
        }
        let hook = {
            let mut slot = self.during_list_tasks.lock().unwrap();
            match slot.as_ref() {
                Some((c, _)) if cluster.ends_with(&format!("/{c}")) => slot.take().map(|(_, f)| f),
                _ => None,
            }
        };
        if let Some(f) = hook {
            f.await;
        }
        self.inner.list_tasks(cluster, desired, next).await
    }
    async fn describe_tasks(
        &self,
        cluster: &str,
        arns: &[String],
    ) -> Result<Vec<Box<RawValue>>, SourceError> {
        self.describe_tasks_calls.fetch_add(1, Ordering::Relaxed);
        self.inner.describe_tasks(cluster, arns).await
    }
    async fn list_services(&self, cluster: &str, next: Option<&str>) -> Result<Page, SourceError> {
        self.inner.list_services(cluster, next).await
    }
    async fn describe_services(
        &self,
        cluster: &str,
        names: &[String],
    ) -> Result<ServicesAnswer, SourceError> {
        self.inner.describe_services(cluster, names).await
    }
    fn api_calls(&self) -> u64 {
        self.inner.api_calls()
    }
}

async fn run(store: &dyn StateStore, source: &dyn EcsSource) -> Summary {
    let summary = Reconciler {
        store,
        source,
        scope: scope(),
        retention: Duration::from_secs(3600),
        settings: css_tests::fixtures::describe_all(),
    }
    .run()
    .await;
    println!("{}", serde_json::to_string(&summary).unwrap());
    summary
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn converges_from_empty_and_then_stays_put() {
    let moto = MotoServer::start();
    let fleet = moto.seed_ecs(&json!({"clusters": {
        "alpha": {"instances": 2, "running": 5, "stopped": 3},
        "bravo": {"instances": 1, "running": 2}
    }}));
    let etcd = EtcdServer::start();
    let store = etcd.store("/ecs-css/v1/").await;
    let source = Hooked::new(&moto);

    let s = run(store.as_ref(), &source).await;
    assert!(s.errors.is_empty(), "{:?}", s.errors);
    assert_eq!(s.clusters, 2);
    assert_eq!(
        (s.total.listed, s.total.described, s.total.inserted),
        (13, 13, 13)
    );
    assert_eq!((s.total.updated, s.total.deleted), (0, 0));
    assert!(
        s.api_calls >= 9,
        "ListClusters + per cluster 2 lists, 2 describes...: {}",
        s.api_calls
    );
    assert!(s.compaction.is_some());

    let mut want: Vec<String> = ["running", "stopped"]
        .iter()
        .flat_map(|k| {
            fleet["clusters"]["alpha"][k]
                .as_array()
                .unwrap()
                .iter()
                .map(id_of)
        })
        .collect();
    want.sort();
    assert_eq!(
        ids(
            store.as_ref(),
            Kind::Task,
            ClusterScope::Named("alpha".into())
        )
        .await,
        want
    );
    assert_eq!(
        ids(
            store.as_ref(),
            Kind::Instance,
            ClusterScope::Named("alpha".into())
        )
        .await
        .len(),
        2
    );
    let t = store
        .get(&key(Kind::Task, "alpha", &want[0]), None)
        .await
        .unwrap()
        .unwrap();
    let meta = t.meta().unwrap();
    assert_eq!(meta.source, css::store::Source::Reconcile);
    let entity: Value = serde_json::from_str(meta.entity.get()).unwrap();
    assert_eq!(
        entity["group"], "service:web",
        "ECS's own JSON shape, camelCase"
    );
    assert!(entity["containers"].is_array());

    // A second run finds nothing to change.
    let before = record_revisions(store.as_ref()).await;
    let s2 = run(store.as_ref(), &source).await;
    assert!(s2.errors.is_empty());
    assert_eq!(
        (
            s2.total.inserted,
            s2.total.updated,
            s2.total.deleted,
            s2.total.unchanged
        ),
        (0, 0, 0, 13)
    );
    // No record was rewritten (the run's own bookkeeping is not a record).
    assert_eq!(record_revisions(store.as_ref()).await, before);
}

/// Every record of every kind, with its mod_revision.
async fn record_revisions(store: &dyn StateStore) -> Vec<(EntityKey, i64)> {
    let records = css_tests::fixtures::all_records(store).await;
    assert!(!records.is_empty());
    records
        .into_iter()
        .map(|r| (r.key.clone(), r.mod_revision))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_records_are_updated_and_vanished_ones_deleted() {
    let moto = MotoServer::start();
    let fleet = moto.seed_ecs(&json!({"clusters": {"alpha": {"instances": 1, "running": 3}}}));
    let etcd = EtcdServer::start();
    let store = etcd.store("/ecs-css/v1/").await;
    let real = id_of(&fleet["clusters"]["alpha"]["running"][0]);
    apply(
        store.as_ref(),
        &[
            // What an old event said about a task ECS now runs.
            task_body(ACCOUNT, "alpha", &real, "PENDING", 4),
            // A task ECS no longer lists.
            task_body(ACCOUNT, "alpha", "ghost1", "RUNNING", 2),
            // Another account's same-named cluster: not this run's business.
            task_body("999999999999", "alpha", "foreign1", "RUNNING", 1),
        ],
    )
    .await;
    let s = run(store.as_ref(), &Hooked::new(&moto)).await;
    assert!(s.errors.is_empty(), "{:?}", s.errors);
    assert_eq!(
        (s.total.inserted, s.total.updated, s.total.deleted),
        (3, 1, 1),
        "2 tasks + 1 instance new, 1 stale, 1 ghost"
    );
    let fixed = store
        .get(&key(Kind::Task, "alpha", &real), None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(fixed.meta().unwrap().status, "RUNNING");
    assert!(store
        .get(&key(Kind::Task, "alpha", "ghost1"), None)
        .await
        .unwrap()
        .is_none());
    let foreign = ids(
        store.as_ref(),
        Kind::Task,
        ClusterScope::Named("alpha".into()),
    )
    .await;
    assert!(foreign.contains(&"foreign1".to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_during_the_run_survives_the_delete_phase() {
    let moto = MotoServer::start();
    moto.seed_ecs(&json!({"clusters": {"alpha": {"instances": 1, "running": 2}}}));
    let etcd = EtcdServer::start();
    let store: Arc<dyn StateStore> = etcd.store("/ecs-css/v1/").await;
    apply(
        store.as_ref(),
        &[
            task_body(ACCOUNT, "alpha", "late1", "PENDING", 1),
            task_body(ACCOUNT, "alpha", "ghost1", "RUNNING", 1),
        ],
    )
    .await;
    let source = Hooked::new(&moto);
    // After the snapshot, while ECS is being listed, an event updates late1
    // (ECS's listing does not have it yet).
    let s2 = store.clone();
    *source.during_list_tasks.lock().unwrap() = Some((
        "alpha".into(),
        Box::pin(async move {
            apply(
                s2.as_ref(),
                &[task_body(ACCOUNT, "alpha", "late1", "RUNNING", 2)],
            )
            .await
        }),
    ));
    let s = run(store.as_ref(), &source).await;
    assert!(s.errors.is_empty(), "{:?}", s.errors);
    assert_eq!(s.total.deleted, 1, "the untouched ghost goes");
    assert!(store
        .get(&key(Kind::Task, "alpha", "ghost1"), None)
        .await
        .unwrap()
        .is_none());
    let late = store
        .get(&key(Kind::Task, "alpha", "late1"), None)
        .await
        .unwrap()
        .expect("the event survives");
    assert_eq!(late.meta().unwrap().ecs_version, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_listing_keeps_that_clusters_records_and_vanished_clusters_are_purged() {
    let moto = MotoServer::start();
    moto.seed_ecs(&json!({"clusters": {"alpha": {"instances": 1, "running": 1}, "bravo": {"instances": 1, "running": 1}}}));
    let etcd = EtcdServer::start();
    let store = etcd.store("/ecs-css/v1/").await;
    apply(
        store.as_ref(),
        &[
            task_body(ACCOUNT, "alpha", "ghost-a", "RUNNING", 1),
            task_body(ACCOUNT, "bravo", "ghost-b", "RUNNING", 1),
            // A cluster ECS no longer has, in this account and in another.
            task_body(ACCOUNT, "gone", "g1", "RUNNING", 1),
            task_body(ACCOUNT, "gone", "g2", "STOPPED", 1),
            task_body("999999999999", "gone", "g3", "RUNNING", 1),
        ],
    )
    .await;
    let mut source = Hooked::new(&moto);
    source.fail_list_tasks = Some("bravo".into());
    let s = run(store.as_ref(), &source).await;
    assert_eq!(
        s.errors.len(),
        1,
        "bravo's task listing stops at its first failure: {:?}",
        s.errors
    );
    assert!(s
        .errors
        .iter()
        .all(|e| e.cluster.ends_with("/bravo") && e.operation == "ListTasks"));
    assert!(
        store
            .get(&key(Kind::Task, "bravo", "ghost-b"), None)
            .await
            .unwrap()
            .is_some(),
        "no deletes in a failed cluster"
    );
    assert!(store
        .get(&key(Kind::Task, "alpha", "ghost-a"), None)
        .await
        .unwrap()
        .is_none());
    assert_eq!(
        ids(
            store.as_ref(),
            Kind::Task,
            ClusterScope::Named("gone".into())
        )
        .await,
        vec!["g3"]
    );
    assert_eq!(s.total.deleted, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describes_in_batches_of_one_hundred() {
    let moto = MotoServer::start();
    moto.seed_ecs(&json!({"clusters": {"big": {"instances": 2, "running": 250, "stopped": 120}}}));
    let etcd = EtcdServer::start();
    let store = etcd.store("/ecs-css/v1/").await;
    let source = Hooked::new(&moto);
    let s = run(store.as_ref(), &source).await;
    assert!(s.errors.is_empty(), "{:?}", s.errors);
    assert_eq!(
        source.describe_tasks_calls.load(Ordering::Relaxed),
        4,
        "ceil((250 + 120) / 100): a batch spans the RUNNING and STOPPED listings"
    );
    assert_eq!(s.total.described, 372);
    assert_eq!(
        ids(
            store.as_ref(),
            Kind::Task,
            ClusterScope::Named("big".into())
        )
        .await
        .len(),
        370
    );
}

async fn compaction_keeps_the_retention(store: &dyn StateStore) {
    let hour = Duration::from_secs(3600);
    let t0 = SystemTime::now();
    apply(store, &[task_body(ACCOUNT, "c", "t1", "PENDING", 1)]).await;
    let first = checkpoint_and_compact(store, hour, t0).await.unwrap();
    assert_eq!(first.compacted_to, None, "nothing is an hour old yet");
    let r0 = store.current_revision().await.unwrap();
    apply(store, &[task_body(ACCOUNT, "c", "t1", "RUNNING", 2)]).await;
    let half = checkpoint_and_compact(store, hour, t0 + hour / 2)
        .await
        .unwrap();
    assert_eq!(half.compacted_to, None);
    apply(store, &[task_body(ACCOUNT, "c", "t1", "STOPPED", 3)]).await;
    // An hour after the first checkpoint, history before it goes.
    let later = checkpoint_and_compact(store, hour, t0 + hour + Duration::from_secs(1))
        .await
        .unwrap();
    let cut = later.compacted_to.expect("compacted");
    assert_eq!(cut, r0 - 1, "to the first checkpoint's revision");
    assert_eq!(store.compacted_revision().await.unwrap(), cut);
    assert!(matches!(
        store.get(&key(Kind::Task, "c", "t1"), Some(cut - 1)).await,
        Err(StoreError::Compacted { .. })
    ));
    // The half-hour checkpoint still guards the last hour of history.
    assert_eq!(later.checkpoints, 3);
    match store.watch(Kind::Task, cut - 1).await {
        Err(StoreError::Compacted { .. }) => {}
        Err(e) => panic!("{e}"),
        Ok(mut w) => {
            let first = tokio::time::timeout(Duration::from_secs(10), w.next())
                .await
                .unwrap();
            assert!(matches!(first, Err(StoreError::Compacted { .. })));
        }
    }
}

#[tokio::test]
async fn compaction_checkpoints_on_etcd() {
    let etcd = EtcdServer::start();
    compaction_keeps_the_retention(etcd.store("/ecs-css/v1/").await.as_ref()).await;
}

#[tokio::test]
async fn compaction_checkpoints_on_the_embedded_store() {
    compaction_keeps_the_retention(&EmbeddedStore::new("/ecs-css/v1/")).await;
}

/// Server mode with --reconcile runs the same reconciliation on its timer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_mode_reconciles_on_its_interval() {
    use clap::Parser;
    let moto = MotoServer::start();
    moto.seed_ecs(&json!({"clusters": {"alpha": {"instances": 1, "running": 4}}}));
    let cfg = css_server::ServerConfig::try_parse_from([
        "css-server",
        "--bind",
        "127.0.0.1:0",
        "--reconcile",
        "--reconcile-interval",
        "1s",
    ])
    .unwrap();
    let source: Arc<dyn EcsSource> = Arc::new(AwsEcs::new(&moto.sdk_config()));
    let s = css_tests::server::TestServer::start_with(
        cfg,
        css_server::AwsOverrides {
            sqs: None,
            ecs: Some((source, scope())),
            dynamodb: None,
            sdk: None,
        },
    )
    .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let r = s.get("/v1/tasks?cluster=alpha&status=RUNNING").await;
        if r.body["items"].as_array().map_or(0, Vec::len) == 4 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "reconcile never filled the store: {}",
            r.body
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        css_server::ServerConfig::try_parse_from(["css-server", "--demo", "--reconcile"]).is_err(),
        "off in --demo"
    );
    s.server.shutdown().await.unwrap();
}

fn setup() -> css::lambda::ReconcileSetup {
    css::lambda::ReconcileSetup {
        members: None,
        retention: Duration::from_secs(3600),
        settings: css::reconcile::Settings::default(),
        backups: None,
        etcd_quota_bytes: 4 << 30,
    }
}

/// events/scheduled-reconcile.json through the scheduled function's handler.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_event_through_the_handler() {
    let moto = MotoServer::start();
    moto.seed_ecs(&json!({"clusters": {"alpha": {"instances": 1, "running": 2}}}));
    let etcd = EtcdServer::start();
    let store = etcd.store("/ecs-css/v1/").await;
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../events/scheduled-reconcile.json");
    let event: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let source = AwsEcs::new(&moto.sdk_config());
    let out = css::lambda::handle_scheduled_event(
        store.as_ref(),
        &source,
        &event,
        "arn:aws:lambda:us-east-1:123456789012:function:css-reconcile",
        REGION,
        &setup(),
        None,
    )
    .await
    .unwrap();
    assert_eq!(out["inserted"], 3, "{out}");
    assert_eq!(out["errors"], json!([]));
    for k in [
        "clusters",
        "listed",
        "described",
        "inserted",
        "updated",
        "unchanged",
        "deleted",
        "apiCalls",
        "errors",
        "durationMs",
    ] {
        assert!(out.get(k).is_some(), "summary has {k}");
    }
    // README's summary has the fields the handler answers, at every level.
    let readme = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"),
    )
    .unwrap();
    let after = readme
        .split("Each run answers and logs one JSON summary")
        .nth(1)
        .expect("README's reconcile summary");
    let block = after
        .split("```json")
        .nth(1)
        .unwrap()
        .split("```")
        .next()
        .unwrap();
    let example: Value = serde_json::from_str(block).expect("README's summary is JSON");
    let keys = |v: &Value| -> Vec<String> {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    for path in [
        "",
        "/calls",
        "/pass",
        "/compaction",
        "/kinds/tasks",
        "/kinds/instances",
    ] {
        let (a, b) = (example.pointer(path).unwrap(), out.pointer(path).unwrap());
        assert_eq!(keys(a), keys(b), "README's summary at {path:?}");
    }
    assert!(css::lambda::handle_scheduled_event(
        store.as_ref(),
        &source,
        &event,
        "not-an-arn",
        REGION,
        &setup(),
        None,
    )
    .await
    .is_err());
}
