"""Tiny Keras models shared by the test_prune_*.py files (not a test file)."""

import keras
import numpy as np

L = keras.layers


def sequential(seed=0):
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [
            keras.Input((10, 10, 3)),
            L.Conv2D(8, 3, padding="same", activation="relu", name="c1"),
            L.Conv2D(6, 3, use_bias=False, name="c2"),
            L.BatchNormalization(name="bn2"),
            L.ReLU(name="r2"),
            L.MaxPooling2D(2, name="pool"),
            L.Conv2D(5, 1, activation="relu", name="c3"),
            L.GlobalAveragePooling2D(name="gap"),
            L.Dense(3, name="fc"),
        ],
        name="seq",
    )


def residual(seed=0):
    keras.utils.set_random_seed(seed)
    inp = keras.Input((8, 8, 3))
    x = L.Conv2D(6, 3, padding="same", activation="relu", name="stem")(inp)
    a = L.Conv2D(6, 3, padding="same", use_bias=False, name="a")(x)
    a = L.BatchNormalization(name="bn_a")(a)
    a = L.ReLU(name="relu_a")(a)
    b = L.Conv2D(6, 1, activation="relu", name="b")(x)
    s = L.Add(name="add")([a, b])
    s = L.Activation("relu", name="act")(s)
    c = L.Conv2D(6, 3, padding="same", activation="relu", name="c")(s)
    s2 = L.Add(name="add2")([s, c])  # second residual: stem-free chain a/b/c coupled
    y = L.Conv2D(4, 3, strides=2, activation="relu", name="d")(s2)
    y = L.GlobalMaxPooling2D(name="gmp")(y)
    return keras.Model(inp, L.Dense(3, name="fc")(y), name="res")


def concat(seed=0):
    keras.utils.set_random_seed(seed)
    inp = keras.Input((8, 8, 2))
    a = L.Conv2D(4, 3, padding="same", activation="relu", name="a")(inp)
    b = L.Conv2D(5, 3, padding="same", activation="relu", name="b")(inp)
    x = L.Concatenate(name="cat")([a, b])
    x = L.AveragePooling2D(2, name="avg")(x)
    x = L.Conv2D(6, 3, activation="relu", name="c")(x)
    x = L.Flatten(name="flat")(x)
    return keras.Model(inp, L.Dense(3, name="fc")(x), name="cat")


def flatten_dense(seed=0):
    keras.utils.set_random_seed(seed)
    inp = keras.Input((6, 5, 2))
    x = L.Conv2D(7, 3, activation="relu", name="c1")(inp)
    x = L.Flatten(name="flat")(x)
    x = L.Dense(4, activation="relu", name="fc1")(x)
    return keras.Model(inp, L.Dense(2, name="fc2")(x), name="fd")


def depthwise(seed=0):
    keras.utils.set_random_seed(seed)
    inp = keras.Input((8, 8, 3))
    x = L.Conv2D(6, 3, padding="same", activation="relu", name="c1")(inp)
    x = L.DepthwiseConv2D(3, depth_multiplier=2, padding="same", name="dw")(x)
    x = L.BatchNormalization(name="bn_dw")(x)
    x = L.ReLU(name="r_dw")(x)
    x = L.Conv2D(5, 1, activation="relu", name="pw")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(inp, L.Dense(3, name="fc")(x), name="dwm")


def randomize_bn(model, rng):
    """Give every BatchNormalization non-trivial statistics (so folding matters)."""
    for layer in model.layers:
        if isinstance(layer, L.BatchNormalization):
            c = layer.gamma.shape[0]
            layer.set_weights([
                rng.uniform(0.5, 1.5, c).astype("float32"),
                rng.uniform(-0.5, 0.5, c).astype("float32"),
                rng.uniform(-0.5, 0.5, c).astype("float32"),
                rng.uniform(0.5, 2.0, c).astype("float32"),
            ])
