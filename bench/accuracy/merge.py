"""Replace one method's rows of DIR/accuracy.csv by those of another run's CSV
and redraw DIR/accuracy.png (used when a method's accounting changed):

    python bench/accuracy/merge.py --into bench/accuracy/out --from bench/accuracy/out_unstr \
        --method unstructured
"""

import argparse
import csv
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


def read(path):
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        for k in ("target_ratio", "compression", "int8_accuracy", "drop_points"):
            r[k] = float(r[k])
        r["weight_bytes"] = int(r["weight_bytes"])
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--into", required=True)
    ap.add_argument("--from", dest="src", required=True)
    ap.add_argument("--method", required=True)
    a = ap.parse_args()
    base = read(os.path.join(a.into, "accuracy.csv"))
    new = [r for r in read(os.path.join(a.src, "accuracy.csv")) if r["method"] == a.method]
    dense = {r["method"]: r for r in base}["dense"]
    new_dense = {r["method"]: r for r in read(os.path.join(a.src, "accuracy.csv"))}["dense"]
    if abs(dense["int8_accuracy"] - new_dense["int8_accuracy"]) > 1e-9:
        raise SystemExit("the two runs have different dense models")
    rows = [r for r in base if r["method"] != a.method] + new
    from run import _write

    with open(os.path.join(a.into, "summary.json")) as f:
        summary = json.load(f)
    ns = argparse.Namespace(**summary["args"])
    _write(a.into, rows, ns, summary["seconds"])
    print(f"merged {len(new)} {a.method} rows from {a.src} into {a.into}")


if __name__ == "__main__":
    main()
