"""dtmm.verify finds every kind of difference between a model and its conversion."""

import numpy as np
import pytest

import tflite_models as tm
from dtmm.convert import convert_model
from dtmm.core.errors import DtmmError
from dtmm.core.ops import is_dtmm
from dtmm.core.tflite import Model
from dtmm.verify import (VerificationError, VerifyReport, _run_and_check,
                         compare_structure, verify_models)

load_model = Model.read


@pytest.fixture(scope="module")
def cnn():
    return tm.cnn_model()


@pytest.fixture(scope="module")
def pair(cnn):
    out, _ = convert_model(cnn)
    return cnn, out


@pytest.fixture(scope="module")
def pair_v1(cnn):
    out, _ = convert_model(cnn, format_version=1)
    return cnn, out


def _edit(buf, fn):
    model = load_model(buf)
    fn(model)
    return model.save()


def _first_dtmm(model):
    sg = model.subgraphs[0]
    return next((i, op) for i, op in enumerate(sg.operators) if is_dtmm(op))


def test_a_correct_conversion_passes(pair):
    cnn, out = pair
    report = verify_models(cnn, out, random=2, seed=5)
    assert report.ok and report.invokes == 2 and len(report.dtmm_ops) == 5
    assert report.values_checked == 2 * sum(
        np.prod(op.outputs[0].shape) for _, op in tm.conv_ops(load_model(cnn)))
    assert report.summary().startswith("OK: 5 DTMM_CONV_2D op(s) match")


def _w_offsets(op):
    """Byte offsets in a version-2 w: (bias, multiplier, shift, kept blocks)."""
    from dtmm.core.contract import decode_map
    from dtmm.core.ops import padded_bitmap_bytes

    c_out, c_in = op.outputs[0].shape[3], op.inputs[0].shape[3]
    o = decode_map(op.custom_options, "t")
    bits = c_out * o["kh"] * o["kw"] * (c_in // o["b"])
    return 0, 4 * c_out, 8 * c_out, 12 * c_out + padded_bitmap_bytes(bits)


@pytest.mark.parametrize("version", [1, 2])
def test_tampered_weights_are_named(pair, pair_v1, version):
    cnn, out = pair if version == 2 else pair_v1

    def tamper(model):
        oi, op = _first_dtmm(model)
        data = op.inputs[1].data.copy()
        at = 5 if version == 1 else _w_offsets(op)[3] + 5
        data[at] = np.uint8((int(data[at]) + 1) % 256) or 1
        op.inputs[1].buffer.data = data

    bad = _edit(out, tamper)
    with pytest.raises(VerificationError) as e:
        verify_models(cnn, bad, random=0)
    msg = str(e.value)
    oi, op = _first_dtmm(load_model(out))
    name = op.outputs[0].name
    assert msg == f"op {oi} ({name}): filter (FWCS densified) differs from the original CONV_2D"


@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize("field, index", [("bias", 3), ("multiplier", 4), ("shift", 5)])
def test_tampered_constants(pair, pair_v1, field, index, version):
    cnn, out = pair if version == 2 else pair_v1

    def tamper(model):
        _, op = _first_dtmm(model)
        if version == 1:
            t = op.inputs[index]
            v = t.value().copy()
            v[-1] += 1
            t.buffer.data = v
            return
        t = op.inputs[1]
        data = t.data.copy()
        at = _w_offsets(op)[index - 3] + 4 * (op.outputs[0].shape[3] - 1)  # last channel
        data[at:at + 4] = (data[at:at + 4].view("<i4") + 1).view(np.uint8)
        t.buffer.data = data

    report = verify_models(cnn, _edit(out, tamper), random=0, check=False)
    assert len(report.failures) == 1
    assert f": {'folded bias' if field == 'bias' else field} differs" in report.failures[0]


def test_v1_conversion_verifies(pair_v1):
    cnn, out = pair_v1
    report = verify_models(cnn, out, random=2, seed=5)
    assert report.ok and len(report.dtmm_ops) == 5


def test_numeric_check_catches_what_structure_cannot(pair):
    # A reference that disagreed with TFLite would show here: feed the numeric
    # check a DTMM op whose bias is off by one and it names the layer.
    cnn, out = pair
    a, b = load_model(cnn), load_model(out)
    report = VerifyReport()
    dtmm = compare_structure(a, b, report)
    assert report.ok and len(dtmm) == 5
    (si, oi), d = sorted(dtmm.items())[1]
    d.bias = d.bias + 1
    feeds = [{0: np.zeros((1, 24, 24, 3), np.int8)}, {0: np.full((1, 24, 24, 3), 50, np.int8)}]
    _run_and_check(cnn, a, dtmm, feeds, "test", report)
    assert report.invokes == 2
    name = a.subgraphs[0].operators[oi].outputs[0].name
    assert report.failures and all(f.startswith(f"layer {name} (op {oi}), test invoke ")
                                   for f in report.failures)
    assert "values differ, first at (0, " in report.failures[0]


def test_structure_differences(pair):
    cnn, out = pair

    def rename(model):
        t = model.subgraphs[0].operators[-1].inputs[0]
        t.name = t.name + "_x"

    def softmax_beta(model):
        op = model.subgraphs[0].operators[-1]
        assert op.name == "SOFTMAX"
        op.builtin_options.beta = 2.0

    def signature(model):
        sd = model.signature_defs[0]
        sd.outputs[0] = (sd.outputs[0][0], sd.subgraph.tensors[0])

    def metadata(model):
        model.metadata[0].buffer.data = np.frombuffer(b"x" * 4, np.uint8).copy()

    def drop_op(model):
        model.subgraphs[0].operators.pop()

    cases = {rename: "tensor", softmax_beta: "options differ",
             signature: "signature defs differ", metadata: "metadata differs",
             drop_op: "ops vs"}
    for fn, phrase in cases.items():
        report = verify_models(cnn, _edit(out, fn), random=0, check=False)
        assert not report.ok, fn.__name__
        assert any(phrase in f for f in report.failures), (fn.__name__, report.failures)


def test_user_inputs(pair, tmp_path):
    cnn, out = pair
    rng = np.random.default_rng(1)
    one = tmp_path / "one.npy"
    np.save(one, rng.integers(-128, 128, (1, 24, 24, 3), dtype=np.int8))
    seq = tmp_path / "seq.npz"
    np.savez(seq, rng.integers(-128, 128, (3, 1, 24, 24, 3), dtype=np.int8))
    report = verify_models(cnn, out, input_files=[one, seq], random=0)
    assert report.invokes == 4 and report.ok
    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros((1, 24, 24, 3), np.float32))
    with pytest.raises(DtmmError, match="dtype float32, input .* needs int8"):
        verify_models(cnn, out, input_files=[bad], random=0)
    np.save(bad, np.zeros((1, 24, 24, 4), np.int8))
    with pytest.raises(DtmmError, match=r"shape \[1, 24, 24, 4\]"):
        verify_models(cnn, out, input_files=[bad], random=0)


