"""Mutations of .tflite models for the model fuzzer.

    data, desc = mutate(buf, rng)       # bytes of a mutant, what was done

Structured edits go through the flatbuffers object API of TFLite's schema (the
tflite-micro wheel's schema_py_generated): tensor shapes, types, quantization
(scales, zero points, quantized dimension), buffer indices and data, operator
inputs/outputs/opcodes, builtin options (strides, dilations, padding, fused
activations), DTMM ops' custom options (keys, values, types, raw bytes),
custom_options_format, the DTMM constant tensors (bitmap padding bits and
popcount, values rows, multiplier, shift, bias), subgraph/signature/metadata
indices. Byte-level edits (bit flips, overwrites, truncation, insertion, chunk
copies, file identifier) apply to the packed bytes, of the seed or of a
structured mutant. Every mutant is reproducible from (seed model, rng seed).
"""

from __future__ import annotations

import math
import random

import flatbuffers
import numpy as np
from flatbuffers import flexbuffers
from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

I32 = (-(1 << 31), (1 << 31) - 1)
EDGE_INTS = [0, -1, 1, 2, 3, 255, 256, 65535, 65536, 65537, 1 << 20, (1 << 30) + 1,
             I32[1], I32[0]]
EDGE_SCALES = [0.0, -1.0, float("nan"), float("inf"), -float("inf"), 1e-45, 1e-38,
               1e-30, 1e-20, 1e-12, 1e-9, 1e12, 1e30, 3.4e38]
DTMM = "DTMM_CONV_2D"
OPTION_KEYS = ("version", "kh", "kw", "sh", "sw", "dh", "dw", "padding", "in_zp",
               "act_min", "act_max")
# format version 2's own keys (version, kh ... dw shared with version 1)
OPTION_KEYS_V2 = ("b", "p", "z", "lo", "hi")


class Skip(Exception):
    """This mutation does not apply to this model."""


def _s(v):
    if v is None:
        return ""
    return v.decode("utf-8", "replace") if isinstance(v, (bytes, bytearray)) else str(v)


def load(buf: bytes):
    return schema.ModelT.InitFromPackedBuf(bytearray(buf), 0)


