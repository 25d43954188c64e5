"""Keras Conv2D <-> .tflite CONV_2D matching (dtmm.prune.match) when shapes are ambiguous."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from dtmm import prune

L = keras.layers


def twin_branches():
    keras.utils.set_random_seed(5)
    inp = keras.Input((8, 8, 3))
    a = L.Conv2D(4, 3, padding="same", activation="relu", name="a")(inp)
    b = L.Conv2D(4, 3, padding="same", use_bias=False, name="b")(inp)  # same shape as "a"
    b = L.BatchNormalization(name="bn_b")(b)
    b = L.ReLU(name="r_b")(b)
    c = L.Conv2D(4, 3, padding="same", activation="relu", name="c")(inp)  # same again
    x = L.Concatenate(name="cat")([c, b, a])
    x = L.Conv2D(5, 1, name="mix")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(inp, L.Dense(2, name="fc")(x))


def convert(model, int8):
    c = tf.lite.TFLiteConverter.from_keras_model(model)
    if int8:
        rng = np.random.default_rng(0)

        def rep():
            for _ in range(4):
                yield [rng.normal(size=(1, 8, 8, 3)).astype("float32")]

        c.optimizations = [tf.lite.Optimize.DEFAULT]
        c.representative_dataset = rep
        c.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    return c.convert()


@pytest.mark.parametrize("int8", [False, True], ids=["float", "int8"])
def test_twin_branches_matched_by_weights(int8):
    model = twin_branches()
    bn = model.get_layer("bn_b")
    g, beta, mean, var = bn.get_weights()
    bn.set_weights([-np.linspace(0.5, 2, 4).astype("float32"), beta, mean, var])  # negative fold scale
    # A distinct zero-filterlet pattern per layer identifies it in the .tflite.
    patterns = {"a": [(0, 0, 0)], "b": [(1, 1, 1), (2, 0, 2)], "c": [(3, 2, 2), (0, 1, 0), (1, 0, 0)]}
    masks = {}
    for n, cells in patterns.items():
        fl = np.ones((4, 3, 3), bool)
        for cell in cells:
            fl[cell] = False
        masks[n] = prune.LayerMask(fl, None)
    prune.apply_masks(model, masks, constrain=False)

    buf = convert(model, int8)
    names = prune.match_tflite_convs(model, buf)
    filters = prune.tflite_conv_filters(buf)
    assert sorted(names) == ["a", "b", "c", "mix"]
    for name, (_, w) in zip(names, filters):
        zero = np.all(w == 0, axis=3)
        if name in masks:
            np.testing.assert_array_equal(zero, ~masks[name].filterlets, err_msg=name)


def test_unmatched_shape_is_an_error():
    model = twin_branches()
    other = keras.Sequential([keras.Input((8, 8, 3)), L.Conv2D(7, 3, name="x")])
    with pytest.raises(ValueError, match="shape"):
        prune.match_tflite_convs(model, convert(other, False))
