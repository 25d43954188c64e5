"""Run DTMM models in TFLite Micro's Python interpreter.

    from dtmm import tflm
    outputs = tflm.run("model_dtmm.tflite", [x])          # list of numpy arrays
    interp = tflm.Interpreter("model_dtmm.tflite")         # or keep one around
    interp.set_input(x, 0); interp.invoke(); y = interp.get_output(0)

The interpreter comes from a build directory made by
`dtmm_ops/python/build.sh TFLM_ROOT DIR`: DIR holds `_runtime*.so`, TFLM's
interpreter extension built at the supported TFLM commit with the DTMM op and
`DtmmRegisterer` linked in. Name it with the `lib_dir` argument or the
`DTMM_TFLM_LIB` environment variable. The tflite-micro wheel is not used: its
extension is built from a newer TFLM whose C++ ABI differs (docs/tflm.md).
"""

from __future__ import annotations

import ctypes
import glob
import importlib.machinery
import importlib.util
import os
import sys
from typing import Sequence

import numpy as np

from dtmm.core.errors import DtmmError

ENV_VAR = "DTMM_TFLM_LIB"
REGISTERER = "DtmmRegisterer"
SUPPORTED_TFLM_COMMIT = "90b983c2b3f1480642e040bbd2ddb37b998f3424"

_HOW = (f"build it with `dtmm_ops/python/build.sh TFLM_ROOT DIR` (TFLM at "
        f"{SUPPORTED_TFLM_COMMIT[:12]}) and set {ENV_VAR}=DIR")


class TflmUnavailableError(DtmmError):
    """No usable TFLM Python runtime with the DTMM ops was found."""


_loaded: dict = {}


def _resolve_dir(lib_dir) -> str:
    d = lib_dir if lib_dir is not None else os.environ.get(ENV_VAR, "")
    if not d:
        raise TflmUnavailableError(f"no TFLM runtime with DTMM ops: {ENV_VAR} is not "
                                   f"set; {_HOW}")
    d = os.path.abspath(os.fspath(d))
    if os.path.isfile(d):  # accept a path to libdtmm_tflm.so itself
        d = os.path.dirname(d)
    if not os.path.isdir(d):
        raise TflmUnavailableError(f"{ENV_VAR}={d} is not a directory; {_HOW}")
    return d


def load_runtime(lib_dir=None):
    """Load the interpreter extension and the DTMM registerer from `lib_dir`
    (default: $DTMM_TFLM_LIB); returns the `_runtime` extension module. Raises
    TflmUnavailableError saying why when there is no matching build."""
    d = _resolve_dir(lib_dir)
    if d in _loaded:
        return _loaded[d]
    if _loaded:
        raise TflmUnavailableError(
            f"a TFLM runtime from {next(iter(_loaded))} is already loaded in this "
            f"process; cannot load a second one from {d}")
    suffixes = importlib.machinery.EXTENSION_SUFFIXES
    runtimes = [p for s in suffixes for p in glob.glob(os.path.join(d, "_runtime" + s))]
    if not runtimes:
        raise TflmUnavailableError(f"{d} has no _runtime{suffixes[0]} for this Python "
                                   f"({sys.version.split()[0]}); {_HOW}")
    # RTLD_GLOBAL: the interpreter finds DtmmRegisterer with dlsym(RTLD_DEFAULT).
    # The extension exports only PyInit__runtime and DtmmRegisterer, so making it
    # global cannot clash with another TFLM in the process.
    flags = getattr(os, "RTLD_GLOBAL", 0) | getattr(os, "RTLD_NOW", 0)
    try:
        ctypes.CDLL(runtimes[0], mode=flags)
        spec = importlib.util.spec_from_file_location("_runtime", runtimes[0])
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    except (OSError, ImportError) as e:
        raise TflmUnavailableError(f"cannot load {runtimes[0]}: {e}; {_HOW}") from e
    try:
        ctypes.CDLL(runtimes[0], mode=flags)[REGISTERER]
    except AttributeError as e:
        raise TflmUnavailableError(f"{runtimes[0]} has no {REGISTERER}: it is not a "
                                   f"dtmm_ops/python/build.sh build; {_HOW}") from e
    _loaded[d] = module
    return module


def _model_bytes(model) -> bytes:
    if isinstance(model, (bytes, bytearray, memoryview)):
        return bytes(model)
    with open(os.fspath(model), "rb") as f:
        return f.read()


def resource_variable_count(data: bytes) -> int:
    """Distinct resource variables of a model (VAR_HANDLE ops by shared name), what
    TFLM's MicroResourceVariables must hold for a streaming model; the count
    tflite_micro.runtime.Interpreter computes for the wheel's interpreter."""
    from dtmm.core.tflite import BuiltinOperator, Model, text

    names = set()
    for sg in Model.read(data, "model").subgraphs:
        for op in sg.operators:
            if op.opcode.builtin == BuiltinOperator.VAR_HANDLE:
                o = op.builtin_options
                names.add(text(getattr(o, "sharedName", None)))
    return len(names)


class Interpreter:
    """A TFLM MicroInterpreter with the DTMM ops registered (and room for the
    resource variables of streaming models)."""

    def __init__(self, model, lib_dir=None, arena_size: int | None = None):
        runtime = load_runtime(lib_dir)
        data = _model_bytes(model)
        if arena_size is None:
            arena_size = max(64 * 1024, 10 * len(data))
        try:
            # Arguments as tflite_micro.runtime.Interpreter passes them: its
            # resource variable count, kAllocationRecording, no alt decompression memory.
            self._interp = runtime.InterpreterWrapper(
                data, [REGISTERER], int(arena_size), resource_variable_count(data),
                runtime.PythonInterpreterConfig.kAllocationRecording, 0)
        except RuntimeError as e:
            raise DtmmError(f"TFLM could not prepare the model: {e}") from e

    def set_input(self, x, index: int = 0) -> None:
        self._interp.SetInputTensor(np.ascontiguousarray(x), index)

    def invoke(self) -> None:
        try:
            self._interp.Invoke()
        except RuntimeError as e:
            raise DtmmError(f"TFLM invoke failed: {e}") from e

    def get_output(self, index: int = 0) -> np.ndarray:
        return np.array(self._interp.GetOutputTensor(index))

    def get_input_details(self, index: int = 0) -> dict:
        return self._interp.GetInputTensorDetails(index)

    def get_output_details(self, index: int = 0) -> dict:
        return self._interp.GetOutputTensorDetails(index)

    def reset(self) -> None:
        self._interp.Reset()


def run(model, inputs: Sequence[np.ndarray], lib_dir=None,
        arena_size: int | None = None, num_outputs: int = 1) -> list:
    """One inference of `model` (path or bytes) in TFLM; returns its outputs."""
    interp = Interpreter(model, lib_dir=lib_dir, arena_size=arena_size)
    for i, x in enumerate(inputs):
        interp.set_input(x, i)
    interp.invoke()
    return [interp.get_output(i) for i in range(num_outputs)]
