"""Importance and masked fine-tuning under tf.distribute.MirroredStrategy on 2 logical CPUs.

Logical devices must be configured before TensorFlow initialises its devices, which
other test files in the same pytest process already did, so the work runs in a fresh
interpreter (this file executed as a script) and the test checks its JSON report.
"""

import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
PYTHON_DIR = os.path.join(os.path.dirname(os.path.dirname(HERE)), "python")


def test_mirrored_strategy_two_cpus():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([PYTHON_DIR, HERE] + [p for p in [env.get("PYTHONPATH")] if p])
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    proc = subprocess.run([sys.executable, os.path.abspath(__file__)], env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["replicas"] == 2
    # The all-reduced gradient gives the single-device importance.
    assert report["importance_rel_err"] < 1e-4
    assert report["explicit_strategy_rel_err"] < 1e-4
    assert report["pruned_filterlets"] > 0
    assert report["zero_after_fit"] and report["zero_after_strip"]
    assert report["kept_changed"]


def _worker():
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

    import keras
    import numpy as np

    import prune_models as pm
    from dtmm import prune

    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 10, 10, 3)).astype("float32")
    y = rng.integers(0, 3, 32)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    ref = pm.sequential()
    weights = ref.get_weights()
    imp_ref = prune.compute_importance(ref, ds, loss=loss, progress=False)

    def rel_err(imp):
        return max(float(np.abs(imp.filterlet[n] - imp_ref.filterlet[n]).max() / imp_ref.filterlet[n].max())
                   for n in imp_ref.filterlet)

    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        model = pm.sequential()
        model.set_weights(weights)
        imp = prune.compute_importance(model, ds, loss=loss, progress=False)
    explicit = prune.compute_importance(model, ds, loss=loss, strategy=strategy, progress=False)
    with strategy.scope():
        masks = prune.prune_to_ratios(model, imp, alpha_per_layer=0.5)
        prune.apply_masks(model, masks)
        model.compile(keras.optimizers.Adam(0.05), loss)
    model.fit(ds, epochs=2, verbose=0)

    zero_fit = all((prune.zero_filterlets(model.get_layer(n).kernel.numpy()) == ~m.filterlets).all()
                   for n, m in masks.items())
    final = prune.strip_masks(model)
    zero_strip = all((prune.zero_filterlets(final.get_layer(n).kernel.numpy()) == ~m.filterlets).all()
                     for n, m in masks.items())
    changed = any(np.abs(model.get_layer(n).kernel.numpy() - w).max() > 0
                  for n, w in zip(["c1"], [weights[0]]))
    print(json.dumps({
        "replicas": strategy.num_replicas_in_sync,
        "importance_rel_err": rel_err(imp),
        "explicit_strategy_rel_err": rel_err(explicit),
        "pruned_filterlets": int(sum((~m.filterlets).sum() for m in masks.values())),
        "zero_after_fit": bool(zero_fit),
        "zero_after_strip": bool(zero_strip),
        "kept_changed": bool(changed),
    }))


if __name__ == "__main__":
    _worker()
