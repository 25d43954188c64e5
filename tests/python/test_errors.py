"""Bad input gets one clear error and changes nothing (issue 11): the flatbuffer
verifier before any parse on held-out byte-level mutants, TOCO-era bias
quantization in verify, paddings TFLite narrows to int16, and `dtmm prune`'s checks
before any work (a layer it cannot convert, a file that is not a Keras model)."""

import random
import sys
import warnings

import pytest

import tflite_models as tm
from dtmm import cli
from dtmm.convert import convert_model
from dtmm.core import tflite as core_tflite
from dtmm.core.errors import ModelError
from dtmm.core.tflite import Model
from dtmm.verify import verify_models


@pytest.fixture(scope="module")
def cnn():
    return tm.cnn_model()


def _tflite_says_invalid(buf: bytes) -> bool:
    """TensorFlow Lite's own loader (tf.lite.Interpreter verifies before it builds)."""
    import tensorflow as tf

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tf.lite.Interpreter(model_content=buf)
    except ValueError as e:
        return "not a valid Flatbuffer" in str(e)
    return False


def _byte_mutants(buf: bytes, n: int, seed: int):
    """Bit flips, 32-bit words set to edge values, truncations: not the model
    fuzzer's mutator, so its bugs are not this test's."""
    rng = random.Random(seed)
    for _ in range(n):
        b = bytearray(buf)
        kind = rng.randrange(3)
        if kind == 0:
            for _ in range(rng.randrange(1, 6)):
                i = rng.randrange(8, len(b))
                b[i] ^= 1 << rng.randrange(8)
        elif kind == 1:
            i = rng.randrange(8, len(b) - 4) & ~3
            b[i:i + 4] = rng.choice([0xFFFFFFFF, 0x7FFFFFFF, len(b), 0x10000]).to_bytes(4, "little")
        else:
            b = b[:rng.randrange(8, len(b))]
        yield bytes(b)


def test_held_out_byte_mutants_are_rejected_where_tflite_rejects_them(cnn, tmp_path, capsys):
    rejected = 0
    for k, mutant in enumerate(_byte_mutants(cnn, 80, seed=7)):
        if not _tflite_says_invalid(mutant):
            continue
        rejected += 1
        with pytest.raises(ModelError, match="not a valid TFLite flatbuffer"):
            Model.read(mutant)
        src, dst = tmp_path / f"m{k}.tflite", tmp_path / f"out{k}.tflite"
        src.write_bytes(mutant)
        for argv in (["inspect", src], ["convert", src, "-o", dst]):
            rc = cli.main([str(a) for a in argv])
            out, err = capsys.readouterr()
            assert rc == 2 and len(err.splitlines()) == 1, (argv, err)
            assert err.startswith("dtmm: error: ") and "flatbuffer" in err
        assert not dst.exists() and src.read_bytes() == mutant
    assert rejected >= 10  # the mutants really exercise the verifier


