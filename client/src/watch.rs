//! The list+watch loop (docs/reference.md#watching), as client-go's informers do it: list, then
//! long-poll from the list's revision, naming the store it counts in; when
//! that revision is gone (410: compacted, or the store was rebuilt or
//! restored since), list again and hand over the new full state as a resync. Transient
//! failures are retried from the same revision, so nothing is skipped or
//! repeated.

use std::collections::{HashSet, VecDeque};
use std::time::Duration;

use crate::types::{ChangeKind, Entity, Filters, Item};
use crate::{revision, Client, Error, Retry};

#[derive(Debug, Clone)]
pub enum WatchEvent<T> {
    /// The initial list: the full state at `revision`.
    Listed {
        items: Vec<Item<T>>,
        revision: i64,
    },
    /// The watch could not continue from its revision and listed again: the
    /// full state now replaces whatever the consumer had.
    Resync {
        items: Vec<Item<T>>,
        revision: i64,
        cause: ResyncCause,
    },
    Added(Item<T>, i64),
    Modified(Item<T>, i64),
    /// Gone from the watched set (deleted, or stopped matching the filters).
    Deleted(Item<T>, i64),
}

/// Why a watch listed again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResyncCause {
    /// 410: the server compacted the history after the watch's revision.
    Expired,
    /// The watch's revision counts in another store than the server's now:
    /// the store was rebuilt or restored (or server mode restarted on its
    /// embedded store).
    StoreReplaced,
}

impl std::fmt::Display for ResyncCause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ResyncCause::Expired => "the watch's revision was compacted away (410 Expired)",
            ResyncCause::StoreReplaced => {
                "the server's store is another than the watch's revision counts in (the store was replaced)"
            }
        })
    }
}

pub struct Watch<T> {
    client: Client,
    filters: Filters,
    since: Option<i64>,
    /// The identity of the store `since` counts in.
    store: Option<String>,
    listed: bool,
    /// Why the next list is a resync.
    cause: ResyncCause,
    /// Entities currently in the watched set (ARNs), to tell ADDED from MODIFIED.
    known: HashSet<String>,
    pending: VecDeque<WatchEvent<T>>,
    pub wait: Duration,
}

impl<T: Entity> Watch<T> {
    pub fn new(mut client: Client, filters: Filters) -> Watch<T> {
        // A watch outlives server restarts and outages: it keeps retrying.
        client.retry = Retry {
            attempts: None,
            ..client.retry
        };
        Watch {
            client,
            filters,
            since: None,
            store: None,
            listed: false,
            cause: ResyncCause::Expired,
            known: HashSet::new(),
            pending: VecDeque::new(),
            wait: Duration::from_secs(20),
        }
    }

    /// The revision up to which every change has been handed out.
    pub fn revision(&self) -> Option<i64> {
        self.since
    }

    /// The next event; errors are those retrying cannot fix (bad filters,
    /// 403, a server error), transient ones are retried inside.
    pub async fn next(&mut self) -> Result<WatchEvent<T>, Error> {
        loop {
            if let Some(e) = self.pending.pop_front() {
                return Ok(e);
            }
            let Some(since) = self.since else {
                let (items, rev, store) = self.client.list_all_of_store::<T>(&self.filters).await?;
                self.known = items.iter().map(|i| i.entity.arn().to_string()).collect();
                self.since = Some(rev);
                if self.listed && store.is_some() && store != self.store {
                    self.cause = ResyncCause::StoreReplaced;
                }
                self.store = store;
                let event = if self.listed {
                    WatchEvent::Resync {
                        items,
                        revision: rev,
                        cause: self.cause,
                    }
                } else {
                    WatchEvent::Listed {
                        items,
                        revision: rev,
                    }
                };
                self.listed = true;
                return Ok(event);
            };
            let batch = match self
                .client
                .poll::<T>(&self.filters, Some(since), self.store.as_deref(), self.wait)
                .await
            {
                Ok(b) => b,
                Err(Error::Expired(_)) => {
                    self.since = None;
                    self.cause = ResyncCause::Expired;
                    continue;
                }
                // Ahead of the server: its store was replaced (server mode's
                // embedded store after a restart). Only a new list is right.
                Err(Error::BadRequest {
                    parameter: Some(p), ..
                }) if p == "since" => {
                    self.since = None;
                    self.cause = ResyncCause::StoreReplaced;
                    continue;
                }
                Err(e) => return Err(e),
            };
            for change in batch.events {
                let rev = revision(&change.revision)?;
                if rev <= since {
                    continue;
                }
                let arn = change.item.entity.arn().to_string();
                let event = match change.kind {
                    ChangeKind::Put if self.known.insert(arn.clone()) => {
                        WatchEvent::Added(change.item, rev)
                    }
                    ChangeKind::Put => WatchEvent::Modified(change.item, rev),
                    ChangeKind::Delete => {
                        self.known.remove(&arn);
                        WatchEvent::Deleted(change.item, rev)
                    }
                };
                self.pending.push_back(event);
            }
            self.since = Some(revision(&batch.revision)?.max(since));
        }
    }
}
