"""DTMM_FULLY_CONNECTED's NumPy reference against TFLite's reference FULLY_CONNECTED.

Every case is a generated one-op model run by tf.lite.Interpreter with BUILTIN_REF
kernels. The desktop interpreter (TF 2.21) rounds its FULLY_CONNECTED once; TFLM,
CMSIS-NN and the contract round twice (gemmlowp). So each case checks
  1. the block-sparse DTMM form in single rounding == the interpreter, bit for bit
     (folding, offsets, activation, shapes, batches are TFLite's);
  2. the DTMM form == the unfolded TFLite formula in double rounding (the device's
     dense FULLY_CONNECTED), bit for bit.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dtmm.core import fc as F
from dtmm.core.errors import FormatError
from dtmm.core.tflite import Model
from fc_models import FcConfig, fc_model, keras_dense_model, random_input, run_tflite


def _check(buf: bytes, seed: int, blocks=None):
    x = random_input(buf, seed)
    want = run_tflite(buf, x)
    f = F.read_fc(Model.read(buf), 0, 0)
    assert not f.skip, f.skip
    mult, shift = f.multipliers()
    double = F.tflite_fully_connected(x, f.weights, f.bias_values, mult, shift,
                                      f.input_zero_point, f.output_zero_point,
                                      f.act_min, f.act_max)
    for b in blocks or F.block_sizes(f.c_in):
        form = F.dtmm_fc_form(f, b)
        assert not form.device_rejects()
        args = (x, form.w, form.q, f.c_out, f.c_in, b, f.output_zero_point, f.act_min,
                f.act_max)
        single = F.dtmm_fully_connected(*args, single_rounding=True)
        np.testing.assert_array_equal(single.reshape(want.shape), want, err_msg=f"B={b}")
        np.testing.assert_array_equal(F.dtmm_fully_connected(*args), double,
                                      err_msg=f"B={b}")
    return x, want, double


@pytest.mark.parametrize("cfg", [
    FcConfig(40, 12, batches=3, per_channel=True),
    FcConfig(37, 5),                                   # C_in not a multiple of 4
    FcConfig(64, 8, batches=4, bias=False, activation="RELU6", keep_num_dims=True,
             rank3=True, block=16, sparsity=0.5),
    FcConfig(128, 16, activation="RELU", block=8, sparsity=0.75, per_channel=True),
    FcConfig(96, 7, batches=2, activation="RELU_N1_TO_1", block=32, sparsity=0.9),
    FcConfig(48, 3, block=16, sparsity=1.0),           # every block pruned
], ids=str)
def test_cases(cfg):
    _check(fc_model(cfg, seed=7), seed=3)


@settings(max_examples=60, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(c_in=st.integers(1, 80), c_out=st.integers(1, 24), batches=st.integers(1, 5),
       per_channel=st.booleans(), bias=st.booleans(),
       activation=st.sampled_from(["NONE", "RELU", "RELU6", "RELU_N1_TO_1"]),
       keep=st.booleans(), rank3=st.booleans(), block=st.sampled_from([0, 4, 8, 16]),
       sparsity=st.sampled_from([0.0, 0.5, 0.9]), zp_in=st.integers(-128, 127),
       zp_out=st.integers(-128, 127), seed=st.integers(0, 2 ** 16))
def test_hypothesis(c_in, c_out, batches, per_channel, bias, activation, keep, rank3,
                    block, sparsity, zp_in, zp_out, seed):
    if block and c_in % block:
        block = 0
    cfg = FcConfig(c_in, c_out, batches, per_channel, bias, activation, keep, block,
                   sparsity, rank3, zp_in, zp_out)
    _check(fc_model(cfg, seed), seed)


def test_double_rounding_differs_where_the_interpreter_rounds_once():
    """The two roundings are really different (so test 2 above is not test 1)."""
    diffs = 0
    for seed in range(30):
        buf = fc_model(FcConfig(64, 8, batches=4, block=16, sparsity=0.5), seed)
        _, want, double = _check(buf, seed, blocks=[16])
        diffs += int(np.sum(want.reshape(double.shape) != double))
        assert np.abs(want.reshape(double.shape).astype(int) - double).max() <= 1
    assert diffs > 0


def test_keras_mlp():
    buf = keras_dense_model()
    m = Model.read(buf)
    fcs = [i for i, op in enumerate(m.subgraphs[0].operators) if F.is_fc(op)]
    assert len(fcs) == 3
    for oi in fcs:
        f = F.read_fc(m, 0, oi)
        assert not f.skip, f.skip
        form = F.dtmm_fc_form(f, F.block_sizes(f.c_in)[-1])
        dense, _ = F.unpack(form.w, f.c_out, f.c_in, form.block)
        np.testing.assert_array_equal(dense, f.weights)


def test_pack_layout():
    w = np.zeros((3, 32), np.int8)
    w[0, 0] = 1        # row 0 block 0
    w[1, 20] = -2      # row 1 block 2 (B = 8): bit 1*4 + 2 = 6
    w[2, 31] = 5       # row 2 block 3: bit 11
    p = F.pack(w, 8)
    assert p.dtype == np.int8 and p.size == 4 + 3 * 8
    assert p[:4].view(np.uint8).tolist() == [0b01000001, 0b00001000, 0, 0]
    assert p[4:12].tolist() == [1] + [0] * 7
    assert p[12:20].tolist() == [0] * 4 + [-2] + [0] * 3
    dense, mask = F.unpack(p, 3, 32, 8)
    np.testing.assert_array_equal(dense, w)
    assert mask.sum() == 3
    assert F.bitmap_bytes(3, 32, 32) == 4 and F.pack(w, 32).size == 4 + 3 * 32


@pytest.mark.parametrize("edit,msg", [
    (lambda p: p[:-1], "expected"),
    (lambda p: np.concatenate([p, np.zeros(8, np.int8)]), "expected"),
    (lambda p: p[:2], "bitmap alone"),
    (lambda p: np.concatenate([[np.int8(0x41)], [np.int8(0x08)], [np.int8(0x10)],
                               p[3:]]), "padding bits"),
])
def test_unpack_rejects(edit, msg):
    w = np.zeros((3, 32), np.int8)
    w[0, 0], w[1, 20], w[2, 31] = 1, -2, 5
    with pytest.raises(FormatError, match=msg):
        F.unpack(edit(F.pack(w, 8)), 3, 32, 8)
    with pytest.raises(FormatError, match="does not divide"):
        F.unpack(F.pack(w, 8), 3, 32, 12)
