//! Every error the API answers with, and the one place that picks its status.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::query::QueryError;
use crate::store::StoreError;

/// Seconds a client should wait before retrying a 503.
const RETRY_AFTER_SECS: &str = "2";

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{message}")]
    BadParam { name: String, message: String },
    #[error("{0}")]
    NotFound(String),
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("no caller identity")]
    Forbidden,
    #[error("revision compacted")]
    Expired { oldest: i64, current: i64 },
    /// A cursor, page token or subscription of another store (rebuilt or
    /// restored), or a `since` ahead of this one: 410, relist.
    #[error("another store")]
    OtherStore { oldest: i64, current: i64 },
    #[error(transparent)]
    Cursor(#[from] crate::cursor::CursorError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<QueryError> for ApiError {
    fn from(e: QueryError) -> Self {
        match e {
            QueryError::BadParam { name, message } => ApiError::BadParam { name, message },
            QueryError::NotFound => ApiError::NotFound("no such entity".into()),
            QueryError::OtherStore { oldest, current } => ApiError::OtherStore { oldest, current },
            QueryError::Store(s) => ApiError::Store(s),
        }
    }
}

pub fn json_response(status: StatusCode, body: impl Into<axum::body::Body>) -> Response {
    let mut resp = Response::new(body.into());
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, body) = match &self {
            ApiError::BadParam { name, message } => (
                StatusCode::BAD_REQUEST,
                json!({"code": "InvalidParameter", "parameter": name, "message": message}),
            ),
            ApiError::NotFound(m) => (
                StatusCode::NOT_FOUND,
                json!({"code": "NotFound", "message": m}),
            ),
            ApiError::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                json!({"code": "MethodNotAllowed", "message": "method not allowed on this path"}),
            ),
            ApiError::Forbidden => (
                StatusCode::FORBIDDEN,
                json!({"code": "Forbidden", "message": "the request carries no IAM caller identity"}),
            ),
            ApiError::Expired { oldest, current } => (
                StatusCode::GONE,
                json!({
                    "code": "Expired",
                    "message": "the requested revision has been compacted; list again and watch from the list's revision",
                    "oldestRevision": oldest.to_string(),
                    "currentRevision": current.to_string(),
                }),
            ),
            ApiError::OtherStore { oldest, current } => (
                StatusCode::GONE,
                json!({
                    "code": "Expired",
                    "message": "the cursor or token is not of this store (it was rebuilt or restored since); list again and watch from the list's revision",
                    "oldestRevision": oldest.to_string(),
                    "currentRevision": current.to_string(),
                }),
            ),
            ApiError::Cursor(e @ crate::cursor::CursorError::Unavailable(_)) => {
                tracing::warn!(error = %e, "cursor store unavailable");
                let mut resp = json_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    json!({"code": "ServiceUnavailable", "message": "the subscription store is unavailable; retry later"})
                        .to_string(),
                );
                resp.headers_mut().insert(
                    header::RETRY_AFTER,
                    HeaderValue::from_static(RETRY_AFTER_SECS),
                );
                return resp;
            }
            ApiError::Cursor(crate::cursor::CursorError::TooMany { limit, .. }) => (
                StatusCode::TOO_MANY_REQUESTS,
                json!({
                    "code": "TooManySubscriptions",
                    "message": format!("this principal already holds {limit} subscriptions (CSS_SUBSCRIPTIONS_PER_OWNER); delete some first"),
                    "limit": limit,
                }),
            ),
            ApiError::Cursor(crate::cursor::CursorError::Misconfigured(what)) => {
                tracing::error!(error = %what, "subscription store misconfigured");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    json!({"code": "Misconfigured", "message": what}),
                )
            }
            ApiError::Cursor(e @ crate::cursor::CursorError::Corrupt { .. }) => {
                tracing::error!(error = %e, "corrupt subscription");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    json!({"code": "InternalError", "message": "a subscription could not be read"}),
                )
            }
            ApiError::Store(StoreError::Compacted {
                oldest, current, ..
            }) => (
                StatusCode::GONE,
                json!({
                    "code": "Expired",
                    "message": "the requested revision has been compacted; list again",
                    "oldestRevision": oldest.to_string(),
                    "currentRevision": current.to_string(),
                }),
            ),
            ApiError::Store(StoreError::FutureRevision { requested, current }) => (
                StatusCode::BAD_REQUEST,
                json!({
                    "code": "InvalidParameter",
                    "parameter": "revision",
                    "message": format!("revision {requested} is ahead of the current revision {current}"),
                }),
            ),
            ApiError::Store(
                e @ (StoreError::Unavailable(_)
                | StoreError::Contended { .. }
                | StoreError::NoSpace(_)),
            ) => {
                tracing::warn!(error = %e, "store unavailable");
                crate::metrics::store_error(e.kind());
                let mut resp = json_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    json!({"code": "ServiceUnavailable", "message": "the state store is unavailable; retry later"})
                        .to_string(),
                );
                resp.headers_mut().insert(
                    header::RETRY_AFTER,
                    HeaderValue::from_static(RETRY_AFTER_SECS),
                );
                return resp;
            }
            ApiError::Store(e @ StoreError::Corrupt { .. }) => {
                tracing::error!(error = %e, "corrupt record");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    json!({"code": "InternalError", "message": "a stored record could not be read"}),
                )
            }
        };
        json_response(status, body.to_string())
    }
}
