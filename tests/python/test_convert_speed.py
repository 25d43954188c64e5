"""Speed-aware conversion: the per-target latency models (dtmm.core.latency, package
data fitted by bench/fit_latency) and the converter's policy built on them."""

import copy
import csv
import json
import pathlib
import subprocess
import sys

import pytest

import tflite_models as tm
from dtmm import cli
from dtmm.convert import convert_file, convert_model
from dtmm.core import latency
from dtmm.core.errors import ArgumentError
from dtmm.inspect_model import inspect_model

ROOT = pathlib.Path(__file__).resolve().parents[2]
# A conv whose DTMM form is smaller than its dense form (per-channel filter: the
# folded bias/multiplier/shift replace the dense bias and filter scales) with a
# 1x1 output plane, as in the microWakeWord models.
TINY = tm.ConvConfig(32, 32, 1, 1, h=1, w=1, seed=5)


@pytest.fixture(scope="module")
def tiny_model():
    return tm.conv_branches_model([TINY])


def _fake_models(slow_on: str):
    """The real table with DTMM 100x dearer than dense on `slow_on` (and at most as
    dear as the dense model elsewhere): a policy test independent of refits."""
    data = copy.deepcopy(latency._data())
    for t, kernels in data["conv_models"].items():
        dense = kernels["cmsis_nn"]
        worst = max(sum(m["coeffs"].values()) for m in dense.values())
        for cls, m in kernels["dtmm"].items():
            m["coeffs"] = {"call": 100.0 * worst * 1e6} if t == slow_on else {"call": 1.0}
    return data


@pytest.fixture
def m55_slow(monkeypatch):
    fake = _fake_models("cortex-m55")
    monkeypatch.setattr(latency, "_data", lambda: fake)


# -- the package data ---------------------------------------------------------------
def test_fitted_models_load_and_cover_both_targets():
    assert latency.conv_targets() == ["cortex-m4", "cortex-m55"]
    assert latency.resolve_targets("any") == ("cortex-m4", "cortex-m55")
    # the scheduler's coefficients are still there (its interface is unchanged)
    assert latency.coefficients("cortex-m4").a > 0
    shapes = [latency.ConvShape(1, 1, 64, 64, 1, 1),                       # 1x1, tiny
              latency.ConvShape(16, 16, 64, 64, 3, 3),                     # general
              latency.ConvShape(25, 5, 1, 64, 10, 4, stride=(2, 2)),       # small C_in
              latency.ConvShape.from_sparsity(16, 16, 64, 64, 3, 3, 0.75)]  # window
    for t in latency.conv_targets():
        for kernel in latency.KERNELS:
            for cls in latency.PATH_CLASSES[kernel]:
                if cls == latency.BLOCK_CLASS:  # fitted once bench/kernels has blocks
                    continue
                assert latency._data()["conv_models"][t][kernel][cls]["coeffs"]
            for s in shapes:
                assert latency.conv_instructions(t, kernel, s) > 0
    # more kept filterlets never cost less
    for t in latency.conv_targets():
        costs = [latency.conv_instructions(
            t, "dtmm", latency.ConvShape.from_sparsity(16, 16, 64, 64, 3, 3, s))
            for s in (0.9, 0.75, 0.5, 0.25, 0.0)]
        assert costs == sorted(costs)


