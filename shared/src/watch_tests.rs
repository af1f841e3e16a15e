use super::*;
use crate::model::Kind;
use crate::store::{encode_record, ClusterScope, EmbeddedStore, Upsert};
use crate::testing::{entity, task};

fn record(id: &str, status: &str, version: u64, rev: i64) -> StoredRecord {
    let e = entity(Kind::Task, &task("c1", id, status, version));
    let value = encode_record(&Upsert::event(&e));
    StoredRecord::new(e.key, "k".into(), rev, 1, value)
}

fn running() -> Filters {
    Filters {
        status: Some("RUNNING"),
        ..Filters::all(Kind::Task)
    }
}

fn put(prev: Option<StoredRecord>, new: StoredRecord) -> WatchEvent {
    WatchEvent {
        event_type: EventType::Put,
        revision: new.mod_revision,
        record: Some(new),
        prev,
    }
}

fn delete(prev: StoredRecord, revision: i64) -> WatchEvent {
    WatchEvent {
        event_type: EventType::Delete,
        revision,
        record: None,
        prev: Some(prev),
    }
}

#[test]
fn a_put_that_matches_is_a_put() {
    let c = translate(&running(), &put(None, record("a", "RUNNING", 1, 5))).unwrap();
    assert_eq!((c.kind, c.revision), (ChangeKind::Put, 5));
}

#[test]
fn starting_to_match_is_a_put() {
    let before = record("a", "PENDING", 1, 4);
    let c = translate(&running(), &put(Some(before), record("a", "RUNNING", 2, 5))).unwrap();
    assert_eq!(c.kind, ChangeKind::Put);
}

#[test]
fn stopping_to_match_is_a_delete_carrying_the_new_state() {
    let before = record("a", "RUNNING", 1, 4);
    let c = translate(&running(), &put(Some(before), record("a", "STOPPED", 2, 5))).unwrap();
    assert_eq!(c.kind, ChangeKind::Delete);
    assert_eq!(c.record.meta().unwrap().status, "STOPPED");
}

#[test]
fn changes_outside_the_filter_are_not_seen() {
    let before = record("a", "PENDING", 1, 4);
    assert!(translate(&running(), &put(Some(before), record("a", "STOPPED", 2, 5))).is_none());
    assert!(translate(&running(), &put(None, record("b", "STOPPED", 1, 6))).is_none());
    assert!(translate(&running(), &delete(record("c", "STOPPED", 1, 3), 7)).is_none());
}

#[test]
fn a_delete_carries_the_last_known_state() {
    let c = translate(&running(), &delete(record("a", "RUNNING", 3, 4), 9)).unwrap();
    assert_eq!((c.kind, c.revision), (ChangeKind::Delete, 9));
    assert_eq!(c.record.meta().unwrap().ecs_version, 3);
}

#[test]
fn other_clusters_and_kinds_are_filtered_out() {
    let f = Filters {
        cluster: ClusterScope::Named("other".into()),
        ..Filters::all(Kind::Task)
    };
    assert!(translate(&f, &put(None, record("a", "RUNNING", 1, 5))).is_none());
    let f = Filters::all(Kind::Instance);
    assert!(translate(&f, &put(None, record("a", "RUNNING", 1, 5))).is_none());
}

#[test]
fn a_deployment_that_completes_leaves_the_rolling_view_as_a_delete() {
    let rec = |rollouts: &[&str], updated: &str, rev: i64| {
        let v = crate::testing::service("c1", "web", "ACTIVE", rollouts, updated);
        let e = entity(Kind::Service, &v);
        StoredRecord::new(
            e.key.clone(),
            "k".into(),
            rev,
            1,
            encode_record(&Upsert::event(&e)),
        )
    };
    let rolling = Filters {
        rollout_state: Some("IN_PROGRESS"),
        ..Filters::all(Kind::Service)
    };
    let started = rec(&["IN_PROGRESS", "COMPLETED"], "2026-11-20T10:00:00.000Z", 5);
    let steady = rec(&["COMPLETED"], "2026-11-20T09:00:00.000Z", 4);
    let c = translate(&rolling, &put(Some(steady.clone()), started.clone())).unwrap();
    assert_eq!(c.kind, ChangeKind::Put);
    let done = rec(&["COMPLETED"], "2026-11-20T10:05:00.000Z", 6);
    let c = translate(&rolling, &put(Some(started), done.clone())).unwrap();
    assert_eq!((c.kind, c.revision), (ChangeKind::Delete, 6));
    let failed = Filters {
        rollout_state: Some("FAILED"),
        ..Filters::all(Kind::Service)
    };
    assert!(translate(&failed, &put(Some(steady), done)).is_none());
}

