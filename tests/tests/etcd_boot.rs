//! deploy/etcd/boot.sh, the etcd members' user data, run as CloudFormation
//! would run it but against a temp root: the release tarball (Debian's real
//! etcd and etcdctl, packed the way etcd releases are) checked by SHA-256,
//! the member's secret read from Secrets Manager (moto, through the real AWS
//! CLI), the config, systemd unit and css-etcdctl it writes, and an etcd
//! started from that config, reached by the service over mutual TLS; and
//! the data volume found by its EBS serial, never "the first other disk".

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use css_tests::boot::{release, Boot, VERSION};

use css::model::Kind;
use css_tests::etcd::free_port;
use css_tests::fixtures::{entity, store_args, task_detail, ACCOUNT};
use css_tests::moto::MotoServer;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boot_script_installs_a_member_that_serves_mutual_tls() {
    let dir = tempfile::tempdir().expect("temp dir");
    let moto = MotoServer::start();
    let (url, sha) = release(dir.path(), "a");

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
    let boot = Boot::new(&moto)
        .set("MEMBER_IPS", "127.0.0.1")
        .set("MEMBER_SECRETS", &member_secret)
        .set("ETCD_VERSION", VERSION)
        .set("ETCD_SHA256", &sha)
        .set("ETCD_DOWNLOAD_URL", &url)
        .set("ETCD_QUOTA_BACKEND_BYTES", "268435456")
        .set("ETCD_SNAPSHOT_COUNT", "5000")
        .set("LOCAL_IP", "127.0.0.1")
        .set("ETCD_CLIENT_PORT", &client_port.to_string())
        .set("ETCD_PEER_PORT", &peer_port.to_string());
    let run = |b: &Boot, root: &str| b.run(&dir.path().join(root));

    // A tarball that is not the pinned one is refused, and nothing installed.
    let out = run(
        &boot.clone().set("ETCD_SHA256", &"0".repeat(64)),
        "tampered",
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("does not match ETCD_SHA256"), "{err}");
    assert!(!dir.path().join("tampered/usr/local/bin/etcd").exists());
    // An instance whose IP is not a member's stops with one line.
    let out = run(&boot.clone().set("LOCAL_IP", "10.9.9.9"), "stranger");
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not one of MEMBER_IPS"));

    let out = run(&boot, "root");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let root = dir.path().join("root");
    let conf = std::fs::read_to_string(root.join("etc/etcd/etcd.env")).expect("config");
    for line in [
        "ETCD_NAME=m0".to_string(),
        format!("ETCD_INITIAL_CLUSTER=m0=https://127.0.0.1:{peer_port}"),
        format!("ETCD_LISTEN_CLIENT_URLS=https://127.0.0.1:{client_port}"),
        "ETCD_SNAPSHOT_COUNT=5000".into(),
        "ETCD_QUOTA_BACKEND_BYTES=268435456".into(),
        "ETCD_CLIENT_CERT_AUTH=true".into(),
        "ETCD_PEER_CLIENT_CERT_AUTH=true".into(),
        "ETCD_EXPERIMENTAL_PEER_SKIP_CLIENT_SAN_VERIFICATION=true".into(),
        "ETCD_INITIAL_CLUSTER_STATE=new".into(),
        format!("ETCD_DATA_DIR={}", root.join("var/lib/etcd").display()),
    ] {
        assert!(
            conf.lines().any(|l| l == line),
            "{line:?} missing from:\n{conf}"
        );
    }
    let unit = std::fs::read_to_string(root.join("etc/systemd/system/etcd.service")).expect("unit");
    assert!(
        unit.contains("EnvironmentFile=/etc/etcd/etcd.env")
            && unit.contains("ExecStart=/usr/local/bin/etcd\n")
    );
    assert!(unit.contains("User=etcd") && unit.contains("Restart=always"));
    let key = std::fs::metadata(root.join("etc/etcd/pki/member-key.pem")).expect("key");
    assert_eq!(
        key.permissions().mode() & 0o777,
        0o600,
        "the key is private"
    );
    // The certificate files are read again hourly (renewals): the timer
    // runs css-etcd-certs, which replaces only what changed in the secret.
    let timer = std::fs::read_to_string(root.join("etc/systemd/system/css-etcd-certs.timer"))
        .expect("timer");
    assert!(timer.contains("OnUnitActiveSec=1h") && timer.contains("WantedBy=timers.target"));
    let service = std::fs::read_to_string(root.join("etc/systemd/system/css-etcd-certs.service"))
        .expect("timer's service");
    assert!(service.contains("ExecStart=/usr/local/bin/css-etcd-certs"));
    let refresh = || {
        let out = Command::new(root.join("usr/local/bin/css-etcd-certs"))
            .envs(boot.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output()
            .expect("css-etcd-certs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    assert_eq!(refresh(), "", "unchanged: nothing replaced");
    // The member's secret as the certificate function writes it.
    let put_member = |certs: &css_certs::Issued| {
        let value =
            json!({"ca": certs.ca, "cert": certs.members[0].cert, "key": certs.members[0].key});
        let (sm, id) = (sm.clone(), member_secret.clone());
        async move {
            let out = sm
                .put_secret_value()
                .secret_id(id)
                .secret_string(value.to_string())
                .send()
                .await;
            out.expect("member secret");
        }
    };
    let renewed =
        css_certs::issue("boot", &["127.0.0.1".parse().expect("ip")], &[]).expect("certs");
    put_member(&renewed).await;
    let said = refresh();
    assert!(
        said.contains("replaced ca.pem member.pem member-key.pem"),
        "{said}"
    );
    let on_disk = std::fs::read_to_string(root.join("etc/etcd/pki/member.pem")).expect("cert");
    assert_eq!(on_disk, renewed.members[0].cert);
    let key = std::fs::metadata(root.join("etc/etcd/pki/member-key.pem")).expect("key");
    assert_eq!(key.permissions().mode() & 0o777, 0o600, "still private");
    // Back to the first issue, which the client secret's CA signed.
    put_member(&issued).await;
    assert!(refresh().contains("replaced"));

    // etcd runs from what the script wrote; the service reaches it with the
    // functions' secret.
    let env: Vec<(String, String)> = (conf.lines())
        .filter(|l| l.starts_with("ETCD_"))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let mut etcd = Command::new(root.join("usr/local/bin/etcd"))
        .envs(env)
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
    // What an operator runs in an SSM session: etcdctl with the member's
    // own certificate (its CA's client), every member's URL.
    let ctl = Command::new(root.join("usr/local/bin/css-etcdctl"))
        .args(["endpoint", "health"])
        .output()
        .expect("css-etcdctl");
    let said =
        String::from_utf8_lossy(&ctl.stdout).to_string() + &String::from_utf8_lossy(&ctl.stderr);
    assert!(
        ctl.status.success() && said.contains("is healthy"),
        "{said}"
    );
    let _ = etcd.kill();
    let _ = etcd.wait();
}

/// The data volume is found by its attachment: on Nitro the NVMe disk whose
/// serial is the EBS volume id (instance-store NVMe disks come first and
/// must never be formatted); on Xen the device it was attached as. A
/// stand-in `lsblk` prints what each kind of instance shows.
#[test]
fn the_data_volume_is_found_by_its_ebs_serial_not_by_position() {
    let dir = tempfile::tempdir().expect("temp dir");
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/etcd/boot.sh");
    let find = |listing: &str, volume: &str| {
        let bin = dir.path().join("bin");
        std::fs::create_dir_all(&bin).expect("bin");
        let lsblk = bin.join("lsblk");
        std::fs::write(&lsblk, format!("#!/bin/sh\ncat <<'EOF'\n{listing}EOF\n")).expect("lsblk");
        std::fs::set_permissions(&lsblk, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let path = format!(
            "{}:{}",
            bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        Command::new("bash")
            .arg(&script)
            .args(["--data-device", volume])
            .env("PATH", path)
            .output()
            .expect("boot.sh --data-device")
    };
    // An m6gd-like instance: root EBS, a local NVMe instance store first,
    // then the member's data volume.
    let nitro = "/dev/nvme0n1 vol0aaaaaaaaaaaaaaaa\n/dev/nvme1n1 AWS2D6B3F8E1A7C9E0B1\n/dev/nvme2n1 vol0123456789abcdef0\n";
    let out = find(nitro, "vol-0123456789abcdef0");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "/dev/nvme2n1");
    // Not attached (yet): no device, never another disk.
    let out = find(nitro, "vol-0fffffffffffffff0");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not attached"));
}
