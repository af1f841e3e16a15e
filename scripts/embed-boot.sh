#!/usr/bin/env bash
# Writes deploy/etcd/template.yaml from template.yaml.in with deploy/etcd/boot.sh
# embedded as the members' user data (CloudFormation cannot read a file of the
# repository). Run after editing either; tests/tests/template.rs checks that
# the template holds the script verbatim.
set -euo pipefail
cd "$(dirname "$0")/../deploy/etcd"
{
  sed -n '1,/^@@BOOT@@$/p' template.yaml.in | sed '$d'
  # The user data's own shebang comes first; the script's is dropped.
  tail -n +2 boot.sh | sed 's/^/                /; s/^ *$//'
  sed -n '/^@@BOOT@@$/,$p' template.yaml.in | sed '1d'
} > template.yaml
