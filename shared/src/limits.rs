//! Sizes and counts every answer keeps to (docs/reference.md#http-api, docs/reference.md#watching).

use crate::store::{StoreResult, StoredRecord};

/// Largest list or watch answer: Lambda's response limit is 6 MB.
pub const MAX_ANSWER_BYTES: usize = 5_000_000;
/// Bytes of items (or events) in one answer, leaving room for the envelope
/// and a page token.
pub const MAX_ITEMS_BYTES: usize = MAX_ANSWER_BYTES - 1_000;
/// What rendering adds to an entity's JSON, at most: the metadata wrapper
/// (63 bytes with a 19-digit revision) and a comma.
pub const ITEM_OVERHEAD: usize = 64;
/// What a watch event adds around its item, at most.
pub const EVENT_OVERHEAD: usize = 64;
pub const DEFAULT_LIMIT: usize = 100;
pub const MAX_LIMIT: usize = 1000;

/// The size a record takes as an item of an answer, at most.
pub fn item_size(record: &StoredRecord) -> StoreResult<usize> {
    Ok(record.meta()?.entity.get().len() + ITEM_OVERHEAD)
}
