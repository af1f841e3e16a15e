//! The state-store conformance suite: every function here runs against both
//! the etcd store and the embedded store (see tests/store_conformance.rs).

use std::time::Duration;

use css::model::{ClusterId, Entity, EntityKey, Kind};
use css::store::{
    ClusterScope, EventType, ListRequest, Source, StateStore, StoreError, Upsert, UpsertOutcome,
    WatchEvent,
};
use serde_json::Value;

use crate::fixtures::*;

fn task(cluster: &str, id: &str, status: &str, version: u64) -> Entity {
    entity(
        Kind::Task,
        &task_detail(cluster, ACCOUNT, id, status, version, true),
    )
}

async fn put(store: &dyn StateStore, e: &Entity) -> UpsertOutcome {
    store
        .upsert_if_newer(Upsert::event(e))
        .await
        .expect("upsert")
}

fn list_req(kind: Kind, cluster: ClusterScope, status: Option<&str>) -> ListRequest {
    ListRequest {
        kind,
        cluster,
        status: status.map(str::to_string),
        start_after: None,
        limit: 1000,
        revision: None,
    }
}

async fn ids(store: &dyn StateStore, req: ListRequest) -> Vec<String> {
    let page = store.list(&req).await.expect("list");
    page.records.iter().map(|r| r.key.id.clone()).collect()
}

fn entity_json(store_value: &[u8]) -> Value {
    let json = css::store::decode_value(store_value).expect("a record value");
    let v: Value = serde_json::from_slice(&json).expect("record JSON");
    v["entity"].clone()
}

/// Inserts, updates on a newer version, ignores equal and older ones.
pub async fn version_guard(store: &dyn StateStore) {
    let v1 = task("c1", "t1", "PENDING", 1);
    let v3 = task("c1", "t1", "RUNNING", 3);
    let v2 = task("c1", "t1", "STOPPED", 2);
    let r1 = match put(store, &v1).await {
        UpsertOutcome::Inserted { revision } => revision,
        other => panic!("expected insert, got {other:?}"),
    };
    let r3 = match put(store, &v3).await {
        UpsertOutcome::Updated { revision } => revision,
        other => panic!("expected update, got {other:?}"),
    };
    assert!(r3 > r1);
    assert_eq!(
        put(store, &v2).await,
        UpsertOutcome::Unchanged { mod_revision: r3 }
    );
    assert_eq!(
        put(store, &v3).await,
        UpsertOutcome::Unchanged { mod_revision: r3 }
    );
    assert_eq!(
        store.current_revision().await.unwrap(),
        r3,
        "stale writes do not bump the revision"
    );
    let got = store.get(&v1.key, None).await.unwrap().expect("stored");
    assert_eq!(got.mod_revision, r3);
    assert_eq!(got.create_revision, r1);
    let meta = got.meta().unwrap();
    assert_eq!(meta.ecs_version, 3);
    assert_eq!(meta.source, Source::Event);
    assert_eq!(meta.entity.get(), v3.raw.get(), "entity kept byte for byte");
    // An older revision still shows the old version.
    let old = store
        .get(&v1.key, Some(r1))
        .await
        .unwrap()
        .expect("old version");
    assert_eq!(old.meta().unwrap().ecs_version, 1);
    assert!(store.get(&v1.key, Some(r1 - 1)).await.unwrap().is_none());
}

