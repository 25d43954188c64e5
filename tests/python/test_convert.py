"""dtmm.convert: what gets rewritten, what the DTMM op holds, and that the rest of
the model (tensors, buffers, signatures, metadata) survives with indices remapped."""

import numpy as np
import pytest
from flatbuffers import flexbuffers

import tflite_models as tm
from dtmm import reference as ref
from dtmm.convert import DTMM_SUFFIXES, convert_model
from dtmm.core import contract
from dtmm.core.contract import CONV_2D_V1, decode_options, encode_map
from dtmm.core.errors import FormatError, ModelError, UnsupportedError
from dtmm.core.fwcs import FWCS
from dtmm.core.ops import is_dtmm, read_dtmm
from dtmm.core.tflite import Model, TensorType
from dtmm.inspect_model import inspect_model
from dtmm.verify import verify_models

OPTION_KEYS = CONV_2D_V1.keys
load_model = Model.read


@pytest.fixture(scope="module")
def cnn():
    return tm.cnn_model()


@pytest.fixture(scope="module")
def cnn_converted(cnn):
    return convert_model(cnn)


@pytest.fixture(scope="module")
def cnn_converted_v1(cnn):
    return convert_model(cnn, format_version=1)


def _referenced_buffers(model):
    used = {id(t.buffer) for sg in model.subgraphs for t in sg.tensors}
    return used | {id(m.buffer) for m in model.metadata}


def test_cnn_converts_shrinks_and_verifies(cnn, cnn_converted):
    out, report = cnn_converted
    assert len(report.layers) == 5
    assert report.num_rewritten == 5, report.table()
    assert len(out) == report.file_bytes_after < len(cnn) == report.file_bytes_before
    result = verify_models(cnn, out, random=3, check=False)
    assert result.ok, result.summary()
    assert len(result.dtmm_ops) == 5


def test_cnn_table(cnn_converted):
    _, report = cnn_converted
    table = report.table().splitlines()
    assert "CoutxKhxKwxCin" in table[0] and "in->out" in table[0]
    rows = table[2:-4]
    assert len(rows) == 5
    assert "16x3x3x3" in rows[0] and "24x24->12x12" in rows[0] and "2x2" in rows[0]
    assert "24x3x3x32" in rows[3] and "SAME" in rows[3]
    assert "24x5x3x24" in rows[4] and "VALID" in rows[4]
    assert all(r.rstrip().endswith("rewritten: smaller, modeled 10%+ faster") for r in rows)
    assert table[-4].startswith("rewrote 5 of 5 CONV_2D; file bytes ")
    # the drivers to build, per target, as make and C flags
    for line, target in ((table[-3], "cortex-m4"), (table[-2], "cortex-m55")):
        names = report.drivers[target]
        assert line.startswith(f"drivers {target}: {' '.join(names)} (TFLM make "
                               f'DTMM_CONV_DRIVERS="{" ".join(names)}"; C: -DDTMM_CONV_DRIVERS=')
    assert table[-1].startswith("image: the file saves ")


def test_report_drivers_are_the_written_models(cnn_converted):
    from dtmm.core import drivers

    out, report = cnn_converted
    assert set(report.drivers) == set(report.targets)
    for t, names in report.drivers.items():
        assert names and names == drivers.model_drivers(out, t)
        assert set(names) <= set(drivers.NAMES)


def test_image_estimate_counts_only_the_models_drivers(cnn_converted):
    from dtmm.core import size

    _, report = cnn_converted
    code = size.op_code_bytes()
    for t, n in report.image_code_bytes().items():
        every = size.conv_kernel_bytes(t, ("pixel", "pointwise", "expanded", "im2col",
                                           "window", "pointwise_blocks",
                                           "im2col_interleaved", "im2col_large"))
        only = size.conv_kernel_bytes(t, report.drivers[t])
        assert 0 < only < every
        # DTMM_CONV_2D with every driver, less the kernels this model does not need,
        # less CMSIS-NN's conv (every conv rewritten)
        assert n == code[t]["DTMM_CONV_2D"] - (every - only) - code[t]["CONV_2D"]


