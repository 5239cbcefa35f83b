#!/usr/bin/env bash
# test/lab/selftest.sh — proves the lab works. Run as root (after `lab.sh deps`).
#
#   selftest.sh [--cold] [--keep]
#     --cold   delete the cached rootfs first (measures a cold debootstrap, ~1 min)
#     --keep   leave the lab up at the end (default: `lab.sh down` and check nothing is left)
#
# Phases: down (clean start) -> up -> strict ssh -> etcd health over TLS from this
# machine -> stand-in v1.14.2 with the tutorial's v1.14 unit starts, its controller-manager
# and scheduler lead with Endpoints locks -> the same flags under the v1.28.7 build fail
# with the real error messages, in the real order (apiserver, controller-manager,
# scheduler and its --config) -> a correct 1.28 unit (certs by openssl, signed by the lab
# CA) restarts under systemd, /readyz via curl with an admin client cert, /registry/ keys
# in etcd, encrypted secrets written/read/deleted, the real kubectl 1.20 (create
# clusterrolebinding twice: AlreadyExists; auth can-i --as kubernetes get nodes/proxy no/yes
# around the binding), authn/authz refusals -> three 1.28 apiservers behind kube-nginx
# (Debian's nginx + stream module) on every host -> two controller-managers and three
# schedulers race for their Leases through kube-nginx, one leads, failover -> cut/heal ->
# down and nothing left.
set -uo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
LAB="$HERE/lab.sh"
# shellcheck source=lab.sh
source "$LAB"
set +e # lab.sh sets -e; the selftest counts failures instead
check_lab_dir

COLD=0 KEEP=0
for a in "$@"; do
  case "$a" in
    --cold) COLD=1 ;;
    --keep) KEEP=1 ;;
    *) echo "usage: $0 [--cold] [--keep]" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" = 0 ] || { echo "selftest: run as root" >&2; exit 1; }

