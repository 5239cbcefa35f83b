#!/usr/bin/env bash
# test/lab/lab.sh — the k8s-master-install test lab.
#
# Three "masters" k8smaster01/02/03 (172.24.8.71-73/24) as systemd-nspawn
# containers booting real systemd + OpenSSH, each in its own network namespace,
# joined by veth pairs to the bridge k8smi-br0 (172.24.8.1/24) in the root
# namespace, running a real 3-member TLS etcd 3.4 cluster signed by a lab CA.
# A fourth container, k8sbastion (172.24.8.70), runs only OpenSSH: with `isolate on`
# this machine reaches the masters only through it (an operator behind a bastion).
#
#   lab.sh deps                 install what the lab needs on this machine (apt)
#   lab.sh up                   bring the lab up (no-op if it is already up)
#   lab.sh down                 remove everything the lab made (keeps the rootfs cache)
#   lab.sh status               show what is up
#   lab.sh ssh HOST [CMD...]    ssh to a host (lab key, strict known_hosts)
#   lab.sh scp ARGS...          scp with the lab's ssh config ($LAB_DIR/ssh/config), e.g. f k8smaster01:/tmp/
#   lab.sh cut HOST | heal HOST take the host's link down / up
#   lab.sh reboot HOST          systemctl reboot inside the host; boots it again and waits for ssh
#   lab.sh logs HOST [journalctl args...]   read a host's journal from this machine
#                               (works while the host is cut), e.g. logs k8smaster01 -u kube-apiserver
#   lab.sh tarballs             (re)build the kubernetes-server tarball fixtures into $LAB_DIR (and the
#                               real-size ones into $CACHE_DIR, once)
#   lab.sh link RATE|off        shape what this machine sends to the hosts (e.g. 100mbit): a remote workstation
#   lab.sh isolate on|off       this machine reaches the masters only through k8sbastion (or directly again)
#   lab.sh rootfs               build the cached rootfs only
#   lab.sh kubectl-path         print the path of Debian's kubectl 1.20 on this machine
#   lab.sh add-host 4           opt-in: grow the running lab by k8smaster04 (172.24.8.74), a master
#                               without etcd (the masters use the three members); lab.json lists it
#                               under "extraHosts". `up` never makes it; `down` removes it with the rest
#   lab.sh remove-host 4        take k8smaster04 away again (the lab is back to its three masters)
#
# HOST is a name (k8smaster01, k8sbastion), a short index (1..4; 4 is the bastion) or an IP;
# k8smaster04, once added, by its name or IP.
# Environment: LAB_DIR (default /run/k8smi-lab), K8SMI_CACHE_DIR (default
# /var/cache/k8smi-lab), K8SMI_MIRROR (default: the Debian mirror of this machine's apt
# sources, else http://deb.debian.org/debian).
# Only one lab can exist on a machine at a time (the bridge/netns names are fixed).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
LAB_DIR=${LAB_DIR:-/run/k8smi-lab}
CACHE_DIR=${K8SMI_CACHE_DIR:-/var/cache/k8smi-lab}
# the Debian mirror this machine's apt uses (first non-security .../debian URI), else deb.debian.org
host_mirror() {
  local u
  u=$( { grep -hE '^[[:space:]]*URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | sed 's/^[[:space:]]*URIs:[[:space:]]*//' | tr ' ' '\n'
    grep -hE '^[[:space:]]*deb[[:space:]]' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
      sed -E 's/^[[:space:]]*deb[[:space:]]+(\[[^]]*\][[:space:]]+)?//' | awk '{print $1}'; } |
    grep -E '^https?://[^ ]+/debian/?$' | grep -v security | head -1)
  echo "${u:-http://deb.debian.org/debian}"
}
MIRROR=${K8SMI_MIRROR:-$(host_mirror)}
SUITE=bookworm
BRIDGE=k8smi-br0
BRIDGE_ADDR=172.24.8.1
PREFIX_LEN=24
HOSTS=(k8smaster01 k8smaster02 k8smaster03 k8sbastion)
IPS=(172.24.8.71 172.24.8.72 172.24.8.73 172.24.8.70)
MASTERS=(0 1 2)   # indexes into HOSTS/IPS
BASTION=3
ALL=("${MASTERS[@]}" "$BASTION")
# Opt-in (add-host / remove-host), never made by `up`: a fourth master, for changes of the masters.
# It joins HOSTS/IPS/ALL only while $LAB_DIR/extra-host says it was added.
EXTRA=4
EXTRA_NAME=k8smaster04
EXTRA_IP=172.24.8.74
with_extra() { HOSTS[$EXTRA]=$EXTRA_NAME; IPS[$EXTRA]=$EXTRA_IP; ALL=("${MASTERS[@]}" "$BASTION" "$EXTRA"); }
extra_added() { [ -f "${LAB_DIR%/}/extra-host" ]; }
TARBALL_VERSIONS=(v1.28.7 v1.28.6 v1.14.2)
# Also at real size (559 MB of binaries, make-tarball.sh REAL_SIZE=1): made once, cached in $CACHE_DIR.
REAL_SIZE_VERSIONS=(v1.28.7 v1.28.6 v1.14.2)
# Packages of the container rootfs. Changing this list (or ROOTFS_RECIPE) makes
# `up` build a new cached rootfs. debootstrap does not resolve virtual packages,
# hence python3-cffi-backend (python3-cryptography needs python3-cffi-backend-api-*).
# nginx + libnginx-mod-stream: the tutorial's kube-nginx (a TCP proxy to the three
# apiservers) is nginx with the stream module: /usr/sbin/nginx, the module
# /usr/lib/nginx/modules/ngx_stream_module.so. Debian's own nginx.service is masked.
ROOTFS_PKGS=(systemd systemd-sysv dbus openssh-server iproute2 procps python3
  python3-yaml python3-cryptography python3-cffi-backend etcd-server etcd-client ca-certificates
  curl openssl netbase less nginx libnginx-mod-stream)
ROOTFS_RECIPE=4   # bump when rootfs_customize changes
MARKER=.k8smi-lab # file that marks $LAB_DIR as ours (down refuses to rm -rf without it)

