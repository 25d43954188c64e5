"""Filterlet blocks in dtmm.prune: block importance, BlockMask, masked fine-tuning,
save/load, filter removal first, int8 export keeps pruned blocks zero; B = C_in is
exactly the filterlet."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from dtmm import prune
from dtmm.core.errors import ArgumentError
from dtmm.core.fwcs import FWCS
from dtmm.core.size import block_weight_bytes
from dtmm.core.tflite import BuiltinOperator, Model
from dtmm.prune.registry import kernel_to_ohwi

L = keras.layers
tf.config.threading.set_intra_op_parallelism_threads(1)
tf.config.threading.set_inter_op_parallelism_threads(1)


def mobilenet_like(seed=0):
    """3x3 conv, depthwise, 1x1 convs (C_in 16, 32) and a Dense (C_in 32)."""
    keras.utils.set_random_seed(seed)
    inp = keras.Input((8, 8, 2))
    x = L.Conv2D(16, 3, padding="same", use_bias=False, name="stem")(inp)
    x = L.BatchNormalization(name="bn0")(x)
    x = L.ReLU(name="r0")(x)
    x = L.DepthwiseConv2D(3, padding="same", name="dw")(x)
    x = L.Conv2D(32, 1, activation="relu", name="pw1")(x)
    x = L.Conv2D(32, 3, padding="same", activation="relu", name="k3")(x)
    x = L.Conv2D(32, 1, use_bias=False, name="pw2")(x)
    x = L.BatchNormalization(name="bn2")(x)
    x = L.ReLU(name="r2")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(inp, L.Dense(5, name="fc")(x))


def data(n=64, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 8, 8, 2)).astype("float32"), rng.integers(0, 5, n)


def randomize_bn(model, seed=1):
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, L.BatchNormalization):
            g, b, m, v = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 2, g.shape) * rng.choice([-1, 1], g.shape),
                               rng.normal(size=b.shape), rng.normal(size=m.shape),
                               rng.uniform(0.5, 2, v.shape)])


def convert_int8(model, x):
    def rep():
        for i in range(8):
            yield [x[i:i + 1]]

    c = tf.lite.TFLiteConverter.from_keras_model(model)
    c.optimizations = [tf.lite.Optimize.DEFAULT]
    c.representative_dataset = rep
    c.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    c.inference_input_type = tf.int8
    c.inference_output_type = tf.int8
    return c.convert()


def int8_weights(buf):
    """{shape: int8 weights} of every CONV_2D (OHWI) and FULLY_CONNECTED ([O, I])."""
    out = {}
    for op in Model.read(buf).subgraphs[0].operators:
        if op.opcode.builtin in (BuiltinOperator.CONV_2D, BuiltinOperator.FULLY_CONNECTED):
            w = op.inputs[1].value()
            out[w.shape] = w
    return out


def test_block_importance_magnitude_and_taylor():
    model = mobilenet_like()
    imp = prune.compute_importance(model, method="magnitude", block_size=8)
    assert set(imp.blocks) == {"stem", "pw1", "k3", "pw2", "fc"}  # not the depthwise
    assert imp.block_size == {"stem": 2, "pw1": 8, "k3": 8, "pw2": 8, "fc": 8}
    k = model.get_layer("k3").kernel.numpy()           # [3, 3, 32, 32]
    want = np.abs(k).reshape(3, 3, 4, 8, 32).sum(axis=3).transpose(3, 0, 1, 2)
    np.testing.assert_allclose(imp.blocks["k3"], want, rtol=1e-6)
    fc = model.get_layer("fc").kernel.numpy()          # [32, 5]
    np.testing.assert_allclose(imp.blocks["fc"][:, 0, 0, :],
                               np.abs(fc).T.reshape(5, 4, 8).sum(axis=2), rtol=1e-6)
    # B = C_in is the filterlet, for Taylor too
    x, y = data()
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    t_fl = prune.compute_importance(model, ds, method="taylor", loss=loss, progress=False)
    t_bl = prune.compute_importance(model, ds, method="taylor", loss=loss, progress=False,
                                    block_size={"k3": 32, "pw1": 16})
    assert set(t_bl.blocks) == {"k3", "pw1"}
    np.testing.assert_allclose(t_bl.blocks["k3"][..., 0], t_fl.filterlet["k3"], rtol=1e-6)
    np.testing.assert_allclose(t_bl.blocks["pw1"].sum(axis=-1), t_fl.filterlet["pw1"], rtol=1e-6)
    # without block_size nothing changes
    assert t_fl.blocks == {} and t_fl.block_size == {}
    for n in t_fl.filterlet:
        np.testing.assert_array_equal(t_fl.filterlet[n], t_bl.filterlet[n])


def test_block_errors():
    model = mobilenet_like()
    with pytest.raises(ArgumentError, match="pw1.: block size 12 does not divide C_in = 16"):
        prune.compute_importance(model, method="magnitude", block_size=12)
    with pytest.raises(ArgumentError, match="not Conv2D"):
        prune.compute_importance(model, method="magnitude", block_size={"dw": 4})
    imp = prune.compute_importance(model, method="magnitude", block_size=8)
    with pytest.raises(ArgumentError, match="outside"):
        prune.prune_blocks_to_ratios(model, imp, {"pw1": 1.5})
    with pytest.raises(ArgumentError, match="without block scores"):
        prune.prune_blocks_to_ratios(model, imp, {"dw": 0.5})
    with pytest.raises(ArgumentError, match="no block scores"):
        prune.prune_blocks_to_ratios(model, prune.compute_importance(model, method="magnitude"), 0.5)
    before = model.get_layer("pw1").kernel.numpy().copy()
    with pytest.raises(ArgumentError, match="layer needs"):
        prune.apply_masks(model, {"pw1": prune.BlockMask(np.ones((32, 1, 1, 4), bool), 8)})
    with pytest.raises(ArgumentError, match="not a block-prunable"):
        prune.apply_masks(model, {"dw": prune.BlockMask(np.ones((16, 3, 3, 1), bool), 1)})
    np.testing.assert_array_equal(model.get_layer("pw1").kernel.numpy(), before)
    assert model.get_layer("pw1").kernel.constraint is None


def test_masks_exactly_the_lowest_blocks_and_int8_keeps_them_zero():
    x, _ = data()
    model = mobilenet_like()
    randomize_bn(model)
    imp = prune.compute_importance(model, method="magnitude", block_size=8)
    ratios = {"stem": 0.25, "pw1": 0.5, "k3": 0.6, "pw2": 0.75, "fc": 0.5}
    masks = prune.prune_blocks_to_ratios(model, imp, ratios)
    for n, r in ratios.items():
        s = imp.blocks[n].reshape(-1)
        k = prune.n_pruned(r, s.size)
        pruned = np.flatnonzero(~masks[n].blocks.reshape(-1))
        assert pruned.size == k
        # exactly the k lowest: every pruned score <= every kept score
        assert set(pruned) == set(np.argsort(s, kind="stable")[:k].tolist())
        assert s[pruned].max() <= np.delete(s, pruned).min()
    prune.apply_masks(model, masks)
    final = prune.strip_masks(model)
    w8 = int8_weights(convert_int8(final, x))
    for n, m in masks.items():
        k = final.get_layer(n).kernel.numpy()
        assert np.all(prune.zero_blocks(k, m.block_size)[~m.blocks])
        o = kernel_to_ohwi(k)
        shape = o.shape[:1] + o.shape[1:] if k.ndim == 4 else (o.shape[0], o.shape[3])
        q = w8[shape]
        qo = q if q.ndim == 4 else q[:, None, None, :]
        zero = np.all(qo.reshape(qo.shape[:3] + (-1, m.block_size)) == 0, axis=-1)
        np.testing.assert_array_equal(zero[~m.blocks], True)
        assert not zero[m.blocks].all()  # the kept ones are not all quantized away


def test_fine_tuning_keeps_blocks_zero_and_masks_survive_save_load(tmp_path):
    x, y = data()
    model = mobilenet_like()
    imp = prune.compute_importance(model, method="magnitude", block_size=16)
    masks = prune.prune_blocks_to_ratios(model, imp, 0.5)
    prune.apply_masks(model, masks)
    model.compile(keras.optimizers.AdamW(0.05, weight_decay=0.1),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, batch_size=16, epochs=2, verbose=0)

    def check(mdl):
        for n, m in masks.items():
            k = mdl.get_layer(n).kernel.numpy()
            assert np.all(prune.zero_blocks(k, m.block_size)[~m.blocks]), n
            assert np.any(k != 0)

    check(model)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    installed = prune.masked_layers(loaded)
    assert set(installed) == set(masks)
    for n, m in masks.items():
        assert isinstance(installed[n], prune.BlockMask)
        assert installed[n].block_size == m.block_size
        np.testing.assert_array_equal(installed[n].blocks, m.blocks)
    loaded.fit(x, y, batch_size=16, epochs=1, verbose=0)  # training resumes masked
    check(loaded)
    masks.save(tmp_path / "m.npz")
    back = prune.Masks.load(tmp_path / "m.npz")
    for n, m in masks.items():
        assert back[n].block_size == m.block_size
        np.testing.assert_array_equal(back[n].blocks, m.blocks)
    assert prune.reapply_masks(loaded) == len(masks)
    plain = prune.strip_masks(loaded)
    assert all(plain.get_layer(n).kernel.constraint is None for n in masks)
    check(plain)


def test_block_size_c_in_is_the_filterlet():
    model = mobilenet_like()
    imp = prune.compute_importance(model, method="magnitude")
    fl = prune.prune_to_ratios(model, imp, alpha_per_layer={"k3": 0.5})["k3"]
    bm = prune.BlockMask(fl.filterlets[..., None], 32)
    np.testing.assert_array_equal(bm.kernel_mask(4), fl.kernel_mask(32))
    a, b = mobilenet_like(), mobilenet_like()
    prune.apply_masks(a, {"k3": fl})
    prune.apply_masks(b, {"k3": bm})
    np.testing.assert_array_equal(a.get_layer("k3").kernel.numpy(), b.get_layer("k3").kernel.numpy())
    np.testing.assert_array_equal(b.get_layer("k3").kernel.constraint.blocks[..., 0], fl.filterlets)
    # block weight bytes at B = C_in are FWCS values + bitmap
    w = kernel_to_ohwi(a.get_layer("k3").kernel.numpy())
    q = np.clip(np.round(w * 100), -127, 127).astype(np.int8)
    fw = FWCS.from_dense(q)
    n_kept = int(np.any(q != 0, axis=-1).sum())
    assert block_weight_bytes(32, 9, 32, 32, n_kept) == fw.storage_bytes


def test_block_weight_bytes():
    # 64 x 128 FC, B = 16: 512 blocks -> 64-byte bitmap; keep 128 blocks -> 2048 values
    assert block_weight_bytes(64, 1, 128, 16, 128) == 2048 + 64
    assert block_weight_bytes(3, 1, 8, 8, 0) == 1


def test_filter_removal_first_then_blocks():
    x, y = data()
    model = mobilenet_like()
    imp = prune.compute_importance(model, method="magnitude")
    fm = prune.prune_to_ratios(model, imp, beta_per_layer={"pw1": 0.5, "k3": 0.25})
    res = prune.remove_filters(model, fm)
    assert res.model.get_layer("k3").kernel.shape[2] == 16
    assert res.model.get_layer("pw2").kernel.shape[2] == 24
    imp2 = prune.compute_importance(res.model, method="magnitude", block_size=8)
    bm = prune.prune_blocks_to_ratios(res.model, imp2, 0.5)
    assert bm["pw2"].shape == (32, 1, 1, 3)
    prune.apply_masks(res.model, bm)
    res.model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    res.model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    for n, m in bm.items():
        k = res.model.get_layer(n).kernel.numpy()
        assert np.all(prune.zero_blocks(k, m.block_size)[~m.blocks]), n
    with pytest.raises(ArgumentError, match="does not divide C_in = 24"):
        prune.compute_importance(res.model, method="magnitude", block_size=16)


def test_filterlet_path_unchanged_by_block_scores(tmp_path):
    model = mobilenet_like()
    plain = prune.compute_importance(model, method="magnitude")
    with_blocks = prune.compute_importance(model, method="magnitude", block_size=8)
    a = prune.prune_to_ratios(model, plain, alpha_per_layer={"k3": 0.5}, beta_per_layer=0.25)
    b = prune.prune_to_ratios(model, with_blocks, alpha_per_layer={"k3": 0.5}, beta_per_layer=0.25)
    a.save(tmp_path / "a.npz")
    b.save(tmp_path / "b.npz")
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()
    with np.load(tmp_path / "a.npz") as z:
        assert all(k.rsplit("/", 1)[1] in ("filterlets", "filters") for k in z.files)
    prune.apply_masks(model, {"k3": a["k3"]})
    c = model.get_layer("k3").kernel.constraint
    assert type(c) is prune.FilterletMaskConstraint
    assert set(c.get_config()) == {"kernel_shape", "kept", "inner"}
    assert isinstance(prune.masked_layers(model)["k3"], prune.LayerMask)