def test_path_classes_follow_the_dispatcher_per_target():
    """dtmm_conv_s8_choose: tiny planes split by kernel; on Cortex-M55 the pointwise
    driver takes every 1x1 conv onto 3 or more pixels (DTMM_POINTWISE_MIN_PIXELS)."""
    def shape(h, w, c_in, k=1):
        return latency.ConvShape(h, w, c_in, 32, k, k, kept_filterlets=32 * k * k)

    assert latency.path_class("dtmm", shape(1, 1, 64)) == "tiny_pointwise"
    assert latency.path_class("dtmm", shape(1, 1, 64, 3)) == "tiny"
    assert latency.path_class("dtmm", shape(1, 2, 128), "cortex-m55") == "tiny_pointwise"
    assert latency.path_class("dtmm", shape(1, 3, 128), "cortex-m55") == "pointwise"
    assert latency.path_class("dtmm", shape(1, 3, 128), "cortex-m4") == "tiny_pointwise"
    assert latency.path_class("dtmm", shape(3, 3, 128), "cortex-m55") == "pointwise"
    assert latency.path_class("dtmm", shape(3, 3, 128), "cortex-m4") == "pointwise"
    assert latency.path_class("dtmm", shape(2, 2, 64, 3), "cortex-m55") == "tiny"
    # every class a target can take has fitted coefficients
    for target in ("cortex-m4", "cortex-m55"):
        assert latency.has_model("dtmm", shape(3, 3, 128), target)


def test_unknown_target_and_kernel_are_one_clear_error():
    with pytest.raises(ArgumentError, match="no conv latency model for target 'cortex-m7'"):
        latency.resolve_targets("cortex-m7")
    with pytest.raises(ArgumentError, match="unknown kernel 'csr'"):
        latency.conv_instructions("cortex-m4", "csr", latency.ConvShape(1, 1, 8, 8, 1, 1))


# -- the policy ---------------------------------------------------------------------
def test_slower_conv_stays_dense_unless_prefer_size(tiny_model, m55_slow):
    out, report = convert_model(tiny_model)
    (row,) = report.layers
    assert out == tiny_model and not row.rewritten
    assert row.bytes_after < row.bytes_before  # smaller: only the speed rule keeps it
    assert row.reason == "kept: DTMM not modeled 10% faster on cortex-m55"
    dense, dtmm = row.modeled["cortex-m55"]
    assert dtmm > dense
    assert "m55 " in report.table() and "kept: DTMM not modeled 10% faster on cortex-m55" \
        in report.table()

    out, report = convert_model(tiny_model, prefer="size")
    assert report.num_rewritten == 1 and out != tiny_model
    assert report.layers[0].reason == "rewritten: smaller (not modeled 10% faster on cortex-m55)"
    out, report = convert_model(tiny_model, always=True)
    assert report.layers[0].reason == "rewritten (--always)"


def test_target_choice(tiny_model, m55_slow):
    _, report = convert_model(tiny_model, target="cortex-m4")
    assert report.num_rewritten == 1 and set(report.layers[0].modeled) == {"cortex-m4"}
    assert report.layers[0].reason == "rewritten: smaller, modeled 10%+ faster"
    _, report = convert_model(tiny_model, target="cortex-m55")
    assert report.num_rewritten == 0 and set(report.layers[0].modeled) == {"cortex-m55"}
    _, report = convert_model(tiny_model, target="any")
    assert report.num_rewritten == 0
    assert set(report.layers[0].modeled) == {"cortex-m4", "cortex-m55"}
    with pytest.raises(ArgumentError, match="no conv latency model for target"):
        convert_model(tiny_model, target="m4")
    with pytest.raises(ArgumentError, match="prefer must be one of speed, size"):
        convert_model(tiny_model, prefer="fast")


def test_profitable_sparse_convs_are_rewritten_with_the_real_models():
    # 60 % filterlet sparsity, C_in 3..32, planes 8x10..12x12: clearly profitable
    _, report = convert_model(tm.cnn_model())
    assert report.num_rewritten == 5, report.table()
    for r in report.layers:
        assert r.reason == "rewritten: smaller, modeled 10%+ faster"
        assert all(latency.clearly_faster(dense, dtmm) for dense, dtmm in r.modeled.values())


def test_decisions_follow_the_real_models_on_wakeword_models():
    models = tm.wakeword_models()
    if not models:
        pytest.skip("pymicro_wakeword ships no models")
    for name, buf in models.items():
        _, speed = convert_model(buf)
        _, by_size = convert_model(buf, prefer="size")
        for a, b in zip(speed.layers, by_size.layers):
            if not b.rewritten:
                assert not a.rewritten, name
                continue
            slower = [t for t, (d, m) in a.modeled.items() if not latency.clearly_faster(d, m)]
            assert a.rewritten == (not slower), (name, a.reason)
            if slower:
                assert a.reason == "kept: DTMM not modeled 10% faster on " + ", ".join(slower)


