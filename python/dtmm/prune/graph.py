"""Channel graph of a Keras functional model, and per-layer descriptions.

Every channel of every tensor gets an integer *channel id*. A ``Conv2D`` creates
fresh ids for its output channels; layers that act on each channel separately
(BatchNormalization, ReLU, pooling, DepthwiseConv2D, ...) pass their input ids
through; ``Add``-like merges *unite* the ids of matching channels of their inputs;
``Concatenate`` concatenates id lists; ``Flatten`` repeats the ids over the
spatial positions in NHWC order. Ids united into one equivalence class must be
removed together, which is what keeps shapes consistent after surgery: the
parents of an ``Add`` end up sharing one set of classes, hence one kept set.

A class is *frozen* (never removable) when it contains a channel of the model
input, of a layer we do not understand (its outputs are fresh frozen ids, its
inputs are frozen), of a ``Dense`` output, or a channel that reaches a model output.

Example::

    g = ChannelGraph(model)
    g.coupled_groups()          # [['conv_a', 'conv_b'], ['conv_c']] : share filter removal
    conv_layers(model)[0].macs  # per-layer description for cost models
"""

from __future__ import annotations

import dataclasses

import keras
import numpy as np

from dtmm.core.errors import UnsupportedModelError

from .registry import CONV, GROUPED_CONV, kind_of

__all__ = ["ChannelGraph", "LayerInfo", "check_convertible", "conv_layers", "functional_model",
           "UnsupportedModelError"]


L = keras.layers

# Layers that act on each channel separately and do not change the channel count.
_PASSTHROUGH = tuple(
    c
    for c in (
        getattr(L, n, None)
        for n in (
            "ReLU", "LeakyReLU", "ELU", "Dropout", "SpatialDropout2D", "GaussianNoise",
            "GaussianDropout", "AlphaDropout", "ActivityRegularization", "Identity",
            "ZeroPadding2D", "Cropping2D", "UpSampling2D", "MaxPooling2D",
            "AveragePooling2D", "GlobalMaxPooling2D", "GlobalAveragePooling2D",
        )
    )
    if c is not None
)
_MERGE = (L.Add, L.Subtract, L.Multiply, L.Average, L.Maximum, L.Minimum)
# Activations that mix channels: removing one channel changes the others.
_MIXING_ACTIVATIONS = {"softmax", "log_softmax"}


def _activation_name(layer) -> str | None:
    act = getattr(layer, "activation", None)
    if act is None:
        return None
    return getattr(act, "__name__", type(act).__name__).lower()


def _channels_last(layer) -> bool:
    return getattr(layer, "data_format", "channels_last") == "channels_last"


def functional_model(model):
    """``model`` itself if the pruner can read its graph (functional or built
    Sequential), else UnsupportedModelError."""
    if isinstance(model, keras.Sequential):
        try:
            model.inputs  # noqa: B018  (raises when the input shape is unknown)
        except (AttributeError, ValueError):
            raise UnsupportedModelError(
                "Sequential model has no known input shape; build it with keras.Input first"
            ) from None
        if not model.inputs:
            raise UnsupportedModelError(
                "Sequential model has no known input shape; build it with keras.Input first")
        return model
    config = None
    if isinstance(model, keras.Model):
        try:
            config = model.get_config()
        except (NotImplementedError, TypeError, AttributeError):
            config = None
    if not isinstance(config, dict) or "input_layers" not in config or "layers" not in config:
        raise UnsupportedModelError(
            f"{type(model).__name__} is not a functional or Sequential Keras model"
        )
    return model


# Layers TFLite lowers to a CONV_2D whose filter is no Keras Conv2D kernel, so the
# pipeline could not tie that CONV_2D to a prunable layer (and the names of what to
# use instead).
_UNMATCHABLE_CONVS = {
    "SeparableConv2D": "DepthwiseConv2D followed by a 1x1 Conv2D",
    "SeparableConv1D": "DepthwiseConv2D followed by a 1x1 Conv2D on a 2-D input",
    "Conv1D": "Conv2D with a 1xK kernel on a 2-D input",
}


