#!/usr/bin/env python3
"""Code size and worst-case stack of the DTMM kernel library next to CMSIS-NN's
convolution, per target and optimization level.

    bench/kernel_size.py --out DIR [--cmsis-nn CMSIS_NN_ROOT] [--targets ...]

For each target (Cortex-M4 soft-float DSP path, Cortex-M55 hard-float MVE path) and
-O2 / -Os, links a minimal image (tests/cortex_m startup) whose main references
only the public entry points (dtmm_conv_s8, _validate, _get_buffer_size; CMSIS-NN:
arm_convolve_wrapper_s8 and its _get_buffer_size) with -ffunction-sections and
--gc-sections, so that exactly the code an application links is counted:
.text (+ .rodata) of the functions from the library's objects (static copies of
one name in several objects each count), split into the kernel drivers Eval runs
and the validation only Prepare runs (dtmm_conv_s8_validate, the shape checks, the
scratch sizes): CMSIS-NN's wrapper validates nothing, TFLM's cmsis_nn/conv.cc does
that in Prepare. The total stays the headline number. The C library
routines they pull in (memcpy, memset, ...) are listed separately since an
application has them anyway. Worst-case stack: gcc -fstack-usage frame sizes
along the deepest call chain from each entry point (call graph from the linked
image's disassembly; C library frames from their prologues).

Driver sets: the same image for every subset of the conv drivers, and where im2col
is built for every subset of its Helium paths (-DDTMM_CONV_DRIVERS, dtmm_conv_s8.h;
only the files of drivers.DISPATCH_SOURCES depend on it), -O2: the .text an image
links when its model needs only those.

Writes DIR/kernels_size.csv, DIR/kernels_size.md and DIR/kernels_size_sets.csv.
"""
from __future__ import annotations

import argparse
import csv
import json
import pathlib
import re
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[1]
CM = ROOT / "tests" / "cortex_m"
sys.path.insert(0, str(ROOT / "python"))
from dtmm.core import drivers  # noqa: E402  (DTMM_USE_* bits, the dispatcher files)
TARGETS = {
    "cortex-m4": (["-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=soft"], "m4.ld", "M4"),
    "cortex-m55": (["-mcpu=cortex-m55", "-mthumb", "-mfloat-abi=hard"], "m55.ld", "M55"),
}
DTMM_MAIN = r"""
#include "dtmm_conv_s8.h"
volatile long sink;
int main(void) {
  sink = (long)dtmm_conv_s8_validate(0, 0, 0) + dtmm_conv_s8_get_buffer_size(0, 0) +
         (long)dtmm_conv_s8(0, 0, 0, 0, 0, 0);
  return 0;
}
"""
CMSIS_MAIN = r"""
#include "arm_nnfunctions.h"
volatile long sink;
int main(void) {
  sink = (long)arm_convolve_wrapper_s8(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0) +
         arm_convolve_wrapper_s8_get_buffer_size(0, 0, 0, 0);
  return 0;
}
"""
ENTRIES = {"dtmm": ["dtmm_conv_s8", "dtmm_conv_s8_validate", "dtmm_conv_s8_get_buffer_size"],
           "cmsis_nn": ["arm_convolve_wrapper_s8", "arm_convolve_wrapper_s8_get_buffer_size"]}


# Code only Prepare runs (validation, scratch size): the functions of the
# validators' and get_buffer_size objects and every *_get_buffer_size companion.
# CMSIS-NN's wrapper has no validator (TFLM's cmsis_nn/conv.cc checks in
# Prepare), so the bench splits the library's .text into these and the kernel
# drivers that Eval runs.
PREPARE_OBJECTS = re.compile(r"validate|get_buffer_size")
PREPARE_FUNCTIONS = re.compile(r"get_buffer_size")


