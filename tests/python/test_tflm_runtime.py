"""dtmm.tflm: DTMM models in TFLite Micro's Python interpreter.

The runtime tests need a build from `dtmm_ops/python/build.sh TFLM_ROOT DIR` named
by DTMM_TFLM_LIB; without it they skip with a message naming the variable. The
error-path tests run everywhere.
"""

import os
import re

import numpy as np
import pytest

from dtmm import tflm
from dtmm.errors import DtmmError

# realpath: under Bazel this file is a runfiles symlink into the source tree.
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.realpath(__file__))))
MODELS = os.path.join(REPO, "dtmm_ops", "tests", "tflm", "models")

needs_lib = pytest.mark.skipif(
    not os.environ.get(tflm.ENV_VAR),
    reason=f"set {tflm.ENV_VAR} to a dtmm_ops/python/build.sh output dir to run "
           "DTMM models in the TFLM Python interpreter")


def _model(name: str) -> bytes:
    """The committed C array (gen_models.py) back as .tflite bytes."""
    with open(os.path.join(MODELS, name + ".cc")) as f:
        text = f.read()
    body = text[text.index("{") + 1:text.rindex("}")]
    data = bytes(int(v) for v in re.findall(r"\d+", body))
    length = int(re.search(r"_len = (\d+);", text).group(1))
    assert len(data) == length
    return data


def test_no_env_var_is_a_clear_error(monkeypatch):
    monkeypatch.delenv(tflm.ENV_VAR, raising=False)
    with pytest.raises(tflm.TflmUnavailableError, match=tflm.ENV_VAR):
        tflm.load_runtime()
    assert issubclass(tflm.TflmUnavailableError, DtmmError)


def test_dir_without_build_is_a_clear_error(tmp_path):
    with pytest.raises(tflm.TflmUnavailableError, match="_runtime"):
        tflm.load_runtime(tmp_path)
    with pytest.raises(tflm.TflmUnavailableError, match="not a directory"):
        tflm.load_runtime(tmp_path / "missing")


@needs_lib
@pytest.mark.parametrize("name", ["cnn", "kws"])
def test_converted_model_matches_pruned_original(name):
    original = _model(f"{name}_original_model")
    converted = _model(f"{name}_dtmm_model")
    a = tflm.Interpreter(original)
    b = tflm.Interpreter(converted)
    details = a.get_input_details(0)
    shape, dtype = tuple(details["shape"]), details["dtype"]
    assert dtype == np.int8
    rng = np.random.default_rng(0)
    outputs = []
    for _ in range(4):
        x = rng.integers(-128, 128, size=shape, dtype=np.int8)
        a.set_input(x, 0)
        b.set_input(x, 0)
        a.invoke()
        b.invoke()
        ya, yb = a.get_output(0), b.get_output(0)
        np.testing.assert_array_equal(ya, yb)
        outputs.append(ya)
    assert any(not np.array_equal(outputs[0], y) for y in outputs[1:])


@needs_lib
def test_run_helper_matches_interpreter():
    converted = _model("kws_dtmm_model")
    x = np.full((1, 49, 1, 20), 3, np.int8)
    (y,) = tflm.run(converted, [x])
    interp = tflm.Interpreter(converted)
    interp.set_input(x, 0)
    interp.invoke()
    np.testing.assert_array_equal(y, interp.get_output(0))


@needs_lib
def test_bad_version_fails_in_prepare():
    from dtmm.core.contract import decode_map, encode_map
    from dtmm.core.ops import is_dtmm
    from dtmm.core.tflite import Model

    model = Model.read(_model("cnn_dtmm_model"))
    op = next(op for op in model.subgraphs[0].operators if is_dtmm(op))
    opts = decode_map(op.custom_options, "test")
    opts["version"] = 2
    op._t.customOptions = encode_map(opts)
    with pytest.raises(DtmmError, match="TFLM"):
        tflm.Interpreter(model.save())


@needs_lib
def test_streaming_model_runs_with_its_resource_variables():
    """microWakeWord's streaming models keep state in resource variables (VAR_HANDLE,
    READ/ASSIGN_VARIABLE, CALL_ONCE): the interpreter gets room for them, and the
    model converted with every conv rewritten gives the original's outputs step for
    step, the state carried across invokes."""
    import pymicro_wakeword

    from dtmm.convert import convert_model

    # hey_mycroft: its output moves within a few steps of a constant input (the
    # other three stay at 0 on synthetic input, which would prove nothing).
    path = os.path.join(os.path.dirname(pymicro_wakeword.__file__), "models",
                        "hey_mycroft.tflite")
    original = open(path, "rb").read()
    assert tflm.resource_variable_count(original) > 0
    converted, report = convert_model(original, always=True)
    assert report.num_rewritten > 0
    a, b = tflm.Interpreter(original), tflm.Interpreter(converted)
    details = a.get_input_details(0)
    rng = np.random.default_rng(1)
    shape, dtype = tuple(details["shape"]), details["dtype"]
    steady = []
    for step in range(30):
        x = (rng.integers(-128, 128, size=shape, dtype=dtype) if step < 15
             else np.full(shape, 100, dtype))
        a.set_input(x, 0)
        b.set_input(x, 0)
        a.invoke()
        b.invoke()
        np.testing.assert_array_equal(a.get_output(0), b.get_output(0))
        if step >= 15:
            steady.append(a.get_output(0).copy())
    # the same input gives different outputs: the state is carried across invokes
    assert any(not np.array_equal(steady[0], y) for y in steady[1:])
