"""Writes a small filterlet-pruned int8 CNN as .tflite: the input the README's
"Use DTMM in your TFLM app" starts from (what `dtmm prune` or any pruner exports).

    python examples/dtmm_app/make_pruned_model.py model_int8.tflite

A 12x12x3 image CNN (3x3 SAME, strided, 1x1 and 3x3 VALID convs, max-pool, dense,
softmax) whose conv filterlets are 60 % zeroed, fully int8 (int8 input and
output) by TFLite's converter. Fixed seeds; made at test time, never committed.
"""
from __future__ import annotations

import argparse
import os

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def build(sparsity: float = 0.6, seed: int = 0) -> bytes:
    import tensorflow as tf

    keras = tf.keras
    keras.utils.set_random_seed(seed)  # Python, NumPy and TensorFlow
    rng = np.random.default_rng(seed)
    x = inp = keras.Input((12, 12, 3), batch_size=1)
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(x)
    x = keras.layers.Conv2D(16, 3, strides=2, padding="same", activation="relu6")(x)
    x = keras.layers.Conv2D(16, 1, activation="relu")(x)
    x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.Conv2D(24, 3, padding="valid", activation="relu")(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(10)(x)
    x = keras.layers.Softmax()(x)
    model = keras.Model(inp, x)

    # Zero whole filterlets: kernel[kh, kw, :, oc] is one C_in-long filterlet.
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            w = layer.get_weights()
            kh, kw, _, cout = w[0].shape
            keep = rng.random((kh, kw, cout)) >= sparsity
            w[0] = w[0] * keep[:, :, None, :]
            if len(w) > 1:
                w[1] = rng.normal(0, 0.1, w[1].shape).astype(np.float32)
            layer.set_weights(w)

    def representative():
        r = np.random.default_rng(seed + 1)
        for _ in range(16):
            yield [r.uniform(-1, 1, (1, 12, 12, 3)).astype(np.float32)]

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = representative
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    return conv.convert()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", help="the .tflite to write")
    args = ap.parse_args()
    data = build()
    tmp = args.out + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, args.out)
    print(f"wrote {args.out} ({len(data)} bytes)")


if __name__ == "__main__":
    main()
