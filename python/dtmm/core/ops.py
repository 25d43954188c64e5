"""CONV_2D and DTMM_CONV_2D operators of a Model, read and checked.

    conv = read_conv(model, si, oi)      # ConvOp; conv.skip says why it cannot be
                                         # rewritten, ModelError if it is inconsistent
    form = dtmm_form(conv)               # the DTMM constants and options it becomes
    d = read_dtmm(model, si, oi)         # DtmmOp, FormatError unless the device takes it

``read_dtmm`` checks what the TFLM op's Prepare checks (dtmm_ops/dtmm_conv.cc): the
options against the contract's table, tensor types, ranks and constness, shapes
against each other, FWCS validity, per-channel ranges, zero points, output size.
It reads format version 1 (five constant tensors) and version 2 (one packed
constant w, block filterlets of B input channels for 1x1 kernels) into one DtmmOp
whose fwcs carries B; ``dtmm_form(conv)`` writes version 2 unless told version=1.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from dtmm.core import contract
from dtmm.core.errors import FormatError, ModelError, UnsupportedError
from dtmm.core.fwcs import FWCS, bitmap_bytes, filterlet_sparsity
from dtmm.core.geometry import PADDING_NAMES, PADDING_SAME, out_size_and_padding
from dtmm.core.quant import (ACTIVATION_NAMES, activation_range, per_channel_multipliers,
                             wrap_int32)
from dtmm.core.tflite import BuiltinOperator, Model, TensorType, schema, type_name


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


def where_of(kind: str, si: int, oi: int, op) -> str:
    out = op.outputs[0].name if op.outputs and op.outputs[0] is not None else "?"
    return f"{kind} {oi if si == 0 else f'{si}:{oi}'} ({out})"


def read_operands(op, kind: str, si: int, oi: int):
    """(input, weights, output, bias or None) of a CONV_2D / FULLY_CONNECTED-like
    op; ModelError unless it has 2-3 inputs and 1 output."""
    if len(op.inputs) not in (2, 3) or len(op.outputs) != 1 or op.inputs[0] is None \
            or op.inputs[1] is None or op.outputs[0] is None:
        raise ModelError(f"{where_of(kind, si, oi, op)}: needs 2-3 inputs and 1 "
                         f"output, has {len(op.inputs)} and {len(op.outputs)}")
    return op.inputs[0], op.inputs[1], op.outputs[0], \
        (op.inputs[2] if len(op.inputs) == 3 else None)


def check_int8_quantization(where: str, x_t, w_t, y_t, c_out: int, weights: str):
    """ModelError unless TFLM's int8 kernels accept the quantization: per-tensor
    input and output with int8 zero points, one scale or C_out scales on dimension 0
    for the weights (`weights` names them in messages), positive finite scales.
    Returns the three (scales, zero_points) pairs; weight zero points are the
    caller's to judge."""
    s_in, zp_in, _ = x_t.quant()
    s_w, zp_w, qdim = w_t.quant()
    s_out, zp_out, _ = y_t.quant()
    if len(s_in) != 1 or len(zp_in) != 1 or len(s_out) != 1 or len(zp_out) != 1:
        raise ModelError(f"{where}: input and output need per-tensor quantization "
                         f"(scales: {len(s_in)} in, {len(s_out)} out)")
    if len(s_w) not in (1, c_out):
        raise ModelError(f"{where}: {weights} has {len(s_w)} scales for C_out={c_out}")
    if len(s_w) == c_out and c_out > 1 and qdim != 0:
        raise ModelError(f"{where}: per-channel {weights} quantized on dimension {qdim}, "
                         "expected 0")
    if not (np.all(np.isfinite(s_w)) and np.all(s_w > 0) and s_in[0] > 0
            and s_out[0] > 0 and np.isfinite(s_in[0]) and np.isfinite(s_out[0])):
        raise ModelError(f"{where}: quantization scales must be positive and finite")
    lo, hi = contract.ZERO_POINT_RANGE
    for nm, zp in (("input", zp_in[0]), ("output", zp_out[0])):
        if not lo <= zp <= hi:
            raise ModelError(f"{where}: {nm} zero point {zp} outside int8")
    return (s_in, zp_in), (s_w, zp_w), (s_out, zp_out)


