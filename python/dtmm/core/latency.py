"""Latency coefficients of DTMM_CONV_2D per target and the bench layer shapes, from
package data (core/data/latency.json), so an installed wheel has them too.

    coeffs = coefficients("cortex-m4")     # LatencyCoeffs(a, b, c, d, source)
    bench_layers()["L5"]                   # (c_out, out_h, out_w, K)

The scheduler uses them now (dtmm.schedule.cost.LatencyModel). Below: the per-target
conv models of dense CMSIS-NN and DTMM_CONV_2D the converter decides with.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from importlib import resources

import numpy as np

from dtmm.core.errors import ArgumentError
from dtmm.core.geometry import PADDING_SAME, PADDING_VALID, out_size_and_padding

DEFAULT_MODEL = "mac-count"


@dataclass
class LatencyCoeffs:
    """instructions ≈ a * kept_MACs + b * outputs + c * outputs * K
    + d * kept_filterlets * output_pixels (per-filterlet setup)."""

    a: float = 1.0
    b: float = 12.0
    c: float = 2.0
    source: str = "MAC-count stand-in"
    d: float = 0.0


@functools.lru_cache(maxsize=1)
def _data() -> dict:
    with resources.files("dtmm.core").joinpath("data/latency.json").open() as f:
        return json.load(f)


def targets() -> list:
    return sorted(_data()["models"])


def coefficients(target: str = DEFAULT_MODEL) -> LatencyCoeffs:
    models = _data()["models"]
    if target not in models:
        raise ArgumentError(f"no latency model for target {target!r} (known: "
                            f"{', '.join(sorted(models))})")
    m = models[target]
    return LatencyCoeffs(a=m["a"], b=m["b"], c=m["c"], d=m["d"], source=m["source"])


def bench_layers() -> dict:
    """name -> (c_out, out_h, out_w, K) of the bench/kernels layers."""
    out = {}
    for name, L in _data()["bench_layers"].items():
        pad = PADDING_SAME if L["same"] else PADDING_VALID
        oh = out_size_and_padding(L["in_h"], L["kh"], L["sh"], 1, pad)[0]
        ow = out_size_and_padding(L["in_w"], L["kw"], L["sw"], 1, pad)[0]
        out[name] = (L["c_out"], oh, ow, L["kh"] * L["kw"])
    return out


# -- Per-target conv latency models (dense CMSIS-NN CONV_2D and DTMM_CONV_2D) ---------
#
# instructions ≈ sum_i coeff_i * feature_i, one coefficient vector per target, kernel
# ("cmsis_nn" = TFLM's CONV_2D with CMSIS-NN, "dtmm" = DTMM_CONV_2D) and path class
# (the kernel takes a different code path there, so the costs differ). Fitted by
# bench/fit_latency to bench/kernels' CSV with non-negative least squares on the
# relative error; the converter and `dtmm inspect` read them.

KERNELS = ("cmsis_nn", "dtmm")
# The converter's policy: rewrite where smaller and (speed) modeled faster, by
# SPEED_MARGIN, on
# every target of DEFAULT_TARGET; the scheduler's flash model follows the same rule.
PREFER = ("speed", "size")
DEFAULT_TARGET = "any"
DEFAULT_PREFER = "speed"
# The speed rule rewrites a conv only where its modeled DTMM time is at least this
# share below the modeled dense time: the models' median error against TFLM per-conv
# counts is 3-6 % with tails above 20 % (docs/converter.md), and a conv modeled about
# even gains nothing but may make the model slower.
SPEED_MARGIN = 0.10
CONV_TARGETS = ("cortex-m4", "cortex-m55")
# Features each kernel's model may use: names explain the work they count.
FEATURES = {
    # MACs; output values (requantize + store); im2col copies (pixels x taps x C_in);
    # output pixels (per-pixel setup); output channels (per-channel setup); a call.
    "cmsis_nn": ("macs", "outputs", "im2col", "out_pixels", "c_out", "call"),
    # kept MACs; output values; taps x output values of filters not fully pruned
    # (per-tap work whether kept or not: the small-C_in paths); kept filterlets x
    # output pixels (per-filterlet setup); output pixels; output channels (driver per
    # channel); fully pruned filters (constant output channels); kept filterlets
    # (per-filterlet driver); a call.
    "dtmm": ("kept_macs", "outputs", "live_output_taps", "kept_filterlet_pixels",
             "out_pixels", "c_out", "pruned_filters", "kept_filterlets", "call"),
}
# DTMM output planes at most this many pixels take the tiny-plane path class; below
# this many input channels the per-tap work outweighs the MACs (small-C_in class).
TINY_PLANE_PIXELS = 4
SMALL_C_IN = 8
PATH_CLASSES = {"cmsis_nn": ("1x1_fast", "1x1", "general"),
                "dtmm": ("tiny", "pointwise", "pointwise_strided", "small_cin", "window")}


@dataclass(frozen=True)
class ConvShape:
    """A conv's geometry and its filterlet pruning, what the latency models read."""

    out_h: int
    out_w: int
    c_in: int
    c_out: int
    kh: int
    kw: int
    stride: tuple = (1, 1)
    dilation: tuple = (1, 1)
    kept_filterlets: int | None = None  # None: all C_out*K_h*K_w kept
    pruned_filters: int = 0              # output channels with no kept filterlet

    @property
    def taps(self) -> int:
        return self.kh * self.kw

    @property
    def kept(self) -> int:
        return self.c_out * self.taps if self.kept_filterlets is None else self.kept_filterlets

    @classmethod
    def from_sparsity(cls, out_h, out_w, c_in, c_out, kh, kw, sparsity, **kw_):
        """Random filterlet mask with round(s * C_out * K) pruned, as bench/kernels uses:
        the expected number of fully pruned filters is C_out * s^K."""
        n = c_out * kh * kw
        kept = n - int(sparsity * n + 0.5)
        return cls(out_h, out_w, c_in, c_out, kh, kw, kept_filterlets=kept,
                   pruned_filters=round(c_out * sparsity ** (kh * kw)), **kw_)


