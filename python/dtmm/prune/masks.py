"""Filterlet masks and masked fine-tuning.

A ``LayerMask`` for a Conv2D with kernel ``[kh, kw, C_in, C_out]`` holds

* ``filterlets``: bool ``(C_out, kh, kw)``, True = kept. Same ``(oc, kh, kw)`` order as
  the FWCS bitmap of docs/contract.md.
* ``filters``: bool ``(C_out,)``, True = kept; False marks a filter that
  ``dtmm.prune.surgery.remove_filters`` will physically remove. A removed filter has
  all its filterlets False too.

``apply_masks`` zeroes the masked filterlets and installs a ``FilterletMaskConstraint``
on the kernel variable. Keras' optimizers apply variable constraints right after every
update (``BaseOptimizer.apply``), so whatever Adam's momentum or (decoupled) weight
decay do, the pruned weights are exactly 0 after every step, under ``tf.distribute``
too. An optimizer with ``use_ema=True`` overwrites the weights with their moving
averages at the end of ``fit`` (after the last constraint): pass the
``FilterletMasking()`` callback, or rely on ``strip_masks``, which returns a plain clone
with the masks applied one last time.

Exact zeros survive conversion: BatchNorm folding multiplies each output channel by
a scale (0 * s = 0) and int8 per-channel symmetric quantization maps 0 to 0. Bias /
BN shift are not masked; a fully pruned filter outputs its constant bias.
"""

from __future__ import annotations

import base64
import dataclasses

import keras
import numpy as np

from dtmm.core.errors import ArgumentError

from .registry import (block_layers, filterlet_layers, is_block_prunable, is_filterlet_prunable,
                       kernel_to_ohwi, ohwi_to_kernel)

__all__ = [
    "LayerMask",
    "Masks",
    "FilterletMaskConstraint",
    "apply_masks",
    "strip_masks",
    "zero_filterlets",
    "masks_from_weights",
    "masked_layers",
    "reapply_masks",
    "FilterletMasking",
    "BlockMask",
    "BlockMaskConstraint",
    "zero_blocks",
    "block_masks_from_weights",
]


@dataclasses.dataclass
class LayerMask:
    """Mask of one Conv2D. See the module docstring."""

    filterlets: np.ndarray
    filters: np.ndarray

    def __post_init__(self):
        self.filterlets = np.asarray(self.filterlets, dtype=bool)
        if self.filterlets.ndim != 3:
            raise ArgumentError(f"filterlet mask must be (C_out, kh, kw), got {self.filterlets.shape}")
        if self.filters is None:
            self.filters = np.ones(self.filterlets.shape[0], dtype=bool)
        self.filters = np.asarray(self.filters, dtype=bool)
        if self.filters.shape != (self.filterlets.shape[0],):
            raise ArgumentError(
                f"filter mask shape {self.filters.shape} does not match C_out "
                f"{self.filterlets.shape[0]}"
            )
        # A removed filter has no kept filterlet.
        self.filterlets = self.filterlets & self.filters[:, None, None]

    @classmethod
    def dense(cls, c_out: int, kh: int, kw: int) -> "LayerMask":
        return cls(np.ones((c_out, kh, kw), bool), np.ones(c_out, bool))

    @property
    def shape(self) -> tuple:
        """(C_out, kh, kw)."""
        return self.filterlets.shape

    def kernel_mask(self, c_in: int, dtype=np.float32) -> np.ndarray:
        """The mask broadcast to a Keras kernel ``[kh, kw, C_in, C_out]``."""
        m = np.transpose(self.filterlets, (1, 2, 0))[:, :, None, :].astype(dtype)
        return np.broadcast_to(m, m.shape[:2] + (c_in,) + m.shape[3:]).copy()

    @property
    def filterlet_sparsity(self) -> float:
        """Fraction of pruned filterlets among the kept filters (the ``alpha`` realised)."""
        kept = self.filterlets[self.filters]
        return float(1.0 - kept.mean()) if kept.size else 0.0

    @property
    def filter_sparsity(self) -> float:
        """Fraction of removed filters (the ``beta`` realised)."""
        return float(1.0 - self.filters.mean())


