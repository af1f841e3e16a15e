//! The server-mode container image: the repository's Dockerfile built with
//! podman for both platforms it names, then run as compose.yaml configures its
//! `css` service (with the demo fleet, its one setting) against a local etcd:
//! it answers lists, watches and /metrics, passes its own health check, runs
//! as a non-root user and stops cleanly. No registry is reachable, so the
//! bases are made here (`css_tests::images`):
//! - linux/amd64: the Dockerfile's default target, css-server compiled by its
//!   build stage on a builder made from Debian bookworm and this host's Rust
//!   toolchain, on a runtime base made from the host's Debian libraries;
//! - linux/arm64, under qemu's user-mode emulation (binfmt_misc;
//!   scripts/prereqs.sh test sets it up): the `prebuilt` target, from an arm64
//!   binary cargo-lambda cross-builds, on a base made from Debian's arm64
//!   cross libraries.
//!
//! Run with --nocapture for the images' sizes.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use css_tests::etcd::free_port;
use css_tests::images::{
    arm64_libraries, builder_image, host_libraries, ok, podman, runtime_base, Container, Image,
    LIMITS,
};
use css_tests::EtcdServer;
use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The cargo that runs the tests, in the repository.
fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(root());
    c
}

/// Where cargo builds (CARGO_TARGET_DIR, else the repository's target/).
fn target_dir() -> PathBuf {
    std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root().join("target"))
}

/// css-server as cargo built it for the tests (built here if missing).
fn server_binary() -> PathBuf {
    let built = cargo()
        .args(["build", "-q", "-p", "css-server", "--bin", "css-server"])
        .status()
        .expect("cargo build");
    assert!(built.success(), "css-server does not build");
    target_dir().join("debug/css-server")
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

/// css-server for arm64 as cargo-lambda cross-builds it (release, zig as
/// the linker), built here if missing or older than its sources (CI builds
/// it beside the Lambda functions, while their arm64 build is at hand).
fn arm64_binary() -> PathBuf {
    let binary = target_dir().join("lambda/css-server/bootstrap");
    let built = std::fs::metadata(&binary).and_then(|m| m.modified()).ok();
    let sources = ["Cargo.toml", "Cargo.lock", "shared", "server"]
        .iter()
        .filter_map(|p| newest(&root().join(p)))
        .max();
    if built.is_none() || sources > built {
        let status = cargo()
            .args([
                "lambda",
                "build",
                "--release",
                "--arm64",
                "--bin",
                "css-server",
            ])
            .status();
        match status {
            Ok(s) => assert!(s.success(), "cargo lambda build --arm64 failed"),
            Err(e) => panic!("cargo lambda cannot run ({e}): run the tests with scripts/test.sh (cargo-lambda is in its virtual environment)"),
        }
    }
    binary
}

/// The newest modification time under `path` (a file, or a tree).
fn newest(path: &Path) -> Option<std::time::SystemTime> {
    let meta = std::fs::metadata(path).ok()?;
    if !meta.is_dir() {
        return meta.modified().ok();
    }
    std::fs::read_dir(path)
        .ok()?
        .filter_map(|e| newest(&e.ok()?.path()))
        .max()
}

/// One image at a time: the build from source takes both cores for minutes,
/// and the emulated server must not time out behind it.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_image_built_from_source_serves_lists_watches_and_metrics_as_non_root() {
    let _one = ONE_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let builder = builder_image(dir.path());
    // The libraries the host's build of the same sources links (Debian
    // bookworm's, as the builder's and distroless/cc-debian12's are); one
    // missing would stop the container at start-up.
    let base = runtime_base("amd64", &host_libraries(&server_binary()), dir.path());
    let image = build(
        "amd64",
        &root(),
        None,
        &[format!("BUILDER={}", builder.0), format!("RUNTIME={base}")],
    );
    image_serves("amd64", &image).await;
    drop(image);
    drop(builder);
    // The build stage's image (the builder's size) is left untagged.
    let _ = podman(&["image", "prune", "-f"]);
}

#[cfg(target_arch = "x86_64")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_arm64_image_serves_the_same_under_emulation() {
    let _one = ONE_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let binary = arm64_binary();
    let base = runtime_base("arm64", &arm64_libraries(&binary), dir.path());
    // The build context: the Dockerfile and the binary at dist/.
    let ctx = dir.path().join("context-arm64");
    std::fs::create_dir_all(ctx.join("dist")).expect("context");
    std::fs::copy(root().join("Dockerfile"), ctx.join("Dockerfile")).expect("Dockerfile");
    std::fs::copy(&binary, ctx.join("dist/css-server")).expect("binary");
    let image = build(
        "arm64",
        &ctx,
        Some("prebuilt"),
        &[format!("RUNTIME={base}")],
    );
    image_serves("arm64", &image).await;
}

/// Builds the Dockerfile in `ctx` for `arch` (its `target`, else the
/// default one) with build arguments `args`.
fn build(arch: &str, ctx: &Path, target: Option<&str>, args: &[String]) -> Image {
    let platform = format!("linux/{arch}");
    let image = format!("localhost/css-server:test-{arch}");
    // Host networking: the build stage reaches Debian's archive and crates.io.
    let mut build = vec![
        "build",
        "--pull=never",
        "--format",
        "docker",
        "--network",
        "host",
    ];
    build.extend(LIMITS);
    build.extend(["--platform", &platform]);
    if let Some(t) = target {
        build.extend(["--target", t]);
    }
    for a in args {
        build.extend(["--build-arg", a]);
    }
    let ctx = ctx.to_string_lossy();
    build.extend(["-t", &image, &ctx]);
    ok(podman(&build), "podman build");
    Image(image)
}

/// Runs `image` (built for `arch`) as compose.yaml's css service and checks
/// what it serves and how it runs.
async fn image_serves(arch: &str, image: &Image) {
    let platform = format!("linux/{arch}");
    let image = image.0.clone();
    let inspect = ok(
        podman(&["image", "inspect", &image, "--format", "json"]),
        "inspect",
    );
    let inspect: Value = serde_json::from_str(&inspect).expect("inspect JSON");
    assert_eq!(inspect[0]["Architecture"], arch, "{inspect}");
    assert_eq!(inspect[0]["Os"], "linux");
    let config = &inspect[0]["Config"];
    assert_eq!(config["User"], "65532:65532", "{config}");
    assert_eq!(config["Entrypoint"][0], "/css-server");
    assert_eq!(
        inspect[0]["Healthcheck"]["Test"],
        serde_json::json!(["CMD", "/css-server", "healthcheck"]),
        "{inspect}"
    );
    let size = inspect[0]["Size"].as_u64().expect("size");
    eprintln!("image {image}: {:.1} MB", size as f64 / 1e6);

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
    run.push("--platform".into());
    run.push(platform.clone());
    run.push(image.clone());
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
