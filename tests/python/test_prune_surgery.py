"""Physical filter removal (dtmm.prune.surgery): the smaller model computes exactly what
the zeroed model computed, for Sequential, residual (Add), Concatenate, Flatten->Dense and
DepthwiseConv2D graphs, and converts with tf.lite."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import prune_models as pm
from dtmm import prune

L = keras.layers


def zero_out(model, removed, follow):
    """Make the removed channels contribute exactly 0 downstream: zero filter and bias;
    ``follow`` names the BatchNorm / DepthwiseConv2D channels that carry them, whose
    shift (beta, mean) / bias is set to 0 so they map 0 to 0. Every other channel keeps
    random statistics and biases, so the slicing of those vectors is checked too."""
    rng = np.random.default_rng(1)
    pm.randomize_bn(model, rng)
    for layer in model.layers:
        if isinstance(layer, L.DepthwiseConv2D):
            k, b = layer.get_weights()
            layer.set_weights([k, rng.uniform(-0.5, 0.5, b.shape).astype("float32")])
    for name, idx in follow.items():
        layer = model.get_layer(name)
        w = layer.get_weights()
        if isinstance(layer, L.BatchNormalization):
            w[1][idx] = 0
            w[2][idx] = 0
        else:
            w[1][idx] = 0
        layer.set_weights(w)
    for name, idx in removed.items():
        layer = model.get_layer(name)
        w = layer.get_weights()
        w[0][..., idx] = 0
        if len(w) > 1:
            w[1][idx] = 0
        layer.set_weights(w)


CASES = [
    # model, removed filters, channels downstream that carry them, kernel shapes after
    (pm.sequential, {"c1": [1, 6], "c2": [0, 3, 5], "c3": [2]}, {"bn2": [0, 3, 5]},
     {"c1": (3, 3, 3, 6), "c2": (3, 3, 6, 3), "c3": (1, 1, 3, 4), "fc": (4, 3)}),
    (pm.residual, {"stem": [2], "a": [1, 4], "b": [1, 4], "c": [1, 4], "d": [3]}, {"bn_a": [1, 4]},
     {"stem": (3, 3, 3, 5), "a": (3, 3, 5, 4), "b": (1, 1, 5, 4), "c": (3, 3, 4, 4),
      "d": (3, 3, 4, 3), "fc": (3, 3)}),
    (pm.concat, {"a": [0, 3], "b": [2], "c": [1, 5]}, {},
     {"a": (3, 3, 2, 2), "b": (3, 3, 2, 4), "c": (3, 3, 6, 4), "fc": (16, 3)}),
    (pm.flatten_dense, {"c1": [0, 4, 6]}, {},
     {"c1": (3, 3, 2, 4), "fc1": (48, 4), "fc2": (4, 2)}),
    # depth_multiplier 2: input channel c feeds outputs 2c and 2c+1
    (pm.depthwise, {"c1": [1, 2, 5], "pw": [0]}, {"dw": [2, 3, 4, 5, 10, 11], "bn_dw": [2, 3, 4, 5, 10, 11]},
     {"c1": (3, 3, 3, 3), "dw": (3, 3, 3, 2), "pw": (1, 1, 6, 4), "fc": (4, 3)}),
]


@pytest.mark.parametrize("build,removed,follow,shapes", CASES, ids=[c[0].__name__ for c in CASES])
def test_removal_is_exact(build, removed, follow, shapes):
    model = build()
    zero_out(model, removed, follow)
    x = np.random.default_rng(2).normal(size=(4,) + tuple(model.inputs[0].shape[1:])).astype("float32")
    want = model(x, training=False).numpy()

    res = prune.remove_filters(model, removed, rule="strict")
    small = res.model
    for name, shape in shapes.items():
        assert tuple(small.get_layer(name).kernel.shape) == shape, name
    got = small(x, training=False).numpy()
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
    for name, idx in removed.items():
        assert set(res.kept[name]).isdisjoint(idx)
    # A plain functional model: only stock Keras layers, same layer names.
    assert all(type(layer).__module__.startswith("keras.") for layer in small.layers)
    assert [l.name for l in small.layers[1:]] == [l.name for l in model.layers if not isinstance(l, L.InputLayer)]
    # The test can fail: with the removed channels not zeroed, outputs differ.
    model2 = build()
    pm.randomize_bn(model2, np.random.default_rng(1))
    diff = prune.remove_filters(model2, removed).model(x, training=False).numpy() - model2(x, training=False).numpy()
    assert np.abs(diff).max() > 1e-3


def test_converts_with_tflite_int8():
    model = pm.residual()
    res = prune.remove_filters(model, {"a": [0], "b": [0], "c": [0]})
    rng = np.random.default_rng(0)

    def rep():
        for _ in range(4):
            yield [rng.normal(size=(1, 8, 8, 3)).astype("float32")]

    conv = tf.lite.TFLiteConverter.from_keras_model(res.model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = rep
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    buf = conv.convert()
    interp = tf.lite.Interpreter(model_content=buf)
    interp.allocate_tensors()
    assert interp.get_output_details()[0]["shape"].tolist() == [1, 3]


def test_rules_and_errors():
    model = pm.residual()
    g = prune.ChannelGraph(model)
    assert sorted(map(sorted, g.coupled_groups())) == [["a", "b", "c"], ["d"], ["stem"]]
    # union: removing channel 2 of "a" alone removes it from b and c too.
    assert prune.remove_filters(model, {"a": [2]}, graph=g).model.get_layer("c").kernel.shape[-1] == 5
    # intersection: not all coupled members agree -> nothing removed.
    assert prune.remove_filters(model, {"a": [2]}, rule="intersection", graph=g).model.get_layer("c").kernel.shape[-1] == 6
    with pytest.raises(ValueError, match="disagree"):
        prune.remove_filters(model, {"a": [2]}, rule="strict", graph=g)
    with pytest.raises(ValueError, match="out of range"):
        prune.remove_filters(model, {"d": [4]}, graph=g)
    with pytest.raises(ValueError, match="all its channels"):
        prune.remove_filters(model, {"d": [0, 1, 2, 3]}, graph=g)
    with pytest.raises(ValueError, match="not a Conv2D"):
        prune.remove_filters(model, {"fc": [0]}, graph=g)


def test_frozen_channels():
    keras.utils.set_random_seed(0)
    inp = keras.Input((6, 6, 3))
    x = L.Conv2D(4, 3, name="a")(inp)
    skip = L.Conv2D(3, 1, name="proj")(inp)  # Add with the model input: channels frozen
    y = L.Add(name="add")([L.Conv2D(3, 1, name="b")(inp), inp])
    out = L.Conv2D(2, 3, name="head")(x)  # reaches the model output
    model = keras.Model(inp, [out, y, skip])
    infos = {i.name: i for i in prune.conv_layers(model)}
    assert infos["a"].removable_filters == 4
    assert infos["b"].removable_filters == 0 and infos["head"].removable_filters == 0
    assert infos["proj"].removable_filters == 0
    with pytest.raises(ValueError, match="cannot be removed"):
        prune.remove_filters(model, {"b": [0]})
    small = prune.remove_filters(model, {"a": [1]}).model
    assert small.get_layer("head").kernel.shape == (3, 3, 3, 2)


def test_shared_weighted_layer_rejected():
    inp = keras.Input((6, 6, 3))
    conv = L.Conv2D(3, 1, name="shared")
    model = keras.Model(inp, conv(conv(inp)))
    with pytest.raises(prune.UnsupportedModelError, match="more than once"):
        prune.ChannelGraph(model)


def test_masks_follow_surgery():
    model = pm.sequential()
    imp = prune.compute_importance(model, method="magnitude")
    masks = prune.prune_to_ratios(model, imp, alpha_per_layer=0.4, beta_per_layer=0.25)
    res = prune.remove_filters(model, masks)
    for name, m in masks.items():
        k = res.kept[name]
        assert res.masks[name].filters.all()
        np.testing.assert_array_equal(res.masks[name].filterlets, m.filterlets[k])
        assert res.model.get_layer(name).kernel.shape[-1] == len(k) == m.filters.sum()