class Masks(dict):
    """``{conv layer name: LayerMask}``."""

    def save(self, path) -> None:
        """Write to an ``.npz`` file (``<name>/filterlets``, ``<name>/filters``)."""
        arrays = {}
        for name, m in self.items():
            if isinstance(m, BlockMask):
                arrays[f"{name}/blocks"] = m.blocks
                arrays[f"{name}/block_size"] = np.array(m.block_size, np.int64)
                arrays[f"{name}/filters"] = m.filters
                continue
            arrays[f"{name}/filterlets"] = m.filterlets
            arrays[f"{name}/filters"] = m.filters
        with open(path, "wb") as f:
            np.savez(f, **arrays)

    @classmethod
    def load(cls, path) -> "Masks":
        out = cls()
        with np.load(path) as z:
            for key in z.files:
                name, _, part = key.rpartition("/")
                if part == "filterlets":
                    out[name] = LayerMask(z[key], z[f"{name}/filters"])
                elif part == "blocks":
                    out[name] = BlockMask(z[key], int(z[f"{name}/block_size"]), z[f"{name}/filters"])
        return out

    def summary(self) -> str:
        lines = [f"{'layer':32s} {'C_out':>6s} {'K':>3s} {'filters removed':>16s} {'filterlets pruned':>18s}"]
        for name, m in self.items():
            if isinstance(m, BlockMask):
                c, kh, kw, nb = m.shape
                lines.append(
                    f"{name:32s} {c:6d} {kh * kw:3d} {int((~m.filters).sum()):8d} ({m.filter_sparsity:5.1%})"
                    f" {int((~m.blocks[m.filters]).sum()):9d} ({m.block_sparsity:5.1%}) blocks of {m.block_size}"
                )
                continue
            c, kh, kw = m.shape
            lines.append(
                f"{name:32s} {c:6d} {kh * kw:3d} {int((~m.filters).sum()):8d} ({m.filter_sparsity:5.1%})"
                f" {int((~m.filterlets[m.filters]).sum()):9d} ({m.filterlet_sparsity:5.1%})"
            )
        return "\n".join(lines)


@keras.saving.register_keras_serializable(package="dtmm")
class FilterletMaskConstraint(keras.constraints.Constraint):
    """Kernel constraint ``w -> inner(w) * mask``; ``mask`` has the kernel's shape
    ``[kh, kw, C_in, C_out]`` and is constant over ``C_in`` (one bit per filterlet).

    Registered with Keras serialization (``dtmm>FilterletMaskConstraint``): a masked
    model saves to ``.keras`` and loads with its masks. The config stores the
    filterlet bits packed (base64), not the kernel-sized mask."""

    def __init__(self, mask=None, inner=None, *, kernel_shape=None, kept=None):
        if mask is None:
            if kernel_shape is None or kept is None:
                raise ArgumentError("FilterletMaskConstraint needs a mask or "
                                    "kernel_shape and kept")
            kh, kw, c_in, c_out = (int(d) for d in kernel_shape)
            bits = np.unpackbits(np.frombuffer(base64.b64decode(kept), np.uint8),
                                 count=kh * kw * c_out).astype(bool)
            mask = np.broadcast_to(bits.reshape(kh, kw, 1, c_out), (kh, kw, c_in, c_out))
        self.mask = np.ascontiguousarray(mask, dtype=np.float32)
        if self.mask.ndim != 4:
            raise ArgumentError(f"mask must have the kernel's 4-D shape, got {self.mask.shape}")
        if isinstance(inner, dict):
            inner = keras.constraints.deserialize(inner)
        self.inner = inner

    @property
    def filterlets(self) -> np.ndarray:
        """bool (C_out, kh, kw): True = kept."""
        return np.transpose(self.mask[:, :, 0, :] != 0, (2, 0, 1))

    def __call__(self, w):
        if self.inner is not None:
            w = self.inner(w)
        return w * keras.ops.cast(self.mask, w.dtype)

    def get_config(self):
        bits = np.packbits((self.mask[:, :, 0, :] != 0).reshape(-1))
        return {"kernel_shape": [int(d) for d in self.mask.shape],
                "kept": base64.b64encode(bits.tobytes()).decode("ascii"),
                "inner": keras.constraints.serialize(self.inner) if self.inner else None}


