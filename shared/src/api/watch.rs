//! Watch routes: long-poll streams and subscriptions (docs/reference.md#watching).

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{FromRequestParts, RawQuery, State};
use axum::http::request::Parts;
use axum::http::{Extensions, StatusCode, Uri};
use axum::response::Response;
use serde_json::{json, Value};

use super::answers::Question;
use super::params::{self, Params};
use super::{json_response, render, ApiError, AppState, Caller, Identity};
use crate::cursor::{owner_of, CursorStore, Subscription};
use crate::filter::Filters;
use crate::model::Kind;
use crate::watch::{check_ack, poll, subscription_start, PollOutput, PollRequest, WatchError};

/// A watch answer with its body, counted by why it was sent: events to
/// deliver, the limit (more to come), or the wait ending with nothing.
fn answer(out: &PollOutput, body: impl Into<axum::body::Body>) -> Response {
    let cause = match (out.more, out.changes.is_empty()) {
        (true, _) => "limit",
        (false, false) => "events",
        (false, true) => "timeout",
    };
    crate::metrics::watch_answer(cause, out.changes.len(), out.revision);
    json_response(StatusCode::OK, body)
}

impl From<WatchError> for ApiError {
    fn from(e: WatchError) -> Self {
        match e {
            WatchError::FutureSince {
                oldest, current, ..
            } => {
                crate::metrics::watch_expired();
                ApiError::OtherStore { oldest, current }
            }
            e @ WatchError::FutureAck { .. } => params::bad("ack", e.to_string()),
            WatchError::Expired {
                oldest, current, ..
            } => {
                crate::metrics::watch_expired();
                ApiError::Expired { oldest, current }
            }
            WatchError::Store(s) => ApiError::Store(s),
        }
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn iso(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

pub(super) async fn stream_tasks(
    State(s): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    stream(&s, Kind::Task, q.as_deref()).await
}

pub(super) async fn stream_instances(
    State(s): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    stream(&s, Kind::Instance, q.as_deref()).await
}

pub(super) async fn stream_services(
    State(s): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    stream(&s, Kind::Service, q.as_deref()).await
}

/// 410 for a cursor of another store (`store` named but not this one's).
async fn same_store(s: &AppState, theirs: Option<&str>, ours: &str) -> Result<(), ApiError> {
    match theirs {
        Some(t) if t != ours => {
            let current = s.store.current_revision().await?;
            let oldest = (s.store.compacted_revision().await? - 1).max(0);
            crate::metrics::watch_expired();
            Err(ApiError::OtherStore { oldest, current })
        }
        _ => Ok(()),
    }
}

async fn stream(s: &AppState, kind: Kind, q: Option<&str>) -> Result<Response, ApiError> {
    let p = Params::parse_with_filters(q, kind, &["since", "store", "wait", "limit"])?;
    // Every parameter checked (400) before the cursor is judged (410).
    let req = PollRequest {
        filters: params::filters(kind, &p)?,
        since: p.revision("since")?,
        wait: p.wait()?,
        limit: p.limit()?,
    };
    let id = s.store.identity().await?;
    same_store(s, p.get("store"), &id).await?;
    let out = poll(s.store.as_ref(), &req).await?;
    let question = Question {
        kind,
        store: &id,
        query: q.unwrap_or_default(),
        since: out.since,
        revision: out.revision,
        more: out.more,
    };
    let body = s
        .answers
        .get_or_render(question, || render::watch_batch(&out, &id))?;
    Ok(answer(&out, body))
}

/// Who owns what the caller creates: the IAM caller API Gateway vouches
/// for (an assumed-role session as its role); in server mode, the one local
/// principal.
fn principal(s: &AppState, ext: &Extensions) -> Result<String, ApiError> {
    if let Some(Caller(who)) = ext.get::<Caller>() {
        return Ok(owner_of(who));
    }
    match s.identity {
        Identity::Local => Ok("local".into()),
        Identity::Iam => Err(ApiError::Forbidden),
    }
}

fn cursors(s: &AppState) -> Result<&dyn CursorStore, ApiError> {
    s.cursors
        .as_deref()
        .ok_or_else(|| ApiError::NotFound("subscriptions are not served here".into()))
}

fn sub_json(sub: &Subscription) -> String {
    json!({
        "id": sub.id,
        "resource": sub.resource,
        "filters": sub.filters,
        "cursor": sub.cursor.to_string(),
        "createdAt": iso(sub.created_at),
        "expiresAt": iso(sub.expires_at),
        "store": sub.store,
    })
    .to_string()
}

/// A subscription's filters, validated exactly as the list's query parameters.
fn subscription_filters(
    kind: Kind,
    filters: &BTreeMap<String, String>,
) -> Result<Filters, ApiError> {
    let query: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(filters)
        .finish();
    params::filters(kind, &Params::parse_with_filters(Some(&query), kind, &[])?)
}

fn bad_body(name: &str, message: impl Into<String>) -> ApiError {
    ApiError::BadParam {
        name: name.into(),
        message: message.into(),
    }
}

pub(super) async fn create_subscription(
    State(s): State<AppState>,
    ext: Extensions,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Result<Response, ApiError> {
    Params::parse(q.as_deref(), &[])?;
    let who = principal(&s, &ext)?;
    let cursors = cursors(&s)?;
    let v: Value = serde_json::from_slice(&body)
        .map_err(|e| bad_body("body", format!("the body is not JSON: {e}")))?;
    let obj = v
        .as_object()
        .ok_or_else(|| bad_body("body", "the body must be a JSON object"))?;
    if let Some(k) = obj
        .keys()
        .find(|k| !["resource", "filters", "since"].contains(&k.as_str()))
    {
        return Err(bad_body(k, format!("unknown field '{k}'")));
    }
    let kind = obj
        .get("resource")
        .and_then(Value::as_str)
        .and_then(Kind::from_plural)
        .ok_or_else(|| {
            bad_body(
                "resource",
                "'resource' must be \"tasks\", \"instances\" or \"services\"",
            )
        })?;
    let mut filters = BTreeMap::new();
    match obj.get("filters") {
        None => {}
        Some(Value::Object(f)) => {
            for (k, v) in f {
                let v = v.as_str().ok_or_else(|| {
                    bad_body(
                        &format!("filters.{k}"),
                        format!("filter '{k}' must be a string"),
                    )
                })?;
                filters.insert(k.clone(), v.to_string());
            }
        }
        Some(_) => {
            return Err(bad_body(
                "filters",
                "'filters' must be an object of strings",
            ))
        }
    }
    subscription_filters(kind, &filters)?;
    let since = match obj.get("since") {
        None => None,
        Some(Value::String(t)) => params::revision("since", Some(t))?,
        Some(_) => return Err(bad_body("since", "'since' must be a revision string")),
    };
    let store = s.store.identity().await?;
    let cursor = subscription_start(s.store.as_ref(), since).await?;
    let created = now();
    let sub = Subscription {
        id: format!("{:032x}", rand::random::<u128>()),
        principal: who,
        resource: kind.plural().to_string(),
        filters,
        cursor,
        created_at: created,
        expires_at: created + s.subscription_ttl.as_secs() as i64,
        store: Some(store),
    };
    cursors
        .create(&sub, s.subscriptions_per_owner, created)
        .await?;
    crate::metrics::subscription("created");
    Ok(json_response(StatusCode::CREATED, sub_json(&sub)))
}

/// The subscription id of `/v1/subscriptions/{id}[/events]`.
fn sub_id(uri: &Uri) -> Result<String, ApiError> {
    let rest = uri
        .path()
        .strip_prefix("/v1/subscriptions/")
        .unwrap_or_default();
    let id = rest.strip_suffix("/events").unwrap_or(rest);
    if id.len() == 32
        && id
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    {
        Ok(id.to_string())
    } else {
        Err(ApiError::NotFound("no such subscription".into()))
    }
}

/// The caller's own live subscription, or 404 (also for someone else's).
async fn own(s: &AppState, ext: &Extensions, uri: &Uri) -> Result<Subscription, ApiError> {
    let who = principal(s, ext)?;
    let id = sub_id(uri)?;
    match cursors(s)?.get(&id, now()).await? {
        // Subscriptions stored under a session's ARN (before owners were
        // roles) stay reachable by that role.
        Some(sub) if owner_of(&sub.principal) == who => Ok(sub),
        _ => Err(ApiError::NotFound("no such subscription".into())),
    }
}

/// The caller's own subscription named by the path, for routes that take
/// no query parameters.
pub(super) struct Owned(Subscription);

impl FromRequestParts<AppState> for Owned {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, s: &AppState) -> Result<Self, ApiError> {
        Params::parse(parts.uri.query(), &[])?;
        Ok(Owned(own(s, &parts.extensions, &parts.uri).await?))
    }
}

pub(super) async fn get_subscription(Owned(sub): Owned) -> Response {
    json_response(StatusCode::OK, sub_json(&sub))
}

pub(super) async fn delete_subscription(
    State(s): State<AppState>,
    Owned(sub): Owned,
) -> Result<Response, ApiError> {
    cursors(&s)?.delete(&sub.id).await?;
    crate::metrics::subscription("deleted");
    let mut resp = json_response(StatusCode::NO_CONTENT, String::new());
    resp.headers_mut().remove(axum::http::header::CONTENT_TYPE);
    Ok(resp)
}

pub(super) async fn subscription_events(
    State(s): State<AppState>,
    ext: Extensions,
    uri: Uri,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let p = Params::parse(q.as_deref(), &["wait", "ack", "limit"])?;
    let ack = p.revision("ack")?;
    let (wait, limit) = (p.wait()?, p.limit()?);
    let sub = own(&s, &ext, &uri).await?;
    // A cursor counted in another store means nothing here.
    let id = s.store.identity().await?;
    same_store(&s, sub.store.as_deref(), &id).await?;
    if let Some(a) = ack {
        check_ack(s.store.as_ref(), a).await?;
    }
    // Commit the ack (forward only) and refresh the expiry, then follow
    // from whatever cursor is committed now.
    let t = now();
    let expires = t + s.subscription_ttl.as_secs() as i64;
    let sub = cursors(&s)?
        .advance(&sub.id, ack.unwrap_or(sub.cursor), expires, t)
        .await?
        .ok_or_else(|| ApiError::NotFound("no such subscription".into()))?;
    let kind = Kind::from_plural(&sub.resource).unwrap_or(Kind::Task);
    let filters = subscription_filters(kind, &sub.filters)?;
    let out = poll(
        s.store.as_ref(),
        &PollRequest {
            filters,
            since: Some(sub.cursor),
            wait,
            limit,
        },
    )
    .await?;
    Ok(answer(&out, render::watch_batch(&out, &id)?))
}
