#!/usr/bin/env bash
# bench/tutorial/deps.sh — what install-apiserver.sh needs on this machine besides the lab
# (`bash test/lab/lab.sh deps`): cfssl + cfssljson from Debian's package golang-cfssl
# (/usr/bin/cfssl, /usr/bin/cfssljson).
#
#   bash bench/tutorial/deps.sh          install if missing (root; apt)
#   source bench/tutorial/deps.sh; tutorial_deps
#
# Idempotent; prints nothing when golang-cfssl is already installed.

tutorial_deps() {
  if dpkg-query -W -f='${Status}' golang-cfssl 2>/dev/null | grep -q 'install ok installed' &&
    [ -x /usr/bin/cfssl ] && [ -x /usr/bin/cfssljson ]; then
    return 0
  fi
  [ "$(id -u)" = 0 ] || { echo "tutorial_deps: must run as root to install golang-cfssl" >&2; return 1; }
  echo "tutorial_deps: installing golang-cfssl" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends golang-cfssl </dev/null >&2 || {
    echo "tutorial_deps: apt-get install failed; running apt-get update and trying again" >&2
    DEBIAN_FRONTEND=noninteractive apt-get update -q </dev/null >&2 &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends golang-cfssl </dev/null >&2
  } || return 1
  [ -x /usr/bin/cfssl ] && [ -x /usr/bin/cfssljson ] || { echo "tutorial_deps: golang-cfssl did not install /usr/bin/cfssl and /usr/bin/cfssljson" >&2; return 1; }
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -euo pipefail
  tutorial_deps
fi