def test_smaller_image_keeps_a_model_whose_image_would_grow(cnn, cnn_converted, monkeypatch):
    from dtmm.core import size

    out, report = cnn_converted
    saved = len(cnn) - len(out)
    # measured code: every conv rewritten drops CMSIS-NN's conv code, the image shrinks
    assert all(n < saved for n in report.image_code_bytes().values())
    same, same_report = convert_model(cnn, smaller_image=True)
    assert same == out and same_report.num_rewritten == 5
    # code larger than the saving on one target: the model stays as it is
    big = {"cortex-m4": {"DTMM_CONV_2D": saved + 28_000, "CONV_2D": 27_000},
           "cortex-m55": {"DTMM_CONV_2D": 1000}}
    monkeypatch.setattr(size, "op_code_bytes", lambda: big)
    monkeypatch.setattr(size, "conv_kernel_bytes", lambda target, names: None)
    kept, kept_report = convert_model(cnn, smaller_image=True)
    assert kept == cnn and kept_report.num_rewritten == 0
    assert kept_report.file_bytes_after == len(cnn)
    assert all(r.reason == "kept: the whole image would grow (cortex-m4 by 1,000 B; "
               "--smaller-image)" for r in kept_report.layers)
    assert "nothing to rewrite" in kept_report.table()


def test_image_note_weighs_the_saving_against_the_ops_code():
    from dtmm.convert import ConversionReport
    from dtmm.core import size
    from dtmm.layers import LayerReport

    code = size.op_code_bytes()
    assert {"cortex-m4", "cortex-m55"} <= set(code)
    conv = code["cortex-m4"]["DTMM_CONV_2D"]
    # one conv of two rewritten: both conv implementations are linked
    rewritten = [LayerReport(0, 0, "conv", rewritten=True), LayerReport(0, 1, "conv2")]
    small = ConversionReport(layers=rewritten, file_bytes_before=50_000,
                             file_bytes_after=50_000 - (conv - 1000), targets=("cortex-m4",))
    assert small.image_code_bytes() == {"cortex-m4": conv}
    assert small.image_note().endswith("larger than the dense one, cortex-m4 by 1,000 B")
    big = ConversionReport(layers=rewritten, file_bytes_before=500_000,
                           file_bytes_after=500_000 - conv - 1, targets=("cortex-m4",))
    assert big.image_note().endswith("the image is smaller than the dense one")
    assert f"the code changes by cortex-m4 +{conv:,} B (the DTMM ops; " in big.image_note()
    # every conv rewritten: CMSIS-NN's CONV_2D code leaves the image
    every = ConversionReport(layers=rewritten[:1], file_bytes_before=50_000,
                             file_bytes_after=50_000 - (conv - 1000), targets=("cortex-m4",))
    dense_conv = code["cortex-m4"].get("CONV_2D", 0)
    assert dense_conv > 0
    assert every.image_code_bytes() == {"cortex-m4": conv - dense_conv}
    assert "less the dense ops no longer used" in every.image_note()
    # Nothing rewritten: no note; a target without a measurement: left out.
    assert ConversionReport(targets=("cortex-m4",)).image_note() == ""
    assert ConversionReport(layers=rewritten, targets=("cortex-m7",)).image_note() == ""


def test_dtmm_op_holds_the_contract_v1(cnn, cnn_converted_v1):
    out, report = cnn_converted_v1
    a, b = load_model(cnn), load_model(out)
    codes = [oc for oc in b.operator_codes if oc.custom_code == "DTMM_CONV_2D"]
    assert len(codes) == 1 and codes[0].builtin == 32
    sg_a, sg_b = a.subgraphs[0], b.subgraphs[0]
    n = 0
    for oi, op in enumerate(sg_b.operators):
        if not is_dtmm(op):
            continue
        n += 1
        orig = sg_a.operators[oi]
        assert orig.name == "CONV_2D"
        assert op.custom_options_format == 0  # FLEXBUFFERS
        opts = flexbuffers.Loads(op.custom_options.tobytes())
        assert set(opts) == set(OPTION_KEYS) and opts["version"] == 1
        assert op.inputs[0].name == orig.inputs[0].name
        filt = orig.inputs[1]
        for suffix, t, ttype in zip(DTMM_SUFFIXES, op.inputs[1:], (
                TensorType.INT8, TensorType.UINT8, TensorType.INT32, TensorType.INT32,
                TensorType.INT32)):
            assert t.name == filt.name + "/dtmm_" + suffix
            assert t.dtype == ttype
        w = filt.value()
        d = read_dtmm(b, 0, oi)
        assert np.array_equal(d.fwcs.to_dense(), w)
        bias = orig.inputs[2].value()
        zp_in = int(orig.inputs[0].quant()[1][0])
        expect = bias.astype(np.int64) - zp_in * w.reshape(len(w), -1).astype(np.int64).sum(1)
        assert np.array_equal(d.bias, expect.astype(np.int32))
        assert opts["in_zp"] == zp_in
    assert n == 5


