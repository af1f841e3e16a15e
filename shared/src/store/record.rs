//! The record format: what one key's value holds (the entity as ECS sent it,
//! verbatim, plus what the service needs), written once per upsert and
//! decoded once per read.
//!
//! On the wire a value starts with a header byte: `Z` is the record's JSON
//! compressed with zstd and the dictionary in `record.dict` (trained on ECS
//! JSON by `css-bench train-dict`; the frame names the dictionary's id), `{`
//! is the record's JSON as written before compression (still read, rewritten
//! compressed on the entity's next write). `css-record` decodes either.

use std::borrow::Cow;
use std::sync::{Arc, OnceLock};

use zstd::dict::{DecoderDictionary, EncoderDictionary};

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

/// The first byte of a compressed record.
pub const COMPRESSED: u8 = b'Z';
/// The first byte of a record written as plain JSON (the format before
/// compression).
pub const PLAIN: u8 = b'{';
/// zstd's level: its default, fast to write (records are small).
const LEVEL: i32 = 3;

static DICTIONARY: &[u8] = include_bytes!("record.dict");

fn encoder_dictionary() -> &'static EncoderDictionary<'static> {
    static D: OnceLock<EncoderDictionary<'static>> = OnceLock::new();
    D.get_or_init(|| EncoderDictionary::copy(DICTIONARY, LEVEL))
}

fn decoder_dictionary() -> &'static DecoderDictionary<'static> {
    static D: OnceLock<DecoderDictionary<'static>> = OnceLock::new();
    D.get_or_init(|| DecoderDictionary::copy(DICTIONARY))
}

/// The record's JSON, uncompressed (what `encode_record` compresses).
pub fn record_json(w: &Upsert<'_>) -> Vec<u8> {
    let out = RecordOut {
        ecs_version: w.entity.version,
        source: w.source,
        written_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        status: &w.entity.status,
        stamp: w.entity.stamp,
        entity: &w.entity.raw,
    };
    let mut buf = Vec::with_capacity(w.entity.raw.get().len() + 160);
    // Serializing a struct of strings and a RawValue cannot fail.
    let _ = serde_json::to_writer(&mut buf, &out);
    buf
}

/// A value as stored: the header byte, then the zstd frame.
pub fn encode_record(w: &Upsert<'_>) -> Bytes {
    compress(&record_json(w))
}

thread_local! {
    // zstd contexts are costly to make (tens of µs) and cheap to reuse: one
    // per thread, holding the prepared dictionary.
    static COMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Compressor<'static>>> =
        std::cell::RefCell::new(zstd::bulk::Compressor::with_prepared_dictionary(encoder_dictionary()).ok());
    static DECOMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        std::cell::RefCell::new(zstd::bulk::Decompressor::with_prepared_dictionary(decoder_dictionary()).ok());
}

/// `json` as a compressed record value.
pub fn compress(json: &[u8]) -> Bytes {
    let frame = COMPRESSOR.with(|c| match c.borrow_mut().as_mut() {
        Some(c) => c.compress(json).ok(),
        None => None,
    });
    match frame {
        // Sized exactly: the embedded store holds these as long as the record lives.
        Some(frame) => {
            let mut out = Vec::with_capacity(frame.len() + 1);
            out.push(COMPRESSED);
            out.extend_from_slice(&frame);
            Bytes::from(out)
        }
        // Compressing into memory does not fail; if it ever did, plain JSON
        // is still a valid record.
        None => Bytes::copy_from_slice(json),
    }
}

/// Largest record accepted when decompressing (etcd's own request limit is
/// 1.5 MiB; ECS entities are far smaller).
const MAX_RECORD: usize = 16 << 20;

/// A value as `etcdctl get --print-value-only` prints it (a newline after
/// the value): its JSON.
pub fn decode_printed(printed: &[u8]) -> Result<Vec<u8>, String> {
    match decode_value(printed) {
        Ok(json) => Ok(json.into_owned()),
        Err(first) => match printed.strip_suffix(b"\n") {
            Some(v) => decode_value(v).map(Cow::into_owned),
            None => Err(first),
        },
    }
}

