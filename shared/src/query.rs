//! List and describe with filters and snapshot pagination (docs/reference.md#http-api).
//!
//! `cluster` and `status` are served by the store's key layout (one range
//! read over exactly the matching records); the other filters are checked on
//! each record read. Every page of a list is read at the first page's
//! revision; a page token carries that revision, the last key read and the
//! filters' fingerprint.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::filter::{Filters, ResourceRef};
use crate::limits::{item_size, MAX_ITEMS_BYTES, MAX_LIMIT};
use crate::model::{ClusterId, EntityKey, Kind};
use crate::store::{ClusterScope, ListRequest, StateStore, StoreError, StoredRecord};

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// Input the query cannot serve, naming the API parameter it came from.
    #[error("{message}")]
    BadParam { name: String, message: String },
    #[error("not found")]
    NotFound,
    /// A page token of another store (docs/reference.md#watching).
    #[error("a page token of another store")]
    OtherStore { oldest: i64, current: i64 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn bad(name: &str, message: impl Into<String>) -> QueryError {
    QueryError::BadParam {
        name: name.to_string(),
        message: message.into(),
    }
}

/// One page of a list: what to read and from where.
#[derive(Debug, Clone)]
pub struct ListQuery {
    pub filters: Filters,
    pub limit: usize,
    /// The previous page's token.
    pub next_token: Option<String>,
}

/// One page: the matching records, the snapshot revision, and a token when
/// more may follow.
#[derive(Debug)]
pub struct ListOutput {
    pub records: Vec<StoredRecord>,
    pub revision: i64,
    pub next_token: Option<String>,
    /// The store's identity (docs/reference.md#watching).
    pub store: String,
}

#[derive(Serialize, Deserialize)]
struct PageToken {
    /// Snapshot revision.
    r: i64,
    /// Last store key consumed.
    k: String,
    /// Filters' fingerprint.
    f: u64,
    /// The store's identity (absent in tokens minted before stores had one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    s: Option<String>,
}

fn encode_token(t: &PageToken) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(t).unwrap_or_default())
}

fn decode_token(s: &str, filters: &Filters) -> Result<PageToken, QueryError> {
    let invalid = || bad("nextToken", "'nextToken' is not a token of this list");
    let bytes = URL_SAFE_NO_PAD.decode(s).map_err(|_| invalid())?;
    let t: PageToken = serde_json::from_slice(&bytes).map_err(|_| invalid())?;
    if t.f != filters.fingerprint() || t.r <= 0 {
        return Err(invalid());
    }
    Ok(t)
}

pub async fn list(store: &dyn StateStore, q: &ListQuery) -> Result<ListOutput, QueryError> {
    let (filters, limit) = (&q.filters, q.limit);
    let token = q
        .next_token
        .as_deref()
        .map(|t| decode_token(t, filters))
        .transpose()?;
    let id = store.identity().await?;
    if let Some(other) = token.as_ref().and_then(|t| t.s.as_deref()) {
        if other != id {
            let current = store.current_revision().await?;
            let oldest = (store.compacted_revision().await? - 1).max(0);
            return Err(QueryError::OtherStore { oldest, current });
        }
    }
    let output = |records, revision, after| output(records, revision, after, filters, &id);
    let exact = !filters.post_filtered();
    let mut req = ListRequest {
        kind: filters.kind,
        cluster: filters.cluster.clone(),
        status: filters.status.map(str::to_string),
        start_after: token.as_ref().map(|t| t.k.clone()),
        // Post-filtered lists read ahead; exact ones read what they return.
        limit: if exact {
            limit
        } else {
            (limit * 2).clamp(200, MAX_LIMIT)
        },
        revision: token.as_ref().map(|t| t.r),
    };
    let mut items = Vec::new();
    let mut bytes = 0usize;
    loop {
        let page = store.list(&req).await?;
        req.revision = Some(page.revision);
        let n = page.records.len();
        for (i, rec) in page.records.iter().enumerate() {
            if !exact && !filters.matches(rec) {
                continue;
            }
            let size = item_size(rec)?;
            if bytes + size > MAX_ITEMS_BYTES && !items.is_empty() {
                // Stop before the record that does not fit; it starts the next page.
                let k = req.start_after.clone().unwrap_or_default();
                let k = if i == 0 {
                    k
                } else {
                    page.records[i - 1].store_key.clone()
                };
                return Ok(output(items, page.revision, Some(k)));
            }
            bytes += size;
            items.push(rec.clone());
            if items.len() == limit {
                let more = i + 1 < n || page.more;
                let next = more.then(|| rec.store_key.clone());
                return Ok(output(items, page.revision, next));
            }
        }
        if !page.more || n == 0 {
            return Ok(output(items, page.revision, None));
        }
        req.start_after = page.records.last().map(|r| r.store_key.clone());
    }
}

