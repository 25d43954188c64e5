"""Turn per-layer ratios into masks, by lowest importance.

For every filterlet-prunable Conv2D ``L`` with ``C_out`` filters and ``K = kh*kw``:

1. **Filters** (``beta``): ``n_pruned(beta, C_out)`` filters are marked for removal,
   the ones with the lowest filter importance. Conv layers coupled through Add-like
   merges (``ChannelGraph.coupled_groups()``) share one removed set: their filter
   scores are summed per shared channel class, and the group uses the *smallest* beta
   of its members that have one (a warning is issued if they differ). Channels that cannot be
   removed (they reach a model output, or an unsupported layer) are never selected.
2. **Filterlets** (``alpha``): among the ``K * C_kept`` filterlets of the kept filters,
   ``n_pruned(alpha, K * C_kept)`` with the lowest filterlet importance are pruned.
   Total density of the layer is then about ``(1 - alpha) * (1 - beta)``.

For a 1x1 conv a filterlet is the whole filter, so when the layer is not coupled its
``alpha`` becomes filter removal: ``n_pruned(1 - (1 - alpha) * (1 - beta), C_out)``
filters are removed and no filterlet mask is left. A coupled (or not removable) 1x1
layer keeps ``alpha`` as zeroed filters (``filterlets`` False, ``filters`` True).
"""

from __future__ import annotations

import warnings

import numpy as np

from dtmm.core.errors import ArgumentError

from dtmm.core.rounding import n_pruned

from .graph import ChannelGraph
from .masks import BlockMask, LayerMask, Masks

__all__ = ["prune_to_ratios", "prune_blocks_to_ratios", "n_pruned"]


def _per_layer(value, names, what):
    if value is None:
        return {n: 0.0 for n in names}
    if isinstance(value, (int, float)):
        return {n: float(value) for n in names}
    unknown = set(value) - set(names)
    if unknown:
        raise ArgumentError(f"{what} given for layers that are not filterlet-prunable Conv2D: {sorted(unknown)}")
    out = {n: float(value.get(n, 0.0)) for n in names}
    for n, v in out.items():
        if not 0.0 <= v <= 1.0:
            raise ArgumentError(f"{what}[{n!r}] = {v} is outside [0, 1]")
    return out


def prune_to_ratios(model, importance, alpha_per_layer=None, beta_per_layer=None, *, graph=None) -> Masks:
    """Masks pruning filterlet ratio ``alpha`` and filter ratio ``beta`` per Conv2D.

    Args:
        model: the functional/Sequential model ``importance`` was computed on.
        importance: ``dtmm.prune.Importance``.
        alpha_per_layer, beta_per_layer: ``{conv name: ratio in [0, 1]}`` (missing
            layers: 0) or one float for all layers.
        graph: a ``ChannelGraph`` of ``model`` (built if not given).

    Returns:
        ``Masks`` with one ``LayerMask`` for every filterlet-prunable Conv2D.
    """
    g = graph or ChannelGraph(model)
    names = [n for n in g.sources if n in importance.filterlet]
    alpha = _per_layer(alpha_per_layer, names, "alpha")
    beta = _per_layer(beta_per_layer, names, "beta")
    shapes = {n: importance.filterlet[n].shape for n in names}
    removed_roots: set[int] = set()
    as_filter: dict[str, int] = {}  # uncoupled 1x1 layer -> alpha filters still to zero

    for group in g.coupled_groups():
        group = [n for n in group if n in names]
        if not group:
            continue
        if len(group) == 1:
            (n,) = group
            b = beta[n]
            c_out, kh, kw = shapes[n]
            if kh * kw == 1:
                b = 1.0 - (1.0 - alpha[n]) * (1.0 - b)
                as_filter[n] = n_pruned(alpha[n], c_out)
        else:
            # Members without an explicit beta follow the ones that have one.
            given = [n for n in group if not isinstance(beta_per_layer, dict) or n in beta_per_layer]
            bs = {beta[n] for n in (given or group)}
            if len(bs) > 1:
                warnings.warn(f"coupled layers {group} have different beta {sorted(bs)}; using the smallest")
            b = min(bs)
        if b == 0.0:
            continue
        # Score per channel class = sum of the filter importance of its member channels.
        score: dict[int, float] = {}
        for n in group:
            for r, s in zip(g.source_roots(n).tolist(), importance.filter[n].tolist()):
                score[r] = score.get(r, 0.0) + s
        all_roots = list(score)
        candidates = sorted((r for r in all_roots if not g.is_frozen_root(r)), key=lambda r: (score[r], r))
        # A layer must keep at least one filter.
        k = min(n_pruned(b, len(all_roots)), len(candidates), len(all_roots) - 1)
        removed_roots.update(candidates[:k])
        if len(group) == 1 and group[0] in as_filter:
            # What could not be removed (frozen channels) of alpha stays as zeroed filters.
            as_filter[group[0]] = min(as_filter[group[0]], n_pruned(b, len(all_roots)) - k)

    masks = Masks()
    for n in names:
        c_out, kh, kw = shapes[n]
        filters = np.array([r not in removed_roots for r in g.source_roots(n).tolist()], dtype=bool)
        fl = np.ones((c_out, kh, kw), bool)
        if alpha[n] > 0:
            kept = np.flatnonzero(filters)
            scores = importance.filterlet[n][kept].reshape(-1)
            k = as_filter[n] if n in as_filter else n_pruned(alpha[n], scores.size)
            order = np.argsort(scores, kind="stable")[:k]
            flat = fl[kept].reshape(-1)
            flat[order] = False
            fl[kept] = flat.reshape(len(kept), kh, kw)
        masks[n] = LayerMask(fl, filters)
    return masks


def prune_blocks_to_ratios(model, importance, ratio_per_layer) -> Masks:
    """Block masks: per layer, the ``n_pruned(ratio, n_blocks)`` blocks of lowest block
    importance are pruned (ties: lowest flat ``(oc, kh, kw, block)`` index first).

    Args:
        model: the model ``importance`` was computed on (``block_size=`` given).
        importance: ``dtmm.prune.Importance`` with ``blocks``.
        ratio_per_layer: ``{layer name: ratio in [0, 1]}`` (missing layers: 0) or one
            float for every layer with block scores.

    Returns:
        ``Masks`` of ``BlockMask`` (``filters`` all True) for every layer with block
        scores. Filter removal comes first, on its own masks (``prune_to_ratios`` with
        ``beta``, then ``remove_filters``); block importance and block masks are then
        computed on the smaller model, where B must still divide each C_in.
    """
    if not importance.blocks:
        raise ArgumentError("importance has no block scores: compute it with block_size=...")
    names = list(importance.blocks)
    if isinstance(ratio_per_layer, (int, float)):
        ratio = {n: float(ratio_per_layer) for n in names}
    else:
        unknown = set(ratio_per_layer) - set(names)
        if unknown:
            raise ArgumentError(f"block ratio given for layers without block scores: {sorted(unknown)}")
        ratio = {n: float(ratio_per_layer.get(n, 0.0)) for n in names}
    for n, v in ratio.items():
        if not 0.0 <= v <= 1.0:
            raise ArgumentError(f"block ratio[{n!r}] = {v} is outside [0, 1]")
    masks = Masks()
    for n in names:
        layer = model.get_layer(n)  # raises for a name the model does not have
        scores = np.asarray(importance.blocks[n])
        kept = np.ones(scores.size, bool)
        kept[np.argsort(scores.reshape(-1), kind="stable")[:n_pruned(ratio[n], scores.size)]] = False
        masks[layer.name] = BlockMask(kept.reshape(scores.shape), importance.block_size[n])
    return masks
