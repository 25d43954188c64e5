#!/bin/bash
# Builds the kernel fuzzer (conv_s8_fuzzer.c + dtmm_ops/dtmm_*.c, clang, libFuzzer,
# ASan + UBSan) once per kernel build variant and runs it.
#
#   fuzz_kernel.sh [--budget S]            fuzz for S seconds in all (default 60),
#                                          split between the variants; fails on any finding
#   fuzz_kernel.sh --seeds [GROUPS]        run the seed corpus once (no mutation);
#                                          GROUPS of gen_seeds.py, default all
#   fuzz_kernel.sh --replay FILE|DIR ...   run the given inputs once
#   fuzz_kernel.sh --regressions           run tests/fuzz/regressions/kernel/*.bin once
#   fuzz_kernel.sh --long --budget S --out DIR
#                                          keeps going after findings (recoverable
#                                          UBSan; restarted after an ASan report): the
#                                          first input of each distinct finding lands
#                                          in DIR/artifacts, one minimized reproducer
#                                          per signature in DIR/findings, the table in
#                                          DIR/summary.md
# Options: --variants a,b (default: default), --workdir DIR (build and
# corpus; default $TEST_TMPDIR or a temp dir), --parallel (--long: one process per
# variant at once, each for the whole budget).
#
# Variants: default = what x86 and the Cortex-M portable build compile; im2col =
# the library's one build switch, DTMM_CONV_DRIVERS, with only the im2col and block
# drivers: every filterlet layer through the fallback a reduced build takes. A new
# switch gets its variant here.
#
# Without clang and its libFuzzer/sanitizer runtimes the script prints SKIPPED and
# exits 0 (scripts/setup installs clang and libclang-rt-dev).
set -uo pipefail

here=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")" && pwd)
root=$(cd "$here/../../.." && pwd)
ops=$root/dtmm_ops

