"""The four microWakeWord int8 models (pymicro-wakeword): two subgraphs, CALL_ONCE,
resource variables, a signature and metadata. Half of each conv's filterlets are
zeroed at the int8 level; the converted model must verify bit for bit over a
sequence of invokes (the streaming state lives in variables), be smaller, and keep
everything but the convs."""

import numpy as np
import pytest

import tflite_models as tm
from dtmm.convert import convert_model
from dtmm.core.tflite import Model
from dtmm.inspect_model import inspect_model
from dtmm.verify import verify_models

load_model = Model.read

MODELS = tm.wakeword_models()


def test_all_four_models_are_there():
    assert sorted(MODELS) == ["alexa", "hey_jarvis", "hey_mycroft", "okay_nabu"]


@pytest.fixture(scope="module", params=sorted(MODELS))
def converted(request):
    name = request.param
    pruned = tm.zero_filterlets(MODELS[name], 0.5, seed=len(name))
    # the rewrite mechanics of every conv, whatever the speed rule decides
    out, report = convert_model(pruned, prefer="size")
    return name, pruned, out, report


def _signatures(model):
    return [(sd.key, model.subgraphs.index(sd.subgraph),
             [(tm.name, t.name) for tm, t in sd.inputs],
             [(tm.name, t.name) for tm, t in sd.outputs])
            for sd in model.signature_defs]


def test_every_conv_is_rewritten_and_the_file_shrinks(converted):
    name, pruned, out, report = converted
    n_conv = len(tm.conv_ops(load_model(pruned)))
    assert n_conv >= 5
    assert report.num_rewritten == n_conv, report.table()
    for r in report.layers:
        assert 0.45 <= r.sparsity <= 0.55
        assert r.bytes_after < r.bytes_before
    assert len(out) == report.file_bytes_after < len(pruned) == report.file_bytes_before
    # the dense filters really left the file: at least 40 % of their bytes saved
    dense = sum(r.shape[0] * r.shape[1] * r.shape[2] * r.shape[3] for r in report.layers)
    assert len(pruned) - len(out) > 0.4 * dense


def test_verifies_bit_exact_over_a_stream(converted):
    name, pruned, out, _ = converted
    result = verify_models(pruned, out, random=6, seed=3, check=False)
    assert result.ok, result.summary()
    assert result.invokes == 6
    assert len(result.dtmm_ops) == len(tm.conv_ops(load_model(pruned)))


def test_everything_but_the_convs_is_kept(converted):
    name, pruned, out, _ = converted
    a, b = load_model(pruned), load_model(out)
    assert len(a.subgraphs) == len(b.subgraphs) == 2
    ops_a = [[op.name for op in sg.operators] for sg in a.subgraphs]
    ops_b = [[op.name for op in sg.operators] for sg in b.subgraphs]
    assert [["DTMM_CONV_2D" if n == "CONV_2D" else n for n in sg] for sg in ops_a] == ops_b
    for names in ("CALL_ONCE", "VAR_HANDLE", "READ_VARIABLE", "ASSIGN_VARIABLE"):
        assert sum(sg.count(names) for sg in ops_b) == sum(sg.count(names) for sg in ops_a) > 0
    # the initialisation subgraph is untouched, tensor for tensor
    assert tm.op_summary(pruned)[1] == tm.op_summary(out)[1]
    assert a.subgraphs[1].name == b.subgraphs[1].name
    assert _signatures(a) == _signatures(b) and len(a.signature_defs) == 1
    meta = lambda m: [(x.name, x.buffer.data.tobytes()) for x in m.metadata]
    assert meta(a) == meta(b) and len(meta(a)) == 2
    # tensors: the dense filters/biases went, DTMM constants came, others stayed
    names_a = {n for n, _ in tm.op_summary(pruned)[0][1]}
    names_b = {n for n, _ in tm.op_summary(out)[0][1]}
    assert all("/dtmm_" in n for n in names_b - names_a)
    # one constant per DTMM_CONV_2D (format version 2: "<op>/dtmm_w")
    assert len(names_b - names_a) == len(tm.conv_ops(a))
    assert b.buffers[0].data is None
    assert len(b.buffers) < len(a.buffers)


def test_inspect_decodes_the_converted_model(converted):
    name, pruned, out, report = converted
    layers = [r for r in inspect_model(out) if r.op == "DTMM_CONV_2D"]
    assert [r.name for r in layers] == [r.name for r in report.layers]
    assert [r.sparsity for r in layers] == pytest.approx([r.sparsity for r in report.layers])


def test_unpruned_models_still_verify():
    # density 100 %: every conv rewritten with --always, still bit-exact
    buf = MODELS["hey_jarvis"]
    out, report = convert_model(buf, always=True)
    assert report.num_rewritten == len(report.layers) > 0
    result = verify_models(buf, out, random=3, seed=1, check=False)
    assert result.ok, result.summary()
    assert np.all([r.sparsity == 0 for r in report.layers])
