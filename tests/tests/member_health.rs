//! Member health on a real 3-member etcd cluster: every member asked for
//! its own status; a member down and a leader change seen (and counted);
//! the figures as metrics and in `GET /v1/status`; defragmentation of one
//! member at a time, never two within the gap.

use std::time::{Duration, SystemTime};

use css::health::{self, DEFRAG_GAP, DEFRAG_MIN_BYTES};
use css::store::StateStore;
use css_tests::openapi::OpenApi;
use css_tests::EtcdCluster;

const QUOTA: i64 = 4 << 30;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_down_and_leader_changes_are_seen_and_counted() {
    let mut cluster = EtcdCluster::start(3, false).await;
    let store = cluster.store("/ecs-css/v1/").await;
    let h = health::check(store.as_ref(), QUOTA)
        .await
        .expect("health")
        .expect("members");
    assert_eq!((h.members.len(), h.members_up), (3, 3), "{h:?}");
    let leader = h.leader.clone().expect("a leader");
    assert!(h.members.iter().all(|m| m.leader.as_ref() == Some(&leader)));
    assert!(
        h.db_size_max > 0 && h.quota_used > 0.0 && h.quota_used < 0.01,
        "{h:?}"
    );
    assert!(h.raft_index_lag < 5, "{h:?}");
    assert_eq!(h.leader_changes, 0);

    // The leader goes away: two members answer, under a new leader.
    let old = cluster.leader().await.expect("leader index");
    cluster.kill(old);
    cluster.wait_for_leader(Duration::from_secs(20)).await;
    let h = health::check(store.as_ref(), QUOTA)
        .await
        .expect("health")
        .expect("members");
    assert_eq!(h.members_up, 2, "{h:?}");
    let down: Vec<_> = h.members.iter().filter(|m| !m.up).collect();
    assert_eq!(down.len(), 1);
    assert!(down[0].error.is_some());
    assert_ne!(h.leader.as_ref(), Some(&leader));
    assert!(h.leader.is_some());
    assert_eq!(h.leader_changes, 1, "the change is counted once");
    let again = health::check(store.as_ref(), QUOTA)
        .await
        .expect("health")
        .expect("members");
    assert_eq!(again.leader_changes, 1, "and not again");
    // No defragmentation while a member is down.
    assert!(h.defrag_candidate().is_none());
    // Back: the next check sees it up, although the client it held before
    // the crash went to the old process.
    cluster.restart(old);
    cluster.wait_for_member(old, Duration::from_secs(20)).await;
    let back = health::check(store.as_ref(), QUOTA)
        .await
        .expect("health")
        .expect("members");
    assert_eq!(back.members_up, 3, "{back:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_member_is_defragmented_at_a_time() {
    let cluster = EtcdCluster::start(3, false).await;
    let store = cluster.store("/ecs-css/v1/").await;
    let mut h = health::check(store.as_ref(), QUOTA)
        .await
        .expect("health")
        .expect("members");
    // Real members; their files made to look fragmented (a large one
    // takes minutes to write here): the decision, then the real call.
    for (i, m) in h.members.iter_mut().enumerate() {
        m.db_size = Some(DEFRAG_MIN_BYTES * 2 + i as i64);
        m.db_size_in_use = Some(DEFRAG_MIN_BYTES / 4);
    }
    let now = SystemTime::now();
    let first = health::defragment_if_due(store.as_ref(), &h, now)
        .await
        .expect("defrag");
    let target = h.members[2].endpoint.clone();
    assert_eq!(
        first.as_deref(),
        Some(target.as_str()),
        "the most fragmented one"
    );
    // Within the gap: none, although all still look fragmented.
    let soon = now + Duration::from_secs(60);
    assert_eq!(
        health::defragment_if_due(store.as_ref(), &h, soon)
            .await
            .expect("defrag"),
        None
    );
    let later = now + DEFRAG_GAP + Duration::from_secs(1);
    assert!(health::defragment_if_due(store.as_ref(), &h, later)
        .await
        .expect("defrag")
        .is_some());
    // The member really was asked: an unknown one is an error.
    assert!(store.defragment("http://127.0.0.1:1").await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_mode_shows_member_health_in_status_and_metrics() {
    let cluster = EtcdCluster::start(3, false).await;
    let endpoints = cluster.endpoints().join(",");
    let s = css_tests::server::TestServer::start(None, &["--etcd-endpoints", &endpoints]).await;
    let st = s.get("/v1/status").await;
    OpenApi::load().check("Status", &st.body);
    let members = &st.body["members"];
    assert_eq!(members["membersUp"], 3, "{}", st.body);
    assert!(members["leader"].is_string(), "{}", st.body);
    assert_eq!(members["members"].as_array().map(Vec::len), Some(3));
    println!(
        "{}",
        serde_json::to_string_pretty(members).unwrap_or_default()
    );
    // The maintenance loop records the figures at start.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let text = (s.http.get(format!("{}/metrics", s.base)).send().await)
            .expect("metrics")
            .text()
            .await
            .expect("text");
        if text.contains("etcd_members 3") {
            assert!(text.contains("etcd_members_down 0"), "{text}");
            assert!(text.contains("etcd_has_leader 1"), "{text}");
            assert!(text.contains("etcd_db_quota_used_ratio"), "{text}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{text}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The embedded store has no members: null.
    let embedded = css_tests::server::TestServer::start(None, &[]).await;
    assert!(embedded.get("/v1/status").await.body["members"].is_null());
}
