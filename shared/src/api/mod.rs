//! The one HTTP router (docs/reference.md#http-api), served by `lambda_http::run` in Lambda and
//! by `axum::serve` in server mode.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::http::{StatusCode, Uri};
use axum::response::Response;
use axum::routing::{MethodFilter, MethodRouter};
use axum::Router;

use crate::config::StoreArgs;
use crate::cursor::CursorStore;
use crate::model::Kind;
use crate::query::{self, ListQuery, QueryError};
use crate::setup::Parts;
use crate::store::{StateStore, StoreError};

pub mod answers;
mod error;
mod measure;
pub mod params;
pub mod render;
mod routes;
mod watch;

use params::Params;

pub use error::{json_response, ApiError};
pub use routes::*;

/// The IAM caller of a request (its ARN), as the Lambda edge found it in
/// API Gateway's authorizer context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller(pub String);

/// How callers are identified (subscriptions belong to their creator).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Identity {
    /// Server mode: one local principal.
    Local,
    /// Behind API Gateway: the IAM caller from the request context.
    Iam,
}

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn StateStore>,
    /// None where subscriptions are not served (the css-api function).
    pub cursors: Option<Arc<dyn CursorStore>>,
    pub identity: Identity,
    /// Idle subscriptions expire after this long.
    pub subscription_ttl: Duration,
    /// Live subscriptions one principal may hold (CSS_SUBSCRIPTIONS_PER_OWNER).
    pub subscriptions_per_owner: usize,
    /// etcd's space quota, what status reports the database size against.
    pub etcd_quota_bytes: i64,
    /// Stream answers shared by the watchers asking the same question.
    pub answers: Arc<answers::Answers>,
}

pub const DEFAULT_SUBSCRIPTION_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
pub const DEFAULT_SUBSCRIPTIONS_PER_OWNER: usize = 100;

impl AppState {
    /// The state of a process from what `setup::build` made and its settings.
    pub fn new(parts: &Parts, identity: Identity, args: &StoreArgs) -> AppState {
        AppState {
            store: parts.store.clone(),
            cursors: parts.cursors.clone(),
            identity,
            subscription_ttl: DEFAULT_SUBSCRIPTION_TTL,
            subscriptions_per_owner: args.subscriptions_per_owner as usize,
            etcd_quota_bytes: args.etcd_quota_bytes,
            answers: Arc::default(),
        }
    }

    /// Server mode's state: one local principal.
    pub fn local(store: Arc<dyn StateStore>, cursors: Arc<dyn CursorStore>) -> AppState {
        AppState {
            store,
            cursors: Some(cursors),
            identity: Identity::Local,
            subscription_ttl: DEFAULT_SUBSCRIPTION_TTL,
            subscriptions_per_owner: DEFAULT_SUBSCRIPTIONS_PER_OWNER,
            etcd_quota_bytes: 4 << 30,
            answers: Arc::default(),
        }
    }
}

pub fn router(state: AppState) -> Router {
    // Each route by name with its own method: routes sharing a path (a
    // subscription's GET and DELETE) are merged by axum.
    let routes: [(Route, MethodRouter<AppState>); 15] = [
        (PING, on(PING, ping)),
        (STATUS, on(STATUS, status)),
        (LIST_TASKS, on(LIST_TASKS, list_tasks)),
        (DESCRIBE_TASK, on(DESCRIBE_TASK, describe_task)),
        (LIST_INSTANCES, on(LIST_INSTANCES, list_instances)),
        (DESCRIBE_INSTANCE, on(DESCRIBE_INSTANCE, describe_instance)),
        (LIST_SERVICES, on(LIST_SERVICES, list_services)),
        (DESCRIBE_SERVICE, on(DESCRIBE_SERVICE, describe_service)),
        (STREAM_TASKS, on(STREAM_TASKS, watch::stream_tasks)),
        (
            STREAM_INSTANCES,
            on(STREAM_INSTANCES, watch::stream_instances),
        ),
        (STREAM_SERVICES, on(STREAM_SERVICES, watch::stream_services)),
        (
            CREATE_SUBSCRIPTION,
            on(CREATE_SUBSCRIPTION, watch::create_subscription),
        ),
        (
            GET_SUBSCRIPTION,
            on(GET_SUBSCRIPTION, watch::get_subscription),
        ),
        (
            DELETE_SUBSCRIPTION,
            on(DELETE_SUBSCRIPTION, watch::delete_subscription),
        ),
        (
            SUBSCRIPTION_EVENTS,
            on(SUBSCRIPTION_EVENTS, watch::subscription_events),
        ),
    ];
    let mut router = Router::new();
    for (r, handler) in routes {
        router = router.route(r.path, handler);
    }
    router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(measure::MeasureLayer)
        .with_state(state)
}

/// `handler` for `r`'s method alone.
fn on<H, T>(r: Route, handler: H) -> MethodRouter<AppState>
where
    H: axum::handler::Handler<T, AppState>,
    T: 'static,
{
    let filter = match r.method {
        "POST" => MethodFilter::POST,
        "DELETE" => MethodFilter::DELETE,
        _ => MethodFilter::GET,
    };
    axum::routing::on(filter, handler)
}