def _conv(model, name):
    layer = model.get_layer(name)
    if not is_filterlet_prunable(layer):
        raise ArgumentError(f"layer {name!r} ({type(layer).__name__}) is not a filterlet-prunable Conv2D")
    if not layer.built:
        raise ArgumentError(f"layer {name!r} is not built")
    return layer


def apply_masks(model, masks: dict, *, constrain: bool = True):
    """Zero the masked filterlets of ``model`` in place and keep them zero while training.

    Args:
        model: a built Keras model (may live in a ``tf.distribute`` strategy scope).
        masks: ``{conv name: LayerMask}`` (e.g. from ``prune_to_ratios``).
        constrain: install ``FilterletMaskConstraint`` on the kernels (replacing an
            earlier mask constraint, chaining any other constraint). A train step
            already traced by ``fit`` is dropped so the next ``fit`` applies them; a
            custom ``tf.function`` training loop must be re-traced after this call.

    Returns:
        ``model``.
    """
    for name, m in masks.items():
        if isinstance(m, BlockMask):
            _apply_block_mask(model, name, m, constrain)
            continue
        layer = _conv(model, name)
        kh, kw, c_in, c_out = (int(d) for d in layer.kernel.shape)
        if m.shape != (c_out, kh, kw):
            raise ArgumentError(f"mask for {name!r} has shape {m.shape}, layer needs {(c_out, kh, kw)}")
        km = m.kernel_mask(c_in)
        var = layer.kernel
        var.assign(keras.ops.convert_to_tensor(var.numpy() * km, dtype=var.dtype))
        if constrain:
            inner = var.constraint
            if isinstance(inner, _MASK_CONSTRAINTS):
                inner = inner.inner
            # on the variable (what optimizers apply) and on the layer (what its
            # config, hence model.save, records)
            var.constraint = layer.kernel_constraint = FilterletMaskConstraint(km, inner)
    if constrain and getattr(model, "train_function", None) is not None:
        # fit() traces its train step once; drop it so the next fit sees the constraints.
        model.train_function = None
    return model


def reapply_masks(model) -> int:
    """Zero the masked filterlets again (``w *= mask`` for every installed mask); returns
    the number of masked layers. For custom loops that write kernels outside an optimizer."""
    n = 0
    for layer in block_layers(model):
        c = layer.kernel.constraint
        if isinstance(c, _MASK_CONSTRAINTS):
            layer.kernel.assign(keras.ops.convert_to_tensor(layer.kernel.numpy() * c.mask, layer.kernel.dtype))
            n += 1
    return n


class FilterletMasking(keras.callbacks.Callback):
    """``fit`` callback for masks installed by ``apply_masks``: checks they are there when
    training starts and re-applies them when it ends, after an optimizer with
    ``use_ema=True`` has overwritten the weights with their (unmasked) moving averages."""

    def on_train_begin(self, logs=None):
        if not masked_layers(self.model):
            raise ArgumentError("FilterletMasking: no masks installed; call dtmm.prune.apply_masks first")

    def on_train_end(self, logs=None):
        reapply_masks(self.model)


def masked_layers(model) -> Masks:
    """The masks currently installed on ``model`` by ``apply_masks``."""
    out = Masks()
    for layer in block_layers(model):
        c = layer.kernel.constraint
        if isinstance(c, FilterletMaskConstraint):
            out[layer.name] = LayerMask(c.filterlets, None)
        elif isinstance(c, BlockMaskConstraint):
            out[layer.name] = BlockMask(c.blocks, c.block_size, None)
    return out


def strip_masks(model):
    """Return a plain Keras clone of ``model`` (no mask constraints) with the masked
    filterlets zeroed. ``model`` itself is left unchanged."""
    def unmasked(layer):
        # the clone keeps whatever constraint the mask chained, not the mask
        config = layer.get_config()
        c = getattr(layer, "kernel_constraint", None)
        if isinstance(c, _MASK_CONSTRAINTS):
            config["kernel_constraint"] = keras.constraints.serialize(c.inner) if c.inner else None
        return type(layer).from_config(config)

    clone = keras.models.clone_model(model, clone_function=unmasked)
    clone.set_weights(model.get_weights())
    for layer in block_layers(model):
        c = layer.kernel.constraint
        if isinstance(c, _MASK_CONSTRAINTS):
            var = clone.get_layer(layer.name).kernel
            var.assign(var.numpy() * c.mask)
    return clone