INT32_MAX = (1 << 31) - 1
INT16_MAX = (1 << 15) - 1


def device_shape_error(n, in_h, in_w, c_in, out_h, out_w, c_out, kh, kw, p: ConvParams,
                       pad_top: int, pad_left: int) -> str:
    """Why dtmm_conv_s8_validate's shape checks (dtmm_check_shape in
    dtmm_ops/dtmm_conv_s8_validate.c) reject this layer, or ''. Restated check for
    check; tests/fuzz/test_device_agreement.py replays the C validator against it."""
    if min(n, in_h, in_w, c_in, out_h, out_w, c_out, kh, kw) < 1:
        return "every dimension must be >= 1"
    if n * in_h * in_w * c_in > INT32_MAX or n * out_h * out_w * c_out > INT32_MAX:
        return "input or output has more than 2^31-1 elements"
    if kh * kw * c_out + 7 > INT32_MAX or kh * kw * c_in * 4 > INT32_MAX:
        return "kernel too large (bitmap or scratch beyond 2^31-1 bytes)"
    span_h, span_w = (kh - 1) * p.dilation_h, (kw - 1) * p.dilation_w
    if out_h * p.stride_h + span_h + pad_top + in_h > INT32_MAX or \
            out_w * p.stride_w + span_w + pad_left + in_w > INT32_MAX:
        return "input coordinates overflow int32"
    if pad_top > span_h or pad_left > span_w or \
            (out_h - 1) * p.stride_h + span_h + 1 - in_h - pad_top > span_h or \
            (out_w - 1) * p.stride_w + span_w + 1 - in_w - pad_left > span_w:
        return "padding beyond the dilated kernel"
    return ""


def runtime_written(sg, t) -> bool:
    """The interpreter writes `t` (a subgraph input, a variable, an op's output):
    its buffer is only an initial value, not a constant to fold."""
    return t.is_variable or any(x is t for x in sg.inputs) or \
        any(x is t for op in sg.operators for x in op.outputs)


def _device_quant(t, what: str, where: str):
    """(zero point as TFLM's TfLiteTensor.params holds it): TFLM fills the params only
    when both scale and zero point vectors are present, narrows the int64 zero point
    to int32, and calls more than one scale not per-tensor."""
    scales, zps, _ = t.quant()
    if len(scales) == 0 or len(zps) == 0:
        return 0
    if len(scales) > 1:
        raise FormatError(f"{where}: {what} must be per-tensor quantized (it has "
                          f"{len(scales)} scales)")
    return int(wrap_int32(int(zps[0])))


# -- CONV_2D ------------------------------------------------------------------------
@dataclass
class ConvOp:
    """One CONV_2D: geometry whenever the shapes allow, the rest when it is an
    eligible int8 conv (``skip`` empty)."""

    subgraph: int
    op_index: int
    op: object
    input: object = None
    filter: object = None
    bias: object = None        # Tensor or None
    output: object = None
    shape: tuple | None = None  # (C_out, K_h, K_w, C_in)
    in_hw: tuple | None = None
    out_hw: tuple | None = None
    stride: tuple | None = None
    dilation: tuple | None = None
    padding: int = PADDING_SAME
    activation: int = 0
    skip: str = ""
    weights: np.ndarray | None = None       # int8 OHWI
    bias_values: np.ndarray | None = None   # int32 [C_out]
    params: ConvParams | None = None
    input_scale: float = 0.0
    filter_scales: np.ndarray | None = None  # float32 [C_out]
    output_scale: float = 0.0
    sparsity: float | None = None

    @property
    def c_out(self) -> int:
        return self.weights.shape[0]

    def multipliers(self):
        return per_channel_multipliers(self.input_scale, self.filter_scales,
                                       self.output_scale)


