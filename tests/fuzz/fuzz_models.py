"""The model fuzzer's seed corpus: small int8 .tflite models made with TensorFlow at
test time, and their DTMM conversions.

    paths = build_corpus(directory)   # {name: path}, reuses files already there

Each model is a TensorFlow graph converted by TFLite's own converter (full int8,
int8 input/output) with a fraction of its conv filterlets zeroed in float, then
converted by `dtmm.convert.convert_model(always=True)` (the `<name>_dtmm` entries).
Together they cover SAME/VALID, stride, dilation, depthwise, per-tensor and
per-channel quantization, a conv without bias, batch 2 and inputs smaller than
the kernel. The models are small (1-12 KB) so that reproducers stay small.
"""

from __future__ import annotations

import os
import warnings

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _tf():
    import tensorflow as tf

    warnings.filterwarnings("ignore", module="tensorflow")
    return tf


def _weights(rng, kh, kw, c_in, c_out, sparsity):
    w = rng.standard_normal((kh, kw, c_in, c_out)).astype(np.float32)
    w *= (10.0 ** rng.uniform(-1.5, 0.5, c_out)).astype(np.float32)
    keep = rng.random((kh, kw, 1, c_out)) >= sparsity
    return w * keep


# Each spec: input shape (NHWC), layers, per_channel. A layer is
# ("conv", kh, kw, c_out, stride, dilation, padding, activation, bias) or
# ("dw", kh, kw, multiplier, stride, padding).
SPECS = {
    "stack": ((1, 10, 10, 3), (
        ("conv", 3, 3, 8, 1, 1, "SAME", "relu", True),
        ("conv", 3, 3, 8, 2, 1, "SAME", "none", True),
        ("dw", 3, 3, 1, 1, "SAME"),
        ("conv", 1, 1, 6, 1, 1, "VALID", "relu6", True),
        ("conv", 3, 3, 4, 1, 2, "SAME", "none", True),
    ), True),
    "valid_per_tensor": ((1, 9, 9, 2), (
        ("conv", 5, 5, 4, 1, 1, "VALID", "relu", True),
        ("conv", 3, 3, 4, 2, 1, "VALID", "relu_n1_to_1", True),
    ), False),
    "tiny": ((1, 5, 5, 2), (
        ("conv", 3, 3, 3, 1, 1, "SAME", "none", True),
    ), True),
    "small_input_big_kernel": ((2, 3, 2, 3), (
        ("conv", 5, 5, 4, 1, 1, "SAME", "none", True),
        ("conv", 3, 3, 2, 3, 2, "SAME", "relu", True),
    ), True),
}


# Block size the version-2 conversion forces on the 1x1 convs it divides
# (convert_model(block_size=)): "stack"'s 1x1 conv (C_in 8) becomes a block op.
BLOCKS = {"stack": 4}


def _activation(tf, name, y):
    return {"relu": tf.nn.relu, "relu6": tf.nn.relu6,
            "relu_n1_to_1": lambda v: tf.clip_by_value(v, -1.0, 1.0)}.get(
        name, lambda v: v)(y)


def make_model(name: str, seed: int = 0, sparsity: float = 0.4) -> bytes:
    """The int8 .tflite of SPECS[name]."""
    tf = _tf()
    shape, layers, per_channel = SPECS[name]
    rng = np.random.default_rng(seed)
    params = []
    c = shape[3]
    for layer in layers:
        if layer[0] == "conv":
            _, kh, kw, c_out, *_ = layer
            params.append((_weights(rng, kh, kw, c, c_out, sparsity),
                           rng.standard_normal(c_out).astype(np.float32)))
            c = c_out
        else:
            _, kh, kw, mult, *_ = layer
            params.append((rng.standard_normal((kh, kw, c, mult)).astype(np.float32), None))
            c = c * mult

    @tf.function(input_signature=[tf.TensorSpec(shape, tf.float32)])
    def model(x):
        y = x
        for layer, (w, b) in zip(layers, params):
            if layer[0] == "conv":
                _, kh, kw, c_out, stride, dil, pad, act, bias = layer
                y = tf.nn.conv2d(y, w, strides=stride, padding=pad, dilations=dil)
                if bias:
                    y = tf.nn.bias_add(y, b)
                y = _activation(tf, act, y)
            else:
                _, kh, kw, mult, stride, pad = layer
                y = tf.nn.depthwise_conv2d(y, w, strides=[1, stride, stride, 1],
                                           padding=pad)
        return y

    def representative():
        r = np.random.default_rng(seed + 1)
        for _ in range(8):
            yield [r.uniform(-1.0, 1.5, shape).astype(np.float32)]

    conv = tf.lite.TFLiteConverter.from_concrete_functions(
        [model.get_concrete_function()], model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = representative
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    if not per_channel:
        conv._experimental_disable_per_channel = True
    return conv.convert()


def drop_first_conv_bias(buf: bytes) -> bytes:
    """The same model with its first CONV_2D's bias input removed (input -1): a
    conv without bias, which TensorFlow never emits but TFLM runs."""
    from dtmm.core.tflite import BuiltinOperator, Model

    model = Model.read(buf)
    for op in model.subgraphs[0].operators:
        if op.opcode.builtin == BuiltinOperator.CONV_2D:
            op.inputs = op.inputs[:2] + [None]
            break
    return model.save()


def build_corpus(directory: str, names=None) -> dict:
    """Writes (once) the corpus models (all, or those of SPECS `names`) and their
    conversions; {name: path}."""
    from dtmm.convert import convert_model

    os.makedirs(directory, exist_ok=True)
    paths = {}
    for name in names or SPECS:
        variants = {name: None}
        if name == "tiny":
            variants["tiny_nobias"] = drop_first_conv_bias
        for vname, edit in variants.items():
            path = os.path.join(directory, f"{vname}.tflite")
            # <name>_dtmm: format version 2 (what the converter writes);
            # <name>_dtmm_v1: version 1 (still read and run everywhere)
            dtmm_path = os.path.join(directory, f"{vname}_dtmm.tflite")
            v1_path = os.path.join(directory, f"{vname}_dtmm_v1.tflite")
            if not all(os.path.exists(x) for x in (path, dtmm_path, v1_path)):
                buf = make_model(name)
                if edit is not None:
                    buf = edit(buf)
                out, _ = convert_model(buf, always=True, block_size=BLOCKS.get(name))
                out_v1, _ = convert_model(buf, always=True, format_version=1)
                for p, data in ((path, buf), (dtmm_path, out), (v1_path, out_v1)):
                    with open(p + ".tmp", "wb") as f:
                        f.write(data)
                    os.replace(p + ".tmp", p)
            paths[vname] = path
            paths[vname + "_dtmm"] = dtmm_path
            paths[vname + "_dtmm_v1"] = v1_path
    return paths