/// The status index follows the record and lists read only matching keys.
pub async fn status_index_and_scopes(store: &dyn StateStore) {
    let a = entity(
        Kind::Task,
        &task_detail("prod", ACCOUNT, "a1", "RUNNING", 1, true),
    );
    let b = entity(
        Kind::Task,
        &task_detail("prod", OTHER_ACCOUNT, "b1", "RUNNING", 1, true),
    );
    let c = entity(
        Kind::Task,
        &task_detail("prod-2", ACCOUNT, "c1", "RUNNING", 1, false),
    );
    let d = entity(
        Kind::Task,
        &task_detail("prod", ACCOUNT, "d1", "STOPPED", 1, true),
    );
    let i = entity(
        Kind::Instance,
        &instance_detail("prod", ACCOUNT, "i1", "ACTIVE", 1),
    );
    for e in [&a, &b, &c, &d, &i] {
        put(store, e).await;
    }
    let named = ClusterScope::Named("prod".into());
    let exact = ClusterScope::Exact(a.key.cluster.clone());
    assert_eq!(
        ids(store, list_req(Kind::Task, named.clone(), None))
            .await
            .len(),
        3
    );
    let mut running = ids(store, list_req(Kind::Task, named.clone(), Some("RUNNING"))).await;
    running.sort();
    assert_eq!(
        running,
        vec!["a1", "b1"],
        "same-named clusters in two accounts both match a name"
    );
    assert_eq!(
        ids(store, list_req(Kind::Task, exact.clone(), Some("RUNNING"))).await,
        vec!["a1"]
    );
    assert_eq!(
        ids(store, list_req(Kind::Task, exact.clone(), None)).await,
        vec!["a1", "d1"]
    );
    assert_eq!(
        ids(
            store,
            list_req(Kind::Task, ClusterScope::All, Some("RUNNING"))
        )
        .await
        .len(),
        3
    );
    assert_eq!(
        ids(store, list_req(Kind::Task, ClusterScope::All, None))
            .await
            .len(),
        4
    );
    assert_eq!(
        ids(store, list_req(Kind::Instance, ClusterScope::All, None)).await,
        vec!["i1"]
    );
    assert_eq!(
        ids(
            store,
            list_req(Kind::Instance, named.clone(), Some("ACTIVE"))
        )
        .await,
        vec!["i1"]
    );

    // Status change moves the index entry in the same revision.
    let a2 = entity(
        Kind::Task,
        &task_detail("prod", ACCOUNT, "a1", "STOPPED", 2, true),
    );
    put(store, &a2).await;
    assert_eq!(
        ids(store, list_req(Kind::Task, exact.clone(), Some("RUNNING"))).await,
        Vec::<String>::new()
    );
    let stopped = store
        .list(&list_req(Kind::Task, exact, Some("STOPPED")))
        .await
        .unwrap();
    assert_eq!(stopped.records.len(), 2);
    let primary = store.get(&a2.key, None).await.unwrap().unwrap();
    let via_index = stopped.records.iter().find(|r| r.key.id == "a1").unwrap();
    assert_eq!(
        via_index.value, primary.value,
        "index copy equals the record"
    );
    assert_eq!(via_index.mod_revision, primary.mod_revision);
}

/// Pages continue at one revision, whatever is written meanwhile.
pub async fn snapshot_pagination(store: &dyn StateStore) {
    for n in 0..25 {
        put(store, &task("c1", &format!("t{n:02}"), "RUNNING", 1)).await;
    }
    let mut req = list_req(
        Kind::Task,
        ClusterScope::Named("c1".into()),
        Some("RUNNING"),
    );
    req.limit = 10;
    let first = store.list(&req).await.unwrap();
    assert_eq!(first.records.len(), 10);
    assert!(first.more);
    // Changes after the snapshot: one task stops, one starts.
    put(store, &task("c1", "t00", "STOPPED", 2)).await;
    put(store, &task("c1", "t99", "RUNNING", 1)).await;
    put(store, &task("c1", "t15", "STOPPED", 2)).await;
    let mut seen: Vec<String> = first.records.iter().map(|r| r.key.id.clone()).collect();
    req.revision = Some(first.revision);
    let mut last = first;
    while last.more {
        req.start_after = last.records.last().map(|r| r.store_key.clone());
        last = store.list(&req).await.unwrap();
        assert_eq!(last.revision, req.revision.unwrap());
        seen.extend(last.records.iter().map(|r| r.key.id.clone()));
    }
    let expected: Vec<String> = (0..25).map(|n| format!("t{n:02}")).collect();
    assert_eq!(seen, expected);
    // A fresh list sees the new state.
    let now = ids(
        store,
        list_req(
            Kind::Task,
            ClusterScope::Named("c1".into()),
            Some("RUNNING"),
        ),
    )
    .await;
    assert_eq!(now.len(), 24);
    assert!(now.contains(&"t99".to_string()) && !now.contains(&"t15".to_string()));
}

