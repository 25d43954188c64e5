"""Load, validate and save .tflite flatbuffers through TFLite's generated schema.

    model = load_model(buf)          # schema ModelT (object API), or ModelError
    buf = save_model(model)          # bytes with the "TFL3" file identifier
    write_atomic(path, buf)          # temp file + os.replace, nothing left on failure

Nothing here parses bytes by hand: the schema module does it, and `load_model`
checks the index fields that the rest of dtmm follows (buffer, tensor and opcode
indices) so that a malformed file is a `ModelError`, never an IndexError later.
"""

from __future__ import annotations

import os
import tempfile

import flatbuffers
import numpy as np
from flatbuffers import flexbuffers

from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

from dtmm.errors import ModelError

FILE_IDENTIFIER = b"TFL3"
MAX_FLATBUFFER_BYTES = (1 << 31) - 1  # flatbuffers' 32-bit offsets
DTMM_CUSTOM_CODE = "DTMM_CONV_2D"

BuiltinOperator = schema.BuiltinOperator
TensorType = schema.TensorType

TENSOR_TYPE_NAMES = {v: k for k, v in vars(schema.TensorType).items()
                     if not k.startswith("_")}
BUILTIN_NAMES = {v: k for k, v in vars(schema.BuiltinOperator).items()
                 if not k.startswith("_")}
NUMPY_DTYPES = {
    TensorType.FLOAT32: np.float32, TensorType.FLOAT16: np.float16,
    TensorType.FLOAT64: np.float64, TensorType.INT8: np.int8,
    TensorType.UINT8: np.uint8, TensorType.INT16: np.int16,
    TensorType.UINT16: np.uint16, TensorType.INT32: np.int32,
    TensorType.UINT32: np.uint32, TensorType.INT64: np.int64,
    TensorType.UINT64: np.uint64, TensorType.BOOL: np.bool_,
}


def type_name(tensor_type: int) -> str:
    return TENSOR_TYPE_NAMES.get(tensor_type, f"type {tensor_type}")


def text(s) -> str:
    """Schema strings come back as bytes; show them as str."""
    if s is None:
        return ""
    return s.decode("utf-8", "replace") if isinstance(s, (bytes, bytearray)) else str(s)


# -- loading ------------------------------------------------------------------------
def read_file(path) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise ModelError(f"cannot read {path}: {e.strerror}") from None


def load_model(buf: bytes, what: str = "input") -> "schema.ModelT":
    """Parse a .tflite flatbuffer into the schema's object API and check it."""
    buf = bytes(buf)
    if len(buf) > MAX_FLATBUFFER_BYTES:
        raise ModelError(f"{what} is larger than 2 GB; models with external "
                         "buffers are not supported")
    if len(buf) < 8:
        raise ModelError(f"{what} is not a TFLite flatbuffer ({len(buf)} bytes)")
    if buf[4:8] != FILE_IDENTIFIER:
        raise ModelError(f"{what} is not a TFLite model: file identifier is "
                         f"{buf[4:8]!r}, expected {FILE_IDENTIFIER!r}")
    try:
        model = schema.ModelT.InitFromPackedBuf(buf, 0)
    except Exception as e:  # the generated reader raises whatever struct/numpy raise
        raise ModelError(f"{what} is not a valid TFLite flatbuffer: truncated or "
                         f"corrupt ({len(buf)} bytes)") from None
    check_model(model, what)
    return model


def _indices_ok(idx, limit: int, allow_optional: bool) -> bool:
    lo = -1 if allow_optional else 0
    return all(lo <= int(i) < limit for i in (idx if idx is not None else []))


def check_model(model, what: str = "input") -> None:
    """Raise ModelError unless every index in the model points somewhere."""
    if not model.subgraphs:
        raise ModelError(f"{what} has no subgraphs")
    buffers = model.buffers or []
    n_buffers = len(buffers)
    n_codes = len(model.operatorCodes or [])
    for b in buffers:
        if b.offset or b.size:
            raise ModelError(f"{what} stores buffers outside the flatbuffer "
                             "(offset/size, models > 2 GB): not supported")
    if getattr(model, "externalBuffers", None) or getattr(
            model, "externalBufferGroups", None):
        raise ModelError(f"{what} uses external buffers: not supported")
    for m in model.metadata or []:
        if not 0 <= m.buffer < n_buffers:
            raise ModelError(f"{what}: metadata {text(m.name)!r} points at buffer "
                             f"{m.buffer} of {n_buffers}")
    for si, sg in enumerate(model.subgraphs):
        tensors = sg.tensors or []
        for ti, t in enumerate(tensors):
            if not 0 <= t.buffer < n_buffers:
                raise ModelError(f"{what}: subgraph {si} tensor {ti} points at buffer "
                                 f"{t.buffer} of {n_buffers}")
            if getattr(t, "externalBuffer", 0):
                raise ModelError(f"{what}: tensor {text(t.name)!r} uses an external "
                                 "buffer: not supported")
        n = len(tensors)
        if not (_indices_ok(sg.inputs, n, False) and _indices_ok(sg.outputs, n, False)):
            raise ModelError(f"{what}: subgraph {si} inputs/outputs point past its "
                             f"{n} tensors")
        for oi, op in enumerate(sg.operators or []):
            if not 0 <= op.opcodeIndex < n_codes:
                raise ModelError(f"{what}: subgraph {si} operator {oi} has opcode index "
                                 f"{op.opcodeIndex} of {n_codes}")
            if not (_indices_ok(op.inputs, n, True) and _indices_ok(op.outputs, n, True)
                    and _indices_ok(op.intermediates, n, True)):
                raise ModelError(f"{what}: subgraph {si} operator {oi} refers to a "
                                 f"tensor outside its {n} tensors")
    for sd in model.signatureDefs or []:
        if not 0 <= sd.subgraphIndex < len(model.subgraphs):
            raise ModelError(f"{what}: signature {text(sd.signatureKey)!r} points at "
                             f"subgraph {sd.subgraphIndex}")
        n = len(model.subgraphs[sd.subgraphIndex].tensors or [])
        for tm in (sd.inputs or []) + (sd.outputs or []):
            if not 0 <= tm.tensorIndex < n:
                raise ModelError(f"{what}: signature {text(sd.signatureKey)!r} "
                                 f"points at tensor {tm.tensorIndex} of {n}")


