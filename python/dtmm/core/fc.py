"""FULLY_CONNECTED and DTMM_FULLY_CONNECTED (format version 2, docs/contract.md).

    fc = read_fc(model, si, oi)          # FcOp; fc.skip says why it cannot be rewritten
    form = dtmm_fc_form(fc, block=16)    # packed weights w, table q, options
    d = read_dtmm_fc(model, si, oi)      # DtmmFcOp, FormatError unless the device takes it
    y = dtmm_fully_connected(x, d.w, d.q, d.c_out, d.c_in, d.block, zp_out, lo, hi)

A row of the FC's weights W [C_out, C_in] is one filterlet split into C_in / B
blocks of B input channels; the op's one constant tensor w holds the per-channel
table q (folded bias, multiplier, shift as int32), the bitmap (one bit per block,
padded to 4 bytes) and the kept blocks. ``read_dtmm_fc`` checks what the TFLM op's
Prepare checks (dtmm_ops/dtmm_fully_connected.cc).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dtmm.core import contract
from dtmm.core.errors import FormatError, ModelError
from dtmm.core.ops import check_int8_quantization, read_operands, runtime_written, where_of
from dtmm.core.quant import (ACTIVATION_NAMES, activation_range, per_channel_multipliers,
                             requantize, wrap_int32)
from dtmm.core.tflite import BuiltinOperator, Model, TensorType, schema, type_name

C = contract.FULLY_CONNECTED
# Block sizes the converter tries, besides B = C_in (a whole row, v1's filterlet).
BLOCK_CANDIDATES = (32, 16, 8)


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


def join_w(q: np.ndarray, packed: np.ndarray) -> np.ndarray:
    """Contract input 1: q [C_out, 3] as little-endian int32, then the packed blocks."""
    return np.concatenate([np.asarray(q, "<i4").reshape(-1).view(np.int8),
                           np.asarray(packed, np.int8).reshape(-1)])


def split_w(w: np.ndarray, c_out: int, what: str = "w"):
    """(q [C_out, 3] int32, packed blocks int8) of contract input 1."""
    w = np.asarray(w, np.int8).reshape(-1)
    if w.size < 12 * c_out:
        raise FormatError(f"{what}: {w.size} bytes, the per-channel table alone needs "
                          f"{12 * c_out} (C_out={c_out})")
    q = w[:12 * c_out].view("<i4").reshape(c_out, 3).astype(np.int32)
    return q, w[12 * c_out:]


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
    f.input, f.filter, f.output, f.bias = read_operands(op, "FULLY_CONNECTED", si, oi)

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
    (s_in, zp_in), (s_w, zp_w), (s_out, zp_out) = check_int8_quantization(
        where, x_t, w_t, y_t, c_out, "weight tensor")
    if len(zp_w) not in (0, len(s_w)) or np.any(zp_w != 0):
        return skip("skipped: weight zero points are not 0")
    act = int(o.fusedActivationFunction)
    if act not in ACTIVATION_NAMES:
        return skip(f"skipped: fused activation {act}")
    sg = model.subgraphs[si]
    for t, nm in ((w_t, "weights"), (f.bias, "bias")):
        if t is not None and runtime_written(sg, t):
            return skip(f"skipped: {nm} written at run time (a subgraph input, "
                        "variable or op output), not a constant")
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
        """(name, array, schema TensorType) of input 1: the table q (int32 little
        endian) then the packed blocks w, as one int8 tensor."""
        return (("w", join_w(self.q, self.w), TensorType.INT8),)

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
    w: np.ndarray         # packed blocks (bitmap, kept blocks)
    q: np.ndarray         # [C_out, 3] folded bias, multiplier, shift
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

    def run(self, x, single_rounding: bool = False) -> np.ndarray:
        """The reference output, shaped as the op's output tensor (single_rounding:
        as the desktop interpreter rounds, to compare with it)."""
        y = dtmm_fully_connected(x, self.w, self.q, self.c_out, self.c_in, self.block,
                                 self.output_zero_point, self.options["lo"],
                                 self.options["hi"], single_rounding)
        return y.reshape(self.output.shape)


def check_against_fc(d: DtmmFcOp, orig: FcOp) -> list:
    """What of a decoded DTMM_FULLY_CONNECTED differs from what the contract derives
    from the original FULLY_CONNECTED (empty: nothing)."""
    if orig.skip:
        return [f"original FULLY_CONNECTED is not convertible ({orig.skip})"]
    form = dtmm_fc_form(orig, d.block)
    out = []
    for what, same in (("weights (blocks densified)", np.array_equal(d.weights, orig.weights)),
                       ("packed weights w", np.array_equal(d.w, form.w)),
                       ("per-channel table q (folded bias, multiplier, shift)",
                        np.array_equal(d.q, form.q)),
                       ("options (z, lo, hi)", all(d.options[k] == form.options[k]
                                                   for k in ("z", "lo", "hi")))):
        if not same:
            out.append(f"{what} differs from the original FULLY_CONNECTED")
    return out


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
    x_t, w_t = op.inputs
    y_t = op.outputs[0]
    if x_t.dtype != TensorType.INT8 or y_t.dtype != TensorType.INT8:
        raise FormatError(f"{what}: input/output must be int8, got "
                          f"{type_name(x_t.dtype)}/{type_name(y_t.dtype)}")
    spec = C.inputs[1]
    if w_t.dtype != spec.dtype or len(w_t.shape) != spec.rank:
        raise FormatError(f"{what}: w must be {type_name(spec.dtype)} of rank {spec.rank}, "
                          f"got {type_name(w_t.dtype)} {list(w_t.shape)}")
    if w_t.data is None:
        raise FormatError(f"{what}: w is not a constant tensor")
    y_shape = tuple(y_t.shape)
    if not y_shape or y_shape[-1] < 1:
        raise FormatError(f"{what}: output {list(y_shape)} has no C_out")
    c_out = int(y_shape[-1])
    q, packed = split_w(w_t.value("w"), c_out, f"{what}: w")
    block = opts["b"]
    x_shape = tuple(x_t.shape)
    size = int(np.prod(x_shape)) if x_shape else 1
    batches = int(np.prod(y_shape)) // c_out
    if batches < 1 or size % batches or size == 0:
        raise FormatError(f"{what}: input {list(x_shape)} is not {batches} rows")
    c_in = size // batches
    if c_in % block:
        raise FormatError(f"{what}: block size b={block} does not divide C_in={c_in}")
    weights, mask = unpack(packed, c_out, c_in, block, f"{what}: w")
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
    return DtmmFcOp(si, oi, x_t, y_t, opts, np.asarray(packed, np.int8), q, weights, mask,
                    c_in, c_out, batches, int(zp_out[0]))




# -- latency model (package data core/data/latency_fc.json, fitted by bench/fc_kernels) --
@dataclass(frozen=True)
class FcShape:
    """What the FC latency models read of one layer."""

    c_in: int
    c_out: int
    batches: int
    block: int
    kept_blocks: int
    runs: int
    full_rows: int

    def features(self, kernel: str, group_rows: int) -> dict:
        """Counts the model multiplies by its coefficients. The kernel takes input
        rows in groups of group_rows (dtmm_mac_p: DTMM_P) and the rest one by one;
        blocks of 16 and the others take different paths (MVE)."""
        n = self.batches
        if kernel == "cmsis_nn":
            return {"macs": n * self.c_in * self.c_out, "outputs": n * self.c_out,
                    "batches": n, "call": 1}
        g, r1 = divmod(n, group_rows)
        b16 = self.block == 16
        return {"kept_macs_1": r1 * self.kept_blocks * self.block,
                "full_row_macs_1": r1 * self.full_rows * self.c_in,
                "kept_blocks16_1": r1 * self.kept_blocks * b16,
                "kept_blocks_other_1": r1 * self.kept_blocks * (not b16),
                "runs_1": r1 * self.runs, "outputs_1": r1 * self.c_out,
                "widen_1": r1 * self.c_in,
                "kept_macs_g": g * self.kept_blocks * self.block, "runs_g": g * self.runs,
                "outputs_g": g * self.c_out, "batches": n, "call": 1}


# Input rows the kernel computes together (DTMM_P of dtmm_conv_s8_support.h).
GROUP_ROWS = {"cortex-m4": 3, "cortex-m55": 4}
FEATURES = {k: tuple(FcShape(1, 1, 1, 1, 1, 1, 1).features(k, 3)) for k in ("cmsis_nn", "dtmm")}


def fc_shape(weights: np.ndarray, block: int, batches: int) -> FcShape:
    """The shape of weights W [C_out, C_in] cut into blocks of `block`."""
    mask = block_mask(weights, block)
    starts = mask & ~np.concatenate([np.zeros((mask.shape[0], 1), bool), mask[:, :-1]], axis=1)
    return FcShape(int(weights.shape[1]), int(weights.shape[0]), int(batches), int(block),
                   int(mask.sum()), int(starts.sum()), int(mask.all(axis=1).sum()))


def _models() -> dict:
    import json
    from importlib import resources

    with resources.files("dtmm.core").joinpath("data/latency_fc.json").open() as f:
        return json.load(f)["targets"]


def fc_targets() -> list:
    return sorted(_models())


def fc_instructions(target: str, kernel: str, shape: FcShape) -> float:
    """Modeled executed instructions of one FC call (kernel: cmsis_nn | dtmm)."""
    m = _models()[target][kernel]
    f = shape.features(kernel, m["group_rows"])
    return float(sum(c * f[name] for name, c in zip(m["features"], m["coef"])))


def fit(records) -> dict:
    """Least-squares fit (relative error) of both kernels' models per target from
    bench records (dicts: target, kernel, insns, c_in, c_out, batches, block,
    kept, runs, full_rows). Returns the latency_fc.json document."""
    out = {}
    for target in sorted({r["target"] for r in records}):
        out[target] = {}
        for kernel in ("cmsis_nn", "dtmm"):
            rows = [r for r in records if r["target"] == target and r["kernel"] == kernel]
            names = FEATURES[kernel]
            p = GROUP_ROWS[target]
            a = np.array([[FcShape(r["c_in"], r["c_out"], r["batches"], r["block"],
                                   r.get("kept", 0), r.get("runs", 0),
                                   r.get("full_rows", 0)).features(kernel, p)[n] for n in names]
                          for r in rows], float)
            y = np.array([r["insns"] for r in rows], float)
            coef, *_ = np.linalg.lstsq(a / y[:, None], np.ones(len(y)), rcond=None)
            rel = np.abs(a @ coef / y - 1.0)
            out[target][kernel] = {"features": list(names), "group_rows": p,
                                   "coef": [round(float(c), 5) for c in coef],
                                   "fit_points": len(rows),
                                   "median_rel_error": round(float(np.median(rel)), 4),
                                   "max_rel_error": round(float(rel.max()), 4)}
    return {"doc": "DTMM_FULLY_CONNECTED and CMSIS-NN arm_fully_connected_s8 modeled "
                   "instructions, fitted by bench/fc_kernels --fit (docs/fully_connected.md)",
            "targets": out}


# -- converter plan --------------------------------------------------------------------
def dense_bytes(fc: FcOp, own_bytes) -> int:
    """Bytes the dense FULLY_CONNECTED's own storage takes (own_bytes(tensor):
    what dropping a constant frees)."""
    from dtmm.core import size

    return (size.operator_bytes(3 if fc.bias is not None else 2, FC_OPTIONS_BYTES)
            + own_bytes(fc.filter) + own_bytes(fc.bias))


FC_OPTIONS_BYTES = 20       # FullyConnectedOptions table
DTMM_NAME_BYTES = 10        # "<op index>/dtmm_w"


def dtmm_bytes(form: DtmmFcForm, options_len: int) -> int:
    from dtmm.core import size

    return (size.operator_bytes(len(C.inputs), options_len + 8)
            + size.constant_bytes(DTMM_NAME_BYTES, 1, form.w.size + form.q.size * 4))


@dataclass
class FcChoice:
    """The converter's decision for one FULLY_CONNECTED."""

    form: DtmmFcForm | None
    options: np.ndarray | None
    bytes_before: int
    bytes_after: int | None
    modeled: dict           # target -> (dense, dtmm) at the chosen block size
    reason: str
    rewritten: bool