/// Deletes only when the record is unchanged; the index entry goes too.
pub async fn guarded_delete(store: &dyn StateStore) {
    let e = task("c1", "t1", "RUNNING", 1);
    let UpsertOutcome::Inserted { revision } = put(store, &e).await else {
        panic!("insert")
    };
    assert!(!store
        .delete_if_unchanged(&e.key, revision - 1)
        .await
        .unwrap());
    put(store, &task("c1", "t1", "RUNNING", 2)).await;
    assert!(
        !store.delete_if_unchanged(&e.key, revision).await.unwrap(),
        "changed since: kept"
    );
    let cur = store.get(&e.key, None).await.unwrap().unwrap();
    assert!(store
        .delete_if_unchanged(&e.key, cur.mod_revision)
        .await
        .unwrap());
    assert!(store.get(&e.key, None).await.unwrap().is_none());
    assert!(ids(
        store,
        list_req(Kind::Task, ClusterScope::All, Some("RUNNING"))
    )
    .await
    .is_empty());
    assert!(!store
        .delete_if_unchanged(&e.key, cur.mod_revision)
        .await
        .unwrap());
    // Re-created after a delete: a new create revision.
    let again = put(store, &task("c1", "t1", "PENDING", 1)).await;
    assert!(matches!(again, UpsertOutcome::Inserted { .. }));
}

/// Entities without an ECS version (reconcile) lose to records changed after the snapshot.
pub async fn snapshot_guard_without_version(store: &dyn StateStore) {
    let e = task("c1", "t1", "RUNNING", 0);
    let snap = store.current_revision().await.unwrap();
    let w = Upsert {
        entity: &e,
        source: Source::Reconcile,
        snapshot: Some(snap),
    };
    assert!(matches!(
        store.upsert_if_newer(w).await.unwrap(),
        UpsertOutcome::Inserted { .. }
    ));
    assert!(
        matches!(
            store.upsert_if_newer(w).await.unwrap(),
            UpsertOutcome::Unchanged { .. }
        ),
        "same content: not rewritten"
    );
    let changed = task("c1", "t1", "STOPPED", 0);
    let late = Upsert {
        entity: &changed,
        source: Source::Reconcile,
        snapshot: Some(snap),
    };
    assert!(
        matches!(
            store.upsert_if_newer(late).await.unwrap(),
            UpsertOutcome::Unchanged { .. }
        ),
        "record written after the snapshot wins"
    );
    let fresh = Upsert {
        snapshot: Some(store.current_revision().await.unwrap()),
        ..late
    };
    assert!(matches!(
        store.upsert_if_newer(fresh).await.unwrap(),
        UpsertOutcome::Updated { .. }
    ));
    let got = store.get(&e.key, None).await.unwrap().unwrap();
    assert_eq!(got.meta().unwrap().source, Source::Reconcile);
    assert_eq!(got.meta().unwrap().status, "STOPPED");
}

async fn next_batch(stream: &mut css::store::WatchStream) -> Vec<WatchEvent> {
    let batch = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("watch event within 10 s")
        .expect("no watch error");
    assert!(batch.events.iter().all(|e| e.revision <= batch.progress));
    batch.events
}

