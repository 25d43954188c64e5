#!/usr/bin/env python3
"""Seed corpus for the kernel fuzzer (conv_s8_fuzzer.c): one file per layer.

    python3 tests/fuzz/kernel/gen_seeds.py OUT_DIR [layer,corrupt,edge]

Realistic layers (3x3 SAME, strided, dilated, 1x1, 7x7 and 49x1-like kernels, inputs
smaller than the kernel, dense / pruned / fully pruned, every batch size), one
seed per FWCS corruption and a few edge geometries. Standard library only; the
byte layout is the decoder's (docs/fuzzing.md, "Kernel input format").
"""

from __future__ import annotations

import hashlib
import os
import random
import struct
import sys

# conv_s8_fuzzer.c kEdges, by value -> selector byte
EDGES = [0, -1, 1, 2, 3, 7, 65535, 65536, 65537, 46340, 46341, 1 << 20,
         (1 << 24) + 1, 1 << 30, (1 << 30) + 1, 2**31 - 2, 2**31 - 1, -2**31,
         -2**31 + 1, -2, 0x7FFF, 0x8000, 255, 256]
GEOM = {"SAME": 0, "VALID": 1, "RAW": 2, "PERTURBED": 3}
CORRUPTIONS = ["none", "bitmap_short", "bitmap_long", "padding_bit", "filterlets_plus",
               "filterlets_minus", "values_null", "mult_negative", "shift_high",
               "shift_low", "version", "null_bias", "values_null_empty"]


def size(v: int, small_max: int) -> bytes:
    """take_size() encoding of v."""
    if 1 <= v <= small_max:
        return bytes([v - 1])
    if v in EDGES:
        return bytes([224 + EDGES.index(v)])
    return bytes([255]) + struct.pack("<i", v)


def int8ish(v: int) -> bytes:
    """take_int8ish() encoding of v."""
    if -128 <= v <= 127:
        return bytes([0, v & 0xFF])
    return bytes([255, 0]) + struct.pack("<i", v)


def layer(*, n=1, h=8, w=8, c_in=8, c_out=8, kh=3, kw=3, sh=1, sw=1, dh=1, dw=1,
          geom="SAME", corruption="none", style=0, zp_in=-3, zp_out=5, act=(-128, 127),
          out_hw=None, pads=(0, 0), perturb=(0, 0), density=128, modes=(0, 0, 0),
          pool_len=256, seed=0) -> bytes:
    flags = GEOM[geom] | CORRUPTIONS.index(corruption) << 2 | style << 6
    b = bytes([flags])
    b += size(n, 3) + size(h, 12) + size(w, 12) + size(c_in, 24) + size(c_out, 16)
    b += size(kh, 8) + size(kw, 8) + size(sh, 4) + size(sw, 4) + size(dh, 4) + size(dw, 4)
    b += int8ish(zp_in) + int8ish(zp_out) + int8ish(act[0]) + int8ish(act[1])
    if act[0] > act[1]:
        b += bytes([0])  # keep the inverted range
    if geom == "RAW":
        oh, ow = out_hw
        b += size(oh, 12) + size(ow, 12) + size(pads[0] + 1, 8) + size(pads[1] + 1, 8)
    if geom == "PERTURBED":
        b += bytes([perturb[0], perturb[1] + 2])
    b += bytes([density, modes[0], modes[1], modes[2]])
    rng = random.Random(seed)
    return b + bytes(rng.randrange(256) for _ in range(pool_len))


def seeds():
    """(group, name, bytes): group "layer" (valid layers), "corrupt" (one FWCS or
    per-channel corruption: validate must reject), "edge" (size, stride, dilation,
    zero point edges)."""
    for name, data in layers():
        yield "layer", name, data
    for c in CORRUPTIONS[1:]:
        yield "corrupt", c, layer(corruption=c, c_out=5, kh=3, kw=3)
    for name, data in edges():
        yield "edge", name, data


def layers():
    yield "conv3x3_same", layer()
    yield "conv3x3_same_s2", layer(sh=2, sw=2, h=9, w=7)
    yield "conv5x5_same_batch3", layer(n=3, kh=5, kw=5, h=10, w=6, c_in=5, c_out=3)
    yield "conv1x1_valid", layer(kh=1, kw=1, geom="VALID", c_in=24, c_out=16)
    yield "conv7x7_d2_same", layer(kh=7, kw=7, dh=2, dw=2, h=12, w=12, c_in=3, c_out=4)
    yield "conv8x8_s3_valid", layer(kh=8, kw=8, sh=3, sw=3, h=12, w=12, geom="VALID")
    yield "kws_like_5x1", layer(h=12, w=1, kh=5, kw=1, c_in=24, c_out=16)
    yield "input_smaller_than_kernel", layer(h=2, w=3, kh=7, kw=5, c_out=5)
    yield "input_1x1_kernel_8x8", layer(h=1, w=1, kh=8, kw=8, dh=3, dw=4)
    yield "dense", layer(density=255, c_in=17, c_out=9)
    yield "fully_pruned", layer(density=0, c_out=11)
    yield "sparse_90", layer(density=26, kh=5, kw=5, c_in=16, c_out=16)
    yield "stride3_dil3", layer(sh=3, sw=2, dh=3, dw=2, h=12, w=11, kh=3, kw=4)
    yield "relu6_like", layer(act=(-128, 30), zp_out=-128)
    yield "extreme_values_wrap", layer(style=1, modes=(1, 2, 1), c_in=24, kh=8, kw=8,
                                       h=12, w=12, density=255)
    yield "raw_output_larger", layer(geom="RAW", out_hw=(12, 9), pads=(2, 1))
    yield "raw_no_pad", layer(geom="RAW", out_hw=(3, 3), pads=(0, 0), kh=3, kw=3)
    yield "perturbed_out_h", layer(geom="PERTURBED", perturb=(0, 1))
    yield "perturbed_pad", layer(geom="PERTURBED", perturb=(2, 2))


def edges():
    """The validator must reject these or the kernel stay in bounds."""
    yield "stride_65535", layer(sh=65535, sw=65535, h=5, w=5, kh=7, kw=7)
    yield "stride_int32max_out1", layer(sh=2**31 - 1, sw=1, h=2, w=4, kh=5, kw=3)
    yield "dilation_65536", layer(dh=65536, dw=1, h=3, w=3)
    yield "batch_int32max", layer(n=2**31 - 1, h=1, w=1, kh=1, kw=1)
    yield "huge_hw", layer(h=65536, w=65536, c_in=1, kh=1, kw=1)
    yield "huge_c_out", layer(c_out=65536, kh=1, kw=1)
    yield "kernel_65535", layer(kh=65535, kw=1, c_out=1)
    yield "zp_out_of_range", layer(zp_in=128, zp_out=-129)
    yield "act_inverted", layer(act=(10, -10))


def main(argv) -> int:
    if len(argv) not in (2, 3):
        print("usage: gen_seeds.py OUT_DIR [GROUPS, default layer,corrupt,edge]",
              file=sys.stderr)
        return 2
    out = argv[1]
    groups = (argv[2] if len(argv) == 3 else "layer,corrupt,edge").split(",")
    os.makedirs(out, exist_ok=True)
    n = 0
    for group, name, data in seeds():
        if group not in groups:
            continue
        h = hashlib.sha1(data).hexdigest()[:8]
        with open(os.path.join(out, f"{group}-{name}-{h}"), "wb") as f:
            f.write(data)
        n += 1
    print(f"wrote {n} seeds to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