def test_unconverted_model_verifies_against_itself(pair):
    cnn, _ = pair
    report = verify_models(cnn, cnn, random=1)
    assert report.ok and report.dtmm_ops == []


def test_converted_model_verifies_against_itself(pair):
    _, out = pair
    report = verify_models(out, out, random=1)
    assert report.ok and report.dtmm_ops == []  # DTMM ops compared like any op


def test_requantization_wraps_at_the_clamp_like_tflite():
    # MultiplyByQuantizedMultiplier(acc) + output_offset overflows int32 for channel
    # 0 (acc = INT32_MAX - 10, multiplier 1 - 2^-28, zero point 100): TFLite's
    # int32 addition wraps to a negative value, clamped to -128, where int64 math
    # would give 127. Channel 1 stays just below the overflow.
    import tensorflow as tf

    from dtmm.core.quant import INT32_MAX, multiply_by_quantized_multiplier, \
        per_channel_multipliers

    buf = tm.conv_branches_model([tm.ConvConfig(2, 2, 3, 3, seed=11)])
    model = load_model(buf)
    (_, op), = tm.conv_ops(model)
    x, w, b = op.inputs
    y = op.outputs[0]
    s_in, s_w = np.float32(1 + 2.0 ** -14), np.float32(1 - 2.0 ** -14)
    x.quantization.scale, x.quantization.zeroPoint = [float(s_in)], [0]
    w.quantization.scale, w.quantization.zeroPoint = [float(s_w)] * 2, [0, 0]
    b.quantization.scale = [float(np.float32(s_in * s_w))] * 2
    b.quantization.zeroPoint = [0, 0]
    y.quantization.scale, y.quantization.zeroPoint = [1.0], [100]
    w.buffer.data = np.zeros(w.shape, np.int8)
    bias = np.array([INT32_MAX - 10, INT32_MAX - 300], np.int32)
    b.buffer.data = bias
    buf = model.save()

    mult, shift = per_channel_multipliers(s_in, [s_w, s_w], 1.0)
    unwrapped = multiply_by_quantized_multiplier(bias.astype(np.int64), mult, shift) + 100
    assert unwrapped[0] > INT32_MAX >= unwrapped[1]  # the case really overflows

    interp = tf.lite.Interpreter(
        model_content=buf,
        experimental_op_resolver_type=tf.lite.experimental.OpResolverType.BUILTIN_REF)
    interp.allocate_tensors()
    interp.set_tensor(interp.get_input_details()[0]["index"],
                      np.zeros(interp.get_input_details()[0]["shape"], np.int8))
    interp.invoke()
    got = interp.get_tensor(interp.get_output_details()[0]["index"])
    assert (got[..., 0] == -128).all() and (got[..., 1] == 127).all()

    out, report = convert_model(buf, always=True)
    assert report.num_rewritten == 1
    result = verify_models(buf, out, random=3, seed=2, check=False)
    assert result.ok, result.summary()
