"""Which kernel driver of dtmm_conv_s8 runs each DTMM_CONV_2D, per target.

    drivers.conv_driver(geom, block, "cortex-m55")   # "pixel", "window", ...
    drivers.conv_paths(geom, "window", "cortex-m55")  # ("im2col_interleaved",)
    drivers.model_drivers(model, "cortex-m4")         # ("pointwise", "window")
    drivers.make_flag(names)                          # DTMM_CONV_DRIVERS="pointwise window"

An image links only the drivers (and the Helium im2col paths) its build names in
DTMM_CONV_DRIVERS (dtmm_ops/dtmm_conv_s8.h, docs/kernels.md "Driver sets"); this
module is the exact mirror of dtmm_conv_s8_choose (dtmm_ops/dtmm_conv_s8.c) with the
thresholds of dtmm_conv_s8_support.h per architecture and of the path predicates of
dtmm_conv_s8_drivers.h, checked against the C on every architecture by
dtmm_ops/tests/dtmm_driver_golden.h (dtmm_ops/tests/gen_driver_golden.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from dtmm.core.errors import ArgumentError

# DTMM_USE_* bits of dtmm_conv_s8.h, in their order (also TFLM make's names).
DRIVERS = {"pixel": 1, "pointwise": 2, "expanded": 4, "im2col": 8, "window": 16,
           "pointwise_blocks": 32}
# Paths of the im2col part that only MVE builds compile (DTMM_USE_IM2COL_*): a build
# names them beside im2col or window; left out, their layers take the general rows.
PATHS = {"im2col_interleaved": 64, "im2col_large": 128}
# Every name DTMM_CONV_DRIVERS takes, with its DTMM_USE_* bit.
NAMES = {**DRIVERS, **PATHS}
# The kernel files whose code depends on DTMM_CONV_DRIVERS (the dispatchers of
# Eval and of the scratch size; im2col and the MVE window driver for the paths):
# what a build of another set recompiles.
DISPATCH_SOURCES = ("dtmm_conv_s8.c", "dtmm_conv_s8_get_buffer_size.c",
                    "dtmm_conv_s8_im2col.c", "dtmm_conv_s8_rect.c")

# The architecture dtmm_conv_s8_support.h compiles for each target.
ARCH_OF_TARGET = {"cortex-m4": "dsp", "cortex-m7": "dsp", "cortex-m33": "dsp",
                  "cortex-m55": "mve", "cortex-m85": "mve", "x86": "portable"}


# DTMM_IM2COL_PIECE_TAPS (dtmm_conv_s8_drivers.h): tap masks of up to this many taps
# are one field a channel in the im2col rows; 32-100 taps are read in pieces.
IM2COL_PIECE_TAPS = 25


@dataclass(frozen=True)
class Thresholds:
    """The predicates' constants of dtmm_conv_s8_support.h for one architecture."""

    group: int                      # DTMM_P
    window_min_pixels: int          # DTMM_WINDOW_MIN_PIXELS
    dilated_min_cin_in_place: int   # DTMM_DILATED_MIN_CIN_IN_PLACE
    pointwise_min_pixels: int       # DTMM_POINTWISE_MIN_PIXELS
    max_taps: int = 32              # DTMM_MAX_TAPS
    max_runs: int = 16              # DTMM_MAX_RUNS
    min_row_bytes: int = 8          # DTMM_MIN_ROW_BYTES
    expanded_max_cin: int = 3       # DTMM_EXPANDED_MAX_CIN
    expanded_min_taps: int = 16     # DTMM_EXPANDED_MIN_TAPS
    expanded_max_cin_dilated: int = 8  # DTMM_EXPANDED_MAX_CIN_DILATED


THRESHOLDS = {
    "mve": Thresholds(group=4, window_min_pixels=16, dilated_min_cin_in_place=32,
                      pointwise_min_pixels=3),
    "dsp": Thresholds(group=3, window_min_pixels=0, dilated_min_cin_in_place=1,
                      pointwise_min_pixels=3),
    "portable": Thresholds(group=4, window_min_pixels=0, dilated_min_cin_in_place=1,
                           pointwise_min_pixels=4),
}


@dataclass(frozen=True)
class ConvGeom:
    """What dtmm_conv_s8_choose reads of a layer (dtmm_geom)."""

    in_w: int
    in_c: int
    out_h: int
    out_w: int
    ker_h: int
    ker_w: int
    dh: int = 1
    dw: int = 1

    @property
    def taps(self) -> int:
        return self.ker_h * self.ker_w


def arch_of_target(target: str) -> str:
    if target in THRESHOLDS:
        return target
    if target not in ARCH_OF_TARGET:
        raise ArgumentError(f"unknown target {target!r} (known: "
                            f"{', '.join(ARCH_OF_TARGET)})")
    return ARCH_OF_TARGET[target]


def _dilated(g: ConvGeom) -> bool:
    return (g.dw > 1 and g.ker_w > 1) or (g.dh > 1 and g.ker_h > 1)


def _inplace_run_bytes(g: ConvGeom) -> int:
    if g.dw > 1 and g.ker_w > 1:
        return g.in_c
    if g.dh * g.in_w == g.ker_w:
        return g.taps * g.in_c
    return g.ker_w * g.in_c