# -- saving -------------------------------------------------------------------------
def save_model(model) -> bytes:
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=FILE_IDENTIFIER)
    out = bytes(builder.Output())
    if len(out) > MAX_FLATBUFFER_BYTES:
        raise ModelError("converted model would be larger than 2 GB")
    return out


def write_atomic(path, data: bytes) -> None:
    """Write via a temp file in the same directory and os.replace: the target is
    either the complete new file or untouched, and no temp file survives a failure."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(prefix=".dtmm-", suffix=".tmp", dir=directory)
    except OSError as e:
        raise ModelError(f"cannot write {path}: {e.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        umask = os.umask(0)  # mkstemp makes 0600; give the file the usual mode
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(e, OSError):
            raise ModelError(f"cannot write {path}: {e.strerror}") from None
        raise


# -- tensors and operators ----------------------------------------------------------
def opcode_of(model, op):
    """(builtin code, custom code str or None) of an operator; handles the
    deprecated_builtin_code field of old files."""
    oc = model.operatorCodes[op.opcodeIndex]
    code = max(int(oc.builtinCode), int(oc.deprecatedBuiltinCode))
    return code, (text(oc.customCode) if oc.customCode is not None else None)


def op_name(model, op) -> str:
    code, custom = opcode_of(model, op)
    if code == BuiltinOperator.CUSTOM:
        return custom or "CUSTOM"
    return BUILTIN_NAMES.get(code, f"BUILTIN_{code}")


def is_dtmm_op(model, op) -> bool:
    code, custom = opcode_of(model, op)
    return code == BuiltinOperator.CUSTOM and custom == DTMM_CUSTOM_CODE


def buffer_data(model, tensor):
    """Raw bytes (uint8 numpy array) of a constant tensor, or None."""
    if tensor.buffer == 0:
        return None
    data = model.buffers[tensor.buffer].data
    if data is None or len(data) == 0:
        return None
    return np.asarray(data, np.uint8)


def tensor_value(model, tensor, what: str = "tensor"):
    """Constant tensor as a numpy array of its shape, or None if not constant."""
    raw = buffer_data(model, tensor)
    if raw is None:
        return None
    dtype = NUMPY_DTYPES.get(tensor.type)
    if dtype is None:
        raise ModelError(f"{what} {text(tensor.name)!r} has unsupported constant type "
                         f"{type_name(tensor.type)}")
    shape = tuple(int(d) for d in (tensor.shape if tensor.shape is not None else []))
    count = int(np.prod(shape)) if shape else 1
    if raw.size != count * np.dtype(dtype).itemsize:
        raise ModelError(f"{what} {text(tensor.name)!r}: buffer holds {raw.size} bytes, "
                         f"shape {list(shape)} of {type_name(tensor.type)} needs "
                         f"{count * np.dtype(dtype).itemsize}")
    return np.frombuffer(raw.tobytes(), dtype=dtype).reshape(shape)


def shape_of(tensor) -> tuple:
    return tuple(int(d) for d in (tensor.shape if tensor.shape is not None else []))


def quant_of(tensor):
    """(scales float32 array, zero points int64 array, quantized dimension)."""
    q = tensor.quantization
    if q is None or q.scale is None or len(q.scale) == 0:
        return np.zeros(0, np.float32), np.zeros(0, np.int64), 0
    zp = np.asarray(q.zeroPoint if q.zeroPoint is not None else [], np.int64)
    return np.asarray(q.scale, np.float32), zp, int(q.quantizedDimension)


# -- custom options -----------------------------------------------------------------
def dumps_options(options: dict) -> np.ndarray:
    return np.frombuffer(bytes(flexbuffers.Dumps(options)), np.uint8).copy()


def loads_options(raw, what: str) -> dict:
    from dtmm.errors import FormatError

    if raw is None or len(raw) == 0:
        raise FormatError(f"{what}: custom options are missing")
    if not isinstance(raw, (bytes, bytearray)):  # object API: list / uint8 array
        raw = np.asarray(raw, np.uint8).tobytes()
    try:
        value = flexbuffers.Loads(bytes(raw))
    except Exception as e:
        raise FormatError(f"{what}: custom options are not a flexbuffer "
                          f"({type(e).__name__})") from None
    if not isinstance(value, dict):
        raise FormatError(f"{what}: custom options are not a flexbuffer map")
    return value
