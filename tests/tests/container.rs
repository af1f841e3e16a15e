//! The server-mode container image: the repository's Dockerfile built with
//! podman (its `prebuilt` target, on a runtime base made here from the
//! host's Debian libraries: no registry is reachable), then run as
//! compose.yaml configures its `css` service (with the demo fleet, its one
//! setting) against a local etcd: it answers lists, watches and /metrics,
//! passes its own health check, runs as a non-root user and stops cleanly.
//! Run with --nocapture for the image's size.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use css_tests::etcd::free_port;
use css_tests::EtcdServer;
use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// podman with the flags these machines need (cgroupfs, runc; README).
fn podman(args: &[&str]) -> Output {
    let out = Command::new("podman")
        .args(["--cgroup-manager", "cgroupfs", "--runtime", "runc"])
        .args(args)
        .output();
    match out {
        Ok(o) => o,
        Err(e) => panic!("podman cannot run ({e}): run scripts/prereqs.sh test (apt podman runc)"),
    }
}

fn ok(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

const LIMITS: [&str; 4] = [
    "--ulimit",
    "nofile=1024:1024",
    "--ulimit",
    "nproc=1024:1024",
];

/// css-server as cargo built it for the tests (built here if missing).
fn server_binary() -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let built = Command::new(cargo)
        .args(["build", "-q", "-p", "css-server", "--bin", "css-server"])
        .current_dir(root())
        .status()
        .expect("cargo build");
    assert!(built.success(), "css-server does not build");
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root().join("target"));
    target.join("debug/css-server")
}

/// A runtime base like distroless/cc: the C libraries `binary` links (from
/// the host's Debian packages), CA certificates, a nonroot user, /tmp.
fn runtime_base(binary: &Path, dir: &Path) -> String {
    let fs = dir.join("rootfs");
    let put = |from: &Path, to: &str| {
        let dest = fs.join(to.trim_start_matches('/'));
        std::fs::create_dir_all(dest.parent().expect("parent")).expect("dir");
        std::fs::copy(from, &dest).unwrap_or_else(|e| panic!("{}: {e}", from.display()));
    };
    let ldd = ok(
        Command::new("ldd").arg(binary).output().expect("ldd"),
        "ldd",
    );
    for line in ldd.lines() {
        // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or the
        // interpreter's "/lib64/ld-linux-x86-64.so.2 (0x...)".
        let path = match line.split_once("=>") {
            Some((_, right)) => right.split_whitespace().next(),
            None => line.split_whitespace().next(),
        };
        if let Some(p) = path.filter(|p| p.starts_with('/')) {
            put(Path::new(p), p);
        }
    }
    put(
        Path::new("/etc/ssl/certs/ca-certificates.crt"),
        "/etc/ssl/certs/ca-certificates.crt",
    );
    let etc = fs.join("etc");
    std::fs::write(
        etc.join("passwd"),
        "root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n",
    )
    .expect("passwd");
    std::fs::write(etc.join("group"), "root:x:0:\nnonroot:x:65532:\n").expect("group");
    std::fs::create_dir_all(fs.join("tmp")).expect("tmp");
    let tarball = dir.join("rootfs.tar");
    ok(
        Command::new("tar")
            .arg("-cf")
            .arg(&tarball)
            .arg("-C")
            .arg(&fs)
            .args(["--owner=0", "--group=0", "."])
            .output()
            .expect("tar"),
        "tar",
    );
    let name = "localhost/css-test-runtime:latest";
    ok(
        podman(&["import", &tarball.to_string_lossy(), name]),
        "podman import",
    );
    name.to_string()
}

/// compose.yaml's `css` environment, with `${VAR:-default}` resolved from
/// `set` (else the default).
fn compose_environment(set: &[(&str, &str)]) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(root().join("compose.yaml")).expect("compose.yaml");
    let compose: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).expect("compose YAML");
    let css = &compose["services"]["css"];
    assert_eq!(
        css["build"].as_str(),
        Some("."),
        "built from the Dockerfile"
    );
    assert_eq!(
        css["depends_on"]["etcd"]["condition"].as_str(),
        Some("service_healthy")
    );
    assert!(compose["services"]["etcd"]["healthcheck"]["test"].is_sequence());
    let env = css["environment"].as_mapping().expect("environment");
    env.iter()
        .map(|(k, v)| {
            let k = k.as_str().expect("name").to_string();
            let v = v.as_str().expect("value");
            let v = match v.strip_prefix("${").and_then(|r| r.strip_suffix('}')) {
                Some(expr) => {
                    let (var, default) = expr.split_once(":-").unwrap_or((expr, ""));
                    (set.iter().find(|(n, _)| *n == var))
                        .map(|(_, x)| x.to_string())
                        .unwrap_or_else(|| default.to_string())
                }
                None => v.to_string(),
            };
            (k, v)
        })
        .collect()
}

