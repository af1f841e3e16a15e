//! Watching over HTTP against server mode on both stores: list + long-poll
//! rebuilds the store's state exactly; filters, bookmarks, expiry; and
//! subscriptions with acks and principals.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use css::ingest::apply_batch;
use css::model::Kind;
use css::store::{ClusterScope, ListRequest, StateStore};
use css_tests::fixtures::*;
use css_tests::openapi::OpenApi;
use css_tests::server::TestServer;
use rand::{Rng, SeedableRng};
use reqwest::StatusCode;
use serde_json::{json, Value};

fn task(cluster: &str, id: &str, status: &str, version: u64) -> String {
    task_event(&task_detail(cluster, ACCOUNT, id, status, version, true))
}

/// Entity key as a client would keep it: the task ARN.
fn arn(item: &Value) -> String {
    item["entity"]["taskArn"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Current tasks in the store: ARN -> entityVersion.
async fn store_state(
    store: &dyn StateStore,
    cluster: Option<&str>,
    status: Option<&str>,
) -> BTreeMap<String, String> {
    let page = store
        .list(&ListRequest {
            kind: Kind::Task,
            cluster: cluster.map_or(ClusterScope::All, |c| ClusterScope::Named(c.into())),
            status: status.map(str::to_string),
            start_after: None,
            limit: 100_000,
            revision: None,
        })
        .await
        .unwrap();
    page.records
        .iter()
        .map(|r| {
            let e: Value = serde_json::from_str(r.meta().unwrap().entity.get()).unwrap();
            (
                e["taskArn"].as_str().unwrap().to_string(),
                r.mod_revision.to_string(),
            )
        })
        .collect()
}

/// List (all pages), then long-poll from the list's revision until `done`
/// and the stream has caught up with `final_rev`.
async fn list_then_watch(
    s: &TestServer,
    query: &str,
    api: &OpenApi,
    writer: tokio::task::JoinHandle<i64>,
) -> BTreeMap<String, String> {
    let mut state = BTreeMap::new();
    let sep = if query.is_empty() { "" } else { "&" };
    let mut r = s.get(&format!("/v1/tasks?{query}{sep}limit=1000")).await;
    let since = r.body["revision"].as_str().unwrap().to_string();
    loop {
        for item in r.body["items"].as_array().unwrap() {
            state.insert(
                arn(item),
                item["metadata"]["entityVersion"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            );
        }
        let Some(t) = r.body["nextToken"].as_str() else {
            break;
        };
        r = s
            .get(&format!("/v1/tasks?{query}{sep}limit=1000&nextToken={t}"))
            .await;
    }
    let mut since: i64 = since.parse().unwrap();
    let mut seen: HashSet<(i64, String)> = HashSet::new();
    let mut last_rev = since;
    let mut final_rev = None;
    let mut writer = Some(writer);
    loop {
        let w = s
            .get(&format!(
                "/v1/stream/tasks?{query}{sep}since={since}&wait=1&limit=200"
            ))
            .await;
        assert_eq!(w.status, StatusCode::OK, "{}", w.body);
        api.check("EventBatch", &w.body);
        for ev in w.body["events"].as_array().unwrap() {
            let rev: i64 = ev["revision"].as_str().unwrap().parse().unwrap();
            assert!(rev > since, "no event at or before since");
            assert!(rev >= last_rev, "revisions in order");
            last_rev = rev;
            let key = arn(&ev["item"]);
            assert!(
                seen.insert((rev, key.clone())),
                "event {rev} {key} delivered twice"
            );
            match ev["type"].as_str().unwrap() {
                "PUT" => {
                    state.insert(
                        key,
                        ev["item"]["metadata"]["entityVersion"]
                            .as_str()
                            .unwrap()
                            .to_string(),
                    );
                }
                _ => {
                    state.remove(&key);
                }
            }
        }
        let next: i64 = w.body["revision"].as_str().unwrap().parse().unwrap();
        assert!(next >= since);
        since = next;
        if let Some(h) = writer.as_ref() {
            if h.is_finished() {
                final_rev = Some(writer.take().unwrap().await.unwrap());
            }
        }
        if final_rev.is_some_and(|f| since >= f) {
            return state;
        }
    }
}

/// 5,000 changes (puts and deletes, several clusters) while a client lists
/// and long-polls: it ends with exactly the store's state.
async fn rebuilds_the_store_state_exactly(s: &TestServer, api: &OpenApi) {
    let store = s.server.store();
    // Something to list first.
    let seed: Vec<String> = (0..200)
        .map(|n| task(&format!("w{}", n % 4), &format!("t{n:04}"), "RUNNING", 1))
        .collect();
    apply_batch(store.as_ref(), &messages(&seed)).await;
    let writer = {
        let store: Arc<dyn StateStore> = store.clone();
        tokio::spawn(async move {
            let mut rng = rand::rngs::StdRng::seed_from_u64(9);
            let mut versions: BTreeMap<usize, u64> = (0..200).map(|n| (n, 1)).collect();
            let mut changes = 0;
            while changes < 5000 {
                let mut batch = Vec::new();
                for _ in 0..rng.random_range(1..40) {
                    let n = rng.random_range(0..400usize);
                    let v = versions.entry(n).or_insert(0);
                    *v += 1;
                    let status = ["PENDING", "RUNNING", "STOPPED"][rng.random_range(0..3)];
                    batch.push(task(
                        &format!("w{}", n % 4),
                        &format!("t{n:04}"),
                        status,
                        *v,
                    ));
                }
                changes += batch.len();
                apply_batch(store.as_ref(), &messages(&batch)).await;
                // Some deletes, as reconciliation does them.
                for _ in 0..rng.random_range(0..4) {
                    let n = rng.random_range(0..400usize);
                    let e = entity(
                        Kind::Task,
                        &task_detail(
                            &format!("w{}", n % 4),
                            ACCOUNT,
                            &format!("t{n:04}"),
                            "RUNNING",
                            1,
                            true,
                        ),
                    );
                    if let Some(r) = store.get(&e.key, None).await.unwrap() {
                        if store
                            .delete_if_unchanged(&e.key, r.mod_revision)
                            .await
                            .unwrap()
                        {
                            changes += 1;
                        }
                    }
                }
                if rng.random_bool(0.3) {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }
            store.current_revision().await.unwrap()
        })
    };
    let rebuilt = list_then_watch(s, "", api, writer).await;
    assert_eq!(rebuilt, store_state(store.as_ref(), None, None).await);
    assert!(rebuilt.len() > 100);
}

/// A filtered watcher (one cluster, RUNNING) rebuilds the filtered list.
async fn filtered_watch_equals_filtered_list(s: &TestServer, api: &OpenApi) {
    let store = s.server.store();
    let seed: Vec<String> = (0..30)
        .map(|n| {
            task(
                if n % 2 == 0 { "f1" } else { "f2" },
                &format!("t{n:02}"),
                "RUNNING",
                1,
            )
        })
        .collect();
    apply_batch(store.as_ref(), &messages(&seed)).await;
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            let mut rng = rand::rngs::StdRng::seed_from_u64(5);
            for v in 2..60u64 {
                let n = rng.random_range(0..30);
                let status = if rng.random_bool(0.5) {
                    "STOPPED"
                } else {
                    "RUNNING"
                };
                let c = if n % 2 == 0 { "f1" } else { "f2" };
                apply_batch(
                    store.as_ref(),
                    &messages(&[task(c, &format!("t{n:02}"), status, v)]),
                )
                .await;
            }
            store.current_revision().await.unwrap()
        })
    };
    let rebuilt = list_then_watch(s, "cluster=f1&status=running", api, writer).await;
    assert_eq!(
        rebuilt,
        store_state(store.as_ref(), Some("f1"), Some("RUNNING")).await
    );
}

async fn stop_matching_is_a_delete_and_idle_watchers_get_bookmarks(s: &TestServer, api: &OpenApi) {
    let store = s.server.store();
    apply_batch(
        store.as_ref(),
        &messages(&[
            task("b1", "t1", "RUNNING", 1),
            task("b1", "t2", "PENDING", 1),
        ]),
    )
    .await;
    let since = store.current_revision().await.unwrap();
    apply_batch(
        store.as_ref(),
        &messages(&[
            task("b1", "t1", "STOPPED", 2),
            task("b1", "t2", "RUNNING", 2),
            task("other", "t3", "RUNNING", 1),
        ]),
    )
    .await;
    let r = s
        .get(&format!(
            "/v1/stream/tasks?cluster=b1&status=RUNNING&since={since}&wait=2"
        ))
        .await;
    api.check("EventBatch", &r.body);
    let evs: Vec<(String, String, String)> = r.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap().to_string(),
                arn(&e["item"]).rsplit('/').next().unwrap().to_string(),
                e["item"]["entity"]["lastStatus"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            )
        })
        .collect();
    let mut evs_sorted = evs.clone();
    evs_sorted.sort();
    assert_eq!(
        evs_sorted,
        vec![
            ("DELETE".into(), "t1".into(), "STOPPED".into()),
            ("PUT".into(), "t2".into(), "RUNNING".into())
        ],
        "leaving the filter is a DELETE with the new entity"
    );
    // Idle: only changes elsewhere. The answer is empty and bookmarks the current revision.
    let since = r.body["revision"].as_str().unwrap().to_string();
    apply_batch(
        store.as_ref(),
        &messages(&[task("other", "t3", "STOPPED", 2)]),
    )
    .await;
    apply_batch(
        store.as_ref(),
        &messages(&[instance_event(&instance_detail(
            "b1", ACCOUNT, "i1", "ACTIVE", 1,
        ))]),
    )
    .await;
    let current = store.current_revision().await.unwrap();
    let t = Instant::now();
    let idle = s
        .get(&format!(
            "/v1/stream/tasks?cluster=b1&status=RUNNING&since={since}&wait=1"
        ))
        .await;
    assert!(
        t.elapsed() >= Duration::from_millis(900),
        "waited for `wait`"
    );
    api.check("EventBatch", &idle.body);
    assert_eq!(idle.body["events"], json!([]));
    assert_eq!(
        idle.body["revision"],
        current.to_string(),
        "bookmark at the current revision"
    );
    // No since: starts now, and answers as soon as a change comes.
    let s2 = s.base.clone();
    let waiter = tokio::spawn(async move {
        let t = Instant::now();
        let v: Value = reqwest::get(format!("{s2}/v1/stream/tasks?cluster=b1&wait=20"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        (v, t.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    apply_batch(store.as_ref(), &messages(&[task("b1", "t9", "RUNNING", 1)])).await;
    let (v, took) = waiter.await.unwrap();
    assert_eq!(v["events"].as_array().unwrap().len(), 1, "{v}");
    assert!(
        took < Duration::from_secs(15),
        "answered on the change, not after `wait`: {took:?}"
    );
}

async fn compacted_since_is_a_410(s: &TestServer, api: &OpenApi) {
    let store = s.server.store();
    apply_batch(store.as_ref(), &messages(&[task("c", "t1", "RUNNING", 1)])).await;
    let old = store.current_revision().await.unwrap();
    apply_batch(
        store.as_ref(),
        &messages(&[task("c", "t1", "STOPPED", 2), task("c", "t2", "RUNNING", 1)]),
    )
    .await;
    let cut = store.current_revision().await.unwrap();
    store.compact(cut).await.unwrap();
    let r = s
        .get(&format!("/v1/stream/tasks?since={}&wait=0", old - 1))
        .await;
    assert_eq!(r.status, StatusCode::GONE, "{}", r.body);
    api.check("Expired", &r.body);
    assert_eq!(r.body["oldestRevision"], (cut - 1).to_string());
    assert_eq!(r.body["currentRevision"], cut.to_string());
    let ok = s
        .get(&format!("/v1/stream/tasks?since={}&wait=0", cut - 1))
        .await;
    assert_eq!(ok.status, StatusCode::OK, "the oldest since is served");
    for (q, p) in [
        ("since=abc", "since"),
        ("since=-1", "since"),
        ("wait=26", "wait"),
        ("limit=0", "limit"),
        ("nextToken=x", "nextToken"),
        // A bad parameter is a 400 whatever store the cursor names.
        ("since=abc&store=0123456789abcdef0123456789abcdef", "since"),
        ("status=x&store=0123456789abcdef0123456789abcdef", "status"),
    ] {
        let r = s.get(&format!("/v1/stream/tasks?{q}")).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{q}");
        assert_eq!(r.body["parameter"], p, "{q}");
    }
    // A `since` ahead of the store, or a cursor of another store: 410, relist.
    for q in [
        "since=999999999",
        "since=1&store=0123456789abcdef0123456789abcdef",
    ] {
        let r = s.get(&format!("/v1/stream/tasks?{q}&wait=0")).await;
        assert_eq!(r.status, StatusCode::GONE, "{q}: {}", r.body);
        api.check("Expired", &r.body);
    }
}

async fn subscriptions_ack_and_redeliver(s: &TestServer, api: &OpenApi) {
    let store = s.server.store();
    let r = s
        .request(
            reqwest::Method::POST,
            "/v1/subscriptions",
            Some(json!({"resource": "tasks", "filters": {"cluster": "s1"}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    api.check("Subscription", &r.body);
    let id = r.body["id"].as_str().unwrap().to_string();
    let got = s.get(&format!("/v1/subscriptions/{id}")).await;
    assert_eq!(got.body, r.body);
    apply_batch(
        store.as_ref(),
        &messages(&[
            task("s1", "t1", "RUNNING", 1),
            task("s2", "x", "RUNNING", 1),
        ]),
    )
    .await;
    apply_batch(store.as_ref(), &messages(&[task("s1", "t2", "RUNNING", 1)])).await;

    let first = s
        .get(&format!("/v1/subscriptions/{id}/events?wait=1"))
        .await;
    api.check("EventBatch", &first.body);
    assert_eq!(first.body["events"].as_array().unwrap().len(), 2);
    // Not acked: delivered again.
    let again = s
        .get(&format!("/v1/subscriptions/{id}/events?wait=1"))
        .await;
    assert_eq!(again.body["events"], first.body["events"]);
    // Ack the first event's revision: only the second comes back.
    let r1 = first.body["events"][0]["revision"]
        .as_str()
        .unwrap()
        .to_string();
    let after = s
        .get(&format!("/v1/subscriptions/{id}/events?wait=1&ack={r1}"))
        .await;
    assert_eq!(after.body["events"].as_array().unwrap().len(), 1);
    assert_eq!(after.body["events"][0], first.body["events"][1]);
    let sub = s.get(&format!("/v1/subscriptions/{id}")).await;
    assert_eq!(sub.body["cursor"], r1.as_str());
    // Two consumers with conflicting acks: the cursor only moves forward.
    let top = first.body["revision"].as_str().unwrap().to_string();
    let (pa, pb) = (
        format!("/v1/subscriptions/{id}/events?wait=0&ack={top}"),
        format!("/v1/subscriptions/{id}/events?wait=0&ack={r1}"),
    );
    let (a, b) = tokio::join!(s.get(&pa), s.get(&pb));
    assert_eq!((a.status, b.status), (StatusCode::OK, StatusCode::OK));
    let older = s
        .get(&format!("/v1/subscriptions/{id}/events?wait=0&ack=1"))
        .await;
    assert_eq!(older.body["events"], json!([]), "an older ack is a no-op");
    assert_eq!(
        s.get(&format!("/v1/subscriptions/{id}")).await.body["cursor"],
        top.as_str()
    );
    // Bad input.
    for (body, param) in [
        (json!({"resource": "pods"}), "resource"),
        (
            json!({"resource": "tasks", "filters": {"status": "SLEEPING"}}),
            "status",
        ),
        (
            json!({"resource": "tasks", "filters": {"bogus": "1"}}),
            "bogus",
        ),
        (json!({"resource": "tasks", "extra": 1}), "extra"),
        (json!([1]), "body"),
    ] {
        let r = s
            .request(
                reqwest::Method::POST,
                "/v1/subscriptions",
                Some(body.clone()),
            )
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(r.body["parameter"], param, "{body}: {}", r.body);
    }
    // A `since` ahead of the store is another store's cursor: 410.
    let ahead = json!({"resource": "tasks", "since": "99999999"});
    let r = (s.request(reqwest::Method::POST, "/v1/subscriptions", Some(ahead))).await;
    assert_eq!(r.status, StatusCode::GONE, "{}", r.body);
    api.check("Expired", &r.body);
    let bad_ack = s
        .get(&format!("/v1/subscriptions/{id}/events?ack=999999999"))
        .await;
    assert_eq!(bad_ack.body["parameter"], "ack");
    let del = s
        .request(
            reqwest::Method::DELETE,
            &format!("/v1/subscriptions/{id}"),
            None,
        )
        .await;
    assert_eq!(del.status, StatusCode::NO_CONTENT);
    for path in [
        format!("/v1/subscriptions/{id}"),
        format!("/v1/subscriptions/{id}/events?wait=0"),
    ] {
        let r = s.get(&path).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}");
        api.check("Error", &r.body);
    }
    let r = s
        .request(
            reqwest::Method::DELETE,
            &format!("/v1/subscriptions/{id}"),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

css_tests::on_both_stores!(
    rebuilds_the_store_state_exactly,
    filtered_watch_equals_filtered_list,
    stop_matching_is_a_delete_and_idle_watchers_get_bookmarks,
    compacted_since_is_a_410,
    subscriptions_ack_and_redeliver,
);

/// Server mode on etcd shares one store watch among long polls: an etcd
/// outage answers 503 (never a silent empty answer), and once etcd is back
/// watching resumes from the client's revision with nothing lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_outage_during_watch_is_a_503_then_resumes() {
    let mut etcd = css_tests::EtcdServer::start();
    let s = TestServer::start(Some(&etcd), &[]).await;
    let store = s.server.store();
    apply_batch(store.as_ref(), &messages(&[task("o", "t1", "RUNNING", 1)])).await;
    let first = s.get("/v1/stream/tasks?since=0&wait=0").await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    let since: i64 = first.body["revision"].as_str().unwrap().parse().unwrap();

    etcd.stop();
    let r = s
        .get(&format!("/v1/stream/tasks?since={since}&wait=1"))
        .await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.body);
    assert!(r.headers.get("retry-after").is_some());
    etcd.restart();

    // A change made while no long poll is open still arrives.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let written = tokio::time::timeout(
            Duration::from_secs(3),
            apply_batch(store.as_ref(), &messages(&[task("o", "t2", "RUNNING", 1)])),
        )
        .await;
        if written.is_ok_and(|o| o.failures.is_empty()) {
            break;
        }
        assert!(Instant::now() < deadline, "etcd back within 20 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let r = s
        .get(&format!("/v1/stream/tasks?since={since}&wait=5"))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let ids: Vec<String> = r.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| arn(&e["item"]))
        .collect();
    assert_eq!(ids.len(), 1, "{}", r.body);
    assert!(ids[0].ends_with("/t2"), "{ids:?}");
    s.server.shutdown().await.unwrap();
}
