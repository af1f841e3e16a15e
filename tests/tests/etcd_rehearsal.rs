//! A local rehearsal of the stack's own etcd, as CloudFormation would drive
//! it: three members booted one after the other by deploy/etcd/boot.sh with
//! the certificates the custom resource issues (each member on its own
//! loopback address, 127.0.0.2-4, as its private IP; a directory of its own
//! as its data volume); then a launch template change (a new release tarball
//! and a new setting) rolled out as each member's Auto Scaling group does it:
//! the old instance terminated (etcd stopped, its root wiped), a new one
//! booted on the kept volume and identity, and the next member only after
//! its health gate passed. Throughout, the service ingests and answers: no
//! record may fail and no write be lost, and a member that comes back as a
//! new cluster or member fails the rehearsal. Then README's operator steps
//! as written, a member moved to a new IP (EtcdReplaceMember), and a member
//! whose volume was lost, rebuilt by the documented procedure.
//! Run with --nocapture for the transcript.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use css::store::StateStore;
use css_server::{AwsOverrides, ServerConfig};
use css_tests::boot::{release, Boot, Member};
use css_tests::cfn::Cfn;
use css_tests::fixtures::{all_tasks, sqs_event, task_detail, task_event, ACCOUNT};
use css_tests::server::TestServer;
use serde_json::{json, Value};

const IPS: [&str; 3] = ["127.0.0.2", "127.0.0.3", "127.0.0.4"];
/// Where m2 moves.
const MOVED: &str = "127.0.0.5";
const TASKS: usize = 100;

struct Rehearsal {
    cfn: Cfn,
    dir: tempfile::TempDir,
    members: Vec<Member>,
    generation: usize,
}

impl Rehearsal {
    fn member(&mut self, index: usize, ip: &str, data: &str) -> Member {
        self.generation += 1;
        Member {
            index,
            ip: ip.to_string(),
            root: self
                .dir
                .path()
                .join(format!("m{index}-instance-{}", self.generation)),
            data: self.dir.path().join(data),
        }
    }

    /// Boots `m` (a new instance); answers boot.sh's log and how long it
    /// took to pass its health gate.
    fn boot(&self, m: &Member, boot: &Boot) -> (bool, String, Duration) {
        let started = Instant::now();
        let out = boot.member(m);
        let mut log = String::from_utf8_lossy(&out.stderr).into_owned();
        if !out.status.success() {
            let etcd = std::fs::read_to_string(m.root.join("var/log/etcd.log")).unwrap_or_default();
            let tail: Vec<&str> = etcd.lines().rev().take(8).collect();
            log.push_str(&format!("etcd's log, newest first:\n{}\n", tail.join("\n")));
        }
        (out.status.success(), log, started.elapsed())
    }
}

/// Counters of the service under load.
#[derive(Default)]
struct Load {
    stop: AtomicBool,
    records: AtomicU64,
    failed_records: AtomicU64,
    requests: AtomicU64,
    failed_requests: AtomicU64,
    /// Each task's newest version the ingest acknowledged.
    acked: Mutex<BTreeMap<String, u64>>,
}

impl Load {
    fn snapshot(&self) -> (u64, u64, u64, u64) {
        (
            self.records.load(Ordering::SeqCst),
            self.failed_records.load(Ordering::SeqCst),
            self.requests.load(Ordering::SeqCst),
            self.failed_requests.load(Ordering::SeqCst),
        )
    }
}

fn event(task: usize, version: u64) -> String {
    task_event(&task_detail(
        "rehearsal",
        ACCOUNT,
        &format!("t{task:03}"),
        "RUNNING",
        version,
        true,
    ))
}

/// Ingests every task's next version in batches of 10, round after round.
async fn writer(store: Arc<dyn StateStore>, load: Arc<Load>) {
    let mut version = 1;
    while !load.stop.load(Ordering::SeqCst) {
        version += 1;
        for chunk in (0..TASKS).collect::<Vec<_>>().chunks(10) {
            let bodies: Vec<String> = chunk.iter().map(|t| event(*t, version)).collect();
            let res = css::lambda::handle_sqs(store.as_ref(), sqs_event(&bodies)).await;
            let failed = res
                .map(|r| r.batch_item_failures.len())
                .unwrap_or(bodies.len());
            load.records
                .fetch_add(bodies.len() as u64, Ordering::SeqCst);
            load.failed_records
                .fetch_add(failed as u64, Ordering::SeqCst);
            if failed == 0 {
                let mut acked = load.acked.lock().unwrap_or_else(|e| e.into_inner());
                for t in chunk {
                    acked.insert(format!("t{t:03}"), version);
                }
            }
        }
    }
}

