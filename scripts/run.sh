#!/usr/bin/env bash
# Runs server mode on the embedded store with a simulated demo fleet; the API
# listens on 127.0.0.1:3000 (override with CSS_BIND). Extra flags pass through
# (see --help). Stop with Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/prereqs.sh run
exec cargo run --release -q -p css-server -- --demo "$@"
