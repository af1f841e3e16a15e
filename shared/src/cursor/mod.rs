//! Subscription cursors (SPEC §6): one trait, a DynamoDB implementation for
//! the Lambdas and an embedded one for server mode.

use std::collections::BTreeMap;

use async_trait::async_trait;

pub mod dynamodb;
pub mod embedded;

pub use dynamodb::DynamoCursorStore;
pub use embedded::EmbeddedCursorStore;

#[derive(Debug, Clone, thiserror::Error)]
pub enum CursorError {
    #[error("cursor store unavailable: {0}")]
    Unavailable(String),
    #[error("corrupt subscription {id}: {reason}")]
    Corrupt { id: String, reason: String },
}

/// A durable watch: who owns it, what it follows, how far it has acked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    pub id: String,
    pub principal: String,
    /// "tasks" or "instances".
    pub resource: String,
    /// The list filters, as query parameters.
    pub filters: BTreeMap<String, String>,
    /// Everything up to this revision has been acknowledged.
    pub cursor: i64,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds; refreshed on use (DynamoDB TTL attribute).
    pub expires_at: i64,
}

#[async_trait]
pub trait CursorStore: Send + Sync {
    async fn create(&self, sub: &Subscription) -> Result<(), CursorError>;
    /// The subscription, unless missing or expired at `now`.
    async fn get(&self, id: &str, now: i64) -> Result<Option<Subscription>, CursorError>;
    /// Moves the cursor forward to `cursor` (an older one is a no-op) and
    /// refreshes the expiry; answers the stored subscription afterwards.
    async fn advance(
        &self,
        id: &str,
        cursor: i64,
        expires_at: i64,
        now: i64,
    ) -> Result<Option<Subscription>, CursorError>;
    async fn delete(&self, id: &str) -> Result<bool, CursorError>;
}
