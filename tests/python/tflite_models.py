"""int8 .tflite test models built with TensorFlow, plus edits through dtmm.core.tflite.

    buf = conv_branches_model([ConvConfig(...), ...])   # one CONV_2D per config
    buf = cnn_model()                                   # small multi-layer CNN
    buf = zero_filterlets(buf, 0.5, seed)               # prune at the int8 level

Every model is converted by TFLite's own converter (full int8, int8 inputs and
outputs). Cases TensorFlow never emits (a conv without a bias input) are made by
editing the converted model through dtmm's object model; TFLite's BUILTIN_REF
kernels then compute the expected outputs of the edited model, so the reference
stays TFLite's.
"""

from __future__ import annotations

import functools
import os
import warnings
from dataclasses import dataclass

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from dtmm.core.tflite import BuiltinOperator, Model, SignatureDef, schema  # noqa: E402

ACTIVATIONS = ("NONE", "RELU", "RELU6", "RELU_N1_TO_1")
ACTIVATION_CODES = {"NONE": 0, "RELU": 1, "RELU_N1_TO_1": 2, "RELU6": 3}


@dataclass(frozen=True)
class ConvConfig:
    c_in: int
    c_out: int
    kh: int
    kw: int
    stride: int = 1
    dilation: int = 1
    padding: str = "SAME"
    activation: str = "NONE"
    bias: bool = True            # False: the converted conv gets no bias input
    sparsity: float = 0.0        # fraction of filterlets zeroed
    pruned_filters: int = 0      # output channels with every filterlet zeroed
    h: int = 6
    w: int = 6
    in_lo: float = -1.0          # representative input range: sets the zero point
    in_span: float = 2.0
    seed: int = 0

    def min_size(self):
        return ((self.kh - 1) * self.dilation + 1, (self.kw - 1) * self.dilation + 1)


def _tf():
    import tensorflow as tf

    warnings.filterwarnings("ignore", module="tensorflow")
    return tf


def config_weights(cfg: ConvConfig):
    """Float HWIO filter with the config's filterlet mask and per-channel
    magnitudes spread over 3 decades (so per-channel scales differ), and a bias."""
    rng = np.random.default_rng(cfg.seed)
    w = rng.standard_normal((cfg.kh, cfg.kw, cfg.c_in, cfg.c_out)).astype(np.float32)
    w *= (10.0 ** rng.uniform(-2, 1, cfg.c_out)).astype(np.float32)
    keep = rng.random((cfg.kh, cfg.kw, cfg.c_out)) >= cfg.sparsity
    keep[:, :, rng.permutation(cfg.c_out)[:cfg.pruned_filters]] = False
    w *= keep[:, :, None, :]
    bias = (rng.standard_normal(cfg.c_out) * 2).astype(np.float32)
    return w, bias


def _convert(fn, rep_fn):
    tf = _tf()
    conv = tf.lite.TFLiteConverter.from_concrete_functions(
        [fn.get_concrete_function()], fn)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = rep_fn
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    return conv


def _activation(tf, name, y):
    if name == "RELU":
        return tf.nn.relu(y)
    if name == "RELU6":
        return tf.nn.relu6(y)
    if name == "RELU_N1_TO_1":  # TFLite fuses this clip as RELU_N1_TO_1
        return tf.clip_by_value(y, -1.0, 1.0)
    return y


def conv_branches_model(configs, per_channel: bool = True, dynamic_batch: bool = False,
                        seed: int = 0) -> bytes:
    """One int8 model, one input and one CONV_2D (+ activation) per config.

    dynamic_batch=True makes TF lower dilated convs to SPACE_TO_BATCH_ND + CONV_2D +
    BATCH_TO_SPACE_ND with the bias as a separate ADD, as Keras models with a None
    batch get. Configs with bias=False lose the conv's bias input after conversion
    (alternately as input -1 and as a 2-input op)."""
    tf = _tf()
    configs = list(configs)
    weights = [config_weights(c) for c in configs]
    batch = None if dynamic_batch else 1
    specs = [tf.TensorSpec((batch, c.h, c.w, c.c_in), tf.float32) for c in configs]

    @tf.function(input_signature=specs)
    def model(*xs):
        outs = []
        for x, c, (w, b) in zip(xs, configs, weights):
            if dynamic_batch and c.dilation > 1 and c.stride == 1:
                # what Keras does: lowered via SPACE_TO_BATCH_ND for a None batch
                y = tf.nn.convolution(x, w, padding=c.padding, dilations=c.dilation)
            else:
                y = tf.nn.conv2d(x, w, strides=c.stride, padding=c.padding,
                                 dilations=c.dilation)
            if c.bias:
                y = tf.nn.bias_add(y, b)
            outs.append(_activation(tf, c.activation, y))
        return outs

    rng = np.random.default_rng(seed)

    def representative():
        for _ in range(8):
            yield [rng.uniform(c.in_lo, c.in_lo + c.in_span, (1, c.h, c.w, c.c_in))
                   .astype(np.float32) for c in configs]

    conv = _convert(model, representative)
    if not per_channel:
        conv._experimental_disable_per_channel = True
    buf = conv.convert()
    if all(c.bias for c in configs):
        return buf
    return drop_bias_inputs(buf, [not c.bias for c in configs])


def conv_ops(model, subgraph=0):
    """[(op index, op)] of the CONV_2D ops of a subgraph of a dtmm.core.tflite.Model."""
    sg = model.subgraphs[subgraph]
    return [(i, op) for i, op in enumerate(sg.operators)
            if op.opcode.builtin == BuiltinOperator.CONV_2D]


