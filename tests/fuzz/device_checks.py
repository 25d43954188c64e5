"""What the device would say about every DTMM_CONV_2D op of a model: an oracle for
the fuzzers, independent of dtmm's own readers.

    errors = device_errors(model)      # [(subgraph, op, message)], [] = all accepted
    errors = contract_errors(model)    # device_errors + contract-only rules

`device_errors` restates, check for check, what the TFLM op's Init/Prepare
(dtmm_ops/dtmm_conv.cc at the time of writing) and TFLM's tensor loading do, and
then calls the real C validator `dtmm_conv_s8_validate` (dtmm_clib) on exactly the
arrays the device would hand it:

  Init/ParseOptions  custom options present, a flexbuffer map, every key present,
                     an int, inside the op's range table (kh, kw 1..65535, sh..dw 1..32767, padding
                     0..1, in_zp/act_* -128..127, version any int32)
  Prepare            version == 1; 6 inputs, 1 output; input/output int8 rank 4,
                     values int8 rank 2, bitmap uint8 rank 1 constant, no negative
                     dimension; values constant unless it has 0 rows; output batch ==
                     input batch; values rows of C_in; bias/multiplier/shift int32
                     rank 1 constant with C_out entries; per-tensor input/output
                     quantization (TFLM: one scale), input zero point == in_zp (TFLM
                     narrows the int64 zero point to int32), output zero point int8;
                     TFLite's ComputePaddingHeightWidthChecked (64-bit, narrowing
                     checked) gives the output height/width; dtmm_conv_s8_validate.
  TFLM loading       a constant tensor is one whose buffer has data; TFLM points at
                     that data without checking its length, so a buffer shorter than
                     the tensor's shape needs is an out-of-bounds read on the device
                     (reported here; the op cannot see it).

`contract_errors` adds what docs/contract.md requires but TFLM does not look at:
custom_options_format FLEXBUFFERS, and buffer lengths exactly those of the shapes.
Keep this file in step with dtmm_conv.cc when the op's checks change (that is the
point of having it: the fuzzers catch Python and C disagreeing).
"""

from __future__ import annotations

import math

import numpy as np
from flatbuffers import flexbuffers
from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

import dtmm_clib

CUSTOM_CODE = "DTMM_CONV_2D"
INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1
# dtmm_conv.cc kKeys: (name, min, max), in OpData order
OPTION_RANGES = (("version", INT32_MIN, INT32_MAX), ("kh", 1, 65535), ("kw", 1, 65535),
                 ("sh", 1, 32767), ("sw", 1, 32767), ("dh", 1, 32767), ("dw", 1, 32767),
                 ("padding", 0, 1), ("in_zp", -128, 127), ("act_min", -128, 127),
                 ("act_max", -128, 127))
# Format version 2 (docs/contract.md "DTMM_CONV_2D version 2"): short keys and b.
OPTION_RANGES_V2 = (("version", INT32_MIN, INT32_MAX), ("b", 1, 65535), ("kh", 1, 65535),
                    ("kw", 1, 65535), ("sh", 1, 32767), ("sw", 1, 32767),
                    ("dh", 1, 32767), ("dw", 1, 32767), ("p", 0, 1), ("z", -128, 127),
                    ("lo", -128, 127), ("hi", -128, 127))
TYPE_SIZES = {schema.TensorType.FLOAT32: 4, schema.TensorType.FLOAT16: 2,
              schema.TensorType.INT32: 4, schema.TensorType.UINT8: 1,
              schema.TensorType.INT64: 8, schema.TensorType.BOOL: 1,
              schema.TensorType.INT16: 2, schema.TensorType.INT8: 1,
              schema.TensorType.FLOAT64: 8, schema.TensorType.UINT32: 4,
              schema.TensorType.UINT16: 2, schema.TensorType.UINT64: 8}


class Reject(Exception):
    """The device rejects the op (message as MicroPrintf would say it)."""


def _s(v) -> str:
    if v is None:
        return ""
    return v.decode("utf-8", "replace") if isinstance(v, (bytes, bytearray)) else str(v)


