//! The cursor stores: DynamoDB (against moto's server mode) and embedded pass
//! one suite; subscriptions belong to the IAM principal that created them.

use std::collections::BTreeMap;
use std::sync::Arc;

use css::api::{self, AppState, Identity};
use css::cursor::{CursorError, CursorStore, DynamoCursorStore, EmbeddedCursorStore, Subscription};
use css::store::EmbeddedStore;
use css_tests::moto::MotoServer;
use serde_json::{json, Value};
use tower::ServiceExt;

fn sub(id: &str, cursor: i64, expires_at: i64) -> Subscription {
    Subscription {
        id: id.into(),
        principal: "arn:aws:iam::123456789012:role/ops".into(),
        resource: "tasks".into(),
        filters: BTreeMap::from([("cluster".to_string(), "prod".to_string())]),
        cursor,
        created_at: 1000,
        expires_at,
        store: Some("0123456789abcdef0123456789abcdef".into()),
    }
}

/// The per-owner quota: live subscriptions count, expired and deleted ones
/// do not, and other owners are unaffected.
async fn quota(store: &dyn CursorStore) {
    let owned = |n: u32, owner: &str, expires_at: i64| Subscription {
        principal: owner.into(),
        ..sub(&format!("{n:032x}"), 1, expires_at)
    };
    let (ops, audit) = (
        "arn:aws:iam::123456789012:role/quota-ops",
        "arn:aws:iam::123456789012:role/quota-audit",
    );
    // One that expires at 1500: it counts before, not after.
    store.create(&owned(1, ops, 1500), 3, 1000).await.unwrap();
    store.create(&owned(2, ops, 5000), 3, 1000).await.unwrap();
    store.create(&owned(3, ops, 5000), 3, 1000).await.unwrap();
    match store.create(&owned(4, ops, 5000), 3, 1000).await {
        Err(CursorError::TooMany { owner, limit }) => assert_eq!((owner.as_str(), limit), (ops, 3)),
        other => panic!("a fourth subscription of a quota of 3: {other:?}"),
    }
    store.create(&owned(5, audit, 5000), 3, 1000).await.unwrap();
    store.create(&owned(4, ops, 5000), 3, 2000).await.unwrap();
    assert!(matches!(
        store.create(&owned(6, ops, 5000), 3, 2000).await,
        Err(CursorError::TooMany { .. })
    ));
    assert!(store.delete(&format!("{:032x}", 2)).await.unwrap());
    store.create(&owned(6, ops, 5000), 3, 2000).await.unwrap();
    assert_eq!(
        store
            .get(&format!("{:032x}", 6), 2000)
            .await
            .unwrap()
            .map(|s| s.principal),
        Some(ops.to_string())
    );
}

async fn suite(store: &dyn CursorStore) {
    quota(store).await;
    let a = sub("0123456789abcdef0123456789abcdef", 10, 5000);
    store.create(&a, 100, 1000).await.unwrap();
    assert_eq!(store.get(&a.id, 1000).await.unwrap(), Some(a.clone()));
    assert_eq!(
        store
            .get("ffffffffffffffffffffffffffffffff", 1000)
            .await
            .unwrap(),
        None
    );
    // Forward only, and the expiry is refreshed.
    let moved = store.advance(&a.id, 20, 6000, 1000).await.unwrap().unwrap();
    assert_eq!((moved.cursor, moved.expires_at), (20, 6000));
    let same = store.advance(&a.id, 15, 7000, 1000).await.unwrap().unwrap();
    assert_eq!(
        (same.cursor, same.expires_at),
        (20, 7000),
        "an older ack is a no-op, the touch is not"
    );
    // Concurrent acks end at the highest.
    let futs: Vec<_> = (21..41)
        .rev()
        .map(|c| store.advance(&a.id, c, 7000, 1000))
        .collect();
    for r in futures::future::join_all(futs).await {
        r.unwrap();
    }
    assert_eq!(store.get(&a.id, 1000).await.unwrap().unwrap().cursor, 40);
    // Expired: gone, and cannot be advanced.
    assert_eq!(store.get(&a.id, 7001).await.unwrap(), None);
    assert_eq!(store.advance(&a.id, 50, 9000, 7001).await.unwrap(), None);
    let b = sub("abcdefabcdefabcdefabcdefabcdefab", 1, 5000);
    store.create(&b, 100, 1000).await.unwrap();
    assert!(store.delete(&b.id).await.unwrap());
    assert!(!store.delete(&b.id).await.unwrap());
    assert_eq!(store.get(&b.id, 1000).await.unwrap(), None);
}

