"""The DTMM kernel library (dtmm_ops/dtmm_*.c) as a ctypes-loaded shared library.

    lib = load()                          # builds once per source hash, then cached
    status = lib.validate(dims, params, filt)
    y = lib.conv(x, dims, params, filt)   # int8 NHWC, after validate returned OK

The library is compiled at test time with the host C compiler (`CC`, default cc)
from the sources found by glob, so that a split of dtmm_conv_s8.c into several
files needs no change here; only the public header dtmm_conv_s8.h is relied on.
Build variants: "default" (every driver, as x86 compiles them) and "im2col"
(-DDTMM_CONV_DRIVERS with only im2col and the block driver: every filterlet layer
through the fallback a build without its driver takes). The cache directory is
$DTMM_FUZZ_CACHE or a per-user directory under the system temp dir.
"""

from __future__ import annotations

import ctypes
import glob
import hashlib
import os
import subprocess
import tempfile
from dataclasses import dataclass

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OPS = os.path.join(ROOT, "dtmm_ops")
VARIANTS = {"default": [],
            "im2col": ["-DDTMM_CONV_DRIVERS=DTMM_USE_IM2COL+DTMM_USE_POINTWISE_BLOCKS"]}

STATUS_NAMES = {0: "DTMM_OK", -1: "DTMM_ERR_ARG", -2: "DTMM_ERR_VERSION",
                -3: "DTMM_ERR_PARAMS", -4: "DTMM_ERR_BITMAP", -5: "DTMM_ERR_VALUES",
                -6: "DTMM_ERR_UNSUPPORTED"}


class Dims(ctypes.Structure):
    _fields_ = [(n, ctypes.c_int32) for n in (
        "batches", "input_h", "input_w", "input_c", "output_h", "output_w", "output_c",
        "kernel_h", "kernel_w")]


class Params(ctypes.Structure):
    _fields_ = [(n, ctypes.c_int32) for n in (
        "version", "stride_h", "stride_w", "dilation_h", "dilation_w", "pad_top",
        "pad_left", "input_zero_point", "output_offset", "activation_min",
        "activation_max")]


class Filter(ctypes.Structure):
    _fields_ = [("bitmap", ctypes.POINTER(ctypes.c_uint8)), ("bitmap_bytes", ctypes.c_int32),
                ("values", ctypes.POINTER(ctypes.c_int8)), ("num_filterlets", ctypes.c_int32),
                ("bias", ctypes.POINTER(ctypes.c_int32)),
                ("multiplier", ctypes.POINTER(ctypes.c_int32)),
                ("shift", ctypes.POINTER(ctypes.c_int32)),
                ("block_size", ctypes.c_int32)]  # B; 0 = C_in (version 1 filterlets)


