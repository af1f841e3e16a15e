#!/usr/bin/env bash
# Writes deploy/etcd/template.yaml from template.yaml.in with deploy/etcd/boot.sh
# embedded as the members' user data (CloudFormation cannot read a file of the
# repository). Run after editing either; tests/tests/template.rs checks that
# the template holds the script verbatim.
set -euo pipefail
cd "$(dirname "$0")/../deploy/etcd"
{
  sed -n '1,/^@@BOOT@@$/p' template.yaml.in | sed '$d'
  # The user data's own shebang comes first; the script's is dropped, and
  # so are its comment lines: EC2 takes at most 16 KB of user data.
  tail -n +2 boot.sh | grep -v -E '^[[:space:]]*#( |$)' | sed 's/^/                /; s/^ *$//'
  sed -n '/^@@BOOT@@$/,$p' template.yaml.in | sed '1d'
} > template.yaml
