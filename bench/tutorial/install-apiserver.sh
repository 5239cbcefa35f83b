#!/usr/bin/env bash
# bench/tutorial/install-apiserver.sh LAB_JSON TARBALL WORKDIR
#
# The kube-apiserver chapter of the opsnull "follow-me-install-kubernetes-cluster" tutorial
# (Kubernetes v1.14.2; the k8smaster01/172.24.8.71-73 edition in
# /work/shared/reference/000_9c84ef59701ce917.txt) AS WRITTEN, as a script, run against the
# project's test lab (test/lab/README.md), for the benchmark of issue 7. Its steps in its
# order (numbers below are the tutorial's sections), its `for master_ip in ${MASTER_IPS[@]}`
# loops with one plain `ssh root@ip` / `scp` per command (no connection sharing), cfssl +
# cfssljson from Debian's golang-cfssl (/usr/bin/cfssl, /usr/bin/cfssljson), and its checks.
#
#   LAB_JSON  the lab's lab.json (default lab: /run/k8smi-lab/lab.json)
#   TARBALL   kubernetes-server-linux-amd64.tar.gz (the lab's v1.14.2 stand-in)
#   WORKDIR   the tutorial's /opt/k8s/work: an empty directory the caller made
#
# Like the tutorial, nothing stops on a failure: every step runs whatever happened before.
# Exit status: 0 when it ran to the end AND, after a short wait (FINAL_WAIT seconds,
# default 2, included in the wall time), `systemctl is-active kube-apiserver` says `active`
# on every master; 1 if any master's kube-apiserver is not active then (so a benchmark
# knows the install worked); 2 for bad arguments. Needs: root, the lab up,
# `bash test/lab/lab.sh deps` (etcdctl, Debian's kubectl) and `bash bench/tutorial/deps.sh`
# (golang-cfssl). Between runs: `bash bench/tutorial/reset-masters.sh LAB_JSON`.
#
# ADAPTATIONS (everything else is the tutorial's text; only what the lab forces):
#  A1. Control machine. The tutorial works as root on k8smaster01 in /opt/k8s/work with
#      /opt/k8s/bin/environment.sh. Here the control machine is this machine (the lab's
#      bridge host, not a master): `cd /opt/k8s/work` is `cd $WORKDIR`, and
#      `source /opt/k8s/bin/environment.sh` is `source $WORKDIR/bin/environment.sh`
#      ($WORKDIR/bin stands for this machine's /opt/k8s/bin, which is left alone).
#  A2. environment.sh written for the lab: MASTER_IPS / MASTER_NAMES from lab.json
#      (172.24.8.71-73, k8smaster01-03: the tutorial's), ETCD_ENDPOINTS from lab.json
#      (the lab's 3-member etcd, https://172.24.8.7x:2379), SERVICE_CIDR 10.254.0.0/16,
#      CLUSTER_KUBERNETES_SVC_IP 10.254.0.1, NODE_PORT_RANGE 30000-32767,
#      K8S_DIR /data/k8s/k8s, KUBE_APISERVER https://172.24.8.71:6443 (see A7), PATH with
#      $WORKDIR/bin first, and ENCRYPTION_KEY made ONCE per run by
#      `head -c 32 /dev/urandom | base64` and written into the file as a literal (the
#      tutorial's file has `$(head -c 32 /dev/urandom | base64)`, which makes a new key at
#      every `source`; only the one in encryption-config.yaml counts either way).
#  A3. ssh/scp: the lab's identity and known_hosts. A generated ssh config
#      ($WORKDIR/ssh_config: IdentityFile, UserKnownHostsFile from lab.json,
#      StrictHostKeyChecking yes, BatchMode yes, ControlMaster no / ControlPath none) is
#      passed as `-F` by two shell functions `ssh` and `scp`, so the loops keep the
#      tutorial's words `ssh root@${master_ip} "..."` / `scp ... root@${master_ip}:...`.
#  A4. 1.2: there is no network: `wget https://dl.k8s.io/v1.14.2/kubernetes-server-linux-amd64.tar.gz`
#      is `cp TARBALL kubernetes-server-linux-amd64.tar.gz`. Then the tutorial's
#      `tar -xzvf` of it and of kubernetes/kubernetes-src.tar.gz. The lab's tarball is a
#      stand-in (stand-in kube-apiserver that takes exactly the v1.14 flags; kubectl is
#      Debian's 1.20; the other binaries are placeholders).
#  A5. Earlier chapters' state that this chapter uses and that reset-masters.sh removes,
#      made here first (section "0" below):
#      - CA chapter: the cluster CA is the lab CA ($LAB_DIR/ca.pem + ca-key.pem, which
#        etcd trusts), copied into $WORKDIR instead of `cfssl gencert -initca`; that
#        chapter's ca-config.json (profile "kubernetes", 87600h) written as it writes
#        it; and its distribution loop `mkdir -p /etc/kubernetes/cert` +
#        `scp ca*.pem ca-config.json` to every master (the unit needs
#        /etc/kubernetes/cert/ca.pem).
#      - kubectl chapter: the admin kubeconfig. The lab provides the admin client cert
#        ($LAB_DIR/pki/admin.pem, O=system:masters) instead of cfssl making one, and the
#        kubeconfig (certs embedded, as `--embed-certs=true`) is written by hand: Debian's
#        kubectl 1.20 panics in `kubectl config set-credentials`. It is
#        $WORKDIR/kubectl.kubeconfig via KUBECONFIG instead of ~/.kube/config (this
#        machine's own config is left alone). kubectl is the lab's Debian kubectl
#        (`bash test/lab/lab.sh kubectl-path`), linked as $WORKDIR/bin/kubectl.
#      - The proxy-client (aggregator) cert is made with cfssl by this chapter's own 2.8.
#  A6. 3.3: etcdctl is this machine's /usr/bin/etcdctl (on the hosts too it is
#      /usr/bin/etcdctl, not /opt/k8s/bin); its client cert is the lab's
#      ($LAB_DIR/pki/etcd-client.pem) instead of the etcd chapter's /opt/k8s/work/etcd.pem;
#      --cacert is $WORKDIR/ca.pem (the lab CA) as written.
#  A7. 3.4: kubectl runs on this machine, which has no kube-nginx (127.0.0.1:8443), so the
#      kubeconfig's server is the first master, https://172.24.8.71:6443.
#      `sudo netstat -lnpt|grep kube` is meant for k8smaster01 itself and the hosts have no
#      net-tools: it is `ssh root@${MASTER_IPS[0]} "ss -lnpt|grep kube"`.
#  A8. The end: after the tutorial's last command (3.5), FINAL_WAIT seconds, then one
#      `systemctl is-active kube-apiserver` per master, and the exit status above.
#      Lines `=== ...` mark the sections with the seconds since the start.
#
# Not adapted: the csr json and SANs (the lab's IPs are the tutorial's), the encryption
# config (apiVersion v1 / EncryptionConfig), the v1beta1 audit policy, the unit template
# with ##MASTER_IP## (and ##MASTER_NAME##) replaced by sed per master, Type=notify, the
# order daemon-reload / enable / restart per master, the checks.

