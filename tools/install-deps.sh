#!/usr/bin/env bash
# Installs what Troupe builds with, from Debian 12's packages (run as root). Idempotent: packages
# already present are skipped, so it costs nothing on a prepared machine.
set -euo pipefail
packages=(
  g++ cmake ninja-build pkg-config
  libboost-dev                          # Interprocess, Lockfree (header-only), Asio later
  flatbuffers-compiler libflatbuffers-dev
  libtbb-dev nlohmann-json3-dev
  libcli11-dev                          # troupe-agent-server's command line
  libgtest-dev libgmock-dev libbenchmark-dev
  iproute2 procps                       # tests look at processes
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -q
  $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
