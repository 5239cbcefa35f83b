#!/usr/bin/env bash
# The certificate set the tool makes (CA, kubernetes, proxy-client, admin, kube-controller-manager,
# kube-scheduler; RSA 2048 keys), made the tutorial's way: one `cfssl gencert | cfssljson` per
# certificate, with the tutorial's ca-config profile. Usage: cfssl-set.sh WORKDIR MASTER_IPS(comma)
set -euo pipefail
work=$1 ips=$2
cd "$work"
hosts='"127.0.0.1"'
IFS=, read -ra list <<<"$ips"
for ip in "${list[@]}"; do hosts+=", \"$ip\""; done

cat >ca-config.json <<JSON
{"signing": {"default": {"expiry": "87600h"}, "profiles": {"kubernetes": {"usages": ["signing", "key encipherment", "server auth", "client auth"], "expiry": "8760h"}}}}
JSON
csr() { # CN O HOSTS
  printf '{"CN": "%s", "hosts": [%s], "key": {"algo": "rsa", "size": 2048}, "names": [{"C": "CN", "ST": "Shanghai", "L": "Shanghai", "O": "%s", "OU": "System"}]}\n' "$1" "$3" "$2"
}
csr kubernetes-ca k8s '' >ca-csr.json
cfssl gencert -initca ca-csr.json | cfssljson -bare ca
gen() { # NAME CN O HOSTS
  csr "$2" "$3" "$4" >"$1-csr.json"
  cfssl gencert -ca=ca.pem -ca-key=ca-key.pem -config=ca-config.json -profile=kubernetes "$1-csr.json" | cfssljson -bare "$1"
}
gen kubernetes kubernetes k8s "$hosts, \"10.254.0.1\", \"kubernetes\", \"kubernetes.default\", \"kubernetes.default.svc\", \"kubernetes.default.svc.cluster\", \"kubernetes.default.svc.cluster.local\""
gen proxy-client aggregator k8s ''
gen admin admin system:masters ''
gen kube-controller-manager system:kube-controller-manager system:kube-controller-manager "$hosts"
gen kube-scheduler system:kube-scheduler system:kube-scheduler "$hosts"
ls ./*.pem >/dev/null
