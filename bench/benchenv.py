"""Shared start-up of the bench scripts: run under the repo's .venv (so the
scripts work as plain executables) with python/ importable."""

import os
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def setup() -> pathlib.Path:
    """Re-exec the calling script with .venv/bin/python if it exists and is not
    the running interpreter; put python/ on sys.path. Returns the repo root."""
    venv = ROOT / ".venv"
    py = venv / "bin" / "python"
    if py.exists() and pathlib.Path(sys.prefix).resolve() != venv.resolve() \
            and not os.environ.get("DTMM_BENCH_NO_REEXEC"):
        os.environ["DTMM_BENCH_NO_REEXEC"] = "1"
        os.execv(str(py), [str(py), sys.argv[0], *sys.argv[1:]])
    sys.path.insert(0, str(ROOT / "python"))
    return ROOT
