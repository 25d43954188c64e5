"""Cost models against the real thing: flash vs the converted file, SRAM vs the
tflite-micro wheel's arena, the planner vs TFLM's own planner tests, latency fit."""

import csv
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))

from dtmm.errors import DtmmError  # noqa: E402
from dtmm.schedule import cost, graph as G, search  # noqa: E402
from dtmm.schedule.cost import greedy_plan, parse_bytes  # noqa: E402


# -- planner: the cases of TFLM's greedy_memory_planner_test.cc ------------------------
def test_greedy_planner_matches_tflm_unit_tests():
    # TestGreedyBasics
    assert greedy_plan([10, 20], [0, 2], [1, 3]) == ([0, 0], 20)
    # TestGreedyMedium: offsets 50, 70, 40, 0, 0 and 90 bytes
    assert greedy_plan([10, 20, 30, 40, 50], [0, 1, 2, 3, 0], [1, 2, 3, 4, 1]) == \
        ([50, 70, 40, 0, 0], 90)
    # TestOverlapCase: 120 bytes
    assert greedy_plan([100, 50, 20], [0, 2, 1], [1, 3, 2])[1] == 120


def test_greedy_planner_never_overlaps():
    rng = np.random.default_rng(0)
    for _ in range(50):
        n = int(rng.integers(1, 25))
        sizes = [int(s) * 16 for s in rng.integers(1, 40, n)]
        first = [int(f) for f in rng.integers(0, 10, n)]
        last = [f + int(d) for f, d in zip(first, rng.integers(0, 4, n))]
        off, peak = greedy_plan(sizes, first, last)
        assert peak == max(o + s for o, s in zip(off, sizes))
        assert peak >= max(sum(s for s, f, l in zip(sizes, first, last) if f <= t <= l)
                           for t in range(15))
        for i in range(n):
            for j in range(i + 1, n):
                if first[i] <= last[j] and first[j] <= last[i]:
                    assert off[i] + sizes[i] <= off[j] or off[j] + sizes[j] <= off[i]


# -- real models ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def models():
    from schedule_models import flatten_cnn, rep_data, residual_cnn

    from dtmm import pipeline as PL
    from dtmm import prune as P

    out = []
    for mk in (residual_cnn, flatten_cnn):
        m = mk()
        x = rep_data(m)
        int8 = PL.to_int8(m, x)
        imp = P.compute_importance(m, method="magnitude")
        prob, names = PL.build_problem(m, int8, imp, search.Budgets())
        out.append((mk.__name__, m, x, int8, imp, prob, names))
    return out


def _realize(m, x, imp, prob, names, xv):
    from dtmm import pipeline as PL
    from dtmm import prune as P
    from dtmm.convert import convert_model

    plan = prob.plan(np.asarray(xv), "test", 0.0, [])
    pruned, _ = PL.apply_plan(m, imp, names, plan, prob.graph)
    int8 = PL.to_int8(P.strip_masks(pruned), x)
    # FlashModel models the bytes rule (prefer="size"); the speed rule keeps some
    # smaller convs dense, which the flash model does not know yet.
    return int8, convert_model(int8, prefer="size")[0]


def _configs(prob, n, seed):
    rng = np.random.default_rng(seed)
    xs = [np.zeros(len(prob.vars), int)]
    xs += [rng.integers(0, prob.vmax + 1) for _ in range(n)]
    return xs


def test_flash_model_within_2_percent_of_converted_file(models):
    errs = []
    for name, m, x, _, imp, prob, names in models:
        for xv in _configs(prob, 3, seed=1):
            _, dtmm_bytes = _realize(m, x, imp, prob, names, xv)
            modeled = prob.evaluate(xv)["flash"]
            assert modeled == pytest.approx(prob.flash(prob.config(xv)))
            err = modeled / len(dtmm_bytes) - 1
            errs.append(err)
            assert abs(err) <= 0.02, (name, xv, modeled, len(dtmm_bytes))
    assert len(errs) == 8


def test_sram_head_equals_tflm_wheel_and_predicts_pruned_models(models):
    for name, m, x, int8, imp, prob, names in models:
        for xv in _configs(prob, 2, seed=2):
            real_int8, _ = _realize(m, x, imp, prob, names, xv)
            usage = cost.tflm_arena_usage(real_int8)
            # exact replay of TFLM's planner on the real file
            real_model = cost.SramModel(G.analyze(real_int8), target=cost.HOST_64)
            assert real_model.head() == usage["head"], name
            # prediction from the dense graph + beta, before any pruning happens
            predicted = cost.SramModel(prob.graph).head(prob.config(xv))
            assert predicted == usage["head"], (name, xv)
            # persistent part: structure sizes of the 64-bit wheel, within 8 %
            assert abs(real_model.tail() - usage["tail"]) <= 0.08 * usage["tail"], name
            assert abs(real_model() - usage["total"]) <= 0.05 * usage["total"], name


def test_dtmm_graph_is_read_like_the_int8_graph(models):
    for name, m, x, _, imp, prob, names in models:
        xv = prob.vmax // 2
        _, dtmm_bytes = _realize(m, x, imp, prob, names, xv)
        gd = G.analyze(dtmm_bytes)
        assert len(gd.convs) == len(prob.graph.convs)
        shapes = cost.layer_shapes(prob.graph, prob.config(xv))
        for c, (co, ci, _) in zip(gd.convs, shapes):
            assert (c.c_out, c.c_in) == (co, ci)
        # the DTMM ops keep their multipliers in flash: less persistent arena
        sm = cost.SramModel(gd)
        assert sm.head() == cost.SramModel(prob.graph).head(prob.config(xv))