async fn not_found() -> ApiError {
    ApiError::NotFound("no such route".into())
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

async fn status(State(s): State<AppState>, RawQuery(q): RawQuery) -> Result<Response, ApiError> {
    Params::parse(q.as_deref(), &[])?;
    let mut doc = crate::status::status(s.store.as_ref()).await;
    // Each member asked now (null for the embedded store; an error for a
    // store that cannot say).
    doc["members"] = match crate::health::check(s.store.as_ref(), s.etcd_quota_bytes).await {
        Ok(h) => serde_json::to_value(h).unwrap_or_default(),
        Err(e) => serde_json::json!({"error": e.to_string()}),
    };
    Ok(ok_json(doc.to_string()))
}

fn ok_json(body: String) -> Response {
    json_response(StatusCode::OK, body)
}

async fn ping(State(s): State<AppState>, RawQuery(q): RawQuery) -> Result<Response, ApiError> {
    Params::parse(q.as_deref(), &[])?;
    let rev = s.store.current_revision().await?;
    let store = s.store.identity().await?;
    Ok(ok_json(
        serde_json::json!({ "revision": rev.to_string(), "store": store }).to_string(),
    ))
}

async fn list_tasks(
    State(s): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    list(&s, Kind::Task, q.as_deref()).await
}

async fn list_instances(
    State(s): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    list(&s, Kind::Instance, q.as_deref()).await
}

async fn list_services(
    State(s): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    list(&s, Kind::Service, q.as_deref()).await
}

async fn list(s: &AppState, kind: Kind, q: Option<&str>) -> Result<Response, ApiError> {
    let p = Params::parse_with_filters(q, kind, &["limit", "nextToken"])?;
    let query = ListQuery {
        filters: params::filters(kind, &p)?,
        limit: p.limit()?,
        next_token: p.get("nextToken").map(str::to_string),
    };
    let out = match query::list(s.store.as_ref(), &query).await {
        Ok(out) => out,
        // Only a token can ask for a revision: one ahead of the store is
        // another store's (minted before stores had an identity).
        Err(QueryError::Store(StoreError::FutureRevision { current, .. })) => {
            let oldest = (s.store.compacted_revision().await? - 1).max(0);
            return Err(ApiError::OtherStore { oldest, current });
        }
        Err(e) => return Err(e.into()),
    };
    Ok(ok_json(render::list_page(&out)?))
}

async fn describe_task(
    State(s): State<AppState>,
    uri: Uri,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    describe(&s, Kind::Task, &uri, q.as_deref()).await
}

async fn describe_instance(
    State(s): State<AppState>,
    uri: Uri,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    describe(&s, Kind::Instance, &uri, q.as_deref()).await
}

async fn describe_service(
    State(s): State<AppState>,
    uri: Uri,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    describe(&s, Kind::Service, &uri, q.as_deref()).await
}

async fn describe(
    s: &AppState,
    kind: Kind,
    uri: &Uri,
    q: Option<&str>,
) -> Result<Response, ApiError> {
    Params::parse(q, &[])?;
    let prefix = format!("/v1/{}/", kind.plural());
    let rest = uri.path().strip_prefix(&prefix).unwrap_or_default();
    let (cluster, id) = split_describe_path(rest)?;
    let id_param = match kind {
        Kind::Task => "taskArnOrId",
        Kind::Instance => "instanceArnOrId",
        Kind::Service => "serviceArnOrName",
    };
    let record = query::describe(
        s.store.as_ref(),
        kind,
        params::parse_cluster("cluster", &cluster)?,
        &params::resource_ref(id_param, kind, &id)?,
    )
    .await?;
    Ok(ok_json(render::item(&record)?))
}

/// `{cluster}/{arnOrId}` where either may be an ARN with its `/` and `:`
/// encoded or not (API Gateway hands over decoded paths).
fn split_describe_path(rest: &str) -> Result<(String, String), ApiError> {
    let decoded = percent_encoding::percent_decode_str(rest)
        .decode_utf8()
        .map_err(|_| ApiError::BadParam {
            name: "cluster".into(),
            message: "the path is not valid UTF-8".into(),
        })?;
    let rest = decoded.as_ref();
    // A cluster ARN holds one '/', before the cluster name.
    let cluster_end = if rest.starts_with("arn:") {
        rest.find('/')
            .and_then(|first| rest[first + 1..].find('/').map(|second| first + 1 + second))
    } else {
        rest.find('/')
    };
    match cluster_end {
        Some(end) if end > 0 && end + 1 < rest.len() => {
            Ok((rest[..end].to_string(), rest[end + 1..].to_string()))
        }
        _ => Err(ApiError::NotFound(
            "no such route: expected {cluster}/{arnOrId}".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_describe_paths() {
        let ok = |s: &str| split_describe_path(s).unwrap();
        assert_eq!(ok("c1/abc"), ("c1".into(), "abc".into()));
        assert_eq!(
            ok("c1/arn:aws:ecs:us-east-1:123456789012:task/c1/abc"),
            (
                "c1".into(),
                "arn:aws:ecs:us-east-1:123456789012:task/c1/abc".into()
            )
        );
        assert_eq!(
            ok("arn%3Aaws%3Aecs%3Aus-east-1%3A123456789012%3Acluster%2Fc1/arn%3Aaws%3Aecs%3Aus-east-1%3A123456789012%3Atask%2Fc1%2Fabc"),
            (
                "arn:aws:ecs:us-east-1:123456789012:cluster/c1".into(),
                "arn:aws:ecs:us-east-1:123456789012:task/c1/abc".into()
            )
        );
        assert_eq!(
            ok("arn:aws:ecs:us-east-1:123456789012:cluster/c1/abc"),
            (
                "arn:aws:ecs:us-east-1:123456789012:cluster/c1".into(),
                "abc".into()
            )
        );
        assert!(split_describe_path("c1").is_err());
        assert!(split_describe_path("c1/").is_err());
        assert!(split_describe_path("arn:aws:ecs:us-east-1:123456789012:cluster/c1").is_err());
    }
}
