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


V2_CASES = [c for c in MANIFEST if c["file"].startswith("v2_")]


@pytest.mark.parametrize("case", V2_CASES, ids=[c["file"][:-len(".tflite")] for c in V2_CASES])
def test_v2_corruption_is_rejected_by_dtmm_and_the_device(case):
    """The version-2 corruptions (make_regressions.CASES_V2): the device oracle
    rejects the op and so does every dtmm reader (inspect; convert refuses to copy
    it), with one FormatError."""
    import device_checks as dc
    import mutate
    from dtmm.convert import convert_model
    from dtmm.core.errors import FormatError
    from dtmm.inspect_model import inspect_model

    with open(os.path.join(MODELS, case["file"]), "rb") as f:
        buf = f.read()
    assert dc.device_errors(mutate.load(buf)), case["file"]
    for fn in (inspect_model, lambda b: convert_model(b, always=True)):
        with pytest.raises(FormatError):
            fn(buf)
    assert len(V2_CASES) >= 5
