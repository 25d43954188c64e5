"""Block ratios for 1x1 Conv2D layers in the scheduler (issue 10, deliverable 5):
priced by the converter's own conv decision (dtmm.convert.plan_conv), exclusive with
the filter ratios of the groups that change the conv's C_in or C_out, applied by the
pipeline as block masks."""

import numpy as np
import pytest

from dtmm.schedule.search import Budgets, schedule


def _pointwise_model(seed=0):
    import keras
    from keras import layers as L

    keras.utils.set_random_seed(seed)
    inp = keras.Input((8, 8, 1))
    x = L.Conv2D(32, 3, padding="same", activation="relu", name="conv1")(inp)
    x = L.Conv2D(64, 1, activation="relu", name="pw1")(x)     # C_in: conv1's filters
    x = L.Conv2D(128, 1, activation="relu", name="pw2")(x)    # C_in: pw1's filters
    x = L.GlobalAveragePooling2D()(x)
    out = L.Dense(10, name="logits")(x)
    return keras.Model(inp, out)


def _block_sizes(model, b=16):
    from dtmm import pipeline

    return {**pipeline.dense_block_sizes(model, b), **pipeline.conv_block_sizes(model, b)}


@pytest.fixture(scope="module")
def case():
    from dtmm import pipeline
    from dtmm import prune as P
    from dtmm.datasets import load_digits

    xtr, ytr, xte, yte = load_digits()
    model = _pointwise_model()
    int8 = pipeline.to_int8(model, xtr)
    imp = P.compute_importance(model, method="magnitude", block_size=_block_sizes(model))
    prob, names = pipeline.build_problem(model, int8, imp, Budgets(), block_ratios=True)
    return model, xtr, int8, imp, prob, names


def _var(prob, kind, i):
    return next(j for j, v in enumerate(prob.vars) if v == (kind, i))


def test_pointwise_convs_get_a_block_ratio(case):
    model, _, _, _, prob, names = case
    assert sorted(prob.conv_block_names.values()) == ["pw1", "pw2"]
    assert prob.conv_blocks.block_size == [16, 16]
    # the converter takes a block form B < C_in somewhere on the grid
    assert any((cb > 0).any() and (cb < prob.graph.convs[l].c_in).any()
               for l, cb in zip(prob.conv_blocks.convs, prob.conv_blocks.chosen_block))


def test_block_ratio_excludes_the_filter_ratios_around_the_conv(case):
    _, _, _, _, prob, names = case
    g = prob.graph
    pw1 = names.index("pw1")
    jc = _var(prob, "c", pw1)
    own, src = g.convs[pw1].group, g.convs[g.convs[pw1].in_from].group
    for grp in (own, src):
        jb = _var(prob, "b", grp)
        x = np.zeros(len(prob.vars), int)
        x[jc] = x[jb] = 4
        assert prob.evaluate(x)["flash"] == np.inf, grp
        x[jb] = 0
        assert np.isfinite(prob.evaluate(x)["flash"])
    # a group the conv does not touch (pw2's own filters feed only the Dense)
    other = g.convs[names.index("pw2")].group
    if other not in (own, src):
        x = np.zeros(len(prob.vars), int)
        x[jc] = x[_var(prob, "b", other)] = 4
        assert np.isfinite(prob.evaluate(x)["flash"])
    for budget in (0.8, 0.6):
        prob.budgets = Budgets(flash=budget * prob.dense["flash"])
        plan = schedule(prob)
        assert plan.feasible
        for l in prob.conv_blocks.convs:
            if plan.conv_block[l] > 0:
                c = g.convs[l]
                assert plan.beta[c.group] == 0 and plan.beta[g.convs[c.in_from].group] == 0
    prob.budgets = Budgets()


