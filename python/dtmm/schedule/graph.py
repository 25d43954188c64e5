"""What the scheduler needs to know about an int8 .tflite: its convolutions, which
activation tensors and constants shrink when a convolution loses filters, and the
tensor lifetimes TFLM plans the arena from.

    g = analyze(open("model_int8.tflite", "rb").read())
    g.convs[0].c_out, g.groups, g.tensors[3].owner

Filter pruning removes output channels of a CONV_2D. Every activation that carries
those channels (through ReLU, pooling, reshape, an ADD with another pruned branch)
shrinks by the same ratio, and so does the channel axis of whatever consumes them
(the next conv's C_in, a FULLY_CONNECTED's input rows). Convolutions whose outputs
meet at an ADD/MUL/SUB must keep the same channels: they form one *group* that shares
beta. A convolution whose channels reach the model output, a CONCATENATION, or an
op this module does not know cannot lose filters (its group is *frozen*).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from dtmm.core import contract
from dtmm.core.errors import ModelError
from dtmm.core.tflite import NUMPY_DTYPES, Model, TensorType

# Ops whose output carries the channels of input 0 unchanged (element count scales
# with the channel count). MEAN/SUM are checked for the reduced axes separately.
_CHANNEL_PRESERVING = {
    "RELU", "RELU6", "RELU_N1_TO_1", "RELU_0_TO_1", "LEAKY_RELU", "PRELU", "LOGISTIC",
    "TANH", "HARD_SWISH", "MAX_POOL_2D", "AVERAGE_POOL_2D", "L2_POOL_2D", "RESHAPE",
    "SQUEEZE", "EXPAND_DIMS", "QUANTIZE", "DEQUANTIZE", "PAD", "PADV2",
    "RESIZE_NEAREST_NEIGHBOR", "RESIZE_BILINEAR", "DEPTHWISE_CONV_2D",
    "SPACE_TO_DEPTH", "DEPTH_TO_SPACE", "BATCH_TO_SPACE_ND", "SPACE_TO_BATCH_ND",
}
_REDUCE = {"MEAN", "SUM", "REDUCE_MAX", "REDUCE_MIN", "REDUCE_PROD"}
_ELEMENTWISE_BINARY = {"ADD", "MUL", "SUB", "MAXIMUM", "MINIMUM", "SQUARED_DIFFERENCE"}
CONV_OPS = ("CONV_2D",)
DTMM_CUSTOM_CODE = contract.CONV_2D.custom_code


@dataclass
class Tensor:
    index: int
    name: str
    shape: tuple
    dtype: int
    nbytes: int          # element bytes (0 for an empty/unknown shape)
    is_const: bool       # has data in the flatbuffer (never planned in the arena)
    is_variable: bool
    owner: int | None = None   # conv index whose output channels this tensor carries
    small_data: tuple | None = None  # values of small int32 constants (axes)
    quant_channels: int = 0   # scales of its quantization (per-channel: one per channel)


@dataclass
class Op:
    index: int
    name: str            # builtin op name, or the custom code
    inputs: list
    outputs: list
    options: object = None
    custom_options: bytes | None = None
    custom_options_format: int = 0


@dataclass
class Conv:
    """One CONV_2D (or DTMM_CONV_2D) of the model, in operator order."""

    index: int           # position among the model's convolutions
    op_index: int
    name: str            # filter tensor name
    c_out: int
    kh: int
    kw: int
    c_in: int
    out_h: int
    out_w: int
    input_tensor: int
    output_tensor: int
    in_from: int | None = None   # conv whose channels are this conv's C_in
    group: int = -1
    bias_name: str | None = None  # None: the conv has no bias input
    filter_scales: int = 1        # quantization scales of the dense filter
    stride: tuple = (1, 1)        # (h, w)
    dilation: tuple = (1, 1)      # (h, w)

    @property
    def k(self) -> int:
        return self.kh * self.kw

    @property
    def weights(self) -> int:
        return self.c_out * self.kh * self.kw * self.c_in

    @property
    def macs(self) -> int:
        return self.weights * self.out_h * self.out_w


@dataclass
class Group:
    """Convolutions that must keep the same output channels (share beta)."""

    index: int
    convs: list
    c_out: int
    frozen: str | None = None    # why filters of this group cannot be removed
    scaled_const_bytes: int = 0  # non-conv constants with a channel axis from here


@dataclass
class Fc:
    """One FULLY_CONNECTED with constant 2-D int8 weights [C_out, C_in] (the layers
    that can take a block ratio, docs/scheduler.md)."""

    index: int           # position among the model's FULLY_CONNECTED ops
    op_index: int
    name: str            # weight tensor name
    c_out: int
    c_in: int
    batches: int         # input rows per call
    input_tensor: int
    in_from: int | None = None   # conv whose channels are this FC's input rows


@dataclass
class Graph:
    tensors: list
    ops: list
    convs: list
    groups: list
    inputs: list
    outputs: list
    scratch: list = field(default_factory=list)   # (op_index, bytes) TFLM requests
    size: int = 0
    fcs: list = field(default_factory=list)       # Fc per constant int8 FULLY_CONNECTED

    def group_of(self, conv_index: int) -> Group:
        return self.groups[self.convs[conv_index].group]


def analyze(buf: bytes) -> Graph:
    """Read subgraph 0 of a .tflite into a Graph (see module docstring)."""
    model = Model.read(buf, "model")
    sg = model.subgraphs[0]
    index = {id(t): i for i, t in enumerate(sg.tensors)}
    tensors = []
    for i, t in enumerate(sg.tensors):
        shape = t.shape
        n = int(np.prod(shape)) if shape and min(shape) > 0 else 0
        itemsize = np.dtype(NUMPY_DTYPES[t.dtype]).itemsize if t.dtype in NUMPY_DTYPES else 1
        small = None
        if t.is_constant and t.dtype == TensorType.INT32 and t.data.size <= 64:
            small = tuple(int(v) for v in np.frombuffer(t.data.tobytes(), "<i4"))
        tensors.append(Tensor(i, t.name, shape, t.dtype, n * itemsize, t.is_constant,
                              t.is_variable, small_data=small,
                              quant_channels=len(t.quant()[0])))
    ops = []
    for i, op in enumerate(sg.operators):
        opts = op.custom_options
        ops.append(Op(i, op.name, [index[id(x)] if x is not None else -1 for x in op.inputs],
                      [index[id(x)] for x in op.outputs if x is not None],
                      op.builtin_options, None if opts is None else opts.tobytes(),
                      op.custom_options_format))
    g = Graph(tensors, ops, [], [], [index[id(t)] for t in sg.inputs],
              [index[id(t)] for t in sg.outputs], size=len(buf))
    _find_convs(g, sg)
    _trace_channels(g)
    g.scratch = _scratch_requests(g)
    g.fcs = find_fcs(g)
    return g


def find_fcs(g: Graph) -> list:
    """FULLY_CONNECTED ops with constant 2-D int8 weights, in operator order (after
    _trace_channels: in_from says which conv's channels feed their input rows)."""
    out = []
    for op in g.ops:
        if op.name != "FULLY_CONNECTED" or len(op.inputs) < 2 or op.inputs[1] < 0:
            continue
        x, w = g.tensors[op.inputs[0]], g.tensors[op.inputs[1]]
        if not w.is_const or len(w.shape) != 2 or w.dtype != TensorType.INT8:
            continue
        c_out, c_in = w.shape
        n = int(np.prod(x.shape)) if x.shape else 1
        out.append(Fc(len(out), op.index, w.name, int(c_out), int(c_in),
                      max(n // max(c_in, 1), 1), op.inputs[0], x.owner))
    return out


def _find_convs(g: Graph, sg=None) -> None:
    """Convs in operator order. `sg` (the core.tflite Subgraph) gives the bias and
    filter quantization the flash model needs; synthetic graphs have none."""
    for op in g.ops:
        bias_name, n_scales = None, 1
        if op.name in CONV_OPS:
            filt = g.tensors[op.inputs[1]]
            if len(filt.shape) != 4:
                raise ModelError(f"conv filter {filt.name!r} is not 4-D: {filt.shape}")
            c_out, kh, kw, c_in = filt.shape
            if len(op.inputs) > 2 and op.inputs[2] >= 0:
                bias_name = g.tensors[op.inputs[2]].name
            if sg is not None:
                n_scales = len(sg.tensors[op.inputs[1]].quant()[0])
            elif bias_name is None:
                bias_name = filt.name + "/bias"  # synthetic graphs: assume a bias
            o = op.options
            stride = (getattr(o, "strideH", 1), getattr(o, "strideW", 1))
            dilation = (getattr(o, "dilationHFactor", 1), getattr(o, "dilationWFactor", 1))
        elif op.name == DTMM_CUSTOM_CODE:
            # C_out from the output (format versions 1 and 2), K from the options
            # (the bitmap length alone does not give it).
            opts = contract.decode_options(
                op.custom_options, f"operator {op.index} (DTMM_CONV_2D)",
                op.custom_options_format)
            c_out = g.tensors[op.outputs[0]].shape[-1]
            kh, kw = int(opts["kh"]), int(opts["kw"])
            c_in = g.tensors[op.inputs[0]].shape[-1]
            filt = g.tensors[op.inputs[1]]
            stride = (int(opts["sh"]), int(opts["sw"]))
            dilation = (int(opts["dh"]), int(opts["dw"]))
        else:
            continue
        out = g.tensors[op.outputs[0]]
        if len(out.shape) != 4:
            raise ModelError(f"conv output {out.name!r} is not 4-D: {out.shape}")
        g.convs.append(Conv(len(g.convs), op.index, filt.name, c_out, kh, kw, c_in,
                            out.shape[1], out.shape[2], op.inputs[0], op.outputs[0],
                            bias_name=bias_name, filter_scales=n_scales,
                            stride=stride, dilation=dilation))


class _UnionFind:
    def __init__(self, n):
        self.p = list(range(n))

    def find(self, a):
        while self.p[a] != a:
            self.p[a] = self.p[self.p[a]]
            a = self.p[a]
        return a

    def union(self, a, b):
        self.p[self.find(a)] = self.find(b)


def _trace_channels(g: Graph) -> None:
    """Propagate channel ownership forward in operator order; build groups."""
    conv_by_op = {c.op_index: c for c in g.convs}
    uf = _UnionFind(len(g.convs))
    frozen: dict[int, str] = {}
    scaled: list[tuple[int, int]] = []   # (conv owning the channels, const bytes)

    def freeze(owner, why):
        if owner is not None:
            frozen.setdefault(owner, why)

    for op in g.ops:
        ins = [i for i in op.inputs if i >= 0]
        act_in = [i for i in ins if not g.tensors[i].is_const]
        owners = [g.tensors[i].owner for i in act_in]
        if op.index in conv_by_op:
            c = conv_by_op[op.index]
            c.in_from = g.tensors[op.inputs[0]].owner
            g.tensors[op.outputs[0]].owner = c.index
            continue
        first = owners[0] if owners else None
        if op.name in _CHANNEL_PRESERVING or (op.name in _REDUCE and _keeps_last_axis(g, op)):
            for o in op.outputs:
                g.tensors[o].owner = first
            if op.name == "DEPTHWISE_CONV_2D" and first is not None:
                scaled.append((first, sum(_const_bytes(g.tensors[i]) for i in ins
                                          if g.tensors[i].is_const)))
            continue
        if op.name in _ELEMENTWISE_BINARY:
            real = [o for o in owners if o is not None]
            for a in real[1:]:
                uf.union(real[0], a)
            if len(real) != len(act_in):
                # one side is a pruned branch, the other is not: cannot shrink
                for o in real:
                    freeze(o, f"{op.name} operator {op.index} mixes it with an unpruned tensor")
            const_in = [i for i in ins if g.tensors[i].is_const]
            if real and const_in:
                scaled.append((real[0], sum(g.tensors[i].nbytes for i in const_in)))
            for o in op.outputs:
                g.tensors[o].owner = real[0] if real else None
            continue
        if op.name == "FULLY_CONNECTED":
            if first is not None and len(op.inputs) > 1:
                scaled.append((first, g.tensors[op.inputs[1]].nbytes))
            continue
        if op.name == "SHAPE":
            continue  # reads only the shape (Flatten's dynamic-batch RESHAPE)
        if op.name in ("SOFTMAX", "LOG_SOFTMAX", "ARG_MAX", "ARG_MIN"):
            freeze(first, f"its channels reach {op.name} operator {op.index}")
            continue
        for o in owners:
            freeze(o, f"its channels reach {op.name} operator {op.index}, which "
                      "filter pruning does not handle")
    for t in g.outputs:
        freeze(g.tensors[t].owner, "its channels are a model output")

    roots = {}
    for c in g.convs:
        r = uf.find(c.index)
        if r not in roots:
            roots[r] = Group(len(g.groups), [], c.c_out)
            g.groups.append(roots[r])
        grp = roots[r]
        grp.convs.append(c.index)
        c.group = grp.index
        if c.c_out != grp.c_out:
            grp.frozen = grp.frozen or "its convolutions meet at an elementwise op with different channel counts"
    for owner, why in frozen.items():
        grp = g.groups[g.convs[owner].group]
        grp.frozen = grp.frozen or f"conv {g.convs[owner].name!r}: {why}"
    for owner, nbytes in scaled:
        g.groups[g.convs[owner].group].scaled_const_bytes += nbytes


# Flatbuffer bytes per channel of a per-channel quantized constant: a float32 scale
# and an int64 zero point (QuantizationParameters' vectors).
QUANT_BYTES_PER_CHANNEL = 4 + 8


def _const_bytes(t: Tensor) -> int:
    """Data bytes of a constant plus its per-channel quantization (the depthwise
    filter's and bias' scales and zero points shrink with the channels too)."""
    return t.nbytes + (QUANT_BYTES_PER_CHANNEL * t.quant_channels
                       if t.quant_channels > 1 else 0)


def _keeps_last_axis(g: Graph, op: Op) -> bool:
    if len(op.inputs) < 2:
        return False
    axis_t = g.tensors[op.inputs[1]]
    rank = len(g.tensors[op.inputs[0]].shape)
    if axis_t.small_data is None or rank == 0:
        return False
    return (rank - 1) not in {a % rank for a in axis_t.small_data}


def _scratch_requests(g: Graph) -> list:
    """Scratch buffers TFLM's reference kernels request in Prepare, as
    (op_index, bytes), in request order. Only ops with requests are listed."""
    out = []
    for op in g.ops:
        if op.name == "MEAN" or op.name == "SUM":
            inp = g.tensors[op.inputs[0]]
            outp = g.tensors[op.outputs[0]]
            n_out = int(np.prod(outp.shape)) if outp.shape else 1
            n_axis = int(np.prod(g.tensors[op.inputs[1]].shape)) if g.tensors[op.inputs[1]].shape else 1
            if inp.dtype in (TensorType.INT8, TensorType.INT16):  # int32 scratch accumulators
                out.append((op.index, 4 * n_out))
            out.append((op.index, 4 * len(inp.shape)))
            out.append((op.index, 4 * n_axis))
        elif op.name in ("REDUCE_MAX", "REDUCE_MIN"):
            inp = g.tensors[op.inputs[0]]
            n_axis = int(np.prod(g.tensors[op.inputs[1]].shape)) if g.tensors[op.inputs[1]].shape else 1
            out.append((op.index, 4 * len(inp.shape)))
            out.append((op.index, 4 * n_axis))
    return out
