//! JSON answers, spliced from the records' stored entity JSON (never
//! re-serialized: ECS's fields and their order are kept byte for byte).
//! Each answer is written into one string sized for it: a long poll is
//! answered a thousand times a second, so nothing is allocated per item.

use std::fmt::Write;

use crate::limits::{item_size, EVENT_OVERHEAD};
use crate::query::ListOutput;
use crate::store::{StoreError, StoredRecord};
use crate::watch::{ChangeKind, PollOutput};

/// Room for what surrounds an answer's items: the field's name, the revision,
/// the store, `more` (a page token may still grow it).
const ENVELOPE: usize = 128;

/// `{"metadata":{"entityVersion":"<rev>"},"entity":<ECS JSON>}`.
pub fn item(record: &StoredRecord) -> Result<String, StoreError> {
    let mut s = String::with_capacity(item_size(record)?);
    push_item(&mut s, record)?;
    Ok(s)
}

fn push_item(s: &mut String, record: &StoredRecord) -> Result<(), StoreError> {
    s.push_str(r#"{"metadata":{"entityVersion":""#);
    push_int(s, record.mod_revision);
    s.push_str(r#""},"entity":"#);
    s.push_str(record.meta()?.entity.get());
    s.push('}');
    Ok(())
}

fn push_int(s: &mut String, n: i64) {
    // Writing to a String cannot fail.
    let _ = write!(s, "{n}");
}

/// `{"<field>":[items...],"revision":"<rev>"` without the closing brace;
/// `size` is the items' bytes (with their commas), `push` writes one.
fn array_and_revision<T>(
    field: &str,
    items: &[T],
    size: usize,
    revision: i64,
    mut push: impl FnMut(&mut String, &T) -> Result<(), StoreError>,
) -> Result<String, StoreError> {
    let mut s = String::with_capacity(size + ENVELOPE);
    s.push_str(r#"{""#);
    s.push_str(field);
    s.push_str(r#"":["#);
    for (i, it) in items.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        push(&mut s, it)?;
    }
    s.push_str(r#"],"revision":""#);
    push_int(&mut s, revision);
    s.push('"');
    Ok(s)
}

/// `,"store":"<id>"`: the store's identity, in every list and watch answer.
fn store_field(s: &mut String, store: &str) {
    s.push_str(r#","store":""#);
    s.push_str(store);
    s.push('"');
}

/// `{"items":[...],"revision":"<rev>","store":"<id>","nextToken"?:"..."}`.
pub fn list_page(out: &ListOutput) -> Result<String, StoreError> {
    let mut size = 0;
    for r in &out.records {
        size += item_size(r)?;
    }
    let mut s = array_and_revision("items", &out.records, size, out.revision, push_item)?;
    store_field(&mut s, &out.store);
    if let Some(t) = &out.next_token {
        s.push_str(r#","nextToken":""#);
        s.push_str(t);
        s.push('"');
    }
    s.push('}');
    Ok(s)
}

/// `{"events":[{"type","revision","item"}...],"revision":"<rev>","store":"<id>","more":bool}`.
pub fn watch_batch(out: &PollOutput, store: &str) -> Result<String, StoreError> {
    // The same record reaches every watcher of a change: its item is
    // rendered once (`rendered`) and copied into each answer.
    let mut size = 0;
    for c in &out.changes {
        size += c.record.rendered(item)?.len() + EVENT_OVERHEAD;
    }
    let mut s = array_and_revision("events", &out.changes, size, out.revision, |s, c| {
        s.push_str(match c.kind {
            ChangeKind::Put => r#"{"type":"PUT","revision":""#,
            ChangeKind::Delete => r#"{"type":"DELETE","revision":""#,
        });
        push_int(s, c.revision);
        s.push_str(r#"","item":"#);
        s.push_str(c.record.rendered(item)?);
        s.push('}');
        Ok(())
    })?;
    store_field(&mut s, store);
    s.push_str(r#","more":"#);
    s.push_str(if out.more { "true" } else { "false" });
    s.push('}');
    Ok(s)
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;
    use crate::model::Kind;
    use crate::testing::{embedded, stored, task};
    use crate::watch::Change;

    fn json(s: &str) -> Value {
        serde_json::from_str(s).unwrap_or_else(|e| panic!("{e}: {s}"))
    }

    #[tokio::test]
    async fn an_item_is_the_ecs_json_byte_for_byte_with_its_revision() {
        let s = embedded();
        let rec = stored(s.as_ref(), Kind::Task, &task("web", "t1", "RUNNING", 3)).await;
        let entity = rec.meta().map(|m| m.entity.get().to_string());
        let expected = format!(
            r#"{{"metadata":{{"entityVersion":"{}"}},"entity":{}}}"#,
            rec.mod_revision,
            entity.unwrap_or_else(|e| panic!("{e}"))
        );
        assert_eq!(item(&rec).unwrap_or_else(|e| panic!("{e}")), expected);
    }

    #[tokio::test]
    async fn a_page_names_its_revision_and_a_token_only_when_more_follows() {
        let s = embedded();
        let rec = stored(s.as_ref(), Kind::Task, &task("web", "t1", "RUNNING", 1)).await;
        for token in [None, Some("abc".to_string())] {
            let out = ListOutput {
                records: vec![rec.clone()],
                revision: 7,
                next_token: token.clone(),
                store: "ab12".into(),
            };
            let page = json(&list_page(&out).unwrap_or_else(|e| panic!("{e}")));
            assert_eq!(page["revision"], "7");
            assert_eq!(page["store"], "ab12");
            assert_eq!(page["items"][0]["entity"]["lastStatus"], "RUNNING");
            assert_eq!(
                page.get("nextToken").and_then(Value::as_str),
                token.as_deref()
            );
        }
    }

    #[tokio::test]
    async fn a_watch_batch_types_each_event_and_says_whether_more_follows() {
        let s = embedded();
        let rec = stored(s.as_ref(), Kind::Task, &task("web", "t1", "STOPPED", 2)).await;
        for more in [false, true] {
            let change = |kind, revision| Change {
                kind,
                revision,
                record: rec.clone(),
            };
            let out = PollOutput {
                since: 0,
                changes: vec![change(ChangeKind::Put, 4), change(ChangeKind::Delete, 5)],
                revision: 5,
                more,
            };
            let batch = json(&watch_batch(&out, "ab12").unwrap_or_else(|e| panic!("{e}")));
            assert_eq!(batch["store"], "ab12");
            assert_eq!(batch["events"][0]["type"], "PUT");
            assert_eq!(batch["events"][0]["revision"], "4");
            assert_eq!(batch["events"][1]["type"], "DELETE");
            assert_eq!(
                batch["events"][1]["item"]["entity"]["lastStatus"],
                "STOPPED"
            );
            assert_eq!(
                (batch["revision"].as_str(), batch["more"].as_bool()),
                (Some("5"), Some(more))
            );
        }
    }
}
