#!/usr/bin/env bash
# Install everything pgha, its lab and its tests need on Debian 12 or 13:
# the lab's tools from apt, the Python dependencies into ./venv. Idempotent.
set -euo pipefail
cd "$(dirname "$0")"

APT_PACKAGES=(
  debootstrap          # builds the lab's Debian 13 image
  systemd-container    # systemd-nspawn: the lab's machines
  debian-archive-keyring
  iproute2 util-linux  # ip netns, nsenter, unshare
  openssh-client
  postgresql-client    # psql and pgbench, run inside the lab network
  python3-venv
  ca-certificates curl
  prometheus           # promtool (rule checks and unit tests) and the lab's Prometheus
)

if [ "$(id -u)" -ne 0 ]; then
  echo "setup.sh: run as root (the lab creates namespaces and machines)" >&2
  exit 1
fi
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if [ ! -x venv/bin/python ]; then
  python3 -m venv venv
fi
venv/bin/pip install -q --disable-pip-version-check -r requirements-dev.txt
echo "setup.sh: ready (venv/bin/python -m lab up | venv/bin/python -m pytest)"
