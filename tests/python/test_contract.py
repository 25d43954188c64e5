"""dtmm.core.contract: the option table is what the device accepts, the generated C
header is up to date, and decode rejects every out-of-range value with one error."""

import pathlib
import subprocess
import sys

import numpy as np
import pytest

from dtmm.core import contract
from dtmm.core.contract import CONV_2D, INT32_MAX, decode_options, encode_map
from dtmm.core.errors import FormatError

ROOT = next(p for p in pathlib.Path(__file__).resolve().parents if (p / "WORKSPACE").is_file())
HEADER = ROOT / contract.HEADER_PATH

GOOD = {"version": 1, "kh": 3, "kw": 3, "sh": 1, "sw": 1, "dh": 1, "dw": 1, "padding": 0,
        "in_zp": -5, "act_min": -128, "act_max": 127}


def test_header_is_up_to_date():
    assert HEADER.read_text() == contract.c_header(), (
        f"{contract.HEADER_PATH} is stale: run python -m dtmm.core.contract "
        f"--c-header {contract.HEADER_PATH}")


def test_header_check_command(tmp_path):
    stale = tmp_path / "h.h"
    stale.write_text("/* old */\n")
    run = lambda *a: subprocess.run([sys.executable, "-m", "dtmm.core.contract", *a],
                                    capture_output=True, text=True, cwd=ROOT)
    assert run("--check", str(HEADER)).returncode == 0
    p = run("--check", str(stale))
    assert p.returncode == 1 and "stale" in p.stderr
    out = tmp_path / "new.h"
    assert run("--c-header", str(out)).returncode == 0
    assert out.read_text() == HEADER.read_text()


def test_header_compiles_and_expands(tmp_path):
    cc = next((c for c in ("cc", "gcc", "clang") if subprocess.run(
        ["sh", "-c", f"command -v {c}"], capture_output=True).returncode == 0), None)
    if cc is None:
        pytest.skip("no C compiler")
    src = tmp_path / "t.c"
    src.write_text(
        '#include <stdio.h>\n#include <stdint.h>\n#include "dtmm_contract_table.h"\n'
        "#define ROW(i, key, lo, hi) printf(\"%d %s %lld %lld\\n\", i, key, "
        "(long long)(lo), (long long)(hi));\n"
        "int main(void) { DTMM_CONV_2D_V1_OPTIONS(ROW) "
        'printf("%d %d %s\\n", DTMM_CONV_2D_V1_SHIFT_MIN, DTMM_CONV_2D_V1_SHIFT_MAX, '
        "DTMM_CONV_2D_V1_CUSTOM_CODE); return 0; }\n")
    exe = tmp_path / "t"
    subprocess.run([cc, "-std=c99", "-Wall", "-Werror", "-I", str(HEADER.parent), str(src),
                    "-o", str(exe)], check=True)
    lines = subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout.split("\n")
    rows = [line.split() for line in lines[:len(CONV_2D.options)]]
    assert [(int(i), k, int(lo), int(hi)) for i, k, lo, hi in rows] == \
        [(i, o.key, o.minimum, o.maximum) for i, o in enumerate(CONV_2D.options)]
    assert lines[len(CONV_2D.options)] == "-31 30 DTMM_CONV_2D"


def test_the_device_reads_the_generated_table():
    """The TFLM op's option keys and ranges and the C validator's per-channel ranges
    come from dtmm_contract_table.h (test_header_compiles_and_expands checks that it
    expands to CONV_2D's table); no literal copy of a range is left in C."""
    op = (ROOT / "dtmm_ops" / "dtmm_conv.cc").read_text()
    validator = (ROOT / "dtmm_ops" / "dtmm_conv_s8_validate.c").read_text()
    for text in (op, validator):
        assert '#include "dtmm_contract_table.h"' in text
    assert "kKeys[kNumKeys] = {DTMM_CONV_2D_V1_OPTIONS(" in op
    assert "65535" not in op
    for macro in ("DTMM_CONV_2D_V1_MULTIPLIER_MIN", "DTMM_CONV_2D_V1_SHIFT_MIN",
                  "DTMM_CONV_2D_V1_SHIFT_MAX"):
        assert macro in validator
    assert "> 30" not in validator and "< -31" not in validator
    assert dict((n, (lo, hi)) for n, lo, hi in CONV_2D.channel_ranges) == \
        {"multiplier": (0, INT32_MAX), "shift": (-31, 30)}


