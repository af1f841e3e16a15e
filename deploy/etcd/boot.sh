#!/bin/bash
# Boots one member of the stack's etcd cluster (deploy/etcd/template.yaml
# runs it as user data; tests/tests/etcd_boot.rs and etcd_rehearsal.rs run it
# against a temp root). Every member runs the same script: its Auto Scaling
# group's tag CssEtcdMember says which member it is; it takes over that
# member's network interface (its IP, in the peer and client URLs and in its
# certificate) and data volume, which outlive instances, starts etcd, and
# signals CloudFormation once the member serves, which gates the next one.
#
# Settings (environment), as the template passes them:
#   MEMBER_IPS          the members' private IPs, comma-separated, in order
#   MEMBER_SECRETS      their Secrets Manager secrets ({"ca","cert","key"}), same order
#   MEMBER_INTERFACES   their network interfaces; MEMBER_VOLUMES: their data volumes
#   ETCD_VERSION        e.g. v3.5.21; ETCD_SHA256: the SHA-256 of its tarball
#   ETCD_DOWNLOAD_URL   release base URL (a mirror works: URL/VERSION/etcd-VERSION-linux-ARCH.tar.gz)
#   ETCD_ARCH           arm64 (Graviton) or amd64
#   ETCD_QUOTA_BACKEND_BYTES, ETCD_SNAPSHOT_COUNT, CLUSTER_TOKEN
#   CFN_STACK           the stack to signal (resource Member<index>Group)
# For local runs: CSS_ROOT (install under it; no instance metadata, no
# attachments, no systemd), MEMBER_INDEX, DATA_DIR (the "volume"),
# CSS_START=1 (start etcd as a background process and pass the health gate),
# ETCD_CLIENT_PORT / ETCD_PEER_PORT, GATE_TIMEOUT and BOOTSTRAP_GRACE (seconds).
#   boot.sh --data-device VOLUME_ID   prints the block device of an attached EBS volume
set -euo pipefail

log() { echo "css-etcd-boot: $(date +%T) $*" >&2; }
die() { log "$*"; exit 1; }

# The device of an attached EBS volume: on Nitro instances an NVMe disk whose
# serial is the volume id without its dash (instance-store NVMe disks have
# other serials), else the device name it was attached as (/dev/sdf, which
# Xen instances show as /dev/xvdf). Never "the first other disk".
data_device() {
  local serial="${1//-/}" dev
  dev=$(lsblk -dpno NAME,SERIAL 2>/dev/null | awk -v s="$serial" '$2 == s { print $1; exit }')
  if [ -z "$dev" ]; then
    for d in /dev/sdf /dev/xvdf; do
      if [ -b "$d" ]; then dev=$(readlink -f "$d"); break; fi
    done
  fi
  [ -n "$dev" ] && echo "$dev"
}
if [ "${1:-}" = --data-device ]; then
  data_device "${2:?volume id}" || die "volume $2 is not attached"
  exit 0
fi

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
GATE_TIMEOUT="${GATE_TIMEOUT:-900}"
BOOTSTRAP_GRACE="${BOOTSTRAP_GRACE:-20}"
IFS=, read -r -a ips <<< "$MEMBER_IPS"
IFS=, read -r -a secrets <<< "$MEMBER_SECRETS"
IFS=, read -r -a interfaces <<< "${MEMBER_INTERFACES:-}"
IFS=, read -r -a volumes <<< "${MEMBER_VOLUMES:-}"
[ "${#ips[@]}" -eq "${#secrets[@]}" ] || die "MEMBER_IPS and MEMBER_SECRETS name different numbers of members"

