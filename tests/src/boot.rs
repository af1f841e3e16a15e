//! The stack's etcd members booted locally by deploy/etcd/boot.sh, as the
//! launch template runs it, against a temp root per member: the release
//! tarball (Debian's real etcd and etcdctl, packed the way etcd releases
//! are), secrets from Secrets Manager (moto, through the real AWS CLI), each
//! member on its own loopback address as its private IP, and a directory of
//! its own as its data volume, which outlives the member's root.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::moto::{aws_cli, MotoServer};

/// The etcd version Debian ships (apt etcd-server), the one rehearsed here.
pub const VERSION: &str = "v3.4.23";

pub fn which(bin: &str) -> PathBuf {
    for dir in ["/usr/bin", "/usr/local/bin"] {
        let p = Path::new(dir).join(bin);
        if p.exists() {
            return p;
        }
    }
    panic!("{bin} is not installed: run scripts/prereqs.sh test (apt etcd-server, etcd-client)");
}

/// A release-shaped tarball of the machine's etcd and etcdctl under
/// `dir/releases-{tag}`; answers its download base URL and SHA-256. A new
/// `tag` is a new tarball (its own checksum), as a new release would be.
pub fn release(dir: &Path, tag: &str) -> (String, String) {
    let name = format!("etcd-{VERSION}-linux-amd64");
    let stage = dir.join(format!("stage-{tag}")).join(&name);
    std::fs::create_dir_all(&stage).expect("stage dir");
    for bin in ["etcd", "etcdctl"] {
        std::fs::copy(which(bin), stage.join(bin)).expect("copy binary");
    }
    std::fs::write(stage.join("README.md"), format!("release {tag}\n")).expect("readme");
    let base = dir.join(format!("releases-{tag}"));
    let rel = base.join(VERSION);
    std::fs::create_dir_all(&rel).expect("release dir");
    let tarball = rel.join(format!("{name}.tar.gz"));
    let ok = Command::new("tar")
        .arg("-czf")
        .arg(&tarball)
        .arg("-C")
        .arg(stage.parent().expect("stage"))
        .arg(&name)
        .status()
        .expect("tar");
    assert!(ok.success());
    let sum = Command::new("sha256sum")
        .arg(&tarball)
        .output()
        .expect("sha256sum");
    let sum = String::from_utf8_lossy(&sum.stdout)
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_string();
    (format!("file://{}", base.display()), sum)
}

/// One run of boot.sh: its environment, and the PATH that finds the AWS CLI.
#[derive(Clone)]
pub struct Boot {
    pub env: Vec<(String, String)>,
}

