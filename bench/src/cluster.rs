//! The store on a 3-member etcd cluster with mutual TLS next to a plaintext
//! single member, in one run: ingest events/s through the handler (10-event
//! invocations, 4 at a time, as SQS delivers them), the filtered-list median
//! through the router, and the time from a leader kill to the first
//! successful write after it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use css::model::Kind;
use css::store::{EtcdStore, StateStore, Upsert};
use css_tests::fixtures::{entity, task_detail, ACCOUNT};
use css_tests::{EtcdCluster, EtcdServer};

use crate::{ingest, list, median};

/// Writes one task after another until `until`; answers the instants of the
/// successful writes and how many writes failed.
async fn writer(store: Arc<EtcdStore>, until: Instant) -> (Vec<Instant>, usize) {
    let (mut ok, mut failed) = (Vec::new(), 0);
    let mut v = 0u64;
    while Instant::now() < until {
        v += 1;
        let d = task_detail("failover", ACCOUNT, "w1", "RUNNING", v, true);
        let e = entity(Kind::Task, &d);
        match store.upsert_if_newer(Upsert::event(&e)).await {
            Ok(_) => ok.push(Instant::now()),
            Err(_) => failed += 1,
        }
    }
    (ok, failed)
}

/// Kills the leader under a steady writer whose client talks to it; answers
/// the time from the kill to the next successful write and the writes that
/// failed, and restarts the member so the cluster is whole again.
async fn failover(cluster: &mut EtcdCluster) -> (f64, usize) {
    let leader = cluster.leader().await.expect("a leader");
    let store = cluster.store_from(leader, "/bench/failover/").await;
    let until = Instant::now() + Duration::from_secs(8);
    let writes = tokio::spawn(writer(store, until));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let killed = Instant::now();
    cluster.kill(leader);
    let (ok, failed) = writes.await.expect("writer");
    cluster.restart(leader);
    cluster.wait_for_leader(Duration::from_secs(10)).await;
    let first = ok
        .into_iter()
        .find(|t| *t > killed)
        .expect("a write after the kill");
    ((first - killed).as_secs_f64() * 1000.0, failed)
}

pub async fn run(runs: usize) {
    let runs = runs.max(1);
    let single = EtcdServer::start();
    let mut cluster = EtcdCluster::start(3, true).await;
    let w = ingest::workload(5_000);
    println!(
        "# The store on 3 members with mutual TLS vs 1 plaintext member (local processes, 2 cores)"
    );
    let (mut ingest_single, mut ingest_cluster) = (Vec::new(), Vec::new());
    for r in 0..runs {
        let s = single.store(&format!("/bench/ingest-{r}/")).await;
        ingest_single.push(ingest::handler_run(s, &w, Some(10), 4).await);
        let s = cluster.store(&format!("/bench/ingest-{r}/")).await;
        ingest_cluster.push(ingest::handler_run(s, &w, Some(10), 4).await);
    }
    let (s, c) = (
        single.store("/bench/list/").await,
        cluster.store("/bench/list/").await,
    );
    list::seed(s.as_ref(), 10_000).await;
    list::seed(c.as_ref(), 10_000).await;
    let (mut list_single, mut list_cluster) = (Vec::new(), Vec::new());
    for _ in 0..runs.max(5) {
        list_single.push(list::via_router(s.clone()).await);
        list_cluster.push(list::via_router(c.clone()).await);
    }
    let (mut kills, mut failed) = (Vec::new(), 0);
    for _ in 0..runs {
        let (ms, f) = failover(&mut cluster).await;
        kills.push(ms);
        failed += f;
    }
    let (is, ic) = (median(ingest_single), median(ingest_cluster));
    let (ls, lc) = (median(list_single), median(list_cluster));
    println!();
    println!("| what | 1 member, plaintext | 3 members, mutual TLS | ratio |");
    println!("|---|---:|---:|---:|");
    println!(
        "| ingest, {} events in 10-event invocations, 4 at a time (events/s, median of {runs}) | {is:.0} | {ic:.0} | {:.2} |",
        w.bodies.len(),
        ic / is
    );
    println!(
        "| filtered list, 1,000 of 10,000 tasks (ms, median of {}) | {ls:.1} | {lc:.1} | {:.2} |",
        runs.max(5),
        lc / ls
    );
    let mut sorted = kills.clone();
    sorted.sort_by(f64::total_cmp);
    println!(
        "| leader killed under a writer on it: to the next successful write (ms; median of {runs}, all: {}) | - | {:.0} | - |",
        sorted.iter().map(|k| format!("{k:.0}")).collect::<Vec<_>>().join(", "),
        median(kills)
    );
    println!("| writes that failed across the {runs} kills | - | {failed} | - |");
}
