//! Long-poll answers shared by every watcher asking the same question.
//!
//! A change reaches a thousand watchers of the same stream at once, and most
//! of them ask with the same query (`since` included): the same answer, byte
//! for byte. Its body is rendered once and the bytes shared, as Kubernetes'
//! watch cache serializes an event once for all its watchers.
//!
//! The body of a stream answer is decided by the kind, the store, the query
//! (filters, limit), the revisions it starts after and reaches (`since` is
//! in the key even when the query names it: a poll without one starts
//! where the store was when it arrived) and whether more follows (a limit
//! cut it): the events in between are history, fixed once written (a
//! compacted one is refused before any answer). So an entry never goes
//! stale; entries are dropped only to bound memory.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Mutex;

use bytes::Bytes;

use crate::model::Kind;

/// Bounds: enough for the few revisions answered at one moment.
const MAX_ENTRIES: usize = 256;
const MAX_BYTES: usize = 4 << 20;

#[derive(Default)]
pub struct Answers {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// By the hash of the whole key; the entry holds the key to compare.
    entries: HashMap<u64, Entry>,
    bytes: usize,
}

/// What decides an answer's body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Question<'a> {
    pub kind: Kind,
    pub store: &'a str,
    pub query: &'a str,
    pub since: i64,
    pub revision: i64,
    pub more: bool,
}

struct Entry {
    kind: Kind,
    store: String,
    query: String,
    since: i64,
    revision: i64,
    more: bool,
    body: Bytes,
}

impl Entry {
    fn answers(&self, q: &Question<'_>) -> bool {
        let mine = Question {
            kind: self.kind,
            store: &self.store,
            query: &self.query,
            since: self.since,
            revision: self.revision,
            more: self.more,
        };
        mine == *q
    }
}

impl Answers {
    /// The body answering `q`: shared if rendered before, else `render`ed
    /// and kept.
    pub fn get_or_render<E>(
        &self,
        q: Question<'_>,
        render: impl FnOnce() -> Result<String, E>,
    ) -> Result<Bytes, E> {
        let mut h = DefaultHasher::new();
        q.hash(&mut h);
        let hash = h.finish();
        if let Some(e) = self.lock().entries.get(&hash) {
            if e.answers(&q) {
                return Ok(e.body.clone());
            }
        }
        // Rendered outside the lock; two watchers missing together both
        // render, and the second keeps its own.
        let body = Bytes::from(render()?);
        // One larger than the bound is answered, not kept.
        if body.len() <= MAX_BYTES {
            let mut inner = self.lock();
            if inner.entries.len() >= MAX_ENTRIES || inner.bytes + body.len() > MAX_BYTES {
                inner.entries.clear();
                inner.bytes = 0;
            }
            inner.bytes += body.len();
            let entry = Entry {
                kind: q.kind,
                store: q.store.to_string(),
                query: q.query.to_string(),
                since: q.since,
                revision: q.revision,
                more: q.more,
                body: body.clone(),
            };
            if let Some(old) = inner.entries.insert(hash, entry) {
                inner.bytes -= old.body.len();
            }
        }
        Ok(body)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Every statement leaves the map consistent: a panic elsewhere
        // cannot leave it half-updated.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: Question<'static> = Question {
        kind: Kind::Task,
        store: "s1",
        query: "cluster=c1&wait=20",
        since: 4,
        revision: 5,
        more: false,
    };

    #[test]
    fn the_same_question_is_rendered_once_and_any_difference_renders_anew() {
        let a = Answers::default();
        let n = std::cell::Cell::new(0);
        let ask = |question, body: &str| {
            a.get_or_render(question, || {
                n.set(n.get() + 1);
                Ok::<_, ()>(body.to_string())
            })
            .unwrap_or_else(|()| panic!("render"))
        };
        assert_eq!(ask(BASE, "A"), "A");
        assert_eq!(ask(BASE, "X"), "A");
        assert_eq!(n.get(), 1);
        // Each part of the question tells answers apart.
        let others = [
            Question {
                kind: Kind::Service,
                ..BASE
            },
            Question {
                store: "s2",
                ..BASE
            },
            Question {
                query: "cluster=c2&wait=20",
                ..BASE
            },
            // The same query, started elsewhere (a poll without `since`).
            Question { since: 3, ..BASE },
            Question {
                revision: 6,
                ..BASE
            },
            Question { more: true, ..BASE },
        ];
        for (i, q) in others.into_iter().enumerate() {
            let body = i.to_string();
            assert_eq!(ask(q, &body), body, "{q:?}");
        }
        assert_eq!(n.get(), 7);
    }

    #[test]
    fn memory_stays_bounded() {
        let a = Answers::default();
        let keep = |query, revision, body: &str| {
            let q = Question {
                query,
                revision,
                ..BASE
            };
            a.get_or_render(q, || Ok::<_, ()>(body.to_string()))
                .unwrap_or_else(|()| panic!("render"));
        };
        let big = "x".repeat(MAX_BYTES / 3);
        for rev in 0..10 {
            keep("q", rev, &big);
            assert!(a.lock().bytes <= MAX_BYTES);
        }
        for rev in 0..(2 * MAX_ENTRIES as i64) {
            keep("q", rev, "");
            assert!(a.len() <= MAX_ENTRIES);
        }
        // Too big to keep: answered, not kept, and nothing else dropped.
        let before = a.len();
        keep("huge", 1, &"x".repeat(MAX_BYTES + 1));
        assert_eq!(a.len(), before);
    }
}
