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
