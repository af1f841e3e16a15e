//! The list filters of docs/reference.md#http-api as a typed value, and how a stored record is
//! matched against them. Lists apply them after the store's cluster/status
//! range read; watches before and after each change.
//!
//! Each filter is declared once, in `FILTERS` (`table.rs`): its query parameter, the
//! kinds that take it, how its value is read (and refused), its value in a
//! page token's fingerprint, and how a record is matched. Parsing, the
//! allowed parameters, matching and the fingerprint all follow the table.
//! A new filter is a field of `Filters` and one entry there (and, for a new
//! entity field, `model::Fields`).

mod table;

pub use table::{cluster_scope, resource_ref, takes_param, Era, FilterDef, FILTERS};

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
    /// Entities of this account (12 digits).
    pub account: Option<String>,
    /// Entities of this Region.
    pub region: Option<String>,
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
            account: None,
            region: None,
        }
    }

    /// True when the store's range read returns more than matches: the
    /// list checks each record (`matches`).
    pub fn post_filtered(&self) -> bool {
        self.needs_fields() || self.account.is_some() || self.region.is_some()
    }

    /// True when filters beyond cluster and status need the entity's fields.
    pub fn needs_fields(&self) -> bool {
        (FILTERS.iter()).any(|d| d.matches.is_some() && (d.set)(self))
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
        let Ok(fields) = Fields::parse(&meta.entity) else {
            return false;
        };
        (FILTERS.iter()).all(|d| match d.matches {
            Some(m) if (d.set)(self) => m(self, &fields),
            _ => true,
        })
    }

    fn cluster_matches(&self, key: &EntityKey) -> bool {
        let c = &key.cluster;
        if self.account.as_ref().is_some_and(|a| *a != c.account)
            || self.region.as_ref().is_some_and(|r| *r != c.region)
        {
            return false;
        }
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
        // Length-prefixed values: no value can imitate a separator.
        let mut text = format!("kind={}:{};", self.kind.plural().len(), self.kind.plural());
        for d in FILTERS {
            match ((d.value)(self), d.era) {
                (Some(v), _) => text.push_str(&format!("{}={}:{v};", d.name, v.len())),
                (None, Era::Original) => text.push_str(&format!("{}-;", d.name)),
                (None, Era::Later) => {}
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
mod tests;
