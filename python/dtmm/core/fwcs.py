"""FWCS: filterlet-wise compressed storage (docs/contract.md, format version 1).

    fw = FWCS.from_dense(filter_ohwi)          # int8 [C_out, K_h, K_w, C_in]
    fw.bitmap, fw.values                       # uint8 packed bitmap, int8 [n_kept, C_in]
    assert (fw.to_dense() == filter_ohwi).all()

A filterlet (oc, kh, kw) is kept iff any of its C_in values is non-zero. Bit
b = oc*K_h*K_w + kh*K_w + kw of the bitmap (LSB first in each byte) marks it kept;
`values` holds the kept filterlets in increasing b order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dtmm.core.contract import CONV_2D
from dtmm.core.errors import FormatError

FORMAT_VERSION = CONV_2D.version


def bitmap_bytes(c_out: int, kernel_h: int, kernel_w: int) -> int:
    """Length of the packed bitmap for a filter of this shape."""
    return (c_out * kernel_h * kernel_w + 7) // 8


@dataclass(frozen=True)
class FWCS:
    """Kept filterlets of one int8 OHWI filter. Construct with `from_dense` or
    `from_arrays` (which validates); the fields are read-only numpy arrays."""

    c_out: int
    kernel_h: int
    kernel_w: int
    c_in: int
    bitmap: np.ndarray  # uint8 [bitmap_bytes]
    values: np.ndarray  # int8 [n_kept, c_in]

    # -- construction -------------------------------------------------------------
    @classmethod
    def from_dense(cls, filter_ohwi: np.ndarray) -> "FWCS":
        f = np.asarray(filter_ohwi)
        if f.ndim != 4:
            raise FormatError(f"filter must be 4-D OHWI, got shape {f.shape}")
        if f.dtype != np.int8:
            raise FormatError(f"filter must be int8, got {f.dtype}")
        c_out, kh, kw, c_in = f.shape
        if min(f.shape) < 1:
            raise FormatError(f"filter has an empty dimension: shape {f.shape}")
        kept = f.reshape(c_out * kh * kw, c_in).any(axis=1)
        bitmap = np.packbits(kept, bitorder="little")
        values = f.reshape(-1, c_in)[kept]
        return cls._frozen(c_out, kh, kw, c_in, bitmap, values)

    @classmethod
    def from_arrays(cls, c_out: int, kernel_h: int, kernel_w: int, c_in: int,
                    bitmap, values) -> "FWCS":
        """Wrap stored arrays, raising FormatError when they disagree."""
        for name, v in (("c_out", c_out), ("kernel_h", kernel_h),
                        ("kernel_w", kernel_w), ("c_in", c_in)):
            if int(v) != v or v < 1:
                raise FormatError(f"{name} must be a positive integer, got {v!r}")
        bitmap = np.asarray(bitmap)
        values = np.asarray(values)
        if bitmap.dtype != np.uint8 or bitmap.ndim != 1:
            raise FormatError(
                f"bitmap must be 1-D uint8, got {bitmap.dtype} shape {bitmap.shape}")
        if values.dtype != np.int8:
            raise FormatError(f"values must be int8, got {values.dtype}")
        if values.ndim == 1:
            if values.size % c_in:
                raise FormatError(
                    f"values length {values.size} is not a multiple of C_in={c_in}")
            values = values.reshape(-1, c_in)
        if values.ndim != 2 or values.shape[1] != c_in:
            raise FormatError(
                f"values must have shape [n_kept, {c_in}], got {values.shape}")
        fw = cls._frozen(int(c_out), int(kernel_h), int(kernel_w), int(c_in),
                         bitmap, values)
        fw.validate()
        return fw

    @classmethod
    def _frozen(cls, c_out, kh, kw, c_in, bitmap, values) -> "FWCS":
        bitmap = np.ascontiguousarray(bitmap, dtype=np.uint8)
        values = np.ascontiguousarray(values, dtype=np.int8)
        bitmap.flags.writeable = False
        values.flags.writeable = False
        return cls(c_out, kh, kw, c_in, bitmap, values)

    # -- checks and views -----------------------------------------------------------
    @property
    def num_positions(self) -> int:
        return self.c_out * self.kernel_h * self.kernel_w

    def validate(self) -> None:
        """Raise FormatError unless bitmap and values agree (contract 'Validity')."""
        expected = bitmap_bytes(self.c_out, self.kernel_h, self.kernel_w)
        if self.bitmap.size != expected:
            raise FormatError(
                f"bitmap has {self.bitmap.size} bytes, expected {expected} for "
                f"{self.c_out}x{self.kernel_h}x{self.kernel_w} filterlets")
        bits = np.unpackbits(self.bitmap, bitorder="little")
        stray = np.flatnonzero(bits[self.num_positions:])
        if stray.size:
            raise FormatError(
                f"bitmap marks filterlet {self.num_positions + int(stray[0])}, outside "
                f"the filter ({self.num_positions} filterlets)")
        n_kept = int(bits.sum())
        if self.values.shape != (n_kept, self.c_in):
            raise FormatError(
                f"values hold {self.values.shape[0]} filterlets of C_in="
                f"{self.values.shape[1] if self.values.ndim == 2 else '?'}, bitmap "
                f"keeps {n_kept} of C_in={self.c_in}")

    @property
    def mask(self) -> np.ndarray:
        """bool [C_out, K_h, K_w]: True where the filterlet is kept."""
        bits = np.unpackbits(self.bitmap, bitorder="little")[: self.num_positions]
        return bits.astype(bool).reshape(self.c_out, self.kernel_h, self.kernel_w)

    @property
    def num_kept(self) -> int:
        return int(self.values.shape[0])

    @property
    def sparsity(self) -> float:
        """Fraction of filterlets pruned."""
        return 1.0 - self.num_kept / self.num_positions

    def to_dense(self) -> np.ndarray:
        """int8 OHWI filter with pruned filterlets zero."""
        dense = np.zeros((self.num_positions, self.c_in), np.int8)
        dense[self.mask.reshape(-1)] = self.values
        return dense.reshape(self.c_out, self.kernel_h, self.kernel_w, self.c_in)

    def weight_sums(self) -> np.ndarray:
        """int64 [C_out]: sum of each output channel's weights (for bias folding)."""
        return self.to_dense().reshape(self.c_out, -1).astype(np.int64).sum(axis=1)

    @property
    def storage_bytes(self) -> int:
        """Bytes of bitmap + values."""
        return int(self.bitmap.size + self.values.size)


def filterlet_sparsity(filter_ohwi: np.ndarray) -> float:
    """Fraction of all-zero filterlets in an OHWI filter."""
    f = np.asarray(filter_ohwi)
    return 1.0 - float(f.reshape(-1, f.shape[-1]).any(axis=1).mean())
