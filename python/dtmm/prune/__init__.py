"""Filterlet and filter pruning for Keras 3 models (a small API in the TF-MOT spirit).

Example::

    imp = dtmm.prune.compute_importance(model, train_ds.take(20), method="taylor")
    masks = dtmm.prune.prune_to_ratios(model, imp, alpha_per_layer={"conv2": 0.5}, beta_per_layer=0.25)
    res = dtmm.prune.remove_filters(model, masks)        # physically smaller model
    dtmm.prune.apply_masks(res.model, res.masks); res.model.compile(...); res.model.fit(...)
    final = dtmm.prune.strip_masks(res.model)            # plain Keras model, masked filterlets == 0

Vocabulary (docs/contract.md, docs/pruning.md): a *filterlet* of a Conv2D with Keras
kernel ``[kh, kw, C_in, C_out]`` is ``kernel[kh, kw, :, oc]``; masks and importance are
indexed ``(oc, kh, kw)`` like the FWCS bitmap. Filterlet pruning zeroes filterlets
(the DTMM_CONV_2D kernel skips them); filter pruning removes output channels, and the
matching input channels downstream, physically.

Modules:

* ``graph``: ``ChannelGraph`` (which channels must be removed together),
  ``conv_layers(model)`` -> ``LayerInfo`` per layer (shapes, stride, 1x1, MACs, coupling).
* ``importance``: ``compute_importance`` (Taylor ``|w * dL/dw|`` or magnitude), per
  filterlet ``(C_out, kh, kw)`` and per filter ``(C_out,)``; works under tf.distribute.
* ``select``: ``prune_to_ratios(model, importance, alpha, beta)`` -> ``Masks``.
* ``masks``: ``LayerMask``/``Masks``, ``apply_masks`` (zero + keep zero through
  training via a kernel constraint), ``FilterletMasking`` (fit callback, needed with
  ``use_ema=True``), ``reapply_masks``, ``strip_masks``, ``zero_filterlets``,
  ``masks_from_weights``.
* ``surgery``: ``remove_filters(model, masks_or_indices)`` -> ``SurgeryResult``.
* blocks (contract v2): ``compute_importance(..., block_size=B)`` adds per-block
  scores ``(C_out, kh, kw, C_in // B)`` for Conv2D and Dense; ``prune_blocks_to_ratios``
  -> ``Masks`` of ``BlockMask``; ``apply_masks`` / ``strip_masks`` / ``Masks.save``
  handle both kinds (``BlockMaskConstraint``). Filters are removed first, blocks
  pruned on the smaller model (docs/block_pruning.md).
* ``match``: ``match_tflite_convs(model, tflite_bytes)`` -> Keras Conv2D name of each
  CONV_2D operator of the converted model (by shape, then by weights).
"""

from dtmm.core.errors import UnsupportedModelError

from .graph import ChannelGraph, LayerInfo, conv_layers, functional_model
from .importance import Importance, compute_importance
from .masks import (
    BlockMask,
    BlockMaskConstraint,
    FilterletMaskConstraint,
    FilterletMasking,
    LayerMask,
    Masks,
    apply_masks,
    masked_layers,
    masks_from_weights,
    reapply_masks,
    block_masks_from_weights,
    strip_masks,
    zero_blocks,
    zero_filterlets,
)
from .match import match_tflite_convs, match_tflite_dense, tflite_conv_filters, tflite_fc_weights
from .select import n_pruned, prune_blocks_to_ratios, prune_to_ratios
from .surgery import SurgeryResult, remove_filters

__all__ = [
    "ChannelGraph",
    "LayerInfo",
    "UnsupportedModelError",
    "conv_layers",
    "functional_model",
    "Importance",
    "compute_importance",
    "FilterletMaskConstraint",
    "LayerMask",
    "Masks",
    "apply_masks",
    "masked_layers",
    "masks_from_weights",
    "reapply_masks",
    "FilterletMasking",
    "strip_masks",
    "zero_filterlets",
    "match_tflite_convs",
    "match_tflite_dense",
    "tflite_fc_weights",
    "tflite_conv_filters",
    "n_pruned",
    "prune_to_ratios",
    "prune_blocks_to_ratios",
    "BlockMask",
    "BlockMaskConstraint",
    "zero_blocks",
    "block_masks_from_weights",
    "SurgeryResult",
    "remove_filters",
]
