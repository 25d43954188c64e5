"""dtmm.verify finds every kind of difference between a model and its conversion."""

import numpy as np
import pytest

import tflite_models as tm
from dtmm.convert import convert_model
from dtmm.errors import DtmmError
from dtmm.tflite_io import is_dtmm_op, load_model, op_name, save_model, text
from dtmm.verify import (VerificationError, VerifyReport, _run_and_check,
                         compare_structure, verify_models)


@pytest.fixture(scope="module")
def pair():
    cnn = tm.cnn_model()
    out, _ = convert_model(cnn)
    return cnn, out


def _edit(buf, fn):
    model = load_model(buf)
    fn(model)
    return save_model(model)


def _first_dtmm(model):
    sg = model.subgraphs[0]
    return next((i, op) for i, op in enumerate(sg.operators) if is_dtmm_op(model, op))


def test_a_correct_conversion_passes(pair):
    cnn, out = pair
    report = verify_models(cnn, out, random=2, seed=5)
    assert report.ok and report.invokes == 2 and len(report.dtmm_ops) == 5
    assert report.values_checked == 2 * sum(
        np.prod(load_model(cnn).subgraphs[0].tensors[op.outputs[0]].shape)
        for _, op in tm.conv_ops(load_model(cnn)))
    assert report.summary().startswith("OK: 5 DTMM_CONV_2D op(s) match")


def test_tampered_weights_are_named(pair):
    cnn, out = pair

    def tamper(model):
        oi, op = _first_dtmm(model)
        t = model.subgraphs[0].tensors[int(op.inputs[1])]
        data = model.buffers[t.buffer].data.copy()
        data[5] = np.uint8((int(data[5]) + 1) % 256) or 1
        model.buffers[t.buffer].data = data

    bad = _edit(out, tamper)
    with pytest.raises(VerificationError) as e:
        verify_models(cnn, bad, random=0)
    msg = str(e.value)
    oi, op = _first_dtmm(load_model(out))
    name = text(load_model(out).subgraphs[0].tensors[op.outputs[0]].name)
    assert msg == f"op {oi} ({name}): filter (FWCS densified) differs from the original CONV_2D"


@pytest.mark.parametrize("field, index", [("bias", 3), ("multiplier", 4), ("shift", 5)])
def test_tampered_constants(pair, field, index):
    cnn, out = pair

    def tamper(model):
        _, op = _first_dtmm(model)
        t = model.subgraphs[0].tensors[int(op.inputs[index])]
        v = np.frombuffer(model.buffers[t.buffer].data.tobytes(), np.int32).copy()
        v[-1] += 1
        model.buffers[t.buffer].data = np.frombuffer(v.tobytes(), np.uint8).copy()

    report = verify_models(cnn, _edit(out, tamper), random=0, check=False)
    assert len(report.failures) == 1
    assert f": {'folded bias' if field == 'bias' else field} differs" in report.failures[0]


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
    name = text(a.subgraphs[0].tensors[a.subgraphs[0].operators[oi].outputs[0]].name)
    assert report.failures and all(f.startswith(f"layer {name} (op {oi}), test invoke ")
                                   for f in report.failures)
    assert "values differ, first at (0, " in report.failures[0]


def test_structure_differences(pair):
    cnn, out = pair

    def rename(model):
        sg = model.subgraphs[0]
        t = sg.tensors[int(sg.operators[-1].inputs[0])]
        t.name = text(t.name) + "_x"

    def softmax_beta(model):
        op = model.subgraphs[0].operators[-1]
        assert op_name(model, op) == "SOFTMAX"
        op.builtinOptions.beta = 2.0

    def signature(model):
        model.signatureDefs[0].outputs[0].tensorIndex = 0

    def metadata(model):
        m = model.metadata[0]
        model.buffers[m.buffer].data = np.frombuffer(b"x" * 4, np.uint8).copy()

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
