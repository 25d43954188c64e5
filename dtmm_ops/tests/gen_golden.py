#!/usr/bin/env python3
"""Writes dtmm_ops/tests/dtmm_golden.h: DTMM_CONV_2D golden vectors from dtmm.reference.

    .venv/bin/python dtmm_ops/tests/gen_golden.py            # rewrite the header
    .venv/bin/python dtmm_ops/tests/gen_golden.py --check    # fail if it is stale

Inputs and dense weights come from a xorshift32 stream (mirrored in the C test), so
the header only stores what the reference decides: the FWCS bitmap (from
FWCS.from_dense of the pruned filter), the original and folded bias, the TFLite
multiplier/shift from float scales, the activation range and the expected output.
Each case is also checked against dtmm.reference.tflite_conv2d (unfolded, dense).
"""
from __future__ import annotations

import argparse
import pathlib
import sys

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1] / "python"))

from dtmm import reference as ref  # noqa: E402
from dtmm.core.fwcs import FWCS  # noqa: E402

OUT = HERE / "dtmm_golden.h"

# name, n, h, w, c_in, c_out, kh, kw, sh, sw, dh, dw, padding, act, keep, zp_in, zp_out
S, V = ref.PADDING_SAME, ref.PADDING_VALID
NONE, RELU, RELU6, N1 = ref.ACT_NONE, ref.ACT_RELU, ref.ACT_RELU6, ref.ACT_RELU_N1_TO_1
CASES = [
    ("l1_like_cin3_same", 1, 8, 8, 3, 8, 3, 3, 1, 1, 1, 1, S, RELU, 1.0, -128, -128),
    ("cin3_sparse50", 1, 7, 6, 3, 6, 3, 3, 1, 1, 1, 1, S, NONE, 0.5, 5, -3),
    ("cin1_same", 1, 6, 7, 1, 5, 3, 3, 1, 1, 1, 1, S, RELU6, 0.75, -128, -128),
    ("cin1_5x5", 1, 7, 7, 1, 3, 5, 5, 1, 1, 1, 1, S, NONE, 0.6, 17, 0),
    ("cin16_dense", 1, 6, 6, 16, 8, 3, 3, 1, 1, 1, 1, S, NONE, 1.0, -7, 12),
    ("cin16_s25", 1, 6, 6, 16, 8, 3, 3, 1, 1, 1, 1, S, RELU, 0.75, -128, -128),
    ("cin32_s75", 1, 5, 5, 32, 8, 3, 3, 1, 1, 1, 1, S, NONE, 0.25, 3, -1),
    ("cin64_s90", 1, 4, 4, 64, 12, 3, 3, 1, 1, 1, 1, S, RELU, 0.1, -128, -128),
    ("cin64_all_pruned", 1, 4, 4, 64, 4, 3, 3, 1, 1, 1, 1, S, NONE, 0.0, 9, 20),
    ("cin17_stride2_same", 1, 7, 8, 17, 6, 3, 3, 2, 2, 1, 1, S, NONE, 0.6, -2, 4),
    ("cin5_stride2_valid", 2, 9, 7, 5, 4, 3, 3, 2, 2, 1, 1, V, RELU6, 0.8, 100, -100),
    ("cin7_dilation2", 1, 8, 8, 7, 5, 3, 3, 1, 1, 2, 2, S, NONE, 0.7, -50, 30),
    ("cin9_dilation_h2_valid", 1, 9, 6, 9, 4, 3, 2, 1, 1, 2, 1, V, N1, 0.9, 1, 2),
    ("cin33_1x1", 1, 5, 4, 33, 7, 1, 1, 1, 1, 1, 1, V, NONE, 0.5, -128, 5),
    ("cin64_1x1_stride2", 1, 6, 6, 64, 6, 1, 1, 2, 2, 1, 1, S, RELU, 0.7, 0, 0),
    ("l5_like_5x1_stride3", 1, 16, 1, 40, 8, 5, 1, 3, 1, 1, 1, V, RELU, 0.6, -128, -128),
    ("cin12_1x7_wide", 1, 3, 12, 12, 4, 1, 7, 1, 1, 1, 1, S, NONE, 0.5, 60, -60),
    ("cin2_7x5_chunks", 1, 9, 8, 2, 4, 7, 5, 1, 1, 1, 1, S, NONE, 0.8, -3, 3),
    ("cin20_4x4_even_kernel", 1, 7, 7, 20, 5, 4, 4, 1, 1, 1, 1, S, RELU6, 0.5, 11, -11),
    ("cin48_stride_3x2", 1, 8, 9, 48, 5, 3, 3, 3, 2, 1, 1, S, NONE, 0.4, -90, 90),
    ("batch3_cin4", 3, 4, 5, 4, 6, 2, 2, 1, 1, 1, 1, S, NONE, 0.5, 33, -33),
    ("cin3_input_1x1", 1, 1, 1, 3, 6, 3, 3, 1, 1, 1, 1, S, NONE, 1.0, -128, 0),
]


class XorShift32:
    def __init__(self, seed: int):
        self.s = seed & 0xFFFFFFFF

    def next(self) -> int:
        x = self.s
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        self.s = x
        return x

    def int8(self, n: int) -> np.ndarray:
        top = np.array([self.next() >> 24 for _ in range(n)], np.uint8)
        return top.view(np.int8)


