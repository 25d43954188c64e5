"""Compatibility name for :mod:`dtmm.core.errors` (the one hierarchy lives there)."""

from dtmm.core.errors import (ArgumentError, DtmmError, FormatError,  # noqa: F401
                              ModelError, UnsupportedError, UnsupportedModelError)
