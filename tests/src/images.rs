//! Container images for the tests, made here: no registry is reachable, so
//! the bases the Dockerfile names (BUILDER, RUNTIME) are made from Debian's
//! packages and this host's Rust toolchain, imported with podman.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// podman with the flags these machines need (cgroupfs, runc; README).
pub fn podman(args: &[&str]) -> Output {
    let out = Command::new("podman")
        .args(["--cgroup-manager", "cgroupfs", "--runtime", "runc"])
        .args(args)
        .output();
    match out {
        Ok(o) => o,
        Err(e) => panic!("podman cannot run ({e}): run scripts/prereqs.sh test (apt podman runc)"),
    }
}

pub fn ok(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

pub const LIMITS: [&str; 4] = [
    "--ulimit",
    "nofile=1024:1024",
    "--ulimit",
    "nproc=1024:1024",
];

/// A runtime base like distroless/cc for `arch`: `libs` (path on this host,
/// path in the image), CA certificates, a nonroot user, /tmp.
pub fn runtime_base(arch: &str, libs: &[(PathBuf, String)], dir: &Path) -> String {
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
    let name = format!("localhost/css-test-runtime:{arch}");
    import(&fs, dir, arch, &name, &[]);
    name
}

/// The C libraries a host binary links, where `ldd` finds them (the same
/// path in the image).
pub fn host_libraries(binary: &Path) -> Vec<(PathBuf, String)> {
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
pub fn arm64_libraries(binary: &Path) -> Vec<(PathBuf, String)> {
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

/// Removed when the test ends, so runs do not pile up images.
pub struct Image(pub String);

impl Drop for Image {
    fn drop(&mut self) {
        let _ = podman(&["rmi", "-f", &self.0]);
    }
}

pub struct Container(pub String);

impl Drop for Container {
    fn drop(&mut self) {
        let _ = podman(&["rm", "-f", &self.0]);
    }
}

/// A stand-in for the Dockerfile's BUILDER (`rust:1.95-bookworm`): Debian
/// bookworm as debootstrap makes it (minbase, with a C toolchain; the build
/// stage installs the rest with apt-get, as it would on the real image), the
/// Rust toolchain that runs these tests, and this host's CA certificates
/// (crates.io may be reached through a proxy with a CA of its own).
pub fn builder_image(dir: &Path) -> Image {
    let fs = dir.join("rootfs-builder");
    let mirror = std::env::var("CSS_DEBIAN_MIRROR")
        .unwrap_or_else(|_| "http://deb.debian.org/debian".into());
    let made = Command::new("debootstrap")
        .args([
            "--variant=minbase",
            "--include=ca-certificates,gcc,libc6-dev",
            "bookworm",
        ])
        .arg(&fs)
        .arg(&mirror)
        .output();
    match made {
        Ok(out) => ok(out, "debootstrap"),
        Err(e) => {
            panic!("debootstrap cannot run ({e}): run scripts/prereqs.sh test (apt debootstrap)")
        }
    };
    let sysroot = ok(
        Command::new("rustc")
            .args(["--print", "sysroot"])
            .output()
            .expect("rustc"),
        "rustc --print sysroot",
    );
    let rust = fs.join("usr/local/rust");
    std::fs::create_dir_all(&rust).expect("dir");
    for part in ["bin", "lib", "libexec"] {
        ok(
            Command::new("cp")
                .arg("-a")
                .arg(Path::new(&sysroot).join(part))
                .arg(&rust)
                .output()
                .expect("cp"),
            "copy the Rust toolchain",
        );
    }
    std::fs::copy(
        "/etc/ssl/certs/ca-certificates.crt",
        fs.join("etc/ssl/certs/ca-certificates.crt"),
    )
    .expect("CA certificates");
    let name = "localhost/css-test-builder:amd64".to_string();
    import(
        &fs,
        dir,
        "amd64",
        &name,
        &[
            "ENV=PATH=/usr/local/cargo/bin:/usr/local/rust/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "ENV=CARGO_HOME=/usr/local/cargo",
        ],
    );
    Image(name)
}

/// Imports the root `fs` as image `name` for `arch`.
fn import(fs: &Path, dir: &Path, arch: &str, name: &str, changes: &[&str]) {
    let tarball = dir.join(format!("{name}.tar").replace(['/', ':'], "-"));
    ok(
        Command::new("tar")
            .arg("-cf")
            .arg(&tarball)
            .arg("-C")
            .arg(fs)
            .args(["--owner=0", "--group=0", "."])
            .output()
            .expect("tar"),
        "tar",
    );
    let mut args = vec!["import", "--arch", arch];
    for c in changes {
        args.extend(["--change", c]);
    }
    let tarball = tarball.to_string_lossy();
    args.extend([tarball.as_ref(), name]);
    ok(podman(&args), "podman import");
    // The tarball is only the import's input (the builder's is ~1 GB).
    let _ = std::fs::remove_file(tarball.as_ref());
}