def test_dtmm_op_holds_the_contract_v2(cnn, cnn_converted):
    # version 2 by default: one packed int8 constant "<op>/dtmm_w" = planar table
    # (folded bias, multiplier, shift), bitmap padded to 4 bytes, kept filterlets
    out, report = cnn_converted
    a, b = load_model(cnn), load_model(out)
    n = 0
    for oi, op in enumerate(b.subgraphs[0].operators):
        if not is_dtmm(op):
            continue
        n += 1
        orig = a.subgraphs[0].operators[oi]
        opts = flexbuffers.Loads(op.custom_options.tobytes())
        assert set(opts) == set(contract.CONV_2D_V2.keys) and opts["version"] == 2
        assert len(op.inputs) == 2 and op.inputs[0].name == orig.inputs[0].name
        (w_t,) = op.inputs[1:]
        assert w_t.name == f"{oi}/dtmm_w" and w_t.dtype == TensorType.INT8
        w = orig.inputs[1].value()
        c_out, kh, kw, c_in = w.shape
        assert opts["b"] == c_in and (opts["kh"], opts["kw"]) == (kh, kw)
        d = read_dtmm(b, 0, oi)
        assert d.version == 2 and d.block == c_in
        assert np.array_equal(d.fwcs.to_dense(), w)
        raw = w_t.value()
        table = raw[:12 * c_out].view("<i4").reshape(3, c_out)
        bias = orig.inputs[2].value()
        zp_in = int(orig.inputs[0].quant()[1][0])
        expect = bias.astype(np.int64) - zp_in * w.reshape(len(w), -1).astype(np.int64).sum(1)
        assert np.array_equal(table[0], expect.astype(np.int32))
        assert np.array_equal(table[1], d.multiplier) and np.array_equal(table[2], d.shift)
        nbm = 4 * ((c_out * kh * kw + 31) // 32)
        bitmap = raw[12 * c_out:12 * c_out + nbm].view(np.uint8)
        v1_bitmap = FWCS.from_dense(w).bitmap
        assert np.array_equal(bitmap[:v1_bitmap.size], v1_bitmap)
        assert not bitmap[v1_bitmap.size:].any()
        assert np.array_equal(raw[12 * c_out + nbm:], FWCS.from_dense(w).values.reshape(-1))
        assert opts["z"] == zp_in and w_t.buffer.data.size == raw.size
    assert n == 5


@pytest.mark.parametrize("version, per_op", [(1, 5), (2, 1)])
def test_dense_constants_are_dropped_and_indices_remapped(cnn, cnn_converted,
                                                          cnn_converted_v1, version, per_op):
    out, _ = cnn_converted if version == 2 else cnn_converted_v1
    a, b = load_model(cnn), load_model(out)
    sg_a, sg_b = a.subgraphs[0], b.subgraphs[0]
    filters = {op.inputs[i].name for _, op in tm.conv_ops(a) for i in (1, 2)}
    names_b = [t.name for t in sg_b.tensors]
    assert not filters & set(names_b)
    assert len(sg_b.tensors) == len(sg_a.tensors) - len(filters) + 5 * per_op
    # every buffer but the sentinel is used, the sentinel is empty
    assert _referenced_buffers(b) | {id(b.buffers[0])} == {id(x) for x in b.buffers}
    assert b.buffers[0].data is None
    assert len(b.buffers) == len(a.buffers) - len(filters) + 5 * per_op
    # the file's indices point at the same names / bytes as before
    ta, tb = a._t.subgraphs[0], b._t.subgraphs[0]
    names_a = [t.name for t in sg_a.tensors]
    assert [names_a[i] for i in ta.inputs] == [names_b[i] for i in tb.inputs]
    assert [names_a[i] for i in ta.outputs] == [names_b[i] for i in tb.outputs]
    assert a.signature_defs, "TF models carry a serving signature"
    for sa, sb in zip(a._t.signatureDefs, b._t.signatureDefs):
        assert [names_a[t.tensorIndex] for t in sa.outputs] == \
               [names_b[t.tensorIndex] for t in sb.outputs]
        assert [names_a[t.tensorIndex] for t in sa.inputs] == \
               [names_b[t.tensorIndex] for t in sb.inputs]
    meta = lambda m: [(x.name, bytes(m._t.buffers[x._t.buffer].data)) for x in m.metadata]
    assert meta(a) == meta(b) and meta(a)
    # other ops: same tensors by name, in the same order
    for oa, ob, op in zip(ta.operators, tb.operators, sg_b.operators):
        if not is_dtmm(op):
            nm = lambda names, vec: [names[i] if i >= 0 else None for i in vec]
            assert nm(names_a, oa.inputs) == nm(names_b, ob.inputs)
            assert nm(names_a, oa.outputs) == nm(names_b, ob.outputs)


def test_min_sparsity_and_nothing_to_rewrite(cnn):
    out, report = convert_model(cnn, min_sparsity=0.99)
    assert report.num_rewritten == 0
    assert out == cnn  # the input, byte for byte
    assert all(r.reason.startswith("kept: sparsity") for r in report.layers)
    assert "nothing to rewrite" in report.table()


def test_dense_convs_stay_unless_always():
    # per-tensor filters at 0 % sparsity: version 1's five tensors only add bytes
    cfgs = [tm.ConvConfig(8, 8, 3, 3, seed=1), tm.ConvConfig(16, 4, 1, 1, seed=2)]
    buf = tm.conv_branches_model(cfgs, per_channel=False)
    out, report = convert_model(buf, format_version=1)
    assert out == buf and report.num_rewritten == 0
    assert all(r.reason == "kept: DTMM form is not smaller" for r in report.layers)
    assert all(r.bytes_after >= r.bytes_before for r in report.layers)
    out, report = convert_model(buf, always=True, format_version=1)
    assert report.num_rewritten == 2 and len(out) > len(buf)
    assert verify_models(buf, out, random=1, check=False).ok


def test_version_2_pays_where_version_1_did_not():
    # The same small convs: version 2's one packed constant costs less than the
    # dense filter and bias with their quantization, and the DTMM kernels are
    # modeled faster, so they are rewritten and the file shrinks.
    cfgs = [tm.ConvConfig(8, 8, 3, 3, seed=1), tm.ConvConfig(16, 4, 1, 1, seed=2)]
    buf = tm.conv_branches_model(cfgs, per_channel=False)
    out, report = convert_model(buf)
    assert report.num_rewritten == 2, report.table()
    assert len(out) < len(buf)
    assert all(r.bytes_after < r.bytes_before for r in report.layers)
    assert verify_models(buf, out, random=1, check=False).ok


def test_convert_is_idempotent(cnn_converted):
    out, _ = cnn_converted
    again, report = convert_model(out, always=True)
    assert again == out and report.layers == []


def test_bias_less_conv_folds_from_zero():
    cfgs = [tm.ConvConfig(5, 7, 3, 3, dilation=2, bias=False, seed=3, in_lo=0.2),
            tm.ConvConfig(4, 3, 2, 2, bias=False, seed=4, in_lo=-3)]
    buf = tm.conv_branches_model(cfgs)
    model = load_model(buf)
    assert all(op.inputs[2] is None for _, op in tm.conv_ops(model))
    out, report = convert_model(buf, always=True)
    conv = load_model(out)
    for (oi, _), r in zip(tm.conv_ops(model), report.layers):
        d = read_dtmm(conv, 0, oi)
        zp = d.params.input_zero_point
        assert zp != 0
        assert np.array_equal(d.bias, (-zp * d.fwcs.weight_sums()).astype(np.int32))
    assert verify_models(buf, out, random=2, check=False).ok


def test_shared_filter_tensor():
    cfg = tm.ConvConfig(6, 5, 3, 3, seed=7, sparsity=0.5)
    buf = tm.conv_branches_model([cfg, cfg])
    model = load_model(buf)
    (_, a), (_, b) = tm.conv_ops(model)
    b.inputs = [b.inputs[0], a.inputs[1], b.inputs[2]]  # one filter
    buf = model.save()
    out, report = convert_model(buf, always=True)
    names = [t.name for t in load_model(out).subgraphs[0].tensors]
    assert len(set(names)) == len(names)
    assert sum(n.endswith("/dtmm_w") for n in names) == 2
    assert verify_models(buf, out, random=1, check=False).ok
    out, report = convert_model(buf, always=True, format_version=1)
    names = [t.name for t in load_model(out).subgraphs[0].tensors]
    assert len(set(names)) == len(names)  # second copy's names are made unique
    assert sum(n.endswith("/dtmm_values") for n in names) == 2
    assert verify_models(buf, out, random=1, check=False).ok


def test_v2_names_avoid_existing_tensors():
    cfg = tm.ConvConfig(6, 5, 3, 3, seed=7, sparsity=0.5)
    model = load_model(tm.conv_branches_model([cfg, cfg]))
    (oi, op), _ = tm.conv_ops(model)
    op.outputs[0].name = f"{oi}/dtmm_w"  # a tensor already has the short name
    buf = model.save()
    out, _ = convert_model(buf, always=True)
    names = [t.name for t in load_model(out).subgraphs[0].tensors]
    assert len(set(names)) == len(names) and f"{oi}'/dtmm_w" in names
    assert verify_models(buf, out, random=1, check=False).ok


def test_unknown_format_version_is_an_argument_error(cnn):
    from dtmm.core.errors import ArgumentError

    with pytest.raises(ArgumentError, match="format_version must be one of 1, 2"):
        convert_model(cnn, format_version=3)


def test_float_and_int16_convs_are_skipped(cnn):
    model = load_model(cnn)
    (_, op), *_ = tm.conv_ops(model)
    op.inputs[0].dtype = TensorType.INT16
    op.outputs[0].dtype = TensorType.INT16
    out, report = convert_model(model.save())
    assert not report.layers[0].rewritten
    assert report.layers[0].reason == "skipped: INT16 input, INT16 output (int8 only)"
    assert report.num_rewritten == 4


def test_float_model_has_nothing_to_rewrite():
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec((1, 5, 5, 3), tf.float32)])
    def f(x):
        return tf.nn.conv2d(x, np.ones((3, 3, 3, 4), np.float32), 1, "SAME")

    buf = tf.lite.TFLiteConverter.from_concrete_functions(
        [f.get_concrete_function()], f).convert()
    out, report = convert_model(buf)
    assert out == buf and report.num_rewritten == 0
    assert report.layers[0].reason.startswith("skipped: FLOAT32 input")