def choose(fc: FcOp, targets, own_bytes, min_sparsity: float = 0.0,
           prefer: str = "speed") -> FcChoice:
    """Pick the block size (C_in, 32, 16, 8 dividing C_in) and whether to rewrite:
    only where the DTMM form is smaller and, with prefer="speed", modeled
    latency.SPEED_MARGIN faster than arm_fully_connected_s8 on every target.
    The converter's `always` is for CONV_2D only: an FC is rewritten by these
    rules whatever it says."""
    from dtmm.core import latency

    before = dense_bytes(fc, own_bytes)
    cands = []
    for b in block_sizes(fc.c_in):
        form = dtmm_fc_form(fc, b)
        if form.device_rejects():
            continue
        options = contract.encode_map(form.options)
        shape = fc_shape(fc.weights, b, fc.batches)
        modeled = {t: (fc_instructions(t, "cmsis_nn", shape), fc_instructions(t, "dtmm", shape))
                   for t in targets}
        after = dtmm_bytes(form, len(options))
        fast = all(latency.clearly_faster(d, m) for d, m in modeled.values())
        cands.append((form, options, after, modeled, fast))
    if not cands:
        why = dtmm_fc_form(fc, fc.c_in).device_rejects()
        return FcChoice(None, None, before, None, {}, f"kept: the device would reject the "
                        f"DTMM form ({why})", False)

    def total(c):
        return sum(m for _, m in c[3].values())

    # A form with no pruned block skips nothing: dense it stays, even where the
    # DTMM op's leaner structure would make the file a little smaller.
    sparse = [c for c in cands if c[0].num_kept < c[0].num_blocks]
    smaller = [c for c in sparse if c[2] < before and 1 - c[0].sparsity <= 1 - min_sparsity]
    if prefer == "size":
        pool = smaller
        key = lambda c: (c[2], total(c))  # noqa: E731
    else:
        pool = [c for c in smaller if c[4]]
        key = lambda c: (total(c), c[2])  # noqa: E731
    if pool:
        best = min(pool, key=key)
        return FcChoice(best[0], best[1], before, best[2], best[3],
                        f"rewritten: B={best[0].block}, smaller" +
                        ("" if prefer == "size" else
                         f", modeled {latency.margin_text()}+ faster"), True)
    ref = min(cands, key=lambda c: (total(c), c[2]))
    if not sparse:
        reason = "kept: no pruned block at any block size"
    elif max(1 - c[0].sparsity for c in cands) > 1 - min_sparsity:
        reason = (f"kept: block sparsity {100 * max(c[0].sparsity for c in cands):.1f}% < "
                  f"{100 * min_sparsity:.1f}%")
    elif not smaller:
        reason = "kept: DTMM form is not smaller"
    else:
        slow = [t for t, (d, m) in min(smaller, key=total)[3].items()
                if not latency.clearly_faster(d, m)]
        reason = (f"kept: DTMM not modeled {latency.margin_text()} faster on "
                  + ", ".join(slow))
    return FcChoice(None, None, before, ref[2], ref[3], reason, False)
