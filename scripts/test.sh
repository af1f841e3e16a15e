#!/usr/bin/env bash
# Runs the whole test suite: unit tests, store conformance and integration
# tests against a real etcd and moto's server mode (both started by the tests).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/prereqs.sh test
cargo test --workspace --all-targets "$@"
