//! Decoded records kept by the process between filtered lists (a warm
//! Lambda, server mode), so that a list reads from etcd only the index keys
//! and the records that changed since it last saw them.
//!
//! Why it is never stale: a key's value at one mod_revision never changes,
//! and every write puts a record and its status-index key in one
//! transaction, so an index key's mod_revision is its record's. A list reads
//! the index keys (no values: cheap) at its revision, takes each record the
//! cache holds at exactly that mod_revision, and reads the others at the same
//! revision. Entries of deleted or rewritten records are never matched again
//! and age out by weight.

use std::sync::atomic::{AtomicU64, Ordering};

use quick_cache::sync::Cache;
use quick_cache::Weighter;

use crate::store::StoredRecord;

/// What one entry costs beside its bytes (revisions, decoded strings, the
/// cache's slot, allocator slack): `css-bench memory` measured RSS growing
/// ~680 B a record above the bytes alone, so this errs high.
const ENTRY_OVERHEAD: u64 = 1024;
/// Entities expected per MiB of cache, to size its table (~3 KB JSON each).
const ENTRIES_PER_MIB: usize = 256;

/// A record's weight: its compressed value and its decoded JSON (fixed once
/// decoded, which `put` makes sure of before inserting).
#[derive(Clone)]
struct Bytes;

impl Weighter<String, StoredRecord> for Bytes {
    fn weight(&self, key: &String, rec: &StoredRecord) -> u64 {
        let decoded = rec.meta().map_or(0, |m| m.entity.get().len());
        (key.len() + rec.value.len() + decoded) as u64 + ENTRY_OVERHEAD
    }
}

/// Records by primary key, each at the mod_revision it was read at.
pub(super) struct RecordCache {
    /// None when configured to 0 bytes.
    cache: Option<Cache<String, StoredRecord, Bytes>>,
    hits: AtomicU64,
    misses: AtomicU64,
}

/// What a record cache holds and has answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheUsage {
    pub records: usize,
    /// Their weight: compressed and decoded bytes plus an estimate per entry.
    pub bytes: u64,
    /// Lookups answered with a record at the asked revision, and not.
    pub hits: u64,
    pub misses: u64,
}

impl RecordCache {
    /// A cache holding up to about `mib` MiB of records; 0 turns it off.
    pub(super) fn new(mib: u32) -> RecordCache {
        let cache = (mib > 0).then(|| {
            let items = mib as usize * ENTRIES_PER_MIB;
            Cache::with_weighter(items, u64::from(mib) << 20, Bytes)
        });
        RecordCache {
            cache,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// The record at `primary` as written at `mod_revision`, if held.
    pub(super) fn get(&self, primary: &str, mod_revision: i64) -> Option<StoredRecord> {
        let held = (self.cache.as_ref())
            .and_then(|c| c.get(primary))
            .filter(|rec| rec.mod_revision == mod_revision);
        let counter = if held.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        held
    }

    /// Forgets every record (the store under the endpoints was replaced).
    pub(super) fn clear(&self) {
        if let Some(cache) = &self.cache {
            cache.clear();
        }
    }

    /// Keeps `rec` (read under `primary`) once decoded; a record that does
    /// not decode is not kept (its error is reported by the reader).
    pub(super) fn put(&self, primary: String, rec: &StoredRecord) {
        if let Some(cache) = &self.cache {
            if rec.meta().is_ok() {
                cache.insert(primary, rec.clone());
            }
        }
    }

    pub(super) fn usage(&self) -> CacheUsage {
        let (records, bytes) = self
            .cache
            .as_ref()
            .map_or((0, 0), |c| (c.len(), c.weight()));
        CacheUsage {
            records,
            bytes,
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
        }
    }
}
