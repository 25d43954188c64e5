"""Physical filter removal: a smaller plain Keras functional model with copied weights.

Removing output channel ``oc`` of a Conv2D removes its channel class
(``ChannelGraph``): the matching channels of every tensor in the class disappear, and
every consumer drops the matching input slice -- Conv2D input channels, BatchNorm
parameters, DepthwiseConv2D channels (which then propagate further), Dense rows after
Flatten (one row per spatial position, NHWC order) or after global pooling, and the
other parents of an Add (they are in the same class). Concatenate shifts nothing
explicitly: channel ids carry their offsets.

Which classes go (``rule``), given per-layer removed filters:

* ``"union"``: a class is removed if any of its Conv2D member channels is marked.
* ``"intersection"``: only if all its Conv2D member channels are marked.
* ``"strict"``: members must agree, else ``ValueError``.

``prune_to_ratios`` always produces masks on which the three agree.
"""

from __future__ import annotations

import dataclasses

import keras
import numpy as np

from dtmm.core.errors import ArgumentError

from .graph import ChannelGraph
from .registry import kind_of
from .masks import LayerMask, Masks

__all__ = ["remove_filters", "SurgeryResult"]


@dataclasses.dataclass
class SurgeryResult:
    """``model``: the smaller functional model (same layer names);
    ``masks``: the input's filterlet masks restricted to the kept filters (all
    ``filters`` True), ready for ``apply_masks(model, masks)``;
    ``kept``: ``{layer name: kept output channel indices}`` for every Conv2D and
    DepthwiseConv2D (indices into the original layer's outputs)."""

    model: object
    masks: Masks
    kept: dict


def _removed_sets(spec) -> tuple[dict, Masks | None]:
    if isinstance(spec, dict) and spec and all(isinstance(v, LayerMask) for v in spec.values()):
        return {n: np.flatnonzero(~m.filters) for n, m in spec.items()}, Masks(spec)
    return {n: np.unique(np.asarray(list(v), dtype=np.int64)) for n, v in (spec or {}).items()}, None


def remove_filters(model, removed, *, rule: str = "union", graph: ChannelGraph | None = None) -> SurgeryResult:
    """Physically remove Conv2D filters and everything downstream that depends on them.

    Args:
        model: functional or Sequential Keras model (not modified).
        removed: ``Masks`` (filters with ``filters == False`` are removed) or
            ``{conv name: iterable of output channel indices}``.
        rule: "union", "intersection" or "strict" (module docstring).
        graph: ``ChannelGraph(model)`` if already built.

    Returns:
        ``SurgeryResult(model, masks, kept)``.

    Raises:
        ValueError: unknown layer, index out of range, a channel that cannot be
            removed (it reaches a model output or an unsupported layer), a layer
            that would lose all its channels, or members disagreeing under "strict".
    """
    if rule not in ("union", "intersection", "strict"):
        raise ArgumentError(f"unknown rule {rule!r}")
    g = graph or ChannelGraph(model)
    rem, in_masks = _removed_sets(removed)

    marked: dict[int, set] = {}  # class -> marked (layer, oc)
    for name, idx in rem.items():
        if name not in g.sources:
            raise ArgumentError(f"{name!r} is not a Conv2D whose filters can be removed")
        roots = g.source_roots(name)
        if idx.size and (idx.min() < 0 or idx.max() >= len(roots)):
            raise ArgumentError(f"filter index out of range for {name!r} (C_out={len(roots)})")
        for oc in idx.tolist():
            r = int(roots[oc])
            if g.is_frozen_root(r):
                raise ArgumentError(
                    f"filter {oc} of {name!r} cannot be removed: its channel reaches a model "
                    "output, the model input or an unsupported layer"
                )
            marked.setdefault(r, set()).add((name, oc))

    members: dict[int, set] = {}
    for name in g.sources:
        for oc, r in enumerate(g.source_roots(name).tolist()):
            if r in marked:
                members.setdefault(r, set()).add((name, oc))
    removed_roots = set()
    for r, mk in marked.items():
        complete = mk == members[r]
        if rule == "strict" and not complete:
            missing = sorted(members[r] - mk)
            raise ArgumentError(f"coupled filters disagree: {sorted(mk)} removed but {missing} kept")
        if rule == "union" or complete:
            removed_roots.add(r)

    def keep_of(ids):
        return np.array([int(r) not in removed_roots for r in g.roots(ids)], dtype=bool)

    kept, keep_in, keep_out = {}, {}, {}
    for name, rec in g.records.items():
        if rec.kind in ("conv", "depthwise", "dense", "bn"):
            keep_in[name] = keep_of(rec.in_ids[0])
            keep_out[name] = keep_of(rec.out_ids[0])
            if rec.kind in ("conv", "depthwise", "bn") and not keep_out[name].any():
                raise ArgumentError(f"layer {name!r} would lose all its channels")
            if rec.kind in ("conv", "depthwise"):
                kept[name] = np.flatnonzero(keep_out[name])

    new_model = _rebuild(g, keep_in, keep_out)

    out_masks = Masks()
    for name, m in (in_masks or {}).items():
        k = keep_out[name]
        out_masks[name] = LayerMask(m.filterlets[k], np.ones(int(k.sum()), bool))
    return SurgeryResult(new_model, out_masks, kept)


def _rebuild(g: ChannelGraph, keep_in, keep_out):
    """The smaller model through public Keras API: every layer re-created from its
    config (Conv2D with the kept filter count), wired by ``keras.models.clone_model``
    (functional) or in a chain (Sequential, rebuilt as a functional model), then the
    sliced weights assigned."""
    src = g.original

    def clone(layer):
        cfg = layer.get_config()
        rec = g.records.get(layer.name)
        if rec is not None and rec.kind == "conv":
            cfg["filters"] = int(keep_out[layer.name].sum())
        return type(layer).from_config(cfg)

    # New inputs keep the input layers' names (they name the .tflite's inputs).
    config = src.get_config()
    if isinstance(src, keras.Sequential):
        t = src.inputs[0]
        name = next((l["config"]["name"] for l in config["layers"]
                     if l["class_name"] == "InputLayer"), None)
        inp = keras.Input(batch_shape=t.shape, dtype=t.dtype, name=name)
        x = inp
        for layer in src.layers:
            x = clone(layer)(x)
        new_model = keras.Model(inp, x, name=src.name)
    else:
        v = config["input_layers"]
        names = [v[0]] if v and isinstance(v[0], str) else [k[0] for k in v]
        inputs = [keras.Input(batch_shape=t.shape, dtype=t.dtype, name=n)
                  for t, n in zip(src.inputs, names)]
        structured = inputs if isinstance(src.input, (list, tuple)) else inputs[0]
        new_model = keras.models.clone_model(src, input_tensors=structured,
                                             clone_function=clone)

    for name, rec in g.records.items():
        old, new = rec.layer, new_model.get_layer(name)
        if not old.weights:
            continue
        if len(old.weights) != len(new.weights):
            raise ArgumentError(f"rebuilt layer {name!r} has different variables")
        for ov, nv in zip(old.weights, new.weights):
            kind = kind_of(old)
            w = ov.numpy() if kind is None else kind.slice(ov.name, ov.numpy(), keep_in.get(name),
                                                          keep_out.get(name))
            if tuple(w.shape) != tuple(nv.shape):
                raise ArgumentError(f"{name}/{ov.name}: sliced {w.shape} but layer needs "
                                    f"{tuple(nv.shape)}")
            nv.assign(w)
    return new_model
