#!/bin/bash
# Boots one member of the stack's etcd cluster (deploy/etcd/template.yaml
# runs it as user data; tests/tests/etcd_boot.rs runs it against a temp
# root). Every member runs the same script: it finds its place in the
# cluster from its private IP, which its CloudFormation network interface
# keeps across instance replacements.
#
# Settings (environment), as the template passes them:
#   MEMBER_IPS          the members' private IPs, comma-separated, in order
#   MEMBER_SECRETS      their Secrets Manager secrets ({"ca","cert","key"}), same order
#   ETCD_VERSION        e.g. v3.5.21; ETCD_SHA256: the SHA-256 of its tarball
#   ETCD_DOWNLOAD_URL   release base URL (a mirror works: URL/VERSION/etcd-VERSION-linux-ARCH.tar.gz)
#   ETCD_ARCH           arm64 (Graviton) or amd64
#   ETCD_QUOTA_BACKEND_BYTES, ETCD_SNAPSHOT_COUNT, CLUSTER_TOKEN
# For tests: CSS_ROOT (install under it, start nothing), LOCAL_IP, DATA_DEVICE=none,
# ETCD_CLIENT_PORT / ETCD_PEER_PORT.
set -euo pipefail

log() { echo "css-etcd-boot: $*" >&2; }
die() { log "$*"; exit 1; }

for v in MEMBER_IPS MEMBER_SECRETS ETCD_VERSION ETCD_SHA256 ETCD_DOWNLOAD_URL; do
  [ -n "${!v:-}" ] || die "$v is not set"
done
ROOT="${CSS_ROOT:-/}"
ROOT="${ROOT%/}"
ARCH="${ETCD_ARCH:-arm64}"
# 4 GiB: well under the data volume, room for ~1M tasks with compacted history;
# etcd's own default (2 GiB) is lower than this service wants.
QUOTA="${ETCD_QUOTA_BACKEND_BYTES:-4294967296}"
# Fewer raft entries kept in memory than etcd's default 100,000: members are small.
SNAPSHOT_COUNT="${ETCD_SNAPSHOT_COUNT:-10000}"
TOKEN="${CLUSTER_TOKEN:-css-etcd}"
CLIENT_PORT="${ETCD_CLIENT_PORT:-2379}"
PEER_PORT="${ETCD_PEER_PORT:-2380}"

