"""Targets that need TFLM (the checkout TFLM_ROOT names, as @tflm).

With TFLM_ROOT set they are ordinary targets over @tflm (//third_party/tflm:tflm.BUILD).
Without it, `bazel test //...` still passes and says so:
  tflm_cc_test, tflm_test  become a passing test that prints
                           "SKIPPED: set TFLM_ROOT=<tflm checkout> to run TFLM-bound tests"
                           (scripts/test lists those lines after the run);
  tflm_cc_library,         are tagged "manual" (left out of //...); building one by
  tflm_cc_binary           name fails with @tflm's message naming TFLM_ROOT.
"""

load("@tflm_config//:defs.bzl", "HAVE_TFLM", "TFLM_ROOT")

# C++ that includes TFLM headers: TFLM is C++17 (Bazel 4's default is -std=c++0x).
TFLM_CXXOPTS = ["-std=c++17"]

def _skip_test(name, tags):
    # Shown while Bazel loads the package, so plain `bazel test //...` says it
    # too (not for "manual" targets, which //... leaves out anyway).
    if "manual" not in tags:
        print("SKIPPED: set TFLM_ROOT=<tflm checkout> to run TFLM-bound tests (//%s:%s)" %
              (native.package_name(), name))
    native.sh_test(
        name = name,
        srcs = ["//third_party/tflm:tflm_skip.sh"],
        tags = tags + ["tflm"],
        size = "small",
    )

def tflm_cc_library(name, copts = [], tags = [], **kwargs):
    """cc_library compiled against TFLM (C++17); "manual" without TFLM_ROOT."""
    native.cc_library(
        name = name,
        copts = TFLM_CXXOPTS + copts,
        tags = tags + ([] if HAVE_TFLM else ["manual"]),
        **kwargs
    )

def tflm_cc_binary(name, copts = [], tags = [], **kwargs):
    """cc_binary compiled against TFLM (C++17); "manual" without TFLM_ROOT."""
    native.cc_binary(
        name = name,
        copts = TFLM_CXXOPTS + copts,
        tags = tags + ([] if HAVE_TFLM else ["manual"]),
        **kwargs
    )

def tflm_cc_test(name, copts = [], tags = [], **kwargs):
    """cc_test against @tflm: hermetic, sandboxed, cached; a SKIPPED test without TFLM_ROOT."""
    if not HAVE_TFLM:
        _skip_test(name, tags)
        return
    native.cc_test(
        name = name,
        copts = TFLM_CXXOPTS + copts,
        tags = tags + ["tflm"],
        **kwargs
    )

def tflm_sh_test(name, tags = [], **kwargs):
    """sh_test whose data come from @tflm targets; a SKIPPED test without TFLM_ROOT."""
    if not HAVE_TFLM:
        _skip_test(name, tags)
        return
    native.sh_test(
        name = name,
        tags = tags + ["tflm"],
        **kwargs
    )

def tflm_test(name, srcs, args = [], data = [], tags = [], **kwargs):
    """An sh_test run with the TFLM checkout's path as its first argument.

    For tests that drive TFLM's own make in TFLM_ROOT (tflm_make_test.sh). They
    read and write that tree outside Bazel's view, so they are tagged "external"
    (never cached) and "no-sandbox".

    Args:
      name: target name.
      srcs: the test script (one file), as for sh_test.
      args: extra arguments, passed after TFLM_ROOT.
      data: runfiles, as for sh_test.
      tags: extra tags.
      **kwargs: size, timeout, ... as for sh_test.
    """
    if not HAVE_TFLM:
        _skip_test(name, tags)
        return
    native.sh_test(
        name = name,
        srcs = srcs,
        args = [TFLM_ROOT] + args,
        data = data,
        tags = tags + ["external", "no-sandbox", "tflm"],
        **kwargs
    )