/// A stored value's JSON, whichever format it was written in.
pub fn decode_value(value: &[u8]) -> Result<Cow<'_, [u8]>, String> {
    match value.first() {
        Some(&PLAIN) => Ok(Cow::Borrowed(value)),
        Some(&COMPRESSED) => {
            let frame = &value[1..];
            let size = zstd::zstd_safe::get_frame_content_size(frame)
                .ok()
                .flatten()
                .filter(|n| *n as usize <= MAX_RECORD)
                .ok_or("zstd: no frame or content size")?;
            DECOMPRESSOR.with(|d| match d.borrow_mut().as_mut() {
                Some(d) => d
                    .decompress(frame, size as usize)
                    .map(Cow::Owned)
                    .map_err(|e| format!("zstd: {e}")),
                None => Err("zstd: no decompressor".into()),
            })
        }
        Some(b) => Err(format!("unknown record format (first byte {b:#04x})")),
        None => Err("empty value".into()),
    }
}

/// One record as read from the store: a shared handle, so the copies a
/// watch window hands to every long poll and the record cache hands to
/// every list cost a reference count, not the key's five strings. Its value
/// is decoded at most once, on first use (filters, rendering and the version
/// guard share it).
#[derive(Debug, Clone)]
pub struct StoredRecord(Arc<RecordData>);

/// What a `StoredRecord` shares (its fields are read through the handle).
#[derive(Debug)]
pub struct RecordData {
    pub key: EntityKey,
    /// The store key it was read under (primary or index): the page cursor.
    pub store_key: String,
    pub mod_revision: i64,
    pub create_revision: i64,
    pub value: Bytes,
    /// Shared with the same record under another store key (`under`).
    decoded: Arc<OnceLock<StoreResult<RecordMeta>>>,
    /// Its rendering for watchers, made once (`rendered`).
    rendering: OnceLock<StoreResult<String>>,
}

impl std::ops::Deref for StoredRecord {
    type Target = RecordData;
    fn deref(&self) -> &RecordData {
        &self.0
    }
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
        StoredRecord(Arc::new(RecordData {
            key,
            store_key,
            mod_revision,
            create_revision,
            value,
            decoded: Arc::default(),
            rendering: OnceLock::new(),
        }))
    }

    /// The same record (and its decoding) under another store key: the
    /// page cursor of the list that found it.
    pub fn under(&self, store_key: String) -> StoredRecord {
        StoredRecord(Arc::new(RecordData {
            key: self.key.clone(),
            store_key,
            mod_revision: self.mod_revision,
            create_revision: self.create_revision,
            value: self.value.clone(),
            decoded: self.decoded.clone(),
            rendering: OnceLock::new(),
        }))
    }

    /// `render(self)`, made on the first call only and shared by clones: a
    /// watch window's record goes to every long poll waiting on it, and is
    /// rendered once for all of them (lists render their own: the record
    /// cache's weights count no rendering).
    pub fn rendered(
        &self,
        render: impl FnOnce(&StoredRecord) -> StoreResult<String>,
    ) -> StoreResult<&str> {
        self.rendering
            .get_or_init(|| render(self))
            .as_deref()
            .map_err(Clone::clone)
    }

    /// The decoded value (decoded on the first call only).
    pub fn meta(&self) -> StoreResult<&RecordMeta> {
        self.decoded
            .get_or_init(|| {
                let corrupt = |reason: String| StoreError::Corrupt {
                    key: self.store_key.clone(),
                    reason,
                };
                let json = decode_value(&self.value).map_err(corrupt)?;
                serde_json::from_slice(&json).map_err(|e| corrupt(e.to_string()))
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
    fn records_are_compressed_behind_a_header_byte_and_plain_ones_still_read() {
        let e = entity(7);
        let w = Upsert::event(&e);
        assert_eq!(encode_record(&w)[0], COMPRESSED, "etcdctl shows Z first");
        let json = record_json(&w);
        let value = compress(&json);
        assert!(
            value.len() < json.len() / 2,
            "{} of {}",
            value.len(),
            json.len()
        );
        assert_eq!(&*decode_value(&value).unwrap(), &json[..]);
        // A record written before compression (plain JSON) reads the same.
        let plain = StoredRecord::new(e.key.clone(), "k".into(), 3, 2, Bytes::from(json));
        let packed = StoredRecord::new(e.key.clone(), "k".into(), 3, 2, value);
        let (a, b) = (plain.meta().unwrap(), packed.meta().unwrap());
        assert_eq!(
            (a.entity.get(), a.ecs_version),
            (b.entity.get(), b.ecs_version)
        );
        for bad in [&b""[..], b"x{}", b"Z\x00garbage"] {
            let rec =
                StoredRecord::new(e.key.clone(), "k".into(), 1, 1, Bytes::copy_from_slice(bad));
            assert!(
                matches!(rec.meta(), Err(StoreError::Corrupt { .. })),
                "{bad:?}"
            );
        }
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