def zero_filterlets(kernel) -> np.ndarray:
    """Bool ``(C_out, kh, kw)``: True where the filterlet of a Keras kernel
    ``[kh, kw, C_in, C_out]`` is all zero."""
    k = np.asarray(kernel)
    return np.transpose(np.all(k == 0, axis=2), (2, 0, 1))


def masks_from_weights(model) -> Masks:
    """Masks describing the all-zero filterlets of every filterlet-prunable Conv2D
    (``filters`` all True: zero filters are not marked for removal)."""
    out = Masks()
    for layer in filterlet_layers(model):
        out[layer.name] = LayerMask(~zero_filterlets(layer.kernel.numpy()), None)
    return out


# --------------------------------------------------------------------------------
# Filterlet blocks (contract v2): B contiguous input channels at one (oc, kh, kw)


@dataclasses.dataclass
class BlockMask:
    """Block mask of one Conv2D (groups=1, any K) or Dense.

    * ``blocks``: bool ``(C_out, kh, kw, C_in // block_size)``, True = kept; block
      ``j`` at ``(oc, kh, kw)`` is input channels ``[j*B, (j+1)*B)`` (contiguous in the
      OHWI filter of the .tflite). Dense: ``kh = kw = 1``.
    * ``block_size``: B (``B = C_in``: one block per filterlet).
    * ``filters``: bool ``(C_out,)``, True = kept (False: a removed filter, no kept block).
    """

    blocks: np.ndarray
    block_size: int
    filters: np.ndarray = None

    def __post_init__(self):
        self.blocks = np.asarray(self.blocks, dtype=bool)
        if self.blocks.ndim != 4:
            raise ArgumentError(f"block mask must be (C_out, kh, kw, C_in // B), got {self.blocks.shape}")
        self.block_size = int(self.block_size)
        if self.block_size < 1:
            raise ArgumentError(f"block size must be >= 1, got {self.block_size}")
        if self.filters is None:
            self.filters = np.ones(self.blocks.shape[0], dtype=bool)
        self.filters = np.asarray(self.filters, dtype=bool)
        if self.filters.shape != (self.blocks.shape[0],):
            raise ArgumentError(f"filter mask shape {self.filters.shape} does not match C_out "
                                f"{self.blocks.shape[0]}")
        self.blocks = self.blocks & self.filters[:, None, None, None]

    @property
    def shape(self) -> tuple:
        """(C_out, kh, kw, C_in // B)."""
        return self.blocks.shape

    @property
    def c_in(self) -> int:
        return self.blocks.shape[3] * self.block_size

    def kernel_mask(self, kernel_ndim: int = 4, dtype=np.float32) -> np.ndarray:
        """The mask broadcast to the Keras kernel: Conv2D ``[kh, kw, C_in, C_out]``
        (``kernel_ndim`` 4) or Dense ``[C_in, C_out]`` (2)."""
        ohwi = np.repeat(self.blocks, self.block_size, axis=3).astype(dtype)
        return np.ascontiguousarray(ohwi_to_kernel(ohwi, kernel_ndim))

    @property
    def block_sparsity(self) -> float:
        """Fraction of pruned blocks among the kept filters."""
        kept = self.blocks[self.filters]
        return float(1.0 - kept.mean()) if kept.size else 0.0

    @property
    def filter_sparsity(self) -> float:
        return float(1.0 - self.filters.mean())


