//! Server mode behind the stack's VPC link (the Fargate watch tier): with
//! CSS_CALLER_HEADER, each request's caller is the IAM principal API
//! Gateway put in that header, so subscriptions keep their owners as they
//! do behind the Lambda tier; without the setting the header means nothing.

use css_tests::server::TestServer;
use serde_json::{json, Value};

const ALICE: &str = "arn:aws:sts::123456789012:assumed-role/ops/alice";
const ALICE_AGAIN: &str = "arn:aws:sts::123456789012:assumed-role/ops/alice-2";
const BOB: &str = "arn:aws:sts::123456789012:assumed-role/dev/bob";

async fn call(
    srv: &TestServer,
    method: reqwest::Method,
    path: &str,
    caller: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = srv.http.request(method, format!("{}{path}", srv.base));
    if let Some(c) = caller {
        req = req.header("X-Css-Caller", c);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let res = req.send().await.expect("request");
    let status = res.status().as_u16();
    let text = res.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[tokio::test]
async fn subscriptions_belong_to_the_caller_the_header_names() {
    let srv = TestServer::start(None, &["--caller-header", "x-css-caller"]).await;
    let post = reqwest::Method::POST;
    let body = json!({"resource": "tasks"});
    // No caller: refused, as behind API Gateway without an IAM caller.
    let (status, answer) = call(
        &srv,
        post.clone(),
        "/v1/subscriptions",
        None,
        Some(body.clone()),
    )
    .await;
    assert_eq!(status, 403, "{answer}");
    let (status, sub) = call(&srv, post, "/v1/subscriptions", Some(ALICE), Some(body)).await;
    assert_eq!(status, 201, "{sub}");
    let path = format!("/v1/subscriptions/{}", sub["id"].as_str().expect("id"));
    // Another session of the same role owns it too; another role does not.
    let get = reqwest::Method::GET;
    let (status, _) = call(&srv, get.clone(), &path, Some(ALICE_AGAIN), None).await;
    assert_eq!(status, 200);
    let (status, _) = call(&srv, get.clone(), &path, Some(BOB), None).await;
    assert_eq!(status, 404);
    let (status, _) = call(&srv, get.clone(), &path, None, None).await;
    assert_eq!(status, 403);
    // Reads need no caller (IAM authorized them at API Gateway).
    let (status, _) = call(&srv, get, "/v1/tasks", None, None).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn without_the_setting_the_header_is_ignored() {
    let srv = TestServer::start(None, &[]).await;
    let body = json!({"resource": "tasks"});
    let (status, sub) = call(
        &srv,
        reqwest::Method::POST,
        "/v1/subscriptions",
        Some(ALICE),
        Some(body),
    )
    .await;
    assert_eq!(status, 201, "{sub}");
    let path = format!("/v1/subscriptions/{}", sub["id"].as_str().expect("id"));
    // One local principal: any header, or none, reaches it.
    for caller in [Some(BOB), None] {
        let (status, _) = call(&srv, reqwest::Method::GET, &path, caller, None).await;
        assert_eq!(status, 200);
    }
}

#[tokio::test]
async fn an_invalid_header_name_stops_start_up_in_one_line() {
    use clap::Parser;
    let cfg = css_server::ServerConfig::try_parse_from([
        "css-server",
        "--bind",
        "127.0.0.1:0",
        "--caller-header",
        "x css caller",
    ])
    .expect("flags");
    let err = css_server::Server::start(cfg, css_server::AwsOverrides::default())
        .await
        .err()
        .expect("refused");
    assert!(err.to_string().starts_with("CSS_CALLER_HEADER: "), "{err}");
}
