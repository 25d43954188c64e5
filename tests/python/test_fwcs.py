"""FWCS encode/decode round trips and rejection of inconsistent data."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dtmm.errors import FormatError
from dtmm.fwcs import FWCS, bitmap_bytes, filterlet_sparsity
from dtmm.fwcs_table import index_bytes, random_mask


@st.composite
def sparse_filters(draw):
    c_out = draw(st.integers(1, 9))
    kh, kw = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    c_in = draw(st.integers(1, 17))
    seed = draw(st.integers(0, 2**31))
    keep = draw(st.floats(0.0, 1.0))
    rng = np.random.default_rng(seed)
    w = rng.integers(-128, 128, size=(c_out, kh, kw, c_in), dtype=np.int8)
    w[rng.random((c_out, kh, kw)) >= keep] = 0
    return w


@settings(max_examples=200, deadline=None)
@given(sparse_filters())
def test_round_trip_and_layout(w):
    fw = FWCS.from_dense(w)
    assert (fw.to_dense() == w).all()
    c_out, kh, kw, c_in = w.shape
    assert fw.bitmap.size == bitmap_bytes(c_out, kh, kw)
    # Bit b = (oc*kh + i)*kw + j, LSB first; values in increasing b order.
    kept = [(oc, i, j) for oc in range(c_out) for i in range(kh) for j in range(kw)
            if w[oc, i, j].any()]
    for b_oc, b_i, b_j in kept:
        b = (b_oc * kh + b_i) * kw + b_j
        assert fw.bitmap[b >> 3] >> (b & 7) & 1
    assert fw.num_kept == len(kept)
    for row, (oc, i, j) in enumerate(kept):
        assert (fw.values[row] == w[oc, i, j]).all()
    assert fw.sparsity == pytest.approx(filterlet_sparsity(w))
    again = FWCS.from_arrays(c_out, kh, kw, c_in, fw.bitmap, fw.values.reshape(-1))
    assert (again.to_dense() == w).all()


def _example():
    w = np.zeros((3, 3, 3, 4), np.int8)
    w[0, 0, 0] = 1
    w[1, 2, 1] = -5
    w[2, 1, 2] = 7
    return FWCS.from_dense(w)


def test_fully_pruned_and_dense_extremes():
    empty = FWCS.from_dense(np.zeros((4, 3, 3, 8), np.int8))
    assert empty.num_kept == 0 and empty.values.shape == (0, 8)
    assert not empty.bitmap.any() and empty.sparsity == 1.0
    full = FWCS.from_dense(np.ones((4, 3, 3, 8), np.int8))
    assert full.sparsity == 0.0 and full.values.shape == (36, 8)
    # 36 bits: the last byte's 4 padding bits stay zero.
    assert full.bitmap[-1] == 0x0F


@pytest.mark.parametrize("mutate, message", [
    (lambda b, v: (b[:-1], v), "bitmap has"),
    (lambda b, v: (np.concatenate([b, [0]]).astype(np.uint8), v), "bitmap has"),
    (lambda b, v: (b, v[:-1]), "values hold"),
    (lambda b, v: (b, np.concatenate([v, v[:1]])), "values hold"),
    (lambda b, v: (_set_bit(b, 27), v), "outside the filter"),
    (lambda b, v: (_set_bit(b, 4), v), "values hold"),
    (lambda b, v: (b.astype(np.int8), v), "bitmap must be 1-D uint8"),
    (lambda b, v: (b, v.astype(np.int16)), "values must be int8"),
    (lambda b, v: (b, v.reshape(-1)[:-1]), "not a multiple of C_in"),
])
def test_inconsistent_arrays_are_rejected(mutate, message):
    fw = _example()
    bitmap, values = mutate(fw.bitmap.copy(), fw.values.copy())
    with pytest.raises(FormatError, match=message):
        FWCS.from_arrays(3, 3, 3, 4, bitmap, values)


def _set_bit(bitmap, b):
    out = bitmap.copy()
    out[b >> 3] |= 1 << (b & 7)
    return out


@pytest.mark.parametrize("shape", [(0, 3, 3, 4), (3, 3, 4)])
def test_bad_dense_filters_are_rejected(shape):
    with pytest.raises(FormatError):
        FWCS.from_dense(np.zeros(shape, np.int8))


def test_from_dense_rejects_non_int8():
    with pytest.raises(FormatError, match="int8"):
        FWCS.from_dense(np.zeros((1, 1, 1, 1), np.float32))


def test_stored_arrays_are_read_only():
    fw = _example()
    with pytest.raises(ValueError):
        fw.values[0, 0] = 3


def test_index_table_uses_the_real_encoder():
    mask = random_mask(64, 3, 3, 0.5, seed=1)
    idx = index_bytes(mask)
    assert idx["bitmap"] == bitmap_bytes(64, 3, 3) == 72
    assert idx["dtmm_csr16"] == 2 * 64 + 2 * int(mask.sum())
    assert idx["entropy_bound"] <= idx["bitmap"]