@pytest.mark.parametrize("edit, error, message", [
    ("cin", ModelError, "filter C_in=3 does not match input channels 5"),
    ("cout", ModelError, "filter C_out=16 does not match output channels 15"),
    ("scales", ModelError, "filter has 3 scales for C_out=16"),
    ("bias_type", ModelError, "bias is INT64, int8 conv needs int32"),
    ("filter_zp", ModelError, "int8 filter zero points must be 0"),
    ("out_hw", ModelError, "output is 11x12, the conv gives 12x12"),
    ("filter_type", UnsupportedError, "int8 conv with INT16 filter is not supported"),
])
def test_inconsistent_int8_conv_is_an_error(cnn, edit, error, message):
    model = load_model(cnn)
    (_, op), *_ = tm.conv_ops(model)
    x, w, b, y = op.inputs + op.outputs
    if edit == "cin":
        x.shape = [1, 24, 24, 5]
    elif edit == "cout":
        y.shape = [1, 12, 12, 15]
    elif edit == "scales":
        w.quantization.scale = w.quantization.scale[:3]
    elif edit == "bias_type":
        b.dtype = TensorType.INT64
    elif edit == "filter_zp":
        w.quantization.zeroPoint = np.ones(16, np.int64)
    elif edit == "out_hw":
        y.shape = [1, 11, 12, 16]
    elif edit == "filter_type":
        w.dtype = TensorType.INT16
    with pytest.raises(error) as e:
        convert_model(model.save())
    assert message in str(e.value)
    assert "CONV_2D 0 (" in str(e.value)