def branch_of(model, op) -> int:
    """Which branch (model input number) a conv hangs off: the converter names
    outputs Identity, Identity_1, ... but may reorder ops, so follow the input."""
    sg = model.subgraphs[0]
    src = op.inputs[0]
    seen = set()
    while not any(src is t for t in sg.inputs):  # through SPACE_TO_BATCH_ND
        producer = next(p for p in sg.operators if any(src is o for o in p.outputs))
        src = producer.inputs[0]
        if id(src) in seen:
            raise AssertionError("cycle")
        seen.add(id(src))
    return next(i for i, t in enumerate(sg.inputs) if t is src)


def drop_bias_inputs(buf: bytes, drop) -> bytes:
    """Remove the bias input (-1) of the CONV_2D of every branch i with drop[i]."""
    model = Model.read(buf)
    n = 0
    for _, op in conv_ops(model):
        if drop[branch_of(model, op)]:
            op.inputs = op.inputs[:2] + [None]
            n += 1
    assert n == sum(drop), (n, sum(drop))
    return model.save()


def zero_filterlets(buf: bytes, fraction: float, seed: int = 0) -> bytes:
    """Zero a random `fraction` of the filterlets of every int8 CONV_2D, in the
    filter buffers (the int8 level), and return the edited model."""
    model = Model.read(buf)
    rng = np.random.default_rng(seed)
    for sg_i in range(len(model.subgraphs)):
        for _, op in conv_ops(model, sg_i):
            t = op.inputs[1]
            c_out, kh, kw, c_in = t.shape
            w = t.value().reshape(c_out * kh * kw, c_in).copy()
            drop = rng.permutation(len(w))[: int(round(fraction * len(w)))]
            w[drop] = 0
            t.buffer.data = w
    return model.save()


@functools.lru_cache(maxsize=None)
def cnn_model(sparsity: float = 0.6, seed: int = 1) -> bytes:
    """A small image CNN: conv 3x3 s2 -> conv 3x3 -> depthwise -> conv 1x1 ->
    dilated conv -> global pool -> dense, filterlets pruned in float."""
    tf = _tf()
    rng = np.random.default_rng(seed)
    layers = [ConvConfig(3, 16, 3, 3, stride=2, activation="RELU6", seed=seed),
              ConvConfig(16, 32, 3, 3, activation="RELU", seed=seed + 1),
              ConvConfig(32, 32, 1, 1, activation="RELU", seed=seed + 2),
              ConvConfig(32, 24, 3, 3, dilation=2, activation="NONE", seed=seed + 3,
                         padding="SAME"),
              ConvConfig(24, 24, 5, 3, padding="VALID", activation="RELU6",
                         seed=seed + 4)]
    convs = [config_weights(ConvConfig(**{**c.__dict__, "sparsity": sparsity}))
             for c in layers]
    dw = rng.standard_normal((3, 3, 16, 1)).astype(np.float32)
    dense = rng.standard_normal((24, 10)).astype(np.float32) * 0.1

    @tf.function(input_signature=[tf.TensorSpec((1, 24, 24, 3), tf.float32)])
    def model(x):
        for i, (c, (w, b)) in enumerate(zip(layers, convs)):
            x = tf.nn.conv2d(x, w * 0.3, strides=c.stride, padding=c.padding,
                             dilations=c.dilation)
            x = _activation(tf, c.activation, tf.nn.bias_add(x, b))
            if i == 0:
                x = tf.nn.relu(tf.nn.depthwise_conv2d(x, dw, [1, 1, 1, 1], "SAME"))
        x = tf.reduce_mean(x, axis=[1, 2])
        return tf.nn.softmax(tf.matmul(x, dense))

    def representative():
        for _ in range(16):
            yield [rng.uniform(0, 1, (1, 24, 24, 3)).astype(np.float32)]

    return add_signature(_convert(model, representative).convert())


def add_signature(buf: bytes, key: str = "serving_default") -> bytes:
    """Give subgraph 0 a SignatureDef over its inputs and outputs (models from
    concrete functions have none; Keras/SavedModel ones do)."""
    model = Model.read(buf)
    sg = model.subgraphs[0]
    sd = schema.SignatureDefT()
    sd.signatureKey, sd.subgraphIndex = key, 0
    sd.inputs, sd.outputs = [], []
    maps = ([], [])
    for vec, out, side in ((sg.inputs, sd.inputs, 0), (sg.outputs, sd.outputs, 1)):
        for i, t in enumerate(vec):
            tm = schema.TensorMapT()
            tm.name = f"{key}_{'io'[side]}{i}"
            out.append(tm)
            maps[side].append((tm, t))
    model.signature_defs = [SignatureDef(sd, sg, *maps)]
    return model.save()


def wakeword_models() -> dict:
    """{name: bytes} of the microWakeWord int8 models shipped in pymicro-wakeword."""
    from importlib import resources

    root = resources.files("pymicro_wakeword") / "models"
    return {p.name[:-len(".tflite")]: p.read_bytes()
            for p in sorted(root.iterdir(), key=lambda p: p.name)
            if p.name.endswith(".tflite")}


def op_summary(buf: bytes):
    """Per subgraph: names of ops and (name, is_variable) of tensors, for comparing
    what a conversion kept."""
    model = Model.read(buf)
    return [([op.name for op in sg.operators], [(t.name, t.is_variable) for t in sg.tensors])
            for sg in model.subgraphs]
