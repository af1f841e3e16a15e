//! Where a pass stands, kept in the store between invocations
//! (docs/reference.md#reconciliation): the clusters ListClusters gave, the
//! cluster and step under way, the listing's page token, the snapshot
//! revision its deletes are guarded with, and what the step carries
//! (ARNs listed so far, deletes waiting for the cluster's end). A pass that
//! reaches its deadline saves it; the next invocation loads it and goes on.
//! A crash loses at most the step under way, which starts again from a new
//! snapshot (a guarded delete is only ever made with the revision it was
//! found at).

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::summary::KindCounts;
use super::CallFigures;
use crate::store::{StateStore, StoreError};

const STATE: &str = "reconcile/pass";
/// Chunks of the step's carry (etcd takes requests of up to 1.5 MiB).
const CARRY: &str = "reconcile/pass/carry/";
const CHUNK: usize = 512 * 1024;

/// A pass, from its ListClusters to its last cluster.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PassState {
    /// When it started (RFC 3339); names the pass.
    pub started: String,
    /// Invocations (or server-mode runs) it has taken so far.
    pub invocations: u32,
    /// Every cluster ARN of the account and region, once `clusters_listed`.
    pub clusters: Vec<String>,
    pub clusters_listed: bool,
    /// ListClusters' next page while the clusters are being listed.
    pub clusters_token: Option<String>,
    /// Index in `clusters` of the cluster under way.
    pub next_cluster: usize,
    /// The cluster under way, once one of its steps has finished or paused.
    pub cluster: Option<ClusterState>,
    /// What the pass did so far, per kind, and the calls it made.
    pub kinds: std::collections::BTreeMap<String, KindCounts>,
    pub calls: CallFigures,
    pub errors: usize,
}

/// The cluster under way.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterState {
    /// Index of the step (a kind of entity) under way.
    pub step: usize,
    /// A listing of this cluster failed: it gets no deletes in this pass.
    pub failed: bool,
    /// The step under way, when it paused mid-way.
    pub paused: Option<StepState>,
    /// Chunks of `Carry` saved with it.
    pub carry_chunks: usize,
}

/// A step paused at its deadline.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StepState {
    /// Index of the listing (RUNNING, STOPPED for tasks).
    pub listing: usize,
    /// The listing's next page; `None` with `listed`: the listing is done.
    pub token: Option<String>,
    pub listed_all: bool,
    /// Revision of the step's snapshot: its deletes are guarded with it.
    pub snapshot: i64,
    /// ARNs listed that the store lacked, not described yet.
    pub pending: Vec<String>,
    /// The step paused in its verification slice: the ARNs still to
    /// describe (its listing, describes and deletes are done).
    pub verifying: Option<Vec<String>>,
}

/// What a cluster's steps carry to its end; large, so kept in chunks.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Carry {
    /// ARNs the paused step has listed so far.
    pub listed: Vec<String>,
    /// Records no listing showed: (step, id, mod_revision at the snapshot),
    /// deleted when the cluster's every listing completed.
    pub deletes: Vec<(usize, String, i64)>,
}

#[derive(Debug, thiserror::Error)]
pub enum PassStateError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("unreadable pass state: {0}")]
    Unreadable(#[from] serde_json::Error),
}

impl PassState {
    pub fn new() -> PassState {
        PassState {
            started: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            ..PassState::default()
        }
    }

    /// The pass under way, if one is.
    /// `ns`: the member's namespace of meta names ("" for the home pass).
    pub async fn load(
        store: &dyn StateStore,
        ns: &str,
    ) -> Result<Option<PassState>, PassStateError> {
        match store.get_meta(&format!("{ns}{STATE}")).await? {
            Some(b) if !b.is_empty() => Ok(Some(serde_json::from_slice(&b)?)),
            _ => Ok(None),
        }
    }

    pub async fn save(&self, store: &dyn StateStore, ns: &str) -> Result<(), PassStateError> {
        let bytes = serde_json::to_vec(self)?;
        Ok(store
            .put_meta(&format!("{ns}{STATE}"), Bytes::from(bytes))
            .await?)
    }

    /// The pass is over: the next run starts a new one.
    pub async fn clear(store: &dyn StateStore, ns: &str) -> Result<(), PassStateError> {
        Ok(store
            .put_meta(&format!("{ns}{STATE}"), Bytes::new())
            .await?)
    }
}

/// Writes `bytes` as meta keys `<prefix>0`, `<prefix>1`, ... of at most
/// `CHUNK` bytes each; answers how many.
pub(super) async fn put_chunks(
    store: &dyn StateStore,
    prefix: &str,
    bytes: &[u8],
) -> Result<usize, StoreError> {
    let chunks: Vec<&[u8]> = bytes.chunks(CHUNK).collect();
    for (i, c) in chunks.iter().enumerate() {
        let name = format!("{prefix}{i}");
        store.put_meta(&name, Bytes::copy_from_slice(c)).await?;
    }
    Ok(chunks.len())
}

/// The bytes `put_chunks` wrote in `chunks` chunks.
pub(super) async fn get_chunks(
    store: &dyn StateStore,
    prefix: &str,
    chunks: usize,
) -> Result<Vec<u8>, StoreError> {
    let mut bytes = Vec::new();
    for i in 0..chunks {
        let chunk = store.get_meta(&format!("{prefix}{i}")).await?;
        bytes.extend_from_slice(&chunk.unwrap_or_default());
    }
    Ok(bytes)
}

impl Carry {
    /// Saves the carry; the number of chunks goes in `ClusterState`.
    pub async fn save(&self, store: &dyn StateStore, ns: &str) -> Result<usize, PassStateError> {
        let bytes = serde_json::to_vec(self)?;
        Ok(put_chunks(store, &format!("{ns}{CARRY}"), &bytes).await?)
    }

    pub async fn load(
        store: &dyn StateStore,
        ns: &str,
        chunks: usize,
    ) -> Result<Carry, PassStateError> {
        if chunks == 0 {
            return Ok(Carry::default());
        }
        let bytes = get_chunks(store, &format!("{ns}{CARRY}"), chunks).await?;
        Ok(serde_json::from_slice(&bytes)?)
    }
}
