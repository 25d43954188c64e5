"""bench/models: its bookkeeping (always), and a CI-sized run on one tiny self-made
model on Cortex-M4 (only with TFLM_ROOT, arm-none-eabi-gcc and qemu-system-arm >= 7.2;
skipped with the reason otherwise).

The run uses TFLM's Cortex-M4 CMSIS-NN library cached in $DTMM_BENCH_BUILD_DIR (built
there on first use, 4-10 min on 2 cores), else in $TFLM_ROOT/gen/dtmm_bench_models when
an earlier bench/models run left it there and it is writable, and skips otherwise
(e.g. TFLM_ROOT inside Bazel's sandbox, or a TFLM tree CI unpacked fresh); with the
library cached the two runs take about 3 min on a busy 2-core machine.
"""

import importlib.machinery
import importlib.util
import os
import pathlib
import re
import shutil
import subprocess
import sys
import warnings

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench" / "models"


@pytest.fixture(scope="module")
def bm():
    os.environ["DTMM_BENCH_NO_REEXEC"] = "1"  # already in the project's interpreter
    loader = importlib.machinery.SourceFileLoader("bench_models", str(BENCH))
    spec = importlib.util.spec_from_loader("bench_models", loader)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["bench_models"] = mod  # dataclasses look their module up there
    loader.exec_module(mod)
    return mod


def _result(bm, dump, invokes=(100, 90), ops=()):
    return bm.RunResult(arena=1000, invokes=list(invokes), ops=list(ops), dump=dump, total=0)


# -- bookkeeping, no TFLM needed ------------------------------------------------------------
def test_compare_tensors_names_the_differing_tensor(bm):
    dense_t = {0: [(0, "input"), (3, "conv1/Relu"), (4, "out")]}
    dtmm_t = {0: [(0, "input"), (5, "conv1/Relu"), (6, "out")]}  # indices moved
    a = {(1, 0, 0): b"\x01\x02", (1, 0, 3): b"\x05\x06\x07", (1, 0, 4): b"\x09"}
    same = {(1, 0, 0): b"\x01\x02", (1, 0, 5): b"\x05\x06\x07", (1, 0, 6): b"\x09"}
    n, fails = bm.compare_tensors(_result(bm, a), _result(bm, same), dense_t, dtmm_t, "m")
    assert n == 3 and fails == []
    bad = dict(same)
    bad[(1, 0, 5)] = b"\x05\x00\x07"
    n, fails = bm.compare_tensors(_result(bm, a), _result(bm, bad), dense_t, dtmm_t, "m")
    assert len(fails) == 1
    assert "'conv1/Relu'" in fails[0] and "Invoke #1" in fails[0] and "byte 1" in fails[0]
    n, fails = bm.compare_tensors(_result(bm, a), _result(bm, same), dense_t,
                                  {0: [(0, "input"), (6, "out")]}, "m")
    assert fails and "non-constant tensors differ" in fails[0]


def test_attribute_ops_nested_call_once_and_mismatch(bm):
    ops = {(0, 0): bm.OpInfo(0, 0, "CALL_ONCE", call_subgraph=1),
           (0, 1): bm.OpInfo(0, 1, "CONV_2D"),
           (1, 0): bm.OpInfo(1, 0, "VAR_HANDLE")}
    spans = [(1, (0,), 0, "VAR_HANDLE", 7), (1, (), 0, "CALL_ONCE", 50),
             (1, (), 1, "CONV_2D", 300), (2, (), 0, "CALL_ONCE", 9),
             (2, (), 1, "CONV_2D", 300)]
    rows = bm.attribute_ops(_result(bm, {}, ops=spans), ops, "m")
    assert (1, 1, 0, 1, "VAR_HANDLE", 7) in rows
    assert (2, 0, 1, 0, "CONV_2D", 300) in rows
    with pytest.raises(bm.BenchError, match="does not match the model"):
        bm.attribute_ops(_result(bm, {}, ops=[(1, (), 1, "DEPTHWISE_CONV_2D", 3)]), ops, "m")


