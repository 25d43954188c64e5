"""Weight importance, aggregated per filterlet and per filter.

``method="taylor"``: first-order Taylor ``|w * dL/dw|`` per weight, where ``dL/dw`` is
the mean gradient of one batch, summed over batches (Molchanov et al. 2017/2019). Under
``tf.distribute`` the per-replica gradient sums are all-reduced first, so the result is
the same as on one device. The model runs with ``training=False`` (BatchNorm uses its
moving statistics, dropout is off): we rank weights of the trained network as deployed.

``method="magnitude"``: ``|w|`` (no data needed).

Aggregation (Keras Conv2D kernel ``[kh, kw, C_in, C_out]``):
``filterlet[name]`` is ``(C_out, kh, kw)`` = sum over ``C_in``;
``filter[name]`` is ``(C_out,)`` = sum over ``kh, kw, C_in``.
DepthwiseConv2D (``filter`` per output channel ``C_in * depth_multiplier``) and Dense
(``filter`` per unit) get a filter score only, and are listed in
``not_filterlet_prunable`` with the reason.
"""

from __future__ import annotations

import dataclasses

import keras
import numpy as np

from dtmm.core.errors import ArgumentError

from .registry import is_block_prunable, kernel_to_ohwi, kind_of, layer_block_size

__all__ = ["Importance", "compute_importance", "prunable_kernels", "block_scores"]


@dataclasses.dataclass
class Importance:
    """Result of ``compute_importance``. Arrays are float64 NumPy."""

    method: str
    filterlet: dict
    filter: dict
    not_filterlet_prunable: dict
    num_batches: int = 0
    num_examples: int = 0
    # with block_size=: {name: (C_out, kh, kw, C_in // B)} per Conv2D (groups=1) and
    # Dense (kh = kw = 1), and the B each layer got (registry.layer_block_size)
    blocks: dict = dataclasses.field(default_factory=dict)
    block_size: dict = dataclasses.field(default_factory=dict)


def prunable_kernels(model):
    """``[(layer, kernel_variable, kind)]`` for the layers with a kernel the registry
    knows; ``kind`` is "conv" (filterlet-prunable), "grouped_conv", "depthwise" or
    "dense"."""
    return [(layer, layer.kernel, kind_of(layer).name) for layer in model.layers
            if layer.built and kind_of(layer) is not None and hasattr(layer, "kernel")]


def _resolve_loss(model, loss):
    if loss is None:
        loss = getattr(model, "loss", None)
        if loss is None:
            raise ArgumentError("pass loss=... or compile the model with a loss for Taylor importance")
    if isinstance(loss, (list, tuple, dict)):
        raise ArgumentError("multi-output losses are not supported; pass a single loss")
    loss = keras.losses.get(loss) if isinstance(loss, (str, dict)) else loss
    if isinstance(loss, keras.losses.Loss):
        return loss.call  # unreduced, per example
    if callable(loss):
        return loss
    raise ArgumentError(f"cannot use {loss!r} as a loss")


def compute_importance(
    model,
    dataset=None,
    *,
    method: str = "taylor",
    loss=None,
    steps: int | None = None,
    strategy=None,
    progress: bool = True,
    block_size: int | dict | None = None,
) -> Importance:
    """Score every Conv2D filterlet and filter of ``model``.

    Args:
        model: a built Keras model.
        dataset: for "taylor", a ``tf.data.Dataset`` (or any iterable) of ``(x, y)``
            batches; ignored for "magnitude".
        method: "taylor" or "magnitude".
        loss: loss returning per-example values (Keras ``Loss``, name, or
            ``fn(y_true, y_pred)``); default: the compiled loss.
        steps: stop after this many batches (default: the whole dataset).
        strategy: ``tf.distribute`` strategy the model was built under (default: the
            current one, if inside a ``strategy.scope()``, else none).
        progress: show a tqdm bar over batches.
        block_size: also score filterlet blocks of B contiguous input channels
            (``Importance.blocks``) for every Conv2D (groups=1) and Dense: one B
            for all (a layer with ``C_in <= B`` gets ``B = C_in``, the filterlet)
            or ``{layer name: B}`` (layers not named get no block scores).
    """
    entries = prunable_kernels(model)
    not_prunable = {layer.name: kind_of(layer).reason for layer, _, _ in entries
                    if not kind_of(layer).filterlet_prunable}
    if method == "magnitude":
        elem = [np.abs(v.numpy().astype(np.float64)) for _, v, _ in entries]
        nb = ne = 0
    elif method == "taylor":
        if dataset is None:
            raise ArgumentError("Taylor importance needs a dataset of (x, y) batches")
        elem, nb, ne = _taylor(model, [v for _, v, _ in entries], dataset, _resolve_loss(model, loss),
                               steps, strategy, progress)
    else:
        raise ArgumentError(f"unknown importance method {method!r} (use 'taylor' or 'magnitude')")
    filterlet, filt = {}, {}
    for (layer, _, _), e in zip(entries, elem):
        fl, f = kind_of(layer).aggregate(e)
        if fl is not None:
            filterlet[layer.name] = fl
        filt[layer.name] = f
    blocks, sizes = _block_scores(entries, elem, block_size)
    return Importance(method, filterlet, filt, not_prunable, nb, ne, blocks, sizes)


