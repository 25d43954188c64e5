"""The pruning rounding rule, in one place: how many of n items a ratio removes.

The pruner (dtmm.prune.select), the scheduler's cost models and its vectorized
search all count with these functions, so a plan's modeled shapes are exactly the
shapes the pruned model gets.
"""

from __future__ import annotations

import numpy as np

from dtmm.core.errors import ArgumentError

# 0.15 * 10 is 1.4999999999999998 in binary: the nudge makes it round to 2.
_NUDGE = 1e-9


def n_pruned(ratio, n):
    """floor(ratio * n + 0.5), in [0, n]; ratio in [0, 1]. Scalars give an int,
    arrays (broadcast) an int array."""
    r = np.asarray(ratio, float)
    if np.any(~((r >= 0.0) & (r <= 1.0))):
        raise ArgumentError(f"pruning ratio {ratio} is outside [0, 1]")
    k = np.clip(np.floor(r * n + 0.5 + _NUDGE), 0, n).astype(np.int64)
    return int(k) if k.ndim == 0 else k


def kept_filters(c_out, beta):
    """Filters left after removing n_pruned(beta, C_out); at least one stays."""
    return np.maximum(1, c_out - n_pruned(beta, c_out)) if np.ndim(c_out) or np.ndim(beta) \
        else max(1, int(c_out) - n_pruned(beta, int(c_out)))


def kept_filterlets(c_out_kept, k, alpha):
    """Filterlets left among the kept filters after pruning n_pruned(alpha, n)."""
    n = c_out_kept * k
    return n - n_pruned(alpha, n)
