"""The fuzzers' oracles catch what they claim to catch (a fuzzer whose oracle cannot
fail finds nothing): the device-check replica rejects each corrupted DTMM op and
accepts the converter's output, the C library reached through ctypes validates and
computes, the CLI oracle flags a traceback, a second error line, a partial file
and a modified input, the numeric oracle finds no difference on a good model and
one on a wrong op, the mutator is deterministic and its mutants are real edits."""

from __future__ import annotations

import dataclasses
import os
import random

import numpy as np
import pytest
from flatbuffers import flexbuffers

import device_checks as dc
import dtmm_clib
import fuzz_cli
import fuzz_models
import mutate


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return fuzz_models.build_corpus(str(tmp_path_factory.mktemp("corpus")),
                                    names=["tiny", "small_input_big_kernel"])


def _load(path):
    with open(path, "rb") as f:
        return mutate.load(f.read())


def _dtmm_op(model):
    sg = model.subgraphs[0]
    for op in sg.operators:
        if dc.is_dtmm(model, op):
            return sg, op
    raise AssertionError("no DTMM op")


def _set_options(op, **changes):
    opts = flexbuffers.Loads(bytes(np.asarray(op.customOptions, np.uint8).tobytes()))
    for k, v in changes.items():
        if v is None:
            opts.pop(k)
        else:
            opts[k] = v
    op.customOptions = np.frombuffer(bytes(flexbuffers.Dumps(opts)), np.uint8).copy()


def _const(model, sg, op, i, dtype):
    t = sg.tensors[int(op.inputs[i])]
    return t, np.frombuffer(np.asarray(model.buffers[t.buffer].data, np.uint8).tobytes(),
                            dtype).copy()


def _store(model, t, arr):
    model.buffers[t.buffer].data = np.frombuffer(arr.tobytes(), np.uint8).copy()