def block_scores(elementwise, block_size: int) -> np.ndarray:
    """Sum elementwise scores of a Conv2D ``[kh, kw, C_in, C_out]`` or Dense
    ``[C_in, C_out]`` kernel over blocks of ``block_size`` contiguous input channels:
    ``(C_out, kh, kw, C_in // block_size)``."""
    o = kernel_to_ohwi(elementwise)
    c_out, kh, kw, c_in = o.shape
    return o.reshape(c_out, kh, kw, c_in // block_size, block_size).sum(axis=-1)


def _block_scores(entries, elem, block_size):
    if block_size is None:
        return {}, {}
    if isinstance(block_size, dict):
        known = {layer.name for layer, _, _ in entries if is_block_prunable(layer)}
        unknown = set(block_size) - known
        if unknown:
            raise ArgumentError(f"block_size given for layers that are not Conv2D (groups=1) "
                                f"or Dense: {sorted(unknown)}")
    blocks, sizes = {}, {}
    for (layer, _, _), e in zip(entries, elem):
        if not is_block_prunable(layer):
            continue
        want = block_size.get(layer.name) if isinstance(block_size, dict) else block_size
        if want is None:
            continue
        c_in = kernel_to_ohwi(e).shape[-1]
        try:
            b = layer_block_size(c_in, want)
        except ArgumentError as err:
            raise ArgumentError(f"layer {layer.name!r}: {err}") from None
        blocks[layer.name] = block_scores(e, b)
        sizes[layer.name] = b
    return blocks, sizes


def _taylor(model, kernels, dataset, loss_fn, steps, strategy, progress):
    import tensorflow as tf
    from tqdm.auto import tqdm

    if strategy is None and tf.distribute.has_strategy():
        strategy = tf.distribute.get_strategy()
    distributed = strategy is not None and strategy.num_replicas_in_sync > 1

    def replica_step(x, y):
        with tf.GradientTape() as tape:
            pred = model(x, training=False)
            per_example = tf.cast(loss_fn(y, pred), tf.float32)
            total = tf.reduce_sum(per_example)
        grads = tape.gradient(total, kernels)
        grads = [tf.zeros_like(k) if g is None else tf.cast(g, tf.float32) for g, k in zip(grads, kernels)]
        count = tf.cast(tf.shape(per_example)[0], tf.float32)
        scale = tf.cast(tf.size(per_example), tf.float32) / count  # per-element losses per example
        return grads, count, scale

    @tf.function
    def step(x, y):
        if distributed:
            grads, count, scale = strategy.run(replica_step, args=(x, y))
            red = tf.distribute.ReduceOp.SUM
            grads = [strategy.reduce(red, g, axis=None) for g in grads]
            count = strategy.reduce(red, count, axis=None)
            scale = strategy.reduce(tf.distribute.ReduceOp.MEAN, scale, axis=None)
        else:
            grads, count, scale = replica_step(x, y)
        # Mean over examples (and over extra loss axes, as Keras' default reduction does).
        return [tf.abs(tf.cast(k, tf.float32) * g / (count * scale)) for k, g in zip(kernels, grads)], count

    if distributed:
        if not isinstance(dataset, tf.data.Dataset):
            raise ArgumentError("under a tf.distribute strategy, pass a tf.data.Dataset")
        iterable = strategy.experimental_distribute_dataset(dataset)
    else:
        iterable = dataset
    total = steps
    if total is None and isinstance(dataset, tf.data.Dataset):
        card = int(dataset.cardinality())
        total = card if card >= 0 else None

    acc = [np.zeros(k.shape, np.float64) for k in kernels]
    nb = ne = 0
    bar = tqdm(total=total, desc="importance", unit="batch", disable=not progress)
    try:
        for batch in iterable:
            if steps is not None and nb >= steps:
                break
            if not isinstance(batch, (tuple, list)) or len(batch) < 2:
                raise ArgumentError("dataset must yield (x, y) or (x, y, sample_weight) batches")
            scores, count = step(batch[0], batch[1])
            for a, s in zip(acc, scores):
                a += s.numpy()
            nb += 1
            ne += int(count.numpy())
            bar.update(1)
    finally:
        bar.close()
    if nb == 0:
        raise ArgumentError("the dataset yielded no batch")
    return acc, nb, ne
