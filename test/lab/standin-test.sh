#!/usr/bin/env bash
# test/lab/standin-test.sh — version matrix for the stand-ins (kube-apiserver, then
# kube-controller-manager and kube-scheduler), run on this machine (no lab needed; needs
# python3, python3-yaml, openssl). Start-up checks only: every case must fail (exit 1)
# with the given message, or get past all checks (the apiserver then stops at "etcd
# unreachable": K8SMI_STANDIN_ETCD_TIMEOUT=0, port 2999 on 127.0.0.1; the controller-manager
# and scheduler at their first leader-election attempt against https://127.0.0.1:2999:
# K8SMI_STANDIN_LE_ATTEMPTS=1).
set -uo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# The real start-up time (5 s to /readyz) is not what this matrix checks: quick here.
export K8SMI_STANDIN_READY_SECONDS=${K8SMI_STANDIN_READY_SECONDS:-1}
S="$HERE/standin/kube-apiserver"
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
PASS=0 FAIL=0

# files: a CA, a serving/client cert, SA keys, configs
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$W/ca-key.pem" -out "$W/ca.pem" -subj /CN=t-ca -days 2 2>/dev/null
openssl req -newkey rsa:2048 -nodes -keyout "$W/k-key.pem" -out "$W/k.csr" -subj /CN=kubernetes 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n' >"$W/ext"
openssl x509 -req -in "$W/k.csr" -CA "$W/ca.pem" -CAkey "$W/ca-key.pem" -CAcreateserial -out "$W/k.pem" -days 2 -extfile "$W/ext" 2>/dev/null
openssl genrsa -out "$W/sa.key" 2048 2>/dev/null
openssl rsa -in "$W/sa.key" -pubout -out "$W/sa.pub" 2>/dev/null
KEY=$(head -c 32 /dev/urandom | base64)
enc() { # FILE APIVERSION KIND SECRET [EXTRA_LINE]
  printf 'apiVersion: %s\nkind: %s\nresources:\n  - resources: [secrets]\n    providers:\n      - aescbc:\n          keys:\n            - name: key1\n              secret: %s\n%b      - identity: {}\n' \
    "$2" "$3" "$4" "${5:-}" >"$1"
}
enc "$W/enc-new.yaml" apiserver.config.k8s.io/v1 EncryptionConfiguration "$KEY"
enc "$W/enc-legacy.yaml" v1 EncryptionConfig "$KEY"
enc "$W/enc-unknown.yaml" apiserver.config.k8s.io/v1 EncryptionConfiguration "$KEY" "          foo: bar\n"
enc "$W/enc-empty.yaml" apiserver.config.k8s.io/v1 EncryptionConfiguration ""
enc "$W/enc-bad.yaml" apiserver.config.k8s.io/v1 EncryptionConfiguration 'abc$def'
enc "$W/enc-legacy-bad.yaml" v1 EncryptionConfig 'abc$def'
printf 'apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Metadata\n' >"$W/audit-v1.yaml"
printf 'apiVersion: audit.k8s.io/v1beta1\nkind: Policy\nrules:\n- level: Metadata\n' >"$W/audit-v1beta1.yaml"
printf 'apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Loud\n' >"$W/audit-badlevel.yaml"

