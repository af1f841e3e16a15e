//! The table of list filters: each filter declared once (its query
//! parameter, the kinds that take it, how its value is read and refused,
//! its value in a page token's fingerprint, how a record is matched), and
//! the readers of values it uses.

use super::{Filters, ResourceRef};
use crate::model::{
    is_account, is_cluster_name, is_region_name, is_resource_id, Arn, ClusterId, Fields, Kind,
    ROLLOUT_STATES, SCHEDULING_STRATEGIES,
};
use crate::store::ClusterScope;

/// Whether a filter is always part of a page token's fingerprint
/// (`Original`: written set or not, as tokens issued before later filters
/// expect) or only when set (`Later`: tokens issued before it existed stay
/// valid).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Era {
    Original,
    Later,
}

/// One list filter.
pub struct FilterDef {
    /// Its query parameter.
    pub name: &'static str,
    pub kinds: &'static [Kind],
    pub era: Era,
    /// Reads the parameter's value; the error is the 400's message.
    pub(super) parse: fn(&mut Filters, &str) -> Result<(), String>,
    /// Whether it is set.
    pub(super) set: fn(&Filters) -> bool,
    /// Its value in the fingerprint (set filters only, but `cluster`, whose
    /// "all clusters" is written as an empty value).
    pub(super) value: fn(&Filters) -> Option<String>,
    /// Whether a record's fields pass it (when set); None for what the
    /// store's key range and the record's status already decide.
    pub(super) matches: Option<fn(&Filters, &Fields) -> bool>,
}

const ALL_KINDS: &[Kind] = &[Kind::Task, Kind::Instance, Kind::Service];
const TASKS: &[Kind] = &[Kind::Task];
const SERVICES: &[Kind] = &[Kind::Service];
const TASK_DESIRED: &[&str] = &["PENDING", "RUNNING", "STOPPED"];

/// Every list filter, in fingerprint order (`Original` ones first).
pub const FILTERS: &[FilterDef] = &[
    FilterDef {
        name: "cluster",
        kinds: ALL_KINDS,
        era: Era::Original,
        parse: |f, v| {
            f.cluster = cluster_scope("cluster", v)?;
            Ok(())
        },
        set: |f| f.cluster != ClusterScope::All,
        value: |f| {
            Some(match &f.cluster {
                ClusterScope::All => String::new(),
                ClusterScope::Named(n) => format!("name:{n}"),
                ClusterScope::Exact(c) => {
                    format!("arn:{}:{}:{}:{}", c.partition, c.region, c.account, c.name)
                }
            })
        },
        matches: None,
    },
    FilterDef {
        name: "status",
        kinds: ALL_KINDS,
        era: Era::Original,
        parse: |f, v| {
            f.status = Some(f.kind.parse_status(v).ok_or_else(|| {
                format!("'status' must be one of {}", f.kind.statuses().join(", "))
            })?);
            Ok(())
        },
        set: |f| f.status.is_some(),
        value: |f| f.status.map(str::to_string),
        matches: None,
    },
    FilterDef {
        name: "desiredStatus",
        kinds: TASKS,
        era: Era::Original,
        parse: |f, v| {
            f.desired_status = Some(Kind::Task.parse_status(v).ok_or_else(|| {
                format!("'desiredStatus' must be one of {}", TASK_DESIRED.join(", "))
            })?);
            Ok(())
        },
        set: |f| f.desired_status.is_some(),
        value: |f| f.desired_status.map(str::to_string),
        matches: Some(|f, r| eq_ci(f.desired_status, &r.desired_status)),
    },
    FilterDef {
        name: "startedBy",
        kinds: TASKS,
        era: Era::Original,
        parse: |f, v| {
            f.started_by = Some(text("startedBy", v)?);
            Ok(())
        },
        set: |f| f.started_by.is_some(),
        value: |f| f.started_by.clone(),
        matches: Some(|f, r| eq(&f.started_by, &r.started_by)),
    },
    FilterDef {
        name: "group",
        kinds: TASKS,
        era: Era::Original,
        parse: |f, v| {
            f.group = Some(text("group", v)?);
            Ok(())
        },
        set: |f| f.group.is_some(),
        value: |f| f.group.clone(),
        matches: Some(|f, r| eq(&f.group, &r.group)),
    },
    FilterDef {
        name: "launchType",
        kinds: &[Kind::Task, Kind::Service],
        era: Era::Original,
        parse: |f, v| {
            f.launch_type = Some(launch_type(v)?);
            Ok(())
        },
        set: |f| f.launch_type.is_some(),
        value: |f| f.launch_type.clone(),
        matches: Some(|f, r| eq_ci(f.launch_type.as_deref(), &r.launch_type)),
    },
    FilterDef {
        name: "containerInstance",
        kinds: TASKS,
        era: Era::Original,
        parse: |f, v| {
            f.container_instance = Some(resource_ref("containerInstance", Kind::Instance, v)?);
            Ok(())
        },
        set: |f| f.container_instance.is_some(),
        value: |f| {
            f.container_instance.as_ref().map(|ci| match &ci.arn {
                None => ci.id.clone(),
                Some(a) => format!(
                    "{}:{}:{}:{}:{}",
                    a.partition,
                    a.region,
                    a.account,
                    a.cluster.as_deref().unwrap_or(""),
                    a.id
                ),
            })
        },
        matches: Some(|f, r| {
            (f.container_instance.as_ref())
                .is_none_or(|ci| ci.matches(r.container_instance_arn.as_deref()))
        }),
    },
    FilterDef {
        name: "service",
        kinds: TASKS,
        era: Era::Later,
        parse: |f, v| {
            if !is_cluster_name(v) {
                return Err(format!("'service' must be a service name, got {v:?}"));
            }
            f.service = Some(v.to_string());
            Ok(())
        },
        set: |f| f.service.is_some(),
        value: |f| f.service.clone(),
        matches: Some(|f, r| {
            f.service.as_ref().is_none_or(|name| {
                r.group.as_deref().and_then(|g| g.strip_prefix("service:")) == Some(name.as_str())
            })
        }),
    },
    FilterDef {
        name: "schedulingStrategy",
        kinds: SERVICES,
        era: Era::Later,
        parse: |f, v| {
            f.scheduling_strategy = Some(one_of("schedulingStrategy", SCHEDULING_STRATEGIES, v)?);
            Ok(())
        },
        set: |f| f.scheduling_strategy.is_some(),
        value: |f| f.scheduling_strategy.map(str::to_string),
        matches: Some(|f, r| eq_ci(f.scheduling_strategy, &r.scheduling_strategy)),
    },
    FilterDef {
        name: "rolloutState",
        kinds: SERVICES,
        era: Era::Later,
        parse: |f, v| {
            f.rollout_state = Some(one_of("rolloutState", ROLLOUT_STATES, v)?);
            Ok(())
        },
        set: |f| f.rollout_state.is_some(),
        value: |f| f.rollout_state.map(str::to_string),
        matches: Some(|f, r| {
            f.rollout_state.is_none_or(|want| {
                r.deployments.iter().any(|d| {
                    (d.rollout_state.as_deref()).is_some_and(|got| got.eq_ignore_ascii_case(want))
                })
            })
        }),
    },
    FilterDef {
        name: "account",
        kinds: ALL_KINDS,
        era: Era::Later,
        parse: |f, v| {
            if !is_account(v) {
                return Err("'account' must be an AWS account id (12 digits)".into());
            }
            f.account = Some(v.to_string());
            Ok(())
        },
        set: |f| f.account.is_some(),
        value: |f| f.account.clone(),
        // The record's key decides (`Filters::matches`).
        matches: None,
    },
    FilterDef {
        name: "region",
        kinds: ALL_KINDS,
        era: Era::Later,
        parse: |f, v| {
            if !is_region_name(v) {
                return Err("'region' must be an AWS Region name such as eu-west-1".into());
            }
            f.region = Some(v.to_string());
            Ok(())
        },
        set: |f| f.region.is_some(),
        value: |f| f.region.clone(),
        matches: None,
    },
];