/// Removed when the test ends, so runs do not pile up images.
struct Image(&'static str);

impl Drop for Image {
    fn drop(&mut self) {
        let _ = podman(&["rmi", "-f", self.0]);
    }
}

struct Container(String);

impl Drop for Container {
    fn drop(&mut self) {
        let _ = podman(&["rm", "-f", &self.0]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_image_serves_lists_watches_and_metrics_as_non_root() {
    let dir = tempfile::tempdir().expect("temp dir");
    let binary = server_binary();
    let base = runtime_base(&binary, dir.path());

    // The build context: the Dockerfile and the binary at dist/.
    let ctx = dir.path().join("context");
    std::fs::create_dir_all(ctx.join("dist")).expect("context");
    std::fs::copy(root().join("Dockerfile"), ctx.join("Dockerfile")).expect("Dockerfile");
    ok(
        Command::new("strip")
            .arg("-o")
            .arg(ctx.join("dist/css-server"))
            .arg(&binary)
            .output()
            .expect("strip"),
        "strip",
    );
    let image = "localhost/css-server:test";
    let mut build = vec!["build", "--pull=never", "--format", "docker"];
    build.extend(LIMITS);
    build.extend(["--target", "prebuilt", "--build-arg"]);
    let runtime = format!("RUNTIME={base}");
    build.push(&runtime);
    let ctx_path = ctx.to_string_lossy().into_owned();
    build.extend(["-t", image, &ctx_path]);
    ok(podman(&build), "podman build");
    let _image = Image(image);
    let inspect = ok(
        podman(&["image", "inspect", image, "--format", "json"]),
        "inspect",
    );
    let inspect: Value = serde_json::from_str(&inspect).expect("inspect JSON");
    let config = &inspect[0]["Config"];
    assert_eq!(config["User"], "65532:65532", "{config}");
    assert_eq!(config["Entrypoint"][0], "/css-server");
    assert_eq!(
        inspect[0]["Healthcheck"]["Test"],
        serde_json::json!(["CMD", "/css-server", "healthcheck"]),
        "{inspect}"
    );
    let size = inspect[0]["Size"].as_u64().expect("size");
    eprintln!("image {image}: {:.1} MB (debug build)", size as f64 / 1e6);

    // Run it as compose.yaml's css service, the demo fleet on, against etcd.
    let etcd = EtcdServer::start();
    let port = free_port();
    let mut env = compose_environment(&[("CSS_DEMO", "true")]);
    for (k, v) in env.iter_mut() {
        if k == "CSS_ETCD_ENDPOINTS" {
            assert_eq!(v, "http://etcd:2379");
            *v = etcd.endpoint();
        }
    }
    env.push(("CSS_BIND".into(), format!("127.0.0.1:{port}")));
    env.push(("CSS_DEMO_INTERVAL".into(), "300ms".into()));
    let name = format!("css-test-{}", rand::random::<u32>());
    let mut run = vec![
        "run".to_string(),
        "-d".into(),
        "--name".into(),
        name.clone(),
        "--network".into(),
        "host".into(),
    ];
    run.extend(LIMITS.iter().map(|s| s.to_string()));
    for (k, v) in &env {
        run.push("-e".into());
        run.push(format!("{k}={v}"));
    }
    run.push(image.into());
    let run: Vec<&str> = run.iter().map(String::as_str).collect();
    ok(podman(&run), "podman run");
    let container = Container(name);

    let http = reqwest::Client::new();
    let base_url = format!("http://127.0.0.1:{port}");
    let get = |path: &str| {
        let http = http.clone();
        let url = format!("{base_url}{path}");
        async move {
            let r = http.get(&url).send().await.ok()?;
            let status = r.status().as_u16();
            Some((status, r.text().await.ok()?))
        }
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some((200, _)) = get("/v1/ping").await {
            break;
        }
        if Instant::now() > deadline {
            let logs = podman(&["logs", &container.0]);
            panic!(
                "the container never answered /v1/ping:\n{}",
                String::from_utf8_lossy(&logs.stderr)
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Lists: the demo fleet's tasks (it starts them just after start-up).
    let deadline = Instant::now() + Duration::from_secs(20);
    let list = loop {
        let (status, body) = get("/v1/tasks?limit=5").await.expect("list");
        assert_eq!(status, 200, "{body}");
        let list: Value = serde_json::from_str(&body).expect("JSON");
        if list["items"].as_array().is_some_and(|i| !i.is_empty()) {
            break list;
        }
        assert!(
            Instant::now() < deadline,
            "the demo fleet never showed: {list}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    let revision = list["revision"].as_str().expect("revision").to_string();
    // A watch: the demo fleet's next changes.
    let (status, body) = get(&format!("/v1/stream/tasks?since={revision}&wait=10"))
        .await
        .expect("watch");
    assert_eq!(status, 200, "{body}");
    let watched: Value = serde_json::from_str(&body).expect("JSON");
    assert!(
        watched["events"].as_array().is_some_and(|e| !e.is_empty()),
        "{watched}"
    );
    // What it wrote is in the etcd the test started.
    let store = etcd.store("/ecs-css/v1/").await;
    let rev = css::store::StateStore::current_revision(store.as_ref())
        .await
        .expect("etcd");
    assert!(rev >= revision.parse::<i64>().expect("number"));
    // Metrics.
    let (status, metrics) = get("/metrics").await.expect("metrics");
    assert_eq!(status, 200);
    assert!(metrics.contains(css::metrics::HTTP_REQUESTS), "{metrics}");

    // Its own health check (no shell in the image).
    ok(
        podman(&["healthcheck", "run", &container.0]),
        "health check",
    );
    // Not root: the configured user, and the process as the kernel sees it.
    let pid = ok(
        podman(&["inspect", &container.0, "--format", "{{.State.Pid}}"]),
        "pid",
    );
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("process status");
    let uid = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .expect("Uid line");
    assert!(
        uid.split_whitespace().skip(1).all(|u| u == "65532"),
        "{uid}"
    );
    // SIGTERM: a clean stop.
    ok(podman(&["stop", "-t", "10", &container.0]), "stop");
    let code = ok(
        podman(&["inspect", &container.0, "--format", "{{.State.ExitCode}}"]),
        "exit code",
    );
    assert_eq!(
        code,
        "0",
        "{}",
        String::from_utf8_lossy(&podman(&["logs", &container.0]).stderr)
    );
}
