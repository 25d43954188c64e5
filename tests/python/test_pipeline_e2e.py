"""End to end on sklearn digits with fast settings: API and CLI, budgets met,
report.json complete, the DTMM file is what the report says."""

import json
import os
import subprocess
import sys

import pytest

ROOT = next(p for p in __import__("pathlib").Path(__file__).resolve().parents
            if (p / "WORKSPACE").is_file())


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    from dtmm import pipeline

    out = tmp_path_factory.mktemp("demo")
    res = pipeline.demo(str(out), flash="24KiB", sram="16KiB", max_drop=None,
                        train_epochs=15, epochs=1, progress=False)
    return out, res


def test_demo_writes_everything_and_meets_budgets(demo):
    out, res = demo
    for name in ("dense.keras", "pruned.keras", "dense_int8.tflite", "model_int8.tflite",
                 "model_dtmm.tflite", "report.json", "sparsity.png", "accuracy_size.png"):
        assert (out / name).stat().st_size > 0, name
    r = json.loads((out / "report.json").read_text())
    assert r["budgets"]["flash_bytes"] == 24 * 1024 and r["budgets"]["sram_bytes"] == 16384
    assert r["pruned"]["flash_bytes"] == (out / "model_dtmm.tflite").stat().st_size
    assert r["pruned"]["flash_bytes"] <= 24 * 1024 < r["dense"]["int8_bytes"]
    assert r["pruned"]["sram_bytes"] <= 16384
    assert r["budgets_met"]["flash"] and r["budgets_met"]["sram"]
    # the flash model (from the dense graph, before pruning) vs the real file; the
    # 2 % check on controlled plans is test_schedule_cost; after fine-tuning and
    # the converter's own choices the demo has come out at +0.9 % and +1.8 %
    assert abs(r["pruned"]["flash_bytes_modeled"] / r["pruned"]["flash_bytes"] - 1) < 0.025
    assert r["dense"]["int8_accuracy"] > 80.0
    assert r["pruned"]["int8_accuracy"] > 60.0
    assert len(r["layers"]) == 4
    for layer in r["layers"]:
        assert 0 <= layer["alpha"] <= 0.95 and 0 <= layer["beta"] <= 0.9
        assert layer["filters_kept"] <= layer["c_out"]
    assert r["pruned"]["dtmm_ops"] >= 1
    # the default objective: TFLM Invoke() instructions on both fitted targets
    assert r["pruned"]["latency_target"] == "any"
    per = r["pruned"]["latency_modeled_per_target"]
    assert set(per) == {"cortex-m4", "cortex-m55"} and per["cortex-m4"] > per["cortex-m55"] > 0
    assert "MAC" not in r["pruned"]["latency_model"]


def test_dtmm_file_matches_int8_file(demo):
    from dtmm.verify import verify_files

    out, _ = demo
    rep = verify_files(str(out / "model_int8.tflite"), str(out / "model_dtmm.tflite"),
                       random=2, check=False)
    assert rep.ok, rep.failures[:1]


def test_cli_prune_on_saved_model(demo, tmp_path):
    out, _ = demo
    env = dict(os.environ, PYTHONPATH=str(ROOT / "python"), TF_CPP_MIN_LOG_LEVEL="3")
    r = subprocess.run([sys.executable, "-m", "dtmm", "prune", str(out / "dense.keras"),
                        "--data", "digits", "--flash", "20KiB", "--sram", "0.5MiB",
                        "--max-drop", "50", "--epochs", "1", "--no-progress",
                        "--target", "cortex-m55",
                        "--out", str(tmp_path / "p")], capture_output=True, text=True,
                       env=env, timeout=800)
    assert r.returncode == 0, r.stderr[-2000:]
    rep = json.loads((tmp_path / "p" / "report.json").read_text())
    assert rep["pruned"]["flash_bytes"] <= 20 * 1024
    # planned and converted for Cortex-M55 alone
    assert rep["pruned"]["latency_target"] == "cortex-m55"
    assert list(rep["pruned"]["latency_modeled_per_target"]) == ["cortex-m55"]
    # an impossible budget is one clear line
    r = subprocess.run([sys.executable, "-m", "dtmm", "prune", str(out / "dense.keras"),
                        "--data", "digits", "--flash", "1KiB", "--sram", "16KiB",
                        "--out", str(tmp_path / "q"), "--no-progress"],
                       capture_output=True, text=True, env=env, timeout=800)
    assert r.returncode == 2
    assert "dtmm: error: flash budget 1.0 KiB cannot be met: smallest reachable model is" \
        in r.stderr
