"""Rewrite int8 CONV_2D operators of a .tflite model into DTMM_CONV_2D.

    out_bytes, report = convert_model(open("m.tflite", "rb").read())
    report = convert_file("m.tflite", "m_dtmm.tflite", min_sparsity=0.5)
    print(report.table())

A conv is rewritten when it is eligible (int8 input/output, int8 per-channel or
per-tensor filter, int32 or no bias), its filterlet sparsity is >= `min_sparsity`, and
the estimated file bytes of the DTMM form (FWCS arrays, folded bias, multiplier,
shift, their tensors and the op's options) are below those of the dense form; or
always, with `always=True`. The dense filter/bias tensors and buffers that nothing
else uses are dropped, indices remapped; every other op, tensor, subgraph,
signature and metadata entry is kept as it was. The format is docs/contract.md.

When no conv is rewritten the output is the input, byte for byte.
"""

from __future__ import annotations

import collections
import os
from dataclasses import dataclass, field

import numpy as np

from dtmm import reference as ref
from dtmm.errors import DtmmError, ModelError, UnsupportedError
from dtmm.fwcs import FORMAT_VERSION, FWCS, filterlet_sparsity
from dtmm.tflite_io import (DTMM_CUSTOM_CODE, BuiltinOperator, TensorType, dumps_options,
                            load_model, opcode_of, quant_of, read_file, save_model,
                            schema, shape_of, tensor_value, text, type_name, write_atomic)

DTMM_SUFFIXES = ("values", "bitmap", "bias", "multiplier", "shift")


# -- one CONV_2D, parsed and checked -------------------------------------------------
@dataclass
class ConvInfo:
    """An eligible int8 CONV_2D, everything the DTMM form needs."""

    subgraph: int
    op_index: int
    input: int            # tensor indices in the subgraph
    filter: int
    bias: int             # -1 when absent
    output: int
    weights: np.ndarray   # int8 OHWI
    bias_values: np.ndarray | None  # int32 [C_out]
    input_shape: tuple
    output_shape: tuple
    params: ref.ConvParams
    activation: int
    input_scale: float
    filter_scales: np.ndarray  # float32 [C_out] (per-tensor broadcast)
    output_scale: float

    @property
    def c_out(self):
        return self.weights.shape[0]

    def multipliers(self):
        return ref.per_channel_multipliers(self.input_scale, self.filter_scales,
                                           self.output_scale)


@dataclass
class LayerReport:
    subgraph: int
    op_index: int
    name: str                 # output tensor name
    op: str = "CONV_2D"
    shape: tuple | None = None  # (C_out, K_h, K_w, C_in)
    in_hw: tuple | None = None
    out_hw: tuple | None = None
    stride: tuple | None = None
    dilation: tuple | None = None
    padding: str = ""
    activation: str = ""
    sparsity: float | None = None
    bytes_before: int | None = None
    bytes_after: int | None = None
    rewritten: bool = False
    reason: str = ""

    @property
    def where(self) -> str:
        return f"{self.op_index}" if self.subgraph == 0 else f"{self.subgraph}:{self.op_index}"


def _short(name: str, width: int) -> str:
    name = name.split(";")[0]  # fused TF names: the first part is the layer
    return name if len(name) <= width else "..." + name[-(width - 3):]


def _hw(t):
    return "?" if t is None else f"{t[0]}x{t[1]}"


def format_table(layers, title_after="after", name_width=36) -> str:
    head = (f"{'op':>5}  {'name':<{name_width}}  {'CoutxKhxKwxCin':<15} "
            f"{'in->out':<13} {'stride':<7}{'dil':<5}{'pad':<6}{'act':<13}{'sparse':>7} "
            f"{'before':>8} {title_after:>8}  result")
    lines = [head, "-" * len(head)]
    for r in layers:
        shape = "x".join(map(str, r.shape)) if r.shape else "?"
        io = f"{_hw(r.in_hw)}->{_hw(r.out_hw)}" if r.in_hw else ""
        s = f"{r.stride[0]}x{r.stride[1]}" if r.stride else ""
        d = f"{r.dilation[0]}x{r.dilation[1]}" if r.dilation else ""
        sp = f"{100 * r.sparsity:6.1f}%" if r.sparsity is not None else ""
        b0 = "" if r.bytes_before is None else str(r.bytes_before)
        b1 = "" if r.bytes_after is None else str(r.bytes_after)
        lines.append(f"{r.where:>5}  {_short(r.name, name_width):<{name_width}}  "
                     f"{shape:<15} {io:<13} {s:<7}{d:<5}{r.padding:<6}"
                     f"{r.activation:<13}{sp:>7} {b0:>8} {b1:>8}  {r.reason}")
    return "\n".join(lines)