def test_options_decoder():
    opts = {"version": 1, "kh": 3, "kw": 3, "sh": 1, "sw": 1, "dh": 1, "dw": 1,
            "padding": 0, "in_zp": -5, "act_min": -128, "act_max": 127}
    assert decode_options(encode_map(opts), "op") == opts
    assert decode_options(encode_map({**opts, "future": 7}), "op")["future"] == 7
    with pytest.raises(FormatError, match="version 3 is not supported"):
        decode_options(encode_map({**opts, "version": 3}), "op")
    # version 2's keys are its own: a v1 map labelled 2 misses them
    with pytest.raises(FormatError, match="miss b, p, z, lo, hi"):
        decode_options(encode_map({**opts, "version": 2}), "op")
    with pytest.raises(FormatError, match="miss act_max"):
        decode_options(encode_map({k: v for k, v in opts.items() if k != "act_max"}),
                       "op")
    with pytest.raises(FormatError, match="activation range"):
        decode_options(encode_map({**opts, "act_min": 100, "act_max": 99}), "op")
    with pytest.raises(FormatError, match="not a flexbuffer"):
        decode_options(np.array([1, 2, 3], np.uint8), "op")
    with pytest.raises(FormatError, match="custom_options_format 1 is not FLEXBUFFERS"):
        decode_options(encode_map(opts), "op", options_format=1)