impl Boot {
    /// The settings the template passes, pointed at `moto`.
    pub fn new(moto: &MotoServer) -> Boot {
        let cli = aws_cli();
        let bin = cli.parent().expect("venv bin");
        let path = format!(
            "{}:{}",
            bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut env: Vec<(String, String)> = moto
            .cli_env()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        env.push(("PATH".into(), path));
        env.push(("ETCD_VERSION".into(), VERSION.into()));
        env.push(("ETCD_ARCH".into(), "amd64".into()));
        Boot { env }
    }

    pub fn set(mut self, key: &str, value: &str) -> Self {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        (self.env.iter())
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The settings of a cluster whose members boot on `ips` (in member
    /// order, with their certificate `secrets`) and start etcd in the
    /// background, from a release tarball under `dir`, on ports free on
    /// every address of `ips` and `spare` (addresses a member may move to).
    pub fn cluster(
        moto: &MotoServer,
        dir: &Path,
        ips: &[&str],
        spare: &[&str],
        secrets: &[String],
    ) -> BootCluster {
        let all: Vec<&str> = ips.iter().chain(spare).copied().collect();
        let client_port = port_free_on(&all);
        let peer_port = port_free_on(&all);
        let (url, sha) = release(dir, "a");
        let boot = Boot::new(moto)
            .set("MEMBER_IPS", &ips.join(","))
            .set("MEMBER_SECRETS", &secrets.join(","))
            .set("ETCD_SHA256", &sha)
            .set("ETCD_DOWNLOAD_URL", &url)
            .set("ETCD_CLIENT_PORT", &client_port.to_string())
            .set("ETCD_PEER_PORT", &peer_port.to_string())
            .set("CSS_START", "1")
            .set("BOOTSTRAP_GRACE", "3");
        BootCluster {
            boot,
            client_port,
            peer_port,
            sha,
        }
    }

    /// Boots member `m` (a new instance on `m.root`, or the same one again).
    pub fn member(&self, m: &Member) -> Output {
        self.clone()
            .set("MEMBER_INDEX", &m.index.to_string())
            .set("DATA_DIR", &m.data.to_string_lossy())
            .run(&m.root)
    }

    /// Runs boot.sh with `root` as CSS_ROOT; answers its output.
    pub fn run(&self, root: &Path) -> Output {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/etcd/boot.sh");
        Command::new("bash")
            .arg(script)
            .env("CSS_ROOT", root)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output()
            .expect("run boot.sh")
    }
}

/// `Boot::cluster`'s settings and what they chose.
pub struct BootCluster {
    pub boot: Boot,
    pub client_port: u16,
    pub peer_port: u16,
    /// The release tarball's SHA-256.
    pub sha: String,
}

/// A member booted with CSS_START=1: etcd runs in the background, its pid
/// in `root/run/etcd.pid`.
pub struct Member {
    pub index: usize,
    pub ip: String,
    pub root: PathBuf,
    /// The member's data volume: kept when its root (the instance) goes.
    pub data: PathBuf,
}

impl Member {
    pub fn pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.root.join("run/etcd.pid"))
            .ok()
            .and_then(|p| p.trim().parse().ok())
    }

    fn alive(pid: u32) -> bool {
        Path::new(&format!("/proc/{pid}")).exists()
            && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .unwrap_or_default()
                .contains(") Z ")
    }

    /// Stops etcd as an instance's shutdown does (SIGTERM, then SIGKILL
    /// after 10 s); answers once it is gone.
    pub fn stop(&self) {
        let Some(pid) = self.pid() else { return };
        let signal = |s| {
            if let Some(p) = rustix::process::Pid::from_raw(pid as i32) {
                let _ = rustix::process::kill_process(p, s);
            }
        };
        signal(rustix::process::Signal::TERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Self::alive(pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        if Self::alive(pid) {
            signal(rustix::process::Signal::KILL);
        }
        let _ = std::fs::remove_file(self.root.join("run/etcd.pid"));
    }

    /// The instance is gone: its root disk with it, the data volume kept.
    pub fn terminate(&self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.root);
    }

    /// css-etcdctl as boot.sh wrote it on this member.
    pub fn ctl(&self, args: &[&str]) -> Output {
        Command::new(self.root.join("usr/local/bin/css-etcdctl"))
            .args(args)
            .output()
            .expect("css-etcdctl")
    }

    /// (cluster id, member id, etcd version) as this member reports them.
    pub fn identity(&self) -> Result<(u64, u64, String), String> {
        let endpoint = format!("https://{}:{}", self.ip, self.client_port());
        let out = Command::new(self.root.join("usr/local/bin/css-etcdctl"))
            .env("CSS_ETCDCTL_ENDPOINTS", &endpoint)
            .args(["endpoint", "status", "-w", "json"])
            .output()
            .map_err(|e| e.to_string())?;
        let said = || {
            format!(
                "m{} endpoint status: {}{}",
                self.index,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        };
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(|_| said())?;
        let s = &v[0]["Status"];
        match (
            s["header"]["cluster_id"].as_u64(),
            s["header"]["member_id"].as_u64(),
            s["version"].as_str(),
        ) {
            (Some(c), Some(m), Some(v)) => Ok((c, m, v.to_string())),
            _ => Err(said()),
        }
    }

    fn client_port(&self) -> String {
        let conf = std::fs::read_to_string(self.root.join("etc/etcd/etcd.env")).unwrap_or_default();
        (conf.lines())
            .find_map(|l| l.strip_prefix("ETCD_LISTEN_CLIENT_URLS="))
            .and_then(|u| u.rsplit(':').next())
            .unwrap_or_default()
            .to_string()
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A port free on every one of `ips` (members listen on their own address).
pub fn port_free_on(ips: &[&str]) -> u16 {
    loop {
        let port = crate::etcd::free_port();
        if ips
            .iter()
            .all(|ip| std::net::TcpListener::bind((*ip, port)).is_ok())
        {
            return port;
        }
    }
}