def test_costs_equal_the_converters_output(case):
    import keras

    from dtmm import pipeline
    from dtmm import prune as P
    from dtmm.convert import convert_model

    model, xtr, int8, imp, prob, names = case
    rng = np.random.default_rng(0)
    cvars = [j for j, (k, _) in enumerate(prob.vars) if k == "c"]
    row = {l: p for p, l in enumerate(prob.conv_blocks.convs)}
    seen_rewrite = False
    for trial, pick in enumerate([None, 19, None, 16]):
        x = np.zeros(len(prob.vars), int)
        x[cvars] = rng.integers(0, prob.vmax[cvars] + 1) if pick is None else pick
        m = prob.evaluate(x)
        ratios = {names[i]: v * prob.step for (k, i), v in zip(prob.vars, x) if k == "c"}
        masks = P.prune_blocks_to_ratios(model, imp, ratios)
        clone = keras.models.clone_model(model)
        clone.set_weights(model.get_weights())
        P.apply_masks(clone, masks)
        q = pipeline.to_int8(P.strip_masks(clone), xtr)
        out, rep = convert_model(q, target=prob.latency.target, prefer="speed")
        assert abs(m["flash"] / len(out) - 1) <= 0.02, (trial, m["flash"], len(out))
        # the bytes the plan saves are the converter's own estimate, to the byte
        saved = sum(r.bytes_before - r.bytes_after for r in rep.layers if r.rewritten)
        assert m["flash"] == prob.dense["flash"] - saved + prob.flash.opcode_bytes * any(
            r.rewritten for r in rep.layers), trial
        delta = 0.0
        for (k, i), v in zip(prob.vars, x):
            if k != "c":
                continue
            r = rep.layers[i]
            assert r.op_index == prob.graph.convs[i].op_index
            assert r.rewritten == bool(prob.conv_blocks.rewritten[row[i]][v]), (trial, i, v)
            if r.rewritten:
                seen_rewrite = True
                assert "B=" in r.reason or prob.conv_blocks.chosen_block[row[i]][v] == \
                    prob.graph.convs[i].c_in
                for t, (dense, dtmm) in r.modeled.items():
                    assert prob.conv_blocks.latency_delta[t][row[i]][v] == pytest.approx(
                        dtmm - dense, rel=1e-9)
                    delta += dtmm - dense
        assert m["latency"] == pytest.approx(prob.dense["latency"] + delta, rel=1e-9)
    assert seen_rewrite


def test_without_block_ratios_no_conv_block_variable(case):
    from dtmm import pipeline

    model, _, int8, imp, prob, _ = case
    off, _ = pipeline.build_problem(model, int8, imp, Budgets(), block_ratios=False)
    assert prob.conv_blocks is not None and off.conv_blocks is None
    assert not [v for v in off.vars if v[0] in ("c", "k")]
    assert off.conv_block_names == {}
    # the filter-only part of the joint problem is that problem
    fo = prob.filter_only()
    assert fo.vars == off.vars


def test_pipeline_prunes_conv_blocks_bit_exact(tmp_path):
    """`dtmm prune`'s pipeline on a small CNN with 1x1 convs: a flash budget that
    takes a conv block ratio; the file verifies bit-exact and carries the blocks."""
    import json

    import keras

    from dtmm import pipeline
    from dtmm.core.rounding import n_pruned
    from dtmm.core.tflite import Model
    from dtmm.datasets import load_digits

    data = load_digits()
    model = _pointwise_model()
    pipeline.compile_for_training(model, 2e-3)
    pipeline.fit(model, data[0], data[1], 4, 32, 0, "train", False)
    dense = len(pipeline.to_int8(model, data[0]))
    pipeline.prune(model, data, int(0.55 * dense), "64KiB", str(tmp_path), max_drop=None,
                   epochs=1, extra_epochs=0, batch_size=32, progress=False, lr=1e-3,
                   log=lambda *a: None)
    r = json.loads((tmp_path / "report.json").read_text())
    assert r["budgets_met"]["flash"], r["pruned"]
    cb = r["pruned"]["conv_block_ratios"]
    assert set(cb) == {"pw1", "pw2"} and any(v > 0 for v in cb.values()), r["pruned"]
    assert r["pruned"]["dtmm_ops_verified_bit_exact"]
    layers = {l["name"]: l for l in r["layers"]}
    saved = keras.models.load_model(tmp_path / "pruned.keras", compile=False)
    ops = Model.read((tmp_path / "model_dtmm.tflite").read_bytes(), "m").subgraphs[0].operators
    assert sum(op.name == "DTMM_CONV_2D" for op in ops) == r["pruned"]["dtmm_ops"] >= 1
    for n, v in cb.items():
        if v == 0:
            continue
        l = layers[n]
        assert l["block_ratio"] == v and l["beta"] == 0
        w = saved.get_layer(n).kernel.numpy()[0, 0].T        # [C_out, C_in]
        b = l["block_size"]
        pruned = ~np.any(w.reshape(w.shape[0], -1, b) != 0, axis=2)
        assert pruned.sum() >= n_pruned(v, pruned.size)   # the plan's blocks are zero
