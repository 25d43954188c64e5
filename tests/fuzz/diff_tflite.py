#!/usr/bin/env python3
"""Differential test: the C kernel (dtmm_ops, through ctypes) against TFLite's reference
int8 CONV_2D, byte for byte, over random wide configurations.

    python tests/fuzz/diff_tflite.py --configs 50              # CI size
    python tests/fuzz/diff_tflite.py --configs 1500 --out DIR  # long run: DIR/diff.csv, summary.md

Configurations: C_in 1..128, C_out 1..32, kernels 1..7 x 1..7, stride 1..3, dilation
1..3, SAME/VALID, every fused activation, with or without bias, batch 2, filterlet
sparsity 0..100 % with whole pruned filters, inputs smaller than the (dilated)
kernel for a third of the SAME ones, per-channel and per-tensor models, input zero
points across the int8 range. Each model has --per-model branches (one input and
one CONV_2D each) and is built and quantized by TensorFlow's TFLite converter; the
expected output is the conv's output tensor in tf.lite.Interpreter with the
BUILTIN_REF op resolver (random inputs, then all -128, then all 127), the actual
one the DTMM op of `dtmm.convert.convert_model(always=True)`, run by
dtmm_conv_s8 in both x86 build variants ("default", "im2col"). dtmm.reference is
compared too, and counted separately. Exit 1 on any difference.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time
import warnings
from dataclasses import asdict, dataclass

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(HERE)), "python"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

ACTS = ("none", "relu", "relu6", "relu_n1_to_1")


@dataclass(frozen=True)
class Config:
    c_in: int
    c_out: int
    kh: int
    kw: int
    stride: int
    dilation: int
    padding: str
    activation: str
    bias: bool
    sparsity: float
    pruned_filters: int
    h: int
    w: int
    in_lo: float
    in_span: float
    seed: int

    @property
    def smaller_than_kernel(self) -> bool:
        return self.h < (self.kh - 1) * self.dilation + 1 or \
            self.w < (self.kw - 1) * self.dilation + 1


def draw_config(rng: np.random.Generator) -> Config:
    c_in = int(rng.choice([1, 2, 3, 4, 8, 16, 17, 32, 64, 100, 128,
                           int(rng.integers(1, 129))]))
    c_out = int(rng.integers(1, 33))
    kh, kw = int(rng.integers(1, 8)), int(rng.integers(1, 8))
    stride, dilation = int(rng.integers(1, 4)), int(rng.integers(1, 4))
    padding = "SAME" if rng.random() < 0.6 else "VALID"
    eff_h, eff_w = (kh - 1) * dilation + 1, (kw - 1) * dilation + 1
    if padding == "SAME" and rng.random() < 0.35 and max(eff_h, eff_w) > 1:
        h = int(rng.integers(1, max(eff_h, 2)))   # smaller than the kernel
        w = int(rng.integers(1, max(eff_w, 2)))
    else:
        lo_h, lo_w = (eff_h, eff_w) if padding == "VALID" else (1, 1)
        h = int(rng.integers(lo_h, lo_h + 8))
        w = int(rng.integers(lo_w, lo_w + 8))
    sparsity = float(rng.choice([0.0, 0.3, 0.5, 0.8, 0.95, 1.0, rng.random()]))
    pruned = int(rng.choice([0, 0, 1, c_out // 2, c_out]))
    return Config(c_in, c_out, kh, kw, stride, dilation, padding,
                  str(rng.choice(ACTS)), bool(rng.random() < 0.85), sparsity, pruned, h, w,
                  float(rng.uniform(-4.0, 1.0)), float(rng.uniform(0.2, 6.0)),
                  int(rng.integers(0, 2**31 - 1)))


def _weights(cfg: Config):
    rng = np.random.default_rng(cfg.seed)
    w = rng.standard_normal((cfg.kh, cfg.kw, cfg.c_in, cfg.c_out)).astype(np.float32)
    w *= (10.0 ** rng.uniform(-2, 1, cfg.c_out)).astype(np.float32)
    keep = rng.random((cfg.kh, cfg.kw, 1, cfg.c_out)) >= cfg.sparsity
    keep[:, :, :, rng.permutation(cfg.c_out)[:cfg.pruned_filters]] = False
    return w * keep, (rng.standard_normal(cfg.c_out) * 2).astype(np.float32)


def build_model(configs, per_channel: bool, seed: int) -> bytes:
    import tensorflow as tf

    warnings.filterwarnings("ignore", module="tensorflow")
    params = [_weights(c) for c in configs]
    specs = [tf.TensorSpec((2, c.h, c.w, c.c_in), tf.float32) for c in configs]

    @tf.function(input_signature=specs)
    def model(*xs):
        outs = []
        for x, c, (w, b) in zip(xs, configs, params):
            y = tf.nn.conv2d(x, w, strides=c.stride, padding=c.padding,
                             dilations=c.dilation)
            if c.bias:
                y = tf.nn.bias_add(y, b)
            if c.activation == "relu":
                y = tf.nn.relu(y)
            elif c.activation == "relu6":
                y = tf.nn.relu6(y)
            elif c.activation == "relu_n1_to_1":
                y = tf.clip_by_value(y, -1.0, 1.0)
            outs.append(y)
        return outs

    rng = np.random.default_rng(seed)

    def representative():
        for _ in range(6):
            yield [rng.uniform(c.in_lo, c.in_lo + c.in_span, (2, c.h, c.w, c.c_in))
                   .astype(np.float32) for c in configs]

    conv = tf.lite.TFLiteConverter.from_concrete_functions(
        [model.get_concrete_function()], model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = representative
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    if not per_channel:
        conv._experimental_disable_per_channel = True
    return conv.convert()


def drop_biases(buf: bytes, configs) -> bytes:
    """Configs without bias: remove the bias input of their CONV_2D (-1), a conv
    TensorFlow never emits but TFLM runs; TFLite gets a zero bias instead."""
    import mutate

    model = mutate.load(buf)
    sg = model.subgraphs[0]
    inputs = [int(i) for i in sg.inputs]
    changed = False
    for op in sg.operators:
        oc = model.operatorCodes[op.opcodeIndex]
        if max(oc.builtinCode, oc.deprecatedBuiltinCode) != 3:  # CONV_2D
            continue
        branch = inputs.index(int(op.inputs[0])) if int(op.inputs[0]) in inputs else -1
        if branch >= 0 and not configs[branch].bias and len(op.inputs) == 3:
            op.inputs = [int(op.inputs[0]), int(op.inputs[1]), -1]
            changed = True
    return mutate.pack(model) if changed else buf


def run_model(configs, per_channel, seed, variants=("default", "im2col")):
    """[(config index, result dict)] for one model."""
    import tensorflow as tf

    import device_checks as dc
    import dtmm_clib
    import mutate
    from fuzz_cli import _numpy_reference, _runnable
    from dtmm.convert import convert_model

    buf = drop_biases(build_model(configs, per_channel, seed), configs)
    conv_buf, _ = convert_model(buf, always=True)
    orig, conv = mutate.load(buf), mutate.load(conv_buf)
    run_buf = _runnable(mutate.load(buf)) or buf
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        interp = tf.lite.Interpreter(
            model_content=run_buf,
            experimental_op_resolver_type=tf.lite.experimental.OpResolverType.BUILTIN_REF,
            experimental_preserve_all_tensors=True)
    interp.allocate_tensors()
    sg = orig.subgraphs[0]
    inputs = [int(i) for i in sg.inputs]
    layers = {}
    for oi, op in enumerate(conv.subgraphs[0].operators):
        if dc.is_dtmm(conv, op):
            branch = inputs.index(int(op.inputs[0]))
            layers[branch] = (oi, dc.check_op(conv, conv.subgraphs[0], op))
    results = {b: {"values": 0, "c_diff": 0, "ref_diff": 0, "status": "ok"}
               for b in range(len(configs))}
    for b in range(len(configs)):
        if b not in layers:
            results[b]["status"] = "not converted"
    rng = np.random.default_rng(seed)
    details = sorted(interp.get_input_details(), key=lambda d: d["index"])
    for k in range(3):
        for d in details:
            shape = d["shape"]
            arr = (rng.integers(-128, 128, shape, dtype=np.int8) if k == 0 else
                   np.full(shape, -128 if k == 1 else 127, np.int8))
            interp.set_tensor(d["index"], arr)
        interp.invoke()
        for b, (oi, layer) in layers.items():
            oop = sg.operators[oi]
            x = interp.get_tensor(int(oop.inputs[0]))
            want = interp.get_tensor(int(oop.outputs[0]))
            r = results[b]
            r["values"] += want.size
            for v in variants:
                got = dtmm_clib.load(v).conv(x, layer)
                r["c_diff"] += int(np.sum(got != want))
            ref = _numpy_reference(x, layer)
            r["ref_diff"] += want.size if ref is None else int(np.sum(ref != want))
    return [(b, results[b]) for b in range(len(configs))]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", type=int, default=50)
    ap.add_argument("--per-model", type=int, default=25)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="diff.csv and summary.md here")
    args = ap.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    rows, t0 = [], time.time()
    n_models = (args.configs + args.per_model - 1) // args.per_model
    for m in range(n_models):
        n = min(args.per_model, args.configs - m * args.per_model)
        configs = [draw_config(rng) for _ in range(n)]
        per_channel = m % 3 != 2
        for b, res in run_model(configs, per_channel, args.seed * 1000 + m):
            rows.append(dict(asdict(configs[b]), model=m, per_channel=per_channel,
                             smaller_than_kernel=configs[b].smaller_than_kernel, **res))
        el = time.time() - t0
        print(f"[diff_tflite] model {m + 1}/{n_models}: {len(rows)} configs, "
              f"{sum(r['c_diff'] for r in rows)} C differences, "
              f"{sum(r['ref_diff'] for r in rows)} dtmm.reference differences "
              f"({el:.0f} s)", flush=True)
    ok = [r for r in rows if r["status"] == "ok"]
    bad_c = [r for r in ok if r["c_diff"]]
    bad_ref = [r for r in ok if r["ref_diff"]]
    summary = [
        "| configurations | converted | smaller than kernel | per-tensor | values compared "
        "| C kernel differences | dtmm.reference differences |",
        "|---:|---:|---:|---:|---:|---:|---:|",
        f"| {len(rows)} | {len(ok)} | {sum(r['smaller_than_kernel'] for r in ok)} | "
        f"{sum(not r['per_channel'] for r in ok)} | {sum(r['values'] for r in ok):,} | "
        f"{sum(r['c_diff'] for r in ok)} ({len(bad_c)} configs) | "
        f"{sum(r['ref_diff'] for r in ok)} ({len(bad_ref)} configs) |"]
    ranges = {k: (min(r[k] for r in ok), max(r[k] for r in ok)) for k in
              ("c_in", "c_out", "kh", "kw", "stride", "dilation", "h", "w")} if ok else {}
    text = "\n".join(summary) + "\n\nranges: " + ", ".join(
        f"{k} {a}..{b}" for k, (a, b) in ranges.items()) + \
        f"\nC kernel variants: default, im2col (each compared); {time.time() - t0:.0f} s"
    print(text)
    for r in (bad_c + bad_ref)[:10]:
        print("DIFFERENCE:", {k: r[k] for k in r if k not in ("in_lo", "in_span")})
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "diff.csv"), "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
        with open(os.path.join(args.out, "summary.md"), "w") as fh:
            fh.write("# C kernel vs TFLite BUILTIN_REF CONV_2D\n\n" + text + "\n")
    not_converted = len(rows) - len(ok)
    if not_converted:
        print(f"{not_converted} configurations were not converted", file=sys.stderr)
    return 1 if bad_c or bad_ref or not_converted else 0


if __name__ == "__main__":
    sys.exit(main())
