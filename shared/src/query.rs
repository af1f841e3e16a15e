//! List and describe with filters and snapshot pagination (SPEC §4).
//!
//! `cluster` and `status` are served by the store's key layout (one range
//! read over exactly the matching records); the other filters are checked on
//! each record read. Every page of a list is read at the first page's revision.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::model::{is_cluster_name, is_resource_id, Arn, ClusterId, EntityKey, Fields, Kind};
use crate::store::{ClusterScope, ListRequest, StateStore, StoreError, StoredRecord};

/// Largest list or watch answer: Lambda's response limit is 6 MB.
pub const MAX_PAGE_BYTES: usize = 5_000_000;
/// Bytes of items in one page, leaving room for the envelope and token.
const MAX_ITEM_BYTES: usize = MAX_PAGE_BYTES - 1_000;
pub const DEFAULT_LIMIT: usize = 100;
pub const MAX_LIMIT: usize = 1000;

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("{message}")]
    BadParam { name: String, message: String },
    #[error("not found")]
    NotFound,
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn bad(name: &str, message: impl Into<String>) -> QueryError {
    QueryError::BadParam {
        name: name.to_string(),
        message: message.into(),
    }
}

/// Query parameters: each known at most once, unknown ones refused.
#[derive(Debug, Default)]
pub struct Params(Vec<(String, String)>);

impl Params {
    pub fn parse(raw: Option<&str>, allowed: &[&str]) -> Result<Params, QueryError> {
        let mut out: Vec<(String, String)> = Vec::new();
        for (k, v) in form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
            if !allowed.contains(&k.as_ref()) {
                return Err(bad(&k, format!("unknown query parameter '{k}'")));
            }
            if out.iter().any(|(seen, _)| *seen == k) {
                return Err(bad(&k, format!("query parameter '{k}' is repeated")));
            }
            out.push((k.into_owned(), v.into_owned()));
        }
        Ok(Params(out))
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// An integer parameter within `range`, or `default` when absent.
    pub fn int(
        &self,
        name: &str,
        range: std::ops::RangeInclusive<u64>,
        default: u64,
    ) -> Result<u64, QueryError> {
        match self.get(name) {
            None => Ok(default),
            Some(v) => match v.parse::<u64>() {
                Ok(n) if range.contains(&n) => Ok(n),
                _ => Err(bad(
                    name,
                    format!(
                        "'{name}' must be an integer from {} to {}",
                        range.start(),
                        range.end()
                    ),
                )),
            },
        }
    }
}

/// A container instance named by ARN (either format) or bare id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceRef {
    pub id: String,
    pub arn: Option<Arn>,
}

impl InstanceRef {
    fn matches(&self, arn: Option<&str>) -> bool {
        let Some(parsed) = arn.and_then(|a| Arn::parse(a).ok()) else {
            return false;
        };
        if parsed.id != self.id {
            return false;
        }
        match &self.arn {
            None => true,
            Some(want) => {
                (
                    want.partition.as_str(),
                    want.region.as_str(),
                    want.account.as_str(),
                ) == (
                    parsed.partition.as_str(),
                    parsed.region.as_str(),
                    parsed.account.as_str(),
                ) && match (&want.cluster, &parsed.cluster) {
                    (Some(a), Some(b)) => a == b,
                    _ => true,
                }
            }
        }
    }
}

pub fn parse_cluster(name: &str, value: &str) -> Result<ClusterScope, QueryError> {
    if value.starts_with("arn:") {
        return ClusterId::from_arn(value)
            .map(ClusterScope::Exact)
            .map_err(|e| bad(name, format!("'{name}': {e}")));
    }
    if is_cluster_name(value) {
        return Ok(ClusterScope::Named(value.to_string()));
    }
    Err(bad(
        name,
        format!("'{name}' must be a cluster name or cluster ARN, got {value:?}"),
    ))
}

/// The list filters of SPEC §4; also applied to watch events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filters {
    pub kind: Kind,
    pub cluster: ClusterScope,
    pub status: Option<&'static str>,
    pub desired_status: Option<&'static str>,
    pub started_by: Option<String>,
    pub group: Option<String>,
    pub launch_type: Option<String>,
    pub container_instance: Option<InstanceRef>,
}

/// Filter parameters per kind.
pub fn filter_params(kind: Kind) -> &'static [&'static str] {
    match kind {
        Kind::Task => &[
            "cluster",
            "status",
            "desiredStatus",
            "startedBy",
            "group",
            "launchType",
            "containerInstance",
        ],
        Kind::Instance => &["cluster", "status"],
    }
}

