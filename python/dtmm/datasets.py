"""Datasets for `dtmm prune --data ...` and the demo.

    x_train, y_train, x_test, y_test = load("digits")        # sklearn 8x8 digits
    ... = load("fashion-mnist")                             # Debian dataset-fashion-mnist
    ... = load("my_data.npz")                               # x_train, y_train, x_test, y_test

Images come back as float32 NHWC in [0, 1] (uint8 data is divided by 255), labels
as int64 class indices.
"""

from __future__ import annotations

import gzip
import os
import struct

import numpy as np

from dtmm.core.errors import DtmmError

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_PACKAGE = "dataset-fashion-mnist"
NAMES = ("digits", "fashion-mnist")


def _nhwc(x: np.ndarray, what: str) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4:
        raise DtmmError(f"{what} must be [N, H, W] or [N, H, W, C] images, got shape {x.shape}")
    if x.dtype == np.uint8:
        return x.astype(np.float32) / 255.0
    return x.astype(np.float32)


def _labels(y: np.ndarray, n: int, what: str) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] > 1:   # one-hot
        y = y.argmax(axis=1)
    y = y.reshape(-1)
    if y.shape[0] != n:
        raise DtmmError(f"{what} has {y.shape[0]} labels for {n} images")
    if not np.issubdtype(y.dtype, np.integer):
        if not np.all(np.equal(np.mod(y, 1), 0)):
            raise DtmmError(f"{what} must hold integer class labels")
    y = y.astype(np.int64)
    if y.min() < 0:
        raise DtmmError(f"{what} has negative labels")
    return y


def load_digits(test_fraction: float = 0.25, seed: int = 0):
    """sklearn's 8x8 digits (1797 images, values 0..16 scaled to [0, 1]); a fixed,
    stratified train/test split."""
    from sklearn.datasets import load_digits as _ld
    from sklearn.model_selection import train_test_split

    d = _ld()
    x = (d.images.astype(np.float32) / 16.0)[..., None]
    xtr, xte, ytr, yte = train_test_split(x, d.target.astype(np.int64), test_size=test_fraction,
                                          random_state=seed, stratify=d.target)
    return xtr, ytr, xte, yte


def _read_idx(path: str) -> np.ndarray:
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4:
        raise DtmmError(f"{path}: not an IDX file (too short)")
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype_code != 0x08:
        raise DtmmError(f"{path}: not an unsigned-byte IDX file")
    dims = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
    body = np.frombuffer(data, np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise DtmmError(f"{path}: {body.size} bytes of data for shape {dims}")
    return body.reshape(dims)


def _find(directory: str, stem: str) -> str | None:
    for name in (f"{stem}.gz", stem, stem.replace("-idx", ".idx")):
        p = os.path.join(directory, name)
        if os.path.isfile(p):
            return p
    return None


def load_fashion_mnist(directory: str | None = None):
    """Fashion-MNIST from the Debian package's IDX files (28x28 uint8)."""
    directory = directory or os.environ.get("DTMM_FASHION_MNIST_DIR", FASHION_MNIST_DIR)
    stems = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
             "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
    paths = [_find(directory, s) for s in stems]
    if any(p is None for p in paths):
        missing = [s for s, p in zip(stems, paths) if p is None]
        raise DtmmError(
            f"Fashion-MNIST not found in {directory} (missing {', '.join(missing)}): "
            f"install the Debian package {FASHION_MNIST_PACKAGE} "
            f"(apt-get install {FASHION_MNIST_PACKAGE}) or pass an .npz")
    xtr, ytr, xte, yte = (_read_idx(p) for p in paths)
    return (_nhwc(xtr, "train images"), _labels(ytr, len(xtr), "train labels"),
            _nhwc(xte, "test images"), _labels(yte, len(xte), "test labels"))


def load_npz(path: str):
    try:
        with np.load(path, allow_pickle=False) as z:
            keys = set(z.files)
            need = ("x_train", "y_train", "x_test", "y_test")
            if not set(need) <= keys:
                raise DtmmError(f"{path} must hold arrays {', '.join(need)}; it has "
                                f"{', '.join(sorted(keys)) or 'none'}")
            xtr, ytr, xte, yte = (z[k] for k in need)
    except (OSError, ValueError) as e:
        raise DtmmError(f"cannot read {path} as .npz: {e}") from e
    xtr, xte = _nhwc(xtr, "x_train"), _nhwc(xte, "x_test")
    if xtr.shape[1:] != xte.shape[1:]:
        raise DtmmError(f"x_train images {xtr.shape[1:]} and x_test images "
                        f"{xte.shape[1:]} differ in shape")
    return xtr, _labels(ytr, len(xtr), "y_train"), xte, _labels(yte, len(xte), "y_test")


def load(spec: str):
    """'digits', 'fashion-mnist' or a path to an .npz."""
    s = str(spec)
    if s.lower() in ("digits", "sklearn-digits"):
        return load_digits()
    if s.lower() in ("fashion-mnist", "fashion_mnist", "fashionmnist"):
        return load_fashion_mnist()
    if s.endswith(".npz"):
        if not os.path.isfile(s):
            raise DtmmError(f"dataset file {s} does not exist")
        return load_npz(s)
    raise DtmmError(f"unknown dataset {spec!r}: use 'digits', 'fashion-mnist' or a .npz "
                    "with x_train, y_train, x_test, y_test")