def test_markdown_marks_goals(bm):
    rows = []
    for s, ratio, conv in ((0.0, "0.9800", "1.0500"), (0.5, "0.7000", "0.6000")):
        rows.append(dict(model="m", sparsity=s, target="cortex-m4", ratio=ratio,
                         eligible_ratio=conv, dense_other_share="0.3000",
                         dense_invoke2=1000, dtmm_invoke2=int(1000 * float(ratio)),
                         eligible_dense=700, eligible_dtmm=600, rewritten_convs=2,
                         eligible_convs=2, dense_arena=10, dtmm_arena=9,
                         dense_file_bytes=100, dtmm_file_bytes=80, tensors_compared=12,
                         tensors_equal=1, dense_code_bytes=1000, dtmm_code_bytes=1030,
                         dense_flash_bytes=1100, dtmm_flash_bytes=1110,
                         flash_ratio=f"{1110 / 1100:.4f}", dtmm_drivers="pointwise",
                         dtmm_all_drivers_flash_bytes=1320,
                         all_drivers_flash_ratio=f"{1320 / 1100:.4f}"))
    md = bm.markdown(rows, 2, "header")
    assert "| m | 0.98 | 0.70 |" in md          # whole model: none above 1.00
    assert "| m | **1.05** | 0.60 |" in md      # convs: 1.05 > 1.00 at s=0, 0.60 <= 0.65
    assert "| m | **1.01** | **1.01** |" in md  # image flash: larger than dense
    assert "| m | **1.20** | **1.20** |" in md  # the same with every driver linked
    assert "| 1,000 → 1,030 | 1,100 → 1,110 |" in md


def test_resolver_source_registers_each_op_once(bm):
    src = bm.resolver_source({"CONV_2D", "DEPTHWISE_CONV_2D", "PADV2", "AVERAGE_POOL_2D",
                              "DTMM_CONV_2D", "FULLY_CONNECTED"}, 2)
    for call in ("r.AddConv2D()", "r.AddDepthwiseConv2D()", "r.AddPadV2()",
                 "r.AddAveragePool2D()", "r.AddFullyConnected()",
                 "dtmm::Register_DTMM_CONV_2D()", 'r.AddCustom("DTMM_CONV_2D", &reg)'):
        assert src.count(call) == 1, call
    assert "kModelResourceVariables = 2;" in src
    with pytest.raises(bm.BenchError, match="no TFLM registration known for custom op"):
        bm.resolver_source({"MyCustomOp"}, 0)


def test_cli_errors_are_one_line(tmp_path):
    def run(*args):
        r = subprocess.run([sys.executable, str(BENCH), *map(str, args)],
                           capture_output=True, text=True,
                           env={**os.environ, "DTMM_BENCH_NO_REEXEC": "1"})
        return r.returncode, r.stderr.strip().splitlines()

    rc, err = run("--tflm-root", tmp_path, "--out", tmp_path / "o", tmp_path / "none.tflite")
    assert rc == 2 and err[-1].startswith("bench/models: error: ") and len(err) == 1
    rc, err = run("--tflm-root", tmp_path, "--out", tmp_path / "o", "--targets",
                  "cortex-m7", "x.tflite")
    assert rc == 2 and "unknown target 'cortex-m7'" in err[-1]


# -- a real run on Cortex-M4 ----------------------------------------------------------------
def _skip_reason():
    tflm = os.environ.get("TFLM_ROOT", "")
    if not tflm:
        return "set TFLM_ROOT=<tflite-micro 90b983c checkout> to run the bench/models smoke test"
    for tool in ("arm-none-eabi-gcc", "make", "gcc"):
        if not shutil.which(tool):
            return f"{tool} not on PATH: bench/models smoke test not run"
    qemu = os.environ.get("QEMU_SYSTEM_ARM", "qemu-system-arm")
    if not shutil.which(qemu):
        return f"{qemu} (>= 7.2) not on PATH: bench/models smoke test not run"
    out = subprocess.run([qemu, "--version"], capture_output=True, text=True).stdout
    m = re.search(r"version (\d+)\.(\d+)", out)
    if not m or (int(m.group(1)), int(m.group(2))) < (7, 2):
        return f"{qemu} is older than 7.2: bench/models smoke test not run"
    return None


needs_tflm = pytest.mark.skipif(_skip_reason() is not None, reason=str(_skip_reason()))


