#!/usr/bin/env bash
# bench/tutorial/reset-masters.sh [LAB_JSON] — put the lab's masters back to the state
# before install-apiserver.sh (or `k8s-master-install apply`): kube-apiserver stopped,
# disabled and its unit gone; /etc/kubernetes, K8S_DIR (/data/k8s/k8s) and /opt/k8s/bin/*
# removed; everything under /registry/ deleted from etcd. etcd itself is left running.
#
# LAB_JSON defaults to ${LAB_DIR:-/run/k8smi-lab}/lab.json. Runs on this machine (root;
# needs the lab's etcdctl, `bash test/lab/lab.sh deps`). Exit 0 when every master answered
# and etcd has no key under /registry/ left.
set -uo pipefail

LAB_JSON=${1:-${LAB_DIR:-/run/k8smi-lab}/lab.json}
[ -r "$LAB_JSON" ] || { echo "reset-masters: cannot read $LAB_JSON (is the lab up?)" >&2; exit 2; }

eval "$(python3 - "$LAB_JSON" <<'PY'
import json, shlex, sys
lab = json.load(open(sys.argv[1]))
q = shlex.quote
print("HOST_IPS=(%s)" % " ".join(q(h["ip"]) for h in lab["hosts"]))
print("SSH_USER=%s SSH_PORT=%s SSH_KEY=%s SSH_KNOWN_HOSTS=%s" % (
    q(lab["ssh"]["user"]), q(str(lab["ssh"]["port"])), q(lab["ssh"]["identityFile"]), q(lab["ssh"]["knownHostsFile"])))
e = lab["etcd"]
print("ETCD_ENDPOINTS=%s ETCD_CA=%s ETCD_CERT=%s ETCD_KEY=%s" % (
    q(",".join(e["endpoints"])), q(e["caFile"]), q(e["certFile"]), q(e["keyFile"])))
PY
)" || { echo "reset-masters: cannot parse $LAB_JSON" >&2; exit 2; }

SSH_OPTS=(-F /dev/null -p "$SSH_PORT" -i "$SSH_KEY" -o IdentitiesOnly=yes
  -o UserKnownHostsFile="$SSH_KNOWN_HOSTS" -o GlobalKnownHostsFile=/dev/null
  -o StrictHostKeyChecking=yes -o BatchMode=yes -o ConnectTimeout=10 -o LogLevel=ERROR)

RESET='systemctl disable --now kube-apiserver >/dev/null 2>&1; rm -f /etc/systemd/system/kube-apiserver.service; systemctl daemon-reload; systemctl reset-failed; rm -rf /etc/kubernetes /data/k8s/k8s /opt/k8s/bin/*; ! systemctl is-active --quiet kube-apiserver'

rc=0
pids=()
for ip in "${HOST_IPS[@]}"; do
  ssh -n "${SSH_OPTS[@]}" "$SSH_USER@$ip" "$RESET" &
  pids+=($!)
done
for i in "${!pids[@]}"; do
  wait "${pids[$i]}" || { echo "reset-masters: reset of ${HOST_IPS[$i]} failed" >&2; rc=1; }
done

export ETCDCTL_API=3
etcd=(etcdctl --endpoints="$ETCD_ENDPOINTS" --cacert="$ETCD_CA" --cert="$ETCD_CERT" --key="$ETCD_KEY")
"${etcd[@]}" del /registry/ --prefix >/dev/null || { echo "reset-masters: etcdctl del /registry/ failed" >&2; rc=1; }
left=$("${etcd[@]}" get /registry/ --prefix --keys-only 2>/dev/null | grep -c . || true)
[ "$left" = 0 ] || { echo "reset-masters: $left keys still under /registry/" >&2; rc=1; }

[ "$rc" = 0 ] && echo "reset-masters: ${#HOST_IPS[@]} masters reset, etcd /registry/ empty"
exit "$rc"
