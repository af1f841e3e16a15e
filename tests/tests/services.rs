//! ECS services (docs/reference.md#services): the API over stored services on both stores
//! (every filter value, describe by ARN or name, stream transitions,
//! subscriptions, the tasks' `service` filter), and the feed on moto: service
//! events through the real ingest handler, reconcile alone, snapshots
//! answered out of order, throttled and failing describes.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use css::ecs::aws::AwsEcs;
use css::ecs::{EcsSource, Page, RunScope, ServicesAnswer, SourceError};
use css::ingest::{apply_batch, Describer};
use css::model::Kind;
use css::reconcile::Reconciler;
use css::store::{StateStore, Upsert};
use css_tests::fixtures::*;
use css_tests::moto::MotoServer;
use css_tests::openapi::OpenApi;
use css_tests::server::TestServer;
use css_tests::EtcdServer;
use reqwest::{Method, StatusCode};
use serde_json::value::RawValue;
use serde_json::{json, Value};

const A: &str = ACCOUNT;
const B: &str = OTHER_ACCOUNT;
const T9: &str = "2026-11-20T09:00:00.000Z";
const T10: &str = "2026-11-20T10:00:00.000Z";

async fn put(store: &dyn StateStore, detail: &Value) {
    let e = service_entity(detail, chrono::Utc::now());
    store
        .upsert_if_newer(Upsert::event(&e))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}

/// prod@A: web (rolling out), api, agent (daemon), old (draining, failed),
/// gone (inactive); prod@B: web (failed rollout); dev@A: web.
async fn seed(store: &dyn StateStore) {
    let s = |c: &str, acct: &str, n: &str, st: &str, lt: &str, strat: &str, r: &[&str]| {
        service_detail(c, acct, n, st, lt, strat, r, T9)
    };
    for d in [
        s(
            "prod",
            A,
            "web",
            "ACTIVE",
            "EC2",
            "REPLICA",
            &["IN_PROGRESS", "COMPLETED"],
        ),
        s(
            "prod",
            A,
            "api",
            "ACTIVE",
            "FARGATE",
            "REPLICA",
            &["COMPLETED"],
        ),
        s(
            "prod",
            A,
            "agent",
            "ACTIVE",
            "EC2",
            "DAEMON",
            &["COMPLETED"],
        ),
        s(
            "prod",
            A,
            "old",
            "DRAINING",
            "EXTERNAL",
            "REPLICA",
            &["FAILED"],
        ),
        s(
            "prod",
            A,
            "gone",
            "INACTIVE",
            "FARGATE",
            "REPLICA",
            &["COMPLETED"],
        ),
        s(
            "prod",
            B,
            "web",
            "ACTIVE",
            "FARGATE",
            "REPLICA",
            &["FAILED", "COMPLETED"],
        ),
        s("dev", A, "web", "ACTIVE", "EC2", "REPLICA", &["COMPLETED"]),
    ] {
        put(store, &d).await;
    }
}

