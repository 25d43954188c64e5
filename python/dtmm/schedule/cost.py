"""Cost models the scheduler optimizes against: flash bytes of the DTMM .tflite,
peak SRAM (TFLM arena) and latency, each as a function of the per-layer filterlet
ratio alpha and per-group filter ratio beta.

    g = graph.analyze(int8_bytes)
    flash = FlashModel(g, dtmm_dense_bytes=len(convert_model(int8_bytes)[0]))
    sram = SramModel(g)
    lat = LatencyModel(g)
    cfg = Config.dense(g)                 # alpha = beta = 0 everywhere
    flash(cfg), sram(cfg), lat(cfg)

Pruned counts are rounded the way the pruner rounds them (`kept_filters`,
`kept_filterlets`), so the models see exactly the shapes the pruned model will have.
docs/scheduler.md lists what each model counts and how close it is to the real
thing.
"""

from __future__ import annotations

import math
import os
import re
import tempfile
from dataclasses import dataclass, field

import numpy as np

from dtmm.core import contract, latency, size
from dtmm.core.errors import DtmmError
from dtmm.core.rounding import kept_filterlets, kept_filters, n_pruned  # noqa: F401
from dtmm.schedule.graph import DTMM_CUSTOM_CODE, Graph

ALIGN = 16  # MicroArenaBufferAlignment() and the flatbuffer buffer alignment


def align_up(n: int, a: int = ALIGN) -> int:
    return (int(n) + a - 1) // a * a


@dataclass
class Config:
    """alpha per conv (filterlet ratio within kept filters), beta per group."""

    alpha: np.ndarray
    beta: np.ndarray

    @classmethod
    def dense(cls, g: Graph) -> "Config":
        return cls(np.zeros(len(g.convs)), np.zeros(len(g.groups)))

    def copy(self) -> "Config":
        return Config(self.alpha.copy(), self.beta.copy())

    def key(self):
        return (tuple(np.round(self.alpha, 6)), tuple(np.round(self.beta, 6)))


def layer_shapes(g: Graph, cfg: Config):
    """Per conv: (c_out', c_in', n_kept) under cfg."""
    out = []
    for c in g.convs:
        co = kept_filters(c.c_out, cfg.beta[c.group])
        if c.in_from is not None:
            src = g.groups[g.convs[c.in_from].group]
            ci = kept_filters(src.c_out, cfg.beta[src.index]) * c.c_in // src.c_out
        else:
            ci = c.c_in
        out.append((co, ci, kept_filterlets(co, c.k, cfg.alpha[c.index])))
    return out


def shape_arrays(g: Graph, cfg: Config):
    """layer_shapes as three int arrays over the convs (c_out', c_in', n_kept)."""
    shapes = layer_shapes(g, cfg)
    if not shapes:
        return (np.zeros(0, int),) * 3
    return tuple(np.array(v) for v in zip(*shapes))


def group_scale(g: Graph, cfg: Config) -> np.ndarray:
    """Fraction of channels each group keeps."""
    return np.array([kept_filters(gr.c_out, cfg.beta[gr.index]) / gr.c_out
                     for gr in g.groups])


# --------------------------------------------------------------------------------
# Flash


