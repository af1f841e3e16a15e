//! A read that concurrent callers share (server mode's shared watch store
//! uses it for the identity and the revision every long poll would read).

use std::sync::Mutex;

use futures::future::{BoxFuture, Shared};
use futures::FutureExt;

use super::StoreResult;

/// A read that concurrent callers share: a call joins a read still under
/// way (it overlaps the call, as its own read would) and never one that has
/// finished. A thousand long polls arriving together make one read, not a
/// thousand (after a restart, or when their waits end at once).
pub(super) struct SharedRead<T: Clone>(Mutex<Option<Shared<BoxFuture<'static, StoreResult<T>>>>>);

impl<T: Clone + Send + Sync + 'static> SharedRead<T> {
    pub(super) fn new() -> Self {
        SharedRead(Mutex::new(None))
    }

    pub(super) async fn read<F>(&self, start: impl FnOnce() -> F) -> StoreResult<T>
    where
        F: std::future::Future<Output = StoreResult<T>> + Send + 'static,
    {
        let read = {
            let mut slot = self.0.lock().unwrap_or_else(|e| e.into_inner());
            match slot.as_ref() {
                Some(r) if r.peek().is_none() => r.clone(),
                _ => {
                    let r = start().boxed().shared();
                    *slot = Some(r.clone());
                    r
                }
            }
        };
        read.await
    }
}
