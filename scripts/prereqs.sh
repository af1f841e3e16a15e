#!/usr/bin/env bash
# Installs what building and testing need, idempotently; where it cannot,
# stops with one line saying what is missing and how to get it.
#   scripts/prereqs.sh run    # build and run server mode
#   scripts/prereqs.sh test   # also etcd and moto for the test suite
#   scripts/prereqs.sh sam    # SAM CLI, cfn-lint, cargo-lambda (zig), aarch64 target
set -euo pipefail
mode="${1:-test}"

die() { echo "missing prerequisite: $*" >&2; exit 1; }

command -v cargo >/dev/null 2>&1 || die "cargo (Rust toolchain): install rustup from rustup.rs, then 'rustup default stable'"

apt_pkgs=()
command -v protoc >/dev/null 2>&1 || apt_pkgs+=(protobuf-compiler)
if [ "$mode" = test ]; then
  [ -x /usr/bin/etcd ] || command -v etcd >/dev/null 2>&1 || apt_pkgs+=(etcd-server)
  command -v python3 >/dev/null 2>&1 || apt_pkgs+=(python3 python3-pip)
fi
if [ ${#apt_pkgs[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing ${apt_pkgs[*]} with apt-get" >&2
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${apt_pkgs[@]}" >/dev/null
  else
    die "${apt_pkgs[*]}: run 'sudo apt-get install ${apt_pkgs[*]}'"
  fi
fi

if [ "$mode" = test ]; then
  if ! python3 -c 'import moto.server, flask_cors' >/dev/null 2>&1; then
    echo "installing moto[server] with pip" >&2
    python3 -m pip install -q 'moto[server]>=5' >/dev/null 2>&1 \
      || die "moto[server] (Python): run 'python3 -m pip install \"moto[server]>=5\"'"
  fi
  if ! command -v st >/dev/null 2>&1; then
    echo "installing schemathesis with pip" >&2
    python3 -m pip install -q 'schemathesis>=4' >/dev/null 2>&1 \
      || die "schemathesis (Python): run 'python3 -m pip install \"schemathesis>=4\"'"
  fi
  command -v curl >/dev/null 2>&1 || die "curl: run 'sudo apt-get install curl'"
fi
if [ "$mode" = sam ]; then
  for tool in sam cfn-lint cargo-lambda; do
    if ! command -v "$tool" >/dev/null 2>&1; then
      echo "installing aws-sam-cli, cfn-lint and cargo-lambda with pip" >&2
      python3 -m pip install -q aws-sam-cli cfn-lint cargo-lambda >/dev/null 2>&1 \
        || die "SAM tools (Python): run 'python3 -m pip install aws-sam-cli cfn-lint cargo-lambda'"
      break
    fi
  done
  command -v file >/dev/null 2>&1 || { apt-get install -y -qq file >/dev/null 2>&1 || die "file: run 'sudo apt-get install file'"; }
  rustup target list --installed 2>/dev/null | grep -q aarch64-unknown-linux-gnu \
    || rustup target add aarch64-unknown-linux-gnu >/dev/null 2>&1 \
    || die "the aarch64 Rust target: run 'rustup target add aarch64-unknown-linux-gnu'"
fi
exit 0
