//! Query-string parameters: each known one at most once, unknown ones
//! refused, and the list filters parsed from them (docs/reference.md#http-api). Every error
//! names its parameter.

use std::time::Duration;

use super::ApiError;
use crate::filter::{Filters, ResourceRef};
use crate::limits::{DEFAULT_LIMIT, MAX_LIMIT};
use crate::model::{
    is_cluster_name, is_resource_id, Arn, ClusterId, Kind, ROLLOUT_STATES, SCHEDULING_STRATEGIES,
};
use crate::store::ClusterScope;

pub const MAX_WAIT_SECS: u64 = 25;
pub const DEFAULT_WAIT_SECS: u64 = 20;
const TASK_DESIRED: &[&str] = &["PENDING", "RUNNING", "STOPPED"];

pub fn bad(name: &str, message: impl Into<String>) -> ApiError {
    ApiError::BadParam {
        name: name.to_string(),
        message: message.into(),
    }
}

/// Query parameters: each known at most once, unknown ones refused.
#[derive(Debug, Default)]
pub struct Params(Vec<(String, String)>);

impl Params {
    pub fn parse(raw: Option<&str>, allowed: &[&str]) -> Result<Params, ApiError> {
        let mut out: Vec<(String, String)> = Vec::new();
        for (k, v) in form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
            if !allowed.contains(&k.as_ref()) {
                return Err(bad(&k, format!("unknown query parameter '{k}'")));
            }
            if out.iter().any(|(seen, _)| *seen == k) {
                return Err(bad(&k, format!("query parameter '{k}' is repeated")));
            }
            out.push((k.into_owned(), v.into_owned()));
        }
        Ok(Params(out))
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// An integer parameter within `range`, or `default` when absent.
    pub fn int(
        &self,
        name: &str,
        range: std::ops::RangeInclusive<u64>,
        default: u64,
    ) -> Result<u64, ApiError> {
        match self.get(name) {
            None => Ok(default),
            Some(v) => match v.parse::<u64>() {
                Ok(n) if range.contains(&n) => Ok(n),
                _ => Err(bad(
                    name,
                    format!(
                        "'{name}' must be an integer from {} to {}",
                        range.start(),
                        range.end()
                    ),
                )),
            },
        }
    }

    /// `limit` (1..=1000, default 100).
    pub fn limit(&self) -> Result<usize, ApiError> {
        Ok(self.int("limit", 1..=MAX_LIMIT as u64, DEFAULT_LIMIT as u64)? as usize)
    }

    /// `wait` (0..=25 s, default 20).
    pub fn wait(&self) -> Result<Duration, ApiError> {
        Ok(Duration::from_secs(self.int(
            "wait",
            0..=MAX_WAIT_SECS,
            DEFAULT_WAIT_SECS,
        )?))
    }

    /// A revision parameter (`since`, `ack`): a non-negative integer.
    pub fn revision(&self, name: &str) -> Result<Option<i64>, ApiError> {
        revision(name, self.get(name))
    }
}

pub fn revision(name: &str, v: Option<&str>) -> Result<Option<i64>, ApiError> {
    match v {
        None => Ok(None),
        Some(s) => match s.parse::<i64>() {
            Ok(n) if n >= 0 && !s.starts_with('+') => Ok(Some(n)),
            _ => Err(bad(
                name,
                format!("'{name}' must be a revision (a non-negative integer)"),
            )),
        },
    }
}

pub fn parse_cluster(name: &str, value: &str) -> Result<ClusterScope, ApiError> {
    if value.starts_with("arn:") {
        return ClusterId::from_arn(value)
            .map(ClusterScope::Exact)
            .map_err(|e| bad(name, format!("'{name}': {e}")));
    }
    if is_cluster_name(value) {
        return Ok(ClusterScope::Named(value.to_string()));
    }
    Err(bad(
        name,
        format!("'{name}' must be a cluster name or cluster ARN, got {value:?}"),
    ))
}

/// Filter parameters per kind.
pub fn filter_params(kind: Kind) -> &'static [&'static str] {
    match kind {
        Kind::Task => &[
            "cluster",
            "status",
            "desiredStatus",
            "startedBy",
            "group",
            "launchType",
            "containerInstance",
            "service",
        ],
        Kind::Instance => &["cluster", "status"],
        Kind::Service => &[
            "cluster",
            "status",
            "launchType",
            "schedulingStrategy",
            "rolloutState",
        ],
    }
}

