"""The DTMM custom-op contract as data (docs/contract.md): custom code, format
version, inputs, the option table with types and ranges, and the per-channel
ranges, with encode / decode / validate. The C side reads the same table from the
generated header ``dtmm_ops/dtmm_contract_table.h``:

    python -m dtmm.core.contract --c-header dtmm_ops/dtmm_contract_table.h
    python -m dtmm.core.contract --check dtmm_ops/dtmm_contract_table.h   # exit 1 if stale

    opts = CONV_2D.decode(op.custom_options, "DTMM_CONV_2D 3", op.custom_options_format)
    raw = CONV_2D.encode({"version": 1, "kh": 3, ...})

Every range is what the device accepts: the TFLM op's Prepare (dtmm_ops/dtmm_conv.cc)
and the kernel validator (dtmm_conv_s8_validate). Where Python was looser (shift 31,
strides/dilations above 65535) the device rule is the rule; strides and
dilations stop at TFLite's int16 (32767).

A contract is one ``OpContract`` per (custom code, format version); ``CONTRACTS``
holds them. A second op (e.g. DTMM_FULLY_CONNECTED) or a format version 2 is one more
``OpContract`` entry: ``lookup`` picks it from the custom code and the ``version``
option, and the header generator emits one block per entry.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass

import numpy as np
from flatbuffers import flexbuffers

from dtmm.core.errors import FormatError

INT32_MIN = -(1 << 31)
INT32_MAX = (1 << 31) - 1
# schema CustomOptionsFormat: FLEXBUFFERS is the only value the schema defines.
FLEXBUFFERS = 0
TENSOR_INT8, TENSOR_UINT8, TENSOR_INT32 = 9, 3, 2  # schema TensorType


@dataclass(frozen=True)
class Option:
    """One key of the custom options map: an integer in [minimum, maximum]."""

    key: str
    minimum: int
    maximum: int
    doc: str


@dataclass(frozen=True)
class Input:
    """One operator input: dtype (schema TensorType), rank, constant or not."""

    name: str
    dtype: int
    rank: int
    constant: bool
    doc: str


@dataclass(frozen=True)
class OpContract:
    custom_code: str
    version: int
    inputs: tuple
    options: tuple
    # Per-channel constants: inclusive ranges of every element.
    channel_ranges: tuple  # ((input name, minimum, maximum), ...)
    # Option pairs that must be ordered (low <= high), checked after the ranges.
    ordered: tuple = ()
    doc: str = ""

    @property
    def keys(self) -> tuple:
        return tuple(o.key for o in self.options)

    def option(self, key: str) -> Option:
        return next(o for o in self.options if o.key == key)

    def input_index(self, name: str) -> int:
        return next(i for i, t in enumerate(self.inputs) if t.name == name)

    # -- encode / decode -------------------------------------------------------------
    def encode(self, values: dict) -> np.ndarray:
        """The flexbuffer map of `values` (validated first), as uint8."""
        self.validate(values, f"{self.custom_code} options")
        return encode_map({k: int(values[k]) for k in self.keys})

    def decode(self, raw, what: str, options_format: int = FLEXBUFFERS) -> dict:
        """Options of one operator, validated; FormatError names what is wrong."""
        opts = decode_map(raw, what, options_format)
        self.validate(opts, what)
        return opts

    def validate(self, opts: dict, what: str) -> None:
        missing = [k for k in self.keys if k not in opts]
        if missing:
            raise FormatError(f"{what}: custom options miss {', '.join(missing)}")
        for o in self.options:
            v = opts[o.key]
            if not isinstance(v, (int, np.integer)) or isinstance(v, (bool, np.bool_)):
                raise FormatError(f"{what}: option {o.key} must be an int, got {v!r}")
            if o.key == "version":
                continue  # checked by lookup with its own message
            if not o.minimum <= v <= o.maximum:
                raise FormatError(f"{what}: option {o.key}={v} is outside "
                                  f"[{o.minimum}, {o.maximum}]")
        for lo, hi in self.ordered:
            if opts[lo] > opts[hi]:
                raise FormatError(f"{what}: activation range [{opts[lo]}, {opts[hi]}] is "
                                  f"empty ({lo} > {hi})" if lo == "act_min" else
                                  f"{what}: {lo} {opts[lo]} > {hi} {opts[hi]}")

    def check_channels(self, arrays: dict, what: str) -> None:
        """Per-channel constants inside the device's ranges."""
        for name, lo, hi in self.channel_ranges:
            v = np.asarray(arrays[name])
            if v.size and (int(v.min()) < lo or int(v.max()) > hi):
                bad = int(v[(v < lo) | (v > hi)].reshape(-1)[0])
                raise FormatError(f"{what}: {name} {bad} is outside [{lo}, {hi}]")


