"""NumPy reference of DTMM_CONV_2D, bit-exact with TFLite's reference int8 CONV_2D
(and of DTMM_FULLY_CONNECTED: dtmm_fully_connected / tflite_fully_connected, from
dtmm.core.fc).

    out = dtmm_conv2d(x, fwcs, folded_bias, multiplier, shift, ConvParams(...))
    # fwcs: dtmm.core.fwcs.FWCS of either format version (fwcs.block = B)

Everything here mirrors TFLite's C++ integer code: `QuantizeMultiplier`,
`MultiplyByQuantizedMultiplier` (gemmlowp double rounding, TFLite's default),
`CalculateActivationRangeQuantized` and `ComputePaddingHeightWidth` (all in
`dtmm.core.quant` / `dtmm.core.geometry`, re-exported here). Accumulators wrap to int32
like TFLite's, and so does `MultiplyByQuantizedMultiplier(acc) + output_offset` before
the clamp (docs/contract.md "Semantics").
"""

from __future__ import annotations

import numpy as np

from dtmm.core.errors import FormatError, UnsupportedError
from dtmm.core.fc import dtmm_fully_connected, tflite_fully_connected  # noqa: F401
from dtmm.core.fwcs import FWCS
from dtmm.core.geometry import (PADDING_NAMES, PADDING_SAME, PADDING_VALID,  # noqa: F401
                                out_size_and_padding)
from dtmm.core.ops import ConvParams, fold_bias  # noqa: F401
from dtmm.core.quant import (ACT_NONE, ACT_RELU, ACT_RELU6, ACT_RELU_N1_TO_1,  # noqa: F401
                             ACTIVATION_NAMES, INT32_MAX, INT32_MIN, activation_range,
                             multiply_by_quantized_multiplier, per_channel_multipliers,
                             quantize_multiplier, requantize, wrap_int32)


MAX_PADDED_ELEMENTS = 1 << 28  # 2 GiB of int64


def _padded_taps(x: np.ndarray, kh: int, kw: int, p: ConvParams, fill: int):
    """Yield (i, j, view [N, OH, OW, C_in]) of the input each filter tap reads,
    with out-of-bounds positions holding `fill`."""
    n, h, w, c = x.shape
    oh, pad_t = out_size_and_padding(h, kh, p.stride_h, p.dilation_h, p.padding)
    ow, pad_l = out_size_and_padding(w, kw, p.stride_w, p.dilation_w, p.padding)
    if oh < 1 or ow < 1:
        raise FormatError(
            f"output would be empty: input {h}x{w}, kernel {kh}x{kw}, "
            f"dilation {p.dilation_h}x{p.dilation_w}, padding {PADDING_NAMES[p.padding]}")
    need_h = (oh - 1) * p.stride_h + (kh - 1) * p.dilation_h + 1
    need_w = (ow - 1) * p.stride_w + (kw - 1) * p.dilation_w + 1
    elements = n * max(need_h, pad_t + h) * max(need_w, pad_l + w) * c
    if elements > MAX_PADDED_ELEMENTS:  # a model may lie; don't allocate terabytes
        raise UnsupportedError(
            f"the padded input ({elements} values for kernel {kh}x{kw}, dilation "
            f"{p.dilation_h}x{p.dilation_w}) is too large for the NumPy reference")
    padded = np.full((n, max(need_h, pad_t + h), max(need_w, pad_l + w), c), fill,
                     np.int64)
    padded[:, pad_t:pad_t + h, pad_l:pad_l + w, :] = x
    for i in range(kh):
        for j in range(kw):
            y0, x0 = i * p.dilation_h, j * p.dilation_w
            yield i, j, padded[:, y0:y0 + (oh - 1) * p.stride_h + 1:p.stride_h,
                               x0:x0 + (ow - 1) * p.stride_w + 1:p.stride_w, :]


def _requantize(acc, multiplier, shift, p: ConvParams) -> np.ndarray:
    return requantize(acc, multiplier, shift, p.output_zero_point, p.act_min, p.act_max)


def dtmm_conv2d(x: np.ndarray, fwcs: FWCS, bias, multiplier, shift,
                params: ConvParams) -> np.ndarray:
    """DTMM_CONV_2D per docs/contract.md 'Semantics' (format version 1 or 2):
    folded int32 bias, padded taps read the input zero point, pruned filterlets
    (with fwcs.block < C_in: pruned blocks of B input channels, zero in
    fwcs.to_dense()) contribute nothing; taps with no kept block are skipped."""
    x = np.asarray(x)
    if x.dtype != np.int8 or x.ndim != 4 or x.shape[3] != fwcs.c_in:
        raise FormatError(f"input must be int8 NHWC with C_in={fwcs.c_in}, got "
                          f"{x.dtype} {x.shape}")
    weights = fwcs.to_dense().astype(np.int64)
    mask = fwcs.mask
    acc = None
    for i, j, tap in _padded_taps(x, fwcs.kernel_h, fwcs.kernel_w, params,
                                  params.input_zero_point):
        if not mask[:, i, j].any():
            continue
        term = tap @ weights[:, i, j, :].T
        acc = term if acc is None else acc + term
    n, h, w, _ = x.shape
    oh = out_size_and_padding(h, fwcs.kernel_h, params.stride_h, params.dilation_h,
                              params.padding)[0]
    ow = out_size_and_padding(w, fwcs.kernel_w, params.stride_w, params.dilation_w,
                              params.padding)[0]
    if acc is None:
        acc = np.zeros((n, oh, ow, fwcs.c_out), np.int64)
    acc = wrap_int32(acc + np.asarray(bias, np.int64))
    return _requantize(acc, multiplier, shift, params)


def tflite_conv2d(x: np.ndarray, filter_ohwi: np.ndarray, bias, multiplier, shift,
                  params: ConvParams) -> np.ndarray:
    """TFLite's reference int8 per-channel CONV_2D (unfolded: (x - zp_in) * w over
    in-bounds taps, plus the original bias or none). Independent of FWCS, used to
    check that folding and filterlet skipping change nothing."""
    x = np.asarray(x)
    w = np.asarray(filter_ohwi).astype(np.int64)
    acc = None
    shifted = x.astype(np.int64) - params.input_zero_point
    for i, j, tap in _padded_taps(shifted, w.shape[1], w.shape[2], params, 0):
        term = tap @ w[:, i, j, :].T
        acc = term if acc is None else acc + term
    if bias is not None:
        acc = acc + np.asarray(bias, np.int64)
    return _requantize(wrap_int32(acc), multiplier, shift, params)
