"""The layer suite of bench/kernels: every conv of the MLPerf Tiny reference int8
models and of the four microWakeWord models, a sweep over kernel size, C_in, stride,
dilation, padding and output plane, the six classic bench layers, and held-out
layers that no kernel default was tuned on.

The model layers are recorded here (shapes only, with the file and operator index
they come from) so the suite runs without the models; `bench/kernels --models
FILE.tflite...` re-extracts them from the real files, checks them against this
table and can bench them directly. Models are never committed.

    python bench/kernel_layers.py                 # list the suite
    python bench/kernel_layers.py --check A.tflite B.tflite   # table vs files
"""
from __future__ import annotations

import dataclasses
import fnmatch
import random
from typing import Iterable


@dataclasses.dataclass(frozen=True)
class Layer:
    name: str
    h: int
    w: int
    c_in: int
    c_out: int
    kh: int
    kw: int
    sh: int = 1
    sw: int = 1
    dh: int = 1
    dw: int = 1
    padding: str = "SAME"  # or "VALID", TFLite semantics
    group: str = "sweep"   # model | sweep | classic | heldout | blocks
    source: str = ""       # where the shape comes from
    block: int = 0         # filterlet block size B (format version 2); 0 = C_in (filterlets)

    def out_hw(self) -> tuple[int, int]:
        def one(n, k, s, d):
            eff = (k - 1) * d + 1
            return (n + s - 1) // s if self.padding == "SAME" else (n - eff + s) // s
        return one(self.h, self.kh, self.sh, self.dh), one(self.w, self.kw, self.sw, self.dw)

    def pads(self) -> tuple[int, int]:
        """TFLite ComputePaddingHeightWidth: (top, left)."""
        oh, ow = self.out_hw()
        def one(n, k, s, d, o):
            eff = (k - 1) * d + 1
            return max(0, ((o - 1) * s + eff - n) // 2)
        return one(self.h, self.kh, self.sh, self.dh, oh), one(self.w, self.kw, self.sw, self.dw, ow)

    def macs(self) -> int:
        oh, ow = self.out_hw()
        return oh * ow * self.c_out * self.kh * self.kw * self.c_in

    def shape(self) -> str:
        oh, ow = self.out_hw()
        s = f"{self.h}x{self.w}x{self.c_in}→{oh}x{ow}x{self.c_out} {self.kh}x{self.kw}"
        if (self.sh, self.sw) != (1, 1):
            s += f" s{self.sh}" if self.sh == self.sw else f" s{self.sh},{self.sw}"
        if (self.dh, self.dw) != (1, 1):
            s += f" d{self.dh}" if self.dh == self.dw else f" d{self.dh},{self.dw}"
        s += " valid" if self.padding == "VALID" else ""
        return s + (f" B{self.block}" if self.block else "")

    def key(self) -> tuple:
        return (self.h, self.w, self.c_in, self.c_out, self.kh, self.kw, self.sh, self.sw,
                self.dh, self.dw, self.padding) + ((self.block,) if self.block else ())


MLPERF = "mlcommons/tiny benchmark/training/"
MWW = "pymicro-wakeword 2.5.0 models/"


def _m(name, h, w, c_in, c_out, kh, kw, s=1, padding="SAME", source="", sw=None):
    return Layer(name, h, w, c_in, c_out, kh, kw, s, s if sw is None else sw,
                 padding=padding, group="model", source=source)


# Extracted with `bench/kernels --models` (bench/kernel_layers.extract) from the
# files named in `source`; identical shapes in one model are listed once.
MODEL_LAYERS = [
    # ResNet-8 (image classification), image_classification/trained_models/pretrainedResnet_quant.tflite
    _m("rn8_c0", 32, 32, 3, 16, 3, 3, source=MLPERF + "image_classification/pretrainedResnet_quant.tflite op 0"),
    _m("rn8_c1", 32, 32, 16, 16, 3, 3, source=MLPERF + "image_classification/pretrainedResnet_quant.tflite ops 1, 2"),
    _m("rn8_c4", 32, 32, 16, 32, 3, 3, 2, source=MLPERF + "image_classification/pretrainedResnet_quant.tflite op 4"),
    _m("rn8_c5", 16, 16, 32, 32, 3, 3, source=MLPERF + "image_classification/pretrainedResnet_quant.tflite op 5"),
    _m("rn8_c6", 32, 32, 16, 32, 1, 1, 2, source=MLPERF + "image_classification/pretrainedResnet_quant.tflite op 6"),
    _m("rn8_c8", 16, 16, 32, 64, 3, 3, 2, source=MLPERF + "image_classification/pretrainedResnet_quant.tflite op 8"),
    _m("rn8_c9", 8, 8, 64, 64, 3, 3, source=MLPERF + "image_classification/pretrainedResnet_quant.tflite op 9"),
    _m("rn8_c10", 16, 16, 32, 64, 1, 1, 2, source=MLPERF + "image_classification/pretrainedResnet_quant.tflite op 10"),
    # DS-CNN (keyword spotting), keyword_spotting/trained_models/kws_ref_model.tflite
    _m("kws_c0", 49, 10, 1, 64, 10, 4, 2, source=MLPERF + "keyword_spotting/kws_ref_model.tflite op 0"),
    _m("kws_pw", 25, 5, 64, 64, 1, 1, source=MLPERF + "keyword_spotting/kws_ref_model.tflite ops 2, 4, 6, 8"),
    # MobileNetV1 0.25 (visual wake words), visual_wake_words/trained_models/vww_96_int8.tflite
    _m("vww_c0", 96, 96, 3, 8, 3, 3, 2, source=MLPERF + "visual_wake_words/vww_96_int8.tflite op 0"),
    _m("vww_pw2", 48, 48, 8, 16, 1, 1, source=MLPERF + "visual_wake_words/vww_96_int8.tflite op 2"),
    _m("vww_pw4", 24, 24, 16, 32, 1, 1, source=MLPERF + "visual_wake_words/vww_96_int8.tflite op 4"),
    _m("vww_pw6", 24, 24, 32, 32, 1, 1, source=MLPERF + "visual_wake_words/vww_96_int8.tflite op 6"),
    _m("vww_pw8", 12, 12, 32, 64, 1, 1, source=MLPERF + "visual_wake_words/vww_96_int8.tflite op 8"),
    _m("vww_pw10", 12, 12, 64, 64, 1, 1, source=MLPERF + "visual_wake_words/vww_96_int8.tflite op 10"),
    _m("vww_pw12", 6, 6, 64, 128, 1, 1, source=MLPERF + "visual_wake_words/vww_96_int8.tflite op 12"),
    _m("vww_pw14", 6, 6, 128, 128, 1, 1, source=MLPERF + "visual_wake_words/vww_96_int8.tflite ops 14-22 (5)"),
    _m("vww_pw24", 3, 3, 128, 256, 1, 1, source=MLPERF + "visual_wake_words/vww_96_int8.tflite op 24"),
    _m("vww_pw26", 3, 3, 256, 256, 1, 1, source=MLPERF + "visual_wake_words/vww_96_int8.tflite op 26"),
    # Streaming wake word, streaming_wakeword/trained_models/str_ww_ref_model.tflite
    _m("sww_pw1", 28, 1, 40, 128, 1, 1, padding="VALID", source=MLPERF + "streaming_wakeword/str_ww_ref_model.tflite op 1"),
    _m("sww_pw3", 24, 1, 128, 128, 1, 1, padding="VALID", source=MLPERF + "streaming_wakeword/str_ww_ref_model.tflite op 3"),
    _m("sww_pw5", 15, 1, 128, 128, 1, 1, padding="VALID", source=MLPERF + "streaming_wakeword/str_ww_ref_model.tflite op 5"),
    _m("sww_pw7", 1, 1, 128, 32, 1, 1, padding="VALID", source=MLPERF + "streaming_wakeword/str_ww_ref_model.tflite op 7"),
    # microWakeWord (streaming; every conv has a 1x1 output plane)
    _m("mww_c0_32", 5, 1, 40, 32, 5, 1, 3, "VALID", MWW + "alexa.tflite op 14, hey_mycroft.tflite op 14", sw=1),
    _m("mww_c0_30", 5, 1, 40, 30, 5, 1, 3, "VALID", MWW + "hey_jarvis.tflite op 17", sw=1),
    _m("mww_c0_64", 5, 1, 40, 64, 5, 1, 3, "VALID", MWW + "okay_nabu.tflite op 14", sw=1),
    _m("mww_pw32_64", 1, 1, 32, 64, 1, 1, source=MWW + "alexa.tflite op 20, hey_mycroft.tflite op 20"),
    _m("mww_pw64_64", 1, 1, 64, 64, 1, 1,
       source=MWW + "alexa/hey_mycroft.tflite ops 26, 32, 37; okay_nabu.tflite ops 20, 31, 42, 52, 57"),
    _m("mww_pw30_60", 1, 1, 30, 60, 1, 1, source=MWW + "hey_jarvis.tflite op 22"),
    _m("mww_pw60_60", 1, 1, 60, 60, 1, 1, source=MWW + "hey_jarvis.tflite ops 27, 32, 37"),
]

# The models whose convs MODEL_LAYERS records (file name -> layer-name prefix); the
# anomaly-detection model (ad01_int8.tflite) has no conv.
MODEL_FILES = {
    "pretrainedResnet_quant.tflite": "rn8", "kws_ref_model.tflite": "kws",
    "vww_96_int8.tflite": "vww", "str_ww_ref_model.tflite": "sww",
    "alexa.tflite": "mww", "hey_jarvis.tflite": "mww", "hey_mycroft.tflite": "mww",
    "okay_nabu.tflite": "mww",
}


def _s(name, h, w, c_in, c_out, kh, kw, s=1, d=1, padding="SAME", source="sweep"):
    return Layer(name, h, w, c_in, c_out, kh, kw, s, s, d, d, padding, "sweep", source)


# One factor at a time around 16x16x32 -> 32, 3x3, stride 1, SAME.
SWEEP = [
    # kernel size
    _s("sw_k1", 16, 16, 32, 32, 1, 1, source="sweep: kernel"),
    _s("sw_k2", 16, 16, 32, 32, 2, 2, source="sweep: kernel"),
    _s("sw_k3", 16, 16, 32, 32, 3, 3, source="sweep: kernel (base)"),
    _s("sw_k5", 16, 16, 32, 32, 5, 5, source="sweep: kernel"),
    _s("sw_k7", 16, 16, 32, 32, 7, 7, source="sweep: kernel (> 25 taps)"),
    _s("sw_k10x4", 20, 10, 32, 32, 10, 4, source="sweep: kernel (> 25 taps)"),
    _s("sw_k1x7", 1, 32, 32, 32, 1, 7, source="sweep: kernel 1xN"),
    _s("sw_k7x1", 32, 1, 32, 32, 7, 1, source="sweep: kernel Nx1"),
    # C_in at 3x3
    *[_s(f"sw_c{c}", 16, 16, c, 32, 3, 3, source="sweep: C_in")
      for c in (1, 3, 8, 16, 20, 24, 64, 128, 256)],
    # small C_in with wide kernels
    _s("sw_c1_k10x4", 49, 10, 1, 32, 10, 4, 2, source="sweep: C_in 1, 40 taps (DS-CNN-like)"),
    _s("sw_c1_k5", 32, 32, 1, 16, 5, 5, source="sweep: C_in 1, 5x5"),
    _s("sw_c3_k7s2", 64, 64, 3, 16, 7, 7, 2, source="sweep: C_in 3, 7x7 stride 2"),
    _s("sw_c3_k5", 32, 32, 3, 16, 5, 5, source="sweep: C_in 3, 5x5"),
    _s("sw_c8_k5", 16, 16, 8, 32, 5, 5, source="sweep: C_in 8, 5x5"),
    # stride, dilation, padding
    _s("sw_s2", 16, 16, 32, 32, 3, 3, 2, source="sweep: stride"),
    _s("sw_s2_k5", 16, 16, 32, 32, 5, 5, 2, source="sweep: stride"),
    _s("sw_s2_k1", 16, 16, 32, 32, 1, 1, 2, source="sweep: stride 1x1"),
    _s("sw_d2", 16, 16, 32, 32, 3, 3, d=2, source="sweep: dilation"),
    _s("sw_d2_c8", 16, 16, 8, 32, 3, 3, d=2, source="sweep: dilation"),
    _s("sw_d2_k5", 24, 24, 16, 16, 5, 5, d=2, source="sweep: dilation"),
    _s("sw_valid", 16, 16, 32, 32, 3, 3, padding="VALID", source="sweep: padding"),
    _s("sw_valid_k5", 16, 16, 32, 32, 5, 5, padding="VALID", source="sweep: padding"),
    _s("sw_valid_s2", 17, 17, 32, 32, 3, 3, 2, padding="VALID", source="sweep: padding"),
    # output plane
    _s("sw_p1", 3, 3, 32, 32, 3, 3, padding="VALID", source="sweep: plane 1x1"),
    _s("sw_p1_same", 1, 1, 32, 32, 3, 3, source="sweep: plane 1x1 (all taps but one padded)"),
    _s("sw_p2", 4, 4, 32, 32, 3, 3, padding="VALID", source="sweep: plane 2x2"),
    _s("sw_p4", 4, 4, 32, 32, 3, 3, source="sweep: plane 4x4"),
    _s("sw_p8", 8, 8, 32, 32, 3, 3, source="sweep: plane 8x8"),
    _s("sw_p32", 32, 32, 32, 32, 3, 3, source="sweep: plane 32x32"),
    _s("sw_p96", 96, 96, 8, 8, 3, 3, source="sweep: plane 96x96"),
    _s("sw_p1x8", 1, 8, 32, 32, 1, 3, source="sweep: plane 1x8"),
    _s("sw_p8x1", 8, 1, 32, 32, 3, 1, source="sweep: plane 8x1"),
    # 1x1 over C_in and plane
    _s("sw_pw_c8", 16, 16, 8, 32, 1, 1, source="sweep: 1x1"),
    _s("sw_pw_c16", 16, 16, 16, 32, 1, 1, source="sweep: 1x1"),
    _s("sw_pw_c256", 8, 8, 256, 64, 1, 1, source="sweep: 1x1"),
    _s("sw_pw_p1", 1, 1, 128, 128, 1, 1, source="sweep: 1x1 plane 1x1"),
    _s("sw_pw_p2", 2, 2, 64, 64, 1, 1, source="sweep: 1x1 plane 2x2"),
    _s("sw_pw_p5", 5, 5, 64, 64, 1, 1, source="sweep: 1x1 plane 5x5"),
]


def _c(name, h, w, c_in, c_out, kh, kw, s=1, sw=None, padding="SAME"):
    return Layer(name, h, w, c_in, c_out, kh, kw, s, s if sw is None else sw, padding=padding,
                 group="classic", source="bench layers L1-L6 (docs/kernels.md before the suite)")


CLASSIC = [
    _c("L1", 32, 32, 3, 32, 3, 3), _c("L2", 16, 16, 64, 128, 3, 3),
    _c("L3", 8, 8, 128, 256, 3, 3), _c("L4", 16, 16, 64, 64, 3, 3),
    _c("L5", 49, 1, 40, 32, 5, 1, 3, sw=1, padding="VALID"), _c("L6", 16, 16, 64, 64, 1, 1),
]


def _heldout() -> list[Layer]:
    """Held-out layers: the larger ResNet of the MLPerf Tiny repo (same kinds, other
    channel counts) and shapes drawn once from a fixed seed over the suite's kinds.
    No default was chosen on these; run them last (`--layers heldout`)."""
    src = MLPERF + "image_classification/pretrainedResnet_large_int8.tflite"
    out = [
        Layer("rnL_c0", 32, 32, 3, 40, 3, 3, group="heldout", source=src + " op 0"),
        Layer("rnL_c1", 32, 32, 40, 40, 3, 3, group="heldout", source=src + " ops 1, 2"),
        Layer("rnL_c4", 32, 32, 40, 80, 3, 3, 2, 2, group="heldout", source=src + " op 4"),
        Layer("rnL_c5", 16, 16, 80, 80, 3, 3, group="heldout", source=src + " op 5"),
        Layer("rnL_c6", 32, 32, 40, 80, 1, 1, 2, 2, group="heldout", source=src + " op 6"),
        Layer("rnL_c8", 16, 16, 80, 160, 3, 3, 2, 2, group="heldout", source=src + " op 8"),
        Layer("rnL_c9", 8, 8, 160, 160, 3, 3, group="heldout", source=src + " op 9"),
        Layer("rnL_c10", 16, 16, 80, 160, 1, 1, 2, 2, group="heldout", source=src + " op 10"),
    ]
    out += _draw(20261201, "ho", 16)
    # A second seed (k9, drawn after the drivers for short kernels over few channels
    # and tiny dilated planes were chosen; nothing was tuned on it): the same kinds,
    # then those two kinds alone.
    out += _draw(20261202, "hn", 12)
    out += _draw(20261203, "hs", 8, kernels=[(1, 3), (3, 1), (5, 1), (1, 5)],
                 cins=[2, 3, 4, 5, 6, 7])
    out += _draw(20261204, "hd", 6, cins=[2, 3, 5, 12, 24], dilations=[2],
                 sizes=[5, 7, 9, 12])
    # A fifth seed (px, drawn after the 1x1 one-pixel and small-plane paths were
    # written, not tuned on): 1x1 kernels onto planes of 1 .. 36 pixels.
    out += _draw(20261205, "hp", 8, kernels=[(1, 1)], sizes=[1, 2, 3, 4, 6])
    # A sixth seed (hw, drawn after the MVE pixel driver's k > 1 path became fields
    # by vector gathers plus one asm loop over the runs, not tuned on): k > 1 onto
    # planes of 1 .. 3 output pixels (the pixel driver).
    out += _draw(20261206, "hw", 8, kernels=[(3, 3), (5, 1), (1, 5), (3, 1), (5, 5), (2, 2),
                                            (7, 1), (3, 2)],
                 cins=[3, 8, 16, 24, 40, 64, 96, 128], sizes=[1, 2, 3], max_pixels=3)
    # A seventh seed (hx, drawn after the DSP pixel driver's widened windows were
    # written for hw's misses, not tuned on): k > 1 onto 1 .. 2 output pixels.
    out += _draw(20261207, "hx", 8, kernels=[(3, 3), (5, 1), (1, 5), (3, 1), (2, 2), (1, 3),
                                            (4, 1), (7, 1)],
                 cins=[4, 12, 20, 32, 48, 56, 80, 112, 6], sizes=[1, 2, 3, 4], max_pixels=2)
    # An eighth seed (hk, drawn after the MVE im2col path for kernels of 26-100 taps
    # was written, not tuned on): kernels of 26-100 taps onto planes of >= 4 pixels.
    out += _draw(20261208, "hk", 8, kernels=[(7, 7), (10, 4), (6, 6), (5, 7), (9, 9), (4, 10),
                                            (3, 9), (8, 5)],
                 cins=[8, 12, 16, 24, 32, 48, 64], sizes=[6, 8, 10, 12, 16, 20], min_pixels=4)
    # A ninth seed (he, drawn after the MVE window driver first left short edges to
    # the interleaved im2col rows): kernels <= 25 taps over C_in a multiple of 16
    # onto planes of more than 16 pixels (the window driver). he10 (C_in 48 onto 8
    # channels) lost there; the rule became C_in <= C_out on a sweep of its own.
    out += _draw(20261209, "he", 8, kernels=[(3, 3), (5, 5), (2, 2), (3, 1), (1, 3), (5, 1)],
                 cins=[16, 32, 48, 64, 96, 128], sizes=[5, 7, 9, 10, 12, 14, 17, 20],
                 min_pixels=17)
    # A tenth seed (hf, drawn after that rule, not tuned on): the same kinds, SAME
    # padding (the edges), C_in 16 .. 48 so that most draws have C_in <= C_out.
    out += _draw(20261210, "hf", 8, kernels=[(3, 3), (5, 5), (2, 2), (3, 1), (1, 3)],
                 cins=[16, 32, 48], sizes=[5, 7, 9, 10, 12, 14, 17, 20], min_pixels=17,
                 paddings=["SAME"])
    return out


def _draw(seed, prefix, n, kernels=None, cins=None, dilations=None, sizes=None,
          max_pixels=None, min_pixels=None, paddings=None) -> list[Layer]:
    """n shapes drawn from random.Random(seed) over the suite's kinds (names prefix0,
    prefix1, ... by draw number; draws outside 2,000 .. 3,000,000 MACs, or onto more than
    max_pixels or fewer than min_pixels output pixels, are skipped)."""
    kernels = kernels or [(1, 1), (3, 3), (5, 5), (7, 7), (3, 1), (1, 3), (5, 1), (10, 4), (2, 2)]
    cins = cins or [1, 2, 3, 5, 12, 24, 40, 48, 72, 96, 144]
    rng = random.Random(seed)
    out: list[Layer] = []
    i = 0
    while len(out) < n:
        kh, kw = rng.choice(kernels)
        c_in = rng.choice(cins)
        c_out = rng.choice([8, 12, 24, 40, 48, 96])
        s = rng.choice([1, 1, 2])
        d = (rng.choice(dilations) if dilations else rng.choice([1, 1, 1, 2])) \
            if max(kh, kw) > 1 else 1
        padding = rng.choice(paddings or ["SAME", "VALID"])
        h = rng.choice(sizes or [1, 3, 5, 7, 12, 20, 28])
        w = 1 if kw == 1 and rng.random() < 0.3 else rng.choice(sizes or [1, 3, 6, 10, 14, 24])
        h, w = max(h, (kh - 1) * d + 1), max(w, (kw - 1) * d + 1)
        lay = Layer(f"{prefix}{i}", h, w, c_in, c_out, kh, kw, s, s, d, d, padding, "heldout",
                    f"seeded draw #{i} (random.Random({seed}))")
        i += 1
        oh, ow = lay.out_hw()
        if oh < 1 or ow < 1 or not 2_000 <= lay.macs() <= 3_000_000:
            continue
        if max_pixels and oh * ow > max_pixels:
            continue
        if min_pixels and oh * ow < min_pixels:
            continue
        out.append(lay)
    return out


HELDOUT = _heldout()


def _blocks() -> list[Layer]:
    """The `blocks` group (format version 2, issue "Block filterlets"): the 1x1
    convs with C_in >= 64 of the model, sweep and classic groups at B = 16 (the
    issue's goal cells), a few of them at B = 8 and 32 too, and three held-out 1x1
    shapes no block-driver choice was made on (names blk_ho*)."""
    by_name = {L.name: L for L in MODEL_LAYERS + SWEEP + CLASSIC}
    at16 = ["kws_pw", "vww_pw10", "vww_pw12", "vww_pw14", "vww_pw24", "vww_pw26", "sww_pw3",
            "sww_pw5", "mww_pw64_64", "L6", "sw_pw_c256"]
    other_b = {"kws_pw": (8, 32), "vww_pw14": (8, 32), "sw_pw_c256": (8, 32)}
    out = []
    for name in at16:
        for b in (16, *other_b.get(name, ())):
            out.append(dataclasses.replace(by_name[name], name=f"{name}_b{b}", group="blocks",
                                           block=b, source=by_name[name].source))
    held = [("blk_ho0", 10, 10, 96, 48, 1, "SAME"), ("blk_ho1", 7, 7, 160, 80, 1, "SAME"),
            ("blk_ho2", 14, 14, 80, 24, 2, "VALID")]
    for name, h, w, ci, co, s, pad in held:
        out.append(Layer(name + "_b16", h, w, ci, co, 1, 1, s, s, padding=pad, group="blocks",
                         source="held-out 1x1 shape (blocks: not tuned on)", block=16))
    return out


BLOCKS = _blocks()

ALL = MODEL_LAYERS + SWEEP + CLASSIC + HELDOUT + BLOCKS

# A quick subset for iterating on the kernels (a few minutes): one layer per kind.
QUICK = ["L2", "L5", "L6", "rn8_c5", "kws_c0", "kws_pw", "vww_pw24", "mww_c0_32",
         "mww_pw64_64", "sww_pw3", "sw_c3_k7s2", "sw_d2", "sw_k7", "sw_p1"]


def select(spec: str | None, layers: Iterable[Layer] = ALL) -> list[Layer]:
    """Layers named by a comma list of names, groups (model, sweep, classic,
    heldout, blocks, quick, all) or fnmatch patterns (e.g. 'vww_*'); None = all but
    heldout and blocks. Unknown names are an error."""
    layers = list(layers)
    if not spec:
        return [L for L in layers if L.group not in ("heldout", "blocks")]
    picked: list[Layer] = []
    for tok in [t.strip() for t in spec.split(",") if t.strip()]:
        if tok == "all":
            hits = layers
        elif tok == "quick":
            hits = [L for L in layers if L.name in QUICK]
        elif tok in {"model", "sweep", "classic", "heldout", "blocks"}:
            hits = [L for L in layers if L.group == tok]
        else:
            hits = [L for L in layers if fnmatch.fnmatchcase(L.name, tok)]
        if not hits:
            raise SystemExit(f"--layers: '{tok}' matches no layer (see bench/kernel_layers.py)")
        picked += [L for L in hits if L not in picked]
    return picked


# -- extraction from .tflite files ------------------------------------------------------
def extract(path) -> list[Layer]:
    """Every int8 CONV_2D of a .tflite file as a Layer (name <file stem>_op<index>),
    read with TFLite's schema object API."""
    import pathlib

    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

    path = pathlib.Path(path)
    buf = path.read_bytes()
    model = schema.ModelT.InitFromPackedBuf(buf, 0)
    conv = schema.BuiltinOperator.CONV_2D
    layers = []
    for sg in model.subgraphs or []:
        for oi, op in enumerate(sg.operators or []):
            code = model.operatorCodes[op.opcodeIndex]
            if max(code.builtinCode, code.deprecatedBuiltinCode) != conv:
                continue
            t = sg.tensors
            i, w = t[op.inputs[0]], t[op.inputs[1]]
            if i.type != schema.TensorType.INT8:
                continue
            o = op.builtinOptions
            _, h, wd, c_in = (int(v) for v in i.shape)
            c_out, kh, kw, _ = (int(v) for v in w.shape)
            layers.append(Layer(f"{path.stem}_op{oi}", h, wd, c_in, c_out, kh, kw, o.strideH,
                                o.strideW, o.dilationHFactor, o.dilationWFactor,
                                "SAME" if o.padding == schema.Padding.SAME else "VALID",
                                "model", f"{path.name} op {oi}"))
    return layers


def check_against_table(paths) -> list[str]:
    """Shapes of the files' convs that MODEL_LAYERS does not record (empty = table
    agrees with the files)."""
    known = {L.key() for L in MODEL_LAYERS + HELDOUT}
    missing = []
    for p in paths:
        for L in extract(p):
            if L.key() not in known:
                missing.append(f"{L.source}: {L.shape()} not in the table")
    return missing


def main():
    import argparse
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", nargs="*", default=None, metavar="MODEL.tflite")
    ap.add_argument("--layers", default="all")
    args = ap.parse_args()
    if args.check is not None:
        missing = check_against_table(args.check)
        for m in missing:
            print(m)
        raise SystemExit(1 if missing else 0)
    for L in select(args.layers):
        print(f"{L.name:12s} {L.group:8s} {L.shape():40s} {L.macs():>10,} MACs  {L.source}")


if __name__ == "__main__":
    main()