async fn write(store: &EmbeddedStore, id: &str, status: &str, version: u64) -> i64 {
    let e = entity(Kind::Task, &task("c1", id, status, version));
    match store.upsert_if_newer(Upsert::event(&e)).await.unwrap() {
        crate::store::UpsertOutcome::Inserted { revision }
        | crate::store::UpsertOutcome::Updated { revision } => revision,
        other => panic!("{other:?}"),
    }
}

fn req(since: Option<i64>, limit: usize) -> PollRequest {
    PollRequest {
        filters: Filters::all(Kind::Task),
        since,
        wait: Duration::ZERO,
        limit,
    }
}

#[tokio::test]
async fn answers_stop_at_revision_boundaries_past_the_limit() {
    let store = EmbeddedStore::new("/t/");
    let start = store.current_revision().await.unwrap();
    let r1 = write(&store, "a", "RUNNING", 1).await;
    let r2 = write(&store, "b", "RUNNING", 1).await;
    let out = poll(&store, &req(Some(start), 1)).await.unwrap();
    assert_eq!((out.changes.len(), out.revision, out.more), (1, r1, true));
    let out = poll(&store, &req(Some(out.revision), 1)).await.unwrap();
    assert_eq!(out.changes.len(), 1);
    assert_eq!(out.changes[0].revision, r2);
    assert_eq!(out.revision, r2);
}

/// Two answers reaching the same revision from different starts differ: an
/// answer shared among watchers (api/answers.rs) is keyed by where it starts,
/// which a poll without `since` learns only from its output.
#[tokio::test]
async fn an_answer_names_where_it_starts() {
    let store = EmbeddedStore::new("/t/");
    let start = store.current_revision().await.unwrap();
    let r1 = write(&store, "a", "RUNNING", 1).await;
    let r2 = write(&store, "b", "RUNNING", 1).await;
    let from_start = poll(&store, &req(Some(start), 10)).await.unwrap();
    let from_r1 = poll(&store, &req(Some(r1), 10)).await.unwrap();
    assert_eq!((from_start.since, from_start.revision), (start, r2));
    assert_eq!((from_r1.since, from_r1.revision), (r1, r2));
    assert_eq!((from_start.changes.len(), from_r1.changes.len()), (2, 1));
    let now = poll(&store, &req(None, 10)).await.unwrap();
    assert_eq!(now.since, r2, "no since: from the current revision");
}

#[tokio::test]
async fn nothing_to_say_is_a_bookmark_at_the_current_revision() {
    let store = EmbeddedStore::new("/t/");
    let r = write(&store, "a", "RUNNING", 1).await;
    let out = poll(&store, &req(Some(r), 10)).await.unwrap();
    assert!(out.changes.is_empty());
    assert_eq!((out.revision, out.more), (r, false));
    let out = poll(&store, &req(None, 10)).await.unwrap();
    assert_eq!(out.revision, r, "no since: from now");
}

#[tokio::test]
async fn future_and_compacted_cursors_are_refused() {
    let store = EmbeddedStore::new("/t/");
    write(&store, "a", "RUNNING", 1).await;
    let r = write(&store, "a", "STOPPED", 2).await;
    assert!(matches!(
        poll(&store, &req(Some(r + 5), 10)).await,
        Err(WatchError::FutureSince { .. })
    ));
    store.compact(r).await.unwrap();
    assert!(matches!(
        poll(&store, &req(Some(1), 10)).await,
        Err(WatchError::Expired { .. })
    ));
    assert!(matches!(
        subscription_start(&store, Some(1)).await,
        Err(WatchError::Expired { .. })
    ));
    assert!(matches!(
        subscription_start(&store, Some(r + 1)).await,
        Err(WatchError::FutureSince { .. })
    ));
    assert_eq!(subscription_start(&store, None).await.unwrap(), r);
    assert_eq!(
        subscription_start(&store, Some(r - 1)).await.unwrap(),
        r - 1
    );
    assert!(check_ack(&store, r).await.is_ok());
    assert!(matches!(
        check_ack(&store, r + 1).await,
        Err(WatchError::FutureAck { .. })
    ));
}
