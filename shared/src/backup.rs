//! Scheduled backups of the store (docs/reference.md#deploying-and-operating):
//! etcd's maintenance snapshot streamed into an S3 bucket of the stack, by
//! the scheduled function (or server mode) when the last good backup is
//! older than the interval. The last good one is recorded in the store
//! (`backup/last`), so every process knows its age; its metric and alarm
//! say when backups stop. Restoring is README's procedure.

use std::time::{Duration, SystemTime};

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use crate::store::{StateStore, StoreError};

const LAST: &str = "backup/last";
/// S3 parts: at least 5 MiB each but the last (S3's minimum).
pub const PART: usize = 8 << 20;
pub const MIN_PART: usize = 5 << 20;

/// Where backups go and how often.
#[derive(Clone)]
pub struct Backups {
    pub s3: aws_sdk_s3::Client,
    pub bucket: String,
    pub interval: Duration,
    /// Bytes per uploaded part (`PART`; at least `MIN_PART`).
    pub part_size: usize,
}

/// The last good backup, as recorded in the store.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BackupRecord {
    /// When it was taken (Unix milliseconds).
    pub at_ms: i64,
    /// The object's key in the bucket.
    pub key: String,
    pub bytes: u64,
    /// The store's revision just before the snapshot was taken.
    pub revision: i64,
    /// The identity of the store it is a snapshot of.
    pub store: String,
}

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("this store has no snapshots (the embedded store)")]
    NoSnapshot,
    #[error("S3 {operation}: {message}")]
    S3 {
        operation: &'static str,
        message: String,
    },
}

fn s3_err(operation: &'static str, e: impl std::error::Error) -> BackupError {
    BackupError::S3 {
        operation,
        message: aws_sdk_s3::error::DisplayErrorContext(e).to_string(),
    }
}

