"""Masked fine-tuning (dtmm.prune.masks): pruned filterlets stay exactly zero through
Adam momentum, weight decay, L2, BatchNorm folding and full-int8 tf.lite conversion."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import prune_models as pm
from dtmm import prune
from dtmm.core.tflite import BuiltinOperator, Model

L = keras.layers


def model_with_bn():
    keras.utils.set_random_seed(3)
    inp = keras.Input((8, 8, 3))
    x = L.Conv2D(8, 3, use_bias=False, name="c1")(inp)
    x = L.BatchNormalization(name="bn1")(x)
    x = L.ReLU(name="r1")(x)
    x = L.Conv2D(6, 3, padding="same", activation="relu", name="c2",
                 kernel_regularizer=keras.regularizers.L2(1e-2))(x)
    x = L.Conv2D(5, 1, activation="relu", name="c3")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(inp, L.Dense(3, name="fc")(x))


def data(n=64, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 8, 8, 3)).astype("float32"), rng.integers(0, 3, n)


def make_masks(model):
    imp = prune.compute_importance(model, method="magnitude")
    masks = prune.prune_to_ratios(model, imp, alpha_per_layer={"c1": 0.5, "c2": 0.5, "c3": 0.4})
    masks["c1"].filterlets[2] = False  # one fully pruned filter (kept, outputs its bias)
    return masks


def tflite_conv_filters(buf):
    """{(C_out, kh, kw, C_in): (int8 filter, int32 bias, filter scales, input scale)} per CONV_2D."""
    out = {}
    for op in Model.read(buf).subgraphs[0].operators:
        if op.opcode.builtin != BuiltinOperator.CONV_2D:
            continue
        t_in, t_w, t_b = op.inputs[:3]
        out[t_w.shape] = (t_w.value(), t_b.value(), t_w.quant()[0], t_in.quant()[0][0])
    return out


def convert_int8(model, x):
    def rep():
        for i in range(8):
            yield [x[i : i + 1]]

    c = tf.lite.TFLiteConverter.from_keras_model(model)
    c.optimizations = [tf.lite.Optimize.DEFAULT]
    c.representative_dataset = rep
    c.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    c.inference_input_type = tf.int8
    c.inference_output_type = tf.int8
    return c.convert()


@pytest.mark.parametrize("opt", ["adamw", "sgd_ema"])
def test_zero_through_training_and_int8_conversion(opt):
    x, y = data()
    model = model_with_bn()
    pm.randomize_bn(model, np.random.default_rng(4))
    if opt == "adamw":
        optimizer = keras.optimizers.AdamW(0.05, weight_decay=0.1)
    else:
        optimizer = keras.optimizers.SGD(0.05, momentum=0.9, use_ema=True, ema_momentum=0.5)
    model.compile(optimizer, keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)  # optimizer state is now non-zero
    masks = make_masks(model)
    assert not masks["c3"].filters.all()  # 1x1: alpha became filter removal
    before = {n: model.get_layer(n).kernel.numpy().copy() for n in masks}

    prune.apply_masks(model, masks)
    assert isinstance(model.get_layer("c1").kernel.constraint, prune.FilterletMaskConstraint)
    # With EMA the optimizer overwrites the weights after the last constraint: the
    # callback re-applies the masks when training ends.
    callbacks = [prune.FilterletMasking()] if opt == "sgd_ema" else []
    model.fit(x, y, batch_size=16, epochs=2, verbose=0, callbacks=callbacks)
    for n, m in masks.items():
        k = model.get_layer(n).kernel.numpy()
        assert (prune.zero_filterlets(k) == ~m.filterlets).all(), n
        assert np.abs(k - before[n]).max() > 0, "kept weights must train"

    final = prune.strip_masks(model)
    assert all(layer.kernel.constraint is None for layer in final.layers if isinstance(layer, L.Conv2D))
    for n, m in masks.items():
        assert (prune.zero_filterlets(final.get_layer(n).kernel.numpy()) == ~m.filterlets).all(), n
    assert prune.masks_from_weights(final).keys() == masks.keys()

    # BatchNorm folding + per-channel int8: pruned filterlets are exactly zero in the .tflite.
    convs = tflite_conv_filters(convert_int8(final, x))
    assert len(convs) == 3
    for n, m in masks.items():
        kh, kw, c_in, c_out = final.get_layer(n).kernel.shape
        w, b, w_scale, in_scale = convs[(c_out, kh, kw, c_in)]
        zero = np.all(w == 0, axis=3)  # (C_out, kh, kw), same order as the masks
        np.testing.assert_array_equal(zero, ~m.filterlets, err_msg=n)
    # Bias is separate: the fully pruned c1 filter keeps its folded BatchNorm bias.
    gamma, beta, mean, var = final.get_layer("bn1").get_weights()
    eps = final.get_layer("bn1").epsilon
    folded = beta - mean * gamma / np.sqrt(var + eps)
    w, b, w_scale, in_scale = convs[(8, 3, 3, 3)]
    deq = b * in_scale * (w_scale if w_scale.size > 1 else w_scale[0])
    assert b[2] != 0
    np.testing.assert_allclose(deq[2], folded[2], atol=float(in_scale * w_scale[2]))


@pytest.mark.parametrize("use_ema", [False, True])
def test_without_protection_weights_move(use_ema):
    """The checks above can fail: Adam momentum un-zeroes masked weights without the
    constraint, and EMA does even with it unless the callback re-applies the masks."""
    x, y = data()
    model = model_with_bn()
    model.compile(keras.optimizers.Adam(0.05, use_ema=use_ema, ema_momentum=0.5),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    masks = make_masks(model)
    prune.apply_masks(model, masks, constrain=use_ema)
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    for n, m in masks.items():
        assert (prune.zero_filterlets(model.get_layer(n).kernel.numpy()) != ~m.filterlets).any(), n
    if not use_ema:  # nothing installed: the callback refuses to run
        with pytest.raises(ValueError, match="no masks installed"):
            model.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=[prune.FilterletMasking()])


def test_strip_leaves_original_and_mask_validation():
    model = model_with_bn()
    masks = make_masks(model)
    prune.apply_masks(model, masks)
    final = prune.strip_masks(model)
    assert isinstance(model.get_layer("c2").kernel.constraint, prune.FilterletMaskConstraint)
    # The other constraint chain is kept: a second apply replaces the mask, not stacks it.
    prune.apply_masks(model, masks)
    assert model.get_layer("c2").kernel.constraint.inner is None
    assert set(prune.masked_layers(model)) == set(masks)
    np.testing.assert_array_equal(prune.masked_layers(model)["c2"].filterlets, masks["c2"].filterlets)
    assert final.count_params() == model.count_params()
    with pytest.raises(ValueError, match="shape"):
        prune.apply_masks(model, {"c1": prune.LayerMask.dense(7, 3, 3)})
    with pytest.raises(ValueError, match="not a filterlet-prunable"):
        prune.apply_masks(model, {"fc": prune.LayerMask.dense(3, 1, 1)})


def test_masks_save_load(tmp_path):
    masks = make_masks(model_with_bn())
    masks.save(tmp_path / "m.npz")
    back = prune.Masks.load(tmp_path / "m.npz")
    assert back.keys() == masks.keys()
    for n in masks:
        np.testing.assert_array_equal(back[n].filterlets, masks[n].filterlets)
        np.testing.assert_array_equal(back[n].filters, masks[n].filters)


def test_layer_mask_kernel_layout():
    fl = np.ones((4, 2, 3), bool)
    fl[1, 0, 2] = False
    m = prune.LayerMask(fl, np.array([True, True, False, True]))
    k = m.kernel_mask(5)
    assert k.shape == (2, 3, 5, 4)
    assert (k[0, 2, :, 1] == 0).all() and (k[:, :, :, 2] == 0).all()
    assert k.sum() == 5 * (24 - 1 - 6)
    assert m.filter_sparsity == 0.25
    np.testing.assert_allclose(m.filterlet_sparsity, 1 / 18)
    np.testing.assert_array_equal(prune.zero_filterlets(np.random.default_rng(0).normal(size=k.shape) * k), ~m.filterlets)


def test_masked_model_saves_and_reloads(tmp_path):
    """The mask constraint is registered with Keras serialization and stores the
    filterlet bits: a masked model round-trips through .keras, masks and all, and
    keeps them through training after loading."""
    x, y = data()
    model = model_with_bn()
    masks = make_masks(model)
    prune.apply_masks(model, masks)
    model.get_layer("c2").kernel.constraint.inner = keras.constraints.MaxNorm(10.0)
    path = tmp_path / "masked.keras"
    model.save(path)
    back = keras.models.load_model(path)
    for n, m in masks.items():
        c = back.get_layer(n).kernel.constraint
        assert isinstance(c, prune.FilterletMaskConstraint), n
        np.testing.assert_array_equal(c.filterlets, m.filterlets, err_msg=n)
        np.testing.assert_array_equal(c.mask, model.get_layer(n).kernel.constraint.mask)
    assert isinstance(back.get_layer("c2").kernel.constraint.inner, keras.constraints.MaxNorm)
    config = back.get_layer("c1").kernel.constraint.get_config()
    assert set(config) == {"kernel_shape", "kept", "inner"} and isinstance(config["kept"], str)
    back.compile(keras.optimizers.Adam(0.05), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    back.fit(x, y, batch_size=16, epochs=1, verbose=0)
    for n, m in masks.items():
        assert (prune.zero_filterlets(back.get_layer(n).kernel.numpy()) == ~m.filterlets).all(), n
    assert set(prune.masked_layers(back)) == set(masks)
