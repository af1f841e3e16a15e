#!/usr/bin/env bash
# Re-makes scripts/requirements.lock from scripts/requirements.txt in a fresh
# virtual environment (run after changing a version there; commit both).
set -euo pipefail
cd "$(dirname "$0")/.."
venv=$(mktemp -d)/venv
python3 -m venv "$venv"
"$venv/bin/pip" install -q --disable-pip-version-check -r scripts/requirements.txt
"$venv/bin/pip" check
{
  echo "# Every Python tool the scripts install into the venv, with every dependency pinned"
  echo "# (pip freeze of a venv made from scripts/requirements.txt): CI cannot change under us."
  echo "# Re-make it with scripts/lock-python.sh after editing requirements.txt."
  "$venv/bin/pip" freeze
} > scripts/requirements.lock
rm -rf "$(dirname "$venv")"
echo "scripts/requirements.lock: $(grep -vc '^#' scripts/requirements.lock) packages"
