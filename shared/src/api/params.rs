//! Query-string parameters: each known one at most once, unknown ones
//! refused, and the list filters parsed from them (docs/reference.md#http-api). Every error
//! names its parameter.

use std::borrow::Cow;
use std::time::Duration;

use super::ApiError;
use crate::filter::{Filters, ResourceRef};
use crate::limits::{DEFAULT_LIMIT, MAX_LIMIT};
use crate::model::Kind;
use crate::store::ClusterScope;

pub const MAX_WAIT_SECS: u64 = 25;
pub const DEFAULT_WAIT_SECS: u64 = 20;

pub fn bad(name: &str, message: impl Into<String>) -> ApiError {
    ApiError::BadParam {
        name: name.to_string(),
        message: message.into(),
    }
}

/// Query parameters: each known at most once, unknown ones refused. Borrowed
/// from the query string unless percent-decoding changed them.
#[derive(Debug, Default)]
pub struct Params<'q>(Vec<(Cow<'q, str>, Cow<'q, str>)>);

impl<'q> Params<'q> {
    pub fn parse(raw: Option<&'q str>, allowed: &[&str]) -> Result<Params<'q>, ApiError> {
        Params::parse_if(raw, |k| allowed.contains(&k))
    }

    /// `kind`'s filter parameters plus `extra` (limit, since, ...).
    pub fn parse_with_filters(
        raw: Option<&'q str>,
        kind: Kind,
        extra: &[&str],
    ) -> Result<Params<'q>, ApiError> {
        Params::parse_if(raw, |k| {
            extra.contains(&k) || crate::filter::takes_param(kind, k)
        })
    }

    fn parse_if(
        raw: Option<&'q str>,
        allowed: impl Fn(&str) -> bool,
    ) -> Result<Params<'q>, ApiError> {
        let mut out: Vec<(Cow<'q, str>, Cow<'q, str>)> = Vec::new();
        for (k, v) in form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
            if !allowed(&k) {
                return Err(bad(&k, format!("unknown query parameter '{k}'")));
            }
            if out.iter().any(|(seen, _)| *seen == k) {
                return Err(bad(&k, format!("query parameter '{k}' is repeated")));
            }
            out.push((k, v));
        }
        Ok(Params(out))
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_ref())
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
    crate::filter::cluster_scope(name, value).map_err(|m| bad(name, m))
}

/// A task, container instance or service by ARN (either format) or bare id
/// (a service's id is its name).
pub fn resource_ref(name: &str, kind: Kind, v: &str) -> Result<ResourceRef, ApiError> {
    crate::filter::resource_ref(name, kind, v).map_err(|m| bad(name, m))
}

/// The list filters from query parameters, as `filter::FILTERS` reads them.
pub fn filters(kind: Kind, p: &Params<'_>) -> Result<Filters, ApiError> {
    let mut f = Filters::all(kind);
    for def in crate::filter::FILTERS.iter().filter(|d| d.takes(kind)) {
        if let Some(v) = p.get(def.name) {
            def.parse(&mut f, v).map_err(|m| bad(def.name, m))?;
        }
    }
    Ok(f)
}

#[cfg(test)]
#[path = "params_tests.rs"]
mod tests;
