#!/usr/bin/env bash
# test/lab/make-tarball.sh VERSION OUT.tar.gz
#
# A fake kubernetes-server-linux-amd64.tar.gz with the layout of the real one:
#   kubernetes/kubernetes-src.tar.gz, kubernetes/LICENSES        (tiny)
#   kubernetes/server/bin/kube-apiserver             the STAND-IN (test/lab/standin/kube-apiserver), VERSION baked in
#   kubernetes/server/bin/kube-controller-manager    the STAND-IN test/lab/standin/kube-controller-manager-and-scheduler,
#   kubernetes/server/bin/kube-scheduler               component and VERSION baked in
#   kubernetes/server/bin/kubectl                    Debian's real kubectl 1.20 (kubernetes-client)
#   kubernetes/server/bin/{apiextensions-apiserver,cloud-controller-manager,
#                          kube-proxy,kubeadm,kubelet,mounter}   placeholders that print their version
#   kubernetes/server/bin/{kube-apiserver,kube-controller-manager,kube-scheduler,kube-proxy}.docker_tag
#                                                    the release tag, as in the real tarball (the installer checks it)
#   kubernetes/server/bin/*.tar (container images) are NOT included.
# Every binary is an ELF x86-64 executable, as the release's are: the stand-ins and placeholders are the
# launcher (standin/launcher.c, built here with gcc) followed by a Python zipapp (make-binary.py).
# Env: KUBECTL=/path/to/kubectl overrides where Debian's kubectl is taken from.
#      REAL_SIZE=1: every binary at about its v1.28 size (559 MB together), padded with bytes of
#      Debian's kubectl (a Go binary), so that it compresses and copies as the real ones do.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
[ $# -eq 2 ] || { echo "usage: $0 VERSION OUT.tar.gz (VERSION like v1.28.7)" >&2; exit 2; }
VERSION=$1
OUT=$2
[[ "$VERSION" =~ ^v[0-9]+\.[0-9]+\.[0-9]+$ ]] || { echo "make-tarball: bad VERSION '$VERSION' (want vX.Y.Z)" >&2; exit 2; }

CACHE_DIR=${K8SMI_CACHE_DIR:-/var/cache/k8smi-lab}
if [ -z "${KUBECTL:-}" ]; then
  if [ "$(dpkg -S /usr/bin/kubectl 2>/dev/null | cut -d: -f1)" = kubernetes-client ]; then
    KUBECTL=/usr/bin/kubectl
  elif [ -x "$CACHE_DIR/kubernetes-client/usr/bin/kubectl" ]; then
    KUBECTL="$CACHE_DIR/kubernetes-client/usr/bin/kubectl"
  else
    echo "make-tarball: Debian's kubectl (kubernetes-client) not found; run test/lab/lab.sh deps" >&2
    exit 1
  fi
fi

# About the sizes of the v1.28 server binaries (bytes).
declare -A REAL_SIZES=([kube-apiserver]=120000000 [kube-controller-manager]=115000000 [kubelet]=107000000
  [kube-scheduler]=55000000 [kube-proxy]=54000000 [kubectl]=48000000 [kubeadm]=48000000
  [apiextensions-apiserver]=9300000 [mounter]=1700000 [cloud-controller-manager]=1000000)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
bin="$work/kubernetes/server/bin"
src="$work/scripts"
mkdir -p "$bin" "$src"
gcc -static -Os -s -o "$work/launcher" "$HERE/standin/launcher.c" || { echo "make-tarball: gcc could not build the launcher (apt-get install gcc libc6-dev)" >&2; exit 1; }

# binary NAME SCRIPT: the launcher and the script as a zipapp, at its real size under REAL_SIZE=1.
binary() {
  python3 "$HERE/make-binary.py" "$work/launcher" "$2" "$bin/$1" ${REAL_SIZE:+"${REAL_SIZES[$1]}" "$KUBECTL"}
}

sed "s/^STANDIN_VERSION = \"v0.0.0-unset\"/STANDIN_VERSION = \"$VERSION\"/" "$HERE/standin/kube-apiserver" >"$src/kube-apiserver"
grep -q "^STANDIN_VERSION = \"$VERSION\"" "$src/kube-apiserver" || { echo "make-tarball: could not bake version" >&2; exit 1; }
binary kube-apiserver "$src/kube-apiserver"
for comp in kube-controller-manager kube-scheduler; do
  sed -e "s/^STANDIN_VERSION = \"v0.0.0-unset\"/STANDIN_VERSION = \"$VERSION\"/" \
    -e "s/^STANDIN_COMPONENT = \"unset\"/STANDIN_COMPONENT = \"$comp\"/" \
    -e "s/^#   STAND-IN kube-controller-manager and kube-scheduler — a TEST FIXTURE of\$/#   STAND-IN $comp ($VERSION) — a TEST FIXTURE of/" \
    "$HERE/standin/kube-controller-manager-and-scheduler" >"$src/$comp"
  grep -q "^STANDIN_VERSION = \"$VERSION\"" "$src/$comp" && grep -q "^STANDIN_COMPONENT = \"$comp\"" "$src/$comp" &&
    grep -q "^#   STAND-IN $comp ($VERSION)" "$src/$comp" || { echo "make-tarball: could not bake $comp" >&2; exit 1; }
  binary "$comp" "$src/$comp"
done
if [ -n "${REAL_SIZE:-}" ]; then
  python3 "$HERE/make-binary.py" - - "$bin/kubectl" "${REAL_SIZES[kubectl]}" "$KUBECTL"
else
  cp "$KUBECTL" "$bin/kubectl"
fi

for name in apiextensions-apiserver cloud-controller-manager kube-proxy kubeadm kubelet mounter; do
  cat >"$src/$name" <<EOF
# placeholder $name $VERSION (k8smi test lab fixture; not Kubernetes)
import sys
print("Kubernetes $VERSION" if sys.argv[1:2] in (["--version"], ["version"]) else "$name $VERSION (k8smi lab placeholder)")
EOF
  binary "$name" "$src/$name"
done
chmod 755 "$bin"/*
for name in kube-apiserver kube-controller-manager kube-scheduler kube-proxy; do
  printf '%s\n' "$VERSION" >"$bin/$name.docker_tag"
  chmod 644 "$bin/$name.docker_tag"
done

mkdir -p "$work/src/kubernetes"
printf 'k8smi lab placeholder for kubernetes-src %s\n' "$VERSION" >"$work/src/kubernetes/README.k8smi-lab"
tar -C "$work/src" -czf "$work/kubernetes/kubernetes-src.tar.gz" kubernetes
printf 'k8smi lab placeholder\n' >"$work/kubernetes/LICENSES"

mkdir -p "$(dirname "$OUT")"
rm -rf "$src" "$work/launcher"
tar -C "$work" --owner=0 --group=0 --numeric-owner -cf - kubernetes | gzip -1 >"$OUT.tmp"
mv "$OUT.tmp" "$OUT"
echo "make-tarball: $OUT ($VERSION, $(du -h "$OUT" | cut -f1))" >&2
