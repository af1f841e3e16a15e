//! The router's one middleware: counts every request by route and status
//! class, times it, and writes one access-log line (route, status, latency,
//! caller) at info.
//!
//! A tower layer rather than `axum::middleware::from_fn`: that one clones
//! and boxes the route's service and boxes a future for every request, which
//! a long poll answered a thousand times a second pays for each time.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::Method;
use axum::response::Response;

use super::{Caller, ROUTES};

#[derive(Debug, Clone, Copy, Default)]
pub struct MeasureLayer;

impl<S> tower::Layer<S> for MeasureLayer {
    type Service = Measure<S>;
    fn layer(&self, inner: S) -> Measure<S> {
        Measure { inner }
    }
}

#[derive(Debug, Clone)]
pub struct Measure<S> {
    inner: S,
}

impl<S> tower::Service<Request> for Measure<S>
where
    S: tower::Service<Request, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Measured<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let seen = Seen {
            started: Instant::now(),
            route: route_label(req.extensions().get::<MatchedPath>()),
            method: req.method().clone(),
            caller: req.extensions().get::<Caller>().map(|c| c.0.clone()),
        };
        Measured {
            inner: self.inner.call(req),
            seen: Some(seen),
        }
    }
}

/// What is known of a request before it is answered.
struct Seen {
    started: Instant,
    route: &'static str,
    method: Method,
    caller: Option<String>,
}

pin_project_lite::pin_project! {
    pub struct Measured<F> {
        #[pin]
        inner: F,
        seen: Option<Seen>,
    }
}

impl<F, E> Future for Measured<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let out = std::task::ready!(this.inner.poll(cx));
        if let (Ok(resp), Some(seen)) = (&out, this.seen.take()) {
            let took = seen.started.elapsed();
            let status = resp.status().as_u16();
            crate::metrics::http(seen.route, status, took);
            tracing::info!(
                method = %seen.method,
                route = seen.route,
                status,
                latency_ms = took.as_secs_f64() * 1000.0,
                principal = seen.caller.as_deref().unwrap_or("-"),
                "request"
            );
        }
        Poll::Ready(out)
    }
}

/// The route's path as a metric label: a static string for every route
/// (a label is then never allocated per request), "unmatched" otherwise.
fn route_label(matched: Option<&MatchedPath>) -> &'static str {
    let Some(path) = matched.map(|m| m.as_str()) else {
        return "unmatched";
    };
    ROUTES
        .iter()
        .map(|r| r.path)
        .find(|p| *p == path)
        .unwrap_or("other")
}
