"""Importance (dtmm.prune.importance) and ratio selection (dtmm.prune.select)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import prune_models as pm
from dtmm import prune

L = keras.layers


def batches(model, n=3, bs=4, seed=0):
    rng = np.random.default_rng(seed)
    shape = tuple(model.inputs[0].shape[1:])
    return [(rng.normal(size=(bs,) + shape).astype("float32"), rng.integers(0, 3, bs)) for _ in range(n)]


def test_magnitude_aggregation_and_layout():
    model = pm.depthwise()
    imp = prune.compute_importance(model, method="magnitude", progress=False)
    k = model.get_layer("c1").kernel.numpy()  # [3, 3, 3, 6]
    assert imp.filterlet["c1"].shape == (6, 3, 3)
    np.testing.assert_allclose(imp.filterlet["c1"][4, 1, 2], np.abs(k[1, 2, :, 4]).sum(), rtol=1e-6)
    np.testing.assert_allclose(imp.filter["c1"], np.abs(k).sum(axis=(0, 1, 2)), rtol=1e-6)
    assert set(imp.filterlet) == {"c1", "pw"}
    assert set(imp.not_filterlet_prunable) == {"dw", "fc"}
    assert imp.filter["dw"].shape == (12,)  # C_in * depth_multiplier
    dk = model.get_layer("dw").kernel.numpy()  # [3, 3, 6, 2]
    np.testing.assert_allclose(imp.filter["dw"][2 * 3 + 1], np.abs(dk[:, :, 3, 1]).sum(), rtol=1e-6)


def test_taylor_matches_manual_gradient():
    model = pm.sequential()
    w = model.get_layer("c2").kernel
    k = w.numpy()
    k[1, 2, :, 3] = 0  # a zero filterlet has zero Taylor importance
    w.assign(k)
    data = batches(model)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    imp = prune.compute_importance(model, data, loss=loss, progress=False)
    assert imp.num_batches == 3 and imp.num_examples == 12 and imp.method == "taylor"

    want = np.zeros(k.shape)
    for x, y in data:
        with tf.GradientTape() as tape:
            value = loss(y, model(x, training=False))
        want += np.abs(k * tape.gradient(value, w.value).numpy())
    got = imp.filterlet["c2"]
    np.testing.assert_allclose(got, np.transpose(want.sum(axis=2), (2, 0, 1)), rtol=1e-4, atol=1e-9)
    assert got[3, 1, 2] == 0 and (np.delete(got.reshape(-1), 3 * 9 + 1 * 3 + 2) > 0).all()
    np.testing.assert_allclose(imp.filter["c2"], got.sum(axis=(1, 2)), rtol=1e-6)

    # Same through tf.data, with the compiled loss, and with a step limit.
    model.compile("adam", loss)
    ds = tf.data.Dataset.from_tensor_slices(
        (np.concatenate([d[0] for d in data]), np.concatenate([d[1] for d in data]))).batch(4)
    imp2 = prune.compute_importance(model, ds, progress=False)
    np.testing.assert_allclose(imp2.filterlet["c2"], got, rtol=1e-4, atol=1e-9)
    assert prune.compute_importance(model, ds, steps=2, progress=False).num_batches == 2


def test_importance_errors():
    model = pm.sequential()
    with pytest.raises(ValueError, match="dataset"):
        prune.compute_importance(model, method="taylor")
    with pytest.raises(ValueError, match="unknown importance"):
        prune.compute_importance(model, method="hessian")
    with pytest.raises(ValueError, match="loss"):
        prune.compute_importance(model, batches(model))  # not compiled, no loss


def fake_importance(model, seed=0):
    rng = np.random.default_rng(seed)
    imp = prune.compute_importance(model, method="magnitude")
    for n in imp.filterlet:
        imp.filterlet[n] = rng.permutation(imp.filterlet[n].size).reshape(imp.filterlet[n].shape).astype(float)
        imp.filter[n] = rng.permutation(imp.filter[n].size).astype(float)
    return imp


def test_prune_to_ratios_counts_and_order():
    model = pm.sequential()
    imp = fake_importance(model)
    masks = prune.prune_to_ratios(model, imp, {"c1": 0.5, "c2": 0.25}, {"c1": 0.25, "c2": 0.5})
    c1 = masks["c1"]
    assert (~c1.filters).sum() == prune.n_pruned(0.25, 8) == 2
    np.testing.assert_array_equal(np.flatnonzero(~c1.filters), np.sort(np.argsort(imp.filter["c1"])[:2]))
    kept = np.flatnonzero(c1.filters)
    assert (~c1.filterlets[kept]).sum() == prune.n_pruned(0.5, 6 * 9) == 27
    # The pruned filterlets are exactly the lowest-scored among kept filters.
    s = imp.filterlet["c1"][kept]
    assert s[~c1.filterlets[kept]].max() < s[c1.filterlets[kept]].min()
    assert not c1.filterlets[~c1.filters].any()
    assert (~masks["c2"].filters).sum() == 3 and masks["c3"].filters.all() and masks["c3"].filterlets.all()
    assert prune.n_pruned(0.5, 5) == 3 and prune.n_pruned(0.0, 5) == 0 and prune.n_pruned(1.0, 5) == 5


def test_prune_to_ratios_coupled_and_1x1():
    model = pm.residual()
    imp = fake_importance(model, 1)
    with pytest.warns(UserWarning, match="different beta"):
        masks = prune.prune_to_ratios(model, imp, {"b": 0.5}, {"a": 0.5, "b": 0.34, "c": 0.5})
    removed = [set(np.flatnonzero(~masks[n].filters)) for n in ("a", "b", "c")]
    assert removed[0] == removed[1] == removed[2] and len(removed[0]) == prune.n_pruned(0.34, 6) == 2
    score = imp.filter["a"] + imp.filter["b"] + imp.filter["c"]
    assert removed[0] == set(np.argsort(score)[:2])
    # Coupled 1x1: alpha zeroes whole (kept) filters instead of removing them.
    b = masks["b"]
    assert (~b.filterlets[b.filters]).sum() == prune.n_pruned(0.5, 4)
    # Surgery accepts the masks under the strict rule.
    res = prune.remove_filters(model, masks, rule="strict")
    assert res.model.get_layer("c").kernel.shape == (3, 3, 4, 4)
    # A beta given for one member applies to its whole group.
    one = prune.prune_to_ratios(model, imp, None, {"c": 0.5})
    assert all((~one[n].filters).sum() == 3 for n in ("a", "b", "c")) and one["stem"].filters.all()

    seq = pm.sequential()
    m = prune.prune_to_ratios(seq, fake_importance(seq), {"c3": 0.4}, {"c3": 0.2})
    assert (~m["c3"].filters).sum() == prune.n_pruned(1 - 0.6 * 0.8, 5) == 3 and m["c3"].filterlets[m["c3"].filters].all()


def test_prune_to_ratios_errors_and_frozen():
    model = pm.sequential()
    imp = fake_importance(model)
    with pytest.raises(ValueError, match="not filterlet-prunable"):
        prune.prune_to_ratios(model, imp, {"fc": 0.5})
    with pytest.raises(ValueError, match="outside"):
        prune.prune_to_ratios(model, imp, None, {"c1": 1.5})
    # A conv whose output is the model output: beta cannot remove anything.
    inp = keras.Input((6, 6, 2))
    head = keras.Model(inp, L.Conv2D(4, 3, name="head")(L.Conv2D(3, 3, name="body")(inp)))
    m = prune.prune_to_ratios(head, prune.compute_importance(head, method="magnitude"), 0.0, 0.5)
    assert m["head"].filters.all() and (~m["body"].filters).sum() == 2
    # beta 1.0 still keeps one filter.
    m = prune.prune_to_ratios(head, prune.compute_importance(head, method="magnitude"), 0.0, 1.0)
    assert m["body"].filters.sum() == 1


def test_conv_layers_description():
    infos = {i.name: i for i in prune.conv_layers(pm.residual(), include_non_prunable=True)}
    d = infos["d"]
    assert (d.kh, d.kw, d.c_in, d.c_out, d.strides, d.in_hw, d.out_hw) == (3, 3, 6, 4, (2, 2), (8, 8), (3, 3))
    assert d.macs == 3 * 3 * 3 * 3 * 6 * 4 and not d.is_1x1 and d.coupled_with == ()
    assert infos["b"].is_1x1 and set(infos["b"].coupled_with) == {"a", "c"}
    assert infos["a"].group == infos["b"].group == infos["c"].group != infos["stem"].group
    assert not infos["fc"].filterlet_prunable and infos["fc"].type == "Dense"
    assert [i.name for i in prune.conv_layers(pm.depthwise())] == ["c1", "pw"]
