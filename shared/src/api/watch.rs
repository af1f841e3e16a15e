//! Watch routes: long-poll streams and subscriptions (SPEC §6).

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{Extensions, StatusCode, Uri};
use axum::response::Response;
use serde_json::{json, Value};

use super::{json_response, ApiError, AppState, Caller, Identity};
use crate::cursor::{owner_of, CursorStore, Subscription};
use crate::model::Kind;
use crate::query::{filter_params, Filters, Params, DEFAULT_LIMIT, MAX_LIMIT};
use crate::watch::{poll, PollRequest, WatchError};

pub const MAX_WAIT_SECS: u64 = 25;
pub const DEFAULT_WAIT_SECS: u64 = 20;

impl From<WatchError> for ApiError {
    fn from(e: WatchError) -> Self {
        match e {
            WatchError::FutureSince { since, current } => ApiError::BadParam {
                name: "since".into(),
                message: format!("'since' {since} is ahead of the current revision {current}"),
            },
            WatchError::Expired {
                oldest, current, ..
            } => ApiError::Expired { oldest, current },
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

fn revision_param(name: &str, v: Option<&str>) -> Result<Option<i64>, ApiError> {
    match v {
        None => Ok(None),
        Some(s) => match s.parse::<i64>() {
            Ok(n) if n >= 0 && !s.starts_with('+') => Ok(Some(n)),
            _ => Err(ApiError::BadParam {
                name: name.into(),
                message: format!("'{name}' must be a revision (a non-negative integer)"),
            }),
        },
    }
}

fn poll_params(p: &Params) -> Result<(Duration, usize), ApiError> {
    let wait = p.int("wait", 0..=MAX_WAIT_SECS, DEFAULT_WAIT_SECS)?;
    let limit = p.int("limit", 1..=MAX_LIMIT as u64, DEFAULT_LIMIT as u64)? as usize;
    Ok((Duration::from_secs(wait), limit))
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

async fn stream(s: &AppState, kind: Kind, q: Option<&str>) -> Result<Response, ApiError> {
    let mut allowed = filter_params(kind).to_vec();
    allowed.extend(["since", "wait", "limit"]);
    let p = Params::parse(q, &allowed)?;
    let filters = Filters::from_params(kind, &p)?;
    let since = revision_param("since", p.get("since"))?;
    let (wait, limit) = poll_params(&p)?;
    let out = poll(
        s.store.as_ref(),
        &PollRequest {
            filters,
            since,
            wait,
            limit,
        },
    )
    .await?;
    Ok(json_response(StatusCode::OK, out.to_json()))
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
    Ok(Filters::from_params(
        kind,
        &Params::parse(Some(&query), filter_params(kind))?,
    )?)
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
    let kind = match obj.get("resource").and_then(Value::as_str) {
        Some("tasks") => Kind::Task,
        Some("instances") => Kind::Instance,
        _ => {
            return Err(bad_body(
                "resource",
                "'resource' must be \"tasks\" or \"instances\"",
            ))
        }
    };
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
        Some(Value::String(t)) => revision_param("since", Some(t))?,
        Some(_) => return Err(bad_body("since", "'since' must be a revision string")),
    };
    let current = s.store.current_revision().await?;
    let cursor = match since {
        Some(r) if r > current => {
            return Err(ApiError::from(WatchError::FutureSince {
                since: r,
                current,
            }));
        }
        Some(r) => {
            let compacted = s.store.compacted_revision().await?;
            if r + 1 < compacted {
                return Err(ApiError::Expired {
                    oldest: compacted - 1,
                    current,
                });
            }
            r
        }
        None => current,
    };
    let created = now();
    let sub = Subscription {
        id: format!("{:032x}", rand::random::<u128>()),
        principal: who,
        resource: kind.plural().to_string(),
        filters,
        cursor,
        created_at: created,
        expires_at: created + s.subscription_ttl.as_secs() as i64,
    };
    cursors
        .create(&sub, s.subscriptions_per_owner, created)
        .await?;
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

pub(super) async fn get_subscription(
    State(s): State<AppState>,
    ext: Extensions,
    uri: Uri,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    Params::parse(q.as_deref(), &[])?;
    let sub = own(&s, &ext, &uri).await?;
    Ok(json_response(StatusCode::OK, sub_json(&sub)))
}

pub(super) async fn delete_subscription(
    State(s): State<AppState>,
    ext: Extensions,
    uri: Uri,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    Params::parse(q.as_deref(), &[])?;
    let sub = own(&s, &ext, &uri).await?;
    cursors(&s)?.delete(&sub.id).await?;
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
    let ack = revision_param("ack", p.get("ack"))?;
    let (wait, limit) = poll_params(&p)?;
    let sub = own(&s, &ext, &uri).await?;
    if let Some(a) = ack {
        let current = s.store.current_revision().await?;
        if a > current {
            return Err(ApiError::BadParam {
                name: "ack".into(),
                message: format!("'ack' {a} is ahead of the current revision {current}"),
            });
        }
    }
    // Commit the ack (forward only) and refresh the expiry, then follow
    // from whatever cursor is committed now.
    let t = now();
    let expires = t + s.subscription_ttl.as_secs() as i64;
    let sub = cursors(&s)?
        .advance(&sub.id, ack.unwrap_or(sub.cursor), expires, t)
        .await?
        .ok_or_else(|| ApiError::NotFound("no such subscription".into()))?;
    let kind = if sub.resource == "instances" {
        Kind::Instance
    } else {
        Kind::Task
    };
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
    Ok(json_response(StatusCode::OK, out.to_json()))
}
