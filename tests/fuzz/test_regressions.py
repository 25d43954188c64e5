"""Every committed model reproducer (regressions/models/MANIFEST.json) through the
model fuzzer's oracles: no traceback, one error line, nothing the device rejects
written or accepted, verify exit codes right, no false difference. Each file is
one distinct defect found by fuzz_cli.py (its "found" entry: what it violated
when it was made by make_regressions.py)."""

import json
import os
import tempfile

import pytest

import fuzz_cli

HERE = os.path.dirname(os.path.abspath(__file__))
MODELS = os.path.join(HERE, "regressions", "models")
with open(os.path.join(MODELS, "MANIFEST.json")) as f:
    MANIFEST = json.load(f)


@pytest.fixture(scope="module")
def worker():
    """One worker process (TensorFlow imported once); replaced after a crash."""
    d = tempfile.mkdtemp(prefix="dtmm-regr-")
    holder = {"w": fuzz_cli.Worker(os.path.join(d, "status")), "work": d}
    yield holder
    holder["w"].close()


@pytest.mark.parametrize("case", MANIFEST, ids=[c["file"][:-len(".tflite")] for c in MANIFEST])
def test_reproducer_passes_every_oracle(worker, case):
    work = worker["work"]
    job = {"type": "mutant", "mutant": os.path.join(MODELS, case["file"]), "kind": case["kind"],
           "orig": os.path.join(MODELS, case["original"] or "tiny.tflite"), "work": work,
           "always": True}
    kind, result = worker["w"].call(job, 300, 6.0)
    if kind not in ("ok", "harness-error"):  # crash, timeout, memory
        worker["w"] = fuzz_cli.Worker(os.path.join(work, "status"))
        pytest.fail(f"{case['file']}: {kind}: {result}")
    assert kind == "ok", result
    assert result == [], (f"{case['file']} ({case['defect']}; {case['component']}):\n" +
                          "\n".join(f"  {i['class']}: {i['signature']}: {i['message']}"
                                    for i in result))
