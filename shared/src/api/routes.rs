//! Every route by name: its method, its path in the router, and the path as
//! the OpenAPI document names it. The router wires each by name
//! (`api::router`); the template and the OpenAPI document are checked
//! against `ROUTES`.

/// One route: its method, its path in the router, and the path as the
/// OpenAPI document names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub method: &'static str,
    pub path: &'static str,
    pub doc: &'static str,
}

const fn route(method: &'static str, path: &'static str, doc: &'static str) -> Route {
    Route { method, path, doc }
}

pub const PING: Route = route("GET", "/v1/ping", "/v1/ping");
pub const STATUS: Route = route("GET", "/v1/status", "/v1/status");
pub const LIST_TASKS: Route = route("GET", "/v1/tasks", "/v1/tasks");
pub const DESCRIBE_TASK: Route = route(
    "GET",
    "/v1/tasks/{*rest}",
    "/v1/tasks/{cluster}/{taskArnOrId}",
);
pub const LIST_INSTANCES: Route = route("GET", "/v1/instances", "/v1/instances");
pub const DESCRIBE_INSTANCE: Route = route(
    "GET",
    "/v1/instances/{*rest}",
    "/v1/instances/{cluster}/{instanceArnOrId}",
);
pub const LIST_SERVICES: Route = route("GET", "/v1/services", "/v1/services");
pub const DESCRIBE_SERVICE: Route = route(
    "GET",
    "/v1/services/{*rest}",
    "/v1/services/{cluster}/{serviceArnOrName}",
);
pub const STREAM_TASKS: Route = route("GET", "/v1/stream/tasks", "/v1/stream/tasks");
pub const STREAM_INSTANCES: Route = route("GET", "/v1/stream/instances", "/v1/stream/instances");
pub const STREAM_SERVICES: Route = route("GET", "/v1/stream/services", "/v1/stream/services");
pub const CREATE_SUBSCRIPTION: Route = route("POST", "/v1/subscriptions", "/v1/subscriptions");
pub const GET_SUBSCRIPTION: Route =
    route("GET", "/v1/subscriptions/{id}", "/v1/subscriptions/{id}");
pub const DELETE_SUBSCRIPTION: Route =
    route("DELETE", "/v1/subscriptions/{id}", "/v1/subscriptions/{id}");
pub const SUBSCRIPTION_EVENTS: Route = route(
    "GET",
    "/v1/subscriptions/{id}/events",
    "/v1/subscriptions/{id}/events",
);

/// Every route (the template and the OpenAPI document are checked against it).
pub const ROUTES: &[Route] = &[
    PING,
    STATUS,
    LIST_TASKS,
    DESCRIBE_TASK,
    LIST_INSTANCES,
    DESCRIBE_INSTANCE,
    LIST_SERVICES,
    DESCRIBE_SERVICE,
    STREAM_TASKS,
    STREAM_INSTANCES,
    STREAM_SERVICES,
    CREATE_SUBSCRIPTION,
    GET_SUBSCRIPTION,
    DELETE_SUBSCRIPTION,
    SUBSCRIPTION_EVENTS,
];
