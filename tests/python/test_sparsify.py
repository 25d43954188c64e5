"""`dtmm sparsify`: the lowest-L1 share of each eligible conv's filterlets zeroed at the
int8 level, exactly that share per layer, nothing else in the model changed, and one
clear error (exit 2, no output file) for bad input."""

import os
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from dtmm import cli  # noqa: E402
from dtmm.fwcs import filterlet_sparsity  # noqa: E402
from dtmm.core.errors import DtmmError  # noqa: E402
from dtmm.sparsify import (lowest_l1_block_mask, lowest_l1_mask, sparsify_model,  # noqa: E402
                           target_zeros)
from dtmm.core.tflite import BuiltinOperator, Model  # noqa: E402


def _tf_model(quantize: bool, seed: int = 0) -> bytes:
    """conv 3x3 (C_in 3) -> depthwise -> conv 1x1 -> conv 3x1 stride 2 -> dense."""
    import tensorflow as tf

    warnings.filterwarnings("ignore", module="tensorflow")
    tf.keras.utils.set_random_seed(seed)
    inp = tf.keras.Input((10, 8, 3), batch_size=1)
    x = tf.keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inp)
    x = tf.keras.layers.DepthwiseConv2D(3, padding="same")(x)
    x = tf.keras.layers.Conv2D(12, 1, activation="relu")(x)
    x = tf.keras.layers.Conv2D(6, (3, 1), strides=2)(x)
    out = tf.keras.layers.Dense(4)(tf.keras.layers.Flatten()(x))
    model = tf.keras.Model(inp, out)
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    if quantize:
        rng = np.random.default_rng(seed)
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = lambda: (
            [rng.uniform(-1, 1, (1, 10, 8, 3)).astype(np.float32)] for _ in range(8))
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
    return bytes(conv.convert())


@pytest.fixture(scope="module")
def int8_model():
    return _tf_model(quantize=True)


@pytest.fixture(scope="module")
def float_model():
    return _tf_model(quantize=False)


def _convs(buf):
    """[(subgraph, op index, filter buffer index, OHWI int8 filter)] of every CONV_2D."""
    m = Model.read(buf)
    index = {id(b): i for i, b in enumerate(m.buffers)}
    out = []
    for si, sg in enumerate(m.subgraphs):
        for oi, op in enumerate(sg.operators):
            if op.opcode.builtin == BuiltinOperator.CONV_2D:
                w = op.inputs[1]
                out.append((si, oi, index[id(w.buffer)], w.value()))
    return out


def _zero_filterlets(f):
    return int((~f.reshape(-1, f.shape[3]).any(axis=1)).sum())


@pytest.mark.parametrize("s", [0.1, 0.25, 0.5, 0.75, 0.9, 1.0])
def test_exact_share_per_layer_lowest_l1(int8_model, s):
    out, layers = sparsify_model(int8_model, s)
    before, after = _convs(int8_model), _convs(out)
    assert len(layers) == len(before) == len(after) == 3
    for (_, _, _, f0), (_, _, _, f1), rep in zip(before, after, layers):
        n = f0.shape[0] * f0.shape[1] * f0.shape[2]
        want = max(target_zeros(s, n), _zero_filterlets(f0))
        assert rep.eligible and rep.filterlets == n
        assert _zero_filterlets(f1) == rep.zero_after == want
        assert filterlet_sparsity(f1) == pytest.approx(want / n)
        zeroed = ~f1.reshape(n, -1).any(axis=1)
        # Kept filterlets are untouched; every zeroed one had an L1 no larger than
        # any kept one.
        keep = ~zeroed
        np.testing.assert_array_equal(f1.reshape(n, -1)[keep], f0.reshape(n, -1)[keep])
        l1 = np.abs(f0.astype(np.int64)).reshape(n, -1).sum(axis=1)
        if zeroed.any() and keep.any():
            assert l1[zeroed].max() <= l1[keep].min()


def test_nothing_else_changes(int8_model):
    """The output is the input re-serialized with only the conv filters' bytes new."""
    out, _ = sparsify_model(int8_model, 0.6)
    filters = {b: f for _, _, b, f in _convs(out)}
    ref = Model.read(int8_model)
    for b, f in filters.items():
        ref.buffers[b].data = f
    assert ref.save() == out
    # ... and the filters did change.
    assert any((f0 != f1).any() for (_, _, _, f0), (_, _, _, f1)
               in zip(_convs(int8_model), _convs(out)))


