"""The Bazel/pytest wiring sees the source tree's dtmm package and the venv."""

import pathlib
import sys

import dtmm
import dtmm.errors


def test_dtmm_imports_from_this_checkout():
    here = pathlib.Path(__file__).resolve()
    root = next(p for p in here.parents if (p / "WORKSPACE").is_file())
    assert pathlib.Path(dtmm.__file__).resolve().parent == root / "python" / "dtmm"


def test_errors_share_one_base():
    for cls in (dtmm.errors.FormatError, dtmm.errors.ModelError, dtmm.errors.UnsupportedError):
        assert issubclass(cls, dtmm.errors.DtmmError)
    assert dtmm.DtmmError is dtmm.errors.DtmmError


def test_runs_in_the_project_venv():
    # scripts/setup installs these into .venv; a system Python would lack them.
    import flatbuffers  # noqa: F401
    import numpy  # noqa: F401

    assert sys.prefix != sys.base_prefix, "pytest is not running inside a virtualenv"