impl Filters {
    pub fn all(kind: Kind) -> Filters {
        Filters {
            kind,
            cluster: ClusterScope::All,
            status: None,
            desired_status: None,
            started_by: None,
            group: None,
            launch_type: None,
            container_instance: None,
        }
    }

    pub fn from_params(kind: Kind, p: &Params) -> Result<Filters, QueryError> {
        let mut f = Filters::all(kind);
        if let Some(c) = p.get("cluster") {
            f.cluster = parse_cluster("cluster", c)?;
        }
        if let Some(s) = p.get("status") {
            f.status = Some(kind.parse_status(s).ok_or_else(|| {
                bad(
                    "status",
                    format!("'status' must be one of {}", kind.statuses().join(", ")),
                )
            })?);
        }
        if kind == Kind::Instance {
            return Ok(f);
        }
        if let Some(s) = p.get("desiredStatus") {
            f.desired_status = Some(Kind::Task.parse_status(s).ok_or_else(|| {
                bad(
                    "desiredStatus",
                    format!("'desiredStatus' must be one of {}", TASK_DESIRED.join(", ")),
                )
            })?);
        }
        for (name, slot) in [("startedBy", &mut f.started_by), ("group", &mut f.group)] {
            if let Some(v) = p.get(name) {
                if v.is_empty() || v.len() > 1024 {
                    return Err(bad(name, format!("'{name}' must be 1 to 1024 characters")));
                }
                *slot = Some(v.to_string());
            }
        }
        if let Some(v) = p.get("launchType") {
            // ECS's launch types and future ones of the same shape: a letter,
            // then letters, digits and `_` (EC2, FARGATE, MANAGED_INSTANCES).
            if v.len() > 64
                || !v.starts_with(|c: char| c.is_ascii_alphabetic())
                || !v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            {
                return Err(bad(
                    "launchType",
                    "'launchType' must be a launch type such as EC2, FARGATE or EXTERNAL",
                ));
            }
            f.launch_type = Some(v.to_ascii_uppercase());
        }
        if let Some(v) = p.get("containerInstance") {
            f.container_instance = Some(if v.starts_with("arn:") {
                let arn = Arn::parse_as(v, "container-instance")
                    .map_err(|e| bad("containerInstance", format!("'containerInstance': {e}")))?;
                InstanceRef {
                    id: arn.id.clone(),
                    arn: Some(arn),
                }
            } else if is_resource_id(v) {
                InstanceRef {
                    id: v.to_string(),
                    arn: None,
                }
            } else {
                return Err(bad(
                    "containerInstance",
                    "'containerInstance' must be a container instance ARN or id",
                ));
            });
        }
        Ok(f)
    }

    /// True when filters beyond cluster and status need the entity's fields.
    pub fn needs_fields(&self) -> bool {
        self.desired_status.is_some()
            || self.started_by.is_some()
            || self.group.is_some()
            || self.launch_type.is_some()
            || self.container_instance.is_some()
    }

    /// Does the record match every filter?
    pub fn matches(&self, record: &StoredRecord) -> bool {
        if record.key.kind != self.kind || !self.cluster_matches(&record.key) {
            return false;
        }
        let Ok(meta) = record.meta() else {
            return false;
        };
        if let Some(s) = self.status {
            if meta.status != s {
                return false;
            }
        }
        if !self.needs_fields() {
            return true;
        }
        let Ok(f) = Fields::parse(&meta.entity) else {
            return false;
        };
        let eq = |want: &Option<String>, got: &Option<String>| {
            want.as_ref()
                .is_none_or(|w| got.as_deref() == Some(w.as_str()))
        };
        let eq_ci = |want: Option<&str>, got: &Option<String>| {
            want.is_none_or(|w| got.as_deref().is_some_and(|g| g.eq_ignore_ascii_case(w)))
        };
        eq_ci(self.desired_status, &f.desired_status)
            && eq(&self.started_by, &f.started_by)
            && eq(&self.group, &f.group)
            && eq_ci(self.launch_type.as_deref(), &f.launch_type)
            && self
                .container_instance
                .as_ref()
                .is_none_or(|ci| ci.matches(f.container_instance_arn.as_deref()))
    }

    fn cluster_matches(&self, key: &EntityKey) -> bool {
        match &self.cluster {
            ClusterScope::All => true,
            ClusterScope::Named(n) => key.cluster.name == *n,
            ClusterScope::Exact(c) => key.cluster == *c,
        }
    }