/// The filter parameters of `kind` plus `extra` (limit, since, ...).
pub fn with_filters(kind: Kind, extra: &[&'static str]) -> Vec<&'static str> {
    let mut allowed = filter_params(kind).to_vec();
    allowed.extend(extra);
    allowed
}

/// A task, container instance or service by ARN (either format) or bare id
/// (a service's id is its name).
pub fn resource_ref(name: &str, kind: Kind, v: &str) -> Result<ResourceRef, ApiError> {
    if v.starts_with("arn:") {
        let arn =
            Arn::parse_as(v, kind.arn_type()).map_err(|e| bad(name, format!("'{name}': {e}")))?;
        return Ok(ResourceRef {
            id: arn.id.clone(),
            arn: Some(arn),
        });
    }
    let valid = match kind {
        Kind::Service => is_cluster_name(v),
        Kind::Task | Kind::Instance => is_resource_id(v),
    };
    if valid {
        return Ok(ResourceRef {
            id: v.to_string(),
            arn: None,
        });
    }
    Err(bad(
        name,
        format!(
            "'{name}' must be an ARN or id of a {}, got {v:?}",
            kind.arn_type()
        ),
    ))
}

/// The list filters from query parameters.
pub fn filters(kind: Kind, p: &Params) -> Result<Filters, ApiError> {
    let mut f = Filters::all(kind);
    if let Some(c) = p.get("cluster") {
        f.cluster = parse_cluster("cluster", c)?;
    }
    if let Some(s) = p.get("status") {
        f.status = Some(kind.parse_status(s).ok_or_else(|| {
            bad(
                "status",
                format!("'status' must be one of {}", kind.statuses().join(", ")),
            )
        })?);
    }
    if kind != Kind::Task {
        if let Some(v) = p.get("launchType") {
            f.launch_type = Some(launch_type(v)?);
        }
        for (name, known, slot) in [
            (
                "schedulingStrategy",
                SCHEDULING_STRATEGIES,
                &mut f.scheduling_strategy,
            ),
            ("rolloutState", ROLLOUT_STATES, &mut f.rollout_state),
        ] {
            if let Some(v) = p.get(name) {
                let found = known.iter().find(|k| k.eq_ignore_ascii_case(v));
                *slot = Some(found.copied().ok_or_else(|| {
                    bad(
                        name,
                        format!("'{name}' must be one of {}", known.join(", ")),
                    )
                })?);
            }
        }
        return Ok(f);
    }
    if let Some(s) = p.get("desiredStatus") {
        f.desired_status = Some(Kind::Task.parse_status(s).ok_or_else(|| {
            bad(
                "desiredStatus",
                format!("'desiredStatus' must be one of {}", TASK_DESIRED.join(", ")),
            )
        })?);
    }
    for (name, slot) in [("startedBy", &mut f.started_by), ("group", &mut f.group)] {
        if let Some(v) = p.get(name) {
            if v.is_empty() || v.len() > 1024 {
                return Err(bad(name, format!("'{name}' must be 1 to 1024 characters")));
            }
            *slot = Some(v.to_string());
        }
    }
    if let Some(v) = p.get("launchType") {
        f.launch_type = Some(launch_type(v)?);
    }
    if let Some(v) = p.get("containerInstance") {
        f.container_instance = Some(resource_ref("containerInstance", Kind::Instance, v)?);
    }
    if let Some(v) = p.get("service") {
        if !is_cluster_name(v) {
            return Err(bad(
                "service",
                format!("'service' must be a service name, got {v:?}"),
            ));
        }
        f.service = Some(v.to_string());
    }
    Ok(f)
}

/// ECS's launch types and future ones of the same shape: a letter, then
/// letters, digits and `_` (EC2, FARGATE, MANAGED_INSTANCES); upper-cased.
fn launch_type(v: &str) -> Result<String, ApiError> {
    if v.len() > 64
        || !v.starts_with(|c: char| c.is_ascii_alphabetic())
        || !v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        return Err(bad(
            "launchType",
            "'launchType' must be a launch type such as EC2, FARGATE or EXTERNAL",
        ));
    }
    Ok(v.to_ascii_uppercase())
}

#[cfg(test)]
#[path = "params_tests.rs"]
mod tests;
