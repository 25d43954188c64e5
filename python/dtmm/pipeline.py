"""End to end: trained Keras CNN + dataset + device budgets -> the most accurate
pruned model that fits, as int8 .tflite and DTMM .tflite.

    from dtmm import pipeline
    res = pipeline.prune("model.keras", data="fashion-mnist", flash="64KiB",
                         sram="32KiB", max_drop=1.0, out_dir="out")
    res.report["pruned"]["int8_accuracy"], res.report["pruned"]["flash_bytes"]

Steps, each a function: dense int8 (`to_int8`, `int8_accuracy`) -> importance
(Taylor, `dtmm.prune`) -> `build_problem` -> `plan_and_fit`: schedule (per-layer
alpha/beta minimizing the importance removed under the flash and SRAM budgets,
`dtmm.schedule`), `apply_plan` (masks, filter surgery), `finetune_and_convert`
(masked fine-tuning -> int8 .tflite -> `dtmm.convert`), re-planned with a tighter
budget while the real file is over -> extra epochs for accuracy (the same
`finetune_and_convert`) -> verification -> `make_report`, `plot_report`. `demo`
trains a small CNN and runs `prune`. See docs/scheduler.md.

The defaults of `prune` and `demo` are the command line's. Outputs are written
atomically. Nothing here changes process state (environment, warning filters, file
descriptors, matplotlib's backend); pass `quiet=` a context manager factory to run
the TFLite converter's chatter through it (the CLI does).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
import time
from dataclasses import dataclass

import numpy as np

from dtmm.core import size
from dtmm.core.errors import DtmmError
from dtmm.core.tflite import write_atomic

DEFAULT_SEED = 0
DEFAULT_TARGET = "any"  # dtmm.core.latency.DEFAULT_TARGET (this module imports lazily)


# --------------------------------------------------------------------------------
# int8 conversion and evaluation


def to_int8(model, x_rep: np.ndarray, n_rep: int = 200, quiet=None) -> bytes:
    """Full-integer .tflite: int8 weights and activations, int8 input and output,
    calibrated on up to n_rep samples of x_rep. `quiet`: a context manager factory
    the TFLite converter runs under (the command line passes one that keeps its
    console chatter off the terminal; a library call changes no output stream)."""
    import tensorflow as tf

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    sample = np.asarray(x_rep[:n_rep], np.float32)

    def rep():
        for i in range(len(sample)):
            yield [sample[i:i + 1]]

    conv.representative_dataset = rep
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    try:
        with (quiet or contextlib.nullcontext)():
            return bytes(conv.convert())
    except Exception as e:  # the converter raises many types
        raise DtmmError(f"int8 conversion failed: {type(e).__name__}: {e}") from e


def int8_accuracy(tflite_bytes: bytes, x: np.ndarray, y: np.ndarray,
                  batch: int = 500, quiet=None) -> float:
    """Top-1 accuracy (percent) of an int8 .tflite with TFLite's reference kernels
    (BUILTIN_REF: the arithmetic TFLM's kernels and CMSIS-NN match bit for bit;
    the default resolver's XNNPACK/optimized int8 kernels round differently, e.g.
    8.6 % of a ResNet-8's outputs differ). A DTMM .tflite computes the same bytes
    as its int8 source by the contract."""
    import tensorflow as tf

    with (quiet or contextlib.nullcontext)():
        it = tf.lite.Interpreter(
            model_content=bytes(tflite_bytes), num_threads=1,
            experimental_op_resolver_type=tf.lite.experimental.OpResolverType.BUILTIN_REF)
        it.allocate_tensors()
    inp = it.get_input_details()[0]
    out = it.get_output_details()[0]
    scale, zp = inp["quantization"]
    correct = 0
    for s in range(0, len(x), batch):
        xb = np.asarray(x[s:s + batch], np.float32)
        it.resize_tensor_input(inp["index"], [len(xb), *inp["shape"][1:]])
        it.allocate_tensors()
        q = np.clip(np.round(xb / scale + zp), -128, 127).astype(np.int8)
        it.set_tensor(inp["index"], q)
        it.invoke()
        pred = it.get_tensor(out["index"]).reshape(len(xb), -1).argmax(axis=1)
        correct += int((pred == np.asarray(y[s:s + batch])).sum())
    return 100.0 * correct / max(len(x), 1)


# --------------------------------------------------------------------------------
# Keras model helpers


def load_model(model):
    import keras

    if isinstance(model, (str, os.PathLike)):
        path = os.fspath(model)
        if not os.path.isfile(path):
            raise DtmmError(f"model file {path} does not exist")
        try:
            model = keras.models.load_model(path, compile=False)
        except Exception as e:
            raise DtmmError(f"cannot load Keras model {path}: {type(e).__name__}: {e}") from e
    if not isinstance(model, keras.Model):
        raise DtmmError(f"expected a Keras model or a .keras path, got {type(model).__name__}")
    return model


def _outputs_probabilities(model) -> bool:
    last = model.layers[-1]
    act = getattr(last, "activation", None)
    return getattr(act, "__name__", "") == "softmax" or type(last).__name__ == "Softmax"


def compile_for_training(model, lr: float = 1e-3):
    import keras

    model.compile(optimizer=keras.optimizers.Adam(lr),
                  loss=keras.losses.SparseCategoricalCrossentropy(
                      from_logits=not _outputs_probabilities(model)),
                  metrics=["accuracy"])
    return model


class _TqdmCallback:
    """Keras callback: one tqdm bar over all fine-tuning batches."""

    def __new__(cls, total, desc, enabled=True):
        import keras
        from tqdm.auto import tqdm

        class CB(keras.callbacks.Callback):
            def on_train_begin(self, logs=None):
                self.bar = tqdm(total=total, desc=desc, disable=not enabled, leave=False)

            def on_train_batch_end(self, batch, logs=None):
                self.bar.update(1)
                if logs and "loss" in logs:
                    self.bar.set_postfix(loss=f"{float(logs['loss']):.3f}")

            def on_train_end(self, logs=None):
                self.bar.close()

        return CB()


def fit(model, x, y, epochs: int, batch_size: int = 64, seed: int = DEFAULT_SEED,
        desc: str = "fine-tune", progress: bool = True):
    import keras

    if epochs <= 0:
        return
    keras.utils.set_random_seed(seed)
    steps = int(np.ceil(len(x) / batch_size)) * epochs
    model.fit(x, y, epochs=epochs, batch_size=batch_size, verbose=0, shuffle=True,
              callbacks=[_TqdmCallback(steps, desc, progress)])


def recalibrate_batchnorm(model, x, batches: int = 60, batch_size: int = 64,
                          momentum: float = 0.9, seed: int = DEFAULT_SEED) -> int:
    """Re-estimate BatchNorm moving statistics after pruning (forward passes in
    training mode, no weight update). Pruning changes the statistics of every
    BatchNorm behind a pruned conv; with the stale ones the pruned model starts
    fine-tuning from near-chance accuracy. Returns the number of BN layers."""
    import keras

    bns = [l for l in model.layers if isinstance(l, keras.layers.BatchNormalization)]
    if not bns:
        return 0
    saved = [l.momentum for l in bns]
    for l in bns:
        l.momentum = momentum
    rng = np.random.default_rng(seed)
    try:
        for _ in range(batches):
            idx = rng.choice(len(x), size=min(batch_size, len(x)), replace=False)
            model(np.asarray(x[idx], np.float32), training=True)
    finally:
        for l, m in zip(bns, saved):
            l.momentum = m
    return len(bns)


def _check_data(model, data):
    xtr, ytr, xte, yte = data
    want = tuple(model.input_shape[1:])
    if tuple(xtr.shape[1:]) != want:
        raise DtmmError(f"dataset images have shape {tuple(xtr.shape[1:])}, the model "
                        f"expects {want}")
    n_cls = int(model.output_shape[-1])
    top = int(max(ytr.max(), yte.max()))
    if top >= n_cls:
        raise DtmmError(f"dataset has label {top}, the model has {n_cls} outputs")


# --------------------------------------------------------------------------------
# Scheduling problem from a Keras model + its int8 file


def match_convs(graph, infos, model, int8_bytes: bytes):
    """Keras Conv2D LayerInfo for each CONV_2D of the int8 graph, matched by filter
    values (convs of equal shape are told apart; layer order need not agree)."""
    from dtmm import prune as P

    try:
        names = P.match_tflite_convs(model, int8_bytes)
    except ValueError as e:
        raise DtmmError(f"cannot match the int8 model's convs to Keras layers: {e}") from e
    if len(names) != len(graph.convs):
        raise DtmmError(f"the int8 model has {len(graph.convs)} convs but "
                        f"{len(names)} CONV_2D filters were matched")
    by_name = {li.name: li for li in infos}
    missing = [n for n in names if n not in by_name]
    if missing:
        raise DtmmError(f"Keras layer(s) {missing} matched a CONV_2D but are not "
                        "filterlet-prunable Conv2D layers")
    return [by_name[n] for n in names]


def build_problem(model, int8_bytes: bytes, importance, budgets, objective: str = "loss",
                  target: str = DEFAULT_TARGET, prune_filterlets: bool = True,
                  prune_filters: bool = True, flash_model=None, block_ratios: bool = False):
    """(Problem, [Keras layer name per conv]). The latency model is TFLM's Invoke()
    on `target` ("any": the sum over every fitted target); the flash model decides
    which convs become DTMM with the converter's default rule (smaller and modeled
    faster on `target`), so the plan counts what `finetune_and_convert` will write.
    block_ratios: also a block ratio per FULLY_CONNECTED that `importance.blocks`
    scores and `schedule.blocks.block_layers` admits (priced by the converter's FC
    planner), and per 1x1 Conv2D it scores (priced by the converter's conv decision,
    dtmm.convert.plan_conv); `prob.block_names` = {FC index: Keras Dense name},
    `prob.conv_block_names` = {conv index: Keras Conv2D name}."""
    from dtmm import prune as P
    from dtmm.schedule import cost, graph as G, search

    g = G.analyze(int8_bytes)
    if not g.convs and not (block_ratios and g.fcs):
        raise DtmmError("the model has no CONV_2D layer to prune")
    infos = P.conv_layers(model)
    matched = match_convs(g, infos, model, int8_bytes)
    names = [li.name for li in matched]
    # Keras-side coupling and removability win over what the int8 graph shows.
    for grp in g.groups:
        members = [matched[i] for i in grp.convs]
        if any(li.removable_filters < li.c_out for li in members) and grp.frozen is None:
            grp.frozen = f"dtmm.prune cannot remove filters of {members[0].name!r}"
        keras_groups = {li.group for li in members}
        if len(keras_groups) > 1:
            grp.frozen = grp.frozen or "coupling differs between Keras and TFLite graphs"
    by_group: dict = {}
    for c, li in zip(g.convs, matched):
        by_group.setdefault(li.group, set()).add(c.group)
    for gs in by_group.values():
        if len(gs) > 1:
            for gi in gs:
                g.groups[gi].frozen = g.groups[gi].frozen or "coupled in Keras across TFLite groups"
    imp = []
    for c, n in zip(g.convs, names):
        fl = importance.filterlet.get(n)
        if fl is None:
            raise DtmmError(f"no filterlet importance for conv {n!r}")
        imp.append((importance.filter[n], np.asarray(fl).reshape(c.c_out, c.k)))
    lat = cost.LatencyModel(g, target)
    flash = flash_model(g) if flash_model is not None else cost.FlashModel(g, speed=lat)
    blocks, block_names, conv_blocks, conv_block_names = None, {}, None, {}
    if block_ratios:
        blocks, block_names = fc_block_costs(model, int8_bytes, g, importance, lat.targets)
        conv_blocks, conv_block_names = conv_block_costs(int8_bytes, g, names, importance,
                                                         lat.targets)
    prob = search.Problem(g, imp, budgets, objective=objective, flash=flash,
                          sram=cost.SramModel(g), latency=lat,
                          prune_filterlets=prune_filterlets, prune_filters=prune_filters,
                          blocks=blocks, conv_blocks=conv_blocks)
    prob.block_names = block_names
    prob.conv_block_names = conv_block_names
    return prob, names


def fc_block_costs(model, int8_bytes, g, importance, targets):
    """(schedule.blocks.FcBlockCosts or None, {FC index: Keras Dense name}) for the
    FULLY_CONNECTED layers that get a block ratio: matched to a Keras Dense, block
    scores in `importance` (blocks.block_layers)."""
    from dtmm import prune as P
    from dtmm.schedule import blocks as BL

    by_op = P.match_tflite_dense(model, int8_bytes)
    why = BL.block_layers(g)
    scores, names = {}, {}
    for f in g.fcs:
        name = by_op.get(f.op_index)
        if name is None or why[f.index] or name not in importance.blocks:
            continue
        scores[f.index] = (importance.blocks[name], importance.block_size[name])
        names[f.index] = name
    if not scores:
        return None, {}
    costs = BL.FcBlockCosts.build(int8_bytes, g, scores, targets, converter_own_bytes)
    return costs, {j: names[j] for j in costs.fcs}


def conv_block_costs(int8_bytes, g, names, importance, targets):
    """(schedule.blocks.ConvBlockCosts or None, {conv index: Keras Conv2D name}) for
    the 1x1 convs that get a block ratio: block scores in `importance` with B < C_in,
    admitted by blocks.conv_block_layers; priced by dtmm.convert.plan_conv."""
    from dtmm import convert
    from dtmm.schedule import blocks as BL

    why = BL.conv_block_layers(g)
    scores, by_conv = {}, {}
    for c, n in zip(g.convs, names):
        b = importance.block_size.get(n)
        if why[c.index] or n not in importance.blocks or b is None or b >= c.c_in:
            continue
        scores[c.index] = (importance.blocks[n], b)
        by_conv[c.index] = n
    if not scores:
        return None, {}
    users = {}

    def plan_conv(model, conv, targets, prefer):
        if id(model) not in users:  # the users of the Model object conv was read from
            users.clear()
            users[id(model)] = model.users()
        return convert.conv_decision(conv, targets, prefer, *users[id(model)])

    costs = BL.ConvBlockCosts.build(int8_bytes, g, scores, targets, plan_conv)
    return costs, {l: by_conv[l] for l in costs.convs}


def conv_block_sizes(model, block_size: int) -> dict:
    """{Conv2D name: B} for block importance of 1x1 Conv2D layers (groups=1):
    `block_size`, or the largest converter candidate below it dividing C_in < B."""
    from dtmm.core import fc as core_fc
    from dtmm.prune.registry import kind_of

    out = {}
    for layer in model.layers:
        kind = kind_of(layer)
        if not layer.built or kind is None or kind.name != "conv" or \
                tuple(layer.kernel_size) != (1, 1) or getattr(layer, "groups", 1) != 1:
            continue
        c_in = int(layer.kernel.shape[2])
        for b in [block_size] + [b for b in core_fc.BLOCK_CANDIDATES if b < block_size]:
            if b < c_in and c_in % b == 0:
                out[layer.name] = int(b)
                break
    return out


def converter_own_bytes(model):
    """dtmm.convert's accounting of the bytes a constant of `model` frees when its op
    is rewritten (what dtmm convert hands dtmm.core.fc.choose)."""
    tensor_users, buffer_users = model.users()
    return lambda t: size.own_bytes(t, tensor_users, buffer_users)


def dense_block_sizes(model, block_size: int) -> dict:
    """{Dense name: B} for block importance: `block_size`, or the largest of the
    converter's candidates (core.fc.BLOCK_CANDIDATES) below it that divides C_in; a
    Dense with C_in <= B gets B = C_in (no block to prune) and is left out."""
    from dtmm.core import fc as core_fc
    from dtmm.prune.registry import kind_of

    out = {}
    for layer in model.layers:
        kind = kind_of(layer)
        if not layer.built or kind is None or kind.name != "dense":
            continue
        c_in = int(layer.kernel.shape[0])
        for b in [block_size] + [b for b in core_fc.BLOCK_CANDIDATES if b < block_size]:
            if b < c_in and c_in % b == 0:
                out[layer.name] = int(b)
                break
    return out


def apply_plan(model, importance, names, plan, graph, block_names=None,
               conv_block_names=None):
    """Masks for the plan, filter surgery, block masks of the plan's block ratios
    (the plan never removes the input rows of an FC it gives a block ratio, so the
    dense model's block scores still index them), masks re-applied: (model, masks)."""
    from dtmm import prune as P

    alpha = {n: float(plan.alpha[i]) for i, n in enumerate(names)}
    beta = {n: float(plan.beta[graph.convs[i].group]) for i, n in enumerate(names)}
    masks = P.prune_to_ratios(model, importance, alpha_per_layer=alpha, beta_per_layer=beta)
    res = P.remove_filters(model, masks)
    out = P.Masks(res.masks)
    ratios = {n: float(plan.block[j]) for j, n in (block_names or {}).items()
              if plan.block.size and plan.block[j] > 0}
    for j, n in (block_names or {}).items():
        src = graph.fcs[j].in_from
        if n in ratios and src is not None and plan.beta[graph.convs[src].group] > 0:
            raise DtmmError(f"plan gives Dense {n!r} a block ratio and removes its input "
                            "rows (the scheduler never does)")
    conv_block = getattr(plan, "conv_block", np.zeros(0))
    for l, n in (conv_block_names or {}).items():
        if not (conv_block.size and conv_block[l] > 0):
            continue
        c = graph.convs[l]
        grps = [c.group] + ([graph.convs[c.in_from].group] if c.in_from is not None else [])
        if any(plan.beta[gi] > 0 for gi in grps):
            raise DtmmError(f"plan gives Conv2D {n!r} a block ratio and removes its "
                            "filters or input channels (the scheduler never does)")
        ratios[n] = float(conv_block[l])
    if ratios:
        sub = P.Importance(importance.method, {}, {}, {},
                           blocks={n: importance.blocks[n] for n in ratios},
                           block_size={n: importance.block_size[n] for n in ratios})
        out.update(P.prune_blocks_to_ratios(res.model, sub, ratios))
    P.apply_masks(res.model, out)
    return res.model, out


# --------------------------------------------------------------------------------
# The pipeline


@dataclass
class PipelineResult:
    report: dict
    out_dir: str
    model: object
    int8_bytes: bytes
    dtmm_bytes: bytes


@dataclass
class Converted:
    """One fine-tuned model and what it became: plain Keras, int8, DTMM."""

    final: object
    int8: bytes
    dtmm_bytes: bytes
    conv_report: object
    sram: int


class _Timer(dict):
    """Seconds per step, summed over repeats."""

    def __call__(self, key):
        timer = self

        class _Step:
            def __enter__(self):
                self.t = time.perf_counter()

            def __exit__(self, *exc):
                timer[key] = timer.get(key, 0.0) + time.perf_counter() - self.t

        return _Step()


def _arguments(flash, sram, max_drop):
    from dtmm.schedule.cost import parse_bytes

    if max_drop is not None and max_drop < 0:
        raise DtmmError(f"--max-drop must be >= 0 points, got {max_drop}")
    return parse_bytes(flash), parse_bytes(sram)


BLOCK_RATIOS = ("auto", "on", "off")


def block_ratios_enabled(block_ratios: str, target: str) -> bool:
    """Whether `prune` gives FULLY_CONNECTED layers a block ratio: "off" never; "auto"
    where the converter's FC latency model (core/data/latency_fc.json) covers every
    target of `target`; "on" the same, an error naming what is missing."""
    from dtmm.core import fc as core_fc
    from dtmm.core import latency

    if block_ratios not in BLOCK_RATIOS:
        raise DtmmError(f"block_ratios must be one of {', '.join(BLOCK_RATIOS)}, got "
                        f"{block_ratios!r}")
    if block_ratios == "off":
        return False
    missing = [t for t in latency.resolve_targets(target) if t not in core_fc.fc_targets()]
    if missing and block_ratios == "on":
        raise DtmmError(f"--block-ratios on: no FULLY_CONNECTED latency model for "
                        f"{', '.join(missing)} (core/data/latency_fc.json)")
    return not missing


def _inputs(model, data, max_train, block_ratios: bool = False):
    """(Keras model, (x_train, y_train, x_test, y_test)), checked against each other."""
    from dtmm.datasets import load as load_data

    model = load_model(model)
    data = load_data(data) if isinstance(data, (str, os.PathLike)) else data
    xtr, ytr, xte, yte = data
    if max_train:
        xtr, ytr = xtr[:max_train], ytr[:max_train]
    _check_data(model, (xtr, ytr, xte, yte))
    from dtmm.prune.registry import filterlet_layers

    from dtmm.prune.registry import kind_of

    if not filterlet_layers(model) and not (
            block_ratios and any(kind_of(l) is not None and kind_of(l).name == "dense"
                                 for l in model.layers)):
        raise DtmmError("the model has no Conv2D layer to prune" +
                        ("" if block_ratios else " (Dense layers take block ratios: "
                         "--block-ratios auto)"))
    return model, (xtr, ytr, xte, yte)


def finetune_and_convert(pruned, xtr, ytr, epochs, batch_size, seed, desc,
                         progress, quiet=None, target: str = DEFAULT_TARGET) -> Converted:
    """Masked fine-tuning, then strip masks, int8 conversion and DTMM conversion;
    the SRAM of the converted model from its real graph. Both fine-tuning loops of
    `prune` (after planning, and the extra epochs for accuracy) use it."""
    from dtmm import prune as P
    from dtmm.convert import convert_model
    from dtmm.schedule import cost
    from dtmm.schedule.graph import analyze

    fit(pruned, xtr, ytr, epochs, batch_size, seed, desc, progress)
    final = P.strip_masks(pruned)
    int8 = to_int8(final, xtr, quiet=quiet)
    # The converter's default rule on the plan's target, the rule the scheduler's
    # flash and latency models planned with (schedule.cost.FlashModel(speed=...)).
    dtmm_bytes, conv_report = convert_model(int8, target=target, prefer="speed")
    sram = int(cost.SramModel(analyze(dtmm_bytes))())
    return Converted(final, int8, dtmm_bytes, conv_report, sram)


def tightened_budgets(flash_cap, sram_cap, plan, real_flash, real_sram, flash_b, sram_b):
    """Modeled budgets for the next plan after `plan` came out over a real budget:
    scaled by how optimistic the model was on this plan (modeled / real), which puts
    them below the plan's own modeled values, so the search cannot return the same
    plan again (tightening by the overshoot alone left plans modeled well under the
    budget feasible). Returns (flash cap, SRAM cap)."""
    if real_flash > flash_b:
        flash_cap = min(flash_cap, flash_b * plan.flash / real_flash, plan.flash - 1.0)
    if real_sram > sram_b:
        sram_cap = min(sram_cap, sram_b * plan.sram / real_sram, plan.sram - 1.0)
    return flash_cap, sram_cap


def plan_and_fit(prob, model, importance, names, data, flash_b, sram_b, loss_budget,
                 epochs, batch_size, seed, lr, progress, log, timer, quiet=None):
    """Plan, prune, fine-tune and convert; when the real DTMM file or its SRAM is
    over a budget (the models were optimistic), plan again under budgets the last
    plan does not meet (`tightened_budgets`; 4 tries). Returns (plan, pruned Keras
    model, masks, Converted, flash margin)."""
    from dtmm.schedule import cost, search

    xtr, ytr = data[0], data[1]
    dense_latency = prob.dense["latency"]
    flash_cap, sram_cap = float(flash_b), float(sram_b)
    for _ in range(4):
        prob.budgets = search.Budgets(flash=flash_cap, sram=sram_cap, loss=loss_budget)
        with timer("search_s"):
            plan = _search_with_progress(prob, progress)
        log(f"plan: modeled flash {plan.flash:.0f} B, SRAM {plan.sram:.0f} B, importance "
            f"loss {100 * plan.loss:.2f} %, latency {plan.latency / dense_latency:.1%} "
            f"of dense ({plan.seconds:.1f} s)")
        with timer("finetune_convert_s"):
            pruned, masks = apply_plan(model, importance, names, plan, prob.graph,
                                       getattr(prob, "block_names", None),
                                       getattr(prob, "conv_block_names", None))
            recalibrate_batchnorm(pruned, xtr, seed=seed)
            compile_for_training(pruned, lr)
            conv = finetune_and_convert(pruned, xtr, ytr, epochs, batch_size, seed,
                                        "fine-tune", progress, quiet, prob.latency.target)
        if len(conv.dtmm_bytes) <= flash_b and conv.sram <= sram_b:
            return plan, pruned, masks, conv, 1.0 - flash_cap / flash_b
        if len(conv.dtmm_bytes) > flash_b:
            log(f"real DTMM file {len(conv.dtmm_bytes)} B is "
                f"{len(conv.dtmm_bytes) - flash_b} B over the flash budget; re-planning")
        if conv.sram > sram_b:
            log(f"SRAM of the converted model {conv.sram} B is over the budget; "
                "re-planning")
        flash_cap, sram_cap = tightened_budgets(flash_cap, sram_cap, plan,
                                                len(conv.dtmm_bytes), conv.sram,
                                                flash_b, sram_b)
    if len(conv.dtmm_bytes) > flash_b:
        raise DtmmError(f"flash budget {cost.fmt_bytes(flash_b)} cannot be met: the "
                        f"converted model stays at {cost.fmt_bytes(len(conv.dtmm_bytes))}")
    raise DtmmError(f"SRAM budget {cost.fmt_bytes(sram_b)} cannot be met: the converted "
                    f"model needs {cost.fmt_bytes(conv.sram)}")


def conv_rewritten(conv: Converted) -> np.ndarray:
    """Which convs the converter made DTMM, in graph order (dense int8 graph order:
    the converter keeps the op list)."""
    return np.array([bool(r.rewritten) for r in conv.conv_report.layers])


def make_report(prob, names, plan, masks, conv: Converted, dense_int8, dense_acc, acc,
                flash_b, sram_b, max_drop, objective, loss_budget, epochs, margin, wheel,
                verified, timer, seed) -> dict:
    """report.json's content."""
    g, dense_m = prob.graph, prob.dense
    layers = []
    conv_block = getattr(plan, "conv_block", np.zeros(0))
    for i, (c, n) in enumerate(zip(g.convs, names)):
        m = masks[n]
        kept_f = int(m.filters.sum())
        # a 1x1 conv with a block ratio: a filterlet (its whole filter) is kept
        # while one of its blocks is
        fl = m.blocks.reshape(c.c_out, -1).any(axis=1) if hasattr(m, "blocks") \
            else m.filterlets
        kept_fl = int(fl[m.filters].sum())
        extra = {}
        if hasattr(m, "blocks"):
            extra = {"block_ratio": round(float(conv_block[i]), 4),
                     "block_size": int(m.block_size),
                     "block_sparsity": round(float(m.block_sparsity), 4)}
        layers.append({**extra,
            "name": n, "c_out": c.c_out, "kh": c.kh, "kw": c.kw, "c_in": c.c_in,
            "alpha": round(float(plan.alpha[i]), 4),
            "beta": round(float(plan.beta[c.group]), 4),
            "filters_kept": kept_f,
            "filterlets_kept": kept_fl,
            "filterlet_sparsity": round(1 - kept_fl / max(kept_f * c.k, 1), 4),
            "density": round(kept_fl / (c.c_out * c.k), 4),
        })
    for li, r in zip(layers, conv.conv_report.layers):
        li["dtmm_op"] = bool(r.rewritten)
    fc_reports = {r.op_index: r for r in conv.conv_report.fc_layers}
    fc_layers = []
    for j, n in sorted(getattr(prob, "block_names", {}).items()):
        f, m = g.fcs[j], masks.get(n)
        r = fc_reports.get(f.op_index)
        kept = int(m.blocks.sum()) if m is not None else None
        fc_layers.append({
            "name": n, "c_out": f.c_out, "c_in": f.c_in,
            "block_ratio": round(float(plan.block[j]), 4),
            "block_size": None if m is None else int(m.block_size),
            "blocks_kept": kept,
            "block_sparsity": 0.0 if m is None else round(float(m.block_sparsity), 4),
            "dtmm_op": bool(r.rewritten) if r is not None else False,
            "dtmm_reason": r.reason if r is not None else "",
        })
    from dtmm.schedule.cost import CORTEX_M

    x = plan.grid(prob)
    fc_delta = prob.block_latency(x)
    cb_delta = prob.conv_block_latency(x)
    # the convs with a block ratio are priced by their block costs (cb_delta)
    rewritten = conv_rewritten(conv) & ~(conv_block[:len(g.convs)] > 0) \
        if conv_block.size else conv_rewritten(conv)
    dtmm_bytes = conv.dtmm_bytes
    return {
        "budgets": {"flash_bytes": flash_b, "sram_bytes": sram_b, "max_drop_points": max_drop,
                    "objective": objective, "max_importance_loss": loss_budget},
        "dense": {"int8_accuracy": round(dense_acc, 3), "int8_bytes": len(dense_int8),
                  "flash_bytes_modeled": round(dense_m["flash"]),
                  "sram_bytes_modeled": round(dense_m["sram"]),
                  "latency_modeled": round(dense_m["latency"])},
        "pruned": {"int8_accuracy": round(acc, 3),
                   "accuracy_drop_points": round(dense_acc - acc, 3),
                   "flash_bytes": len(dtmm_bytes), "flash_bytes_modeled": round(plan.flash),
                   "int8_bytes": len(conv.int8),
                   "sram_bytes": conv.sram, "sram_bytes_modeled": round(plan.sram),
                   "sram_target": CORTEX_M.name,
                   "tflm_wheel_arena_int8": wheel,
                   "latency_modeled": round(plan.latency),
                   "latency_vs_dense": round(plan.latency / dense_m["latency"], 4),
                   "latency_model": prob.latency.describe(),
                   "latency_target": prob.latency.target,
                   "latency_modeled_per_target": {
                       t: round(v + fc_delta[t] + cb_delta[t]) for t, v in
                       prob.latency.per_target(plan.config, rewritten).items()},
                   "importance_loss": round(plan.loss, 5),
                   "dtmm_ops": int(conv.conv_report.num_rewritten),
                   "dtmm_fc_ops": int(conv.conv_report.num_fc_rewritten),
                   "block_ratios": {n: round(float(plan.block[j]), 4) for j, n in
                                    sorted(getattr(prob, "block_names", {}).items())},
                   "conv_block_ratios": {n: round(float(conv_block[l]), 4) for l, n in
                                         sorted(getattr(prob, "conv_block_names",
                                                        {}).items())},
                   "dtmm_ops_verified_bit_exact": verified.ok},
        "budgets_met": {"flash": len(dtmm_bytes) <= flash_b, "sram": conv.sram <= sram_b,
                        "max_drop": None if max_drop is None else dense_acc - acc <= max_drop},
        "search": {"method": plan.method, "seconds": round(plan.seconds, 3),
                   "evaluations": plan.evaluations, "flash_margin": round(margin, 4)},
        "fine_tune_epochs": epochs,
        "layers": layers,
        "fc_layers": fc_layers,   # the FULLY_CONNECTED layers with a block ratio
        "timings_s": {k: round(v, 2) for k, v in timer.items()},
        "seed": seed,
    }


def write_keras(model, path) -> None:
    """model.save(path), atomically (Keras wants the .keras suffix on the temp file)."""
    path = os.fspath(path)
    fd, tmp = tempfile.mkstemp(prefix=".dtmm-", suffix=".keras",
                               dir=os.path.dirname(os.path.abspath(path)))
    os.close(fd)
    try:
        model.save(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_json(path, obj) -> None:
    write_atomic(path, (json.dumps(obj, indent=2)).encode())


def prune(model, data, flash, sram, out_dir: str, max_drop: float | None = 1.0,
          objective: str = "loss", target: str = DEFAULT_TARGET,
          epochs: int = 2, extra_epochs: int = 2, batch_size: int = 64,
          importance_batches: int = 16, importance_method: str = "taylor",
          max_train: int | None = None, seed: int = DEFAULT_SEED, progress: bool = True,
          lr: float = 5e-4, dense_int8: bytes | None = None, max_loss: float = 0.05,
          log=print, quiet=None, block_ratios: str = "auto",
          block_size: int = 16) -> PipelineResult:
    """Run the whole pipeline; write DIR/{pruned.keras, model_int8.tflite,
    model_dtmm.tflite, dense_int8.tflite, report.json, sparsity.png,
    accuracy_size.png} (each atomically). Raises DtmmError on bad input or
    unmeetable budgets; when the accuracy drop exceeds max_drop after fine-tuning
    the outputs are written and DtmmError says so. These defaults are the
    command line's (dtmm prune reads them from this signature).

    block_ratios: "auto" (a block ratio for every Dense the converter's FC planner
    can price on `target`, docs/scheduler.md), "on" (the same, an error if none can
    be priced) or "off" (filterlet and filter ratios only, as before); block_size:
    the pruning granularity B of those blocks (or the largest of the converter's
    smaller candidates that divides C_in)."""
    import keras
    import tensorflow as tf

    from dtmm import prune as P
    from dtmm.schedule import cost, search

    t_start = time.perf_counter()
    timer = _Timer()
    flash_b, sram_b = _arguments(flash, sram, max_drop)
    use_blocks = block_ratios_enabled(block_ratios, target)
    model, data = _inputs(model, data, max_train, use_blocks)
    xtr, ytr, xte, yte = data
    keras.utils.set_random_seed(seed)

    with timer("dense_int8_s"):
        dense_int8 = dense_int8 or to_int8(model, xtr, quiet=quiet)
        dense_acc = int8_accuracy(dense_int8, xte, yte, quiet=quiet)
    log(f"dense int8: {len(dense_int8)} bytes, test accuracy {dense_acc:.2f} %")

    with timer("importance_s"):
        compile_for_training(model, lr)
        ds = tf.data.Dataset.from_tensor_slices((xtr, ytr)).shuffle(
            len(xtr), seed=seed).batch(batch_size)
        importance = P.compute_importance(
            model, ds, method=importance_method, steps=importance_batches,
            progress=progress,
            block_size={**dense_block_sizes(model, block_size),
                        **conv_block_sizes(model, block_size)} if use_blocks else None)

    loss_budget = max_loss if objective == "latency" else None
    prob, names = build_problem(model, dense_int8, importance,
                                search.Budgets(flash=flash_b, sram=sram_b, loss=loss_budget),
                                objective, target, block_ratios=use_blocks)
    if block_ratios == "on" and not prob.block_names and not prob.conv_block_names:
        raise DtmmError("--block-ratios on: no FULLY_CONNECTED layer can take a block "
                        "ratio (none matched a Dense with C_in > B whose input rows the "
                        "plan keeps), nor any 1x1 Conv2D (none with a block size "
                        "B < C_in dividing C_in)")
    if prob.block_names or prob.conv_block_names:
        log("block ratios for: " + ", ".join(list(prob.block_names.values())
                                             + list(prob.conv_block_names.values())))
    plan, pruned, masks, conv, margin = plan_and_fit(
        prob, model, importance, names, data, flash_b, sram_b, loss_budget, epochs,
        batch_size, seed, lr, progress, log, timer, quiet)

    acc = int8_accuracy(conv.int8, xte, yte, quiet=quiet)
    extra_done = 0
    while max_drop is not None and dense_acc - acc > max_drop and extra_done < extra_epochs:
        log(f"accuracy drop {dense_acc - acc:.2f} points > {max_drop}: one more epoch")
        conv = finetune_and_convert(pruned, xtr, ytr, 1, batch_size, seed + 1 + extra_done,
                                    "fine-tune (extra)", progress, quiet, target)
        extra_done += 1
        acc = int8_accuracy(conv.int8, xte, yte, quiet=quiet)

    try:
        wheel = cost.tflm_arena_usage(conv.int8)
    except Exception:  # the wheel may lack an op; the report says so
        wheel = None

    # Prove the conversion before handing it out: every DTMM op bit-exact with the
    # int8 conv it replaced (raises VerificationError otherwise).
    from dtmm.verify import verify_models
    verified = verify_models(conv.int8, conv.dtmm_bytes, random=2,
                             names=("model_int8", "model_dtmm"))
    log(conv.conv_report.table())
    log(verified.summary())

    os.makedirs(out_dir, exist_ok=True)  # only now: a failed run leaves no empty --out
    write_keras(conv.final, os.path.join(out_dir, "pruned.keras"))
    write_atomic(os.path.join(out_dir, "dense_int8.tflite"), dense_int8)
    write_atomic(os.path.join(out_dir, "model_int8.tflite"), conv.int8)
    write_atomic(os.path.join(out_dir, "model_dtmm.tflite"), conv.dtmm_bytes)
    report = make_report(prob, names, plan, masks, conv, dense_int8, dense_acc, acc,
                         flash_b, sram_b, max_drop, objective, loss_budget,
                         epochs + extra_done, margin, wheel, verified, timer, seed)
    report["timings_s"]["total_s"] = round(time.perf_counter() - t_start, 2)
    write_json(os.path.join(out_dir, "report.json"), report)
    plot_report(report, out_dir)
    log(f"pruned int8: accuracy {acc:.2f} % ({dense_acc - acc:+.2f} points drop), DTMM file "
        f"{len(conv.dtmm_bytes)} B (budget {flash_b}), SRAM {conv.sram} B (budget {sram_b})")
    res = PipelineResult(report, out_dir, conv.final, conv.int8, conv.dtmm_bytes)
    if max_drop is not None and dense_acc - acc > max_drop:
        raise DtmmError(f"accuracy drop {dense_acc - acc:.2f} points exceeds --max-drop "
                        f"{max_drop} after {epochs + extra_done} fine-tuning epochs; "
                        f"outputs are in {out_dir}")
    return res


def _search_with_progress(prob, progress: bool):
    from tqdm.auto import tqdm

    from dtmm.schedule import search

    bar = tqdm(total=None, desc="search", unit="eval", disable=not progress, leave=False)
    try:
        return search.schedule(prob, progress=lambda n: bar.update(n))
    finally:
        bar.close()


def _save_figure(fig, path) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    write_atomic(path, buf.getvalue())


def plot_report(report: dict, out_dir: str):
    # Figure objects, not pyplot: no backend switch, no global figure registry.
    from matplotlib.figure import Figure

    layers = report["layers"]
    names = [l["name"] for l in layers]
    x = np.arange(len(layers))
    fig = Figure(figsize=(max(6, 0.6 * len(layers) + 2), 4))
    ax = fig.subplots()
    ax.bar(x - 0.3, [l["beta"] for l in layers], 0.3, label="filter ratio β (removed)")
    ax.bar(x, [l["filterlet_sparsity"] for l in layers], 0.3,
           label="filterlet sparsity α (in kept filters)")
    ax.bar(x + 0.3, [1 - l["density"] for l in layers], 0.3, label="total weight sparsity")
    ax.set_xticks(x, names, rotation=45, ha="right", fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_ylabel("fraction pruned")
    ax.set_title("per-layer sparsity")
    ax.legend(fontsize=8)
    fig.tight_layout()
    _save_figure(fig, os.path.join(out_dir, "sparsity.png"))

    d, p, b = report["dense"], report["pruned"], report["budgets"]
    fig = Figure(figsize=(5, 4))
    ax = fig.subplots()
    ax.scatter([d["int8_bytes"] / 1024], [d["int8_accuracy"]], label="dense int8", s=60)
    ax.scatter([p["flash_bytes"] / 1024], [p["int8_accuracy"]], label="DTMM (pruned)", s=60,
               marker="s")
    ax.axvline(b["flash_bytes"] / 1024, color="gray", ls="--", label="flash budget")
    ax.set_xlabel("flash (KiB, .tflite file)")
    ax.set_ylabel("int8 test accuracy (%)")
    ax.set_title("accuracy vs size")
    ax.legend(fontsize=8)
    fig.tight_layout()
    _save_figure(fig, os.path.join(out_dir, "accuracy_size.png"))


# --------------------------------------------------------------------------------
# Demo: a small CNN on sklearn digits


def demo_model(input_shape=(8, 8, 1), n_classes=10, width=16):
    import keras
    from keras import layers as L

    inp = keras.Input(input_shape)
    x = L.Conv2D(width, 3, padding="same", activation="relu", name="conv1")(inp)
    x = L.Conv2D(2 * width, 3, padding="same", activation="relu", name="conv2")(x)
    x = L.MaxPooling2D(name="pool1")(x)
    x = L.Conv2D(2 * width, 3, padding="same", activation="relu", name="conv3")(x)
    x = L.Conv2D(4 * width, 3, padding="same", activation="relu", name="conv4")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    out = L.Dense(n_classes, name="logits")(x)
    return keras.Model(inp, out, name="digits_cnn")


def demo(out_dir: str, flash="24KiB", sram="16KiB", max_drop: float | None = 1.0,
         train_epochs: int = 40, epochs: int = 3, seed: int = DEFAULT_SEED,
         progress: bool = True, log=print, quiet=None) -> PipelineResult:
    """Train demo_model on sklearn digits, then run `prune` on it. These defaults
    are the command line's (dtmm demo reads them from this signature)."""
    import keras

    from dtmm.datasets import load_digits

    t0 = time.perf_counter()
    data = load_digits()
    xtr, ytr, xte, yte = data
    keras.utils.set_random_seed(seed)
    model = compile_for_training(demo_model(), 2e-3)
    fit(model, xtr, ytr, train_epochs, 32, seed, "train (digits)", progress)
    os.makedirs(out_dir, exist_ok=True)
    with (quiet or contextlib.nullcontext)():
        write_keras(model, os.path.join(out_dir, "dense.keras"))
    log(f"trained demo CNN on digits in {time.perf_counter() - t0:.1f} s")
    res = prune(model, data, flash, sram, out_dir, max_drop=max_drop, epochs=epochs,
                extra_epochs=2 if max_drop is not None else 0,
                batch_size=32, seed=seed, progress=progress, lr=1e-3, log=log,
                quiet=quiet)
    res.report["timings_s"]["demo_total_s"] = round(time.perf_counter() - t0, 2)
    write_json(os.path.join(out_dir, "report.json"), res.report)
    return res
