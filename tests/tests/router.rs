//! The router in process, as axum's testing example does it: each request
//! handed to the `Router` with `tower::ServiceExt::oneshot`, no server, no
//! socket. Every named route answers its own method (and 405 to another),
//! and each handler's statuses: what it answers, what it refuses (400
//! naming the parameter), what it does not find (404), what was compacted
//! away (410).

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use css::api::{self, AppState, Route};
use css::cursor::EmbeddedCursorStore;
use css::model::Kind;
use css::store::{EmbeddedStore, StateStore, Upsert};
use css_tests::fixtures::{
    entity, instance_detail, service_detail, service_entity, task_detail, ACCOUNT,
};
use serde_json::{json, Value};
use tower::ServiceExt;

struct App {
    router: axum::Router,
    store: Arc<dyn StateStore>,
}

impl App {
    async fn new() -> App {
        let store: Arc<dyn StateStore> = Arc::new(EmbeddedStore::new("/ecs-css/v1/"));
        for e in [
            entity(
                Kind::Task,
                &task_detail("web", ACCOUNT, "t1", "RUNNING", 1, true),
            ),
            entity(
                Kind::Instance,
                &instance_detail("web", ACCOUNT, "i1", "ACTIVE", 1),
            ),
            service_entity(
                &service_detail(
                    "web",
                    ACCOUNT,
                    "api",
                    "ACTIVE",
                    "FARGATE",
                    "REPLICA",
                    &["COMPLETED"],
                    "2026-12-01T10:00:00Z",
                ),
                chrono::Utc::now(),
            ),
        ] {
            store
                .upsert_if_newer(Upsert::event(&e))
                .await
                .expect("seed");
        }
        let state = AppState::local(store.clone(), Arc::new(EmbeddedCursorStore::new()));
        App {
            router: api::router(state),
            store,
        }
    }

    async fn call(&self, method: &str, uri: &str, body: Option<Value>) -> (StatusCode, Value) {
        let req = Request::builder()
            .method(method)
            .uri(uri)
            .header("content-type", "application/json")
            .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
            .expect("request");
        let resp = self.router.clone().oneshot(req).await.expect("answer");
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .expect("body");
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }
}

/// A concrete request path of a route (its parameters filled in).
fn path_of(r: &Route) -> String {
    let path = r
        .doc
        .replace("{cluster}", "web")
        .replace("{taskArnOrId}", "t1")
        .replace("{instanceArnOrId}", "i1")
        .replace("{serviceArnOrName}", "api")
        .replace("{id}", "00000000000000000000000000000000");
    if path.contains("/stream/") || path.ends_with("/events") {
        format!("{path}?wait=0")
    } else {
        path
    }
}

