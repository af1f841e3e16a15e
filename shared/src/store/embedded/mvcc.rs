//! The embedded store's memory: every key's versions (values LZ4-packed)
//! and the log of primary-key changes that watches replay.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use bytes::Bytes;

use crate::model::Kind;
use crate::store::{StoreError, StoreResult};

#[derive(Clone)]
pub(super) struct Version {
    pub mod_revision: i64,
    pub create_revision: i64,
    /// None marks a delete.
    pub value: Option<Bytes>,
}

/// A live version of a key: its revisions and (packed) value.
#[derive(Clone)]
pub(super) struct Live {
    pub mod_revision: i64,
    pub create_revision: i64,
    pub value: Bytes,
}

/// A primary key's change as the watch log keeps it. The key is shared with
/// the map and the values with the versions, so a write's history costs
/// little more than this struct.
pub(super) struct Change {
    pub revision: i64,
    pub kind: Kind,
    pub key: Arc<str>,
    /// The version a put wrote; None after a delete.
    pub put: Option<Live>,
    /// The version before the change.
    pub prev: Option<Live>,
}

pub(super) struct Inner {
    pub revision: i64,
    pub compacted: i64,
    pub keys: BTreeMap<Arc<str>, Vec<Version>>,
    /// Changes of primary keys, in revision order, for watches.
    pub log: VecDeque<Change>,
}

impl Inner {
    pub fn check_read(&self, revision: Option<i64>) -> StoreResult<i64> {
        let rev = revision.unwrap_or(self.revision);
        if rev > self.revision {
            return Err(StoreError::FutureRevision {
                requested: rev,
                current: self.revision,
            });
        }
        if rev < self.compacted {
            return Err(StoreError::Compacted {
                requested: rev,
                oldest: self.compacted,
                current: self.revision,
            });
        }
        Ok(rev)
    }

    /// The live version of `key` at `rev`.
    pub fn at(&self, key: &str, rev: i64) -> Option<Live> {
        let versions = self.keys.get(key)?;
        version_at(versions, rev)
    }

    /// Appends a version; returns the map's shared copy of the key.
    pub fn put(&mut self, key: &str, value: Bytes, rev: i64) -> (Arc<str>, i64) {
        let shared = self.shared_key(key);
        let versions = self.keys.entry(shared.clone()).or_default();
        let create_revision = match versions.last() {
            Some(Version {
                value: Some(_),
                create_revision,
                ..
            }) => *create_revision,
            _ => rev,
        };
        push_version(
            versions,
            Version {
                mod_revision: rev,
                create_revision,
                value: Some(value),
            },
        );
        (shared, create_revision)
    }

    pub fn delete(&mut self, key: &str, rev: i64) {
        if let Some(versions) = self.keys.get_mut(key) {
            if matches!(versions.last(), Some(Version { value: Some(_), .. })) {
                push_version(
                    versions,
                    Version {
                        mod_revision: rev,
                        create_revision: 0,
                        value: None,
                    },
                );
            }
        }
    }

    /// The map's shared copy of a key, or a new one for a key not yet held.
    pub fn shared_key(&self, key: &str) -> Arc<str> {
        self.keys
            .get_key_value(key)
            .map_or_else(|| Arc::from(key), |(k, _)| k.clone())
    }

    /// Ends a write transaction.
    pub fn commit(&mut self, change: Change) {
        self.revision = change.revision;
        self.log.push_back(change);
    }
}

/// Exact growth while a key has few versions (most hold one or two between
/// compactions, and a Vec's first allocation is room for four); amortized
/// doubling beyond, so a key rewritten often stays linear.
fn push_version(versions: &mut Vec<Version>, v: Version) {
    if versions.len() < 4 {
        versions.reserve_exact(1);
    }
    versions.push(v);
}

pub(super) fn version_at(versions: &[Version], rev: i64) -> Option<Live> {
    let idx = versions.partition_point(|v| v.mod_revision <= rev);
    let v = versions.get(idx.checked_sub(1)?)?;
    Some(Live {
        mod_revision: v.mod_revision,
        create_revision: v.create_revision,
        value: v.value.clone()?,
    })
}