/// `name@cluster@A|B` of every listed service.
fn names(body: &Value) -> BTreeSet<String> {
    (body["items"].as_array().expect("items").iter())
        .map(|i| {
            let arn = i["entity"]["serviceArn"].as_str().unwrap_or_default();
            let account = arn.split(':').nth(4).unwrap_or_default();
            let mut parts = arn.rsplit('/');
            let (name, cluster) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            format!("{name}@{cluster}@{}", if account == A { "A" } else { "B" })
        })
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

async fn list_and_describe(s: &TestServer, api: &OpenApi) {
    seed(s.server.store().as_ref()).await;
    let all_a_prod = [
        "web@prod@A",
        "api@prod@A",
        "agent@prod@A",
        "old@prod@A",
        "gone@prod@A",
    ];
    let b_arn = cluster_arn(B, REGION, "prod");
    let cases: Vec<(String, Vec<&str>)> = vec![
        (
            "/v1/services?cluster=prod".into(),
            [&all_a_prod[..], &["web@prod@B"]].concat(),
        ),
        (format!("/v1/services?cluster={b_arn}"), vec!["web@prod@B"]),
        // Every status, in any case.
        (
            "/v1/services?status=active".into(),
            vec![
                "web@prod@A",
                "api@prod@A",
                "agent@prod@A",
                "web@prod@B",
                "web@dev@A",
            ],
        ),
        ("/v1/services?status=Draining".into(), vec!["old@prod@A"]),
        ("/v1/services?status=INACTIVE".into(), vec!["gone@prod@A"]),
        // Every launch type.
        (
            "/v1/services?launchType=ec2".into(),
            vec!["web@prod@A", "agent@prod@A", "web@dev@A"],
        ),
        (
            "/v1/services?launchType=FARGATE".into(),
            vec!["api@prod@A", "gone@prod@A", "web@prod@B"],
        ),
        (
            "/v1/services?launchType=External".into(),
            vec!["old@prod@A"],
        ),
        // Both scheduling strategies.
        (
            "/v1/services?schedulingStrategy=daemon".into(),
            vec!["agent@prod@A"],
        ),
        (
            "/v1/services?schedulingStrategy=REPLICA&cluster=prod&status=ACTIVE".into(),
            vec!["web@prod@A", "api@prod@A", "web@prod@B"],
        ),
        // Every rollout state: any deployment in that state.
        (
            "/v1/services?rolloutState=in_progress".into(),
            vec!["web@prod@A"],
        ),
        (
            "/v1/services?rolloutState=FAILED".into(),
            vec!["old@prod@A", "web@prod@B"],
        ),
        (
            "/v1/services?rolloutState=COMPLETED&cluster=prod".into(),
            vec![
                "web@prod@A",
                "api@prod@A",
                "agent@prod@A",
                "gone@prod@A",
                "web@prod@B",
            ],
        ),
        (
            format!("/v1/services?rolloutState=FAILED&cluster={b_arn}&status=ACTIVE"),
            vec!["web@prod@B"],
        ),
        ("/v1/services?cluster=nonexistent".into(), vec![]),
    ];
    for (path, want) in &cases {
        let r = s.get(path).await;
        assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.body);
        api.check("ServiceList", &r.body);
        assert_eq!(names(&r.body), set(want), "{path}");
    }
    // Pages: a consistent snapshot across them.
    let first = s.get("/v1/services?limit=3").await;
    let token = first.body["nextToken"]
        .as_str()
        .expect("more pages")
        .to_string();
    let next = s
        .get(&format!("/v1/services?limit=10&nextToken={token}"))
        .await;
    assert_eq!(names(&first.body).len() + names(&next.body).len(), 7);

    for (path, param) in [
        ("/v1/services?status=RUNNING", "status"),
        (
            "/v1/services?schedulingStrategy=BATCH",
            "schedulingStrategy",
        ),
        ("/v1/services?rolloutState=DONE", "rolloutState"),
        ("/v1/services?launchType=2EC", "launchType"),
        ("/v1/services?desiredStatus=RUNNING", "desiredStatus"),
        ("/v1/services?service=web", "service"),
        ("/v1/services?cluster=a%20b", "cluster"),
        ("/v1/tasks?rolloutState=FAILED", "rolloutState"),
        ("/v1/tasks?service=a%2Fb", "service"),
        ("/v1/services/prod/a%20b", "serviceArnOrName"),
    ] {
        let r = s.get(path).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{path}: {}", r.body);
        api.check("Error", &r.body);
        assert_eq!(r.body["parameter"], param, "{path}: {}", r.body);
    }

    // Describe by name, by either ARN format, encoded or not.
    let arn_b = format!("arn:aws:ecs:{REGION}:{B}:service/prod/web");
    let short_a = format!("arn:aws:ecs:{REGION}:{A}:service/api");
    for (path, want) in [
        ("/v1/services/dev/web".to_string(), "web@dev@A"),
        (format!("/v1/services/prod/{arn_b}"), "web@prod@B"),
        (
            format!(
                "/v1/services/prod/{}",
                arn_b.replace('/', "%2F").replace(':', "%3A")
            ),
            "web@prod@B",
        ),
        (
            format!("/v1/services/{}/api", cluster_arn(A, REGION, "prod")),
            "api@prod@A",
        ),
        (format!("/v1/services/prod/{short_a}"), "api@prod@A"),
    ] {
        let r = s.get(&path).await;
        assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.body);
        api.check("ServiceItem", &r.body);
        assert_eq!(names(&json!({"items": [r.body]})), set(&[want]), "{path}");
    }
    let r = s.get("/v1/services/dev/nope").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = s.get(&format!("/v1/services/dev/{arn_b}")).await;
    assert_eq!(
        r.status,
        StatusCode::NOT_FOUND,
        "the ARN names another cluster"
    );
}

