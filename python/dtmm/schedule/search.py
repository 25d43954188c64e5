"""Per-layer filterlet ratio alpha and per-group filter ratio beta under flash,
SRAM, latency and importance budgets.

    prob = Problem(graph, importance, Budgets(flash=64 << 10, sram=32 << 10),
                   objective="loss")
    plan = schedule(prob)               # ours: greedy marginal utility + exchange
    plan_sa = anneal(prob, seed=0)      # the original DTMM simulated annealing
    plan.alpha, plan.beta, plan.flash, plan.loss

Objective (docs/scheduler.md):

* ``objective="loss"`` (the pipeline's default, "most accurate model that fits"):
  minimize the importance removed, ``loss``, subject to flash <= F, SRAM <= S and
  (if given) latency <= T.
* ``objective="latency"``: minimize modeled latency subject to flash <= F,
  SRAM <= S and loss <= L.

``loss`` (0..1) measures the importance the plan removes: per group, the filters
of lowest group importance go first (beta), then, inside each kept filter set,
the filterlets of lowest importance (alpha); a conv whose input channels lose
filters upstream loses that fraction of its remaining importance. Default
(importance_norm="layer"): 1 - geometric mean over convs of the fraction of their
own importance each keeps; "global": the share of raw importance removed.
Ratios live on a grid of ``step`` (0.05, the original's move size).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from dtmm.core.errors import DtmmError
from dtmm.core.rounding import kept_filterlets, kept_filters, n_pruned
from dtmm.schedule.cost import ALIGN, Config, FlashModel, LatencyModel, SramModel, fmt_bytes
from dtmm.schedule.graph import Graph

RESOURCES = ("flash", "sram", "latency", "loss")


@dataclass
class Budgets:
    flash: float | None = None     # bytes of the DTMM .tflite
    sram: float | None = None      # peak arena bytes
    latency: float | None = None   # modeled instructions
    loss: float | None = None      # fraction of total importance removed

    def get(self, r):
        return getattr(self, r)


@dataclass
class Plan:
    alpha: np.ndarray
    beta: np.ndarray
    flash: float
    sram: float
    latency: float
    loss: float
    objective: float
    feasible: bool
    seconds: float
    evaluations: int
    method: str
    trace: list = field(default_factory=list)   # (seconds, best feasible objective)
    # block ratio per FC of the graph (fraction of its B-blocks pruned; 0 without one)
    block: np.ndarray = field(default_factory=lambda: np.zeros(0))
    # block ratio per conv of the graph (1x1 convs with one; 0 elsewhere)
    conv_block: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @property
    def config(self) -> Config:
        return Config(self.alpha.copy(), self.beta.copy())

    def grid(self, prob: "Problem") -> np.ndarray:
        """This plan as one grid index per variable of prob."""
        val = {"a": self.alpha, "b": self.beta, "k": self.block, "c": self.conv_block}
        return np.array([round(val[k][i] / prob.step) for k, i in prob.vars], int)

    def summary(self) -> dict:
        return {k: (float(getattr(self, k)) if not isinstance(getattr(self, k), bool)
                    else getattr(self, k))
                for k in ("flash", "sram", "latency", "loss", "objective", "feasible",
                          "seconds", "evaluations")}


class Problem:
    """A scheduling problem: graph + cost models + importance + budgets.

    importance: per conv, (filter_importance [C_out], filterlet_importance
    [C_out, K]) as non-negative arrays (any common scale across layers).
    """

    def __init__(self, graph: Graph, importance, budgets: Budgets,
                 objective: str = "loss", flash: FlashModel | None = None,
                 sram: SramModel | None = None, latency: LatencyModel | None = None,
                 step: float = 0.05, alpha_max: float = 0.95, beta_max: float = 0.9,
                 prune_filterlets: bool = True, prune_filters: bool = True,
                 kicks: int = 60, ils_seconds: float = 3.0,
                 importance_norm: str = "layer", blocks=None, conv_blocks=None):
        if importance_norm not in ("layer", "global"):
            raise DtmmError(f"importance_norm must be 'layer' or 'global', got "
                            f"{importance_norm!r}")
        self.importance_norm = importance_norm
        # what filter_only() needs to build this problem without block ratios
        self._args = (graph, importance, budgets)
        self._kwargs = dict(objective=objective, flash=flash, sram=sram, latency=latency,
                            step=step, alpha_max=alpha_max, beta_max=beta_max,
                            prune_filterlets=prune_filterlets,
                            prune_filters=prune_filters, kicks=kicks,
                            ils_seconds=ils_seconds, importance_norm=importance_norm)
        self.kicks = kicks
        self.ils_seconds = ils_seconds
        if objective not in ("loss", "latency"):
            raise DtmmError(f"objective must be 'loss' or 'latency', got {objective!r}")
        # blocks: schedule.blocks.FcBlockCosts -- a block ratio per FC it prices
        self.blocks = blocks if blocks is not None and blocks.fcs else None
        # conv_blocks: schedule.blocks.ConvBlockCosts -- a block ratio per 1x1 conv
        self.conv_blocks = conv_blocks if conv_blocks is not None and conv_blocks.convs \
            else None
        if not graph.convs and self.blocks is None:
            raise DtmmError("the model has no CONV_2D layer to prune")
        self.graph = graph
        self.budgets = budgets
        self.objective = objective
        # By default the plan follows the converter's default rule: a conv is DTMM
        # where smaller and modeled faster on every target (prefer="speed").
        self.latency = latency or LatencyModel(graph)
        self.flash = flash or FlashModel(graph, speed=self.latency)
        self.sram = sram or SramModel(graph)
        self.step = step
        n_a = int(round(alpha_max / step))
        n_b = int(round(beta_max / step))
        # Decision variables: ('a', conv) for each conv with K > 1 (for 1x1 convs a
        # filterlet is the whole filter: alpha folds into beta), ('b', group) for
        # each group that may lose filters.
        self.vars = []
        self.vmax = []
        for c in graph.convs:
            if c.k > 1 and prune_filterlets:
                self.vars.append(("a", c.index))
                self.vmax.append(n_a)
        for gr in graph.groups:
            if gr.frozen is None and prune_filters:
                self.vars.append(("b", gr.index))
                self.vmax.append(n_b)
        if self.blocks is not None:
            if abs(self.blocks.step - step) > 1e-12:
                raise DtmmError(f"block costs are on a grid of {self.blocks.step}, the "
                                f"problem on {step}")
            # ('k', FC index): the FC's block ratio (docs/scheduler.md)
            for j, n in zip(self.blocks.fcs, self.blocks.n_max):
                self.vars.append(("k", j))
                self.vmax.append(n)
        if self.conv_blocks is not None:
            if abs(self.conv_blocks.step - step) > 1e-12:
                raise DtmmError(f"conv block costs are on a grid of {self.conv_blocks.step}"
                                f", the problem on {step}")
            # ('c', conv index): the 1x1 conv's block ratio
            for l, n in zip(self.conv_blocks.convs, self.conv_blocks.n_max):
                self.vars.append(("c", l))
                self.vmax.append(n)
        self.vmax = np.array(self.vmax, int)
        if len(self.vars) == 0:
            raise DtmmError("nothing to prune: every conv is 1x1 in a frozen group")
        self._loss_tables(importance, n_a, n_b)
        self.exact_sram = True      # False: planner lower bound while searching
        self._sram_cache = {}
        self._compile()
        self.dense = self.evaluate(np.zeros(len(self.vars), int))
        self.evaluations = 0

    def filter_only(self):
        """The same problem without block ratios (None if it has none, or no conv
        to prune without them). Its variables are this problem's first ones: the
        block ratios come last."""
        if (self.blocks is None and self.conv_blocks is None) or not self.graph.convs:
            return None
        try:
            return Problem(*self._args, **self._kwargs)
        except DtmmError:  # e.g. nothing to prune but the FCs
            return None

    # -- importance ---------------------------------------------------------------
    def _loss_tables(self, importance, n_a, n_b):
        g = self.graph
        if len(importance) != len(g.convs):
            raise DtmmError(f"importance has {len(importance)} entries for "
                            f"{len(g.convs)} convs")
        fl = []
        for c, (f_imp, fl_imp) in zip(g.convs, importance):
            fl_imp = np.asarray(fl_imp, float).reshape(c.c_out, c.k)
            f_imp = np.asarray(f_imp, float).reshape(c.c_out)
            if (fl_imp < 0).any() or (f_imp < 0).any() or not np.isfinite(fl_imp).all():
                raise DtmmError(f"importance of conv {c.name!r} must be finite and >= 0")
            if self.importance_norm == "layer":
                # Each layer's importance sums to 1: Taylor/magnitude scores are not
                # comparable across layers (BatchNorm rescales them), ranks within a
                # layer are.
                tot = fl_imp.sum()
                fl_imp = fl_imp / tot if tot > 0 else np.full_like(fl_imp, 1.0 / fl_imp.size)
                ftot = f_imp.sum()
                f_imp = f_imp / ftot if ftot > 0 else np.full_like(f_imp, 1.0 / f_imp.size)
            fl.append((f_imp, fl_imp))
        total = sum(x[1].sum() for x in fl)
        if self.blocks is not None and self.importance_norm == "global":
            total += sum(self.blocks.total)
        if self.conv_blocks is not None and self.importance_norm == "global":
            total += sum(self.conv_blocks.total)
        total = total or 1.0
        if self.blocks is not None:
            # [n_fc, n_ratio]: share of the layer's (layer) or of all (global)
            # importance the block ratio removes
            width = max(self.blocks.n_max) + 1
            rows = []
            for rm, tot in zip(self.blocks.removed, self.blocks.total):
                if self.importance_norm == "layer":
                    r = rm / tot if tot > 0 else np.zeros(len(rm))
                else:
                    r = rm / total
                rows.append(np.pad(r, (0, width - len(r)), mode="edge"))
            self._ktab = np.array(rows)
        if self.conv_blocks is not None:
            width = max(self.conv_blocks.n_max) + 1
            rows = []
            for rm, tot in zip(self.conv_blocks.removed, self.conv_blocks.total):
                if self.importance_norm == "layer":
                    r = rm / tot if tot > 0 else np.zeros(len(rm))
                else:
                    r = rm / total
                rows.append(np.pad(r, (0, width - len(r)), mode="edge"))
            self._ctab = np.array(rows)
        group_rank = []
        for gr in g.groups:
            s = sum(fl[i][0] for i in gr.convs)
            group_rank.append(np.argsort(s, kind="stable"))   # least important first
        self.tables = []
        for c, (_, fl_imp) in zip(g.convs, fl):
            order = group_rank[c.group]
            t = np.zeros((n_b + 1, n_a + 1))
            for ib in range(n_b + 1):
                co = kept_filters(c.c_out, ib * self.step)
                removed, kept = order[:c.c_out - co], order[c.c_out - co:]
                base = fl_imp[removed].sum()
                vals = np.sort(fl_imp[kept].reshape(-1))
                csum = np.concatenate([[0.0], np.cumsum(vals)])
                for ia in range(n_a + 1):
                    nk = kept_filterlets(co, c.k, ia * self.step)
                    t[ib, ia] = base + csum[co * c.k - nk]
            self.tables.append(t / total)
        self._layer_total = np.array([x[1].sum() / total for x in fl])
        if self.blocks is not None:
            self._ktotal = np.array([1.0 if self.importance_norm == "layer" else t / total
                                     for t in self.blocks.total])

    # -- evaluation -----------------------------------------------------------------
    def config(self, x) -> Config:
        cfg = Config.dense(self.graph)
        for (kind, i), v in zip(self.vars, x):
            if kind == "a":
                cfg.alpha[i] = v * self.step
            elif kind == "b":
                cfg.beta[i] = v * self.step
        return cfg

    def block_latency(self, x) -> dict:
        """{target: modeled instructions the plan's FC block ratios add (negative:
        save) to LatencyModel's dense FCs}, at grid point x."""
        out = {t: 0.0 for t in self.latency.targets}
        if self.blocks is not None:
            ik = np.asarray(x, int)[self._xk]
            rows = np.arange(len(ik))
            for t, tab in self._klat.items():
                if t in out:
                    out[t] = float(tab[rows, ik].sum())
        return out

    def conv_block_latency(self, x) -> dict:
        """{target: modeled instructions the plan's 1x1 conv block ratios add
        (negative: save) to LatencyModel's dense convs}, at grid point x."""
        out = {t: 0.0 for t in self.latency.targets}
        if self.conv_blocks is not None:
            ic = np.asarray(x, int)[self._xc]
            rows = np.arange(len(ic))
            for t, tab in self._clat.items():
                if t in out:
                    out[t] = float(tab[rows, ic].sum())
        return out

    def conv_block_ratios(self, x) -> np.ndarray:
        """Block ratio per conv of the graph at grid point x (0 where it has none)."""
        out = np.zeros(len(self.graph.convs))
        for (kind, i), v in zip(self.vars, x):
            if kind == "c":
                out[i] = v * self.step
        return out

    def block_ratios(self, x) -> np.ndarray:
        """Block ratio per FC of the graph at grid point x (0 where it has none)."""
        out = np.zeros(len(self.graph.fcs))
        for (kind, i), v in zip(self.vars, x):
            if kind == "k":
                out[i] = v * self.step
        return out

    def _compile(self):
        """Arrays for a vectorized evaluate(); test_schedule_cost checks it against
        the cost models themselves."""
        g, st = self.graph, self.step
        n_b = self.tables[0].shape[0] if self.tables else 1
        self._kf = [np.array([kept_filters(gr.c_out, i * st) for i in range(n_b)])
                    for gr in g.groups]
        width = max([len(k) for k in self._kf] or [1])
        self._kf2 = np.array([np.pad(k, (0, width - len(k)), mode="edge") for k in self._kf]
                             ).reshape(len(self._kf), width)
        self._G = np.arange(len(g.groups))
        self._grp = np.array([c.group for c in g.convs], int)
        self._src = np.array([g.convs[c.in_from].group if c.in_from is not None else -1
                              for c in g.convs], int)
        self._k = np.array([c.k for c in g.convs], int)
        self._cin = np.array([c.c_in for c in g.convs], int)
        self._csrc = np.array([g.groups[s].c_out if s >= 0 else 1 for s in self._src], int)
        self._gc = np.array([gr.c_out for gr in g.groups], float)
        self._gscaled = np.array([gr.scaled_const_bytes for gr in g.groups], float)
        self._va = np.array([i for k, i in self.vars if k == "a"], int)
        self._vb = np.array([i for k, i in self.vars if k == "b"], int)
        self._xa = np.array([j for j, (k, _) in enumerate(self.vars) if k == "a"], int)
        self._xb = np.array([j for j, (k, _) in enumerate(self.vars) if k == "b"], int)
        self._tail_const = self.sram.tail_const()
        self._tab = np.stack([t for t in self.tables]) if self.tables else \
            np.zeros((0, 1, 1))  # [L, n_b, n_a]
        self._L = np.arange(len(g.convs))
        self._vk = np.array([i for k, i in self.vars if k == "k"], int)
        self._xk = np.array([j for j, (k, _) in enumerate(self.vars) if k == "k"], int)
        if self.blocks is not None:
            b = self.blocks
            width = self._ktab.shape[1]
            pad = lambda rows: np.array([np.pad(r, (0, width - len(r)), mode="edge")  # noqa: E731
                                         for r in rows], float)
            self._kflash = pad(b.flash_delta)                        # [F, n_ratio]
            self._klat = {t: pad(v) for t, v in b.latency_delta.items()}
            self._krw = pad(b.rewritten).astype(bool)
            # An FC whose input rows are a group's channels: block ratio or that
            # group's filter ratio, not both (filter removal would cut its blocks
            # apart); with the filter ratio it loses those rows' importance.
            self._kgrp = np.array([g.convs[g.fcs[j].in_from].group
                                   if g.fcs[j].in_from is not None else -1 for j in b.fcs], int)
        self._xc = np.array([j for j, (k, _) in enumerate(self.vars) if k == "c"], int)
        if self.conv_blocks is not None:
            b = self.conv_blocks
            width = self._ctab.shape[1]
            pad = lambda rows: np.array([np.pad(r, (0, width - len(r)), mode="edge")  # noqa: E731
                                         for r in rows], float)
            self._cflash = pad(b.flash_delta)                        # [C, n_ratio]
            self._clat = {t: pad(v) for t, v in b.latency_delta.items()}
            self._crw = pad(b.rewritten).astype(bool)
            self._cconv = np.array(b.convs, int)
            # a 1x1 conv with a block ratio: filter ratio 0 on the group of its
            # C_out and on the group of its C_in (filter removal cuts its blocks)
            self._cown = np.array([g.convs[l].group for l in b.convs], int)
            self._cin_grp = np.array([g.convs[g.convs[l].in_from].group
                                      if g.convs[l].in_from is not None else -1
                                      for l in b.convs], int)

    def evaluate(self, x) -> dict:
        """flash, sram, latency, loss of one grid point x (one int per variable)."""
        m = self.evaluate_batch(np.asarray(x)[None, :])
        return {k: float(v[0]) for k, v in m.items()}

    def evaluate_batch(self, X) -> dict:
        """The same for a batch X [B, n_vars]: arrays of B values each."""
        X = np.asarray(X, int)
        B = X.shape[0]
        self.evaluations = getattr(self, "evaluations", 0) + B
        L = len(self.graph.convs)
        ia = np.zeros((B, L), int)
        ib = np.zeros((B, len(self.graph.groups)), int)
        ia[:, self._va] = X[:, self._xa]
        ib[:, self._vb] = X[:, self._xb]
        kf = self._kf2[self._G[None, :], ib].reshape(B, len(self.graph.groups))  # [B, G]
        co = kf[:, self._grp]                                   # [B, L]
        src = np.maximum(self._src, 0)
        ci = np.where(self._src >= 0, kf[:, src] * self._cin // self._csrc, self._cin)
        n = co * self._k
        nk = n - n_pruned(ia * self.step, n)
        scale = kf / self._gc
        if L:
            modeled = self.latency.conv_modeled(co, ci, nk)
            per, rewritten = self.flash.conv_bytes(
                co, ci, nk,
                modeled if getattr(self.flash, "speed", None) is self.latency else None)
        else:
            modeled = {t: (np.zeros((B, 0)), np.zeros((B, 0))) for t in self.latency.targets}
            per, rewritten = np.zeros((B, 0)), np.zeros((B, 0), bool)
        conv_rw = rewritten.any(axis=1)
        lat = self.latency.batch(co, ci, nk, rewritten, scale, modeled)
        if self.conv_blocks is not None:
            # 1x1 conv block ratios: the converter's bytes and instructions against
            # the dense conv (with a block ratio > 0 the conv's groups keep every
            # filter, so the filterlet models price it dense)
            ic = X[:, self._xc]                                           # [B, C]
            crows = np.arange(len(self._xc))[None, :]
            crw = self._crw[crows, ic]
            per = per + 0.0
            per[:, self._cconv] += self._cflash[crows, ic]
            rewritten = rewritten.copy()
            rewritten[:, self._cconv] |= crw
            conv_rw = conv_rw | crw.any(axis=1)
            for t, tab in self._clat.items():
                if t in self.latency.targets:
                    lat = lat + tab[crows, ic].sum(axis=1)
            cconf = (ib[:, self._cown] > 0) | np.where(
                self._cin_grp >= 0, ib[:, np.maximum(self._cin_grp, 0)] > 0, False)
            cconflict = ((ic > 0) & cconf).any(axis=1)
            cown = self._ctab[crows, ic]                                  # [B, C]
        flash = (self.flash.base + per.sum(axis=1) + scale @ self._gscaled
                 + self.flash.opcode_bytes * conv_rw)
        if self.conv_blocks is not None:
            flash = np.where(cconflict, np.inf, flash)  # not a plan: never feasible
        own = self._tab[self._L[None, :], ib[:, self._grp], ia]          # [B, L]
        # Removing a group's filters also removes those input channels of the
        # convs that consume them: count that share of their remaining
        # importance too (importance spread evenly over input channels).
        fin = np.where(self._src >= 0, 1.0 - kf[:, src] / self._gc[src], 0.0)
        if self.blocks is not None:
            # FC block ratios: the converter's bytes and instructions, the block
            # importance removed (FCs with a block ratio keep their input rows)
            ik = X[:, self._xk]                                           # [B, F]
            rows = np.arange(len(self._xk))[None, :]
            flash = flash + self._kflash[rows, ik].sum(axis=1) + \
                self.blocks.opcode_bytes * self._krw[rows, ik].any(axis=1)
            kfin = np.zeros(ik.shape)                                     # [B, F]
            if (self._kgrp >= 0).any():
                kg = np.maximum(self._kgrp, 0)
                kfin = np.where(self._kgrp >= 0, 1.0 - kf[:, kg] / self._gc[kg], 0.0)
            conflict = ((ik > 0) & (kfin > 0)).any(axis=1)
            flash = np.where(conflict, np.inf, flash)   # not a plan: never feasible
            for t, tab in self._klat.items():
                if t in self.latency.targets:
                    lat = lat + tab[rows, ik].sum(axis=1)
            kown = self._ktab[rows, ik]                                   # [B, F]
        if self.importance_norm == "layer":
            # 1 - geometric mean over layers of the importance each keeps: gutting
            # one layer costs far more than thinning all a little
            keep = np.maximum((1.0 - own / self._layer_total) * (1.0 - fin), 1e-9)
            if self.blocks is not None:
                keep = np.concatenate([keep, np.maximum((1.0 - kown) * (1.0 - kfin), 1e-9)],
                                      axis=1)
            if self.conv_blocks is not None:
                keep = np.concatenate([keep, np.maximum(1.0 - cown, 1e-9)], axis=1)
            loss = 1.0 - np.exp(np.log(keep).mean(axis=1))
        else:
            loss = (own + (self._layer_total - own) * fin).sum(axis=1)
            if self.blocks is not None:
                loss = loss + kown.sum(axis=1) + (self._ktotal[None, :] - kown) * kfin
            if self.conv_blocks is not None:
                loss = loss + cown.sum(axis=1)
        if not self.exact_sram:
            head = self.sram.head_lower_bound(kf)
        else:
            head = np.empty(B)
            for b in range(B):
                key = tuple(ib[b])
                h = self._sram_cache.get(key)
                if h is None:
                    cfg = Config(np.zeros(len(self.graph.convs)), ib[b] * self.step)
                    h = self._sram_cache[key] = self.sram.head(cfg)
                head[b] = h
        sram = head + self._tail_const + self.sram.conv_tail(co, rewritten).sum(axis=1)
        return {"flash": flash, "sram": sram, "latency": lat, "loss": loss}

    def violation(self, m: dict) -> float:
        """Sum of relative budget overruns (0 when feasible)."""
        v = 0.0
        for r in RESOURCES:
            if r == self.objective:
                continue
            b = self.budgets.get(r)
            if b is not None and m[r] > b:
                v += (m[r] - b) / max(b, 1e-12) if r != "loss" else (m[r] - b) * 10.0
        return v

    def obj(self, m: dict) -> float:
        """Objective in percent: latency as % of dense, loss as % of importance."""
        if self.objective == "latency":
            return 100.0 * m["latency"] / self.dense["latency"]
        return 100.0 * m["loss"]

    def plan(self, x, method, t0, trace) -> Plan:
        m = self.evaluate(x)
        cfg = self.config(x)
        return Plan(cfg.alpha, cfg.beta, m["flash"], m["sram"], m["latency"], m["loss"],
                    self.obj(m), self.violation(m) == 0.0, time.perf_counter() - t0,
                    self.evaluations, method, trace, self.block_ratios(x),
                    self.conv_block_ratios(x))

    # -- feasibility --------------------------------------------------------------
    def check_reachable(self):
        """Raise DtmmError naming the budget that no plan on the grid can meet."""
        most = self.evaluate(self.vmax.copy())
        if self.blocks is not None or self.conv_blocks is not None:
            # a block ratio excludes the filter ratio of the groups it depends on:
            # the smallest of both extremes (each budget on its own)
            kgrp = set(self._kgrp.tolist()) if self.blocks is not None else set()
            cgrp = set(self._cown.tolist()) | set(self._cin_grp.tolist()) \
                if self.conv_blocks is not None else set()
            alt = []
            for keep in ("k", "b"):
                x = self.vmax.copy()
                for j, (k, i) in enumerate(self.vars):
                    if keep == "b":
                        coupled = k == "c" or (
                            k == "k" and self._kgrp[list(self.blocks.fcs).index(i)] >= 0)
                    else:
                        coupled = k == "b" and i in (kgrp | cgrp)
                    if coupled:
                        x[j] = 0
                alt.append(self.evaluate(x))
            most = {r: min(a[r] for a in alt) for r in most}
        for r, what, fmt in (("flash", "flash", fmt_bytes), ("sram", "SRAM", fmt_bytes),
                             ("latency", "latency", lambda v: f"{v:.4g} instructions")):
            b = self.budgets.get(r)
            if b is not None and r != self.objective and most[r] > b:
                noun = {"flash": "smallest reachable model is",
                        "sram": "smallest reachable arena is",
                        "latency": "fastest reachable model takes"}[r]
                raise DtmmError(
                    f"{what} budget {fmt(b)} cannot be met: {noun} {fmt(most[r])} "
                    f"({fmt(most[r] - b)} over)")


# --------------------------------------------------------------------------------
# Baseline: simulated annealing as in the original DTMM scheduler


def anneal(prob: Problem, seed: int = 0, t0: float = 100.0, t_end: float = 0.1,
           k: float = 0.9, moves: int = 100, penalty: float = 1000.0,
           x0=None, exact_sram: bool = True) -> Plan:
    """Simulated annealing: T from t0 down to t_end by factor k, `moves` random
    +-1 grid steps of one variable per temperature, Metropolis acceptance on
    energy = objective (percent) + penalty * relative budget overrun. Returns the
    best feasible state seen (or the least infeasible one)."""
    rng = np.random.default_rng(seed)
    start = time.perf_counter()
    prob.evaluations = 0
    prob.exact_sram = exact_sram
    x = np.zeros(len(prob.vars), int) if x0 is None else np.array(x0, int)
    m = prob.evaluate(x)

    def energy(m):
        return prob.obj(m) + penalty * prob.violation(m)

    e = energy(m)
    best_x, best_key = x.copy(), (prob.violation(m) > 0, prob.violation(m), prob.obj(m))
    trace = []
    T = t0
    while T > t_end:
        for _ in range(moves):
            j = rng.integers(len(x))
            d = 1 if rng.random() < 0.5 else -1
            nv = x[j] + d
            if nv < 0 or nv > prob.vmax[j]:
                continue
            y = x.copy()
            y[j] = nv
            my = prob.evaluate(y)
            ey = energy(my)
            if ey <= e or rng.random() < math.exp(-(ey - e) / T):
                x, e, m = y, ey, my
                key = (prob.violation(m) > 0, prob.violation(m), prob.obj(m))
                if key < best_key:
                    best_x, best_key = x.copy(), key
                    if not key[0]:
                        trace.append((time.perf_counter() - start, key[2]))
        T *= k
    prob.exact_sram = True
    return prob.plan(best_x, "simulated annealing", start, trace)


# --------------------------------------------------------------------------------
# Ours: greedy marginal utility, then pairwise exchange


def schedule(prob: Problem, time_limit: float = 8.0, check: bool = True,
             progress=None) -> Plan:
    """Greedy descent from the dense model along the best ratio of budget progress
    to objective cost, then exchange refinement (move grid steps between
    variables while feasible and better). Deterministic.

    The search sees the planner's lower bound for SRAM (vectorized); the result is
    re-checked with the exact planner and, if it is over, searched again with the
    SRAM budget lowered by the difference."""
    if check:
        prob.check_reachable()
    start = time.perf_counter()
    budget = prob.budgets.sram
    total_evals = 0
    try:
        for _ in range(4):
            prob.exact_sram = False
            plan = _schedule_joint(prob, time_limit, progress, start)
            total_evals += prob.evaluations
            prob.exact_sram = True
            exact = prob.evaluate(plan.grid(prob))
            if budget is None or exact["sram"] <= budget or prob.budgets.sram <= 0:
                break
            prob.budgets.sram -= exact["sram"] - plan.sram + ALIGN
    finally:
        prob.exact_sram = True
        prob.budgets.sram = budget
    x = plan.grid(prob)
    plan = prob.plan(x, plan.method, start, plan.trace)
    plan.evaluations = total_evals
    if check and not plan.feasible:
        raise DtmmError(_infeasible_message(prob, plan))
    return plan


def _schedule_joint(prob: Problem, time_limit: float, progress, start) -> Plan:
    """_schedule_once, and with block ratios also the search of the same problem
    without them (Problem.filter_only), its plan taken into the joint space with
    every block ratio 0: the better of the two. The heuristic alone can end in a
    joint local optimum worse than the filter-only plan; this way it never does."""
    plan = _schedule_once(prob, time_limit, progress, start)
    fo = prob.filter_only()
    if fo is None:
        return plan
    evaluations = prob.evaluations
    fo.exact_sram = prob.exact_sram
    alt = _schedule_once(fo, time_limit, progress, time.perf_counter())
    x = np.zeros(len(prob.vars), int)
    x[:len(fo.vars)] = alt.grid(fo)
    prob.evaluations = evaluations + fo.evaluations
    if _better(prob, prob.evaluate(x), prob.evaluate(plan.grid(prob))):
        return prob.plan(x, alt.method + " (filter-only search)", start, alt.trace)
    return plan


GREEDY_STEPS = (1, 2, 3, 4, 6, 8, 12)
# An FC's DTMM form pays only from a high block sparsity on (the converter's speed
# rule: 10 % faster than arm_fully_connected_s8 on every target; 0.85 on a 128x128
# layer): block ratios also take steps across the whole range.
BLOCK_GREEDY_STEPS = GREEDY_STEPS + (14, 16, 17, 18, 19)


def _schedule_once(prob: Problem, time_limit: float, progress, start) -> Plan:
    prob.evaluations = 0
    nv = len(prob.vars)
    x = np.zeros(nv, int)
    m = prob.evaluate(x)
    trace = []
    scale = {r: (prob.budgets.get(r) or prob.dense[r] or 1.0) for r in RESOURCES}

    def violation(M):
        """Vectorized Problem.violation over a batch of metrics."""
        v = np.zeros(len(M["loss"]))
        for r in RESOURCES:
            b = prob.budgets.get(r)
            if r == prob.objective or b is None:
                continue
            over = np.maximum(M[r] - b, 0.0)
            v += over * 10.0 if r == "loss" else over / max(b, 1e-12)
        return v

    def objective(M):
        if prob.objective == "latency":
            return 100.0 * M["latency"] / prob.dense["latency"]
        return 100.0 * M["loss"]

    # Phase 1 -- greedy: from the dense model, take the single step (one variable
    # +1 ... +GREEDY_STEPS[-1] grid steps) with the best ratio of progress (violated
    # budgets reduced, weighted by 1/budget; in latency mode also latency itself)
    # to importance removed. Loss mode stops at the first feasible point; latency
    # mode goes on while the importance budget allows. The long steps matter: a
    # conv stays dense (no byte or instruction saved) until its filterlet sparsity
    # makes the DTMM form smaller and modeled faster, so short steps see no gain.
    steps = [(j, d) for j in range(nv)
             for d in (BLOCK_GREEDY_STEPS if prob.vars[j][0] in ("k", "c") else GREEDY_STEPS)]

    def hard_violation(mm):
        return sum(max(mm[r] - prob.budgets.get(r), 0.0) / max(prob.budgets.get(r), 1e-12)
                   for r in ("flash", "sram", "latency")
                   if r != prob.objective and prob.budgets.get(r) is not None)

    while True:
        # stage A: meet flash/SRAM(/latency) budgets; stage B (latency mode):
        # spend the importance budget on latency
        stage_a = hard_violation(m) > 0
        if not stage_a and prob.objective == "loss":
            break
        ok = [(j, d) for j, d in steps if x[j] + d <= prob.vmax[j]]
        if not ok:
            break
        Y = np.repeat(x[None, :], len(ok), axis=0)
        for row, (j, d) in enumerate(ok):
            Y[row, j] += d
        M = prob.evaluate_batch(Y)
        gain = np.zeros(len(ok))
        for r in ("flash", "sram", "latency"):
            b = prob.budgets.get(r)
            if r == prob.objective:
                if not stage_a:
                    gain += (m[r] - M[r]) / prob.dense[r]
            elif b is not None and m[r] > b:
                gain += (m[r] - np.maximum(M[r], b)) / scale[r]
        cost = np.maximum(M["loss"] - m["loss"], 0.0) + 1e-9
        ratio = np.where(gain > 0, gain / cost, -np.inf)
        if not stage_a and prob.budgets.loss is not None:
            ratio[M["loss"] > prob.budgets.loss] = -np.inf
        best = int(np.argmax(ratio))
        if not np.isfinite(ratio[best]):
            break
        x = Y[best]
        m = {k: float(v[best]) for k, v in M.items()}
        if progress is not None:
            progress(len(ok))
    if prob.violation(m) == 0:
        trace.append((time.perf_counter() - start, prob.obj(m)))

    x, m = _exchange(prob, x, m, start, time_limit, trace, progress, violation, objective)
    # Phase 3 -- iterated local search: kick the local optimum (a few random
    # +-1..2 steps, fixed seed), exchange again, keep the better one; until the
    # time budget or `kicks` kicks.
    rng = np.random.default_rng(0)
    for _ in range(prob.kicks):
        if time.perf_counter() - start >= min(time_limit, prob.ils_seconds):
            break
        y = x.copy()
        for j in rng.choice(nv, size=min(3, nv), replace=False):
            y[j] = int(np.clip(y[j] + rng.choice([-2, -1, 1, 2]), 0, prob.vmax[j]))
        my = prob.evaluate(y)
        y, my = _exchange(prob, y, my, start, time_limit, [], progress, violation, objective)
        if _better(prob, my, m):
            x, m = y, my
            if prob.violation(m) == 0:
                trace.append((time.perf_counter() - start, prob.obj(m)))
    return prob.plan(x, "greedy + exchange", start, trace)


def _better(prob, ma, mb) -> bool:
    """Feasible beats infeasible; then less overrun, or lower objective."""
    va, vb = prob.violation(ma), prob.violation(mb)
    if (va > 0) != (vb > 0):
        return va == 0
    if va > 0:
        return va < vb - 1e-12
    return prob.obj(ma) < prob.obj(mb) - 1e-9


def _exchange(prob, x, m, start, time_limit, trace, progress, violation, objective):
    nv = len(x)
    # Phase 2 -- exchange: all moves that take 1-2 grid steps from one variable
    # and give 1-2 to another (or change one variable by one step), evaluated in
    # one batch; apply the best one (feasible first, then lower objective);
    # repeat until none improves.
    moves = []
    for i in range(nv):
        moves += [(i, i, 1, 0), (i, i, -1, 0)]
        for j in range(nv):
            if i != j:
                moves += [(i, j, -1, 1), (i, j, -1, 2), (i, j, -2, 1), (i, j, -2, 2)]
    mv = np.array(moves)
    delta = np.zeros((len(mv), nv), int)
    delta[np.arange(len(mv)), mv[:, 0]] += mv[:, 2]
    delta[np.arange(len(mv)), mv[:, 1]] += mv[:, 3]
    while time.perf_counter() - start < time_limit:
        Y = x[None, :] + delta
        valid = ((Y >= 0) & (Y <= prob.vmax[None, :])).all(axis=1)
        Y = Y[valid]
        if len(Y) == 0:
            break
        M = prob.evaluate_batch(Y)
        v = violation(M)
        o = objective(M)
        v0, o0 = prob.violation(m), prob.obj(m)
        if v0 > 0:
            score = np.where(v < v0 - 1e-12, v, np.inf)
            if (v == 0).any():
                score = np.where(v == 0, -1e9 + o, np.inf)
        else:
            score = np.where((v == 0) & (o < o0 - 1e-9), o, np.inf)
        best = int(np.argmin(score))
        if progress is not None:
            progress(len(Y))
        if not np.isfinite(score[best]):
            break
        x = Y[best]
        m = {k: float(val[best]) for k, val in M.items()}
        if prob.violation(m) == 0:
            trace.append((time.perf_counter() - start, prob.obj(m)))
    return x, m


def _infeasible_message(prob: Problem, plan: Plan) -> str:
    parts = []
    for r in RESOURCES:
        b = prob.budgets.get(r)
        v = getattr(plan, r)
        if r == prob.objective or b is None or v <= b:
            continue
        if r in ("flash", "sram"):
            parts.append(f"{r if r == 'flash' else 'SRAM'} budget {fmt_bytes(b)} cannot be "
                         f"met together with the other budgets: best plan needs "
                         f"{fmt_bytes(v)} ({fmt_bytes(v - b)} over)")
        elif r == "loss":
            parts.append(f"importance budget {100 * b:.2f} % cannot be met: best plan "
                         f"removes {100 * v:.2f} % ({100 * (v - b):.2f} points over)")
        else:
            parts.append(f"latency budget {b:.4g} cannot be met: best plan needs {v:.4g}")
    return "; ".join(parts) or "no plan meets the budgets"