#[tokio::test]
async fn embedded_cursor_store() {
    suite(&EmbeddedCursorStore::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamodb_cursor_store_against_moto() {
    let moto = MotoServer::start();
    let client = aws_sdk_dynamodb::Client::new(&moto.sdk_config());
    css_tests::moto::create_cursor_table(&client, "css-cursors").await;
    let store = DynamoCursorStore::new(client.clone(), "css-cursors");
    suite(&store).await;
    // A table without the owner index (made by hand, or by a stack not yet
    // updated): creating says what is wrong and how to fix it.
    let no_index = "css-cursors-no-index";
    css_tests::moto::create_cursor_table_with(&client, no_index, false).await;
    let bare = DynamoCursorStore::new(client.clone(), no_index);
    let err = bare
        .create(&sub("0123456789abcdef0123456789abcdef", 1, 5000), 100, 1000)
        .await
        .unwrap_err();
    assert!(matches!(err, CursorError::Misconfigured(_)), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains(css::cursor::dynamodb::OWNER_INDEX)
            && text.contains(no_index)
            && text.contains("update the stack"),
        "{text}"
    );
    let answer = axum::response::IntoResponse::into_response(css::api::ApiError::Cursor(err));
    assert_eq!(answer.status().as_u16(), 500);
    let body = axum::body::to_bytes(answer.into_body(), usize::MAX)
        .await
        .unwrap();
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["code"], "Misconfigured");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or("")
            .contains(css::cursor::dynamodb::OWNER_INDEX),
        "{body}"
    );
    // A table that does not exist is an outage, not a panic.
    let missing = DynamoCursorStore::new(client, "nope");
    assert!(missing
        .get("0123456789abcdef0123456789abcdef", 0)
        .await
        .is_err());
}

/// An API Gateway HTTP API request with an IAM caller.
fn apigw(
    method: &str,
    path: &str,
    query: &str,
    body: Option<Value>,
    user: Option<&str>,
) -> lambda_http::Request {
    let mut ctx = json!({
        "accountId": "123456789012", "apiId": "a1b2c3d4e5", "domainName": "a1b2c3d4e5.execute-api.us-east-1.amazonaws.com",
        "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "198.51.100.7", "userAgent": "test"},
        "requestId": "r1", "routeKey": "$default", "stage": "$default", "time": "25/Nov/2026:08:15:12 +0000", "timeEpoch": 0
    });
    if let Some(u) = user {
        ctx["authorizer"] = json!({"iam": {"accountId": "123456789012", "callerId": "AROAX:s", "userArn": u, "userId": "AROAX:s"}});
    }
    let mut ev = json!({
        "version": "2.0", "routeKey": "$default", "rawPath": path, "rawQueryString": query,
        "headers": {"host": "a1b2c3d4e5.execute-api.us-east-1.amazonaws.com", "content-type": "application/json"},
        "requestContext": ctx, "isBase64Encoded": false
    });
    if let Some(b) = body {
        ev["body"] = json!(b.to_string());
    }
    lambda_http::request::from_str(&ev.to_string()).expect("API Gateway request")
}