def test_zero_sparsity_and_float_model_are_byte_identical(int8_model, float_model):
    out, layers = sparsify_model(int8_model, 0.0)
    assert out == int8_model and all(r.zero_after == r.zero_before for r in layers)
    out, layers = sparsify_model(float_model, 0.75)
    assert out == float_model
    assert layers and all(not r.eligible and "int8" in r.note for r in layers)


def test_already_sparser_layer_is_kept(int8_model):
    half, _ = sparsify_model(int8_model, 0.5)
    out, layers = sparsify_model(half, 0.25)
    assert out == half
    assert all(r.zero_after == r.zero_before for r in layers)


def test_deterministic(int8_model):
    assert sparsify_model(int8_model, 0.5)[0] == sparsify_model(int8_model, 0.5)[0]


def test_ties_lowest_index_first():
    f = np.ones((2, 2, 2, 3), np.int8)   # every filterlet has L1 3
    f[1, 1, 0] = [0, 0, 1]              # L1 1: zeroed first
    mask = lowest_l1_mask(f, 0.5)        # 8 filterlets -> 4 zero
    flat = mask.reshape(-1)
    assert flat.sum() == 4
    assert flat[6] and flat[:3].all() and not flat[3:6].any() and not flat[7]


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 6), st.integers(1, 3), st.integers(1, 3), st.integers(1, 5),
       st.floats(0, 1), st.integers(0, 2**32 - 1))
def test_mask_properties(c_out, kh, kw, c_in, s, seed):
    rng = np.random.default_rng(seed)
    f = rng.integers(-3, 4, (c_out, kh, kw, c_in)).astype(np.int8)
    mask = lowest_l1_mask(f, s).reshape(-1)
    l1 = np.abs(f.astype(np.int64)).reshape(mask.size, -1).sum(axis=1)
    assert mask.sum() == max(target_zeros(s, mask.size), int((l1 == 0).sum()))
    assert mask[l1 == 0].all()
    if mask.any() and (~mask).any():
        assert l1[mask].max() <= l1[~mask].min()
        # Among equal L1 at the cut, the lower indices go first.
        cut = l1[mask].max()
        tied = np.flatnonzero(l1 == cut)
        taken = mask[tied]
        assert (np.sort(taken)[::-1] == taken).all()


# -- the command line -------------------------------------------------------------------
def _cli(capsys, *argv):
    rc = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_cli_writes_model_and_table(int8_model, tmp_path, capsys):
    src, dst = tmp_path / "m.tflite", tmp_path / "m_s75.tflite"
    src.write_bytes(int8_model)
    rc, out, err = _cli(capsys, "sparsify", src, "-o", dst, "--sparsity", "0.75")
    assert rc == 0 and err == ""
    assert dst.read_bytes() == sparsify_model(int8_model, 0.75)[0]
    assert src.read_bytes() == int8_model
    assert "3 of 3 CONV_2D eligible, 3 changed" in out
    assert out.count("%") >= 6  # a sparsity and an L1 share per layer


BAD = {
    "empty": b"",
    "text": b"not a model at all\n",
    "truncated": None,  # filled from the fixture
    "wrong_identifier": None,
}


