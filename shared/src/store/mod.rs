//! The state store: one trait, two implementations (etcd and embedded) that
//! pass one conformance suite.
//!
//! Layout under the key prefix (same in both stores):
//! - `{p}{tasks|instances|services}/{cluster}/{partition}/{region}/{account}/{id}`:
//!   the record (a service's id is its name);
//! - `{p}idx/{kind}/{STATUS}/{cluster}/{partition}/{region}/{account}/{id}`:
//!   the status index, moved in the record's transaction, so that "RUNNING
//!   tasks of cluster X" reads exactly the matching records: in etcd the index
//!   keys hold no value and the records are read at the same revision (the
//!   legacy format kept copies there); the embedded store shares the value;
//! - `{p}meta/...`: the service's own bookkeeping (compaction checkpoints).
//!
//! Values are records in the format of `record.rs` (compressed, header byte).

use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::model::{ClusterId, Entity, EntityKey, Kind};

pub mod embedded;
pub mod etcd;
mod keys;
mod record;
mod shared_read;
pub mod shared_watch;

pub use embedded::EmbeddedStore;
pub use etcd::{EtcdStore, Format};
pub use keys::{prefix_end, Keyspace};
pub use record::{
    compress, decode_printed, decode_value, encode_record, record_json, RecordMeta, StoredRecord,
};
pub use shared_watch::SharedWatchStore;

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error(
        "revision {requested} has been compacted (oldest available {oldest}, current {current})"
    )]
    Compacted {
        requested: i64,
        oldest: i64,
        current: i64,
    },
    #[error("revision {requested} is ahead of the store's current revision {current}")]
    FutureRevision { requested: i64, current: i64 },
    #[error("gave up after {attempts} lost races writing {key}")]
    Contended { attempts: usize, key: String },
    #[error("corrupt record at {key}: {reason}")]
    Corrupt { key: String, reason: String },
    /// etcd's space quota is exhausted (its NOSPACE alarm): reads work,
    /// writes fail until space is freed and the alarm disarmed. Retryable.
    #[error("store full (etcd NOSPACE alarm: {0}); compact, defragment and disarm the alarm, or raise the quota")]
    NoSpace(String),
}

impl StoreError {
    /// Its kind, as the `kind` label of the `store_errors` metric.
    pub fn kind(&self) -> &'static str {
        match self {
            StoreError::Unavailable(_) => "unavailable",
            StoreError::NoSpace(_) => "nospace",
            StoreError::Contended { .. } => "contended",
            StoreError::Corrupt { .. } => "corrupt",
            StoreError::Compacted { .. } => "compacted",
            StoreError::FutureRevision { .. } => "future_revision",
        }
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// The meta key where compaction records the revision it compacted to
/// (`compaction.rs`); a store that cannot ask for its compaction point
/// (etcd) starts from it, confirmed by reads, instead of searching.
pub const COMPACTED_META: &str = "compacted";

/// Requests in flight at once for one batch of writes.
pub const UPSERT_CONCURRENCY: usize = 32;

/// Where a write came from; kept in the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Event,
    Reconcile,
}

/// What an upsert did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpsertOutcome {
    Inserted {
        revision: i64,
    },
    Updated {
        revision: i64,
    },
    /// Not written: the stored record is as new or newer.
    Unchanged {
        mod_revision: i64,
    },
}

/// A write of one entity.
#[derive(Debug, Clone, Copy)]
pub struct Upsert<'a> {
    pub entity: &'a Entity,
    pub source: Source,
    /// For entities without an ECS version (reconcile): the run's snapshot
    /// revision. A record modified after it wins over this write.
    pub snapshot: Option<i64>,
}

impl<'a> Upsert<'a> {
    pub fn event(entity: &'a Entity) -> Self {
        Upsert {
            entity,
            source: Source::Event,
            snapshot: None,
        }
    }
}