/// A watch replays history from a revision, then follows live changes.
pub async fn watch_from_revision(store: &dyn StateStore) {
    let start = store.current_revision().await.unwrap() + 1;
    let e1 = task("c1", "t1", "PENDING", 1);
    put(store, &e1).await;
    put(store, &task("c1", "t1", "RUNNING", 2)).await;
    put(
        store,
        &entity(
            Kind::Instance,
            &instance_detail("c1", ACCOUNT, "i1", "ACTIVE", 1),
        ),
    )
    .await;
    let cur = store.get(&e1.key, None).await.unwrap().unwrap();
    assert!(store
        .delete_if_unchanged(&e1.key, cur.mod_revision)
        .await
        .unwrap());

    let mut stream = store.watch(Kind::Task, start).await.unwrap();
    let mut events = Vec::new();
    while events.len() < 3 {
        events.extend(next_batch(&mut stream).await);
    }
    assert_eq!(events.len(), 3, "instance changes are not in a task watch");
    let types: Vec<EventType> = events.iter().map(|e| e.event_type).collect();
    assert_eq!(
        types,
        vec![EventType::Put, EventType::Put, EventType::Delete]
    );
    assert!(events.windows(2).all(|w| w[0].revision < w[1].revision));
    assert!(events[0].prev.is_none());
    assert_eq!(
        events[1].prev.as_ref().unwrap().meta().unwrap().ecs_version,
        1
    );
    assert_eq!(
        events[1]
            .record
            .as_ref()
            .unwrap()
            .meta()
            .unwrap()
            .ecs_version,
        2
    );
    let deleted = events[2]
        .prev
        .as_ref()
        .expect("delete carries the last entity");
    assert_eq!(deleted.meta().unwrap().ecs_version, 2);
    assert_eq!(deleted.key, e1.key);

    // Live: a change made after the watch started arrives.
    let live = task("c2", "t9", "RUNNING", 5);
    let UpsertOutcome::Inserted { revision } = put(store, &live).await else {
        panic!("insert")
    };
    let batch = next_batch(&mut stream).await;
    assert_eq!(batch.len(), 1);
    assert_eq!(batch[0].revision, revision);
    assert_eq!(
        entity_json(&batch[0].record.as_ref().unwrap().value)["version"],
        5
    );
}

/// Compaction drops old history: reads and watches before it are refused.
pub async fn compaction(store: &dyn StateStore) {
    let e = task("c1", "t1", "PENDING", 1);
    let UpsertOutcome::Inserted { revision: r1 } = put(store, &e).await else {
        panic!("insert")
    };
    put(store, &task("c1", "t1", "RUNNING", 2)).await;
    put(store, &task("c1", "t2", "RUNNING", 1)).await;
    let cut = store.current_revision().await.unwrap();
    put(store, &task("c1", "t1", "STOPPED", 3)).await;
    assert_eq!(store.compacted_revision().await.unwrap(), 0);
    store.compact(cut).await.unwrap();
    store
        .compact(cut - 1)
        .await
        .expect("compacting an older revision is a no-op");
    assert_eq!(store.compacted_revision().await.unwrap(), cut);

    match store.get(&e.key, Some(r1)).await {
        Err(StoreError::Compacted {
            oldest, current, ..
        }) => {
            assert_eq!(oldest, cut);
            assert_eq!(current, cut + 1);
        }
        other => panic!("expected Compacted, got {other:?}"),
    }
    let mut req = list_req(Kind::Task, ClusterScope::All, None);
    req.revision = Some(r1);
    assert!(matches!(
        store.list(&req).await,
        Err(StoreError::Compacted { .. })
    ));
    // At the compaction revision itself, reads still work.
    req.revision = Some(cut);
    let page = store.list(&req).await.unwrap();
    assert_eq!(page.records.len(), 2);
    assert_eq!(
        store
            .get(&e.key, Some(cut))
            .await
            .unwrap()
            .unwrap()
            .meta()
            .unwrap()
            .ecs_version,
        2
    );

    // A watch from before the compaction fails (at once, or as its first item).
    match store.watch(Kind::Task, r1).await {
        Err(StoreError::Compacted { oldest, .. }) => assert_eq!(oldest, cut),
        Err(other) => panic!("expected Compacted, got {other:?}"),
        Ok(mut s) => match tokio::time::timeout(Duration::from_secs(10), s.next()).await {
            Ok(Err(StoreError::Compacted { oldest, .. })) => assert_eq!(oldest, cut),
            other => panic!(
                "expected a Compacted error, got {:?}",
                other.map(|r| r.map(|b| b.events.len()))
            ),
        },
    }
    // From the compaction point on, it works.
    let mut s = store.watch(Kind::Task, cut + 1).await.unwrap();
    let batch = next_batch(&mut s).await;
    assert_eq!(
        batch[0]
            .record
            .as_ref()
            .unwrap()
            .meta()
            .unwrap()
            .ecs_version,
        3
    );
    assert!(matches!(
        store.compact(cut + 100).await,
        Err(StoreError::FutureRevision { .. })
    ));
}