# -- latency -------------------------------------------------------------------------
def test_latency_fit_recovers_coefficients(tmp_path):
    a, b, c = 1.3, 25.0, 4.0
    path = tmp_path / "kernels.csv"
    rng = np.random.default_rng(0)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["target", "layer", "c_in", "sparsity", "kernel", "instructions",
                    "scratch_bytes", "const_bytes"])
        for _ in range(30):
            co, h, k = int(rng.choice([8, 16, 32])), int(rng.choice([4, 8])), int(rng.choice([1, 9]))
            ci = int(rng.choice([8, 16, 64]))
            sp = float(rng.choice([0.0, 0.25, 0.5, 0.75]))
            kept = (co * k - int(np.floor(sp * co * k + 0.5))) * ci * h * h
            instr = a * kept + b * co * h * h + c * co * h * h * k
            w.writerow(["m4", f"{co}x{h}x{h}x{k}", ci, sp, "dtmm", round(instr), 0, 0])
            w.writerow(["m4", f"{co}x{h}x{h}x{k}", ci, sp, "cmsis-nn", 1, 0, 0])
    for four in (False, True):
        fit = cost.fit_latency_csv(str(path), "m4", four=four)
        assert fit.a == pytest.approx(a, rel=1e-3)
        assert fit.b == pytest.approx(b, rel=1e-2)
        assert fit.c == pytest.approx(c, rel=1e-2)
        assert abs(fit.d) < 1e-2
    with pytest.raises(DtmmError, match="fewer than 4"):
        cost.fit_latency_csv(str(path), "m55")


def test_bench_layers_are_package_data_and_match_the_bench_suite():
    # the scheduler reads the layer shapes from dtmm.core's package data (an
    # installed wheel has no bench/); they must be the suite's classic L1-L6
    import importlib.util

    from dtmm.core import latency

    layers = latency.bench_layers()
    assert layers["L5"] == (32, 15, 1, 5)  # 49x1 input, 5x1 kernel, stride 3, VALID
    assert layers["L1"] == (32, 32, 32, 9)
    root = next(p for p in __import__("pathlib").Path(__file__).resolve().parents
                if (p / "WORKSPACE").is_file())
    spec = importlib.util.spec_from_file_location("kernel_layers",
                                                  root / "bench" / "kernel_layers.py")
    suite = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = suite  # dataclasses look their module up
    spec.loader.exec_module(suite)
    classic = {x.name: x for x in suite.CLASSIC}
    assert sorted(classic) == sorted(layers) == [f"L{i}" for i in range(1, 7)]
    for name, x in classic.items():
        L = latency._data()["bench_layers"][name]
        assert (L["in_h"], L["in_w"], L["c_in"], L["c_out"], L["kh"], L["kw"], L["sh"],
                L["sw"]) == (x.h, x.w, x.c_in, x.c_out, x.kh, x.kw, x.sh, x.sw), name
        if x.kh * x.kw > 1:  # a 1x1 filter pads nothing either way
            assert L["same"] == (x.padding == "SAME"), name
        oh, ow = x.out_hw()
        assert layers[name] == (x.c_out, oh, ow, x.kh * x.kw), name


def test_latency_coefficients_per_target():
    from dtmm.core import latency
    from dtmm.core.errors import ArgumentError

    assert latency.coefficients() == cost.LatencyModel(None).coeffs
    m4 = latency.coefficients("cortex-m4")
    assert m4.a > latency.coefficients("cortex-m55").a > 0
    assert "cortex-m4" in m4.source
    with pytest.raises(ArgumentError, match="no latency model for target 'z80'"):
        latency.coefficients("z80")


def test_latency_model_counts_kept_macs():
    from dtmm.schedule.synthetic import random_graph
    g = random_graph(0, 6)
    lat = cost.LatencyModel(g, cost.LatencyCoeffs(1.0, 0.0, 0.0))
    dense = cost.Config.dense(g)
    conv_part = sum(lat.per_layer(dense))
    assert conv_part == sum(c.macs for c in g.convs)
    half = dense.copy()
    half.alpha[:] = 0.5
    assert sum(lat.per_layer(half)) < conv_part


# -- budgets ---------------------------------------------------------------------------
@pytest.mark.parametrize("text,value", [("64KiB", 65536), ("64KB", 64000), ("65536", 65536),
                                        ("0.5MiB", 524288), ("1 MB", 10 ** 6), (4096, 4096),
                                        ("64kib", 65536), ("100B", 100)])
def test_parse_bytes(text, value):
    assert parse_bytes(text) == value


@pytest.mark.parametrize("text,msg", [("64Kb it", "cannot parse"), ("64XiB", "unknown unit"),
                                      ("64 bits", "unknown unit"), ("-5", "cannot parse"),
                                      ("0", "positive"), ("0.3B", "whole number"),
                                      ("KiB", "cannot parse")])
def test_parse_bytes_rejects(text, msg):
    with pytest.raises(DtmmError, match=msg):
        parse_bytes(text)
