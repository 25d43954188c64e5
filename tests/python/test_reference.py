"""dtmm.reference: TFLite's integer helpers, and folding + skipping == plain conv.

Bit-exactness against TFLite's own interpreter is in the converter's property
tests; here each helper is checked against a scalar transcription of the C++ code.
"""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dtmm import reference as R
from dtmm.errors import FormatError
from dtmm.fwcs import FWCS


def _scalar_mbqm(x: int, mult: int, shift: int) -> int:
    """gemmlowp double rounding, transcribed line by line with Python ints."""
    def wrap(v):
        return (v + 2**31) % 2**32 - 2**31
    left, right = max(shift, 0), max(-shift, 0)
    a = wrap(x * (1 << left))
    if a == mult == -2**31:
        high = 2**31 - 1
    else:
        ab = a * mult
        nudge = (1 << 30) if ab >= 0 else 1 - (1 << 30)
        v = ab + nudge
        high = v // 2**31 if v >= 0 else -(-v // 2**31)  # C truncating division
    mask = (1 << right) - 1
    threshold = (mask >> 1) + (1 if high < 0 else 0)
    return (high >> right) + (1 if (high & mask) > threshold else 0)


@settings(max_examples=500, deadline=None)
@given(x=st.integers(-2**31, 2**31 - 1), mult=st.integers(0, 2**31 - 1),
       shift=st.integers(-31, 8))
def test_multiply_by_quantized_multiplier_matches_scalar(x, mult, shift):
    got = int(R.multiply_by_quantized_multiplier(np.int64(x), mult, shift))
    assert got == _scalar_mbqm(x, mult, shift)


def test_multiply_by_quantized_multiplier_rounding_cases():
    # multiplier 0.5, shift -1 (x / 4): TFLite rounds twice, so 5 -> 2.5 -> 3 ->
    # 1.5 -> 2 where single rounding gives 1; gemmlowp's nudge takes -2.5 to -2.
    half = 1 << 30
    xs = np.array([3, -3, 5, -5, 0, 2**31 - 1, -2**31], np.int64)
    got = R.multiply_by_quantized_multiplier(xs, half, -1)
    assert list(got) == [_scalar_mbqm(int(x), half, -1) for x in xs]
    assert list(got[:4]) == [1, -1, 2, -1]


@pytest.mark.parametrize("real, expected", [
    (0.0, (0, 0)),
    (0.5, (1 << 30, 0)),
    (1.0, (1 << 30, 1)),
    (0.75, (3 << 29, 0)),
    (2.0 ** -40, (0, 0)),              # shift < -31 flushes to zero
    (0.999999999999, (1 << 30, 1)),    # rounds up to 2^31: halved, shift+1
])
def test_quantize_multiplier(real, expected):
    assert R.quantize_multiplier(real) == expected


def test_quantize_multiplier_reconstructs_scale():
    for real in np.geomspace(1e-6, 3.0, 200):
        m, s = R.quantize_multiplier(float(real))
        assert abs(m * 2.0 ** (s - 31) - real) <= real * 2**-30


def test_activation_ranges():
    assert R.activation_range(R.ACT_NONE, 0.1, 3) == (-128, 127)
    assert R.activation_range(R.ACT_RELU, 0.1, -5) == (-5, 127)
    # 6 / 0.05 = 120 -> -128 + 120
    assert R.activation_range(R.ACT_RELU6, 0.05, -128) == (-128, -8)
    assert R.activation_range(R.ACT_RELU6, 0.01, 0) == (0, 127)
    assert R.activation_range(R.ACT_RELU_N1_TO_1, 0.02, 10) == (-40, 60)
    # std::round of an exact half goes away from zero: 2.5 -> 3
    assert R.activation_range(R.ACT_RELU_N1_TO_1, 0.4, 0) == (-3, 3)
    with pytest.raises(FormatError):
        R.activation_range(7, 0.1, 0)


@pytest.mark.parametrize("in_size, k, s, d, pad, expected", [
    (32, 3, 1, 1, R.PADDING_SAME, (32, 1)),
    (32, 3, 2, 1, R.PADDING_SAME, (16, 0)),   # total pad 1 goes bottom/right
    (8, 5, 1, 2, R.PADDING_SAME, (8, 4)),
    (49, 5, 3, 1, R.PADDING_VALID, (15, 0)),
    (7, 3, 2, 2, R.PADDING_VALID, (2, 0)),
])
def test_out_size_and_padding(in_size, k, s, d, pad, expected):
    assert R.out_size_and_padding(in_size, k, s, d, pad) == expected