# Who am I: on EC2, the instance and its group's member tag (IMDSv2 only).
INSTANCE_ID=""
if [ -z "$ROOT" ]; then
  imds() {
    local token
    token=$(curl -sf -X PUT http://169.254.169.254/latest/api/token -H "X-aws-ec2-metadata-token-ttl-seconds: 300") || return 1
    curl -sf -H "X-aws-ec2-metadata-token: $token" "http://169.254.169.254/latest/meta-data/$1"
  }
  INSTANCE_ID=$(imds instance-id) || die "no instance id from IMDS"
  MEMBER_INDEX="${MEMBER_INDEX:-$(imds tags/instance/CssEtcdMember)}" || die "no CssEtcdMember tag in the instance metadata"
fi
if [ -z "${MEMBER_INDEX:-}" ] && [ -n "${LOCAL_IP:-}" ]; then
  for i in "${!ips[@]}"; do
    if [ "${ips[$i]}" = "$LOCAL_IP" ]; then MEMBER_INDEX=$i; fi
  done
  [ -n "${MEMBER_INDEX:-}" ] || die "this instance's IP $LOCAL_IP is not one of MEMBER_IPS ($MEMBER_IPS)"
fi
index="${MEMBER_INDEX:?MEMBER_INDEX is not set}"
[[ "$index" =~ ^[0-9]+$ ]] && [ "$index" -lt "${#ips[@]}" ] || die "member $index is not one of MEMBER_IPS ($MEMBER_IPS)"
name="m$index"
LOCAL_IP="${ips[$index]}"
peer_url="https://$LOCAL_IP:$PEER_PORT"

# CloudFormation waits for one signal per replacement: SUCCESS once the
# member serves, FAILURE (the update rolls back) on any error before that.
signalled=""
signal() {
  signalled=1
  if [ -n "${CFN_STACK:-}" ] && [ -n "$INSTANCE_ID" ]; then
    aws cloudformation signal-resource --stack-name "$CFN_STACK" --logical-resource-id "Member${index}Group" \
      --unique-id "$INSTANCE_ID" --status "$1" >/dev/null || log "could not signal $1 to $CFN_STACK"
  fi
  log "member $name: $1"
}
tmp=$(mktemp -d)
trap 'rc=$?; rm -rf "$tmp"; if [ $rc -ne 0 ] && [ -z "$signalled" ]; then signal FAILURE; fi' EXIT

cluster=""
for i in "${!ips[@]}"; do
  cluster+="${cluster:+,}m$i=https://${ips[$i]}:$PEER_PORT"
done
log "member $name at $LOCAL_IP of $cluster"

# attach KIND ID: takes over the member's interface or volume once its old
# instance has let go of it (an update terminates the old instance first).
attach() {
  local kind="$1" id="$2" state
  for _ in $(seq 1 120); do
    if [ "$kind" = interface ]; then
      state=$(aws ec2 describe-network-interfaces --network-interface-ids "$id" \
        --query 'NetworkInterfaces[0].[Status,Attachment.InstanceId]' --output text) || state=""
    else
      state=$(aws ec2 describe-volumes --volume-ids "$id" \
        --query 'Volumes[0].[State,Attachments[0].InstanceId]' --output text) || state=""
    fi
    case "$state" in
      *"$INSTANCE_ID"*) return 0 ;;
      available*)
        if [ "$kind" = interface ]; then
          aws ec2 attach-network-interface --network-interface-id "$id" --instance-id "$INSTANCE_ID" --device-index 1 >/dev/null || true
        else
          aws ec2 attach-volume --volume-id "$id" --instance-id "$INSTANCE_ID" --device /dev/sdf >/dev/null || true
        fi ;;
    esac
    sleep 5
  done
  die "$kind $id did not come free for this instance in 10 minutes"
}

DATA="${DATA_DIR:-$ROOT/var/lib/etcd}"
mkdir -p "$DATA"
if [ -z "$ROOT" ]; then
  [ -n "${interfaces[$index]:-}" ] && [ -n "${volumes[$index]:-}" ] || die "MEMBER_INTERFACES and MEMBER_VOLUMES must name member $index's"
  attach interface "${interfaces[$index]}"
  # The OS configures the second interface (amazon-ec2-net-utils); etcd binds its IP.
  for _ in $(seq 1 60); do ip -o -4 addr show | grep -q " $LOCAL_IP/" && break; sleep 2; done
  ip -o -4 addr show | grep -q " $LOCAL_IP/" || die "interface ${interfaces[$index]} attached but $LOCAL_IP is not configured"
  attach volume "${volumes[$index]}"
  dev=""
  for _ in $(seq 1 60); do dev=$(data_device "${volumes[$index]}") && break; sleep 2; done
  [ -n "$dev" ] || die "volume ${volumes[$index]} attached but no block device shows it"
  # Formatted once: a replacement finds the member's data on it.
  blkid "$dev" >/dev/null 2>&1 || mkfs.xfs -q "$dev"
  uuid=$(blkid -s UUID -o value "$dev")
  grep -q "$uuid" /etc/fstab || echo "UUID=$uuid /var/lib/etcd xfs defaults,nofail 0 2" >> /etc/fstab
  mountpoint -q /var/lib/etcd || mount /var/lib/etcd
