"""TFLite's integer arithmetic, bit-exact (tensorflow/lite/kernels/internal/common.h,
quantization_util.cc, kernel_util.cc):

    mult, shift = quantize_multiplier(0.0123)          # real = mult * 2^(shift - 31)
    lo, hi = activation_range(ACT_RELU6, out_scale, out_zp)
    y = requantize(acc, mult, shift, out_zp, lo, hi)   # int8, wraps like TFLite

All array functions take int64 NumPy values and broadcast (channels on the last axis).
"""

from __future__ import annotations

import math

import numpy as np

from dtmm.core.errors import FormatError

INT32_MIN = -(1 << 31)
INT32_MAX = (1 << 31) - 1

# schema ActivationFunctionType
ACT_NONE, ACT_RELU, ACT_RELU_N1_TO_1, ACT_RELU6 = 0, 1, 2, 3
ACTIVATION_NAMES = {ACT_NONE: "NONE", ACT_RELU: "RELU",
                    ACT_RELU_N1_TO_1: "RELU_N1_TO_1", ACT_RELU6: "RELU6"}


def round_half_away(x: float) -> float:
    """C's std::round (TfLiteRound): halves away from zero."""
    return math.floor(x + 0.5) if x >= 0 else -math.floor(-x + 0.5)


def quantize_multiplier(real_multiplier: float) -> tuple[int, int]:
    """TFLite QuantizeMultiplier: real = multiplier * 2^(shift - 31)."""
    if real_multiplier == 0.0:
        return 0, 0
    q, shift = math.frexp(real_multiplier)
    q_fixed = int(round_half_away(q * (1 << 31)))
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
    mult = np.array([m for m, _ in pairs], np.int64)
    shift = np.array([s for _, s in pairs], np.int64)
    return mult.astype(np.int32), shift.astype(np.int32)


def activation_range(activation: int, output_scale: float, output_zero_point: int,
                     qmin: int = -128, qmax: int = 127) -> tuple[int, int]:
    """TFLite CalculateActivationRangeQuantized for int8 outputs. A bound that does
    not fit (a tiny scale makes 6 / scale overflow float32) saturates to the type's
    range, which is what the clamp with qmin/qmax then gives."""
    scale = np.float32(output_scale)

    def quantize(f: float) -> int:  # TFLite divides in float32, then std::round
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
            q = float(np.float32(f) / scale)
        if not math.isfinite(q):
            return qmax if q > 0 else qmin
        return int(output_zero_point) + int(round_half_away(q))

    if activation == ACT_NONE:
        return qmin, qmax
    if activation == ACT_RELU:
        return max(qmin, min(qmax, quantize(0.0))), qmax
    if activation == ACT_RELU6:
        return max(qmin, min(qmax, quantize(0.0))), max(qmin, min(qmax, quantize(6.0)))
    if activation == ACT_RELU_N1_TO_1:
        return (max(qmin, min(qmax, quantize(-1.0))),
                max(qmin, min(qmax, quantize(1.0))))
    raise FormatError(f"unsupported fused activation {activation}")


def wrap_int32(x) -> np.ndarray:
    """Two's-complement wrap of int64 values to int32 range (kept as int64)."""
    x = np.asarray(x, np.int64)
    return ((x + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)


def multiply_by_quantized_multiplier(x, multiplier, shift) -> np.ndarray:
    """TFLite MultiplyByQuantizedMultiplier(int32 x, ...), element-wise with
    broadcasting. Returns int64 values in int32 range."""
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


def requantize(acc, multiplier, shift, output_zero_point: int, act_min: int,
               act_max: int) -> np.ndarray:
    """int8 output of an int32 accumulator, as TFLite's reference int8 conv:
    ``MultiplyByQuantizedMultiplier(acc) + output_offset`` in int32 (wrapping, as the
    C++ int32 addition does on every target), then the clamp."""
    v = wrap_int32(multiply_by_quantized_multiplier(acc, multiplier, shift)
                   + int(output_zero_point))
    return np.clip(v, act_min, act_max).astype(np.int8)
