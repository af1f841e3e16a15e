//! The record format in etcd: bytes per entity and per change, the filtered
//! list and ingest, today's format (legacy: plain JSON records, index keys
//! holding copies) next to the compact one (compressed records, index keys
//! pointing at them), each in its own fresh etcd in one run; then how many
//! tasks a small quota holds, predicted and filled.

use std::sync::Arc;
use std::time::Instant;

use css::model::{Entity, Kind};
use css::store::{EtcdStore, Format, StateStore, StoreError, Upsert};
use css_tests::EtcdServer;

use crate::list::MATCHING;
use crate::records::{Gen, MEASURE_SEED};
use crate::{ingest, list, median};

const CLUSTERS: usize = 10;
const GB: f64 = 1e9;

/// The fleet: (cluster, id, status) of every task, the listed cluster
/// ("bench-0") holding exactly MATCHING running ones.
fn fleet(n: usize) -> Vec<(String, String, &'static str)> {
    let mut g = Gen::new(MEASURE_SEED);
    (0..n)
        .map(|i| {
            let c = i % CLUSTERS;
            let nth = i / CLUSTERS;
            let running = if c == 0 {
                nth < MATCHING
            } else {
                nth % 10 == 0
            };
            (
                format!("bench-{c}"),
                g.task_id(),
                if running { "RUNNING" } else { "STOPPED" },
            )
        })
        .collect()
}

struct Sizes {
    /// JSON bytes of the stored entities, on average.
    json: f64,
    /// After compaction and defragmentation, per entity (the slope between
    /// half and all of the fleet, so the empty database does not count).
    per_entity: f64,
    /// Growth per entity while written (no defragmentation): what fills a quota.
    as_written: f64,
    /// History bytes per change (defragmented, not compacted).
    per_change: f64,
    change_json: f64,
    empty: f64,
}

/// A client for maintenance calls, without the store's request timeout
/// (defragmenting a large database takes a while).
async fn maintenance(endpoint: &str) -> etcd_client::MaintenanceClient {
    let c = etcd_client::Client::connect([endpoint], None)
        .await
        .expect("etcd");
    c.maintenance_client()
}

async fn db_size(store: &EtcdStore, endpoint: &str, defrag: bool) -> f64 {
    let mut m = maintenance(endpoint).await;
    if defrag {
        let rev = store.current_revision().await.expect("revision");
        store.compact(rev).await.expect("compact");
        m.defragment().await.expect("defragment");
    }
    m.status().await.expect("status").db_size() as f64
}