/// The version guard (docs/reference.md#events-in, docs/reference.md#reconciliation): does `w` replace the stored record?
pub fn should_write(w: &Upsert<'_>, stored: Option<&StoredRecord>) -> StoreResult<bool> {
    let Some(stored) = stored else {
        return Ok(true);
    };
    let meta = stored.meta()?;
    if let Some(stamp) = w.entity.stamp {
        // Services: a snapshot replaces only one produced before it, and
        // an identical one is not written again.
        return Ok(meta.stamp.is_none_or(|s| stamp > s) && meta.entity.get() != w.entity.raw.get());
    }
    if w.entity.version > 0 {
        return Ok(w.entity.version > meta.ecs_version);
    }
    Ok(match w.snapshot {
        Some(snap) => stored.mod_revision <= snap && meta.entity.get() != w.entity.raw.get(),
        None => false,
    })
}

/// The version guard as both stores apply it: `Some(Unchanged)` when `w`
/// must not replace `current`, `None` when it is to be written.
pub fn unchanged_unless_newer(
    w: &Upsert<'_>,
    current: Option<&StoredRecord>,
) -> StoreResult<Option<UpsertOutcome>> {
    Ok(
        (!should_write(w, current)?).then(|| UpsertOutcome::Unchanged {
            mod_revision: current.map_or(0, |c| c.mod_revision),
        }),
    )
}

/// Which clusters a list covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterScope {
    All,
    /// Every cluster of this name, in any account or region.
    Named(String),
    Exact(ClusterId),
}

#[derive(Debug, Clone)]
pub struct ListRequest {
    pub kind: Kind,
    pub cluster: ClusterScope,
    /// Upper-case status; served from the status index.
    pub status: Option<String>,
    /// Store key to continue after (exclusive), from a previous page.
    pub start_after: Option<String>,
    pub limit: usize,
    /// Read at this revision (a consistent snapshot across pages).
    pub revision: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct ListPage {
    pub records: Vec<StoredRecord>,
    /// The revision the page was read at.
    pub revision: i64,
    /// True when more records follow the last one.
    pub more: bool,
}

/// A record's identity and version, without its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRef {
    pub key: EntityKey,
    pub store_key: String,
    pub mod_revision: i64,
}

#[derive(Debug, Clone)]
pub struct KeyPage {
    pub keys: Vec<KeyRef>,
    pub revision: i64,
    pub more: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Put,
    Delete,
}

/// One change seen by a watch.
#[derive(Debug, Clone)]
pub struct WatchEvent {
    pub event_type: EventType,
    pub revision: i64,
    /// The record after a put; None after a delete.
    pub record: Option<StoredRecord>,
    /// The record before the change, if it existed.
    pub prev: Option<StoredRecord>,
}

/// Changes in revision order; one revision is never split across batches.
#[derive(Debug, Clone, Default)]
pub struct WatchBatch {
    pub events: Vec<WatchEvent>,
    /// Every change of the watched kind with a revision up to this one has
    /// been delivered (by this batch or earlier ones).
    pub progress: i64,
}

/// A running watch.
#[async_trait]
pub trait Watcher: Send {
    /// The next batch of changes (or a progress batch, after `request_progress`).
    async fn next(&mut self) -> StoreResult<WatchBatch>;
    /// Asks for a batch whose `progress` reaches the store's revision at the
    /// time of the request, even if no change of this kind happened.
    async fn request_progress(&mut self) -> StoreResult<()>;
}

pub type WatchStream = Box<dyn Watcher>;

