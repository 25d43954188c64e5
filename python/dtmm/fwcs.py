"""Compatibility name for :mod:`dtmm.core.fwcs` (the FWCS codec lives in the core)."""

from dtmm.core.fwcs import FORMAT_VERSION, FWCS, bitmap_bytes, filterlet_sparsity  # noqa: F401