@keras.saving.register_keras_serializable(package="dtmm")
class BlockMaskConstraint(keras.constraints.Constraint):
    """Kernel constraint ``w -> inner(w) * mask`` for a ``BlockMask``: ``mask`` has the
    kernel's shape and is constant over each block of ``block_size`` input channels.
    Registered with Keras serialization (``dtmm>BlockMaskConstraint``); the config
    stores the block bits packed (base64) in ``(oc, kh, kw, block)`` order."""

    def __init__(self, mask=None, inner=None, *, block_size=None, kernel_shape=None, kept=None):
        if block_size is None:
            raise ArgumentError("BlockMaskConstraint needs block_size")
        self.block_size = int(block_size)
        if mask is None:
            if kernel_shape is None or kept is None:
                raise ArgumentError("BlockMaskConstraint needs a mask or kernel_shape and kept")
            shape = tuple(int(d) for d in kernel_shape)
            ohwi = kernel_to_ohwi(np.empty(shape, np.uint8)).shape
            n = ohwi[0] * ohwi[1] * ohwi[2] * (ohwi[3] // self.block_size)
            bits = np.unpackbits(np.frombuffer(base64.b64decode(kept), np.uint8), count=n).astype(bool)
            mask = BlockMask(bits.reshape(ohwi[:3] + (-1,)), self.block_size).kernel_mask(len(shape))
        self.mask = np.ascontiguousarray(mask, dtype=np.float32)
        if self.mask.ndim not in (2, 4):
            raise ArgumentError(f"mask must have the kernel's 2-D or 4-D shape, got {self.mask.shape}")
        if kernel_to_ohwi(self.mask).shape[3] % self.block_size:
            raise ArgumentError(f"block size {self.block_size} does not divide the kernel's C_in")
        if isinstance(inner, dict):
            inner = keras.constraints.deserialize(inner)
        self.inner = inner

    @property
    def blocks(self) -> np.ndarray:
        """bool (C_out, kh, kw, C_in // B): True = kept."""
        return kernel_to_ohwi(self.mask)[..., ::self.block_size] != 0

    def __call__(self, w):
        if self.inner is not None:
            w = self.inner(w)
        return w * keras.ops.cast(self.mask, w.dtype)

    def get_config(self):
        bits = np.packbits(self.blocks.reshape(-1))
        return {"block_size": self.block_size,
                "kernel_shape": [int(d) for d in self.mask.shape],
                "kept": base64.b64encode(bits.tobytes()).decode("ascii"),
                "inner": keras.constraints.serialize(self.inner) if self.inner else None}


_MASK_CONSTRAINTS = (FilterletMaskConstraint, BlockMaskConstraint)


def _apply_block_mask(model, name, m: BlockMask, constrain: bool):
    layer = model.get_layer(name)
    if not is_block_prunable(layer):
        raise ArgumentError(f"layer {name!r} ({type(layer).__name__}) is not a block-prunable "
                            "Conv2D (groups=1) or Dense")
    if not layer.built:
        raise ArgumentError(f"layer {name!r} is not built")
    var = layer.kernel
    want = kernel_to_ohwi(np.empty(tuple(var.shape), np.uint8)).shape
    if m.shape[:3] != want[:3] or m.c_in != want[3]:
        raise ArgumentError(f"block mask for {name!r} has shape {m.shape} with B = {m.block_size}, "
                            f"layer needs (C_out, kh, kw, C_in) = {want}")
    km = m.kernel_mask(len(var.shape))
    var.assign(keras.ops.convert_to_tensor(var.numpy() * km, dtype=var.dtype))
    if constrain:
        inner = var.constraint
        if isinstance(inner, _MASK_CONSTRAINTS):
            inner = inner.inner
        var.constraint = layer.kernel_constraint = BlockMaskConstraint(km, inner, block_size=m.block_size)


def zero_blocks(kernel, block_size: int) -> np.ndarray:
    """Bool ``(C_out, kh, kw, C_in // B)``: True where a block of a Keras Conv2D
    ``[kh, kw, C_in, C_out]`` or Dense ``[C_in, C_out]`` kernel is all zero."""
    o = kernel_to_ohwi(kernel)
    c_out, kh, kw, c_in = o.shape
    if c_in % block_size:
        raise ArgumentError(f"block size {block_size} does not divide C_in = {c_in}")
    return np.all(o.reshape(c_out, kh, kw, c_in // block_size, block_size) == 0, axis=-1)


def block_masks_from_weights(model, block_size: int) -> Masks:
    """Block masks of the all-zero blocks of every Conv2D (groups=1) and Dense, with
    each layer's B from ``registry.layer_block_size``."""
    from .registry import layer_block_size

    out = Masks()
    for layer in block_layers(model):
        k = layer.kernel.numpy()
        b = layer_block_size(kernel_to_ohwi(k).shape[3], block_size)
        out[layer.name] = BlockMask(~zero_blocks(k, b), b, None)
    return out
