#!/usr/bin/env bash
# Installs the Debian 12 packages bastion builds and tests with.
# Usage: scripts/install-deps.sh [--with-servers]
#   --with-servers  also installs redis-server and redis-tools (I/O integration tests).
# Needs root (or sudo). Safe to run again: apt-get skips what is already installed.
set -euo pipefail
pkgs=(
  cmake ninja-build g++-12 pkg-config
  libhwloc-dev libboost-context-dev libfmt-dev libspdlog-dev catch2 libbenchmark-dev
  clang-19 clang-format-19 clang-tidy-19 libclang-rt-19-dev
  llvm-19 # llvm-symbolizer-19: the sanitizers' reports name functions and lines with it
)
if [[ "${1:-}" == "--with-servers" ]]; then
  pkgs+=(redis-server redis-tools)
fi
SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if (( ${#missing[@]} )); then
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
