"""Small Keras CNNs for the schedule/pipeline tests (no training needed: cost
models only look at shapes and zeros)."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np


def residual_cnn(seed=0, size=16):
    """conv-conv-pool-(1x1 conv + skip ADD)-conv(stride 2)-GAP-dense: covers a
    coupled group (ADD), a 1x1 conv, a stride and a channel-scaled Dense."""
    import keras
    from keras import layers as L

    keras.utils.set_random_seed(seed)
    inp = keras.Input((size, size, 1))
    x = L.Conv2D(8, 3, padding="same", activation="relu", name="c1")(inp)
    x = L.Conv2D(16, 3, padding="same", activation="relu", name="c2")(x)
    x = L.MaxPooling2D(name="p1")(x)
    y = L.Conv2D(16, 1, activation="relu", name="c3")(x)
    x = L.Add(name="add")([x, y])
    x = L.Conv2D(24, 3, strides=2, padding="same", activation="relu", name="c4")(x)
    x = L.Conv2D(32, 3, padding="same", activation="relu", name="c5")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    out = L.Dense(10, name="fc")(x)
    return _distinct_biases(keras.Model(inp, out), seed)


def flatten_cnn(seed=0, size=12):
    """conv-conv-pool-conv-flatten-dense: the Dense rows scale with the last conv."""
    import keras
    from keras import layers as L

    keras.utils.set_random_seed(seed)
    inp = keras.Input((size, size, 3))
    x = L.Conv2D(16, 3, padding="same", activation="relu", name="c1")(inp)
    x = L.Conv2D(32, 3, padding="same", activation="relu", name="c2")(x)
    x = L.MaxPooling2D(name="p1")(x)
    x = L.Conv2D(32, 3, padding="valid", activation="relu", name="c3")(x)
    x = L.Flatten(name="flat")(x)
    out = L.Dense(10, name="fc")(x)
    return _distinct_biases(keras.Model(inp, out), seed)


def depthwise_cnn(seed=0, size=16):
    """conv-(depthwise-pointwise) x2-GAP-dense, MobileNet style: the depthwise
    weights, bias and their per-channel quantization shrink with the conv feeding
    them."""
    import keras
    from keras import layers as L

    keras.utils.set_random_seed(seed)
    inp = keras.Input((size, size, 3))
    x = L.Conv2D(16, 3, padding="same", activation="relu", name="c1")(inp)
    x = L.DepthwiseConv2D(3, padding="same", activation="relu", name="dw1")(x)
    x = L.Conv2D(32, 1, activation="relu", name="pw1")(x)
    x = L.DepthwiseConv2D(3, strides=2, padding="same", activation="relu", name="dw2")(x)
    x = L.Conv2D(48, 1, activation="relu", name="pw2")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    out = L.Dense(10, name="fc")(x)
    return _distinct_biases(keras.Model(inp, out), seed)


def _distinct_biases(model, seed):
    """Give every bias small random values, as a trained model has: the TFLite
    converter stores identical constants once, so the all-zero biases of an
    untrained model share buffers, which no trained model does and the flash
    model does not expect."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        b = getattr(layer, "bias", None)
        if b is not None:
            b.assign(rng.normal(0.0, 0.05, tuple(b.shape)).astype(np.float32))
    return model


def rep_data(model, n=32, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, *model.input_shape[1:]), dtype=np.float32)
