//! The server-mode container image: the repository's Dockerfile built with
//! podman (its `prebuilt` target, on a runtime base made here from the
//! host's Debian libraries: no registry is reachable), then run as
//! compose.yaml configures its `css` service (with the demo fleet, its one
//! setting) against a local etcd: it answers lists, watches and /metrics,
//! passes its own health check, runs as a non-root user and stops cleanly.
//! Both platforms the Dockerfile names: linux/amd64 natively, linux/arm64
//! under qemu's user-mode emulation (binfmt_misc; scripts/prereqs.sh test
//! sets it up), from an arm64 binary cargo-lambda cross-builds and a base made
//! from Debian's arm64 cross libraries. Run with --nocapture for the images'
//! sizes.

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

/// A runtime base like distroless/cc for `arch`: `libs` (path on this host,
/// path in the image), CA certificates, a nonroot user, /tmp.
fn runtime_base(arch: &str, libs: &[(PathBuf, String)], dir: &Path) -> String {
    let fs = dir.join(format!("rootfs-{arch}"));
    let put = |from: &Path, to: &str| {
        let dest = fs.join(to.trim_start_matches('/'));
        std::fs::create_dir_all(dest.parent().expect("parent")).expect("dir");
        std::fs::copy(from, &dest).unwrap_or_else(|e| panic!("{}: {e}", from.display()));
    };
    for (from, to) in libs {
        put(from, to);
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
    let tarball = dir.join(format!("rootfs-{arch}.tar"));
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
    let name = format!("localhost/css-test-runtime:{arch}");
    ok(
        podman(&["import", "--arch", arch, &tarball.to_string_lossy(), &name]),
        "podman import",
    );
    name
}

/// The C libraries a host binary links, where `ldd` finds them (the same
/// path in the image).
fn host_libraries(binary: &Path) -> Vec<(PathBuf, String)> {
    let ldd = ok(
        Command::new("ldd").arg(binary).output().expect("ldd"),
        "ldd",
    );
    ldd.lines()
        .filter_map(|line| {
            // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or the
            // interpreter's "/lib64/ld-linux-x86-64.so.2 (0x...)".
            let path = match line.split_once("=>") {
                Some((_, right)) => right.split_whitespace().next(),
                None => line.split_whitespace().next(),
            };
            path.filter(|p| p.starts_with('/'))
                .map(|p| (PathBuf::from(p), p.to_string()))
        })
        .collect()
}

/// Where Debian's arm64 cross libraries are (libc6-arm64-cross,
/// libgcc-s1-arm64-cross).
const ARM64_LIBS: &str = "/usr/aarch64-linux-gnu/lib";

/// The libraries an arm64 binary needs (its interpreter and NEEDED entries,
/// as `readelf` lists them) plus libgcc_s, as distroless/cc has, from the
/// cross libraries into the image's /lib.
fn arm64_libraries(binary: &Path) -> Vec<(PathBuf, String)> {
    let readelf = |flag: &str| {
        ok(
            Command::new("readelf")
                .arg(flag)
                .arg(binary)
                .output()
                .expect("readelf"),
            "readelf",
        )
    };
    let dynamic = readelf("-d");
    let mut names: Vec<String> = dynamic
        .lines()
        .filter(|l| l.contains("(NEEDED)"))
        .filter_map(|l| l.split('[').nth(1)?.split(']').next().map(str::to_string))
        .collect();
    let headers = readelf("-l");
    let interpreter = headers
        .lines()
        .find_map(|l| l.split("interpreter: ").nth(1)?.split(']').next())
        .expect("an interpreter: a dynamically linked binary")
        .to_string();
    assert_eq!(interpreter, "/lib/ld-linux-aarch64.so.1");
    names.push("ld-linux-aarch64.so.1".into());
    names.push("libgcc_s.so.1".into());
    names
        .into_iter()
        .map(|n| {
            let from = Path::new(ARM64_LIBS).join(&n);
            assert!(
                from.exists(),
                "{} is missing: run scripts/prereqs.sh test (apt libc6-arm64-cross libgcc-s1-arm64-cross)",
                from.display()
            );
            (from, format!("/lib/{n}"))
        })
        .collect()
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
struct Image(String);

impl Drop for Image {
    fn drop(&mut self) {
        let _ = podman(&["rmi", "-f", &self.0]);
    }
}

struct Container(String);

impl Drop for Container {
    fn drop(&mut self) {
        let _ = podman(&["rm", "-f", &self.0]);
    }
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_image_serves_lists_watches_and_metrics_as_non_root() {
    let dir = tempfile::tempdir().expect("temp dir");
    let binary = server_binary();
    let base = runtime_base("amd64", &host_libraries(&binary), dir.path());
    // Stripped, as the build stage's profile strips (the arm64 one is
    // already: a release build).
    let stripped = dir.path().join("css-server");
    ok(
        Command::new("strip")
            .arg("-o")
            .arg(&stripped)
            .arg(&binary)
            .output()
            .expect("strip"),
        "strip",
    );
    image_serves("amd64", &stripped, &base, dir.path()).await;
}

#[cfg(target_arch = "x86_64")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_arm64_image_serves_the_same_under_emulation() {
    let dir = tempfile::tempdir().expect("temp dir");
    let binary = arm64_binary();
    let base = runtime_base("arm64", &arm64_libraries(&binary), dir.path());
    image_serves("arm64", &binary, &base, dir.path()).await;
}

/// Builds the `prebuilt` image for `arch` from `binary` (stripped) on `base`, runs it
/// as compose.yaml's css service and checks what it serves and how it runs.
async fn image_serves(arch: &str, binary: &Path, base: &str, dir: &Path) {
    let platform = format!("linux/{arch}");
    // The build context: the Dockerfile and the binary at dist/.
    let ctx = dir.join(format!("context-{arch}"));
    std::fs::create_dir_all(ctx.join("dist")).expect("context");
    std::fs::copy(root().join("Dockerfile"), ctx.join("Dockerfile")).expect("Dockerfile");
    std::fs::copy(binary, ctx.join("dist/css-server")).expect("binary");
    let image = format!("localhost/css-server:test-{arch}");
    let mut build = vec!["build", "--pull=never", "--format", "docker"];
    build.extend(LIMITS);
    build.extend([
        "--platform",
        &platform,
        "--target",
        "prebuilt",
        "--build-arg",
    ]);
    let runtime = format!("RUNTIME={base}");
    build.push(&runtime);
    let ctx_path = ctx.to_string_lossy().into_owned();
    build.extend(["-t", &image, &ctx_path]);
    ok(podman(&build), "podman build");
    let _image = Image(image.clone());
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