def test_encode_decode_round_trip():
    raw = CONV_2D.encode(GOOD)
    assert raw.dtype == np.uint8
    assert decode_options(raw, "op") == GOOD
    assert len(raw) <= contract.options_bytes() + 8


@pytest.mark.parametrize("option", [o for o in CONV_2D.options if o.key != "version"],
                         ids=lambda o: o.key)
def test_every_range_boundary(option):
    for v, ok in ((option.minimum, True), (option.maximum, True),
                  (option.minimum - 1, False), (option.maximum + 1, False)):
        opts = {**GOOD, option.key: v}
        if option.key in ("act_min", "act_max"):  # keep the pair ordered when in range
            opts = {**opts, "act_min": min(opts["act_min"], 127),
                    "act_max": max(opts["act_max"], -128)}
            if option.key == "act_min":
                opts["act_min"] = v
            else:
                opts["act_max"] = v
        raw = encode_map(opts)
        if ok:
            assert decode_options(raw, "op")[option.key] == v
        else:
            with pytest.raises(FormatError, match=rf"option {option.key}={v} is outside "
                                                  rf"\[{option.minimum}, {option.maximum}\]"):
                decode_options(raw, "op")


@pytest.mark.parametrize("edit, message", [
    ({"version": 3}, "DTMM format version 3 is not supported"),
    ({"version": True}, "version True is not supported"),
    ({"kh": 1.5}, "option kh must be an int"),
    ({"sh": False}, "option sh must be an int"),
    ({"act_min": 5, "act_max": 4}, "activation range [5, 4] is empty"),
])
def test_bad_values(edit, message):
    with pytest.raises(FormatError) as e:
        decode_options(encode_map({**GOOD, **edit}), "DTMM_CONV_2D 3 (y)")
    assert message in str(e.value) and str(e.value).startswith("DTMM_CONV_2D 3 (y): ")


def test_not_flexbuffers_and_missing():
    with pytest.raises(FormatError, match="custom_options_format 7 is not FLEXBUFFERS"):
        decode_options(encode_map(GOOD), "op", options_format=7)
    with pytest.raises(FormatError, match="custom options are missing"):
        decode_options(None, "op")
    with pytest.raises(FormatError, match="not a flexbuffer map"):
        decode_options(encode_map([1, 2]), "op")
    with pytest.raises(FormatError, match="no 'version'"):
        decode_options(encode_map({k: v for k, v in GOOD.items() if k != "version"}), "op")


def test_channel_ranges():
    CONV_2D.check_channels({"multiplier": np.array([0, INT32_MAX]),
                            "shift": np.array([-31, 30])}, "op")
    with pytest.raises(FormatError, match="shift 31 is outside"):
        CONV_2D.check_channels({"multiplier": np.array([1]), "shift": np.array([31])}, "op")
    with pytest.raises(FormatError, match="multiplier -1 is outside"):
        CONV_2D.check_channels({"multiplier": np.array([-1]), "shift": np.array([0])}, "op")


def test_a_second_contract_plugs_in(monkeypatch):
    # A format version 3 (or another op) is one more table entry: lookup finds it,
    # the header gains a block, version 1 files still decode.
    v3 = contract.OpContract(custom_code="DTMM_CONV_2D", version=3, inputs=CONV_2D.inputs,
                             options=CONV_2D.options + (contract.Option("block", 1, 64, "B"),),
                             channel_ranges=CONV_2D.channel_ranges, ordered=CONV_2D.ordered)
    monkeypatch.setitem(contract.CONTRACTS, ("DTMM_CONV_2D", 3), v3)
    assert decode_options(encode_map({**GOOD, "version": 3, "block": 16}), "op")["block"] == 16
    with pytest.raises(FormatError, match="miss block"):
        decode_options(encode_map({**GOOD, "version": 3}), "op")
    assert decode_options(encode_map(GOOD), "op") == GOOD
    assert "DTMM_CONV_2D_V3_BLOCK_MAX 64" in contract.c_header()
