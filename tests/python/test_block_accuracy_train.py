"""bench/block_accuracy --quick: the study runs end to end on a small budget and its
tables hold what it measured (equal weight bytes per method, accuracies in range)."""

import csv
import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_block_accuracy_quick(tmp_path):
    if not os.path.isdir(os.environ.get("DTMM_FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist")):
        import pytest
        pytest.skip("Fashion-MNIST (Debian dataset-fashion-mnist) not installed")
    env = dict(os.environ, DTMM_BENCH_NO_REEXEC="1", PYTHONPATH=str(ROOT / "python"))
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "block_accuracy"), "--out", str(out),
                        "--quick", "--nets", "mobilenet"], env=env, capture_output=True, text=True,
                       timeout=840)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    with open(out / "runs_mobilenet.csv", newline="") as f:
        runs = list(csv.DictReader(f))
    methods = {row["method"] for row in runs}
    assert methods == {"dense", "block16", "block8", "filter", "unstructured"}
    dense = next(int(row["weight_bytes"]) for row in runs if row["method"] == "dense")
    for row in runs:
        assert 0.0 <= float(row["int8_accuracy"]) <= 100.0
        if row["method"] != "dense":
            # every method meets the byte target (dense / 2) and lands close to it
            assert dense / 2 * 0.97 <= int(row["weight_bytes"]) <= dense / 2 * 1.01, row
    for name in ("block_accuracy.csv", "block_accuracy.md", "block_accuracy.png"):
        assert (out / name).stat().st_size > 0
    # resumable: a second run finds every point done and only rewrites the report
    r2 = subprocess.run([sys.executable, str(ROOT / "bench" / "block_accuracy"), "--out", str(out),
                         "--quick", "--nets", "mobilenet"], env=env, capture_output=True, text=True,
                        timeout=600)
    assert r2.returncode == 0, r2.stderr[-3000:]
    with open(out / "runs_mobilenet.csv", newline="") as f:
        assert len(list(csv.DictReader(f))) == len(runs)
