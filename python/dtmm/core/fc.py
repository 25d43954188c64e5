"""FULLY_CONNECTED and DTMM_FULLY_CONNECTED (format version 2, docs/contract.md).

    fc = read_fc(model, si, oi)          # FcOp; fc.skip says why it cannot be rewritten
    form = dtmm_fc_form(fc, block=16)    # packed weights w, table q, options
    d = read_dtmm_fc(model, si, oi)      # DtmmFcOp, FormatError unless the device takes it
    y = dtmm_fully_connected(x, d.w, d.q, d.c_out, d.c_in, d.block, zp_out, lo, hi)

A row of the FC's weights W [C_out, C_in] is one filterlet split into C_in / B
blocks of B input channels; the packed tensor w holds the bitmap (one bit per block,
padded to 4 bytes) and the kept blocks. ``read_dtmm_fc`` checks what the TFLM op's
Prepare checks (dtmm_ops/dtmm_fully_connected.cc).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dtmm.core import contract
from dtmm.core.errors import FormatError, ModelError
from dtmm.core.quant import (ACTIVATION_NAMES, activation_range, per_channel_multipliers,
                             requantize, wrap_int32)
from dtmm.core.tflite import BuiltinOperator, Model, TensorType, schema, type_name

C = contract.FULLY_CONNECTED
# Block sizes the converter tries, besides B = C_in (a whole row, v1's filterlet).
BLOCK_CANDIDATES = (32, 16, 8)


def where_of(kind: str, si: int, oi: int, op) -> str:
    out = op.outputs[0].name if op.outputs and op.outputs[0] is not None else "?"
    return f"{kind} {oi if si == 0 else f'{si}:{oi}'} ({out})"


# -- packed block-sparse weights ------------------------------------------------------
def bitmap_bytes(c_out: int, c_in: int, block: int) -> int:
    """Bytes of the bitmap part of w: one bit per block, padded to 4 bytes."""
    return 4 * ((c_out * (c_in // block) + 31) // 32)


def block_mask(weights: np.ndarray, block: int) -> np.ndarray:
    """bool [C_out, C_in / B]: block kept (any nonzero value)."""
    c_out, c_in = weights.shape
    return np.any(np.asarray(weights).reshape(c_out, c_in // block, block) != 0, axis=2)


def block_sparsity(weights: np.ndarray, block: int) -> float:
    m = block_mask(weights, block)
    return 1.0 - float(m.mean()) if m.size else 0.0


def block_sizes(c_in: int) -> list:
    """The block sizes the converter considers for C_in, largest first."""
    return [c_in] + [b for b in BLOCK_CANDIDATES if b < c_in and c_in % b == 0]


def pack(weights: np.ndarray, block: int) -> np.ndarray:
    """int8 w of docs/contract.md: bitmap (4-byte padded), then the kept blocks."""
    w = np.asarray(weights, np.int8)
    c_out, c_in = w.shape
    if block < 1 or c_in % block:
        raise ValueError(f"block size {block} does not divide C_in={c_in}")
    mask = block_mask(w, block).reshape(-1)
    bits = np.zeros(bitmap_bytes(c_out, c_in, block) * 8, np.uint8)
    bits[:mask.size] = mask
    bitmap = np.packbits(bits, bitorder="little")
    blocks = w.reshape(-1, block)[mask]
    return np.concatenate([bitmap.view(np.int8), blocks.reshape(-1)])


def unpack(w: np.ndarray, c_out: int, c_in: int, block: int, what: str = "w"):
    """(dense int8 [C_out, C_in], kept mask [C_out, nb]) of a packed w; FormatError
    unless w is valid (length, padding bits)."""
    w = np.asarray(w).reshape(-1)
    if block < 1 or c_in % block:
        raise FormatError(f"{what}: block size {block} does not divide C_in={c_in}")
    nb = c_in // block
    nbm = bitmap_bytes(c_out, c_in, block)
    if w.size < nbm:
        raise FormatError(f"{what}: {w.size} bytes, the bitmap alone needs {nbm}")
    bits = np.unpackbits(w[:nbm].view(np.uint8), bitorder="little")
    if bits[c_out * nb:].any():
        raise FormatError(f"{what}: bitmap padding bits past {c_out * nb} blocks are "
                          "not 0")
    mask = bits[:c_out * nb].astype(bool)
    n_kept = int(mask.sum())
    if w.size != nbm + n_kept * block:
        raise FormatError(f"{what}: {w.size} bytes, expected {nbm} bitmap + "
                          f"{n_kept} kept blocks x {block} = {nbm + n_kept * block}")
    dense = np.zeros((c_out * nb, block), np.int8)
    dense[mask] = w[nbm:].view(np.int8).reshape(n_kept, block)
    return dense.reshape(c_out, c_in), mask.reshape(c_out, nb)


def fold_bias(bias, weights: np.ndarray, input_zero_point: int) -> np.ndarray:
    """bias[oc] - zp_in * sum(W[oc]) wrapped to int32 (bias 0 where there is none)."""
    c_out = weights.shape[0]
    b = np.zeros(c_out, np.int64) if bias is None else np.asarray(bias, np.int64)
    sums = np.asarray(weights, np.int64).sum(axis=1)
    return wrap_int32(b - int(input_zero_point) * sums).astype(np.int32)


# -- NumPy reference -------------------------------------------------------------------
def _batches(x: np.ndarray, c_in: int) -> np.ndarray:
    x = np.asarray(x)
    if x.dtype != np.int8 or x.size % c_in:
        raise FormatError(f"input must be int8 with a size that is a multiple of "
                          f"C_in={c_in}, got {x.dtype} {list(x.shape)}")
    return x.reshape(-1, c_in).astype(np.int64)


def dtmm_fully_connected(x, w, q, c_out: int, c_in: int, block: int,
                         output_zero_point: int, act_min: int, act_max: int,
                         single_rounding: bool = False) -> np.ndarray:
    """DTMM_FULLY_CONNECTED per docs/contract.md: [batches, C_out] int8 (with
    single_rounding: the desktop interpreter's rounding, for comparing with it)."""
    dense, _ = unpack(w, c_out, c_in, block)
    q = np.asarray(q, np.int64).reshape(c_out, 3)
    acc = wrap_int32(_batches(x, c_in) @ dense.astype(np.int64).T + q[:, 0])
    if not single_rounding:
        return requantize(acc, q[:, 1], q[:, 2], output_zero_point, act_min, act_max)
    v = wrap_int32(multiply_single_rounding(acc, q[:, 1], q[:, 2]) + int(output_zero_point))
    return np.clip(v, act_min, act_max).astype(np.int8)


def multiply_single_rounding(x, multiplier, shift) -> np.ndarray:
    """MultiplyByQuantizedMultiplier as TFLite builds it with TFLITE_SINGLE_ROUNDING:
    (x * multiplier + 2^(30 - shift)) >> (31 - shift), one rounding."""
    x = wrap_int32(x)
    total = 31 - np.asarray(shift, np.int64)
    return (x * np.asarray(multiplier, np.int64) + (np.int64(1) << (total - 1))) >> total


def tflite_fully_connected(x, weights, bias, multiplier, shift, input_zero_point: int,
                           output_zero_point: int, act_min: int, act_max: int,
                           single_rounding: bool = False) -> np.ndarray:
    """TFLite's reference int8 FULLY_CONNECTED (per-tensor or per-channel, unfolded:
    (x - zp_in) . w + bias): [batches, C_out] int8. TFLM, CMSIS-NN and the contract
    round twice (gemmlowp); the desktop TFLite interpreter (TF 2.21, BUILTIN_REF)
    rounds its FULLY_CONNECTED once (``single_rounding=True``), which differs by one
    at exact halves of the first rounding (docs/fully_connected.md)."""
    w = np.asarray(weights, np.int64)
    acc = (_batches(x, w.shape[1]) - int(input_zero_point)) @ w.T
    if bias is not None:
        acc = acc + np.asarray(bias, np.int64)
    mult = np.broadcast_to(np.asarray(multiplier, np.int64), (w.shape[0],))
    sh = np.broadcast_to(np.asarray(shift, np.int64), (w.shape[0],))
    acc = wrap_int32(acc)
    if not single_rounding:
        return requantize(acc, mult, sh, output_zero_point, act_min, act_max)
    v = wrap_int32(multiply_single_rounding(acc, mult, sh) + int(output_zero_point))
    return np.clip(v, act_min, act_max).astype(np.int8)


# -- FULLY_CONNECTED ---------------------------------------------------------------------
@dataclass
class FcOp:
    """One FULLY_CONNECTED; the numbers are set when it is an eligible int8 FC."""

    subgraph: int
    op_index: int
    op: object
    input: object = None
    filter: object = None
    bias: object = None
    output: object = None
    skip: str = ""
    weights: np.ndarray | None = None      # int8 [C_out, C_in]
    bias_values: np.ndarray | None = None  # int32 [C_out] or None
    input_zero_point: int = 0
    output_zero_point: int = 0
    act_min: int = -128
    act_max: int = 127
    input_scale: float = 0.0
    filter_scales: np.ndarray | None = None
    output_scale: float = 0.0
    batches: int = 0
    keep_num_dims: bool = False

    @property
    def c_out(self) -> int:
        return int(self.weights.shape[0])

    @property
    def c_in(self) -> int:
        return int(self.weights.shape[1])

    def multipliers(self):
        return per_channel_multipliers(self.input_scale, self.filter_scales,
                                       self.output_scale)


def is_fc(op) -> bool:
    return op.opcode.builtin == BuiltinOperator.FULLY_CONNECTED


def read_fc(model: Model, si: int, oi: int) -> FcOp:
    """FULLY_CONNECTED (si, oi). ModelError for an int8 FC whose shapes or
    quantization disagree; fc.skip for one this converter does not rewrite."""
    op = model.subgraphs[si].operators[oi]
    where = where_of("FULLY_CONNECTED", si, oi, op)
    f = FcOp(si, oi, op)
    if len(op.inputs) not in (2, 3) or len(op.outputs) != 1 or op.inputs[0] is None \
            or op.inputs[1] is None or op.outputs[0] is None:
        raise ModelError(f"{where}: needs 2-3 inputs and 1 output, has "
                         f"{len(op.inputs)} and {len(op.outputs)}")
    f.input, f.filter, f.output = op.inputs[0], op.inputs[1], op.outputs[0]
    f.bias = op.inputs[2] if len(op.inputs) == 3 else None

    def skip(reason):
        f.skip = reason
        return f

    o = op.builtin_options
    if o is None or not isinstance(o, schema.FullyConnectedOptionsT):
        o = schema.FullyConnectedOptionsT()
    x_t, w_t, y_t = f.input, f.filter, f.output
    if x_t.dtype != TensorType.INT8 or y_t.dtype != TensorType.INT8:
        return skip(f"skipped: {type_name(x_t.dtype)} input, {type_name(y_t.dtype)} "
                    "output (int8 only)")
    if w_t.dtype != TensorType.INT8:
        return skip(f"skipped: {type_name(w_t.dtype)} weights (int8 only)")
    if int(o.weightsFormat) != 0:
        return skip("skipped: shuffled weights format")
    if len(w_t.shape) != 2 or min(w_t.shape) < 1:
        raise ModelError(f"{where}: weights must be 2-D [C_out, C_in], got "
                         f"{list(w_t.shape)}")
    c_out, c_in = w_t.shape
    size = int(np.prod(x_t.shape)) if len(x_t.shape) else 1
    if size == 0 or size % c_in:
        raise ModelError(f"{where}: input {list(x_t.shape)} is not a whole number of "
                         f"rows of C_in={c_in}")
    batches = size // c_in
    y_shape = tuple(y_t.shape)
    if not y_shape or y_shape[-1] != c_out or int(np.prod(y_shape)) != batches * c_out:
        raise ModelError(f"{where}: output {list(y_shape)}, expected {batches} rows of "
                         f"C_out={c_out}")
    s_in, zp_in, _ = x_t.quant()
    s_w, zp_w, qdim = w_t.quant()
    s_out, zp_out, _ = y_t.quant()
    if len(s_in) != 1 or len(zp_in) != 1 or len(s_out) != 1 or len(zp_out) != 1:
        raise ModelError(f"{where}: input and output need per-tensor quantization")
    if len(s_w) not in (1, c_out):
        raise ModelError(f"{where}: weights have {len(s_w)} scales for C_out={c_out}")
    if len(s_w) == c_out and c_out > 1 and qdim != 0:
        raise ModelError(f"{where}: per-channel weights quantized on dimension {qdim}, "
                         "expected 0")
    if len(zp_w) not in (0, len(s_w)) or np.any(zp_w != 0):
        return skip("skipped: weight zero points are not 0")
    if not (np.all(np.isfinite(s_w)) and np.all(s_w > 0) and np.isfinite(s_in[0])
            and np.isfinite(s_out[0]) and s_in[0] > 0 and s_out[0] > 0):
        raise ModelError(f"{where}: quantization scales must be positive and finite")
    lo, hi = contract.ZERO_POINT_RANGE
    for nm, zp in (("input", zp_in[0]), ("output", zp_out[0])):
        if not lo <= zp <= hi:
            raise ModelError(f"{where}: {nm} zero point {zp} outside int8")
    act = int(o.fusedActivationFunction)
    if act not in ACTIVATION_NAMES:
        return skip(f"skipped: fused activation {act}")
    weights = w_t.value("weights")
    if weights is None:
        return skip("skipped: weights are not constant")
    bias = None
    if f.bias is not None:
        b_t = f.bias
        if b_t.dtype != TensorType.INT32:
            return skip(f"skipped: {type_name(b_t.dtype)} bias (int32 only)")
        if tuple(b_t.shape) != (c_out,):
            raise ModelError(f"{where}: bias shape {list(b_t.shape)}, expected [{c_out}]")
        bias = b_t.value("bias")
        if bias is None:
            return skip("skipped: bias is not constant")
    f.weights, f.bias_values = np.asarray(weights, np.int8), bias
    f.input_zero_point, f.output_zero_point = int(zp_in[0]), int(zp_out[0])
    f.act_min, f.act_max = activation_range(act, float(s_out[0]), int(zp_out[0]))
    f.input_scale, f.output_scale = float(s_in[0]), float(s_out[0])
    f.filter_scales = np.broadcast_to(s_w, (c_out,)).astype(np.float32)
    f.batches, f.keep_num_dims = batches, bool(o.keepNumDims)
    return f


@dataclass
class DtmmFcForm:
    """What an eligible FULLY_CONNECTED becomes at block size `block`."""

    block: int
    w: np.ndarray        # int8 packed
    q: np.ndarray        # int32 [C_out, 3]
    options: dict
    num_kept: int
    num_blocks: int

    @property
    def sparsity(self) -> float:
        return 1.0 - self.num_kept / self.num_blocks if self.num_blocks else 0.0

    def arrays(self):
        """(name, array, schema TensorType) of inputs 1-2, in contract order."""
        return (("w", self.w, TensorType.INT8), ("q", self.q, TensorType.INT32))

    def device_rejects(self) -> str:
        try:
            C.check_channels({"multiplier": self.q[:, 1], "shift": self.q[:, 2]},
                             "requantization")
            C.validate(self.options, "options")
        except FormatError as e:
            return str(e)
        return ""


def dtmm_fc_form(fc: FcOp, block: int) -> DtmmFcForm:
    mult, shift = fc.multipliers()
    q = np.stack([fold_bias(fc.bias_values, fc.weights, fc.input_zero_point),
                  np.asarray(mult, np.int64), np.asarray(shift, np.int64)],
                 axis=1).astype(np.int32)
    options = {"version": C.version, "b": int(block), "z": fc.input_zero_point,
               "lo": fc.act_min, "hi": fc.act_max}
    mask = block_mask(fc.weights, block)
    return DtmmFcForm(block, pack(fc.weights, block), q, options, int(mask.sum()),
                      int(mask.size))


# -- DTMM_FULLY_CONNECTED ---------------------------------------------------------------
@dataclass
class DtmmFcOp:
    subgraph: int
    op_index: int
    input: object
    output: object
    options: dict
    w: np.ndarray
    q: np.ndarray
    weights: np.ndarray   # dense int8 [C_out, C_in]
    mask: np.ndarray      # kept blocks [C_out, nb]
    c_in: int
    c_out: int
    batches: int
    output_zero_point: int

    @property
    def block(self) -> int:
        return int(self.options["b"])

    @property
    def sparsity(self) -> float:
        return 1.0 - float(self.mask.mean()) if self.mask.size else 0.0

    @property
    def constant_bytes(self) -> int:
        return int(self.w.size + self.q.size * 4)

    def run(self, x) -> np.ndarray:
        """The reference output, shaped as the op's output tensor."""
        y = dtmm_fully_connected(x, self.w, self.q, self.c_out, self.c_in, self.block,
                                 self.output_zero_point, self.options["lo"],
                                 self.options["hi"])
        return y.reshape(self.output.shape)


def is_dtmm_fc(op) -> bool:
    return op.opcode.builtin == BuiltinOperator.CUSTOM and \
        op.opcode.custom_code == C.custom_code


def read_dtmm_fc(model: Model, si: int, oi: int) -> DtmmFcOp:
    """Decode and validate DTMM_FULLY_CONNECTED (si, oi); FormatError if the device
    would reject it."""
    op = model.subgraphs[si].operators[oi]
    what = where_of(C.custom_code, si, oi, op)
    if len(op.inputs) != len(C.inputs) or len(op.outputs) != 1 or \
            any(t is None for t in op.inputs + op.outputs):
        raise FormatError(f"{what}: needs {len(C.inputs)} inputs and 1 output, has "
                          f"{len(op.inputs)} and {len(op.outputs)}")
    opts = contract.decode_options(op.custom_options, what, op.custom_options_format,
                                   op.opcode.custom_code)
    x_t, w_t, q_t = op.inputs
    y_t = op.outputs[0]
    if x_t.dtype != TensorType.INT8 or y_t.dtype != TensorType.INT8:
        raise FormatError(f"{what}: input/output must be int8, got "
                          f"{type_name(x_t.dtype)}/{type_name(y_t.dtype)}")
    for spec, t in zip(C.inputs[1:], (w_t, q_t)):
        if t.dtype != spec.dtype or len(t.shape) != spec.rank:
            raise FormatError(f"{what}: {spec.name} must be {type_name(spec.dtype)} of "
                              f"rank {spec.rank}, got {type_name(t.dtype)} "
                              f"{list(t.shape)}")
        if t.data is None:
            raise FormatError(f"{what}: {spec.name} is not a constant tensor")
    q = q_t.value("q")
    if q.shape[1:] != (3,) or q.shape[0] < 1:
        raise FormatError(f"{what}: q shape {list(q.shape)}, expected [C_out, 3]")
    c_out = int(q.shape[0])
    y_shape = tuple(y_t.shape)
    if not y_shape or y_shape[-1] != c_out:
        raise FormatError(f"{what}: output {list(y_shape)} does not end in C_out={c_out}")
    block = opts["b"]
    x_shape = tuple(x_t.shape)
    size = int(np.prod(x_shape)) if x_shape else 1
    batches = int(np.prod(y_shape)) // c_out
    if batches < 1 or size % batches:
        raise FormatError(f"{what}: input {list(x_shape)} is not {batches} rows")
    c_in = size // batches
    if c_in % block:
        raise FormatError(f"{what}: block size b={block} does not divide C_in={c_in}")
    weights, mask = unpack(w_t.value("w"), c_out, c_in, block, f"{what}: w")
    C.check_channels({"multiplier": q[:, 1], "shift": q[:, 2]}, what)
    _, zp_in, _ = x_t.quant()
    _, zp_out, _ = y_t.quant()
    if len(zp_in) != 1 or len(zp_out) != 1:
        raise FormatError(f"{what}: input/output need per-tensor quantization")
    if int(zp_in[0]) != opts["z"]:
        raise FormatError(f"{what}: z {opts['z']} differs from the input tensor's zero "
                          f"point {int(zp_in[0])}")
    lo, hi = contract.ZERO_POINT_RANGE
    if not lo <= int(zp_out[0]) <= hi:
        raise FormatError(f"{what}: output zero point {int(zp_out[0])} is not int8")
    return DtmmFcOp(si, oi, x_t, y_t, opts, np.asarray(w_t.value("w"), np.int8),
                    q.astype(np.int32), weights, mask, c_in, c_out, batches,
                    int(zp_out[0]))


