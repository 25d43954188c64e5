"""Accuracy vs weight bytes on Fashion-MNIST: dense, DTMM (filterlet + filter),
filterlet only, filter only, unstructured magnitude pruning.

    PYTHONPATH=python .venv/bin/python bench/accuracy/run.py --out bench/accuracy/out

Trains a small VGG-style CNN (fixed seeds), then for each method and each
compression ratio r (weight bytes = dense / r, the index each format needs
counted) prunes, fine-tunes with masks, converts to int8 and measures int8 test
accuracy on the full 10k test set. Weight bytes are measured on the int8 .tflite
files: FWCS values + bitmap for DTMM and filterlet-only, dense filters for
filter-only, non-zeros + the cheaper of a 1-bit-per-weight bitmap and 4-bit
relative offsets (Deep Compression style, zero fillers for gaps > 15) for
unstructured; the classifier (Dense) weights stay dense in every method.

Writes accuracy.csv, accuracy.png, summary.json and a log to --out.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_DETERMINISTIC_OPS", "1")

import numpy as np  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "python"))

from dtmm import pipeline as PL  # noqa: E402
from dtmm.fwcs import FWCS  # noqa: E402
from dtmm.schedule import cost, search  # noqa: E402
from dtmm.schedule.graph import analyze, load_model  # noqa: E402

METHODS = ("dtmm", "filterlet", "filter", "unstructured")
LABELS = {"dense": "dense", "dense+ft": "dense + fine-tuning (control)", "dtmm": "DTMM (filterlet + filter)", "filterlet": "filterlet only",
          "filter": "filter only", "unstructured": "unstructured magnitude"}


def vgg(width=16):
    import keras
    from keras import layers as L

    inp = keras.Input((28, 28, 1))
    x = inp
    for i, (w, pool) in enumerate([(width, False), (width, True), (2 * width, False),
                                   (2 * width, True), (4 * width, False), (4 * width, False)]):
        x = L.Conv2D(w, 3, padding="same", name=f"conv{i + 1}")(x)
        x = L.BatchNormalization(name=f"bn{i + 1}")(x)
        x = L.ReLU(name=f"relu{i + 1}")(x)
        if pool:
            x = L.MaxPooling2D(name=f"pool{i + 1}")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    out = L.Dense(10, name="logits")(x)
    return keras.Model(inp, out, name="vgg_fmnist")


def unstructured_index_bytes(w: np.ndarray) -> float:
    """Bytes of the non-zeros of w plus the cheaper index: a 1-bit-per-weight
    bitmap, or Deep Compression's 4-bit relative offsets (a stored zero filler
    for every gap over 15; each entry is 8-bit value + 4-bit offset)."""
    flat = np.asarray(w).reshape(-1)
    nz = np.flatnonzero(flat)
    bitmap = nz.size + (flat.size + 7) // 8
    gaps = np.diff(np.concatenate([[-1], nz])) - 1
    entries = nz.size + int(np.sum(gaps // 16))
    relative = (entries * 12 + 7) // 8
    return min(bitmap, relative)


def weight_bytes(int8: bytes, fmt: str) -> int:
    """Weight bytes of every CONV_2D / FULLY_CONNECTED weight tensor in `fmt`."""
    m = load_model(int8)
    g = analyze(int8)
    sg = m.subgraphs[0]
    total = 0
    for op in g.ops:
        if op.name not in ("CONV_2D", "FULLY_CONNECTED"):
            continue
        t = sg.tensors[op.inputs[1]]
        w = np.frombuffer(bytes(bytearray(m.buffers[t.buffer].data)), np.int8).reshape(
            [int(d) for d in t.shape])
        if op.name == "FULLY_CONNECTED" or fmt == "dense" or fmt == "filter":
            total += w.size   # the classifier stays dense in every method
        elif fmt in ("dtmm", "filterlet"):
            total += FWCS.from_dense(w).storage_bytes
        elif fmt == "unstructured":
            total += unstructured_index_bytes(w)
    return total


def unstructured_masks(model, target_bytes, fc_bytes):
    """Global magnitude masks over conv kernels, as many non-zeros as fit:
    non-zeros + index (the cheaper of bitmap and 4-bit relative offsets, see
    unstructured_index_bytes) + the classifier (stored the same way) <= target."""
    import keras

    convs = [l for l in model.layers if isinstance(l, keras.layers.Conv2D)]
    ws = [l.kernel.numpy() for l in convs]
    allw = np.sort(np.concatenate([np.abs(w).reshape(-1) for w in ws]))[::-1]

    def masks_for(keep):
        thr = allw[keep - 1]
        return [(np.abs(w) >= thr) for w in ws]

    def cost(ms):
        # conv kernels are stored OHWI in the .tflite: count in that order
        return fc_bytes + sum(unstructured_index_bytes(np.transpose(m, (3, 0, 1, 2)))
                              for m in ms)

    lo, hi = 1, allw.size
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if cost(masks_for(mid)) <= target_bytes:
            lo = mid
        else:
            hi = mid - 1
    return {l.name: m.astype(np.float32) for l, m in zip(convs, masks_for(lo))}


def apply_elementwise(model, masks):
    import keras

    class Mask(keras.constraints.Constraint):
        def __init__(self, m):
            self.m = m

        def __call__(self, w):
            return w * self.m

    for l in model.layers:
        if l.name in masks:
            m = masks[l.name]
            l.kernel.assign(l.kernel.numpy() * m)
            l.kernel.constraint = Mask(m)


def strip_elementwise(model, masks):
    import keras

    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    for l in clone.layers:
        if l.name in masks:
            l.kernel.assign(l.kernel.numpy() * masks[l.name])
    return clone


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--train", type=int, default=12000, help="training subset size")
    ap.add_argument("--epochs", type=int, default=8, help="dense training epochs")
    ap.add_argument("--ft-epochs", type=int, default=3, help="fine-tuning epochs per point")
    ap.add_argument("--dense-ft-epochs", type=int, default=2,
                    help="epochs at the fine-tuning rate that end dense training")
    ap.add_argument("--ratios", default="2,4,8", help="compression ratios (dense / pruned bytes)")
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--importance", default="magnitude", choices=("magnitude", "taylor"),
                    help="filterlet/filter importance for the structured methods")
    args = ap.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    logf = open(os.path.join(args.out, "log.txt"), "a")

    def log(msg):
        line = f"[{time.strftime('%H:%M:%S')}] {msg}"
        print(line, flush=True)
        logf.write(line + "\n")
        logf.flush()

    import keras
    import tensorflow as tf

    from dtmm import prune as P
    from dtmm.datasets import load_fashion_mnist

    tf.config.threading.set_inter_op_parallelism_threads(2)
    tf.config.threading.set_intra_op_parallelism_threads(2)
    t0 = time.time()
    xtr, ytr, xte, yte = load_fashion_mnist()
    rng = np.random.default_rng(args.seed)
    idx = rng.permutation(len(xtr))[:args.train]
    xtr, ytr = xtr[idx], ytr[idx]
    log(f"Fashion-MNIST: {len(xtr)} train (subset, seed {args.seed}), {len(xte)} test")

    keras.utils.set_random_seed(args.seed)
    cache = os.path.join(args.out, f"dense_w{args.width}_n{args.train}_e{args.epochs}_"
                                   f"f{args.dense_ft_epochs}_s{args.seed}.keras")
    if os.path.exists(cache):
        model = keras.models.load_model(cache, compile=False)
        log(f"dense model from {cache}")
    else:
        model = PL.compile_for_training(vgg(args.width), 2e-3)
        PL.fit(model, xtr, ytr, args.epochs, 64, args.seed, "train", progress=False)
        # The pruned models get ft-epochs more at the fine-tuning rate; give the
        # dense reference the same, so a drop is the pruning's, not extra training's.
        PL.compile_for_training(model, 5e-4)
        PL.fit(model, xtr, ytr, args.dense_ft_epochs, 64, args.seed, "dense fine-tune",
               progress=False)
        model.save(cache)
    dense_int8 = PL.to_int8(model, xtr)
    dense_acc = PL.int8_accuracy(dense_int8, xte, yte)
    dense_bytes = weight_bytes(dense_int8, "dense")
    log(f"dense: int8 accuracy {dense_acc:.2f} %, weight bytes {dense_bytes} "
        f"({time.time() - t0:.0f} s)")
    rows = [{"method": "dense", "target_ratio": 1.0, "weight_bytes": dense_bytes,
             "compression": 1.0, "int8_accuracy": round(dense_acc, 2), "drop_points": 0.0}]

    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(
        from_logits=True))
    ds = tf.data.Dataset.from_tensor_slices((xtr, ytr)).shuffle(
        len(xtr), seed=args.seed).batch(64)
    importance = P.compute_importance(model, ds, method=args.importance, steps=40,
                                      progress=False)
    log(f"importance: {args.importance}")
    g = analyze(dense_int8)
    fc_bytes = sum(g.tensors[op.inputs[1]].nbytes for op in g.ops
                   if op.name == "FULLY_CONNECTED")
    weights0 = model.get_weights()
    # control: the dense model fine-tuned as long as each pruned one, no pruning
    ctrl = keras.models.clone_model(model)
    ctrl.set_weights(weights0)
    PL.compile_for_training(ctrl, 5e-4)
    PL.fit(ctrl, xtr, ytr, args.ft_epochs, 64, args.seed, "control", progress=False)
    ctrl_int8 = PL.to_int8(ctrl, xtr)
    ctrl_acc = PL.int8_accuracy(ctrl_int8, xte, yte)
    rows.append({"method": "dense+ft", "target_ratio": 1.0, "weight_bytes": dense_bytes,
                 "compression": 1.0, "int8_accuracy": round(ctrl_acc, 2),
                 "drop_points": round(dense_acc - ctrl_acc, 2)})
    log(f"control (dense + {args.ft_epochs} fine-tuning epochs, no pruning): int8 accuracy "
        f"{ctrl_acc:.2f} %")
    methods = [m for m in args.methods.split(",") if m]
    for r in [float(v) for v in args.ratios.split(",")]:
        target = dense_bytes / r
        for method in methods:
            t = time.time()
            base = keras.models.clone_model(model)
            base.set_weights(weights0)
            if method == "unstructured":
                fc_w = [w for w in base.get_weights() if w.ndim == 2]
                um = unstructured_masks(base, target, sum(w.size for w in fc_w))
                apply_elementwise(base, um)
                PL.recalibrate_batchnorm(base, xtr, seed=args.seed)
                PL.compile_for_training(base, 5e-4)
                PL.fit(base, xtr, ytr, args.ft_epochs, 64, args.seed, method, progress=False)
                final = strip_elementwise(base, um)
                plan_txt = f"nnz {sum(int(m.sum()) for m in um.values())}"
            else:
                fwcs = method != "filter"
                prob, names = PL.build_problem(
                    base, dense_int8, importance, search.Budgets(flash=target),
                    prune_filterlets=method != "filter", prune_filters=method != "filterlet",
                    flash_model=lambda gg: cost.WeightBytesModel(gg, fwcs=fwcs))
                prob.check_reachable()
                plan = search.schedule(prob)
                pruned, _ = PL.apply_plan(base, importance, names, plan, prob.graph)
                PL.recalibrate_batchnorm(pruned, xtr, seed=args.seed)
                PL.compile_for_training(pruned, 5e-4)
                PL.fit(pruned, xtr, ytr, args.ft_epochs, 64, args.seed, method, progress=False)
                final = P.strip_masks(pruned)
                plan_txt = " ".join(f"{n}:a{a:.2f}/b{plan.beta[c.group]:.2f}"
                                    for n, a, c in zip(names, plan.alpha, prob.graph.convs))
            int8 = PL.to_int8(final, xtr)
            acc = PL.int8_accuracy(int8, xte, yte)
            wb = weight_bytes(int8, method)
            rows.append({"method": method, "target_ratio": r, "weight_bytes": wb,
                         "compression": round(dense_bytes / wb, 3),
                         "int8_accuracy": round(acc, 2),
                         "drop_points": round(dense_acc - acc, 2)})
            log(f"{method:>12} r={r}: {wb} B ({dense_bytes / wb:.2f}x), int8 accuracy "
                f"{acc:.2f} % (drop {dense_acc - acc:+.2f}) [{time.time() - t:.0f} s] {plan_txt}")
            _write(args.out, rows, args, time.time() - t0)
    _write(args.out, rows, args, time.time() - t0)
    log(f"done in {time.time() - t0:.0f} s")


def _write(out, rows, args, seconds):
    with open(os.path.join(out, "accuracy.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump({"args": vars(args), "seconds": round(seconds, 1), "rows": rows}, f, indent=2)
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    dense = rows[0]
    ax.axhline(dense["int8_accuracy"], color="k", ls=":", lw=1)
    ax.axhline(dense["int8_accuracy"] - 1.0, color="r", ls=":", lw=1, label="dense - 1 point")
    ax.scatter([dense["weight_bytes"] / 1024], [dense["int8_accuracy"]], color="k",
               label=LABELS["dense"], zorder=3)
    for m, mk in zip(METHODS, "osD^"):
        pts = sorted((r["weight_bytes"] / 1024, r["int8_accuracy"]) for r in rows
                     if r["method"] == m)
        if pts:
            ax.plot(*zip(*pts), marker=mk, label=LABELS[m])
    ax.set_xscale("log")
    ax.set_xlabel("weight bytes incl. index (KiB, log)")
    ax.set_ylabel("int8 test accuracy (%)")
    ax.set_title("Fashion-MNIST, VGG-style CNN: accuracy vs weight bytes")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "accuracy.png"), dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