    /// A stable fingerprint, so a page token is not reused with other filters.
    ///
    /// It hashes a canonical text written field by field here (not `Debug`,
    /// whose format may change between compiler versions), with FNV-1a
    /// (stable across processes, unlike std's hasher): a redeploy keeps
    /// outstanding tokens valid.
    fn fingerprint(&self) -> u64 {
        let cluster = match &self.cluster {
            ClusterScope::All => String::new(),
            ClusterScope::Named(n) => format!("name:{n}"),
            ClusterScope::Exact(c) => {
                format!("arn:{}:{}:{}:{}", c.partition, c.region, c.account, c.name)
            }
        };
        let instance = self.container_instance.as_ref().map(|ci| match &ci.arn {
            None => ci.id.clone(),
            Some(a) => format!(
                "{}:{}:{}:{}:{}",
                a.partition,
                a.region,
                a.account,
                a.cluster.as_deref().unwrap_or(""),
                a.id
            ),
        });
        let fields: [(&str, Option<&str>); 8] = [
            ("kind", Some(self.kind.plural())),
            ("cluster", Some(&cluster)),
            ("status", self.status),
            ("desiredStatus", self.desired_status),
            ("startedBy", self.started_by.as_deref()),
            ("group", self.group.as_deref()),
            ("launchType", self.launch_type.as_deref()),
            ("containerInstance", instance.as_deref()),
        ];
        // Length-prefixed values: no value can imitate a separator.
        let mut text = String::new();
        for (name, value) in fields {
            match value {
                Some(v) => text.push_str(&format!("{name}={}:{v};", v.len())),
                None => text.push_str(&format!("{name}-;")),
            }
        }
        text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
        })
    }
}

const TASK_DESIRED: &[&str] = &["PENDING", "RUNNING", "STOPPED"];

