//! Filtered list: RUNNING tasks of one cluster through the router, next to a
//! raw etcd range read of exactly the matching records with the same client;
//! with 100,000 tasks stored and with 10,000 (same matches, fewer others).

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::http::Request;
use css::api::{self, AppState};
use css::model::Kind;
use css::store::{ClusterScope, EmbeddedStore, EtcdStore, Format, Keyspace, StateStore, Upsert};
use css_tests::fixtures::{entity, task_detail, ACCOUNT};
use css_tests::EtcdServer;
use etcd_client::GetOptions;
use tower::ServiceExt;

use crate::median;

const CLUSTERS: usize = 10;
/// RUNNING tasks in the cluster that is listed (10% of 10,000).
pub(crate) const MATCHING: usize = 1000;

/// `total` tasks over 10 clusters; the listed cluster ("bench-0") always
/// holds exactly MATCHING running tasks, everything else is STOPPED or elsewhere.
pub(crate) async fn seed(store: &dyn StateStore, total: usize) {
    let mut batch = Vec::new();
    let per_cluster = total / CLUSTERS;
    for c in 0..CLUSTERS {
        for t in 0..per_cluster {
            let running = if c == 0 { t < MATCHING } else { t % 10 == 0 };
            let status = if running { "RUNNING" } else { "STOPPED" };
            let id = format!("{c:02}{t:06}aabbccddeeff00112233");
            batch.push(entity(
                Kind::Task,
                &task_detail(&format!("bench-{c}"), ACCOUNT, &id, status, 1, true),
            ));
            if batch.len() == 2000 {
                write(store, &batch).await;
                batch.clear();
            }
        }
    }
    write(store, &batch).await;
}

async fn write(store: &dyn StateStore, batch: &[css::model::Entity]) {
    let writes: Vec<Upsert<'_>> = batch.iter().map(Upsert::event).collect();
    for r in store.upsert_many(&writes).await {
        r.expect("seed write");
    }
}

pub(crate) async fn via_router(store: Arc<dyn StateStore>) -> f64 {
    let app = api::router(AppState::local(
        store,
        Arc::new(css::cursor::EmbeddedCursorStore::new()),
    ));
    let req = Request::get("/v1/tasks?cluster=bench-0&status=RUNNING&limit=1000")
        .body(Body::empty())
        .expect("request");
    let t = Instant::now();
    let resp = app.oneshot(req).await.expect("infallible");
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .expect("body");
    let ms = t.elapsed().as_secs_f64() * 1000.0;
    let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(v["items"].as_array().map(Vec::len), Some(MATCHING));
    ms
}

/// A raw KV client of the store's etcd, with room for a page of large records.
pub(crate) async fn kv_client(store: &EtcdStore) -> etcd_client::KvClient {
    store
        .client()
        .await
        .expect("an etcd member")
        .kv_client()
        .max_decoding_message_size(64 << 20)
}

pub(crate) async fn raw(store: &EtcdStore, prefix: &str) -> f64 {
    let ks = Keyspace::new(prefix);
    let range = ks.list_prefix(
        Kind::Task,
        &ClusterScope::Named("bench-0".into()),
        Some("RUNNING"),
    );
    let mut kv = kv_client(store).await;
    let t = Instant::now();
    let resp = kv
        .get(
            range,
            Some(GetOptions::new().with_prefix().with_limit(MATCHING as i64)),
        )
        .await
        .expect("range read");
    let ms = t.elapsed().as_secs_f64() * 1000.0;
    assert_eq!(resp.kvs().len(), MATCHING);
    ms
}

