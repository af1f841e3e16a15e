//! Server mode's shared store watch also spares etcd the reads every long
//! poll would make (counted by etcd itself, `etcd_mvcc_range_total`): a
//! cursor inside the watch window is resumed without reading the store's
//! revision, and requests arriving while an identity read (or, for a poll
//! starting now or a bookmark, a revision read) is under way share it; a request after a read ended reads again, so a replaced identity is
//! seen at once.

use std::sync::Arc;
use std::time::Duration;

use css::filter::Filters;
use css::model::Kind;
use css::store::{SharedWatchStore, StateStore, Upsert};
use css::watch::{poll, PollRequest};
use css_tests::fixtures::{entity, task_detail, ACCOUNT};
use css_tests::EtcdServer;

const PREFIX: &str = "/ecs-css/v1/";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_polls_share_the_reads_of_their_cursor_checks() {
    let etcd = EtcdServer::start();
    let raw = etcd.store(PREFIX).await;
    let store: Arc<dyn StateStore> = Arc::new(SharedWatchStore::new(raw.clone()));
    let write = |v: u64| {
        let store = store.clone();
        async move {
            let e = entity(
                Kind::Task,
                &task_detail("shared", ACCOUNT, "t1", "RUNNING", v, true),
            );
            store
                .upsert_if_newer(Upsert::event(&e))
                .await
                .expect("write");
            store.current_revision().await.expect("revision")
        }
    };
    let first = write(1).await;
    let req = |since: i64| PollRequest {
        filters: Filters::all(Kind::Task),
        since: Some(since),
        wait: Duration::from_secs(2),
        limit: 100,
    };
    // The window starts with the first watch (from the current revision),
    // and holds what is written after.
    let waiting = {
        let (store, r) = (store.clone(), req(first));
        tokio::spawn(async move { poll(store.as_ref(), &r).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let second = write(2).await;
    let out = waiting.await.expect("poll").expect("poll");
    assert_eq!(out.revision, second);

    // 200 polls resuming from a cursor the window has seen: no read of the
    // store's revision each (before: one each, 200 ranges).
    let before = etcd.ranges_served().await as u64;
    let polls = (0..200).map(|_| {
        let store = store.clone();
        let r = req(second - 1);
        async move { poll(store.as_ref(), &r).await }
    });
    for out in futures::future::join_all(polls).await {
        assert_eq!(out.expect("poll").changes.len(), 1);
    }
    let spent = etcd.ranges_served().await as u64 - before;
    assert!(spent < 10, "{spent} range requests for 200 resumed polls");
    // A cursor ahead of every window is still read for, and refused.
    let ahead = poll(store.as_ref(), &req(second + 1000)).await;
    assert!(ahead.is_err(), "a cursor ahead of the store was accepted");

    // 200 long polls starting now whose waits end at once (watchers
    // reconnecting after a restart): their start and their bookmark's
    // target share reads of the store's revision (before: three each, 600
    // ranges). Each answers at the revision written before it, or later.
    let before = etcd.ranges_served().await as u64;
    let polls = (0..200).map(|_| {
        let store = store.clone();
        let r = PollRequest {
            since: None,
            wait: Duration::ZERO,
            ..req(0)
        };
        async move { poll(store.as_ref(), &r).await }
    });
    for out in futures::future::join_all(polls).await {
        let out = out.expect("poll");
        assert!(out.changes.is_empty());
        assert!(out.revision >= second, "{} < {second}", out.revision);
    }
    let spent = etcd.ranges_served().await as u64 - before;
    assert!(
        spent < 60,
        "{spent} range requests for 200 polls starting now"
    );

    // 200 concurrent identity checks share reads; all agree.
    let before = etcd.ranges_served().await as u64;
    let checks = (0..200).map(|_| {
        let store = store.clone();
        async move { store.identity().await }
    });
    let ids: Vec<String> = futures::future::join_all(checks)
        .await
        .into_iter()
        .map(|r| r.expect("identity"))
        .collect();
    let spent = etcd.ranges_served().await as u64 - before;
    assert!(ids.iter().all(|i| *i == ids[0]));
    assert!(
        spent < 100,
        "{spent} range requests for 200 concurrent identity checks"
    );

    // The identity replaced (README's restore procedure deletes it): the
    // next request reads again and sees the new one.
    let mut client = raw.client().await.expect("etcd client");
    client
        .delete(format!("{PREFIX}meta/identity"), None)
        .await
        .expect("delete identity");
    let next = store.identity().await.expect("identity");
    assert_ne!(next, ids[0], "a finished read was reused");
}