def check_convertible(model) -> None:
    """UnsupportedModelError for a model the pipeline would give up on after minutes
    of conversion and training, said before any of it (`dtmm prune` calls this): a
    layer (nested models included) that TFLite turns into a CONV_2D the pruner cannot
    match to a Keras Conv2D, or a graph the channel analysis rejects (subclassed
    model, a weighted layer called twice)."""
    ChannelGraph(model)
    stack = list(getattr(model, "layers", []))
    while stack:
        layer = stack.pop(0)
        kind = type(layer).__name__
        if kind in _UNMATCHABLE_CONVS:
            raise UnsupportedModelError(
                f"layer {layer.name!r} is a {kind}: its TFLite CONV_2D has no Keras Conv2D "
                f"kernel to prune; use a {_UNMATCHABLE_CONVS[kind]} instead")
        if isinstance(layer, keras.Model):
            stack = list(layer.layers) + stack


@dataclasses.dataclass
class _Tensor:
    """A tensor of the graph: its shape (batch axis included)."""

    shape: tuple


@dataclasses.dataclass
class _Node:
    """One call of a layer: what the pruner needs of Keras' node."""

    operation: object
    input_keys: list
    output_keys: list
    input_tensors: list
    outputs: list
    is_input: bool = False


def _keras_tensors(value):
    """(keras_history key, shape) of every serialized KerasTensor in a node's args."""
    if isinstance(value, dict):
        if value.get("class_name") == "__keras_tensor__":
            cfg = value["config"]
            return [(tuple(cfg["keras_history"]), tuple(cfg["shape"]))]
        return [t for v in value.values() for t in _keras_tensors(v)]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _keras_tensors(v)]
    return []


def graph_nodes(model):
    """(nodes in topological order, model input keys, model output keys), read
    through public Keras API only: the serialized functional config (the .keras
    format's graph: each layer's inbound nodes name their input tensors as
    (layer, node, tensor)) and ``model.layers`` / ``inputs`` / ``outputs``. A
    Sequential model is its chain of layers."""
    if isinstance(model, keras.Sequential):
        shape = tuple(model.inputs[0].shape)
        key = ("__input__", 0, 0)
        nodes = [_Node(None, [], [key], [], [_Tensor(shape)], is_input=True)]
        for layer in model.layers:
            out = (layer.name, 0, 0)
            out_shape = tuple(layer.output.shape)
            nodes.append(_Node(layer, [key], [out], [_Tensor(shape)], [_Tensor(out_shape)]))
            key, shape = out, out_shape
        return nodes, [nodes[0].output_keys[0]], [key]
    config = model.get_config()
    shapes = {}
    calls = []
    for entry in config["layers"]:
        for node_index, node in enumerate(entry["inbound_nodes"]):
            ins = _keras_tensors(node)
            shapes.update(ins)
            calls.append((entry["name"], node_index, [k for k, _ in ins]))
    def keys(v):  # one tensor is serialized as [name, node, index], several as a list
        return [tuple(v)] if v and isinstance(v[0], str) else [tuple(k) for k in v]

    in_keys, out_keys = keys(config["input_layers"]), keys(config["output_layers"])
    for k, t in zip(in_keys + out_keys, list(model.inputs) + list(model.outputs)):
        shapes.setdefault(k, tuple(t.shape))
    produced = {}
    for k in shapes:
        produced.setdefault(k[:2], set()).add(k[2])
    nodes = [_Node(None, [], [k], [], [_Tensor(shapes[k])], is_input=True) for k in in_keys]
    ready = set(in_keys)
    pending = calls
    while pending:
        progress, left = False, []
        for name, node_index, ins in pending:
            if all(k in ready for k in ins):
                outs = [(name, node_index, i)
                        for i in range(max(produced.get((name, node_index), {0})) + 1)]
                nodes.append(_Node(model.get_layer(name), ins, outs,
                                   [_Tensor(shapes[k]) for k in ins],
                                   [_Tensor(shapes.get(k, ())) for k in outs]))
                ready.update(outs)
                progress = True
            else:
                left.append((name, node_index, ins))
        if not progress:
            raise UnsupportedModelError("the model's graph has a node whose inputs never "
                                        "become available")
        pending = left
    return nodes, in_keys, out_keys


