"""The `dtmm` command: convert / inspect / verify, and one clear line for bad input
(exit 2, no output file, input untouched)."""

import hashlib
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import tflite_models as tm
from dtmm import cli
from dtmm.convert import convert_model
from dtmm.core.contract import encode_map
from dtmm.core.ops import is_dtmm
from dtmm.core.tflite import Model, TensorType


@pytest.fixture(scope="module")
def cnn():
    return tm.cnn_model()


def run(capsys, *argv):
    rc = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def _digest(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def _conv_edit(cnn, fn):
    model = Model.read(cnn)
    sg = model.subgraphs[0]
    (_, op), *_ = tm.conv_ops(model)
    fn(model, sg, op.inputs + op.outputs)
    return model.save()


def _set(attr_path, value):
    def fn(model, sg, tensors):
        obj = tensors[attr_path[0]]
        for a in attr_path[1:-1]:
            obj = getattr(obj, a)
        setattr(obj, attr_path[-1], value)
    return fn


BAD_INPUTS = {
    "empty": lambda cnn: b"",
    "not_a_flatbuffer": lambda cnn: b"this is a text file, not a model\n",
    "garbage_with_identifier": lambda cnn: b"\x10\x00\x00\x00TFL3" + bytes(
        np.random.default_rng(0).integers(0, 256, 200, dtype=np.uint8)),
    "truncated_half": lambda cnn: cnn[: len(cnn) // 2],
    "truncated_tail": lambda cnn: cnn[:-64],
    "wrong_identifier": lambda cnn: cnn[:4] + b"TFL2" + cnn[8:],
    "conv_cin": lambda cnn: _conv_edit(cnn, _set([0, "shape"], [1, 24, 24, 5])),
    "conv_scales": lambda cnn: _conv_edit(
        cnn, lambda m, sg, t: setattr(t[1].quantization, "scale",
                                      t[1].quantization.scale[:2])),
    "conv_bias_type": lambda cnn: _conv_edit(cnn, _set([2, "dtype"], TensorType.INT64)),
    "unsupported_filter_dtype": lambda cnn: _conv_edit(
        cnn, _set([1, "dtype"], TensorType.INT16)),
}
NOT_A_FLATBUFFER = ("is not a valid TFLite flatbuffer: TensorFlow Lite's flatbuffer "
                    "verifier rejects it")
MESSAGES = {
    "empty": "is not a TFLite flatbuffer (0 bytes)",
    "not_a_flatbuffer": "is not a TFLite model: file identifier is b' is ', expected b'TFL3'",
    "garbage_with_identifier": NOT_A_FLATBUFFER,
    "truncated_half": NOT_A_FLATBUFFER,
    "truncated_tail": NOT_A_FLATBUFFER,
    "wrong_identifier": "file identifier is b'TFL2', expected b'TFL3'",
    "conv_cin": "filter C_in=3 does not match input channels 5",
    "conv_scales": "filter has 2 scales for C_out=16",
    "conv_bias_type": "bias is INT64, int8 conv needs int32",
    "unsupported_filter_dtype": "int8 conv with INT16 filter is not supported",
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_one_line_exit_2_no_output(cnn, tmp_path, capsys, case):
    src = tmp_path / "in.tflite"
    src.write_bytes(BAD_INPUTS[case](cnn))
    before = _digest(src)
    dst = tmp_path / "out.tflite"
    rc, out, err = run(capsys, "convert", src, "-o", dst)
    assert rc == 2
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("dtmm: error: "), err
    assert MESSAGES[case] in lines[0]
    assert str(src) in lines[0]  # names the file
    assert sorted(os.listdir(tmp_path)) == ["in.tflite"]  # no output, no temp file
    assert _digest(src) == before


def test_failure_leaves_an_existing_output_alone(cnn, tmp_path, capsys):
    src, dst = tmp_path / "in.tflite", tmp_path / "out.tflite"
    src.write_bytes(BAD_INPUTS["conv_cin"](cnn))
    dst.write_bytes(b"previous result")
    rc, _, err = run(capsys, "convert", src, "-o", dst)
    assert rc == 2 and dst.read_bytes() == b"previous result"
    assert sorted(os.listdir(tmp_path)) == ["in.tflite", "out.tflite"]


def test_io_errors(cnn, tmp_path, capsys):
    src = tmp_path / "in.tflite"
    src.write_bytes(cnn)
    rc, _, err = run(capsys, "convert", tmp_path / "missing.tflite", "-o", tmp_path / "o")
    assert rc == 2 and err.startswith("dtmm: error: cannot read ") and err.count("\n") == 1
    rc, _, err = run(capsys, "convert", src, "-o", tmp_path / "no" / "dir" / "o.tflite")
    assert rc == 2 and err.startswith("dtmm: error: cannot write ") and err.count("\n") == 1
    rc, _, err = run(capsys, "convert", src, "-o", src)
    assert rc == 2 and "is the input file" in err
    assert src.read_bytes() == cnn
    assert sorted(os.listdir(tmp_path)) == ["in.tflite"]
    with pytest.raises(SystemExit) as e:
        cli.main(["convert", str(src), "-o", str(tmp_path / "o"), "--min-sparsity", "1.5"])
    assert e.value.code == 2
    assert "must be between 0 and 1" in capsys.readouterr().err


def test_convert_inspect_verify(cnn, tmp_path, capsys):
    src, dst = tmp_path / "cnn.tflite", tmp_path / "cnn_dtmm.tflite"
    src.write_bytes(cnn)
    rc, out, err = run(capsys, "convert", src, "-o", dst)
    assert rc == 0 and err == ""
    convert_out = out
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["op", "name", "CoutxKhxKwxCin"]
    assert sum(line.rstrip().endswith("rewritten: smaller, modeled 10%+ faster")
               for line in lines) == 5
    assert lines[-5].startswith(f"rewrote 5 of 5 CONV_2D; file bytes {len(cnn)} -> "
                                f"{dst.stat().st_size} (-")
    assert lines[-4].startswith("drivers cortex-m4: ") and "DTMM_CONV_DRIVERS=" in lines[-4]
    assert lines[-3].startswith("drivers cortex-m55: ")
    assert lines[-2].startswith(f"image: the file saves {len(cnn) - dst.stat().st_size:,} B")
    assert lines[-1] == f"wrote {dst}"
    assert src.read_bytes() == cnn
    # --smaller-image: every conv rewritten, CMSIS-NN's conv code leaves: it shrinks
    kept = tmp_path / "cnn_kept.tflite"
    rc, out, err = run(capsys, "convert", src, "-o", kept, "--smaller-image")
    assert rc == 0 and err == "" and kept.read_bytes() == dst.read_bytes()

    rc, out, _ = run(capsys, "inspect", dst)
    assert rc == 0
    assert sum("DTMM_CONV_2D v2, " in line for line in out.splitlines()) == 5
    assert "0 CONV_2D, 5 DTMM_CONV_2D" in out.splitlines()[-3]
    # the drivers to build, as convert printed them
    assert out.splitlines()[-2:] == [ln for ln in convert_out.splitlines()
                                     if ln.startswith("drivers ")]
    rc, out, _ = run(capsys, "inspect", src, "--all-ops")
    assert rc == 0 and "CONV_2D (int8, convertible)" in out and "SOFTMAX" in out

    rc, out, _ = run(capsys, "verify", src, dst, "--random", "2", "--seed", "7")
    assert rc == 0 and out.startswith("OK: 5 DTMM_CONV_2D op(s)")
    x = tmp_path / "x.npy"
    np.save(x, np.random.default_rng(0).integers(-128, 128, (2, 1, 24, 24, 3), np.int8))
    rc, out, _ = run(capsys, "verify", src, dst, "--random", "0", "--input", x)
    assert rc == 0 and "over 2 invoke(s)" in out


def test_convert_format_version_1(cnn, tmp_path, capsys):
    # for a runtime built before format version 2: every op as version 1, verified
    src, dst = tmp_path / "cnn.tflite", tmp_path / "cnn_v1.tflite"
    src.write_bytes(cnn)
    rc, out, err = run(capsys, "convert", src, "-o", dst, "--format-version", "1")
    assert rc == 0 and err == ""
    rc, out, _ = run(capsys, "inspect", dst)
    assert rc == 0 and sum("DTMM_CONV_2D v1, " in line for line in out.splitlines()) == 5
    rc, out, _ = run(capsys, "verify", src, dst, "--random", "1")
    assert rc == 0 and out.startswith("OK: 5 DTMM_CONV_2D op(s)")
    with pytest.raises(SystemExit):
        cli.main(["convert", str(src), "-o", str(dst), "--format-version", "3"])


def test_verify_names_the_differing_layer(cnn, tmp_path, capsys):
    out, _ = convert_model(cnn)
    model = Model.read(out)
    sg = model.subgraphs[0]
    oi, op = next((i, o) for i, o in enumerate(sg.operators) if is_dtmm(o))
    t = op.inputs[1]  # w: the folded bias is its first C_out int32
    c_out = op.outputs[0].shape[3]
    data = t.data.copy()
    data[:4 * c_out] = (data[:4 * c_out].view("<i4") + 1).view(np.uint8)
    t.buffer.data = data
    src, dst = tmp_path / "a.tflite", tmp_path / "b.tflite"
    src.write_bytes(cnn)
    dst.write_bytes(model.save())
    rc, stdout, err = run(capsys, "verify", src, dst, "--random", "1")
    assert rc == 1
    lines = stdout.splitlines()
    assert lines[-1] == "FAILED: 2 difference(s)"
    # the static check and the bit-exact run both catch it
    assert lines[0].startswith(f"op {oi} (") and lines[0].endswith("folded bias differs "
                                                                 "from the original CONV_2D")
    assert lines[1].startswith("layer ") and f"(op {oi}), random (seed 0) invoke 0: " \
        in lines[1] and " values differ, first at (0, " in lines[1]
    assert err.startswith(f"dtmm: verify: op {oi} (") and "folded bias differs" in err


def test_inspect_rejects_unknown_version(cnn, tmp_path, capsys):
    out, _ = convert_model(cnn)
    model = Model.read(out)
    op = next(o for o in model.subgraphs[0].operators if is_dtmm(o))
    from flatbuffers import flexbuffers

    opts = flexbuffers.Loads(op.custom_options.tobytes())
    op._t.customOptions = encode_map({**opts, "version": 3})
    path = tmp_path / "v3.tflite"
    path.write_bytes(model.save())
    rc, stdout, err = run(capsys, "inspect", path)
    assert rc == 2 and stdout == ""
    assert err.count("\n") == 1
    assert "DTMM format version 3 is not supported (this reader knows version 1, 2)" in err


def test_nothing_to_rewrite_writes_an_identical_copy(cnn, tmp_path, capsys):
    src, dst = tmp_path / "a.tflite", tmp_path / "b.tflite"
    src.write_bytes(cnn)
    rc, out, err = run(capsys, "convert", src, "-o", dst, "--min-sparsity", "0.99")
    assert rc == 0 and err == ""
    assert "nothing to rewrite (5 CONV_2D)" in out
    assert out.splitlines()[-1] == f"{dst} is a byte-identical copy of {src}"
    assert dst.read_bytes() == cnn


def test_register_adds_a_subcommand(capsys):
    seen = []
    cli.register("hello", "say hello",
                 lambda p: p.add_argument("--who", default="world"),
                 lambda args: seen.append(args.who) or 0)
    try:
        assert cli.main(["hello", "--who", "dtmm"]) == 0 and seen == ["dtmm"]
        with pytest.raises(SystemExit):
            cli.main(["--help"])
        assert "hello" in capsys.readouterr().out
    finally:
        del cli.COMMANDS["hello"]


def test_entry_points_print_no_traceback(tmp_path):
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"\x00" * 100)
    cmds = [[sys.executable, "-m", "dtmm"]]
    exe = shutil.which("dtmm", path=os.path.dirname(sys.executable))
    if exe:
        cmds.append([exe])
    for cmd in cmds:
        p = subprocess.run(cmd + ["inspect", str(bad)], capture_output=True, text=True)
        assert p.returncode == 2
        assert p.stderr == (f"dtmm: error: {bad} is not a TFLite model: file identifier "
                            "is b'\\x00\\x00\\x00\\x00', expected b'TFL3'\n")
        p = subprocess.run(cmd + ["--help"], capture_output=True, text=True)
        assert p.returncode == 0
        for sub in ("convert", "inspect", "verify"):
            assert sub in p.stdout


def test_verify_subprocess_has_a_clean_stderr(cnn, tmp_path):
    src, dst = tmp_path / "a.tflite", tmp_path / "b.tflite"
    src.write_bytes(cnn)
    dst.write_bytes(convert_model(cnn)[0])
    p = subprocess.run([sys.executable, "-m", "dtmm", "verify", str(src), str(dst),
                        "--random", "1"], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert p.stderr == ""  # TensorFlow's start-up log lines are swallowed
    assert p.stdout.startswith("OK: 5 DTMM_CONV_2D op(s) match the original CONV_2D bit "
                               "for bit over 1 invoke(s)")


def test_write_failure_removes_the_temp_file(cnn, tmp_path, capsys, monkeypatch):
    src, dst = tmp_path / "a.tflite", tmp_path / "b.tflite"
    src.write_bytes(cnn)

    def fail(a, b):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", fail)
    rc, out, err = run(capsys, "convert", src, "-o", dst)
    assert rc == 2 and out == ""
    assert err == f"dtmm: error: cannot write {dst}: No space left on device\n"
    assert sorted(os.listdir(tmp_path)) == ["a.tflite"]