fn output(
    records: Vec<StoredRecord>,
    revision: i64,
    after: Option<String>,
    filters: &Filters,
    store: &str,
) -> ListOutput {
    ListOutput {
        records,
        revision,
        next_token: after.map(|k| {
            encode_token(&PageToken {
                r: revision,
                k,
                f: filters.fingerprint(),
                s: Some(store.to_string()),
            })
        }),
        store: store.to_string(),
    }
}

/// Finds one task, container instance or service by cluster (name or ARN)
/// and ARN, bare id or (services) name.
pub async fn describe(
    store: &dyn StateStore,
    kind: Kind,
    scope: ClusterScope,
    id: &ResourceRef,
) -> Result<StoredRecord, QueryError> {
    let (bare_id, from_arn) = (id.id.clone(), id.arn.as_ref());
    let cluster_id = match (&scope, from_arn) {
        (ClusterScope::Exact(c), _) => Some(c.clone()),
        (ClusterScope::Named(name), Some(arn)) => Some(ClusterId {
            name: name.clone(),
            partition: arn.partition.clone(),
            region: arn.region.clone(),
            account: arn.account.clone(),
        }),
        _ => None,
    };
    if let (Some(c), Some(arn)) = (&cluster_id, from_arn) {
        if arn.place() != c.place() || arn.cluster.as_ref().is_some_and(|n| *n != c.name) {
            return Err(QueryError::NotFound);
        }
    }
    if let Some(cluster) = cluster_id {
        let key = EntityKey {
            kind,
            cluster,
            id: bare_id,
        };
        return store.get(&key, None).await?.ok_or(QueryError::NotFound);
    }
    // A bare id in a cluster named without account or region: search that
    // cluster name's records (in every account and region).
    let mut req = ListRequest {
        kind,
        cluster: scope,
        status: None,
        start_after: None,
        limit: MAX_LIMIT,
        revision: None,
    };
    loop {
        let page = store.list(&req).await?;
        if let Some(r) = page.records.iter().find(|r| r.key.id == bare_id) {
            return Ok(r.clone());
        }
        if !page.more {
            return Err(QueryError::NotFound);
        }
        req.revision = Some(page.revision);
        req.start_after = page.records.last().map(|r| r.store_key.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Arn;

    fn filters() -> Filters {
        Filters {
            cluster: ClusterScope::Exact(
                ClusterId::from_arn("arn:aws:ecs:us-east-1:123456789012:cluster/web").unwrap(),
            ),
            status: Some("RUNNING"),
            launch_type: Some("EC2".into()),
            container_instance: Some(ResourceRef {
                id: "abc".into(),
                arn: Some(
                    Arn::parse("arn:aws:ecs:us-east-1:123456789012:container-instance/web/abc")
                        .unwrap(),
                ),
            }),
            ..Filters::all(Kind::Task)
        }
    }

    /// A token minted by an earlier build must still be accepted: the
    /// fingerprint is pinned, so a change of its encoding fails here.
    #[test]
    fn page_tokens_are_stable_across_builds() {
        let f = filters();
        let token = encode_token(&PageToken {
            r: 42,
            k: "/ecs-css/v1/tasks/web/x".into(),
            f: f.fingerprint(),
            s: None,
        });
        assert_eq!(token, GOLDEN_TOKEN);
        assert!(decode_token(GOLDEN_TOKEN, &f).is_ok());
        // The canonical text of the unfiltered task list, hashed by FNV-1a.
        let text = "kind=5:tasks;cluster=0:;status-;desiredStatus-;startedBy-;group-;launchType-;containerInstance-;";
        let fnv = text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
        });
        assert_eq!(Filters::all(Kind::Task).fingerprint(), fnv);
    }

    /// The fingerprint's canonical text with every filter set, as it was
    /// written field by field before the filters became one table: the
    /// original filters always (`-` when unset), the later ones when set.
    #[test]
    fn fingerprints_keep_their_canonical_text_for_every_filter() {
        let fnv = |text: &str| {
            text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
                (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
            })
        };
        let task = Filters {
            desired_status: Some("STOPPED"),
            started_by: Some("ecs-svc/1".into()),
            group: Some("service:web".into()),
            service: Some("web".into()),
            ..filters()
        };
        assert_eq!(
            task.fingerprint(),
            fnv("kind=5:tasks;cluster=34:arn:aws:us-east-1:123456789012:web;status=7:RUNNING;\
                 desiredStatus=7:STOPPED;startedBy=9:ecs-svc/1;group=11:service:web;launchType=3:EC2;\
                 containerInstance=34:aws:us-east-1:123456789012:web:abc;service=3:web;")
        );
        let service = Filters {
            cluster: ClusterScope::Named("web".into()),
            status: Some("ACTIVE"),
            launch_type: Some("FARGATE".into()),
            scheduling_strategy: Some("DAEMON"),
            rollout_state: Some("IN_PROGRESS"),
            ..Filters::all(Kind::Service)
        };
        assert_eq!(
            service.fingerprint(),
            fnv("kind=8:services;cluster=8:name:web;status=6:ACTIVE;desiredStatus-;startedBy-;group-;\
                 launchType=7:FARGATE;containerInstance-;schedulingStrategy=6:DAEMON;rolloutState=11:IN_PROGRESS;")
        );
    }

    const GOLDEN_TOKEN: &str =
        "eyJyIjo0MiwiayI6Ii9lY3MtY3NzL3YxL3Rhc2tzL3dlYi94IiwiZiI6MTE4NzY3MTU5MzMyNzcyNzI2MzZ9";

    #[test]
    fn a_token_works_only_with_its_own_filters() {
        let f = filters();
        let token = output(Vec::new(), 7, Some("/p/k".into()), &f, "ab12")
            .next_token
            .unwrap();
        let t = decode_token(&token, &f).unwrap();
        assert_eq!((t.r, t.k.as_str()), (7, "/p/k"));
        for other in [
            Filters::all(Kind::Task),
            Filters::all(Kind::Instance),
            Filters {
                status: Some("STOPPED"),
                ..filters()
            },
            Filters {
                launch_type: Some("FARGATE".into()),
                ..filters()
            },
            Filters {
                cluster: ClusterScope::Named("web".into()),
                ..filters()
            },
        ] {
            assert!(decode_token(&token, &other).is_err(), "{other:?}");
        }
    }

    #[test]
    fn malformed_tokens_are_refused_naming_next_token() {
        let f = Filters::all(Kind::Task);
        let zero = encode_token(&PageToken {
            r: 0,
            k: String::new(),
            f: f.fingerprint(),
            s: None,
        });
        for bad in ["", "!!!", "e30", "bm90IGpzb24", zero.as_str()] {
            match decode_token(bad, &f) {
                Err(QueryError::BadParam { name, .. }) => assert_eq!(name, "nextToken"),
                other => panic!("{bad:?}: {:?}", other.map(|t| t.r)),
            }
        }
    }
}