def encode_map(values: dict) -> np.ndarray:
    return np.frombuffer(bytes(flexbuffers.Dumps(values)), np.uint8).copy()


def decode_map(raw, what: str, options_format: int = FLEXBUFFERS) -> dict:
    if options_format != FLEXBUFFERS:
        raise FormatError(f"{what}: custom_options_format {options_format} is not "
                          "FLEXBUFFERS (0)")
    if raw is None or len(raw) == 0:
        raise FormatError(f"{what}: custom options are missing")
    if not isinstance(raw, (bytes, bytearray)):  # object API: list / uint8 array
        raw = np.asarray(raw, np.uint8).tobytes()
    try:
        value = flexbuffers.Loads(bytes(raw))
    except Exception as e:  # the flexbuffers reader raises whatever struct raises
        raise FormatError(f"{what}: custom options are not a flexbuffer "
                          f"({type(e).__name__})") from None
    if not isinstance(value, dict):
        raise FormatError(f"{what}: custom options are not a flexbuffer map")
    return value


# -- DTMM_CONV_2D, format version 1 -----------------------------------------------------
# Kernel/stride/dilation bounds keep (k - 1) * d + 1 far from int32 overflow before
# TFLite's padding arithmetic runs (dtmm_conv.cc).
_DIM_MAX = 65535
# TFLite's ConvParams hold strides, dilations and paddings as int16: above 32767 its
# conv computes with wrapped values, so no DTMM op could equal the original.
_STEP_MAX = 32767

CONV_2D_V1 = OpContract(
    custom_code="DTMM_CONV_2D",
    version=1,
    inputs=(
        Input("input", TENSOR_INT8, 4, False, "[N, H, W, C_in], per-tensor zero point zp_in"),
        Input("values", TENSOR_INT8, 2, True, "[n_kept, C_in] kept filterlets"),
        Input("bitmap", TENSOR_UINT8, 1, True, "[ceil(C_out*K/8)] FWCS bitmap"),
        Input("bias", TENSOR_INT32, 1, True, "[C_out] folded bias"),
        Input("multiplier", TENSOR_INT32, 1, True, "[C_out] requantization multiplier"),
        Input("shift", TENSOR_INT32, 1, True, "[C_out] requantization shift"),
    ),
    options=(
        Option("version", INT32_MIN, INT32_MAX,
               "format version; parsed as any int32, then must equal the version"),
        Option("kh", 1, _DIM_MAX, "kernel height"),
        Option("kw", 1, _DIM_MAX, "kernel width"),
        Option("sh", 1, _STEP_MAX, "stride height"),
        Option("sw", 1, _STEP_MAX, "stride width"),
        Option("dh", 1, _STEP_MAX, "dilation height"),
        Option("dw", 1, _STEP_MAX, "dilation width"),
        Option("padding", 0, 1, "TFLite Padding: 0 = SAME, 1 = VALID"),
        Option("in_zp", -128, 127, "input zero point the bias was folded with"),
        Option("act_min", -128, 127, "int8 clamp minimum (<= act_max)"),
        Option("act_max", -128, 127, "int8 clamp maximum"),
    ),
    channel_ranges=(("multiplier", 0, INT32_MAX), ("shift", -31, 30)),
    ordered=(("act_min", "act_max"),),
    doc="filterlet-sparse int8 convolution, FWCS filter (docs/contract.md)",
)

