//! The record format: what one key's value holds (the entity as ECS sent it,
//! verbatim, plus what the service needs), written once per upsert and
//! decoded once per read.

use std::sync::OnceLock;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::{Source, StoreError, StoreResult, Upsert};
use crate::model::{EntityKey, Stamp};

/// The stored value: the entity verbatim plus what the service needs.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordMeta {
    pub ecs_version: u64,
    pub source: Source,
    pub written_at: String,
    pub status: String,
    /// Services: when the stored snapshot was produced (the guard's order).
    #[serde(default)]
    pub stamp: Option<Stamp>,
    pub entity: Box<RawValue>,
}

/// What `encode_record` writes: `RecordMeta`'s fields, the entity borrowed.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RecordOut<'a> {
    ecs_version: u64,
    source: Source,
    written_at: String,
    status: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    stamp: Option<Stamp>,
    entity: &'a RawValue,
}

pub fn encode_record(w: &Upsert<'_>) -> Bytes {
    let out = RecordOut {
        ecs_version: w.entity.version,
        source: w.source,
        written_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        status: &w.entity.status,
        stamp: w.entity.stamp,
        entity: &w.entity.raw,
    };
    // Sized up front: Bytes keeps a Vec's spare capacity, and the embedded
    // store holds these for as long as the record lives.
    let mut buf = Vec::with_capacity(w.entity.raw.get().len() + 160);
    // Serializing a struct of strings and a RawValue cannot fail.
    let _ = serde_json::to_writer(&mut buf, &out);
    buf.shrink_to_fit();
    Bytes::from(buf)
}

/// One record as read from the store. Its value is decoded at most once,
/// on first use (filters, rendering and the version guard share it).
#[derive(Debug, Clone)]
pub struct StoredRecord {
    pub key: EntityKey,
    /// The store key it was read under (primary or index): the page cursor.
    pub store_key: String,
    pub mod_revision: i64,
    pub create_revision: i64,
    pub value: Bytes,
    decoded: OnceLock<StoreResult<RecordMeta>>,
}

impl PartialEq for StoredRecord {
    fn eq(&self, other: &Self) -> bool {
        (
            &self.key,
            &self.store_key,
            self.mod_revision,
            self.create_revision,
            &self.value,
        ) == (
            &other.key,
            &other.store_key,
            other.mod_revision,
            other.create_revision,
            &other.value,
        )
    }
}

impl Eq for StoredRecord {}

impl StoredRecord {
    pub fn new(
        key: EntityKey,
        store_key: String,
        mod_revision: i64,
        create_revision: i64,
        value: Bytes,
    ) -> StoredRecord {
        StoredRecord {
            key,
            store_key,
            mod_revision,
            create_revision,
            value,
            decoded: OnceLock::new(),
        }
    }

    /// The decoded value (decoded on the first call only).
    pub fn meta(&self) -> StoreResult<&RecordMeta> {
        self.decoded
            .get_or_init(|| {
                serde_json::from_slice(&self.value).map_err(|e| StoreError::Corrupt {
                    key: self.store_key.clone(),
                    reason: e.to_string(),
                })
            })
            .as_ref()
            .map_err(Clone::clone)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Entity, Kind};

    fn entity(version: u64) -> Entity {
        let raw = RawValue::from_string(format!(
            r#"{{"taskArn":"arn:aws:ecs:eu-west-1:111122223333:task/c1/t1","clusterArn":"arn:aws:ecs:eu-west-1:111122223333:cluster/c1","lastStatus":"RUNNING","version":{version},"extra":{{"kept":[1,2]}}}}"#
        ))
        .unwrap();
        Entity::from_raw(Kind::Task, raw, false).unwrap()
    }

    #[test]
    fn a_record_keeps_the_entity_verbatim_with_its_version_and_source() {
        let e = entity(7);
        let value = encode_record(&Upsert::event(&e));
        let rec = StoredRecord::new(e.key.clone(), "k".into(), 3, 2, value);
        let meta = rec.meta().unwrap();
        assert_eq!(meta.ecs_version, 7);
        assert_eq!(meta.source, Source::Event);
        assert_eq!(meta.status, "RUNNING");
        assert_eq!(meta.entity.get(), e.raw.get(), "byte for byte");
        assert!(chrono::DateTime::parse_from_rfc3339(&meta.written_at).is_ok());
    }

    #[test]
    fn a_corrupt_value_is_an_error_naming_its_key() {
        let e = entity(1);
        let rec = StoredRecord::new(
            e.key,
            "/p/tasks/x".into(),
            1,
            1,
            Bytes::from_static(b"{not json"),
        );
        match rec.meta() {
            Err(StoreError::Corrupt { key, .. }) => assert_eq!(key, "/p/tasks/x"),
            other => panic!("{other:?}"),
        }
        // The error is remembered, not re-parsed, and stays the same.
        assert!(rec.meta().is_err());
    }
}
