//! Cursors in DynamoDB (table with partition key `id`; `expiresAt` is the
//! TTL attribute). The cursor only moves forward: a conditional update.
//! The per-owner quota counts live subscriptions through the global
//! secondary index `OWNER_INDEX` (partition key `principal`, sort key
//! `expiresAt`). The index is eventually consistent and the count is not
//! atomic with the put, so concurrent creates can pass the quota by a few:
//! it is a guard against runaway clients, not an exact ledger.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client;

use super::{CursorError, CursorStore, Subscription};

/// The owner index's name (the template and tests create it).
pub const OWNER_INDEX: &str = "principal-expiresAt";

pub struct DynamoCursorStore {
    client: Client,
    table: String,
}

fn unavailable(e: impl std::error::Error) -> CursorError {
    CursorError::Unavailable(aws_sdk_dynamodb::error::DisplayErrorContext(e).to_string())
}

fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_string())
}

fn decode(item: &HashMap<String, AttributeValue>) -> Result<Subscription, CursorError> {
    let id = item
        .get("id")
        .and_then(|v| v.as_s().ok())
        .cloned()
        .unwrap_or_default();
    let corrupt = |reason: &str| CursorError::Corrupt {
        id: id.clone(),
        reason: reason.to_string(),
    };
    let text = |k: &str| {
        item.get(k)
            .and_then(|v| v.as_s().ok())
            .cloned()
            .ok_or_else(|| corrupt(k))
    };
    let num = |k: &str| {
        item.get(k)
            .and_then(|v| v.as_n().ok())
            .and_then(|v| v.parse::<i64>().ok())
            .ok_or_else(|| corrupt(k))
    };
    Ok(Subscription {
        id: id.clone(),
        principal: text("principal")?,
        resource: text("resource")?,
        filters: serde_json::from_str(&text("filters")?).map_err(|_| corrupt("filters"))?,
        cursor: num("cursor")?,
        created_at: num("createdAt")?,
        expires_at: num("expiresAt")?,
        // Absent or empty: made before stores had an identity.
        store: (item.get("store").and_then(|v| v.as_s().ok()))
            .filter(|s| !s.is_empty())
            .cloned(),
    })
}

impl DynamoCursorStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        DynamoCursorStore {
            client,
            table: table.into(),
        }
    }
}

impl DynamoCursorStore {
    /// A query of the owner index that failed: a table without the index
    /// says so (DynamoDB: ValidationException "The table does not have the
    /// specified index"; moto: ResourceNotFoundException "Invalid index:
    /// NAME"); anything else, a missing table included, is an outage.
    fn query_error<E>(&self, e: aws_sdk_dynamodb::error::SdkError<E>) -> CursorError
    where
        E: aws_sdk_dynamodb::error::ProvideErrorMetadata + std::error::Error + 'static,
    {
        let missing_index = e.as_service_error().is_some_and(|s| {
            matches!(
                s.code(),
                Some("ValidationException" | "ResourceNotFoundException")
            ) && s.message().is_some_and(|m| {
                m.contains(OWNER_INDEX) || m.contains("does not have the specified index")
            })
        });
        if missing_index {
            return CursorError::Misconfigured(format!(
                "the subscription table {} has no index {OWNER_INDEX}, which counts each owner's subscriptions: \
                 update the stack (sam deploy; template.yaml's CursorTable adds it)",
                self.table
            ));
        }
        unavailable(e)
    }
}

#[async_trait]
impl CursorStore for DynamoCursorStore {
    async fn create(
        &self,
        sub: &Subscription,
        max_per_owner: usize,
        now: i64,
    ) -> Result<(), CursorError> {
        let held = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(OWNER_INDEX)
            .key_condition_expression("principal = :p AND expiresAt >= :now")
            .expression_attribute_values(":p", s(&sub.principal))
            .expression_attribute_values(":now", n(now))
            .select(aws_sdk_dynamodb::types::Select::Count)
            .limit(i32::try_from(max_per_owner).unwrap_or(i32::MAX).max(1))
            .send()
            .await
            .map_err(|e| self.query_error(e))?
            .count;
        super::check_quota(sub, held.max(0) as usize, max_per_owner)?;
        self.client
            .put_item()
            .table_name(&self.table)
            .item("id", s(&sub.id))
            .item("principal", s(&sub.principal))
            .item("resource", s(&sub.resource))
            .item(
                "filters",
                s(&serde_json::to_string(&sub.filters).unwrap_or_default()),
            )
            .item("cursor", n(sub.cursor))
            .item("createdAt", n(sub.created_at))
            .item("expiresAt", n(sub.expires_at))
            .item("store", s(sub.store.as_deref().unwrap_or_default()))
            .condition_expression("attribute_not_exists(id)")
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn get(&self, id: &str, now: i64) -> Result<Option<Subscription>, CursorError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("id", s(id))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        // TTL deletion is lazy (up to days): expired means gone.
        match out.item {
            Some(item) => decode(&item).map(|sub| (sub.expires_at >= now).then_some(sub)),
            None => Ok(None),
        }
    }

    async fn advance(
        &self,
        id: &str,
        cursor: i64,
        expires_at: i64,
        now: i64,
    ) -> Result<Option<Subscription>, CursorError> {
        let res = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("id", s(id))
            .update_expression("SET #c = :c, expiresAt = :e")
            .condition_expression("attribute_exists(id) AND expiresAt >= :now AND #c < :c")
            .expression_attribute_names("#c", "cursor")
            .expression_attribute_values(":c", n(cursor))
            .expression_attribute_values(":e", n(expires_at))
            .expression_attribute_values(":now", n(now))
            .send()
            .await;
        match res {
            Ok(_) => {}
            // Not ahead of the stored cursor (or gone): only refresh the expiry.
            Err(SdkError::ServiceError(e))
                if matches!(e.err(), UpdateItemError::ConditionalCheckFailedException(_)) =>
            {
                let touch = self
                    .client
                    .update_item()
                    .table_name(&self.table)
                    .key("id", s(id))
                    .update_expression("SET expiresAt = :e")
                    .condition_expression(
                        "attribute_exists(id) AND expiresAt >= :now AND expiresAt < :e",
                    )
                    .expression_attribute_values(":e", n(expires_at))
                    .expression_attribute_values(":now", n(now))
                    .send()
                    .await;
                match touch {
                    Ok(_) => {}
                    Err(SdkError::ServiceError(e))
                        if matches!(
                            e.err(),
                            UpdateItemError::ConditionalCheckFailedException(_)
                        ) => {}
                    Err(e) => return Err(unavailable(e)),
                }
            }
            Err(e) => return Err(unavailable(e)),
        }
        self.get(id, now).await
    }

    async fn delete(&self, id: &str) -> Result<bool, CursorError> {
        let out = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("id", s(id))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllOld)
            .send()
            .await
            .map_err(unavailable)?;
        Ok(out.attributes.is_some_and(|a| !a.is_empty()))
    }
}