def test_inspect_rejects_bad_fwcs_v2(cnn_converted):
    out, _ = cnn_converted
    model = load_model(out)
    op = next(o for o in model.subgraphs[0].operators if is_dtmm(o))
    w = op.inputs[1]
    data = w.data.copy()
    data[12 * op.outputs[0].shape[3]] ^= 1  # one more / one fewer kept filterlet
    w.buffer.data = data
    with pytest.raises(FormatError, match=r"w has \d+ bytes, expected \d+"):
        inspect_model(model.save())


def test_inspect_rejects_bad_fwcs(cnn_converted_v1):
    out, _ = cnn_converted_v1
    model = load_model(out)
    op = next(o for o in model.subgraphs[0].operators if is_dtmm(o))
    bitmap = op.inputs[2]
    data = bitmap.data.copy()
    data[0] ^= 1  # one more / one fewer kept filterlet than values holds
    bitmap.buffer.data = data
    with pytest.raises(FormatError, match="values hold"):
        inspect_model(model.save())


def test_reference_agrees_with_unfolded_tflite_formula(cnn, cnn_converted):
    # the folded DTMM op equals dtmm.reference.tflite_conv2d on the dense filter
    out, _ = cnn_converted
    a, b = load_model(cnn), load_model(out)
    rng = np.random.default_rng(0)
    for oi, op in tm.conv_ops(a):
        d = read_dtmm(b, 0, oi)
        x = rng.integers(-128, 128, d.input_shape, dtype=np.int8)
        bias = op.inputs[2].value()
        dense = ref.tflite_conv2d(x, d.fwcs.to_dense(), bias, d.multiplier, d.shift,
                                  d.params)
        assert np.array_equal(dense, ref.dtmm_conv2d(x, d.fwcs, d.bias, d.multiplier,
                                                     d.shift, d.params))
        assert isinstance(d.fwcs, FWCS)


def test_external_buffers_are_rejected(cnn):
    model = load_model(cnn)
    model.buffers[1]._t.offset, model.buffers[1]._t.size = 64, 16
    with pytest.raises(ModelError, match=r"offset/size, models > 2 GB\): not supported"):
        convert_model(model.save())


def test_corrupted_files_raise_only_dtmm_errors(cnn, cnn_converted):
    # byte flips in the flatbuffer tables (start and end of the file, where the
    # converter puts them) and anywhere: a clean DtmmError or a loadable model,
    # never another exception
    rng = np.random.default_rng(0)
    outcomes = {"ok": 0, "error": 0}
    for i in range(300):
        b = bytearray((cnn, cnn_converted[0])[i % 2])
        for _ in range(int(rng.integers(1, 3))):
            if rng.random() < 0.5:
                pos = int(rng.integers(0, 4096))
            else:
                pos = len(b) - 1 - int(rng.integers(0, 6000))
            b[pos] = int(rng.integers(0, 256))
        for fn in (lambda x: convert_model(x, always=True), inspect_model):
            try:
                fn(bytes(b))
                outcomes["ok"] += 1
            except (ModelError, FormatError, UnsupportedError):
                outcomes["error"] += 1
    assert outcomes["ok"] > 50 and outcomes["error"] > 50, outcomes


def test_byte_estimate_tracks_the_file(cnn_converted):
    # the per-layer estimate that decides "pays" is within 5 % of the real saving
    _, report = cnn_converted
    estimated = sum(r.bytes_before - r.bytes_after for r in report.layers)
    actual = report.file_bytes_before - report.file_bytes_after
    assert abs(estimated - actual) <= 0.05 * actual, (estimated, actual)