def _conv_options(op):
    o = op.builtin_options
    if o is None or not isinstance(o, schema.Conv2DOptionsT):
        return schema.Conv2DOptionsT()  # schema defaults, checked below
    return o


def conv_geometry(model: Model, si: int, oi: int) -> ConvOp:
    """What the CONV_2D (si, oi) says about its shapes, unchecked beyond its
    operand count (ModelError when that is wrong)."""
    op = model.subgraphs[si].operators[oi]
    c = ConvOp(si, oi, op)
    c.input, c.filter, c.output, c.bias = read_operands(op, "CONV_2D", si, oi)
    opts = _conv_options(op)
    x_shape, w_shape, y_shape = c.input.shape, c.filter.shape, c.output.shape
    if len(w_shape) == 4:
        c.shape = w_shape
    c.stride = (int(opts.strideH), int(opts.strideW))
    c.dilation = (int(opts.dilationHFactor), int(opts.dilationWFactor))
    c.padding = int(opts.padding)
    c.activation = int(opts.fusedActivationFunction)
    if len(x_shape) == 4:
        c.in_hw = x_shape[1:3]
    if len(y_shape) == 4:
        c.out_hw = y_shape[1:3]
    return c


def read_conv(model: Model, si: int, oi: int) -> ConvOp:
    """CONV_2D (si, oi). Raises ModelError for an int8 conv whose shapes or
    quantization disagree, UnsupportedError for an int8 conv with another filter type."""
    c = conv_geometry(model, si, oi)
    op = c.op
    where = where_of("CONV_2D", si, oi, op)
    x_t, w_t, y_t, b_t = c.input, c.filter, c.output, c.bias
    opts = _conv_options(op)
    x_shape, w_shape, y_shape = x_t.shape, w_t.shape, y_t.shape

    def skip(reason):
        c.skip = reason
        return c

    if x_t.dtype != TensorType.INT8 or y_t.dtype != TensorType.INT8:
        return skip(f"skipped: {type_name(x_t.dtype)} input, {type_name(y_t.dtype)} "
                    "output (int8 only)")
    if w_t.dtype != TensorType.INT8:
        raise UnsupportedError(f"{where}: int8 conv with {type_name(w_t.dtype)} filter "
                               "is not supported (int8 filters only)")
    # From here on it is an int8 conv: disagreements are errors in the model.
    if len(x_shape) != 4 or len(w_shape) != 4 or len(y_shape) != 4:
        raise ModelError(f"{where}: input/filter/output must be 4-D, got "
                         f"{list(x_shape)}, {list(w_shape)}, {list(y_shape)}")
    c_out, kh, kw, c_in = w_shape
    if min(w_shape) < 1 or min(x_shape) < 1:
        raise ModelError(f"{where}: empty filter or input shape {list(w_shape)}, "
                         f"{list(x_shape)}")
    if x_shape[3] != c_in:
        if x_shape[3] % c_in == 0:
            groups = x_shape[3] // c_in
            if c_out % groups:  # TFLite divides by C_out / groups (SIGFPE at 0)
                raise ModelError(f"{where}: grouped conv with {groups} groups needs "
                                 f"C_out a multiple of {groups}, has {c_out}")
            return skip(f"skipped: grouped conv (input C={x_shape[3]}, filter "
                        f"C_in={c_in})")
        raise ModelError(f"{where}: filter C_in={c_in} does not match input "
                         f"channels {x_shape[3]}")
    if y_shape[3] != c_out:
        raise ModelError(f"{where}: filter C_out={c_out} does not match output "
                         f"channels {y_shape[3]}")
    if y_shape[0] != x_shape[0]:
        raise ModelError(f"{where}: batch {x_shape[0]} in, {y_shape[0]} out")
    if min(c.stride) < 1 or min(c.dilation) < 1:
        raise ModelError(f"{where}: stride {c.stride} / dilation {c.dilation} must "
                         "be >= 1")
    if c.padding not in PADDING_NAMES:
        raise ModelError(f"{where}: unknown padding {opts.padding}")
    oh, _ = out_size_and_padding(x_shape[1], kh, c.stride[0], c.dilation[0], c.padding)
    ow, _ = out_size_and_padding(x_shape[2], kw, c.stride[1], c.dilation[1], c.padding)
    if (oh, ow) != tuple(y_shape[1:3]):
        raise ModelError(f"{where}: output is {y_shape[1]}x{y_shape[2]}, the conv "
                         f"gives {oh}x{ow}")
    (s_in, zp_in), (s_w, zp_w), (s_out, zp_out) = check_int8_quantization(
        where, x_t, w_t, y_t, c_out, "filter")
    if len(zp_w) not in (0, len(s_w)) or np.any(zp_w != 0):
        raise ModelError(f"{where}: int8 filter zero points must be 0")
    if c.activation not in ACTIVATION_NAMES:
        return skip(f"skipped: fused activation {opts.fusedActivationFunction}")
    sg = model.subgraphs[si]
    for t, nm in ((w_t, "filter"), (b_t, "bias")):
        if t is not None and runtime_written(sg, t):
            return skip(f"skipped: {nm} is written at run time (a subgraph input, "
                        "variable or op output), not a constant")
    _, pad_h = out_size_and_padding(x_shape[1], kh, c.stride[0], c.dilation[0], c.padding)
    _, pad_w = out_size_and_padding(x_shape[2], kw, c.stride[1], c.dilation[1], c.padding)
    if max(c.stride + c.dilation + (pad_h, pad_w)) > INT16_MAX:
        return skip("skipped: stride, dilation or padding above 32767 (TFLite's "
                    "int16 ConvParams wrap it)")
    weights = w_t.value("filter")
    if weights is None:
        return skip("skipped: filter is not constant")
    bias = None
    if b_t is not None:
        if b_t.dtype != TensorType.INT32:
            raise ModelError(f"{where}: bias is {type_name(b_t.dtype)}, int8 conv "
                             "needs int32")
        if b_t.shape != (c_out,):
            raise ModelError(f"{where}: bias shape {list(b_t.shape)}, expected "
                             f"[{c_out}]")
        bias = b_t.value("bias")
        if bias is None:
            return skip("skipped: bias is not constant")
    act_min, act_max = activation_range(c.activation, float(s_out[0]), int(zp_out[0]))
    c.params = ConvParams(
        stride_h=c.stride[0], stride_w=c.stride[1], dilation_h=c.dilation[0],
        dilation_w=c.dilation[1], padding=c.padding, input_zero_point=int(zp_in[0]),
        output_zero_point=int(zp_out[0]), act_min=act_min, act_max=act_max)
    c.weights, c.bias_values = weights, bias
    c.input_scale, c.output_scale = float(s_in[0]), float(s_out[0])
    c.filter_scales = np.broadcast_to(s_w, (c_out,)).astype(np.float32)
    c.sparsity = filterlet_sparsity(weights)
    return c