impl FilterDef {
    /// Reads this filter's parameter into `f`; the error is the 400's message.
    pub fn parse(&self, f: &mut Filters, value: &str) -> Result<(), String> {
        (self.parse)(f, value)
    }

    pub fn takes(&self, kind: Kind) -> bool {
        self.kinds.contains(&kind)
    }
}

/// Whether `name` is a filter parameter of `kind`.
pub fn takes_param(kind: Kind, name: &str) -> bool {
    FILTERS.iter().any(|d| d.name == name && d.takes(kind))
}

fn eq(want: &Option<String>, got: &Option<String>) -> bool {
    want.as_ref()
        .is_none_or(|w| got.as_deref() == Some(w.as_str()))
}

fn eq_ci(want: Option<&str>, got: &Option<String>) -> bool {
    want.is_none_or(|w| got.as_deref().is_some_and(|g| g.eq_ignore_ascii_case(w)))
}

fn text(name: &str, v: &str) -> Result<String, String> {
    if v.is_empty() || v.len() > 1024 {
        return Err(format!("'{name}' must be 1 to 1024 characters"));
    }
    Ok(v.to_string())
}

fn one_of(name: &str, known: &[&'static str], v: &str) -> Result<&'static str, String> {
    (known.iter())
        .find(|k| k.eq_ignore_ascii_case(v))
        .copied()
        .ok_or_else(|| format!("'{name}' must be one of {}", known.join(", ")))
}

/// ECS's launch types and future ones of the same shape: a letter, then
/// letters, digits and `_` (EC2, FARGATE, MANAGED_INSTANCES); upper-cased.
fn launch_type(v: &str) -> Result<String, String> {
    if v.len() > 64
        || !v.starts_with(|c: char| c.is_ascii_alphabetic())
        || !v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        return Err("'launchType' must be a launch type such as EC2, FARGATE or EXTERNAL".into());
    }
    Ok(v.to_ascii_uppercase())
}

/// A cluster by ARN (one cluster) or name (that name everywhere).
pub fn cluster_scope(name: &str, value: &str) -> Result<ClusterScope, String> {
    if value.starts_with("arn:") {
        return ClusterId::from_arn(value)
            .map(ClusterScope::Exact)
            .map_err(|e| format!("'{name}': {e}"));
    }
    if is_cluster_name(value) {
        return Ok(ClusterScope::Named(value.to_string()));
    }
    Err(format!(
        "'{name}' must be a cluster name or cluster ARN, got {value:?}"
    ))
}

/// A task, container instance or service by ARN (either format) or bare id
/// (a service's id is its name).
pub fn resource_ref(name: &str, kind: Kind, v: &str) -> Result<ResourceRef, String> {
    if v.starts_with("arn:") {
        let arn = Arn::parse_as(v, kind.arn_type()).map_err(|e| format!("'{name}': {e}"))?;
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
    Err(format!(
        "'{name}' must be an ARN or id of a {}, got {v:?}",
        kind.arn_type()
    ))
}
