"""pytest_test / pytest_suite: one Bazel test per pytest file, run with the project venv."""

def pytest_test(name, src, data = [], args = [], tags = [], size = "medium", timeout = "long", **kwargs):
    """Runs `pytest <src>` with .venv/bin/python and python/ on PYTHONPATH.

    The test reads the source tree directly (conftest.py, helpers, dtmm_ops C
    sources a test may compile), which Bazel cannot see, so it is tagged
    "external": never served from the cache.

    Args:
      name: target name.
      src: the pytest file, e.g. "test_fwcs.py".
      data: more runfiles (the dtmm sources are always included).
      args: extra pytest arguments.
      tags: extra tags.
      size: Bazel test size; "large" for TensorFlow training.
      timeout: "long" (900 s) by default: TensorFlow tests on a shared
        2-core CI machine run 2-3x slower than on an idle one.
      **kwargs: anything else sh_test takes (timeout, shard_count, ...).
    """
    native.sh_test(
        name = name,
        srcs = ["//tests/python:pytest_runner.sh"],
        args = ["$(location %s)" % src] + args,
        data = [src, "//:python_srcs"] + data,
        tags = tags + ["external", "pytest"],
        size = size,
        timeout = timeout,
        **kwargs
    )

def pytest_suite(srcs, large = [], data = [], tags = [], exclude = []):
    """One pytest_test per file in srcs, named after the file without ".py".

    Args:
      srcs: pytest files.
      large: the subset of srcs that train TensorFlow models (size "large").
      data: runfiles for every test.
      tags: tags for every test.
      exclude: files in srcs to leave out.
    """
    for f in large:
        if f not in srcs:
            fail("pytest_suite: large file %s is not in srcs" % f)
    for f in srcs:
        if f in exclude:
            continue
        pytest_test(
            name = f[:-len(".py")] if f.endswith(".py") else f,
            src = f,
            data = data,
            tags = tags,
            size = "large" if f in large else "medium",
        )
