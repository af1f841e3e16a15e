//! The etcd store's record cache on a real etcd: a filtered list takes the
//! records it holds at the index keys' mod_revisions and reads only the
//! others; every answer equals the one of a store without a cache (after
//! updates, status moves, deletes and re-creations, at pinned revisions,
//! across pages, and with a cache too small for the page).

use css::filter::Filters;
use css::model::{Entity, Kind};
use css::query::{list, ListQuery};
use css::store::etcd::CacheUsage;
use css::store::{ClusterScope, EtcdStore, ListRequest, StateStore, Upsert};
use css_tests::fixtures::*;
use css_tests::EtcdServer;

fn task(cluster: &str, n: usize, status: &str, version: u64, image: &str) -> Entity {
    let mut d = task_detail(cluster, ACCOUNT, &format!("t{n:04}"), status, version, true);
    d["containers"][0]["image"] = image.into();
    entity(Kind::Task, &d)
}

async fn write(store: &dyn StateStore, entities: &[Entity]) {
    let writes: Vec<Upsert<'_>> = entities.iter().map(Upsert::event).collect();
    for r in store.upsert_many(&writes).await {
        r.expect("write");
    }
}

/// What a list answered, record by record: id, version, image, and the
/// mod_revision (all pages, following next_token).
type Seen = Vec<(String, u64, String, i64)>;

async fn listed(
    store: &dyn StateStore,
    kind: Kind,
    cluster: &str,
    status: &'static str,
    limit: usize,
) -> Seen {
    let mut out = Vec::new();
    let mut token = None;
    loop {
        let q = ListQuery {
            filters: Filters {
                cluster: ClusterScope::Named(cluster.into()),
                status: Some(status),
                ..Filters::all(kind)
            },
            limit,
            next_token: token,
        };
        let page = list(store, &q).await.expect("list");
        for r in &page.records {
            let meta = r.meta().expect("decoded");
            let v: serde_json::Value = serde_json::from_str(meta.entity.get()).expect("json");
            let image = v["containers"][0]["image"]
                .as_str()
                .unwrap_or("")
                .to_string();
            out.push((r.key.id.clone(), meta.ecs_version, image, r.mod_revision));
        }
        token = page.next_token;
        if token.is_none() {
            return out;
        }
    }
}

