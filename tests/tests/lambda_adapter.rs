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
    })
}

/// One API Gateway request (JSON text) through the adapter.
async fn send(app: &axum::Router, text: &str) -> (u16, Value) {
    let req = lambda_http::request::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"));
    let resp = api::lambda::service(app.clone())
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
        let resp = css::ingest::handle_sqs(store, serde_json::from_str(&read(sample)).unwrap())
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
    assert_eq!(api::lambda::strip_stage(req).uri().path(), "/v1/tasks");
    let text = std::fs::read_to_string(events_dir().join("apigw-describe-task-decoded-arns.json"))
        .unwrap();
    let req = from_str(&text).unwrap();
    let path = req.uri().path().to_string();
    assert_eq!(
        api::lambda::strip_stage(req).uri().path(),
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
