//! The router behind API Gateway: strips a named stage's `/<stage>` prefix,
//! which lambda_http leaves in the path, and hands the router the IAM caller
//! from the authorizer context (as `api::Caller`), before routing.

use axum::http::{Request, Uri};

use crate::api::Caller;
use axum::Router;
use lambda_http::request::RequestContext;
use lambda_http::RequestExt;
use tower::util::MapRequest;
use tower::ServiceExt;

/// The stage named in the API Gateway request context, unless `$default`.
fn stage_of<B>(req: &Request<B>) -> Option<String> {
    let stage = match req.request_context_ref()? {
        RequestContext::ApiGatewayV2(ctx) => ctx.stage.clone(),
        #[allow(unreachable_patterns)]
        _ => None,
    }?;
    (!stage.is_empty() && stage != "$default").then_some(stage)
}

pub fn strip_stage<B>(mut req: Request<B>) -> Request<B> {
    let Some(stage) = stage_of(&req) else {
        return req;
    };
    let prefix = format!("/{stage}");
    let path = req.uri().path();
    let rest = match path.strip_prefix(&prefix) {
        Some("") => "/",
        Some(r) if r.starts_with('/') => r,
        _ => return req,
    };
    let path_and_query = match req.uri().query() {
        Some(q) => format!("{rest}?{q}"),
        None => rest.to_string(),
    };
    let mut parts = req.uri().clone().into_parts();
    if let Ok(pq) = path_and_query.parse() {
        parts.path_and_query = Some(pq);
        if let Ok(uri) = Uri::from_parts(parts) {
            *req.uri_mut() = uri;
        }
    }
    req
}

/// The IAM caller API Gateway vouches for (its ARN, else its caller id).
fn iam_caller<B>(req: &Request<B>) -> Option<String> {
    let RequestContext::ApiGatewayV2(ctx) = req.request_context_ref()? else {
        return None;
    };
    let iam = ctx.authorizer.as_ref()?.iam.as_ref()?;
    iam.user_arn.clone().or_else(|| iam.caller_id.clone())
}

/// A request as the router takes it: stage stripped, caller attached.
pub fn edge<B>(req: Request<B>) -> Request<B> {
    let caller = iam_caller(&req);
    let mut req = strip_stage(req);
    if let Some(c) = caller {
        req.extensions_mut().insert(Caller(c));
    }
    req
}

type LambdaRequest = Request<lambda_http::Body>;

/// Writes the invocation's metrics (EMF) once its answer is ready.
async fn flush_metrics(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let resp = next.run(req).await;
    crate::metrics::flush();
    resp
}

/// What `lambda_http::run` serves.
pub fn service(router: Router) -> MapRequest<Router, fn(LambdaRequest) -> LambdaRequest> {
    router
        .layer(axum::middleware::from_fn(flush_metrics))
        .map_request(edge::<lambda_http::Body> as fn(_) -> _)
}
