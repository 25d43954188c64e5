"""Pipeline inputs: datasets, budgets, models; each bad input is one clear error."""

import gzip
import os
import struct
import subprocess
import sys

import numpy as np
import pytest

from dtmm import datasets
from dtmm.errors import DtmmError

ROOT = next(p for p in __import__("pathlib").Path(__file__).resolve().parents
            if (p / "WORKSPACE").is_file())


def test_digits_are_nhwc_floats():
    xtr, ytr, xte, yte = datasets.load("digits")
    assert xtr.shape[1:] == (8, 8, 1) and xtr.dtype == np.float32
    assert 0.0 <= xtr.min() and xtr.max() <= 1.0
    assert len(xtr) + len(xte) == 1797 and set(np.unique(ytr)) == set(range(10))


def _idx(path, arr):
    with gzip.open(path, "wb") as f:
        f.write(struct.pack(">HBB", 0, 8, arr.ndim))
        f.write(struct.pack(f">{arr.ndim}I", *arr.shape))
        f.write(arr.astype(np.uint8).tobytes())


def test_fashion_mnist_reads_idx_files(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    _idx(tmp_path / "train-images-idx3-ubyte.gz", rng.integers(0, 256, (5, 28, 28)))
    _idx(tmp_path / "train-labels-idx1-ubyte.gz", np.arange(5))
    _idx(tmp_path / "t10k-images-idx3-ubyte.gz", rng.integers(0, 256, (3, 28, 28)))
    _idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.arange(3))
    monkeypatch.setenv("DTMM_FASHION_MNIST_DIR", str(tmp_path))
    xtr, ytr, xte, yte = datasets.load("fashion-mnist")
    assert xtr.shape == (5, 28, 28, 1) and xte.shape == (3, 28, 28, 1)
    assert list(ytr) == [0, 1, 2, 3, 4]


def test_fashion_mnist_missing_names_the_package(tmp_path, monkeypatch):
    monkeypatch.setenv("DTMM_FASHION_MNIST_DIR", str(tmp_path))
    with pytest.raises(DtmmError, match="install the Debian package dataset-fashion-mnist"):
        datasets.load("fashion-mnist")


def test_npz_dataset(tmp_path):
    p = tmp_path / "d.npz"
    np.savez(p, x_train=np.zeros((4, 6, 6), np.uint8), y_train=np.arange(4),
             x_test=np.full((2, 6, 6), 255, np.uint8), y_test=np.arange(2))
    xtr, ytr, xte, yte = datasets.load(str(p))
    assert xtr.shape == (4, 6, 6, 1) and xte.max() == 1.0
    bad = tmp_path / "bad.npz"
    np.savez(bad, x_train=np.zeros((4, 6, 6)), y_train=np.arange(4))
    with pytest.raises(DtmmError, match="must hold arrays x_train, y_train, x_test, y_test"):
        datasets.load(str(bad))
    mism = tmp_path / "mism.npz"
    np.savez(mism, x_train=np.zeros((4, 6, 6)), y_train=np.arange(3),
             x_test=np.zeros((2, 6, 6)), y_test=np.arange(2))
    with pytest.raises(DtmmError, match="3 labels for 4 images"):
        datasets.load(str(mism))


def test_unknown_dataset():
    with pytest.raises(DtmmError, match="unknown dataset 'mnist3d'"):
        datasets.load("mnist3d")
    with pytest.raises(DtmmError, match="does not exist"):
        datasets.load("/nonexistent/x.npz")


