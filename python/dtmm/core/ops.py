"""CONV_2D and DTMM_CONV_2D operators of a Model, read and checked.

    conv = read_conv(model, si, oi)      # ConvOp; conv.skip says why it cannot be
                                         # rewritten, ModelError if it is inconsistent
    form = dtmm_form(conv)               # the DTMM constants and options it becomes
    d = read_dtmm(model, si, oi)         # DtmmOp, FormatError unless the device takes it

``read_dtmm`` checks what the TFLM op's Prepare checks (dtmm_ops/dtmm_conv.cc): the
options against the contract's table, tensor types, ranks and constness, shapes
against each other, FWCS validity, per-channel ranges, zero points, output size.
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


@dataclass
class DtmmForm:
    """What an eligible CONV_2D becomes: contract inputs 1-5 and the options."""

    fwcs: FWCS
    bias: np.ndarray
    multiplier: np.ndarray
    shift: np.ndarray
    options: dict = field(default_factory=dict)
    shape_error: str = ""  # device_shape_error of the layer

    def arrays(self):
        """(name, array, schema TensorType) of inputs 1-5, in contract order."""
        return (("values", self.fwcs.values, TensorType.INT8),
                ("bitmap", self.fwcs.bitmap, TensorType.UINT8),
                ("bias", self.bias.astype(np.int32), TensorType.INT32),
                ("multiplier", self.multiplier.astype(np.int32), TensorType.INT32),
                ("shift", self.shift.astype(np.int32), TensorType.INT32))

    def device_rejects(self) -> str:
        """Why the device's Prepare would reject this op, or ''."""
        try:
            contract.CONV_2D.check_channels(
                {"multiplier": self.multiplier, "shift": self.shift}, "requantization")
            contract.CONV_2D.validate(self.options, "options")
        except FormatError as e:
            return str(e)
        return self.shape_error


def dtmm_form(conv: ConvOp) -> DtmmForm:
    fw = FWCS.from_dense(conv.weights)
    p = conv.params
    mult, shift = conv.multipliers()
    options = {"version": contract.CONV_2D.version, "kh": int(conv.weights.shape[1]),
               "kw": int(conv.weights.shape[2]), "sh": p.stride_h, "sw": p.stride_w,
               "dh": p.dilation_h, "dw": p.dilation_w, "padding": p.padding,
               "in_zp": p.input_zero_point, "act_min": p.act_min, "act_max": p.act_max}
    n, h, w, c_in = conv.input.shape
    _, pad_t = out_size_and_padding(h, fw.kernel_h, p.stride_h, p.dilation_h, p.padding)
    _, pad_l = out_size_and_padding(w, fw.kernel_w, p.stride_w, p.dilation_w, p.padding)
    shape_error = device_shape_error(n, h, w, c_in, conv.out_hw[0], conv.out_hw[1],
                                     fw.c_out, fw.kernel_h, fw.kernel_w, p, pad_t, pad_l)
    return DtmmForm(fw, fold_bias(conv.bias_values, fw, p.input_zero_point), mult, shift,
                    options, shape_error)


# -- DTMM_CONV_2D -------------------------------------------------------------------
@dataclass
class DtmmOp:
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


def is_dtmm(op) -> bool:
    return op.opcode.builtin == BuiltinOperator.CUSTOM and \
        op.opcode.custom_code in contract.CUSTOM_CODES


def read_dtmm(model: Model, si: int, oi: int) -> DtmmOp:
    """Decode and validate DTMM_CONV_2D operator (si, oi); FormatError if invalid."""
    op = model.subgraphs[si].operators[oi]
    what = where_of("DTMM_CONV_2D", si, oi, op)
    c = contract.CONV_2D
    if len(op.inputs) != len(c.inputs) or len(op.outputs) != 1 or \
            any(t is None for t in op.inputs + op.outputs):
        raise FormatError(f"{what}: needs {len(c.inputs)} inputs and 1 output, has "
                          f"{len(op.inputs)} and {len(op.outputs)}")
    opts = contract.decode_options(op.custom_options, what, op.custom_options_format,
                                   op.opcode.custom_code)
    x_t, y_t = op.inputs[0], op.outputs[0]
    if x_t.dtype != TensorType.INT8 or y_t.dtype != TensorType.INT8:
        raise FormatError(f"{what}: input/output must be int8, got "
                          f"{type_name(x_t.dtype)}/{type_name(y_t.dtype)}")
    x_shape, y_shape = x_t.shape, y_t.shape
    if len(x_shape) != 4 or len(y_shape) != 4 or x_shape[0] != y_shape[0]:
        raise FormatError(f"{what}: input {list(x_shape)} / output {list(y_shape)} "
                          "must be 4-D NHWC with the same batch")
    c_in, c_out = x_shape[3], y_shape[3]
    arrays = {}
    for spec, t in zip(c.inputs[1:], op.inputs[1:]):
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
        arrays[spec.name] = v
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
    c.check_channels(arrays, what)
    zp_in = _device_quant(x_t, "input", what)
    zp_out = _device_quant(y_t, "output", what)
    if zp_in != opts["in_zp"]:
        raise FormatError(f"{what}: in_zp {opts['in_zp']} differs from the input "
                          f"tensor's zero point {zp_in}")
    lo, hi = contract.ZERO_POINT_RANGE
    if not lo <= zp_out <= hi:
        raise FormatError(f"{what}: output zero point {zp_out} is not int8")
    params = ConvParams(stride_h=opts["sh"], stride_w=opts["sw"], dilation_h=opts["dh"],
                        dilation_w=opts["dw"], padding=opts["padding"],
                        input_zero_point=opts["in_zp"], output_zero_point=zp_out,
                        act_min=opts["act_min"], act_max=opts["act_max"])
    oh, pad_t = out_size_and_padding(x_shape[1], kh, opts["sh"], opts["dh"],
                                     opts["padding"])
    ow, pad_l = out_size_and_padding(x_shape[2], kw, opts["sw"], opts["dw"],
                                     opts["padding"])
    if (oh, ow) != tuple(y_shape[1:3]):
        raise FormatError(f"{what}: output is {y_shape[1]}x{y_shape[2]}, the options "
                          f"give {oh}x{ow}")
    bad = device_shape_error(x_shape[0], x_shape[1], x_shape[2], c_in, oh, ow, c_out,
                             kh, kw, params, pad_t, pad_l)
    if bad:
        raise FormatError(f"{what}: the kernel's validator rejects the layer: {bad}")
    return DtmmOp(subgraph=si, op_index=oi, input=x_t, output=y_t, options=opts, fwcs=fw,
                  bias=arrays["bias"].astype(np.int32),
                  multiplier=arrays["multiplier"].astype(np.int32),
                  shift=arrays["shift"].astype(np.int32), params=params,
                  input_shape=x_shape, output_shape=y_shape,
                  constant_bytes=fw.storage_bytes + 12 * c_out)


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
