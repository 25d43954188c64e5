"""Per-layer view of any .tflite model, DTMM_CONV_2D ops decoded and validated.

    layers = inspect_model(buf)       # list of LayerReport, FormatError on bad DTMM ops
    print(inspect_table(buf))

`parse_dtmm` is the one reader of the contract's custom op in Python: it checks the
options (version, keys, ranges) and the constant tensors against the input/output
tensors, the way the TFLM op's Prepare does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dtmm import reference as ref
from dtmm.convert import LayerReport, format_table, parse_conv
from dtmm.errors import FormatError
from dtmm.fwcs import FORMAT_VERSION, FWCS, bitmap_bytes
from dtmm.tflite_io import (BuiltinOperator, TensorType, is_dtmm_op, load_model,
                            loads_options, op_name, opcode_of, quant_of, shape_of,
                            tensor_value, text, type_name)

OPTION_KEYS = ("version", "kh", "kw", "sh", "sw", "dh", "dw", "padding", "in_zp",
               "act_min", "act_max")


@dataclass
class DtmmInfo:
    subgraph: int
    op_index: int
    input: int
    output: int
    options: dict
    fwcs: FWCS
    bias: np.ndarray
    multiplier: np.ndarray
    shift: np.ndarray
    params: ref.ConvParams
    input_shape: tuple
    output_shape: tuple
    constant_bytes: int


def decode_options(raw, what: str) -> dict:
    opts = loads_options(raw, what)
    if "version" not in opts:
        raise FormatError(f"{what}: custom options have no 'version'")
    if opts["version"] != FORMAT_VERSION:
        raise FormatError(f"{what}: DTMM format version {opts['version']!r} is not "
                          f"supported (this reader knows version {FORMAT_VERSION})")
    missing = [k for k in OPTION_KEYS if k not in opts]
    if missing:
        raise FormatError(f"{what}: custom options miss {', '.join(missing)}")
    for k in OPTION_KEYS:
        if not isinstance(opts[k], int) or isinstance(opts[k], bool):
            raise FormatError(f"{what}: option {k} must be an int, got {opts[k]!r}")
    for k in ("kh", "kw", "sh", "sw", "dh", "dw"):
        if opts[k] < 1:
            raise FormatError(f"{what}: option {k}={opts[k]} must be >= 1")
    if opts["padding"] not in ref.PADDING_NAMES:
        raise FormatError(f"{what}: padding {opts['padding']} is not SAME(0)/VALID(1)")
    if not -128 <= opts["act_min"] <= opts["act_max"] <= 127:
        raise FormatError(f"{what}: activation range [{opts['act_min']}, "
                          f"{opts['act_max']}] is not inside int8")
    if not -128 <= opts["in_zp"] <= 127:
        raise FormatError(f"{what}: in_zp {opts['in_zp']} outside int8")
    return opts


def parse_dtmm(model, si: int, oi: int) -> DtmmInfo:
    """Decode and validate DTMM_CONV_2D operator (si, oi); FormatError if invalid."""
    sg = model.subgraphs[si]
    op = sg.operators[oi]
    ins = [int(i) for i in (op.inputs if op.inputs is not None else [])]
    outs = [int(i) for i in (op.outputs if op.outputs is not None else [])]
    out_name = text(sg.tensors[outs[0]].name) if outs and outs[0] >= 0 else "?"
    what = f"DTMM_CONV_2D {oi if si == 0 else f'{si}:{oi}'} ({out_name})"
    if len(ins) != 6 or len(outs) != 1 or min(ins + outs) < 0:
        raise FormatError(f"{what}: needs 6 inputs and 1 output, has {len(ins)} and "
                          f"{len(outs)}")
    opts = decode_options(op.customOptions, what)
    x_t, y_t = sg.tensors[ins[0]], sg.tensors[outs[0]]
    if x_t.type != TensorType.INT8 or y_t.type != TensorType.INT8:
        raise FormatError(f"{what}: input/output must be int8, got "
                          f"{type_name(x_t.type)}/{type_name(y_t.type)}")
    x_shape, y_shape = shape_of(x_t), shape_of(y_t)
    if len(x_shape) != 4 or len(y_shape) != 4 or x_shape[0] != y_shape[0]:
        raise FormatError(f"{what}: input {list(x_shape)} / output {list(y_shape)} "
                          "must be 4-D NHWC with the same batch")
    c_in, c_out = x_shape[3], y_shape[3]
    expect = (("values", TensorType.INT8), ("bitmap", TensorType.UINT8),
              ("bias", TensorType.INT32), ("multiplier", TensorType.INT32),
              ("shift", TensorType.INT32))
    arrays = []
    for (nm, ttype), idx in zip(expect, ins[1:]):
        t = sg.tensors[idx]
        if t.type != ttype:
            raise FormatError(f"{what}: {nm} is {type_name(t.type)}, expected "
                              f"{type_name(ttype)}")
        v = tensor_value(model, t, nm)
        if v is None:
            n = int(np.prod(shape_of(t))) if shape_of(t) else 1
            if n != 0:
                raise FormatError(f"{what}: {nm} is not a constant tensor")
            v = np.zeros(shape_of(t), np.int8 if nm == "values" else np.uint8)
        arrays.append(v)
    values, bitmap, bias, mult, shift = arrays
    kh, kw = opts["kh"], opts["kw"]
    if bitmap.ndim != 1 or bitmap.size != bitmap_bytes(c_out, kh, kw):
        raise FormatError(f"{what}: bitmap shape {list(bitmap.shape)}, expected "
                          f"[{bitmap_bytes(c_out, kh, kw)}]")
    if values.ndim != 2 or values.shape[1] != c_in:
        raise FormatError(f"{what}: values shape {list(values.shape)}, expected "
                          f"[n_kept, {c_in}]")
    fw = FWCS.from_arrays(c_out, kh, kw, c_in, bitmap, values)  # validates
    for nm, v in (("bias", bias), ("multiplier", mult), ("shift", shift)):
        if v.shape != (c_out,):
            raise FormatError(f"{what}: {nm} shape {list(v.shape)}, expected [{c_out}]")
    if np.any(shift > 31) or np.any(shift < -31) or np.any(mult < 0):
        raise FormatError(f"{what}: multiplier/shift out of range")
    s_in, zp_in, _ = quant_of(x_t)
    s_out, zp_out, _ = quant_of(y_t)
    if len(zp_in) != 1 or len(zp_out) != 1:
        raise FormatError(f"{what}: input/output need per-tensor quantization")
    if int(zp_in[0]) != opts["in_zp"]:
        raise FormatError(f"{what}: in_zp {opts['in_zp']} differs from the input "
                          f"tensor's zero point {int(zp_in[0])}")
    params = ref.ConvParams(stride_h=opts["sh"], stride_w=opts["sw"],
                            dilation_h=opts["dh"], dilation_w=opts["dw"],
                            padding=opts["padding"], input_zero_point=opts["in_zp"],
                            output_zero_point=int(zp_out[0]), act_min=opts["act_min"],
                            act_max=opts["act_max"])
    oh, _ = ref.out_size_and_padding(x_shape[1], kh, opts["sh"], opts["dh"],
                                     opts["padding"])
    ow, _ = ref.out_size_and_padding(x_shape[2], kw, opts["sw"], opts["dw"],
                                     opts["padding"])
    if (oh, ow) != tuple(y_shape[1:3]):
        raise FormatError(f"{what}: output is {y_shape[1]}x{y_shape[2]}, the options "
                          f"give {oh}x{ow}")
    nbytes = fw.storage_bytes + 12 * c_out
    return DtmmInfo(subgraph=si, op_index=oi, input=ins[0], output=outs[0],
                    options=opts, fwcs=fw, bias=bias.astype(np.int32),
                    multiplier=mult.astype(np.int32), shift=shift.astype(np.int32),
                    params=params, input_shape=x_shape, output_shape=y_shape,
                    constant_bytes=nbytes)


def _dense_bytes(model, sg, op) -> int:
    total = 0
    for i in list(op.inputs)[1:3]:
        if int(i) >= 0:
            v = tensor_value(model, sg.tensors[int(i)])
            total += 0 if v is None else v.nbytes
    return total


def inspect_model(buf: bytes, all_ops: bool = False, name: str = "input") -> list:
    """LayerReport per CONV_2D and DTMM_CONV_2D (per op with all_ops). Raises
    ModelError/FormatError for an invalid model or DTMM op."""
    model = load_model(buf, name)
    layers = []
    for si, sg in enumerate(model.subgraphs):
        for oi, op in enumerate(sg.operators or []):
            outs = op.outputs if op.outputs is not None else []
            name = text(sg.tensors[int(outs[0])].name) if len(outs) and outs[0] >= 0 else ""
            code, _ = opcode_of(model, op)
            rep = LayerReport(subgraph=si, op_index=oi, name=name,
                              op=op_name(model, op))
            if is_dtmm_op(model, op):
                d = parse_dtmm(model, si, oi)
                fw, p = d.fwcs, d.params
                rep.shape = (fw.c_out, fw.kernel_h, fw.kernel_w, fw.c_in)
                rep.in_hw, rep.out_hw = d.input_shape[1:3], d.output_shape[1:3]
                rep.stride, rep.dilation = (p.stride_h, p.stride_w), (p.dilation_h,
                                                                       p.dilation_w)
                rep.padding = ref.PADDING_NAMES[p.padding]
                rep.activation = f"[{p.act_min},{p.act_max}]"
                rep.sparsity = fw.sparsity
                rep.bytes_after = d.constant_bytes
                rep.reason = f"DTMM_CONV_2D v{d.options['version']}, {fw.num_kept} kept"
            elif code == BuiltinOperator.CONV_2D:
                try:
                    info = parse_conv(model, si, oi, rep)
                except Exception as e:  # show, don't stop: inspect is for diagnosis
                    rep.reason = f"invalid: {e}"
                    info = None
                rep.bytes_before = _dense_bytes(model, sg, op)
                if info is not None:
                    rep.reason = "CONV_2D (int8, convertible)"
                elif not rep.reason.startswith("invalid"):
                    rep.reason = "CONV_2D, " + rep.reason.replace("skipped: ", "")
            elif not all_ops:
                continue
            else:
                rep.reason = rep.op
            layers.append(rep)
    return layers


def inspect_table(buf: bytes, all_ops: bool = False, name: str = "input") -> str:
    layers = inspect_model(buf, all_ops=all_ops, name=name)
    model = load_model(buf, name)
    counts = {}
    for sg in model.subgraphs:
        for op in sg.operators or []:
            n = op_name(model, op)
            counts[n] = counts.get(n, 0) + 1
    lines = [format_table(layers, title_after="dtmm")]
    n_dtmm = sum(r.op == "DTMM_CONV_2D" for r in layers)
    n_conv = sum(r.op == "CONV_2D" for r in layers)
    lines.append(f"{len(buf)} bytes, {len(model.subgraphs)} subgraph(s), "
                 f"{sum(counts.values())} ops: {n_conv} CONV_2D, {n_dtmm} DTMM_CONV_2D; "
                 + ", ".join(f"{k} x{v}" for k, v in sorted(counts.items())))
    return "\n".join(lines)
