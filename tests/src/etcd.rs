//! A real etcd (Debian's etcd-server) on a free loopback port with a
//! temporary data dir, stopped and removed on drop.

use std::collections::BTreeSet;
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use css::store::etcd::EtcdSettings;
use css::store::EtcdStore;

use crate::pki::TestPki;

pub struct EtcdServer {
    child: Option<Child>,
    dir: tempfile::TempDir,
    pub client_port: u16,
    peer_port: u16,
    /// Mutual TLS on client and peer URLs (`start_tls`).
    pub tls: Option<TestPki>,
    /// The member's name, and the cluster it founds with others
    /// (`name=peer-url,...`); alone, it is its own cluster.
    name: String,
    initial_cluster: Option<String>,
    /// More flags for etcd (e.g. a space quota).
    extra: Vec<String>,
}

/// A free loopback port never handed out before in this process: the
/// kernel may offer a just-released port again, and two etcds of parallel
/// tests on one port fail in confusing ways (one exits, the other's client
/// answers for it).
pub fn free_port() -> u16 {
    static GIVEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("no free loopback port");
        let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
        if given.insert(port) {
            return port;
        }
    }
}

fn etcd_binary() -> PathBuf {
    let bin = std::env::var_os("ETCD_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/etcd"));
    if !bin.exists() {
        panic!(
            "etcd is not installed ({} missing): run `apt-get install etcd-server` or set ETCD_BIN",
            bin.display()
        );
    }
    bin
}

impl EtcdServer {
    /// Starts etcd and waits until it accepts connections. Panics (failing
    /// the test loudly) if etcd is missing or does not come up.
    pub fn start() -> EtcdServer {
        Self::start_with(false)
    }

    /// etcd with mutual TLS: https client and peer URLs, client
    /// certificates required, all issued by a test CA (`tls`).
    pub fn start_tls() -> EtcdServer {
        Self::start_with(true)
    }

    fn start_with(tls: bool) -> EtcdServer {
        let dir = tempfile::tempdir().expect("temp dir for etcd");
        let tls = tls.then(|| TestPki::issue(dir.path()));
        let mut server = EtcdServer::member("css-test", dir, tls, None);
        server.spawn();
        server.wait_up();
        server
    }

    /// etcd with a backend space quota of `bytes` (`--quota-backend-bytes`).
    pub fn start_with_quota(bytes: u64) -> EtcdServer {
        let dir = tempfile::tempdir().expect("temp dir for etcd");
        let mut server = EtcdServer::member("css-test", dir, None, None);
        server.extra = vec!["--quota-backend-bytes".into(), bytes.to_string()];
        server.spawn();
        server.wait_up();
        server
    }

    /// etcd with mutual TLS on the given certificates.
    pub fn start_with_pki(pki: TestPki) -> EtcdServer {
        let dir = tempfile::tempdir().expect("temp dir for etcd");
        let mut server = EtcdServer::member("css-test", dir, Some(pki), None);
        server.spawn();
        server.wait_up();
        server
    }

    /// A member not yet started (`spawn` starts it).
    pub(crate) fn member(
        name: &str,
        dir: tempfile::TempDir,
        tls: Option<TestPki>,
        initial_cluster: Option<String>,
    ) -> EtcdServer {
        EtcdServer {
            child: None,
            dir,
            client_port: free_port(),
            peer_port: free_port(),
            tls,
            name: name.to_string(),
            initial_cluster,
            extra: Vec::new(),
        }
    }

    pub fn peer_url(&self) -> String {
        format!("{}://127.0.0.1:{}", self.scheme(), self.peer_port)
    }

    pub(crate) fn set_initial_cluster(&mut self, cluster: String) {
        self.initial_cluster = Some(cluster);
    }

