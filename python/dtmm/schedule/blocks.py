"""Block ratios (issue 10, format v2): what pruning a fraction of the B-blocks of a
FULLY_CONNECTED costs and saves, priced by the converter's own plan.

    blocks = FcBlockCosts.build(int8_bytes, graph, {fc_index: (scores, B)}, targets,
                                own_bytes)
    blocks.flash_delta[j][i], blocks.latency_delta[t][j][i], blocks.removed[j][i]

For FC layer j and block ratio i * step, the `n_pruned(ratio, n_blocks)` blocks of
lowest importance are zeroed in the dense int8 weights (what
`dtmm.prune.prune_blocks_to_ratios` does to the Keras layer) and the converter's
planner for that FC (`dtmm.core.fc.choose`, the function `dtmm convert` calls)
decides the block size, whether it rewrites, its bytes and its modeled
instructions (core/data/latency_fc.json). The scheduler sums these tables; nothing
of the converter's rule is copied here. `own_bytes(model)` is the converter's
"bytes a constant frees" accounting for that model (the pipeline passes
dtmm.convert's: the scheduler does not import the converter).

Which layers get a block ratio (`block_layers`): every FC whose weights the
converter can rewrite. Where its input rows are the channels of a conv group that
may lose filters, the plan takes either that group's filter ratio or the FC's block
ratio, not both (search.Problem marks plans with both infeasible): filter removal
would cut its blocks apart, so the block costs and block importance, computed on
the dense rows, would no longer hold.

1x1 CONV_2D layers (`conv_block_layers`, `ConvBlockCosts`) get a block ratio the
same way, priced by the converter's own conv decision (`dtmm.convert.plan_conv`,
passed in by the pipeline): B = C_in or a block size B < C_in, rewritten or not,
bytes and modeled instructions. A 1x1 conv with a block ratio takes filter ratio 0
on the groups of its C_out and of its C_in (filter removal would cut its blocks).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from dtmm.core import fc as core_fc
from dtmm.core import size
from dtmm.core.errors import DtmmError
from dtmm.core.fwcs import filterlet_sparsity
from dtmm.core.ops import read_conv
from dtmm.core.rounding import n_pruned
from dtmm.core.tflite import Model
from dtmm.schedule.graph import Graph

# The DTMM_FULLY_CONNECTED OperatorCode entry: DTMM_CONV_2D's, with the longer name.
FC_OPCODE_BYTES = size.DTMM_OPCODE_BYTES + size.round4(
    len(core_fc.C.custom_code)) - size.round4(len("DTMM_CONV_2D"))


def block_layers(g: Graph) -> dict:
    """{fc index: why it gets no block ratio, or ""} for every FC of the graph (all
    of them today; the pipeline adds what it needs: a matched Keras Dense with block
    scores)."""
    return {f.index: "" for f in g.fcs}


def _price_ratios(name, scores, weights, c_out, c_in, block, step, n_ratio, targets,
                  decide):
    """The converter's decision at every block-ratio grid point of one layer: the
    lowest-importance blocks zeroed in its dense int8 weights, then
    decide(weights) -> (rewritten, bytes before, bytes after, {target: (dense,
    dtmm)}, B written). Returns (flash delta, {target: latency delta}, rewritten,
    B written, importance removed) per grid point and the layer's total importance."""
    scores = np.asarray(scores, float).reshape(-1)
    if (scores < 0).any() or not np.isfinite(scores).all():
        raise DtmmError(f"block importance of {name!r} must be finite and >= 0")
    order = np.argsort(scores, kind="stable")
    csum = np.concatenate([[0.0], np.cumsum(scores[order])])
    fd, ld, rw, cb, rm = [], {t: [] for t in targets}, [], [], []
    for i in range(n_ratio):
        k = n_pruned(i * step, scores.size)
        kept = np.ones(scores.size, bool)
        kept[order[:k]] = False
        w = (weights.reshape(c_out, c_in // block, block)
             * kept.reshape(c_out, -1)[..., None]).reshape(weights.shape).astype(np.int8)
        rewritten, before, after, modeled, chosen = decide(w)
        fd.append(after - before if rewritten else 0.0)
        for t in targets:
            dense, dtmm = modeled.get(t, (0.0, 0.0))
            ld[t].append(dtmm - dense if rewritten else 0.0)
        rw.append(bool(rewritten))
        cb.append(int(chosen) if rewritten else 0)
        rm.append(float(csum[k]))
    return fd, ld, rw, cb, rm, float(csum[-1])


def _add_layer(out, indices: list, index: int, block: int, priced) -> None:
    """Append one layer's _price_ratios result to FcBlockCosts / ConvBlockCosts."""
    fd, ld, rw, cb, rm, total = priced
    indices.append(index)
    out.block_size.append(int(block))
    out.flash_delta.append(np.array(fd, float))
    for t in out.latency_delta:
        out.latency_delta[t].append(np.array(ld[t], float))
    out.rewritten.append(np.array(rw, bool))
    out.chosen_block.append(np.array(cb, int))
    out.removed.append(np.array(rm, float))
    out.total.append(total)


@dataclass
class FcBlockCosts:
    """Per block-ratio grid point of each FC with a block ratio: flash delta (bytes,
    vs the dense FC), latency delta per target (instructions, vs the dense FC), the
    converter's choice (rewritten, B) and the importance removed."""

    fcs: list                       # graph FC indices with a block ratio
    block_size: list                # pruning granularity B per such FC
    step: float
    flash_delta: list = field(default_factory=list)     # [n_ratio] per FC
    latency_delta: dict = field(default_factory=dict)   # target -> [[n_ratio] per FC]
    rewritten: list = field(default_factory=list)       # [n_ratio] bool per FC
    chosen_block: list = field(default_factory=list)    # [n_ratio] int per FC (0: dense)
    removed: list = field(default_factory=list)         # [n_ratio] raw importance removed
    total: list = field(default_factory=list)           # raw importance per FC
    opcode_bytes: float = float(FC_OPCODE_BYTES)

    @property
    def n_max(self) -> list:
        return [len(v) - 1 for v in self.flash_delta]

    @classmethod
    def build(cls, int8_bytes: bytes, g: Graph, importance: dict, targets, own_bytes,
              step: float = 0.05, ratio_max: float = 0.95,
              prefer: str = "speed") -> "FcBlockCosts":
        """importance: {fc index: (block scores [C_out, C_in // B] (any shape of that
        size, (oc, block) order), B)}. targets: the latency targets (those the FC
        model has are priced; a rewrite needs all of them faster, as in dtmm convert).
        own_bytes(model) -> f(tensor): bytes dropping that constant frees, as the
        converter counts them."""
        model = Model.read(bytes(int8_bytes), "model")
        own = own_bytes(model)
        fc_targets = [t for t in targets if t in core_fc.fc_targets()]
        if not fc_targets:
            raise DtmmError("core/data/latency_fc.json has no FULLY_CONNECTED model for "
                            f"target(s) {', '.join(targets)}: block ratios cannot be priced")
        out = cls([], [], step)
        out.latency_delta = {t: [] for t in fc_targets}
        n_ratio = int(round(ratio_max / step)) + 1
        for j in sorted(importance):
            f = g.fcs[j]
            scores, block = importance[j]
            fop = core_fc.read_fc(model, 0, f.op_index)
            if fop.skip:
                continue
            if f.c_in % block or np.size(scores) != f.c_out * (f.c_in // block):
                raise DtmmError(f"block importance of FULLY_CONNECTED {f.name!r}: "
                                f"{np.shape(scores)} does not fit [C_out={f.c_out}, "
                                f"C_in/B={f.c_in}/{block}]")

            def decide(w, fop=fop):
                choice = core_fc.choose(dataclasses.replace(fop, weights=w), fc_targets,
                                        own, 0.0, prefer)
                return (choice.rewritten, choice.bytes_before, choice.bytes_after,
                        choice.modeled, choice.form.block if choice.rewritten else 0)

            _add_layer(out, out.fcs, j, block, _price_ratios(
                f.name, scores, fop.weights, f.c_out, f.c_in, block, step, n_ratio,
                fc_targets, decide))
        return out


def conv_block_layers(g: Graph) -> dict:
    """{conv index: why it gets no block ratio, or ""} for every conv of the graph:
    a 1x1 conv whose C_in a converter block candidate B < C_in divides."""
    out = {}
    for c in g.convs:
        if c.k != 1:
            out[c.index] = f"{c.kh}x{c.kw} conv (block filterlets are for 1x1 convs)"
        elif not any(b < c.c_in and c.c_in % b == 0 for b in core_fc.BLOCK_CANDIDATES):
            out[c.index] = (f"no block size B < C_in={c.c_in} of "
                            f"{', '.join(map(str, core_fc.BLOCK_CANDIDATES))} divides C_in")
        else:
            out[c.index] = ""
    return out


@dataclass
class ConvBlockCosts:
    """FcBlockCosts for 1x1 convs: per block-ratio grid point of each conv with a
    block ratio, flash delta (bytes vs the dense CONV_2D), latency delta per target
    (instructions vs dense CMSIS-NN), the converter's choice (rewritten, B; B = C_in
    is the filterlet form) and the importance removed."""

    convs: list                     # graph conv indices with a block ratio
    block_size: list                # pruning granularity B per such conv
    step: float
    flash_delta: list = field(default_factory=list)
    latency_delta: dict = field(default_factory=dict)
    rewritten: list = field(default_factory=list)
    chosen_block: list = field(default_factory=list)
    removed: list = field(default_factory=list)
    total: list = field(default_factory=list)

    @property
    def n_max(self) -> list:
        return [len(v) - 1 for v in self.flash_delta]

    @classmethod
    def build(cls, int8_bytes: bytes, g: Graph, importance: dict, targets, plan_conv,
              step: float = 0.05, ratio_max: float = 0.95,
              prefer: str = "speed") -> "ConvBlockCosts":
        """importance: {conv index: (block scores [C_out, C_in // B], B)}.
        plan_conv(model, conv, targets, prefer) -> (rewritten, bytes before, bytes
        after, {target: (dense, dtmm)}, B written): the converter's decision for one
        conv read_conv read from `model` (whose users count its bytes; the pipeline
        wraps dtmm.convert.conv_decision)."""
        model = Model.read(bytes(int8_bytes), "model")
        why = conv_block_layers(g)
        out = cls([], [], step)
        out.latency_delta = {t: [] for t in targets}
        n_ratio = int(round(ratio_max / step)) + 1
        for l in sorted(importance):
            c = g.convs[l]
            if why[l]:
                raise DtmmError(f"conv {c.name!r} cannot take a block ratio: {why[l]}")
            scores, block = importance[l]
            conv = read_conv(model, 0, c.op_index)
            if conv.skip:
                continue
            if c.c_in % block or block >= c.c_in or \
                    np.size(scores) != c.c_out * (c.c_in // block):
                raise DtmmError(f"block importance of conv {c.name!r}: {np.shape(scores)} "
                                f"with B={block} does not fit [C_out={c.c_out}, "
                                f"C_in/B={c.c_in}/{block}]")

            def decide(w, conv=conv):
                pruned = dataclasses.replace(conv, weights=w, sparsity=filterlet_sparsity(w))
                return plan_conv(model, pruned, targets, prefer)

            _add_layer(out, out.convs, l, block, _price_ratios(
                c.name, scores, conv.weights, c.c_out, c.c_in, block, step, n_ratio,
                targets, decide))
        return out