# Who am I: the private IP (IMDSv2 only) and its place among the members.
if [ -z "${LOCAL_IP:-}" ]; then
  token=$(curl -sf -X PUT http://169.254.169.254/latest/api/token -H "X-aws-ec2-metadata-token-ttl-seconds: 300") \
    || die "no IMDSv2 token"
  LOCAL_IP=$(curl -sf -H "X-aws-ec2-metadata-token: $token" http://169.254.169.254/latest/meta-data/local-ipv4) \
    || die "no private IP from IMDS"
fi
IFS=, read -r -a ips <<< "$MEMBER_IPS"
IFS=, read -r -a secrets <<< "$MEMBER_SECRETS"
[ "${#ips[@]}" -eq "${#secrets[@]}" ] || die "MEMBER_IPS and MEMBER_SECRETS name different numbers of members"
index=-1
for i in "${!ips[@]}"; do
  if [ "${ips[$i]}" = "$LOCAL_IP" ]; then index=$i; fi
done
[ "$index" -ge 0 ] || die "this instance's IP $LOCAL_IP is not one of MEMBER_IPS ($MEMBER_IPS)"
name="m$index"
cluster=""
for i in "${!ips[@]}"; do
  cluster+="${cluster:+,}m$i=https://${ips[$i]}:$PEER_PORT"
done
log "member $name at $LOCAL_IP of $cluster"

# The data volume: the one disk besides the root disk. Formatted once; it
# outlives the instance, so a replacement finds the member's data on it.
DATA="$ROOT/var/lib/etcd"
mkdir -p "$DATA"
if [ "${DATA_DEVICE:-auto}" != none ]; then
  dev="${DATA_DEVICE:-}"
  if [ -z "$dev" ] || [ "$dev" = auto ]; then
    rootdisk=$(lsblk -no PKNAME "$(findmnt -no SOURCE /)")
    for _ in $(seq 1 120); do
      dev=$(lsblk -dpno NAME,TYPE | awk -v r="/dev/$rootdisk" '$2 == "disk" && $1 != r { print $1; exit }')
      [ -n "$dev" ] && break
      sleep 5 # CloudFormation attaches the volume after the instance starts.
    done
    [ -n "$dev" ] || die "no data volume attached after 10 minutes"
  fi
  blkid "$dev" >/dev/null 2>&1 || mkfs.xfs -q "$dev"
  uuid=$(blkid -s UUID -o value "$dev")
  grep -q "$uuid" /etc/fstab || echo "UUID=$uuid /var/lib/etcd xfs defaults,nofail 0 2" >> /etc/fstab
  mountpoint -q /var/lib/etcd || mount /var/lib/etcd
fi

# etcd from the pinned release tarball, checked against its SHA-256.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
tarball="etcd-$ETCD_VERSION-linux-$ARCH.tar.gz"
curl -fsSL --retry 5 "$ETCD_DOWNLOAD_URL/$ETCD_VERSION/$tarball" -o "$tmp/$tarball" \
  || die "cannot download $ETCD_DOWNLOAD_URL/$ETCD_VERSION/$tarball"
echo "$ETCD_SHA256  $tmp/$tarball" | sha256sum -c --quiet - >/dev/null 2>&1 \
  || die "$tarball does not match ETCD_SHA256 $ETCD_SHA256: not installed"
mkdir -p "$tmp/x" "$ROOT/usr/local/bin"
tar -xzf "$tmp/$tarball" -C "$tmp/x" --strip-components=1
install -m 0755 "$tmp/x/etcd" "$tmp/x/etcdctl" "$ROOT/usr/local/bin/"

# This member's certificate (SAN: its IP), key and the CA, from its secret.
PKI="$ROOT/etc/etcd/pki"
mkdir -p "$PKI"
aws secretsmanager get-secret-value --secret-id "${secrets[$index]}" --query SecretString --output text > "$tmp/secret" \
  || die "cannot read secret ${secrets[$index]}"
( umask 077
  python3 - "$tmp/secret" "$PKI" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
for field, name in (("ca", "ca.pem"), ("cert", "member.pem"), ("key", "member-key.pem")):
    if not s.get(field):
        sys.exit(f"css-etcd-boot: the member secret has no {field!r}")
    open(f"{sys.argv[2]}/{name}", "w").write(s[field])
PY
)

cat > "$ROOT/etc/etcd/etcd.conf.yml" <<CONF
# Written by css-etcd-boot for member $name.
name: $name
data-dir: $DATA
listen-client-urls: https://$LOCAL_IP:$CLIENT_PORT
advertise-client-urls: https://$LOCAL_IP:$CLIENT_PORT
listen-peer-urls: https://$LOCAL_IP:$PEER_PORT
initial-advertise-peer-urls: https://$LOCAL_IP:$PEER_PORT
initial-cluster: $cluster
initial-cluster-token: $TOKEN
initial-cluster-state: new
snapshot-count: $SNAPSHOT_COUNT
quota-backend-bytes: $QUOTA
client-transport-security:
  cert-file: $PKI/member.pem
  key-file: $PKI/member-key.pem
  trusted-ca-file: $PKI/ca.pem
  client-cert-auth: true
peer-transport-security:
  cert-file: $PKI/member.pem
  key-file: $PKI/member-key.pem
  trusted-ca-file: $PKI/ca.pem
  client-cert-auth: true
logger: zap
log-outputs: [stderr]
CONF

mkdir -p "$ROOT/etc/systemd/system"
cat > "$ROOT/etc/systemd/system/etcd.service" <<UNIT
[Unit]
Description=etcd member $name of cluster-state-service's store
After=network-online.target local-fs.target
Wants=network-online.target
RequiresMountsFor=/var/lib/etcd

[Service]
Type=notify
User=etcd
ExecStart=/usr/local/bin/etcd --config-file /etc/etcd/etcd.conf.yml
Restart=always
RestartSec=5
LimitNOFILE=65536

[Install]
WantedBy=multi-user.target
UNIT

if [ -z "$ROOT" ]; then
  id etcd >/dev/null 2>&1 || useradd --system --home-dir /var/lib/etcd --shell /sbin/nologin etcd
  chown -R etcd:etcd /var/lib/etcd /etc/etcd
  chmod 0700 /var/lib/etcd
  systemctl daemon-reload
  systemctl enable --now etcd
fi
log "member $name configured"
