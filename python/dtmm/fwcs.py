"""Compatibility name for :mod:`dtmm.core.fwcs` (the FWCS codec lives in the core)."""

from dtmm.core.fwcs import (FORMAT_VERSION, FWCS, bitmap_bytes, block_sparsity,  # noqa: F401
                             filterlet_sparsity)
