//! Subscription cursors (docs/reference.md#watching): one trait, a DynamoDB implementation for
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
    #[error("{owner} already holds {limit} subscriptions")]
    TooMany { owner: String, limit: usize },
    /// The cursor table lacks what the service needs (made by hand, or by a
    /// stack not yet updated): retrying cannot help, an operator must.
    #[error("{0}")]
    Misconfigured(String),
}

/// The per-owner quota: `held` live subscriptions of `sub`'s owner leave
/// room for it, or `TooMany`.
pub(crate) fn check_quota(
    sub: &Subscription,
    held: usize,
    limit: usize,
) -> Result<(), CursorError> {
    if held >= limit {
        return Err(CursorError::TooMany {
            owner: sub.principal.clone(),
            limit,
        });
    }
    Ok(())
}

/// The owner of a caller's subscriptions. An assumed-role session belongs to
/// its role, so a restarted task or Lambda (a new session name) still
/// reaches what it created; a role is named without its path, as the
/// session ARN names it. Other principals own as themselves.
pub fn owner_of(caller: &str) -> String {
    let parts: Vec<&str> = caller.splitn(6, ':').collect();
    if let [_, partition, service, _, account, resource] = parts[..] {
        let role = match (service, resource.split_once('/')) {
            // assumed-role/ROLE/SESSION
            ("sts", Some(("assumed-role", rest))) => rest.split('/').next(),
            // role/PATH/ROLE
            ("iam", Some(("role", rest))) => rest.rsplit('/').next(),
            _ => None,
        };
        if let Some(role) = role.filter(|r| !r.is_empty()) {
            return format!("arn:{partition}:iam::{account}:role/{role}");
        }
    }
    caller.to_string()
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
    /// The identity of the store its cursor counts in (None: made before
    /// stores had one).
    pub store: Option<String>,
}

#[async_trait]
pub trait CursorStore: Send + Sync {
    /// Stores a new subscription, unless its principal already holds
    /// `max_per_owner` live ones at `now` (then `TooMany`).
    async fn create(
        &self,
        sub: &Subscription,
        max_per_owner: usize,
        now: i64,
    ) -> Result<(), CursorError>;
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

#[cfg(test)]
mod tests {
    use super::{check_quota, owner_of, CursorError, Subscription};

    #[test]
    fn the_quota_refuses_only_at_the_limit_naming_owner_and_limit() {
        let sub = Subscription {
            id: "s1".into(),
            principal: "arn:aws:iam::111122223333:role/ops".into(),
            resource: "tasks".into(),
            filters: Default::default(),
            cursor: 1,
            expires_at: 10,
            created_at: 0,
            store: None,
        };
        assert!(check_quota(&sub, 0, 2).is_ok());
        assert!(check_quota(&sub, 1, 2).is_ok());
        match check_quota(&sub, 2, 2) {
            Err(CursorError::TooMany { owner, limit }) => {
                assert_eq!((owner.as_str(), limit), (sub.principal.as_str(), 2))
            }
            other => panic!("over the quota: {other:?}"),
        }
    }

    #[test]
    fn an_assumed_role_session_is_owned_by_its_role() {
        for (caller, owner) in [
            (
                "arn:aws:sts::123456789012:assumed-role/ops/alice",
                "arn:aws:iam::123456789012:role/ops",
            ),
            (
                "arn:aws:sts::123456789012:assumed-role/ops/i-0abc",
                "arn:aws:iam::123456789012:role/ops",
            ),
            // Path-insensitive, as IAM names the session's role.
            (
                "arn:aws:iam::123456789012:role/platform/team/ops",
                "arn:aws:iam::123456789012:role/ops",
            ),
            (
                "arn:aws-cn:sts::123456789012:assumed-role/ops/x",
                "arn:aws-cn:iam::123456789012:role/ops",
            ),
            (
                "arn:aws:iam::123456789012:user/alice",
                "arn:aws:iam::123456789012:user/alice",
            ),
            ("local", "local"),
            ("AROAX:s", "AROAX:s"),
        ] {
            assert_eq!(owner_of(caller), owner, "{caller}");
        }
    }
}