def make_case(idx, spec):
    (name, n, h, w, c_in, c_out, kh, kw, sh, sw, dh, dw, padding, act, keep,
     zp_in, zp_out) = spec
    seed = 0x9E3779B9 ^ (idx * 0x85EBCA6B) & 0xFFFFFFFF or 1
    stream = XorShift32(seed)
    x = stream.int8(n * h * w * c_in).reshape(n, h, w, c_in)
    filt = stream.int8(c_out * kh * kw * c_in).reshape(c_out, kh, kw, c_in)
    rng = np.random.default_rng(idx)
    mask = rng.random((c_out, kh, kw)) < keep
    if keep < 1.0 and c_out > 2:
        mask[1] = False  # one fully pruned filter
    filt = np.where(mask[..., None], filt, 0).astype(np.int8)
    fw = FWCS.from_dense(filt)
    bias = rng.integers(-(1 << 16), 1 << 16, c_out).astype(np.int32)
    folded = ref.fold_bias(bias, fw, zp_in)
    in_scale = float(rng.uniform(0.005, 0.05))
    out_scale = float(rng.uniform(0.02, 0.2))
    f_scales = rng.uniform(0.001, 0.02, c_out)
    mult, shift = ref.per_channel_multipliers(in_scale, f_scales, out_scale)
    act_min, act_max = ref.activation_range(act, out_scale, zp_out)
    p = ref.ConvParams(sh, sw, dh, dw, padding, zp_in, zp_out, act_min, act_max)
    out = ref.dtmm_conv2d(x, fw, folded, mult, shift, p)
    dense = ref.tflite_conv2d(x, filt, bias, mult, shift, p)
    assert (out == dense).all(), name
    oh, pad_t = ref.out_size_and_padding(h, kh, sh, dh, padding)
    ow, pad_l = ref.out_size_and_padding(w, kw, sw, dw, padding)
    assert out.shape == (n, oh, ow, c_out)
    return dict(name=name, seed=seed, ints=[n, h, w, c_in, c_out, kh, kw, oh, ow, sh, sw,
                                             dh, dw, pad_t, pad_l, zp_in, zp_out,
                                             act_min, act_max],
                bitmap=fw.bitmap, bias=bias, folded=folded, mult=mult, shift=shift,
                expected=out.reshape(-1))


def arr(vals, per_line=24):
    vals = [str(int(v)) for v in vals]
    lines = [",".join(vals[i:i + per_line]) for i in range(0, len(vals), per_line)]
    return "{\n  " + ",\n  ".join(lines) + "}"


def render() -> str:
    out = ["/* Generated by dtmm_ops/tests/gen_golden.py from dtmm.reference; do not edit. */",
           "#ifndef DTMM_OPS_TESTS_DTMM_GOLDEN_H_", "#define DTMM_OPS_TESTS_DTMM_GOLDEN_H_",
           "#include <stdint.h>", "",
           "typedef struct {",
           "  const char* name;",
           "  uint32_t seed; /* xorshift32: input then dense OHWI filter, int8 = top byte */",
           "  int32_t n, h, w, c_in, c_out, kh, kw, out_h, out_w, sh, sw, dh, dw, pad_top,",
           "      pad_left, zp_in, zp_out, act_min, act_max;",
           "  const uint8_t* bitmap; /* FWCS.from_dense of the pruned filter */",
           "  const int32_t* bias;   /* original */",
           "  const int32_t* folded_bias;",
           "  const int32_t* multiplier;",
           "  const int32_t* shift;",
           "  const int8_t* expected;",
           "} dtmm_golden_case;", ""]
    cases = [make_case(i, s) for i, s in enumerate(CASES)]
    for i, c in enumerate(cases):
        out.append(f"static const uint8_t g{i}_bitmap[] = {arr(c['bitmap'])};")
        out.append(f"static const int32_t g{i}_bias[] = {arr(c['bias'], 8)};")
        out.append(f"static const int32_t g{i}_folded[] = {arr(c['folded'], 8)};")
        out.append(f"static const int32_t g{i}_mult[] = {arr(c['mult'], 8)};")
        out.append(f"static const int32_t g{i}_shift[] = {arr(c['shift'], 16)};")
        out.append(f"static const int8_t g{i}_expected[] = {arr(c['expected'], 32)};")
    out.append(f"#define DTMM_GOLDEN_COUNT {len(cases)}")
    out.append("static const dtmm_golden_case dtmm_golden_cases[DTMM_GOLDEN_COUNT] = {")
    for i, c in enumerate(cases):
        ints = ", ".join(str(int(v)) for v in c["ints"])
        out.append(f'  {{"{c["name"]}", {c["seed"]}u, {ints}, g{i}_bitmap, g{i}_bias, '
                   f"g{i}_folded, g{i}_mult, g{i}_shift, g{i}_expected}},")
    out += ["};", "", "#endif  /* DTMM_OPS_TESTS_DTMM_GOLDEN_H_ */", ""]
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="fail if the header is stale")
    args = ap.parse_args()
    text = render()
    if args.check:
        if not OUT.exists() or OUT.read_text() != text:
            print(f"{OUT} is stale: rerun {pathlib.Path(__file__).name}")
            return 1
        print(f"{OUT.name} is up to date")
        return 0
    OUT.write_text(text)
    print(f"wrote {OUT} ({len(text)} bytes, {len(CASES)} cases)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
