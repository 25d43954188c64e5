#!/bin/bash
# Runs one pytest file for Bazel (see pytest.bzl).
#
# The file is run from the source tree, not from runfiles, so conftest.py,
# helper modules and the dtmm package resolve exactly as with a plain `pytest`;
# the interpreter is the project's venv (scripts/setup makes it), or
# $DTMM_PYTHON when set.
set -uo pipefail

src="$1"
shift
real="$(readlink -f "$src")" || { echo "ERROR: cannot resolve $src" >&2; exit 1; }

# The workspace root is the nearest ancestor holding WORKSPACE.
root="$(dirname "$real")"
while [ "$root" != "/" ] && [ ! -f "$root/WORKSPACE" ]; do
  root="$(dirname "$root")"
done
if [ ! -f "$root/WORKSPACE" ]; then
  echo "ERROR: no WORKSPACE above $real" >&2
  exit 1
fi

py="${DTMM_PYTHON:-$root/.venv/bin/python}"
if [ ! -x "$py" ]; then
  echo "ERROR: no Python interpreter at $py: run scripts/setup first (or set DTMM_PYTHON)" >&2
  exit 1
fi

export PYTHONPATH="$root/python${PYTHONPATH:+:$PYTHONPATH}"
# The source tree may be read-only inside the sandbox.
export PYTHONDONTWRITEBYTECODE=1
export MPLBACKEND=Agg
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
# Hypothesis' example database goes to the test's tmp dir; run from the root so
# pytest reports tests/python/... paths.
tmp="${TEST_TMPDIR:-$(mktemp -d)}"
export HYPOTHESIS_STORAGE_DIRECTORY="$tmp/.hypothesis"
# HOME is read-only in the sandbox; each test gets its own temp dir and caches,
# so two pytest processes never share pytest's per-user temp root. A short path in
# the system temp dir (not TEST_TMPDIR) stays within AF_UNIX socket path limits.
TMPDIR="$(env -u TMPDIR mktemp -d -t dtmm-pytest.XXXXXX)"
export TMPDIR
trap 'rm -rf "$TMPDIR"' EXIT
export MPLCONFIGDIR="$tmp/matplotlib"
export KERAS_HOME="$tmp/keras"
cd "$root"

junit=()
if [ -n "${XML_OUTPUT_FILE:-}" ]; then
  junit=(--junitxml="$XML_OUTPUT_FILE")
fi

log="$tmp/pytest_output.txt"
"$py" -m pytest -p no:cacheprovider -v -rs --rootdir="$root" "${junit[@]}" "${real#$root/}" "$@" 2>&1 | tee "$log"
rc="${PIPESTATUS[0]}"
if [ "$rc" -eq 5 ]; then
  # pytest says 5 ("no tests collected") also when a module-level skip drops
  # every test; that is a skip (the -rs lines above say why), not a failure.
  if tail -n 1 "$log" | grep -Eq '[0-9]+ skipped'; then
    exit 0
  fi
  echo "ERROR: pytest collected no tests from ${real#$root/}" >&2
  exit 1
fi
exit "$rc"
