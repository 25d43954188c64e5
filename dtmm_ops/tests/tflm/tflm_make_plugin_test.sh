#!/bin/bash
# Checks that TFLM's make picks up the DTMM plug-in (dtmm_ops/Makefile_internal.inc)
# the way Bazel builds it, without building anything (make only parses):
#   - dtmm_ops/dtmm_conv.cc, dtmm_fully_connected.cc and every C source of //dtmm_ops:dtmm_kernels (the
#     labels in KERNEL_SRCS, a genquery output) are in `make list_library_sources`;
#   - test_dtmm_conv_test, test_dtmm_fc_test, test_dtmm_model_test, test_dtmm_arena_test are make
#     targets (`make -n` prints their commands);
#   - DTMM_CONV_DRIVERS="pixel window" compiles the kernels and the op with
#     -DDTMM_CONV_DRIVERS=DTMM_USE_PIXEL+DTMM_USE_WINDOW; an unknown name stops make naming it.
# Usage: tflm_make_plugin_test.sh TFLM_ROOT KERNEL_SRCS. Writes nothing into TFLM_ROOT (the
# make build dir goes to a temp dir).
set -euo pipefail

tflm=${1:?usage: $0 TFLM_ROOT KERNEL_SRCS}
kernel_srcs=$(readlink -f "${2:?usage: $0 TFLM_ROOT KERNEL_SRCS}")
here=$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")
ops=$(cd "$here/../.." && pwd)
repo=$(cd "$ops/.." && pwd)

if [[ -n ${DTMM_TFLM_PYTHON:-} ]]; then
  export PATH=$(dirname "$(readlink -f "$DTMM_TFLM_PYTHON")"):$PATH
elif [[ -x $repo/.venv/bin/python3 ]]; then
  export PATH=$repo/.venv/bin:$PATH
fi
if ! python3 -c 'import numpy, PIL' 2>/dev/null; then
  echo "error: TFLM's Makefile needs python3 with numpy and Pillow; set DTMM_TFLM_PYTHON" >&2
  exit 1
fi

gendir=$(mktemp -d "${TEST_TMPDIR:-/tmp}/dtmm-make.XXXXXX")
trap 'rm -rf "$gendir"' EXIT
mk=(make -s -C "$tflm" -f tensorflow/lite/micro/tools/make/Makefile
    EXTERNAL_DIR="$ops" BASE_GENDIR="$gendir")

fail=0
srcs=$("${mk[@]}" list_library_sources | tr ' ' '\n')
# //pkg:name -> <repo>/pkg/name, for the C/C++ sources among the labels.
bazel_srcs=("$ops/dtmm_conv.cc" "$ops/dtmm_fully_connected.cc")
while IFS= read -r label; do
  case $label in
    *.c|*.cc) p=${label#//}; bazel_srcs+=("$repo/${p%%:*}/${p#*:}") ;;
  esac
done <"$kernel_srcs"
[[ ${#bazel_srcs[@]} -gt 1 ]] || { echo "FAIL: no C sources in $kernel_srcs"; exit 1; }
for f in "${bazel_srcs[@]}"; do
  if grep -qxF "$f" <<<"$srcs"; then
    echo "ok: make builds $(basename "$f") into libtensorflow-microlite.a"
  else
    echo "FAIL: Bazel builds $f, TFLM's make does not (dtmm_ops/Makefile_internal.inc)"
    fail=1
  fi
done
for t in test_dtmm_conv_test test_dtmm_fc_test test_dtmm_model_test test_dtmm_arena_test; do
  if "${mk[@]}" -n "$t" >"$gendir/$t.log" 2>&1; then
    echo "ok: make knows $t"
  else
    echo "FAIL: make -n $t:"; tail -n 5 "$gendir/$t.log"
    fail=1
  fi
done
"${mk[@]}" -n DTMM_CONV_DRIVERS="pixel window" microlite >"$gendir/drivers.log" 2>&1 || true
for f in dtmm_conv_s8.c dtmm_conv.cc; do
  if grep -F "/$f" "$gendir/drivers.log" | grep -qF -- "-DDTMM_CONV_DRIVERS=DTMM_USE_PIXEL+DTMM_USE_WINDOW"; then
    echo "ok: DTMM_CONV_DRIVERS=\"pixel window\" reaches $f"
  else
    echo "FAIL: DTMM_CONV_DRIVERS=\"pixel window\" does not reach $f's compile command"
    fail=1
  fi
done
if "${mk[@]}" -n DTMM_CONV_DRIVERS="pixel rect" microlite >"$gendir/bad.log" 2>&1; then
  echo "FAIL: DTMM_CONV_DRIVERS=\"pixel rect\" was accepted"; fail=1
elif grep -qF "DTMM_CONV_DRIVERS: unknown driver 'rect'" "$gendir/bad.log"; then
  echo "ok: an unknown driver name stops make naming it"
else
  echo "FAIL: DTMM_CONV_DRIVERS=\"pixel rect\":"; tail -n 3 "$gendir/bad.log"; fail=1
fi
if [[ $fail -eq 0 ]]; then echo "make_plugin_test: all checks passed"; fi
exit "$fail"
