//! The cursor stores: DynamoDB (against moto's server mode) and embedded pass
//! one suite; subscriptions belong to the IAM principal that created them.

use std::collections::BTreeMap;
use std::sync::Arc;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
};
use css::api::{self, AppState, Identity};
use css::cursor::{CursorStore, DynamoCursorStore, EmbeddedCursorStore, Subscription};
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
    }
}

async fn suite(store: &dyn CursorStore) {
    let a = sub("0123456789abcdef0123456789abcdef", 10, 5000);
    store.create(&a).await.unwrap();
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
    store.create(&b).await.unwrap();
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
    client
        .create_table()
        .table_name("css-cursors")
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("id")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .unwrap(),
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("id")
                .key_type(KeyType::Hash)
                .build()
                .unwrap(),
        )
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .unwrap();
    let store = DynamoCursorStore::new(client.clone(), "css-cursors");
    suite(&store).await;
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
    let resp = api::lambda::service(app.clone())
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

#[tokio::test]
async fn subscriptions_belong_to_their_iam_principal() {
    let app = api::router(AppState {
        store: Arc::new(EmbeddedStore::new("/x/")),
        cursors: Some(Arc::new(EmbeddedCursorStore::new())),
        identity: Identity::Iam,
        subscription_ttl: api::DEFAULT_SUBSCRIPTION_TTL,
    });
    let alice = Some("arn:aws:sts::123456789012:assumed-role/ops/alice");
    let bob = Some("arn:aws:sts::123456789012:assumed-role/ops/bob");
    let (status, created) = call(
        &app,
        apigw(
            "POST",
            "/v1/subscriptions",
            "",
            Some(json!({"resource": "tasks"})),
            alice,
        ),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap();
    let path = format!("/v1/subscriptions/{id}");
    assert_eq!(
        call(&app, apigw("GET", &path, "", None, alice)).await.0,
        200
    );
    assert_eq!(
        call(&app, apigw("GET", &path, "", None, bob)).await.0,
        404,
        "someone else's is not found"
    );
    assert_eq!(
        call(
            &app,
            apigw("GET", &format!("{path}/events"), "wait=0", None, bob)
        )
        .await
        .0,
        404
    );
    assert_eq!(
        call(&app, apigw("DELETE", &path, "", None, bob)).await.0,
        404
    );
    let (status, body) = call(&app, apigw("GET", &path, "", None, None)).await;
    assert_eq!(status, 403, "no IAM identity behind API Gateway: {body}");
    assert_eq!(
        call(
            &app,
            apigw("GET", &format!("{path}/events"), "wait=0", None, alice)
        )
        .await
        .0,
        200
    );
    assert_eq!(
        call(&app, apigw("DELETE", &path, "", None, alice)).await.0,
        204
    );
}
