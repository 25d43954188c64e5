"""Generates the model pairs dtmm_model_test.cc runs: small filterlet-pruned int8
CNNs and a block-pruned MLP built with TensorFlow (the "pruned originals") and
their DTMM conversions (`dtmm convert --always --prefer size`), written as C arrays
under models/. The cnn and kws convs are written as DTMM_CONV_2D format version 1
(they prove version 1 still runs); the `blocks` pair is version 2: a 3x3 conv
(B = C_in) and two 1x1 convs, one block-pruned and written with B = 16
(convert_model(block_size=16)), one whose C_in 16 does not divide (B = C_in).

    python dtmm_ops/tests/tflm/gen_models.py [--only mlp]   # repo root, in the venv

Seeds are fixed, but TensorFlow/Keras versions may still change the weights, so a
re-run gives equivalent, not necessarily byte-identical, models. The arrays are
small (< 100 KB of source) and committed, so the TFLM tests need no Python.
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def _prune_filterlets(kernel: np.ndarray, rng, fraction: float, kill_filter: bool):
    """Zero whole filterlets of a Keras HWIO kernel: filterlet (oc, kh, kw) is
    kernel[kh, kw, :, oc]. Exact zeros stay zero through int8 quantization."""
    kh, kw, _, cout = kernel.shape
    mask = rng.random((kh, kw, cout)) >= fraction
    if kill_filter:
        mask[:, :, cout // 2] = False  # one fully pruned output channel
    return kernel * mask[:, :, None, :].astype(kernel.dtype)


def _prune_blocks(kernel: np.ndarray, rng, fraction: float, block: int = 16):
    """Zero blocks of `block` input channels of a Keras Dense kernel [C_in, C_out]
    (TFLite's weights are its transpose: block j of row o is kernel[jB:(j+1)B, o])."""
    c_in, c_out = kernel.shape
    b = block if c_in % block == 0 else c_in
    keep = rng.random((c_in // b, c_out)) >= fraction
    return kernel * np.repeat(keep, b, axis=0).astype(kernel.dtype)


def _prune_conv_blocks(kernel: np.ndarray, rng, fraction: float, block: int):
    """Zero blocks of `block` input channels of a Keras 1x1 Conv2D kernel
    [1, 1, C_in, C_out] (block j of filter oc is kernel[0, 0, jB:(j+1)B, oc])."""
    _, _, c_in, c_out = kernel.shape
    keep = rng.random((c_in // block, c_out)) >= fraction
    return kernel * np.repeat(keep, block, axis=0)[None, None].astype(kernel.dtype)


# Format version and forced block size per pair (see the module docstring).
FORMAT = {"cnn": (1, None), "kws": (1, None), "mlp": (2, None), "blocks": (2, 16)}


def build_models(only=None):
    import tensorflow as tf

    keras = tf.keras
    tf.random.set_seed(1)
    rng = np.random.default_rng(1)

    def cnn():
        # Image-like: SAME/VALID, strides, dilation, 1x1, ReLU/ReLU6/none, no-bias.
        x = inp = keras.Input((10, 10, 3), batch_size=1)
        x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(x)
        x = keras.layers.Conv2D(12, 3, strides=2, padding="same",
                                activation="relu6")(x)
        x = keras.layers.Conv2D(8, 1, use_bias=False)(x)
        x = keras.layers.Conv2D(12, 3, dilation_rate=2, padding="valid",
                                activation="relu")(x)
        x = keras.layers.Flatten()(x)
        x = keras.layers.Dense(10)(x)
        return keras.Model(inp, x), (1, 10, 10, 3)

    def kws():
        # Keyword-spotting-like: 49x1x20 features, 5x1 stride (3,1) VALID.
        x = inp = keras.Input((49, 1, 20), batch_size=1)
        x = keras.layers.Conv2D(12, (5, 1), strides=(3, 1), padding="valid",
                                activation="relu")(x)
        x = keras.layers.Conv2D(8, (3, 1), padding="same", activation="relu")(x)
        x = keras.layers.Flatten()(x)
        x = keras.layers.Dense(12)(x)
        return keras.Model(inp, x), (1, 49, 1, 20)

    def mlp():
        # Autoencoder-like FULLY_CONNECTED stack: batches 2, ReLU / ReLU6 / none.
        x = inp = keras.Input((128,), batch_size=2)
        x = keras.layers.Dense(64, activation="relu")(x)
        x = keras.layers.Dense(32, activation="relu6")(x)
        x = keras.layers.Dense(128)(x)
        return keras.Model(inp, x), (2, 128)

    def blocks():
        # DTMM_CONV_2D version 2: 3x3 (B = C_in), 1x1 with C_in 32 (B = 16, block
        # pruned), 1x1 with C_in 24 (16 does not divide: B = C_in), strided 1x1.
        x = inp = keras.Input((8, 8, 4), batch_size=1)
        x = keras.layers.Conv2D(32, 3, padding="same", activation="relu")(x)
        x = keras.layers.Conv2D(24, 1, activation="relu6")(x)
        x = keras.layers.Conv2D(16, 1, strides=2, use_bias=False)(x)
        x = keras.layers.Flatten()(x)
        x = keras.layers.Dense(10)(x)
        return keras.Model(inp, x), (1, 8, 8, 4)

    out = {}
    for name, make, fraction in (("cnn", cnn, 0.6), ("kws", kws, 0.5), ("mlp", mlp, 0.75),
                                 ("blocks", blocks, 0.6)):
        model, shape = make()
        if only and name not in only:
            continue
        for i, layer in enumerate(l for l in model.layers
                                  if isinstance(l, keras.layers.Conv2D)):
            w = layer.get_weights()
            block = FORMAT[name][1]
            if block and w[0].shape[:2] == (1, 1) and w[0].shape[2] % block == 0:
                w[0] = _prune_conv_blocks(w[0], rng, fraction, block)
            else:
                w[0] = _prune_filterlets(w[0], rng, fraction, kill_filter=(i == 1))
            if len(w) > 1:
                w[1] = rng.normal(0, 0.1, w[1].shape).astype(np.float32)
            layer.set_weights(w)
        if name == "mlp":
            for layer in model.layers:
                if isinstance(layer, keras.layers.Dense):
                    w = layer.get_weights()
                    w[0] = _prune_blocks(w[0], rng, fraction)
                    w[1] = rng.normal(0, 0.1, w[1].shape).astype(np.float32)
                    layer.set_weights(w)

        def rep():
            r = np.random.default_rng(2)
            for _ in range(32):
                yield [r.normal(0, 1, shape).astype(np.float32)]

        conv = tf.lite.TFLiteConverter.from_keras_model(model)
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = rep
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
        out[name] = conv.convert()
    return out


def c_array(name: str, data: bytes) -> tuple[str, str]:
    guard = f"DTMM_OPS_TESTS_TFLM_MODELS_{name.upper()}_H_"
    h = (f"// Generated by gen_models.py; do not edit.\n#ifndef {guard}\n#define {guard}\n\n"
         f"extern const unsigned char g_{name}[];\nextern const unsigned int g_{name}_len;\n\n"
         f"#endif  // {guard}\n")
    lines = []
    for i in range(0, len(data), 24):
        lines.append(",".join(str(b) for b in data[i:i + 24]) + ",")
    cc = (f"// Generated by gen_models.py; do not edit.\n#include \"{name}.h\"\n\n"
          "// Flatbuffers need 16-byte alignment for their largest scalars.\n"
          f"alignas(16) const unsigned char g_{name}[] = {{\n" + "\n".join(lines) +
          f"\n}};\nconst unsigned int g_{name}_len = {len(data)};\n")
    return h, cc


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.path.join(HERE, "models"))
    ap.add_argument("--keep-tflite", action="store_true",
                    help="also write the .tflite files next to the arrays")
    ap.add_argument("--only", action="append",
                    help="regenerate only this pair (cnn, kws, mlp, blocks)")
    args = ap.parse_args(argv)
    from dtmm.convert import convert_model
    from dtmm.core.ops import is_dtmm, read_dtmm
    from dtmm.core.tflite import Model

    os.makedirs(args.out, exist_ok=True)
    for name, original in build_models(args.only).items():
        # --always for the convs, the size rule for the FCs (--always is conv-only)
        version, block = FORMAT[name]
        converted, report = convert_model(original, always=True, prefer="size",
                                          format_version=version, block_size=block)
        print(report.table())
        if report.num_rewritten + sum(r.rewritten for r in report.fc_layers) == 0:
            print(f"error: nothing converted in {name}", file=sys.stderr)
            return 1
        m = Model.read(converted)
        ops = [read_dtmm(m, si, oi) for si, sg in enumerate(m.subgraphs)
               for oi, op in enumerate(sg.operators) if is_dtmm(op)]
        if any(d.version != version for d in ops) or \
                (block and not any(d.block == block and d.fwcs.sparsity > 0 for d in ops)):
            print(f"error: {name} is not format version {version}"
                  + (f" with a block-sparse B={block} op" if block else ""), file=sys.stderr)
            return 1
        for suffix, data in (("original", original), ("dtmm", converted)):
            base = f"{name}_{suffix}_model"
            h, cc = c_array(base, data)
            with open(os.path.join(args.out, base + ".h"), "w") as f:
                f.write(h)
            with open(os.path.join(args.out, base + ".cc"), "w") as f:
                f.write(cc)
            if args.keep_tflite:
                with open(os.path.join(args.out, base + ".tflite"), "wb") as f:
                    f.write(data)
            print(f"{base}: {len(data)} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
