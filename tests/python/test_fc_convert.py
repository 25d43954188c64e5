"""FULLY_CONNECTED -> DTMM_FULLY_CONNECTED in dtmm.convert, inspect and verify."""

from __future__ import annotations

import numpy as np
import pytest

from dtmm import convert, inspect_model, verify
from dtmm.core import contract, fc as F
from dtmm.core.errors import FormatError
from dtmm.core.tflite import Model
from fc_models import FcConfig, fc_model, keras_dense_model, random_input, run_tflite


def prune_blocks(buf: bytes, fraction: float, block: int = 16, seed: int = 0) -> bytes:
    """Zero `fraction` of the weight blocks of every int8 FULLY_CONNECTED."""
    m = Model.read(buf)
    rng = np.random.default_rng(seed)
    for sg in m.subgraphs:
        for op in sg.operators:
            if not F.is_fc(op):
                continue
            t = op.inputs[1]
            w = t.value().copy()
            c_out, c_in = w.shape
            b = block if c_in % block == 0 else c_in
            drop = rng.random((c_out, c_in // b)) < fraction
            w.reshape(c_out, -1, b)[drop] = 0
            t.buffer.data = np.frombuffer(w.tobytes(), np.uint8).copy()
    return m.save()


def dtmm_fc_ops(buf: bytes):
    m = Model.read(buf)
    return [(oi, F.read_dtmm_fc(m, 0, oi)) for oi, op in enumerate(m.subgraphs[0].operators)
            if F.is_dtmm_fc(op)]


def test_pruned_mlp_converts_verifies_and_inspects():
    buf = prune_blocks(keras_dense_model(), 0.75)
    # The MLP's FCs are small: CMSIS-NN is as fast (the speed rule keeps them).
    _, report = convert.convert_model(buf)
    assert not any(r.rewritten for r in report.fc_layers)
    assert all("not modeled" in r.reason for r in report.fc_layers), report.table()
    out, report = convert.convert_model(buf, prefer="size")
    fcs = report.fc_layers
    assert len(fcs) == 3
    ops = dtmm_fc_ops(out)
    assert ops, report.table()
    assert len(out) < len(buf)
    for r in fcs:
        assert r.reason, r
        assert r.modeled and set(r.modeled) == {"cortex-m4", "cortex-m55"}
    rep = verify.verify_models(buf, out, random=3)
    assert rep.ok and rep.values_checked > 0
    assert len(rep.dtmm_ops) == len(ops)
    rows = inspect_model.inspect_model(out)
    assert sum(r.op == "DTMM_FULLY_CONNECTED" for r in rows) == len(ops)
    assert "DTMM_FULLY_CONNECTED" in inspect_model.inspect_table(out)


def test_speed_rule_rewrites_a_large_sparse_fc():
    buf = fc_model(FcConfig(640, 128, block=16, sparsity=0.9), seed=1)
    out, report = convert.convert_model(buf)
    r = report.fc_layers[0]
    assert r.rewritten, report.table()
    assert all(m <= 0.9 * d for d, m in r.modeled.values())
    verify.verify_models(buf, out, random=2)


def test_dense_mlp_is_left_alone():
    buf = keras_dense_model()
    for kw in ({}, {"always": True}):  # --always forces CONV_2D only
        out, report = convert.convert_model(buf, **kw)
        assert out == buf
        assert all(not r.rewritten for r in report.fc_layers)


def test_size_rule_rewrites_and_verify_catches_a_changed_table():
    buf = fc_model(FcConfig(64, 12, batches=2, block=16, sparsity=0.5), seed=3)
    out, report = convert.convert_model(buf, prefer="size")
    (oi, d), = dtmm_fc_ops(out)
    assert report.fc_layers[0].rewritten
    x = random_input(buf, 5)
    want = run_tflite(buf, x)
    np.testing.assert_array_equal(d.run(x, single_rounding=True), want.reshape(d.output.shape))
    verify.verify_models(buf, out, random=2)
    m = Model.read(out)
    w = m.subgraphs[0].operators[oi].inputs[1]
    data = w.value().copy()
    data[0] = np.int8(data[0] + 1)  # the folded bias of channel 0 (int32 little endian)
    w.buffer.data = np.frombuffer(data.tobytes(), np.uint8).copy()
    rep = verify.verify_models(buf, m.save(), random=1, check=False)
    assert any("table q" in f for f in rep.failures), rep.failures


def test_block_choice_and_bytes():
    buf = fc_model(FcConfig(256, 64, block=16, sparsity=0.75), seed=4)
    out, report = convert.convert_model(buf, prefer="size")
    (_, d), = dtmm_fc_ops(out)
    assert d.block in F.block_sizes(256)
    r = report.fc_layers[0]
    assert r.rewritten and r.bytes_after < r.bytes_before
    # The size model's saving is close to the file's.
    assert abs((r.bytes_before - r.bytes_after) - (len(buf) - len(out))) <= 64 + 0.02 * len(buf)


def _without_ops(buf: bytes) -> int:
    m = Model.read(buf)
    m.subgraphs[0].operators = []
    return len(m.save())


def test_per_op_overhead():
    """Bytes one DTMM_FULLY_CONNECTED costs in the file beyond its data (the w
    tensor's table, bitmap and kept blocks): operator, options, one tensor, one
    buffer, its operator code. Measured as the file with the op minus the file
    without it (whose unused tensors, buffers and codes saving drops)."""
    for cfg in (FcConfig(128, 16, block=16, sparsity=0.75), FcConfig(640, 128, block=16,
                                                                     sparsity=0.5)):
        buf = fc_model(cfg, seed=6)
        out, _ = convert.convert_model(buf, prefer="size")
        (_, d), = dtmm_fc_ops(out)
        data = d.w.size + 4 * d.q.size
        overhead = len(out) - _without_ops(out) - data
        f = F.read_fc(Model.read(buf), 0, 0)
        dense_overhead = len(buf) - _without_ops(buf) - (f.weights.size + 4 * f.c_out)
        assert overhead <= 200, (cfg, overhead)
        assert overhead < dense_overhead, (overhead, dense_overhead)
        estimate = F.dtmm_bytes(F.dtmm_fc_form(f, d.block),
                                len(contract.encode_map(d.options))) - data
        assert abs(estimate - overhead) <= 64, (estimate, overhead)


@pytest.mark.parametrize("edit,msg", [
    (lambda o: o.update(version=3), "version 3"),
    (lambda o: o.update(b=7), "does not divide"),
    (lambda o: o.pop("lo"), "miss lo"),
    (lambda o: o.update(z=o["z"] + 1), "differs from the input"),
])
def test_read_dtmm_fc_rejects(edit, msg):
    buf = fc_model(FcConfig(64, 8, block=16, sparsity=0.5), seed=2)
    out, _ = convert.convert_model(buf, prefer="size")
    m = Model.read(out)
    op = m.subgraphs[0].operators[0]
    opts = contract.decode_map(op.custom_options, "test")
    edit(opts)
    op._t.customOptions = contract.encode_map(opts)
    with pytest.raises(FormatError, match=msg):
        F.read_dtmm_fc(m, 0, 0)


def test_v1_conv_contract_still_reads():
    assert contract.lookup("DTMM_CONV_2D", {"version": 1}, "t") is contract.CONV_2D_V1
    assert contract.lookup("DTMM_CONV_2D", {"version": 2}, "t") is contract.CONV_2D_V2
    with pytest.raises(FormatError, match="version 3"):
        contract.lookup("DTMM_CONV_2D", {"version": 3}, "t")
    with pytest.raises(FormatError, match="version 1"):
        contract.lookup("DTMM_FULLY_CONNECTED", {"version": 1}, "t")


def test_cli_reports_a_written_file_when_only_fcs_are_rewritten(tmp_path, capsys):
    from dtmm.cli import main
    src, dst = tmp_path / "fc.tflite", tmp_path / "fc_dtmm.tflite"
    buf = fc_model(FcConfig(640, 128, block=16, sparsity=0.9), seed=1)
    src.write_bytes(buf)
    assert main(["convert", str(src), "-o", str(dst)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[-1] == f"wrote {dst}"
    assert dst.read_bytes() != buf


def test_weights_written_at_run_time_stay_dense():
    # as for CONV_2D (fuzz class M13): a weight tensor that is also a subgraph input
    # carries only an initial value, so folding it would compute something else
    m = Model.read(fc_model(FcConfig(640, 128, block=16, sparsity=0.9), seed=1))
    sg = m.subgraphs[0]
    sg.inputs.append(sg.operators[0].inputs[1])
    buf = m.save()
    out, report = convert.convert_model(buf)
    r = report.fc_layers[0]
    assert not r.rewritten and "written at run time" in r.reason, report.table()
    assert out == buf