def _build_dir():
    """A persistent cache for TFLM's Cortex-M4 library, or skip: building it cold
    (4-10 min on 2 cores) in every run is not CI-sized."""
    if os.environ.get("DTMM_BENCH_BUILD_DIR"):
        return pathlib.Path(os.environ["DTMM_BENCH_BUILD_DIR"])
    gen = pathlib.Path(os.environ["TFLM_ROOT"]) / "gen"
    cache = gen / "dtmm_bench_models"
    # Only a cache an earlier bench/models run left: a cold library build inside
    # the test could outlast its timeout (CI unpacks a fresh TFLM tree every run).
    if not cache.is_dir():
        pytest.skip(f"no TFLM Cortex-M4 library cached in {cache} and DTMM_BENCH_BUILD_DIR "
                    "is unset (a cold build, 4-10 min, is not CI-sized): bench/models "
                    "smoke test not run")
    try:
        probe = gen / ".dtmm_bench_probe"
        probe.write_text("")
        probe.unlink()
        return cache
    except OSError:
        pytest.skip(f"{gen} is not writable here (Bazel's sandbox?) and DTMM_BENCH_BUILD_DIR "
                    "is unset: no cache for TFLM's Cortex-M4 library, bench/models smoke "
                    "test not run")


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """int8: conv 3x3 (C_in 8) -> depthwise -> conv 1x1 -> dense, 8x8 input."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    warnings.filterwarnings("ignore", module="tensorflow")
    tf.keras.utils.set_random_seed(3)
    inp = tf.keras.Input((8, 8, 8), batch_size=1)
    x = tf.keras.layers.Conv2D(16, 3, padding="same", activation="relu")(inp)
    x = tf.keras.layers.DepthwiseConv2D(3, padding="same", activation="relu")(x)
    x = tf.keras.layers.Conv2D(16, 1, activation="relu")(x)
    out = tf.keras.layers.Dense(4)(tf.keras.layers.GlobalAveragePooling2D()(x))
    conv = tf.lite.TFLiteConverter.from_keras_model(tf.keras.Model(inp, out))
    rng = np.random.default_rng(0)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: (
        [rng.uniform(-1, 1, (1, 8, 8, 8)).astype(np.float32)] for _ in range(8))
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    path = tmp_path_factory.mktemp("model") / "tiny.tflite"
    path.write_bytes(conv.convert())
    return path


def _bench(tmp_path, build_dir, *extra):
    cmd = [sys.executable, str(BENCH), "--tflm-root", os.environ["TFLM_ROOT"],
           "--out", str(tmp_path / "out"), "--build-dir", str(build_dir),
           "--targets", "cortex-m4", "--no-progress", *map(str, extra)]
    return subprocess.run(cmd, capture_output=True, text=True,
                          env={**os.environ, "DTMM_BENCH_NO_REEXEC": "1"}, timeout=1500)


@needs_tflm
def test_bench_runs_on_cortex_m4(tiny_model, tmp_path):
    import csv

    r = _bench(tmp_path, _build_dir(), "--sparsity", "0,0.5", tiny_model)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    out = tmp_path / "out"
    rows = list(csv.DictReader(open(out / "models.csv")))
    assert [(x["model"], x["sparsity"]) for x in rows] == [("tiny", "0.0"), ("tiny", "0.5")]
    for x in rows:
        assert x["tensors_equal"] == "1" and int(x["tensors_compared"]) >= 2 * 6
        assert int(x["dense_invoke2"]) > 10000 and int(x["dtmm_invoke2"]) > 10000
        assert int(x["eligible_convs"]) == 2
        assert float(x["ratio"]) == pytest.approx(int(x["dtmm_invoke2"]) /
                                                  int(x["dense_invoke2"]), abs=1e-4)
    assert int(rows[1]["rewritten_convs"]) >= 1   # the converter decides which
    ops = list(csv.DictReader(open(out / "models_ops.csv")))
    names = {(o["variant"], o["op"]) for o in ops}
    assert ("dense", "CONV_2D") in names and ("dtmm", "DTMM_CONV_2D") in names
    convs = list(csv.DictReader(open(out / "models_convs.csv")))
    assert {c["kh"] for c in convs} == {"3", "1"} and all(int(c["dtmm_instructions"]) > 0
                                                          for c in convs)
    # Per-op counts add up to (nearly all of) Invoke #2: only the interpreter's loop
    # is outside the op spans.
    for x in rows:
        s = sum(int(o["instructions"]) for o in ops if o["variant"] == "dense"
                and o["sparsity"] == x["sparsity"] and o["invoke"] == "2"
                and o["depth"] == "0")
        assert 0.9 * int(x["dense_invoke2"]) < s <= int(x["dense_invoke2"])
    for x in rows:  # the flash images linked, ran, and hold the model
        assert int(x["dense_flash_bytes"]) > int(x["dense_file_bytes"]) + 10000
        assert int(x["dtmm_code_bytes"]) > 0 and int(x["dense_code_bytes"]) > 0
    # At s = 0.5 a conv is DTMM: its image links the DTMM kernels.
    assert int(rows[1]["dtmm_code_bytes"]) > int(rows[1]["dense_code_bytes"])
    assert (out / "models.png").stat().st_size > 1000
    assert "| tiny |" in (out / "models.md").read_text()


@needs_tflm
def test_bench_broken_dtmm_ops_is_one_clear_error(tiny_model, tmp_path):
    ops = tmp_path / "dtmm_ops"
    shutil.copytree(ROOT / "dtmm_ops", ops, ignore=shutil.ignore_patterns("python"))
    (ops / "dtmm_conv.cc").write_text((ops / "dtmm_conv.cc").read_text() + "\n#error broken\n")
    r = _bench(tmp_path, _build_dir(), "--dtmm-ops", ops, "--sparsity", "0",
               tiny_model)
    assert r.returncode == 2
    err = [ln for ln in r.stderr.splitlines() if "bench/models: error:" in ln]
    assert len(err) == 1 and "building the TFLM app for cortex-m4 failed" in err[0]
    assert "#error broken" in r.stderr  # the log's tail shows why
