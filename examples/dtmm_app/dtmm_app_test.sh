#!/bin/bash
# The README's "Use DTMM in your TFLM app" on x86, for Bazel (//examples/dtmm_app):
#   dtmm_app_test.sh DTMM_APP MAKE_PRUNED_MODEL_PY
# Python: $DTMM_PYTHON, else the repo's .venv (scripts/setup makes it).
set -euo pipefail

app=$(readlink -f "$1")
gen=$(readlink -f "$2")
root=$(dirname "$gen")
while [[ $root != / && ! -f $root/WORKSPACE ]]; do root=$(dirname "$root"); done
[[ -f $root/WORKSPACE ]] || { echo "ERROR: no WORKSPACE above $gen" >&2; exit 1; }
py=${DTMM_PYTHON:-$root/.venv/bin/python}
[[ -x $py ]] || { echo "ERROR: no Python at $py: run scripts/setup (or set DTMM_PYTHON)" >&2; exit 1; }
export PYTHONPATH=$root/python PYTHONDONTWRITEBYTECODE=1 TF_CPP_MIN_LOG_LEVEL=3
tmp=$(mktemp -d "${TEST_TMPDIR:-/tmp}/dtmm-app.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

fail() { echo "FAIL: $*" >&2; exit 1; }
step() { echo; echo "== $*"; }

# Runs the app on an original model and its DTMM conversion; the outputs of
# every run must be identical and the converted model must run DTMM ops.
compare() {
  local original=$1 converted=$2 runs=$3 name=$4
  step "dtmm_app $name: original vs DTMM, $runs run(s)"
  "$app" "$original" --runs "$runs" >"$tmp/$name.orig.txt" || fail "dtmm_app on $original (exit $?)"
  "$app" "$converted" --runs "$runs" >"$tmp/$name.dtmm.txt" || fail "dtmm_app on $converted (exit $?)"
  head -n 1 "$tmp/$name.orig.txt"
  { head -n 4 "$tmp/$name.dtmm.txt"; [[ $runs -le 3 ]] || echo "..."; tail -n 1 "$tmp/$name.dtmm.txt"; } | cut -c1-200
  grep -q '^model: .*DTMM_CONV_2D x[1-9]' "$tmp/$name.dtmm.txt" || fail "$name: no DTMM_CONV_2D in the converted model"
  if grep -q 'DTMM_CONV_2D' "$tmp/$name.orig.txt"; then fail "$name: original already has DTMM ops"; fi
  local lines
  lines=$(grep -c '^run ' "$tmp/$name.dtmm.txt" || true)
  [[ $lines -ge $runs ]] || fail "$name: $lines output lines for $runs runs"
  diff <(grep '^run ' "$tmp/$name.orig.txt") <(grep '^run ' "$tmp/$name.dtmm.txt") ||
    fail "$name: DTMM model's outputs differ from the original's"
  grep -Eq '^arena: used [1-9][0-9]* of [0-9]+ bytes$' "$tmp/$name.dtmm.txt" || fail "$name: no arena line"
  # Different inputs per run must give different outputs somewhere, or the runs
  # did not see their inputs (or, streaming, their state).
  [[ $(grep '^run ' "$tmp/$name.dtmm.txt" | cut -d: -f2 | sort -u | wc -l) -gt 1 ]] ||
    fail "$name: every run printed the same outputs"
  echo "ok: $name outputs identical over $runs run(s)"
}

step "a small filterlet-pruned int8 CNN (made now, not committed)"
"$py" "$gen" "$tmp/model_int8.tflite" >"$tmp/gen.log" 2>&1 || { cat "$tmp/gen.log"; fail "make_pruned_model.py"; }
tail -n 1 "$tmp/gen.log"

step "dtmm convert / dtmm verify (README step 1)"
"$py" -m dtmm convert "$tmp/model_int8.tflite" -o "$tmp/model_dtmm.tflite"
"$py" -m dtmm verify "$tmp/model_int8.tflite" "$tmp/model_dtmm.tflite" 2>/dev/null

compare "$tmp/model_int8.tflite" "$tmp/model_dtmm.tflite" 3 cnn

# 100 invocations: its output (a wake word probability) moves with the state
# its VAR_HANDLE/READ_VARIABLE/ASSIGN_VARIABLE ops carry between them.
step "a streaming model: microWakeWord hey_mycroft (resource variables, CALL_ONCE)"
wakeword=$("$py" -c 'import os, pymicro_wakeword as p; print(os.path.join(os.path.dirname(p.__file__), "models", "hey_mycroft.tflite"))') ||
  fail "pymicro_wakeword (a test dependency, scripts/setup) is not importable from $py"
[[ -f $wakeword ]] || fail "no $wakeword"
# Shipped dense, its convs are not faster as DTMM: zero half the filterlets first.
"$py" -m dtmm sparsify "$wakeword" -o "$tmp/wakeword_s50.tflite" --sparsity 0.5 | tail -n 1
"$py" -m dtmm convert "$tmp/wakeword_s50.tflite" -o "$tmp/wakeword_dtmm.tflite" | tail -n 2
compare "$tmp/wakeword_s50.tflite" "$tmp/wakeword_dtmm.tflite" 100 wakeword

step "bad input: one error line, exit 2"
expect_error() {
  local what=$1; shift
  local rc=0
  "$app" "$@" >"$tmp/err.out" 2>"$tmp/err.txt" || rc=$?
  [[ $rc -eq 2 ]] || fail "$what: exit $rc, want 2"
  grep -q '^dtmm_app: error: \|^usage: ' "$tmp/err.txt" || fail "$what: no error message: $(cat "$tmp/err.txt")"
  echo "ok: $what -> $(head -n 1 "$tmp/err.txt")"
}
head -c 1000 "$tmp/model_dtmm.tflite" >"$tmp/truncated.tflite"
printf 'not a model' >"$tmp/text.tflite"
expect_error "missing file" "$tmp/missing.tflite"
expect_error "truncated model" "$tmp/truncated.tflite"
expect_error "not a flatbuffer" "$tmp/text.tflite"
expect_error "wrong-size --input" "$tmp/model_dtmm.tflite" --input "$tmp/text.tflite"
expect_error "bad --runs" "$tmp/model_dtmm.tflite" --runs 0
echo
echo "dtmm_app_test: all checks passed"