# -- DTMM_CONV_2D, format version 2 (one packed tensor, short keys, block filterlets) -----
CONV_2D_V2 = OpContract(
    custom_code="DTMM_CONV_2D",
    version=2,
    inputs=(
        Input("input", TENSOR_INT8, 4, False, "[N, H, W, C_in], per-tensor zero point zp_in"),
        Input("w", TENSOR_INT8, 1, True,
              "[12*C_out + bitmap_bytes + n_kept*B]: planar int32 folded bias[C_out], "
              "multiplier[C_out], shift[C_out]; the bitmap (4-byte padded); the kept "
              "blocks"),
    ),
    options=(
        Option("version", INT32_MIN, INT32_MAX,
               "format version; parsed as any int32, then must equal the version"),
        Option("b", 1, _DIM_MAX,
               "block size B in input channels; divides C_in; == C_in unless kh = kw = 1"),
        Option("kh", 1, _DIM_MAX, "kernel height"),
        Option("kw", 1, _DIM_MAX, "kernel width"),
        Option("sh", 1, _STEP_MAX, "stride height"),
        Option("sw", 1, _STEP_MAX, "stride width"),
        Option("dh", 1, _STEP_MAX, "dilation height"),
        Option("dw", 1, _STEP_MAX, "dilation width"),
        Option("p", 0, 1, "TFLite Padding: 0 = SAME, 1 = VALID"),
        Option("z", -128, 127, "input zero point the bias was folded with"),
        Option("lo", -128, 127, "int8 clamp minimum (<= hi)"),
        Option("hi", -128, 127, "int8 clamp maximum"),
    ),
    channel_ranges=(("multiplier", 0, INT32_MAX), ("shift", -31, 30)),
    ordered=(("lo", "hi"),),
    doc="filterlet-block-sparse int8 convolution, packed weights (docs/contract.md)",
)

# -- DTMM_FULLY_CONNECTED, format version 2 (block filterlets) ----------------------------
FULLY_CONNECTED_V2 = OpContract(
    custom_code="DTMM_FULLY_CONNECTED",
    version=2,
    inputs=(
        Input("input", TENSOR_INT8, 0, False,
              "any rank, size = batches * C_in, per-tensor zero point zp_in"),
        Input("w", TENSOR_INT8, 1, True,
              "[12*C_out + bitmap_bytes + n_kept*B]: per channel int32 (folded bias, "
              "multiplier, shift), the bitmap (4-byte padded), the kept blocks"),
    ),
    options=(
        Option("version", INT32_MIN, INT32_MAX,
               "format version; parsed as any int32, then must equal the version"),
        Option("b", 1, _DIM_MAX, "block size B in input channels; divides C_in"),
        Option("z", -128, 127, "input zero point the bias was folded with"),
        Option("lo", -128, 127, "int8 clamp minimum (<= hi)"),
        Option("hi", -128, 127, "int8 clamp maximum"),
    ),
    channel_ranges=(("multiplier", 0, INT32_MAX), ("shift", -31, 30)),
    ordered=(("lo", "hi"),),
    doc="block-sparse int8 fully connected, packed weights (docs/contract.md)",
)
FULLY_CONNECTED = FULLY_CONNECTED_V2  # the version the converter writes

CONTRACTS = {(CONV_2D_V1.custom_code, CONV_2D_V1.version): CONV_2D_V1,
             (CONV_2D_V2.custom_code, CONV_2D_V2.version): CONV_2D_V2}
CONV_2D = CONV_2D_V1  # version 1 (the converter writes dtmm.core.ops.WRITE_VERSION = 2)
# CUSTOM_CODES: the ops dtmm.core.ops.read_dtmm reads (the conv); the FC op is
# read by dtmm.core.fc and is added to CONTRACTS after CUSTOM_CODES is taken.
CUSTOM_CODES = frozenset(code for code, _ in CONTRACTS)
CONTRACTS[(FULLY_CONNECTED_V2.custom_code, FULLY_CONNECTED_V2.version)] = FULLY_CONNECTED_V2
ZERO_POINT_RANGE = (-128, 127)  # input / output zero points of int8 tensors


def versions(custom_code: str) -> list:
    return sorted(v for code, v in CONTRACTS if code == custom_code)


def lookup(custom_code: str, opts: dict, what: str) -> OpContract:
    """The contract of an op from its custom code and its decoded options map."""
    known = versions(custom_code)
    if not known:
        raise FormatError(f"{what}: {custom_code!r} is not a DTMM op")
    if "version" not in opts:
        raise FormatError(f"{what}: custom options have no 'version'")
    v = opts["version"]
    if isinstance(v, bool) or not isinstance(v, int) or (custom_code, v) not in CONTRACTS:
        raise FormatError(f"{what}: DTMM format version {v!r} is not supported (this "
                          f"reader knows version {', '.join(map(str, known))})")
    return CONTRACTS[(custom_code, v)]


def decode_options(raw, what: str, options_format: int = FLEXBUFFERS,
                   custom_code: str = CONV_2D.custom_code) -> dict:
    """Decode, pick the contract by version, validate."""
    opts = decode_map(raw, what, options_format)
    lookup(custom_code, opts, what).validate(opts, what)
    return opts


