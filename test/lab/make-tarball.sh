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
#                          kube-proxy,kubeadm,kubelet,mounter}   placeholders (print their name and VERSION)
# The installer takes only ELF x86-64 executables, as the release ships: every stand-in and
# placeholder is a static ELF launcher (test/lab/standin/launcher.c, built here with gcc) with
# the Python program appended as a zip; it execs /usr/bin/python3 on itself (see launcher.c).
#   kubernetes/server/bin/{kube-apiserver,kube-controller-manager,kube-scheduler,kube-proxy}.docker_tag
#                                                    the release tag, as in the real tarball (the installer checks it)
#   kubernetes/server/bin/*.tar (container images) are NOT included.
# Env: KUBECTL=/path/to/kubectl overrides where Debian's kubectl is taken from.
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

command -v gcc >/dev/null 2>&1 || { echo "make-tarball: gcc not found (the stand-ins' ELF launcher is compiled here); run test/lab/lab.sh deps" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
bin="$work/kubernetes/server/bin"
mkdir -p "$bin"

sed "s/^STANDIN_VERSION = \"v0.0.0-unset\"/STANDIN_VERSION = \"$VERSION\"/" "$HERE/standin/kube-apiserver" >"$bin/kube-apiserver"
grep -q "^STANDIN_VERSION = \"$VERSION\"" "$bin/kube-apiserver" || { echo "make-tarball: could not bake version" >&2; exit 1; }
for comp in kube-controller-manager kube-scheduler; do
  sed -e "s/^STANDIN_VERSION = \"v0.0.0-unset\"/STANDIN_VERSION = \"$VERSION\"/" \
    -e "s/^STANDIN_COMPONENT = \"unset\"/STANDIN_COMPONENT = \"$comp\"/" \
    -e "s/^#   STAND-IN kube-controller-manager and kube-scheduler — a TEST FIXTURE of\$/#   STAND-IN $comp ($VERSION) — a TEST FIXTURE of/" \
    "$HERE/standin/kube-controller-manager-and-scheduler" >"$bin/$comp"
  grep -q "^STANDIN_VERSION = \"$VERSION\"" "$bin/$comp" && grep -q "^STANDIN_COMPONENT = \"$comp\"" "$bin/$comp" &&
    grep -q "^#   STAND-IN $comp ($VERSION)" "$bin/$comp" || { echo "make-tarball: could not bake $comp" >&2; exit 1; }
done
cp "$KUBECTL" "$bin/kubectl"

for name in apiextensions-apiserver cloud-controller-manager kube-proxy kubeadm kubelet mounter; do
  cat >"$bin/$name" <<EOF
#!/usr/bin/python3
# placeholder $name $VERSION (k8smi test lab fixture; not Kubernetes)
import sys
print("Kubernetes $VERSION" if sys.argv[1:2] in (["--version"], ["version"]) else "$name $VERSION (k8smi lab placeholder)")
EOF
done

# Each Python program becomes the launcher followed by a zip holding it as __main__.py.
gcc -static -Os -s -o "$work/launcher" "$HERE/standin/launcher.c"
for name in kube-apiserver kube-controller-manager kube-scheduler apiextensions-apiserver cloud-controller-manager kube-proxy kubeadm kubelet mounter; do
  python3 - "$bin/$name" "$work/$name.zip" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[2], "w", zipfile.ZIP_DEFLATED) as archive:
    archive.write(sys.argv[1], "__main__.py")
PY
  cat "$work/launcher" "$work/$name.zip" >"$bin/$name"
  rm "$work/$name.zip"
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
tar -C "$work" --owner=0 --group=0 --numeric-owner -cf - kubernetes | gzip -1 >"$OUT.tmp"
mv "$OUT.tmp" "$OUT"
echo "make-tarball: $OUT ($VERSION, $(du -h "$OUT" | cut -f1))" >&2