@dataclass
class FlashModel:
    """Bytes of the DTMM .tflite that `dtmm.convert.convert_model` writes.

    Per conv, from (C_out', K, C_in', n_kept): the dense CONV_2D form (int8 filter
    C_out' K C_in' + per-channel scale/zero point, int32 bias with its own
    quantization, when the conv has one) or the DTMM_CONV_2D form (FWCS values
    n_kept C_in' + bitmap ceil(C_out' K / 8) + folded bias, multiplier, shift at
    4 B per channel, three more tensors and the op's options), whichever is
    smaller, as the converter decides: both from dtmm.core.size, the converter's
    own size model.
    Non-conv constants with a channel axis from a pruned group (dense rows after a
    flatten or GAP, depthwise weights) scale with the group. The rest (graph,
    names, other constants, flatbuffer header) is the constant `base`: the dense
    int8 file minus the modeled dense convs.
    """

    graph: Graph
    always: bool = False       # convert_model(always=True): every conv as DTMM
    # The converter's speed rule (prefer="speed"): a LatencyModel on the same target;
    # None plans with the bytes rule alone (prefer="size").
    speed: object = None
    base: float = field(init=False, default=0.0)
    # the DTMM_CONV_2D OperatorCode entry (table + custom_code string), once
    opcode_bytes: float = float(size.DTMM_OPCODE_BYTES)

    def __post_init__(self):
        g = self.graph
        self._opt = contract.options_bytes(contract.CONV_2D_V2)  # what the converter writes
        self._fname = np.array([len(c.name) for c in g.convs])
        self._k = np.array([c.k for c in g.convs])
        self._per_channel = np.array([c.filter_scales > 1 for c in g.convs])
        dense = Config.dense(g)
        co, ci, nk = shape_arrays(g, dense)
        int8_dense = self._dense_form(co, ci)
        self.base = g.size - float(int8_dense.sum()) - \
            sum(gr.scaled_const_bytes for gr in g.groups)

    def _dense_form(self, co, ci):
        scales = np.where(self._per_channel, co, 1)
        out = np.zeros(np.shape(co), float)
        for i, c in enumerate(self.graph.convs):  # bias presence and names differ
            cols = (Ellipsis, i)
            bias = None if c.bias_name is None else len(c.bias_name)
            out[cols] = size.dense_conv_bytes(self._fname[i], co[cols], c.k, ci[cols],
                                              scales[cols], bias, scales[cols])
        return out

    def _dtmm_form(self, co, ci, nk):
        return size.dtmm_conv_bytes(self._fname, co, self._k, ci, nk, self._opt)

    def conv_bytes(self, co, ci, nk, modeled=None):
        """(bytes per conv, rewritten as DTMM?) for arrays over all convs: DTMM
        where smaller and (with `speed`) modeled faster, as dtmm.convert decides.
        `modeled`: speed.conv_modeled(co, ci, nk), when the caller has it."""
        co, ci, nk = (np.asarray(v) for v in (co, ci, nk))
        dense = self._dense_form(co, ci)
        dtmm = self._dtmm_form(co, ci, nk)
        use = np.ones(np.shape(co), bool) if self.always else dtmm < dense
        if self.speed is not None and not self.always:
            use = use & self.speed.faster(co, ci, nk, modeled)
        return np.where(use, dtmm, dense), use

    def __call__(self, cfg: Config) -> float:
        g = self.graph
        co, ci, nk = shape_arrays(g, cfg)
        per, use = self.conv_bytes(co, ci, nk)
        scale = group_scale(g, cfg)
        return self.base + float(per.sum()) + self.opcode_bytes * bool(np.any(use)) + float(
            sum(gr.scaled_const_bytes * scale[gr.index] for gr in g.groups))

    def rewritten(self, cfg: Config) -> np.ndarray:
        co, ci, nk = shape_arrays(self.graph, cfg)
        return self.conv_bytes(co, ci, nk)[1]

    def per_layer(self, cfg: Config) -> list:
        co, ci, nk = shape_arrays(self.graph, cfg)
        return [float(v) for v in self.conv_bytes(co, ci, nk)[0]]


class WeightBytesModel(FlashModel):
    """Weight bytes only (no flatbuffer, bias or quantization overhead): per conv
    the FWCS values + bitmap when `fwcs` (DTMM), else the dense kept filters
    C_out' K C_in' (filter pruning only); plus non-conv weights scaled by their
    group. Used by bench/accuracy to compare formats at equal weight bytes."""

    def __init__(self, graph: Graph, fwcs: bool = True):
        self.fwcs = fwcs
        super().__init__(graph)
        self.base = 0.0
        self.opcode_bytes = 0.0

    def conv_bytes(self, co, ci, nk, modeled=None):
        co, ci, nk = (np.asarray(v) for v in (co, ci, nk))
        if self.fwcs:
            b = nk * ci + (co * self._k + 7) // 8
        else:
            b = co * self._k * ci
        return b, np.full(np.shape(co), self.fwcs)


# --------------------------------------------------------------------------------
# SRAM: TFLM's GreedyMemoryPlanner, replayed


