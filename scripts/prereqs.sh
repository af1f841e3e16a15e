#!/usr/bin/env bash
# Installs what building and testing need, idempotently; where it cannot,
# stops with one line saying what is missing and how to get it.
#   scripts/prereqs.sh run    # build and run server mode
#   scripts/prereqs.sh test   # also etcd, podman with arm64 emulation, the Python tools (venv, scripts/requirements.lock)
#   scripts/prereqs.sh sam    # the Python tools (SAM CLI, cfn-lint, cargo-lambda) and the aarch64 target
# Debian packages come from apt-get (as root); Python tools go into the
# virtual environment of scripts/venv.sh, never into the system Python.
set -euo pipefail
mode="${1:-test}"
cd "$(dirname "$0")/.."
. scripts/venv.sh

die() { echo "missing prerequisite: $*" >&2; exit 1; }

command -v cargo >/dev/null 2>&1 || die "cargo (Rust toolchain): install rustup from rustup.rs, then 'rustup default stable'"

apt_pkgs=()
# ring, mimalloc and the linker need a C toolchain.
command -v cc >/dev/null 2>&1 || apt_pkgs+=(build-essential)
command -v curl >/dev/null 2>&1 || apt_pkgs+=(curl)
command -v protoc >/dev/null 2>&1 || apt_pkgs+=(protobuf-compiler)
# etcd-client's protos import protobuf's own (descriptor.proto): a recommends of
# protobuf-compiler, named here for machines that install no recommends.
[ -e /usr/include/google/protobuf/descriptor.proto ] || apt_pkgs+=(libprotobuf-dev)
if [ "$mode" != run ]; then
  command -v python3 >/dev/null 2>&1 || apt_pkgs+=(python3 python3-venv)
fi
if [ "$mode" = test ]; then
  [ -x /usr/bin/etcd ] || command -v etcd >/dev/null 2>&1 || apt_pkgs+=(etcd-server)
  # etcdctl: the boot script test packs it into a release-shaped tarball.
  command -v etcdctl >/dev/null 2>&1 || apt_pkgs+=(etcd-client)
  # The container image test builds and runs the Dockerfile with podman.
  command -v podman >/dev/null 2>&1 || apt_pkgs+=(podman)
  command -v runc >/dev/null 2>&1 || apt_pkgs+=(runc)
  # ... from source too, on a Debian builder it makes (no registry serves rust:).
  command -v debootstrap >/dev/null 2>&1 || [ -x /usr/sbin/debootstrap ] || apt_pkgs+=(debootstrap)
  # ... and its arm64 image under qemu's user-mode emulation, on a base made
  # from Debian's arm64 cross libraries.
  if [ "$(uname -m)" = x86_64 ]; then
    [ -e /usr/libexec/qemu-binfmt/aarch64-binfmt-P ] || apt_pkgs+=(qemu-user-static)
    [ -e /usr/aarch64-linux-gnu/lib/libc.so.6 ] || apt_pkgs+=(libc6-arm64-cross)
    [ -e /usr/aarch64-linux-gnu/lib/libgcc_s.so.1 ] || apt_pkgs+=(libgcc-s1-arm64-cross)
  fi
fi
if [ "$mode" = sam ]; then
  command -v file >/dev/null 2>&1 || apt_pkgs+=(file)
fi

apt_install() {
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing $* with apt-get (about a minute)" >&2
    # apt's own progress lines, on stderr, so a wait never looks like a hang.
    { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@"; } 2>&1 \
      | grep --line-buffered -E '^(Get|Setting up|Unpacking)' >&2 || true
    for p in "$@"; do
      dpkg -s "$p" >/dev/null 2>&1 || die "$*: apt-get install failed; run 'apt-get install $*' to see why"
    done
  else
    die "$*: run 'sudo apt-get install $*'"
  fi
}
[ ${#apt_pkgs[@]} -eq 0 ] || apt_install "${apt_pkgs[@]}"

[ "$mode" = run ] && exit 0

# The virtual environment (Debian's python3 needs python3-venv for it).
if ! "$CSS_VENV/bin/python3" -m pip --version >/dev/null 2>&1; then
  rm -rf "$CSS_VENV"
  if ! python3 -m venv "$CSS_VENV" >/dev/null 2>&1; then
    rm -rf "$CSS_VENV"
    apt_install python3-venv
    python3 -m venv "$CSS_VENV" >/dev/null 2>&1 \
      || die "a Python virtual environment at $CSS_VENV: 'python3 -m venv $CSS_VENV' failed (is python3-venv installed?)"
  fi
fi

# Every Python tool at the versions scripts/requirements.lock pins, installed
# once per version of that file (its hash is kept in the venv).
lock=scripts/requirements.lock
stamp="$CSS_VENV/.css-requirements"
want=$(sha256sum "$lock" | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "installing the Python tools of $lock into $CSS_VENV with pip (a minute or two)" >&2
  log=$(mktemp)
  "$CSS_VENV/bin/python3" -m pip install -q --disable-pip-version-check -r "$lock" >"$log" 2>&1 \
    || die "the Python tools of $lock: pip could not install them into $CSS_VENV (see $log); check access to PyPI and rerun scripts/prereqs.sh $mode"
  rm -f "$log"
  echo "$want" > "$stamp"
fi

# The arm64 builds: the Lambda functions (sam) and the arm64 image's server (test).
rustup target list --installed 2>/dev/null | grep -q aarch64-unknown-linux-gnu \
  || rustup target add aarch64-unknown-linux-gnu >/dev/null 2>&1 \
  || die "the aarch64 Rust target: run 'rustup target add aarch64-unknown-linux-gnu'"

# arm64 binaries run through qemu, registered with the kernel's binfmt_misc
# (flag F: the container finds the interpreter too). Debian registers it with
# systemd-binfmt, which machines without systemd do not run.
if [ "$mode" = test ] && [ "$(uname -m)" = x86_64 ] && [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
  how="run 'sudo mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc; sudo sh -c \"cat /usr/lib/binfmt.d/qemu-aarch64.conf > /proc/sys/fs/binfmt_misc/register\"'"
  [ "$(id -u)" = 0 ] || die "arm64 emulation for the container image test: $how"
  [ -e /proc/sys/fs/binfmt_misc/register ] \
    || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc 2>/dev/null \
    || die "arm64 emulation for the container image test (binfmt_misc cannot be mounted): $how"
  cat /usr/lib/binfmt.d/qemu-aarch64.conf > /proc/sys/fs/binfmt_misc/register 2>/dev/null \
    || [ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] \
    || die "arm64 emulation for the container image test (the qemu-aarch64 registration was refused): $how"
fi
exit 0
