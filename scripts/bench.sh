#!/usr/bin/env bash
# Runs the whole benchmark suite (release build, a local etcd and moto started by
# the suite) and writes BENCHMARKS.md-ready tables to stdout and bench-results.md.
# Extra arguments go to css-bench (e.g. `--runs 3`); default 5 runs per figure.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/venv.sh
scripts/prereqs.sh test
scripts/prereqs.sh sam
cargo build --release -q -p css-bench -p css-ingest -p css-api -p css-watch -p css-reconcile -p css-client
# The functions as Lambda runs them (arm64), for their sizes.
cargo lambda build --release --arm64 --bin css-ingest --bin css-api --bin css-watch --bin css-reconcile
args=("$@")
[ ${#args[@]} -gt 0 ] || args=(--runs 5)
{
  echo "Machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(. /etc/os-release && echo "$PRETTY_NAME"), $(rustc --version), etcd $(etcd --version | awk '/etcd Version/ {print $3}')"
  echo
  target/release/css-bench "${args[@]}" all
} | tee bench-results.md