def greedy_plan(sizes, first, last):
    """Offsets and peak bytes of TFLM's GreedyMemoryPlanner (online buffers only).

    Same order as TFLM: buffers are listed in reverse id order, then stably sorted
    by decreasing size; each goes into the first gap, in offset order among the
    buffers alive at the same time, that fits it."""
    n = len(sizes)
    if n == 0:
        return [], 0
    order = sorted(range(n - 1, -1, -1), key=lambda i: -sizes[i])
    offsets = [0] * n
    placed = []  # ids sorted by offset (stable: a new one goes after equal offsets)
    for bid in order:
        size, f, l = sizes[bid], first[bid], last[bid]
        cand = 0
        for other in placed:
            if first[other] > l or f > last[other]:
                continue
            if offsets[other] - cand >= size:
                break
            cand = max(cand, offsets[other] + sizes[other])
        offsets[bid] = cand
        pos = len(placed)
        for j, other in enumerate(placed):
            if offsets[other] > cand:
                pos = j
                break
        placed.insert(pos, bid)
    return offsets, max(offsets[i] + sizes[i] for i in range(n))


@dataclass(frozen=True)
class Target:
    """Sizes of TFLM's persistent structures on one ABI (see docs/scheduler.md)."""

    name: str
    eval_tensor: int          # TfLiteEvalTensor
    node_and_registration: int
    tflite_tensor: int        # persistent TfLiteTensor for model inputs / outputs
    quant: int                # its quantization params (aligned)
    fixed: int                # allocator objects, subgraph tables, planner object
    op_data: dict             # per op kind: bytes of its OpData (aligned)
    builtin_data: int         # builtin options struct per builtin op


CORTEX_M = Target(
    name="cortex-m (32-bit)", eval_tensor=12, node_and_registration=40,
    tflite_tensor=48, quant=32, fixed=272,
    op_data={"CONV_2D": 80, "DEPTHWISE_CONV_2D": 80, "FULLY_CONNECTED": 48,
             DTMM_CUSTOM_CODE: 16, "_default": 48},
    builtin_data=16)
HOST_64 = Target(
    name="x86-64 (tflite-micro wheel)", eval_tensor=24, node_and_registration=64,
    tflite_tensor=64, quant=32, fixed=560,
    op_data={"CONV_2D": 96, "DEPTHWISE_CONV_2D": 96, "FULLY_CONNECTED": 64,
             DTMM_CUSTOM_CODE: 32, "_default": 64},
    builtin_data=16)