/// Lists through the HTTP API as a client would, every 20 ms.
async fn reader(srv: Arc<TestServer>, load: Arc<Load>) {
    while !load.stop.load(Ordering::SeqCst) {
        let r = srv
            .get("/v1/tasks?cluster=rehearsal&status=RUNNING&limit=20")
            .await;
        load.requests.fetch_add(1, Ordering::SeqCst);
        if r.status != 200 {
            load.failed_requests.fetch_add(1, Ordering::SeqCst);
            eprintln!("  request failed: {} {}", r.status, r.body);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Each task's stored ECS version, by id.
async fn stored_versions(store: &dyn StateStore) -> BTreeMap<String, u64> {
    (all_tasks(store).await.into_iter())
        .map(|(k, (_, v))| (k.rsplit('/').next().unwrap_or_default().to_string(), v))
        .collect()
}

/// The operator steps README gives for a member (the block after
/// `<!-- operator-steps -->`), without their comments.
fn readme_operator_steps() -> Vec<String> {
    css_tests::fixtures::readme_commands("<!-- operator-steps -->")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_stacks_etcd_is_created_replaced_one_member_at_a_time_operated_and_moved() {
    css::config::init_logging(false, Some("warn"));
    let cfn = Cfn::new().await;
    let dir = tempfile::tempdir().expect("temp dir");

    // The custom resource issues the certificates for the members' IPs.
    let props = cfn.certificate_properties(&IPS).await;
    let (ok, answer) = cfn.send("Create", &props).await;
    assert!(ok && answer["Status"] == "SUCCESS", "{answer}");
    let secrets: Vec<String> = (0..3)
        .map(|i| {
            props["MemberSecretArns"][i]
                .as_str()
                .expect("ARN")
                .to_string()
        })
        .collect();

    let cluster = Boot::cluster(&cfn.moto, dir.path(), &IPS, &[MOVED], &secrets);
    let (client_port, peer_port, sha) = (cluster.client_port, cluster.peer_port, cluster.sha);
    let boot = cluster
        .boot
        .set("ETCD_SNAPSHOT_COUNT", "10000")
        .set("CLUSTER_TOKEN", "css-etcd")
        .set("GATE_TIMEOUT", "120");
    let mut r = Rehearsal {
        cfn,
        dir,
        members: Vec::new(),
        generation: 0,
    };

    // Creation: each member's group waits for the one before.
    eprintln!("== create: m0, m1, m2 in turn");
    for (i, ip) in IPS.iter().enumerate() {
        let m = r.member(i, ip, &format!("m{i}-volume"));
        let (ok, log, took) = r.boot(&m, &boot);
        assert!(ok, "m{i} did not boot:\n{log}");
        eprintln!("{log}");
        assert!(log.contains(&format!("member m{i}: SUCCESS")), "{log}");
        eprintln!(
            "  m{i} at {ip}: signalled after {:.1} s",
            took.as_secs_f64()
        );
        r.members.push(m);
    }
    let identities: Vec<(u64, u64, String)> = (r.members.iter())
        .map(|m| {
            m.identity().unwrap_or_else(|e| {
                let log =
                    std::fs::read_to_string(m.root.join("var/log/etcd.log")).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(15).collect();
                panic!("{e}\netcd log of m{}:\n{}", m.index, tail.join("\n"))
            })
        })
        .collect();
    let cluster_id = identities[0].0;
    assert!(
        identities.iter().all(|(c, _, _)| *c == cluster_id),
        "{identities:?}"
    );
    eprintln!(
        "  cluster {cluster_id:x}, members {}",
        (identities.iter())
            .map(|(_, m, v)| format!("{m:x} (etcd {v})"))
            .collect::<Vec<_>>()
            .join(", ")
    );

    // The service, configured as the functions are: every member, mutual
    // TLS with the client certificate from its secret.
    let client = r
        .cfn
        .read(props["ClientSecretArn"].as_str().expect("ARN"))
        .await;
    let pem = |field: &str, name: &str| {
        let path = r.dir.path().join(name);
        std::fs::write(&path, client[field].as_str().expect("PEM")).expect("write PEM");
        path.to_string_lossy().into_owned()
    };
    let (ca, cert, key) = (
        pem("ca", "ca.pem"),
        pem("cert", "client.pem"),
        pem("key", "client-key.pem"),
    );
    let endpoints: Vec<String> = IPS
        .iter()
        .map(|ip| format!("https://{ip}:{client_port}"))
        .collect();
    let cfg = ServerConfig::try_parse_from([
        "css-server",
        "--bind",
        "127.0.0.1:0",
        "--etcd-endpoints",
        &endpoints.join(","),
        "--etcd-ca-file",
        &ca,
        "--etcd-cert-file",
        &cert,
        "--etcd-key-file",
        &key,
        "--etcd-timeout",
        "2s",
    ])
    .expect("server flags");
    let srv = Arc::new(TestServer::start_with(cfg, AwsOverrides::default()).await);
    let store = srv.server.store();

    let load = Arc::new(Load::default());
    let writing = tokio::spawn(writer(store.clone(), load.clone()));
    let reading = tokio::spawn(reader(srv.clone(), load.clone()));
    tokio::time::sleep(Duration::from_secs(2)).await;

    // A launch template change: a new release tarball and a new setting.
    // Each group terminates its instance, then boots a new one on the same
    // volume and interface, and signals once it serves with every member.
    let (url_b, sha_b) = release(r.dir.path(), "b");
    assert_ne!(sha_b, sha);
    let updated = boot
        .clone()
        .set("ETCD_SHA256", &sha_b)
        .set("ETCD_DOWNLOAD_URL", &url_b)
        .set("ETCD_SNAPSHOT_COUNT", "5000");
    eprintln!(
        "== update: new tarball {}..., snapshot-count 10000 -> 5000, one member at a time",
        &sha_b[..12]
    );
    eprintln!(
        "  member | time to healthy | records ingested (failed) | requests answered (failed)"
    );
    for (i, ip) in IPS.iter().enumerate() {
        let before = r.members[i].identity().expect("identity before");
        let (rec0, frec0, req0, freq0) = load.snapshot();
        let started = Instant::now();
        r.members[i].terminate();
        let next = r.member(i, ip, &format!("m{i}-volume"));
        let (ok, log, _) = r.boot(&next, &updated);
        let took = started.elapsed();
        assert!(ok, "m{i} did not pass its health gate:\n{log}");
        assert!(log.contains("restarting as the same member"), "{log}");
        assert!(log.contains("healthy, with every member"), "{log}");
        let after = next.identity().expect("identity after");
        assert_eq!(after.0, before.0, "m{i} came back in another cluster");
        assert_eq!(after.1, before.1, "m{i} came back as another member");
        let conf = std::fs::read_to_string(next.root.join("etc/etcd/etcd.env")).expect("config");
        assert!(
            conf.contains("ETCD_SNAPSHOT_COUNT=5000\n"),
            "the new setting"
        );
        r.members[i] = next;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (rec1, frec1, req1, freq1) = load.snapshot();
        eprintln!(
            "  m{i}     | {:>6.1} s        | {:>6} ({})                | {:>5} ({})",
            took.as_secs_f64(),
            rec1 - rec0,
            frec1 - frec0,
            req1 - req0,
            freq1 - freq0
        );
    }

    load.stop.store(true, Ordering::SeqCst);
    writing.await.expect("writer");
    reading.await.expect("reader");
    let (records, failed_records, requests, failed_requests) = load.snapshot();
    eprintln!("  in all: {records} records ({failed_records} failed), {requests} requests ({failed_requests} failed)");
    assert!(records > 0 && requests > 0, "the load ran");
    assert_eq!(
        failed_records, 0,
        "records failed while members were replaced"
    );
    assert_eq!(
        failed_requests, 0,
        "requests failed while members were replaced"
    );
    let acked = load.acked.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let stored = stored_versions(store.as_ref()).await;
    let lost: Vec<_> = (acked.iter())
        .filter(|(t, v)| stored.get(*t) != Some(v))
        .collect();
    assert_eq!(acked.len(), TASKS);
    assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
    eprintln!(
        "  lost writes: 0 of {} tasks at their last acknowledged version",
        acked.len()
    );

    // README's operator steps, as written, on a member.
    eprintln!("== README operator steps on m0");
    let steps = readme_operator_steps();
    assert!(steps.len() >= 6, "{steps:?}");
    let work = tempfile::tempdir().expect("work dir");
    let bin = r.members[0].root.join("usr/local/bin");
    for step in &steps {
        assert!(step.starts_with("css-etcdctl "), "{step}");
        let out = std::process::Command::new("bash")
            .args(["-c", step])
            .current_dir(work.path())
            .env(
                "PATH",
                format!(
                    "{}:{}",
                    bin.display(),
                    std::env::var("PATH").unwrap_or_default()
                ),
            )
            .output()
            .expect("step");
        let said = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{step}:\n{said}");
        eprintln!("$ {step}\n{}", said.trim_end());
    }

    // Moving m2 to another subnet: the certificate resource issues m2's
    // certificate again for its new IP (EtcdReplaceMember=2), the group
    // replaces it on a new volume (a new zone), and boot removes its old
    // self and adds it back: the cluster keeps its identity and quorum.
    eprintln!(
        "== move m2 from {} to {MOVED} (EtcdReplaceMember=2)",
        IPS[2]
    );
    let mut moved_props = props.clone();
    moved_props["MemberIps"][2] = json!(MOVED);
    moved_props["ReplaceMember"] = json!("2");
    let (_, answer) = r
        .cfn
        .send_as(
            "Update",
            "Custom::EtcdCertificates",
            &moved_props,
            Some(&props),
        )
        .await;
    assert_eq!(answer["Status"], "SUCCESS", "{answer}");
    let old_m2 = r.members[2].identity().expect("m2").1;
    r.members[2].terminate();
    let moved_ips = [IPS[0], IPS[1], MOVED].join(",");
    let moved = updated.clone().set("MEMBER_IPS", &moved_ips);
    let next = r.member(2, MOVED, "m2-volume-new-zone");
    let started = Instant::now();
    let (ok, log, _) = r.boot(&next, &moved);
    assert!(ok, "the moved m2 did not join:\n{log}");
    assert!(log.contains("removing its old self"), "{log}");
    assert!(log.contains("added to the existing cluster"), "{log}");
    let (cluster, member, _) = next.identity().expect("moved m2");
    assert_eq!(
        cluster, cluster_id,
        "the moved member joined the same cluster"
    );
    assert_ne!(member, old_m2, "a new member id at the new address");
    eprintln!(
        "  m2 at {MOVED} healthy with every member after {:.1} s",
        started.elapsed().as_secs_f64()
    );
    r.members[2] = next;
    let list = r.members[0].ctl(&["member", "list", "-w", "json"]);
    let list: Value = serde_json::from_slice(&list.stdout).expect("member list");
    let peers: Vec<String> = (list["members"].as_array().expect("members").iter())
        .map(|m| {
            format!(
                "{}={}",
                m["name"].as_str().unwrap_or(""),
                m["peerURLs"][0].as_str().unwrap_or("")
            )
        })
        .collect();
    assert_eq!(peers.len(), 3, "{peers:?}");
    assert!(
        peers.contains(&format!("m2=https://{MOVED}:{peer_port}")),
        "{peers:?}"
    );

    // m1's volume is lost: its new instance refuses to start a member that
    // the cluster still lists (FAILURE: the update would roll back); after
    // the documented `css-etcdctl member remove`, it joins again.
    eprintln!("== rebuild m1 after losing its volume");
    let m1_id = r.members[1].identity().expect("m1").1;
    r.members[1].terminate();
    let _ = std::fs::remove_dir_all(r.dir.path().join("m1-volume"));
    let lost = r.member(1, IPS[1], "m1-volume");
    let (ok, log, _) = r.boot(&lost, &moved);
    assert!(!ok, "a member whose data is gone must not start:\n{log}");
    assert!(
        log.contains("is in the cluster but its data is not"),
        "{log}"
    );
    assert!(log.contains("member m1: FAILURE"), "{log}");
    let removed = r.members[0].ctl(&["member", "remove", &format!("{m1_id:x}")]);
    assert!(
        removed.status.success(),
        "{}",
        String::from_utf8_lossy(&removed.stderr)
    );
    let rebuilt = r.member(1, IPS[1], "m1-volume");
    let (ok, log, took) = r.boot(&rebuilt, &moved);
    assert!(ok, "m1 did not rejoin:\n{log}");
    assert!(log.contains("added to the existing cluster"), "{log}");
    assert_eq!(rebuilt.identity().expect("m1").0, cluster_id);
    eprintln!(
        "  m1 rejoined as a new member after {:.1} s",
        took.as_secs_f64()
    );
    r.members[1] = rebuilt;
    let health = r.members[0].ctl(&["endpoint", "health", "--cluster"]);
    assert!(
        health.status.success(),
        "{}",
        String::from_utf8_lossy(&health.stderr)
    );

    // The store kept every record through all of it.
    let after = stored_versions(store.as_ref()).await;
    assert_eq!(after.len(), TASKS);
}