def options_bytes(contract: OpContract = CONV_2D) -> int:
    """Bytes of one options map as the converter writes it (every key; realistic
    values fit one byte each)."""
    return int(encode_map({k: 1 for k in contract.keys}).size)


# -- the C header -------------------------------------------------------------------------
HEADER_PATH = "dtmm_ops/dtmm_contract_table.h"


def _c_int(v: int) -> str:
    if v == INT32_MIN:
        return "(-2147483647 - 1)"
    return str(v)


def c_header() -> str:
    """dtmm_ops/dtmm_contract_table.h, generated from CONTRACTS."""
    lines = [
        "/* Generated by `python -m dtmm.core.contract --c-header` from",
        " * python/dtmm/core/contract.py; do not edit. tests/python/test_contract.py",
        " * fails when this file is stale.",
        " *",
        " * The DTMM op contract as C constants: custom code, format version, input",
        " * positions and the option table with the ranges the device accepts.",
        " * DTMM_<OP>_V<n>_OPTIONS(X) expands X(index, key, min, max) once per option,",
        " * in order, so a C file builds its own table without an unused static array. */",
        "#ifndef DTMM_OPS_DTMM_CONTRACT_TABLE_H_",
        "#define DTMM_OPS_DTMM_CONTRACT_TABLE_H_",
        "",
        f"#define DTMM_CUSTOM_OPTIONS_FORMAT_FLEXBUFFERS {FLEXBUFFERS}",
        f"#define DTMM_ZERO_POINT_MIN {ZERO_POINT_RANGE[0]}",
        f"#define DTMM_ZERO_POINT_MAX {ZERO_POINT_RANGE[1]}",
    ]
    for (code, version), c in sorted(CONTRACTS.items()):
        p = f"DTMM_{code[len('DTMM_'):] if code.startswith('DTMM_') else code}_V{version}"
        lines += ["", f"/* {code} format version {version}: {c.doc} */",
                  f'#define {p}_CUSTOM_CODE "{code}"',
                  f"#define {p}_VERSION {version}",
                  f"#define {p}_NUM_INPUTS {len(c.inputs)}"]
        for i, t in enumerate(c.inputs):
            lines.append(f"#define {p}_INPUT_{t.name.upper()} {i} /* {t.doc} */")
        lines.append(f"#define {p}_NUM_OUTPUTS 1")
        lines.append(f"#define {p}_NUM_OPTIONS {len(c.options)}")
        for i, o in enumerate(c.options):
            k = o.key.upper()
            lines += [f"#define {p}_OPT_{k} {i} /* {o.doc} */",
                      f"#define {p}_{k}_MIN {_c_int(o.minimum)}",
                      f"#define {p}_{k}_MAX {_c_int(o.maximum)}"]
        for name, lo, hi in c.channel_ranges:
            lines += [f"#define {p}_{name.upper()}_MIN {_c_int(lo)}",
                      f"#define {p}_{name.upper()}_MAX {_c_int(hi)}"]
        lines.append(f"#define {p}_OPTIONS(X) \\")
        for i, o in enumerate(c.options):
            end = " \\" if i < len(c.options) - 1 else ""
            lines.append(f'  X({i}, "{o.key}", {_c_int(o.minimum)}, {_c_int(o.maximum)}){end}')
    lines += ["", "#endif /* DTMM_OPS_DTMM_CONTRACT_TABLE_H_ */", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m dtmm.core.contract",
                                 description="Write or check the generated C header "
                                             "of the DTMM op contract.")
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--c-header", metavar="PATH", help="write the header ('-': stdout)")
    g.add_argument("--check", metavar="PATH", help="exit 1 unless PATH is up to date")
    args = ap.parse_args(argv)
    text = c_header()
    if args.check:
        try:
            with open(args.check) as f:
                same = f.read() == text
        except OSError as e:
            print(f"cannot read {args.check}: {e.strerror}", file=sys.stderr)
            return 1
        if not same:
            print(f"{args.check} is stale: run python -m dtmm.core.contract "
                  f"--c-header {args.check}", file=sys.stderr)
            return 1
        return 0
    if args.c_header == "-":
        sys.stdout.write(text)
    else:
        from dtmm.core.tflite import write_atomic

        write_atomic(args.c_header, text.encode())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