def is_dtmm(model, op) -> bool:
    codes = model.operatorCodes or []
    if not 0 <= op.opcodeIndex < len(codes):
        return False
    oc = codes[op.opcodeIndex]
    code = max(int(oc.builtinCode), int(oc.deprecatedBuiltinCode))
    return code == schema.BuiltinOperator.CUSTOM and _s(oc.customCode) == CUSTOM_CODE


def _wrap32(v: int) -> int:
    return ((int(v) + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)


# -- Init: ParseOptions ------------------------------------------------------------
def parse_options(raw, ranges=None) -> dict:
    """The options map read with `ranges` (default: the table of the map's own
    version, as the op's Init reads `version` first)."""
    if ranges is None:
        version = parse_options(raw, OPTION_RANGES[:1])["version"]
        if version not in (1, 2):
            raise Reject(f"format version {version} is not supported")
        ranges = OPTION_RANGES_V2 if version == 2 else OPTION_RANGES
    if raw is None or len(raw) == 0:
        raise Reject("custom options are missing")
    data = bytes(np.asarray(raw, np.uint8).tobytes()) if not isinstance(raw, bytes) else raw
    try:
        root = flexbuffers.GetRoot(data)
        if not root.IsMap:
            raise Reject("custom options are not a flexbuffer map")
        m = root.AsMap
        keys = [bytes(k.AsKeyBytes) for k in m.Keys]
        vals = list(m.Values)
    except Reject:
        raise
    except Exception:  # what flexbuffers::VerifyBuffer would reject
        raise Reject("custom options are not a valid flexbuffer") from None
    out = {}
    for name, lo, hi in ranges:
        ref = _bsearch(keys, vals, name)
        if ref is None or ref.IsNull:
            raise Reject(f"option '{name}' is missing")
        if not ref.IsInt:  # FBT_INT, FBT_INDIRECT_INT, FBT_UINT, FBT_INDIRECT_UINT
            raise Reject(f"option '{name}' is not an integer")
        try:
            v = ref.AsInt  # UINT: unpacked unsigned, as C++ AsUInt64
        except Exception:
            raise Reject("custom options are not a valid flexbuffer") from None
        if not lo <= v <= hi:
            raise Reject(f"option '{name}' is outside [{lo}, {hi}]")
        out[name] = int(v)
    return out


def _bsearch(keys, vals, name):
    """flexbuffers::Map::operator[]: glibc bsearch with strcmp over the stored keys
    (sorted by any flexbuffers builder; a crafted map may not be, and then a
    present key can be missed, as on the device)."""
    want = name.encode()
    lo, hi = 0, len(keys)
    while lo < hi:
        mid = (lo + hi) // 2
        k = keys[mid]
        k = k.encode("utf-8", "surrogateescape") if isinstance(k, str) else bytes(k)
        k = k.split(b"\0", 1)[0]
        if want < k:
            hi = mid
        elif want > k:
            lo = mid + 1
        else:
            return vals[mid]
    return None


# -- TFLM tensor view ----------------------------------------------------------------
class _Tensor:
    """What a TfLiteTensor holds after TFLM loads a flatbuffer tensor."""

    def __init__(self, model, t):
        self.t = t
        self.type = int(t.type)
        self.dims = [int(d) for d in (t.shape if t.shape is not None else [])]
        buf = model.buffers[t.buffer] if 0 <= t.buffer < len(model.buffers or []) else None
        data = None if buf is None or buf.data is None else np.asarray(buf.data, np.uint8)
        self.data = data if data is not None and data.size > 0 else None
        self.constant = self.data is not None  # kTfLiteMmapRo
        q = t.quantization
        scale = list(q.scale) if q is not None and q.scale is not None else []
        zp = list(q.zeroPoint) if q is not None and q.zeroPoint is not None else []
        self.channels = len(scale) if scale and zp else 0  # TFLM only fills params then
        self.zero_point = _wrap32(zp[0]) if scale and zp else 0
        self.name = _s(t.name)

    def nbytes_needed(self):
        n = 1
        for d in self.dims:
            n *= d
        return n * TYPE_SIZES.get(self.type, 1)

    def array(self, dtype, count):
        """The first `count` elements the device would read (raises if the buffer is
        shorter: a device out-of-bounds read)."""
        need = count * np.dtype(dtype).itemsize
        if self.data is None:
            return np.zeros(count, dtype)
        if self.data.size < need:
            raise Reject(f"{self.name}: buffer holds {self.data.size} bytes, the device "
                         f"reads {need} (out-of-bounds read in TFLM)")
        return np.frombuffer(self.data[:need].tobytes(), dtype)


TYPE_NAMES = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}