PORT=$((20000 + RANDOM % 20000))
base() { # common flags; SA flags only from 1.20
  local v=$1
  echo "--advertise-address=127.0.0.1 --bind-address=127.0.0.1 --secure-port=$PORT --etcd-servers=https://127.0.0.1:2999
    --etcd-cafile=$W/ca.pem --etcd-certfile=$W/k.pem --etcd-keyfile=$W/k-key.pem --tls-cert-file=$W/k.pem
    --tls-private-key-file=$W/k-key.pem --client-ca-file=$W/ca.pem --service-cluster-ip-range=10.254.0.0/16"
  [ "$(echo "$v" | cut -d. -f2)" -ge 20 ] && echo "--service-account-key-file=$W/sa.pub --service-account-signing-key-file=$W/sa.key --service-account-issuer=https://kubernetes.default.svc"
}
# case VERSION "extra flags" "expected substring" (expected "START" = got past all checks)
case_() {
  local v=$1 extra=$2 want=$3 out rc
  # before 1.20 start-up errors are printed as "Error: ..." (no klog quoting of \")
  [ "$(echo "$v" | cut -d. -f2)" -lt 20 ] && want=${want//\\\"/\"}
  # shellcheck disable=SC2046
  out=$(cd "$W" && K8SMI_STANDIN_VERSION=$v K8SMI_STANDIN_ETCD_TIMEOUT=0 timeout 20 python3 "$S" $(base "$v") $extra 2>&1)
  rc=$?
  if [ "$want" = START ]; then
    if { [ $rc = 1 ] || [ $rc = 255 ]; } && grep -q 'context deadline exceeded\|Unable to create storage backend' <<<"$out"; then
      PASS=$((PASS + 1)); echo "  ok   $v ${extra:-(base)} -> starts (stops at etcd)"
      return
    fi
  elif [ $rc = 1 ] && grep -qF -- "$want" <<<"$out"; then
    PASS=$((PASS + 1)); echo "  ok   $v ${extra} -> $want"
    return
  fi
  FAIL=$((FAIL + 1)); echo "  FAIL $v ${extra} (rc=$rc) want: $want"; grep -v FLAG <<<"$out" | tail -3 | sed 's/^/       | /'
}

for v in v1.14.2 v1.18.20 v1.19.16 v1.20.15 v1.22.17 v1.23.17 v1.24.17 v1.26.15 v1.28.7 v1.30.14 v1.31.4; do
  m=$(echo "$v" | cut -d. -f2)
  case_ $v "--encryption-provider-config=$W/enc-new.yaml --audit-policy-file=$W/audit-v1.yaml --audit-log-path=$W/audit.log" START
  # DynamicAuditing / --audit-dynamic-configuration
  if [ "$m" -ge 19 ]; then
    case_ $v "--feature-gates=DynamicAuditing=true" 'Error: invalid argument "DynamicAuditing=true" for "--feature-gates" flag: unrecognized feature gate: DynamicAuditing'
    case_ $v "--audit-dynamic-configuration" "Error: unknown flag: --audit-dynamic-configuration"
  else
    case_ $v "--feature-gates=DynamicAuditing=true --audit-dynamic-configuration" START
  fi
  # insecure port
  if [ "$m" -ge 24 ]; then
    case_ $v "--insecure-port=0" "Error: unknown flag: --insecure-port"
    case_ $v "--experimental-encryption-provider-config=$W/enc-new.yaml" "Error: unknown flag: --experimental-encryption-provider-config"
  elif [ "$m" -ge 20 ]; then
    case_ $v "--insecure-port=0" START
    case_ $v "--insecure-port=8080" "invalid port value 8080: only zero is allowed"
  else
    case_ $v "--insecure-port=0 --experimental-encryption-provider-config=$W/enc-new.yaml" START
  fi
  [ "$m" -ge 22 ] && case_ $v "--kubelet-https=true" "Error: unknown flag: --kubelet-https"
  [ "$m" -lt 22 ] && case_ $v "--kubelet-https=true" START
  [ "$m" -ge 26 ] && case_ $v "--logtostderr=true" "Error: unknown flag: --logtostderr"
  [ "$m" -lt 26 ] && case_ $v "--logtostderr=true" START
  # service account flags
  if [ "$m" -ge 20 ]; then
    out_flags="--service-account-key-file=$W/ca.pem"
    # shellcheck disable=SC2046
    o=$(cd "$W" && K8SMI_STANDIN_VERSION=$v python3 "$S" --advertise-address=127.0.0.1 --etcd-servers=https://127.0.0.1:2999 $out_flags 2>&1)
    if grep -qF 'service-account-issuer is a required flag, --service-account-signing-key-file and --service-account-issuer are required flags' <<<"$o"; then
      PASS=$((PASS + 1)); echo "  ok   $v without --service-account-issuer -> required flags"
    else FAIL=$((FAIL + 1)); echo "  FAIL $v without SA issuer: $(tail -1 <<<"$o")"; fi
  fi
  # audit policy
  if [ "$m" -ge 24 ]; then
    case_ $v "--audit-policy-file=$W/audit-v1beta1.yaml" 'loading audit policy file: failed decoding: no kind \"Policy\" is registered for version \"audit.k8s.io/v1beta1\"'
  else
    case_ $v "--audit-policy-file=$W/audit-v1beta1.yaml" START
  fi
  case_ $v "--audit-policy-file=$W/audit-badlevel.yaml" 'rules[0].level: Unsupported value: \"Loud\"'
  case_ $v "--audit-policy-file=$W/nope.yaml" "open $W/nope.yaml: no such file or directory"
  # encryption config
  if [ "$m" -ge 31 ]; then
    case_ $v "--encryption-provider-config=$W/enc-legacy.yaml" 'no kind \"EncryptionConfig\" is registered for version \"v1\"'
    case_ $v "--encryption-provider-config=$W/enc-unknown.yaml" 'strict decoding error: unknown field \"resources[0].providers[0].aescbc.foo\"'
  else
    case_ $v "--encryption-provider-config=$W/enc-legacy.yaml" START
    case_ $v "--encryption-provider-config=$W/enc-unknown.yaml" START
  fi
  if [ "$m" -ge 17 ]; then
    case_ $v "--encryption-provider-config=$W/enc-empty.yaml" 'resources[0].providers[0].aescbc.keys[0].secret: Required value: secret is a mandatory field for a key'
    case_ $v "--encryption-provider-config=$W/enc-bad.yaml" 'resources[0].providers[0].aescbc.keys[0].secret: Invalid value: \"REDACTED\": secrets must be base64 encoded'
  else
    case_ $v "--encryption-provider-config=$W/enc-empty.yaml" 'key key1 has no provided secret'
    case_ $v "--encryption-provider-config=$W/enc-legacy-bad.yaml" 'could not obtain secret for named key key1: illegal base64 data at input byte 3'
  fi
  case_ $v "--encryption-provider-config=$W/nope.yaml" "error opening encryption provider configuration file \\\"$W/nope.yaml\\\""
  # files
  case_ $v "--tls-private-key-file=$W/sa.key" "tls: private key does not match public key"
  case_ $v "--client-ca-file=$W/nope.pem" "open $W/nope.pem: no such file or directory"
  case_ $v "--requestheader-client-ca-file=$W/k-key.pem" "data does not contain any valid RSA or ECDSA certificates"
  case_ $v "--kubelet-client-certificate=$W/k.pem --kubelet-client-key=$W/nope-key.pem" "open $W/nope-key.pem: no such file or directory"
  case_ $v "--proxy-client-cert-file=$W/nope.pem --proxy-client-key-file=$W/k-key.pem" "open $W/nope.pem: no such file or directory"
  case_ $v "--etcd-cafile=$W/nope-ca.pem" "open $W/nope-ca.pem: no such file or directory"
  case_ $v "--no-such-flag" "Error: unknown flag: --no-such-flag"
  case_ $v "--anonymous-auth=maybe" 'Error: invalid argument "maybe" for "--anonymous-auth" flag: strconv.ParseBool: parsing "maybe": invalid syntax'
  case_ $v "--event-ttl=1week" 'Error: invalid argument "1week" for "--event-ttl" flag: time: unknown unit "week" in duration "1week"'
  case_ $v "--enable-admission-plugins=NodeRestriction,NoSuchPlugin" 'enable-admission-plugins plugin \"NoSuchPlugin\" is unknown'
  case_ $v "--authorization-mode=Node,RBAC,Magic" 'authorization-mode \"Magic\" is not a valid mode'
done
# the busy-loop warning (1.28 batch audit without max wait)
o=$(cd "$W" && K8SMI_STANDIN_VERSION=v1.28.7 K8SMI_STANDIN_ETCD_TIMEOUT=0 python3 "$S" $(base v1.28.7) --audit-policy-file="$W/audit-v1.yaml" --audit-log-path="$W/a.log" --audit-log-mode=batch 2>&1)
if grep -q 'busy-loops' <<<"$o"; then PASS=$((PASS + 1)); echo "  ok   v1.28.7 batch audit without --audit-log-batch-max-wait -> busy-loop warning"; else FAIL=$((FAIL + 1)); echo "  FAIL busy-loop warning"; fi
# no default route and no --advertise-address
o=$(cd "$W" && K8SMI_STANDIN_VERSION=v1.28.7 unshare -n python3 "$S" --etcd-servers=https://127.0.0.1:2999 2>&1)
if grep -q 'unable to find suitable network address' <<<"$o"; then PASS=$((PASS + 1)); echo "  ok   no default route, no --advertise-address -> unable to find suitable network address"; else FAIL=$((FAIL + 1)); echo "  FAIL no default route: $(tail -1 <<<"$o")"; fi
o=$(K8SMI_STANDIN_VERSION=v1.28.7 python3 "$S" --version)
[ "$o" = "Kubernetes v1.28.7" ] && { PASS=$((PASS + 1)); echo "  ok   --version"; } || { FAIL=$((FAIL + 1)); echo "  FAIL --version: $o"; }

# ---------------------------------------------------------------------------------------
# kube-controller-manager / kube-scheduler stand-in: flag tables, --config versions, files.
# START = got past every start-up check and began leader election against an unreachable
# apiserver (K8SMI_STANDIN_LE_ATTEMPTS=1: gives up after the first attempt, exit 3).
CS="$HERE/standin/kube-controller-manager-and-scheduler"
openssl req -newkey rsa:2048 -nodes -keyout "$W/cm-key.pem" -out "$W/cm.csr" -subj "/CN=system:kube-controller-manager/O=system:kube-controller-manager" 2>/dev/null
openssl x509 -req -in "$W/cm.csr" -CA "$W/ca.pem" -CAkey "$W/ca-key.pem" -CAcreateserial -out "$W/cm.pem" -days 2 -extfile "$W/ext" 2>/dev/null
kc() { # OUT CERT KEY [SERVER]
  printf 'apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: %s\n    certificate-authority-data: %s\nusers:\n- name: u\n  user:\n    client-certificate-data: %s\n    client-key-data: %s\ncontexts:\n- name: x\n  context: {cluster: c, user: u}\ncurrent-context: x\n' \
    "${4:-https://127.0.0.1:2999}" "$(base64 -w0 "$W/ca.pem")" "$(base64 -w0 "$2")" "$(base64 -w0 "$3")" >"$1"
}
kc "$W/cm.kubeconfig" "$W/cm.pem" "$W/cm-key.pem"
kc "$W/cm-mismatch.kubeconfig" "$W/cm.pem" "$W/k-key.pem"
printf 'apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:2999\n    certificate-authority: %s/nope-ca.pem\nusers:\n- name: u\n  user:\n    client-certificate: %s/cm.pem\n    client-key: %s/cm-key.pem\ncontexts:\n- name: x\n  context: {cluster: c, user: u}\ncurrent-context: x\n' "$W" "$W" "$W" >"$W/cm-noca.kubeconfig"
for v in v1alpha1 v1alpha2 v1beta1 v1beta2 v1beta3 v1; do
  printf 'apiVersion: kubescheduler.config.k8s.io/%s\nkind: KubeSchedulerConfiguration\nclientConnection:\n  kubeconfig: %s\nleaderElection:\n  leaderElect: true\n' "$v" "$W/cm.kubeconfig" >"$W/sched-$v.yaml"
done
cp "$W/sched-v1.yaml" "$W/sched-v1-extra.yaml"; echo "healthzBindAddress: 0.0.0.0:10251" >>"$W/sched-v1-extra.yaml"
sed 's/KubeSchedulerConfiguration/KubeProxyConfiguration/' "$W/sched-v1.yaml" >"$W/sched-wrongkind.yaml"
SPORT0=$((20000 + RANDOM % 20000))
cbase() { # COMPONENT VERSION: flags every case starts from (the tutorial's, minus what the case tests)
  local m; m=$(echo "$2" | cut -d. -f2)
  # versions run in parallel: insecure ports (on by default before 1.22) per version, not 10251/10252
  [ "$m" -lt 22 ] && echo "--address=127.0.0.1 --port=$((SPORT + 1))"
  echo "--kubeconfig=$W/cm.kubeconfig --authentication-kubeconfig=$W/cm.kubeconfig --authorization-kubeconfig=$W/cm.kubeconfig
    --bind-address=127.0.0.1 --secure-port=$SPORT --tls-cert-file=$W/k.pem --tls-private-key-file=$W/k-key.pem
    --client-ca-file=$W/ca.pem --requestheader-client-ca-file=$W/ca.pem --requestheader-allowed-names=
    --requestheader-extra-headers-prefix=X-Remote-Extra- --requestheader-group-headers=X-Remote-Group
    --requestheader-username-headers=X-Remote-User --leader-elect --v=2"
  [ "$1" = kube-controller-manager ] && echo "--cluster-name=kubernetes --controllers=*,bootstrapsigner,tokencleaner
    --use-service-account-credentials --service-cluster-ip-range=10.254.0.0/16 --cluster-signing-cert-file=$W/ca.pem
    --cluster-signing-key-file=$W/ca-key.pem --root-ca-file=$W/ca.pem --service-account-private-key-file=$W/sa.key
    --kube-api-qps=1000 --kube-api-burst=2000 --concurrent-service-syncs=2 --node-cidr-mask-size=24 --terminated-pod-gc-threshold=10000"
}
# ccase COMPONENT VERSION "extra flags" WANT [NOBASE]
#   WANT: START, START:<substring of the first lock URL>, or an expected message (F:<msg> = klog.Fatal, exit 255)
ccase() {
  local c=$1 v=$2 extra=$3 want=$4 out rc m
  m=$(echo "$v" | cut -d. -f2)
  # before 1.24 start-up errors are a bare line (no klog quoting of \")
  [ "$m" -lt 24 ] && want=${want//\\\"/\"}
  # shellcheck disable=SC2046
  out=$(cd "$W" && K8SMI_STANDIN_COMPONENT=$c K8SMI_STANDIN_VERSION=$v K8SMI_STANDIN_LE_ATTEMPTS=1 timeout 20 python3 "$CS" $([ -z "${5:-}" ] && cbase "$c" "$v") $extra 2>&1)
  rc=$?
  local short=${c#kube-}; short=${short%-manager}
  case "$want" in
    START*)
      if [ $rc = 3 ] && grep -q 'error retrieving resource lock' <<<"$out" && { [ "$want" = START ] || grep -qF -- "${want#START:}" <<<"$out"; }; then
        PASS=$((PASS + 1)); echo "  ok   $short $v ${extra:-(base)} -> starts${want#START}"; return
      fi ;;
    F:*)
      if [ $rc = 255 ] && grep -qF -- "${want#F:}" <<<"$out"; then PASS=$((PASS + 1)); echo "  ok   $short $v $extra -> F ${want#F:}"; return; fi ;;
    *)
      if [ $rc = 1 ] && grep -qF -- "$want" <<<"$out"; then PASS=$((PASS + 1)); echo "  ok   $short $v $extra -> $want"; return; fi ;;
  esac
  FAIL=$((FAIL + 1)); echo "  FAIL $short $v ${extra} (rc=$rc) want: $want"; grep -v FLAG <<<"$out" | tail -3 | sed 's/^/       | /'
}
sched_cfg_for() { # the newest KubeSchedulerConfiguration a minor release knows
  local m=$1
  if [ "$m" -ge 25 ]; then echo v1; elif [ "$m" -ge 23 ]; then echo v1beta3; elif [ "$m" -ge 19 ]; then echo v1beta1; else echo v1alpha1; fi
}
CM=kube-controller-manager SC=kube-scheduler
matrix() { # VERSION: all cases of one release (runs in the background, prints its results)
  local v=$1 m good lockurl cv ok
  m=$(echo "$v" | cut -d. -f2)
  # ---- controller-manager
  if [ "$m" -lt 17 ]; then lockurl=/api/v1/namespaces/kube-system/endpoints/kube-controller-manager
  elif [ "$m" -lt 20 ]; then lockurl=/api/v1/namespaces/kube-system/endpoints/kube-controller-manager  # endpointsleases: Endpoints first
  else lockurl=/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/kube-controller-manager; fi
  ccase $CM $v "" "START:$lockurl"
  if [ "$m" -ge 24 ]; then
    ccase $CM $v "--port=0" "Error: unknown flag: --port"
    ccase $CM $v "--address=127.0.0.1" "Error: unknown flag: --address"
  else
    ccase $CM $v "--port=0 --address=127.0.0.1" START
  fi
  [ "$m" -ge 25 ] && ccase $CM $v "--experimental-cluster-signing-duration=876000h" "Error: unknown flag: --experimental-cluster-signing-duration"
  [ "$m" -lt 25 ] && ccase $CM $v "--experimental-cluster-signing-duration=876000h" START
  [ "$m" -ge 19 ] && ccase $CM $v "--cluster-signing-duration=876000h" START
  [ "$m" -lt 19 ] && ccase $CM $v "--cluster-signing-duration=876000h" "Error: unknown flag: --cluster-signing-duration"
  [ "$m" -ge 27 ] && ccase $CM $v "--pod-eviction-timeout=6m" "Error: unknown flag: --pod-eviction-timeout"
  [ "$m" -lt 27 ] && ccase $CM $v "--pod-eviction-timeout=6m --horizontal-pod-autoscaler-sync-period=10s --concurrent-deployment-syncs=10 --concurrent-gc-syncs=30" START
  [ "$m" -ge 26 ] && ccase $CM $v "--logtostderr=true" "Error: unknown flag: --logtostderr"
  [ "$m" -lt 26 ] && ccase $CM $v "--logtostderr=true" START
  ccase $CM $v "--controllers=*,bootstrapsigner,nosuchcontroller" '\"nosuchcontroller\" is not in the list of known controllers'
  if [ "$m" -ge 24 ]; then
    ccase $CM $v "--leader-elect-resource-lock=endpoints" "F:error creating lock: endpoints lock is removed, migrate to endpointsleases"
  else
    ccase $CM $v "--leader-elect-resource-lock=endpoints" START:/api/v1/namespaces/kube-system/endpoints/kube-controller-manager
  fi
  ccase $CM $v "--leader-elect-resource-lock=leases" START:/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/kube-controller-manager
  ccase $CM $v "--leader-elect-lease-duration=5s" 'LeaseDuration must be greater than RenewDeadline'
  ccase $CM $v "--kubeconfig=$W/nope.kubeconfig" "stat $W/nope.kubeconfig: no such file or directory"
  ccase $CM $v "--kubeconfig=$W/cm-mismatch.kubeconfig" "tls: private key does not match public key"
  ccase $CM $v "--kubeconfig=$W/cm-noca.kubeconfig" "invalid configuration: unable to read certificate-authority $W/nope-ca.pem for c due to open $W/nope-ca.pem: no such file or directory"
  ccase $CM $v "--tls-private-key-file=$W/sa.key" "tls: private key does not match public key"
  ccase $CM $v "--client-ca-file=$W/nope.pem" "unable to load client CA provider: open $W/nope.pem: no such file or directory"
  ccase $CM $v "--secure-port=0 --leader-elect" "unable to load in-cluster configuration, KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT must be defined" nobase
  ccase $CM $v "--no-such-flag" "Error: unknown flag: --no-such-flag"
  # ---- scheduler
  good=$(sched_cfg_for "$m")
  if [ "$m" -lt 17 ]; then lockurl=/api/v1/namespaces/kube-system/endpoints/kube-scheduler
  elif [ "$m" -lt 20 ]; then lockurl=/api/v1/namespaces/kube-system/endpoints/kube-scheduler
  else lockurl=/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/kube-scheduler; fi
  ccase $SC $v "--config=$W/sched-$good.yaml" "START:$lockurl"
  ccase $SC $v "" "START:$lockurl"   # --kubeconfig without --config
  for cv in v1alpha1 v1alpha2 v1beta1 v1beta2 v1beta3 v1; do
    case $cv in
      v1alpha1) ok=$([ "$m" -ge 12 ] && [ "$m" -lt 19 ] && echo y) ;; v1alpha2) ok=$([ "$m" = 18 ] && echo y) ;;
      v1beta1) ok=$([ "$m" -ge 19 ] && [ "$m" -lt 23 ] && echo y) ;; v1beta2) ok=$([ "$m" -ge 22 ] && [ "$m" -lt 28 ] && echo y) ;;
      v1beta3) ok=$([ "$m" -ge 23 ] && [ "$m" -lt 29 ] && echo y) ;; v1) ok=$([ "$m" -ge 25 ] && echo y) ;;
    esac
    [ "$cv" = "$good" ] && continue
    if [ "$ok" = y ]; then ccase $SC $v "--config=$W/sched-$cv.yaml" START
    else ccase $SC $v "--config=$W/sched-$cv.yaml" "no kind \\\"KubeSchedulerConfiguration\\\" is registered for version \\\"kubescheduler.config.k8s.io/$cv\\\""; fi
  done
  ccase $SC $v "--config=$W/sched-wrongkind.yaml" "no kind \\\"KubeProxyConfiguration\\\" is registered for version \\\"kubescheduler.config.k8s.io/v1\\\""
  ccase $SC $v "--config=$W/nope.yaml" "open $W/nope.yaml: no such file or directory"
  [ "$m" -ge 25 ] && ccase $SC $v "--config=$W/sched-v1-extra.yaml" 'strict decoding error: unknown field \"healthzBindAddress\"'
  if [ "$m" -ge 24 ]; then
    ccase $SC $v "--port=0" "Error: unknown flag: --port"
  elif [ "$m" -ge 22 ]; then
    ccase $SC $v "--port=0 --address=127.0.0.1" START
    ccase $SC $v "--port=10251" "port: Required value: invalid port value 10251: only zero is allowed"
  else
    ccase $SC $v "--port=$((SPORT + 1)) --address=127.0.0.1" START
  fi
  [ "$m" -ge 26 ] && ccase $SC $v "--logtostderr=true" "Error: unknown flag: --logtostderr"
  [ "$m" -lt 26 ] && ccase $SC $v "--logtostderr=true" START
  [ "$m" -ge 23 ] && ccase $SC $v "--policy-config-file=$W/policy.json" "Error: unknown flag: --policy-config-file"
  ccase $SC $v "--secure-port=0 --leader-elect" "unable to load in-cluster configuration" nobase
  echo "RESULT $PASS $FAIL"
}
VERSIONS=(v1.14.2 v1.16.15 v1.18.20 v1.19.16 v1.20.15 v1.22.17 v1.23.17 v1.24.17 v1.25.16 v1.26.15 v1.27.16 v1.28.7 v1.29.10 v1.30.14)
n=0
for v in "${VERSIONS[@]}"; do
  SPORT=$((SPORT0 + n * 4)) PASS=0 FAIL=0 matrix "$v" >"$W/matrix-$v.log" 2>&1 &
  n=$((n + 1))
  [ $((n % 4)) = 0 ] && wait
