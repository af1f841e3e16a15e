#!/usr/bin/env bash
# Property-based API tests: schemathesis generates requests from openapi.yaml
# and checks server mode's answers (status codes, schemas, content types,
# no 5xx, bad input refused). Server mode runs with the demo fleet.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/venv.sh
# Cargo's progress shows: the first build of css-server takes minutes.
echo "building css-server for schemathesis" >&2
cargo build -p css-server
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
./target/debug/css-server --demo --bind "127.0.0.1:$port" --log-level warn &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  curl -sf "http://127.0.0.1:$port/v1/ping" >/dev/null 2>&1 && break
  sleep 0.1
done
st run openapi.yaml --url "http://127.0.0.1:$port" --max-examples 50 --no-color