def _cli(*args):
    env = dict(os.environ, PYTHONPATH=str(ROOT / "python"), TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([sys.executable, "-m", "dtmm", *args], capture_output=True,
                          text=True, env=env, timeout=600)


def test_cli_rejects_bad_units(tmp_path):
    r = _cli("prune", "m.keras", "--data", "digits", "--flash", "64KiBs", "--sram", "1KiB",
             "--out", str(tmp_path))
    assert r.returncode == 2
    assert "unknown unit 'KiBs'" in r.stderr


def test_cli_errors_are_one_line(tmp_path):
    r = _cli("prune", str(tmp_path / "missing.keras"), "--data", "digits", "--flash", "64KiB",
             "--sram", "32KiB", "--out", str(tmp_path / "o"))
    assert r.returncode == 2
    assert r.stderr.strip().splitlines()[-1].startswith("dtmm: error: model file")
    assert "Traceback" not in r.stderr


def test_model_without_convs_and_unknown_dataset(tmp_path):
    import keras

    from dtmm import pipeline

    m = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                          keras.layers.Dense(10)])
    # without block ratios a Dense-only model has nothing to prune (with them, its
    # Dense layers take block ratios: tests/python/test_schedule_blocks.py)
    with pytest.raises(DtmmError, match=r"no Conv2D layer to prune \(Dense layers take "
                                        r"block ratios: --block-ratios auto\)"):
        pipeline.prune(m, "digits", "64KiB", "32KiB", str(tmp_path), block_ratios="off")
    with pytest.raises(DtmmError, match="block_ratios must be one of auto, on, off"):
        pipeline.prune(m, "digits", "64KiB", "32KiB", str(tmp_path), block_ratios="yes")
    conv = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(4, 3),
                             keras.layers.Flatten(), keras.layers.Dense(10)])
    with pytest.raises(DtmmError, match="unknown dataset"):
        pipeline.prune(conv, "nope", "64KiB", "32KiB", str(tmp_path))
    wrong = keras.Sequential([keras.Input((12, 12, 1)), keras.layers.Conv2D(4, 3),
                              keras.layers.Flatten(), keras.layers.Dense(10)])
    with pytest.raises(DtmmError, match=r"images have shape \(8, 8, 1\), the model expects"):
        pipeline.prune(wrong, "digits", "64KiB", "32KiB", str(tmp_path))
    with pytest.raises(DtmmError, match="unknown unit"):
        pipeline.prune(conv, "digits", "64 KiBi", "32KiB", str(tmp_path))


def test_cli_target_flag(tmp_path):
    # a known target parses (the run then stops at the missing model), an unknown one
    # is one usage error naming the known ones; --help documents what "any" means
    common = ["--data", "digits", "--flash", "64KiB", "--sram", "32KiB", "--out",
              str(tmp_path / "o")]
    r = _cli("prune", str(tmp_path / "missing.keras"), *common, "--target", "cortex-m55")
    assert r.returncode == 2
    assert r.stderr.strip().splitlines()[-1].startswith("dtmm: error: model file")
    r = _cli("prune", str(tmp_path / "missing.keras"), *common, "--target", "z80")
    assert r.returncode == 2
    assert "unknown target 'z80' (known: cortex-m4, cortex-m55, any)" in r.stderr
    assert "Traceback" not in r.stderr
    r = _cli("prune", "--help")
    assert r.returncode == 0
    assert "--target" in r.stdout and "sum of instructions" in " ".join(r.stdout.split())
    assert not (tmp_path / "o").exists()


def test_accuracy_uses_the_reference_kernels_tflm_matches(monkeypatch):
    # issue 11: accuracy came from TFLite's default (XNNPACK / optimized) kernels,
    # whose int8 rounding differs from TFLM's; now BUILTIN_REF, checked two ways:
    # the interpreter is asked for it, and its predictions are TFLM's (the
    # tflite-micro wheel, reference kernels) on every sample
    import keras
    import tensorflow as tf
    from tflite_micro import runtime

    from dtmm import pipeline

    keras.utils.set_random_seed(0)
    m = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(6, 3, activation="relu"),
                          keras.layers.DepthwiseConv2D(3), keras.layers.Flatten(),
                          keras.layers.Dense(10)])
    rng = np.random.default_rng(0)
    x = rng.random((40, 8, 8, 1), dtype=np.float32)
    int8 = pipeline.to_int8(m, x)
    it = runtime.Interpreter.from_bytes(int8)
    det = it.get_input_details(0)
    scale, zp = det["quantization_parameters"]["scales"][0], \
        det["quantization_parameters"]["zero_points"][0]
    labels = []
    for xi in x:
        q = np.clip(np.round(xi / scale + zp), -128, 127).astype(np.int8)
        it.set_input(q[None], 0)
        it.invoke()
        labels.append(int(it.get_output(0).reshape(-1).argmax()))
    seen = []
    real = tf.lite.Interpreter

    def spy(*a, **kw):
        seen.append(kw.get("experimental_op_resolver_type"))
        return real(*a, **kw)

    monkeypatch.setattr(tf.lite, "Interpreter", spy)
    assert pipeline.int8_accuracy(int8, x, np.array(labels), batch=7) == 100.0
    assert seen == [tf.lite.experimental.OpResolverType.BUILTIN_REF]