@pytest.mark.parametrize("case", list(BAD))
def test_cli_bad_input_one_error_no_output(int8_model, tmp_path, capsys, case):
    data = {"truncated": int8_model[: len(int8_model) // 2],
            "wrong_identifier": int8_model[:4] + b"XXXX" + int8_model[8:]}.get(case, BAD[case])
    src, dst = tmp_path / "bad.tflite", tmp_path / "out.tflite"
    src.write_bytes(data)
    rc, out, err = _cli(capsys, "sparsify", src, "-o", dst, "--sparsity", "0.5")
    assert rc == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dtmm: error: ")
    assert not dst.exists() and src.read_bytes() == data
    assert os.listdir(tmp_path) == ["bad.tflite"]  # no temp file left either


def test_cli_missing_file_and_same_output(int8_model, tmp_path, capsys):
    rc, out, err = _cli(capsys, "sparsify", tmp_path / "nope.tflite", "-o",
                        tmp_path / "o.tflite", "--sparsity", "0.5")
    assert rc == 2 and err.startswith("dtmm: error: cannot read") and len(err.splitlines()) == 1
    src = tmp_path / "m.tflite"
    src.write_bytes(int8_model)
    rc, out, err = _cli(capsys, "sparsify", src, "-o", src, "--sparsity", "0.5")
    assert rc == 2 and "is the input file" in err and src.read_bytes() == int8_model


@pytest.mark.parametrize("value", ["1.5", "-0.1", "half"])
def test_cli_bad_sparsity(int8_model, tmp_path, capsys, value):
    src, dst = tmp_path / "m.tflite", tmp_path / "o.tflite"
    src.write_bytes(int8_model)
    with pytest.raises(SystemExit) as e:
        cli.main(["sparsify", str(src), "-o", str(dst), "--sparsity", value])
    assert e.value.code == 2
    assert "--sparsity" in capsys.readouterr().err
    assert not dst.exists()


# -- FULLY_CONNECTED blocks (--blocks B) ------------------------------------------------
def _fcs(buf):
    """[(buffer index, int8 [C_out, C_in] weights)] of every FULLY_CONNECTED."""
    m = Model.read(buf)
    index = {id(b): i for i, b in enumerate(m.buffers)}
    return [(index[id(op.inputs[1].buffer)], op.inputs[1].value())
            for sg in m.subgraphs for op in sg.operators
            if op.opcode.builtin == BuiltinOperator.FULLY_CONNECTED]


def test_fc_untouched_by_default(int8_model):
    out, layers = sparsify_model(int8_model, 0.75)
    assert all(r.kind == "CONV_2D" for r in layers)
    for (_, w0), (_, w1) in zip(_fcs(int8_model), _fcs(out)):
        np.testing.assert_array_equal(w0, w1)


@pytest.mark.parametrize("s", [0.25, 0.5, 0.75, 1.0])
@pytest.mark.parametrize("block", [8, 16, 32, 96])
def test_fc_exact_blocks_zeroed(int8_model, s, block):
    out, layers = sparsify_model(int8_model, s, blocks=block)
    (_, w0), = _fcs(int8_model)
    (_, w1), = _fcs(out)
    fc = [r for r in layers if r.kind == "FULLY_CONNECTED"]
    assert len(fc) == 1 and fc[0].eligible and fc[0].block == block
    c_out, c_in = w0.shape                      # Dense(4) on a flattened 4x4x6
    assert (c_out, c_in) == (4, 96)
    blocks0, blocks1 = w0.reshape(-1, block), w1.reshape(-1, block)
    n = blocks0.shape[0]
    l1 = np.abs(blocks0.astype(np.int64)).sum(axis=1)
    # The exact blocks: the k lowest L1, ties by block index (row-major).
    k = max(target_zeros(s, n), int((l1 == 0).sum()))
    want = np.zeros(n, bool)
    want[sorted(range(n), key=lambda i: (l1[i], i))[:k]] = True
    zeroed = ~blocks1.any(axis=1)
    np.testing.assert_array_equal(zeroed, want)
    np.testing.assert_array_equal(blocks1[~want], blocks0[~want])
    assert fc[0].filterlets == n and fc[0].zero_after == k
    # The convs are pruned exactly as without --blocks.
    ref, _ = sparsify_model(int8_model, s)
    for (_, _, _, f0), (_, _, _, f1) in zip(_convs(ref), _convs(out)):
        np.testing.assert_array_equal(f0, f1)


def test_fc_block_not_dividing_c_in_stays_dense(int8_model):
    out, layers = sparsify_model(int8_model, 0.5, blocks=64)   # C_in 96
    fc, = [r for r in layers if r.kind == "FULLY_CONNECTED"]
    assert not fc.eligible and "C_in=96 is not a multiple of block 64" in fc.note
    np.testing.assert_array_equal(_fcs(out)[0][1], _fcs(int8_model)[0][1])
    assert out == sparsify_model(int8_model, 0.5)[0]


def test_fc_float_model_skipped(float_model):
    out, layers = sparsify_model(float_model, 0.5, blocks=16)
    assert out == float_model
    fc, = [r for r in layers if r.kind == "FULLY_CONNECTED"]
    assert not fc.eligible and "int8" in fc.note


def test_fc_blocks_ties_lowest_index_first():
    w = np.ones((2, 8), np.int8)     # 4 blocks of 4, each L1 4
    w[1, 4:] = [0, 0, 0, 1]          # block 3: L1 1, zeroed first
    mask = lowest_l1_block_mask(w, 4, 0.5)
    np.testing.assert_array_equal(mask, [[True, False], [False, True]])
    with pytest.raises(DtmmError, match="does not divide"):
        lowest_l1_block_mask(w, 3, 0.5)


@pytest.mark.parametrize("bad", [0, -4, 2.5, True])
def test_fc_bad_block_argument(int8_model, bad):
    with pytest.raises(DtmmError, match="block size"):
        sparsify_model(int8_model, 0.5, blocks=bad)


def test_cli_blocks(int8_model, tmp_path, capsys):
    src, dst = tmp_path / "m.tflite", tmp_path / "o.tflite"
    src.write_bytes(int8_model)
    rc, out, err = _cli(capsys, "sparsify", src, "-o", dst, "--sparsity", "0.5",
                        "--blocks", "16")
    assert rc == 0 and err == ""
    assert dst.read_bytes() == sparsify_model(int8_model, 0.5, blocks=16)[0]
    assert "1 of 1 FULLY_CONNECTED eligible, 1 changed" in out and "FC/B16" in out
    for value in ("0", "x"):
        with pytest.raises(SystemExit) as e:
            cli.main(["sparsify", str(src), "-o", str(tmp_path / "p.tflite"),
                      "--sparsity", "0.5", "--blocks", value])
        assert e.value.code == 2 and "--blocks" in capsys.readouterr().err


# -- 1x1 convs take blocks with --blocks B (DTMM_CONV_2D version 2) ---------------------
@pytest.fixture(scope="module")
def pointwise_model():
    import tflite_models as tm

    return tm.conv_branches_model([tm.ConvConfig(8, 6, 3, 3, seed=1),
                                   tm.ConvConfig(32, 12, 1, 1, seed=2),
                                   tm.ConvConfig(12, 5, 1, 1, seed=3)])


@pytest.mark.parametrize("s", [0.25, 0.5, 0.75])
def test_1x1_conv_blocks_zeroed_lowest_l1_first(pointwise_model, s):
    out, layers = sparsify_model(pointwise_model, s, blocks=8)
    before = {oi: w for _, oi, _, w in _convs(pointwise_model)}
    after = {oi: w for _, oi, _, w in _convs(out)}
    by_op = {r.op_index: r for r in layers}
    for oi, w0 in before.items():
        r, w1 = by_op[oi], after[oi]
        c_out, kh, kw, c_in = w0.shape
        if (kh, kw) == (1, 1) and c_in == 32:  # blocks of 8 of each filter
            assert r.block == 8 and r.filterlets == c_out * 4
            units0, units1 = w0.reshape(-1, 8), w1.reshape(-1, 8)
        else:  # 3x3, or C_in 12 that 8 does not divide: filterlets as without --blocks
            assert r.block == 0 and r.filterlets == c_out * kh * kw
            units0, units1 = w0.reshape(-1, c_in), w1.reshape(-1, c_in)
        l1 = np.abs(units0.astype(np.int64)).sum(axis=1)
        k = max(target_zeros(s, len(l1)), int((l1 == 0).sum()))
        want = np.zeros(len(l1), bool)
        want[sorted(range(len(l1)), key=lambda i: (l1[i], i))[:k]] = True
        np.testing.assert_array_equal(~units1.any(axis=1), want)
        np.testing.assert_array_equal(units1[~want], units0[~want])
    from dtmm.sparsify import table
    assert "1x1/B8 " in table(layers)


def test_1x1_blocks_convert_to_block_filterlets(pointwise_model):
    from dtmm.convert import convert_model
    from dtmm.core.ops import is_dtmm, read_dtmm
    from dtmm.verify import verify_models

    out, _ = sparsify_model(pointwise_model, 0.75, blocks=8)
    conv, report = convert_model(out, prefer="size")
    m = Model.read(conv)
    blocks = {oi: read_dtmm(m, 0, oi).block for oi, op in
              enumerate(m.subgraphs[0].operators) if is_dtmm(op)}
    assert 8 in blocks.values(), report.table()
    assert verify_models(out, conv, random=2).ok
