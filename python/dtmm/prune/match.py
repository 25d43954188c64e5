"""Which Keras Conv2D became which CONV_2D of a converted .tflite.

    names = match_tflite_convs(model, open("model_int8.tflite", "rb").read())
    names[i]  # Keras layer name of the i-th CONV_2D operator (operator order)

Shapes alone are ambiguous (parallel branches often have equal shapes), so
candidates of the same ``(C_out, kh, kw, C_in)`` are told apart by their weights: the
converter folds BatchNorm by scaling each output channel (possibly by a negative
number) and quantizes per channel, so each filter of the .tflite is, up to a scale
and rounding, the Keras filter. The score is the mean over output channels of
``|cos(keras filter, dequantized tflite filter)|``; the assignment maximises the total
score (Hungarian method).
"""

from __future__ import annotations

import numpy as np

from dtmm.core.errors import ModelError, UnsupportedModelError
from dtmm.core.tflite import BuiltinOperator, Model

from .registry import is_filterlet_prunable

__all__ = ["match_tflite_convs", "tflite_conv_filters"]


def tflite_conv_filters(tflite_bytes: bytes) -> list:
    """``[(operator index, float filter (C_out, kh, kw, C_in))]`` for every CONV_2D of
    subgraph 0, dequantized with its per-channel scales (float models: as stored)."""
    model = Model.read(tflite_bytes, "the converted model")
    out = []
    for i, op in enumerate(model.subgraphs[0].operators):
        if op.opcode.builtin != BuiltinOperator.CONV_2D:
            continue
        t = op.inputs[1] if len(op.inputs) > 1 else None
        w = t.value("filter") if t is not None else None
        if w is None or w.dtype.kind not in "iuf":
            raise ModelError(f"CONV_2D operator {i}: filter is not a constant of a known type")
        w = w.astype(np.float64)
        scale, zp, _ = t.quant()
        if len(scale):
            zp = zp.astype(np.float64) if len(zp) else np.zeros(len(scale))
            shape = (-1,) + (1,) * (w.ndim - 1) if len(scale) > 1 else ()
            w = (w - zp.reshape(shape)) * scale.astype(np.float64).reshape(shape)
        out.append((i, w))
    return out


def _score(a: np.ndarray, b: np.ndarray) -> float:
    a = a.reshape(a.shape[0], -1)
    b = b.reshape(b.shape[0], -1)
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    both_zero = (na == 0) & (nb == 0)
    cos = np.abs((a * b).sum(axis=1)) / np.maximum(na * nb, 1e-30)
    return float(np.where(both_zero, 1.0, cos).mean())


def match_tflite_convs(model, tflite_bytes: bytes) -> list:
    """Keras Conv2D name for each CONV_2D operator of ``tflite_bytes``, in operator order.

    Raises:
        UnsupportedModelError (a ValueError): a CONV_2D has no Keras Conv2D of the
        same shape left.
    """
    from scipy.optimize import linear_sum_assignment

    keras_convs = {}
    for layer in model.layers:
        if layer.built and is_filterlet_prunable(layer):
            k = np.transpose(np.asarray(layer.kernel.numpy(), np.float64), (3, 0, 1, 2))  # OHWI
            keras_convs[layer.name] = k
    convs = tflite_conv_filters(tflite_bytes)
    names = [None] * len(convs)
    by_shape: dict = {}
    for j, (_, w) in enumerate(convs):
        by_shape.setdefault(w.shape, []).append(j)
    for shape, js in by_shape.items():
        cands = [n for n, k in keras_convs.items() if k.shape == shape]
        if len(cands) < len(js):
            raise UnsupportedModelError(f"{len(js)} CONV_2D with filter shape {shape} but only "
                             f"{len(cands)} Keras Conv2D layers of that shape")
        score = np.array([[_score(keras_convs[n], convs[j][1]) for n in cands] for j in js])
        rows, cols = linear_sum_assignment(-score)
        for r, c in zip(rows, cols):
            names[js[r]] = cands[c]
    return names


def tflite_fc_weights(tflite_bytes: bytes) -> list:
    """``[(operator index, float weights (C_out, C_in))]`` for every FULLY_CONNECTED of
    subgraph 0 with constant weights, dequantized with their scales."""
    model = Model.read(tflite_bytes, "the converted model")
    out = []
    for i, op in enumerate(model.subgraphs[0].operators):
        if op.opcode.builtin != BuiltinOperator.FULLY_CONNECTED or len(op.inputs) < 2:
            continue
        t = op.inputs[1]
        w = t.value("weights") if t is not None else None
        if w is None or w.ndim != 2 or w.dtype.kind not in "iuf":
            continue  # weights written at run time: no Dense layer to match
        w = w.astype(np.float64)
        scale, zp, _ = t.quant()
        if len(scale):
            zp = zp.astype(np.float64) if len(zp) else np.zeros(len(scale))
            shape = (-1, 1) if len(scale) > 1 else ()
            w = (w - zp.reshape(shape)) * scale.astype(np.float64).reshape(shape)
        out.append((i, w))
    return out


def match_tflite_dense(model, tflite_bytes: bytes) -> dict:
    """{operator index: Keras Dense name} for every FULLY_CONNECTED of ``tflite_bytes``
    with constant weights, matched like ``match_tflite_convs`` (shape, then the mean
    ``|cos|`` of the rows, Hungarian assignment). A FULLY_CONNECTED with no Dense of
    its shape left is not listed (it is not prunable)."""
    from scipy.optimize import linear_sum_assignment

    from .registry import kind_of

    keras_dense = {layer.name: np.transpose(np.asarray(layer.kernel.numpy(), np.float64))
                   for layer in model.layers
                   if layer.built and kind_of(layer) is not None and kind_of(layer).name == "dense"}
    fcs = tflite_fc_weights(tflite_bytes)
    out = {}
    by_shape: dict = {}
    for j, (_, w) in enumerate(fcs):
        by_shape.setdefault(w.shape, []).append(j)
    for shape, js in by_shape.items():
        cands = [n for n, k in keras_dense.items() if k.shape == shape]
        if not cands:
            continue
        score = np.array([[_score(keras_dense[n], fcs[j][1]) for n in cands] for j in js])
        rows, cols = linear_sum_assignment(-score)
        for r, c in zip(rows, cols):
            out[fcs[js[r]][0]] = cands[c]
    return out
