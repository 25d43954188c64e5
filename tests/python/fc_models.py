"""int8 FULLY_CONNECTED test models, built through the schema's object API.

    buf = fc_model(FcConfig(c_in=40, c_out=12, batches=3, per_channel=True), seed=1)
    y = run_tflite(buf, x)        # TFLite's BUILTIN_REF kernels
    buf = keras_dense_model()     # a small MLP converted by TFLite's own converter

TFLite's reference kernels, not dtmm, give the expected outputs of every model.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from dtmm.core.tflite import BuiltinOperator, pack, schema  # noqa: E402

ACTIVATION_CODES = {"NONE": 0, "RELU": 1, "RELU_N1_TO_1": 2, "RELU6": 3}


@dataclass(frozen=True)
class FcConfig:
    c_in: int
    c_out: int
    batches: int = 1
    per_channel: bool = False
    bias: bool = True
    activation: str = "NONE"
    keep_num_dims: bool = False
    block: int = 0           # zero whole blocks of this size (0: no pruning)
    sparsity: float = 0.0
    rank3: bool = False      # input [1, batches, C_in] instead of [batches, C_in]
    zp_in: int = 3
    zp_out: int = -5


def fc_weights(cfg: FcConfig, rng) -> np.ndarray:
    w = rng.integers(-127, 128, (cfg.c_out, cfg.c_in)).astype(np.int8)
    if cfg.block and cfg.sparsity > 0:
        nb = cfg.c_in // cfg.block
        drop = rng.random((cfg.c_out, nb)) < cfg.sparsity
        w.reshape(cfg.c_out, nb, cfg.block)[drop] = 0
    return w


def _tensor(name, shape, ttype, buffer, scale=None, zp=None, qdim=0):
    t = schema.TensorT()
    t.name, t.shape, t.type, t.buffer = name, list(shape), ttype, buffer
    if scale is not None:
        q = schema.QuantizationParametersT()
        q.scale = [float(s) for s in np.atleast_1d(scale)]
        q.zeroPoint = [int(z) for z in np.atleast_1d(zp)]
        q.quantizedDimension = qdim
        t.quantization = q
    return t


def _buffer(data=None):
    b = schema.BufferT()
    if data is not None:
        b.data = np.frombuffer(np.ascontiguousarray(data).tobytes(), np.uint8)
    return b


def fc_model(cfg: FcConfig, seed: int = 0, weights=None) -> bytes:
    """One FULLY_CONNECTED with random int8 weights, scales and bias."""
    rng = np.random.default_rng(seed)
    w = fc_weights(cfg, rng) if weights is None else np.asarray(weights, np.int8)
    s_in, s_out = float(rng.uniform(0.01, 0.1)), float(rng.uniform(0.05, 0.5))
    s_w = (rng.uniform(0.002, 0.02, cfg.c_out) if cfg.per_channel
           else np.array([rng.uniform(0.002, 0.02)]))
    in_shape = [1, cfg.batches, cfg.c_in] if cfg.rank3 else [cfg.batches, cfg.c_in]
    out_shape = (in_shape[:-1] + [cfg.c_out]) if cfg.keep_num_dims else \
        [cfg.batches, cfg.c_out]
    buffers = [_buffer(), _buffer(), _buffer(), _buffer(w)]
    tensors = [
        _tensor("input", in_shape, schema.TensorType.INT8, 1, s_in, cfg.zp_in),
        _tensor("output", out_shape, schema.TensorType.INT8, 2, s_out, cfg.zp_out),
        _tensor("dense/weights", w.shape, schema.TensorType.INT8, 3, s_w,
                np.zeros(len(s_w), np.int64)),
    ]
    inputs = [0, 2]
    if cfg.bias:
        b = rng.integers(-5000, 5000, cfg.c_out).astype(np.int32)
        buffers.append(_buffer(b))
        tensors.append(_tensor("dense/bias", [cfg.c_out], schema.TensorType.INT32,
                               len(buffers) - 1, s_in * s_w, np.zeros(len(s_w), np.int64)))
        inputs.append(3)
    else:
        inputs.append(-1)
    opts = schema.FullyConnectedOptionsT()
    opts.fusedActivationFunction = ACTIVATION_CODES[cfg.activation]
    opts.keepNumDims = cfg.keep_num_dims
    op = schema.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = 0, inputs, [1]
    op.builtinOptionsType = schema.BuiltinOptions.FullyConnectedOptions
    op.builtinOptions = opts
    code = schema.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = BuiltinOperator.FULLY_CONNECTED
    code.version = 5 if cfg.keep_num_dims else 4
    sg = schema.SubGraphT()
    sg.tensors, sg.inputs, sg.outputs, sg.operators = tensors, [0], [1], [op]
    sg.name = "main"
    m = schema.ModelT()
    m.version, m.operatorCodes, m.subgraphs, m.buffers = 3, [code], [sg], buffers
    m.description = "dtmm fc test model"
    return pack(m)


def run_tflite(buf: bytes, x: np.ndarray) -> np.ndarray:
    import tensorflow as tf

    it = tf.lite.Interpreter(
        model_content=buf,
        experimental_op_resolver_type=tf.lite.experimental.OpResolverType.BUILTIN_REF)
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], x)
    it.invoke()
    return it.get_tensor(it.get_output_details()[0]["index"])


def random_input(buf: bytes, seed: int = 0) -> np.ndarray:
    from dtmm.core.tflite import Model

    t = Model.read(buf).subgraphs[0].inputs[0]
    return np.random.default_rng(seed).integers(-128, 128, t.shape).astype(np.int8)


@functools.lru_cache(maxsize=None)
def keras_dense_model(seed: int = 0) -> bytes:
    """A 3-FC MLP (48 -> 64 relu -> 32 relu6 -> 10) converted full-int8 by TFLite."""
    import tensorflow as tf

    tf.random.set_seed(seed)
    rng = np.random.default_rng(seed)
    m = tf.keras.Sequential([
        tf.keras.Input((48,), batch_size=1),
        tf.keras.layers.Dense(64, activation="relu"),
        tf.keras.layers.Dense(32, activation=tf.nn.relu6),
        tf.keras.layers.Dense(10)])

    def rep():
        for _ in range(16):
            yield [rng.normal(size=(1, 48)).astype(np.float32)]

    conv = tf.lite.TFLiteConverter.from_keras_model(m)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = rep
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = conv.inference_output_type = tf.int8
    return conv.convert()
