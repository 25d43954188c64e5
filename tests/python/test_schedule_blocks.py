"""Block ratios in the scheduler (issue 10, deliverable 5): the search moves over
filterlet, filter and FC block ratios together; the block costs are the converter's
own plan (bytes, rewrite, modeled instructions of the file it writes); `dtmm prune`
applies them end to end; without block ratios nothing changes."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from dtmm.errors import DtmmError
from dtmm.schedule.blocks import FcBlockCosts
from dtmm.schedule.graph import Fc
from dtmm.schedule.search import Budgets, Problem, schedule
from dtmm.schedule.synthetic import random_problem_parts

ROOT = next(p for p in __import__("pathlib").Path(__file__).resolve().parents
            if (p / "WORKSPACE").is_file())


# -- unit: the joint space on a synthetic problem -------------------------------------
def _synthetic_blocks(g, step=0.05, n_fc=2, saving=4000.0, seed=0):
    """Made-up block costs for FCs that the synthetic graph does not have: flash and
    latency fall linearly with the ratio past 0.3 (DTMM pays from there), the
    importance removed grows like the ratio squared (the least important blocks go
    first)."""
    rng = np.random.default_rng(seed)
    n = int(round(0.95 / step)) + 1
    r = np.arange(n) * step
    fd = [np.where(r >= 0.3, -saving * r, 0.0) for _ in range(n_fc)]
    lat = {t: [np.where(r >= 0.3, -1e5 * r, 0.0) for _ in range(n_fc)]
           for t in ("cortex-m4", "cortex-m55")}
    tot = rng.uniform(1, 2, n_fc)
    # stand-ins fed by no conv: the problem reads only their input group
    g.fcs = [Fc(i, -1, f"fc{i}", 16, 64, 1, -1) for i in range(n_fc)]
    return FcBlockCosts(list(range(n_fc)), [16] * n_fc, step, fd, lat,
                        [r >= 0.3 for _ in range(n_fc)], [np.where(r >= 0.3, 16, 0)] * n_fc,
                        [t * r ** 2 for t in tot], list(tot))


def _budgets(g, imp, flash):
    d = Problem(g, imp, Budgets()).dense
    return Budgets(flash=flash * d["flash"], sram=0.8 * d["sram"])


def test_search_moves_over_block_ratios_when_they_are_cheaper():
    g, imp = random_problem_parts(0, 12)
    dense = Problem(g, imp, Budgets()).dense["flash"]
    blocks = _synthetic_blocks(g, saving=0.3 * dense)
    prob = Problem(g, imp, _budgets(g, imp, 0.6), blocks=blocks)
    assert [k for k, _ in prob.vars].count("k") == 2
    plan = schedule(prob)
    assert plan.feasible and plan.block.shape == (2,)
    assert (plan.block >= 0.3).any(), plan.block  # cheap blocks are used
    m = prob.evaluate(plan.grid(prob))
    assert m["flash"] <= prob.budgets.flash + 1e-9
    # the block part of the objective is what the tables say
    x = plan.grid(prob)
    x0 = x.copy()
    x0[[j for j, (k, _) in enumerate(prob.vars) if k == "k"]] = 0
    m0 = prob.evaluate(x0)
    ik = [x[j] for j, (k, _) in enumerate(prob.vars) if k == "k"]
    assert m["flash"] - m0["flash"] == pytest.approx(
        sum(blocks.flash_delta[f][i] for f, i in enumerate(ik)) + blocks.opcode_bytes)


def test_joint_plan_is_no_worse_than_the_filter_only_plan():
    g, imp = random_problem_parts(1, 12)
    b = _budgets(g, imp, 0.5)
    filter_only = schedule(Problem(g, imp, b))
    joint = Problem(g, imp, b, blocks=_synthetic_blocks(g, saving=3000.0))
    # the filter-only plan is a point of the joint space (block ratios 0)
    x = np.array([round((filter_only.alpha[i] if k == "a" else
                         filter_only.beta[i] if k == "b" else 0.0) / joint.step)
                  for k, i in joint.vars])
    at = joint.evaluate(x)
    assert joint.violation(at) == 0.0
    plan = schedule(joint)
    assert plan.feasible and plan.objective <= joint.obj(at) + 1e-9


def test_expensive_blocks_are_left_alone():
    g, imp = random_problem_parts(2, 12)
    b = _budgets(g, imp, 0.6)
    blocks = _synthetic_blocks(g, saving=1.0)  # saves nothing worth its importance
    plan = schedule(Problem(g, imp, b, blocks=blocks))
    assert plan.feasible and not plan.block.any()


def test_without_blocks_the_plan_is_unchanged():
    g, imp = random_problem_parts(3, 12)
    b = _budgets(g, imp, 0.5)
    # a fixed number of local-search kicks, not the 3 s default: both searches then
    # take the same steps however loaded the machine is
    fixed = dict(kicks=8, ils_seconds=1e9)
    a = schedule(Problem(g, imp, b, **fixed))
    empty = FcBlockCosts([], [], 0.05)
    c = schedule(Problem(g, imp, b, blocks=empty, **fixed))
    assert np.array_equal(a.alpha, c.alpha) and np.array_equal(a.beta, c.beta)
    assert a.loss == c.loss and a.flash == c.flash and c.block.size == 0


def test_block_grid_must_match():
    g, imp = random_problem_parts(0, 8)
    with pytest.raises(DtmmError, match="grid"):
        Problem(g, imp, Budgets(), blocks=_synthetic_blocks(g, step=0.1))


# -- the costs are the converter's: a converted model --------------------------------
def _fc_model(seed=0):
    import keras
    from keras import layers as L

    keras.utils.set_random_seed(seed)
    inp = keras.Input((8, 8, 1))
    x = L.Conv2D(32, 3, padding="same", activation="relu", name="conv1")(inp)
    x = L.GlobalAveragePooling2D()(x)
    x = L.Dense(64, activation="relu", name="fc1")(x)   # input rows: conv1's channels
    x = L.Dense(128, activation="relu", name="fc2")(x)
    x = L.Dense(128, activation="relu", name="fc3")(x)
    out = L.Dense(10, name="logits")(x)
    return keras.Model(inp, out)


@pytest.fixture(scope="module")
def converted_case():
    from dtmm import pipeline
    from dtmm import prune as P
    from dtmm.datasets import load_digits

    xtr, ytr, xte, yte = load_digits()
    model = _fc_model()
    int8 = pipeline.to_int8(model, xtr)
    imp = P.compute_importance(model, method="magnitude",
                               block_size=pipeline.dense_block_sizes(model, 16))
    prob, names = pipeline.build_problem(model, int8, imp, Budgets(), block_ratios=True)
    return model, xtr, int8, imp, prob, names


def test_block_ratio_or_the_filters_feeding_it(converted_case):
    model, _, _, _, prob, _ = converted_case
    assert sorted(prob.block_names.values()) == ["fc1", "fc2", "fc3", "logits"]
    assert sorted(prob.blocks.block_size) == [16, 16, 16, 16]
    # fc1's input rows are conv1's channels: conv1's filter ratio or fc1's block
    # ratio, never both (filter removal would cut fc1's blocks apart)
    fc1 = next(j for j, n in prob.block_names.items() if n == "fc1")
    jb = next(j for j, (k, i) in enumerate(prob.vars) if k == "b")
    jk = next(j for j, (k, i) in enumerate(prob.vars) if k == "k" and i == fc1)
    x = np.zeros(len(prob.vars), int)
    x[jb] = x[jk] = 4
    assert prob.evaluate(x)["flash"] == np.inf
    x[jb] = 0
    assert np.isfinite(prob.evaluate(x)["flash"])
    # the filter ratio alone costs fc1 the importance of the rows it removes
    y = np.zeros(len(prob.vars), int)
    y[jb] = 4
    loss_b = prob.evaluate(y)["loss"]
    assert loss_b > 0
    for budget in (0.8, 0.6):
        prob.budgets = Budgets(flash=budget * prob.dense["flash"])
        plan = schedule(prob)
        x = plan.grid(prob)
        assert not (x[jb] > 0 and x[jk] > 0), x
        assert plan.feasible
    prob.budgets = Budgets()


def test_flash_and_latency_equal_the_converters_output(converted_case):
    from dtmm import pipeline
    from dtmm import prune as P
    from dtmm.convert import convert_model

    model, xtr, int8, imp, prob, names = converted_case
    rng = np.random.default_rng(0)
    kvars = [j for j, (k, _) in enumerate(prob.vars) if k == "k"]
    for trial in range(4):
        x = np.zeros(len(prob.vars), int)
        x[kvars] = rng.integers(0, prob.vmax[kvars] + 1)
        m = prob.evaluate(x)
        ratios = {prob.block_names[i]: v * prob.step for (k, i), v in zip(prob.vars, x)
                  if k == "k"}
        masks = P.prune_blocks_to_ratios(model, imp, ratios)
        clone = __import__("keras").models.clone_model(model)
        clone.set_weights(model.get_weights())
        P.apply_masks(clone, masks)
        final = P.strip_masks(clone)
        q = pipeline.to_int8(final, xtr)
        out, rep = convert_model(q, target=prob.latency.target, prefer="speed")
        assert abs(m["flash"] / len(out) - 1) <= 0.02, (trial, m["flash"], len(out))
        planned = {r.op_index: r for r in rep.fc_layers}
        row = {j: p for p, j in enumerate(prob.blocks.fcs)}
        for (k, i), v in zip(prob.vars, x):
            if k != "k":
                continue
            r = planned[prob.graph.fcs[i].op_index]
            assert r.rewritten == bool(prob.blocks.rewritten[row[i]][v]), (trial, i, v)
            if r.rewritten:
                for t, (dense, dtmm) in r.modeled.items():
                    assert prob.blocks.latency_delta[t][row[i]][v] == pytest.approx(
                        dtmm - dense, rel=1e-9)
        # the whole-model objective: the dense model's, plus those deltas
        lat0 = prob.dense["latency"]
        delta = sum(dtmm - dense for r in rep.fc_layers if r.rewritten
                    for dense, dtmm in r.modeled.values())
        assert m["latency"] == pytest.approx(lat0 + delta, rel=1e-9)


def test_dense_only_model_is_schedulable():
    """No Conv2D at all (an autoencoder-like MLP): block ratios are the whole space."""
    import keras
    from keras import layers as L

    from dtmm import pipeline
    from dtmm import prune as P
    from dtmm.datasets import load_digits

    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 1))
    x = L.Flatten()(inp)
    for i, u in enumerate((128, 32, 128)):
        x = L.Dense(u, activation="relu", name=f"fc{i + 1}")(x)
    model = keras.Model(inp, L.Dense(10, name="logits")(x))
    xtr = load_digits()[0]
    int8 = pipeline.to_int8(model, xtr)
    imp = P.compute_importance(model, method="magnitude",
                               block_size=pipeline.dense_block_sizes(model, 16))
    prob, names = pipeline.build_problem(model, int8, imp, Budgets(), block_ratios=True)
    assert names == [] and {k for k, _ in prob.vars} == {"k"}
    prob.budgets = Budgets(flash=0.85 * prob.dense["flash"])
    plan = schedule(prob)
    assert plan.feasible and plan.block.any() and plan.flash <= prob.budgets.flash
    with pytest.raises(DtmmError, match="no CONV_2D layer to prune"):
        pipeline.build_problem(model, int8, imp, Budgets(), block_ratios=False)


# -- pipeline end to end, fast --------------------------------------------------------
@pytest.fixture(scope="module")
def pipeline_run(tmp_path_factory):
    from dtmm import pipeline
    from dtmm.datasets import load_digits

    data = load_digits()
    model = _fc_model()
    pipeline.compile_for_training(model, 2e-3)
    pipeline.fit(model, data[0], data[1], 8, 32, 0, "train", False)
    out = tmp_path_factory.mktemp("blocks")
    res = pipeline.prune(model, data, "30KiB", "16KiB", str(out), max_drop=None, epochs=1,
                         batch_size=32, progress=False, lr=1e-3, log=lambda *a: None)
    return out, res, model, data


def test_pipeline_prunes_blocks_and_converts_them(pipeline_run):
    from dtmm.core.tflite import Model

    out, res, _, _ = pipeline_run
    r = json.loads((out / "report.json").read_text())
    assert r["budgets_met"]["flash"] and r["pruned"]["flash_bytes"] <= 30 * 1024
    assert any(v > 0 for v in r["pruned"]["block_ratios"].values()), r["pruned"]
    fcs = r["fc_layers"]
    assert {l["name"] for l in fcs} == {"fc1", "fc2", "fc3", "logits"}
    assert r["pruned"]["dtmm_fc_ops"] == sum(l["dtmm_op"] for l in fcs) >= 1
    ops = [op.name for op in Model.read((out / "model_dtmm.tflite").read_bytes(),
                                        "m").subgraphs[0].operators]
    assert ops.count("DTMM_FULLY_CONNECTED") == r["pruned"]["dtmm_fc_ops"]
    assert r["pruned"]["dtmm_ops_verified_bit_exact"]
    # the saved model carries the plan's zero blocks (what the converter packed)
    import keras

    saved = keras.models.load_model(out / "pruned.keras", compile=False)
    for l in fcs:
        if not l["block_ratio"]:
            continue
        w = np.asarray(saved.get_layer(l["name"]).kernel.numpy()).T  # [C_out, C_in]
        b = l["block_size"]
        kept = np.any(w.reshape(w.shape[0], -1, b) != 0, axis=2).sum()
        assert kept <= l["blocks_kept"]


def test_block_ratios_off_is_the_filter_only_pipeline(pipeline_run, tmp_path):
    """Filters of conv1 (and the rows of fc1 they feed) are all filter pruning can
    remove here: the budget the block ratios met is out of its reach."""
    from dtmm import pipeline

    _, res, model, data = pipeline_run
    with pytest.raises(DtmmError, match="flash budget 30.0 KiB cannot be met"):
        pipeline.prune(model, data, "30KiB", "16KiB", str(tmp_path), max_drop=None,
                       epochs=1, batch_size=32, progress=False, lr=1e-3,
                       log=lambda *a: None, block_ratios="off")
    assert not os.listdir(tmp_path)  # nothing written


def test_block_ratio_arguments():
    from dtmm import pipeline

    with pytest.raises(DtmmError, match="block_ratios must be one of auto, on, off"):
        pipeline.block_ratios_enabled("yes", "any")
    assert pipeline.block_ratios_enabled("auto", "any")
    assert not pipeline.block_ratios_enabled("off", "any")
    env = dict(os.environ, PYTHONPATH=str(ROOT / "python"))
    p = subprocess.run([sys.executable, "-m", "dtmm", "prune", "--help"],
                       capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 0 and "--block-ratios" in p.stdout and "--block-size" in p.stdout
    p = subprocess.run([sys.executable, "-m", "dtmm", "prune", "m.keras", "--data", "digits",
                        "--flash", "1KiB", "--sram", "1KiB", "--out", "x",
                        "--block-ratios", "maybe"],
                       capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 2 and "--block-ratios" in p.stderr
