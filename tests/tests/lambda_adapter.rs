//! API Gateway HTTP API (payload 2.0) requests from events/ through the
//! Lambda adapter (lambda_http's request conversion and our stage handling)
//! into the one router, on a real etcd fed with the sample SQS events.

use std::path::Path;
use std::sync::Arc;

use css::api::{self, AppState};
use css::store::StateStore;
use css_tests::openapi::OpenApi;
use css_tests::EtcdServer;
use serde_json::Value;
use tower::ServiceExt;

fn events_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../events")
}

/// The router as the Lambdas build it behind API Gateway (IAM callers).
fn app(store: Arc<dyn StateStore>) -> axum::Router {
    api::router(AppState {
        store,
        cursors: Some(Arc::new(css::cursor::EmbeddedCursorStore::new())),
        identity: api::Identity::Iam,
        subscription_ttl: api::DEFAULT_SUBSCRIPTION_TTL,
        subscriptions_per_owner: api::DEFAULT_SUBSCRIPTIONS_PER_OWNER,
        etcd_quota_bytes: 4 << 30,
        answers: Default::default(),
    })
}

/// One API Gateway request (JSON text) through the adapter.
async fn send(app: &axum::Router, text: &str) -> (u16, Value) {
    let req = lambda_http::request::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"));
    let resp = css::lambda::service(app.clone())
        .oneshot(req)
        .await
        .expect("infallible");
    let status = resp.status().as_u16();
    if status != 204 {
        assert_eq!(resp.headers()["content-type"], "application/json", "{text}");
    }
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .expect("body");
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn read(file: &str) -> String {
    std::fs::read_to_string(events_dir().join(file)).unwrap_or_else(|e| panic!("{file}: {e}"))
}

async fn invoke(store: Arc<dyn StateStore>, file: &str) -> (u16, Value) {
    send(&app(store), &read(file)).await
}

/// The sample task and instance events, through the ingest handler.
async fn seed(store: &dyn StateStore) {
    for sample in [
        "sqs-task-state-change.json",
        "sqs-instance-state-change.json",
    ] {
        let resp = css::lambda::handle_sqs(store, serde_json::from_str(&read(sample)).unwrap())
            .await
            .unwrap();
        assert!(resp.batch_item_failures.is_empty());
    }
}

#[tokio::test]
async fn api_gateway_requests_reach_the_router() {
    let etcd = EtcdServer::start();
    let store: Arc<dyn StateStore> = etcd.store("/ecs-css/v1/").await;
    seed(store.as_ref()).await;
    let api = OpenApi::load();
    let task_arn =
        "arn:aws:ecs:us-east-1:123456789012:task/orders/0a1b2c3d4e5f40718293a4b5c6d7e8f9";

    let (status, body) = invoke(store.clone(), "apigw-ping.json").await;
    assert_eq!(status, 200);
    api.check("Ping", &body);

    let (status, body) = invoke(store.clone(), "apigw-list-tasks-staged.json").await;
    assert_eq!(status, 200, "the /prod stage prefix is stripped: {body}");
    api.check("TaskList", &body);
    assert_eq!(body["items"][0]["entity"]["taskArn"], task_arn);

    let (status, body) = invoke(store.clone(), "apigw-list-instances.json").await;
    assert_eq!(status, 200, "{body}");
    api.check("InstanceList", &body);
    assert_eq!(body["items"].as_array().unwrap().len(), 1);

    for file in [
        "apigw-describe-task-decoded-arns.json",
        "apigw-describe-task-staged.json",
    ] {
        let (status, body) = invoke(store.clone(), file).await;
        assert_eq!(status, 200, "{file}: {body}");
        api.check("TaskItem", &body);
        assert_eq!(body["entity"]["taskArn"], task_arn, "{file}");
    }

    let (status, body) = invoke(store.clone(), "apigw-describe-instance.json").await;
    assert_eq!(status, 200, "{body}");
    api.check("InstanceItem", &body);

    let (status, body) = invoke(store.clone(), "apigw-bad-parameter.json").await;
    assert_eq!(status, 400);
    assert_eq!(body["parameter"], "status");

    let (status, body) = invoke(store.clone(), "apigw-unknown-task.json").await;
    assert_eq!(status, 404);
    api.check("Error", &body);
}

#[test]
fn stage_prefix_is_stripped_only_for_named_stages() {
    use lambda_http::request::from_str;
    let text = std::fs::read_to_string(events_dir().join("apigw-list-tasks-staged.json")).unwrap();
    let req = from_str(&text).unwrap();
    assert_eq!(css::lambda::strip_stage(req).uri().path(), "/v1/tasks");
    let text = std::fs::read_to_string(events_dir().join("apigw-describe-task-decoded-arns.json"))
        .unwrap();
    let req = from_str(&text).unwrap();
    let path = req.uri().path().to_string();
    assert_eq!(
        css::lambda::strip_stage(req).uri().path(),
        path,
        "$default: untouched"
    );
}

/// The watch routes' API Gateway samples through the adapter. The
/// subscription samples name the placeholder id 000...0, replaced here by the
/// id the create sample answered.
#[tokio::test]
async fn watch_requests_reach_the_router() {
    let etcd = EtcdServer::start();
    let store: Arc<dyn StateStore> = etcd.store("/ecs-css/v1/").await;
    seed(store.as_ref()).await;
    let api = OpenApi::load();
    let app = app(store);
    let run = |text: String| {
        let app = app.clone();
        async move { send(&app, &text).await }
    };

    let (status, body) = run(read("apigw-stream-tasks.json")).await;
    assert_eq!(status, 200, "{body}");
    api.check("EventBatch", &body);
    assert_eq!(
        body["events"][0]["item"]["entity"]["clusterArn"],
        "arn:aws:ecs:us-east-1:123456789012:cluster/orders"
    );
    let (status, body) = run(read("apigw-stream-instances-staged.json")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["events"].as_array().unwrap().len(), 1);

    let (status, created) = run(read("apigw-create-subscription.json")).await;
    assert_eq!(status, 201, "{created}");
    api.check("Subscription", &created);
    let id = created["id"].as_str().unwrap();
    let with_id = |f: &str| read(f).replace("00000000000000000000000000000000", id);
    let (status, got) = run(with_id("apigw-get-subscription.json")).await;
    assert_eq!((status, &got), (200, &created));
    let (status, events) = run(with_id("apigw-subscription-events.json")).await;
    assert_eq!(status, 200, "{events}");
    api.check("EventBatch", &events);
    assert_eq!(
        events["events"].as_array().unwrap().len(),
        1,
        "the RUNNING orders task"
    );
    let (status, _) = run(with_id("apigw-delete-subscription.json")).await;
    assert_eq!(status, 204);
    let (status, _) = run(read("apigw-get-subscription.json")).await;
    assert_eq!(status, 404);
}

/// The sample task (EC2) plus a copy of it per other launch type, ingested
/// through the handler; answers the task ARN per launch type.
async fn seed_launch_types(store: &dyn StateStore) -> Vec<(&'static str, String)> {
    let sample: Value = serde_json::from_str(&read("sqs-task-state-change.json")).unwrap();
    let body: Value = serde_json::from_str(sample["Records"][0]["body"].as_str().unwrap()).unwrap();
    let mut arns = Vec::new();
    let mut bodies = Vec::new();
    for (n, lt) in ["EC2", "FARGATE", "EXTERNAL"].into_iter().enumerate() {
        let mut b = body.clone();
        let arn = b["detail"]["taskArn"]
            .as_str()
            .unwrap()
            .replace("0a1b2c3d", &format!("{n:08x}"));
        b["detail"]["taskArn"] = Value::from(arn.clone());
        b["detail"]["launchType"] = Value::from(lt);
        bodies.push(b.to_string());
        arns.push((lt, arn));
    }
    let out = css::ingest::apply_batch(store, &css_tests::fixtures::messages(&bodies)).await;
    assert!(out.failures.is_empty());
    arns
}

/// `launchType` takes every ECS launch type through API Gateway, README's
/// `launchType=EC2` example first (it was refused with a 400).
#[tokio::test]
async fn every_launch_type_filters_through_api_gateway() {
    let etcd = EtcdServer::start();
    let store: Arc<dyn StateStore> = etcd.store("/ecs-css/v1/").await;
    let arns = seed_launch_types(store.as_ref()).await;
    let api = OpenApi::load();
    let app = app(store);
    let sample = read("apigw-list-tasks-ec2.json");
    for (lt, arn) in &arns {
        for given in [lt.to_string(), lt.to_lowercase()] {
            let text = sample
                .replace("launchType=EC2", &format!("launchType={given}"))
                .replace(
                    r#""launchType": "EC2""#,
                    &format!(r#""launchType": "{given}""#),
                );
            let (status, body) = send(&app, &text).await;
            assert_eq!(status, 200, "launchType={given}: {body}");
            api.check("TaskList", &body);
            let got: Vec<&str> = body["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["entity"]["taskArn"].as_str().unwrap())
                .collect();
            assert_eq!(got, vec![arn.as_str()], "launchType={given}");
        }
    }
}

/// One watch request through the adapter: a 200 of at most 5 MB.
async fn watch_answer(app: &axum::Router, text: &str) -> Value {
    let req = lambda_http::request::from_str(text).unwrap();
    let resp = css::lambda::service(app.clone())
        .oneshot(req)
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    assert!(
        bytes.len() <= 5_000_000,
        "an answer of {} bytes",
        bytes.len()
    );
    serde_json::from_slice(&bytes).unwrap()
}

/// Watch answers stay under 5 MB through the css-watch adapter: 60 tasks of
/// ~120 KB (7 MB in all), written in several revisions, arrive in answers of
/// at most 5 MB that stop at revision boundaries with `more: true`; every
/// change once, in revision order. The same for a subscription's events.
#[tokio::test]
async fn watch_answers_stay_under_five_megabytes() {
    use css_tests::fixtures::{messages, task_detail, task_event};
    let etcd = EtcdServer::start();
    let store: Arc<dyn StateStore> = etcd.store("/ecs-css/v1/").await;
    let start = store.current_revision().await.unwrap();
    let padding = "x".repeat(120_000);
    // Six ingest batches of ten: each batch is written in a few multi-entity
    // transactions (several revisions per batch, several tasks per revision).
    for batch in 0..6 {
        let bodies: Vec<String> = (0..10)
            .map(|n| {
                let mut d = task_detail(
                    "big",
                    css_tests::fixtures::ACCOUNT,
                    &format!("t{batch}{n}"),
                    "RUNNING",
                    1,
                    true,
                );
                d["overrides"]["padding"] = Value::from(padding.clone());
                task_event(&d)
            })
            .collect();
        let out = css::ingest::apply_batch(store.as_ref(), &messages(&bodies)).await;
        assert!(out.failures.is_empty());
    }
    let app = app(store.clone());
    let stream = read("apigw-stream-tasks.json");
    let request = |since: i64| {
        stream
            .replace(
                "cluster=orders&since=1&wait=0",
                &format!("cluster=big&since={since}&wait=0"),
            )
            .replace(r#""cluster": "orders""#, r#""cluster": "big""#)
            .replace(r#""since": "1""#, &format!(r#""since": "{since}""#))
    };
    let drain = |first: i64| {
        let app = app.clone();
        let request = &request;
        async move {
            let mut since = first;
            let mut seen: Vec<(i64, String)> = Vec::new();
            let mut answers = 0;
            loop {
                let body = watch_answer(&app, &request(since)).await;
                answers += 1;
                for e in body["events"].as_array().unwrap() {
                    let rev: i64 = e["revision"].as_str().unwrap().parse().unwrap();
                    assert!(rev > since, "nothing at or before since");
                    seen.push((
                        rev,
                        e["item"]["entity"]["taskArn"].as_str().unwrap().to_string(),
                    ));
                }
                let next: i64 = body["revision"].as_str().unwrap().parse().unwrap();
                if body["more"] == false {
                    break;
                }
                assert!(next > since, "a capped answer moves forward");
                since = next;
            }
            (seen, answers)
        }
    };
    let (seen, answers) = drain(start).await;
    assert!(answers >= 2, "7 MB of changes need two answers or more");
    assert_eq!(seen.len(), 60, "every task once");
    let distinct: std::collections::BTreeSet<&String> = seen.iter().map(|(_, a)| a).collect();
    assert_eq!(distinct.len(), 60);
    assert!(
        seen.windows(2).all(|w| w[0].0 <= w[1].0),
        "in revision order"
    );
    let revisions: std::collections::BTreeSet<i64> = seen.iter().map(|(r, _)| *r).collect();
    assert!(
        revisions.len() >= 6,
        "written in several revisions: {revisions:?}"
    );
    assert!(
        revisions.len() < 60,
        "some revisions hold several tasks: {revisions:?}"
    );

    // A subscription (RUNNING tasks of "big" from revision 1): its events
    // answers obey the cap too.
    let created = read("apigw-create-subscription.json");
    let created = created.replace("\\\"orders\\\"", "\\\"big\\\"");
    let (status, sub) = send(&app, &created).await;
    assert_eq!(status, 201, "{sub}");
    assert_eq!(sub["filters"]["cluster"], "big", "{sub}");
    let id = sub["id"].as_str().unwrap().to_string();
    let events =
        read("apigw-subscription-events.json").replace("00000000000000000000000000000000", &id);
    // The sample subscribes from revision 1: it delivers the same 60 tasks.
    let mut delivered = Vec::new();
    let mut ack: Option<String> = None;
    for _ in 0..20 {
        let text = match &ack {
            None => events.clone(),
            Some(a) => events
                .replace("wait=0", &format!("wait=0&ack={a}"))
                .replace(r#""wait": "0""#, &format!(r#""wait": "0", "ack": "{a}""#)),
        };
        let body = watch_answer(&app, &text).await;
        for e in body["events"].as_array().unwrap() {
            delivered.push(e["item"]["entity"]["taskArn"].as_str().unwrap().to_string());
        }
        ack = Some(body["revision"].as_str().unwrap().to_string());
        if body["more"] == false && !delivered.is_empty() {
            break;
        }
    }
    assert_eq!(
        delivered.len(),
        60,
        "every change once through the subscription"
    );
}
