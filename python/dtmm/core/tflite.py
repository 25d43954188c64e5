"""The object model of a .tflite file: the only reader and writer in dtmm.

    model = Model.read(buf, "m.tflite")      # validated, or ModelError
    sg = model.subgraphs[0]
    op = sg.operators[3]
    op.opcode.name, op.inputs[1].name, op.inputs[1].value()
    t = model.add_constant(sg, "w/dtmm_values", np.zeros((4, 8), np.int8))
    op.inputs[1] = t
    out = model.save()                       # indices assigned here; orphans dropped

In the manner of TFLM's compression/model_editor.py, tensors, buffers, operator codes
and subgraphs reference each other as Python objects; there are no indices to keep
consistent while editing. ``save`` numbers what is reachable: tensors used by an
operator, a subgraph's inputs/outputs, a signature, or marked variable (in their list
order, new ones last), and buffers used by a kept tensor or the metadata (buffer 0,
the empty sentinel, always first); what editing left unreferenced (the dense filter
of a replaced conv) is dropped. Tensors and buffers the file itself held
unreferenced are kept as read: a rewrite changes nothing it did not touch. Everything the schema holds that dtmm does not
touch (options tables, sparsity, shape signatures, ...) rides along in the schema's
own object-API records (``_t``), so it is written back unchanged.

Parsing and packing are the flatbuffers object API of the schema module in the
tflite-micro wheel (``schema_py_generated``); nothing here reads bytes by hand.
Before any parse, ``Model.read`` runs TensorFlow Lite's flatbuffer verifier
(``verify_flatbuffer``: flatbuffers' generated ``VerifyModelBuffer``, as
``FlatBufferModel::VerifyAndBuildFromBuffer`` runs it); the Python flatbuffers
reader has no verifier and trusts every offset.
Operator codes of the input file are kept even when no operator uses them any more
(the table is part of what the file says it needs; dropping an entry would also
renumber the others); codes added while editing are written only when used.
"""

from __future__ import annotations

import glob
import hashlib
import os
import subprocess
import sys
import tempfile

import flatbuffers
import numpy as np

from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

from dtmm.core.errors import ModelError

FILE_IDENTIFIER = b"TFL3"
MAX_FLATBUFFER_BYTES = (1 << 31) - 1  # flatbuffers' 32-bit offsets

BuiltinOperator = schema.BuiltinOperator
TensorType = schema.TensorType
CustomOptionsFormat = schema.CustomOptionsFormat

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
_TYPE_OF_DTYPE = {np.dtype(v): k for k, v in NUMPY_DTYPES.items()}


def type_name(tensor_type: int) -> str:
    return TENSOR_TYPE_NAMES.get(tensor_type, f"type {tensor_type}")


def text(s) -> str:
    """Schema strings come back as bytes; show them as str."""
    if s is None:
        return ""
    return s.decode("utf-8", "replace") if isinstance(s, (bytes, bytearray)) else str(s)


def _ints(vec) -> list:
    return [] if vec is None else [int(i) for i in vec]


# -- flatbuffer verification -----------------------------------------------------------
# TensorFlow Lite's interpreter extension runs the flatbuffers Verifier generated from
# the schema before it builds anything; its message for a rejected file:
_NOT_A_FLATBUFFER = "not a valid Flatbuffer"
_WRAPPER = "_pywrap_tensorflow_interpreter_wrapper"
_WRAPPER_IN_TF = "tensorflow.lite.python.interpreter_wrapper." + _WRAPPER
_OP_RESOLVER_WITHOUT_DELEGATES = 3  # tf.lite OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
# Run in a child process when TensorFlow is not imported here: the extension loads in
# milliseconds on its own, while `import tensorflow` takes seconds; loading it in this
# process outside the tensorflow package would break a later `import tensorflow`
# (pybind11 registers its types once). The child also keeps a crash in TFLite's model
# builder from taking the caller down.
_VERIFIER_CHILD = r"""
import importlib.machinery, importlib.util, sys
path, name = sys.argv[1], sys.argv[2]
loader = importlib.machinery.ExtensionFileLoader(name, path)
module = importlib.util.module_from_spec(
    importlib.util.spec_from_file_location(name, path, loader=loader))
loader.exec_module(module)
try:
    module.CreateWrapperFromBuffer(sys.stdin.buffer.read(), int(sys.argv[3]), [], [],
                                   False, True, 1, False)
except Exception as e:  # the builder's own complaints are not the verifier's
    sys.stdout.write(str(e))
"""
_verified: dict = {}  # sha256 of a buffer -> "" (valid) or the verifier's message


