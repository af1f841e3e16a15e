//! Server mode started in-process on a free loopback port, on either store.

use clap::Parser;
use css_server::{AwsOverrides, Server, ServerConfig};
use reqwest::StatusCode;
use serde_json::Value;

use crate::etcd::EtcdServer;

pub struct TestServer {
    pub server: Server,
    pub base: String,
    pub http: reqwest::Client,
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl TestServer {
    /// `etcd`: None for the embedded store.
    pub async fn start(etcd: Option<&EtcdServer>, extra: &[&str]) -> TestServer {
        let mut args = vec![
            "css-server".to_string(),
            "--bind".into(),
            "127.0.0.1:0".into(),
        ];
        if let Some(e) = etcd {
            args.push("--etcd-endpoints".into());
            args.push(e.endpoint());
            args.push("--etcd-timeout".into());
            args.push("2s".into());
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        let cfg = ServerConfig::try_parse_from(args).expect("valid server flags");
        Self::start_with(cfg, AwsOverrides::default()).await
    }

    pub async fn start_with(cfg: ServerConfig, aws: AwsOverrides) -> TestServer {
        let server = Server::start(cfg, aws).await.expect("server starts");
        let base = format!("http://{}", server.addr());
        TestServer {
            server,
            base,
            http: reqwest::Client::new(),
        }
    }

    /// GET a path (with query), answering status, headers and JSON body.
    pub async fn get(&self, path_and_query: &str) -> Reply {
        self.request(reqwest::Method::GET, path_and_query, None)
            .await
    }

    pub async fn request(
        &self,
        method: reqwest::Method,
        path_and_query: &str,
        body: Option<Value>,
    ) -> Reply {
        let mut req = self
            .http
            .request(method, format!("{}{}", self.base, path_and_query));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request sent");
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await.expect("body");
        let ct = headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let body = if text.is_empty() {
            Value::Null
        } else {
            assert!(
                ct.starts_with("application/json"),
                "{path_and_query}: content-type {ct:?}, body {text}"
            );
            serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{path_and_query}: not JSON ({e}): {text}"))
        };
        Reply {
            status,
            headers,
            body,
        }
    }
}
