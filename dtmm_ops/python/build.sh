#!/bin/bash
# Builds TFLM's Python interpreter at the supported TFLM commit plus the DTMM
# registerer, for python/dtmm/tflm.py:
#
#   dtmm_ops/python/build.sh TFLM_ROOT OUT_DIR
#   export DTMM_TFLM_LIB=OUT_DIR
#
# OUT_DIR gets _runtime<ext-suffix>.so: tflite_micro's interpreter extension built
# from TFLM_ROOT/python/tflite_micro, with the DTMM op and `DtmmRegisterer` linked
# in (dtmm_registerer.cc). Load it RTLD_GLOBAL so the interpreter's
# dlsym(RTLD_DEFAULT, "DtmmRegisterer") finds the registerer.
# Why not the tflite-micro wheel: see docs/tflm.md ("Python").
#
# Needs: python3 with numpy and pybind11 headers (PYTHON=..., or the repo .venv;
# PYBIND11_INCLUDE=... if pybind11 is not importable), g++, and a populated
# TFLM_ROOT/tensorflow/lite/micro/tools/make/downloads.
set -euo pipefail
tflm=$(cd "${1:?usage: $0 TFLM_ROOT OUT_DIR}" && pwd)
mkdir -p "${2:?usage: $0 TFLM_ROOT OUT_DIR}"
out=$(cd "$2" && pwd)
here=$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")
ops=$(cd "$here/.." && pwd)
repo=$(cd "$ops/.." && pwd)

py=${PYTHON:-}
if [[ -z $py && -x $repo/.venv/bin/python3 ]]; then py=$repo/.venv/bin/python3; fi
py=${py:-python3}
export PATH=$(dirname "$(command -v "$py")"):$PATH  # TFLM's Makefile runs python3

# 1. TFLM's linux library, the same one the make tests use (EXTERNAL_DIR adds the
# DTMM op to it; objects cached in TFLM_ROOT/gen).
mk=(make -C "$tflm" -f tensorflow/lite/micro/tools/make/Makefile -j2 EXTERNAL_DIR="$ops")
"${mk[@]}" microlite
lib=$tflm/gen/linux_${TFLM_HOST_ARCH:-$(uname -m)}_default_gcc/lib/libtensorflow-microlite.a

py_inc=$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
np_inc=$("$py" -c 'import numpy; print(numpy.get_include())')
pb_inc=${PYBIND11_INCLUDE:-$("$py" -c 'import pybind11; print(pybind11.get_include())')}
suffix=$("$py" -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')
dl=$tflm/tensorflow/lite/micro/tools/make/downloads
flags=(-std=c++17 -O2 -fPIC -DTF_LITE_STATIC_MEMORY -DTF_LITE_DISABLE_X86_NEON
       -DTF_LITE_USE_CTIME -I"$tflm" -I"$dl" -I"$dl/flatbuffers/include"
       -I"$dl/gemmlowp" -I"$dl/ruy" -I"$dl/kissfft" -I"$ops")

# 2. One extension: TFLM's interpreter (as TFLM's Bazel pybind_extension builds it)
# + the DTMM op from the same library + DtmmRegisterer. TFLM's make builds
# position-independent-executable code, which a shared object may only hold with
# its symbols bound locally, so everything but the two entry points is hidden;
# hence one file rather than a registerer library taking TFLM from the interpreter.
pysrc=$tflm/python/tflite_micro
cat > "$out/exports.map" <<'MAP'
{ global: PyInit__runtime; DtmmRegisterer; local: *; };
MAP
# debug_log.cc reads libc's `stderr` the PIE way (a direct reference no shared
# object can hold): compile it again as PIC so the archive's copy is not used.
g++ "${flags[@]}" -shared -I"$py_inc" -I"$np_inc" -I"$pb_inc" \
  "$pysrc/_runtime.cc" "$pysrc/interpreter_wrapper.cc" "$pysrc/numpy_utils.cc" \
  "$pysrc/python_utils.cc" "$pysrc/python_ops_resolver.cc" "$here/dtmm_registerer.cc" \
  "$tflm/tensorflow/lite/micro/debug_log.cc" "$lib" -ldl -Wl,--version-script="$out/exports.map" -o "$out/_runtime$suffix"
rm -f "$out/exports.map"

cat > "$out/BUILD_INFO" <<INFO
tflm_root=$tflm
tflm_commit=$(git -C "$tflm" rev-parse HEAD 2>/dev/null || echo unknown)
runtime=_runtime$suffix
INFO
echo "built $out/_runtime$suffix"
echo "export DTMM_TFLM_LIB=$out"