def _i32(v) -> int:
    """Narrow like a C caller would (two's complement), so out-of-range Python ints
    reach the validator instead of raising in ctypes."""
    return ((int(v) + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)


@dataclass
class Layer:
    """Everything dtmm_conv_s8_validate sees, as numpy arrays (kept alive here)."""

    dims: dict
    params: dict
    bitmap: np.ndarray       # uint8
    values: np.ndarray       # int8 [rows, C_in] (rows = num_filterlets)
    bias: np.ndarray         # int32
    multiplier: np.ndarray   # int32
    shift: np.ndarray        # int32
    num_filterlets: int | None = None  # default: values rows
    padding: int = 0         # options padding (0 SAME, 1 VALID): not seen by the C API
    block_size: int = 0      # B of a version-2 block filter; 0 = C_in (filterlets)

    def structs(self):
        d = Dims(**{k: _i32(v) for k, v in self.dims.items()})
        p = Params(**{k: _i32(v) for k, v in self.params.items()})
        self._arrays = [np.ascontiguousarray(a, dt) for a, dt in (
            (self.bitmap, np.uint8), (self.values, np.int8), (self.bias, np.int32),
            (self.multiplier, np.int32), (self.shift, np.int32))]
        bm, vals, bias, mult, shift = self._arrays

        def ptr(a, ct):
            return a.ctypes.data_as(ctypes.POINTER(ct)) if a.size else None

        f = Filter(bitmap=ptr(bm, ctypes.c_uint8), bitmap_bytes=_i32(bm.size),
                   values=ptr(vals, ctypes.c_int8),
                   num_filterlets=_i32(self.num_filterlets if self.num_filterlets is not None
                                       else (vals.shape[0] if vals.ndim == 2 else 0)),
                   bias=ptr(bias, ctypes.c_int32), multiplier=ptr(mult, ctypes.c_int32),
                   shift=ptr(shift, ctypes.c_int32), block_size=_i32(self.block_size))
        return d, p, f


class KernelLib:
    def __init__(self, path: str):
        self.path = path
        self._lib = ctypes.CDLL(path)
        self._lib.dtmm_conv_s8_validate.restype = ctypes.c_int
        self._lib.dtmm_conv_s8_validate.argtypes = [ctypes.POINTER(Dims),
                                                    ctypes.POINTER(Params),
                                                    ctypes.POINTER(Filter)]
        self._lib.dtmm_conv_s8_get_buffer_size.restype = ctypes.c_int32
        self._lib.dtmm_conv_s8_get_buffer_size.argtypes = [ctypes.POINTER(Dims),
                                                           ctypes.POINTER(Params)]
        self._lib.dtmm_conv_s8.restype = ctypes.c_int
        self._lib.dtmm_conv_s8.argtypes = [ctypes.POINTER(Dims), ctypes.POINTER(Params),
                                           ctypes.POINTER(Filter), ctypes.c_void_p,
                                           ctypes.c_void_p, ctypes.c_void_p]

    def validate(self, layer: Layer) -> int:
        """dtmm_conv_s8_validate's status. The caller guarantees the per-channel
        arrays hold output_c entries (the validator reads that many)."""
        c_out = int(layer.dims["output_c"])
        for name in ("bias", "multiplier", "shift"):
            if 0 < c_out and getattr(layer, name).size < c_out:
                raise ValueError(f"{name} has {getattr(layer, name).size} entries for "
                                 f"C_out={c_out}: the C caller must check this first")
        d, p, f = layer.structs()
        return int(self._lib.dtmm_conv_s8_validate(ctypes.byref(d), ctypes.byref(p),
                                                   ctypes.byref(f)))

    def conv(self, x: np.ndarray, layer: Layer) -> np.ndarray:
        """dtmm_conv_s8 on int8 NHWC x; the layer must have validated."""
        d, p, f = layer.structs()
        x = np.ascontiguousarray(x, np.int8)
        if x.shape != (d.batches, d.input_h, d.input_w, d.input_c):
            raise ValueError(f"input shape {x.shape} does not match the dims")
        y = np.zeros((d.batches, d.output_h, d.output_w, d.output_c), np.int8)
        n = int(self._lib.dtmm_conv_s8_get_buffer_size(ctypes.byref(d), ctypes.byref(p)))
        scratch = np.zeros(max(n, 0) + 4, np.uint8)
        st = self._lib.dtmm_conv_s8(ctypes.byref(d), ctypes.byref(p), ctypes.byref(f),
                                    x.ctypes.data, y.ctypes.data,
                                    scratch.ctypes.data if n > 0 else None)
        if st != 0:
            raise RuntimeError(f"dtmm_conv_s8 returned {STATUS_NAMES.get(st, st)}")
        return y


def sources() -> list[str]:
    srcs = sorted(glob.glob(os.path.join(OPS, "dtmm_*.c")))
    if not srcs:
        raise FileNotFoundError(f"no kernel sources dtmm_*.c in {OPS}")
    return srcs


def cache_dir() -> str:
    d = os.environ.get("DTMM_FUZZ_CACHE") or os.path.join(
        tempfile.gettempdir(), f"dtmm-fuzz-cache-{os.getuid()}")
    os.makedirs(d, exist_ok=True)
    return d


_loaded: dict = {}


def load(variant: str = "default") -> KernelLib:
    """Build (if needed) and load the kernel library for `variant`."""
    if variant in _loaded:
        return _loaded[variant]
    srcs = sources()
    h = hashlib.sha256()
    flags = ["-O2", "-std=c99", "-fPIC", "-shared", "-I" + OPS] + VARIANTS[variant]
    h.update(" ".join(flags).encode())
    for s in srcs + [os.path.join(OPS, "dtmm_conv_s8.h")]:
        with open(s, "rb") as f:
            h.update(f.read())
    path = os.path.join(cache_dir(), f"libdtmm_{variant}_{h.hexdigest()[:16]}.so")
    if not os.path.exists(path):
        tmp = f"{path}.{os.getpid()}.tmp"
        cc = os.environ.get("CC", "cc")
        p = subprocess.run([cc, *flags, *srcs, "-o", tmp], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT)
        if p.returncode != 0:
            raise RuntimeError(f"building the kernel library failed:\n"
                               f"{p.stdout.decode(errors='replace')}")
        os.replace(tmp, path)
    _loaded[variant] = KernelLib(path)
    return _loaded[variant]
