//! Client for cluster-state-service: lists as streams over every page,
//! describe, the list+watch loop with resyncs and retries, subscriptions.
//! Requests to an API Gateway endpoint are SigV4-signed; server mode's are not.
#![forbid(unsafe_code)]

use std::time::Duration;

use futures::Stream;
use serde::de::DeserializeOwned;
use serde_json::json;

pub mod cli;
mod error;
mod retry;
pub mod sign;
pub mod types;
pub mod watch;

pub use error::Error;
pub use retry::{jittered, NoticeFn, Retry, RetryNotice};
pub use sign::Signer;
pub use types::*;
pub use watch::{ResyncCause, Watch, WatchEvent};

/// How requests are signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Signing {
    /// Sign when the endpoint is an `execute-api` URL.
    #[default]
    Auto,
    Always,
    Never,
}

#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    signer: Option<Signer>,
    pub retry: Retry,
    pub on_retry: Option<RetryNotice>,
}

impl Client {
    pub async fn new(endpoint: &str, signing: Signing) -> Result<Client, Error> {
        let base = endpoint.trim_end_matches('/').to_string();
        let region = sign::execute_api_region(&base);
        let signer = match (signing, &region) {
            (Signing::Never, _) | (Signing::Auto, None) => None,
            _ => Some(Signer::from_environment(region).await?),
        };
        let http = reqwest::Client::builder()
            // Long polls wait up to 25 s on the server.
            .timeout(Duration::from_secs(40))
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| Error::Unreachable {
                endpoint: base.clone(),
                message: e.to_string(),
            })?;
        Ok(Client {
            http,
            base,
            signer,
            retry: Retry::default(),
            on_retry: None,
        })
    }

    pub fn endpoint(&self) -> &str {
        &self.base
    }

    pub fn signs(&self) -> bool {
        self.signer.is_some()
    }

    fn url(&self, path: &str, query: &[(&str, String)]) -> String {
        let mut url = format!("{}{path}", self.base);
        if !query.is_empty() {
            let mut q = String::new();
            for (k, v) in query {
                if !q.is_empty() {
                    q.push('&');
                }
                q.push_str(k);
                q.push('=');
                q.push_str(&encode(v));
            }
            url.push('?');
            url.push_str(&q);
        }
        url
    }

    /// One request, no retries; answers the status and body of a 2xx.
    async fn once(
        &self,
        method: reqwest::Method,
        url: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<(u16, bytes::Bytes), (Error, Option<Duration>)> {
        let body_bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        let mut req = self.http.request(method.clone(), url);
        if body.is_some() {
            req = req
                .header("content-type", "application/json")
                .body(body_bytes.clone());
        }
        let mut signed_as = None;
        if let Some(s) = &self.signer {
            let headers = s
                .headers(method.as_str(), url, &body_bytes)
                .await
                .map_err(|e| (e, None))?;
            for (k, v) in headers {
                req = req.header(k, v);
            }
            signed_as = s
                .credentials()
                .await
                .ok()
                .map(|c| c.access_key_id().to_string());
        }
        // Sending and reading the body fail alike: the service was not reached.
        let unreachable = |e: reqwest::Error| {
            (
                Error::Unreachable {
                    endpoint: self.base.clone(),
                    message: root_cause(&e),
                },
                None,
            )
        };
        let resp = req.send().await.map_err(unreachable)?;
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let bytes = resp.bytes().await.map_err(unreachable)?;
        if (200..300).contains(&status) {
            return Ok((status, bytes));
        }
        let err: ErrorBody = serde_json::from_slice(&bytes).unwrap_or_else(|_| ErrorBody {
            message: String::from_utf8_lossy(&bytes).chars().take(300).collect(),
            ..Default::default()
        });
        let e = match status {
            400 => Error::BadRequest {
                parameter: err.parameter,
                message: err.message,
            },
            401 | 403 => Error::Forbidden {
                status,
                endpoint: self.base.clone(),
                message: err.message,
                signed_as,
            },
            404 => Error::NotFound(err.message),
            410 => Error::Expired(err.message),
            429 | 502 | 503 | 504 => Error::Unavailable(format!("{status}: {}", err.message)),
            _ => Error::Server {
                status,
                message: err.message,
            },
        };
        Err((e, retry_after))
    }

    /// A request with retries of transient failures (backoff, Retry-After).
    async fn call(
        &self,
        method: reqwest::Method,
        url: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<(u16, bytes::Bytes), Error> {
        let mut delay = self.retry.first;
        let mut attempt = 1;
        loop {
            match self.once(method.clone(), url, body).await {
                Ok(r) => return Ok(r),
                Err((e, after)) if e.is_transient() => {
                    if self.retry.attempts.is_some_and(|n| attempt >= n) {
                        return Err(e);
                    }
                    // The server's Retry-After as given; our own backoff jittered.
                    let pause = after
                        .unwrap_or_else(|| jittered(delay))
                        .min(self.retry.max * 6);
                    if let Some(RetryNotice(notice)) = &self.on_retry {
                        notice(&e, pause);
                    }
                    tokio::time::sleep(pause).await;
                    delay = (delay * 2).min(self.retry.max);
                    attempt += 1;
                }
                Err((e, _)) => return Err(e),
            }
        }
    }

    async fn get_json<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<T, Error> {
        let (_, body) = self
            .call(reqwest::Method::GET, &self.url(path, query), None)
            .await?;
        serde_json::from_slice(&body).map_err(|e| Error::Decode(e.to_string()))
    }

    /// The store's current revision (`/v1/ping`).
    pub async fn ping(&self) -> Result<i64, Error> {
        let v: serde_json::Value = self.get_json("/v1/ping", &[]).await?;
        revision(v["revision"].as_str().unwrap_or_default())
    }

    /// One page; `token` continues a list.
    pub async fn page<T: Entity>(
        &self,
        filters: &Filters,
        limit: Option<u32>,
        token: Option<&str>,
    ) -> Result<Page<T>, Error> {
        // A token continues the list it came from: the service checks that
        // the filters are repeated with it.
        let mut q = filters.pairs();
        if let Some(t) = token {
            q.push(("nextToken", t.to_string()));
        }
        if let Some(l) = limit {
            q.push(("limit", l.to_string()));
        }
        self.get_json(&format!("/v1/{}", T::RESOURCE.as_str()), &q)
            .await
    }

    /// Every page of a list, read at one revision; yields pages as they come.
    pub fn pages<T: Entity>(
        &self,
        filters: Filters,
        limit: Option<u32>,
    ) -> impl Stream<Item = Result<Page<T>, Error>> + '_ {
        // State: None = done; Some(None) = first page; Some(Some(t)) = continue.
        futures::stream::try_unfold(Some(None::<String>), move |state| {
            let filters = filters.clone();
            async move {
                let Some(token) = state else {
                    return Ok(None);
                };
                let page: Page<T> = self.page(&filters, limit, token.as_deref()).await?;
                let next = page.next_token.clone().map(Some);
                Ok(Some((page, next)))
            }
        })
    }

    /// Every matching entity, page by page (constant memory per page).
    pub fn list<T: Entity>(
        &self,
        filters: Filters,
        limit: Option<u32>,
    ) -> impl Stream<Item = Result<Item<T>, Error>> + '_ {
        use futures::{StreamExt, TryStreamExt};
        self.pages::<T>(filters, limit)
            .map_ok(|p| futures::stream::iter(p.items.into_iter().map(Ok)))
            .try_flatten()
            .boxed()
    }

    /// All of a list and its revision.
    pub async fn list_all<T: Entity>(
        &self,
        filters: &Filters,
    ) -> Result<(Vec<Item<T>>, i64), Error> {
        let (items, rev, _) = self.list_all_of_store(filters).await?;
        Ok((items, rev))
    }

    /// All of a list, its revision and the identity of the store it was
    /// read from (what a watch from that revision must name).
    pub async fn list_all_of_store<T: Entity>(
        &self,
        filters: &Filters,
    ) -> Result<(Vec<Item<T>>, i64, Option<String>), Error> {
        use futures::TryStreamExt;
        let mut items = Vec::new();
        let (mut rev, mut store) = (0, None);
        let pages = self.pages::<T>(filters.clone(), Some(1000));
        futures::pin_mut!(pages);
        while let Some(p) = pages.try_next().await? {
            rev = revision(&p.revision)?;
            store = p.store;
            items.extend(p.items);
        }
        Ok((items, rev, store))
    }

    /// One entity: `cluster` as a name or ARN, `id` as an ARN or bare id.
    pub async fn describe<T: Entity>(&self, cluster: &str, id: &str) -> Result<Item<T>, Error> {
        let path = format!(
            "/v1/{}/{}/{}",
            T::RESOURCE.as_str(),
            encode(cluster),
            encode(id)
        );
        self.get_json(&path, &[]).await
    }

    /// One long poll of `/v1/stream/...`.
    /// `store`: the identity of the store `since` counts in (a list's or
    /// an earlier answer's); the server answers 410 if it is another now.
    pub async fn poll<T: Entity>(
        &self,
        filters: &Filters,
        since: Option<i64>,
        store: Option<&str>,
        wait: Duration,
    ) -> Result<Batch<T>, Error> {
        let mut q = filters.pairs();
        if let Some(s) = since {
            q.push(("since", s.to_string()));
        }
        if let Some(s) = store {
            q.push(("store", s.to_string()));
        }
        q.push(("wait", wait.as_secs().min(25).to_string()));
        self.get_json(&format!("/v1/stream/{}", T::RESOURCE.as_str()), &q)
            .await
    }

    /// Starts the list+watch loop (see [`Watch`]).
    pub fn watch<T: Entity>(&self, filters: Filters) -> Watch<T> {
        Watch::new(self.clone(), filters)
    }

    pub async fn create_subscription(
        &self,
        resource: Resource,
        filters: &Filters,
        since: Option<i64>,
    ) -> Result<Subscription, Error> {
        let mut body = json!({"resource": resource.as_str(), "filters": filters});
        if let Some(s) = since {
            body["since"] = json!(s.to_string());
        }
        let url = self.url("/v1/subscriptions", &[]);
        // Not retried: a lost answer would leave a second subscription.
        let (_, bytes) = self
            .once(reqwest::Method::POST, &url, Some(&body))
            .await
            .map_err(|(e, _)| e)?;
        serde_json::from_slice(&bytes).map_err(|e| Error::Decode(e.to_string()))
    }

    pub async fn subscription(&self, id: &str) -> Result<Subscription, Error> {
        self.get_json(&format!("/v1/subscriptions/{}", encode(id)), &[])
            .await
    }

    /// Commits `ack` (if any) as the cursor, then long-polls from it.
    pub async fn subscription_events<T: Entity>(
        &self,
        id: &str,
        ack: Option<i64>,
        wait: Duration,
    ) -> Result<Batch<T>, Error> {
        let mut q = vec![("wait", wait.as_secs().min(25).to_string())];
        if let Some(a) = ack {
            q.push(("ack", a.to_string()));
        }
        self.get_json(&format!("/v1/subscriptions/{}/events", encode(id)), &q)
            .await
    }

    pub async fn delete_subscription(&self, id: &str) -> Result<(), Error> {
        let url = self.url(&format!("/v1/subscriptions/{}", encode(id)), &[]);
        self.call(reqwest::Method::DELETE, &url, None).await?;
        Ok(())
    }
}

pub fn revision(s: &str) -> Result<i64, Error> {
    s.parse()
        .map_err(|_| Error::Decode(format!("revision {s:?} is not a number")))
}

/// Percent-encodes a path segment or query value (ARNs carry `/` and `:`).
fn encode(s: &str) -> String {
    use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
    // RFC 3986 unreserved characters stay as they are.
    const SET: &AsciiSet = &NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    utf8_percent_encode(s, SET).to_string()
}

/// The innermost error's text (reqwest's outer one says little).
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}
