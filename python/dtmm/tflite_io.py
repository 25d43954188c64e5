"""Deprecated index-level helpers over the schema's ModelT, for code not yet moved to
:mod:`dtmm.core.tflite` (the object model: the only reader and writer). Every
function here delegates to the core; new code uses ``Model.read`` / ``Model.save``.
"""

from __future__ import annotations

from dtmm.core import contract
from dtmm.core.contract import CONV_2D
from dtmm.core.tflite import (BUILTIN_NAMES, NUMPY_DTYPES, TENSOR_TYPE_NAMES,  # noqa: F401
                              BuiltinOperator, Buffer, Model, OperatorCode, Tensor,
                              TensorType, pack, read_file, schema, text, type_name,
                              write_atomic)

DTMM_CUSTOM_CODE = CONV_2D.custom_code


def load_model(buf: bytes, what: str = "input"):
    """The validated schema ModelT of a .tflite (ModelError if invalid)."""
    return Model.read(buf, what)._t


def save_model(model_t) -> bytes:
    return pack(model_t)


def _tensor(model_t, tensor_t) -> Tensor:
    return Tensor(tensor_t, Buffer(model_t.buffers[tensor_t.buffer]))


def opcode_of(model_t, op_t):
    oc = OperatorCode(model_t.operatorCodes[op_t.opcodeIndex])
    return oc.builtin, oc.custom_code


def op_name(model_t, op_t) -> str:
    return OperatorCode(model_t.operatorCodes[op_t.opcodeIndex]).name


def is_dtmm_op(model_t, op_t) -> bool:
    return OperatorCode(model_t.operatorCodes[op_t.opcodeIndex]).is_custom(DTMM_CUSTOM_CODE)


def buffer_data(model_t, tensor_t):
    return None if tensor_t.buffer == 0 else _tensor(model_t, tensor_t).data


def tensor_value(model_t, tensor_t, what: str = "tensor"):
    return _tensor(model_t, tensor_t).value(what)


def shape_of(tensor_t) -> tuple:
    return Tensor(tensor_t, None).shape


def quant_of(tensor_t):
    return Tensor(tensor_t, None).quant()


def dumps_options(options: dict):
    return contract.encode_map(options)


def loads_options(raw, what: str) -> dict:
    return contract.decode_map(raw, what)