/// The cache's counters gained since `before`: (hits, misses).
fn gained(store: &EtcdStore, before: CacheUsage) -> (u64, u64) {
    let now = store.record_cache_usage();
    (now.hits - before.hits, now.misses - before.misses)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_read_only_what_changed_and_never_answer_a_stale_record() {
    let etcd = EtcdServer::start();
    let store = etcd.store("/ecs-css/v1/").await;
    // The same keys without a cache: what every list must equal.
    let uncached = (*store).clone().with_record_cache(0);
    let both = |status: &'static str| {
        let (a, b) = (store.clone(), uncached.clone());
        async move {
            let got = listed(a.as_ref(), Kind::Task, "c0", status, 1000).await;
            let want = listed(&b, Kind::Task, "c0", status, 1000).await;
            assert_eq!(got, want, "{status}");
            got
        }
    };

    let mut fleet: Vec<Entity> = (0..60).map(|i| task("c0", i, "RUNNING", 1, "v1")).collect();
    fleet.extend((60..80).map(|i| task("c0", i, "STOPPED", 1, "v1")));
    write(store.as_ref(), &fleet).await;

    // First list: every record read, and kept.
    let before = store.record_cache_usage();
    let first = both("RUNNING").await;
    assert_eq!(first.len(), 60);
    assert_eq!(gained(&store, before), (0, 60));
    assert_eq!(store.record_cache_usage().records, 60);
    // Again: nothing read.
    let before = store.record_cache_usage();
    assert_eq!(both("RUNNING").await, first);
    assert_eq!(gained(&store, before), (60, 0));
    let pinned = store.current_revision().await.expect("revision");

    // Five updated in place (same status), one stopped: the list reads
    // those five again and shows their new content; the stopped one moves.
    let changed: Vec<Entity> = (0..5).map(|i| task("c0", i, "RUNNING", 2, "v2")).collect();
    write(store.as_ref(), &changed).await;
    write(store.as_ref(), &[task("c0", 5, "STOPPED", 2, "v2")]).await;
    let before = store.record_cache_usage();
    let after = both("RUNNING").await;
    assert_eq!(gained(&store, before), (54, 5));
    assert_eq!(after.len(), 59);
    for (id, version, image, _) in &after {
        let n: usize = id[1..].parse().expect("id");
        let want = if n < 5 { (2, "v2") } else { (1, "v1") };
        assert_eq!((*version, image.as_str()), want, "{id}");
    }
    assert!(after.iter().all(|r| r.0 != "t0005"));
    let stopped = both("STOPPED").await;
    assert_eq!(stopped.len(), 21);
    assert!(stopped.iter().any(|r| r.0 == "t0005" && r.1 == 2));

    // At the revision pinned before the changes: the records as they were
    // then, although the cache now holds newer ones.
    let req = ListRequest {
        kind: Kind::Task,
        cluster: ClusterScope::Named("c0".into()),
        status: Some("RUNNING".into()),
        start_after: None,
        limit: 1000,
        revision: Some(pinned),
    };
    let then = store.list(&req).await.expect("pinned list");
    let then: Vec<(String, u64, i64)> = (then.records.iter())
        .map(|r| {
            (
                r.key.id.clone(),
                r.meta().expect("meta").ecs_version,
                r.mod_revision,
            )
        })
        .collect();
    let want: Vec<(String, u64, i64)> = first.iter().map(|r| (r.0.clone(), r.1, r.3)).collect();
    assert_eq!(then, want, "the page as of the pinned revision");
    // ... and the current list still shows the new ones after that read.
    assert_eq!(both("RUNNING").await, after);

    // Deleted and created again (a new record at a new revision, with an
    // older ECS version than the cached one): the new one is listed.
    let key = task("c0", 6, "RUNNING", 1, "v1").key;
    let rec = store.get(&key, None).await.expect("get").expect("t0006");
    assert!(store
        .delete_if_unchanged(&key, rec.mod_revision)
        .await
        .expect("delete"));
    assert!(both("RUNNING").await.iter().all(|r| r.0 != "t0006"));
    write(store.as_ref(), &[task("c0", 6, "RUNNING", 1, "again")]).await;
    let again = both("RUNNING").await;
    assert!(again.iter().any(|r| r.0 == "t0006" && r.2 == "again"));

    // Pages of 7: the cursors (index keys) work as well from the cache.
    let before = store.record_cache_usage();
    let paged = listed(store.as_ref(), Kind::Task, "c0", "RUNNING", 7).await;
    assert_eq!(paged, again);
    assert_eq!(again.len(), 59);
    assert_eq!(gained(&store, before), (59, 0), "every page from the cache");
    let none = uncached.record_cache_usage();
    assert_eq!(
        (none.records, none.bytes),
        (0, 0),
        "a 0 MiB cache holds nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_are_cached_too_and_a_small_cache_stays_within_its_bound() {
    let etcd = EtcdServer::start();
    let store = etcd.store("/ecs-css/v1/").await;
    let instances: Vec<Entity> = (0..30)
        .map(|i| {
            let status = if i % 3 == 0 { "DRAINING" } else { "ACTIVE" };
            entity(
                Kind::Instance,
                &instance_detail("c0", ACCOUNT, &format!("ci{i:03}"), status, 1),
            )
        })
        .collect();
    write(store.as_ref(), &instances).await;
    for (status, n) in [("ACTIVE", 20), ("DRAINING", 10)] {
        let once = listed(store.as_ref(), Kind::Instance, "c0", status, 1000).await;
        assert_eq!(once.len(), n, "{status}");
        let before = store.record_cache_usage();
        let twice = listed(store.as_ref(), Kind::Instance, "c0", status, 1000).await;
        assert_eq!(twice, once, "{status}");
        assert_eq!(gained(&store, before), (n as u64, 0), "{status}");
    }

    // 1 MiB holds a few hundred tasks of this size: 1,200 listed twice are
    // answered right, read again where evicted, and the bound holds.
    let small = (*store).clone().with_record_cache(1);
    let fleet: Vec<Entity> = (0..1200)
        .map(|i| task("c1", i, "RUNNING", 1, "v1"))
        .collect();
    write(&small, &fleet).await;
    let first = listed(&small, Kind::Task, "c1", "RUNNING", 1000).await;
    let before = small.record_cache_usage();
    let second = listed(&small, Kind::Task, "c1", "RUNNING", 1000).await;
    assert_eq!(first.len(), 1200);
    assert_eq!(second, first);
    let held = small.record_cache_usage();
    assert!(held.bytes <= 1 << 20, "{held:?}");
    assert!(held.records > 0 && held.records < 1200, "{held:?}");
    let (hits, misses) = gained(&small, before);
    assert_eq!(hits + misses, 1200);
    assert!(misses > 0, "some were evicted: {held:?}");
}