pub async fn run(etcd: &EtcdServer, runs: usize) {
    let reps = runs.max(1) * 4;
    let big_prefix = "/bench/list-100k/";
    let small_prefix = "/bench/list-10k/";
    let (raw_big_prefix, raw_small_prefix) = ("/bench/raw-100k/", "/bench/raw-10k/");
    let big = etcd.store(big_prefix).await;
    let small = etcd.store(small_prefix).await;
    let t = Instant::now();
    seed(big.as_ref(), 100_000).await;
    seed(small.as_ref(), 10_000).await;
    // The raw baseline reads the 1,000 matching records in one range: the
    // legacy format's index holds them contiguously (the compact one holds
    // keys only, and a range of those would not read the records).
    let legacy = |prefix: &'static str| async move {
        let s = etcd.store(prefix).await;
        (*s).clone().with_format(Format::Legacy)
    };
    let (raw_big, raw_small) = (legacy(raw_big_prefix).await, legacy(raw_small_prefix).await);
    seed(&raw_big, 100_000).await;
    seed(&raw_small, 10_000).await;
    let emb_big = Arc::new(EmbeddedStore::new(big_prefix));
    let emb_small = Arc::new(EmbeddedStore::new(small_prefix));
    seed(emb_big.as_ref(), 100_000).await;
    seed(emb_small.as_ref(), 10_000).await;
    eprintln!("seeded in {:.1} s", t.elapsed().as_secs_f64());

    let mut rows: Vec<(&str, Vec<f64>)> = vec![
        (
            "raw etcd range read of the 1,000 matches (legacy index copies), 100,000 stored",
            vec![],
        ),
        ("router, etcd, 100,000 stored", vec![]),
        ("router, etcd, 10,000 stored", vec![]),
        (
            "raw etcd range read of the 1,000 matches (legacy index copies), 10,000 stored",
            vec![],
        ),
        ("router, embedded store, 100,000 stored", vec![]),
        ("router, embedded store, 10,000 stored", vec![]),
        (
            "router, etcd, 100,000 stored, no record cache (a process's first list)",
            vec![],
        ),
    ];
    let uncached: Arc<dyn StateStore> = Arc::new((*big).clone().with_record_cache(0));
    // Warm up connections and caches, then interleave.
    via_router(big.clone()).await;
    raw(&raw_big, raw_big_prefix).await;
    for _ in 0..reps {
        rows[0].1.push(raw(&raw_big, raw_big_prefix).await);
        rows[1].1.push(via_router(big.clone()).await);
        rows[2].1.push(via_router(small.clone()).await);
        rows[3].1.push(raw(&raw_small, raw_small_prefix).await);
        rows[4].1.push(via_router(emb_big.clone()).await);
        rows[5].1.push(via_router(emb_small.clone()).await);
        rows[6].1.push(via_router(uncached.clone()).await);
    }
    let m: Vec<f64> = rows.iter().map(|(_, v)| median(v.clone())).collect();
    println!("# Filtered list: RUNNING tasks of one cluster ({MATCHING} matches), limit=1000");
    println!();
    println!("| what | median ms ({reps} runs) | ratio |");
    println!("|---|---:|---:|");
    println!("| {} | {:.2} | 1.00 (baseline) |", rows[0].0, m[0]);
    println!("| {} | {:.2} | {:.2} x raw |", rows[1].0, m[1], m[1] / m[0]);
    println!(
        "| {} | {:.2} | {:.2} x the 100,000 case |",
        rows[2].0,
        m[2],
        m[2] / m[1]
    );
    println!(
        "| {} | {:.2} | {:.2} x raw 100,000 |",
        rows[3].0,
        m[3],
        m[3] / m[0]
    );
    println!(
        "| {} | {:.2} | {:.2} x raw etcd |",
        rows[4].0,
        m[4],
        m[4] / m[0]
    );
    println!(
        "| {} | {:.2} | {:.2} x the 100,000 case |",
        rows[5].0,
        m[5],
        m[5] / m[4]
    );
    println!(
        "| {} | {:.2} | {:.2} x raw; {:.2} x with the cache |",
        rows[6].0,
        m[6],
        m[6] / m[0],
        m[6] / m[1]
    );
}