fn millis(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The last good backup, if one was recorded.
pub async fn last(store: &dyn StateStore) -> Result<Option<BackupRecord>, StoreError> {
    let raw = store.get_meta(LAST).await?;
    Ok(raw.and_then(|b| serde_json::from_slice(&b).ok()))
}

/// How long ago the last good backup was taken (None: never).
pub async fn age(store: &dyn StateStore, now: SystemTime) -> Result<Option<Duration>, StoreError> {
    let last = last(store).await?;
    Ok(last.map(|r| Duration::from_millis((millis(now) - r.at_ms).max(0) as u64)))
}

impl Backups {
    /// Takes a backup when the last good one is older than the interval
    /// (or there is none); answers the new record, or None when not due.
    pub async fn run_if_due(
        &self,
        store: &dyn StateStore,
        now: SystemTime,
    ) -> Result<Option<BackupRecord>, BackupError> {
        if let Some(a) = age(store, now).await? {
            if a < self.interval {
                return Ok(None);
            }
        }
        self.run(store, now).await.map(Some)
    }

    /// Streams a snapshot of the store into the bucket and records it.
    pub async fn run(
        &self,
        store: &dyn StateStore,
        now: SystemTime,
    ) -> Result<BackupRecord, BackupError> {
        let identity = store.identity().await?;
        let revision = store.current_revision().await?;
        let stamp = chrono::DateTime::<chrono::Utc>::from(now).format("%Y-%m-%dT%H-%M-%SZ");
        let key = format!("etcd/{identity}/{stamp}-r{revision}.db");
        let snapshot = store.snapshot().await?.ok_or(BackupError::NoSnapshot)?;
        let bytes = self.upload(&key, snapshot).await?;
        let record = BackupRecord {
            at_ms: millis(now),
            key,
            bytes,
            revision,
            store: identity,
        };
        let json = serde_json::to_vec(&record).unwrap_or_default();
        store.put_meta(LAST, Bytes::from(json)).await?;
        Ok(record)
    }

    /// Uploads the stream as one object (multipart beyond one part);
    /// an upload that fails midway is aborted, leaving nothing behind.
    async fn upload(
        &self,
        key: &str,
        mut snapshot: crate::store::SnapshotStream,
    ) -> Result<u64, BackupError> {
        let mut buf = BytesMut::new();
        let mut total = 0u64;
        let mut upload: Option<String> = None;
        let mut parts = Vec::new();
        loop {
            let chunk = match snapshot.next().await {
                Some(c) => Some(c?),
                None => None,
            };
            let done = chunk.is_none();
            if let Some(c) = chunk {
                total += c.len() as u64;
                buf.extend_from_slice(&c);
            }
            if buf.len() < self.part_size.max(MIN_PART) && !done {
                continue;
            }
            if done && upload.is_none() {
                // Small enough for one request.
                let body = ByteStream::from(buf.split().freeze());
                let put = self
                    .s3
                    .put_object()
                    .bucket(&self.bucket)
                    .key(key)
                    .body(body);
                put.send().await.map_err(|e| s3_err("PutObject", e))?;
                return Ok(total);
            }
            let id = match &upload {
                Some(id) => id.clone(),
                None => {
                    let create = self.s3.create_multipart_upload();
                    let out = (create.bucket(&self.bucket).key(key).send().await)
                        .map_err(|e| s3_err("CreateMultipartUpload", e))?;
                    let id = out.upload_id.unwrap_or_default();
                    upload = Some(id.clone());
                    id
                }
            };
            if !buf.is_empty() {
                let n = parts.len() as i32 + 1;
                let body = ByteStream::from(buf.split().freeze());
                let sent = (self.s3.upload_part())
                    .bucket(&self.bucket)
                    .key(key)
                    .upload_id(&id)
                    .part_number(n)
                    .body(body)
                    .send()
                    .await;
                match sent {
                    Ok(out) => parts.push(
                        CompletedPart::builder()
                            .part_number(n)
                            .set_e_tag(out.e_tag)
                            .build(),
                    ),
                    Err(e) => {
                        self.abort(key, &id).await;
                        return Err(s3_err("UploadPart", e));
                    }
                }
            }
            if done {
                let parts = CompletedMultipartUpload::builder()
                    .set_parts(Some(std::mem::take(&mut parts)))
                    .build();
                let complete = (self.s3.complete_multipart_upload())
                    .bucket(&self.bucket)
                    .key(key)
                    .upload_id(&id)
                    .multipart_upload(parts);
                if let Err(e) = complete.send().await {
                    self.abort(key, &id).await;
                    return Err(s3_err("CompleteMultipartUpload", e));
                }
                return Ok(total);
            }
        }
    }

    async fn abort(&self, key: &str, id: &str) {
        let abort = (self.s3.abort_multipart_upload())
            .bucket(&self.bucket)
            .key(key)
            .upload_id(id);
        if let Err(e) = abort.send().await {
            tracing::warn!(error = %aws_sdk_s3::error::DisplayErrorContext(e), "multipart upload not aborted");
        }
    }
}

impl Backups {
    /// What a scheduled run does: a backup when due, logged and counted,
    /// then the last good one's age as metrics (every run: the age keeps
    /// rising while backups fail, so the alarm sees it).
    pub async fn tick(&self, store: &dyn StateStore) -> Result<(), BackupError> {
        let now = SystemTime::now();
        let taken = self.run_if_due(store, now).await;
        match &taken {
            Ok(Some(r)) => {
                crate::metrics::backup(Some(r.bytes));
                tracing::info!(key = %r.key, bytes = r.bytes, revision = r.revision, "store backed up");
            }
            Ok(None) => {}
            Err(e) => {
                crate::metrics::backup(None);
                tracing::warn!(error = %e, "backup failed");
            }
        }
        match age(store, now).await {
            Ok(age) => crate::metrics::backup_age(age, self.interval),
            Err(e) => tracing::warn!(error = %e, "backup age not read"),
        }
        taken.map(|_| ())
    }
}
