//! Ingest end to end: server mode polling a moto SQS queue that holds the
//! ingest workload, from start to the final state in etcd; next to moto alone
//! handing out and deleting the same messages (10 per receive, one receiver,
//! as the poller does), so the queue's own cost is visible.
//!
//! moto's SQS costs grow with the queue's length (sends and receives scan
//! every message), so this runs a smaller slice of the workload than the
//! handler benchmark: 2,000 events take moto alone about two minutes.

use std::time::{Duration, Instant};

use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use aws_sdk_sqs::Client;
use clap::Parser;
use css::model::Kind;
use css::store::{ClusterScope, ListRequest, StateStore};
use css_server::{AwsOverrides, Server, ServerConfig};
use css_tests::moto::MotoServer;
use css_tests::EtcdServer;

use crate::ingest::{workload, Workload};
use crate::median;

async fn fill(sqs: &Client, name: &str, w: &Workload) -> String {
    let url = sqs
        .create_queue()
        .queue_name(name)
        .send()
        .await
        .expect("create queue")
        .queue_url
        .expect("queue url");
    for (n, chunk) in w.bodies.chunks(10).enumerate() {
        let entries: Vec<_> = chunk
            .iter()
            .enumerate()
            .map(|(i, b)| {
                SendMessageBatchRequestEntry::builder()
                    .id(format!("m{n}-{i}"))
                    .message_body(b)
                    .build()
                    .expect("entry")
            })
            .collect();
        let r = sqs
            .send_message_batch()
            .queue_url(&url)
            .set_entries(Some(entries))
            .send()
            .await
            .expect("send batch");
        assert!(r.failed.is_empty(), "moto refused messages");
    }
    url
}

/// Tasks at their final version (every task's last version is STOPPED).
async fn final_count(store: &dyn StateStore) -> usize {
    let mut n = 0;
    let mut after = None;
    loop {
        let page = store
            .list_keys(&ListRequest {
                kind: Kind::Task,
                cluster: ClusterScope::All,
                status: Some("STOPPED".into()),
                start_after: after.take(),
                limit: 5000,
                revision: None,
            })
            .await
            .expect("list");
        n += page.keys.len();
        match (page.more, page.keys.last()) {
            (true, Some(k)) => after = Some(k.store_key.clone()),
            _ => return n,
        }
    }
}

async fn via_server(etcd: &EtcdServer, sqs: &Client, url: &str, prefix: &str, want: usize) -> f64 {
    let cfg = ServerConfig::try_parse_from([
        "css-server",
        "--bind",
        "127.0.0.1:0",
        "--etcd-endpoints",
        &etcd.endpoint(),
        "--key-prefix",
        prefix,
        "--queue-url",
        url,
        "--compaction-interval",
        "1h",
    ])
    .expect("server flags");
    let t0 = Instant::now();
    let server = Server::start(
        cfg,
        AwsOverrides {
            sqs: Some(sqs.clone()),
            ..Default::default()
        },
    )
    .await
    .expect("server starts");
    let store = server.store();
    let deadline = t0 + Duration::from_secs(600);
    while final_count(store.as_ref()).await < want {
        assert!(
            Instant::now() < deadline,
            "server mode did not drain the queue"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took = t0.elapsed();
    server.shutdown().await.expect("shutdown");
    took.as_secs_f64()
}

async fn moto_alone(sqs: &Client, url: &str, total: usize) -> f64 {
    let t0 = Instant::now();
    let mut done = 0;
    while done < total {
        let r = sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .wait_time_seconds(20)
            .send()
            .await
            .expect("receive");
        let msgs = r.messages.unwrap_or_default();
        let entries = css_server::sqs::delete_entries(msgs.iter());
        if entries.is_empty() {
            continue;
        }
        done += entries.len();
        sqs.delete_message_batch()
            .queue_url(url)
            .set_entries(Some(entries))
            .send()
            .await
            .expect("delete");
    }
    t0.elapsed().as_secs_f64()
}

pub async fn run(etcd: &EtcdServer, events: usize, runs: usize) {
    let moto = MotoServer::start();
    let sqs = moto.sqs();
    let w = workload(events);
    let want = w.expected.len();
    let (mut server, mut alone, mut fills) = (Vec::new(), Vec::new(), Vec::new());
    for r in 0..runs {
        let t = Instant::now();
        let url = fill(&sqs, &format!("bench-alone-{r}"), &w).await;
        fills.push(t.elapsed().as_secs_f64());
        alone.push(moto_alone(&sqs, &url, w.bodies.len()).await);
        let url = fill(&sqs, &format!("bench-server-{r}"), &w).await;
        server.push(via_server(etcd, &sqs, &url, &format!("/bench/sqs-{r}/"), want).await);
    }
    let n = w.bodies.len() as f64;
    let (server, alone, fill) = (median(server), median(alone), median(fills));
    println!("## Ingest end to end (server mode polling SQS)\n");
    println!(
        "{events} events (the ingest workload) queued in moto's SQS; 10 messages per receive, one\n\
         receiver. Median of {runs}.\n"
    );
    println!("| what | seconds | events/s | ratio to moto alone |");
    println!("|---|---:|---:|---:|");
    println!(
        "| moto alone: receive + delete every message | {alone:.2} | {:.0} | 1.00 |",
        n / alone
    );
    println!(
        "| server mode: start to final state in etcd | {server:.2} | {:.0} | {:.2} |",
        n / server,
        server / alone
    );
    // What the service adds on top of the queue: its own share of the time.
    // It can come out at or below zero (the service's work overlaps its waits
    // on moto, and both medians carry noise): then there is no rate to give.
    let own = server - alone;
    let rate = if own > 0.0 {
        format!("{:.0}", n / own)
    } else {
        "-".to_owned()
    };
    println!(
        "| the service's share (server mode minus moto alone) | {own:.2} | {rate} | {:.2} |",
        own / alone
    );
    println!(
        "| (filling the queue, for scale) | {fill:.2} | {:.0} | - |",
        n / fill
    );
}
