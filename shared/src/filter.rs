//! The list filters of docs/reference.md#http-api as a typed value, and how a stored record is
//! matched against them. Lists apply them after the store's cluster/status
//! range read; watches before and after each change.

use crate::model::{Arn, EntityKey, Fields, Kind};
use crate::store::{ClusterScope, StoredRecord};

/// A task or container instance named by ARN (either format) or bare id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceRef {
    pub id: String,
    pub arn: Option<Arn>,
}

impl ResourceRef {
    fn matches(&self, arn: Option<&str>) -> bool {
        let Some(parsed) = arn.and_then(|a| Arn::parse(a).ok()) else {
            return false;
        };
        if parsed.id != self.id {
            return false;
        }
        match &self.arn {
            None => true,
            Some(want) => {
                want.place() == parsed.place()
                    && match (&want.cluster, &parsed.cluster) {
                        (Some(a), Some(b)) => a == b,
                        _ => true,
                    }
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filters {
    pub kind: Kind,
    pub cluster: ClusterScope,
    pub status: Option<&'static str>,
    pub desired_status: Option<&'static str>,
    pub started_by: Option<String>,
    pub group: Option<String>,
    pub launch_type: Option<String>,
    pub container_instance: Option<ResourceRef>,
    /// Tasks of this service (group `service:NAME`).
    pub service: Option<String>,
    /// Services: REPLICA or DAEMON.
    pub scheduling_strategy: Option<&'static str>,
    /// Services with any deployment in this rolloutState.
    pub rollout_state: Option<&'static str>,
}

impl Filters {
    pub fn all(kind: Kind) -> Filters {
        Filters {
            kind,
            cluster: ClusterScope::All,
            status: None,
            desired_status: None,
            started_by: None,
            group: None,
            launch_type: None,
            container_instance: None,
            service: None,
            scheduling_strategy: None,
            rollout_state: None,
        }
    }

    /// True when filters beyond cluster and status need the entity's fields.
    pub fn needs_fields(&self) -> bool {
        self.desired_status.is_some()
            || self.started_by.is_some()
            || self.group.is_some()
            || self.launch_type.is_some()
            || self.container_instance.is_some()
            || self.service.is_some()
            || self.scheduling_strategy.is_some()
            || self.rollout_state.is_some()
    }

    /// Does the record match every filter?
    pub fn matches(&self, record: &StoredRecord) -> bool {
        if record.key.kind != self.kind || !self.cluster_matches(&record.key) {
            return false;
        }
        let Ok(meta) = record.meta() else {
            return false;
        };
        if let Some(s) = self.status {
            if meta.status != s {
                return false;
            }
        }
        if !self.needs_fields() {
            return true;
        }
        let Ok(f) = Fields::parse(&meta.entity) else {
            return false;
        };
        let eq = |want: &Option<String>, got: &Option<String>| {
            want.as_ref()
                .is_none_or(|w| got.as_deref() == Some(w.as_str()))
        };
        let eq_ci = |want: Option<&str>, got: &Option<String>| {
            want.is_none_or(|w| got.as_deref().is_some_and(|g| g.eq_ignore_ascii_case(w)))
        };
        eq_ci(self.desired_status, &f.desired_status)
            && eq(&self.started_by, &f.started_by)
            && eq(&self.group, &f.group)
            && eq_ci(self.launch_type.as_deref(), &f.launch_type)
            && self
                .container_instance
                .as_ref()
                .is_none_or(|ci| ci.matches(f.container_instance_arn.as_deref()))
            && self.service.as_ref().is_none_or(|name| {
                f.group.as_deref().and_then(|g| g.strip_prefix("service:")) == Some(name.as_str())
            })
            && eq_ci(self.scheduling_strategy, &f.scheduling_strategy)
            && self.rollout_state.is_none_or(|want| {
                f.deployments.iter().any(|d| {
                    d.rollout_state
                        .as_deref()
                        .is_some_and(|got| got.eq_ignore_ascii_case(want))
                })
            })
    }

    fn cluster_matches(&self, key: &EntityKey) -> bool {
        match &self.cluster {
            ClusterScope::All => true,
            ClusterScope::Named(n) => key.cluster.name == *n,
            ClusterScope::Exact(c) => key.cluster == *c,
        }
    }

    /// A stable fingerprint, so a page token is not reused with other filters.
    ///
    /// It hashes a canonical text written field by field here (not `Debug`,
    /// whose format may change between compiler versions), with FNV-1a
    /// (stable across processes, unlike std's hasher): a redeploy keeps
    /// outstanding tokens valid.
    pub fn fingerprint(&self) -> u64 {
        let cluster = match &self.cluster {
            ClusterScope::All => String::new(),
            ClusterScope::Named(n) => format!("name:{n}"),
            ClusterScope::Exact(c) => {
                format!("arn:{}:{}:{}:{}", c.partition, c.region, c.account, c.name)
            }
        };
        let instance = self.container_instance.as_ref().map(|ci| match &ci.arn {
            None => ci.id.clone(),
            Some(a) => format!(
                "{}:{}:{}:{}:{}",
                a.partition,
                a.region,
                a.account,
                a.cluster.as_deref().unwrap_or(""),
                a.id
            ),
        });
        let fields: [(&str, Option<&str>); 8] = [
            ("kind", Some(self.kind.plural())),
            ("cluster", Some(&cluster)),
            ("status", self.status),
            ("desiredStatus", self.desired_status),
            ("startedBy", self.started_by.as_deref()),
            ("group", self.group.as_deref()),
            ("launchType", self.launch_type.as_deref()),
            ("containerInstance", instance.as_deref()),
        ];
        // Filters added later are written only when set, so tokens issued
        // before they existed stay valid.
        let later: [(&str, Option<&str>); 3] = [
            ("service", self.service.as_deref()),
            ("schedulingStrategy", self.scheduling_strategy),
            ("rolloutState", self.rollout_state),
        ];
        // Length-prefixed values: no value can imitate a separator.
        let mut text = String::new();
        for (name, value) in fields {
            match value {
                Some(v) => text.push_str(&format!("{name}={}:{v};", v.len())),
                None => text.push_str(&format!("{name}-;")),
            }
        }
        for (name, value) in later {
            if let Some(v) = value {
                text.push_str(&format!("{name}={}:{v};", v.len()));
            }
        }
        fnv1a(&text)
    }
}

/// FNV-1a, 64 bits: tiny, and the same in every process and release.
fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
#[path = "filter_tests.rs"]
mod tests;
