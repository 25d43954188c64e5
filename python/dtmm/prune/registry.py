"""The one registry of layer kinds the pruner handles, with their rules (in the
manner of TF-MOT's prune_registry): which Keras layers have filterlets, which lose
output channels in surgery, how importance aggregates over their kernel and how
surgery slices each of their variables.

    kind = kind_of(layer)            # LayerKind or None (not a weighted layer we know)
    kind.filterlet_prunable          # True only for "conv" (Conv2D, groups=1)
    kind.slice(var_name, w, keep_in, keep_out)

Every module of dtmm.prune asks here; nothing else spells out "a prunable conv".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import keras
import numpy as np

from dtmm.core.errors import ArgumentError

L = keras.layers


@dataclass(frozen=True)
class LayerKind:
    name: str
    filterlet_prunable: bool       # has filterlets (oc, kh, kw) the DTMM op skips
    creates_channels: bool         # its output channels are new (filter removal source)
    reason: str                    # why it is not filterlet-prunable ("" if it is)
    # importance: elementwise scores of the kernel -> (filterlet (C_out,kh,kw) or
    # None, filter (C_out,))
    aggregate: Callable
    # surgery: (variable name, value, kept input channels, kept output channels) ->
    # sliced value (masks are bool arrays)
    slice: Callable


def _conv_aggregate(e):
    fl = np.transpose(e.sum(axis=2), (2, 0, 1))
    return fl, fl.sum(axis=(1, 2))


def _conv_slice(var_name, w, kin, kout):
    return w[:, :, kin][..., kout] if var_name == "kernel" else w[kout]


def _depthwise_slice(var_name, w, kin, kout):
    if var_name == "kernel" or w.ndim == 4:
        return w[:, :, kin, :]
    return w.reshape(len(kin), -1)[kin].reshape(-1)  # bias, channel c * m + j


def _dense_slice(var_name, w, kin, kout):
    return w[kin] if w.ndim == 2 else w


def _bn_slice(var_name, w, kin, kout):
    return w[kin]


CONV = LayerKind("conv", True, True, "", _conv_aggregate, _conv_slice)
GROUPED_CONV = LayerKind(
    "grouped_conv", False, False,
    "grouped Conv2D (groups > 1) is not supported by DTMM_CONV_2D",
    lambda e: (None, e.sum(axis=(0, 1, 2))), lambda n, w, kin, kout: w)
DEPTHWISE = LayerKind(
    "depthwise", False, False,
    "DepthwiseConv2D: one input channel per filter, a filterlet is a single weight",
    lambda e: (None, e.sum(axis=(0, 1)).reshape(-1)),  # [kh,kw,C_in,m] -> c*m+j
    _depthwise_slice)
DENSE = LayerKind("dense", False, False, "Dense: not a convolution",
                  lambda e: (None, e.sum(axis=0)), _dense_slice)
BATCH_NORM = LayerKind("bn", False, False, "BatchNormalization has no kernel",
                       lambda e: (None, e), _bn_slice)


def kind_of(layer) -> LayerKind | None:
    """The kind of a weighted layer, or None for anything else (Conv2DTranspose,
    Conv1D/3D, custom layers: never pruned, their channels are left alone)."""
    if isinstance(layer, L.DepthwiseConv2D):
        return DEPTHWISE
    if isinstance(layer, L.Conv2D) and type(layer).__name__ != "Conv2DTranspose":
        return CONV if getattr(layer, "groups", 1) == 1 else GROUPED_CONV
    if isinstance(layer, L.Dense):
        return DENSE
    if isinstance(layer, L.BatchNormalization):
        return BATCH_NORM
    return None


def is_filterlet_prunable(layer) -> bool:
    kind = kind_of(layer)
    return kind is not None and kind.filterlet_prunable


def filterlet_layers(model) -> list:
    """The built filterlet-prunable layers of a model, in model.layers order."""
    return [l for l in model.layers if l.built and is_filterlet_prunable(l)]


# --------------------------------------------------------------------------------
# Filterlet blocks (contract v2): B contiguous input-channel values at one
# (oc, kh, kw). Conv2D (groups=1, any K) and Dense (a 1x1 conv on a vector) have
# them; B = C_in is the filterlet. Block arrays are indexed (oc, kh, kw, block) --
# the OHWI order of the .tflite filter, so a block is contiguous there.

BLOCK_PRUNABLE_KINDS = ("conv", "dense")


def is_block_prunable(layer) -> bool:
    kind = kind_of(layer)
    return kind is not None and kind.name in BLOCK_PRUNABLE_KINDS


def block_layers(model) -> list:
    """The built block-prunable layers (Conv2D groups=1, Dense), model.layers order."""
    return [l for l in model.layers if l.built and is_block_prunable(l)]


def kernel_to_ohwi(kernel):
    """A Keras Conv2D ``[kh, kw, C_in, C_out]`` or Dense ``[C_in, C_out]`` kernel (or
    anything of its shape) as ``(C_out, kh, kw, C_in)`` (Dense: kh = kw = 1)."""
    k = np.asarray(kernel)
    if k.ndim == 2:
        return np.transpose(k)[:, None, None, :]
    if k.ndim == 4:
        return np.transpose(k, (3, 0, 1, 2))
    raise ArgumentError(f"expected a 2-D or 4-D kernel, got shape {k.shape}")


def ohwi_to_kernel(a, kernel_ndim: int):
    """Inverse of ``kernel_to_ohwi`` for a kernel of rank ``kernel_ndim``."""
    a = np.asarray(a)
    if kernel_ndim == 2:
        return np.transpose(a[:, 0, 0, :])
    return np.transpose(a, (1, 2, 3, 0))


def layer_block_size(c_in: int, block_size: int) -> int:
    """The block size a layer with ``c_in`` input channels gets for a requested
    ``block_size``: ``c_in`` itself when ``c_in <= block_size`` (the block is the
    filterlet), else ``block_size``, which must divide ``c_in``."""
    block_size = int(block_size)
    if block_size < 1:
        raise ArgumentError(f"block size must be >= 1, got {block_size}")
    if c_in <= block_size:
        return c_in
    if c_in % block_size:
        raise ArgumentError(f"block size {block_size} does not divide C_in = {c_in}")
    return block_size
