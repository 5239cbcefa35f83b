#!/usr/bin/env bash
# npm run demo: bring the lab up and install a control plane on it with k8s-master-install.
# Needs root. Leaves the lab up so you can look around; `bash test/lab/lab.sh down` removes it.
set -euo pipefail
cd "$(dirname "$0")/../.."
[ "$(id -u)" = 0 ] || { echo "demo: run as root (the lab makes network namespaces and containers)" >&2; exit 2; }
export LAB_DIR=${LAB_DIR:-/run/k8smi-lab}
VERSION=${VERSION:-v1.28.7}
bash test/lab/lab.sh deps
bash test/lab/lab.sh up
[ -f dist/cli.js ] || npm run build
demo=/tmp/k8smi-demo
mkdir -p "$demo"
node --input-type=module -e '
import {readFileSync, writeFileSync} from "node:fs";
import YAML from "yaml";
const lab = JSON.parse(readFileSync(process.argv[1] + "/lab.json", "utf8"));
const version = process.argv[2];
writeFileSync(process.argv[3], YAML.stringify({
  version,
  binaries: {tarball: lab.tarballs[version]},
  masters: lab.hosts,
  ssh: {user: lab.ssh.user, port: lab.ssh.port, identityFile: lab.ssh.identityFile, knownHostsFile: lab.ssh.knownHostsFile},
  etcd: {endpoints: lab.etcd.endpoints},
  network: {serviceCidr: "10.254.0.0/16", nodePortRange: "30000-32767"},
  ca: lab.ca,
}));
' "$LAB_DIR" "$VERSION" "$demo/cluster.yaml"
echo "Config: $demo/cluster.yaml (state in $demo/state)"
if [ -t 0 ] && [ -t 1 ]; then
  node bin/k8s-master-install.js --config "$demo/cluster.yaml" --state-dir "$demo/state"
else
  node bin/k8s-master-install.js apply --config "$demo/cluster.yaml" --state-dir "$demo/state" --yes
fi
echo
echo "Look around: bash test/lab/lab.sh ssh k8smaster01 systemctl status kube-apiserver"
echo "Status:      node bin/k8s-master-install.js status --config $demo/cluster.yaml --state-dir $demo/state"
echo "Tear down:   bash test/lab/lab.sh down"