/// Many writers racing on the same entities with shuffled versions end with
/// the highest version stored.
pub async fn racing_writers(store: std::sync::Arc<dyn StateStore>) {
    use rand::seq::SliceRandom;
    const TASKS: usize = 8;
    const VERSIONS: u64 = 40;
    let mut writes: Vec<Entity> = Vec::new();
    for t in 0..TASKS {
        for v in 1..=VERSIONS {
            let status = if v == VERSIONS { "STOPPED" } else { "RUNNING" };
            writes.push(task("race", &format!("t{t}"), status, v));
        }
    }
    writes.shuffle(&mut rand::rng());
    let chunks: Vec<Vec<Entity>> = writes
        .chunks(writes.len() / 16)
        .map(|c| c.to_vec())
        .collect();
    let mut handles = Vec::new();
    for chunk in chunks {
        let store = store.clone();
        handles.push(tokio::spawn(async move {
            for e in chunk {
                store
                    .upsert_if_newer(Upsert::event(&e))
                    .await
                    .expect("upsert");
            }
        }));
    }
    for h in handles {
        h.await.expect("writer task");
    }
    for t in 0..TASKS {
        let key = EntityKey {
            kind: Kind::Task,
            cluster: ClusterId::from_arn(&cluster_arn(ACCOUNT, REGION, "race")).unwrap(),
            id: format!("t{t}"),
        };
        let got = store.get(&key, None).await.unwrap().unwrap();
        assert_eq!(got.meta().unwrap().ecs_version, VERSIONS);
    }
    // The index holds each task exactly once, under its final status.
    let scope = ClusterScope::Named("race".into());
    assert_eq!(
        ids(
            store.as_ref(),
            list_req(Kind::Task, scope.clone(), Some("STOPPED"))
        )
        .await
        .len(),
        TASKS
    );
    assert!(
        ids(store.as_ref(), list_req(Kind::Task, scope, Some("RUNNING")))
            .await
            .is_empty()
    );
}

