"""The layering: dtmm.core at the bottom without TensorFlow or Keras; the converter,
inspect and the scheduler on top of it, importable and working where TensorFlow and
Keras cannot be imported; no module imports a peer sideways."""

import ast
import os
import pathlib
import subprocess
import sys

ROOT = next(p for p in pathlib.Path(__file__).resolve().parents if (p / "WORKSPACE").is_file())
PACKAGE = ROOT / "python" / "dtmm"

# Run in a fresh interpreter where importing tensorflow or keras fails.
BLOCKED = r'''
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("tensorflow", "keras", "tf_keras"):
            raise ImportError(f"{name} is blocked in this test")
        return None
sys.meta_path.insert(0, Block())
'''

SCRIPT = BLOCKED + r'''
import pkgutil, importlib
import dtmm.core
for m in pkgutil.iter_modules(dtmm.core.__path__):
    importlib.import_module("dtmm.core." + m.name)
import dtmm, dtmm.convert, dtmm.inspect_model, dtmm.reference, dtmm.cli
import dtmm.schedule.graph, dtmm.schedule.cost, dtmm.schedule.search
from dtmm.schedule.synthetic import random_problem_parts
from dtmm.schedule.search import Budgets, Problem, schedule
g, imp = random_problem_parts(0, 8)
d = Problem(g, imp, Budgets()).dense
plan = schedule(Problem(g, imp, Budgets(flash=0.6 * d["flash"])), time_limit=2.0)
assert plan.feasible
buf = open(sys.argv[1], "rb").read()
out, report = dtmm.convert_model(buf, always=True)
assert report.num_rewritten == 1, report.table()
assert dtmm.inspect_model.inspect_model(out)[0].op == "DTMM_CONV_2D"
assert dtmm.schedule.graph.analyze(out).convs[0].c_out == 4
bad = [m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras")]
assert not bad, bad
print("ok")
'''


def _tiny_conv_model(tmp_path) -> str:
    """A one-CONV_2D int8 model (TensorFlow builds it in this process; the blocked
    interpreter only reads it)."""
    import tflite_models as tm

    buf = tm.conv_branches_model([tm.ConvConfig(3, 4, 3, 3, seed=5, sparsity=0.5)])
    path = tmp_path / "conv.tflite"
    path.write_bytes(buf)
    return str(path)


def test_core_converter_scheduler_run_without_tensorflow(tmp_path):
    model = _tiny_conv_model(tmp_path)
    env = dict(os.environ, PYTHONPATH=str(ROOT / "python"))
    p = subprocess.run([sys.executable, "-c", SCRIPT, model], capture_output=True,
                       text=True, env=env, timeout=300)
    assert p.returncode == 0 and p.stdout.strip() == "ok", p.stdout + p.stderr


def test_the_blocker_really_blocks():
    p = subprocess.run([sys.executable, "-c", BLOCKED + "import tensorflow"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode != 0 and "blocked in this test" in p.stderr


def _imports(path: pathlib.Path) -> set:
    tree = ast.parse(path.read_text())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return out


def test_core_imports_nothing_above_it():
    for path in sorted((PACKAGE / "core").glob("*.py")):
        for mod in _imports(path):
            top = mod.split(".")[0]
            assert top not in ("tensorflow", "keras"), (path.name, mod)
            if top == "dtmm":
                assert mod.startswith("dtmm.core"), (path.name, mod)


def test_no_sideways_imports():
    # (importer prefix, imported prefix) pairs the layering forbids
    forbidden = [("dtmm.schedule", "dtmm.convert"), ("dtmm.schedule", "dtmm.inspect_model"),
                 ("dtmm.schedule", "dtmm.verify"), ("dtmm.prune", "dtmm.convert"),
                 ("dtmm.inspect_model", "dtmm.convert"), ("dtmm.verify", "dtmm.convert"),
                 ("dtmm.verify", "dtmm.inspect_model")]
    for path in sorted(PACKAGE.rglob("*.py")):
        name = "dtmm." + ".".join(path.relative_to(PACKAGE).with_suffix("").parts)
        for mod in _imports(path):
            for a, b in forbidden:
                assert not (name.startswith(a) and mod.startswith(b)), (name, mod)
    # the .tflite object model has one home: dtmm.core.tflite
    assert not (PACKAGE / "tflite_io.py").exists()
    # nothing in the package reads the bench sources
    for path in PACKAGE.rglob("*.py"):
        assert "harness.c" not in path.read_text(), path