fi

# etcd from the pinned release tarball, checked against its SHA-256.
tarball="etcd-$ETCD_VERSION-linux-$ARCH.tar.gz"
curl -fsSL --retry 5 "$ETCD_DOWNLOAD_URL/$ETCD_VERSION/$tarball" -o "$tmp/$tarball" \
  || die "cannot download $ETCD_DOWNLOAD_URL/$ETCD_VERSION/$tarball"
echo "$ETCD_SHA256  $tmp/$tarball" | sha256sum -c --quiet - >/dev/null 2>&1 \
  || die "$tarball does not match ETCD_SHA256 $ETCD_SHA256: not installed"
mkdir -p "$tmp/x" "$ROOT/usr/local/bin"
tar -xzf "$tmp/$tarball" -C "$tmp/x" --strip-components=1
install -m 0755 "$tmp/x/etcd" "$tmp/x/etcdctl" "$ROOT/usr/local/bin/"

# This member's certificate (SAN: its IP), key and the CA, from its secret;
# css-etcd-certs reads it again on a timer: a renewal (the certificate
# function's schedule) replaces the files, and etcd loads them on its next
# handshake (it reads them for every new connection).
PKI="$ROOT/etc/etcd/pki"
mkdir -p "$PKI"
region_line=""
[ -n "${AWS_DEFAULT_REGION:-}" ] && region_line="export AWS_DEFAULT_REGION=$AWS_DEFAULT_REGION"
cat > "$ROOT/usr/local/bin/css-etcd-certs" <<CERTS
#!/bin/bash
# Written by css-etcd-boot for member $name: its certificate files from its secret, replaced only when changed.
set -euo pipefail
$region_line
umask 077
tmp=\$(mktemp -d)
trap 'rm -rf "\$tmp"' EXIT
aws secretsmanager get-secret-value --secret-id "${secrets[$index]}" --query SecretString --output text > "\$tmp/secret" \\
  || { echo "css-etcd-certs: cannot read secret ${secrets[$index]}" >&2; exit 1; }
python3 - "\$tmp/secret" "$PKI" <<'PY'
import json, os, sys
s, pki = json.load(open(sys.argv[1])), sys.argv[2]
files = {"ca.pem": "ca", "member.pem": "cert", "member-key.pem": "key"}
for name, field in files.items():
    if not s.get(field):
        sys.exit(f"css-etcd-certs: the member secret has no {field!r}")
owner, new = os.stat(pki), []
for name, field in files.items():
    path = os.path.join(pki, name)
    if not os.path.exists(path) or open(path).read() != s[field]:
        with open(path + ".new", "w") as f:
            f.write(s[field])
        os.chown(path + ".new", owner.st_uid, owner.st_gid)
        new.append(path)
for path in new:
    os.replace(path + ".new", path)
if new:
    print("css-etcd-certs: replaced " + " ".join(map(os.path.basename, new)), file=sys.stderr)
PY
CERTS
chmod 0755 "$ROOT/usr/local/bin/css-etcd-certs"
"$ROOT/usr/local/bin/css-etcd-certs" || die "cannot install member $name's certificate"

# css-etcdctl: etcdctl as an operator needs it in an SSM session, with every
# member's client URL and this member's certificate (members trust their CA's
# client certificates). `snapshot save` asks this member alone.
endpoints=""
for ip in "${ips[@]}"; do endpoints+="${endpoints:+,}https://$ip:$CLIENT_PORT"; done
cat > "$ROOT/usr/local/bin/css-etcdctl" <<CTL
#!/bin/bash
# Written by css-etcd-boot for member $name: etcdctl with the member's certificate.
export ETCDCTL_API=3 ETCDCTL_CACERT="$PKI/ca.pem" ETCDCTL_CERT="$PKI/member.pem" ETCDCTL_KEY="$PKI/member-key.pem"
endpoints="\${CSS_ETCDCTL_ENDPOINTS:-$endpoints}"
[ "\${1:-} \${2:-}" = "snapshot save" ] && endpoints="https://$LOCAL_IP:$CLIENT_PORT"
exec "$ROOT/usr/local/bin/etcdctl" --endpoints="\$endpoints" "\$@"
CTL
chmod 0755 "$ROOT/usr/local/bin/css-etcdctl"
ctl() { "$ROOT/usr/local/bin/css-etcdctl" --dial-timeout=1s --command-timeout=3s "$@"; }