#[tokio::test]
async fn every_named_route_answers_its_own_method_and_405_to_another() {
    let app = App::new().await;
    for r in api::ROUTES {
        let path = path_of(r);
        let body = (r.method == "POST").then(|| json!({"resource": "tasks"}));
        let (status, answer) = app.call(r.method, &path, body).await;
        assert_ne!(
            status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{} {path}: {answer}",
            r.method
        );
        assert_ne!(answer["message"], "no such route", "{} {path}", r.method);
        // PUT is no route's method: every path refuses it as 405.
        let (status, answer) = app.call("PUT", &path, None).await;
        assert_eq!(
            status,
            StatusCode::METHOD_NOT_ALLOWED,
            "PUT {path}: {answer}"
        );
        assert_eq!(answer["code"], "MethodNotAllowed");
    }
    // The routes that share a path are both wired: GET and DELETE of a
    // subscription, each to its own handler.
    assert_eq!(api::GET_SUBSCRIPTION.path, api::DELETE_SUBSCRIPTION.path);
    let (status, answer) = app.call("GET", "/v1/nowhere", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{answer}");
}

#[tokio::test]
async fn each_handler_answers_refuses_and_does_not_find() {
    let app = App::new().await;
    let cases: &[(&str, &str, StatusCode, Option<&str>)] = &[
        ("GET", "/v1/ping", StatusCode::OK, None),
        ("GET", "/v1/status", StatusCode::OK, None),
        (
            "GET",
            "/v1/tasks?cluster=web&status=running",
            StatusCode::OK,
            None,
        ),
        (
            "GET",
            "/v1/tasks?status=SLEEPING",
            StatusCode::BAD_REQUEST,
            Some("status"),
        ),
        (
            "GET",
            "/v1/tasks?colour=red",
            StatusCode::BAD_REQUEST,
            Some("colour"),
        ),
        (
            "GET",
            "/v1/tasks?limit=0",
            StatusCode::BAD_REQUEST,
            Some("limit"),
        ),
        (
            "GET",
            "/v1/tasks?nextToken=garbage",
            StatusCode::BAD_REQUEST,
            Some("nextToken"),
        ),
        ("GET", "/v1/tasks/web/t1", StatusCode::OK, None),
        (
            "GET",
            "/v1/tasks/web/ffffffffffffffffffffffffffffffff",
            StatusCode::NOT_FOUND,
            None,
        ),
        ("GET", "/v1/instances?status=draining", StatusCode::OK, None),
        (
            "GET",
            "/v1/instances?status=RUNNING",
            StatusCode::BAD_REQUEST,
            Some("status"),
        ),
        ("GET", "/v1/instances/web/i1", StatusCode::OK, None),
        ("GET", "/v1/instances/web/i9", StatusCode::NOT_FOUND, None),
        (
            "GET",
            "/v1/services?rolloutState=completed",
            StatusCode::OK,
            None,
        ),
        (
            "GET",
            "/v1/services?schedulingStrategy=SOMETIMES",
            StatusCode::BAD_REQUEST,
            Some("schedulingStrategy"),
        ),
        ("GET", "/v1/services/web/api", StatusCode::OK, None),
        ("GET", "/v1/services/web/nope", StatusCode::NOT_FOUND, None),
        (
            "GET",
            "/v1/stream/tasks?since=0&wait=0",
            StatusCode::OK,
            None,
        ),
        (
            "GET",
            "/v1/stream/tasks?wait=26",
            StatusCode::BAD_REQUEST,
            Some("wait"),
        ),
        (
            "GET",
            "/v1/stream/instances?since=abc",
            StatusCode::BAD_REQUEST,
            Some("since"),
        ),
        ("GET", "/v1/stream/services?wait=0", StatusCode::OK, None),
        (
            "GET",
            "/v1/subscriptions/00000000000000000000000000000000",
            StatusCode::NOT_FOUND,
            None,
        ),
        (
            "DELETE",
            "/v1/subscriptions/00000000000000000000000000000000",
            StatusCode::NOT_FOUND,
            None,
        ),
        (
            "GET",
            "/v1/subscriptions/00000000000000000000000000000000/events?wait=0",
            StatusCode::NOT_FOUND,
            None,
        ),
    ];
    for (method, uri, want, parameter) in cases {
        let (status, answer) = app.call(method, uri, None).await;
        assert_eq!(status, *want, "{method} {uri}: {answer}");
        if let Some(p) = parameter {
            assert_eq!(answer["parameter"], *p, "{method} {uri}: {answer}");
            assert_eq!(answer["code"], "InvalidParameter", "{method} {uri}");
        }
        if *want == StatusCode::NOT_FOUND {
            assert_eq!(answer["code"], "NotFound", "{method} {uri}");
        }
    }
}

#[tokio::test]
async fn subscriptions_are_created_read_followed_and_deleted() {
    let app = App::new().await;
    let (status, bad) = app
        .call(
            "POST",
            "/v1/subscriptions",
            Some(json!({"resource": "pods"})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
    let (status, sub) = app
        .call(
            "POST",
            "/v1/subscriptions",
            Some(json!({"resource": "tasks", "filters": {"cluster": "web"}})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{sub}");
    let id = sub["id"].as_str().expect("id").to_string();
    let (status, got) = app
        .call("GET", &format!("/v1/subscriptions/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{got}");
    let (status, events) = app
        .call(
            "GET",
            &format!("/v1/subscriptions/{id}/events?wait=0"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{events}");
    let (status, _) = app
        .call("DELETE", &format!("/v1/subscriptions/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = app
        .call("GET", &format!("/v1/subscriptions/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_watch_from_compacted_history_is_410_expired() {
    let app = App::new().await;
    let e = entity(
        Kind::Task,
        &task_detail("web", ACCOUNT, "t1", "STOPPED", 2, true),
    );
    app.store
        .upsert_if_newer(Upsert::event(&e))
        .await
        .expect("write");
    let current = app.store.current_revision().await.expect("revision");
    app.store.compact(current).await.expect("compact");
    let (status, answer) = app
        .call("GET", "/v1/stream/tasks?since=1&wait=0", None)
        .await;
    assert_eq!(status, StatusCode::GONE, "{answer}");
    assert_eq!(answer["code"], "Expired");
    assert!(answer["oldestRevision"].is_string() && answer["currentRevision"].is_string());
}