if [ $# -ne 3 ]; then
  echo "usage: $0 LAB_JSON TARBALL WORKDIR" >&2
  exit 2
fi
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
LAB_JSON=$(realpath -e "$1") || { echo "no such lab.json: $1" >&2; exit 2; }
TARBALL=$(realpath -e "$2") || { echo "no such tarball: $2" >&2; exit 2; }
[ -d "$3" ] || { echo "WORKDIR $3 is not a directory (the caller creates it)" >&2; exit 2; }
WORKDIR=$(realpath -e "$3")
FINAL_WAIT=${FINAL_WAIT:-2}

T0=$(date +%s.%N)
section() { echo "=== $* ($(awk -v a="$T0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')s)"; }

# ----------------------------------------------------------------------------- lab (A1-A3)
eval "$(python3 - "$LAB_JSON" <<'PY'
import json, shlex, sys
lab = json.load(open(sys.argv[1]))
q = shlex.quote
print("LAB_IPS=(%s)" % " ".join(q(h["ip"]) for h in lab["hosts"]))
print("LAB_NAMES=(%s)" % " ".join(q(h["name"]) for h in lab["hosts"]))
s = lab["ssh"]
print("LAB_SSH_PORT=%s LAB_SSH_KEY=%s LAB_KNOWN_HOSTS=%s" % (q(str(s["port"])), q(s["identityFile"]), q(s["knownHostsFile"])))
print("LAB_CA=%s LAB_CA_KEY=%s" % (q(lab["ca"]["certFile"]), q(lab["ca"]["keyFile"])))
e = lab["etcd"]
print("LAB_ETCD_ENDPOINTS=%s LAB_ETCD_CERT=%s LAB_ETCD_KEY=%s" % (q(",".join(e["endpoints"])), q(e["certFile"]), q(e["keyFile"])))
print("LAB_ADMIN_CERT=%s LAB_ADMIN_KEY=%s" % (q(lab["admin"]["certFile"]), q(lab["admin"]["keyFile"])))
PY
)" || { echo "cannot read $LAB_JSON" >&2; exit 2; }
KUBECTL_BIN=${KUBECTL:-$(bash "$HERE/../../test/lab/lab.sh" kubectl-path)} || { echo "no Debian kubectl: run test/lab/lab.sh deps" >&2; exit 2; }

mkdir -p "$WORKDIR/bin"
ln -sf "$KUBECTL_BIN" "$WORKDIR/bin/kubectl"

cat > "$WORKDIR/ssh_config" <<EOF
Host *
  Port $LAB_SSH_PORT
  IdentityFile $LAB_SSH_KEY
  IdentitiesOnly yes
  UserKnownHostsFile $LAB_KNOWN_HOSTS
  GlobalKnownHostsFile /dev/null
  StrictHostKeyChecking yes
  BatchMode yes
  ControlMaster no
  ControlPath none
  ConnectTimeout 10
  LogLevel ERROR
EOF
ssh() { command ssh -F "$WORKDIR/ssh_config" "$@"; }
scp() { command scp -F "$WORKDIR/ssh_config" "$@"; }

cat > "$WORKDIR/bin/environment.sh" <<EOF
#!/usr/bin/bash
# The tutorial's /opt/k8s/bin/environment.sh, written for the lab (what this chapter uses).
export ENCRYPTION_KEY="$(head -c 32 /dev/urandom | base64)"
export MASTER_IPS=(${LAB_IPS[*]})
export MASTER_NAMES=(${LAB_NAMES[*]})
export ETCD_ENDPOINTS="$LAB_ETCD_ENDPOINTS"
export KUBE_APISERVER="https://${LAB_IPS[0]}:6443"
export K8S_DIR="/data/k8s/k8s"
export SERVICE_CIDR="10.254.0.0/16"
export NODE_PORT_RANGE="30000-32767"
export CLUSTER_KUBERNETES_SVC_IP="10.254.0.1"
export PATH=$WORKDIR/bin:\$PATH
EOF

# ------------------------------------------------- 0. earlier chapters' state (A5)
section "0 CA (lab CA), ca-config.json, CA distribution; admin kubeconfig"
cd "$WORKDIR"
cp "$LAB_CA" ca.pem
cp "$LAB_CA_KEY" ca-key.pem
cat > ca-config.json <<EOF
{
  "signing": {
    "default": {
      "expiry": "87600h"
    },
    "profiles": {
      "kubernetes": {
        "usages": [
            "signing",
            "key encipherment",
            "server auth",
            "client auth"
        ],
        "expiry": "87600h"
      }
    }
  }
}
EOF
source "$WORKDIR/bin/environment.sh"
for master_ip in ${MASTER_IPS[@]}
  do
    echo ">>> ${master_ip}"
    ssh root@${master_ip} "mkdir -p /etc/kubernetes/cert"
    scp ca*.pem ca-config.json root@${master_ip}:/etc/kubernetes/cert
  done

cat > kubectl.kubeconfig <<EOF
apiVersion: v1
kind: Config
clusters:
- cluster:
    certificate-authority-data: $(base64 -w0 ca.pem)
    server: ${KUBE_APISERVER}
  name: kubernetes
contexts:
- context:
    cluster: kubernetes
    user: admin
  name: kubernetes
current-context: kubernetes
preferences: {}
users:
- name: admin
  user:
    client-certificate-data: $(base64 -w0 "$LAB_ADMIN_CERT")
    client-key-data: $(base64 -w0 "$LAB_ADMIN_KEY")
EOF
export KUBECONFIG=$WORKDIR/kubectl.kubeconfig

# ------------------------------------------------------------- 1.2 install Kubernetes
section "1.2 install Kubernetes"
cd "$WORKDIR"
cp "$TARBALL" kubernetes-server-linux-amd64.tar.gz   # A4: instead of wget https://dl.k8s.io/v1.14.2/...
tar -xzvf kubernetes-server-linux-amd64.tar.gz
cd kubernetes
tar -xzvf kubernetes-src.tar.gz

# ---------------------------------------------------------- 1.3 distribute Kubernetes
section "1.3 distribute Kubernetes"
cd "$WORKDIR"
source "$WORKDIR/bin/environment.sh"
for master_ip in ${MASTER_IPS[@]}
  do
    echo ">>> ${master_ip}"
    scp kubernetes/server/bin/{apiextensions-apiserver,cloud-controller-manager,kube-apiserver,kube-controller-manager,kube-proxy,kube-scheduler,kubeadm,kubectl,kubelet,mounter} root@${master_ip}:/opt/k8s/bin/
    ssh root@${master_ip} "chmod +x /opt/k8s/bin/*"
  done

# ------------------------------------------- 2.2 create Kubernetes certificate and key
section "2.2 kubernetes certificate"
cd "$WORKDIR"
cat > kubernetes-csr.json <<EOF
{
  "CN": "kubernetes",
  "hosts": [
    "127.0.0.1",
    "172.24.8.71",
    "172.24.8.72",
    "172.24.8.73",
    "${CLUSTER_KUBERNETES_SVC_IP}",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster",
    "kubernetes.default.svc.cluster.local."
  ],
  "key": {
    "algo": "rsa",
    "size": 2048
  },
  "names": [
    {
      "C": "CN",
      "ST": "Shanghai",
      "L": "Shanghai",
      "O": "k8s",
      "OU": "System"
    }
  ]
}
EOF

cd "$WORKDIR"
cfssl gencert -ca="$WORKDIR/ca.pem" \
  -ca-key="$WORKDIR/ca-key.pem" -config="$WORKDIR/ca-config.json" \
  -profile=kubernetes kubernetes-csr.json | cfssljson -bare kubernetes

# ------------------------------------------- 2.3 distribute certificate and private key
section "2.3 distribute certificate and key"
cd "$WORKDIR"
source "$WORKDIR/bin/environment.sh"
for master_ip in ${MASTER_IPS[@]}
  do
    echo ">>> ${master_ip}"
    ssh root@${master_ip} "mkdir -p /etc/kubernetes/cert"
    scp kubernetes*.pem root@${master_ip}:/etc/kubernetes/cert/
  done

# ------------------------------------------------------ 2.4 create encryption profile
section "2.4 encryption config"
cd "$WORKDIR"
source "$WORKDIR/bin/environment.sh"
cat > encryption-config.yaml <<EOF
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

# -------------------------------------------------- 2.5 distribute encryption profile
section "2.5 distribute encryption config"
cd "$WORKDIR"
source "$WORKDIR/bin/environment.sh"
for master_ip in ${MASTER_IPS[@]}
  do
    echo ">>> ${master_ip}"
    scp encryption-config.yaml root@${master_ip}:/etc/kubernetes/
  done

# ------------------------------------------------------- 2.6 create audit policy file
section "2.6 audit policy"
cd "$WORKDIR"
source "$WORKDIR/bin/environment.sh"
cat > audit-policy.yaml <<EOF
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

  - level: None
    resources:
      - group: ""
        resources:
          - nodes
          - nodes/status
    userGroups:
      - 'system:nodes'
    verbs:
      - get

  - level: None
    namespaces:
      - kube-system
    resources:
      - group: ""
        resources:
          - endpoints
    users:
      - 'system:kube-controller-manager'
      - 'system:kube-scheduler'
      - 'system:serviceaccount:kube-system:endpoint-controller'
    verbs:
      - get
      - update

  - level: None
    resources:
      - group: ""
        resources:
          - namespaces
          - namespaces/status
          - namespaces/finalize
    users:
      - 'system:apiserver'
    verbs:
      - get

  # Don't log HPA fetching metrics.
  - level: None
    resources:
      - group: metrics.k8s.io
    users:
      - 'system:kube-controller-manager'
    verbs:
      - get
      - list

  # Don't log these read-only URLs.
  - level: None
    nonResourceURLs:
      - '/healthz*'
      - /version
      - '/swagger*'

  # Don't log events requests.
  - level: None
    resources:
      - group: ""
        resources:
          - events

  # node and pod status calls from nodes are high-volume and can be large, don't log responses for expected updates from nodes
  - level: Request
    omitStages:
      - RequestReceived
    resources:
      - group: ""
        resources:
          - nodes/status
          - pods/status
    users:
      - kubelet
      - 'system:node-problem-detector'
      - 'system:serviceaccount:kube-system:node-problem-detector'
    verbs:
      - update
      - patch

  - level: Request
    omitStages:
      - RequestReceived
    resources:
      - group: ""
        resources:
          - nodes/status
          - pods/status
    userGroups:
      - 'system:nodes'
    verbs:
      - update
      - patch

  # deletecollection calls can be large, don't log responses for expected namespace deletions
  - level: Request
    omitStages:
      - RequestReceived
    users:
      - 'system:serviceaccount:kube-system:namespace-controller'
    verbs:
      - deletecollection

  # Secrets, ConfigMaps, and TokenReviews can contain sensitive & binary data,
  # so only log at the Metadata level.
  - level: Metadata
    omitStages:
      - RequestReceived
    resources:
      - group: ""
        resources:
          - secrets
          - configmaps
      - group: authentication.k8s.io
        resources:
          - tokenreviews
  # Get repsonses can be large; skip them.
  - level: Request
    omitStages:
      - RequestReceived
    resources:
      - group: ""
      - group: admissionregistration.k8s.io
      - group: apiextensions.k8s.io
      - group: apiregistration.k8s.io
      - group: apps
      - group: authentication.k8s.io
      - group: authorization.k8s.io
      - group: autoscaling
      - group: batch
      - group: certificates.k8s.io
      - group: extensions
      - group: metrics.k8s.io
      - group: networking.k8s.io
      - group: policy
      - group: rbac.authorization.k8s.io
      - group: scheduling.k8s.io
      - group: settings.k8s.io
      - group: storage.k8s.io
    verbs:
      - get
      - list
      - watch

  # Default level for known APIs
  - level: RequestResponse
    omitStages:
      - RequestReceived
    resources:
      - group: ""
      - group: admissionregistration.k8s.io
      - group: apiextensions.k8s.io
      - group: apiregistration.k8s.io
      - group: apps
      - group: authentication.k8s.io
      - group: authorization.k8s.io
      - group: autoscaling
      - group: batch
      - group: certificates.k8s.io
      - group: extensions
      - group: metrics.k8s.io
      - group: networking.k8s.io
      - group: policy
      - group: rbac.authorization.k8s.io
      - group: scheduling.k8s.io
      - group: settings.k8s.io
      - group: storage.k8s.io

  # Default level for all other requests.
  - level: Metadata
    omitStages:
      - RequestReceived
EOF

# ------------------------------------------------------- 2.7 distribute audit policy
section "2.7 distribute audit policy"
cd "$WORKDIR"
source "$WORKDIR/bin/environment.sh"
for master_ip in ${MASTER_IPS[@]}
  do
    echo ">>> ${master_ip}"
    scp audit-policy.yaml root@${master_ip}:/etc/kubernetes/audit-policy.yaml
  done

# ------------------------- 2.8 create a certificate and key to access metrics server
section "2.8 proxy-client certificate"
cd "$WORKDIR"
cat > proxy-client-csr.json <<EOF
{
  "CN": "aggregator",
  "hosts": [],
  "key": {
    "algo": "rsa",
    "size": 2048
  },
  "names": [
    {
      "C": "CN",
      "ST": "Shanghai",
      "L": "Shanghai",
      "O": "k8s",
      "OU": "System"
    }
  ]
}
EOF

cd "$WORKDIR"
cfssl gencert -ca="$WORKDIR/ca.pem" \
  -ca-key="$WORKDIR/ca-key.pem" -config="$WORKDIR/ca-config.json" \
  -profile=kubernetes proxy-client-csr.json | cfssljson -bare proxy-client

# ------------------------------------------ 2.9 distribute certificate and private key
section "2.9 distribute proxy-client certificate"
cd "$WORKDIR"
source "$WORKDIR/bin/environment.sh"
for master_ip in ${MASTER_IPS[@]}
  do
    echo ">>> ${master_ip}"
    scp proxy-client*.pem root@${master_ip}:/etc/kubernetes/cert/
  done

# ----------------------------------------------- 2.10 create the kube-apiserver unit
section "2.10 unit template"
cd "$WORKDIR"
source "$WORKDIR/bin/environment.sh"
cat > kube-apiserver.service.template <<EOF
[Unit]
Description=Kubernetes API Server
Documentation=https://github.com/GoogleCloudPlatform/kubernetes
After=network.target

[Service]
WorkingDirectory=${K8S_DIR}/kube-apiserver
ExecStart=/opt/k8s/bin/kube-apiserver \\
  --advertise-address=##MASTER_IP## \\
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
  --bind-address=##MASTER_IP## \\
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
  --audit-log-path=${K8S_DIR}/kube-apiserver/audit.log \\
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
  --service-cluster-ip-range=${SERVICE_CIDR} \\
  --service-node-port-range=${NODE_PORT_RANGE} \\
  --logtostderr=true \\
  --v=2
Restart=on-failure
RestartSec=10
Type=notify
LimitNOFILE=65536

[Install]
WantedBy=multi-user.target
EOF

# --------------------------------------------------------- 2.11 distribute the units
section "2.11 distribute units"
cd "$WORKDIR"
source "$WORKDIR/bin/environment.sh"
for (( i=0; i < 3; i++ ))
  do
    sed -e "s/##MASTER_NAME##/${MASTER_NAMES[i]}/" -e "s/##MASTER_IP##/${MASTER_IPS[i]}/" kube-apiserver.service.template > kube-apiserver-${MASTER_IPS[i]}.service
  done
ls kube-apiserver*.service

cd "$WORKDIR"
source "$WORKDIR/bin/environment.sh"
for master_ip in ${MASTER_IPS[@]}
  do
    echo ">>> ${master_ip}"
    scp kube-apiserver-${master_ip}.service root@${master_ip}:/etc/systemd/system/kube-apiserver.service
  done

# ---------------------------------------------------- 3.1 start kube-apiserver
section "3.1 start kube-apiserver"
source "$WORKDIR/bin/environment.sh"
for master_ip in ${MASTER_IPS[@]}
  do
    echo ">>> ${master_ip}"
    ssh root@${master_ip} "mkdir -p ${K8S_DIR}/kube-apiserver"
    ssh root@${master_ip} "systemctl daemon-reload && systemctl enable kube-apiserver && systemctl restart kube-apiserver"
  done

# ---------------------------------------------------- 3.2 check kube-apiserver
section "3.2 check kube-apiserver"
source "$WORKDIR/bin/environment.sh"
for master_ip in ${MASTER_IPS[@]}
  do
    echo ">>> ${master_ip}"
    ssh root@${master_ip} "systemctl status kube-apiserver |grep 'Active:'"
  done

# ------------------------------------ 3.3 view the data written to etcd (A6)
section "3.3 etcd data"
source "$WORKDIR/bin/environment.sh"
ETCDCTL_API=3 etcdctl \
    --endpoints=${ETCD_ENDPOINTS} \
    --cacert="$WORKDIR/ca.pem" \
    --cert="$LAB_ETCD_CERT" \
    --key="$LAB_ETCD_KEY" \
    get /registry/ --prefix --keys-only

# ------------------------------------------------ 3.4 check cluster information (A7)
section "3.4 cluster information"
kubectl cluster-info
kubectl get all --all-namespaces
kubectl get componentstatuses
ssh root@${MASTER_IPS[0]} "ss -lnpt|grep kube"   # A7: instead of `sudo netstat -lnpt|grep kube` on k8smaster01

# ---------------------------------------------------------------- 3.5 authorization
section "3.5 authorization"
kubectl create clusterrolebinding kube-apiserver:kubelet-apis --clusterrole=system:kubelet-api-admin --user kubernetes

# ----------------------------------------------------------- end: is it running? (A8)
section "end: wait ${FINAL_WAIT}s, then systemctl is-active kube-apiserver on every master"
sleep "$FINAL_WAIT"
not_active=0
for master_ip in ${MASTER_IPS[@]}
  do
    state=$(ssh root@${master_ip} "systemctl is-active kube-apiserver")
    echo ">>> ${master_ip} kube-apiserver ${state:-unknown}"
    [ "$state" = active ] || not_active=$((not_active + 1))
  done
section "done: kube-apiserver not active on ${not_active} of ${#MASTER_IPS[@]} masters"
[ "$not_active" = 0 ] || exit 1
exit 0
