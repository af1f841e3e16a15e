#!/usr/bin/env bash
# Runs server mode on the embedded store with a simulated demo fleet; the API
# listens on 127.0.0.1:3000 (override with CSS_BIND). Extra flags pass through
# (see --help). Stop with Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/prereqs.sh run
# Cargo's own progress lines: the first (release) build takes several
# minutes on a small machine, and silence would look like a hang.
[ -x target/release/css-server ] || echo "building css-server (release); the first build takes 3.5 to 8 minutes on 2 cores (crates to download, other builds running)" >&2
cargo build --release -p css-server
exec target/release/css-server --demo "$@"
