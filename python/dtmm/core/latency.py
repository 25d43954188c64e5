"""Latency coefficients of DTMM_CONV_2D per target and the bench layer shapes, from
package data (core/data/latency.json), so an installed wheel has them too.

    coeffs = coefficients("cortex-m4")     # LatencyCoeffs(a, b, c, d, source)
    bench_layers()["L5"]                   # (c_out, out_h, out_w, K)

The scheduler uses them now (dtmm.schedule.cost.LatencyModel); the converter's
speed-aware conversion is meant to read the same table.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from importlib import resources

from dtmm.core.errors import ArgumentError
from dtmm.core.geometry import PADDING_SAME, PADDING_VALID, out_size_and_padding

DEFAULT_MODEL = "mac-count"


@dataclass
class LatencyCoeffs:
    """instructions ≈ a * kept_MACs + b * outputs + c * outputs * K
    + d * kept_filterlets * output_pixels (per-filterlet setup)."""

    a: float = 1.0
    b: float = 12.0
    c: float = 2.0
    source: str = "MAC-count stand-in"
    d: float = 0.0


@functools.lru_cache(maxsize=1)
def _data() -> dict:
    with resources.files("dtmm.core").joinpath("data/latency.json").open() as f:
        return json.load(f)


def targets() -> list:
    return sorted(_data()["models"])


def coefficients(target: str = DEFAULT_MODEL) -> LatencyCoeffs:
    models = _data()["models"]
    if target not in models:
        raise ArgumentError(f"no latency model for target {target!r} (known: "
                            f"{', '.join(sorted(models))})")
    m = models[target]
    return LatencyCoeffs(a=m["a"], b=m["b"], c=m["c"], d=m["d"], source=m["source"])


def bench_layers() -> dict:
    """name -> (c_out, out_h, out_w, K) of the bench/kernels layers."""
    out = {}
    for name, L in _data()["bench_layers"].items():
        pad = PADDING_SAME if L["same"] else PADDING_VALID
        oh = out_size_and_padding(L["in_h"], L["kh"], L["sh"], 1, pad)[0]
        ow = out_size_and_padding(L["in_w"], L["kw"], L["sw"], 1, pad)[0]
        out[name] = (L["c_out"], oh, ow, L["kh"] * L["kw"])
    return out
