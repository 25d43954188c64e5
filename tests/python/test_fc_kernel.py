"""The FC kernel's golden header is what gen_fc_golden.py writes from dtmm.core.fc
(the kernel test itself is //dtmm_ops:dtmm_fc_s8_test and tests/cortex_m)."""

from __future__ import annotations

import importlib.util
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _gen():
    spec = importlib.util.spec_from_file_location(
        "gen_fc_golden", ROOT / "dtmm_ops" / "tests" / "gen_fc_golden.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_golden_header_is_current():
    path = ROOT / "dtmm_ops" / "tests" / "dtmm_fc_golden.h"
    assert path.read_text() == _gen().header(), \
        "run python dtmm_ops/tests/gen_fc_golden.py dtmm_ops/tests/dtmm_fc_golden.h"
