"""Scheduler comparison: the original DTMM simulated annealing vs ours
(greedy marginal utility + batched exchange + iterated local search) on random
20-conv problems with the same budgets.

    PYTHONPATH=python .venv/bin/python bench/scheduler/run.py --out bench/scheduler/out

For each problem and objective: best feasible objective, wall time, evaluations,
and the objective-vs-time trace of both. Writes scheduler.csv, scheduler.md and
scheduler.png. Objective: 'loss' = % of total filterlet importance removed
(flash <= 45 % of dense, SRAM <= 80 % of dense); 'latency' = modeled latency in %
of dense (flash <= 50 %, SRAM <= 80 %, importance removed <= 15 %).
"""

from __future__ import annotations

import argparse
import csv
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "python"))

from dtmm.schedule.search import Budgets, Problem, anneal, schedule  # noqa: E402
from dtmm.schedule.synthetic import random_problem_parts  # noqa: E402


def problem(seed, objective, n_layers):
    g, imp = random_problem_parts(seed, n_layers)
    d = Problem(g, imp, Budgets()).dense
    if objective == "loss":
        b = Budgets(flash=0.45 * d["flash"], sram=0.8 * d["sram"])
    else:
        b = Budgets(flash=0.5 * d["flash"], sram=0.8 * d["sram"], loss=0.15)
    return Problem(g, imp, b, objective=objective), len(g.convs), len(g.groups)


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--problems", type=int, default=4)
    ap.add_argument("--layers", type=int, default=20)
    ap.add_argument("--sa-seeds", type=int, default=1, help="SA runs per problem (best kept)")
    args = ap.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    rows, traces = [], []
    for seed in range(args.problems):
        for objective in ("loss", "latency"):
            prob, n_conv, n_grp = problem(seed, objective, args.layers)
            sas = [anneal(prob, seed=s) for s in range(args.sa_seeds)]
            sa = min(sas, key=lambda p: (not p.feasible, p.objective))
            sa_time = sum(p.seconds for p in sas)
            ours = schedule(prob)
            for name, p, t in (("SA", sa, sa_time), ("ours", ours, ours.seconds)):
                rows.append({"problem": seed, "objective": objective, "convs": n_conv,
                             "variables": len(prob.vars), "method": name,
                             "feasible": p.feasible, "best_objective": round(p.objective, 4),
                             "seconds": round(t, 3), "evaluations": p.evaluations,
                             "flash_B": round(p.flash), "sram_B": round(p.sram),
                             "loss_pct": round(100 * p.loss, 3),
                             "latency_pct": round(100 * p.latency / prob.dense["latency"], 2)})
            traces.append((seed, objective, sa.trace, ours.trace))
            print(f"problem {seed} {objective:>7}: SA {sa.objective:7.3f} "
                  f"({'feasible' if sa.feasible else 'INFEASIBLE'}, {sa_time:.2f} s) | ours "
                  f"{ours.objective:7.3f} ({'feasible' if ours.feasible else 'INFEASIBLE'}, "
                  f"{ours.seconds:.2f} s)", flush=True)
    with open(os.path.join(args.out, "scheduler.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    with open(os.path.join(args.out, "scheduler.md"), "w") as f:
        f.write("| problem | objective | SA best | SA s | ours best | ours s | ours better by |\n")
        f.write("|---|---|---|---|---|---|---|\n")
        for i in range(0, len(rows), 2):
            sa, us = rows[i], rows[i + 1]
            sa_txt = f"{sa['best_objective']:.3f}" + ("" if sa["feasible"] else " (infeasible)")
            gain = (f"{100 * (sa['best_objective'] - us['best_objective']) / sa['best_objective']:.1f} %"
                    if sa["feasible"] else "SA infeasible")
            f.write(f"| {sa['problem']} | {sa['objective']} | {sa_txt} | {sa['seconds']:.2f} | "
                    f"{us['best_objective']:.3f} | {us['seconds']:.2f} | {gain} |\n")
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(traces)
    cols = 4
    rows_n = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows_n, cols, figsize=(4 * cols, 3 * rows_n), squeeze=False)
    for ax, (seed, objective, tsa, tours) in zip(axes.flat, traces):
        for tr, lab, st in ((tsa, "SA (original)", "-"), (tours, "ours", "-")):
            if tr:
                t, o = zip(*tr)
                ax.step(t, o, where="post", ls=st, label=lab, marker=".")
        ax.set_title(f"problem {seed}, {objective}", fontsize=9)
        ax.set_xscale("log")
        from matplotlib.ticker import NullFormatter
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("seconds")
        ax.set_ylabel("% importance removed" if objective == "loss" else "% of dense latency")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.suptitle("best feasible objective vs time (lower is better)")
    fig.tight_layout()
    fig.savefig(os.path.join(args.out, "scheduler.png"), dpi=100)
    print(f"wrote {args.out}/scheduler.csv, scheduler.md, scheduler.png")


if __name__ == "__main__":
    main()