def class_masks(kernel: str, s: ConvShape) -> dict:
    """class -> whether the conv takes that path (bool, or a bool array where
    s.c_in is an array, as in the scheduler's batches)."""
    if kernel == "cmsis_nn":
        # arm_convolve_wrapper_s8 sends 1x1 undilated filters to its 1x1 kernels.
        # Stride 1 with C_in a multiple of 4 takes arm_convolve_1x1_s8_fast; other
        # 1x1 filters arm_convolve_1x1_s8.
        one = s.taps == 1 and tuple(s.dilation) == (1, 1)
        fast = one & (tuple(s.stride) == (1, 1)) & (np.asarray(s.c_in) % 4 == 0)
        return {"1x1_fast": fast, "1x1": one & ~fast, "general": not one}
    if kernel == "dtmm":
        # The dispatcher's drivers: tiny output planes, small C_in (expanded), 1x1
        # filters (pointwise, per-pixel work only), and the window drivers.
        # In that order, as dtmm_conv_s8_choose: a 1x1 filter takes the pointwise
        # driver whatever its C_in; strided, that driver runs once per output row
        # instead of once per plane (22 % more on Cortex-M4 than the stride-1 fit).
        tiny = s.out_h * s.out_w <= TINY_PLANE_PIXELS
        one = (not tiny) and s.taps == 1
        unit_stride = tuple(s.stride) == (1, 1)
        small = (not tiny) & (not one) & (np.asarray(s.c_in) < SMALL_C_IN)
        return {"tiny": tiny, "pointwise": one and unit_stride,
                "pointwise_strided": one and not unit_stride, "small_cin": small,
                "window": (not tiny) & (not one) & ~small}
    raise ArgumentError(f"unknown kernel {kernel!r} (known: {', '.join(KERNELS)})")


def path_class(kernel: str, s: ConvShape) -> str:
    """The path class of one conv (scalar shape)."""
    return next(c for c, m in class_masks(kernel, s).items() if bool(m))


def features(kernel: str, s: ConvShape) -> dict:
    pix = s.out_h * s.out_w
    if kernel == "cmsis_nn":
        return {"macs": pix * s.c_out * s.taps * s.c_in, "outputs": pix * s.c_out,
                "im2col": pix * s.taps * s.c_in, "out_pixels": pix, "c_out": s.c_out,
                "call": 1}
    class_masks(kernel, s)  # rejects unknown kernels
    return {"kept_macs": s.kept * s.c_in * pix, "outputs": pix * s.c_out,
            "live_output_taps": (s.c_out - s.pruned_filters) * pix * s.taps,
            "kept_filterlet_pixels": s.kept * pix, "out_pixels": pix, "c_out": s.c_out,
            "pruned_filters": s.pruned_filters, "kept_filterlets": s.kept, "call": 1}


def conv_targets() -> list:
    """Targets with fitted conv models."""
    return sorted(_data().get("conv_models", {}))


def resolve_targets(target: str) -> tuple:
    """'any' -> every fitted target; a target name -> (name,)."""
    known = conv_targets()
    if target == "any":
        if not known:
            raise ArgumentError("no fitted conv latency models in dtmm/core/data/latency.json")
        return tuple(known)
    if target not in known:
        raise ArgumentError(f"no conv latency model for target {target!r} (known: "
                            f"{', '.join(known + ['any'])})")
    return (target,)


def conv_instructions(target: str, kernel: str, s: ConvShape):
    """Modeled executed instructions of one conv on `target` with `kernel`: a float,
    or an array where c_in / c_out / kept_filterlets are arrays."""
    (target,) = resolve_targets(target)
    f = features(kernel, s)
    total = 0.0
    for cls, mask in class_masks(kernel, s).items():
        if not np.any(mask):
            continue
        try:
            coeffs = _data()["conv_models"][target][kernel][cls]["coeffs"]
        except KeyError:
            raise ArgumentError(f"latency.json has no {kernel} {cls} model for "
                                f"{target}") from None
        total = total + np.where(mask, sum(c * f[name] for name, c in coeffs.items()), 0.0)
    return float(total) if np.ndim(total) == 0 else total


def clearly_faster(dense: float, dtmm: float) -> bool:
    """Whether a modeled DTMM time beats the dense one by SPEED_MARGIN."""
    return dtmm <= dense * (1.0 - SPEED_MARGIN)


def margin_text() -> str:
    return f"{round(100 * SPEED_MARGIN)}%"
