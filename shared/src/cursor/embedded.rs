//! In-process cursors for server mode.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;

use super::{CursorError, CursorStore, Subscription};

#[derive(Default)]
pub struct EmbeddedCursorStore {
    subs: Mutex<HashMap<String, Subscription>>,
}

impl EmbeddedCursorStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Subscription>> {
        self.subs.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl CursorStore for EmbeddedCursorStore {
    async fn create(
        &self,
        sub: &Subscription,
        max_per_owner: usize,
        now: i64,
    ) -> Result<(), CursorError> {
        let mut subs = self.lock();
        let held = subs
            .values()
            .filter(|s| s.principal == sub.principal && s.expires_at >= now)
            .count();
        super::check_quota(sub, held, max_per_owner)?;
        subs.insert(sub.id.clone(), sub.clone());
        Ok(())
    }

    async fn get(&self, id: &str, now: i64) -> Result<Option<Subscription>, CursorError> {
        let mut subs = self.lock();
        if subs.get(id).is_some_and(|s| s.expires_at < now) {
            subs.remove(id);
        }
        Ok(subs.get(id).cloned())
    }

    async fn advance(
        &self,
        id: &str,
        cursor: i64,
        expires_at: i64,
        now: i64,
    ) -> Result<Option<Subscription>, CursorError> {
        let mut subs = self.lock();
        match subs.get_mut(id) {
            Some(s) if s.expires_at >= now => {
                s.cursor = s.cursor.max(cursor);
                s.expires_at = s.expires_at.max(expires_at);
                Ok(Some(s.clone()))
            }
            _ => Ok(None),
        }
    }

    async fn delete(&self, id: &str) -> Result<bool, CursorError> {
        Ok(self.lock().remove(id).is_some())
    }
}
