//! Ingest: the handler applying a 10,000-event workload (10 clusters, four
//! versions per task delivered out of order, 20% duplicates), next to plain
//! etcd puts of the same keys and value sizes with the same client.

use std::collections::HashMap;
use std::sync::Arc;

use css::lambda::handle_sqs;
use css::model::{Entity, Kind};
use css::store::UPSERT_CONCURRENCY as WRITE_CONCURRENCY;
use css::store::{encode_record, EtcdStore, Keyspace, StateStore, Upsert};
use css_tests::fixtures::{sqs_event, task_detail, task_event, ACCOUNT};
use css_tests::EtcdServer;
use futures::StreamExt;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use crate::{median, timed};

const CLUSTERS: usize = 10;
const VERSIONS: u64 = 4;

pub struct Workload {
    pub bodies: Vec<String>,
    /// Highest version per task id.
    pub expected: HashMap<String, u64>,
}

pub fn workload(n: usize) -> Workload {
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    let distinct = n * 4 / 5;
    let tasks = distinct / VERSIONS as usize;
    let mut events: Vec<(u64, String, String)> = Vec::new();
    let mut expected = HashMap::new();
    for v in 1..=VERSIONS {
        let status = match v {
            1 => "PENDING",
            v if v == VERSIONS => "STOPPED",
            _ => "RUNNING",
        };
        for t in 0..tasks {
            let id = format!("{t:08x}aa55bb66cc77dd88");
            let cluster = format!("bench-{}", t % CLUSTERS);
            let body = task_event(&task_detail(&cluster, ACCOUNT, &id, status, v, true));
            expected.insert(id.clone(), v);
            events.push((v, id, body));
        }
    }
    // Roughly in order, but shuffled within windows: versions of one task
    // can arrive swapped.
    for window in events.chunks_mut(tasks / 2 + 1) {
        window.shuffle(&mut rng);
    }
    let mut bodies: Vec<String> = events.into_iter().map(|(_, _, b)| b).collect();
    while bodies.len() < n {
        let i = rng.random_range(0..bodies.len());
        let dup = bodies[i].clone();
        let at = (i + rng.random_range(0..200)).min(bodies.len());
        bodies.insert(at, dup);
    }
    Workload { bodies, expected }
}

/// Lambda's invocation payload limit.
const MAX_PAYLOAD: usize = 6 * 1024 * 1024;

/// The workload cut into SQS events: `Some(n)` records each, or (None) as
/// many as fit in one 6 MB invocation.
fn invocations(w: &Workload, batch: Option<usize>) -> Vec<aws_lambda_events::event::sqs::SqsEvent> {
    let Some(n) = batch else {
        let mut out = Vec::new();
        let mut start = 0;
        while start < w.bodies.len() {
            // Grow the batch while its serialized event stays under the limit.
            let mut end = start + 1;
            let mut step = 512;
            while step > 0 {
                let next = (end + step).min(w.bodies.len());
                if next > end && payload_len(&w.bodies[start..next]) <= MAX_PAYLOAD {
                    end = next;
                } else {
                    step /= 2;
                }
            }
            out.push(sqs_event(&w.bodies[start..end]));
            start = end;
        }
        return out;
    };
    w.bodies.chunks(n).map(sqs_event).collect()
}

fn payload_len(bodies: &[String]) -> usize {
    serde_json::to_vec(&sqs_event(bodies)).map_or(usize::MAX, |v| v.len())
}

pub(crate) async fn handler_run(
    store: Arc<EtcdStore>,
    w: &Workload,
    batch: Option<usize>,
    parallel: usize,
) -> f64 {
    let events = invocations(w, batch);
    let elapsed = timed(async {
        futures::stream::iter(events)
            .map(|ev| {
                let store = store.clone();
                async move {
                    let resp = handle_sqs(store.as_ref(), ev).await.expect("handler");
                    assert!(resp.batch_item_failures.is_empty(), "no failures expected");
                }
            })
            .buffer_unordered(parallel)
            .collect::<Vec<_>>()
            .await;
    })
    .await;
    verify(store.as_ref(), w).await;
    w.bodies.len() as f64 / elapsed.as_secs_f64()
}