def fold_bias(bias, fwcs: FWCS, input_zero_point: int) -> np.ndarray:
    """Contract input 3: bias[oc] - zp_in * sum(filter[oc]), wrapped to int32."""
    b = np.zeros(fwcs.c_out, np.int64) if bias is None else np.asarray(bias, np.int64)
    return wrap_int32(b - int(input_zero_point) * fwcs.weight_sums()).astype(np.int32)


# -- DTMM_CONV_2D version 2: one packed constant w ----------------------------------
# The version the converter writes (docs/contract.md "DTMM_CONV_2D version 2").
WRITE_VERSION = contract.CONV_2D_V2.version  # == dtmm.core.fwcs.FORMAT_VERSION
CONV_CONTRACTS = {c.version: c for (code, _), c in contract.CONTRACTS.items()
                  if code == contract.CONV_2D_V1.custom_code}


def padded_bitmap_bytes(n_bits: int) -> int:
    """Bytes of a version-2 bitmap: one bit per block, padded to 4 bytes."""
    return 4 * ((n_bits + 31) // 32)


def pack_conv_w(fw: FWCS, bias, multiplier, shift) -> np.ndarray:
    """Contract v2 input 1: planar little-endian int32 bias[C_out], multiplier[C_out],
    shift[C_out]; the bitmap zero-padded to 4 bytes; the kept blocks."""
    table = np.concatenate([np.asarray(v, np.int64).reshape(-1) for v in
                            (bias, multiplier, shift)]).astype("<i4")
    bitmap = np.zeros(padded_bitmap_bytes(fw.num_blocks), np.uint8)
    bitmap[:fw.bitmap.size] = fw.bitmap
    return np.concatenate([table.view(np.int8), bitmap.view(np.int8),
                           fw.values.reshape(-1)])


def unpack_conv_w(w, c_out: int, kh: int, kw: int, c_in: int, block: int, what: str):
    """(bias, multiplier, shift, FWCS) of a version-2 w; FormatError unless the
    length is exact and the bitmap's padding bits are 0."""
    w = np.asarray(w).reshape(-1).view(np.int8)
    if block < 1 or c_in % block:
        raise FormatError(f"{what}: block size b={block} does not divide C_in={c_in}")
    n_bits = c_out * kh * kw * (c_in // block)
    nbm = padded_bitmap_bytes(n_bits)
    if w.size < 12 * c_out + nbm:
        raise FormatError(f"{what}: w has {w.size} bytes, the per-channel table "
                          f"({12 * c_out}) and bitmap ({nbm}) alone need "
                          f"{12 * c_out + nbm}")
    table = w[:12 * c_out].view("<i4").astype(np.int32).reshape(3, c_out)
    raw = w[12 * c_out:12 * c_out + nbm].view(np.uint8)
    bits = np.unpackbits(raw, bitorder="little")
    stray = np.flatnonzero(bits[n_bits:])
    if stray.size:
        raise FormatError(f"{what}: bitmap padding bit {n_bits + int(stray[0])} is set "
                          f"(the filter has {n_bits} blocks)")
    n_kept = int(bits.sum())
    expected = 12 * c_out + nbm + n_kept * block
    if w.size != expected:
        raise FormatError(f"{what}: w has {w.size} bytes, expected {expected} (table "
                          f"{12 * c_out} + bitmap {nbm} + {n_kept} kept blocks x B={block})")
    fw = FWCS.from_arrays(c_out, kh, kw, c_in, raw[:bitmap_bytes(c_out, kh, kw,
                                                                 c_in // block)].copy(),
                          w[12 * c_out + nbm:].reshape(n_kept, block), block)
    return table[0], table[1], table[2], fw


def block_allowed(kh: int, kw: int, c_in: int, block: int) -> str:
    """Why B is not allowed for this kernel by the contract, or ''."""
    if block < 1 or c_in % block:
        return f"block size b={block} does not divide C_in={c_in}"
    if block != c_in and (kh, kw) != (1, 1):
        return (f"block size b={block} < C_in={c_in} is allowed only for 1x1 kernels "
                f"(kernel {kh}x{kw})")
    return ""


@dataclass
class DtmmForm:
    """What an eligible CONV_2D becomes: the constants, the options, the format
    version (1: five tensors; 2: one packed w) and the block size fwcs.block."""

    fwcs: FWCS
    bias: np.ndarray
    multiplier: np.ndarray
    shift: np.ndarray
    options: dict = field(default_factory=dict)
    shape_error: str = ""  # device_shape_error of the layer
    version: int = WRITE_VERSION

    @property
    def block(self) -> int:
        return self.fwcs.block

    @property
    def contract(self) -> contract.OpContract:
        return CONV_CONTRACTS[self.version]

    def arrays(self):
        """(name, array, schema TensorType) of the constant inputs, in contract
        order: version 1 values, bitmap, bias, multiplier, shift; version 2 w."""
        if self.version == 2:
            return (("w", pack_conv_w(self.fwcs, self.bias, self.multiplier, self.shift),
                     TensorType.INT8),)
        return (("values", self.fwcs.values, TensorType.INT8),
                ("bitmap", self.fwcs.bitmap, TensorType.UINT8),
                ("bias", self.bias.astype(np.int32), TensorType.INT32),
                ("multiplier", self.multiplier.astype(np.int32), TensorType.INT32),
                ("shift", self.shift.astype(np.int32), TensorType.INT32))

    @property
    def data_bytes(self) -> int:
        """Bytes of the constants' data (the weights, bitmap and per-channel table)."""
        return int(sum(a.nbytes for _, a, _ in self.arrays()))

    def device_rejects(self) -> str:
        """Why the device's Prepare would reject this op, or ''."""
        try:
            self.contract.check_channels(
                {"multiplier": self.multiplier, "shift": self.shift}, "requantization")
            self.contract.validate(self.options, "options")
        except FormatError as e:
            return str(e)
        if self.version == 2:
            bad = block_allowed(self.fwcs.kernel_h, self.fwcs.kernel_w, self.fwcs.c_in,
                                self.block)
            if bad:
                return bad
        return self.shape_error


def conv_options(version: int, kh: int, kw: int, p: ConvParams, block: int) -> dict:
    """The custom options map of a DTMM_CONV_2D of `version`."""
    if version == 1:
        return {"version": 1, "kh": kh, "kw": kw, "sh": p.stride_h, "sw": p.stride_w,
                "dh": p.dilation_h, "dw": p.dilation_w, "padding": p.padding,
                "in_zp": p.input_zero_point, "act_min": p.act_min, "act_max": p.act_max}
    if version == 2:
        return {"version": 2, "b": int(block), "kh": kh, "kw": kw, "sh": p.stride_h,
                "sw": p.stride_w, "dh": p.dilation_h, "dw": p.dilation_w, "p": p.padding,
                "z": p.input_zero_point, "lo": p.act_min, "hi": p.act_max}
    raise ValueError(f"DTMM_CONV_2D format version {version} is not one this writer "
                     f"knows ({', '.join(map(str, sorted(CONV_CONTRACTS)))})")


def dtmm_form(conv: ConvOp, version: int = WRITE_VERSION, block: int | None = None
              ) -> DtmmForm:
    """The DTMM form of an eligible CONV_2D: `version` 2 (default) or 1; `block` B
    (version 2 only; default C_in: one block per filterlet)."""
    c_in = int(conv.weights.shape[3])
    block = c_in if block is None else int(block)
    if version == 1 and block != c_in:
        raise ValueError(f"format version 1 has no blocks (B={block}, C_in={c_in})")
    fw = FWCS.from_dense(conv.weights, block)
    p = conv.params
    mult, shift = conv.multipliers()
    options = conv_options(version, int(conv.weights.shape[1]), int(conv.weights.shape[2]),
                           p, block)
    n, h, w, c_in = conv.input.shape
    _, pad_t = out_size_and_padding(h, fw.kernel_h, p.stride_h, p.dilation_h, p.padding)
    _, pad_l = out_size_and_padding(w, fw.kernel_w, p.stride_w, p.dilation_w, p.padding)
    shape_error = device_shape_error(n, h, w, c_in, conv.out_hw[0], conv.out_hw[1],
                                     fw.c_out, fw.kernel_h, fw.kernel_w, p, pad_t, pad_l)
    return DtmmForm(fw, fold_bias(conv.bias_values, fw, p.input_zero_point), mult, shift,
                    options, shape_error, version)


# -- DTMM_CONV_2D -------------------------------------------------------------------
@dataclass
class DtmmOp:
    """A decoded DTMM_CONV_2D of either version: one in-memory form (fwcs carries
    the block size B; B = C_in for version 1)."""

    subgraph: int
    op_index: int
    input: object
    output: object
    options: dict
    fwcs: FWCS
    bias: np.ndarray
    multiplier: np.ndarray
    shift: np.ndarray
    params: ConvParams
    input_shape: tuple
    output_shape: tuple
    constant_bytes: int

    @property
    def version(self) -> int:
        return int(self.options["version"])

    @property
    def block(self) -> int:
        return self.fwcs.block


def is_dtmm(op) -> bool:
    return op.opcode.builtin == BuiltinOperator.CUSTOM and \
        op.opcode.custom_code in contract.CUSTOM_CODES


def _constant(t, spec, what: str):
    """The value of constant input `t` checked against its contract entry."""
    if t.dtype != spec.dtype:
        raise FormatError(f"{what}: {spec.name} is {type_name(t.dtype)}, expected "
                          f"{type_name(spec.dtype)}")
    if len(t.shape) != spec.rank:
        raise FormatError(f"{what}: {spec.name} must have rank {spec.rank}, got "
                          f"shape {list(t.shape)}")
    if min(t.shape, default=0) < 0:
        raise FormatError(f"{what}: {spec.name} has a negative dimension "
                          f"{list(t.shape)}")
    v = t.value(spec.name)
    if v is None:  # TFLM: constant = the buffer has data; no rows need none
        if spec.name != "values" or t.shape[0] != 0:
            raise FormatError(f"{what}: {spec.name} is not a constant tensor")
        v = np.zeros(t.shape, np.int8)
    return v


def _read_v1_constants(op, c, opts, c_in: int, c_out: int, what: str):
    arrays = {spec.name: _constant(t, spec, what)
              for spec, t in zip(c.inputs[1:], op.inputs[1:])}
    values, bitmap = arrays["values"], arrays["bitmap"]
    kh, kw = opts["kh"], opts["kw"]
    if bitmap.size != bitmap_bytes(c_out, kh, kw):
        raise FormatError(f"{what}: bitmap shape {list(bitmap.shape)}, expected "
                          f"[{bitmap_bytes(c_out, kh, kw)}]")
    if values.shape[1] != c_in:
        raise FormatError(f"{what}: values shape {list(values.shape)}, expected "
                          f"[n_kept, {c_in}]")
    fw = FWCS.from_arrays(c_out, kh, kw, c_in, bitmap, values)  # validates
    for nm in ("bias", "multiplier", "shift"):
        if arrays[nm].shape != (c_out,):
            raise FormatError(f"{what}: {nm} shape {list(arrays[nm].shape)}, expected "
                              f"[{c_out}]")
    return arrays["bias"], arrays["multiplier"], arrays["shift"], fw


def _read_v2_constants(op, c, opts, c_in: int, c_out: int, what: str):
    bad = block_allowed(opts["kh"], opts["kw"], c_in, opts["b"])
    if bad:
        raise FormatError(f"{what}: {bad}")
    w = _constant(op.inputs[1], c.inputs[1], what)
    return unpack_conv_w(w, c_out, opts["kh"], opts["kw"], c_in, opts["b"], what)


def read_dtmm(model: Model, si: int, oi: int) -> DtmmOp:
    """Decode and validate DTMM_CONV_2D operator (si, oi), version 1 or 2;
    FormatError if invalid."""
    op = model.subgraphs[si].operators[oi]
    what = where_of("DTMM_CONV_2D", si, oi, op)
    opts = contract.decode_options(op.custom_options, what, op.custom_options_format,
                                   op.opcode.custom_code)
    c = CONV_CONTRACTS[opts["version"]]
    if len(op.inputs) != len(c.inputs) or len(op.outputs) != 1 or \
            any(t is None for t in op.inputs + op.outputs):
        raise FormatError(f"{what}: version {c.version} needs {len(c.inputs)} inputs and "
                          f"1 output, has {len(op.inputs)} and {len(op.outputs)}")
    x_t, y_t = op.inputs[0], op.outputs[0]
    if x_t.dtype != TensorType.INT8 or y_t.dtype != TensorType.INT8:
        raise FormatError(f"{what}: input/output must be int8, got "
                          f"{type_name(x_t.dtype)}/{type_name(y_t.dtype)}")
    x_shape, y_shape = x_t.shape, y_t.shape
    if len(x_shape) != 4 or len(y_shape) != 4 or x_shape[0] != y_shape[0]:
        raise FormatError(f"{what}: input {list(x_shape)} / output {list(y_shape)} "
                          "must be 4-D NHWC with the same batch")
    c_in, c_out = x_shape[3], y_shape[3]
    if c.version == 2 and min(c_in, c_out) < 1:  # before the table's size is taken
        raise FormatError(f"{what}: the kernel's validator rejects the layer: every "
                          "dimension must be >= 1")
    read_constants = _read_v1_constants if c.version == 1 else _read_v2_constants
    bias, multiplier, shift, fw = read_constants(op, c, opts, c_in, c_out, what)
    c.check_channels({"multiplier": multiplier, "shift": shift}, what)
    # version 1 and 2 keys, one meaning
    zp_key, pad_key, lo_key, hi_key = (("in_zp", "padding", "act_min", "act_max")
                                       if c.version == 1 else ("z", "p", "lo", "hi"))
    zp_in = _device_quant(x_t, "input", what)
    zp_out = _device_quant(y_t, "output", what)
    if zp_in != opts[zp_key]:
        raise FormatError(f"{what}: {zp_key} {opts[zp_key]} differs from the input "
                          f"tensor's zero point {zp_in}")
    lo, hi = contract.ZERO_POINT_RANGE
    if not lo <= zp_out <= hi:
        raise FormatError(f"{what}: output zero point {zp_out} is not int8")
    kh, kw = opts["kh"], opts["kw"]
    params = ConvParams(stride_h=opts["sh"], stride_w=opts["sw"], dilation_h=opts["dh"],
                        dilation_w=opts["dw"], padding=opts[pad_key],
                        input_zero_point=opts[zp_key], output_zero_point=zp_out,
                        act_min=opts[lo_key], act_max=opts[hi_key])
    oh, pad_t = out_size_and_padding(x_shape[1], kh, opts["sh"], opts["dh"],
                                     opts[pad_key])
    ow, pad_l = out_size_and_padding(x_shape[2], kw, opts["sw"], opts["dw"],
                                     opts[pad_key])
    if (oh, ow) != tuple(y_shape[1:3]):
        raise FormatError(f"{what}: output is {y_shape[1]}x{y_shape[2]}, the options "
                          f"give {oh}x{ow}")
    bad = device_shape_error(x_shape[0], x_shape[1], x_shape[2], c_in, oh, ow, c_out,
                             kh, kw, params, pad_t, pad_l)
    if bad:
        raise FormatError(f"{what}: the kernel's validator rejects the layer: {bad}")
    return DtmmOp(subgraph=si, op_index=oi, input=x_t, output=y_t, options=opts, fwcs=fw,
                  bias=np.asarray(bias).astype(np.int32),
                  multiplier=np.asarray(multiplier).astype(np.int32),
                  shift=np.asarray(shift).astype(np.int32), params=params,
                  input_shape=x_shape, output_shape=y_shape,
                  constant_bytes=sum(int(t.data.size) for t in op.inputs[1:]
                                     if t.data is not None))


def check_dtmm_ops(model: Model, name: str) -> None:
    """FormatError naming the first DTMM op of `model` the device would reject
    (read_dtmm of each)."""
    for si, sg in enumerate(model.subgraphs):
        for oi, op in enumerate(sg.operators):
            if is_dtmm(op):
                try:
                    read_dtmm(model, si, oi)
                except (FormatError, ModelError) as e:
                    raise type(e)(f"{name}: {e}") from None
