"""dtmm.core.drivers: the Python mirror of dtmm_conv_s8_choose (which driver a
DTMM_CONV_2D runs per target) and the build flags `dtmm convert` prints. That the
mirror equals the C on each architecture is checked by dtmm_conv_s8_test.c against
dtmm_ops/tests/dtmm_driver_golden.h; here: the committed header is what the
generator writes now, the predicates' edges, and model-level sets."""
import pathlib
import subprocess
import sys

import pytest

from dtmm.core import drivers
from dtmm.core.errors import ArgumentError

ROOT = next(p for p in pathlib.Path(__file__).resolve().parents if (p / "WORKSPACE").is_file())


def test_golden_header_is_fresh():
    r = subprocess.run([sys.executable, str(ROOT / "dtmm_ops/tests/gen_driver_golden.py"),
                        "--check"], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr


def g(**kw):
    base = dict(in_w=16, in_c=32, out_h=16, out_w=16, ker_h=3, ker_w=3)
    base.update(kw)
    return drivers.ConvGeom(**base)


@pytest.mark.parametrize("geom, block, arch, want", [
    (g(), 0, "cortex-m4", "window"),
    (g(), 0, "cortex-m55", "window"),
    (g(ker_h=1, ker_w=1), 0, "cortex-m4", "pointwise"),
    (g(ker_h=1, ker_w=1), 8, "cortex-m4", "pointwise_blocks"),
    (g(ker_h=1, ker_w=1), 32, "cortex-m4", "pointwise"),       # B = C_in: filterlets
    (g(out_h=1, out_w=2), 0, "cortex-m4", "pixel"),           # fewer pixels than DTMM_P
    (g(out_h=1, out_w=3), 0, "cortex-m4", "window"),          # DSP groups 3 pixels
    (g(out_h=1, out_w=3), 0, "cortex-m55", "pixel"),          # MVE groups 4
    # 1x1: fewer pixels than DTMM_POINTWISE_MIN_PIXELS (MVE 3, DSP 3) take the pixel driver
    (g(ker_h=1, ker_w=1, in_c=64, out_h=1, out_w=2), 0, "cortex-m55", "pixel"),
    (g(ker_h=1, ker_w=1, in_c=64, out_h=1, out_w=3), 0, "cortex-m55", "pointwise"),
    (g(ker_h=1, ker_w=1, in_c=64, out_h=3, out_w=3), 0, "cortex-m55", "pointwise"),
    (g(ker_h=1, ker_w=1, in_c=64, out_h=1, out_w=2), 0, "cortex-m4", "pixel"),
    (g(ker_h=1, ker_w=1, in_c=64, out_h=3, out_w=3), 0, "cortex-m4", "pointwise"),
    (g(ker_h=1, ker_w=1, in_c=64, out_h=1, out_w=3), 0, "portable", "pixel"),  # groups of 4
    (g(in_c=1), 0, "cortex-m4", "expanded"),
    (g(in_c=3, ker_h=4, ker_w=4), 0, "cortex-m4", "expanded"),  # >= 16 taps over <= 3
    (g(in_c=3), 0, "cortex-m4", "window"),                      # 9 taps, rows of 9 bytes
    (g(in_c=2), 0, "cortex-m4", "expanded"),                    # rows of 6 bytes < 8
    (g(in_c=8, dh=2, dw=2), 0, "cortex-m4", "expanded"),        # dilated, C_in <= 8
    (g(in_c=16, dh=2, dw=2), 0, "cortex-m55", "im2col"),        # dilated, C_in < 32
    (g(in_c=16, dh=2, dw=2), 0, "cortex-m4", "window"),
    (g(ker_h=7, ker_w=7), 0, "cortex-m4", "im2col"),            # > 32 taps
    (g(out_h=4, out_w=4), 0, "cortex-m55", "im2col"),           # 2-D plane <= 16 px
    (g(out_h=4, out_w=4), 0, "cortex-m4", "window"),
    (g(out_h=16, out_w=1, in_w=1, ker_w=1, ker_h=5), 0, "cortex-m55", "window"),  # a line
])
def test_predicates(geom, block, arch, want):
    assert drivers.conv_driver(geom, block, arch) == want


@pytest.mark.parametrize("geom, driver, arch, want", [
    (g(), "window", "cortex-m55", ("im2col_interleaved",)),     # C_in 32, 9 taps
    (g(), "window", "cortex-m4", ()),                           # MVE only
    (g(in_c=24), "im2col", "cortex-m55", ()),                   # not a multiple of 16
    (g(ker_h=5, ker_w=5), "im2col", "cortex-m55", ("im2col_interleaved",)),  # 25 taps
    (g(ker_h=2, ker_w=13), "im2col", "cortex-m55", ()),         # 26 taps: neither
    (g(ker_h=1, ker_w=31), "im2col", "cortex-m55", ()),         # one word of dtmm_bits
    (g(ker_h=4, ker_w=8), "window", "cortex-m55", ("im2col_large",)),  # 32: leftovers
    (g(ker_h=10, ker_w=10, in_c=3), "im2col", "cortex-m55", ("im2col_large",)),
    (g(ker_h=1, ker_w=101), "im2col", "cortex-m55", ()),        # above 100: general
    (g(), "pixel", "cortex-m55", ()),                           # no im2col rows
    (g(ker_h=7, ker_w=7), "expanded", "cortex-m55", ()),
])
def test_im2col_paths(geom, driver, arch, want):
    assert drivers.conv_paths(geom, driver, arch) == want


def test_targets_and_flags():
    assert drivers.arch_of_target("cortex-m7") == "dsp"
    assert drivers.arch_of_target("mve") == "mve"
    with pytest.raises(ArgumentError, match="unknown target 'cortex-m0'"):
        drivers.arch_of_target("cortex-m0")
    assert drivers.built(["window", "pixel"]) == ("pixel", "im2col", "window")
    with pytest.raises(ArgumentError, match="unknown conv driver"):
        drivers.built(["rect"])
    assert drivers.built(["im2col_large", "window"]) == ("im2col", "window", "im2col_large")
    with pytest.raises(ArgumentError, match="im2col_interleaved: paths of im2col"):
        drivers.built(["pixel", "im2col_interleaved"])
    assert (drivers.copt_flag(("window", "im2col_interleaved"))
            == "-DDTMM_CONV_DRIVERS=DTMM_USE_WINDOW+DTMM_USE_IM2COL_INTERLEAVED")
    names = ("pointwise", "window")
    assert drivers.make_flag(names) == 'DTMM_CONV_DRIVERS="pointwise window"'
    assert drivers.copt_flag(names) == "-DDTMM_CONV_DRIVERS=DTMM_USE_POINTWISE+DTMM_USE_WINDOW"
    assert drivers.copt_flag(()) == "-DDTMM_CONV_DRIVERS=0"


def test_model_drivers_of_a_converted_model():
    from dtmm.convert import convert_model
    from tflite_models import ConvConfig, conv_branches_model

    buf = conv_branches_model([ConvConfig(c_in=16, c_out=8, kh=3, kw=3, h=8, w=8),
                               ConvConfig(c_in=16, c_out=8, kh=1, kw=1, h=8, w=8)])
    out, _ = convert_model(buf, always=True)
    assert drivers.model_drivers(out, "cortex-m4") == ("pointwise", "window")
    # C_in 16 through the window drivers: their leftovers take the interleaved rows
    assert drivers.model_drivers(out, "cortex-m55") == ("pointwise", "window",
                                                       "im2col_interleaved")
    assert drivers.model_drivers(buf, "cortex-m4") == ()  # no DTMM op yet