done
wait
for v in "${VERSIONS[@]}"; do
  grep -v '^RESULT ' "$W/matrix-$v.log"
  read -r _ p f < <(grep '^RESULT ' "$W/matrix-$v.log" || echo "RESULT 0 1")
  PASS=$((PASS + p)) FAIL=$((FAIL + f))
done
# ---- version skew: a controller-manager or scheduler newer (minor) than an apiserver it talks to refuses to run.
# A stand-in for kube-nginx in front of apiservers of these releases: each connection's /version is the next one's;
# anything else 503 (the leader election then gives up: START).
versions_server() { # PORT VERSION...
  python3 - "$W" "$@" >/dev/null 2>&1 <<'PY' &
import http.server, itertools, json, ssl, sys, threading
w, port, versions, lock = sys.argv[1], int(sys.argv[2]), itertools.cycle(sys.argv[3:]), threading.Lock()
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/version":
            with lock:
                body, code = json.dumps({"gitVersion": next(versions)}).encode(), 200
        else:
            body, code = b'{"kind":"Status","code":503,"message":"not this stand-in"}', 503
        self.send_response(code); self.send_header("Content-Type", "application/json"); self.send_header("Content-Length", str(len(body)))
        self.end_headers(); self.wfile.write(body)
    def log_message(self, *args): pass
server = http.server.ThreadingHTTPServer(("127.0.0.1", port), H)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); context.load_cert_chain(w + "/k.pem", w + "/k-key.pem")
server.socket = context.wrap_socket(server.socket, server_side=True)
server.serve_forever()
PY
  echo $!
}
skew_case() { # COMPONENT VERSION "APISERVER VERSIONS" WANT(START | message)
  local c=$1 v=$2 port=$((SPORT0 + 200 + RANDOM % 1000)) pid out rc
  # shellcheck disable=SC2086
  pid=$(versions_server "$port" $3)
  for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
  kc "$W/skew-$port.kubeconfig" "$W/cm.pem" "$W/cm-key.pem" "https://127.0.0.1:$port"
  SPORT=$((port + 1))
  # shellcheck disable=SC2046
  out=$(cd "$W" && K8SMI_STANDIN_COMPONENT=$c K8SMI_STANDIN_VERSION=$v K8SMI_STANDIN_LE_ATTEMPTS=1 timeout 20 python3 "$CS" $(cbase "$c" "$v") --kubeconfig="$W/skew-$port.kubeconfig" 2>&1)
  rc=$?
  kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
  if { [ "$4" = START ] && [ $rc = 3 ]; } || { [ "$4" != START ] && [ $rc = 1 ] && grep -qF -- "$4" <<<"$out"; }; then
    PASS=$((PASS + 1)); echo "  ok   skew ${c#kube-} $v, apiservers $3 -> $4"
  else
    FAIL=$((FAIL + 1)); echo "  FAIL skew ${c#kube-} $v, apiservers $3 (rc=$rc) want: $4"; tail -3 <<<"$out" | sed 's/^/       | /'
  fi
}
skew_case $CM v1.29.2 "v1.29.2 v1.29.0 v1.30.1" START
skew_case $CM v1.29.2 "v1.28.7" "kube-controller-manager v1.29.2 is newer than the kube-apiserver it talks to (v1.28.7"
# Round robin: the one older apiserver among three is found at start.
skew_case $SC v1.29.2 "v1.29.2 v1.29.2 v1.28.7" "kube-scheduler v1.29.2 is newer than the kube-apiserver it talks to (v1.28.7"
skew_case $SC v1.28.9 "v1.28.7 v1.29.2" START
for c in $CM $SC; do
  o=$(K8SMI_STANDIN_COMPONENT=$c K8SMI_STANDIN_VERSION=v1.28.7 python3 "$CS" --version)
  [ "$o" = "Kubernetes v1.28.7" ] && { PASS=$((PASS + 1)); echo "  ok   $c --version"; } || { FAIL=$((FAIL + 1)); echo "  FAIL $c --version: $o"; }
done
echo "== standin-test: $PASS passed, $FAIL failed"
[ $FAIL = 0 ]
