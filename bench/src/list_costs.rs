//! Where a filtered list's time goes, per format: the parts of the 1,000-
//! record list measured alone, each the median of the same rounds. They
//! weigh the two ways an index can reach records: pointers (a keys-only
//! index range, then one get per record) or copies (one range read of the
//! records themselves, as the legacy index holds them).

use std::time::Instant;

use css::model::Kind;
use css::store::{decode_value, ClusterScope, EtcdStore, RecordMeta};
use etcd_client::{GetOptions, Txn, TxnOp};

use crate::list::{kv_client, MATCHING};
use crate::median;

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}

/// Prints the parts' medians over `reps` rounds.
pub async fn run(legacy: &EtcdStore, compact: &EtcdStore, reps: usize) {
    // One set of key names serves both stores.
    let ks = compact.keyspace();
    assert_eq!(legacy.keyspace().prefix(), ks.prefix());
    let cluster = ClusterScope::Named("bench-0".into());
    let index = ks.list_prefix(Kind::Task, &cluster, Some("RUNNING"));
    // 1,000 compressed records in one range: the listed cluster's first
    // primaries, as contiguous as index copies would hold them.
    let primaries = ks.list_prefix(Kind::Task, &cluster, None);
    let (mut lkv, mut ckv) = (kv_client(legacy).await, kv_client(compact).await);
    let range = |keys_only: bool| {
        let o = GetOptions::new().with_prefix().with_limit(MATCHING as i64);
        Some(if keys_only { o.with_keys_only() } else { o })
    };
    let mut parts: Vec<(&str, Vec<f64>)> = vec![
        (
            "legacy: one range read of the 1,000 index copies (plain JSON)",
            vec![],
        ),
        ("legacy: parsing the 1,000 records", vec![]),
        ("compact: keys-only range of the 1,000 index keys", vec![]),
        (
            "compact: the 1,000 records by key (8 multi-gets of 125 at once)",
            vec![],
        ),
        ("compact: decompressing the 1,000 records", vec![]),
        (
            "(copies, compressed: one range read of 1,000 compressed records)",
            vec![],
        ),
    ];
    for _ in 0..reps {
        let t = Instant::now();
        let copies = lkv.get(index.as_str(), range(false)).await.expect("range");
        parts[0].1.push(ms(t));
        let t = Instant::now();
        for kv in copies.kvs() {
            let m: RecordMeta = serde_json::from_slice(kv.value()).expect("record");
            std::hint::black_box(m);
        }
        parts[1].1.push(ms(t));

        let t = Instant::now();
        let keys = ckv.get(index.as_str(), range(true)).await.expect("range");
        parts[2].1.push(ms(t));
        let rev = keys.header().map_or(0, |h| h.revision());
        let names: Vec<String> = keys
            .kvs()
            .iter()
            .filter_map(|kv| ks.parse(kv.key_str().ok()?))
            .map(|k| ks.primary(&k))
            .collect();
        assert_eq!(names.len(), MATCHING);
        let t = Instant::now();
        let gets = names.chunks(125).map(|chunk| {
            let mut c = ckv.clone();
            let o = GetOptions::new().with_revision(rev);
            let txn = Txn::new().and_then(
                chunk
                    .iter()
                    .map(|k| TxnOp::get(k.as_str(), Some(o.clone())))
                    .collect::<Vec<_>>(),
            );
            async move { c.txn(txn).await.expect("multi-get") }
        });
        let got = futures::future::join_all(gets).await;
        parts[3].1.push(ms(t));
        let found: usize = got
            .iter()
            .flat_map(|r| r.op_responses())
            .filter(|op| matches!(op, etcd_client::TxnOpResponse::Get(g) if g.kvs().len() == 1))
            .count();
        assert_eq!(found, MATCHING);

        let t = Instant::now();
        let records = ckv
            .get(primaries.as_str(), range(false))
            .await
            .expect("range");
        parts[5].1.push(ms(t));
        assert_eq!(records.kvs().len(), MATCHING);
        let t = Instant::now();
        for kv in records.kvs() {
            std::hint::black_box(decode_value(kv.value()).expect("record"));
        }
        parts[4].1.push(ms(t));
    }
    println!();
    println!("Where the filtered list's time goes (each part alone, median of {reps} rounds, ms):");
    println!();
    println!("| part | ms |");
    println!("|---|---:|");
    for (name, v) in parts {
        println!("| {name} | {:.2} |", median(v));
    }
}
