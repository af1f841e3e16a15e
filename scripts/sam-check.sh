#!/usr/bin/env bash
# The SAM application: lint and validate template.yaml, check it for
# dependency cycles in every mode, then `sam build` (all five functions with
# cargo-lambda, for the template's default architecture).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/venv.sh
scripts/prereqs.sh sam
export SAM_CLI_TELEMETRY=0 AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-us-east-1}"
# The etcd members' user data must be deploy/etcd/boot.sh as it is now.
scripts/embed-boot.sh
git diff --quiet -- deploy/etcd/template.yaml 2>/dev/null \
  || { echo "deploy/etcd/template.yaml was stale: run scripts/embed-boot.sh and commit it" >&2; exit 1; }
# Both modes: conditions make one template; cfn-lint checks every branch.
cfn-lint template.yaml deploy/etcd/template.yaml deploy/member/template.yaml
# What CloudFormation itself refuses and linters disagree on: a dependency
# cycle in the SAM translator's output of any mode (tests run it too).
"$PYTHON" scripts/cfn-cycles.py template.yaml --modes deploy/cycle-modes.txt \
  --nested EtcdCluster=deploy/etcd/template.yaml
sam validate --lint
# The member accounts' template (README "Organizations"), in both its modes.
"$PYTHON" scripts/cfn-cycles.py deploy/member/template.yaml --modes deploy/member/cycle-modes.txt
sam validate --lint -t deploy/member/template.yaml
# A stack with members, as a deploy would choose it.
members="$(mktemp -d)/template.yaml"
"$PYTHON" scripts/with-defaults.py template.yaml "$members" \
  MemberAccounts=111111111111,222222222222 MemberRegions=us-east-1,eu-west-1 PurgeFormerMembers=true
cp -r deploy "$(dirname "$members")/"
cfn-lint "$members"
sam validate --lint -t "$members"
# The Fargate watch tier as a deploy would choose it: the same template with
# WatchTier=fargate (and the image and VPC it needs) as defaults, linted and
# validated as it stands.
fargate="$(mktemp -d)/template.yaml"
"$PYTHON" scripts/with-defaults.py template.yaml "$fargate" \
  WatchTier=fargate WatchImageUri=123456789012.dkr.ecr.us-east-1.amazonaws.com/css-server:1 VpcId=vpc-0123456789abcdef0
cp -r deploy "$(dirname "$fargate")/"
cfn-lint "$fargate"
sam validate --lint -t "$fargate"
sam build
# What was built: function, architecture, binary size.
for dir in .aws-sam/build/*Function; do
  [ -f "$dir/bootstrap" ] || continue
  printf '%s %s %s bytes\n' "$(basename "$dir")" "$(file -b "$dir/bootstrap" | cut -d, -f2 | xargs)" "$(stat -c %s "$dir/bootstrap")"
done
