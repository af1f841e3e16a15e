//! A proxy in front of a real AWS API server (moto) that refuses every n-th
//! request as ECS refuses a rate (HTTP 400, `ThrottlingException`), so that
//! a real SDK client meets throttling; moto itself never throttles. It can
//! also refuse STS AssumeRole into one account as STS refuses a role that is
//! missing or does not trust the caller (403 `AccessDenied`): moto's STS
//! assumes any role, existing or not.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

pub struct ThrottlingProxy {
    pub endpoint: String,
    /// Requests refused so far.
    pub throttled: Arc<AtomicU64>,
    /// Requests passed on to the server so far.
    pub forwarded: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Clone)]
struct Proxy {
    upstream: String,
    every: u64,
    seen: Arc<AtomicU64>,
    throttled: Arc<AtomicU64>,
    forwarded: Arc<AtomicU64>,
    client: reqwest::Client,
    /// AssumeRole into this account is refused.
    refused_account: Option<String>,
}

impl ThrottlingProxy {
    /// Refuses every `every`-th request (1: all of them) to `upstream`.
    pub async fn start(upstream: &str, every: u64) -> ThrottlingProxy {
        Self::start_with(upstream, every, None).await
    }

    /// Forwards everything but STS AssumeRole into `account` (refused).
    pub async fn refusing_roles_in(upstream: &str, account: &str) -> ThrottlingProxy {
        Self::start_with(upstream, u64::MAX, Some(account.to_string())).await
    }

    async fn start_with(
        upstream: &str,
        every: u64,
        refused_account: Option<String>,
    ) -> ThrottlingProxy {
        let proxy = Proxy {
            refused_account,
            upstream: upstream.trim_end_matches('/').to_string(),
            every: every.max(1),
            seen: Arc::default(),
            throttled: Arc::default(),
            forwarded: Arc::default(),
            client: reqwest::Client::new(),
        };
        let (throttled, forwarded) = (proxy.throttled.clone(), proxy.forwarded.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let addr = listener.local_addr().expect("local address");
        let app = axum::Router::new().fallback(forward).with_state(proxy);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        ThrottlingProxy {
            endpoint: format!("http://{addr}"),
            throttled,
            forwarded,
            task,
        }
    }
}

impl Drop for ThrottlingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn forward(
    State(p): State<Proxy>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let text = String::from_utf8_lossy(&body);
    if (p.refused_account.as_deref())
        .is_some_and(|a| text.contains("Action=AssumeRole") && text.contains(a))
    {
        p.throttled.fetch_add(1, Ordering::SeqCst);
        let body = "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error><Type>Sender</Type>\
            <Code>AccessDenied</Code><Message>User is not authorized to perform: sts:AssumeRole</Message>\
            </Error><RequestId>refused</RequestId></ErrorResponse>";
        return (StatusCode::FORBIDDEN, [("content-type", "text/xml")], body).into_response();
    }
    let n = p.seen.fetch_add(1, Ordering::SeqCst) + 1;
    if n % p.every == 0 {
        p.throttled.fetch_add(1, Ordering::SeqCst);
        let body = r#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#;
        let headers = [
            ("content-type", "application/x-amz-json-1.1"),
            ("x-amzn-errortype", "ThrottlingException"),
        ];
        return (StatusCode::BAD_REQUEST, headers, body).into_response();
    }
    p.forwarded.fetch_add(1, Ordering::SeqCst);
    let url = format!("{}{}", p.upstream, uri);
    let mut req = p.client.request(method, url).body(body);
    for (k, v) in &headers {
        if k != "host" && k != "content-length" {
            req = req.header(k, v);
        }
    }
    match req.send().await {
        Ok(resp) => {
            let status = resp.status();
            let mut out = HeaderMap::new();
            for (k, v) in resp.headers() {
                if k != "content-length" && k != "transfer-encoding" && k != "connection" {
                    out.insert(k, v.clone());
                }
            }
            let bytes = resp.bytes().await.unwrap_or_default();
            (status, out, bytes).into_response()
        }
        Err(e) => (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    }
}