# -- the C library through ctypes --------------------------------------------------------
def test_clib_validates_and_matches_a_naive_conv():
    rng = np.random.default_rng(0)
    c_in, c_out, k = 3, 2, 3
    w = rng.integers(-128, 128, (c_out, k, k, c_in), dtype=np.int8)
    w[0, 1, 1] = 0  # one pruned filterlet
    kept = w.reshape(-1, c_in).any(axis=1)
    layer = dtmm_clib.Layer(
        dims=dict(batches=1, input_h=4, input_w=4, input_c=c_in, output_h=4, output_w=4,
                  output_c=c_out, kernel_h=k, kernel_w=k),
        params=dict(version=1, stride_h=1, stride_w=1, dilation_h=1, dilation_w=1,
                    pad_top=1, pad_left=1, input_zero_point=-5, output_offset=3,
                    activation_min=-128, activation_max=127),
        bitmap=np.packbits(kept, bitorder="little"), values=w.reshape(-1, c_in)[kept],
        bias=np.array([100, -7], np.int32), multiplier=np.array([1 << 30, 1 << 30], np.int32),
        shift=np.array([-8, -9], np.int32))
    lib = dtmm_clib.load()
    assert lib.validate(layer) == 0
    x = rng.integers(-128, 128, (1, 4, 4, c_in), dtype=np.int8)
    xp = np.full((1, 6, 6, c_in), -5, np.int64)
    xp[:, 1:5, 1:5] = x
    acc = np.zeros((1, 4, 4, c_out), np.int64) + layer.bias
    for i in range(k):
        for j in range(k):
            acc += xp[:, i:i + 4, j:j + 4] @ w[:, i, j].astype(np.int64).T
    # multiplier 2^30 (0.5 in Q31): SaturatingRoundingDoublingHighMul halves with
    # rounding half away from zero, RoundingDivideByPOT(-shift) likewise
    def round_div(v, d):
        return np.sign(v) * ((np.abs(v) + d // 2) // d)

    want = np.clip(round_div(round_div(acc, 2), 2 ** -layer.shift) + 3, -128, 127)
    want = want.astype(np.int8)
    assert np.array_equal(lib.conv(x, layer), want)
    bad = dataclasses.replace(layer, shift=np.array([31, 0], np.int32))
    assert dtmm_clib.STATUS_NAMES[lib.validate(bad)] == "DTMM_ERR_PARAMS"
    bm = layer.bitmap.copy()
    bm[-1] |= 0x80  # padding bit (18 bits in 3 bytes)
    bad = dataclasses.replace(layer, bitmap=bm)
    assert dtmm_clib.STATUS_NAMES[lib.validate(bad)] == "DTMM_ERR_BITMAP"


# -- device checks -----------------------------------------------------------------------
def test_device_checks_accept_the_converters_output(corpus):
    for name in ("tiny_dtmm", "small_input_big_kernel_dtmm", "tiny_dtmm_v1",
                 "small_input_big_kernel_dtmm_v1"):
        model = _load(corpus[name])
        assert sum(dc.is_dtmm(model, op) for op in model.subgraphs[0].operators) >= 1
        assert dc.contract_errors(model) == []


CORRUPTIONS = {
    "version 3": (lambda m, sg, op: _set_options(op, version=3), "format version 3"),
    "version 2 keys missing": (lambda m, sg, op: _set_options(op, version=2),
                               "option 'b' is missing"),
    "missing key": (lambda m, sg, op: _set_options(op, dh=None), "option 'dh' is missing"),
    "float option": (lambda m, sg, op: _set_options(op, kw=3.0), "not an integer"),
    "stride 65536": (lambda m, sg, op: _set_options(op, sh=65536), "outside [1, 32767]"),
    "padding 2": (lambda m, sg, op: _set_options(op, padding=2), "outside [0, 1]"),
    "act range": (lambda m, sg, op: _set_options(op, act_min=10, act_max=-10),
                  "DTMM_ERR_PARAMS"),
    "in_zp mismatch": (lambda m, sg, op: _set_options(op, in_zp=77), "!= options in_zp"),
    "kernel size": (lambda m, sg, op: _set_options(op, kh=2), "DTMM_ERR_BITMAP"),
    "dilation vs output": (lambda m, sg, op: _set_options(op, padding=1), "output is"),
    "no options": (lambda m, sg, op: setattr(op, "customOptions", None), "missing"),
    "garbage options": (lambda m, sg, op: setattr(op, "customOptions", np.frombuffer(
        b"\x01\x02\x03", np.uint8).copy()), "flexbuffer"),
    "5 inputs": (lambda m, sg, op: setattr(op, "inputs", list(op.inputs)[:5]),
                 "expects 6 inputs"),
    "float input": (lambda m, sg, op: setattr(sg.tensors[int(op.inputs[0])], "type", 0),
                    "input must be INT8"),
    "output zero point": (lambda m, sg, op: setattr(
        sg.tensors[int(op.outputs[0])].quantization, "zeroPoint", [200]), "not int8"),
    "per-channel input": (lambda m, sg, op: setattr(
        sg.tensors[int(op.inputs[0])].quantization, "scale", [0.1, 0.2]), "per-tensor"),
    "padding bit": (lambda m, sg, op: _corrupt_bitmap(m, sg, op), "DTMM_ERR_BITMAP"),
    "values row missing": (lambda m, sg, op: _drop_row(m, sg, op), "DTMM_ERR_VALUES"),
    "shift 31": (lambda m, sg, op: _set_shift(m, sg, op, 31), "DTMM_ERR_PARAMS"),
    "short buffer": (lambda m, sg, op: _short_bias(m, sg, op), "out-of-bounds read"),
}


def _corrupt_bitmap(m, sg, op):
    t, bm = _const(m, sg, op, 2, np.uint8)
    bm[-1] |= 0x80
    _store(m, t, bm)


def _drop_row(m, sg, op):
    t = sg.tensors[int(op.inputs[1])]
    t.shape = [int(t.shape[0]) - 1, int(t.shape[1])]
    _, v = _const(m, sg, op, 1, np.int8)
    _store(m, t, v[: -int(t.shape[1])])


def _set_shift(m, sg, op, v):
    t, s = _const(m, sg, op, 5, np.int32)
    s[0] = v
    _store(m, t, s)


def _short_bias(m, sg, op):
    t, b = _const(m, sg, op, 3, np.int32)
    _store(m, t, b[:-1])


@pytest.mark.parametrize("what", sorted(CORRUPTIONS))
def test_device_checks_reject_each_corruption(corpus, what):
    model = _load(corpus["tiny_dtmm_v1"])
    sg, op = _dtmm_op(model)
    edit, expect = CORRUPTIONS[what]
    edit(model, sg, op)
    model = mutate.load(mutate.pack(model))  # what a file would hold
    errs = dc.device_errors(model)
    assert len(errs) == 1, errs
    assert expect in errs[0][2], errs


def _w(m, sg, op):
    """(w tensor, its bytes, C_out, bitmap offset, unpadded and padded bitmap bytes)."""
    t, w = _const(m, sg, op, 1, np.uint8)
    c_out = int(sg.tensors[int(op.outputs[0])].shape[3])
    c_in = int(sg.tensors[int(op.inputs[0])].shape[3])
    o = flexbuffers.Loads(bytes(np.asarray(op.customOptions, np.uint8).tobytes()))
    bits = c_out * o["kh"] * o["kw"] * (c_in // o["b"])
    return t, w, c_out, 12 * c_out, (bits + 7) // 8, 4 * ((bits + 31) // 32), bits


def _w_edit(fn):
    def edit(m, sg, op):
        t, w, c_out, head, unpadded, padded, bits = _w(m, sg, op)
        w, shape = fn(w, c_out, head, unpadded, padded, bits)
        if shape:
            t.shape = [w.size]
        _store(m, t, w)
    return edit


def _w_bits(w, c_out, head, unpadded, padded, bits):
    w = w.copy()
    w[head + unpadded - 1] |= 0x80 if bits % 8 else 0
    return w, False


def _w_pad(w, c_out, head, unpadded, padded, bits):
    w = w.copy()
    w[head + padded - 1] |= 0x01
    return w, False


def _w_shift(w, c_out, head, *_):
    w = w.copy()
    w[8 * c_out:8 * c_out + 4] = np.frombuffer((31).to_bytes(4, "little"), np.uint8)
    return w, False


CORRUPTIONS_V2 = {
    "version 3": (lambda m, sg, op: _set_options(op, version=3), "format version 3"),
    "version 1 keys missing": (lambda m, sg, op: _set_options(op, version=1),
                               "option 'padding' is missing"),
    "missing b": (lambda m, sg, op: _set_options(op, b=None), "option 'b' is missing"),
    "b does not divide": (lambda m, sg, op: _set_options(op, b=3), "does not divide"),
    "b < C_in on 3x3": (lambda m, sg, op: _set_options(op, b=1), "needs a 1x1 kernel"),
    "z mismatch": (lambda m, sg, op: _set_options(op, z=77), "!= options z"),
    "lo > hi": (lambda m, sg, op: _set_options(op, lo=10, hi=-10), "DTMM_ERR_PARAMS"),
    "p 2": (lambda m, sg, op: _set_options(op, p=2), "outside [0, 1]"),
    "6 inputs": (lambda m, sg, op: setattr(op, "inputs", list(op.inputs) * 3),
                 "expects 2 inputs"),
    "w one byte long": (_w_edit(lambda w, *a: (np.concatenate([w, [0]]).astype(np.uint8),
                                                True)), "expected"),
    "w one byte short": (_w_edit(lambda w, *a: (w[:-1], True)), "expected"),
    "w table only": (_w_edit(lambda w, c, head, *a: (w[:head], True)), "table and bitmap"),
    "w shape beyond buffer": (_w_edit(lambda w, *a: (w[:-1], False)), "out-of-bounds read"),
    "bitmap padding bit": (_w_edit(_w_bits), "DTMM_ERR_BITMAP"),
    "shift 31": (_w_edit(_w_shift), "DTMM_ERR_PARAMS"),
    "w not constant": (lambda m, sg, op: setattr(
        m.buffers[sg.tensors[int(op.inputs[1])].buffer], "data", None), "constant"),
    "w uint8": (lambda m, sg, op: setattr(sg.tensors[int(op.inputs[1])], "type", 3),
                "w must be INT8"),
}


@pytest.mark.parametrize("what", sorted(CORRUPTIONS_V2))
def test_device_checks_reject_each_v2_corruption(corpus, what):
    model = _load(corpus["tiny_dtmm"])
    sg, op = _dtmm_op(model)
    assert len(op.inputs) == 2  # the converter writes version 2
    edit, expect = CORRUPTIONS_V2[what]
    edit(model, sg, op)
    model = mutate.load(mutate.pack(model))
    errs = dc.device_errors(model)
    assert len(errs) == 1, errs
    assert expect in errs[0][2], errs


def test_device_checks_reject_a_v2_bitmap_padding_byte(corpus):
    # 4 x 5x5 filterlets: 100 bits in 13 bytes, padded to 16
    model = _load(corpus["small_input_big_kernel_dtmm"])
    sg, op = _dtmm_op(model)
    _w_edit(_w_pad)(model, sg, op)
    errs = dc.device_errors(mutate.load(mutate.pack(model)))
    assert len(errs) == 1 and "padding bytes are not zero" in errs[0][2], errs


def test_contract_checks_add_the_options_format(corpus):
    model = _load(corpus["tiny_dtmm"])
    _, op = _dtmm_op(model)
    op.customOptionsFormat = 1
    assert dc.device_errors(model) == []  # TFLM does not look at it
    assert "FLEXBUFFERS" in dc.contract_errors(model)[0][2]


def test_padding_replica_matches_tflite_formula():
    assert dc.compute_padding_checked(1, 1, 5, 3, 0) == (5, 1)
    assert dc.compute_padding_checked(2, 1, 9, 3, 1) == (4, 0)
    assert dc.compute_padding_checked(3, 2, 2, 5, 0) == (1, 3)  # input smaller than kernel
    assert dc.compute_padding_checked(2, 1, 4, 5, 1) == (0, 0)  # VALID: (4+2-5)/2 truncates to 0
    for bad in ((1, 1, 2, 5, 1), (0, 1, 5, 3, 0), (1, 0, 5, 3, 0), (1, 1, 5, 3, 2)):
        with pytest.raises(dc.Reject):
            dc.compute_padding_checked(*bad)


# -- CLI oracle ------------------------------------------------------------------------------
def _result(rc, err="", tb=None):
    return fuzz_cli.CliResult(["convert"], rc, "", err, tb, 0.0)


def test_cli_oracle_flags_each_violation(tmp_path):
    f = fuzz_cli.Findings()
    fuzz_cli.check_common(_result(2, "dtmm: error: bad model\n"), {0, 2}, f)
    assert f.items == []
    fuzz_cli.check_common(_result(1, tb='Traceback\n  File "/x/dtmm/convert.py", line 3, '
                                        'in parse\nTypeError: bad\n'), {0, 2}, f)
    assert f.items[-1]["class"] == "traceback"
    assert f.items[-1]["signature"] == "convert: TypeError in convert.py:parse"
    fuzz_cli.check_common(_result(2, "dtmm: error: a\ndtmm: error: b\n"), {0, 2}, f)
    assert f.items[-1]["class"] == "error-line"
    fuzz_cli.check_common(_result(2, "dtmm: error: name (x\ny)\n"), {0, 2}, f)
    assert f.items[-1]["signature"] == "convert: error message spans 2 lines"
    fuzz_cli.check_common(_result(3, "dtmm: error: x\n"), {0, 2}, f)
    assert f.items[-1]["class"] == "exit-code"
    out = tmp_path / "out.tflite"
    out.write_bytes(b"partial")
    (tmp_path / ".dtmm-abc.tmp").write_bytes(b"")
    inp = tmp_path / "in.tflite"
    inp.write_bytes(b"before")
    digest = fuzz_cli._sha(str(inp))
    inp.write_bytes(b"after")
    n = len(f.items)
    fuzz_cli.check_common(_result(2, "dtmm: error: x\n"), {0, 2}, f,
                          outputs=[(str(out), False)], inputs=[(str(inp), digest)])
    assert [i["class"] for i in f.items[n:]] == ["partial-output", "partial-output",
                                                "input-modified"]


def test_cli_oracle_runs_the_real_cli(corpus, tmp_path):
    r = fuzz_cli.run_cli(["inspect", corpus["tiny_dtmm"]])
    assert r.rc == 0 and r.tb is None and "DTMM_CONV_2D" in r.out
    r = fuzz_cli.run_cli(["inspect", str(tmp_path / "missing.tflite")])
    assert r.rc == 2 and r.err.startswith("dtmm: error:")


def test_numeric_oracle(corpus, tmp_path):
    assert fuzz_cli.kernel_vs_tflite(corpus["small_input_big_kernel"],
                                     corpus["small_input_big_kernel_dtmm"]) == []
    assert fuzz_cli.kernel_vs_tflite(corpus["small_input_big_kernel"],
                                     corpus["small_input_big_kernel_dtmm_v1"]) == []
    model = _load(corpus["tiny_dtmm_v1"])
    sg, op = _dtmm_op(model)
    t, b = _const(model, sg, op, 3, np.int32)
    _store(model, t, b + 1000)  # a wrong folded bias
    bad = tmp_path / "bad_bias.tflite"
    bad.write_bytes(mutate.pack(model))
    diffs = fuzz_cli.kernel_vs_tflite(corpus["tiny"], str(bad))
    assert diffs and "differ from TFLite" in diffs[0][1]
    model = _load(corpus["tiny_dtmm"])  # version 2: the bias is w's first C_out int32
    sg, op = _dtmm_op(model)
    t, w = _const(model, sg, op, 1, np.uint8)
    c_out = int(sg.tensors[int(op.outputs[0])].shape[3])
    w[:4 * c_out] = (w[:4 * c_out].view("<i4") + 1000).view(np.uint8)
    _store(model, t, w)
    bad.write_bytes(mutate.pack(model))
    diffs = fuzz_cli.kernel_vs_tflite(corpus["tiny"], str(bad))
    assert diffs and "differ from TFLite" in diffs[0][1]


def test_mutator_is_deterministic_and_edits(corpus):
    with open(corpus["tiny_dtmm"], "rb") as f:
        buf = f.read()
    a = [mutate.mutate(buf, random.Random(7))[0] for _ in range(2)]
    assert a[0] == a[1]
    rng = random.Random(1)
    kinds = set()
    for _ in range(200):
        try:
            data, desc = mutate.mutate(buf, rng)
        except mutate.Skip:
            continue
        assert data != buf or "-> " in desc
        kinds.add(desc.split(" ")[0])
    assert len(kinds) > 10, kinds


def test_worker_reports_crashes_and_harness_errors(tmp_path):
    w = fuzz_cli.Worker(str(tmp_path / "status"))
    try:
        kind, detail = w.call({"type": "no-such-job"}, 60, 0)
        assert kind == "harness-error" and "KeyError" in detail
        kind, detail = w.call({"type": "selftest-abort"}, 60, 0)
        assert kind == "crash" and "SIGABRT" in detail
    finally:
        w.close()


def test_kernel_lib_cache_is_per_source_hash():
    lib = dtmm_clib.load("im2col")
    assert os.path.exists(lib.path) and "im2col" in os.path.basename(lib.path)