@st.composite
def conv_cases(draw):
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    c_in, c_out = draw(st.integers(1, 9)), draw(st.integers(1, 6))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    p = R.ConvParams(
        stride_h=draw(st.integers(1, 3)), stride_w=draw(st.integers(1, 3)),
        dilation_h=draw(st.integers(1, 2)), dilation_w=draw(st.integers(1, 2)),
        padding=draw(st.sampled_from([R.PADDING_SAME, R.PADDING_VALID])),
        input_zero_point=draw(st.integers(-128, 127)),
        output_zero_point=draw(st.integers(-128, 127)),
        act_min=draw(st.integers(-128, 0)), act_max=draw(st.integers(0, 127)))
    h = draw(st.integers((kh - 1) * p.dilation_h + 1, 10))
    w_ = draw(st.integers((kw - 1) * p.dilation_w + 1, 10))
    x = rng.integers(-128, 128, (draw(st.integers(1, 2)), h, w_, c_in), dtype=np.int8)
    w = rng.integers(-128, 128, (c_out, kh, kw, c_in), dtype=np.int8)
    w[rng.random((c_out, kh, kw)) < draw(st.floats(0, 1))] = 0
    bias = None if draw(st.booleans()) else rng.integers(-2**20, 2**20, c_out)
    mult = rng.integers(2**30, 2**31 - 1, c_out)
    shift = rng.integers(-14, -6, c_out)
    return x, w, bias, mult, shift, p


@settings(max_examples=300, deadline=None)
@given(conv_cases())
def test_folded_sparse_conv_equals_plain_conv(case):
    x, w, bias, mult, shift, p = case
    fw = FWCS.from_dense(w)
    folded = R.fold_bias(bias, fw, p.input_zero_point)
    got = R.dtmm_conv2d(x, fw, folded, mult, shift, p)
    want = R.tflite_conv2d(x, w, bias, mult, shift, p)
    assert got.dtype == np.int8 and got.shape == want.shape
    assert (got == want).all()


def test_padded_taps_read_the_input_zero_point():
    # 1x1 input, 3x3 SAME: only the centre tap is inside; the folded bias assumes
    # every kept tap read zp_in, so the result must equal centre-only TFLite math.
    x = np.full((1, 1, 1, 2), 9, np.int8)
    w = np.ones((1, 3, 3, 2), np.int8)
    p = R.ConvParams(input_zero_point=4, act_min=-128, act_max=127)
    fw = FWCS.from_dense(w)
    out = R.dtmm_conv2d(x, fw, R.fold_bias(None, fw, 4), [1 << 30], [1], p)
    # acc = (9 - 4) * 2 = 10; multiplier 0.5 * 2^1 = 1.0
    assert out.item() == 10


def test_empty_output_is_rejected():
    fw = FWCS.from_dense(np.ones((1, 5, 5, 1), np.int8))
    with pytest.raises(FormatError, match="output would be empty"):
        R.dtmm_conv2d(np.zeros((1, 3, 3, 1), np.int8), fw, [0], [1 << 30], [0],
                      R.ConvParams(padding=R.PADDING_VALID))


def test_wrap_int32():
    assert list(R.wrap_int32([2**31, -2**31 - 1, 5])) == [-2**31, 2**31 - 1, 5]
    assert math.isclose(R.per_channel_multipliers(0.5, [0.25], 0.125)[0][0], 1 << 30)


def test_requantize_adds_the_output_offset_in_int32():
    # TFLite: acc = MultiplyByQuantizedMultiplier(acc) + output_offset in int32
    # (wrapping), then the clamp. At multiplier 1 - 2^-28, 2^31 - 1 becomes
    # 2^31 - 9: plus zero point 100 it wraps negative; -2^31 becomes -2^31 + 8:
    # minus 100 it wraps positive.
    acc = np.array([2**31 - 1, -2**31, 1000], np.int64)
    assert list(R.requantize(acc, (1 << 31) - 8, 0, 100, -128, 127)) == [-128, -128, 127]
    assert list(R.requantize(acc, (1 << 31) - 8, 0, -100, -128, 127)) == [127, 127, 127]


def test_huge_dilation_is_an_error_not_an_allocation():
    # the contract allows dilation 65535; the padded input would be 17 G values
    from dtmm.core.errors import UnsupportedError

    fw = FWCS.from_dense(np.ones((1, 3, 3, 1), np.int8))
    with pytest.raises(UnsupportedError, match="too large for the NumPy reference"):
        R.dtmm_conv2d(np.zeros((1, 4, 4, 1), np.int8), fw, [0], [1 << 30], [0],
                      R.ConvParams(dilation_h=65535, dilation_w=65535))