log() { printf '[lab %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf '[lab] ERROR: %s\n' "$*" >&2; exit 1; }
need_root() { [ "$(id -u)" = 0 ] || die "must run as root"; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN{printf "%.1f", b-a}'; }

check_lab_dir() {
  case "$LAB_DIR" in
    /*) ;;
    *) die "LAB_DIR must be an absolute path: $LAB_DIR" ;;
  esac
  case "${LAB_DIR%/}" in
    "" | /run | /tmp | /var | /var/tmp | /root | /home | /etc | /usr | /opt | /srv | /var/cache | "$CACHE_DIR")
      die "refusing LAB_DIR=$LAB_DIR" ;;
  esac
  LAB_DIR=${LAB_DIR%/}
}

idx_of() { # HOST -> index 0..3
  local h=$1 i
  for i in "${ALL[@]}"; do
    if [ "$h" = "${HOSTS[$i]}" ] || [ "$h" = "${IPS[$i]}" ] || [ "$h" = "$((i + 1))" ] || [ "$h" = "0$((i + 1))" ]; then
      echo "$i"; return 0
    fi
  done
  die "unknown host '$h' (one of: ${HOSTS[*]} ${IPS[*]})"
}
netns_of() { echo "k8smi-${HOSTS[$1]}"; }
veth_of() { echo "k8smi-m0$(($1 + 1))"; } # bridge side (<= 15 chars)
hostdir_of() { echo "$LAB_DIR/hosts/${HOSTS[$1]}"; }

# ---------------------------------------------------------------- nspawn binary
# systemd-nspawn comes from systemd-container pinned to the installed systemd
# version. If that exact version is not downloadable, `deps` extracts the
# candidate systemd-container + libsystemd-shared into the cache instead and we
# run it from there (LD_LIBRARY_PATH beats the RUNPATH); the host's systemd is
# never touched.
NSPAWN=()
find_nspawn() {
  if [ "${K8SMI_NSPAWN_FROM_CACHE:-0}" != 1 ] && command -v systemd-nspawn >/dev/null 2>&1; then
    NSPAWN=(systemd-nspawn)
  elif [ -x "$CACHE_DIR/nspawn/usr/bin/systemd-nspawn" ]; then
    NSPAWN=(env "LD_LIBRARY_PATH=$CACHE_DIR/nspawn/usr/lib/x86_64-linux-gnu/systemd" "$CACHE_DIR/nspawn/usr/bin/systemd-nspawn")
  else
    die "systemd-nspawn not found: run '$0 deps' first"
  fi
}

# Debian's kubectl 1.20: /usr/bin/kubectl when kubernetes-client owns it, else the
# copy `deps` extracted into the cache.
deb_kubectl() {
  if [ "$(dpkg -S /usr/bin/kubectl 2>/dev/null | cut -d: -f1)" = kubernetes-client ]; then
    echo /usr/bin/kubectl
  elif [ -x "$CACHE_DIR/kubernetes-client/usr/bin/kubectl" ]; then
    echo "$CACHE_DIR/kubernetes-client/usr/bin/kubectl"
  else
    die "Debian's kubectl (kubernetes-client) not found: run '$0 deps'"
  fi
}

# ------------------------------------------------------------------------ deps
pkg_installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

apt_install() { # packages... ; refuses anything that would upgrade/remove the machine's systemd
  export DEBIAN_FRONTEND=noninteractive
  local sim
  if ! sim=$(apt-get install -s -y --no-install-recommends "$@" 2>&1 </dev/null); then
    log "apt-get install -s failed; running apt-get update"
    apt-get update -q </dev/null
    sim=$(apt-get install -s -y --no-install-recommends "$@" 2>&1 </dev/null) || { printf '%s\n' "$sim" >&2; die "cannot install: $*"; }
  fi
  if printf '%s\n' "$sim" | grep -E '^(Inst|Remv) (systemd|systemd-sysv|libsystemd0|libsystemd-shared|udev|libudev1|libnss-systemd|libpam-systemd)(:amd64)? ' | grep -E '^Remv|\[' >&2; then
    die "installing '$*' would upgrade or remove the machine's own systemd (lines above); refusing"
  fi
  # Lists can be stale on a machine kept from an earlier session: refresh once and try again.
  apt-get install -y -q --no-install-recommends -o Dpkg::Options::=--force-confold "$@" </dev/null || {
    log "apt-get install failed; running apt-get update and trying again"
    apt-get update -q </dev/null
    apt-get install -y -q --no-install-recommends -o Dpkg::Options::=--force-confold "$@" </dev/null
  }
}

cmd_deps() {
  need_root
  export DEBIAN_FRONTEND=noninteractive
  local want=(debootstrap iproute2 openssh-client openssl etcd-client tmux
    curl python3 ca-certificates util-linux procps coreutils gzip tar debian-archive-keyring gcc libc6-dev)
  local missing=() p
  for p in "${want[@]}"; do pkg_installed "$p" || missing+=("$p"); done
  # Debian's kubectl 1.20 (kubernetes-client). If /usr/bin/kubectl already belongs
  # to another package (e.g. Google's "kubectl"), it is not replaced: the Debian
  # binary is extracted into $CACHE_DIR/kubernetes-client instead (see deb_kubectl).
  local kc_extract=0
  if ! pkg_installed kubernetes-client; then
    if [ -e /usr/bin/kubectl ]; then kc_extract=1; else missing+=(kubernetes-client); fi
  fi
  local sysver="" fallback=0
  if ! command -v systemd-nspawn >/dev/null 2>&1; then
    if pkg_installed systemd; then
      sysver=$(dpkg-query -W -f='${Version}' systemd)
      ls /var/lib/apt/lists/*_Packages >/dev/null 2>&1 || apt-get update -q </dev/null
      if apt-cache madison systemd-container 2>/dev/null | awk -F'|' '{gsub(/ /,"",$2); print $2}' | grep -qxF "$sysver"; then
        missing+=("systemd-container=$sysver")
      else
        fallback=1
      fi
    else
      missing+=(systemd-container) # no systemd on this machine: nothing to keep in step with
    fi
  fi
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing: ${missing[*]}"
    apt_install "${missing[@]}"
  else
    log "all packages already installed"
  fi
  if [ "$fallback" = 1 ] && [ ! -x "$CACHE_DIR/nspawn/usr/bin/systemd-nspawn" ]; then
    log "systemd-container=$sysver is not available from apt; extracting the candidate into $CACHE_DIR/nspawn (the machine's systemd is left as it is)"
    local tmp; tmp=$(mktemp -d)
    (cd "$tmp" && apt-get download -q -o APT::Sandbox::User=root systemd-container libsystemd-shared </dev/null)
    rm -rf "$CACHE_DIR/nspawn"; mkdir -p "$CACHE_DIR/nspawn"
    for p in "$tmp"/*.deb; do dpkg-deb -x "$p" "$CACHE_DIR/nspawn"; done
    rm -rf "$tmp"
  fi
  if [ "$kc_extract" = 1 ] && [ ! -x "$CACHE_DIR/kubernetes-client/usr/bin/kubectl" ]; then
    log "/usr/bin/kubectl belongs to $(dpkg -S /usr/bin/kubectl 2>/dev/null | cut -d: -f1 || echo 'no package'); extracting Debian's kubernetes-client into $CACHE_DIR/kubernetes-client"
    local tmp; tmp=$(mktemp -d)
    (cd "$tmp" && apt-get download -q -o APT::Sandbox::User=root kubernetes-client </dev/null)
    rm -rf "$CACHE_DIR/kubernetes-client"; mkdir -p "$CACHE_DIR/kubernetes-client"
    dpkg-deb -x "$tmp"/kubernetes-client_*.deb "$CACHE_DIR/kubernetes-client"
    rm -rf "$tmp"
  fi
  if [ -n "$sysver" ]; then
    [ "$(dpkg-query -W -f='${Version}' systemd)" = "$sysver" ] || die "systemd version changed (was $sysver)!"
  fi
  find_nspawn
  log "deps ok: $("${NSPAWN[@]}" --version | head -1); systemd $(dpkg-query -W -f='${Version}' systemd 2>/dev/null || echo none); Debian kubectl $(deb_kubectl) $("$(deb_kubectl)" version --client --short 2>/dev/null || true); $(etcdctl version 2>/dev/null | head -1)"
}

# ---------------------------------------------------------------------- rootfs
rootfs_key() {
  printf '%s\n' "$SUITE" "$ROOTFS_RECIPE" "${ROOTFS_PKGS[@]}" | sha256sum | cut -c1-12
}
ROOTFS=""
rootfs_customize() { # $1 = rootfs dir (not booted)
  local r=$1
  rm -f "$r"/etc/ssh/ssh_host_*          # every host gets its own keys in its overlay
  : >"$r/etc/machine-id"                 # every host gets its own id in its overlay
  rm -f "$r/var/lib/dbus/machine-id"
  mkdir -p "$r/etc/ssh/sshd_config.d" "$r/opt/k8s/bin" "$r/root/.ssh"
  chmod 700 "$r/root/.ssh"
  cat >"$r/etc/ssh/sshd_config.d/k8smi-lab.conf" <<'EOF'
# k8smi lab: key-only root login
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UseDNS no
MaxStartups 100:30:200
MaxSessions 100
EOF
  cat >"$r/etc/hosts" <<EOF
127.0.0.1 localhost
::1 localhost ip6-localhost ip6-loopback
${IPS[0]} ${HOSTS[0]}
${IPS[1]} ${HOSTS[1]}
${IPS[2]} ${HOSTS[2]}
EOF
  # nothing on a console; no services that want the network outside the lab
  local u
  for u in console-getty.service getty@tty1.service systemd-networkd-wait-online.service \
    systemd-timesyncd.service apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer fstrim.timer; do
    ln -sf /dev/null "$r/etc/systemd/system/$u"
  done
  # etcd.service is configured per host (overlay); keep the package's unit from
  # starting a default single-node etcd if a host is ever booted without it
  rm -f "$r/etc/systemd/system/multi-user.target.wants/etcd.service"
  # nginx is there for the installer's kube-nginx.service only: Debian's nginx.service
  # (port 80, /etc/nginx/nginx.conf) is masked so that it never runs
  rm -f "$r/etc/systemd/system/multi-user.target.wants/nginx.service"
  ln -sf /dev/null "$r/etc/systemd/system/nginx.service"
  [ -x "$r/usr/sbin/nginx" ] && [ -f "$r/usr/lib/nginx/modules/ngx_stream_module.so" ] ||
    die "rootfs: /usr/sbin/nginx or /usr/lib/nginx/modules/ngx_stream_module.so missing"
  mkdir -p "$r/var/log/journal"
  echo "k8smi-lab rootfs key=$(rootfs_key) built=$(date -u +%FT%TZ)" >"$r/etc/k8smi-lab-release"
}

ensure_rootfs() {
  local key; key=$(rootfs_key)
  ROOTFS="$CACHE_DIR/rootfs-$key"
  if [ -f "$ROOTFS/.k8smi-complete" ]; then
    log "rootfs cache hit: $ROOTFS"
    T_DEBOOTSTRAP="cached"
    return 0
  fi
  command -v debootstrap >/dev/null || die "debootstrap missing: run '$0 deps'"
  mkdir -p "$CACHE_DIR"
  local tmp="$CACHE_DIR/.build-$key.$$"
  rm -rf "$tmp"
  local t0; t0=$(now)
  log "debootstrap $SUITE (minbase + ${#ROOTFS_PKGS[@]} packages) into $tmp (~1 min cold)"
  local incl; incl=$(IFS=,; echo "${ROOTFS_PKGS[*]}")
  if ! debootstrap --variant=minbase --include="$incl" --components=main "$SUITE" "$tmp" "$MIRROR" \
    >"$CACHE_DIR/debootstrap-$key.log" 2>&1 </dev/null; then
    cat "$tmp/debootstrap/debootstrap.log" >>"$CACHE_DIR/debootstrap-$key.log" 2>/dev/null || true
    tail -30 "$CACHE_DIR/debootstrap-$key.log" >&2
    rm -rf --one-file-system "$tmp"
    die "debootstrap failed (log: $CACHE_DIR/debootstrap-$key.log)"
  fi
  rm -rf "$tmp/var/cache/apt/archives/"*.deb
  rootfs_customize "$tmp"
  printf '%s\n' "${ROOTFS_PKGS[@]}" >"$tmp/.k8smi-pkglist"
  touch "$tmp/.k8smi-complete"
  mv "$tmp" "$ROOTFS"
  T_DEBOOTSTRAP=$(elapsed "$t0")
  log "rootfs built in ${T_DEBOOTSTRAP}s: $ROOTFS"
  # drop stale caches (other keys) unless something still uses them
  local d
  for d in "$CACHE_DIR"/rootfs-*; do
    [ "$d" = "$ROOTFS" ] && continue
    [ -d "$d" ] || continue
    if grep -qF "$d" /proc/self/mountinfo; then continue; fi
    if grep -qsF "lowerdir=$d" /proc/mounts; then continue; fi
    log "removing stale rootfs cache $d"
    rm -rf --one-file-system "$d"
  done
}

# ------------------------------------------------------------------------- PKI
# openssl helpers. The CA has its own CN, SKI/AKI on everything, so curl/openssl
# and Go clients all accept the chain.
pki_ca() { # dir
  local d=$1
  [ -f "$d/ca.pem" ] && [ -f "$d/ca-key.pem" ] && return 0
  cat >"$d/ca.cnf" <<'EOF'
[req]
distinguished_name = dn
prompt = no
x509_extensions = v3_ca
[dn]
CN = k8smi-lab-ca
O = k8smi-lab
[v3_ca]
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
basicConstraints = critical, CA:true
keyUsage = critical, keyCertSign, cRLSign
EOF
  openssl req -x509 -new -newkey rsa:2048 -nodes -sha256 -days 3650 \
    -keyout "$d/ca-key.pem" -out "$d/ca.pem" -config "$d/ca.cnf" 2>/dev/null
  chmod 600 "$d/ca-key.pem"
  rm -f "$d/ca.cnf"
}
# pki_cert CA_DIR OUT_BASE SUBJECT EKU [SAN]   (SUBJECT like /CN=x/O=y; EKU serverAuth,clientAuth)
pki_cert() {
  local cad=$1 out=$2 subj=$3 eku=$4 san=${5:-}
  local ext; ext=$(mktemp)
  {
    echo "basicConstraints = critical, CA:false"
    echo "keyUsage = critical, digitalSignature, keyEncipherment"
    echo "extendedKeyUsage = $eku"
    echo "subjectKeyIdentifier = hash"
    echo "authorityKeyIdentifier = keyid"
    [ -n "$san" ] && echo "subjectAltName = $san"
  } >"$ext"
  # random serials (no shared ca.srl: several certs are made in parallel)
  openssl req -new -newkey rsa:2048 -nodes -keyout "$out-key.pem" -out "$out.csr" -subj "$subj" 2>/dev/null &&
    openssl x509 -req -in "$out.csr" -CA "$cad/ca.pem" -CAkey "$cad/ca-key.pem" -set_serial "0x$(openssl rand -hex 16)" \
      -out "$out.pem" -days 825 -sha256 -extfile "$ext" 2>/dev/null
  local rc=$?
  rm -f "$ext" "$out.csr"
  [ $rc = 0 ] && [ -s "$out.pem" ] || die "openssl failed making $out.pem"
  chmod 600 "$out-key.pem"
}

# ------------------------------------------------------------------ networking
v6off() { [ -w "/proc/sys/net/ipv6/conf/$1/disable_ipv6" ] && echo 1 >"/proc/sys/net/ipv6/conf/$1/disable_ipv6" || true; }
net_up() {
  if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
    ip link add "$BRIDGE" type bridge
  fi
  # IPv4 only: no IPv6 link-local chatter (router solicitations, MLD) from anything the lab made
  v6off "$BRIDGE"
  ip addr replace "$BRIDGE_ADDR/$PREFIX_LEN" dev "$BRIDGE"
  ip link set "$BRIDGE" up
  local i
  for i in "${ALL[@]}"; do net_host "$i"; done
}
net_host() { # i: its network namespace, joined to the bridge
  local i=$1 ns veth
  ns=$(netns_of "$i"); veth=$(veth_of "$i")
  [ -e "/run/netns/$ns" ] || ip netns add "$ns"
  if ! ip link show "$veth" >/dev/null 2>&1; then
    ip link add "$veth" type veth peer name eth0 netns "$ns"
  fi
  v6off "$veth"
  ip netns exec "$ns" sh -c 'for f in /proc/sys/net/ipv6/conf/*/disable_ipv6; do echo 1 >"$f"; done' 2>/dev/null || true
  ip link set "$veth" master "$BRIDGE"
  ip link set "$veth" up
  ip -n "$ns" link set lo up
  ip -n "$ns" addr replace "${IPS[$i]}/$PREFIX_LEN" dev eth0
  ip -n "$ns" link set eth0 up
  # no default route: the hosts reach only 172.24.8.0/24
}

# ---------------------------------------------------------------------- hosts
host_prepare() { # i
  local i=$1 name=${HOSTS[$1]} ip=${IPS[$1]}
  local hd; hd=$(hostdir_of "$i")
  local m="$hd/merged"
  mkdir -p "$hd/upper" "$hd/work" "$m"
  if ! mountpoint -q "$m"; then
    mount -t overlay "k8smi-$name" -o "lowerdir=$ROOTFS,upperdir=$hd/upper,workdir=$hd/work" "$m"
  fi
  echo "$name" >"$m/etc/hostname"
  od -An -N16 -tx1 /dev/urandom | tr -d ' \n' >"$m/etc/machine-id"; echo >>"$m/etc/machine-id"
  # ssh host keys, generated here so we know them before boot
  rm -f "$m"/etc/ssh/ssh_host_*
  ssh-keygen -q -t ed25519 -N '' -C "root@$name" -f "$m/etc/ssh/ssh_host_ed25519_key"
  ssh-keygen -q -t ecdsa -b 256 -N '' -C "root@$name" -f "$m/etc/ssh/ssh_host_ecdsa_key"
  ssh-keygen -q -t rsa -b 3072 -N '' -C "root@$name" -f "$m/etc/ssh/ssh_host_rsa_key"
  chmod 600 "$m"/etc/ssh/ssh_host_*_key
  local k
  for k in "$m"/etc/ssh/ssh_host_*_key.pub; do
    printf '%s %s\n' "$ip" "$(cut -d' ' -f1,2 "$k")"
    printf '%s %s\n' "$name" "$(cut -d' ' -f1,2 "$k")"
  done >"$hd/known_hosts"
  install -d -m 700 "$m/root/.ssh"
  install -m 600 "$LAB_DIR/ssh/id_ed25519.pub" "$m/root/.ssh/authorized_keys"
  # the bastion runs OpenSSH only (sshd forwards TCP by default, as ProxyJump needs)
  if [ "$i" = "$BASTION" ]; then
    rm -f "$m/etc/systemd/system/multi-user.target.wants/etcd.service"
    return 0
  fi
  # the added master runs no etcd member: its apiserver uses the three (etcd is external to the installer)
  if [ "$i" = "$EXTRA" ]; then
    rm -f "$m/etc/systemd/system/multi-user.target.wants/etcd.service"
    echo "$EXTRA_IP $EXTRA_NAME" >>"$m/etc/hosts"
    return 0
  fi

  # etcd: certs + unit (paths as in the tutorial's etcd chapter)
  local uid gid
  uid=$(awk -F: '$1=="etcd"{print $3}' "$m/etc/passwd"); gid=$(awk -F: '$1=="etcd"{print $4}' "$m/etc/passwd")
  [ -n "$uid" ] || die "no etcd user in rootfs"
  install -d -m 755 "$m/etc/etcd/cert"
  install -m 644 "$LAB_DIR/ca.pem" "$m/etc/etcd/cert/ca.pem"
  install -m 644 "$LAB_DIR/pki/etcd-$name.pem" "$m/etc/etcd/cert/etcd.pem"
  install -m 600 -o "$uid" -g "$gid" "$LAB_DIR/pki/etcd-$name-key.pem" "$m/etc/etcd/cert/etcd-key.pem"
  install -d -m 755 "$m/data/k8s"
  # etcd creates wal.tmp next to the wal dir: the parent must be its own
  install -d -m 700 -o "$uid" -g "$gid" "$m/data/k8s/etcd" "$m/data/k8s/etcd/data" "$m/data/k8s/etcd/wal"
  local cluster="" j
  for j in 0 1 2; do cluster+="${cluster:+,}${HOSTS[$j]}=https://${IPS[$j]}:2380"; done
  cat >"$m/etc/systemd/system/etcd.service" <<EOF
# k8smi lab: 3-member etcd, TLS for clients and peers, client cert auth on.
[Unit]
Description=etcd (k8smi lab member $name)
After=network.target
Documentation=https://github.com/coreos

[Service]
Type=notify
User=etcd
WorkingDirectory=/data/k8s/etcd/data
ExecStart=/usr/bin/etcd \\
  --name=$name \\
  --data-dir=/data/k8s/etcd/data \\
  --wal-dir=/data/k8s/etcd/wal \\
  --cert-file=/etc/etcd/cert/etcd.pem \\
  --key-file=/etc/etcd/cert/etcd-key.pem \\
  --trusted-ca-file=/etc/etcd/cert/ca.pem \\
  --peer-cert-file=/etc/etcd/cert/etcd.pem \\
  --peer-key-file=/etc/etcd/cert/etcd-key.pem \\
  --peer-trusted-ca-file=/etc/etcd/cert/ca.pem \\
  --peer-client-cert-auth \\
  --client-cert-auth \\
  --listen-peer-urls=https://$ip:2380 \\
  --initial-advertise-peer-urls=https://$ip:2380 \\
  --listen-client-urls=https://$ip:2379,https://127.0.0.1:2379 \\
  --advertise-client-urls=https://$ip:2379 \\
  --initial-cluster-token=k8smi-lab-etcd \\
  --initial-cluster=$cluster \\
  --initial-cluster-state=new \\
  --auto-compaction-mode=periodic \\
  --auto-compaction-retention=1h \\
  --heartbeat-interval=250 \\
  --election-timeout=2500 \\
  --max-request-bytes=33554432 \\
  --quota-backend-bytes=2147483648 \\
  --logger=zap
Restart=on-failure
RestartSec=5
# a leader stopping while its peers stop too waits ~10 s for a leadership transfer
TimeoutStopSec=4
LimitNOFILE=65536

[Install]
WantedBy=multi-user.target
EOF
  mkdir -p "$m/etc/systemd/system/multi-user.target.wants"
  ln -sf /etc/systemd/system/etcd.service "$m/etc/systemd/system/multi-user.target.wants/etcd.service"
  # etcdctl on the host talks to its local member by default (ETCDCTL_API=3 is the default in 3.4)
  cat >"$m/etc/profile.d/k8smi-etcdctl.sh" <<EOF
export ETCDCTL_ENDPOINTS=https://$ip:2379
export ETCDCTL_CACERT=/etc/etcd/cert/ca.pem
export ETCDCTL_CERT=/etc/etcd/cert/etcd.pem
export ETCDCTL_KEY=/etc/etcd/cert/etcd-key.pem
EOF
}

pid_alive() { # pid expected-substring
  local pid=$1 want=$2
  [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$want"
}

host_boot() { # i
  local i=$1 name=${HOSTS[$1]}
  local hd; hd=$(hostdir_of "$i")
  mkdir -p "$LAB_DIR/pids"
  # nspawn's lock file for this directory (left behind if nspawn is ever SIGKILLed)
  stat -c 'inode-%d:%i' "$hd/merged" >"$LAB_DIR/pids/$name.nspawn-lock"
  setsid "${NSPAWN[@]}" --quiet --boot --register=no --keep-unit \
    --directory="$hd/merged" --machine="$name" --hostname="$name" \
    --network-namespace-path="/run/netns/$(netns_of "$i")" \
    --console=passive --link-journal=no --resolv-conf=off --timezone=off \
    --kill-signal=SIGRTMIN+3 \
    >"$hd/console.log" 2>&1 </dev/null 9>&- &
  local pid=$!
  echo "$pid" >"$LAB_DIR/pids/$name.nspawn"
  # the container's PID 1 (its pid namespace dies with it): record it too
  # (nspawn forks an intermediate child first: wait for the one that is PID 1 of a new pid namespace)
  local child="" n c
  for n in $(seq 1 200); do
    for c in $(cat "/proc/$pid/task/$pid/children" 2>/dev/null); do
      if grep -qE '^NSpid:[[:space:]]+[0-9]+[[:space:]]+1$' "/proc/$c/status" 2>/dev/null; then child=$c; break; fi
    done
    [ -n "$child" ] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
  done
  [ -n "$child" ] && echo "$child $(readlink "/proc/$child/ns/pid")" >"$LAB_DIR/pids/$name.init"
  kill -0 "$pid" 2>/dev/null || { cat "$hd/console.log" >&2; die "systemd-nspawn for $name exited"; }
}

SSH_OPTS=()
ssh_opts() {
  SSH_OPTS=(-F /dev/null -i "$LAB_DIR/ssh/id_ed25519" -o IdentitiesOnly=yes
    -o UserKnownHostsFile="$LAB_DIR/ssh/known_hosts" -o GlobalKnownHostsFile=/dev/null
    -o StrictHostKeyChecking=yes -o BatchMode=yes -o ConnectTimeout=5
    -o ServerAliveInterval=5 -o ServerAliveCountMax=3 -o LogLevel=ERROR)
}

wait_ssh() { # i timeout
  local i=$1 deadline=$(($(date +%s) + $2))
  ssh_opts
  while :; do
    if ssh "${SSH_OPTS[@]}" -o ConnectTimeout=2 "root@${IPS[$i]}" true 2>/dev/null; then return 0; fi
    pid_alive "$(cat "$LAB_DIR/pids/${HOSTS[$i]}.nspawn" 2>/dev/null)" systemd-nspawn ||
      { tail -40 "$(hostdir_of "$i")/console.log" >&2; die "${HOSTS[$i]}: container died"; }
    [ "$(date +%s)" -lt "$deadline" ] || die "${HOSTS[$i]}: no ssh after $2 s"
    sleep 0.2
  done
}

etcdctl_ws() { # etcdctl from this machine with the lab client cert
  ETCDCTL_API=3 etcdctl --endpoints="$(etcd_endpoints)" --cacert="$LAB_DIR/ca.pem" \
    --cert="$LAB_DIR/pki/etcd-client.pem" --key="$LAB_DIR/pki/etcd-client-key.pem" "$@"
}
etcd_endpoints() { local e="" i; for i in 0 1 2; do e+="${e:+,}https://${IPS[$i]}:2379"; done; echo "$e"; }

write_lab_json() {
  local tb=() v
  for v in "${TARBALL_VERSIONS[@]}"; do tb+=("$v=$LAB_DIR/tarballs/$v/kubernetes-server-linux-amd64.tar.gz"); done
  for v in "${REAL_SIZE_VERSIONS[@]}"; do tb+=("$v-real-size=$(real_size_tarball "$v")"); done
  local extra=""
  if extra_added; then extra="$EXTRA_NAME $EXTRA_IP"; fi
  python3 - "$LAB_DIR" "${tb[@]}" >"$LAB_DIR/lab.json.tmp" <<PY
import json, sys
lab = sys.argv[1]
names, ips = "${HOSTS[*]}".split(), "${IPS[*]}".split()
hosts = [{"name": names[i], "ip": ips[i]} for i in map(int, "${MASTERS[*]}".split())]
info = {
  "hosts": hosts,
  "ssh": {"user": "root", "port": 22,
          "identityFile": lab + "/ssh/id_ed25519",
          "knownHostsFile": lab + "/ssh/known_hosts"},
  "ca": {"certFile": lab + "/ca.pem", "keyFile": lab + "/ca-key.pem"},
  "etcd": {"endpoints": ["https://%s:2379" % h["ip"] for h in hosts],
           "caFile": lab + "/ca.pem",
           "certFile": lab + "/pki/etcd-client.pem",
           "keyFile": lab + "/pki/etcd-client-key.pem"},
  "tarballs": dict(a.split("=", 1) for a in sys.argv[2:]),
  "admin": {"certFile": lab + "/pki/admin.pem", "keyFile": lab + "/pki/admin-key.pem"},
  "bridge": {"name": "$BRIDGE", "ip": "$BRIDGE_ADDR", "prefixLength": $PREFIX_LEN},
  "bastion": {"name": names[$BASTION], "ip": ips[$BASTION], "user": "root", "port": 22},
  "labDir": lab,
}
extra = "$extra".split()
if extra:
    info["extraHosts"] = [{"name": extra[0], "ip": extra[1]}]
print(json.dumps(info, indent=2))
PY
  mv "$LAB_DIR/lab.json.tmp" "$LAB_DIR/lab.json"
}

# Where the real-size tarball of a release is cached: named for everything that goes into it, so a
# change to a stand-in or to the recipe makes a new one (and the stale ones are removed).
real_size_tarball() {
  local key
  key=$(cat "$HERE/make-tarball.sh" "$HERE/make-binary.py" "$HERE"/standin/* "$(deb_kubectl)" | sha256sum | cut -c1-16)
  echo "$CACHE_DIR/tarballs/$key/$1/kubernetes-server-linux-amd64.tar.gz"
}

cmd_tarballs() {
  need_root; check_lab_dir
  mkdir -p "$LAB_DIR/tarballs"
  local v pids=()
  for v in "${TARBALL_VERSIONS[@]}"; do
    mkdir -p "$LAB_DIR/tarballs/$v"
    bash "$HERE/make-tarball.sh" "$v" "$LAB_DIR/tarballs/$v/kubernetes-server-linux-amd64.tar.gz" &
    pids+=($!)
  done
  local p rc=0
  for p in "${pids[@]}"; do wait "$p" || rc=1; done
  [ $rc = 0 ] || die "make-tarball failed"
  local out keep
  for v in "${REAL_SIZE_VERSIONS[@]}"; do
    out=$(real_size_tarball "$v")
    keep=$(dirname "$(dirname "$out")")
    find "$CACHE_DIR/tarballs" -mindepth 1 -maxdepth 1 ! -path "$keep" -exec rm -rf {} + 2>/dev/null || true
    [ -s "$out" ] && continue
    log "making the real-size tarball of $v (once; cached in $keep)"
    mkdir -p "$(dirname "$out")"
    REAL_SIZE=1 bash "$HERE/make-tarball.sh" "$v" "$out" || die "make-tarball REAL_SIZE=1 $v failed"
  done
}

# The workstation as if it were remote: everything this machine sends to the hosts leaves through the
# bridge at RATE (e.g. 100mbit), shared by all of them; the hosts still reach each other at full speed.
cmd_link() {
  need_root; check_lab_dir
  case "${1:-}" in
    off) tc qdisc del dev "$BRIDGE" root 2>/dev/null || true; log "link: full speed" ;;
    *[0-9]*bit) tc qdisc replace dev "$BRIDGE" root tbf rate "$1" burst 256kb latency 50ms; log "link: this machine -> hosts at $1" ;;
    *) die "usage: lab.sh link RATE|off (RATE like 100mbit)" ;;
  esac
}

# An operator behind a bastion: routes from this machine to the masters become unreachable (more
# specific than the bridge's /24), so only k8sbastion is reached; the hosts still reach each other.
isolate() {
  local i extra=()
  if extra_added; then extra=("$EXTRA"); fi
  for i in "${MASTERS[@]}" "${extra[@]}"; do
    case "$1" in
      on) ip route replace unreachable "${IPS[$i]}/32" ;;
      off) ip route del unreachable "${IPS[$i]}/32" 2>/dev/null || true ;;
    esac
  done
}
cmd_isolate() {
  need_root; check_lab_dir
  case "${1:-}" in
    on) isolate on; log "isolated: this machine reaches the masters only through ${HOSTS[$BASTION]} (${IPS[$BASTION]})" ;;
    off) isolate off; log "not isolated: this machine reaches the masters directly" ;;
    *) die "usage: lab.sh isolate on|off" ;;
  esac
}

# known_hosts and the ssh config of every host in ALL
write_ssh_files() {
  local i
  cat "$LAB_DIR"/hosts/*/known_hosts >"$LAB_DIR/ssh/known_hosts"
  {
    for i in "${ALL[@]}"; do
      printf 'Host %s %s\n  HostName %s\n' "${HOSTS[$i]}" "${IPS[$i]}" "${IPS[$i]}"
    done
    printf 'Host *\n  User root\n  IdentityFile %s\n  IdentitiesOnly yes\n  UserKnownHostsFile %s\n  GlobalKnownHostsFile /dev/null\n  StrictHostKeyChecking yes\n  BatchMode yes\n  LogLevel ERROR\n' \
      "$LAB_DIR/ssh/id_ed25519" "$LAB_DIR/ssh/known_hosts"
  } >"$LAB_DIR/ssh/config"
}

lab_is_up() {
  [ -f "$LAB_DIR/lab.json" ] || return 1
  local i
  for i in "${ALL[@]}"; do
    pid_alive "$(cat "$LAB_DIR/pids/${HOSTS[$i]}.nspawn" 2>/dev/null)" systemd-nspawn || return 1
  done
}

cmd_up() {
  need_root; check_lab_dir
  exec 9>>"$(lockfile)"; flock 9
  find_nspawn
  if lab_is_up; then
    log "lab is already up ($LAB_DIR/lab.json); nothing to do (run 'down' first to recreate)"
    return 0
  fi
  if [ -e "$LAB_DIR" ] || ip link show "$BRIDGE" >/dev/null 2>&1 || ls /run/netns 2>/dev/null | grep -q '^k8smi-'; then
    log "a partial lab exists: tearing it down first"
    down_locked
  fi
  # an added master (add-host) is never made by up
  ALL=("${MASTERS[@]}" "$BASTION")
  local T0; T0=$(now)
  T_DEBOOTSTRAP="-"
  ensure_rootfs

  local t; t=$(now)
  mkdir -p "$LAB_DIR"/{pki,ssh,pids,hosts,tarballs}
  touch "$LAB_DIR/$MARKER"
  chmod 700 "$LAB_DIR/pki" "$LAB_DIR/ssh"
  pki_ca "$LAB_DIR"
  local i
  for i in 0 1 2; do
    pki_cert "$LAB_DIR" "$LAB_DIR/pki/etcd-${HOSTS[$i]}" "/CN=etcd/O=k8s/OU=System" "serverAuth, clientAuth" \
      "DNS:${HOSTS[$i]}, DNS:localhost, IP:127.0.0.1, IP:${IPS[0]}, IP:${IPS[1]}, IP:${IPS[2]}" &
  done
  pki_cert "$LAB_DIR" "$LAB_DIR/pki/etcd-client" "/CN=k8smi-lab-etcdctl/O=k8smi-lab" "clientAuth" &
  pki_cert "$LAB_DIR" "$LAB_DIR/pki/admin" "/CN=admin/O=system:masters" "clientAuth" &
  ssh-keygen -q -t ed25519 -N '' -C k8smi-lab -f "$LAB_DIR/ssh/id_ed25519"
  local j
  for j in $(jobs -p); do wait "$j" || die "making the lab certificates failed"; done
  cmd_tarballs 9>&- &
  local tarpid=$!
  net_up
  for i in "${ALL[@]}"; do host_prepare "$i"; done
  write_ssh_files
  local T_PREP; T_PREP=$(elapsed "$t")

  t=$(now)
  for i in "${ALL[@]}"; do host_boot "$i"; done
  for i in "${ALL[@]}"; do wait_ssh "$i" 60; done
  local T_BOOT; T_BOOT=$(elapsed "$t")
  log "${#ALL[@]} hosts answer ssh after ${T_BOOT}s"

  t=$(now)
  local deadline=$(($(date +%s) + 120)) out
  while :; do
    if out=$(etcdctl_ws endpoint health 2>&1) && [ "$(grep -c 'is healthy' <<<"$out")" = 3 ]; then break; fi
    if [ "$(date +%s)" -ge "$deadline" ]; then
      printf '%s\n' "$out" >&2
      for i in 0 1 2; do (cmd_ssh "${HOSTS[$i]}" journalctl -u etcd --no-pager -n 20 >&2) || true; done
      die "etcd cluster not healthy after 120 s"
    fi
    sleep 0.3
  done
  local T_ETCD; T_ETCD=$(elapsed "$t")
  log "etcd: 3 healthy members after ${T_ETCD}s"

  wait "$tarpid" || die "building tarballs failed"
  write_lab_json
  {
    echo "debootstrap=${T_DEBOOTSTRAP}"
    echo "prepare=${T_PREP}"
    echo "boot_to_ssh=${T_BOOT}"
    echo "etcd_ready=${T_ETCD}"
    echo "up_total=$(elapsed "$T0")"
  } >"$LAB_DIR/timings"
  log "lab is up in $(elapsed "$T0")s (debootstrap ${T_DEBOOTSTRAP}, boot->ssh ${T_BOOT}s, etcd ${T_ETCD}s): $LAB_DIR/lab.json"
}

lockfile() { mkdir -p "$CACHE_DIR"; echo "$CACHE_DIR/lab.lock"; }

# ------------------------------------------------------- add-host / remove-host
# Opt-in: the running lab grows by k8smaster04 (no etcd member) and shrinks back. Only that host.
extra_arg() {
  case "${1:-}" in
    4 | "$EXTRA_NAME" | "$EXTRA_IP") ;;
    *) die "usage: lab.sh $2 4 (the lab's only optional host: $EXTRA_NAME, $EXTRA_IP)" ;;
  esac
}

cmd_add_host() {
  need_root; check_lab_dir
  extra_arg "${1:-}" add-host
  exec 9>>"$(lockfile)"; flock 9
  find_nspawn
  lab_is_up || die "the lab is not up: run 'lab.sh up' first"
  with_extra
  if pid_alive "$(cat "$LAB_DIR/pids/$EXTRA_NAME.nspawn" 2>/dev/null)" systemd-nspawn; then
    log "$EXTRA_NAME is already up; nothing to do"
    return 0
  fi
  local t; t=$(now)
  ensure_rootfs
  # recorded first: down (and remove-host) clean it up even if it never boots
  echo "$EXTRA_NAME $EXTRA_IP" >"$LAB_DIR/extra-host"
  net_host "$EXTRA"
  # isolated (lab.sh isolate on): it is reached through the bastion too
  if ip route show type unreachable 2>/dev/null | awk -v ip="${IPS[0]}" '$2 == ip {f=1} END {exit !f}'; then
    ip route replace unreachable "$EXTRA_IP/32"
  fi
  host_prepare "$EXTRA"
  write_ssh_files
  host_boot "$EXTRA"
  wait_ssh "$EXTRA" 60
  write_lab_json
  log "$EXTRA_NAME ($EXTRA_IP) is up in $(elapsed "$t")s; lab.json lists it under extraHosts"
}

cmd_remove_host() {
  need_root; check_lab_dir
  extra_arg "${1:-}" remove-host
  exec 9>>"$(lockfile)"; flock 9
  with_extra
  local name=$EXTRA_NAME pid n rec recns f
  local hd; hd=$(hostdir_of "$EXTRA")
  # its nspawn (an orderly shutdown), then its PID 1 if it is still the one recorded: by id, nothing else
  pid=$(cat "$LAB_DIR/pids/$name.nspawn" 2>/dev/null || true)
  if pid_alive "$pid" systemd-nspawn; then
    kill -TERM "$pid" 2>/dev/null || true
    for n in $(seq 1 80); do pid_alive "$pid" systemd-nspawn || break; sleep 0.1; done
  fi
  if [ -f "$LAB_DIR/pids/$name.init" ] && read -r rec recns <"$LAB_DIR/pids/$name.init" &&
    [ -n "$rec" ] && [ "$(readlink "/proc/$rec/ns/pid" 2>/dev/null)" = "$recns" ]; then
    kill -KILL "$rec" 2>/dev/null || true
  fi
  if pid_alive "$pid" systemd-nspawn; then kill -KILL "$pid" 2>/dev/null || true; fi
  for n in $(seq 1 50); do pid_alive "$pid" systemd-nspawn || break; sleep 0.1; done
  if mountpoint -q "$hd/merged" 2>/dev/null; then
    umount "$hd/merged" 2>/dev/null || umount -l "$hd/merged" || die "cannot unmount $hd/merged"
  fi
  ip route del unreachable "$EXTRA_IP/32" 2>/dev/null || true
  ip link show "$(veth_of "$EXTRA")" >/dev/null 2>&1 && ip link del "$(veth_of "$EXTRA")" 2>/dev/null || true
  [ -e "/run/netns/$(netns_of "$EXTRA")" ] && ip netns del "$(netns_of "$EXTRA")" 2>/dev/null || true
  f="$LAB_DIR/pids/$name.nspawn-lock"
  [ -f "$f" ] && rm -f "/run/systemd/nspawn/locks/$(cat "$f")"
  rmdir "/run/systemd/nspawn/propagate/$name" 2>/dev/null || true
  [ -d "$hd" ] && rm -rf --one-file-system "$hd"
  rm -f "$LAB_DIR/pids/$name".* "$LAB_DIR/extra-host"
  ALL=("${MASTERS[@]}" "$BASTION")
  if [ -d "$LAB_DIR/ssh" ]; then write_ssh_files; fi
  if [ -f "$LAB_DIR/lab.json" ]; then write_lab_json; fi
  log "$name removed; the lab has its three masters again"
}

# ------------------------------------------------------------------------ down
# The lab's processes, identified exactly (never by a broad name):
#  - systemd-nspawn processes whose command line names one of our netns;
#  - PID 1 of each container: a process that is PID 1 of a child pid namespace and
#    whose root mount is our overlay "k8smi-<host>" (killing it ends its whole pid
#    namespace). This also finds containers orphaned by a killed nspawn.
lab_nspawn_pids() {
  local f
  for f in $(grep -lasF -- "--network-namespace-path=/run/netns/k8smi-k8s" /proc/[0-9]*/cmdline 2>/dev/null); do
    if { tr '\0' ' ' <"$f"; } 2>/dev/null | grep -qE -- "systemd-nspawn .*--network-namespace-path=/run/netns/k8smi-(k8smaster0[1234]|k8sbastion) "; then
      f=${f#/proc/}; echo "${f%/cmdline}"
    fi
  done
}
lab_container_inits() {
  local f d
  for f in $(grep -lsE '^NSpid:[[:space:]]+[0-9]+([[:space:]]+[0-9]+)*[[:space:]]+1$' /proc/[0-9]*/status 2>/dev/null); do
    d=${f%/status}
    awk '$5=="/" {for (i=7;i<=NF;i++) if ($i=="-") {print $(i+2); exit}}' "$d/mountinfo" 2>/dev/null |
      grep -qE '^k8smi-(k8smaster0[1234]|k8sbastion)$' && echo "${d#/proc/}"
  done
}

down_locked() {
  local i pid n
  # 1. SIGTERM to nspawn = orderly shutdown of the container (--kill-signal=SIGRTMIN+3)
  local nspawns; nspawns=$(lab_nspawn_pids | tr '\n' ' ')
  for pid in $nspawns; do kill -TERM "$pid" 2>/dev/null || true; done
  if [ -n "${nspawns// /}" ]; then
    for n in $(seq 1 80); do # up to ~8 s
      local alive=0
      for pid in $nspawns; do kill -0 "$pid" 2>/dev/null && alive=1; done
      [ $alive = 0 ] && break
      sleep 0.1
    done
  fi
  # 2. whatever is left: the containers' PID 1 (ends each pid namespace), then nspawn
  local inits; inits=$(lab_container_inits | tr '\n' ' ')
  local f rec recns
  for f in "$LAB_DIR"/pids/*.init; do # recorded "PID pidns": only if that process still is it
    [ -f "$f" ] || continue
    read -r rec recns <"$f" || true
    [ -n "$rec" ] && [ -n "$recns" ] && [ "$(readlink "/proc/$rec/ns/pid" 2>/dev/null)" = "$recns" ] && inits+=" $rec"
  done
  inits=$(printf '%s\n' $inits | sort -u | tr '\n' ' ')
  [ -n "${inits// /}" ] && log "killing container init(s) still running: $inits"
  for pid in $inits; do kill -KILL "$pid" 2>/dev/null || true; done
  nspawns=$(lab_nspawn_pids | tr '\n' ' ')
  [ -n "${nspawns// /}" ] && log "killing systemd-nspawn still running: $nspawns"
  for pid in $nspawns; do kill -KILL "$pid" 2>/dev/null || true; done
  for n in $(seq 1 50); do
    [ -z "$(lab_container_inits)$(lab_nspawn_pids)" ] && break
    sleep 0.1
  done
  # 2. overlays
  for i in "${ALL[@]}"; do
    local m; m="$(hostdir_of "$i")/merged"
    if mountpoint -q "$m" 2>/dev/null; then
      umount "$m" 2>/dev/null || umount -l "$m" || log "cannot unmount $m"
    fi
  done
  # our overlays wherever they are (e.g. a lab made with another LAB_DIR)
  local mp
  while read -r mp; do
    [ -n "$mp" ] && { umount "$mp" 2>/dev/null || umount -l "$mp" 2>/dev/null || log "cannot unmount $mp"; }
  done < <(awk '{for (i=7;i<=NF;i++) if ($i=="-") { if ($(i+1)=="overlay" && $(i+2) ~ /^k8smi-(k8smaster0[1234]|k8sbastion)$/) print $5; break }}' /proc/self/mountinfo)
  # anything else mounted under LAB_DIR (should be nothing)
  local mnt
  while read -r mnt; do
    [ -n "$mnt" ] && { umount "$mnt" 2>/dev/null || umount -l "$mnt" 2>/dev/null || true; }
  done < <(awk -v d="$LAB_DIR/" 'index($5, d)==1 {print $5}' /proc/self/mountinfo | sort -r)
  # 3. network
  isolate off
  for i in "${ALL[@]}"; do
    local veth ns
    veth=$(veth_of "$i"); ns=$(netns_of "$i")
    ip link show "$veth" >/dev/null 2>&1 && ip link del "$veth" 2>/dev/null || true
    [ -e "/run/netns/$ns" ] && ip netns del "$ns" 2>/dev/null || true
  done
  ip link show "$BRIDGE" >/dev/null 2>&1 && ip link del "$BRIDGE" || true
  # nspawn's own runtime dirs: our stale lock files, then the dirs only when empty
  for f in "$LAB_DIR"/pids/*.nspawn-lock; do
    [ -f "$f" ] && rm -f "/run/systemd/nspawn/locks/$(cat "$f")"
  done
  rmdir /run/systemd/nspawn/propagate/k8smaster0[1234] /run/systemd/nspawn/propagate/k8sbastion 2>/dev/null || true # left by a SIGKILLed nspawn
  rmdir /run/systemd/nspawn/locks /run/systemd/nspawn/propagate /run/systemd/nspawn 2>/dev/null || true
  # 4. the lab dir
  if [ -d "$LAB_DIR" ]; then
    if [ -e "$LAB_DIR/$MARKER" ] || [ -z "$(ls -A "$LAB_DIR")" ]; then
      if awk -v d="$LAB_DIR/" 'index($5, d)==1 {f=1} END{exit !f}' /proc/self/mountinfo; then
        die "something is still mounted under $LAB_DIR; not removing it"
      fi
      rm -rf --one-file-system "$LAB_DIR"
    else
      log "WARNING: $LAB_DIR has no $MARKER marker; not removing it"
    fi
  fi
}

cmd_down() {
  need_root; check_lab_dir
  exec 9>>"$(lockfile)"; flock 9
  down_locked
  log "lab is down"
}

# ---------------------------------------------------------------------- others
cmd_ssh() {
  [ $# -ge 1 ] || die "usage: ssh HOST [CMD...]"
  check_lab_dir
  local i; i=$(idx_of "$1"); shift
  [ -f "$LAB_DIR/ssh/known_hosts" ] || die "lab is not up"
  ssh_opts
  exec ssh "${SSH_OPTS[@]}" "root@${IPS[$i]}" "$@"
}

cmd_scp() { # scp with the lab's ssh config: lab.sh scp FILE k8smaster01:/path
  check_lab_dir
  [ -f "$LAB_DIR/ssh/config" ] || die "lab is not up"
  exec scp -F "$LAB_DIR/ssh/config" -q "$@"
}

cmd_cut() {
  need_root
  local i; i=$(idx_of "${1:?usage: cut HOST}")
  ip link set "$(veth_of "$i")" down
  log "${HOSTS[$i]} cut (link $(veth_of "$i") down)"
}
cmd_heal() {
  need_root
  local i; i=$(idx_of "${1:?usage: heal HOST}")
  ip link set "$(veth_of "$i")" up
  log "${HOSTS[$i]} healed (link $(veth_of "$i") up)"
}

# A real reboot of one master: `systemctl reboot` inside it makes systemd-nspawn exit (133, "reboot
# requested"); the container is then booted again on the same disk and we wait for its ssh.
cmd_reboot() {
  need_root
  local i; i=$(idx_of "${1:?usage: reboot HOST}")
  local name=${HOSTS[$i]} pid n
  pid=$(cat "$LAB_DIR/pids/$name.nspawn")
  ssh_opts
  ssh "${SSH_OPTS[@]}" "root@${IPS[$i]}" 'systemctl reboot' >/dev/null 2>&1 || true
  for n in $(seq 1 300); do pid_alive "$pid" systemd-nspawn || break; sleep 0.1; done
  pid_alive "$pid" systemd-nspawn && die "$name: did not go down within 30 s of systemctl reboot"
  find_nspawn
  host_boot "$i"
  wait_ssh "$i" 60
  log "$name rebooted"
}

cmd_logs() {
  check_lab_dir
  local i; i=$(idx_of "${1:?usage: logs HOST [journalctl args]}"); shift
  local j; j="$(hostdir_of "$i")/merged/var/log/journal"
  [ -d "$j" ] || die "no journal at $j (is the lab up?)"
  exec journalctl --directory="$j" --no-pager "$@"
}

cmd_status() {
  check_lab_dir
  local up=0 i pid link
  lab_is_up && up=1
  echo "lab dir:  $LAB_DIR $([ -d "$LAB_DIR" ] && echo '(exists)' || echo '(absent)')"
  echo "lab up:   $([ $up = 1 ] && echo yes || echo no)"
  echo "bridge:   $(ip -br addr show "$BRIDGE" 2>/dev/null || echo absent)"
  ssh_opts
  for i in "${ALL[@]}"; do
    pid=$(cat "$LAB_DIR/pids/${HOSTS[$i]}.nspawn" 2>/dev/null || true)
    link=$(ip -br link show "$(veth_of "$i")" 2>/dev/null | awk '{print $2}')
    local st="nspawn:down"
    pid_alive "$pid" systemd-nspawn && st="nspawn:pid $pid"
    local extra=""
    if [ -n "$link" ] && [ "$link" != DOWN ] && [ -f "$LAB_DIR/ssh/known_hosts" ] && pid_alive "$pid" systemd-nspawn; then
      extra=$(timeout 8 ssh "${SSH_OPTS[@]}" -o ConnectTimeout=2 "root@${IPS[$i]}" \
        'printf "ssh:ok system:%s etcd:%s" "$(systemctl is-system-running 2>/dev/null)" "$(systemctl is-active etcd)"; for u in kube-apiserver kube-controller-manager kube-scheduler kube-nginx; do printf " %s:%s" $u "$(systemctl is-active $u 2>/dev/null)"; done' 2>/dev/null || echo "ssh:FAIL")
    fi
    printf '%-12s %-14s netns:%-18s link:%-5s %s %s\n' "${HOSTS[$i]}" "${IPS[$i]}" \
      "$([ -e "/run/netns/$(netns_of "$i")" ] && netns_of "$i" || echo absent)" "${link:-absent}" "$st" "$extra"
  done
  if [ $up = 1 ]; then
    etcdctl_ws endpoint health 2>&1 | sed 's/^/etcd:     /' || true
  fi
  [ $up = 1 ]
}

usage() { sed -n '2,/^set -euo/p' "$0" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//'; }

main() {
  local cmd=${1:-}
  [ $# -gt 0 ] && shift
  # a master added with add-host is a host of the lab (down, status, ssh, cut, heal, logs) until removed
  if extra_added; then with_extra; fi
  case "$cmd" in
    deps) cmd_deps "$@" ;;
    up) cmd_up "$@" ;;
    down) cmd_down "$@" ;;
    status) cmd_status "$@" ;;
    ssh) cmd_ssh "$@" ;;
    scp) cmd_scp "$@" ;;
    cut) cmd_cut "$@" ;;
    reboot) cmd_reboot "$@" ;;
    heal) cmd_heal "$@" ;;
    logs) cmd_logs "$@" ;;
    tarballs) cmd_tarballs "$@"; if [ -f "$LAB_DIR/lab.json" ]; then write_lab_json; fi ;;
    link) cmd_link "$@" ;;
    isolate) cmd_isolate "$@" ;;
    kubectl-path) deb_kubectl ;;
    add-host) cmd_add_host "$@" ;;
    remove-host) cmd_remove_host "$@" ;;
    rootfs) need_root; exec 9>>"$(lockfile)"; flock 9; ensure_rootfs ;;
    -h | --help | help | "") usage ;;
    *) usage >&2; die "unknown command: $cmd" ;;
  esac
}
# `source lab.sh` (e.g. from selftest.sh) only defines the functions
if [ "${BASH_SOURCE[0]}" = "$0" ]; then main "$@"; fi