@dataclass
class SramModel:
    """Peak TFLM arena bytes = planned non-persistent head (exact replay of the
    planner over tensor lifetimes and scratch requests) + persistent tail
    (structure sizes of `target`; the conv ops' per-channel multiplier/shift arrays,
    8 * C_out each, which DTMM_CONV_2D keeps in flash instead).

    `dtmm_scratch(conv, c_out, c_in, k)` returns extra per-conv scratch bytes."""

    graph: Graph
    target: Target = CORTEX_M
    dtmm_scratch: object = None
    _cache: dict = field(default_factory=dict, repr=False)

    def lifetimes(self):
        g = self.graph
        n_t = len(g.tensors)
        first = [-1] * n_t
        last = [-1] * n_t
        for t in g.inputs:
            first[t] = 0 if first[t] == -1 else first[t]
            last[t] = 0
        scratch_times = []
        for i, op in enumerate(g.ops):
            count = i + 1
            for t in op.outputs:
                if first[t] == -1:
                    first[t] = count
            for t in op.inputs:
                if t >= 0:
                    last[t] = count
            for t in op.outputs:
                last[t] = count
        count = len(g.ops)
        for t in g.outputs:
            if first[t] == -1:
                first[t] = count
            last[t] = count
        for op_index, _ in g.scratch:
            scratch_times.append(op_index + 1)
        return first, last, scratch_times

    def head(self, cfg: Config | None = None, dtmm: bool = False) -> int:
        g = self.graph
        scale = group_scale(g, cfg) if cfg is not None else np.ones(len(g.groups))
        key = (tuple(np.round(scale, 9)), dtmm)
        if key in self._cache:
            return self._cache[key]
        first, last, s_times = self.lifetimes()
        sizes, fs, ls = [], [], []
        for t in g.tensors:
            if t.is_const or t.is_variable or t.nbytes == 0:
                continue
            nb = t.nbytes
            if t.owner is not None:
                grp = g.groups[g.convs[t.owner].group]
                nb = nb // grp.c_out * kept_filters(grp.c_out, cfg.beta[grp.index]) \
                    if cfg is not None else nb
            sizes.append(align_up(nb))
            fs.append(first[t.index])
            ls.append(last[t.index])
        for (op_index, nb), tt in zip(g.scratch, s_times):
            sizes.append(align_up(nb))
            fs.append(tt)
            ls.append(tt)
        if dtmm and self.dtmm_scratch is not None and cfg is not None:
            for c, (co, ci, _) in zip(g.convs, layer_shapes(g, cfg)):
                nb = self.dtmm_scratch(c, co, ci, c.k)
                if nb:
                    sizes.append(align_up(nb))
                    fs.append(c.op_index + 1)
                    ls.append(c.op_index + 1)
        peak = greedy_plan(sizes, fs, ls)[1]
        self._cache[key] = peak
        return peak

    def _buffers(self):
        """(nbytes, owner group or -1, first, last) of every planned buffer."""
        if getattr(self, "_buf", None) is None:
            g = self.graph
            first, last, s_times = self.lifetimes()
            rows = []
            for t in g.tensors:
                if t.is_const or t.is_variable or t.nbytes == 0:
                    continue
                grp = g.convs[t.owner].group if t.owner is not None else -1
                rows.append((t.nbytes, grp, first[t.index], last[t.index]))
            for (_, nb), tt in zip(g.scratch, s_times):
                rows.append((nb, -1, tt, tt))
            nb, grp, f, l = (np.array(v) for v in zip(*rows)) if rows else \
                (np.zeros(0, int),) * 4
            times = np.arange(0, (l.max() if len(l) else 0) + 1)
            live = (f[None, :] <= times[:, None]) & (times[:, None] <= l[None, :])
            gc = np.array([gr.c_out for gr in g.groups] + [1])
            self._buf = (nb, grp, live.astype(float), gc)
        return self._buf

    def head_lower_bound(self, kept_per_group):
        """max over time of the live planned bytes: a lower bound of the planner's
        peak (equal whenever the greedy plan has no gaps), vectorized for search.
        kept_per_group: [G] or [B, G] kept filters; returns a float or [B]."""
        nb, grp, live, gc = self._buffers()
        k = np.asarray(kept_per_group, float)
        batch = k.ndim == 2
        k = np.atleast_2d(k)
        if len(nb) == 0:
            return np.zeros(len(k)) if batch else 0.0
        kept = np.concatenate([k, np.ones((len(k), 1))], axis=1)   # [B, G+1]
        sizes = np.where(grp >= 0, (nb // gc[grp]) * kept[:, grp], nb)
        sizes = (sizes + ALIGN - 1) // ALIGN * ALIGN                # [B, N]
        peak = (sizes @ live.T).max(axis=1)
        return peak if batch else float(peak[0])

    def tail_const(self) -> int:
        """Persistent bytes that do not depend on the plan (all but the convs')."""
        g, t = self.graph, self.target
        total = t.fixed + align_up(t.eval_tensor * len(g.tensors))
        total += align_up(t.node_and_registration * len(g.ops))
        total += (len(g.inputs) + len(g.outputs)) * (t.tflite_tensor + t.quant)
        conv_ops = {c.op_index for c in g.convs}
        for op in g.ops:
            if op.index in conv_ops:
                continue
            total += t.op_data.get(op.name, t.op_data["_default"])
            if op.name != DTMM_CUSTOM_CODE:
                total += t.builtin_data
            if op.name == "DEPTHWISE_CONV_2D":
                total += 2 * align_up(4 * g.tensors[op.outputs[0]].shape[-1])
        return total + len(g.scratch) * 16

    def conv_tail(self, co, rewritten):
        """Persistent bytes per conv: TFLM's CONV_2D keeps OpData + per-channel
        multiplier and shift (4 B each per channel); DTMM_CONV_2D only its OpData."""
        t = self.target
        co = np.asarray(co)
        dense = t.op_data["CONV_2D"] + t.builtin_data + 2 * ((4 * co + ALIGN - 1) // ALIGN * ALIGN)
        return np.where(np.asarray(rewritten), t.op_data[DTMM_CUSTOM_CODE], dense)

    def tail(self, cfg: Config | None = None, rewritten=None) -> int:
        g = self.graph
        cfg = cfg if cfg is not None else Config.dense(g)
        co = np.array([s[0] for s in layer_shapes(g, cfg)])
        if rewritten is None:
            rewritten = np.array([g.ops[c.op_index].name == DTMM_CUSTOM_CODE for c in g.convs])
        return int(self.tail_const() + self.conv_tail(co, rewritten).sum())

    def __call__(self, cfg: Config | None = None, rewritten=None) -> int:
        return self.head(cfg, dtmm=rewritten is not None and bool(np.any(rewritten))) + \
            self.tail(cfg, rewritten)


def tflm_arena_usage(model_bytes: bytes, custom_op_registerers=None) -> dict:
    """Arena bytes the tflite-micro wheel's RecordingMicroAllocator reports for a
    model: {'total', 'head', 'tail'} (runs one inference on zeros)."""
    from tflite_micro import runtime
    it = runtime.Interpreter.from_bytes(bytes(model_bytes),
                                        custom_op_registerers=custom_op_registerers or [],
                                        arena_size=max(len(model_bytes) * 10, 1 << 20))
    det = it.get_input_details(0)
    it.set_input(np.zeros(det["shape"], det["dtype"]), 0)
    it.invoke()
    # print_allocations writes to the C stderr; capture fd 2.
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        saved = os.dup(2)
        try:
            os.dup2(tmp.fileno(), 2)
            it.print_allocations()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        tmp.seek(0)
        text = tmp.read().decode(errors="replace")
    out = {}
    for key in ("total", "head", "tail"):
        m = re.search(rf"Arena allocation {key} (\d+) bytes", text)
        if not m:
            raise DtmmError(f"tflite-micro did not report arena '{key}' usage:\n{text}")
        out[key] = int(m.group(1))
    return out


# --------------------------------------------------------------------------------
# Latency


def _elements(t) -> int:
    return int(np.prod(t.shape)) if t.shape and min(t.shape) > 0 else 0


def op_shape(g: Graph, op, scale) -> latency.OpShape:
    """The per-op model's view of non-conv op `op` when group i keeps the share
    scale[i] of its channels (activations that carry a group's channels shrink
    with it, and so do the rows of a FULLY_CONNECTED reading them)."""
    def n(ti):
        t = g.tensors[ti]
        k = scale[g.convs[t.owner].group] if t.owner is not None else 1.0
        return _elements(t) * k

    acts = [i for i in op.inputs if i >= 0 and not g.tensors[i].is_const]
    outputs = sum(n(i) for i in op.outputs)
    out = g.tensors[op.outputs[0]] if op.outputs else None
    pixels = int(np.prod(out.shape[:-1])) if out is not None and out.shape else 1
    kw_ = {}
    macs = 0.0
    o = op.options
    if op.name == "DEPTHWISE_CONV_2D":
        _, kh, kw, _ = g.tensors[op.inputs[1]].shape
        macs = outputs * kh * kw
        kw_ = dict(kh=kh, kw=kw, c_in=g.tensors[op.inputs[0]].shape[-1],
                   depth_multiplier=getattr(o, "depthMultiplier", 1) or 1,
                   dilation=(getattr(o, "dilationHFactor", 1), getattr(o, "dilationWFactor", 1)))
    elif op.name == "FULLY_CONNECTED":
        units, rows = g.tensors[op.inputs[1]].shape[:2]
        x = g.tensors[op.inputs[0]]
        k = scale[g.convs[x.owner].group] if x.owner is not None else 1.0
        macs = _elements(x) // max(rows, 1) * rows * k * units
    elif op.name in ("AVERAGE_POOL_2D", "MAX_POOL_2D", "L2_POOL_2D"):
        macs = outputs * getattr(o, "filterHeight", 1) * getattr(o, "filterWidth", 1)
    elif op.name in ("MEAN", "SUM"):
        macs = sum(n(i) for i in acts[:1])
    return latency.OpShape(op.name, macs=macs, outputs=outputs,
                           inputs=sum(n(i) for i in acts), pixels=pixels, **kw_)


@dataclass
class LatencyModel:
    """Modeled executed instructions of one steady-state Invoke() in TFLM with
    CMSIS-NN (dtmm.core.latency, fitted to bench/kernels and bench/models):
    every conv as dense CMSIS-NN CONV_2D or DTMM_CONV_2D, whichever the converter
    will make it (`rewritten`, from FlashModel.conv_bytes), every other op by its
    per-op-type model, plus the interpreter between ops.

    `target`: a fitted target, or "any" (the default): the SUM over every fitted
    target (Cortex-M4 + Cortex-M55), so neither is traded away for the other;
    Cortex-M4 executes about 3-4x more instructions, so it weighs more."""

    graph: Graph
    target: str = latency.DEFAULT_TARGET

    def __post_init__(self):
        known = latency.whole_model_targets()
        if self.target == "any":
            if not known:
                raise DtmmError("dtmm/core/data/latency.json has no whole-model latency "
                                "models (run bench/fit_latency with --models-ops-csv)")
            self.targets = tuple(known)
        elif self.target not in known:
            raise DtmmError(f"no whole-model latency model for target {self.target!r} "
                            f"(known: {', '.join(known + ['any'])})")
        else:
            self.targets = (self.target,)
        g = self.graph
        n_g = len(g.groups)
        conv_ops = {c.op_index for c in g.convs}
        self.other_ops = [op for op in g.ops if op.index not in conv_ops]
        # Non-conv ops are affine in the groups' kept shares: const + scale @ slope.
        self._const, self._slope = {}, {}
        for t in self.targets:
            base = self._other_at(t, np.zeros(n_g))
            self._const[t] = base
            self._slope[t] = np.array([self._other_at(t, np.eye(n_g)[i]) - base
                                       for i in range(n_g)])
        self._flash = None

    def _other_at(self, target, scale) -> float:
        return float(sum(latency.op_instructions(target, op_shape(self.graph, op, scale))
                         for op in self.other_ops)) + \
            latency.interpreter_instructions(target, len(self.graph.ops))

    def describe(self) -> str:
        return ("TFLM Invoke() instructions, " + " + ".join(self.targets) +
                " (dtmm/core/data/latency.json: conv models from bench/kernels, other "
                "ops and interpreter from bench/models)")

    def conv_modeled(self, co, ci, nk) -> dict:
        """{target: (dense, dtmm)}: modeled instructions of every conv as dense
        CMSIS-NN and as DTMM_CONV_2D; arrays shaped like co ([..., n_convs])."""
        co, ci, nk = (np.asarray(v) for v in (co, ci, nk))
        geo = self._geometry()
        dense_s = latency.ConvShape(c_in=ci, c_out=co, **geo)
        dtmm_s = latency.ConvShape(c_in=ci, c_out=co, kept_filterlets=nk, **geo)
        out = {}
        for t in self.targets:  # every conv of every plan at once
            dense = latency.conv_instructions(t, "cmsis_nn", dense_s)
            dtmm = latency.conv_instructions(t, "dtmm", dtmm_s)
            out[t] = (np.broadcast_to(dense, co.shape).astype(float),
                      np.broadcast_to(dtmm, co.shape).astype(float))
        return out

    def _geometry(self) -> dict:
        """The convs' fixed geometry as arrays over the convs (last axis)."""
        if getattr(self, "_geo", None) is None:
            cs = self.graph.convs
            a = lambda f: np.array([f(c) for c in cs], int)  # noqa: E731
            self._geo = dict(out_h=a(lambda c: c.out_h), out_w=a(lambda c: c.out_w),
                             kh=a(lambda c: c.kh), kw=a(lambda c: c.kw),
                             stride=(a(lambda c: c.stride[0]), a(lambda c: c.stride[1])),
                             dilation=(a(lambda c: c.dilation[0]), a(lambda c: c.dilation[1])))
        return self._geo

    def faster(self, co, ci, nk, modeled=None) -> np.ndarray:
        """The converter's speed rule per conv: DTMM modeled SPEED_MARGIN faster than
        dense CMSIS-NN on every target."""
        modeled = modeled or self.conv_modeled(co, ci, nk)
        ok = np.ones(np.shape(co), bool)
        for dense, dtmm in modeled.values():
            ok &= latency.clearly_faster(dense, dtmm)
        return ok

    def batch(self, co, ci, nk, rewritten, scale, modeled=None) -> np.ndarray:
        """Totals (summed over self.targets) for a batch: co/ci/nk/rewritten
        [B, n_convs], scale [B, n_groups] (kept share of each group's channels)."""
        modeled = modeled or self.conv_modeled(co, ci, nk)
        scale = np.asarray(scale, float)
        total = 0.0
        for t, (dense, dtmm) in modeled.items():
            total = total + np.where(rewritten, dtmm, dense).sum(axis=-1) + \
                self._const[t] + scale @ self._slope[t]
        return total

    def rewritten(self, cfg: Config) -> np.ndarray:
        """Which convs the converter makes DTMM under cfg (its default rule)."""
        if self._flash is None:
            self._flash = FlashModel(self.graph, speed=self)
        return self._flash.rewritten(cfg)

    def per_layer(self, cfg: Config, rewritten=None) -> list:
        """Modeled instructions per conv (summed over the targets) as converted."""
        co, ci, nk = shape_arrays(self.graph, cfg)
        rw = self.rewritten(cfg) if rewritten is None else np.asarray(rewritten)
        return [float(v) for v in sum(np.where(rw, m, d)
                                      for d, m in self.conv_modeled(co, ci, nk).values())]

    def other(self, cfg: Config) -> float:
        """Non-conv ops + interpreter, summed over the targets."""
        scale = group_scale(self.graph, cfg)
        return float(sum(self._const[t] + scale @ self._slope[t] for t in self.targets))

    def per_target(self, cfg: Config, rewritten=None) -> dict:
        co, ci, nk = shape_arrays(self.graph, cfg)
        rw = self.rewritten(cfg) if rewritten is None else np.asarray(rewritten)
        scale = group_scale(self.graph, cfg)
        return {t: float(np.where(rw, m, d).sum() + self._const[t] + scale @ self._slope[t])
                for t, (d, m) in self.conv_modeled(co, ci, nk).items()}

    def __call__(self, cfg: Config, rewritten=None) -> float:
        return float(sum(self.per_target(cfg, rewritten).values()))


def fmt_bytes(n: float) -> str:
    n = float(n)
    if abs(n) >= 1 << 20:
        return f"{n / (1 << 20):.2f} MiB"
    if abs(n) >= 1024:
        return f"{n / 1024:.1f} KiB"
    return f"{int(round(n))} B"


_UNITS = {"": 1, "B": 1, "KB": 1000, "KIB": 1024, "K": 1024, "MB": 1000 ** 2,
          "MIB": 1024 ** 2, "M": 1024 ** 2, "GB": 1000 ** 3, "GIB": 1024 ** 3}


def parse_bytes(text) -> int:
    """'64KiB' -> 65536, '64KB' -> 64000, '65536' -> 65536, '0.5MiB' -> 524288."""
    if isinstance(text, (int, np.integer)):
        if text <= 0:
            raise DtmmError(f"budget must be positive, got {text}")
        return int(text)
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([A-Za-z]*)\s*", str(text))
    if not m:
        raise DtmmError(f"cannot parse byte size {text!r}: use e.g. 65536, 64KiB, 64KB, 0.5MiB")
    unit = m.group(2).upper()
    if unit not in _UNITS:
        raise DtmmError(f"unknown unit {m.group(2)!r} in {text!r}: use B, KB, KiB, MB, MiB, "
                        "GB or GiB")
    value = float(m.group(1)) * _UNITS[unit]
    if value <= 0 or not math.isfinite(value):
        raise DtmmError(f"budget must be positive, got {text!r}")
    if abs(value - round(value)) > 1e-6:
        raise DtmmError(f"{text!r} is not a whole number of bytes ({value})")
    return int(round(value))