def _inplace_max_runs(g: ConvGeom) -> int:
    if g.dw > 1 and g.ker_w > 1:
        return g.taps
    if g.dh * g.in_w == g.ker_w:
        return (g.taps + 1) // 2
    return g.taps if g.ker_w == 1 else g.ker_h * ((g.ker_w + 1) // 2)


def conv_driver(g: ConvGeom, block: int | None, arch: str) -> str:
    """dtmm_conv_s8_choose: the driver a build with every driver runs the layer with
    (block: filterlet block size B, None or 0 or C_in for whole filterlets)."""
    t = THRESHOLDS[arch_of_target(arch)]
    pixels = g.out_h * g.out_w
    if block and block < g.in_c:
        return "pointwise_blocks"
    if pixels < t.pointwise_min_pixels or (g.taps > 1 and pixels < t.group):
        return "pixel"
    if g.taps == 1:
        return "pointwise"
    if ((g.in_c <= t.expanded_max_cin and (g.taps >= t.expanded_min_taps or g.in_c == 1))
            or (g.in_c <= t.expanded_max_cin_dilated
                and (_dilated(g) or _inplace_run_bytes(g) < t.min_row_bytes))):
        return "expanded"
    small_plane = g.out_h > 1 and g.out_w > 1 and pixels <= t.window_min_pixels
    if (g.taps > t.max_taps or _inplace_max_runs(g) > t.max_runs
            or _inplace_run_bytes(g) < t.min_row_bytes
            or (_dilated(g) and g.in_c < t.dilated_min_cin_in_place) or small_plane):
        return "im2col"
    return "window"


def conv_paths(g: ConvGeom, driver: str, arch: str) -> tuple:
    """The im2col paths (PATHS) a layer run by `driver` takes on `arch` with every
    path built: the shape predicates of dtmm_conv_s8_drivers.h, for im2col and for
    the window drivers, whose leftover pixels go through im2col (a window layer whose
    rectangles leave none still counts, as dtmm_conv_s8_driver counts it)."""
    if arch_of_target(arch) != "mve" or driver not in ("im2col", "window"):
        return ()
    out = []
    if g.in_c % 16 == 0 and g.taps <= IM2COL_PIECE_TAPS:
        out.append("im2col_interleaved")
    if 31 < g.taps <= 4 * IM2COL_PIECE_TAPS:
        out.append("im2col_large")
    return tuple(out)


def built(names) -> tuple:
    """The drivers and paths a build of `names` links: window brings im2col (its
    borders); a path needs im2col or window."""
    out = set(names)
    unknown = out - set(NAMES)
    if unknown:
        raise ArgumentError(f"unknown conv driver(s) {', '.join(sorted(unknown))} "
                            f"(known: {', '.join(NAMES)})")
    if "window" in out:
        out.add("im2col")
    if out & set(PATHS) and "im2col" not in out:
        raise ArgumentError(f"{', '.join(sorted(out & set(PATHS)))}: paths of im2col, "
                            "name im2col or window too")
    return tuple(n for n in NAMES if n in out)


def dtmm_op_geom(d) -> ConvGeom:
    """ConvGeom of a decoded DTMM_CONV_2D (dtmm.core.ops.DtmmOp)."""
    fw, p = d.fwcs, d.params
    return ConvGeom(in_w=d.input_shape[2], in_c=fw.c_in, out_h=d.output_shape[1],
                    out_w=d.output_shape[2], ker_h=fw.kernel_h, ker_w=fw.kernel_w,
                    dh=p.dilation_h, dw=p.dilation_w)


def op_driver(d, target: str) -> str:
    """The driver of one decoded DTMM_CONV_2D on `target`."""
    return conv_driver(dtmm_op_geom(d), d.fwcs.block, target)


def model_drivers(model, target: str) -> tuple:
    """The drivers and im2col paths the DTMM_CONV_2D ops of `model` (a
    dtmm.core.tflite.Model, the bytes of a .tflite or its path) take on `target`, in
    DTMM_USE_* order; () when it has none. Exactly what DTMM_CONV_DRIVERS must name
    for no layer to run slower than with every driver."""
    from dtmm.core.ops import is_dtmm, read_dtmm
    from dtmm.core.tflite import Model

    if not isinstance(model, Model):
        if not isinstance(model, (bytes, bytearray)):
            with open(model, "rb") as fh:
                model = fh.read()
        model = Model.read(bytes(model))
    names = set()
    for si, sg in enumerate(model.subgraphs):
        for oi, op in enumerate(sg.operators):
            if is_dtmm(op):
                d = read_dtmm(model, si, oi)
                driver = op_driver(d, target)
                names.update((driver, *conv_paths(dtmm_op_geom(d), driver, target)))
    return tuple(n for n in NAMES if n in names)


def make_flag(names) -> str:
    """TFLM make's variable for a build of `names`."""
    return f'DTMM_CONV_DRIVERS="{" ".join(names)}"'


def copt_flag(names) -> str:
    """The C flag for a build of `names` (Bazel --copt, other build systems)."""
    return "-DDTMM_CONV_DRIVERS=" + ("+".join(f"DTMM_USE_{n.upper()}" for n in names) or "0")


def summary_line(target: str, names) -> str:
    """What `dtmm convert` and `dtmm inspect` print per target."""
    return (f"drivers {target}: {' '.join(names)} (TFLM make {make_flag(names)}; "
            f"C: {copt_flag(names)})")