#[async_trait]
pub trait StateStore: Send + Sync {
    /// Writes the entity if the version guard lets it (compare-and-swap on the
    /// stored record's mod_revision; a lost race is retried).
    async fn upsert_if_newer(&self, w: Upsert<'_>) -> StoreResult<UpsertOutcome>;
    /// Applies writes of distinct entities; one result per write, in order.
    /// Stores may batch them into fewer transactions.
    async fn upsert_many(&self, writes: &[Upsert<'_>]) -> Vec<StoreResult<UpsertOutcome>> {
        use futures::StreamExt;
        // Collected first: a closure held across the await trips the Send proof.
        let futs: Vec<_> = writes.iter().map(|w| self.upsert_if_newer(*w)).collect();
        futures::stream::iter(futs)
            .buffered(UPSERT_CONCURRENCY)
            .collect()
            .await
    }
    /// Deletes the record if its mod_revision is still `mod_revision`.
    async fn delete_if_unchanged(&self, key: &EntityKey, mod_revision: i64) -> StoreResult<bool>;
    async fn get(
        &self,
        key: &EntityKey,
        revision: Option<i64>,
    ) -> StoreResult<Option<StoredRecord>>;
    async fn list(&self, req: &ListRequest) -> StoreResult<ListPage>;
    /// As `list`, without values: keys and mod_revisions (snapshots).
    async fn list_keys(&self, req: &ListRequest) -> StoreResult<KeyPage>;
    /// The service's own bookkeeping (e.g. compaction checkpoints), outside
    /// the entity keys: never listed or watched.
    async fn get_meta(&self, name: &str) -> StoreResult<Option<Bytes>>;
    async fn put_meta(&self, name: &str, value: Bytes) -> StoreResult<()>;
    /// Writes `name` only if it does not exist; false when it did.
    async fn create_meta(&self, name: &str, value: Bytes) -> StoreResult<bool>;
    /// The store's identity (docs/reference.md#watching): a random id
    /// written once, by the first process that asks; a store rebuilt from
    /// nothing or restored from a backup has another. Read from the store
    /// each time, so a process notices a store replaced under it.
    async fn identity(&self) -> StoreResult<String> {
        read_or_create_identity(self).await
    }
    /// Every change of `kind` with revision >= `from_revision`.
    async fn watch(&self, kind: Kind, from_revision: i64) -> StoreResult<WatchStream>;
    async fn current_revision(&self) -> StoreResult<i64>;
    /// The store's revision, read by a read that overlaps this call (it may
    /// have started before it): for a long poll starting now or a bookmark's
    /// target, where a revision a moment older is as good. Never for
    /// checking a revision a client holds (it may be newer than that read).
    async fn recent_revision(&self) -> StoreResult<i64> {
        self.current_revision().await
    }
    /// Whether the store has reached `revision`: a cursor's check, which a
    /// store that follows its changes answers without a read.
    async fn has_revision(&self, revision: i64) -> StoreResult<bool> {
        Ok(self.current_revision().await? >= revision)
    }
    /// The oldest revision still readable (after the last compaction).
    async fn compacted_revision(&self) -> StoreResult<i64>;
    /// Drops history older than `revision`.
    async fn compact(&self, revision: i64) -> StoreResult<()>;
    /// A snapshot of the whole backend as it writes one (etcd's maintenance
    /// snapshot: its database file), streamed in chunks; None for stores
    /// that have none (the embedded store lives and dies with its process).
    async fn snapshot(&self) -> StoreResult<Option<SnapshotStream>> {
        Ok(None)
    }
    /// Each member's own status (etcd's maintenance Status, asked of every
    /// member); empty for stores that have no members (the embedded one).
    async fn members(&self) -> StoreResult<Vec<MemberStatus>> {
        Ok(Vec::new())
    }
    /// Defragments one member (by endpoint): its database file shrinks to
    /// what is in use. The member stalls meanwhile, so one at a time.
    async fn defragment(&self, endpoint: &str) -> StoreResult<()> {
        let _ = endpoint;
        Ok(())
    }
    /// The store's raised alarms (etcd: `NOSPACE`, `CORRUPT`); none for
    /// stores without alarms.
    async fn alarms(&self) -> StoreResult<Vec<String>> {
        Ok(Vec::new())
    }
}

/// One member of the store's cluster as it answered a status request.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MemberStatus {
    pub endpoint: String,
    pub up: bool,
    /// Hex, as etcdctl shows member ids.
    pub id: Option<String>,
    /// The leader this member knows (hex), if any.
    pub leader: Option<String>,
    pub raft_index: Option<u64>,
    pub raft_term: Option<u64>,
    /// Bytes of its database file, and of them in use (the rest is free
    /// space that only a defragmentation gives back).
    pub db_size: Option<i64>,
    pub db_size_in_use: Option<i64>,
    pub error: Option<String>,
}

/// A backend snapshot, chunk by chunk.
pub type SnapshotStream = futures::stream::BoxStream<'static, StoreResult<Bytes>>;

/// Meta key of the store's identity.
pub const IDENTITY: &str = "identity";

/// The identity in the store, or a new one created there (whoever creates
/// it first wins; every process then reads the same).
pub async fn read_or_create_identity<S: StateStore + ?Sized>(store: &S) -> StoreResult<String> {
    let text = |b: Bytes| String::from_utf8_lossy(&b).into_owned();
    if let Some(id) = store.get_meta(IDENTITY).await? {
        return Ok(text(id));
    }
    let new = format!("{:032x}", rand::random::<u128>());
    store
        .create_meta(IDENTITY, Bytes::from(new.clone()))
        .await?;
    Ok(store.get_meta(IDENTITY).await?.map_or(new, text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{entity, service};

    fn stored(e: &Entity) -> StoredRecord {
        StoredRecord::new(
            e.key.clone(),
            "k".into(),
            5,
            1,
            encode_record(&Upsert::event(e)),
        )
    }

    fn snapshot(rollouts: &[&str], updated: &str, read_s: i64) -> Entity {
        let read = chrono::DateTime::from_timestamp(1_790_000_000 + read_s, 0).unwrap();
        entity(
            Kind::Service,
            &service("c1", "web", "ACTIVE", rollouts, updated),
        )
        .read_at(read)
    }

    #[test]
    fn a_service_snapshot_never_replaces_one_produced_later() {
        let (t9, t10) = ("2026-11-20T09:00:00.000Z", "2026-11-20T10:00:00.000Z");
        let rolling = snapshot(&["IN_PROGRESS", "COMPLETED"], t9, 10);
        let done = snapshot(&["COMPLETED"], t10, 20);
        // The newer snapshot replaces the older one.
        assert!(should_write(&Upsert::event(&done), Some(&stored(&rolling))).unwrap());
        // An older snapshot (older ECS timestamps) arriving late never
        // replaces a newer one, whatever its read time says.
        let late = snapshot(&["IN_PROGRESS", "COMPLETED"], t9, 30);
        assert!(!should_write(&Upsert::event(&late), Some(&stored(&done))).unwrap());
        // Same ECS timestamps: the answer to the later-sent request wins.
        let counts_changed = |read_s: i64| {
            let mut v = service("c1", "web", "ACTIVE", &["COMPLETED"], t10);
            v["runningCount"] = 1.into();
            let read = chrono::DateTime::from_timestamp(1_790_000_000 + read_s, 0).unwrap();
            entity(Kind::Service, &v).read_at(read)
        };
        assert!(should_write(&Upsert::event(&counts_changed(21)), Some(&stored(&done))).unwrap());
        assert!(!should_write(&Upsert::event(&counts_changed(19)), Some(&stored(&done))).unwrap());
        // An identical snapshot is not written again.
        let again = snapshot(&["COMPLETED"], t10, 40);
        assert!(!should_write(&Upsert::event(&again), Some(&stored(&done))).unwrap());
    }

    #[test]
    fn the_newest_ecs_time_covers_deployments_and_events() {
        let v = service(
            "c1",
            "web",
            "ACTIVE",
            &["IN_PROGRESS", "COMPLETED"],
            "2026-11-20T10:00:00.000Z",
        );
        let e = entity(Kind::Service, &v);
        let want = chrono::DateTime::parse_from_rfc3339("2026-11-20T10:00:00Z").unwrap();
        assert_eq!(
            e.stamp.map(|s| s.ecs_time_ms),
            Some(want.timestamp_millis())
        );
        let mut v = v;
        v["events"][0]["createdAt"] = "2026-11-20T11:00:00.000Z".into();
        let e = entity(Kind::Service, &v);
        let want = chrono::DateTime::parse_from_rfc3339("2026-11-20T11:00:00Z").unwrap();
        assert_eq!(
            e.stamp.map(|s| s.ecs_time_ms),
            Some(want.timestamp_millis())
        );
    }
}