async fn call(app: &axum::Router, req: lambda_http::Request) -> (u16, Value) {
    let resp = css::lambda::service(app.clone())
        .oneshot(req)
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn iam_app(per_owner: usize) -> axum::Router {
    api::router(AppState {
        store: Arc::new(EmbeddedStore::new("/x/")),
        cursors: Some(Arc::new(EmbeddedCursorStore::new())),
        identity: Identity::Iam,
        subscription_ttl: api::DEFAULT_SUBSCRIPTION_TTL,
        subscriptions_per_owner: per_owner,
        etcd_quota_bytes: 4 << 30,
        answers: Default::default(),
    })
}

fn create(user: Option<&str>) -> lambda_http::Request {
    apigw(
        "POST",
        "/v1/subscriptions",
        "",
        Some(json!({"resource": "tasks"})),
        user,
    )
}

/// A subscription belongs to the caller's role: a new session of the same
/// role (a restarted task or Lambda) reaches it, another role does not.
#[tokio::test]
async fn subscriptions_belong_to_their_iam_principal() {
    let app = iam_app(100);
    let alice = Some("arn:aws:sts::123456789012:assumed-role/ops/alice");
    let restarted = Some("arn:aws:sts::123456789012:assumed-role/ops/i-0restarted");
    let other_role = Some("arn:aws:sts::123456789012:assumed-role/audit/alice");
    let user = Some("arn:aws:iam::123456789012:user/ops");
    let (status, created) = call(&app, create(alice)).await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap();
    let path = format!("/v1/subscriptions/{id}");
    assert_eq!(
        call(&app, apigw("GET", &path, "", None, alice)).await.0,
        200
    );
    assert_eq!(
        call(&app, apigw("GET", &path, "", None, restarted)).await.0,
        200,
        "a new session of the same role"
    );
    for someone_else in [other_role, user] {
        assert_eq!(
            call(&app, apigw("GET", &path, "", None, someone_else))
                .await
                .0,
            404,
            "someone else's is not found"
        );
        assert_eq!(
            call(
                &app,
                apigw(
                    "GET",
                    &format!("{path}/events"),
                    "wait=0",
                    None,
                    someone_else
                )
            )
            .await
            .0,
            404
        );
        assert_eq!(
            call(&app, apigw("DELETE", &path, "", None, someone_else))
                .await
                .0,
            404
        );
    }
    let (status, body) = call(&app, apigw("GET", &path, "", None, None)).await;
    assert_eq!(status, 403, "no IAM identity behind API Gateway: {body}");
    assert_eq!(
        call(
            &app,
            apigw("GET", &format!("{path}/events"), "wait=0", None, restarted)
        )
        .await
        .0,
        200
    );
    assert_eq!(
        call(&app, apigw("DELETE", &path, "", None, restarted))
            .await
            .0,
        204
    );
}

/// Beyond CSS_SUBSCRIPTIONS_PER_OWNER live subscriptions, a role gets 429
/// TooManySubscriptions (counted across its sessions); other owners do not.
#[tokio::test]
async fn subscriptions_per_owner_are_capped() {
    let app = iam_app(3);
    let sessions = [
        "arn:aws:sts::123456789012:assumed-role/ops/a",
        "arn:aws:sts::123456789012:assumed-role/ops/b",
        "arn:aws:sts::123456789012:assumed-role/ops/c",
    ];
    let mut ids = Vec::new();
    for s in sessions {
        let (status, body) = call(&app, create(Some(s))).await;
        assert_eq!(status, 201, "{body}");
        ids.push(body["id"].as_str().unwrap().to_string());
    }
    let (status, body) = call(
        &app,
        create(Some("arn:aws:sts::123456789012:assumed-role/ops/d")),
    )
    .await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["code"], "TooManySubscriptions");
    // Another role and a user are unaffected.
    for other in [
        "arn:aws:sts::123456789012:assumed-role/audit/a",
        "arn:aws:iam::123456789012:user/ops",
    ] {
        let (status, body) = call(&app, create(Some(other))).await;
        assert_eq!(status, 201, "{other}: {body}");
    }
    // Deleting one makes room again.
    let path = format!("/v1/subscriptions/{}", ids[0]);
    assert_eq!(
        call(&app, apigw("DELETE", &path, "", None, Some(sessions[2])))
            .await
            .0,
        204
    );
    assert_eq!(call(&app, create(Some(sessions[0]))).await.0, 201);
}
