//! deploy/etcd/boot.sh, the etcd members' user data, run as CloudFormation
//! would run it but against a temp root: the release tarball (Debian's real
//! etcd and etcdctl, packed the way etcd releases are) checked by SHA-256,
//! the member's secret read from Secrets Manager (moto, through an `aws`
//! command backed by boto3), the config and systemd unit it writes, and an
//! etcd started from that config, reached by the service over mutual TLS.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use css::model::Kind;
use css_tests::etcd::free_port;
use css_tests::fixtures::{entity, store_args, task_detail, ACCOUNT};
use css_tests::moto::{python, MotoServer};
use serde_json::json;

const VERSION: &str = "v3.4.23";

/// A release-shaped tarball of the machine's etcd and etcdctl; answers its
/// download base URL and SHA-256.
fn release(dir: &Path) -> (String, String) {
    let name = format!("etcd-{VERSION}-linux-amd64");
    let stage = dir.join("stage").join(&name);
    std::fs::create_dir_all(&stage).expect("stage dir");
    for bin in ["etcd", "etcdctl"] {
        let from = which(bin);
        std::fs::copy(&from, stage.join(bin)).expect("copy binary");
    }
    let rel = dir.join("releases").join(VERSION);
    std::fs::create_dir_all(&rel).expect("release dir");
    let tarball = rel.join(format!("{name}.tar.gz"));
    let ok = Command::new("tar")
        .arg("-czf")
        .arg(&tarball)
        .arg("-C")
        .arg(dir.join("stage"))
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
    (format!("file://{}", dir.join("releases").display()), sum)
}

fn which(bin: &str) -> PathBuf {
    for dir in ["/usr/bin", "/usr/local/bin"] {
        let p = Path::new(dir).join(bin);
        if p.exists() {
            return p;
        }
    }
    panic!("{bin} is not installed: run scripts/prereqs.sh test (apt etcd-server, etcd-client)");
}

/// `aws secretsmanager get-secret-value --secret-id ID --query SecretString
/// --output text`, the one AWS CLI call the script makes, against moto.
fn aws_command(dir: &Path, moto: &MotoServer) -> PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).expect("bin dir");
    let script = format!(
        r#"#!{python}
import sys, boto3
args = sys.argv[1:]
assert args[:2] == ["secretsmanager", "get-secret-value"], args
sid = args[args.index("--secret-id") + 1]
sm = boto3.client("secretsmanager", endpoint_url="{endpoint}", region_name="us-east-1",
                  aws_access_key_id="test", aws_secret_access_key="test")
print(sm.get_secret_value(SecretId=sid)["SecretString"])
"#,
        python = python(),
        endpoint = moto.endpoint()
    );
    let path = bin.join("aws");
    std::fs::write(&path, script).expect("aws command");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    bin
}

struct Boot<'a> {
    root: PathBuf,
    env: Vec<(&'static str, String)>,
    path: &'a Path,
}

