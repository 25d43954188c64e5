#!/bin/bash
# DTMM's TFLM tests (op + malformed-model + model tests) under AddressSanitizer and
# UndefinedBehaviorSanitizer, on x86:
#
#   dtmm_ops/tests/tflm/sanitize_test.sh TFLM_ROOT
#
# The op, the kernels, flexbuffers (header-only) and the tests are compiled with
# -fsanitize=address,undefined and linked against TFLM's linux library from
# `make EXTERNAL_DIR=dtmm_ops microlite` (cached in TFLM_ROOT/gen; TFLM itself is
# not instrumented, so one library build serves both). Any report aborts the test.
set -euo pipefail
tflm=$(cd "${1:?usage: $0 TFLM_ROOT}" && pwd)
here=$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")
ops=$(cd "$here/../.." && pwd)
repo=$(cd "$ops/.." && pwd)
if [[ -x $repo/.venv/bin/python3 ]]; then export PATH=$repo/.venv/bin:$PATH; fi

make -C "$tflm" -f tensorflow/lite/micro/tools/make/Makefile -j2 EXTERNAL_DIR="$ops" microlite
lib=$tflm/gen/linux_$(uname -m)_default_gcc/lib/libtensorflow-microlite.a
out=$tflm/gen/dtmm_sanitize
mkdir -p "$out"

dl=$tflm/tensorflow/lite/micro/tools/make/downloads
san=(-g -O1 -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer)
# The defines must match the library's (TF_LITE_STATIC_MEMORY changes struct layouts).
defs=(-DTF_LITE_STATIC_MEMORY -DTF_LITE_DISABLE_X86_NEON -DTF_LITE_USE_CTIME)
inc=(-I"$tflm" -I"$dl" -I"$dl/gemmlowp" -I"$dl/flatbuffers/include" -I"$dl/kissfft"
     -I"$dl/ruy" -I"$ops")

objs=()
for c in "$ops"/dtmm_conv_s8*.c "$ops"/dtmm_fc_s8*.c; do
  gcc -std=c17 "${san[@]}" "${defs[@]}" -I"$ops" -c "$c" -o "$out/$(basename "${c%.c}").o"
  objs+=("$out/$(basename "${c%.c}").o")
done
for cc in dtmm_conv dtmm_fully_connected; do
  g++ -std=c++17 -fno-rtti -fno-exceptions "${san[@]}" "${defs[@]}" "${inc[@]}" \
    -c "$ops/$cc.cc" -o "$out/$cc.o"
  objs+=("$out/$cc.o")
done

status=0
for t in dtmm_conv_test dtmm_fc_test dtmm_model_test; do
  srcs=("$here/$t.cc")
  if [[ $t == dtmm_model_test ]]; then srcs+=("$here"/models/*.cc); fi
  g++ -std=c++17 -fno-rtti -fno-exceptions "${san[@]}" "${defs[@]}" "${inc[@]}" \
    "${srcs[@]}" "${objs[@]}" "$lib" -lm -o "$out/$t"
  echo "== $t (ASan + UBSan)"
  if "$out/$t" > "$out/$t.log" 2>&1 && grep -q '~~~ALL TESTS PASSED~~~' "$out/$t.log"; then
    tail -n 2 "$out/$t.log"
  else
    cat "$out/$t.log"
    echo "FAILED: $t"
    status=1
  fi
done
exit $status