@dataclass
class ConversionReport:
    layers: list = field(default_factory=list)
    file_bytes_before: int = 0
    file_bytes_after: int = 0

    @property
    def num_rewritten(self) -> int:
        return sum(r.rewritten for r in self.layers)

    def table(self) -> str:
        lines = [format_table(self.layers)]
        n = self.num_rewritten
        if n == 0:
            lines.append(f"nothing to rewrite ({len(self.layers)} CONV_2D); "
                         f"file bytes {self.file_bytes_before} (unchanged copy)")
        else:
            before, after = self.file_bytes_before, self.file_bytes_after
            pct = 100.0 * (after - before) / before if before else 0.0
            lines.append(f"rewrote {n} of {len(self.layers)} CONV_2D; file bytes "
                         f"{before} -> {after} ({pct:+.1f}%)")
        return "\n".join(lines)


def _conv_options(op):
    o = op.builtinOptions
    if o is None or not isinstance(o, schema.Conv2DOptionsT):
        return schema.Conv2DOptionsT()  # schema defaults, checked below
    return o


def parse_conv(model, si: int, oi: int, report: LayerReport):
    """Fill `report` with what is known about CONV_2D (si, oi). Return a ConvInfo
    when it can be rewritten, else None with report.reason set. Raise ModelError for
    an int8 conv whose shapes or quantization disagree."""
    sg = model.subgraphs[si]
    op = sg.operators[oi]
    where = f"CONV_2D {report.where} ({report.name})"
    ins = [int(i) for i in (op.inputs if op.inputs is not None else [])]
    outs = [int(i) for i in (op.outputs if op.outputs is not None else [])]
    if len(ins) not in (2, 3) or len(outs) != 1 or ins[0] < 0 or ins[1] < 0 \
            or outs[0] < 0:
        raise ModelError(f"{where}: needs 2-3 inputs and 1 output, has "
                         f"{len(ins)} and {len(outs)}")
    x_t, w_t, y_t = sg.tensors[ins[0]], sg.tensors[ins[1]], sg.tensors[outs[0]]
    bias_idx = ins[2] if len(ins) == 3 else -1
    b_t = sg.tensors[bias_idx] if bias_idx >= 0 else None
    opts = _conv_options(op)
    x_shape, w_shape, y_shape = shape_of(x_t), shape_of(w_t), shape_of(y_t)
    if len(w_shape) == 4:
        report.shape = w_shape
    report.stride = (int(opts.strideH), int(opts.strideW))
    report.dilation = (int(opts.dilationHFactor), int(opts.dilationWFactor))
    report.padding = ref.PADDING_NAMES.get(int(opts.padding), str(opts.padding))
    report.activation = ref.ACTIVATION_NAMES.get(int(opts.fusedActivationFunction),
                                                 str(opts.fusedActivationFunction))
    if len(x_shape) == 4:
        report.in_hw = x_shape[1:3]
    if len(y_shape) == 4:
        report.out_hw = y_shape[1:3]

    def skip(reason):
        report.reason = reason
        return None

    if x_t.type != TensorType.INT8 or y_t.type != TensorType.INT8:
        return skip(f"skipped: {type_name(x_t.type)} input, {type_name(y_t.type)} "
                    "output (int8 only)")
    if w_t.type != TensorType.INT8:
        raise UnsupportedError(f"{where}: int8 conv with {type_name(w_t.type)} filter "
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
            return skip(f"skipped: grouped conv (input C={x_shape[3]}, filter "
                        f"C_in={c_in})")
        raise ModelError(f"{where}: filter C_in={c_in} does not match input "
                         f"channels {x_shape[3]}")
    if y_shape[3] != c_out:
        raise ModelError(f"{where}: filter C_out={c_out} does not match output "
                         f"channels {y_shape[3]}")
    if y_shape[0] != x_shape[0]:
        raise ModelError(f"{where}: batch {x_shape[0]} in, {y_shape[0]} out")
    if min(report.stride) < 1 or min(report.dilation) < 1:
        raise ModelError(f"{where}: stride {report.stride} / dilation "
                         f"{report.dilation} must be >= 1")
    if int(opts.padding) not in ref.PADDING_NAMES:
        raise ModelError(f"{where}: unknown padding {opts.padding}")
    oh, _ = ref.out_size_and_padding(x_shape[1], kh, report.stride[0],
                                     report.dilation[0], int(opts.padding))
    ow, _ = ref.out_size_and_padding(x_shape[2], kw, report.stride[1],
                                     report.dilation[1], int(opts.padding))
    if (oh, ow) != tuple(y_shape[1:3]):
        raise ModelError(f"{where}: output is {y_shape[1]}x{y_shape[2]}, the conv "
                         f"gives {oh}x{ow}")
    # Quantization.
    s_in, zp_in, _ = quant_of(x_t)
    s_w, zp_w, qdim = quant_of(w_t)
    s_out, zp_out, _ = quant_of(y_t)
    if len(s_in) != 1 or len(zp_in) != 1 or len(s_out) != 1 or len(zp_out) != 1:
        raise ModelError(f"{where}: input and output need per-tensor quantization "
                         f"(scales: {len(s_in)} in, {len(s_out)} out)")
    if len(s_w) not in (1, c_out):
        raise ModelError(f"{where}: filter has {len(s_w)} scales for C_out={c_out}")
    if len(s_w) == c_out and c_out > 1 and qdim != 0:
        raise ModelError(f"{where}: per-channel filter quantized on dimension {qdim}, "
                         "expected 0")
    if len(zp_w) not in (0, len(s_w)) or np.any(zp_w != 0):
        raise ModelError(f"{where}: int8 filter zero points must be 0")
    if not (np.all(np.isfinite(s_w)) and np.all(s_w > 0) and s_in[0] > 0
            and s_out[0] > 0 and np.isfinite(s_in[0]) and np.isfinite(s_out[0])):
        raise ModelError(f"{where}: quantization scales must be positive and finite")
    for nm, zp in (("input", zp_in[0]), ("output", zp_out[0])):
        if not -128 <= zp <= 127:
            raise ModelError(f"{where}: {nm} zero point {zp} outside int8")
    if int(opts.fusedActivationFunction) not in ref.ACTIVATION_NAMES:
        return skip(f"skipped: fused activation {opts.fusedActivationFunction}")
    weights = tensor_value(model, w_t, "filter")
    if weights is None:
        return skip("skipped: filter is not constant")
    bias = None
    if b_t is not None:
        if b_t.type != TensorType.INT32:
            raise ModelError(f"{where}: bias is {type_name(b_t.type)}, int8 conv "
                             "needs int32")
        if shape_of(b_t) != (c_out,):
            raise ModelError(f"{where}: bias shape {list(shape_of(b_t))}, expected "
                             f"[{c_out}]")
        bias = tensor_value(model, b_t, "bias")
        if bias is None:
            return skip("skipped: bias is not constant")
    act_min, act_max = ref.activation_range(int(opts.fusedActivationFunction),
                                            float(s_out[0]), int(zp_out[0]))
    params = ref.ConvParams(
        stride_h=report.stride[0], stride_w=report.stride[1],
        dilation_h=report.dilation[0], dilation_w=report.dilation[1],
        padding=int(opts.padding), input_zero_point=int(zp_in[0]),
        output_zero_point=int(zp_out[0]), act_min=act_min, act_max=act_max)
    report.sparsity = filterlet_sparsity(weights)
    return ConvInfo(
        subgraph=si, op_index=oi, input=ins[0], filter=ins[1], bias=bias_idx,
        output=outs[0], weights=weights, bias_values=bias, input_shape=x_shape,
        output_shape=y_shape, params=params,
        activation=int(opts.fusedActivationFunction), input_scale=float(s_in[0]),
        filter_scales=np.broadcast_to(s_w, (c_out,)).astype(np.float32),
        output_scale=float(s_out[0]))


# -- the DTMM form --------------------------------------------------------------------
def dtmm_options(info: ConvInfo) -> dict:
    p = info.params
    return {"version": FORMAT_VERSION, "kh": int(info.weights.shape[1]),
            "kw": int(info.weights.shape[2]), "sh": p.stride_h, "sw": p.stride_w,
            "dh": p.dilation_h, "dw": p.dilation_w, "padding": p.padding,
            "in_zp": p.input_zero_point, "act_min": p.act_min, "act_max": p.act_max}


def dtmm_constants(info: ConvInfo):
    """(fwcs, folded bias, multiplier, shift) of contract inputs 1-5."""
    fw = FWCS.from_dense(info.weights)
    folded = ref.fold_bias(info.bias_values, fw, info.params.input_zero_point)
    mult, shift = info.multipliers()
    return fw, folded, mult, shift


# Rough flatbuffer costs, the same on both sides of the comparison. Plain
# arithmetic, so dtmm.schedule.cost also evaluates them over numpy arrays.
def _round4(n):
    return (n + 3) // 4 * 4


def tensor_cost(name_len, rank, data_bytes, n_scales):
    """Flatbuffer bytes of one tensor and, unless data_bytes is None, its buffer."""
    cost = 4 + 36 + (4 + 4 * rank) + _round4(4 + name_len + 1)
    cost = cost + (n_scales > 0) * (24 + (4 + 4 * n_scales) + (8 + 8 * n_scales))
    if data_bytes is not None:  # buffer: vector slot + table + data vector (+pad)
        cost = cost + 4 + 16 + 4 + _round4(data_bytes)
    return cost


def op_cost(n_inputs, options_bytes):
    """Flatbuffer bytes of one operator with its inputs/outputs and options."""
    return 4 + 32 + 2 * 4 + 4 * (n_inputs + 1) + options_bytes


def _estimate(model, info: ConvInfo, constants, options_len: int,
              tensor_users: dict, buffer_users: dict):
    """(bytes before, bytes after) of this conv's own storage."""
    sg = model.subgraphs[info.subgraph]
    before = op_cost(3 if info.bias >= 0 else 2, 28)
    for idx in (info.filter, info.bias):
        if idx < 0 or tensor_users[(info.subgraph, idx)] > 1:
            continue  # shared with another op: it stays
        t = sg.tensors[idx]
        buf_alone = buffer_users[t.buffer] == 1
        data = model.buffers[t.buffer].data
        before += tensor_cost(len(text(t.name)), len(shape_of(t)),
                               len(data) if buf_alone and data is not None else None,
                               len(quant_of(t)[0]))
    fw, folded, mult, shift = constants
    name_len = len(text(sg.tensors[info.filter].name)) + 14
    after = op_cost(6, options_len + 8)
    after += tensor_cost(name_len, 2, fw.values.size, 0)
    after += tensor_cost(name_len, 1, fw.bitmap.size, 0)
    for arr in (folded, mult, shift):
        after += tensor_cost(name_len, 1, arr.size * 4, 0)
    return before, after


# -- rewriting -------------------------------------------------------------------------
def _custom_opcode_index(model) -> int:
    for i, oc in enumerate(model.operatorCodes):
        if (max(oc.builtinCode, oc.deprecatedBuiltinCode) == BuiltinOperator.CUSTOM
                and text(oc.customCode) == DTMM_CUSTOM_CODE):
            return i
    oc = schema.OperatorCodeT()
    oc.builtinCode = BuiltinOperator.CUSTOM
    oc.deprecatedBuiltinCode = BuiltinOperator.CUSTOM
    oc.customCode = DTMM_CUSTOM_CODE
    oc.version = 1
    model.operatorCodes.append(oc)
    return len(model.operatorCodes) - 1


def _add_constant(model, sg, name: str, array: np.ndarray, ttype: int) -> int:
    buf = schema.BufferT()
    buf.data = np.frombuffer(np.ascontiguousarray(array).tobytes(), np.uint8).copy()
    model.buffers.append(buf)
    t = schema.TensorT()
    t.shape = [int(d) for d in array.shape]
    t.type = ttype
    t.buffer = len(model.buffers) - 1
    t.name = name
    sg.tensors.append(t)
    return len(sg.tensors) - 1


def _rewrite(model, info: ConvInfo, constants, options: np.ndarray, opcode: int,
             names_used: set) -> None:
    sg = model.subgraphs[info.subgraph]
    fw, folded, mult, shift = constants
    base = text(sg.tensors[info.filter].name) or f"conv_{info.op_index}"
    if base in names_used:  # a filter tensor shared by two convs
        base = f"{base}.op{info.op_index}"
    names_used.add(base)
    arrays = (fw.values, fw.bitmap, folded.astype(np.int32), mult.astype(np.int32),
              shift.astype(np.int32))
    types = (TensorType.INT8, TensorType.UINT8, TensorType.INT32, TensorType.INT32,
             TensorType.INT32)
    consts = [_add_constant(model, sg, f"{base}/dtmm_{s}", a, t)
              for s, a, t in zip(DTMM_SUFFIXES, arrays, types)]
    op = schema.OperatorT()
    op.opcodeIndex = opcode
    op.inputs = [info.input] + consts
    op.outputs = [info.output]
    op.customOptions = options
    op.customOptionsFormat = schema.CustomOptionsFormat.FLEXBUFFERS
    sg.operators[info.op_index] = op


def _referenced_tensors(model, si: int) -> set:
    sg = model.subgraphs[si]
    used = set(int(i) for i in (sg.inputs if sg.inputs is not None else []))
    used.update(int(i) for i in (sg.outputs if sg.outputs is not None else []))
    for op in sg.operators or []:
        for vec in (op.inputs, op.outputs, op.intermediates):
            if vec is not None:
                used.update(int(i) for i in vec)
    used.update(i for i, t in enumerate(sg.tensors) if t.isVariable)
    for sd in model.signatureDefs or []:
        if sd.subgraphIndex == si:
            used.update(int(tm.tensorIndex) for tm in (sd.inputs or []) + (sd.outputs or []))
    used.discard(-1)
    return used


def _remap(vec, mapping):
    if vec is None:
        return None
    return [mapping[int(i)] if int(i) >= 0 else -1 for i in vec]


def _drop_unused(model, candidates: dict) -> None:
    """Remove the candidate tensors (per subgraph) nothing references any more, then
    the buffers of removed tensors that no tensor or metadata references."""
    freed_buffers = set()
    for si, cands in candidates.items():
        sg = model.subgraphs[si]
        dead = set(cands) - _referenced_tensors(model, si)
        if not dead:
            continue
        freed_buffers.update(sg.tensors[i].buffer for i in dead)
        keep = [i for i in range(len(sg.tensors)) if i not in dead]
        mapping = {old: new for new, old in enumerate(keep)}
        sg.tensors = [sg.tensors[i] for i in keep]
        sg.inputs = _remap(sg.inputs, mapping)
        sg.outputs = _remap(sg.outputs, mapping)
        for op in sg.operators:
            op.inputs = _remap(op.inputs, mapping)
            op.outputs = _remap(op.outputs, mapping)
            if op.intermediates is not None:
                op.intermediates = _remap(op.intermediates, mapping)
        for sd in model.signatureDefs or []:
            if sd.subgraphIndex == si:
                for tm in (sd.inputs or []) + (sd.outputs or []):
                    tm.tensorIndex = mapping[int(tm.tensorIndex)]
    freed_buffers.discard(0)  # the empty sentinel stays
    if not freed_buffers:
        return
    used = {t.buffer for sg in model.subgraphs for t in sg.tensors}
    used.update(m.buffer for m in model.metadata or [])
    used.update(int(b) for b in (model.metadataBuffer if model.metadataBuffer is not None
                                 else []))
    dead = freed_buffers - used
    if not dead:
        return
    keep = [i for i in range(len(model.buffers)) if i not in dead]
    mapping = {old: new for new, old in enumerate(keep)}
    model.buffers = [model.buffers[i] for i in keep]
    for sg in model.subgraphs:
        for t in sg.tensors:
            t.buffer = mapping[t.buffer]
    for m in model.metadata or []:
        m.buffer = mapping[m.buffer]
    if model.metadataBuffer is not None:
        model.metadataBuffer = [mapping[int(b)] for b in model.metadataBuffer]


def _usage_counts(model):
    """How many references each (subgraph, tensor) and each buffer has: an op input,
    output or intermediate, a subgraph input/output; a tensor or metadata entry."""
    tensor_users, buffer_users = collections.Counter(), collections.Counter()
    for si, sg in enumerate(model.subgraphs):
        vecs = [sg.inputs, sg.outputs]
        for op in sg.operators or []:
            vecs += [op.inputs, op.outputs, op.intermediates]
        for vec in vecs:
            for i in (vec if vec is not None else []):
                if int(i) >= 0:
                    tensor_users[(si, int(i))] += 1
        for t in sg.tensors:
            buffer_users[t.buffer] += 1
    for m in model.metadata or []:
        buffer_users[m.buffer] += 1
    return tensor_users, buffer_users


def convert_model(buf: bytes, min_sparsity: float = 0.0, always: bool = False,
                  name: str = "input"):
    """Convert a .tflite flatbuffer. Returns (output bytes, ConversionReport).
    `name` is how error messages call the model (the CLI passes the file name)."""
    if not 0.0 <= float(min_sparsity) <= 1.0:
        raise ValueError(f"min_sparsity must be in [0, 1], got {min_sparsity}")
    buf = bytes(buf)
    name_of_model = name
    model = load_model(buf, name)
    report = ConversionReport(file_bytes_before=len(buf))
    tensor_users, buffer_users = _usage_counts(model)
    plans = []
    for si, sg in enumerate(model.subgraphs):
        for oi, op in enumerate(sg.operators or []):
            code, _ = opcode_of(model, op)
            if code != BuiltinOperator.CONV_2D:
                continue
            outs = op.outputs if op.outputs is not None else []
            name = text(sg.tensors[int(outs[0])].name) if len(outs) and outs[0] >= 0 else ""
            rep = LayerReport(subgraph=si, op_index=oi, name=name)
            report.layers.append(rep)
            try:
                info = parse_conv(model, si, oi, rep)
            except DtmmError as e:
                raise type(e)(f"{name_of_model}: {e}") from None
            if info is None:
                continue
            constants = dtmm_constants(info)
            options = dumps_options(dtmm_options(info))
            rep.bytes_before, rep.bytes_after = _estimate(
                model, info, constants, len(options), tensor_users, buffer_users)
            if not always and rep.sparsity < min_sparsity:
                rep.reason = (f"kept: sparsity {100 * rep.sparsity:.1f}% < "
                              f"{100 * min_sparsity:.1f}%")
            elif not always and rep.bytes_after >= rep.bytes_before:
                rep.reason = "kept: DTMM form is not smaller"
            else:
                rep.rewritten = True
                rep.reason = "rewritten"
                plans.append((info, constants, options))
    if not plans:
        report.file_bytes_after = len(buf)
        return buf, report
    opcode = _custom_opcode_index(model)
    candidates, names_used = {}, set()
    for info, constants, options in plans:
        _rewrite(model, info, constants, options, opcode, names_used)
        candidates.setdefault(info.subgraph, set()).update(
            i for i in (info.filter, info.bias) if i >= 0)
    _drop_unused(model, candidates)
    out = save_model(model)
    report.file_bytes_after = len(out)
    return out, report


def convert_file(in_path, out_path, min_sparsity: float = 0.0,
                 always: bool = False) -> ConversionReport:
    """Convert IN to OUT (written atomically; IN is never modified). When nothing
    is rewritten OUT is a byte-identical copy of IN."""
    buf = read_file(in_path)
    out, report = convert_model(buf, min_sparsity=min_sparsity, always=always,
                                name=os.fspath(in_path))
    if os.path.exists(out_path) and os.path.samefile(in_path, out_path):
        raise ModelError(f"output {out_path} is the input file; choose another path")
    write_atomic(out_path, out)
    return report