class _UnionFind:
    def __init__(self):
        self.parent: list[int] = []

    def new(self, n: int) -> np.ndarray:
        start = len(self.parent)
        self.parent.extend(range(start, start + n))
        return np.arange(start, start + n, dtype=np.int64)

    def find(self, a: int) -> int:
        p = self.parent
        root = a
        while p[root] != root:
            root = p[root]
        while p[a] != root:  # path compression
            p[a], a = root, p[a]
        return root

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


@dataclasses.dataclass
class _NodeRecord:
    layer: object
    in_ids: list  # one int64 array per input tensor (channel ids of its last axis)
    out_ids: list  # one int64 array per output tensor
    kind: str  # "conv", "depthwise", "dense", "bn", "pass", "merge", "concat", "flatten", "opaque"
    node: object = None  # the Keras Node of this call


class ChannelGraph:
    """Channel-id analysis of a functional/Sequential Keras model (see module docstring).

    Attributes:
        model: the model analysed (functional or Sequential).
        records: per-layer ``_NodeRecord`` (input/output channel ids), in topological order.
        sources: ``{conv_name: ids}`` output channel ids of each removable-kind ``Conv2D``.
    """

    def __init__(self, model):
        self.original = model
        self.model = functional_model(model)
        self._uf = _UnionFind()
        self._frozen_ids: list[int] = []
        self.records: dict[str, _NodeRecord] = {}
        self.sources: dict[str, np.ndarray] = {}
        self.opaque_reasons: dict[str, str] = {}
        self._analyse()
        self._roots_cache: dict[str, np.ndarray] = {}
        self._frozen_roots = {self._uf.find(int(i)) for i in self._frozen_ids}

    # ------------------------------------------------------------------ analysis
    def _freeze(self, ids: np.ndarray) -> None:
        self._frozen_ids.extend(int(i) for i in ids)

    def _fresh_frozen(self, tensor) -> np.ndarray:
        c = tensor.shape[-1] if len(tensor.shape) else 1
        ids = self._uf.new(int(c) if c is not None else 0)
        self._freeze(ids)
        return ids

    def _analyse(self) -> None:
        nodes, _, out_keys = graph_nodes(self.model)
        tensor_ids: dict = {}
        calls: dict[int, int] = {}
        for node in nodes:
            if not node.is_input:
                calls[id(node.operation)] = calls.get(id(node.operation), 0) + 1
        for node in nodes:
            layer = node.operation
            if node.is_input:
                for k, t in zip(node.output_keys, node.outputs):
                    tensor_ids[k] = self._fresh_frozen(t)
                continue
            ins = [tensor_ids[k] for k in node.input_keys]
            if calls[id(layer)] > 1 and layer.weights:
                raise UnsupportedModelError(
                    f"layer {layer.name!r} with weights is called more than once; "
                    "shared weighted layers are not supported"
                )
            # Weightless layers may be called several times: each call is analysed on
            # its own, and the record keeps the last call (only weighted ones matter).
            kind, outs = self._visit(layer, node, ins)
            self.records[layer.name] = _NodeRecord(layer, ins, outs, kind, node)
            for k, ids in zip(node.output_keys, outs):
                tensor_ids[k] = ids
        for k in out_keys:
            self._freeze(tensor_ids[k])

    def _opaque(self, layer, node, ins, reason):
        for ids in ins:
            self._freeze(ids)
        self.opaque_reasons.setdefault(layer.name, reason)
        return "opaque", [self._fresh_frozen(t) for t in node.outputs]

    def _visit(self, layer, node, ins):
        single = len(ins) == 1 and len(node.outputs) == 1
        rank = len(node.outputs[0].shape) if node.outputs else 0
        kind = kind_of(layer)
        if kind in (CONV, GROUPED_CONV):
            if not single or not _channels_last(layer) or kind is GROUPED_CONV:
                return self._opaque(layer, node, ins, "grouped or channels_first Conv2D")
            out = self._uf.new(layer.filters)
            if _activation_name(layer) in _MIXING_ACTIVATIONS:
                self._freeze(out)
            self.sources[layer.name] = out
            return "conv", [out]
        if isinstance(layer, L.DepthwiseConv2D):
            if not single or not _channels_last(layer):
                return self._opaque(layer, node, ins, "channels_first DepthwiseConv2D")
            out = np.repeat(ins[0], layer.depth_multiplier)
            if _activation_name(layer) in _MIXING_ACTIVATIONS:
                self._freeze(out)
            return "depthwise", [out]
        if isinstance(layer, L.Dense):
            if not single:
                return self._opaque(layer, node, ins, "Dense with several inputs")
            return "dense", [self._fresh_frozen(node.outputs[0])]
        if isinstance(layer, L.BatchNormalization):
            axis = layer.axis if isinstance(layer.axis, int) else None
            if not single or axis not in (-1, rank - 1):
                return self._opaque(layer, node, ins, "BatchNormalization not on the last axis")
            return "bn", [ins[0]]
        if isinstance(layer, L.Activation):
            if not single or _activation_name(layer) in _MIXING_ACTIVATIONS:
                return self._opaque(layer, node, ins, "channel-mixing activation")
            return "pass", [ins[0]]
        if isinstance(layer, _PASSTHROUGH):
            if not single or not _channels_last(layer):
                return self._opaque(layer, node, ins, "channels_first layer")
            return "pass", [ins[0]]
        if isinstance(layer, _MERGE):
            if len(node.outputs) != 1 or len({len(i) for i in ins}) != 1 or len(ins[0]) == 0:
                return self._opaque(layer, node, ins, "merge with broadcasting over channels")
            for other in ins[1:]:
                for a, b in zip(ins[0], other):
                    self._uf.union(int(a), int(b))
            return "merge", [ins[0].copy()]
        if isinstance(layer, L.Concatenate):
            if len(node.outputs) != 1 or layer.axis not in (-1, rank - 1):
                return self._opaque(layer, node, ins, "Concatenate not on the channel axis")
            return "concat", [np.concatenate(ins)]
        if isinstance(layer, L.Flatten):
            shape = node.input_tensors[0].shape
            if not single or not _channels_last(layer) or any(d is None for d in shape[1:]):
                return self._opaque(layer, node, ins, "Flatten of a channels_first/dynamic tensor")
            spatial = int(np.prod(shape[1:-1], dtype=np.int64)) if len(shape) > 2 else 1
            return "flatten", [np.tile(ins[0], spatial)]  # NHWC: channel index varies fastest
        return self._opaque(layer, node, ins, f"unsupported layer type {type(layer).__name__}")

    # ------------------------------------------------------------------ queries
    def roots(self, ids: np.ndarray) -> np.ndarray:
        """Equivalence-class representative of each channel id."""
        return np.array([self._uf.find(int(i)) for i in ids], dtype=np.int64)

    def source_roots(self, name: str) -> np.ndarray:
        """Class of every output channel of Conv2D ``name``."""
        if name not in self._roots_cache:
            self._roots_cache[name] = self.roots(self.sources[name])
        return self._roots_cache[name]

    def is_frozen_root(self, root: int) -> bool:
        return int(root) in self._frozen_roots

    def removable(self, name: str) -> np.ndarray:
        """Bool (C_out,): output channels of Conv2D ``name`` that surgery may remove."""
        return np.array([not self.is_frozen_root(r) for r in self.source_roots(name)], dtype=bool)

    def coupled_groups(self) -> list[list[str]]:
        """Conv2D layers whose output channels are tied (through Add-like merges, in layer
        order). Each Conv2D appears in exactly one group; uncoupled layers are singletons."""
        names = list(self.sources)
        owner: dict[int, int] = {}
        uf = _UnionFind()
        uf.new(len(names))
        for i, n in enumerate(names):
            for r in set(self.source_roots(n).tolist()):
                if r in owner:
                    uf.union(owner[r], i)
                else:
                    owner[r] = i
        groups: dict[int, list[str]] = {}
        for i, n in enumerate(names):
            groups.setdefault(uf.find(i), []).append(n)
        return list(groups.values())


