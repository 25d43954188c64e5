#!/bin/bash
# Bazel wrapper for the Cortex-M tests (tests/cortex_m, built with make and run
# under QEMU). It runs make in the source tree, so the target is "no-sandbox".
set -uo pipefail

marker="$(readlink -f "$1")" || { echo "ERROR: cannot resolve $1" >&2; exit 1; }
dir="$(dirname "$marker")"
shift

missing=()
for tool in arm-none-eabi-gcc qemu-system-arm make; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "SKIPPED: Cortex-M tests need ${missing[*]} on PATH (scripts/setup installs them as root)"
  exit 0
fi

jobs="${DTMM_CORTEX_M_JOBS:-2}"
echo "make -C $dir -j$jobs $*"
exec make -C "$dir" -j"$jobs" "$@"