def _wrapper_library() -> str | None:
    """TensorFlow Lite's interpreter extension on sys.path, found without importing
    the tensorflow package."""
    for entry in sys.path:
        for path in glob.glob(os.path.join(entry or ".", "tensorflow", "lite", "python",
                                           _WRAPPER + "*.so")):
            return path
    return None


def _verifier_message(buf: bytes, what: str) -> str:
    """What TFLite's model loader says about `buf` ('' when it builds)."""
    module = sys.modules.get(_WRAPPER_IN_TF)
    if module is not None:
        try:
            module.CreateWrapperFromBuffer(buf, _OP_RESOLVER_WITHOUT_DELEGATES, [], [],
                                           False, True, 1, False)
        except Exception as e:  # noqa: BLE001 - the message says what it was
            return str(e)
        return ""
    library = _wrapper_library()
    if library is None:
        raise ModelError(f"cannot verify {what}: TensorFlow Lite's flatbuffer verifier "
                         "(the tensorflow package) is not installed")
    try:
        p = subprocess.run([sys.executable, "-c", _VERIFIER_CHILD, library, _WRAPPER,
                            str(_OP_RESOLVER_WITHOUT_DELEGATES)], input=buf,
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise ModelError(f"cannot verify {what}: TensorFlow Lite's flatbuffer verifier "
                         f"did not run ({type(e).__name__})") from None
    if p.returncode != 0:
        raise ModelError(f"{what} is not a valid TFLite flatbuffer: TensorFlow Lite's "
                         f"model loader crashed on it (exit {p.returncode})")
    return p.stdout.decode("utf-8", "replace")


def verify_flatbuffer(buf: bytes, what: str = "input") -> None:
    """ModelError unless TensorFlow Lite's flatbuffer verifier accepts `buf` (every
    offset, vector length, string and table inside the buffer, nesting and table
    counts bounded, the "TFL3" identifier)."""
    key = hashlib.sha256(buf).digest()
    if key not in _verified:
        if len(_verified) > 256:
            _verified.clear()
        message = _verifier_message(buf, what)
        _verified[key] = message.strip().splitlines()[0] if _NOT_A_FLATBUFFER in message \
            else ""
    if _verified[key]:
        raise ModelError(f"{what} is not a valid TFLite flatbuffer: TensorFlow Lite's "
                         "flatbuffer verifier rejects it")


# -- the objects ---------------------------------------------------------------------
class Buffer:
    """Raw bytes of constant data (``data`` is a uint8 array or None)."""

    def __init__(self, t=None, data=None):
        self._t = t if t is not None else schema.BufferT()
        if data is not None:
            self._t.data = np.frombuffer(np.ascontiguousarray(data).tobytes(),
                                         np.uint8).copy()

    @property
    def data(self):
        d = self._t.data
        return None if d is None or len(d) == 0 else np.asarray(d, np.uint8)

    @data.setter
    def data(self, value):
        self._t.data = None if value is None else np.frombuffer(
            np.ascontiguousarray(value).tobytes(), np.uint8).copy()


class Tensor:
    """A tensor of one subgraph. ``buffer`` is a Buffer (the sentinel for tensors
    without data) and survives renumbering."""

    def __init__(self, t, buffer: Buffer):
        self._t = t
        self.buffer = buffer

    name = property(lambda self: text(self._t.name),
                    lambda self, v: setattr(self._t, "name", v))
    dtype = property(lambda self: int(self._t.type),
                     lambda self, v: setattr(self._t, "type", int(v)))
    is_variable = property(lambda self: bool(self._t.isVariable))

    @property
    def shape(self) -> tuple:
        return tuple(_ints(self._t.shape))

    @shape.setter
    def shape(self, value):
        self._t.shape = [int(d) for d in value]

    @property
    def quantization(self):
        return self._t.quantization

    @quantization.setter
    def quantization(self, q):
        self._t.quantization = q

    @property
    def data(self):
        """Raw bytes (uint8 array) of a constant tensor, or None."""
        return self.buffer.data if self.buffer is not None else None

    @property
    def is_constant(self) -> bool:
        return self.data is not None

    @property
    def size(self) -> int:
        """Element count (1 for a scalar, 0 for an empty dimension)."""
        return int(np.prod(self.shape)) if self.shape else 1

    def value(self, what: str = "tensor"):
        """Constant tensor as a numpy array of its shape, or None if not constant."""
        raw = self.data
        if raw is None:
            return None
        dtype = NUMPY_DTYPES.get(self.dtype)
        if dtype is None:
            raise ModelError(f"{what} {self.name!r} has unsupported constant type "
                             f"{type_name(self.dtype)}")
        need = self.size * np.dtype(dtype).itemsize
        if raw.size != need:
            raise ModelError(f"{what} {self.name!r}: buffer holds {raw.size} bytes, "
                             f"shape {list(self.shape)} of {type_name(self.dtype)} "
                             f"needs {need}")
        return np.frombuffer(raw.tobytes(), dtype=dtype).reshape(self.shape)

    def quant(self):
        """(scales float32 array, zero points int64 array, quantized dimension)."""
        q = self._t.quantization
        if q is None or q.scale is None or len(q.scale) == 0:
            return np.zeros(0, np.float32), np.zeros(0, np.int64), 0
        zp = np.asarray(q.zeroPoint if q.zeroPoint is not None else [], np.int64)
        return np.asarray(q.scale, np.float32), zp, int(q.quantizedDimension)

    def __repr__(self):
        return f"Tensor({self.name!r}, {list(self.shape)}, {type_name(self.dtype)})"


class OperatorCode:
    def __init__(self, t):
        self._t = t

    @property
    def builtin(self) -> int:
        # old files keep the code in deprecated_builtin_code (int8)
        return max(int(self._t.builtinCode), int(self._t.deprecatedBuiltinCode))

    @property
    def custom_code(self):
        return text(self._t.customCode) if self._t.customCode is not None else None

    @property
    def version(self) -> int:
        return int(self._t.version)

    @property
    def name(self) -> str:
        if self.builtin == BuiltinOperator.CUSTOM:
            return self.custom_code or "CUSTOM"
        return BUILTIN_NAMES.get(self.builtin, f"BUILTIN_{self.builtin}")

    def is_custom(self, code: str) -> bool:
        return self.builtin == BuiltinOperator.CUSTOM and self.custom_code == code


class Operator:
    """``inputs``/``outputs``/``intermediates``: lists of Tensor, None where the
    schema has -1 (an omitted optional input)."""

    def __init__(self, t, opcode: OperatorCode, inputs, outputs, intermediates):
        self._t = t
        self.opcode = opcode
        self.inputs = inputs
        self.outputs = outputs
        self.intermediates = intermediates  # None when the field is absent

    @classmethod
    def custom(cls, opcode: OperatorCode, inputs, outputs, options: np.ndarray):
        t = schema.OperatorT()
        t.customOptions = options
        t.customOptionsFormat = CustomOptionsFormat.FLEXBUFFERS
        return cls(t, opcode, list(inputs), list(outputs), None)

    name = property(lambda self: self.opcode.name)
    builtin_options = property(lambda self: self._t.builtinOptions)
    builtin_options_type = property(lambda self: self._t.builtinOptionsType)
    custom_options_format = property(lambda self: int(self._t.customOptionsFormat))

    @property
    def custom_options(self):
        c = self._t.customOptions
        return None if c is None else np.asarray(c, np.uint8)

    def tensors(self):
        return [t for vec in (self.inputs, self.outputs, self.intermediates or [])
                for t in vec if t is not None]


class Subgraph:
    def __init__(self, t, tensors, inputs, outputs, operators):
        self._t = t
        self.tensors = tensors
        self.inputs = inputs
        self.outputs = outputs
        self.operators = operators

    name = property(lambda self: text(self._t.name))


class SignatureDef:
    """``inputs``/``outputs``: lists of (signature name, Tensor)."""

    def __init__(self, t, subgraph: Subgraph, inputs, outputs):
        self._t = t
        self.subgraph = subgraph
        self.inputs = inputs
        self.outputs = outputs

    key = property(lambda self: text(self._t.signatureKey))


class Metadata:
    def __init__(self, t, buffer: Buffer):
        self._t = t
        self.buffer = buffer

    name = property(lambda self: text(self._t.name))


# -- the model ------------------------------------------------------------------------
class Model:
    def __init__(self, t):
        self._t = t
        self.buffers: list = []
        self.operator_codes: list = []
        self.subgraphs: list = []
        self.signature_defs: list = []
        self.metadata: list = []
        self.metadata_buffers: list = []
        self._file_codes: set = set()
        self._as_read: set = set()  # unreferenced tensors/buffers of the file

    # -- reading -------------------------------------------------------------------
    @classmethod
    def read(cls, buf, what: str = "input") -> "Model":
        """Parse and check a .tflite flatbuffer; ModelError if it is not one."""
        buf = bytes(buf)
        if len(buf) > MAX_FLATBUFFER_BYTES:
            raise ModelError(f"{what} is larger than 2 GB; models with external "
                             "buffers are not supported")
        if len(buf) < 8:
            raise ModelError(f"{what} is not a TFLite flatbuffer ({len(buf)} bytes)")
        if buf[4:8] != FILE_IDENTIFIER:
            raise ModelError(f"{what} is not a TFLite model: file identifier is "
                             f"{buf[4:8]!r}, expected {FILE_IDENTIFIER!r}")
        verify_flatbuffer(buf, what)
        try:
            t = schema.ModelT.InitFromPackedBuf(buf, 0)
        except Exception:  # the generated reader raises whatever struct/numpy raise
            raise ModelError(f"{what} is not a valid TFLite flatbuffer: truncated or "
                             f"corrupt ({len(buf)} bytes)") from None
        return cls._resolve(t, what)

    @classmethod
    def _resolve(cls, t, what: str) -> "Model":
        m = cls(t)
        if not t.subgraphs:
            raise ModelError(f"{what} has no subgraphs")
        if getattr(t, "externalBuffers", None) or getattr(t, "externalBufferGroups", None):
            raise ModelError(f"{what} uses external buffers: not supported")
        for b in t.buffers or []:
            if b.offset or b.size:
                raise ModelError(f"{what} stores buffers outside the flatbuffer "
                                 "(offset/size, models > 2 GB): not supported")
        m.buffers = [Buffer(b) for b in t.buffers or []]
        if not m.buffers:  # the empty sentinel every file starts with
            m.buffers = [Buffer()]
        n_b = len(m.buffers)

        def buffer(i, where):
            if not 0 <= int(i) < n_b:
                raise ModelError(f"{what}: {where} points at buffer {i} of {n_b}")
            return m.buffers[int(i)]

        m.operator_codes = [OperatorCode(c) for c in t.operatorCodes or []]
        m._file_codes = {id(c) for c in m.operator_codes}
        for si, sgt in enumerate(t.subgraphs):
            tensors = []
            for ti, tt in enumerate(sgt.tensors or []):
                if getattr(tt, "externalBuffer", 0):
                    raise ModelError(f"{what}: tensor {text(tt.name)!r} uses an "
                                     "external buffer: not supported")
                tensors.append(Tensor(tt, buffer(tt.buffer, f"subgraph {si} tensor {ti}")))
            n = len(tensors)

            def ref(vec, where, optional):
                out = []
                for i in _ints(vec):
                    if optional and i == -1:
                        out.append(None)
                    elif 0 <= i < n:
                        out.append(tensors[i])
                    else:
                        raise ModelError(f"{what}: {where} refers to tensor {i}, outside "
                                         f"its subgraph's {n} tensors")
                return out

            ops = []
            for oi, ot in enumerate(sgt.operators or []):
                where = f"subgraph {si} operator {oi}"
                if not 0 <= ot.opcodeIndex < len(m.operator_codes):
                    raise ModelError(f"{what}: {where} has opcode index "
                                     f"{ot.opcodeIndex} of {len(m.operator_codes)}")
                ops.append(Operator(
                    ot, m.operator_codes[ot.opcodeIndex], ref(ot.inputs, where, True),
                    ref(ot.outputs, where, True),
                    None if ot.intermediates is None else ref(ot.intermediates, where,
                                                              True)))
            m.subgraphs.append(Subgraph(sgt, tensors,
                                        ref(sgt.inputs, f"subgraph {si} inputs", False),
                                        ref(sgt.outputs, f"subgraph {si} outputs", False),
                                        ops))
        for sd in t.signatureDefs or []:
            key = text(sd.signatureKey)
            if not 0 <= sd.subgraphIndex < len(m.subgraphs):
                raise ModelError(f"{what}: signature {key!r} points at subgraph "
                                 f"{sd.subgraphIndex}")
            sg = m.subgraphs[sd.subgraphIndex]

            def maps(vec):
                out = []
                for tm in vec or []:
                    if not 0 <= tm.tensorIndex < len(sg.tensors):
                        raise ModelError(f"{what}: signature {key!r} points at tensor "
                                         f"{tm.tensorIndex} of {len(sg.tensors)}")
                    out.append((tm, sg.tensors[tm.tensorIndex]))
                return out

            m.signature_defs.append(SignatureDef(sd, sg, maps(sd.inputs), maps(sd.outputs)))
        m.metadata = [Metadata(md, buffer(md.buffer, f"metadata {text(md.name)!r}"))
                      for md in t.metadata or []]
        m.metadata_buffers = [buffer(i, "metadata_buffer") for i in _ints(t.metadataBuffer)]
        # What the file itself holds unreferenced stays: saving drops only what
        # editing orphaned, so a rewrite changes nothing it did not touch.
        for sg in m.subgraphs:
            live = {id(x) for x in m._live_tensors(sg)}
            m._as_read.update(id(x) for x in sg.tensors if id(x) not in live)
        used = m._used_buffers([sg.tensors for sg in m.subgraphs])
        m._as_read.update(id(b) for b in m.buffers if id(b) not in used)
        return m

    # -- editing -------------------------------------------------------------------
    def add_buffer(self, data) -> Buffer:
        b = Buffer(data=data)
        self.buffers.append(b)
        return b

    def add_constant(self, subgraph: Subgraph, name: str, array: np.ndarray,
                     dtype: int | None = None, quantization=None) -> Tensor:
        """A new constant tensor holding `array` (dtype from the array unless given)."""
        array = np.ascontiguousarray(array)
        t = schema.TensorT()
        t.shape = [int(d) for d in array.shape]
        t.type = _TYPE_OF_DTYPE[array.dtype] if dtype is None else int(dtype)
        t.name = name
        t.quantization = quantization
        tensor = Tensor(t, self.add_buffer(array))
        subgraph.tensors.append(tensor)
        return tensor

    def opcode(self, builtin: int, custom_code: str | None = None,
               version: int = 1) -> OperatorCode:
        """The operator code for (builtin, custom code), added if not there."""
        for oc in self.operator_codes:
            if oc.builtin == builtin and (builtin != BuiltinOperator.CUSTOM
                                          or oc.custom_code == custom_code):
                return oc
        t = schema.OperatorCodeT()
        t.builtinCode = builtin
        t.deprecatedBuiltinCode = min(builtin, 127)
        t.customCode = custom_code
        t.version = version
        oc = OperatorCode(t)
        self.operator_codes.append(oc)
        return oc

    def users(self):
        """How many references each tensor (by id) and each buffer (by id) has: an
        operator input, output or intermediate, a subgraph input or output; a tensor
        or a metadata entry."""
        tensor_users, buffer_users = {}, {}
        for sg in self.subgraphs:
            for t in sg.inputs + sg.outputs + [t for op in sg.operators for t in op.tensors()]:
                if t is not None:
                    tensor_users[id(t)] = tensor_users.get(id(t), 0) + 1
            for t in sg.tensors:
                buffer_users[id(t.buffer)] = buffer_users.get(id(t.buffer), 0) + 1
        for md in self.metadata:
            buffer_users[id(md.buffer)] = buffer_users.get(id(md.buffer), 0) + 1
        return tensor_users, buffer_users

    # -- writing -------------------------------------------------------------------
    def _live_tensors(self, sg: Subgraph) -> list:
        used = {id(t) for t in sg.inputs + sg.outputs}
        for op in sg.operators:
            used.update(id(t) for t in op.tensors())
        for sd in self.signature_defs:
            if sd.subgraph is sg:
                used.update(id(t) for _, t in sd.inputs + sd.outputs)
        return [t for t in sg.tensors
                if id(t) in used or t.is_variable or id(t) in self._as_read]

    def _used_buffers(self, tensor_lists) -> set:
        used = {id(self.buffers[0])}  # the empty sentinel
        for ts in tensor_lists:
            used.update(id(t.buffer) for t in ts)
        used.update(id(md.buffer) for md in self.metadata)
        used.update(id(b) for b in self.metadata_buffers)
        return used

    def save(self) -> bytes:
        """Number everything reachable, drop what editing orphaned, pack. The model
        objects stay usable (saving again gives the same bytes)."""
        live = [self._live_tensors(sg) for sg in self.subgraphs]
        used = self._used_buffers(live) | self._as_read
        buffers = [b for b in self.buffers if id(b) in used]
        b_index = {id(b): i for i, b in enumerate(buffers)}
        codes = [oc for oc in self.operator_codes
                 if id(oc) in self._file_codes
                 or any(op.opcode is oc for sg in self.subgraphs for op in sg.operators)]
        c_index = {id(oc): i for i, oc in enumerate(codes)}
        t = self._t
        t.buffers = [b._t for b in buffers]
        t.operatorCodes = [oc._t for oc in codes]
        t.subgraphs = []
        for sg, ts in zip(self.subgraphs, live):
            index = {id(x): i for i, x in enumerate(ts)}

            def ix(vec):
                return [index[id(x)] if x is not None else -1 for x in vec]

            for x in ts:
                x._t.buffer = b_index[id(x.buffer)]
            for op in sg.operators:
                op._t.opcodeIndex = c_index[id(op.opcode)]
                op._t.inputs = ix(op.inputs)
                op._t.outputs = ix(op.outputs)
                op._t.intermediates = None if op.intermediates is None else ix(op.intermediates)
            sg._t.tensors = [x._t for x in ts]
            sg._t.inputs = ix(sg.inputs)
            sg._t.outputs = ix(sg.outputs)
            sg._t.operators = [op._t for op in sg.operators]
            t.subgraphs.append(sg._t)
        if self.signature_defs or t.signatureDefs is not None:
            t.signatureDefs = [sd._t for sd in self.signature_defs]
        if self.metadata or t.metadata is not None:
            t.metadata = [md._t for md in self.metadata]
        s_index = {id(sg): i for i, sg in enumerate(self.subgraphs)}
        for sd in self.signature_defs:
            index = {id(x): i for i, x in enumerate(live[s_index[id(sd.subgraph)]])}
            sd._t.subgraphIndex = s_index[id(sd.subgraph)]
            for tm, x in sd.inputs + sd.outputs:
                tm.tensorIndex = index[id(x)]
        for md in self.metadata:
            md._t.buffer = b_index[id(md.buffer)]
        if t.metadataBuffer is not None:
            t.metadataBuffer = [b_index[id(b)] for b in self.metadata_buffers]
        return pack(t)


def pack(model_t) -> bytes:
    """Bytes of a schema ModelT with the "TFL3" file identifier."""
    builder = flatbuffers.Builder(1024)
    builder.Finish(model_t.Pack(builder), file_identifier=FILE_IDENTIFIER)
    out = bytes(builder.Output())
    if len(out) > MAX_FLATBUFFER_BYTES:
        raise ModelError("the model would be larger than 2 GB")
    return out


# -- files ----------------------------------------------------------------------------
def read_file(path) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise ModelError(f"cannot read {path}: {e.strerror}") from None


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