impl Boot<'_> {
    fn run(&self) -> Output {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/etcd/boot.sh");
        let path = format!(
            "{}:{}",
            self.path.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        Command::new("bash")
            .arg(script)
            .env("CSS_ROOT", &self.root)
            .env("PATH", path)
            .envs(self.env.iter().map(|(k, v)| (*k, v.as_str())))
            .output()
            .expect("run boot.sh")
    }

    fn set(mut self, key: &'static str, value: &str) -> Self {
        self.env.retain(|(k, _)| *k != key);
        self.env.push((key, value.to_string()));
        self
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boot_script_installs_a_member_that_serves_mutual_tls() {
    let dir = tempfile::tempdir().expect("temp dir");
    let moto = MotoServer::start();
    let (url, sha) = release(dir.path());
    let bin = aws_command(dir.path(), &moto);

    // The certificates as the custom resource writes them.
    let issued = css_certs::issue("boot", &["127.0.0.1".parse().expect("ip")], &[]).expect("certs");
    let sm = aws_sdk_secretsmanager::Client::new(&moto.sdk_config());
    let secret = |name: &str, pem: &css_certs::Pem| {
        let value = json!({"ca": issued.ca, "cert": pem.cert, "key": pem.key}).to_string();
        let sm = sm.clone();
        let name = name.to_string();
        async move {
            let out = sm
                .create_secret()
                .name(name)
                .secret_string(value)
                .send()
                .await;
            out.expect("secret").arn().expect("ARN").to_string()
        }
    };
    let member_secret = secret("m0", &issued.members[0]).await;
    let client_secret = secret("client", &issued.client).await;

    let (client_port, peer_port) = (free_port(), free_port());
    let boot = |root: &str| Boot {
        root: dir.path().join(root),
        path: &bin,
        env: vec![
            ("MEMBER_IPS", "127.0.0.1".into()),
            ("MEMBER_SECRETS", member_secret.clone()),
            ("ETCD_VERSION", VERSION.into()),
            ("ETCD_SHA256", sha.clone()),
            ("ETCD_DOWNLOAD_URL", url.clone()),
            ("ETCD_ARCH", "amd64".into()),
            ("ETCD_QUOTA_BACKEND_BYTES", "268435456".into()),
            ("ETCD_SNAPSHOT_COUNT", "5000".into()),
            ("LOCAL_IP", "127.0.0.1".into()),
            ("DATA_DEVICE", "none".into()),
            ("ETCD_CLIENT_PORT", client_port.to_string()),
            ("ETCD_PEER_PORT", peer_port.to_string()),
        ],
    };

    // A tarball that is not the pinned one is refused, and nothing installed.
    let out = boot("tampered").set("ETCD_SHA256", &"0".repeat(64)).run();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("does not match ETCD_SHA256"), "{err}");
    assert!(!dir.path().join("tampered/usr/local/bin/etcd").exists());
    // An instance whose IP is not a member's stops with one line.
    let out = boot("stranger").set("LOCAL_IP", "10.9.9.9").run();
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not one of MEMBER_IPS"));

    let out = boot("root").run();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let root = dir.path().join("root");
    let conf = std::fs::read_to_string(root.join("etc/etcd/etcd.conf.yml")).expect("config");
    for line in [
        "name: m0".to_string(),
        format!("initial-cluster: m0=https://127.0.0.1:{peer_port}"),
        format!("listen-client-urls: https://127.0.0.1:{client_port}"),
        "snapshot-count: 5000".into(),
        "quota-backend-bytes: 268435456".into(),
        "  client-cert-auth: true".into(),
        format!("data-dir: {}", root.join("var/lib/etcd").display()),
    ] {
        assert!(
            conf.lines().any(|l| l == line),
            "{line:?} missing from:\n{conf}"
        );
    }
    let unit = std::fs::read_to_string(root.join("etc/systemd/system/etcd.service")).expect("unit");
    assert!(unit.contains("ExecStart=/usr/local/bin/etcd --config-file /etc/etcd/etcd.conf.yml"));
    assert!(unit.contains("User=etcd") && unit.contains("Restart=always"));
    let key = std::fs::metadata(root.join("etc/etcd/pki/member-key.pem")).expect("key");
    assert_eq!(
        key.permissions().mode() & 0o777,
        0o600,
        "the key is private"
    );

    // etcd runs from what the script wrote; the service reaches it with the
    // functions' secret.
    let mut etcd = Command::new(root.join("usr/local/bin/etcd"))
        .arg("--config-file")
        .arg(root.join("etc/etcd/etcd.conf.yml"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("etcd from the written config");
    let mut args = store_args(vec![format!("https://127.0.0.1:{client_port}")]);
    args.etcd_tls_secret = Some(client_secret);
    let deadline = Instant::now() + Duration::from_secs(20);
    let store = loop {
        let wants = css::setup::Wants::default();
        let overrides = css::setup::Overrides {
            sdk: Some(moto.sdk_config()),
            ..Default::default()
        };
        match css::setup::build(&args, wants, overrides).await {
            Ok(p) if p.store.current_revision().await.is_ok() => break p.store,
            _ if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(200)).await,
            Ok(_) => panic!("etcd from the boot config never answered"),
            Err(e) => panic!("etcd from the boot config: {e}"),
        }
    };
    let e = entity(
        Kind::Task,
        &task_detail("boot", ACCOUNT, "t1", "RUNNING", 1, true),
    );
    store
        .upsert_if_newer(css::store::Upsert::event(&e))
        .await
        .expect("write over mutual TLS");
    let _ = etcd.kill();
    let _ = etcd.wait();
}
