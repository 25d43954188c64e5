"""FWCS: filterlet-wise compressed storage (docs/contract.md), with filterlet blocks.

    fw = FWCS.from_dense(filter_ohwi)          # int8 [C_out, K_h, K_w, C_in]
    fw.bitmap, fw.values                       # uint8 packed bitmap, int8 [n_kept, C_in]
    assert (fw.to_dense() == filter_ohwi).all()
    fb = FWCS.from_dense(filter_ohwi, block=16)  # blocks of 16 input channels (v2)

A filterlet (oc, kh, kw) is split into C_in / B blocks of B contiguous input
channels (B = C_in by default: one block per filterlet, format version 1). A block
is kept iff any of its B values is non-zero. Bit
b = (oc*K_h*K_w + kh*K_w + kw) * (C_in / B) + j of the bitmap (LSB first in each
byte) marks block j kept; `values` holds the kept blocks in increasing b order. The
bitmap here is unpadded (ceil(bits / 8) bytes, version 1's array); version 2's
packed tensor pads it to 4 bytes (dtmm.core.ops).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dtmm.core.contract import CONV_2D_V2
from dtmm.core.errors import FormatError

# The DTMM_CONV_2D format version the converter writes (dtmm.core.ops.WRITE_VERSION).
FORMAT_VERSION = CONV_2D_V2.version


def bitmap_bytes(c_out: int, kernel_h: int, kernel_w: int, blocks_per_filterlet: int = 1
                 ) -> int:
    """Length of the packed (unpadded) bitmap for a filter of this shape."""
    return (c_out * kernel_h * kernel_w * blocks_per_filterlet + 7) // 8


def check_block(c_in: int, block: int) -> None:
    """FormatError unless `block` is a block size for C_in (a divisor, >= 1)."""
    if int(block) != block or block < 1 or c_in % block:
        raise FormatError(f"block size B={block} does not divide C_in={c_in}")


@dataclass(frozen=True)
class FWCS:
    """Kept filterlet blocks of one int8 OHWI filter. Construct with `from_dense` or
    `from_arrays` (which validates); the fields are read-only numpy arrays. `block`
    is B (== c_in: version 1 filterlets)."""

    c_out: int
    kernel_h: int
    kernel_w: int
    c_in: int
    bitmap: np.ndarray  # uint8 [bitmap_bytes]
    values: np.ndarray  # int8 [n_kept, block]
    block: int = 0      # 0: c_in (set by the constructors)

    # -- construction -------------------------------------------------------------
    @classmethod
    def from_dense(cls, filter_ohwi: np.ndarray, block: int | None = None) -> "FWCS":
        f = np.asarray(filter_ohwi)
        if f.ndim != 4:
            raise FormatError(f"filter must be 4-D OHWI, got shape {f.shape}")
        if f.dtype != np.int8:
            raise FormatError(f"filter must be int8, got {f.dtype}")
        c_out, kh, kw, c_in = f.shape
        if min(f.shape) < 1:
            raise FormatError(f"filter has an empty dimension: shape {f.shape}")
        block = c_in if block is None else int(block)
        check_block(c_in, block)
        rows = f.reshape(-1, block)
        kept = rows.any(axis=1)
        bitmap = np.packbits(kept, bitorder="little")
        return cls._frozen(c_out, kh, kw, c_in, bitmap, rows[kept], block)

    @classmethod
    def from_arrays(cls, c_out: int, kernel_h: int, kernel_w: int, c_in: int,
                    bitmap, values, block: int | None = None) -> "FWCS":
        """Wrap stored arrays, raising FormatError when they disagree."""
        for name, v in (("c_out", c_out), ("kernel_h", kernel_h),
                        ("kernel_w", kernel_w), ("c_in", c_in)):
            if int(v) != v or v < 1:
                raise FormatError(f"{name} must be a positive integer, got {v!r}")
        block = int(c_in) if block is None else block
        check_block(int(c_in), block)
        bitmap = np.asarray(bitmap)
        values = np.asarray(values)
        if bitmap.dtype != np.uint8 or bitmap.ndim != 1:
            raise FormatError(
                f"bitmap must be 1-D uint8, got {bitmap.dtype} shape {bitmap.shape}")
        if values.dtype != np.int8:
            raise FormatError(f"values must be int8, got {values.dtype}")
        width = f"C_in={c_in}" if block == c_in else f"B={block}"
        if values.ndim == 1:
            if values.size % block:
                raise FormatError(
                    f"values length {values.size} is not a multiple of {width}")
            values = values.reshape(-1, block)
        if values.ndim != 2 or values.shape[1] != block:
            raise FormatError(
                f"values must have shape [n_kept, {block}], got {values.shape}")
        fw = cls._frozen(int(c_out), int(kernel_h), int(kernel_w), int(c_in),
                         bitmap, values, int(block))
        fw.validate()
        return fw

    @classmethod
    def _frozen(cls, c_out, kh, kw, c_in, bitmap, values, block=None) -> "FWCS":
        bitmap = np.ascontiguousarray(bitmap, dtype=np.uint8)
        values = np.ascontiguousarray(values, dtype=np.int8)
        bitmap.flags.writeable = False
        values.flags.writeable = False
        return cls(c_out, kh, kw, c_in, bitmap, values, int(c_in if block is None else block))

    # -- checks and views -----------------------------------------------------------
    @property
    def num_positions(self) -> int:
        """Filterlets (oc, kh, kw)."""
        return self.c_out * self.kernel_h * self.kernel_w

    @property
    def blocks_per_filterlet(self) -> int:
        return self.c_in // self.block

    @property
    def num_blocks(self) -> int:
        """Bits of the bitmap: blocks, kept or not."""
        return self.num_positions * self.blocks_per_filterlet

    def validate(self) -> None:
        """Raise FormatError unless bitmap and values agree (contract 'Validity')."""
        check_block(self.c_in, self.block)
        expected = bitmap_bytes(self.c_out, self.kernel_h, self.kernel_w,
                                self.blocks_per_filterlet)
        unit = "filterlets" if self.block == self.c_in else f"blocks of B={self.block}"
        if self.bitmap.size != expected:
            raise FormatError(
                f"bitmap has {self.bitmap.size} bytes, expected {expected} for "
                f"{self.c_out}x{self.kernel_h}x{self.kernel_w} filterlets"
                + ("" if self.block == self.c_in else f" in {unit}"))
        bits = np.unpackbits(self.bitmap, bitorder="little")
        stray = np.flatnonzero(bits[self.num_blocks:])
        if stray.size:
            what = "filterlet" if self.block == self.c_in else "block"
            raise FormatError(
                f"bitmap marks {what} {self.num_blocks + int(stray[0])}, outside "
                f"the filter ({self.num_blocks} {unit})")
        n_kept = int(bits.sum())
        if self.values.shape != (n_kept, self.block):
            width = "C_in" if self.block == self.c_in else "B"
            raise FormatError(
                f"values hold {self.values.shape[0]} {unit.split(' ')[0]} of {width}="
                f"{self.values.shape[1] if self.values.ndim == 2 else '?'}, bitmap "
                f"keeps {n_kept} of {width}={self.block}")

    @property
    def block_mask(self) -> np.ndarray:
        """bool [C_out, K_h, K_w, C_in / B]: True where the block is kept."""
        bits = np.unpackbits(self.bitmap, bitorder="little")[: self.num_blocks]
        return bits.astype(bool).reshape(self.c_out, self.kernel_h, self.kernel_w,
                                         self.blocks_per_filterlet)

    @property
    def mask(self) -> np.ndarray:
        """bool [C_out, K_h, K_w]: True where the filterlet has a kept block."""
        return self.block_mask.any(axis=3)

    @property
    def num_kept(self) -> int:
        """Kept blocks (kept filterlets when B = C_in)."""
        return int(self.values.shape[0])

    @property
    def sparsity(self) -> float:
        """Fraction of blocks (filterlets when B = C_in) pruned."""
        return 1.0 - self.num_kept / self.num_blocks

    def to_dense(self) -> np.ndarray:
        """int8 OHWI filter with pruned blocks zero."""
        dense = np.zeros((self.num_blocks, self.block), np.int8)
        dense[self.block_mask.reshape(-1)] = self.values
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


def block_sparsity(filter_ohwi: np.ndarray, block: int) -> float:
    """Fraction of all-zero blocks of B input channels in an OHWI filter."""
    f = np.asarray(filter_ohwi)
    return 1.0 - float(f.reshape(-1, block).any(axis=1).mean())
