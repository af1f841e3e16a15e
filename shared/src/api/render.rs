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

/// `{"items":[...],"revision":"<rev>","nextToken"?:"..."}`.
pub fn list_page(out: &ListOutput) -> Result<String, StoreError> {
    let items = out
        .records
        .iter()
        .map(item)
        .collect::<Result<Vec<_>, _>>()?;
    let mut s = array_and_revision("items", &items, out.revision);
    if let Some(t) = &out.next_token {
        s.push_str(r#","nextToken":""#);
        s.push_str(t);
        s.push('"');
    }
    s.push('}');
    Ok(s)
}

/// `{"events":[{"type","revision","item"}...],"revision":"<rev>","more":bool}`.
pub fn watch_batch(out: &PollOutput) -> Result<String, StoreError> {
    let events = out
        .changes
        .iter()
        .map(|c| {
            let kind = match c.kind {
                ChangeKind::Put => "PUT",
                ChangeKind::Delete => "DELETE",
            };
            Ok(format!(
                r#"{{"type":"{kind}","revision":"{}","item":{}}}"#,
                c.revision,
                item(&c.record)?
            ))
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    let mut s = array_and_revision("events", &events, out.revision);
    s.push_str(r#","more":"#);
    s.push_str(if out.more { "true" } else { "false" });
    s.push('}');
    Ok(s)
}
