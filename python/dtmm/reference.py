"""NumPy reference of DTMM_CONV_2D, bit-exact with TFLite's reference int8 CONV_2D.

    out = dtmm_conv2d(x, fwcs, folded_bias, multiplier, shift, ConvParams(...))

Everything here mirrors TFLite's C++ integer code: `QuantizeMultiplier`,
`MultiplyByQuantizedMultiplier` (gemmlowp double rounding, TFLite's default),
`CalculateActivationRangeQuantized` and `ComputePaddingHeightWidth`. Accumulators wrap
to int32 like TFLite's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from dtmm.errors import FormatError
from dtmm.fwcs import FWCS

INT32_MIN = -(1 << 31)
INT32_MAX = (1 << 31) - 1

# TFLite enums (schema ActivationFunctionType, Padding).
ACT_NONE, ACT_RELU, ACT_RELU_N1_TO_1, ACT_RELU6 = 0, 1, 2, 3
ACTIVATION_NAMES = {ACT_NONE: "NONE", ACT_RELU: "RELU",
                    ACT_RELU_N1_TO_1: "RELU_N1_TO_1", ACT_RELU6: "RELU6"}
PADDING_SAME, PADDING_VALID = 0, 1
PADDING_NAMES = {PADDING_SAME: "SAME", PADDING_VALID: "VALID"}


def _round_half_away(x: float) -> float:
    """C's std::round (TfLiteRound): halves away from zero."""
    return math.floor(x + 0.5) if x >= 0 else -math.floor(-x + 0.5)


def quantize_multiplier(real_multiplier: float) -> tuple[int, int]:
    """TFLite QuantizeMultiplier: real = multiplier * 2^(shift - 31)."""
    if real_multiplier == 0.0:
        return 0, 0
    q, shift = math.frexp(real_multiplier)
    q_fixed = int(_round_half_away(q * (1 << 31)))
    if q_fixed == (1 << 31):
        q_fixed //= 2
        shift += 1
    if shift < -31:
        return 0, 0
    return q_fixed, shift


def per_channel_multipliers(input_scale: float, filter_scales, output_scale: float):
    """int32 multiplier and shift per output channel, as TFLite computes them in
    Prepare: double(input_scale) * double(filter_scale) / double(output_scale)."""
    s_in = float(np.float32(input_scale))
    s_out = float(np.float32(output_scale))
    pairs = [quantize_multiplier(s_in * float(np.float32(s)) / s_out)
             for s in np.asarray(filter_scales, np.float32).reshape(-1)]
    mult = np.array([m for m, _ in pairs], np.int32)
    shift = np.array([s for _, s in pairs], np.int32)
    return mult, shift


def activation_range(activation: int, output_scale: float, output_zero_point: int,
                     qmin: int = -128, qmax: int = 127) -> tuple[int, int]:
    """TFLite CalculateActivationRangeQuantized for int8 outputs."""
    scale = np.float32(output_scale)

    def quantize(f: float) -> int:  # TFLite divides in float32, then std::round
        return int(output_zero_point) + int(_round_half_away(float(np.float32(f) / scale)))

    if activation == ACT_NONE:
        return qmin, qmax
    if activation == ACT_RELU:
        return max(qmin, quantize(0.0)), qmax
    if activation == ACT_RELU6:
        return max(qmin, quantize(0.0)), min(qmax, quantize(6.0))
    if activation == ACT_RELU_N1_TO_1:
        return max(qmin, quantize(-1.0)), min(qmax, quantize(1.0))
    raise FormatError(f"unsupported fused activation {activation}")


def wrap_int32(x) -> np.ndarray:
    """Two's-complement wrap of int64 values to int32 range (kept as int64)."""
    x = np.asarray(x, np.int64)
    return ((x + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)


def multiply_by_quantized_multiplier(x, multiplier, shift) -> np.ndarray:
    """TFLite MultiplyByQuantizedMultiplier(int32 x, ...), element-wise with
    broadcasting (channels on the last axis). Returns int64 values in int32 range."""
    x = wrap_int32(x)
    mult = np.asarray(multiplier, np.int64)
    shift = np.asarray(shift, np.int64)
    left = np.maximum(shift, 0)
    right = np.maximum(-shift, 0)
    a = wrap_int32(x << left)  # int32 x * (1 << left_shift), wrapping
    # gemmlowp SaturatingRoundingDoublingHighMul
    ab = a * mult
    nudged = ab + np.where(ab >= 0, 1 << 30, 1 - (1 << 30))
    high = np.where(nudged >= 0, nudged >> 31, -((-nudged) >> 31))  # C division
    high = np.where((a == INT32_MIN) & (mult == INT32_MIN), INT32_MAX, high)
    # gemmlowp RoundingDivideByPOT
    mask = np.left_shift(np.int64(1), right) - 1
    remainder = high & mask
    threshold = (mask >> 1) + (high < 0)
    return (high >> right) + (remainder > threshold)


def out_size_and_padding(in_size: int, kernel: int, stride: int, dilation: int,
                         padding: int) -> tuple[int, int]:
    """(output size, leading padding) as TFLite's ComputeOutSize /
    ComputePaddingWithOffset; the trailing padding is whatever the output needs."""
    eff = (kernel - 1) * dilation + 1
    if padding == PADDING_SAME:
        out = (in_size + stride - 1) // stride
    elif padding == PADDING_VALID:
        out = int((in_size + stride - eff) / stride)  # C truncation
    else:
        raise FormatError(f"unknown padding {padding}")
    total = max((out - 1) * stride + eff - in_size, 0)
    return out, total // 2


@dataclass(frozen=True)
class ConvParams:
    """Everything of DTMM_CONV_2D besides tensors (contract 'Custom options' plus
    the output zero point)."""

    stride_h: int = 1
    stride_w: int = 1
    dilation_h: int = 1
    dilation_w: int = 1
    padding: int = PADDING_SAME
    input_zero_point: int = 0
    output_zero_point: int = 0
    act_min: int = -128
    act_max: int = 127


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
    padded = np.full((n, max(need_h, pad_t + h), max(need_w, pad_l + w), c), fill,
                     np.int64)
    padded[:, pad_t:pad_t + h, pad_l:pad_l + w, :] = x
    for i in range(kh):
        for j in range(kw):
            y0, x0 = i * p.dilation_h, j * p.dilation_w
            yield i, j, padded[:, y0:y0 + (oh - 1) * p.stride_h + 1:p.stride_h,
                               x0:x0 + (ow - 1) * p.stride_w + 1:p.stride_w, :]


def _requantize(acc, multiplier, shift, p: ConvParams) -> np.ndarray:
    out = multiply_by_quantized_multiplier(acc, multiplier, shift) + p.output_zero_point
    return np.clip(out, p.act_min, p.act_max).astype(np.int8)


def dtmm_conv2d(x: np.ndarray, fwcs: FWCS, bias, multiplier, shift,
                params: ConvParams) -> np.ndarray:
    """DTMM_CONV_2D per docs/contract.md 'Semantics': folded int32 bias, padded taps
    read the input zero point, pruned filterlets are skipped."""
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


def fold_bias(bias, fwcs: FWCS, input_zero_point: int) -> np.ndarray:
    """Contract input 3: bias[oc] - zp_in * sum(filter[oc]), wrapped to int32."""
    b = np.zeros(fwcs.c_out, np.int64) if bias is None else np.asarray(bias, np.int64)
    return wrap_int32(b - int(input_zero_point) * fwcs.weight_sums()).astype(np.int32)