/// Batched writes: one result per write, the same guard as single writes,
/// and batches racing on the same entities still end with the highest version.
pub async fn batched_writes(store: std::sync::Arc<dyn StateStore>) {
    let existing = task("b", "t0", "RUNNING", 5);
    put(store.as_ref(), &existing).await;
    let batch = [
        task("b", "t0", "STOPPED", 4),
        task("b", "t1", "RUNNING", 1),
        task("b", "t0x", "PENDING", 1),
    ];
    let writes: Vec<Upsert<'_>> = batch.iter().map(Upsert::event).collect();
    let out = store.upsert_many(&writes).await;
    assert!(matches!(out[0], Ok(UpsertOutcome::Unchanged { .. })));
    assert!(matches!(out[1], Ok(UpsertOutcome::Inserted { .. })));
    assert!(matches!(out[2], Ok(UpsertOutcome::Inserted { .. })));
    let updated = [task("b", "t0", "STOPPED", 6), task("b", "t1", "STOPPED", 2)];
    let writes: Vec<Upsert<'_>> = updated.iter().map(Upsert::event).collect();
    let out = store.upsert_many(&writes).await;
    assert!(
        out.iter()
            .all(|r| matches!(r, Ok(UpsertOutcome::Updated { .. }))),
        "{out:?}"
    );
    assert_eq!(
        ids(
            store.as_ref(),
            list_req(Kind::Task, ClusterScope::Named("b".into()), Some("STOPPED"))
        )
        .await,
        vec!["t0", "t1"]
    );

    // Racing batches over the same 50 entities, versions shuffled.
    use rand::seq::SliceRandom;
    let mut all: Vec<Entity> = (1..=12u64)
        .flat_map(|v| (0..50).map(move |t| task("rb", &format!("t{t:02}"), "RUNNING", v)))
        .collect();
    all.shuffle(&mut rand::rng());
    let mut handles = Vec::new();
    for chunk in all.chunks(50) {
        // Distinct entities per batch, as ingest hands them over.
        let mut seen = std::collections::HashSet::new();
        let batch: Vec<Entity> = chunk
            .iter()
            .filter(|e| seen.insert(e.key.clone()))
            .cloned()
            .collect();
        let rest: Vec<Entity> = chunk
            .iter()
            .filter(|e| !batch.iter().any(|b| std::ptr::eq(*e, b)))
            .cloned()
            .collect();
        let store = store.clone();
        handles.push(tokio::spawn(async move {
            let writes: Vec<Upsert<'_>> = batch.iter().map(Upsert::event).collect();
            for r in store.upsert_many(&writes).await {
                r.expect("batched write");
            }
            for e in &rest {
                store
                    .upsert_if_newer(Upsert::event(e))
                    .await
                    .expect("write");
            }
        }));
    }
    for h in handles {
        h.await.expect("writer");
    }
    let page = store
        .list(&list_req(
            Kind::Task,
            ClusterScope::Named("rb".into()),
            Some("RUNNING"),
        ))
        .await
        .unwrap();
    assert_eq!(page.records.len(), 50);
    assert!(page
        .records
        .iter()
        .all(|r| r.meta().unwrap().ecs_version == 12));
}

/// A progress request answers even when nothing of the kind changed, and
/// covers the store's revision at the time of the request.
pub async fn watch_progress(store: &dyn StateStore) {
    let start = store.current_revision().await.unwrap() + 1;
    let mut w = store.watch(Kind::Task, start).await.unwrap();
    // Only instance changes and bookkeeping: nothing for a task watch.
    put(
        store,
        &entity(
            Kind::Instance,
            &instance_detail("c1", ACCOUNT, "i1", "ACTIVE", 1),
        ),
    )
    .await;
    store
        .put_meta("probe", bytes::Bytes::from_static(b"x"))
        .await
        .unwrap();
    let target = store.current_revision().await.unwrap();
    let mut reached = 0;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while reached < target {
        assert!(
            std::time::Instant::now() < deadline,
            "progress reached {reached}, wanted {target}"
        );
        w.request_progress().await.unwrap();
        if let Ok(b) = tokio::time::timeout(Duration::from_secs(2), w.next()).await {
            let b = b.unwrap();
            assert!(b.events.is_empty());
            reached = b.progress;
        }
    }
    assert!(reached >= target);
}

/// Revisions of task writes (one per write; batches may share one), in order.
async fn write_tasks(store: &dyn StateStore, cluster: &str, n: usize, version: u64) -> Vec<i64> {
    let entities: Vec<Entity> = (0..n)
        .map(|i| task(cluster, &format!("w{i:05}"), "RUNNING", version))
        .collect();
    let mut revs = Vec::new();
    // Small counts one write at a time, so each has its own revision.
    let chunk_size = if n <= 50 { 1 } else { 200 };
    for chunk in entities.chunks(chunk_size) {
        let writes: Vec<Upsert> = chunk.iter().map(Upsert::event).collect();
        for r in store.upsert_many(&writes).await {
            match r.expect("write") {
                UpsertOutcome::Inserted { revision } | UpsertOutcome::Updated { revision } => {
                    revs.push(revision)
                }
                UpsertOutcome::Unchanged { .. } => panic!("every write changes something"),
            }
        }
    }
    revs.sort_unstable();
    revs
}