def _check_tensor(t, what, ttype, rank, constant):
    if t is None:
        raise Reject(f"{what} tensor is missing")
    if t.type != ttype:
        raise Reject(f"{what} must be {TYPE_NAMES.get(ttype)}, got {TYPE_NAMES.get(t.type)}")
    if len(t.dims) != rank:
        raise Reject(f"{what} must have rank {rank}, got {len(t.dims)}")
    if any(d < 0 for d in t.dims):
        raise Reject(f"{what} has a negative dimension")
    if constant and not t.constant:
        raise Reject(f"{what} must be a constant tensor")


# -- TFLite padding.h, 64-bit ---------------------------------------------------------
def _narrow(v: int) -> int:
    if not INT32_MIN <= v <= INT32_MAX:
        raise Reject("padding arithmetic overflows int")
    return v


def compute_padding_checked(stride, dilation, in_size, filter_size, padding):
    """(out, pad) as ComputeOutSizeChecked + ComputePaddingWithOffsetChecked."""
    if padding not in (0, 1) or in_size < 0 or filter_size <= 0 or stride <= 0 \
            or dilation <= 0:
        raise Reject("padding arguments invalid")
    eff = (filter_size - 1) * dilation + 1
    if padding == 0:
        value = (in_size + stride - 1) // stride
    else:
        num = in_size + stride - eff
        value = abs(num) // stride * (1 if num >= 0 else -1)  # C truncation
    if value < 0:
        raise Reject("output size negative")
    out = _narrow(value)
    total = max((out - 1) * stride + eff - in_size, 0)
    return out, _narrow(total // 2)


# -- Prepare ----------------------------------------------------------------------------
def check_op(model, sg, op, lib=None):
    """Raise Reject with the op's message, or return the dtmm_clib.Layer it accepts."""
    opts = parse_options(op.customOptions)
    if opts["version"] == 2:
        return check_op_v2(model, sg, op, opts, lib)
    if opts["version"] != 1:
        raise Reject(f"format version {opts['version']} is not supported")
    ins = [int(i) for i in (op.inputs if op.inputs is not None else [])]
    outs = [int(i) for i in (op.outputs if op.outputs is not None else [])]
    if len(ins) != 6 or len(outs) != 1:
        raise Reject("expects 6 inputs and 1 output")
    tensors = sg.tensors or []

    def get(i):
        return _Tensor(model, tensors[i]) if 0 <= i < len(tensors) else None

    x, values, bitmap, bias, mult, shift = (get(i) for i in ins)
    y = get(outs[0])
    _check_tensor(x, "input", schema.TensorType.INT8, 4, False)
    _check_tensor(y, "output", schema.TensorType.INT8, 4, False)
    _check_tensor(values, "values", schema.TensorType.INT8, 2, False)
    _check_tensor(bitmap, "bitmap", schema.TensorType.UINT8, 1, True)
    if values.dims[0] > 0 and not values.constant:
        raise Reject("values must be a constant tensor")
    n, h, w, c_in = x.dims
    _, oh, ow, c_out = y.dims
    if y.dims[0] != n:
        raise Reject("output batches != input batches")
    if values.dims[1] != c_in:
        raise Reject("values rows have the wrong length")
    for t, what in ((bias, "bias"), (mult, "multiplier"), (shift, "shift")):
        _check_tensor(t, what, schema.TensorType.INT32, 1, True)
        if t.dims[0] != c_out:
            raise Reject(f"{what} has {t.dims[0]} entries, output has {c_out} channels")
    for t, what in ((x, "input"), (y, "output")):
        if t.channels > 1:
            raise Reject(f"{what} must be per-tensor quantized")
    if x.zero_point != opts["in_zp"]:
        raise Reject(f"input zero point {x.zero_point} != options in_zp {opts['in_zp']}")
    if not -128 <= y.zero_point <= 127:
        raise Reject(f"output zero point {y.zero_point} is not int8")
    out_h, pad_t = compute_padding_checked(opts["sh"], opts["dh"], h, opts["kh"],
                                           opts["padding"])
    out_w, pad_l = compute_padding_checked(opts["sw"], opts["dw"], w, opts["kw"],
                                           opts["padding"])
    if (out_h, out_w) != (oh, ow):
        raise Reject(f"output is {oh}x{ow}, the options and input give {out_h}x{out_w}")
    rows = values.dims[0]
    layer = dtmm_clib.Layer(
        dims=dict(batches=n, input_h=h, input_w=w, input_c=c_in, output_h=oh, output_w=ow,
                  output_c=c_out, kernel_h=opts["kh"], kernel_w=opts["kw"]),
        params=dict(version=opts["version"], stride_h=opts["sh"], stride_w=opts["sw"],
                    dilation_h=opts["dh"], dilation_w=opts["dw"], pad_top=pad_t,
                    pad_left=pad_l, input_zero_point=x.zero_point,
                    output_offset=y.zero_point, activation_min=opts["act_min"],
                    activation_max=opts["act_max"]),
        bitmap=bitmap.array(np.uint8, bitmap.dims[0]),
        values=values.array(np.int8, rows * c_in).reshape(rows, c_in) if rows * c_in
        else np.zeros((rows, max(c_in, 0)), np.int8),
        bias=bias.array(np.int32, c_out), multiplier=mult.array(np.int32, c_out),
        shift=shift.array(np.int32, c_out), num_filterlets=rows, padding=opts["padding"])
    if rows > 0 and c_in > 0 and not values.constant:
        raise Reject("values must be a constant tensor")
    lib = lib or dtmm_clib.load()
    status = lib.validate(layer)
    if status != 0:
        raise Reject(f"invalid layer: {dtmm_clib.STATUS_NAMES.get(status, status)}")
    return layer


def check_op_v2(model, sg, op, opts, lib=None):
    """Version 2: inputs (input, w); w = planar int32 bias, multiplier, shift
    [C_out] each, the bitmap (one bit per block of b input channels, 4-byte
    padded, padding zero), the kept blocks."""
    ins = [int(i) for i in (op.inputs if op.inputs is not None else [])]
    outs = [int(i) for i in (op.outputs if op.outputs is not None else [])]
    if len(ins) != 2 or len(outs) != 1:
        raise Reject("expects 2 inputs and 1 output")
    tensors = sg.tensors or []

    def get(i):
        return _Tensor(model, tensors[i]) if 0 <= i < len(tensors) else None

    x, w = (get(i) for i in ins)
    y = get(outs[0])
    _check_tensor(x, "input", schema.TensorType.INT8, 4, False)
    _check_tensor(y, "output", schema.TensorType.INT8, 4, False)
    _check_tensor(w, "w", schema.TensorType.INT8, 1, True)
    n, h, wd, c_in = x.dims
    _, oh, ow, c_out = y.dims
    if y.dims[0] != n:
        raise Reject("output batches != input batches")
    b, kh, kw = opts["b"], opts["kh"], opts["kw"]
    if c_in < 1 or c_out < 1 or c_in % b:
        raise Reject(f"block size {b} does not divide C_in={c_in}")
    if b != c_in and (kh, kw) != (1, 1):
        raise Reject(f"block size {b} < C_in={c_in} needs a 1x1 kernel")
    n_bits = c_out * kh * kw * (c_in // b)
    padded = 4 * ((n_bits + 31) // 32)
    unpadded = (n_bits + 7) // 8
    head = 12 * c_out + padded
    if w.dims[0] < head:
        raise Reject(f"w has {w.dims[0]} bytes, table and bitmap need {head}")
    raw = w.array(np.uint8, head)
    bitmap = raw[12 * c_out:]
    if bitmap[unpadded:].any():
        raise Reject("bitmap padding bytes are not zero")
    kept = int(np.unpackbits(bitmap[:unpadded], bitorder="little")[:n_bits].sum())
    if w.dims[0] != head + kept * b:
        raise Reject(f"w has {w.dims[0]} bytes, the bitmap keeps {kept} blocks: "
                     f"{head + kept * b} expected")
    data = w.array(np.uint8, head + kept * b)
    table = np.frombuffer(data[:12 * c_out].tobytes(), "<i4").reshape(3, c_out)
    for t, what in ((x, "input"), (y, "output")):
        if t.channels > 1:
            raise Reject(f"{what} must be per-tensor quantized")
    if x.zero_point != opts["z"]:
        raise Reject(f"input zero point {x.zero_point} != options z {opts['z']}")
    if not -128 <= y.zero_point <= 127:
        raise Reject(f"output zero point {y.zero_point} is not int8")
    out_h, pad_t = compute_padding_checked(opts["sh"], opts["dh"], h, kh, opts["p"])
    out_w, pad_l = compute_padding_checked(opts["sw"], opts["dw"], wd, kw, opts["p"])
    if (out_h, out_w) != (oh, ow):
        raise Reject(f"output is {oh}x{ow}, the options and input give {out_h}x{out_w}")
    values = np.frombuffer(data[head:].tobytes(), np.int8)
    params = dict(version=2, stride_h=opts["sh"], stride_w=opts["sw"],
                  dilation_h=opts["dh"], dilation_w=opts["dw"], pad_top=pad_t,
                  pad_left=pad_l, input_zero_point=x.zero_point, output_offset=y.zero_point,
                  activation_min=opts["lo"], activation_max=opts["hi"])
    dims = dict(batches=n, input_h=h, input_w=wd, input_c=c_in, output_h=oh, output_w=ow,
                output_c=c_out, kernel_h=kh, kernel_w=kw)
    # the C validator sees the unpadded bitmap and rows of B (B = C_in: block_size 0)
    layer = dtmm_clib.Layer(
        dims=dims, params=params, block_size=0 if b == c_in else b,
        bitmap=bitmap[:unpadded].copy(), values=values.reshape(kept, b) if kept
        else np.zeros((0, b), np.int8), bias=table[0].copy(), multiplier=table[1].copy(),
        shift=table[2].copy(), num_filterlets=kept, padding=opts["p"])
    lib = lib or dtmm_clib.load()
    status = lib.validate(layer)
    if status != 0:
        raise Reject(f"invalid layer: {dtmm_clib.STATUS_NAMES.get(status, status)}")
    return layer


def _ops(model):
    for si, sg in enumerate(model.subgraphs or []):
        for oi, op in enumerate(sg.operators or []):
            if is_dtmm(model, op):
                yield si, sg, oi, op


def device_errors(model, lib=None) -> list:
    """[(subgraph, op, message)] for every DTMM op the device would reject."""
    errs = []
    for si, sg, oi, op in _ops(model):
        try:
            check_op(model, sg, op, lib)
        except Reject as e:
            errs.append((si, oi, str(e)))
    return errs


def contract_errors(model, lib=None) -> list:
    """device_errors plus docs/contract.md rules the device does not check."""
    errs = device_errors(model, lib)
    for si, sg, oi, op in _ops(model):
        if op.customOptionsFormat != schema.CustomOptionsFormat.FLEXBUFFERS:
            errs.append((si, oi, f"custom_options_format {op.customOptionsFormat} is not "
                                 "FLEXBUFFERS"))
        for i in (op.inputs if op.inputs is not None else [])[1:]:
            i = int(i)
            if not 0 <= i < len(sg.tensors or []):
                continue
            t = _Tensor(model, sg.tensors[i])
            if t.data is not None and t.data.size != t.nbytes_needed():
                errs.append((si, oi, f"{t.name}: buffer holds {t.data.size} bytes, its "
                                     f"shape needs {t.nbytes_needed()}"))
    return errs


def finite_positive(x) -> bool:
    return isinstance(x, float) and math.isfinite(x) and x > 0