def test_inspect_shows_modeled_instructions(tiny_model):
    (dense_row,) = inspect_model(tiny_model)
    out, _ = convert_model(tiny_model, always=True)
    (dtmm_row,) = inspect_model(out)
    assert dtmm_row.op == "DTMM_CONV_2D"
    assert set(dense_row.modeled) == set(dtmm_row.modeled) == set(latency.conv_targets())
    # the same conv, read dense or from its DTMM op, models the same
    for t in latency.conv_targets():
        assert dense_row.modeled[t] == pytest.approx(dtmm_row.modeled[t])


def test_cli_target_and_prefer(tiny_model, tmp_path, capsys, m55_slow):
    src, dst = tmp_path / "in.tflite", tmp_path / "out.tflite"
    src.write_bytes(tiny_model)
    assert cli.main(["convert", str(src), "-o", str(dst)]) == 0
    out = capsys.readouterr().out
    assert "instr dense/dtmm" in out and "kept: DTMM not modeled 10% faster on cortex-m55" in out
    assert dst.read_bytes() == tiny_model
    assert cli.main(["convert", str(src), "-o", str(dst), "--target", "cortex-m4"]) == 0
    assert "rewrote 1 of 1" in capsys.readouterr().out
    assert cli.main(["convert", str(src), "-o", str(dst), "--prefer", "size"]) == 0
    assert "rewritten: smaller (not modeled 10% faster on cortex-m55)" in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:
        cli.main(["convert", str(src), "-o", str(dst), "--target", "cortex-m7"])
    assert e.value.code == 2 and "invalid choice: 'cortex-m7'" in capsys.readouterr().err
    assert cli.main(["inspect", str(dst)]) == 0
    assert "instr dense/dtmm" in capsys.readouterr().out


def test_convert_file_takes_the_same_options(tiny_model, tmp_path, m55_slow):
    src, dst = tmp_path / "in.tflite", tmp_path / "out.tflite"
    src.write_bytes(tiny_model)
    assert convert_file(src, dst).num_rewritten == 0
    assert convert_file(src, dst, prefer="size").num_rewritten == 1
    assert convert_file(src, dst, target="cortex-m4").num_rewritten == 1


# -- the fit ------------------------------------------------------------------------
def _synthetic_kernels_csv(path):
    """bench/kernels-shaped rows whose instructions follow known linear models."""
    cols = ["target", "layer", "group", "h", "w", "c_in", "c_out", "kh", "kw", "sh", "sw",
            "dh", "dw", "padding", "out_h", "out_w", "sparsity", "kernel", "instructions",
            "scratch_bytes", "const_bytes"]
    shapes = [(oh, ow, ci, co, k, k) for oh, ow in ((1, 1), (2, 2), (8, 8), (16, 16), (12, 6))
              for ci in (4, 16, 64) for co in (16, 48) for k in (1, 3)]
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(cols)
        for target, scale in (("cortex-m4", 1.0), ("cortex-m55", 0.25)):
            for oh, ow, ci, co, kh, kw in shapes:
                for sp in (0.0, 0.5, 0.75):
                    s = latency.ConvShape.from_sparsity(oh, ow, ci, co, kh, kw, sp)
                    dtmm = scale * (1.5 * s.kept * ci * oh * ow + 40 * co + 500)
                    row = [target, "x", "sweep", oh, ow, ci, co, kh, kw, 1, 1, 1, 1, "SAME",
                           oh, ow, f"{sp:.2f}"]
                    w.writerow(row + ["dtmm", round(dtmm), 0, 0])
                    dense = scale * (2.0 * oh * ow * co * kh * kw * ci + 9 * oh * ow * co + 800)
                    w.writerow(row + ["cmsis_nn", round(dense), 0, 0])
                    w.writerow(row + ["csr", 1, 0, 0])  # other kernels are ignored


