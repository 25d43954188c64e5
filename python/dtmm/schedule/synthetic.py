"""Random CNN graphs and importances to compare schedulers without TensorFlow.

    g, imp = random_problem_parts(seed=3, n_layers=20)
"""

from __future__ import annotations

import numpy as np

from dtmm.schedule.graph import Graph, Op, Tensor, _scratch_requests, _trace_channels, Conv


def random_graph(seed: int = 0, n_layers: int = 20, size: int = 32, c_in: int = 3,
                 residual_every: int = 0) -> Graph:
    """A chain of CONV_2D (3x3 mostly, some 1x1; stride-2 max pools now and then),
    then MEAN over space and FULLY_CONNECTED(10): the shape of a VGG/ResNet-ish
    int8 model. With residual_every=n, every n-th conv adds its input back (ADD),
    so the two convs feeding the ADD share beta."""
    rng = np.random.default_rng(seed)
    tensors: list[Tensor] = []
    ops: list[Op] = []

    def tensor(shape, const=False, dtype=9):
        n = int(np.prod(shape))
        tensors.append(Tensor(len(tensors), f"t{len(tensors)}", tuple(shape), dtype,
                              n * (4 if dtype == 2 else 1), const, False))
        return len(tensors) - 1

    x = tensor((1, size, size, c_in))
    inputs = [x]
    h = size
    ch = c_in
    widths = sorted(int(w) for w in rng.choice([8, 16, 24, 32, 48, 64], n_layers))
    pools = set(int(p) for p in rng.choice(np.arange(1, n_layers), size=min(3, n_layers - 1),
                                           replace=False))
    for i in range(n_layers):
        k = 1 if (i > 0 and rng.random() < 0.2) else 3
        c_out = widths[i]
        residual = residual_every and i > 0 and i % residual_every == 0
        if residual:
            c_out = ch
        w = tensor((c_out, k, k, ch), const=True)
        b = tensor((c_out,), const=True, dtype=2)
        y = tensor((1, h, h, c_out))
        ops.append(Op(len(ops), "CONV_2D", [x, w, b], [y]))
        if residual:
            z = tensor((1, h, h, c_out))
            ops.append(Op(len(ops), "ADD", [x, y], [z]))
            y = z
        x, ch = y, c_out
        if i in pools and h >= 4:
            h //= 2
            y = tensor((1, h, h, ch))
            ops.append(Op(len(ops), "MAX_POOL_2D", [x], [y]))
            x = y
    axes = tensor((2,), const=True, dtype=2)
    tensors[axes].small_data = (1, 2)
    y = tensor((1, ch))
    ops.append(Op(len(ops), "MEAN", [x, axes], [y]))
    w = tensor((10, ch), const=True)
    b = tensor((10,), const=True, dtype=2)
    out = tensor((1, 10))
    ops.append(Op(len(ops), "FULLY_CONNECTED", [y, w, b], [out]))
    g = Graph(tensors, ops, [], [], inputs, [out])
    for op in ops:
        if op.name == "CONV_2D":
            c_out_, kh, kw, ci = tensors[op.inputs[1]].shape
            o = tensors[op.outputs[0]]
            name = f"conv{len(g.convs)}"
            g.convs.append(Conv(len(g.convs), op.index, name, c_out_, kh, kw, ci,
                                o.shape[1], o.shape[2], op.inputs[0], op.outputs[0],
                                bias_name=f"{name}/bias", filter_scales=c_out_))
    _trace_channels(g)
    g.scratch = _scratch_requests(g)
    # File size such that FlashModel's non-conv constant part is a plausible
    # header + graph overhead: 3000 B + 200 B per op, less the 16-byte alignment
    # padding of the two dense buffers per conv that the conv forms carry
    # (dtmm.core.size), so the problems are the ones bench/scheduler published.
    from dtmm.core.size import BUFFER_ALIGN_PAD
    from dtmm.schedule.cost import FlashModel
    g.size = 0
    g.size = int(round(-FlashModel(g).base)) + 3000 + 200 * len(ops) \
        - 2 * BUFFER_ALIGN_PAD * len(g.convs)
    return g


def random_importance(g: Graph, seed: int = 0):
    """Lognormal filterlet importances with a per-layer scale (layers differ in how
    much they matter) and heavy-tailed filters (a few filters carry most)."""
    rng = np.random.default_rng(seed + 1000)
    out = []
    for c in g.convs:
        layer = rng.lognormal(0, 1.0)
        filt = rng.lognormal(0, 1.0, c.c_out)
        fl = layer * filt[:, None] * rng.lognormal(0, 0.8, (c.c_out, c.k))
        out.append((fl.sum(axis=1), fl))
    return out


def random_problem_parts(seed: int = 0, n_layers: int = 20):
    g = random_graph(seed, n_layers, residual_every=(4 if seed % 2 else 0))
    return g, random_importance(g, seed)
