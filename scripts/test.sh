#!/usr/bin/env bash
# Builds and tests bastion with each preset given (default: release).
# Usage: scripts/test.sh [preset...]      e.g. scripts/test.sh asan tsan release
#
# For each preset: configure with BASTION_WERROR=ON, build (2 jobs), compile every public
# header on its own (all_verify_interface_header_sets), run ctest. Stops at the first failure
# with a non-zero status. On success the last preset's ctest summary is the last output.
# Installs missing Debian packages first (scripts/install-deps.sh skips apt when none is).
set -euo pipefail
cd "$(dirname "$0")/.."

presets=("$@")
(( ${#presets[@]} )) || presets=(release)

scripts/install-deps.sh

# run <what> <command...>: runs a step, then reports its wall time on stderr.
run() {
  local what=$1 start=$SECONDS
  shift
  echo "==> ${what}: $*" >&2
  "$@"
  echo "==> ${what}: $((SECONDS - start)) s" >&2
}

last=${presets[${#presets[@]} - 1]}
for p in "${presets[@]}"; do
  run "$p configure" cmake --preset "$p" -DBASTION_WERROR=ON
  run "$p build" cmake --build --preset "$p"
  run "$p verify headers" cmake --build --preset "$p" --target all_verify_interface_header_sets
  if [[ $p == "$last" ]]; then
    echo "==> $p test" >&2
    ctest --preset "$p" # its summary ends the output
  else
    run "$p test" ctest --preset "$p"
  fi
done