# Where this member stands. Its data dir holds it: etcd restarts as the same
# member of the same cluster whatever the settings say. Else it is new: part
# of a cluster being created (no member answers yet, or one lists it unstarted),
# or a member moved or rebuilt (README "Moving or rebuilding a member"): its
# old self is removed and it is added again, joining the existing cluster.
state=new
initial="$cluster"
if [ -d "$DATA/member" ]; then
  had_data=1
  log "member $name: data found in $DATA, restarting as the same member"
else
  had_data=""
  listing=""
  for i in "${!ips[@]}"; do
    [ "$i" = "$index" ] && continue
    if listing=$(CSS_ETCDCTL_ENDPOINTS="https://${ips[$i]}:$CLIENT_PORT" ctl --command-timeout=2s member list -w json 2>/dev/null); then break; fi
    listing=""
  done
  if [ -n "$listing" ]; then
    verdict=$(LISTING="$listing" python3 - "$name" "$peer_url" <<'PY'
import json, os, sys
name, url = sys.argv[1], sys.argv[2]
members = json.loads(os.environ["LISTING"]).get("members", [])
mine = [m for m in members if url in m.get("peerURLs", [])]
if mine:
    # A member publishes its client URLs when it first starts.
    print("bootstrapping" if not mine[0].get("clientURLs") else "listed")
else:
    old = [m for m in members if m.get("name") == name]
    print("moved %x" % old[0]["ID"] if old else "absent")
PY
)
    case "$verdict" in
      bootstrapping) log "member $name: joining the cluster being created" ;;
      listed) die "member $name is in the cluster but its data is not in $DATA (volume lost?): README \"Moving or rebuilding a member\"" ;;
      moved*|absent)
        # etcd refuses membership changes until every member has been
        # connected for a few seconds (its strict reconfiguration check).
        retry() { local n; for n in $(seq 1 60); do "$@" && return 0; sleep 2; done; return 1; }
        if [ "$verdict" != absent ]; then
          log "member $name: removing its old self (${verdict#moved }) at another address"
          retry ctl member remove "${verdict#moved }" >/dev/null || die "cannot remove the old member $name"
        fi
        added=$(retry ctl member add "$name" --peer-urls="$peer_url") || die "cannot add member $name at $peer_url"
        initial=$(echo "$added" | sed -n 's/^ETCD_INITIAL_CLUSTER="\(.*\)"$/\1/p')
        [ -n "$initial" ] || die "member add answered no initial cluster"
        state=existing
        log "member $name: added to the existing cluster as $initial" ;;
    esac
  fi
fi

# etcd's settings as its environment (ETCD_*): unlike a config file, which
# etcd 3.4 reads without the peer SAN setting below, flags and environment
# mean the same in every version.
# A member dials its peers from whatever source address the kernel picks:
# on EC2 the primary interface's, not the member's own interface (its IP,
# its certificate's SAN). etcd checks a peer's SAN against that address by
# default, and the cluster could never form; peers still need a certificate
# of the cluster's CA, and only members reach the peer port (security group).
case "$ETCD_VERSION" in
  v3.[0-5].*) skip_san=ETCD_EXPERIMENTAL_PEER_SKIP_CLIENT_SAN_VERIFICATION ;;
  *) skip_san=ETCD_PEER_SKIP_CLIENT_SAN_VERIFICATION ;;
