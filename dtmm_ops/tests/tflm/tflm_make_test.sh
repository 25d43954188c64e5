#!/bin/bash
# Runs DTMM's tests inside TFLM's own make harness, for Bazel (tflm_test) and by
# hand:  dtmm_ops/tests/tflm/tflm_make_test.sh TFLM_ROOT [make-arg...] -- TARGET...
#
# Builds the TFLM library with EXTERNAL_DIR=<repo>/dtmm_ops (objects are cached in
# TFLM_ROOT/gen/, so only the first run is slow) and runs each make TARGET, e.g.
# test_dtmm_conv_test. make-args before "--" (TARGET=..., OPTIMIZED_KERNEL_DIR=...)
# go to every make call. TFLM_ROOT/.../downloads must be populated (TFLM's make
# fills it when online; the offline tarball has it).
#
# One make at a time per checkout: two Bazel targets (or a target and a second
# shell) would otherwise build into the same gen/ folder at once and corrupt each
# other's objects. The lock is flock(1) on the TFLM_ROOT directory itself; a
# waiting run says so and then reuses what the first one built.
set -euo pipefail

tflm=${1:?usage: $0 TFLM_ROOT [make-arg...] -- TARGET...}
shift
make_args=()
while [[ $# -gt 0 && $1 != "--" ]]; do make_args+=("$1"); shift; done
[[ ${1:-} == "--" ]] && shift
[[ $# -gt 0 ]] || { echo "error: no make targets given" >&2; exit 2; }
[[ -d $tflm/tensorflow/lite/micro ]] || { echo "error: $tflm is not a tflite-micro checkout" >&2; exit 2; }

# This script lives in <repo>/dtmm_ops/tests/tflm; Bazel runs it from a runfiles
# symlink, so resolve that to the source tree.
here=$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")
ops=$(cd "$here/../.." && pwd)
repo=$(cd "$ops/.." && pwd)

# TFLM's Makefile runs python3 with numpy and PIL while it parses (example
# Makefile.inc files generate C arrays). Use DTMM_TFLM_PYTHON, else the repo's
# .venv, else python3 from PATH.
pydir=""
if [[ -n ${DTMM_TFLM_PYTHON:-} ]]; then
  pydir=$(dirname "$(readlink -f "$DTMM_TFLM_PYTHON")")
elif [[ -x $repo/.venv/bin/python3 ]]; then
  pydir=$repo/.venv/bin
fi
if [[ -n $pydir ]]; then export PATH=$pydir:$PATH; fi
if ! python3 -c 'import numpy, PIL' 2>/dev/null; then
  echo "error: TFLM's Makefile needs python3 with numpy and Pillow; set DTMM_TFLM_PYTHON" >&2
  exit 1
fi

command -v flock >/dev/null || { echo "error: flock (util-linux) not found" >&2; exit 1; }
exec 9<"$tflm"
if ! flock -n 9; then
  echo "== waiting for another DTMM make run in $tflm to finish"
  flock 9
fi

cd "$tflm"
mk=(make -f tensorflow/lite/micro/tools/make/Makefile -j2 EXTERNAL_DIR="$ops" "${make_args[@]}")
for target in "$@"; do
  echo "== ${mk[*]} $target"
  "${mk[@]}" "$target"
done