def test_fit_latency_runs_and_recovers_a_synthetic_model(tmp_path):
    kern = tmp_path / "kernels.csv"
    _synthetic_kernels_csv(kern)
    out = tmp_path / "latency.json"
    out.write_text(json.dumps({"models": {"keep": 1}}))
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "fit_latency"),
                        "--kernels-csv", str(kern), "-o", str(out)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "| cortex-m55 | dtmm | window |" in r.stdout
    data = json.loads(out.read_text())
    assert data["models"] == {"keep": 1}  # other keys survive a refit
    assert sorted(data["conv_models"]) == ["cortex-m4", "cortex-m55"]
    for t in data["conv_models"]:
        for kernel, classes in data["conv_models"][t].items():
            for cls, m in classes.items():
                if m["fit"]["rows"] == 0:  # a class without rows gets the kernel-wide fit
                    continue
                assert m["fit"]["median_abs_err"] < 0.02, (t, kernel, cls, m)


def test_fit_latency_rejects_a_csv_without_shapes(tmp_path):
    bad = tmp_path / "k.csv"
    bad.write_text("target,layer,c_in,sparsity,kernel,instructions\n"
                   "cortex-m4,L1,3,0,dtmm,100\n")
    out = tmp_path / "latency.json"
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "fit_latency"),
                        "--kernels-csv", str(bad), "-o", str(out)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode != 0 and "missing columns" in r.stderr
    assert not out.exists()


def test_fit_latency_fits_block_rows_into_their_own_class(tmp_path):
    """bench/kernels rows with a `block` column (B; 0 = filterlets): the block-sparse
    1x1 rows, and only they, give the pointwise_blocks class; a target without
    enough of them gets no block model (so the converter never picks B < C_in for
    speed there)."""
    kern = tmp_path / "kernels.csv"
    _synthetic_kernels_csv(kern)
    rows = list(csv.reader(open(kern)))
    head = rows[0] + ["block"]
    out_rows = [r + ["0"] for r in rows[1:]]
    # block rows on cortex-m4 only: kept blocks x B MACs at 1.1, a per-block cost
    for oh, ow in ((4, 4), (8, 8), (16, 16), (10, 6)):
        for ci in (32, 64, 128):
            for co in (16, 64):
                for b in (8, 16, 32):
                    if b >= ci:
                        continue
                    for sp in (0.0, 0.5, 0.75, 0.9):
                        s = latency.ConvShape.from_sparsity(oh, ow, ci, co, 1, 1, sp, block=b)
                        assert latency.path_class("dtmm", s) == latency.BLOCK_CLASS
                        y = 1.1 * s.kept * b * oh * ow + 7 * s.kept * oh * ow + 30 * co + 900
                        base = ["cortex-m4", "blk", "blocks", oh, ow, ci, co, 1, 1, 1, 1, 1, 1,
                                "SAME", oh, ow, f"{sp:.2f}"]
                        out_rows.append(base + ["dtmm", round(y), 0, 0, b])
                        out_rows.append(base + ["cmsis_nn", round(2 * oh * ow * co * ci), 0,
                                                0, b])
    with open(kern, "w", newline="") as f:
        csv.writer(f).writerows([head] + out_rows)
    out = tmp_path / "latency.json"
    out.write_text("{}")
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "fit_latency"),
                        "--kernels-csv", str(kern), "-o", str(out)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    models = json.loads(out.read_text())["conv_models"]
    m4 = models["cortex-m4"]["dtmm"]
    assert m4[latency.BLOCK_CLASS]["fit"]["rows"] > 50
    assert m4[latency.BLOCK_CLASS]["fit"]["median_abs_err"] < 0.02
    # the filterlet classes are fitted without the block rows: still exact
    assert m4["pointwise"]["fit"]["median_abs_err"] < 0.02
    assert latency.BLOCK_CLASS not in models["cortex-m55"]["dtmm"]
