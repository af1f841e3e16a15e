//! JSON answers, spliced from the records' stored entity JSON (never
//! re-serialized: ECS's fields and their order are kept byte for byte).

use crate::query::ListOutput;
use crate::store::{StoreError, StoredRecord};
use crate::watch::{ChangeKind, PollOutput};

/// `{"metadata":{"entityVersion":"<rev>"},"entity":<ECS JSON>}`.
pub fn item(record: &StoredRecord) -> Result<String, StoreError> {
    let meta = record.meta()?;
    let entity = meta.entity.get();
    let mut s = String::with_capacity(entity.len() + 64);
    s.push_str(r#"{"metadata":{"entityVersion":""#);
    s.push_str(&record.mod_revision.to_string());
    s.push_str(r#""},"entity":"#);
    s.push_str(entity);
    s.push('}');
    Ok(s)
}

/// `{"<field>":[items...],"revision":"<rev>"` without the closing brace.
fn array_and_revision(field: &str, items: &[String], revision: i64) -> String {
    let size: usize = items.iter().map(|i| i.len() + 1).sum();
    let mut s = String::with_capacity(size + 128);
    s.push_str(r#"{""#);
    s.push_str(field);
    s.push_str(r#"":["#);
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(item);
    }
    s.push_str(r#"],"revision":""#);
    s.push_str(&revision.to_string());
    s.push('"');
    s
}

/// `,"store":"<id>"`: the store's identity, in every list and watch answer.
fn store_field(s: &mut String, store: &str) {
    s.push_str(r#","store":""#);
    s.push_str(store);
    s.push('"');
}

/// `{"items":[...],"revision":"<rev>","store":"<id>","nextToken"?:"..."}`.
pub fn list_page(out: &ListOutput) -> Result<String, StoreError> {
    let items = out
        .records
        .iter()
        .map(item)
        .collect::<Result<Vec<_>, _>>()?;
    let mut s = array_and_revision("items", &items, out.revision);
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
    let events = out
        .changes
        .iter()
        .map(|c| {
            let kind = match c.kind {
                ChangeKind::Put => "PUT",
                ChangeKind::Delete => "DELETE",
            };
            // The same record reaches every watcher of a change: rendered once.
            Ok(format!(
                r#"{{"type":"{kind}","revision":"{}","item":{}}}"#,
                c.revision,
                c.record.rendered(item)?
            ))
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    let mut s = array_and_revision("events", &events, out.revision);
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
