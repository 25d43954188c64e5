"""Latency models of TFLM on Cortex-M, per target, from package data
(core/data/latency.json, fitted by bench/fit_latency), so an installed wheel has them:

    conv_instructions("cortex-m4", "dtmm", ConvShape(...))   # one conv, dense or DTMM
    op_instructions("cortex-m55", OpShape("DEPTHWISE_CONV_2D", macs=...))
    interpreter_instructions("cortex-m4", n_ops)

The converter decides with the conv models (dense CMSIS-NN vs DTMM_CONV_2D); the
scheduler (dtmm.schedule.cost.LatencyModel) sums all three over a whole model.
`coefficients` is the older single-formula DTMM model (kept for its callers; nothing
in dtmm plans with it any more).
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from importlib import resources

import numpy as np

from dtmm.core import drivers
from dtmm.core.errors import ArgumentError
from dtmm.core.geometry import PADDING_SAME, PADDING_VALID, out_size_and_padding

@dataclass
class LatencyCoeffs:
    """instructions ≈ a * kept_MACs + b * outputs + c * outputs * K
    + d * kept_filterlets * output_pixels (per-filterlet setup)."""

    a: float = 1.0
    b: float = 12.0
    c: float = 2.0
    source: str = ""
    d: float = 0.0


@functools.lru_cache(maxsize=1)
def _data() -> dict:
    with resources.files("dtmm.core").joinpath("data/latency.json").open() as f:
        return json.load(f)


def targets() -> list:
    return sorted(_data()["models"])


def coefficients(target: str) -> LatencyCoeffs:
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
# Cortex-M55 (MVE) runs 1x1 convs onto any plane of DTMM_POINTWISE_MIN_PIXELS or
# more pixels through its pointwise driver: only smaller ones are tiny there.
TINY_POINTWISE_PIXELS = {"cortex-m55": drivers.THRESHOLDS["mve"].pointwise_min_pixels - 1}
PATH_CLASSES = {"cmsis_nn": ("1x1_fast", "1x1", "general"),
                "dtmm": ("tiny", "tiny_pointwise", "pointwise", "pointwise_strided",
                         "small_cin", "window", "pointwise_blocks")}
# Block-sparse 1x1 convs (DTMM_CONV_2D version 2, B < C_in) take their own driver
# (dtmm_conv_s8_pointwise_blocks): its class counts kept blocks where the others
# count kept filterlets (kept_macs = kept blocks x B x output pixels). A target
# without fitted coefficients for it has no model for such a conv: the converter
# then never picks B < C_in for speed there (bench/fit_latency fits it from
# bench/kernels rows with a `block` column).
BLOCK_CLASS = "pointwise_blocks"


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
    kept_filterlets: int | None = None  # None: all C_out*K_h*K_w kept (blocks with block)
    pruned_filters: int = 0              # output channels with no kept filterlet
    block: int | None = None             # B < C_in: block filterlets (kept_* count blocks)

    @property
    def taps(self) -> int:
        return self.kh * self.kw

    @property
    def block_width(self):
        """Input channels per kept unit: B, or C_in for whole filterlets."""
        return self.c_in if self.block is None else self.block

    @property
    def kept(self) -> int:
        if self.kept_filterlets is not None:
            return self.kept_filterlets
        return self.c_out * self.taps * (np.asarray(self.c_in) // self.block_width)

    @classmethod
    def from_sparsity(cls, out_h, out_w, c_in, c_out, kh, kw, sparsity, block=None, **kw_):
        """Random filterlet (or, with block B < C_in, block) mask with round(s * units)
        pruned, as bench/kernels uses: the expected number of fully pruned filters is
        C_out * s^(units per filter)."""
        block = None if block in (None, 0) or block == c_in else int(block)
        per_filter = kh * kw * (1 if block is None else c_in // block)
        n = c_out * per_filter
        kept = n - int(sparsity * n + 0.5)
        return cls(out_h, out_w, c_in, c_out, kh, kw, kept_filterlets=kept,
                   pruned_filters=round(c_out * sparsity ** per_filter), block=block, **kw_)


def class_masks(kernel: str, s: ConvShape, target: str | None = None) -> dict:
    """class -> whether the conv takes that path on `target` (None: the rule every
    target shares): bool arrays shaped like the broadcast of s's fields (any field
    may be an array: the scheduler evaluates every conv of a batch of plans in one
    call)."""
    sh, sw = (np.asarray(v) for v in s.stride)
    dh, dw = (np.asarray(v) for v in s.dilation)
    taps = np.asarray(s.kh) * np.asarray(s.kw)
    c_in = np.asarray(s.c_in)
    unit_stride = (sh == 1) & (sw == 1)
    if kernel == "cmsis_nn":
        # arm_convolve_wrapper_s8 sends 1x1 undilated filters to its 1x1 kernels.
        # Stride 1 with C_in a multiple of 4 takes arm_convolve_1x1_s8_fast; other
        # 1x1 filters arm_convolve_1x1_s8.
        one = (taps == 1) & (dh == 1) & (dw == 1)
        fast = one & unit_stride & (c_in % 4 == 0)
        return {"1x1_fast": fast, "1x1": one & ~fast, "general": ~one}
    if kernel == "dtmm":
        # The dispatcher's drivers, in dtmm_conv_s8_choose's order: tiny output
        # planes; 1x1 filters (pointwise, whatever C_in; strided, that driver runs
        # once per output row instead of once per plane: 22 % more on Cortex-M4
        # than the stride-1 fit); small C_in (expanded); the window drivers.
        # Block filterlets (B < C_in, 1x1 only) take the block driver first.
        # Tiny planes split by kernel: a 1x1 conv there is a sparse matrix-vector
        # product per pixel, a larger kernel runs of kept taps.
        blocks = (np.asarray(s.block_width) < c_in) & (taps == 1)
        pixels = np.asarray(s.out_h) * np.asarray(s.out_w)
        tiny_pixels = np.where(taps == 1, TINY_POINTWISE_PIXELS.get(target, TINY_PLANE_PIXELS),
                               TINY_PLANE_PIXELS)
        tiny = ~blocks & (pixels <= tiny_pixels)
        one = ~blocks & ~tiny & (taps == 1)
        small = ~blocks & ~tiny & ~one & (c_in < SMALL_C_IN)
        return {"tiny": tiny & (taps > 1), "tiny_pointwise": tiny & (taps == 1),
                "pointwise": one & unit_stride, "pointwise_strided": one & ~unit_stride,
                "small_cin": small, "window": ~blocks & ~tiny & ~one & ~small,
                BLOCK_CLASS: blocks}
    raise ArgumentError(f"unknown kernel {kernel!r} (known: {', '.join(KERNELS)})")


def path_class(kernel: str, s: ConvShape, target: str | None = None) -> str:
    """The path class of one conv (scalar shape) on `target`."""
    return next(c for c, m in class_masks(kernel, s, target).items() if bool(m))


def features(kernel: str, s: ConvShape) -> dict:
    pix = s.out_h * s.out_w
    if kernel == "cmsis_nn":
        return {"macs": pix * s.c_out * s.taps * s.c_in, "outputs": pix * s.c_out,
                "im2col": pix * s.taps * s.c_in, "out_pixels": pix, "c_out": s.c_out,
                "call": 1}
    class_masks(kernel, s)  # rejects unknown kernels
    return {"kept_macs": s.kept * s.block_width * pix, "outputs": pix * s.c_out,
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
    for cls, mask in class_masks(kernel, s, target).items():
        if not np.any(mask):
            continue
        try:
            coeffs = _data()["conv_models"][target][kernel][cls]["coeffs"]
        except KeyError:
            raise ArgumentError(f"latency.json has no {kernel} {cls} model for "
                                f"{target}") from None
        total = total + np.where(mask, sum(c * f[name] for name, c in coeffs.items()), 0.0)
    return float(total) if np.ndim(total) == 0 else total


def has_model(kernel: str, s: ConvShape, target: str) -> bool:
    """Whether latency.json has coefficients for every path class `s` takes on
    `target` (a block-sparse 1x1 conv may have none yet)."""
    models = _data().get("conv_models", {}).get(target, {}).get(kernel, {})
    return all(cls in models and models[cls].get("coeffs")
               for cls, mask in class_masks(kernel, s, target).items() if np.any(mask))


def modeled_where_fitted(s: ConvShape, targets) -> dict:
    """target -> (dense CMSIS-NN, DTMM) modeled instructions of one conv, for the
    targets whose models cover it (the dense conv has the same shape without
    blocks)."""
    dense = ConvShape(s.out_h, s.out_w, s.c_in, s.c_out, s.kh, s.kw, s.stride, s.dilation)
    return {t: (conv_instructions(t, "cmsis_nn", dense), conv_instructions(t, "dtmm", s))
            for t in targets if has_model("dtmm", s, t)}


def no_model_text(targets) -> str:
    return f"no latency model for block-sparse 1x1 on {', '.join(targets)}"


def clearly_faster(dense: float, dtmm: float) -> bool:
    """Whether a modeled DTMM time beats the dense one by SPEED_MARGIN."""
    return dtmm <= dense * (1.0 - SPEED_MARGIN)


def margin_text() -> str:
    return f"{round(100 * SPEED_MARGIN)}%"


# -- The other ops and the interpreter (whole-model latency) --------------------------
#
# A whole Invoke() = its convs (the models above, dense or DTMM as the converter
# decides) + every other op by a per-target, per-op-type model over OP_FEATURES +
# the interpreter's own work between ops (per op, per call). Fitted by
# bench/fit_latency to bench/models' per-op counts (models_ops.csv); the scheduler
# (dtmm.schedule.cost.LatencyModel) reads them.

# MACs (depthwise: output values x taps; FULLY_CONNECTED: batch x rows x units;
# pooling: output values x window); output values; activation input values;
# output pixels (all but the channel axis: per-pixel setup); a call.
OP_FEATURES = ("macs", "outputs", "inputs", "pixels", "call")
# An op type bench/models had too few distinct shapes of (or never saw) takes the
# model fitted to every op that has no MACs of its own.
GENERIC_OP = "_generic"
# arm_depthwise_conv_wrapper_s8 with Helium sends one-input-channel depthwise convs
# with more output channels than this to a regular conv (GCC build: threshold 1).
DW_TO_CONV_ABOVE = 1
MVE_TARGETS = ("cortex-m55",)


@dataclass(frozen=True)
class OpShape:
    """What the per-op models read of one non-conv op. The counts may be arrays
    (one value per scheduler configuration)."""

    op: str
    macs: object = 0
    outputs: object = 0
    inputs: object = 0
    pixels: object = 0
    # depthwise geometry (the CMSIS-NN wrapper's dispatch)
    kh: int = 1
    kw: int = 1
    c_in: int = 0
    depth_multiplier: int = 1
    dilation: tuple = (1, 1)


def op_path_class(target: str, s: OpShape) -> str:
    """The CMSIS-NN path an op takes on `target` (only depthwise has several)."""
    if s.op != "DEPTHWISE_CONV_2D":
        return "default"
    mve = target in MVE_TARGETS
    if mve and s.c_in == 1 and s.c_in * s.depth_multiplier > DW_TO_CONV_ABOVE:
        return "to_conv"
    if s.depth_multiplier == 1 and tuple(s.dilation) == (1, 1):
        return "3x3" if not mve and (s.kh, s.kw) == (3, 3) else "opt"
    return "generic"


def op_features(s: OpShape) -> dict:
    return {"macs": s.macs, "outputs": s.outputs, "inputs": s.inputs,
            "pixels": s.pixels, "call": 1}


def _op_model(target: str, s: OpShape) -> dict:
    try:
        ops = _data()["op_models"][target]
    except KeyError:
        raise ArgumentError(f"latency.json has no op models for {target} (known: "
                            f"{', '.join(sorted(_data().get('op_models', {})))})") from None
    by_class = ops.get(s.op) or ops[GENERIC_OP]
    m = by_class.get(op_path_class(target, s)) or by_class.get("default") or \
        next(iter(by_class.values()))
    return m["coeffs"]


def op_instructions(target: str, s: OpShape):
    """Modeled instructions of one non-conv op on `target` (float or array)."""
    return op_instructions_with(_op_model(target, s), s)


def interpreter_instructions(target: str, n_ops: int) -> float:
    """The interpreter's instructions of one Invoke() outside its ops' kernels."""
    try:
        c = _data()["interpreter_models"][target]["coeffs"]
    except KeyError:
        raise ArgumentError(f"latency.json has no interpreter model for {target}") from None
    return c.get("ops", 0.0) * n_ops + c.get("call", 0.0)


def whole_model_targets() -> list:
    """Targets with conv, op and interpreter models: what the scheduler can plan for."""
    d = _data()
    return sorted(set(d.get("conv_models", {})) & set(d.get("op_models", {}))
                  & set(d.get("interpreter_models", {})))


CONV_OPS_ALL = ("CONV_2D", "DTMM_CONV_2D")


def op_instructions_with(coeffs: dict, s: OpShape):
    """coeffs . op_features(s) (the fitter's and op_instructions' one formula)."""
    f = op_features(s)
    return sum(c * f[name] for name, c in coeffs.items())