budget=60
mode=fuzz
variants=default
workdir=""
out=""
replay=()
seed_groups=layer,corrupt,edge
parallel=0
while [ $# -gt 0 ]; do
  case "$1" in
    --budget) budget=$2; shift 2 ;;
    --seeds) mode=seeds; shift
      if [ $# -gt 0 ] && [ "${1#--}" = "$1" ]; then seed_groups=$1; shift; fi ;;
    --replay) mode=replay; shift; while [ $# -gt 0 ] && [ "${1#--}" = "$1" ]; do replay+=("$1"); shift; done ;;
    --regressions) mode=replay; replay=("$here"/../regressions/kernel/*.bin); shift ;;
    --long) mode=long; shift ;;
    --parallel) parallel=1; shift ;;
    --out) out=$2; shift 2 ;;
    --variants) variants=$2; shift 2 ;;
    --workdir) workdir=$2; shift 2 ;;
    *) echo "fuzz_kernel.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

cc=${CLANG:-clang}
if ! command -v "$cc" >/dev/null 2>&1; then
  echo "SKIPPED: clang not found (apt-get install clang libclang-rt-dev); kernel fuzzer not run"
  exit 0
fi
if [ -z "$workdir" ]; then
  workdir=${TEST_TMPDIR:-$(mktemp -d)}
fi
mkdir -p "$workdir"
probe=$workdir/probe.c
printf '#include <stddef.h>\n#include <stdint.h>\nint LLVMFuzzerTestOneInput(const uint8_t* d, size_t n) { (void)d; (void)n; return 0; }\n' > "$probe"
if ! "$cc" -fsanitize=fuzzer,address,undefined "$probe" -o "$workdir/probe" 2>"$workdir/probe.log"; then
  echo "SKIPPED: $cc cannot link -fsanitize=fuzzer,address,undefined (apt-get install libclang-rt-dev): $(tail -n 1 "$workdir/probe.log")"
  exit 0
fi

# Kernel library sources by glob: the library may be split into several files.
srcs=("$ops"/dtmm_*.c)
if [ ! -e "${srcs[0]}" ]; then
  echo "ERROR: no kernel sources under $ops" >&2
  exit 1
fi
recover=-fno-sanitize-recover=all
flags=(-g -O2 -std=c99 -fsanitize=fuzzer,address,undefined "$recover"
       -fno-omit-frame-pointer -I"$ops")
variant_flags() {
  case "$1" in
    default) ;;
    im2col) echo "-DDTMM_CONV_DRIVERS=DTMM_USE_IM2COL+DTMM_USE_POINTWISE_BLOCKS" ;;
    *) echo "fuzz_kernel.sh: unknown variant $1" >&2; return 1 ;;
  esac
}
IFS=, read -r -a vlist <<< "$variants"
for v in "${vlist[@]}"; do
  vf=$(variant_flags "$v") || exit 2
  # shellcheck disable=SC2086
  if ! "$cc" "${flags[@]}" $vf "$here/conv_s8_fuzzer.c" "${srcs[@]}" -o "$workdir/fuzz_$v" \
      2>"$workdir/build_$v.log"; then
    cat "$workdir/build_$v.log" >&2
    echo "FAILED: building the kernel fuzzer ($v)" >&2
    exit 1
  fi
done
echo "built ${#vlist[@]} fuzzer variant(s) in $workdir from ${#srcs[@]} kernel source(s)"

seeds=$workdir/seeds
rm -rf "$seeds"
groups=layer,corrupt,edge
if [ "$mode" = seeds ]; then groups=$seed_groups; fi
python3 "$here/gen_seeds.py" "$seeds" "$groups" >/dev/null || { echo "FAILED: gen_seeds.py" >&2; exit 1; }

export DTMM_FUZZ_STATS=1
export ASAN_OPTIONS=${ASAN_OPTIONS:-allocator_may_return_null=0:detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1}
common=(-timeout=20 -rss_limit_mb=2048 -max_len=1024 -use_value_profile=1 -print_final_stats=1)

# Prints the finding lines and the input of a failed run.
report() {  # log artifact-prefix
  grep -E "DTMM FUZZ FINDING|runtime error|ERROR: AddressSanitizer|ERROR: libFuzzer|SUMMARY|dims:|params:|corruption=" "$1" | head -n 20
  for a in "$2"*; do
    [ -f "$a" ] || continue
    echo "reproducer $a (base64): $(base64 -w0 "$a")"
  done
}

status=0
case "$mode" in
  seeds|replay)
    inputs=("$seeds")
    if [ "$mode" = replay ]; then inputs=("${replay[@]}"); fi
    for v in "${vlist[@]}"; do
      files=()
      for p in "${inputs[@]}"; do
        if [ -d "$p" ]; then files+=("$p"/*); else files+=("$p"); fi
      done
      for f in "${files[@]}"; do
        [ -f "$f" ] || continue
        log=$workdir/replay_$v.log
        if ! "$workdir/fuzz_$v" "${common[@]}" "$f" >"$log" 2>&1; then
          echo "FAILED ($v): $(basename "$f")"
          report "$log" /nonexistent
          status=1
        fi
      done
      if [ "${#files[@]}" -eq 0 ] || [ ! -f "${files[0]}" ]; then
        echo "FAILED: no input files in ${inputs[*]}" >&2
        status=1
      fi
      echo "$v: ran ${#files[@]} input(s)"
    done
    ;;
  fuzz)
    per=$(( budget / ${#vlist[@]} ))
    [ "$per" -lt 1 ] && per=1
    for v in "${vlist[@]}"; do
      corpus=$workdir/corpus_$v
      art=$workdir/artifacts_$v/
      rm -rf "$corpus" "$art"
      mkdir -p "$corpus" "$art"
      log=$workdir/fuzz_$v.log
      "$workdir/fuzz_$v" "${common[@]}" -max_total_time="$per" -artifact_prefix="$art" \
        "$corpus" "$seeds" >"$log" 2>&1
      rc=$?
      execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
      rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
      if [ "$rc" -ne 0 ]; then
        echo "FAILED ($v): finding after ${execs:-?} executions"
        report "$log" "$art"
        status=1
      else
        echo "$v: ${execs:-?} executions in ${per}s (${rate:-?}/s), no finding"
        grep '^dtmm-fuzz-stats' "$log" | sed 's/^/  /'
      fi
    done
    ;;
  long)
    # Keep-going mode: a recoverable-UBSan build of each variant records the first
    # input of every distinct finding (DTMM_FUZZ_FINDINGS) and continues; an ASan
    # report ends the process, which is restarted on the same corpus until the
    # budget is spent. triage.py replays everything with the aborting builds.
    if [ -z "$out" ]; then echo "--long needs --out DIR" >&2; exit 2; fi
    mkdir -p "$out/artifacts" "$out/findings"
    # --parallel: all variants at once, each for the whole budget
    per=$(( budget / ${#vlist[@]} ))
    [ "$parallel" = 1 ] && per=$budget
    long_variant() {
      local v=$1 vf corpus raw log end left total
      vf=$(variant_flags "$v")
      # shellcheck disable=SC2086
      "$cc" -g -O2 -std=c99 -fsanitize=fuzzer,address,undefined -fsanitize-recover=undefined \
        -fno-omit-frame-pointer -I"$ops" $vf "$here/conv_s8_fuzzer.c" "${srcs[@]}" \
        -o "$workdir/fuzz_${v}_recover" || return 1
      corpus=$out/corpus_$v
      raw=$out/raw_$v
      mkdir -p "$corpus" "$raw"
      log=$out/fuzz_$v.log
      : > "$log"
      end=$(( SECONDS + per ))
      while [ "$SECONDS" -lt "$end" ]; do
        left=$(( end - SECONDS ))
        DTMM_FUZZ_FINDINGS=$raw ASAN_OPTIONS=detect_leaks=0 \
          "$workdir/fuzz_${v}_recover" "${common[@]}" -max_total_time="$left" \
          -artifact_prefix="$out/artifacts/${v}-" "$corpus" "$seeds" >>"$log" 2>&1
      done
      for f in "$raw"/*.bin; do
        [ -f "$f" ] && cp "$f" "$out/artifacts/${v}-raw-$(basename "$f")"
      done
      echo "$v: ${per}s, $(ls "$raw" | wc -l) distinct raw findings"
    }
    for v in "${vlist[@]}"; do
      if [ "$parallel" = 1 ]; then long_variant "$v" & else long_variant "$v"; fi
    done
    wait
    python3 "$here/triage.py" --out "$out" --workdir "$workdir" --variants "$variants"
    status=$?
    ;;
esac
exit $status
