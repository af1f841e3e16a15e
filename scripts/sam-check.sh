#!/usr/bin/env bash
# The SAM application: lint and validate template.yaml, then `sam build` (all
# four functions with cargo-lambda, for the template's default architecture).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/venv.sh
scripts/prereqs.sh sam
export SAM_CLI_TELEMETRY=0 AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-us-east-1}"
cfn-lint template.yaml
sam validate --lint
sam build
# What was built: function, architecture, binary size.
for dir in .aws-sam/build/*Function; do
  [ -f "$dir/bootstrap" ] || continue
  printf '%s %s %s bytes\n' "$(basename "$dir")" "$(file -b "$dir/bootstrap" | cut -d, -f2 | xargs)" "$(stat -c %s "$dir/bootstrap")"
done