@dataclasses.dataclass(frozen=True)
class LayerInfo:
    """Description of one weighted layer, for cost models and schedulers.

    ``in_hw``/``out_hw`` are the spatial sizes (H, W) of the layer's input/output.
    ``macs`` = out_H * out_W * kh * kw * C_in * C_out for Conv2D (per image),
    out_H * out_W * kh * kw * C_out for DepthwiseConv2D, C_in * C_out for Dense.
    ``coupled_with`` lists the other Conv2D layers whose filters are removed together
    with this one's (parents of an Add); ``group`` indexes ``ChannelGraph.coupled_groups()``.
    ``removable_filters`` is how many output channels surgery may remove (0 when the
    output reaches a model output or an unsupported layer).
    """

    name: str
    type: str
    kh: int
    kw: int
    c_in: int
    c_out: int
    in_hw: tuple
    out_hw: tuple
    strides: tuple
    dilation: tuple
    padding: str
    is_1x1: bool
    filterlet_prunable: bool
    removable_filters: int
    coupled_with: tuple
    group: int
    macs: int


def _hw(shape) -> tuple:
    return tuple(int(d) if d is not None else -1 for d in shape[1:-1])


def conv_layers(model, *, include_non_prunable: bool = False, graph: ChannelGraph | None = None):
    """Describe every Conv2D (filterlet-prunable, groups=1) of ``model`` as a ``LayerInfo``.

    With ``include_non_prunable=True`` DepthwiseConv2D, Dense and grouped Conv2D layers are
    listed too, with ``filterlet_prunable=False``. Order: topological (graph) order.
    """
    g = graph or ChannelGraph(model)
    groups = g.coupled_groups()
    group_of = {n: gi for gi, grp in enumerate(groups) for n in grp}
    out = []
    for name, rec in g.records.items():
        layer = rec.layer
        is_conv = kind_of(layer) is CONV and rec.kind == "conv"
        if not is_conv and not include_non_prunable:
            continue
        if not isinstance(layer, (L.Conv2D, L.DepthwiseConv2D, L.Dense)):
            continue
        node = rec.node
        ishape, oshape = node.input_tensors[0].shape, node.outputs[0].shape
        c_in, c_out = int(ishape[-1]), int(oshape[-1])
        if isinstance(layer, L.Dense):
            kh = kw = 1
            strides = dilation = (1, 1)
            padding = "valid"
            macs = c_in * c_out * int(np.prod([d for d in oshape[1:-1] if d], dtype=np.int64))
        else:
            kh, kw = (int(k) for k in layer.kernel_size)
            strides = tuple(int(s) for s in layer.strides)
            dilation = tuple(int(d) for d in layer.dilation_rate)
            padding = layer.padding
            hw = int(np.prod([d for d in oshape[1:-1] if d], dtype=np.int64))
            macs = hw * kh * kw * c_out * (c_in if is_conv else 1)
        grp = group_of.get(name, -1)
        out.append(
            LayerInfo(
                name=name,
                type=type(layer).__name__,
                kh=kh,
                kw=kw,
                c_in=c_in,
                c_out=c_out,
                in_hw=_hw(ishape),
                out_hw=_hw(oshape),
                strides=strides,
                dilation=dilation,
                padding=padding,
                is_1x1=(kh == 1 and kw == 1),
                filterlet_prunable=is_conv,
                removable_filters=int(g.removable(name).sum()) if is_conv else 0,
                coupled_with=tuple(n for n in groups[grp] if n != name) if grp >= 0 else (),
                group=grp,
                macs=int(macs),
            )
        )
    return out