def test_verifier_without_tensorflow_in_the_process(cnn, monkeypatch):
    """The child-process path (no `import tensorflow` here) gives the same verdicts."""
    monkeypatch.delitem(sys.modules, core_tflite._WRAPPER_IN_TF, raising=False)
    monkeypatch.setattr(core_tflite, "_verified", {})
    core_tflite.verify_flatbuffer(cnn)
    bad = bytearray(cnn)
    bad[len(bad) // 2:len(bad) // 2 + 4] = b"\xff\xff\xff\x7f"
    bad = bytes(bad)
    if _tflite_says_invalid(bad):
        with pytest.raises(ModelError, match="verifier rejects it"):
            core_tflite.verify_flatbuffer(bytes(bad))
    with pytest.raises(ModelError, match="verifier rejects it"):
        core_tflite.verify_flatbuffer(cnn[:len(cnn) // 2])


def test_toco_bias_quantized_dimension_verifies():
    buf = tm.conv_branches_model([tm.ConvConfig(3, 4, 3, 3, seed=2, sparsity=0.4)])
    model = Model.read(buf)
    (_, op), = tm.conv_ops(model)
    op.inputs[2].quantization.quantizedDimension = 3  # what TOCO wrote for 1-D biases
    toco = model.save()
    out, report = convert_model(toco, always=True)
    assert report.num_rewritten == 1
    result = verify_models(toco, out, random=2)
    assert result.ok and result.invokes == 2


def test_padding_beyond_int16_stays_dense():
    buf = tm.conv_branches_model([tm.ConvConfig(2, 3, 4, 4, seed=1)])
    model = Model.read(buf)
    (_, op), = tm.conv_ops(model)
    op.builtin_options.dilationHFactor = 32767  # SAME padding (3 * 32767) // 2 > 32767
    out, report = convert_model(model.save(), always=True)
    (layer,) = report.layers
    assert not layer.rewritten and "32767" in layer.reason


def test_grouped_conv_tflite_cannot_run_is_bad_input(capsys, tmp_path):
    buf = tm.conv_branches_model([tm.ConvConfig(2, 3, 3, 3, seed=3)])
    model = Model.read(buf)
    (_, op), = tm.conv_ops(model)
    x = op.inputs[0]
    x.shape = x.shape[:3] + (8,)  # 4 groups, C_out 3: TFLite's conv divides by 0
    path = tmp_path / "grouped.tflite"
    path.write_bytes(model.save())
    rc = cli.main(["verify", str(path), str(path)])
    err = capsys.readouterr().err
    assert rc == 2 and "needs C_out a multiple of 4" in err and len(err.splitlines()) == 1


# -- dtmm prune ------------------------------------------------------------------------
def _prune(capsys, tmp_path, model_path):
    out = tmp_path / "out"
    rc = cli.main(["prune", str(model_path), "--data", "digits", "--flash", "1MiB",
                   "--sram", "1MiB", "--out", str(out), "--no-progress"])
    captured = capsys.readouterr()
    assert not out.exists()
    return rc, captured.out, captured.err


def test_prune_rejects_separable_conv_before_any_work(capsys, tmp_path):
    import keras

    x = keras.Input((8, 8, 1))
    y = keras.layers.Conv2D(4, 3, padding="same")(x)
    y = keras.layers.SeparableConv2D(4, 3, padding="same", name="sep")(y)
    y = keras.layers.GlobalAveragePooling2D()(y)
    path = tmp_path / "sep.keras"
    keras.Model(x, keras.layers.Dense(10)(y)).save(path)
    rc, out, err = _prune(capsys, tmp_path, path)
    assert rc == 2 and out == ""  # nothing converted or trained first
    assert err.startswith("dtmm: error: layer 'sep' is a SeparableConv2D") and \
        "DepthwiseConv2D followed by a 1x1 Conv2D" in err and len(err.splitlines()) == 1


def test_prune_rejects_a_shared_weighted_layer_before_any_work(capsys, tmp_path):
    import keras

    x = keras.Input((8, 8, 1))
    y = keras.layers.Conv2D(4, 3, padding="same")(x)
    twice = keras.layers.Conv2D(4, 3, padding="same", name="twice")
    y = keras.layers.GlobalAveragePooling2D()(twice(twice(y)))
    path = tmp_path / "shared.keras"
    keras.Model(x, keras.layers.Dense(10)(y)).save(path)
    rc, out, err = _prune(capsys, tmp_path, path)
    assert rc == 2 and out == ""
    assert "'twice' with weights is called more than once" in err and \
        len(err.splitlines()) == 1


@pytest.mark.parametrize("content", [b"hello, not a model", b""])
def test_prune_names_a_file_that_is_not_a_keras_model(capsys, tmp_path, content):
    path = tmp_path / "model.keras"
    path.write_bytes(content)
    rc, _, err = _prune(capsys, tmp_path, path)
    assert rc == 2 and err.strip() == (f"dtmm: error: {path} is not a Keras model file "
                                       "(a .keras zip archive or a legacy .h5 file)")


def test_prune_names_a_directory(capsys, tmp_path):
    rc, _, err = _prune(capsys, tmp_path, tmp_path)
    assert rc == 2 and "Is a directory" in err


# -- dtmm.tflm ---------------------------------------------------------------------------
def test_resource_variable_count_of_streaming_models_matches_the_wheel():
    import glob
    import os

    import pymicro_wakeword
    from tflite_micro.python.tflite_micro.runtime import count_resource_variables

    from dtmm.tflm import resource_variable_count

    models = sorted(glob.glob(os.path.join(os.path.dirname(pymicro_wakeword.__file__),
                                           "models", "*.tflite")))
    assert models
    for path in models[:3]:
        data = open(path, "rb").read()
        assert resource_variable_count(data) == count_resource_variables(data) > 0
    assert resource_variable_count(tm.cnn_model()) == 0