async fn verify(store: &dyn StateStore, w: &Workload) {
    for (id, v) in w.expected.iter().take(200) {
        let n: usize = id[..8]
            .chars()
            .fold(0, |a, c| a * 16 + c.to_digit(16).unwrap_or(0) as usize);
        let detail = task_detail(
            &format!("bench-{}", n % CLUSTERS),
            ACCOUNT,
            id,
            "RUNNING",
            1,
            true,
        );
        let e = css_tests::fixtures::entity(Kind::Task, &detail);
        let got = store.get(&e.key, None).await.expect("get").expect("stored");
        assert_eq!(
            got.meta().expect("meta").ecs_version,
            *v,
            "final version of {id}"
        );
    }
}

/// Plain puts, one per event: same keys and value sizes, same client, same concurrency.
async fn raw_run(store: &EtcdStore, w: &Workload, prefix: &str, concurrency: usize) -> f64 {
    let ks = Keyspace::new(prefix);
    let puts: Vec<(String, Vec<u8>)> = w
        .bodies
        .iter()
        .map(|b| {
            let v: serde_json::Value = serde_json::from_str(b).expect("json");
            let raw =
                serde_json::value::RawValue::from_string(v["detail"].to_string()).expect("raw");
            let e = Entity::from_raw(Kind::Task, raw, true).expect("entity");
            (
                ks.primary(&e.key),
                encode_record(&Upsert::event(&e)).to_vec(),
            )
        })
        .collect();
    let client = store.client().await.expect("an etcd member");
    let elapsed = timed(async {
        futures::stream::iter(puts)
            .map(|(k, v)| {
                let mut kv = client.kv_client();
                async move {
                    kv.put(k, v, None).await.expect("put");
                }
            })
            .buffer_unordered(concurrency)
            .collect::<Vec<_>>()
            .await;
    })
    .await;
    w.bodies.len() as f64 / elapsed.as_secs_f64()
}

pub async fn run(etcd: &EtcdServer, n: usize, runs: usize) {
    let w = workload(n);
    let distinct_tasks = w.expected.len();
    println!(
        "# Ingest: {n} events, {CLUSTERS} clusters, {distinct_tasks} tasks x {VERSIONS} versions out of order, {} duplicates",
        n - distinct_tasks * VERSIONS as usize
    );
    let big = invocations(&w, None);
    let per_big = w.bodies.len() / big.len().max(1);
    let big_name =
        format!("handler, invocations of at most 6 MB (~{per_big} events), one at a time");
    let modes: [(&str, Option<usize>, usize); 2] = [
        (&big_name, None, 1),
        (
            "handler, 10-event invocations (SQS default), 4 at a time",
            Some(10),
            4,
        ),
    ];
    let mut raw = Vec::new();
    let mut handler: Vec<Vec<f64>> = vec![Vec::new(); modes.len()];
    for r in 0..runs {
        // Interleave the measurements so drift hits all of them alike.
        let prefix = format!("/bench/raw-{r}/");
        let store = etcd.store(&prefix).await;
        raw.push(raw_run(&store, &w, &prefix, WRITE_CONCURRENCY).await);
        for (m, (_, batch, parallel)) in modes.iter().enumerate() {
            let store = etcd.store(&format!("/bench/handler-{m}-{r}/")).await;
            handler[m].push(handler_run(store, &w, *batch, *parallel).await);
        }
        // Keep etcd small between runs.
        let s = etcd.store("/bench/").await;
        let rev = s.current_revision().await.expect("revision");
        s.compact(rev).await.expect("compact");
    }
    let raw_med = median(raw);
    println!();
    println!("| what | events/s (median of {runs}) | ratio to raw puts |");
    println!("|---|---:|---:|");
    println!(
        "| raw etcd puts, one per event, concurrency {WRITE_CONCURRENCY} | {raw_med:.0} | 1.00 |"
    );
    for (m, (name, _, _)) in modes.iter().enumerate() {
        let med = median(handler[m].clone());
        println!("| {name} | {med:.0} | {:.2} |", med / raw_med);
    }
}