#[derive(Serialize, Deserialize)]
struct PageToken {
    /// Snapshot revision.
    r: i64,
    /// Last store key consumed.
    k: String,
    /// Filters' fingerprint.
    f: u64,
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

/// `{"metadata":{"entityVersion":"<rev>"},"entity":<ECS JSON>}`.
pub fn wrap(record: &StoredRecord) -> Result<String, StoreError> {
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

/// One page of a list, items already serialized.
#[derive(Debug)]
pub struct ListOutput {
    pub items: Vec<String>,
    pub revision: i64,
    pub next_token: Option<String>,
}

/// `{"<field>":[items...],"revision":"<rev>"` without the closing brace:
/// list and watch answers splice already-serialized items.
pub(crate) fn json_array_and_revision(field: &str, items: &[String], revision: i64) -> String {
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

impl ListOutput {
    /// `{"items":[...],"revision":"<rev>","nextToken"?:"..."}`.
    pub fn to_json(&self) -> String {
        let mut s = json_array_and_revision("items", &self.items, self.revision);
        if let Some(t) = &self.next_token {
            s.push_str(r#","nextToken":""#);
            s.push_str(t);
            s.push('"');
        }
        s.push('}');
        s
    }
}

pub async fn list(
    store: &dyn StateStore,
    filters: &Filters,
    limit: usize,
    next_token: Option<&str>,
) -> Result<ListOutput, QueryError> {
    let token = next_token.map(|t| decode_token(t, filters)).transpose()?;
    let exact = !filters.needs_fields();
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
            let item = wrap(rec)?;
            if bytes + item.len() + 1 > MAX_ITEM_BYTES && !items.is_empty() {
                // Stop before the record that does not fit; it starts the next page.
                let k = req.start_after.clone().unwrap_or_default();
                let k = if i == 0 {
                    k
                } else {
                    page.records[i - 1].store_key.clone()
                };
                return Ok(output(items, page.revision, Some(k), filters));
            }
            bytes += item.len() + 1;
            items.push(item);
            if items.len() == limit {
                let more = i + 1 < n || page.more;
                let next = more.then(|| rec.store_key.clone());
                return Ok(output(items, page.revision, next, filters));
            }
        }
        if !page.more || n == 0 {
            return Ok(output(items, page.revision, None, filters));
        }
        req.start_after = page.records.last().map(|r| r.store_key.clone());
    }
}

fn output(
    items: Vec<String>,
    revision: i64,
    after: Option<String>,
    filters: &Filters,
) -> ListOutput {
    ListOutput {
        items,
        revision,
        next_token: after.map(|k| {
            encode_token(&PageToken {
                r: revision,
                k,
                f: filters.fingerprint(),
            })
        }),
    }
}

/// Finds one task or instance by cluster (name or ARN) and ARN or bare id.
pub async fn describe(
    store: &dyn StateStore,
    kind: Kind,
    cluster: &str,
    id: &str,
) -> Result<StoredRecord, QueryError> {
    let scope = parse_cluster("cluster", cluster)?;
    let id_param = match kind {
        Kind::Task => "taskArnOrId",
        Kind::Instance => "instanceArnOrId",
    };
    let (bare_id, from_arn) = if id.starts_with("arn:") {
        let arn = Arn::parse_as(id, kind.arn_type())
            .map_err(|e| bad(id_param, format!("'{id_param}': {e}")))?;
        (arn.id.clone(), Some(arn))
    } else if is_resource_id(id) {
        (id.to_string(), None)
    } else {
        return Err(bad(
            id_param,
            format!("'{id_param}' must be an ARN or id, got {id:?}"),
        ));
    };
    let cluster_id = match (&scope, &from_arn) {
        (ClusterScope::Exact(c), _) => Some(c.clone()),
        (ClusterScope::Named(name), Some(arn)) => Some(ClusterId {
            name: name.clone(),
            partition: arn.partition.clone(),
            region: arn.region.clone(),
            account: arn.account.clone(),
        }),
        _ => None,
    };
    if let (Some(c), Some(arn)) = (&cluster_id, &from_arn) {
        let same_place = (c.partition.as_str(), c.region.as_str(), c.account.as_str())
            == (
                arn.partition.as_str(),
                arn.region.as_str(),
                arn.account.as_str(),
            );
        if !same_place || arn.cluster.as_ref().is_some_and(|n| *n != c.name) {
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

    fn filters(kind: Kind, query: &str) -> Result<Filters, QueryError> {
        let mut allowed = filter_params(kind).to_vec();
        allowed.push("nextToken");
        Filters::from_params(kind, &Params::parse(Some(query), &allowed)?)
    }

    #[test]
    fn every_launch_type_is_accepted() {
        for (given, kept) in [
            ("EC2", "EC2"),
            ("FARGATE", "FARGATE"),
            ("EXTERNAL", "EXTERNAL"),
            ("ec2", "EC2"),
            ("Fargate", "FARGATE"),
            // A future value of the same shape.
            ("MANAGED_INSTANCES", "MANAGED_INSTANCES"),
        ] {
            let f = filters(Kind::Task, &format!("launchType={given}"))
                .unwrap_or_else(|e| panic!("{given}: {e}"));
            assert_eq!(f.launch_type.as_deref(), Some(kept), "{given}");
        }
        for bad in [
            "",
            "0",
            "2EC",
            "_X",
            "EC 2",
            "EC2;",
            "fargate%2F",
            &"A".repeat(65),
        ] {
            match filters(Kind::Task, &format!("launchType={bad}")) {
                Err(QueryError::BadParam { name, .. }) => assert_eq!(name, "launchType", "{bad}"),
                other => panic!("{bad:?}: {other:?}"),
            }
        }
    }

    /// A token minted by an earlier build must still be accepted: the
    /// fingerprint is pinned, so a change of its encoding fails here.
    #[test]
    fn page_tokens_are_stable_across_builds() {
        let f = filters(
            Kind::Task,
            "cluster=arn:aws:ecs:us-east-1:123456789012:cluster/web&status=running&launchType=EC2\
             &containerInstance=arn:aws:ecs:us-east-1:123456789012:container-instance/web/abc",
        )
        .unwrap();
        let token = encode_token(&PageToken {
            r: 42,
            k: "/ecs-css/v1/tasks/web/x".into(),
            f: f.fingerprint(),
        });
        assert_eq!(token, GOLDEN_TOKEN);
        assert!(decode_token(GOLDEN_TOKEN, &f).is_ok());
        // Other filters: refused.
        let other = filters(Kind::Task, "cluster=web&status=running").unwrap();
        assert!(decode_token(GOLDEN_TOKEN, &other).is_err());
        // The canonical text of the unfiltered task list, hashed by FNV-1a.
        let text = "kind=5:tasks;cluster=0:;status-;desiredStatus-;startedBy-;group-;launchType-;containerInstance-;";
        let fnv = text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
        });
        assert_eq!(Filters::all(Kind::Task).fingerprint(), fnv);
    }

    const GOLDEN_TOKEN: &str =
        "eyJyIjo0MiwiayI6Ii9lY3MtY3NzL3YxL3Rhc2tzL3dlYi94IiwiZiI6MTE4NzY3MTU5MzMyNzcyNzI2MzZ9";
}