def run(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.stderr.write(f"$ {' '.join(map(str, cmd))}\n{r.stdout}{r.stderr}")
        raise SystemExit("kernel_size: command failed")
    return r.stdout


def frame_of_prologue(lines: list[str]) -> int:
    """Stack bytes of a function without .su data, from its first instructions."""
    total = 0
    for ln in lines[:6]:
        m = re.search(r"\b(push|stmdb\s+sp!,)\s*\{([^}]*)\}", ln)
        if m:
            total += 4 * len([r for r in m.group(2).split(",") if r.strip()])
        m = re.search(r"\bsub(?:\.w)?\s+sp,\s*(?:sp,\s*)?#(\d+)", ln)
        if m:
            total += int(m.group(1))
        m = re.search(r"\bvpush\s*\{([^}]*)\}", ln)
        if m:
            total += 8 * len(m.group(1).split(","))
    return total




def measure(component, srcs, incs, flags, ld, work: pathlib.Path, main_src: str,
            defines=(), reuse: pathlib.Path | None = None):
    """reuse: a work directory of the same component and flags whose objects, all
    but the dispatcher's, are taken as they are (driver sets)."""
    work.mkdir(parents=True, exist_ok=True)
    common = [*flags, "-std=c99", "-ffunction-sections", "-fdata-sections", "-fstack-usage",
              "-w", *(f"-I{i}" for i in incs), *defines]
    objs, lib_objs = [], []
    for src in srcs:
        o = work / (src.stem + ".o")
        if reuse is not None and src.name not in drivers.DISPATCH_SOURCES:
            o = reuse / (src.stem + ".o")
        else:
            run(["arm-none-eabi-gcc", *common, "-c", str(src), "-o", str(o)])
        objs.append(o)
        lib_objs.append(o)
    (work / "main.c").write_text(main_src)
    for src in (work / "main.c", CM / "startup.c"):
        o = work / (src.stem + "_app.o")
        run(["arm-none-eabi-gcc", *common, "-c", str(src), "-o", str(o)])
        objs.append(o)
    elf = work / "size.elf"
    run(["arm-none-eabi-gcc", *flags[:3], "-nostartfiles", "--specs=nano.specs",
         "-Wl,--gc-sections", f"-T{CM / ld}", f"-L{CM}", *map(str, objs), "-o", str(elf)])
    lib_fns, prepare_fns = set(), set()
    for o in lib_objs:
        for line in run(["arm-none-eabi-nm", "--defined-only", str(o)]).splitlines():
            p = line.split()
            if len(p) == 3 and p[1] in "tTrRdD":
                lib_fns.add(p[2])
                if PREPARE_OBJECTS.search(o.stem) or PREPARE_FUNCTIONS.search(p[2]):
                    prepare_fns.add(p[2])
    sizes, kinds, syms = {}, {}, []
    for line in run(["arm-none-eabi-nm", "-S", "--defined-only", str(elf)]).splitlines():
        p = line.split()
        if len(p) == 4:
            sizes[p[3]] = sizes.get(p[3], 0) + int(p[1], 16)  # static copies of one name add up
            kinds[p[3]] = p[2]
            syms.append((p[3], int(p[1], 16), p[2]))
    text = sum(n for s, n, k in syms if s in lib_fns and k in "tT")
    rodata = sum(n for s, n, k in syms if s in lib_fns and k in "rR")
    prepare = sum(n for s, n, k in syms if s in prepare_fns and k in "tT")
    # call graph of the linked image
    dis = run(["arm-none-eabi-objdump", "-d", "--no-show-raw-insn", str(elf)])
    bodies, cur = {}, None
    for ln in dis.splitlines():
        m = re.match(r"^[0-9a-f]+ <(\S+)>:", ln)
        if m:
            cur = m.group(1)
            bodies[cur] = []
        elif cur and ln.strip():
            bodies[cur].append(ln)
    calls = {f: sorted({m.group(1) for ln in body
                        for m in [re.search(r"\b(?:bl|blx|b|b\.w)\s+[0-9a-f]+ <([^+>]+)>", ln)]
                        if m and m.group(1) != f})
             for f, body in bodies.items()}
    su = {}
    for f in [*work.glob("*.su"), *(reuse.glob("*.su") if reuse else [])]:
        for line in f.read_text().splitlines():
            m = re.match(r".*:(\S+)\s+(\d+)\s+(\S+)", line)
            if m:
                su[m.group(1)] = int(m.group(2))
    libc = sorted({c for f in bodies if f in lib_fns for c in calls.get(f, [])
                   if c not in lib_fns})
    memo = {}

    def depth(f, seen=()):
        if f in memo:
            return memo[f]
        own = su.get(f, frame_of_prologue(bodies.get(f, [])))
        sub = [depth(c, seen + (f,)) for c in calls.get(f, []) if c not in seen and c in bodies]
        memo[f] = own + max(sub, default=0)
        return memo[f]

    stack = max(depth(e) for e in ENTRIES[component] if e in bodies)
    libc_text = sum(sizes.get(c, 0) for c in libc)
    return dict(text=text, rodata=rodata, stack=stack, prepare_text=prepare,
                driver_text=text - prepare, libc=", ".join(libc),
                libc_text=libc_text,
                per_fn={s: n for s, n in sizes.items() if s in lib_fns and kinds[s] in "tT"})


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, type=pathlib.Path)
    ap.add_argument("--cmsis-nn", type=pathlib.Path, default=None)
    ap.add_argument("--targets", default="cortex-m4,cortex-m55")
    ap.add_argument("--no-driver-sets", action="store_true",
                    help="skip the table of every driver subset")
    ap.add_argument("--update-code-size", action="store_true",
                    help="write the driver-set table into python/dtmm/core/data/"
                         "code_size.json (conv_kernel_bytes), what dtmm convert's image "
                         "estimate reads")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    lib = sorted((ROOT / "dtmm_ops").glob("dtmm_*.c"))
    rows, set_rows = [], []
    # every subset of the drivers; where im2col is built (alone or under window),
    # with each subset of its paths too
    im2col_bits = drivers.DRIVERS["im2col"] | drivers.DRIVERS["window"]
    path_bits = list(drivers.PATHS.values())
    path_sets = [sum(b for i, b in enumerate(path_bits) if k >> i & 1)
                 for k in range(1 << len(path_bits))]
    set_masks = [m | p for m in range(1 << len(drivers.DRIVERS))
                 for p in (path_sets if m & im2col_bits else (0,))]
    with tempfile.TemporaryDirectory(prefix="dtmm_size_") as tmp:
        for t in args.targets.split(","):
            flags, ld, short = TARGETS[t]
            for opt in ("-O2", "-Os"):
                comps = [("dtmm", lib, [ROOT / "dtmm_ops"], DTMM_MAIN)]
                if args.cmsis_nn:
                    root = args.cmsis_nn
                    srcs = [f for sub in ("ConvolutionFunctions", "NNSupportFunctions")
                            for f in sorted((root / "Source" / sub).glob("*.c"))
                            if not re.search(r"f16|f32", f.name)]
                    comps.append(("cmsis_nn", srcs, [root / "Include"], CMSIS_MAIN))
                for name, srcs, incs, main_src in comps:
                    r = measure(name, srcs, incs, [*flags, opt], ld,
                                pathlib.Path(tmp) / f"{t}{opt}{name}", main_src)
                    rows.append(dict(target=t, short=short, opt=opt, component=name, **r))
                    split = (f" (kernel drivers {r['driver_text']:,} + validation/Prepare-time "
                             f"{r['prepare_text']:,})" if name == "dtmm" else "")
                    print(f"{short} {opt} {name}: .text {r['text']:,} B{split}, .rodata {r['rodata']:,} B, "
                          f"stack {r['stack']:,} B (C library: {r['libc'] or '-'})", flush=True)
            if not args.no_driver_sets:
                full = pathlib.Path(tmp) / f"{t}-O2dtmm"
                for mask in set_masks:
                    names = [n for n, bit in drivers.NAMES.items() if mask & bit]
                    r = measure("dtmm", lib, [ROOT / "dtmm_ops"], [*flags, "-O2"], ld,
                                pathlib.Path(tmp) / f"{t}-set{mask}", DTMM_MAIN,
                                defines=[f"-DDTMM_CONV_DRIVERS={mask}"], reuse=full)
                    set_rows.append(dict(target=t, drivers=" ".join(names) or "-",
                                         mask=mask, text=r["text"], stack=r["stack"]))
                print(f"{short} -O2 dtmm driver sets: .text "
                      f"{min(x['text'] for x in set_rows if x['target'] == t):,} - "
                      f"{max(x['text'] for x in set_rows if x['target'] == t):,} B "
                      f"over {len(set_masks)} sets", flush=True)
    with open(args.out / "kernels_size.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["target", "opt", "component", "text_bytes", "driver_text_bytes",
                    "prepare_text_bytes", "rodata_bytes", "worst_case_stack_bytes",
                    "c_library_functions", "c_library_text_bytes"])
        for r in rows:
            w.writerow([r["target"], r["opt"], r["component"], r["text"], r["driver_text"],
                        r["prepare_text"], r["rodata"], r["stack"], r["libc"], r["libc_text"]])
    if set_rows:
        with open(args.out / "kernels_size_sets.csv", "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["target", "opt", "drivers", "drivers_mask", "text_bytes",
                        "worst_case_stack_bytes"])
            for r in set_rows:
                w.writerow([r["target"], "-O2", r["drivers"], r["mask"], r["text"], r["stack"]])
    if set_rows and args.update_code_size:
        path = ROOT / "python" / "dtmm" / "core" / "data" / "code_size.json"
        data = json.loads(path.read_text())
        data["conv_kernel_bytes"] = {
            t: {r["drivers"]: r["text"] for r in set_rows if r["target"] == t}
            for t in args.targets.split(",")}
        data["conv_kernel_source"] = (
            "bench/kernel_size.py (kernels_size_sets.csv): .text of the DTMM conv kernel "
            "library, -O2, linked for each set of drivers (DTMM_CONV_DRIVERS; names in "
            "DTMM_USE_* order, '-' none); the 'ops' DTMM_CONV_2D figure links every driver")
        path.write_text(json.dumps(data, indent=2) + "\n")
        print(f"updated {path.relative_to(ROOT)}")
    by = {(r["target"], r["opt"], r["component"]): r for r in rows}
    lines = ["| target | opt | DTMM .text | of which kernel drivers | of which validation (Prepare) |"
             " CMSIS-NN conv .text | DTMM stack | CMSIS-NN stack | DTMM C library calls |",
             "|---|---|---|---|---|---|---|---|---|"]
    for t in args.targets.split(","):
        for opt in ("-O2", "-Os"):
            d, c = by[(t, opt, "dtmm")], by.get((t, opt, "cmsis_nn"))
            head = (f"| {TARGETS[t][2]} | {opt} | {d['text']:,} | {d['driver_text']:,} | "
                    f"{d['prepare_text']:,} |")
            lines.append(head + (f" {c['text']:,} |" if c else " - |"))
            lines[-1] += f" {d['stack']:,} | {c['stack']:,} |" if c else f" {d['stack']:,} | - |"
            lines[-1] += f" {d['libc'] or '-'} ({d['libc_text']:,} B) |"
    fn_lines = ["", "Per function, DTMM, -O2 (bytes of .text):", ""]
    for t in args.targets.split(","):
        d = by[(t, "-O2", "dtmm")]
        fn_lines.append(f"- {TARGETS[t][2]}: " + ", ".join(
            f"{f} {n:,}" for f, n in sorted(d["per_fn"].items(), key=lambda kv: -kv[1])))
    (args.out / "kernels_size.md").write_text("\n".join(lines + fn_lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