PASS=0 FAIL=0
FAILED=()
TIMINGS=()
ok() { PASS=$((PASS + 1)); printf '  \033[32mok\033[0m   %s\n' "$*"; }
bad() { FAIL=$((FAIL + 1)); FAILED+=("$*"); printf '  \033[31mFAIL\033[0m %s\n' "$*"; }
check() { # check "description" cmd...
  local d=$1; shift
  if "$@" >/tmp/k8smi-selftest.out 2>&1; then ok "$d"; else bad "$d"; sed 's/^/       | /' /tmp/k8smi-selftest.out | tail -15; fi
}
phase() { PHASE_NAME=$1; PHASE_T0=$(now); printf '\n== %s\n' "$1"; }
phase_end() { local t; t=$(elapsed "$PHASE_T0"); TIMINGS+=("$(printf '%-44s %6ss' "$PHASE_NAME" "$t")"); }
contains() { grep -qF -- "$2" <<<"$1"; }
sh_() { (set +o pipefail; eval "$1"); }
alive() { [ -d "/proc/$1" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null; } # zombies are dead # run shell code in a subshell that sees this script's functions and arrays

lssh() { bash "$LAB" ssh "$@"; }
KUBECTL=$(deb_kubectl)
export ETCDCTL_API=3
ADMIN_CERT="$LAB_DIR/pki/admin.pem" ADMIN_KEY="$LAB_DIR/pki/admin-key.pem"
curl_api() { # HOSTIP PATH [curl args] -> prints "HTTPCODE BODY"
  local ip=$1 path=$2; shift 2
  curl -sS --max-time 5 --cacert "$LAB_DIR/ca.pem" "$@" -w '\n%{http_code}' "https://$ip:6443$path"
}

# ------------------------------------------------------------------------------
phase "down (clean start)"
bash "$LAB" down >/dev/null 2>&1
if [ "$COLD" = 1 ]; then
  rm -rf --one-file-system "$CACHE_DIR"/rootfs-*
  echo "  rootfs cache removed (--cold)"
fi
phase_end

phase "up"
if bash "$LAB" up; then ok "lab.sh up"; else bad "lab.sh up"; echo "cannot continue"; exit 1; fi
phase_end
UP_TIMINGS=$(cat "$LAB_DIR/timings")
check "lab.sh up again says it is up (exit 0)" sh_ "bash '$LAB' up 2>&1 | grep -q 'already up'"
check "lab.json parses and has 3 hosts, 2 tarballs" python3 -c "
import json,os; j=json.load(open('$LAB_DIR/lab.json'))
assert [h['ip'] for h in j['hosts']]==['172.24.8.71','172.24.8.72','172.24.8.73']
assert j['ssh']['user']=='root' and j['ssh']['port']==22
for f in (j['ssh']['identityFile'], j['ssh']['knownHostsFile'], j['ca']['certFile'], j['ca']['keyFile'], *j['tarballs'].values()): assert os.path.exists(f), f
assert sorted(j['tarballs'])==['v1.14.2','v1.28.6','v1.28.7']
assert len(j['etcd']['endpoints'])==3"
check "lab CA: CN k8smi-lab-ca, CA:TRUE, keyCertSign, SKI" sh_ "
openssl x509 -in '$LAB_DIR/ca.pem' -noout -subject -text | grep -q 'CN = k8smi-lab-ca' &&
openssl x509 -in '$LAB_DIR/ca.pem' -noout -text | grep -q 'CA:TRUE' &&
openssl x509 -in '$LAB_DIR/ca.pem' -noout -text | grep -q 'Certificate Sign, CRL Sign' &&
openssl x509 -in '$LAB_DIR/ca.pem' -noout -text | grep -q 'Subject Key Identifier'"

# ------------------------------------------------------------------------------
phase "ssh with strict host key checking"
for i in 0 1 2; do
  check "ssh root@${IPS[$i]} (StrictHostKeyChecking=yes) -> ${HOSTS[$i]}" sh_ "
    [ \"\$(ssh -F /dev/null -i '$LAB_DIR/ssh/id_ed25519' -o IdentitiesOnly=yes -o BatchMode=yes \
      -o StrictHostKeyChecking=yes -o UserKnownHostsFile='$LAB_DIR/ssh/known_hosts' -o GlobalKnownHostsFile=/dev/null \
      root@${IPS[$i]} hostname)\" = '${HOSTS[$i]}' ]"
done
check "ssh with an empty known_hosts is refused (strict checking really applies)" sh_ "
  ! ssh -F /dev/null -i '$LAB_DIR/ssh/id_ed25519' -o BatchMode=yes -o StrictHostKeyChecking=yes \
    -o UserKnownHostsFile=/dev/null -o GlobalKnownHostsFile=/dev/null root@${IPS[0]} true"
check "the three hosts have different host keys" sh_ "[ \$(awk '{print \$3}' '$LAB_DIR/ssh/known_hosts' | sort -u | wc -l) = 9 ]"
check "hosts have no default route (no way out)" sh_ "for h in 1 2 3; do [ -z \"\$(bash '$LAB' ssh \$h ip route show default)\" ] || exit 1; done"
check "/opt/k8s/bin exists, etcdctl is /usr/bin/etcdctl on the hosts" sh_ "bash '$LAB' ssh 1 'test -d /opt/k8s/bin && command -v etcdctl' | grep -qx /usr/bin/etcdctl"
phase_end

# ------------------------------------------------------------------------------
phase "etcd: 3 members over TLS from this machine"
check "etcdctl endpoint health (3 members, client cert signed by the lab CA)" sh_ "
  out=\$(etcdctl --endpoints=$(etcd_endpoints) --cacert='$LAB_DIR/ca.pem' --cert='$LAB_DIR/pki/etcd-client.pem' \
    --key='$LAB_DIR/pki/etcd-client-key.pem' endpoint health 2>&1); echo \"\$out\"; [ \$(grep -c 'is healthy' <<<\"\$out\") = 3 ]"
check "etcdctl member list shows 3 started members" sh_ "[ \$(etcdctl_ws member list | grep -c started) = 3 ]"
check "etcd refuses a client without certificate (client-cert-auth)" sh_ "
  ! etcdctl --endpoints=https://${IPS[0]}:2379 --cacert='$LAB_DIR/ca.pem' --dial-timeout=2s --command-timeout=3s endpoint health"
tmpca=$(mktemp -d)
(cd "$tmpca" && openssl req -x509 -newkey rsa:2048 -nodes -keyout ca-key.pem -out ca.pem -subj /CN=other-ca -days 2 2>/dev/null &&
  pki_cert "$tmpca" "$tmpca/c" /CN=intruder clientAuth)
check "etcd refuses a client cert from another CA" sh_ "
  ! etcdctl --endpoints=https://${IPS[0]}:2379 --cacert='$LAB_DIR/ca.pem' --cert='$tmpca/c.pem' --key='$tmpca/c-key.pem' \
    --dial-timeout=2s --command-timeout=3s endpoint health"
pki_cert "$LAB_DIR" "$tmpca/any" "/CN=some-client/O=whatever" "clientAuth"
check "etcd accepts ANY client cert signed by the lab CA (as the apiserver's will be)" \
  etcdctl --endpoints="$(etcd_endpoints)" --cacert="$LAB_DIR/ca.pem" --cert="$tmpca/any.pem" --key="$tmpca/any-key.pem" put /k8smi-selftest x
etcdctl_ws del /k8smi-selftest >/dev/null 2>&1
phase_end

# ------------------------------------------------------------------------------
# What the installer would put on a host, made here by hand with openssl.
phase "tutorial files on the hosts (certs by openssl, lab CA)"
W=$(mktemp -d)
pki_cert "$LAB_DIR" "$W/kubernetes" "/C=CN/ST=Shanghai/L=Shanghai/O=k8s/OU=System/CN=kubernetes" "serverAuth, clientAuth" \
  "IP:127.0.0.1, IP:172.24.8.71, IP:172.24.8.72, IP:172.24.8.73, IP:10.254.0.1, DNS:kubernetes, DNS:kubernetes.default, DNS:kubernetes.default.svc, DNS:kubernetes.default.svc.cluster, DNS:kubernetes.default.svc.cluster.local"
pki_cert "$LAB_DIR" "$W/proxy-client" "/C=CN/ST=Shanghai/L=Shanghai/O=k8s/OU=System/CN=aggregator" "clientAuth"
pki_cert "$LAB_DIR" "$W/nobody" "/CN=nobody/O=k8s" "clientAuth"
openssl genrsa -out "$W/sa.key" 2048 2>/dev/null
openssl rsa -in "$W/sa.key" -pubout -out "$W/sa.pub" 2>/dev/null
cp "$LAB_DIR/ca.pem" "$W/ca.pem"
ENCRYPTION_KEY=$(head -c 32 /dev/urandom | base64)
cat >"$W/encryption-config-legacy.yaml" <<EOF
kind: EncryptionConfig
apiVersion: v1
resources:
  - resources:
      - secrets
    providers:
      - aescbc:
          keys:
            - name: key1
              secret: ${ENCRYPTION_KEY}
      - identity: {}
EOF
sed -e 's/^kind: EncryptionConfig$/kind: EncryptionConfiguration/' -e 's#^apiVersion: v1$#apiVersion: apiserver.config.k8s.io/v1#' \
  "$W/encryption-config-legacy.yaml" >"$W/encryption-config.yaml"
# the tutorial's audit policy (v1beta1), shortened to a few of its rules
cat >"$W/audit-policy-v1beta1.yaml" <<'EOF'
apiVersion: audit.k8s.io/v1beta1
kind: Policy
rules:
  # The following requests were manually identified as high-volume and low-risk, so drop them.
  - level: None
    resources:
      - group: ""
        resources:
          - endpoints
          - services
          - services/status
    users:
      - 'system:kube-proxy'
    verbs:
      - watch
  # Don't log these read-only URLs.
  - level: None
    nonResourceURLs:
      - '/healthz*'
      - /version
      - '/swagger*'
  - level: Metadata
    omitStages:
      - RequestReceived
    resources:
      - group: ""
        resources:
          - secrets
          - configmaps
  - level: RequestResponse
    omitStages:
      - RequestReceived
    resources:
      - group: ""
      - group: rbac.authorization.k8s.io
  # Default level for all other requests.
  - level: Metadata
    omitStages:
      - RequestReceived
EOF
sed 's#audit.k8s.io/v1beta1#audit.k8s.io/v1#' "$W/audit-policy-v1beta1.yaml" >"$W/audit-policy.yaml"
ETCD_ENDPOINTS=$(etcd_endpoints)
# the tutorial's unit template, verbatim apart from the variables
unit14() { # MASTER_IP
  cat <<EOF
[Unit]
Description=Kubernetes API Server
Documentation=https://github.com/GoogleCloudPlatform/kubernetes
After=network.target

[Service]
WorkingDirectory=/data/k8s/k8s/kube-apiserver
ExecStart=/opt/k8s/bin/kube-apiserver \\
  --advertise-address=$1 \\
  --default-not-ready-toleration-seconds=360 \\
  --default-unreachable-toleration-seconds=360 \\
  --feature-gates=DynamicAuditing=true \\
  --max-mutating-requests-inflight=2000 \\
  --max-requests-inflight=4000 \\
  --default-watch-cache-size=200 \\
  --delete-collection-workers=2 \\
  --encryption-provider-config=/etc/kubernetes/encryption-config.yaml \\
  --etcd-cafile=/etc/kubernetes/cert/ca.pem \\
  --etcd-certfile=/etc/kubernetes/cert/kubernetes.pem \\
  --etcd-keyfile=/etc/kubernetes/cert/kubernetes-key.pem \\
  --etcd-servers=${ETCD_ENDPOINTS} \\
  --bind-address=$1 \\
  --secure-port=6443 \\
  --tls-cert-file=/etc/kubernetes/cert/kubernetes.pem \\
  --tls-private-key-file=/etc/kubernetes/cert/kubernetes-key.pem \\
  --insecure-port=0 \\
  --audit-dynamic-configuration \\
  --audit-log-maxage=15 \\
  --audit-log-maxbackup=3 \\
  --audit-log-maxsize=100 \\
  --audit-log-mode=batch \\
  --audit-log-truncate-enabled \\
  --audit-log-batch-buffer-size=20000 \\
  --audit-log-batch-max-size=2 \\
  --audit-log-path=/data/k8s/k8s/kube-apiserver/audit.log \\
  --audit-policy-file=/etc/kubernetes/audit-policy.yaml \\
  --profiling \\
  --anonymous-auth=false \\
  --client-ca-file=/etc/kubernetes/cert/ca.pem \\
  --enable-bootstrap-token-auth \\
  --requestheader-allowed-names="aggregator" \\
  --requestheader-client-ca-file=/etc/kubernetes/cert/ca.pem \\
  --requestheader-extra-headers-prefix="X-Remote-Extra-" \\
  --requestheader-group-headers=X-Remote-Group \\
  --requestheader-username-headers=X-Remote-User \\
  --service-account-key-file=/etc/kubernetes/cert/ca.pem \\
  --authorization-mode=Node,RBAC \\
  --runtime-config=api/all=true \\
  --enable-admission-plugins=NodeRestriction \\
  --allow-privileged=true \\
  --apiserver-count=3 \\
  --event-ttl=168h \\
  --kubelet-certificate-authority=/etc/kubernetes/cert/ca.pem \\
  --kubelet-client-certificate=/etc/kubernetes/cert/kubernetes.pem \\
  --kubelet-client-key=/etc/kubernetes/cert/kubernetes-key.pem \\
  --kubelet-https=true \\
  --kubelet-timeout=10s \\
  --proxy-client-cert-file=/etc/kubernetes/cert/proxy-client.pem \\
  --proxy-client-key-file=/etc/kubernetes/cert/proxy-client-key.pem \\
  --service-cluster-ip-range=10.254.0.0/16 \\
  --service-node-port-range=30000-32767 \\
  --logtostderr=true \\
  --v=2
Restart=on-failure
RestartSec=10
Type=notify
LimitNOFILE=65536

[Install]
WantedBy=multi-user.target
EOF
}
# the same unit made valid for 1.28: the 5 removed flags out, service-account flags in,
# audit batch max wait set (else the real one busy-loops)
unit28() {
  unit14 "$1" | sed -e '/--feature-gates=DynamicAuditing=true/d' -e '/--insecure-port=0/d' -e '/--audit-dynamic-configuration/d' \
    -e '/--kubelet-https=true/d' -e '/--logtostderr=true/d' \
    -e 's#--service-account-key-file=/etc/kubernetes/cert/ca.pem#--service-account-key-file=/etc/kubernetes/cert/sa.pub \\\n  --service-account-signing-key-file=/etc/kubernetes/cert/sa.key \\\n  --service-account-issuer=https://kubernetes.default.svc.cluster.local#' \
    -e 's#--audit-log-batch-max-size=2#--audit-log-batch-max-size=2 \\\n  --audit-log-batch-max-wait=1s#'
}
for i in 0 1 2; do unit14 "${IPS[$i]}" >"$W/kube-apiserver-14-${IPS[$i]}.service"; unit28 "${IPS[$i]}" >"$W/kube-apiserver-28-${IPS[$i]}.service"; done
install_files() { # HOSTIDX VERSION(14|28)
  local i=$1 v=$2 ip=${IPS[$1]}
  local ver; ver=$([ "$v" = 14 ] && echo v1.14.2 || echo v1.28.7)
  bash "$LAB" ssh "${HOSTS[$i]}" 'mkdir -p /etc/kubernetes/cert /data/k8s/k8s/kube-apiserver /opt/k8s/work' &&
    bash "$LAB" scp "$W/kubernetes.pem" "$W/kubernetes-key.pem" "$W/proxy-client.pem" "$W/proxy-client-key.pem" "$W/ca.pem" \
      "$W/sa.key" "$W/sa.pub" "${HOSTS[$i]}:/etc/kubernetes/cert/" &&
    bash "$LAB" scp "$W/encryption-config$([ "$v" = 14 ] && echo -legacy).yaml" "${HOSTS[$i]}:/etc/kubernetes/encryption-config.yaml" &&
    bash "$LAB" scp "$W/audit-policy$([ "$v" = 14 ] && echo -v1beta1).yaml" "${HOSTS[$i]}:/etc/kubernetes/audit-policy.yaml" &&
    bash "$LAB" scp "$W/kube-apiserver-$v-$ip.service" "${HOSTS[$i]}:/etc/systemd/system/kube-apiserver.service" &&
    bash "$LAB" scp "$(python3 -c "import json;print(json.load(open('$LAB_DIR/lab.json'))['tarballs']['$ver'])")" \
      "${HOSTS[$i]}:/opt/k8s/work/kubernetes-server-linux-amd64.tar.gz" &&
    bash "$LAB" ssh "${HOSTS[$i]}" 'cd /opt/k8s/work && rm -rf kubernetes && tar -xzf kubernetes-server-linux-amd64.tar.gz &&
      cp kubernetes/server/bin/{apiextensions-apiserver,cloud-controller-manager,kube-apiserver,kube-controller-manager,kube-proxy,kube-scheduler,kubeadm,kubectl,kubelet,mounter} /opt/k8s/bin/ &&
      chmod +x /opt/k8s/bin/* && systemctl daemon-reload'
}
# kubeconfigs written by hand: Debian's kubectl 1.20 (built with Go >= 1.18 and an old
# modern-go/reflect2) panics in `kubectl config set-credentials` (kubernetes/kubectl#1394)
write_kubeconfig() { # FILE CERT KEY [SERVER]
  cat >"$1" <<EOK
apiVersion: v1
kind: Config
clusters:
- name: lab
  cluster:
    server: ${4:-https://172.24.8.71:6443}
    certificate-authority-data: $(base64 -w0 "$LAB_DIR/ca.pem")
users:
- name: user
  user:
    client-certificate-data: $(base64 -w0 "$2")
    client-key-data: $(base64 -w0 "$3")
contexts:
- name: lab
  context:
    cluster: lab
    user: user
current-context: lab
EOK
}
# issue #5: kube-controller-manager, kube-scheduler (certs, kubeconfigs, units as in the
# tutorial's later chapters) and kube-nginx (nginx stream proxy on 127.0.0.1:8443)
CP_SANS="IP:127.0.0.1, IP:172.24.8.71, IP:172.24.8.72, IP:172.24.8.73"
pki_cert "$LAB_DIR" "$W/kube-controller-manager" "/C=CN/ST=Shanghai/L=Shanghai/O=system:kube-controller-manager/OU=System/CN=system:kube-controller-manager" "serverAuth, clientAuth" "$CP_SANS"
pki_cert "$LAB_DIR" "$W/kube-scheduler" "/C=CN/ST=Shanghai/L=Shanghai/O=system:kube-scheduler/OU=System/CN=system:kube-scheduler" "serverAuth, clientAuth" "$CP_SANS"
cp "$LAB_DIR/ca-key.pem" "$W/ca-key.pem"
for c in kube-controller-manager kube-scheduler; do
  write_kubeconfig "$W/$c-14.kubeconfig" "$W/$c.pem" "$W/$c-key.pem" https://172.24.8.71:6443  # 1.14 test: one apiserver, no kube-nginx
  write_kubeconfig "$W/$c-28.kubeconfig" "$W/$c.pem" "$W/$c-key.pem" https://127.0.0.1:8443     # through kube-nginx
done
cat >"$W/kube-scheduler-14.yaml" <<'EOF2'
apiVersion: kubescheduler.config.k8s.io/v1alpha1
kind: KubeSchedulerConfiguration
bindTimeoutSeconds: 600
clientConnection:
  burst: 200
  kubeconfig: "/etc/kubernetes/kube-scheduler.kubeconfig"
  qps: 100
enableContentionProfiling: false
enableProfiling: true
hardPodAffinitySymmetricWeight: 1
healthzBindAddress: ##NODE_IP##:10251
leaderElection:
  leaderElect: true
metricsBindAddress: ##NODE_IP##:10251
EOF2
cat >"$W/kube-scheduler-28.yaml" <<'EOF2'
apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
clientConnection:
  burst: 200
  kubeconfig: "/etc/kubernetes/kube-scheduler.kubeconfig"
  qps: 100
enableContentionProfiling: false
enableProfiling: true
leaderElection:
  leaderElect: true
EOF2
# the tutorial's controller-manager unit (v1.14), and what 1.28 accepts of it
unit_cm14() { # NODE_IP
  cat <<EOF2
[Unit]
Description=Kubernetes Controller Manager
Documentation=https://github.com/GoogleCloudPlatform/kubernetes

[Service]
WorkingDirectory=/data/k8s/k8s/kube-controller-manager
ExecStart=/opt/k8s/bin/kube-controller-manager \\
  --profiling \\
  --cluster-name=kubernetes \\
  --controllers=*,bootstrapsigner,tokencleaner \\
  --kube-api-qps=1000 \\
  --kube-api-burst=2000 \\
  --leader-elect \\
  --use-service-account-credentials\\
  --concurrent-service-syncs=2 \\
  --bind-address=$1 \\
  --secure-port=10252 \\
  --tls-cert-file=/etc/kubernetes/cert/kube-controller-manager.pem \\
  --tls-private-key-file=/etc/kubernetes/cert/kube-controller-manager-key.pem \\
  --port=0 \\
  --authentication-kubeconfig=/etc/kubernetes/kube-controller-manager.kubeconfig \\
  --client-ca-file=/etc/kubernetes/cert/ca.pem \\
  --requestheader-allowed-names="aggregator" \\
  --requestheader-client-ca-file=/etc/kubernetes/cert/ca.pem \\
  --requestheader-extra-headers-prefix="X-Remote-Extra-" \\
  --requestheader-group-headers=X-Remote-Group \\
  --requestheader-username-headers=X-Remote-User \\
  --authorization-kubeconfig=/etc/kubernetes/kube-controller-manager.kubeconfig \\
  --cluster-signing-cert-file=/etc/kubernetes/cert/ca.pem \\
  --cluster-signing-key-file=/etc/kubernetes/cert/ca-key.pem \\
  --experimental-cluster-signing-duration=876000h \\
  --horizontal-pod-autoscaler-sync-period=10s \\
  --concurrent-deployment-syncs=10 \\
  --concurrent-gc-syncs=30 \\
  --node-cidr-mask-size=24 \\
  --service-cluster-ip-range=10.254.0.0/16 \\
  --pod-eviction-timeout=6m \\
  --terminated-pod-gc-threshold=10000 \\
  --root-ca-file=/etc/kubernetes/cert/ca.pem \\
  --service-account-private-key-file=/etc/kubernetes/cert/ca-key.pem \\
  --kubeconfig=/etc/kubernetes/kube-controller-manager.kubeconfig \\
  --logtostderr=true \\
  --v=2
Restart=on-failure
RestartSec=5

[Install]
WantedBy=multi-user.target
EOF2
}
unit_cm28() { # NODE_IP: removed flags out, secure port 10257, the apiserver's service-account signing key
  unit_cm14 "$1" | sed -e '/--port=0/d' -e '/--pod-eviction-timeout=/d' -e '/--logtostderr=true/d' \
    -e 's/--secure-port=10252/--secure-port=10257/' -e 's/--experimental-cluster-signing-duration=/--cluster-signing-duration=/' \
    -e 's#--service-account-private-key-file=/etc/kubernetes/cert/ca-key.pem#--service-account-private-key-file=/etc/kubernetes/cert/sa.key#'
}
unit_sched14() { # NODE_IP
  cat <<EOF2
[Unit]
Description=Kubernetes Scheduler
Documentation=https://github.com/GoogleCloudPlatform/kubernetes

[Service]
WorkingDirectory=/data/k8s/k8s/kube-scheduler
ExecStart=/opt/k8s/bin/kube-scheduler \\
  --config=/etc/kubernetes/kube-scheduler.yaml \\
  --bind-address=$1 \\
  --secure-port=10259 \\
  --port=0 \\
  --tls-cert-file=/etc/kubernetes/cert/kube-scheduler.pem \\
  --tls-private-key-file=/etc/kubernetes/cert/kube-scheduler-key.pem \\
  --authentication-kubeconfig=/etc/kubernetes/kube-scheduler.kubeconfig \\
  --client-ca-file=/etc/kubernetes/cert/ca.pem \\
  --requestheader-allowed-names="" \\
  --requestheader-client-ca-file=/etc/kubernetes/cert/ca.pem \\
  --requestheader-extra-headers-prefix="X-Remote-Extra-" \\
  --requestheader-group-headers=X-Remote-Group \\
  --requestheader-username-headers=X-Remote-User \\
  --authorization-kubeconfig=/etc/kubernetes/kube-scheduler.kubeconfig \\
  --logtostderr=true \\
  --v=2
Restart=always
RestartSec=5
StartLimitInterval=0

[Install]
WantedBy=multi-user.target
EOF2
}
unit_sched28() { unit_sched14 "$1" | sed -e '/--port=0/d' -e '/--logtostderr=true/d'; }
# kube-nginx: Debian's nginx + stream module (the tutorial builds nginx from source into
# /opt/k8s/kube-nginx). Round robin here (the tutorial pins a client with `hash
# $remote_addr consistent`) so that one client reaches all three apiservers.
cat >"$W/kube-nginx.conf" <<'EOF2'
load_module /usr/lib/nginx/modules/ngx_stream_module.so;
worker_processes 1;
error_log logs/error.log warn;
pid logs/kube-nginx.pid;
events {
    worker_connections 1024;
}
stream {
    upstream backend {
        server 172.24.8.71:6443 max_fails=3 fail_timeout=30s;
        server 172.24.8.72:6443 max_fails=3 fail_timeout=30s;
        server 172.24.8.73:6443 max_fails=3 fail_timeout=30s;
    }
    server {
        listen 127.0.0.1:8443;
        proxy_connect_timeout 1s;
        proxy_pass backend;
    }
}
EOF2
cat >"$W/kube-nginx.service" <<'EOF2'
[Unit]
Description=kube-apiserver nginx proxy
After=network.target
After=network-online.target
Wants=network-online.target

[Service]
Type=forking
ExecStartPre=/usr/sbin/nginx -c /opt/k8s/kube-nginx/conf/kube-nginx.conf -p /opt/k8s/kube-nginx -t
ExecStart=/usr/sbin/nginx -c /opt/k8s/kube-nginx/conf/kube-nginx.conf -p /opt/k8s/kube-nginx
ExecReload=/usr/sbin/nginx -c /opt/k8s/kube-nginx/conf/kube-nginx.conf -p /opt/k8s/kube-nginx -s reload
PrivateTmp=true
Restart=always
RestartSec=5
StartLimitInterval=0
LimitNOFILE=65536

[Install]
WantedBy=multi-user.target
EOF2
for i in 0 1 2; do
  unit_cm14 "${IPS[$i]}" >"$W/kube-controller-manager-14-${IPS[$i]}.service"; unit_cm28 "${IPS[$i]}" >"$W/kube-controller-manager-28-${IPS[$i]}.service"
  unit_sched14 "${IPS[$i]}" >"$W/kube-scheduler-14-${IPS[$i]}.service"; unit_sched28 "${IPS[$i]}" >"$W/kube-scheduler-28-${IPS[$i]}.service"
  sed "s/##NODE_IP##/${IPS[$i]}/" "$W/kube-scheduler-14.yaml" >"$W/kube-scheduler-14-${IPS[$i]}.yaml"
done
install_cp() { # HOSTIDX VERSION(14|28): controller-manager, scheduler, kube-nginx files + units (not started)
  local i=$1 v=$2 ip=${IPS[$1]} h=${HOSTS[$1]}
  local sy; sy=$([ "$v" = 14 ] && echo "$W/kube-scheduler-14-$ip.yaml" || echo "$W/kube-scheduler-28.yaml")
  bash "$LAB" ssh "$h" 'mkdir -p /etc/kubernetes/cert /data/k8s/k8s/kube-controller-manager /data/k8s/k8s/kube-scheduler /opt/k8s/kube-nginx/conf /opt/k8s/kube-nginx/logs' &&
    bash "$LAB" scp "$W/kube-controller-manager.pem" "$W/kube-controller-manager-key.pem" "$W/kube-scheduler.pem" "$W/kube-scheduler-key.pem" \
      "$W/ca-key.pem" "$h:/etc/kubernetes/cert/" &&
    bash "$LAB" scp "$W/kube-controller-manager-$v.kubeconfig" "$h:/etc/kubernetes/kube-controller-manager.kubeconfig" &&
    bash "$LAB" scp "$W/kube-scheduler-$v.kubeconfig" "$h:/etc/kubernetes/kube-scheduler.kubeconfig" &&
    bash "$LAB" scp "$sy" "$h:/etc/kubernetes/kube-scheduler.yaml" &&
    bash "$LAB" scp "$W/kube-controller-manager-$v-$ip.service" "$h:/etc/systemd/system/kube-controller-manager.service" &&
    bash "$LAB" scp "$W/kube-scheduler-$v-$ip.service" "$h:/etc/systemd/system/kube-scheduler.service" &&
    bash "$LAB" scp "$W/kube-nginx.conf" "$h:/opt/k8s/kube-nginx/conf/kube-nginx.conf" &&
    bash "$LAB" scp "$W/kube-nginx.service" "$h:/etc/systemd/system/kube-nginx.service" &&
    bash "$LAB" ssh "$h" 'systemctl daemon-reload'
}
check "install the v1.14.2 tarball + tutorial unit + files on k8smaster01" install_files 0 14
check "controller-manager, scheduler, kube-nginx files and units (v1.14 tutorial) on k8smaster01" install_cp 0 14
phase_end

# ------------------------------------------------------------------------------
phase "stand-in v1.14.2 with the tutorial's v1.14 unit"
check "kube-apiserver --version says v1.14.2" sh_ "[ \"\$(bash '$LAB' ssh 1 /opt/k8s/bin/kube-apiserver --version)\" = 'Kubernetes v1.14.2' ]"
t=$(now)
check "systemctl restart kube-apiserver (Type=notify) succeeds" lssh 1 'systemctl restart kube-apiserver'
T_RESTART14=$(elapsed "$t")
check "kube-apiserver is active" sh_ "[ \"\$(bash '$LAB' ssh 1 systemctl is-active kube-apiserver)\" = active ]"
wait_url() { # IP PATH timeout -> 0 when 200
  local deadline=$(($(date +%s) + $3)) out
  while :; do
    out=$(curl_api "$1" "$2" --cert "$ADMIN_CERT" --key "$ADMIN_KEY" 2>/dev/null | tail -1)
    [ "$out" = 200 ] && return 0
    [ "$(date +%s)" -lt "$deadline" ] || return 1
    sleep 0.2
  done
}
check "v1.14.2: /healthz ok (admin client cert)" wait_url 172.24.8.71 /healthz 10
check "v1.14.2: /readyz does not exist before 1.16 (404)" sh_ "curl_api 172.24.8.71 /readyz --cert '$ADMIN_CERT' --key '$ADMIN_KEY' | tail -1 | grep -qx 404"
check "v1.14.2: /version gitVersion v1.14.2" sh_ "curl -s --cacert '$LAB_DIR/ca.pem' --cert '$ADMIN_CERT' --key '$ADMIN_KEY' https://172.24.8.71:6443/version | python3 -c 'import json,sys; assert json.load(sys.stdin)[\"gitVersion\"]==\"v1.14.2\"'"
check "v1.14.2: wrote /registry/namespaces/default" sh_ "etcdctl_ws get /registry/namespaces/default --keys-only | grep -q default"
check "journal has the stand-in's klog lines" sh_ "bash '$LAB' ssh 1 journalctl -u kube-apiserver --no-pager | grep -q 'Serving securely on 172.24.8.71:6443'"
# issue #5 on v1.14: the controller-manager and the scheduler of that release elect their
# leader with an Endpoints lock (Leases for them only from 1.17; their 1.14 roles lack leases)
wait_for() { # TIMEOUT cmd... -> 0 as soon as cmd succeeds
  local deadline=$(($(date +%s) + $1)); shift
  until "$@" >/dev/null 2>&1; do [ "$(date +%s)" -lt "$deadline" ] || return 1; sleep 0.3; done
}
ep_holder() { # NAME -> holderIdentity in the leader annotation of Endpoints kube-system/NAME (from etcd)
  etcdctl_ws get "/registry/services/endpoints/kube-system/$1" --print-value-only 2>/dev/null | python3 -c '
import json,sys; o=json.loads(sys.stdin.read()); print(json.loads(o["metadata"]["annotations"]["control-plane.alpha.kubernetes.io/leader"])["holderIdentity"])'
}
check "v1.14.2: kube-controller-manager, kube-scheduler --version" sh_ "[ \"\$(bash '$LAB' ssh 1 '/opt/k8s/bin/kube-controller-manager --version; /opt/k8s/bin/kube-scheduler --version')\" = \"\$(printf 'Kubernetes v1.14.2\nKubernetes v1.14.2')\" ]"
check "v1.14.2: systemctl start kube-controller-manager kube-scheduler (tutorial units, scheduler --config v1alpha1)" lssh 1 'systemctl start kube-controller-manager kube-scheduler'
check "v1.14.2: the controller-manager leads with the Endpoints lock kube-system/kube-controller-manager" wait_for 15 ep_holder kube-controller-manager
check "v1.14.2: the scheduler leads with the Endpoints lock kube-system/kube-scheduler" wait_for 15 ep_holder kube-scheduler
check "v1.14.2: holderIdentity is <hostname>_<uuid>: $(ep_holder kube-scheduler)" sh_ "ep_holder kube-scheduler | grep -qE '^k8smaster01_[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\$'"
check "v1.14.2: no Lease objects for them (a verify that reads Leases needs --leader-elect-resource-lock=leases AND RBAC for leases on 1.14)" sh_ "
  [ -z \"\$(etcdctl_ws get /registry/leases/kube-system/ --prefix --keys-only | grep -E 'kube-(controller-manager|scheduler)\$')\" ]"
check "v1.14.2: controller-manager /healthz on the tutorial's --secure-port=10252 (TLS, its own cert)" sh_ "curl -sf --max-time 5 --cacert '$LAB_DIR/ca.pem' https://172.24.8.71:10252/healthz | grep -qx ok"
check "v1.14.2: scheduler /healthz on 10259; with --config, --port=0 is ignored: the tutorial's healthzBindAddress serves plain HTTP on 10251" sh_ "
  curl -sf --max-time 5 --cacert '$LAB_DIR/ca.pem' https://172.24.8.71:10259/healthz | grep -qx ok && curl -sf --max-time 2 http://172.24.8.71:10251/healthz | grep -qx ok"
lssh 1 'systemctl stop kube-controller-manager kube-scheduler' >/dev/null 2>&1
lssh 1 'systemctl stop kube-apiserver' >/dev/null 2>&1
etcdctl_ws del /registry/ --prefix >/dev/null 2>&1
phase_end

# ------------------------------------------------------------------------------
phase "v1.14 flags under the v1.28.7 build fail like the real one"
install_files 0 14 >/dev/null 2>&1 # files of 1.14, then the 1.28 binaries over them:
T28=$(python3 -c "import json;print(json.load(open('$LAB_DIR/lab.json'))['tarballs']['v1.28.7'])")
bash "$LAB" scp "$T28" k8smaster01:/opt/k8s/work/k28.tar.gz
lssh 1 'cd /opt/k8s/work && rm -rf kubernetes && tar -xzf k28.tar.gz && cp kubernetes/server/bin/* /opt/k8s/bin/ && chmod +x /opt/k8s/bin/*'
check "kube-apiserver --version says v1.28.7" sh_ "[ \"\$(bash '$LAB' ssh 1 /opt/k8s/bin/kube-apiserver --version)\" = 'Kubernetes v1.28.7' ]"
t=$(now)
check "systemctl restart kube-apiserver FAILS with the v1.14 unit" sh_ "! bash '$LAB' ssh 1 'systemctl restart kube-apiserver'"
T_FAIL28=$(elapsed "$t")
check "journalctl -u kube-apiserver shows the DynamicAuditing error" sh_ "
  bash '$LAB' ssh 1 journalctl -u kube-apiserver --no-pager -n 30 | grep -F 'invalid argument \"DynamicAuditing=true\" for \"--feature-gates\" flag: unrecognized feature gate: DynamicAuditing'"
lssh 1 'systemctl stop kube-apiserver; systemctl reset-failed kube-apiserver' >/dev/null 2>&1
# run the binary by hand with the unit's ExecStart, fixing one thing at a time (the real order)
EXEC=$(sed -n '/^ExecStart=/,/--v=2/p' "$W/kube-apiserver-14-172.24.8.71.service" | sed -e 's/^ExecStart=//' -e 's/\\$//' | tr -d '\n' | sed 's/  */ /g')
run28() { bash "$LAB" ssh 1 "cd /data/k8s/k8s/kube-apiserver && K8SMI_STANDIN_ETCD_TIMEOUT=3 timeout 20 $1" 2>&1; }
expect_err() { # description, args, expected message
  local out; out=$(run28 "$2"); local rc=$?
  if [ $rc = 1 ] && grep -qF -- "$3" <<<"$out"; then ok "$1"; else bad "$1 (rc=$rc)"; tail -3 <<<"$out" | sed 's/^/       | /'; fi
}
E=$EXEC
expect_err "1. DynamicAuditing" "$E" 'invalid argument "DynamicAuditing=true" for "--feature-gates" flag: unrecognized feature gate: DynamicAuditing'
E=${E/--feature-gates=DynamicAuditing=true /}
expect_err "2. --insecure-port" "$E" 'Error: unknown flag: --insecure-port'
E=${E/--insecure-port=0 /}
expect_err "3. --audit-dynamic-configuration" "$E" 'Error: unknown flag: --audit-dynamic-configuration'
E=${E/--audit-dynamic-configuration /}
expect_err "4. --kubelet-https" "$E" 'Error: unknown flag: --kubelet-https'
E=${E/--kubelet-https=true /}
expect_err "5. --logtostderr" "$E" 'Error: unknown flag: --logtostderr'
E=${E/--logtostderr=true /}
expect_err "6. service-account flags required" "$E" 'service-account-issuer is a required flag, --service-account-signing-key-file and --service-account-issuer are required flags'
E=${E/--service-account-key-file=\/etc\/kubernetes\/cert\/ca.pem/--service-account-key-file=/etc/kubernetes/cert/sa.pub --service-account-signing-key-file=/etc/kubernetes/cert/sa.key --service-account-issuer=https://kubernetes.default.svc.cluster.local}
expect_err "7. audit policy v1beta1 (klog quoting: \\\")" "$E" 'loading audit policy file: failed decoding: no kind \"Policy\" is registered for version \"audit.k8s.io/v1beta1\"'
expect_err "   --experimental-encryption-provider-config removed" "${E/--encryption-provider-config=/--experimental-encryption-provider-config=}" 'Error: unknown flag: --experimental-encryption-provider-config'
expect_err "   a flag no release has" "$E --no-such-flag=1" 'Error: unknown flag: --no-such-flag'
expect_err "   a missing cert file is named" "${E//kubernetes.pem/nothere.pem}" 'open /etc/kubernetes/cert/nothere.pem: no such file or directory'
expect_err "   key not matching the cert" "${E/--tls-private-key-file=\/etc\/kubernetes\/cert\/kubernetes-key.pem/--tls-private-key-file=/etc/kubernetes/cert/proxy-client-key.pem}" 'tls: private key does not match public key'
lssh 1 "cp /etc/kubernetes/encryption-config.yaml /tmp/ec.yaml && sed 's/secret: .*/secret: /' /tmp/ec.yaml > /tmp/ec-empty.yaml && sed 's/secret: .*/secret: not*base64/' /tmp/ec.yaml > /tmp/ec-bad.yaml && sed 's/secret: .*/secret: c2hvcnQ=/' /tmp/ec.yaml > /tmp/ec-short.yaml"
lssh 1 "sed -i 's#audit.k8s.io/v1beta1#audit.k8s.io/v1#' /etc/kubernetes/audit-policy.yaml"
expect_err "   empty encryption key" "${E/\/etc\/kubernetes\/encryption-config.yaml/\/tmp\/ec-empty.yaml}" 'secret: Required value: secret is a mandatory field for a key'
expect_err "   invalid base64 encryption key" "${E/\/etc\/kubernetes\/encryption-config.yaml/\/tmp\/ec-bad.yaml}" 'secrets must be base64 encoded'
expect_err "   5-byte encryption key" "${E/\/etc\/kubernetes\/encryption-config.yaml/\/tmp\/ec-short.yaml}" 'secret is not of the expected length, got 5, expected one of [16 24 32]'
expect_err "   etcd unreachable -> fails after retrying" "${E//:2379/:2999}" 'context deadline exceeded'
# the tutorial's controller-manager and scheduler units under 1.28: one error per start, in order
unit_exec() { sed -n '/^ExecStart=/,/--v=2/p' "$1" | sed -e 's/^ExecStart=//' -e 's/\\$//' | tr -d '\n' | sed 's/  */ /g'; }
install_cp 0 14 >/dev/null 2>&1
EC=$(unit_exec "$W/kube-controller-manager-14-172.24.8.71.service")
expect_err "cm 1. --port" "$EC" 'Error: unknown flag: --port'
EC=${EC/--port=0 /}
expect_err "cm 2. --experimental-cluster-signing-duration" "$EC" 'Error: unknown flag: --experimental-cluster-signing-duration'
EC=${EC/--experimental-cluster-signing-duration=876000h /}
expect_err "cm 3. --pod-eviction-timeout" "$EC" 'Error: unknown flag: --pod-eviction-timeout'
EC=${EC/--pod-eviction-timeout=6m /}
expect_err "cm 4. --logtostderr" "$EC" 'Error: unknown flag: --logtostderr'
EC=${EC/--logtostderr=true /}
out=$(bash "$LAB" ssh 1 "cd /tmp && timeout 5 $EC" 2>&1); rc=$?
[ $rc = 124 ] && grep -q 'error retrieving resource lock kube-system/kube-controller-manager: Get "https://172.24.8.71:6443/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/kube-controller-manager?timeout=5s": dial tcp 172.24.8.71:6443: connect: connection refused' <<<"$out" &&
  ok "cm 5. then it runs, and retries an unreachable apiserver (Lease lock on 1.28, logged every retry)" || { bad "cm 5. runs and retries (rc=$rc)"; tail -3 <<<"$out" | sed 's/^/       | /'; }
ES=$(unit_exec "$W/kube-scheduler-14-172.24.8.71.service")
expect_err "scheduler 1. --port" "$ES" 'Error: unknown flag: --port'
ES=${ES/--port=0 /}
expect_err "scheduler 2. --logtostderr" "$ES" 'Error: unknown flag: --logtostderr'
ES=${ES/--logtostderr=true /}
expect_err "scheduler 3. --config v1alpha1" "$ES" 'no kind \"KubeSchedulerConfiguration\" is registered for version \"kubescheduler.config.k8s.io/v1alpha1\" in scheme \"k8s.io/kubernetes/pkg/scheduler/apis/config/scheme/scheme.go:30\"'
lssh 1 "sed -i 's/^healthzBindAddress:.*//; s/^metricsBindAddress:.*//; s/^bindTimeoutSeconds:.*//; s/^hardPodAffinitySymmetricWeight:.*//; s#kubescheduler.config.k8s.io/v1alpha1#kubescheduler.config.k8s.io/v1beta2#' /etc/kubernetes/kube-scheduler.yaml"
expect_err "scheduler 4. --config v1beta2 (removed in 1.28)" "$ES" 'no kind \"KubeSchedulerConfiguration\" is registered for version \"kubescheduler.config.k8s.io/v1beta2\"'
lssh 1 "sed -i 's#kubescheduler.config.k8s.io/v1beta2#kubescheduler.config.k8s.io/v1#; \$a healthzBindAddress: 0.0.0.0:10251' /etc/kubernetes/kube-scheduler.yaml"
expect_err "scheduler 5. v1 with a v1alpha1 field (strict decoding)" "$ES" 'strict decoding error: unknown field \"healthzBindAddress\"'
phase_end

# ------------------------------------------------------------------------------
phase "a correct 1.28 unit on k8smaster01 under systemd"
check "install the v1.28.7 tarball + a 1.28-valid unit + files" install_files 0 28
t=$(now)
check "systemctl restart kube-apiserver succeeds (returns at READY=1)" lssh 1 'systemctl restart kube-apiserver'
T_RESTART28=$(elapsed "$t")
early=$(curl_api 172.24.8.71 /readyz --cert "$ADMIN_CERT" --key "$ADMIN_KEY" 2>/dev/null | tail -1)
[ "$early" = 500 ] && ok "/readyz is 500 right after restart returned (ok ~2 s after READY=1, like the real one)" ||
  echo "  note: /readyz right after restart gave $early (expected 500; timing-dependent)"
t=$(now)
check "/readyz 200 with curl and an admin client cert (O=system:masters)" wait_url 172.24.8.71 /readyz 15
T_READYZ=$(elapsed "$t")
check "/readyz?verbose lists the checks" sh_ "curl -s --cacert '$LAB_DIR/ca.pem' --cert '$ADMIN_CERT' --key '$ADMIN_KEY' 'https://172.24.8.71:6443/readyz?verbose' | grep -q 'readyz check passed'"
check "/livez and /healthz 200" sh_ "curl_api 172.24.8.71 /livez --cert '$ADMIN_CERT' --key '$ADMIN_KEY' | tail -1 | grep -qx 200 && curl_api 172.24.8.71 /healthz --cert '$ADMIN_CERT' --key '$ADMIN_KEY' | tail -1 | grep -qx 200"
check "/version gitVersion v1.28.7" sh_ "curl -s --cacert '$LAB_DIR/ca.pem' --cert '$ADMIN_CERT' --key '$ADMIN_KEY' https://172.24.8.71:6443/version | python3 -c 'import json,sys; assert json.load(sys.stdin)[\"gitVersion\"]==\"v1.28.7\"'"
check "no client cert -> 401 (--anonymous-auth=false)" sh_ "curl_api 172.24.8.71 /healthz | tail -1 | grep -qx 401"
check "curl --cacert ca.pem verifies the serving cert (no 'self-signed' error)" curl -sS --max-time 5 --cacert "$LAB_DIR/ca.pem" --cert "$ADMIN_CERT" --key "$ADMIN_KEY" -o /dev/null https://172.24.8.71:6443/healthz
check "unit is active, systemd saw READY=1 (Type=notify)" sh_ "[ \"\$(bash '$LAB' ssh 1 systemctl show -p ActiveState --value kube-apiserver)\" = active ]"
check "audit log written under K8S_DIR" sh_ "bash '$LAB' ssh 1 'test -s /data/k8s/k8s/kube-apiserver/audit.log'"
KEYS=$(etcdctl_ws get /registry/ --prefix --keys-only 2>/dev/null | grep .)
for k in /registry/namespaces/default /registry/namespaces/kube-system /registry/services/specs/default/kubernetes \
  /registry/services/endpoints/default/kubernetes /registry/ranges/serviceips /registry/ranges/servicenodeports \
  /registry/clusterroles/system:kubelet-api-admin /registry/clusterroles/cluster-admin \
  /registry/clusterrolebindings/cluster-admin "/registry/apiregistration.k8s.io/apiservices/v1." /registry/masterleases/172.24.8.71; do
  if grep -qxF "$k" <<<"$KEYS"; then ok "etcd has $k"; else bad "etcd has $k"; fi
done
# kubectl 1.20 (Debian) with an admin kubeconfig (write_kubeconfig: see above)
KC="$W/admin.kubeconfig"
write_kubeconfig "$KC" "$ADMIN_CERT" "$ADMIN_KEY"
export HOME_SAVE=$HOME; export HOME=$W # kubectl's discovery cache goes to $W
canI() { # KUBECONFIG ARGS... -> "<output> rc=<rc>"
  local kc=$1 out rc; shift
  out=$("$KUBECTL" --kubeconfig "$kc" auth can-i "$@" 2>/dev/null); rc=$?
  echo "$out rc=$rc"
}
r=$(canI "$KC" --as kubernetes get nodes/proxy)
[ "$r" = "no rc=1" ] && ok "before the binding: kubectl auth can-i --as kubernetes get nodes/proxy -> $r" || bad "before the binding, can-i should be 'no rc=1': $r"
out=$("$KUBECTL" --kubeconfig "$KC" create clusterrolebinding kube-apiserver:kubelet-apis --clusterrole=system:kubelet-api-admin --user kubernetes 2>&1); rc=$?
[ $rc = 0 ] && contains "$out" "created" && ok "kubectl create clusterrolebinding kube-apiserver:kubelet-apis: $out" || bad "kubectl create clusterrolebinding (rc=$rc): $out"
out=$("$KUBECTL" --kubeconfig "$KC" create clusterrolebinding kube-apiserver:kubelet-apis --clusterrole=system:kubelet-api-admin --user kubernetes 2>&1); rc=$?
# kubectl >= 1.20 prints "error: failed to create clusterrolebinding: ... already exists";
# the reason AlreadyExists is in the 409 Status body (-v=8 shows it; kubectl then exits 255)
body=$("$KUBECTL" --kubeconfig "$KC" create clusterrolebinding kube-apiserver:kubelet-apis --clusterrole=system:kubelet-api-admin --user kubernetes -v=8 2>&1 | grep -E 'Response (Status|Body)')
[ $rc = 1 ] && contains "$out" 'already exists' && contains "$body" '409 Conflict' && contains "$body" '"reason":"AlreadyExists"' &&
  ok "second create: exit 1, 409 reason AlreadyExists: $out" || bad "second create should fail with AlreadyExists (rc=$rc): $out $body"
out=$("$KUBECTL" --kubeconfig "$KC" get clusterrolebinding kube-apiserver:kubelet-apis -o yaml 2>&1); rc=$?
[ $rc = 0 ] && contains "$out" "name: system:kubelet-api-admin" && contains "$out" "name: kubernetes" && ok "kubectl get clusterrolebinding -o yaml" || bad "kubectl get -o yaml (rc=$rc): $out"
check "kubectl get clusterrolebinding (table)" sh_ "'$KUBECTL' --kubeconfig '$KC' get clusterrolebinding kube-apiserver:kubelet-apis | grep -q 'ClusterRole/system:kubelet-api-admin'"
check "kubectl get clusterrole system:kubelet-api-admin" "$KUBECTL" --kubeconfig "$KC" get clusterrole system:kubelet-api-admin
check "etcd has /registry/clusterrolebindings/kube-apiserver:kubelet-apis" sh_ "etcdctl_ws get /registry/clusterrolebindings/kube-apiserver:kubelet-apis --keys-only | grep -q kubelet-apis"
write_kubeconfig "$W/nobody.kubeconfig" "$W/nobody.pem" "$W/nobody-key.pem"
r=$(canI "$KC" --as kubernetes get nodes/proxy)
[ "$r" = "yes rc=0" ] && ok "with the binding: kubectl auth can-i --as kubernetes get nodes/proxy -> $r (impersonation + SelfSubjectAccessReview)" || bad "with the binding, can-i should be 'yes rc=0': $r"
# NB: for kubectl, "nodes/proxy" is TYPE/NAME (the node named "proxy"); the subresource is --subresource=proxy
r=$(canI "$KC" --as kubernetes create nodes --subresource=proxy); r1=$(canI "$KC" --as kubernetes create nodes/proxy)
r2=$(canI "$KC" --as kubernetes get secrets); r3=$(canI "$KC" --as someone-else get nodes/proxy)
[ "$r" = "yes rc=0" ] && [ "$r1" = "no rc=1" ] && [ "$r2" = "no rc=1" ] && [ "$r3" = "no rc=1" ] &&
  ok "system:kubelet-api-admin rules: create nodes --subresource=proxy yes, create node 'proxy' no, secrets no, another user no" ||
  bad "kubelet-api-admin rules: $r / $r1 / $r2 / $r3"
r=$(canI "$KC" get secrets --all-namespaces)
[ "$r" = "yes rc=0" ] && ok "admin (system:masters) can do anything: $r" || bad "admin can-i: $r"
out=$("$KUBECTL" --kubeconfig "$W/nobody.kubeconfig" auth can-i --as kubernetes get nodes/proxy 2>&1)
contains "$out" 'users "kubernetes" is forbidden: User "nobody" cannot impersonate resource "users" in API group "" at the cluster scope' &&
  ok "a non-admin may not impersonate: $out" || bad "non-admin impersonation: $out"
check "kubectl delete clusterrolebinding kube-apiserver:kubelet-apis" "$KUBECTL" --kubeconfig "$KC" delete clusterrolebinding kube-apiserver:kubelet-apis
r=$(canI "$KC" --as kubernetes get nodes/proxy)
[ "$r" = "no rc=1" ] && ok "binding deleted: can-i -> $r" || bad "binding deleted: can-i should be 'no rc=1': $r"
check "binding created again" "$KUBECTL" --kubeconfig "$KC" create clusterrolebinding kube-apiserver:kubelet-apis --clusterrole=system:kubelet-api-admin --user kubernetes
r=$(canI "$KC" --as kubernetes get nodes/proxy)
[ "$r" = "yes rc=0" ] && ok "binding back: can-i -> $r" || bad "binding back: can-i should be 'yes rc=0': $r"
check "kubectl cluster-info says 'Kubernetes control plane'" sh_ "'$KUBECTL' --kubeconfig '$KC' cluster-info | grep -q 'Kubernetes control plane'"
check "kubectl get componentstatuses warns deprecated, lists one etcd" sh_ "out=\$('$KUBECTL' --kubeconfig '$KC' get componentstatuses 2>&1); echo \"\$out\"; grep -q 'deprecated' <<<\"\$out\" && [ \$(grep -c '^etcd-' <<<\"\$out\") = 1 ]"
# secrets: encrypted at rest in the real format
check "kubectl create secret generic" "$KUBECTL" --kubeconfig "$KC" create secret generic k8smi-selftest --from-literal=password=hunter2
raw=$(etcdctl_ws get /registry/secrets/default/k8smi-selftest --print-value-only 2>/dev/null | head -c 23)
[ "$raw" = "k8s:enc:aescbc:v1:key1:" ] && ok "secret stored as k8s:enc:aescbc:v1:key1:..." || bad "secret prefix in etcd: '$raw'"
check "secret decrypts with openssl (IV + AES-CBC, PKCS#7) using the config's key" sh_ "
  etcdctl_ws get /registry/secrets/default/k8smi-selftest --print-value-only | head -c -1 > '$W/sec.bin'
  tail -c +24 '$W/sec.bin' > '$W/sec.body'; iv=\$(head -c 16 '$W/sec.body' | od -An -tx1 | tr -d ' \n')
  key=\$(echo '$ENCRYPTION_KEY' | base64 -d | od -An -tx1 | tr -d ' \n')
  tail -c +17 '$W/sec.body' | openssl enc -d -aes-256-cbc -K \$key -iv \$iv | grep -q 'aHVudGVyMg=='"
check "kubectl get secret reads it back" sh_ "'$KUBECTL' --kubeconfig '$KC' get secret k8smi-selftest -o jsonpath='{.data.password}' | base64 -d | grep -qx hunter2"
check "kubectl delete secret (the real kubectl waits for the deletion with a metadata.name field selector)" timeout 20 "$KUBECTL" --kubeconfig "$KC" delete secret k8smi-selftest -n default
check "the secret is gone from etcd" sh_ "[ -z \"\$(etcdctl_ws get /registry/secrets/default/k8smi-selftest --keys-only)\" ]"
# authn / authz
NB="$W/nobody.kubeconfig"
write_kubeconfig "$NB" "$W/nobody.pem" "$W/nobody-key.pem"
out=$("$KUBECTL" --kubeconfig "$NB" create clusterrolebinding x --clusterrole=view --user x 2>&1)
contains "$out" 'is forbidden: User "nobody" cannot create resource "clusterrolebindings"' && ok "a non-system:masters user is Forbidden: $out" || bad "non-admin create: $out"
check "a non-admin user may read /version and /readyz" sh_ "curl_api 172.24.8.71 /readyz --cert '$W/nobody.pem' --key '$W/nobody-key.pem' | tail -1 | grep -qx 200"
phase_end

# ------------------------------------------------------------------------------
phase "issue #5: three 1.28 apiservers, kube-nginx on every host"
inst_rest() {
  install_files 1 28 >"$W/inst1.log" 2>&1 & local p1=$!
  install_files 2 28 >"$W/inst2.log" 2>&1 & local p2=$!
  wait $p1 && wait $p2 || { tail -5 "$W"/inst*.log; return 1; }
}
check "install the 1.28 tarball + unit + files on k8smaster02 and k8smaster03" inst_rest
check "systemctl restart kube-apiserver on k8smaster02 and k8smaster03" sh_ "bash '$LAB' ssh 2 'systemctl restart kube-apiserver' && bash '$LAB' ssh 3 'systemctl restart kube-apiserver'"
for ip in 172.24.8.72 172.24.8.73; do check "/readyz 200 on $ip" wait_url $ip /readyz 15; done
cp_all() { # VERSION: install_cp on the three hosts at once
  local i pids=()
  for i in 0 1 2; do install_cp $i "$1" >"$W/cp$i.log" 2>&1 & pids+=($!); done
  for i in "${pids[@]}"; do wait "$i" || { tail -5 "$W"/cp*.log; return 1; }; done
}
check "controller-manager, scheduler, kube-nginx files and units (1.28) on the 3 hosts" cp_all 28
check "nginx is /usr/sbin/nginx, the stream module /usr/lib/nginx/modules/ngx_stream_module.so" lssh 1 'test -x /usr/sbin/nginx && test -f /usr/lib/nginx/modules/ngx_stream_module.so'
check "Debian's nginx.service is masked (only kube-nginx.service runs nginx)" sh_ "[ \"\$(bash '$LAB' ssh 1 systemctl is-enabled nginx)\" = masked ] && [ \"\$(bash '$LAB' ssh 1 systemctl is-active nginx)\" = inactive ]"
check "systemctl enable --now kube-nginx on the 3 hosts (Type=forking, nginx -t first)" sh_ "for h in 1 2 3; do bash '$LAB' ssh \$h 'systemctl enable --now kube-nginx' 2>/dev/null || exit 1; done"
check "kube-nginx active and listening on 127.0.0.1:8443 only" sh_ "for h in 1 2 3; do
  [ \"\$(bash '$LAB' ssh \$h systemctl is-active kube-nginx)\" = active ] || exit 1
  [ \"\$(bash '$LAB' ssh \$h \"ss -ltnH 'sport = :8443'\" | awk '{print \$4}')\" = 127.0.0.1:8443 ] || exit 1; done"
for i in 0 1 2; do bash "$LAB" scp "$ADMIN_CERT" "$ADMIN_KEY" "${HOSTS[$i]}:/root/"; done
via_nginx() { # HOSTIDX N PATH -> N responses' bodies, one per line, from inside the host through 127.0.0.1:8443
  bash "$LAB" ssh "${HOSTS[$1]}" "for n in \$(seq 1 $2); do curl -sf --max-time 5 --cacert /etc/kubernetes/cert/ca.pem --cert /root/admin.pem --key /root/admin-key.pem 'https://127.0.0.1:8443$3' | tr -d '\n'; echo; done"
}
backends() { python3 -c 'import json,sys; print(" ".join(sorted({json.loads(l)["serverAddressByClientCIDRs"][0]["serverAddress"] for l in sys.stdin if l.strip()})))'; }
b=$(via_nginx 0 6 /api | backends)
[ "$b" = "172.24.8.71:6443 172.24.8.72:6443 172.24.8.73:6443" ] && ok "one client on k8smaster01 reaches all three apiservers through kube-nginx: $b" || bad "kube-nginx backends seen: '$b'"
check "/livez and /readyz?verbose through kube-nginx (from k8smaster02)" sh_ "
  [ \"\$(via_nginx 1 1 /livez)\" = ok ] && via_nginx 1 1 '/readyz?verbose' | grep -q 'readyz check passed'"
lssh 2 'systemctl stop kube-apiserver'
b=$(via_nginx 2 6 /api | backends)
[ "$b" = "172.24.8.71:6443 172.24.8.73:6443" ] && ok "apiserver of k8smaster02 stopped: 6 of 6 requests still answered, by the other two ($b)" || bad "kube-nginx with one apiserver down: '$b'"
check "k8smaster02's apiserver back" sh_ "bash '$LAB' ssh 2 'systemctl start kube-apiserver' && wait_url 172.24.8.72 /readyz 15"
phase_end

# ------------------------------------------------------------------------------
phase "issue #5: controller-manager and scheduler leader election"
lease() { "$KUBECTL" --kubeconfig "$KC" -n kube-system get lease "$1" -o jsonpath="{.spec.$2}" 2>/dev/null; }
has_holder() { [ -n "$(lease "$1" holderIdentity)" ]; }
acquired() { # UNIT -> how many hosts' journals say it acquired its lease
  local h n=0
  for h in 1 2 3; do bash "$LAB" ssh $h "journalctl -u $1 --no-pager --since @$CP_T0" 2>/dev/null | grep -q "successfully acquired lease kube-system/$1" && n=$((n + 1)); done
  echo $n
}
start_on() { # UNIT HOSTIDX... : systemctl start at the same moment on several hosts
  local u=$1 h pids=(); shift
  for h in "$@"; do bash "$LAB" ssh "${HOSTS[$h]}" "systemctl start $u" & pids+=($!); done
  for h in "${pids[@]}"; do wait "$h" || return 1; done
}
CP_T0=$(date +%s)
check "kube-controller-manager --version v1.28.7 (the stand-in of the tarball)" sh_ "[ \"\$(bash '$LAB' ssh 1 /opt/k8s/bin/kube-controller-manager --version)\" = 'Kubernetes v1.28.7' ]"
t=$(now)
check "systemctl start kube-controller-manager on k8smaster01 and k8smaster02 at once (Type=simple)" start_on kube-controller-manager 0 1
check "Lease kube-system/kube-controller-manager has a holder" wait_for 15 has_holder kube-controller-manager
T_CMLEASE=$(elapsed "$t")
H=$(lease kube-controller-manager holderIdentity)
check "holderIdentity is <hostname>_<uuid> of k8smaster01 or 02: $H" sh_ "grep -qE '^k8smaster0[12]_[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\$' <<<'$H'"
check "leaseDurationSeconds 15, acquireTime and renewTime set" sh_ "[ \"\$(lease kube-controller-manager leaseDurationSeconds)\" = 15 ] && [ -n \"\$(lease kube-controller-manager acquireTime)\" ] && [ -n \"\$(lease kube-controller-manager renewTime)\" ]"
sleep 2
check "exactly one of the two leads ('successfully acquired lease' in one journal)" sh_ "[ \"\$(acquired kube-controller-manager)\" = 1 ]"
r1=$(lease kube-controller-manager renewTime); sleep 2.5; r2=$(lease kube-controller-manager renewTime)
[ -n "$r1" ] && [ "$r1" != "$r2" ] && ok "renewTime advances (~every 2 s): $r1 -> $r2" || bad "renewTime did not advance: $r1 -> $r2"
check "the leader loaded its key files and started (journal: 'controllers would run')" sh_ "bash '$LAB' ssh \${H:10:1} journalctl -u kube-controller-manager --no-pager --since @$CP_T0 | grep -q 'controllers would run'"
check "/healthz on the secure port 10257 of both (curl --cacert, the cert's IP SANs)" sh_ "
  for ip in 172.24.8.71 172.24.8.72; do curl -sf --max-time 5 --cacert '$LAB_DIR/ca.pem' https://\$ip:10257/healthz | grep -qx ok || exit 1; done"
check "no insecure port 10252 on 1.28" sh_ "! curl -s --max-time 2 http://172.24.8.71:10252/healthz"
check "10257 /metrics: anonymous 403, admin client cert 200 (delegated SubjectAccessReview to the apiserver)" sh_ "
  [ \"\$(curl -s -o /dev/null -w '%{http_code}' --cacert '$LAB_DIR/ca.pem' https://172.24.8.71:10257/metrics)\" = 403 ] &&
  [ \"\$(curl -s -o /dev/null -w '%{http_code}' --cacert '$LAB_DIR/ca.pem' --cert '$ADMIN_CERT' --key '$ADMIN_KEY' https://172.24.8.71:10257/metrics)\" = 200 ]"
check "systemctl start kube-scheduler on the 3 hosts at once" start_on kube-scheduler 0 1 2
check "Lease kube-system/kube-scheduler has a holder" wait_for 15 has_holder kube-scheduler
HS=$(lease kube-scheduler holderIdentity)
check "kube-scheduler holder is one of the three: $HS" sh_ "grep -qE '^k8smaster0[123]_[0-9a-f-]{36}\$' <<<'$HS'"
sleep 2
check "exactly one scheduler leads" sh_ "[ \"\$(acquired kube-scheduler)\" = 1 ]"
check "/healthz on the secure port 10259 of the 3 schedulers" sh_ "
  for ip in 172.24.8.71 172.24.8.72 172.24.8.73; do curl -sf --max-time 5 --cacert '$LAB_DIR/ca.pem' https://\$ip:10259/healthz | grep -qx ok || exit 1; done"
out=$("$KUBECTL" --kubeconfig "$KC" get lease -n kube-system 2>&1)
grep -qE '^kube-controller-manager +k8smaster0[12]_' <<<"$out" && grep -qE '^kube-scheduler +k8smaster0[123]_' <<<"$out" &&
  ok "kubectl get lease -n kube-system (real kubectl 1.20, coordination.k8s.io/v1) shows both with holders" || bad "kubectl get lease -n kube-system: $out"
# failover: the lease is not released on stop; the other one takes it once it expired (~15 s)
LH=${H:10:1}; OTHER=$([ "$LH" = 1 ] && echo 2 || echo 1)
TR=$(lease kube-controller-manager leaseTransitions)
t=$(now)
lssh "$LH" 'systemctl stop kube-controller-manager'
check "failover: k8smaster0$LH stopped -> k8smaster0$OTHER holds the lease (within 30 s)" wait_for 30 sh_ "lease kube-controller-manager holderIdentity | grep -q '^k8smaster0${OTHER}_'"
T_FAILOVER=$(elapsed "$t")
check "leaseTransitions $TR -> $((${TR:-0} + 1))" sh_ "[ \"\$(lease kube-controller-manager leaseTransitions)\" = $((${TR:-0} + 1)) ]"
lssh "$LH" 'systemctl start kube-controller-manager'
phase_end
export HOME=$HOME_SAVE

# ------------------------------------------------------------------------------
phase "cut / heal"
bash "$LAB" cut k8smaster03 >/dev/null 2>&1
check "cut: k8smaster03 does not answer ssh" sh_ "! timeout 8 bash '$LAB' ssh 3 -o ConnectTimeout=2 true"
check "cut: etcd reports 2 healthy, 1 unhealthy" sh_ "out=\$(etcdctl_ws endpoint health --dial-timeout=2s --command-timeout=3s 2>&1); [ \$(grep -c 'is healthy' <<<\"\$out\") = 2 ]"
bash "$LAB" heal k8smaster03 >/dev/null 2>&1
check "heal: k8smaster03 answers ssh again" sh_ "for n in \$(seq 1 20); do bash '$LAB' ssh 3 -o ConnectTimeout=2 true && exit 0; sleep 0.5; done; exit 1"
check "heal: etcd 3 healthy again" sh_ "for n in \$(seq 1 30); do [ \$(etcdctl_ws endpoint health 2>&1 | grep -c 'is healthy') = 3 ] && exit 0; sleep 0.5; done; exit 1"
check "logs: journal readable from this machine (lab.sh logs)" sh_ "bash '$LAB' logs k8smaster01 -u kube-apiserver | grep -q 'Serving securely'"
phase_end

# ------------------------------------------------------------------------------
rm -rf "$tmpca" "$W"
if [ "$KEEP" = 1 ]; then
  echo; echo "--keep: the lab stays up ($LAB_DIR/lab.json)"
else
  phase "down"
  NSPAWN_PIDS=$(cat "$LAB_DIR"/pids/*.nspawn "$LAB_DIR"/pids/*.init 2>/dev/null | awk '{print $1}' | tr '\n' ' ')
  check "lab.sh down" bash "$LAB" down
  check "no netns k8smi-*" sh_ "! ip netns list | grep -q '^k8smi-'"
  check "no bridge k8smi-br0, no k8smi veths" sh_ "! ip -o link | grep -q 'k8smi-'"
  check "no mounts under $LAB_DIR, no k8smi overlays" sh_ "! grep -qE ' $LAB_DIR|k8smi-' /proc/self/mountinfo"
  check "no process the lab started is alive ($NSPAWN_PIDS)" sh_ "for p in $NSPAWN_PIDS; do alive \$p && exit 1; done; [ -z \"\$(lab_container_inits)\$(lab_nspawn_pids)\" ]"
  check "$LAB_DIR removed, rootfs cache kept" sh_ "[ ! -e '$LAB_DIR' ] && ls -d '$CACHE_DIR'/rootfs-* >/dev/null"
  check "lab.sh down again (already down) succeeds" bash "$LAB" down
  phase_end

  phase "half-up lab: down still cleans everything"
  bash "$LAB" up >/dev/null 2>&1
  victim=$(cat "$LAB_DIR/pids/k8smaster02.nspawn"); orphan=$(awk '{print $1}' "$LAB_DIR/pids/k8smaster02.init")
  kill -KILL "$victim"                       # nspawn dies, its container lives on as an orphan
  ip netns del k8smi-k8smaster03 2>/dev/null # and a piece of network is already gone
  sleep 0.5
  check "the orphaned container of k8smaster02 is still running before down" alive "$orphan"
  check "lab.sh down" bash "$LAB" down
  check "orphaned container killed (pid $orphan)" sh_ "! alive $orphan"
  check "nothing left: netns, links, mounts, processes, lab dir, nspawn's /run/systemd/nspawn" sh_ "
    ! ip netns list | grep -q '^k8smi-' && ! ip -o link | grep -q 'k8smi-' && ! grep -qE ' $LAB_DIR|k8smi-' /proc/self/mountinfo &&
    [ -z \"\$(lab_container_inits)\$(lab_nspawn_pids)\" ] && [ ! -e '$LAB_DIR' ] && [ ! -e /run/systemd/nspawn ]"
  phase_end
fi

echo
echo "== timings"
sed -e 's/=/: /' -e 's/^/  lab.sh up: /' <<<"$UP_TIMINGS"
printf '  %-44s %6ss\n' "systemctl restart (v1.14.2, Type=notify)" "${T_RESTART14:-?}" \
  "systemctl restart failing (v1.14 flags, 1.28)" "${T_FAIL28:-?}" \
  "systemctl restart (1.28 unit, until READY=1)" "${T_RESTART28:-?}" \
  "then until /readyz 200" "${T_READYZ:-?}" \
  "2 controller-managers started -> Lease held" "${T_CMLEASE:-?}" \
  "leader stopped -> the other holds the Lease" "${T_FAILOVER:-?}"
printf '  %s\n' "${TIMINGS[@]}"
echo
echo "== $PASS passed, $FAIL failed"
[ $FAIL = 0 ] || { printf '  failed: %s\n' "${FAILED[@]}"; exit 1; }