    fn scheme(&self) -> &'static str {
        if self.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }

    pub(crate) fn spawn(&mut self) {
        let client = format!("{}://127.0.0.1:{}", self.scheme(), self.client_port);
        let peer = self.peer_url();
        let cluster =
            (self.initial_cluster.clone()).unwrap_or_else(|| format!("{}={peer}", self.name));
        let mut tls_args: Vec<std::ffi::OsString> = Vec::new();
        if let Some(pki) = &self.tls {
            for (flag, path) in [
                ("--cert-file", &pki.server_cert),
                ("--key-file", &pki.server_key),
                ("--trusted-ca-file", &pki.ca),
                ("--peer-cert-file", &pki.server_cert),
                ("--peer-key-file", &pki.server_key),
                ("--peer-trusted-ca-file", &pki.ca),
            ] {
                tls_args.push(flag.into());
                tls_args.push(path.into());
            }
            tls_args.push("--client-cert-auth".into());
            tls_args.push("--peer-client-cert-auth".into());
        }
        let log = std::fs::File::create(self.dir.path().join("etcd.log")).expect("etcd log file");
        let child = Command::new(etcd_binary())
            .args(["--name", &self.name])
            .arg("--data-dir")
            .arg(self.dir.path().join("data"))
            .args([
                "--listen-client-urls",
                &client,
                "--advertise-client-urls",
                &client,
            ])
            .args([
                "--listen-peer-urls",
                &peer,
                "--initial-advertise-peer-urls",
                &peer,
            ])
            .args(["--initial-cluster", &cluster])
            .args(["--initial-cluster-token", "css-test"])
            .args(["--log-level", "error", "--logger", "zap"])
            .args(&tls_args)
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("failed to start etcd");
        self.child = Some(child);
    }

    /// Waits until the client port answers, while etcd's own process lives.
    pub(crate) fn wait_up(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            // Up only while our own process lives: a port someone else
            // listens on must not pass for ours.
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                let log = std::fs::read_to_string(self.dir.path().join("etcd.log"));
                panic!(
                    "etcd exited ({status}) on ports {}/{}: {}",
                    self.client_port,
                    self.peer_port,
                    log.unwrap_or_default()
                );
            }
            if TcpStream::connect(("127.0.0.1", self.client_port)).is_ok() {
                break;
            }
            if Instant::now() > deadline {
                panic!("etcd did not start on port {}", self.client_port);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn endpoint(&self) -> String {
        format!("{}://127.0.0.1:{}", self.scheme(), self.client_port)
    }

    /// Kills etcd (as an outage would); its data dir stays.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts etcd again on the same port and data.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
        self.wait_up();
    }

    /// A store rebuilt from nothing at the same address: etcd started again
    /// on the same ports with an empty data dir (revisions from 1 again).
    pub fn rebuild(&mut self) {
        self.stop();
        self.dir = tempfile::tempdir().expect("temp dir for etcd");
        self.spawn();
        self.wait_up();
    }

    /// etcd's own count of range reads it served (its Prometheus metrics).
    pub async fn ranges_served(&self) -> f64 {
        let text = reqwest::get(format!("{}/metrics", self.endpoint()))
            .await
            .expect("etcd metrics")
            .text()
            .await
            .expect("text");
        (text.lines())
            .find_map(|l| l.strip_prefix("etcd_mvcc_range_total "))
            .and_then(|v| v.trim().parse().ok())
            .expect("etcd_mvcc_range_total")
    }

    /// The etcd process, while it runs (benchmarks read its CPU time).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Settings that reach this etcd (with the test CA and client
    /// certificate when it runs TLS).
    pub fn settings(&self) -> EtcdSettings {
        let read = |p: &PathBuf| std::fs::read(p).expect("test certificate");
        EtcdSettings {
            endpoints: vec![self.endpoint()],
            request_timeout: Duration::from_secs(2),
            tls: self.tls.is_some(),
            ca_pem: self.tls.as_ref().map(|t| read(&t.ca)),
            client_cert_pem: self
                .tls
                .as_ref()
                .map(|t| (read(&t.client_cert), read(&t.client_key))),
            ..Default::default()
        }
    }

    pub async fn store(&self, prefix: &str) -> Arc<EtcdStore> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match EtcdStore::connect(&self.settings(), prefix).await {
                Ok(s) => {
                    // Ready when a read is answered.
                    if css::store::StateStore::current_revision(&s).await.is_ok() {
                        return Arc::new(s);
                    }
                }
                Err(e) if Instant::now() > deadline => panic!("cannot connect to etcd: {e}"),
                Err(_) => {}
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        self.stop();
    }
}