def pack(model) -> bytes:
    b = flatbuffers.Builder(1024)
    b.Finish(model.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


# -- helpers ------------------------------------------------------------------------
def _code(model, op):
    oc = model.operatorCodes[op.opcodeIndex]
    return max(int(oc.builtinCode), int(oc.deprecatedBuiltinCode)), _s(oc.customCode)


def _ops(model, pred=None):
    out = []
    for sg in model.subgraphs or []:
        for i, op in enumerate(sg.operators or []):
            try:
                c = _code(model, op)
            except (IndexError, TypeError):
                c = (None, "")
            if pred is None or pred(c):
                out.append((sg, i, op))
    return out


def _dtmm_ops(model):
    return _ops(model, lambda c: c[0] == schema.BuiltinOperator.CUSTOM and c[1] == DTMM)


def _conv_ops(model):
    return _ops(model, lambda c: c[0] == schema.BuiltinOperator.CONV_2D)


def _pick(rng, seq):
    if not seq:
        raise Skip()
    return seq[rng.randrange(len(seq))]


def _int_near(rng, v, lo=I32[0], hi=I32[1]):
    c = rng.choice(EDGE_INTS + [v - 1, v + 1, -v, v * 2, v + 65536])
    return min(max(int(c), lo), hi)


def _any_tensor(model, rng):
    sg = _pick(rng, model.subgraphs)
    return sg, _pick(rng, sg.tensors or [])


def _op_tensor(model, rng, which=None):
    """A tensor of a CONV_2D or DTMM op (the interesting ones)."""
    sg, _, op = _pick(rng, _conv_ops(model) + _dtmm_ops(model))
    ins = [int(i) for i in (op.inputs if op.inputs is not None else []) if int(i) >= 0]
    outs = [int(i) for i in (op.outputs if op.outputs is not None else []) if int(i) >= 0]
    idx = _pick(rng, ins + outs) if which is None else (ins + outs)[which]
    return sg, sg.tensors[idx]


def _buffer_array(model, t, dtype):
    b = model.buffers[t.buffer]
    if b.data is None or len(b.data) == 0:
        raise Skip()
    return np.frombuffer(np.asarray(b.data, np.uint8).tobytes(), dtype).copy()


def _set_buffer(model, t, arr):
    model.buffers[t.buffer].data = np.frombuffer(np.asarray(arr).tobytes(), np.uint8).copy()


# -- structured mutators: each edits the model in place, returns a description -------
def m_shape(model, rng):
    sg, t = _op_tensor(model, rng) if rng.random() < 0.8 else _any_tensor(model, rng)
    shape = list(t.shape) if t.shape is not None else []
    r = rng.random()
    if r < 0.15 or not shape:
        new = rng.choice([[], None, [1], shape + [1], shape[:-1]])
    elif r < 0.3:
        new = shape[:-1] if len(shape) > 1 else shape + [2]
    else:
        new = list(shape)
        i = rng.randrange(len(new))
        new[i] = _int_near(rng, int(new[i]))
    t.shape = new
    return f"shape {_s(t.name)} {shape} -> {new}"


def m_type(model, rng):
    sg, t = _op_tensor(model, rng)
    old = t.type
    t.type = rng.choice([schema.TensorType.FLOAT32, schema.TensorType.INT32,
                         schema.TensorType.UINT8, schema.TensorType.INT16,
                         schema.TensorType.INT8, schema.TensorType.INT64,
                         schema.TensorType.BOOL, schema.TensorType.INT4, 60, 127])
    return f"type {_s(t.name)} {old} -> {t.type}"


def m_quant_scale(model, rng):
    sg, t = _op_tensor(model, rng)
    q = t.quantization or schema.QuantizationParametersT()
    t.quantization = q
    scales = list(q.scale) if q.scale is not None else []
    r = rng.random()
    if r < 0.2:
        new = None
    elif r < 0.35:
        new = scales + [scales[-1] if scales else 0.5]
    elif r < 0.45:
        new = scales[:-1]
    elif r < 0.7 and scales:
        new = list(scales)
        i = rng.randrange(len(new))
        new[i] = rng.choice(EDGE_SCALES)
    else:  # output scale tiny / input scale huge: multipliers far out of range
        f = rng.choice([1e-8, 1e-6, 1e-4, 1e4, 1e6, 1e9, 2.0 ** -20, 2.0 ** 20, 2.0 ** 31])
        new = [float(np.float32(s * f)) for s in scales] or [f]
    q.scale = new
    return f"scale {_s(t.name)} {scales[:3]} -> {None if new is None else new[:3]}"


def m_quant_zp(model, rng):
    sg, t = _op_tensor(model, rng)
    q = t.quantization or schema.QuantizationParametersT()
    t.quantization = q
    zps = list(q.zeroPoint) if q.zeroPoint is not None else []
    r = rng.random()
    if r < 0.15:
        new = None
    elif r < 0.3:
        new = zps + [0]
    elif r < 0.4:
        new = zps[:-1]
    else:
        new = list(zps) or [0]
        i = rng.randrange(len(new))
        new[i] = rng.choice([-129, 128, 127, -128, 1000, -1000, (1 << 32) + new[i],
                             -(1 << 40), (1 << 63) - 1, new[i] + 1, new[i] - 1])
    q.zeroPoint = new
    return f"zero point {_s(t.name)} {zps[:3]} -> {None if new is None else new[:3]}"


def m_quant_dim(model, rng):
    sg, t = _op_tensor(model, rng)
    if t.quantization is None:
        raise Skip()
    old = t.quantization.quantizedDimension
    t.quantization.quantizedDimension = rng.choice([-1, 1, 2, 3, 4, 100, I32[1]])
    return f"quantized_dimension {_s(t.name)} {old} -> {t.quantization.quantizedDimension}"


def m_tensor_buffer(model, rng):
    sg, t = _op_tensor(model, rng) if rng.random() < 0.8 else _any_tensor(model, rng)
    n = len(model.buffers)
    old = t.buffer
    t.buffer = rng.choice([0, n, n + 5, (1 << 32) - 1, rng.randrange(n) if n else 0])
    return f"buffer index {_s(t.name)} {old} -> {t.buffer}"


def m_buffer_data(model, rng):
    sg, t = _op_tensor(model, rng)
    if t.buffer == 0 or t.buffer >= len(model.buffers):
        raise Skip()
    b = model.buffers[t.buffer]
    data = np.asarray(b.data if b.data is not None else [], np.uint8).copy()
    r = rng.random()
    if r < 0.2:
        if not data.size:
            raise Skip()  # nothing to remove: not an edit
        new, what = None, "removed"
    elif r < 0.4 and data.size:
        new, what = data[: rng.randrange(data.size)], "truncated"
    elif r < 0.55:
        new, what = np.concatenate([data, np.zeros(rng.choice([1, 3, 4, 64]), np.uint8)]), "extended"
    elif r < 0.75 and data.size:
        new = data.copy()
        for _ in range(rng.randrange(1, 4)):
            i = rng.randrange(new.size)
            new[i] ^= 1 << rng.randrange(8)
        what = "bit flips"
    else:
        new = np.frombuffer(bytes(rng.randrange(256) for _ in range(data.size)), np.uint8).copy()
        what = "random"
    b.data = new
    return f"buffer data of {_s(t.name)}: {what}"


def m_op_io(model, rng):
    sg, oi, op = _pick(rng, _conv_ops(model) + _dtmm_ops(model) +
                       (_ops(model) if rng.random() < 0.2 else []))
    field = rng.choice(["inputs", "inputs", "outputs"])
    vec = [int(i) for i in (getattr(op, field) if getattr(op, field) is not None else [])]
    n = len(sg.tensors or [])
    r = rng.random()
    if r < 0.1:
        new = None
    elif r < 0.25:
        new = vec[:-1]
    elif r < 0.35:
        new = vec + [rng.choice([-1, 0, n - 1])]
    elif r < 0.5 and len(vec) > 1:
        new = list(vec)
        i, j = rng.sample(range(len(vec)), 2)
        new[i], new[j] = new[j], new[i]
    else:
        new = list(vec) or [0]
        i = rng.randrange(len(new))
        new[i] = rng.choice([-1, -2, n, n + 100, I32[1], rng.randrange(max(n, 1))])
    setattr(op, field, new)
    return f"op {oi} {field} {vec} -> {new}"


def m_opcode(model, rng):
    r = rng.random()
    if r < 0.4:
        sg, oi, op = _pick(rng, _ops(model))
        old = op.opcodeIndex
        op.opcodeIndex = rng.choice([len(model.operatorCodes), rng.randrange(
            len(model.operatorCodes)), (1 << 32) - 1])
        return f"op {oi} opcode_index {old} -> {op.opcodeIndex}"
    oc = _pick(rng, model.operatorCodes)
    old = (oc.builtinCode, oc.deprecatedBuiltinCode, _s(oc.customCode))
    choice = rng.random()
    if choice < 0.3:  # turn a builtin into "DTMM_CONV_2D": options are a Conv2DOptions
        oc.builtinCode = schema.BuiltinOperator.CUSTOM
        oc.deprecatedBuiltinCode = schema.BuiltinOperator.CUSTOM
        oc.customCode = DTMM
    elif choice < 0.5:
        oc.customCode = rng.choice(["dtmm_conv_2d", "DTMM_CONV_2D\0", "DTMM_CONV_2", ""])
    elif choice < 0.8:
        code = rng.choice([schema.BuiltinOperator.CONV_2D,
                           schema.BuiltinOperator.DEPTHWISE_CONV_2D,
                           schema.BuiltinOperator.ADD, schema.BuiltinOperator.CUSTOM,
                           126, 200])
        oc.builtinCode = code
        oc.deprecatedBuiltinCode = min(code, 127)
    else:
        oc.version = rng.choice([0, 2, 9, -1])
    return f"operator code {old} -> {(oc.builtinCode, oc.deprecatedBuiltinCode, _s(oc.customCode))}"


def m_conv_options(model, rng):
    sg, oi, op = _pick(rng, _conv_ops(model))
    o = op.builtinOptions
    if not isinstance(o, schema.Conv2DOptionsT):
        o = schema.Conv2DOptionsT()
        op.builtinOptions = o
        op.builtinOptionsType = schema.BuiltinOptions.Conv2DOptions
    field = rng.choice(["strideH", "strideW", "dilationHFactor", "dilationWFactor",
                        "padding", "fusedActivationFunction", "type"])
    old = getattr(o, field)
    if field in ("padding",):
        new = rng.choice([0, 1, 2, 3, 127])
    elif field == "fusedActivationFunction":
        new = rng.choice([0, 1, 2, 3, 4, 5, 6, 99])
    elif field == "type":
        op.builtinOptionsType = rng.choice([0, schema.BuiltinOptions.DepthwiseConv2DOptions,
                                            schema.BuiltinOptions.Pool2DOptions])
        return f"op {oi} builtin_options_type -> {op.builtinOptionsType}"
    else:
        new = rng.choice([0, -1, 2, 3, 4, 7, 65535, 65536, 1 << 20, I32[1], old + 1])
    setattr(o, field, new)
    return f"op {oi} {field} {old} -> {new}"


def _read_options(op) -> dict:
    raw = op.customOptions
    if raw is None:
        return {}
    try:  # an earlier edit of this mutant may have broken the map
        opts = flexbuffers.Loads(bytes(np.asarray(raw, np.uint8).tobytes()))
    except Exception:  # noqa: BLE001 - the flexbuffers reader raises anything
        raise Skip() from None
    if not isinstance(opts, dict):
        raise Skip()
    return opts


def m_custom_options(model, rng):
    sg, oi, op = _pick(rng, _dtmm_ops(model))
    r = rng.random()
    if r < 0.15:  # raw bytes
        raw = bytearray(np.asarray(op.customOptions if op.customOptions is not None else [],
                                   np.uint8).tobytes())
        kind = rng.choice(["flip", "truncate", "empty", "garbage"])
        if kind == "flip" and raw:
            for _ in range(rng.randrange(1, 4)):
                i = rng.randrange(len(raw))
                raw[i] ^= 1 << rng.randrange(8)
        elif kind == "truncate" and raw:
            raw = raw[: rng.randrange(len(raw))]
        elif kind == "empty":
            raw = bytearray()
        else:
            raw = bytearray(rng.randrange(256) for _ in range(rng.randrange(1, 40)))
        op.customOptions = np.frombuffer(bytes(raw), np.uint8).copy() if raw else None
        return f"op {oi} custom options bytes: {kind}"
    opts = _read_options(op)
    key = rng.choice(OPTION_KEYS + OPTION_KEYS_V2 + ("zz_unknown",))
    old = opts.get(key)
    kind = rng.random()
    if kind < 0.15:
        opts.pop(key, None)
        new = "<removed>"
    elif kind < 0.3:
        new = rng.choice([1.0, "1", True, [1], b"\x01", None])
        opts[key] = new
    elif kind < 0.4:
        new = rng.choice([1 << 63, (1 << 64) - 1, -(1 << 63), 1 << 40])
        opts[key] = new
    else:
        base = old if isinstance(old, int) and not isinstance(old, bool) else 1
        new = rng.choice([0, -1, 1, 2, 3, 31, 127, 128, -128, -129, 65535, 65536,
                          I32[1], I32[0], base + 1, base - 1, base * 2])
        opts[key] = new
    try:
        op.customOptions = np.frombuffer(bytes(flexbuffers.Dumps(opts)), np.uint8).copy()
    except Exception:
        raise Skip() from None
    return f"op {oi} option {key}: {old!r} -> {new!r}"


def m_custom_options_format(model, rng):
    sg, oi, op = _pick(rng, _dtmm_ops(model))
    op.customOptionsFormat = rng.choice([1, 2, 127])
    return f"op {oi} custom_options_format -> {op.customOptionsFormat}"


def _dtmm_const(model, rng, which):
    sg, oi, op = _pick(rng, _dtmm_ops(model))
    ins = [int(i) for i in op.inputs]
    if len(ins) < 6:
        raise Skip()
    return sg, oi, op, sg.tensors[ins[which]]


def m_dtmm_bitmap(model, rng):
    sg, oi, op, t = _dtmm_const(model, rng, 2)
    bm = _buffer_array(model, t, np.uint8)
    kind = rng.choice(["padding_bit", "flip", "clear", "set", "short", "long"])
    if kind == "padding_bit":
        bm[-1] |= 0x80
    elif kind == "flip":
        i = rng.randrange(bm.size * 8)
        bm[i >> 3] ^= 1 << (i & 7)
    elif kind == "clear":
        bm[:] = 0
    elif kind == "set":
        bm[:] = 0xFF
    elif kind == "short":
        bm = bm[:-1]
        t.shape = [bm.size] if rng.random() < 0.5 else t.shape
    else:
        bm = np.concatenate([bm, [0]]).astype(np.uint8)
        t.shape = [bm.size] if rng.random() < 0.5 else t.shape
    _set_buffer(model, t, bm)
    return f"op {oi} bitmap: {kind}"


def m_dtmm_values(model, rng):
    sg, oi, op, t = _dtmm_const(model, rng, 1)
    shape = list(t.shape)
    kind = rng.choice(["drop_row", "add_row", "shape_only", "transpose", "empty"])
    try:
        vals = _buffer_array(model, t, np.int8)
    except Skip:
        vals = np.zeros(0, np.int8)
    c_in = shape[1] if len(shape) == 2 else 1
    if kind == "drop_row" and shape and shape[0] > 0:
        vals, shape[0] = vals[:-c_in], shape[0] - 1
    elif kind == "add_row":
        vals, shape[0] = np.concatenate([vals, np.ones(c_in, np.int8)]), shape[0] + 1
    elif kind == "shape_only":
        shape[0] = _int_near(rng, shape[0])
    elif kind == "transpose" and len(shape) == 2:
        shape = shape[::-1]
    else:
        vals, shape = np.zeros(0, np.int8), [0, c_in]
    t.shape = shape
    if vals.size:
        _set_buffer(model, t, vals)
    else:
        model.buffers[t.buffer].data = None
    return f"op {oi} values: {kind} -> shape {shape}"


def m_dtmm_per_channel(model, rng):
    which = rng.choice([3, 4, 5])
    sg, oi, op, t = _dtmm_const(model, rng, which)
    arr = _buffer_array(model, t, np.int32).astype(np.int64)
    i = rng.randrange(arr.size)
    if which == 3:
        arr[i] = rng.choice([I32[1], I32[0], 0, arr[i] + 1])
    elif which == 4:
        arr[i] = rng.choice([-1, 0, 1, I32[1], I32[0], 1 << 30])
    else:
        arr[i] = rng.choice([31, 32, -31, -32, 30, 100, -100, arr[i] + 1])
    if rng.random() < 0.15:
        arr = arr[:-1]
    _set_buffer(model, t, arr.astype(np.int32))
    return f"op {oi} {['', '', '', 'bias', 'multiplier', 'shift'][which]}[{i}] -> {arr[i] if i < arr.size else 'dropped'}"


def m_dtmm_w(model, rng):
    """Format version 2's packed w: table, bitmap (4-byte padded), kept blocks."""
    sg, oi, op = _pick(rng, _dtmm_ops(model))
    ins = [int(i) for i in op.inputs]
    if len(ins) != 2:
        raise Skip()
    t = sg.tensors[ins[1]]
    w = _buffer_array(model, t, np.uint8)
    c_out = int(sg.tensors[int(op.outputs[0])].shape[-1])
    head = 12 * c_out
    kind = rng.choice(["table", "shift", "multiplier", "bitmap_bit", "padding_byte",
                       "last_bitmap_bit", "short", "long", "shape_only", "block"])
    if kind == "table" and w.size >= head > 0:
        i = rng.randrange(head)
        w[i] ^= 1 << rng.randrange(8)
    elif kind in ("shift", "multiplier") and w.size >= head > 0:
        at = (8 if kind == "shift" else 4) * c_out + 4 * rng.randrange(c_out)
        v = rng.choice([31, -32, 100, -1, I32[0], I32[1]])
        w[at:at + 4] = np.frombuffer(int(v & 0xFFFFFFFF).to_bytes(4, "little"), np.uint8)
    elif kind == "bitmap_bit" and w.size > head:
        i = rng.randrange(head, min(w.size, head + 64))
        w[i] ^= 1 << rng.randrange(8)
    elif kind in ("padding_byte", "last_bitmap_bit") and w.size > head:
        opts = _read_options(op)
        b, kh, kw = (opts.get(k) for k in ("b", "kh", "kw"))
        c_in = int(sg.tensors[ins[0]].shape[-1])
        if not all(isinstance(v, int) and v > 0 for v in (b, kh, kw)) or c_in % b:
            raise Skip()
        bits = c_out * kh * kw * (c_in // b)
        unpadded, padded = (bits + 7) // 8, 4 * ((bits + 31) // 32)
        if kind == "padding_byte" and padded > unpadded:
            w[head + rng.randrange(unpadded, padded)] |= 1 << rng.randrange(8)
        elif kind == "last_bitmap_bit" and bits % 8:
            w[head + unpadded - 1] |= 0x80
        else:
            raise Skip()
    elif kind == "short" and w.size:
        w = w[:-rng.choice([1, 4, w.size])] if w.size > 4 else w[:-1]
        t.shape = [w.size] if rng.random() < 0.5 else t.shape
    elif kind == "long":
        w = np.concatenate([w, np.zeros(rng.choice([1, 4, 16]), np.uint8)])
        t.shape = [w.size] if rng.random() < 0.5 else t.shape
    elif kind == "shape_only":
        t.shape = [_int_near(rng, int(t.shape[0]) if t.shape else 0)]
    elif kind == "block" and w.size > head:
        w[-rng.randrange(1, min(w.size - head, 32) + 1)] ^= 0x40
    else:
        raise Skip()
    if w.size:
        _set_buffer(model, t, w.astype(np.uint8))
    else:
        model.buffers[t.buffer].data = None
    return f"op {oi} w: {kind}"


def m_subgraph(model, rng):
    sg = _pick(rng, model.subgraphs)
    kind = rng.choice(["inputs", "outputs", "drop_op", "dup_op", "variable", "no_ops",
                       "extra_subgraph", "drop_subgraph"])
    n = len(sg.tensors or [])
    if kind in ("inputs", "outputs"):
        vec = [int(i) for i in (getattr(sg, kind) if getattr(sg, kind) is not None else [])]
        new = rng.choice([None, [], vec + [rng.randrange(max(n, 1))], [n], [-1]])
        setattr(sg, kind, new)
        return f"subgraph {kind} {vec} -> {new}"
    if kind == "drop_op" and sg.operators:
        i = rng.randrange(len(sg.operators))
        del sg.operators[i]
        return f"dropped op {i}"
    if kind == "dup_op" and sg.operators:
        i = rng.randrange(len(sg.operators))
        sg.operators.insert(i, sg.operators[i])
        return f"duplicated op {i}"
    if kind == "variable":
        sg2, t = _op_tensor(model, rng)
        t.isVariable = True
        return f"tensor {_s(t.name)} is_variable"
    if kind == "no_ops":
        sg.operators = None
        return "subgraph without operators"
    if kind == "extra_subgraph":
        model.subgraphs.append(schema.SubGraphT())
        return "empty extra subgraph"
    if kind == "drop_subgraph" and len(model.subgraphs) > 1:
        model.subgraphs.pop()
        return "dropped last subgraph"
    model.subgraphs = []
    return "no subgraphs"


def m_model_misc(model, rng):
    kind = rng.choice(["signature", "metadata", "version", "description", "buffers_short"])
    if kind == "signature" and model.signatureDefs:
        sd = model.signatureDefs[0]
        if sd.inputs:
            sd.inputs[0].tensorIndex = rng.choice([(1 << 32) - 1, 1000])
            return "signature input index -> invalid"
        sd.subgraphIndex = 7
        return "signature subgraph -> 7"
    if kind == "metadata" and model.metadata:
        model.metadata[0].buffer = rng.choice([len(model.buffers), (1 << 32) - 1])
        return "metadata buffer -> invalid"
    if kind == "version":
        model.version = rng.choice([0, 2, 4])
        return f"model version -> {model.version}"
    if kind == "buffers_short" and model.buffers:
        model.buffers = model.buffers[: max(1, len(model.buffers) // 2)]
        return "buffers vector halved"
    model.description = "x" * rng.choice([0, 1, 1000])
    return "description"


STRUCTURED = [(m_shape, 3), (m_type, 2), (m_quant_scale, 3), (m_quant_zp, 2),
              (m_quant_dim, 1), (m_tensor_buffer, 2), (m_buffer_data, 2), (m_op_io, 3),
              (m_opcode, 2), (m_conv_options, 3), (m_custom_options, 5),
              (m_custom_options_format, 1), (m_dtmm_bitmap, 2), (m_dtmm_values, 2),
              (m_dtmm_per_channel, 3), (m_dtmm_w, 5), (m_subgraph, 2), (m_model_misc, 1)]


# -- byte-level ----------------------------------------------------------------------
def byte_mutation(data: bytes, rng) -> tuple[bytes, str]:
    b = bytearray(data)
    kind = rng.choice(["flip", "flip", "overwrite", "truncate", "insert", "zero", "copy",
                       "identifier", "offset"])
    if not b:
        return bytes(b), "empty"
    if kind == "flip":
        k = rng.randrange(1, 9)
        for _ in range(k):
            i = rng.randrange(len(b))
            b[i] ^= 1 << rng.randrange(8)
        return bytes(b), f"{k} bit flips"
    if kind == "overwrite":
        i = rng.randrange(len(b))
        v = rng.choice([0x00, 0xFF, 0x7F, 0x80, rng.randrange(256)])
        n = rng.choice([1, 2, 4])
        b[i:i + n] = bytes([v]) * n
        return bytes(b[: len(data)]), f"overwrite {n} bytes at {i}"
    if kind == "truncate":
        n = rng.randrange(len(b))
        return bytes(b[:n]), f"truncated to {n} bytes"
    if kind == "insert":
        i = rng.randrange(len(b))
        n = rng.choice([1, 4, 16])
        return bytes(b[:i] + bytes(rng.randrange(256) for _ in range(n)) + b[i:]), \
            f"inserted {n} bytes at {i}"
    if kind == "zero":
        i = rng.randrange(len(b))
        n = rng.randrange(1, 64)
        b[i:i + n] = bytes(len(b[i:i + n]))
        return bytes(b), f"zeroed {n} bytes at {i}"
    if kind == "copy":
        i, j = rng.randrange(len(b)), rng.randrange(len(b))
        n = rng.randrange(1, 64)
        chunk = b[i:i + n]
        b[j:j + len(chunk)] = chunk
        return bytes(b[: len(data)]), f"copied {n} bytes {i}->{j}"
    if kind == "identifier":
        b[4:8] = rng.choice([x for x in (b"TFL2", b"\0\0\0\0", b"TFL3") if x != bytes(b[4:8])])
        if rng.random() < 0.5:
            b[0:4] = (rng.randrange(1 << 32)).to_bytes(4, "little")
        return bytes(b), "header"
    # a 32-bit little-endian word changed: offsets and lengths in the flatbuffer
    i = rng.randrange(0, max(1, len(b) - 4)) & ~3
    v = int.from_bytes(b[i:i + 4], "little")
    v = rng.choice([0, 0xFFFFFFFF, v + 4, v - 4, v * 2, 0x7FFFFFFF, len(b), len(b) - i])
    b[i:i + 4] = (v & 0xFFFFFFFF).to_bytes(4, "little")
    return bytes(b), f"word at {i} -> {v & 0xFFFFFFFF:#x}"


def structured_mutation(buf: bytes, rng, n_edits: int) -> tuple[bytes, str]:
    weights = [w for _, w in STRUCTURED]
    for _ in range(20):
        model = load(buf)
        descs = []
        for _ in range(n_edits):
            fn = rng.choices([f for f, _ in STRUCTURED], weights)[0]
            try:
                descs.append(fn(model, rng))
            except Skip:
                continue
            except (IndexError, TypeError, AttributeError, ValueError):
                continue  # an earlier edit made this one inapplicable
        if not descs:
            continue
        try:
            return pack(model), "; ".join(descs)
        except Exception:  # a value the builder cannot encode (e.g. None inside a list)
            continue
    raise Skip()


def mutate(buf: bytes, rng: random.Random) -> tuple[bytes, str]:
    """A mutant of buf: structured (70 %), byte-level (20 %) or both (10 %)."""
    r = rng.random()
    if r < 0.7:
        return structured_mutation(buf, rng, rng.choice([1, 1, 1, 2, 3]))
    if r < 0.9:
        return byte_mutation(buf, rng)
    data, d1 = structured_mutation(buf, rng, 1)
    data, d2 = byte_mutation(data, rng)
    return data, f"{d1}; {d2}"


def finite(x) -> bool:
    return isinstance(x, float) and math.isfinite(x)