/// Tasks of a service: `service=NAME` is `group=service:NAME`.
async fn tasks_of_a_service(s: &TestServer, api: &OpenApi) {
    let bodies: Vec<String> = (0..6)
        .map(|n| {
            let mut d = task_detail("prod", A, &format!("t{n}"), "RUNNING", 1, true);
            d["group"] = json!(["service:web", "service:api", "family:batch"][n % 3]);
            task_event(&d)
        })
        .collect();
    let out = apply_batch(s.server.store().as_ref(), &messages(&bodies)).await;
    assert!(out.failures.is_empty());
    for (query, want) in [
        ("service=web", 2),
        ("service=api&cluster=prod&status=RUNNING", 2),
        ("service=batch", 0),
    ] {
        let r = s.get(&format!("/v1/tasks?{query}")).await;
        assert_eq!(r.status, StatusCode::OK, "{query}: {}", r.body);
        api.check("TaskList", &r.body);
        assert_eq!(
            r.body["items"].as_array().map(Vec::len),
            Some(want),
            "{query}"
        );
    }
}

/// A rollout that completes leaves `rolloutState=IN_PROGRESS` as a DELETE,
/// on the stream and through a subscription.
async fn rollouts_stream_and_subscribe(s: &TestServer, api: &OpenApi) {
    let store = s.server.store();
    let rolling = service_detail(
        "live",
        A,
        "web",
        "ACTIVE",
        "EC2",
        "REPLICA",
        &["IN_PROGRESS", "COMPLETED"],
        T9,
    );
    put(store.as_ref(), &rolling).await;
    let list = s
        .get("/v1/services?rolloutState=IN_PROGRESS&cluster=live")
        .await;
    assert_eq!(names(&list.body), set(&["web@live@A"]));
    let since = list.body["revision"].as_str().unwrap().to_string();
    let created = s
        .request(
            Method::POST,
            "/v1/subscriptions",
            Some(json!({"resource": "services", "filters": {"cluster": "live", "rolloutState": "IN_PROGRESS"}, "since": since})),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    api.check("Subscription", &created.body);
    let id = created.body["id"].as_str().unwrap().to_string();

    let done = service_detail(
        "live",
        A,
        "web",
        "ACTIVE",
        "EC2",
        "REPLICA",
        &["COMPLETED"],
        T10,
    );
    put(store.as_ref(), &done).await;
    let stream = s
        .get(&format!(
            "/v1/stream/services?rolloutState=IN_PROGRESS&cluster=live&since={since}&wait=5"
        ))
        .await;
    assert_eq!(stream.status, StatusCode::OK, "{}", stream.body);
    api.check("EventBatch", &stream.body);
    let events = stream.body["events"].as_array().unwrap().clone();
    assert_eq!(events.len(), 1, "{}", stream.body);
    assert_eq!(events[0]["type"], "DELETE");
    let entity = &events[0]["item"]["entity"];
    assert_eq!(
        entity["deployments"][0]["rolloutState"], "COMPLETED",
        "carries the new state"
    );

    let sub = s
        .get(&format!("/v1/subscriptions/{id}/events?wait=5"))
        .await;
    assert_eq!(sub.status, StatusCode::OK, "{}", sub.body);
    let types: Vec<&str> = (sub.body["events"].as_array().unwrap().iter())
        .filter_map(|e| e["type"].as_str())
        .collect();
    assert_eq!(types, vec!["DELETE"]);

    // A new rollout starts matching again: a PUT.
    let again = service_detail(
        "live",
        A,
        "web",
        "ACTIVE",
        "EC2",
        "REPLICA",
        &["IN_PROGRESS", "COMPLETED"],
        "2026-11-20T11:00:00.000Z",
    );
    put(store.as_ref(), &again).await;
    let next = stream.body["revision"].as_str().unwrap();
    let stream = s
        .get(&format!(
            "/v1/stream/services?rolloutState=IN_PROGRESS&cluster=live&since={next}&wait=5"
        ))
        .await;
    let events = stream.body["events"].as_array().unwrap();
    assert_eq!((events.len(), events[0]["type"].as_str()), (1, Some("PUT")));
    let bad = s
        .request(
            Method::POST,
            "/v1/subscriptions",
            Some(json!({"resource": "services", "filters": {"desiredStatus": "RUNNING"}})),
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.body);
}

async fn on_both_stores<F, Fut>(f: F)
where
    F: Fn(TestServer, OpenApi) -> Fut,
    Fut: std::future::Future<Output = TestServer>,
{
    let s = f(TestServer::start(None, &[]).await, OpenApi::load()).await;
    s.server.shutdown().await.unwrap();
    let etcd = EtcdServer::start();
    let s = f(TestServer::start(Some(&etcd), &[]).await, OpenApi::load()).await;
    s.server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_list_filter_and_describe() {
    on_both_stores(|s, api| async move {
        list_and_describe(&s, &api).await;
        tasks_of_a_service(&s, &api).await;
        s
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_rollouts_stream_and_subscribe() {
    on_both_stores(|s, api| async move {
        rollouts_stream_and_subscribe(&s, &api).await;
        s
    })
    .await;
}

// ---- the feed, on moto ----

const MOTO_ACCOUNT: &str = "123456789012";
const MOTO_REGION: &str = "us-east-1";

fn moto_scope() -> RunScope {
    RunScope {
        account: MOTO_ACCOUNT.into(),
        region: MOTO_REGION.into(),
    }
}

async fn ecs_with_cluster(moto: &MotoServer, cluster: &str) -> aws_sdk_ecs::Client {
    let ecs = moto.ecs_with_task_definition().await;
    ecs.create_cluster()
        .cluster_name(cluster)
        .send()
        .await
        .unwrap();
    ecs
}

/// A service moto does not know, stored in the store as read at `read_at`.
async fn store_ghost(store: &dyn StateStore, read_at: chrono::DateTime<chrono::Utc>) {
    let ghost = service_detail(
        "shop",
        MOTO_ACCOUNT,
        "ghost",
        "ACTIVE",
        "EC2",
        "REPLICA",
        &["COMPLETED"],
        T9,
    )
    .to_string()
    .replace(REGION, MOTO_REGION);
    let ghost: Value = serde_json::from_str(&ghost).unwrap();
    let e = service_entity(&ghost, read_at);
    store.upsert_if_newer(Upsert::event(&e)).await.unwrap();
}

async fn create(ecs: &aws_sdk_ecs::Client, cluster: &str, name: &str, desired: i32) {
    (ecs.create_service().cluster(cluster).service_name(name))
        .task_definition("web")
        .desired_count(desired)
        .launch_type(aws_sdk_ecs::types::LaunchType::Fargate)
        .send()
        .await
        .unwrap();
}

fn event(cluster: &str, name: &str, detail_type: &str) -> String {
    service_event(detail_type, MOTO_ACCOUNT, MOTO_REGION, cluster, name)
}

/// What DescribeServices says now, as the service stores it.
async fn described(ecs: &AwsEcs, cluster: &str, name: &str) -> Value {
    let a = ecs
        .describe_services(cluster, &[name.to_string()])
        .await
        .unwrap();
    assert_eq!(a.services.len(), 1, "{name} is described");
    serde_json::from_str(a.services[0].get()).unwrap()
}

async fn stored(store: &dyn StateStore, cluster: &str, name: &str) -> Option<Value> {
    let detail = json!({
        "serviceArn": format!("arn:aws:ecs:{MOTO_REGION}:{MOTO_ACCOUNT}:service/{cluster}/{name}"),
        "clusterArn": format!("arn:aws:ecs:{MOTO_REGION}:{MOTO_ACCOUNT}:cluster/{cluster}"),
    });
    let key = entity(Kind::Service, &detail).key;
    let rec = store.get(&key, None).await.unwrap()?;
    Some(serde_json::from_str(rec.meta().unwrap().entity.get()).unwrap())
}

/// The fields a change moves (moto's timestamps do not move).
fn state(v: &Value) -> Value {
    json!([
        v["status"],
        v["desiredCount"],
        v["runningCount"],
        v["deployments"][0]["id"],
        v["taskDefinition"]
    ])
}

async fn ingest(store: &dyn StateStore, ecs: &dyn EcsSource, bodies: &[String]) -> Vec<String> {
    let scope = moto_scope();
    let d = Describer {
        ecs,
        scope: &scope,
        members: None,
    };
    let resp = css::lambda::handle_sqs_with(store, Some(d), sqs_event(bodies))
        .await
        .unwrap();
    resp.batch_item_failures
        .into_iter()
        .map(|f| f.item_identifier)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_events_converge_to_describe_services() {
    let moto = MotoServer::start();
    let ecs = ecs_with_cluster(&moto, "shop").await;
    let etcd = EtcdServer::start();
    let store = etcd.store("/ecs-css/v1/").await;
    let source = AwsEcs::new(&moto.sdk_config());
    let (sa, ds) = ("ECS Service Action", "ECS Deployment State Change");

    create(&ecs, "shop", "web", 2).await;
    create(&ecs, "shop", "api", 1).await;
    let failed = ingest(
        store.as_ref(),
        &source,
        &[event("shop", "web", sa), event("shop", "api", ds)],
    )
    .await;
    assert!(failed.is_empty(), "{failed:?}");
    for name in ["web", "api"] {
        let want = described(&source, "shop", name).await;
        assert_eq!(
            stored(store.as_ref(), "shop", name).await,
            Some(want),
            "{name}: every field kept"
        );
    }

    // update_service: a new desired count, then a forced new deployment.
    (ecs.update_service()
        .cluster("shop")
        .service("web")
        .desired_count(5))
    .send()
    .await
    .unwrap();
    assert!(ingest(store.as_ref(), &source, &[event("shop", "web", sa)])
        .await
        .is_empty());
    let got = stored(store.as_ref(), "shop", "web").await.unwrap();
    assert_eq!(got["desiredCount"], 5);
    (ecs.update_service()
        .cluster("shop")
        .service("web")
        .force_new_deployment(true))
    .send()
    .await
    .unwrap();
    assert!(ingest(store.as_ref(), &source, &[event("shop", "web", ds)])
        .await
        .is_empty());
    let want = described(&source, "shop", "web").await;
    assert_eq!(
        state(&stored(store.as_ref(), "shop", "web").await.unwrap()),
        state(&want)
    );

    // delete_service: moto keeps describing it, INACTIVE.
    (ecs.delete_service()
        .cluster("shop")
        .service("api")
        .force(true))
    .send()
    .await
    .unwrap();
    assert!(ingest(store.as_ref(), &source, &[event("shop", "api", sa)])
        .await
        .is_empty());
    assert_eq!(
        stored(store.as_ref(), "shop", "api").await.unwrap()["status"],
        "INACTIVE"
    );

    // A service ECS does not know (MISSING) is deleted from the store.
    store_ghost(
        store.as_ref(),
        chrono::Utc::now() - chrono::Duration::seconds(5),
    )
    .await;
    assert!(stored(store.as_ref(), "shop", "ghost").await.is_some());
    assert!(
        ingest(store.as_ref(), &source, &[event("shop", "ghost", sa)])
            .await
            .is_empty()
    );
    assert_eq!(stored(store.as_ref(), "shop", "ghost").await, None);

    // Events of another account are acknowledged, not described.
    let before = source.api_calls();
    let other = service_event(sa, "999988887777", MOTO_REGION, "shop", "web");
    assert!(ingest(store.as_ref(), &source, &[other]).await.is_empty());
    assert_eq!(source.api_calls(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_alone_converges_on_services() {
    let moto = MotoServer::start();
    let ecs = ecs_with_cluster(&moto, "shop").await;
    // A cluster whose name contains "shop": moto matches names by substring.
    ecs.create_cluster()
        .cluster_name("shop2")
        .send()
        .await
        .unwrap();
    (ecs.create_service()
        .cluster("shop2")
        .service_name("other")
        .task_definition("web")
        .desired_count(1))
    .send()
    .await
    .unwrap();
    for n in 0..12 {
        create(&ecs, "shop", &format!("s{n:02}"), 1).await;
    }
    let etcd = EtcdServer::start();
    let store = etcd.store("/ecs-css/v1/").await;
    let source = AwsEcs::new(&moto.sdk_config());
    let run = || Reconciler {
        store: store.as_ref(),
        source: &source,
        scope: moto_scope(),
        retention: Duration::from_secs(3600),
        settings: css_tests::fixtures::describe_all(),
    };
    let first = run().run().await;
    assert_eq!(first.errors, vec![], "{first:?}");
    let services = first.kinds["services"];
    assert_eq!((services.listed, services.inserted), (13, 13), "{first:?}");
    for n in 0..12 {
        let name = format!("s{n:02}");
        let want = described(&source, "shop", &name).await;
        assert_eq!(stored(store.as_ref(), "shop", &name).await, Some(want));
    }
    assert!(
        stored(store.as_ref(), "shop", "other").await.is_none(),
        "not another cluster's"
    );
    assert!(stored(store.as_ref(), "shop2", "other").await.is_some());

    (ecs.update_service()
        .cluster("shop")
        .service("s03")
        .desired_count(4))
    .send()
    .await
    .unwrap();
    (ecs.delete_service()
        .cluster("shop")
        .service("s04")
        .force(true))
    .send()
    .await
    .unwrap();
    let second = run().run().await;
    let services = second.kinds["services"];
    assert_eq!(
        (services.updated, services.unchanged, services.deleted),
        (2, 11, 0),
        "{second:?}"
    );
    assert_eq!(
        stored(store.as_ref(), "shop", "s03").await.unwrap()["desiredCount"],
        4
    );
    assert_eq!(
        stored(store.as_ref(), "shop", "s04").await.unwrap()["status"],
        "INACTIVE"
    );

    // A stored service ECS no longer lists is deleted by the next run.
    store_ghost(store.as_ref(), chrono::Utc::now()).await;
    let third = run().run().await;
    assert_eq!(third.kinds["services"].deleted, 1, "{third:?}");
    assert!(stored(store.as_ref(), "shop", "ghost").await.is_none());
}

/// An ECS source over moto whose DescribeServices can be held after ECS
/// answered (a slow or retried answer) or fail first (throttling).
struct Faulty {
    inner: AwsEcs,
    /// The next describe's answer waits for this before it is returned.
    hold: Mutex<Option<tokio::sync::oneshot::Receiver<()>>>,
    /// Describes that fail before one succeeds.
    throttle: AtomicUsize,
}

#[async_trait]
impl EcsSource for Faulty {
    async fn list_clusters(&self, t: Option<&str>) -> Result<Page, SourceError> {
        self.inner.list_clusters(t).await
    }
    async fn list_container_instances(
        &self,
        c: &str,
        t: Option<&str>,
    ) -> Result<Page, SourceError> {
        self.inner.list_container_instances(c, t).await
    }
    async fn describe_container_instances(
        &self,
        c: &str,
        a: &[String],
    ) -> Result<Vec<Box<RawValue>>, SourceError> {
        self.inner.describe_container_instances(c, a).await
    }
    async fn list_tasks(&self, c: &str, d: &str, t: Option<&str>) -> Result<Page, SourceError> {
        self.inner.list_tasks(c, d, t).await
    }
    async fn describe_tasks(
        &self,
        c: &str,
        a: &[String],
    ) -> Result<Vec<Box<RawValue>>, SourceError> {
        self.inner.describe_tasks(c, a).await
    }
    async fn list_services(&self, c: &str, t: Option<&str>) -> Result<Page, SourceError> {
        self.inner.list_services(c, t).await
    }
    async fn describe_services(
        &self,
        c: &str,
        n: &[String],
    ) -> Result<ServicesAnswer, SourceError> {
        if self.throttle.load(Ordering::SeqCst) > 0 {
            self.throttle.fetch_sub(1, Ordering::SeqCst);
            let message = "ThrottlingException: Rate exceeded (after the SDK's retries)";
            return Err(SourceError::throttled("DescribeServices", message));
        }
        let answer = self.inner.describe_services(c, n).await;
        let hold = self.hold.lock().unwrap().take();
        if let Some(release) = hold {
            let _ = release.await;
        }
        answer
    }
    fn api_calls(&self) -> u64 {
        self.inner.api_calls()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_delayed_past_a_later_one_never_regresses() {
    let moto = MotoServer::start();
    let ecs = ecs_with_cluster(&moto, "shop").await;
    create(&ecs, "shop", "web", 1).await;
    let etcd = EtcdServer::start();
    let store = etcd.store("/ecs-css/v1/").await;
    let (release, held) = tokio::sync::oneshot::channel();
    let source = Arc::new(Faulty {
        inner: AwsEcs::new(&moto.sdk_config()),
        hold: Mutex::new(Some(held)),
        throttle: AtomicUsize::new(0),
    });
    // Batch 1 describes (desiredCount 1) and its answer is held in flight.
    let early = {
        let (store, source) = (store.clone(), source.clone());
        tokio::spawn(async move {
            ingest(
                store.as_ref(),
                source.as_ref(),
                &[event("shop", "web", "ECS Service Action")],
            )
            .await
        })
    };
    while source.hold.lock().unwrap().is_some() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Meanwhile the service changes and batch 2 stores the newer snapshot.
    (ecs.update_service()
        .cluster("shop")
        .service("web")
        .desired_count(3))
    .send()
    .await
    .unwrap();
    assert!(ingest(
        store.as_ref(),
        source.as_ref(),
        &[event("shop", "web", "ECS Service Action")]
    )
    .await
    .is_empty());
    assert_eq!(
        stored(store.as_ref(), "shop", "web").await.unwrap()["desiredCount"],
        3
    );
    let rev = store.current_revision().await.unwrap();
    // The held answer arrives last: acknowledged, not written.
    release.send(()).unwrap();
    assert!(early.await.unwrap().is_empty());
    assert_eq!(
        stored(store.as_ref(), "shop", "web").await.unwrap()["desiredCount"],
        3
    );
    assert_eq!(
        store.current_revision().await.unwrap(),
        rev,
        "nothing written"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttled_or_failing_describes_lose_nothing() {
    let moto = MotoServer::start();
    let ecs = ecs_with_cluster(&moto, "shop").await;
    create(&ecs, "shop", "web", 2).await;
    create(&ecs, "shop", "api", 2).await;
    let etcd = EtcdServer::start();
    let store = etcd.store("/ecs-css/v1/").await;
    let source = Faulty {
        inner: AwsEcs::new(&moto.sdk_config()),
        hold: Mutex::new(None),
        throttle: AtomicUsize::new(1),
    };
    let task = task_event(&task_detail("c", ACCOUNT, "t1", "RUNNING", 1, true));
    let batch = [
        event("shop", "web", "ECS Service Action"),
        task,
        event("shop", "web", "ECS Deployment State Change"),
    ];
    // The describe fails: exactly its records come back, to be retried.
    let failed = ingest(store.as_ref(), &source, &batch).await;
    assert_eq!(failed, vec!["m0", "m2"]);
    assert!(stored(store.as_ref(), "shop", "web").await.is_none());
    // SQS redelivers them; the describe works now.
    let retry = [batch[0].clone(), batch[2].clone()];
    assert!(ingest(store.as_ref(), &source, &retry).await.is_empty());
    assert!(stored(store.as_ref(), "shop", "web").await.is_some());

    // ECS unreachable (the real SDK, through its retries): failures again.
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_endpoint = format!("http://{}", free.local_addr().unwrap());
    drop(free);
    let dead_sdk = moto
        .sdk_config()
        .into_builder()
        .endpoint_url(dead_endpoint)
        .build();
    let dead = AwsEcs::new(&dead_sdk);
    let failed = ingest(
        store.as_ref(),
        &dead,
        &[event("shop", "api", "ECS Service Action")],
    )
    .await;
    assert_eq!(failed, vec!["m0"]);
    assert!(stored(store.as_ref(), "shop", "api").await.is_none());
}
