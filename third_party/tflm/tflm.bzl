"""tflm_test: a test that needs the TFLM checkout named by TFLM_ROOT."""

load("@tflm_config//:defs.bzl", "HAVE_TFLM", "TFLM_ROOT")

def tflm_test(name, srcs, args = [], data = [], tags = [], **kwargs):
    """An sh_test run with TFLM_ROOT in its environment and as its first argument.

    Without TFLM_ROOT it becomes a passing test that prints
    "SKIPPED: set TFLM_ROOT=<tflm checkout> to run TFLM-bound tests"
    (scripts/test lists those lines after the run).

    The test reads the TFLM tree outside Bazel's view, so it is tagged
    "external" (never cached) and "no-sandbox".

    Args:
      name: target name.
      srcs: the test script (one file), as for sh_test.
      args: extra arguments, passed after TFLM_ROOT.
      data: runfiles, as for sh_test.
      tags: extra tags.
      **kwargs: size, timeout, ... as for sh_test.
    """
    if HAVE_TFLM:
        native.sh_test(
            name = name,
            srcs = srcs,
            args = [TFLM_ROOT] + args,
            data = data,
            tags = tags + ["external", "no-sandbox", "tflm"],
            **kwargs
        )
    else:
        # Shown while Bazel loads the package, so plain `bazel test //...` says it too.
        print("SKIPPED: set TFLM_ROOT=<tflm checkout> to run TFLM-bound tests (//%s:%s)" %
              (native.package_name(), name))
        native.sh_test(
            name = name,
            srcs = ["//third_party/tflm:tflm_skip.sh"],
            tags = tags + ["tflm"],
            size = "small",
        )
