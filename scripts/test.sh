#!/usr/bin/env bash
# Runs the whole test suite: unit tests, the store conformance suite and the
# integration tests against a real etcd and moto's server mode (both started
# by the tests), then schemathesis against server mode.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/venv.sh
scripts/prereqs.sh test
scripts/schemathesis.sh
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
# Every test binary runs (a failing one does not stop the others), so the
# closing line counts them all.
cargo test --workspace --all-targets --no-fail-fast "$@" 2>&1 | tee "$log" || status=$?
# One closing line over every test binary.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i) ~ /^passed;?$/) p += $(i-1); if ($(i) ~ /^failed;?$/) f += $(i-1) } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
exit $status
