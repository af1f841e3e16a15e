//! A real multi-member etcd cluster on loopback: one `etcd` process per
//! member, each with its own data dir; with TLS, client and peer traffic
//! use certificates issued by the same code as the stack's certificate
//! custom resource, and clients must present one.

use std::sync::Arc;
use std::time::{Duration, Instant};

use css::store::etcd::EtcdSettings;
use css::store::{EtcdStore, StateStore};

use crate::etcd::EtcdServer;
use crate::pki::TestPki;

pub struct EtcdCluster {
    pub members: Vec<EtcdServer>,
    pub pki: Option<TestPki>,
    _pki_dir: tempfile::TempDir,
}

impl EtcdCluster {
    /// Starts `size` members (mutual TLS with `tls`) and waits until the
    /// cluster has a leader and answers.
    pub async fn start(size: usize, tls: bool) -> EtcdCluster {
        let pki_dir = tempfile::tempdir().expect("temp dir for certificates");
        let pki = tls.then(|| TestPki::issue(pki_dir.path()));
        let mut members: Vec<EtcdServer> = (0..size)
            .map(|i| {
                let dir = tempfile::tempdir().expect("temp dir for etcd");
                EtcdServer::member(&format!("m{i}"), dir, pki.clone(), None)
            })
            .collect();
        let initial: Vec<String> = (members.iter().enumerate())
            .map(|(i, m)| format!("m{i}={}", m.peer_url()))
            .collect();
        for m in &mut members {
            m.set_initial_cluster(initial.join(","));
            m.spawn();
        }
        for m in &mut members {
            m.wait_up();
        }
        let cluster = EtcdCluster {
            members,
            pki,
            _pki_dir: pki_dir,
        };
        cluster.wait_for_leader(Duration::from_secs(30)).await;
        cluster
    }

    pub fn endpoints(&self) -> Vec<String> {
        self.endpoints_from(0)
    }

    /// Every endpoint, member `first` first: clients stick to the first
    /// member that answers, so a test can make its client's member the one
    /// it kills.
    pub fn endpoints_from(&self, first: usize) -> Vec<String> {
        let n = self.members.len();
        (0..n)
            .map(|i| self.members[(first + i) % n].endpoint())
            .collect()
    }

    /// Settings that reach every member (with the client certificate).
    pub fn settings(&self) -> EtcdSettings {
        let read = |p: &std::path::PathBuf| std::fs::read(p).expect("test certificate");
        EtcdSettings {
            endpoints: self.endpoints(),
            request_timeout: Duration::from_secs(2),
            tls: self.pki.is_some(),
            ca_pem: self.pki.as_ref().map(|t| read(&t.ca)),
            client_cert_pem: (self.pki.as_ref())
                .map(|t| (read(&t.client_cert), read(&t.client_key))),
            ..Default::default()
        }
    }

    pub async fn store(&self, prefix: &str) -> Arc<EtcdStore> {
        self.store_from(0, prefix).await
    }

    /// A store whose client starts on member `first`.
    pub async fn store_from(&self, first: usize, prefix: &str) -> Arc<EtcdStore> {
        let mut settings = self.settings();
        settings.endpoints = self.endpoints_from(first);
        let store = EtcdStore::connect(&settings, prefix).await;
        let store = store.unwrap_or_else(|e| panic!("cannot connect to the cluster: {e}"));
        store.current_revision().await.expect("the cluster answers");
        Arc::new(store)
    }

    /// A raw client of member `i` alone.
    async fn client(&self, i: usize) -> Option<etcd_client::Client> {
        let mut settings = self.settings();
        settings.endpoints = vec![self.members[i].endpoint()];
        let mut opts = etcd_client::ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(1))
            .with_timeout(Duration::from_secs(1));
        if let Some(pki) = &self.pki {
            let read = |p: &std::path::PathBuf| std::fs::read(p).expect("test certificate");
            let tls = etcd_client::TlsOptions::new()
                .ca_certificate(etcd_client::Certificate::from_pem(read(&pki.ca)))
                .identity(etcd_client::Identity::from_pem(
                    read(&pki.client_cert),
                    read(&pki.client_key),
                ));
            opts = opts.with_tls(tls);
        }
        etcd_client::Client::connect(&settings.endpoints, Some(opts))
            .await
            .ok()
    }

    /// The index of the current leader, as the running members see it.
    pub async fn leader(&self) -> Option<usize> {
        let mut ids = Vec::new();
        let mut leader = None;
        for (i, m) in self.members.iter().enumerate() {
            if !m.is_running() {
                ids.push(None);
                continue;
            }
            let status = match self.client(i).await {
                Some(mut c) => c.status().await.ok(),
                None => None,
            };
            let Some(status) = status else {
                ids.push(None);
                continue;
            };
            ids.push(status.header().map(|h| h.member_id()));
            if status.leader() != 0 {
                leader = Some(status.leader());
            }
        }
        let leader = leader?;
        ids.iter().position(|id| *id == Some(leader))
    }

    pub async fn wait_for_leader(&self, within: Duration) -> usize {
        let deadline = Instant::now() + within;
        loop {
            if let Some(l) = self.leader().await {
                return l;
            }
            if Instant::now() > deadline {
                panic!("the etcd cluster elected no leader within {within:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until member `i` answers a status request of its own.
    pub async fn wait_for_member(&self, i: usize, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            if let Some(mut c) = self.client(i).await {
                if c.status().await.is_ok() {
                    return;
                }
            }
            if Instant::now() > deadline {
                panic!("etcd member {i} did not answer within {within:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Kills member `i` (SIGKILL, as a crash would); its data stays.
    pub fn kill(&mut self, i: usize) {
        self.members[i].stop();
    }

    /// Starts member `i` again on its data: it rejoins the cluster.
    pub fn restart(&mut self, i: usize) {
        self.members[i].restart();
    }
}