esac
cat > "$ROOT/etc/etcd/etcd.env" <<CONF
# Written by css-etcd-boot for member $name.
ETCD_NAME=$name
ETCD_DATA_DIR=$DATA
ETCD_LISTEN_CLIENT_URLS=https://$LOCAL_IP:$CLIENT_PORT
ETCD_ADVERTISE_CLIENT_URLS=https://$LOCAL_IP:$CLIENT_PORT
ETCD_LISTEN_PEER_URLS=$peer_url
ETCD_INITIAL_ADVERTISE_PEER_URLS=$peer_url
ETCD_INITIAL_CLUSTER=$initial
ETCD_INITIAL_CLUSTER_TOKEN=$TOKEN
ETCD_INITIAL_CLUSTER_STATE=$state
ETCD_SNAPSHOT_COUNT=$SNAPSHOT_COUNT
ETCD_QUOTA_BACKEND_BYTES=$QUOTA
ETCD_CERT_FILE=$PKI/member.pem
ETCD_KEY_FILE=$PKI/member-key.pem
ETCD_TRUSTED_CA_FILE=$PKI/ca.pem
ETCD_CLIENT_CERT_AUTH=true
ETCD_PEER_CERT_FILE=$PKI/member.pem
ETCD_PEER_KEY_FILE=$PKI/member-key.pem
ETCD_PEER_TRUSTED_CA_FILE=$PKI/ca.pem
ETCD_PEER_CLIENT_CERT_AUTH=true
$skip_san=true
ETCD_LOGGER=zap
ETCD_LOG_OUTPUTS=stderr
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
EnvironmentFile=/etc/etcd/etcd.env
ExecStart=/usr/local/bin/etcd
Restart=always
RestartSec=5
LimitNOFILE=65536

[Install]
WantedBy=multi-user.target
UNIT

cat > "$ROOT/etc/systemd/system/css-etcd-certs.service" <<UNIT
[Unit]
Description=etcd member $name: certificate files from its secret (renewals)

[Service]
Type=oneshot
ExecStart=/usr/local/bin/css-etcd-certs
UNIT
cat > "$ROOT/etc/systemd/system/css-etcd-certs.timer" <<UNIT
[Unit]
Description=etcd member $name: read its certificate secret hourly

[Timer]
OnBootSec=15min
OnUnitActiveSec=1h
RandomizedDelaySec=5min

[Install]
WantedBy=timers.target
UNIT

running() {
  if [ -z "$ROOT" ]; then
    ! systemctl is-failed --quiet etcd && [ "$(systemctl show -p MainPID --value etcd)" != 0 ]
  else
    kill -0 "$(cat "$ROOT/run/etcd.pid")" 2>/dev/null
  fi
}
if [ -z "$ROOT" ]; then
  id etcd >/dev/null 2>&1 || useradd --system --home-dir /var/lib/etcd --shell /sbin/nologin etcd
  chown -R etcd:etcd /var/lib/etcd /etc/etcd
  chmod 0700 /var/lib/etcd
  systemctl daemon-reload
  systemctl enable etcd
  systemctl enable --now css-etcd-certs.timer
  # Not --now: a new cluster's first member waits for a quorum before it is ready.
  systemctl start --no-block etcd
elif [ "${CSS_START:-}" = 1 ]; then
  mkdir -p "$ROOT/run" "$ROOT/var/log"
  # Only the file's settings, as systemd gives them: this script's own
  # ETCD_VERSION would read as etcd's --version.
  # shellcheck disable=SC2046
  env -i $(grep '^ETCD_' "$ROOT/etc/etcd/etcd.env") setsid "$ROOT/usr/local/bin/etcd" \
    >"$ROOT/var/log/etcd.log" 2>&1 < /dev/null &
  echo $! > "$ROOT/run/etcd.pid"
else
  log "member $name configured"
  exit 0
fi

# The health gate. A member that had data, or joined an existing cluster,
# must serve (a linearizable read through it) and see every member healthy
# before it signals: only then may the next member go down. A member of a
# cluster being created cannot serve before a quorum of members runs, and
# members start one after the other, so it signals once etcd has run a while.
started=$(date +%s)
while :; do
  now=$(date +%s)
  running || die "etcd exited (see its log)"
  if CSS_ETCDCTL_ENDPOINTS="https://$LOCAL_IP:$CLIENT_PORT" ctl endpoint health >/dev/null 2>&1 \
    && ctl endpoint health --cluster >/dev/null 2>&1; then
    log "member $name: healthy, with every member, after $((now - started)) s"
    break
  fi
  if [ -z "$had_data" ] && [ "$state" = new ] && [ $((now - started)) -ge "$BOOTSTRAP_GRACE" ]; then
    log "member $name: running, waiting for a quorum of the new cluster"
    break
  fi
  [ $((now - started)) -lt "$GATE_TIMEOUT" ] || die "member $name not healthy after $GATE_TIMEOUT s"
  sleep 1
done
signal SUCCESS