/// Writes `tasks` at `version`, 1,000 a batch; answers the JSON bytes written.
pub(crate) async fn write(
    store: &dyn StateStore,
    g: &mut Gen,
    tasks: &[(String, String, &'static str)],
    version: u64,
    flip: bool,
) -> Result<usize, StoreError> {
    let mut json = 0;
    for chunk in tasks.chunks(1000) {
        let entities: Vec<Entity> = chunk
            .iter()
            .enumerate()
            .map(|(i, (c, id, st))| {
                // A change: half of them also change status.
                let st = match (flip && i % 2 == 0, *st) {
                    (true, "RUNNING") => "STOPPED",
                    (true, _) => "RUNNING",
                    (false, s) => s,
                };
                let detail = g.task(c, id, st, version);
                json += detail.to_string().len();
                let raw =
                    serde_json::value::RawValue::from_string(detail.to_string()).expect("json");
                Entity::from_raw(Kind::Task, raw, true).expect("entity")
            })
            .collect();
        let writes: Vec<Upsert<'_>> = entities.iter().map(Upsert::event).collect();
        for r in store.upsert_many(&writes).await {
            r?;
        }
    }
    Ok(json)
}

async fn sizes(
    store: &EtcdStore,
    endpoint: &str,
    tasks: &[(String, String, &'static str)],
    changes: usize,
) -> Sizes {
    let mut g = Gen::new(MEASURE_SEED + 1);
    let empty = db_size(store, endpoint, true).await;
    let half = tasks.len() / 2;
    let mut json = write(store, &mut g, &tasks[..half], 1, false)
        .await
        .expect("write");
    let s1 = db_size(store, endpoint, true).await;
    json += write(store, &mut g, &tasks[half..], 1, false)
        .await
        .expect("write");
    let s2w = db_size(store, endpoint, false).await;
    let s2 = db_size(store, endpoint, true).await;
    // Changes outside the listed cluster, so its 1,000 matches stay.
    let changed: Vec<(String, String, &'static str)> = (tasks.iter())
        .filter(|t| t.0 != "bench-0")
        .take(changes)
        .cloned()
        .collect();
    let change_json = write(store, &mut g, &changed, 2, true)
        .await
        .expect("write");
    let s3d = {
        // Defragment without compacting: history stays, free pages go.
        let mut m = maintenance(endpoint).await;
        m.defragment().await.expect("defragment");
        m.status().await.expect("status").db_size() as f64
    };
    let n = (tasks.len() - half) as f64;
    Sizes {
        json: json as f64 / tasks.len() as f64,
        per_entity: (s2 - s1) / n,
        as_written: (s2w - s1) / n,
        per_change: (s3d - s2) / changes as f64,
        change_json: change_json as f64 / changes as f64,
        empty,
    }
}

pub async fn run(tasks: usize, quota_mb: u64, runs: usize) {
    let reps = runs.max(1) * 4;
    let fleet = fleet(tasks);
    let changes = tasks / 5;
    let mut rows = Vec::new();
    let mut stores = Vec::new();
    let mut servers = Vec::new();
    for format in [Format::Legacy, Format::Compact] {
        let etcd = EtcdServer::start();
        let store = etcd.store("/ecs-css/v1/").await;
        let store = Arc::new((*store).clone().with_format(format));
        let t = Instant::now();
        let s = sizes(&store, &etcd.endpoint(), &fleet, changes).await;
        eprintln!(
            "{format:?}: {tasks} tasks and {changes} changes measured in {:.0} s",
            t.elapsed().as_secs_f64()
        );
        rows.push((format, s));
        stores.push(store);
        servers.push(etcd);
    }
    // Reads: the router's filtered list on each, and one raw range read of
    // the 1,000 matching records as stored contiguously (the legacy index).
    // Compact three ways: every record read (no record cache: a process's
    // first list), records unchanged since the last list cached (a warm
    // process), and 10% of the matches changed before each list.
    let uncached: Arc<dyn StateStore> = Arc::new((*stores[1]).clone().with_record_cache(0));
    let running: Vec<(String, String, &'static str)> = (fleet.iter())
        .filter(|(c, _, st)| c == "bench-0" && *st == "RUNNING")
        .cloned()
        .collect();
    assert_eq!(running.len(), MATCHING);
    let mut g = Gen::new(MEASURE_SEED + 2);
    let mut lists: Vec<Vec<f64>> = vec![Vec::new(); 5];
    let legacy_index = "/ecs-css/v1/";
    for _ in 0..2 {
        list::via_router(stores[0].clone()).await;
        list::via_router(stores[1].clone()).await;
        list::via_router(uncached.clone()).await;
    }
    for r in 0..reps {
        lists[0].push(list::raw(&stores[0], legacy_index).await);
        lists[1].push(list::via_router(stores[0].clone()).await);
        lists[2].push(list::via_router(uncached.clone()).await);
        lists[3].push(list::via_router(stores[1].clone()).await);
        let tenth = MATCHING / 10;
        let changed = &running[(r * tenth) % MATCHING..][..tenth];
        write(stores[1].as_ref(), &mut g, changed, 2 + r as u64, false)
            .await
            .expect("changes");
        lists[4].push(list::via_router(stores[1].clone()).await);
    }
    let cache = stores[1].record_cache_usage();
    // Ingest: the ingest benchmark's workload, 10-event invocations, 4 at a time.
    let w = ingest::workload(10_000);
    let mut ingest_rates: Vec<Vec<f64>> = vec![Vec::new(); 2];
    for r in 0..runs.max(1) {
        for (i, etcd) in servers.iter().enumerate() {
            let s = etcd.store(&format!("/bench/ingest-{r}/")).await;
            let s = Arc::new((*s).clone().with_format(rows[i].0));
            ingest_rates[i].push(ingest::handler_run(s, &w, Some(10), 4).await);
        }
    }

    println!("# Record format: {tasks} tasks (JSON {:.0} B each on average) in 10 clusters, then {changes} changes (half of them status changes); one fresh etcd per format", rows[1].1.json);
    println!();
    println!("| figure | legacy (today) | compact | compact / legacy |");
    println!("|---|---:|---:|---:|");
    let (l, c) = (&rows[0].1, &rows[1].1);
    let line = |name: &str, a: f64, b: f64| println!("| {name} | {a:.0} | {b:.0} | {:.2} |", b / a);
    line(
        "bytes per entity, compacted and defragmented",
        l.per_entity,
        c.per_entity,
    );
    println!(
        "| ... as a multiple of the entity's JSON | {:.2} x | {:.2} x | |",
        l.per_entity / l.json,
        c.per_entity / c.json
    );
    line("bytes of history per change", l.per_change, c.per_change);
    println!(
        "| ... as a multiple of the changed entity's JSON ({:.0} B) | {:.2} x | {:.2} x | |",
        c.change_json,
        l.per_change / l.change_json,
        c.per_change / c.change_json
    );
    line(
        "bytes per entity as written (no defragmentation)",
        l.as_written,
        c.as_written,
    );
    let m: Vec<f64> = lists.iter().map(|v| median(v.clone())).collect();
    for (what, i) in [
        ("every record read (no record cache)", 2),
        ("unchanged records cached", 3),
        ("10% of the matches changed since the last list", 4),
    ] {
        println!(
            "| filtered list, {MATCHING} of {tasks} (ms, median of {reps}); compact: {what} | {:.2} | {:.2} | {:.2} |",
            m[1],
            m[i],
            m[i] / m[1]
        );
        println!(
            "| ... as a multiple of one raw range read of the {MATCHING} records ({:.2} ms) | {:.2} x | {:.2} x | |",
            m[0],
            m[1] / m[0],
            m[i] / m[0]
        );
    }
    let ing: Vec<f64> = ingest_rates.iter().map(|v| median(v.clone())).collect();
    println!("| ingest, 10,000 events in 10-event invocations, 4 at a time (events/s, median of {}) | {:.0} | {:.0} | {:.2} |", runs.max(1), ing[0], ing[1], ing[1] / ing[0]);

    println!();
    println!(
        "Record cache after the lists: {} records, {:.1} MiB by its weigher ({:.0} B a record); {} hits, {} misses.",
        cache.records,
        cache.bytes as f64 / (1u64 << 20) as f64,
        cache.bytes as f64 / cache.records.max(1) as f64,
        cache.hits,
        cache.misses
    );

    crate::list_costs::run(&stores[0], &stores[1], reps).await;

    // One etcd at 8 GB: a linear model from the measured slopes.
    println!();
    let at = |s: &Sizes, n: f64, ch: f64| s.empty + s.per_entity * n + s.per_change * ch;
    let hour = 100.0 * 3600.0;
    println!("One etcd at an 8 GB quota, 1,000,000 tasks and an hour of history at 100 changes/s ({hour:.0} changes): size = empty database + tasks x bytes per entity + changes x bytes per change");
    println!();
    println!("| format | predicted size | fits 8 GB |");
    println!("|---|---:|---|");
    for (f, s) in &rows {
        let size = at(s, 1e6, hour);
        println!(
            "| {f:?} | {:.2} GB | {} |",
            size / GB,
            if size <= 8.0 * GB { "yes" } else { "no" }
        );
    }
    let tasks_at_8gb = (8.0 * GB - c.empty - c.per_change * hour) / c.per_entity;
    println!();
    println!("Compact: {:.1} million tasks (plus that hour of history) fit 8 GB; 2 GB (etcd's default quota) holds {:.2} million with no history.", tasks_at_8gb / 1e6, (2.0 * GB - c.empty) / c.per_entity / 1e6);

    // A small quota filled to NOSPACE: it is the database as written that
    // meets the quota, so the prediction uses that rate.
    let quota = quota_mb << 20;
    let predicted = (quota as f64 - c.empty) / c.as_written;
    let etcd = EtcdServer::start_with_quota(quota);
    let store = etcd.store("/ecs-css/v1/").await;
    let mut g = Gen::new(MEASURE_SEED + 2);
    let big = fleet_of(predicted as usize * 2);
    let mut stored = 0usize;
    let t = Instant::now();
    for chunk in big.chunks(1000) {
        match write(store.as_ref(), &mut g, chunk, 1, false).await {
            Ok(_) => stored += chunk.len(),
            Err(StoreError::NoSpace(_)) => break,
            Err(e) => panic!("filling the quota: {e}"),
        }
    }
    // Count what is there (a batch may have been partly written).
    let counted = count(store.as_ref()).await;
    eprintln!("filled {quota_mb} MB in {:.0} s", t.elapsed().as_secs_f64());
    println!();
    println!("Filling a {quota_mb} MB quota (compact, tasks of the same generator, no history): predicted {predicted:.0} tasks = ({quota} - {:.0} empty) / {:.0} B as written; NOSPACE after {counted} stored ({stored} in whole batches): {:.2} of the prediction.", c.empty, c.as_written, counted as f64 / predicted);
}

fn fleet_of(n: usize) -> Vec<(String, String, &'static str)> {
    let mut g = Gen::new(MEASURE_SEED + 3);
    (0..n)
        .map(|i| (format!("fill-{}", i % CLUSTERS), g.task_id(), "RUNNING"))
        .collect()
}

async fn count(store: &dyn StateStore) -> usize {
    let mut req = css::store::ListRequest {
        kind: Kind::Task,
        cluster: css::store::ClusterScope::All,
        status: None,
        start_after: None,
        limit: 10_000,
        revision: None,
    };
    let mut n = 0;
    loop {
        let page = store.list_keys(&req).await.expect("keys");
        n += page.keys.len();
        if !page.more {
            return n;
        }
        req.revision = Some(page.revision);
        req.start_after = page.keys.last().map(|k| k.store_key.clone());
    }
}