/// Collects task events until one at or past `last` arrives.
async fn drain_until(stream: &mut css::store::WatchStream, last: i64) -> Vec<i64> {
    let mut got = Vec::new();
    while got.last().is_none_or(|r| *r < last) {
        got.extend(next_batch(stream).await.iter().map(|e| e.revision));
    }
    got
}

/// The shared watch (server mode on etcd): watchers inside its window, one
/// that falls behind it, one from before a compaction, and progress requests
/// all see exactly what a store watch would.
pub async fn shared_watch(store: std::sync::Arc<dyn StateStore>) {
    use css::store::SharedWatchStore;
    let shared = SharedWatchStore::new(store.clone());
    let start = shared.current_revision().await.unwrap() + 1;
    let mut first = shared.watch(Kind::Task, start).await.unwrap();
    let revs = write_tasks(&shared, "sw", 30, 1).await;
    assert_eq!(drain_until(&mut first, revs[29]).await, revs);

    // A second watcher from the middle of the window gets the rest, in order.
    let mut middle = shared.watch(Kind::Task, revs[10]).await.unwrap();
    assert_eq!(drain_until(&mut middle, revs[29]).await, revs[10..]);

    // One that stops reading while more than the window is written still
    // gets every change, without a gap or a repeat.
    let from = shared.current_revision().await.unwrap() + 1;
    let mut lagging = shared.watch(Kind::Task, from).await.unwrap();
    let many = write_tasks(&shared, "sw", 1500, 2).await;
    let last = *many.last().unwrap();
    assert_eq!(drain_until(&mut lagging, last).await, many);
    assert_eq!(drain_until(&mut first, last).await, many);

    // Instance changes are not in a task watch; progress covers them.
    put(
        &shared,
        &entity(
            Kind::Instance,
            &instance_detail("sw", ACCOUNT, "i1", "ACTIVE", 1),
        ),
    )
    .await;
    let target = shared.current_revision().await.unwrap();
    first.request_progress().await.unwrap();
    let b = tokio::time::timeout(Duration::from_secs(10), first.next())
        .await
        .expect("progress within 10 s")
        .unwrap();
    assert!(b.events.is_empty(), "{:?}", b.events);
    assert!(b.progress >= target, "progress {} < {target}", b.progress);

    // After a compaction, a watch from before it is refused as the store would.
    let cut = shared.current_revision().await.unwrap();
    shared.compact(cut).await.unwrap();
    match shared.watch(Kind::Task, revs[0]).await {
        Err(StoreError::Compacted { .. }) => {}
        Err(e) => panic!("wanted Compacted, got {e}"),
        Ok(_) => panic!("wanted Compacted, got a watch"),
    }
    let mut at_cut = shared.watch(Kind::Task, cut).await.unwrap();
    let after = write_tasks(&shared, "sw", 3, 3).await;
    assert_eq!(drain_until(&mut at_cut, after[2]).await, after);
}

/// The store's identity: 32 hex digits, the same on every ask; meta keys
/// created once (a second create is refused and changes nothing).
pub async fn identity_and_meta(store: &dyn StateStore) {
    let id = store.identity().await.expect("identity");
    assert_eq!(id.len(), 32, "{id}");
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
    assert_eq!(store.identity().await.expect("identity"), id, "stable");
    let first = store
        .create_meta("conformance/once", bytes::Bytes::from_static(b"a"))
        .await
        .expect("create");
    assert!(first, "created");
    let again = store
        .create_meta("conformance/once", bytes::Bytes::from_static(b"b"))
        .await
        .expect("create again");
    assert!(!again, "a second create is refused");
    let kept = store.get_meta("conformance/once").await.expect("get");
    assert_eq!(kept.as_deref(), Some(b"a".as_slice()));
}
