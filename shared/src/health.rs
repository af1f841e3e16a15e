//! Member health (docs/reference.md#deploying-and-operating): every etcd
//! member's own status, read through the maintenance API by the scheduled
//! function (server mode: a background loop) and by `GET /v1/status`; the
//! figures operators alarm on (members up, a leader, leader changes,
//! database size against the quota, raft index lag); and the scheduled
//! defragmentation, one member at a time.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::store::{MemberStatus, StateStore, StoreResult};

const LEADER: &str = "health/leader";
const DEFRAG: &str = "health/defrag";
/// A member is defragmented when at least this share of its file is free...
pub const DEFRAG_FREE_SHARE: f64 = 0.5;
/// ...and the file is at least this large (smaller ones cost nothing).
pub const DEFRAG_MIN_BYTES: i64 = 64 << 20;
/// At most one member per this long: never two at once, never in a row.
pub const DEFRAG_GAP: Duration = Duration::from_secs(3600);

/// The cluster as its members answered.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Health {
    pub members: Vec<MemberStatus>,
    pub members_up: usize,
    /// The leader the members that answered agree on (hex id).
    pub leader: Option<String>,
    /// Leader changes seen so far (by the processes that checked).
    pub leader_changes: u64,
    /// The largest member database file, and its share of the quota.
    pub db_size_max: i64,
    pub quota_bytes: i64,
    pub quota_used: f64,
    /// Raft index of the furthest member minus that of the one furthest behind.
    pub raft_index_lag: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LeaderRecord {
    leader: Option<String>,
    changes: u64,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DefragRecord {
    endpoint: String,
    at_ms: i64,
}

fn millis(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The members' health; None for a store without members (embedded).
/// A leader other than the last one recorded counts as a change.
pub async fn check(store: &dyn StateStore, quota_bytes: i64) -> StoreResult<Option<Health>> {
    let members = store.members().await?;
    if members.is_empty() {
        return Ok(None);
    }
    let up: Vec<&MemberStatus> = members.iter().filter(|m| m.up).collect();
    // The leader most members that answered name.
    let mut named: Vec<&String> = up.iter().filter_map(|m| m.leader.as_ref()).collect();
    named.sort();
    let leader = (named.iter())
        .max_by_key(|l| named.iter().filter(|x| x == l).count())
        .map(|l| l.to_string());
    let indexes: Vec<u64> = up.iter().filter_map(|m| m.raft_index).collect();
    let lag = match (indexes.iter().max(), indexes.iter().min()) {
        (Some(a), Some(b)) => a - b,
        _ => 0,
    };
    let db_size_max = members.iter().filter_map(|m| m.db_size).max().unwrap_or(0);
    let mut record: LeaderRecord = match store.get_meta(LEADER).await {
        Ok(Some(b)) => serde_json::from_slice(&b).unwrap_or_default(),
        _ => LeaderRecord::default(),
    };
    if leader.is_some() && leader != record.leader {
        if record.leader.is_some() {
            record.changes += 1;
            crate::metrics::etcd_leader_change();
        }
        record.leader = leader.clone();
        // The store may be out of space (NOSPACE): the record is a nicety.
        let json = serde_json::to_vec(&record).unwrap_or_default();
        if let Err(e) = store.put_meta(LEADER, Bytes::from(json)).await {
            tracing::warn!(error = %e, "leader not recorded");
        }
    }
    Ok(Some(Health {
        members_up: up.len(),
        leader,
        leader_changes: record.changes,
        db_size_max,
        quota_bytes,
        quota_used: db_size_max as f64 / quota_bytes.max(1) as f64,
        raft_index_lag: lag,
        members,
    }))
}

impl Health {
    /// As metrics (the alarms' figures).
    pub fn record(&self) {
        crate::metrics::etcd_health(&crate::metrics::EtcdFigures {
            members: self.members.len() as u64,
            members_up: self.members_up as u64,
            has_leader: self.leader.is_some(),
            db_size_max: self.db_size_max as u64,
            quota_used: self.quota_used,
            raft_index_lag: self.raft_index_lag,
        });
    }

    /// The member to defragment now, if any: every member up under a
    /// leader (a defragmentation stalls its member), the one with the most
    /// free space in its file, if that is at least half the file and the
    /// file is large enough to matter.
    pub fn defrag_candidate(&self) -> Option<&MemberStatus> {
        if self.members_up < self.members.len() || self.leader.is_none() {
            return None;
        }
        let free = |m: &MemberStatus| match (m.db_size, m.db_size_in_use) {
            (Some(size), Some(used)) => size - used,
            _ => 0,
        };
        (self.members.iter())
            .filter(|m| {
                let size = m.db_size.unwrap_or(0);
                size >= DEFRAG_MIN_BYTES && free(m) as f64 >= DEFRAG_FREE_SHARE * size as f64
            })
            .max_by_key(|m| free(m))
    }
}

/// Defragments at most one member, when one needs it and none was in the
/// last `DEFRAG_GAP`; answers the member's endpoint.
pub async fn defragment_if_due(
    store: &dyn StateStore,
    health: &Health,
    now: SystemTime,
) -> StoreResult<Option<String>> {
    let Some(member) = health.defrag_candidate() else {
        return Ok(None);
    };
    let last: Option<DefragRecord> = match store.get_meta(DEFRAG).await {
        Ok(Some(b)) => serde_json::from_slice(&b).ok(),
        _ => None,
    };
    if last.is_some_and(|l| millis(now) - l.at_ms < DEFRAG_GAP.as_millis() as i64) {
        return Ok(None);
    }
    // Recorded first: a run that dies mid-way does not start another soon.
    let record = DefragRecord {
        endpoint: member.endpoint.clone(),
        at_ms: millis(now),
    };
    let json = serde_json::to_vec(&record).unwrap_or_default();
    store.put_meta(DEFRAG, Bytes::from(json)).await?;
    store.defragment(&member.endpoint).await?;
    crate::metrics::etcd_defragmented();
    tracing::info!(member = %member.endpoint, "defragmented");
    Ok(Some(member.endpoint.clone()))
}

/// What a scheduled run does: check, record, defragment one member if due.
pub async fn tick(store: &dyn StateStore, quota_bytes: i64) -> StoreResult<Option<Health>> {
    let Some(h) = check(store, quota_bytes).await? else {
        return Ok(None);
    };
    h.record();
    if let Err(e) = defragment_if_due(store, &h, SystemTime::now()).await {
        tracing::warn!(error = %e, "defragmentation failed; the next run tries again");
    }
    Ok(Some(h))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(endpoint: &str, up: bool, size: i64, used: i64) -> MemberStatus {
        MemberStatus {
            endpoint: endpoint.into(),
            up,
            id: Some("a1".into()),
            leader: up.then(|| "a1".to_string()),
            raft_index: Some(10),
            raft_term: Some(2),
            db_size: Some(size),
            db_size_in_use: Some(used),
            error: None,
        }
    }

    fn health(members: Vec<MemberStatus>) -> Health {
        Health {
            members_up: members.iter().filter(|m| m.up).count(),
            leader: Some("a1".into()),
            leader_changes: 0,
            db_size_max: 0,
            quota_bytes: 1,
            quota_used: 0.0,
            raft_index_lag: 0,
            members,
        }
    }

    #[test]
    fn the_most_fragmented_large_member_only_when_all_are_up() {
        const M: i64 = 1 << 20;
        let h = health(vec![
            member("a", true, 200 * M, 150 * M),
            member("b", true, 200 * M, 60 * M),
            member("c", true, 300 * M, 120 * M),
        ]);
        assert_eq!(h.defrag_candidate().map(|m| m.endpoint.as_str()), Some("c"));
        // Small files are left alone, however empty.
        let small = health(vec![member("a", true, 10 * M, M)]);
        assert!(small.defrag_candidate().is_none());
        // A member down: no defragmentation stalls another.
        let down = health(vec![
            member("a", true, 300 * M, 10 * M),
            member("b", false, 0, 0),
        ]);
        assert!(down.defrag_candidate().is_none());
        let mut leaderless = health(vec![member("a", true, 300 * M, 10 * M)]);
        leaderless.leader = None;
        assert!(leaderless.defrag_candidate().is_none());
    }
}
