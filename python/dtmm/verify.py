"""Check a converted model against its original, bit for bit.

    report = verify_files("m.tflite", "m_dtmm.tflite", random=4, seed=0)
    print(report.summary())          # VerificationError (a DtmmError) if anything differs

1. Structure: both models have the same subgraphs, signatures, metadata, ops and
   tensors (by name, shape, type, quantization, constant data), except that each
   DTMM_CONV_2D stands where a CONV_2D was (same position, same input and output
   tensor names) and that conv's dense filter/bias are replaced by the DTMM
   constants. Each DTMM op's constants and options must be exactly what the
   contract derives from that CONV_2D (FWCS densifies to the filter, folded bias,
   multiplier, shift, activation range). A DTMM_FULLY_CONNECTED stands where a
   FULLY_CONNECTED was, its packed weights, table and options exactly what
   dtmm.core.fc derives from it.
2. Numbers: the original runs in TFLite's interpreter with the BUILTIN_REF kernels,
   keeping every intermediate tensor, on random inputs and on the user's. For every
   DTMM op in subgraph 0, `dtmm.reference.dtmm_conv2d` on the recorded input, with
   the converted model's constants, must equal the original conv's recorded output
   (a DTMM_FULLY_CONNECTED: dtmm.core.fc's reference in the interpreter's single
   rounding, docs/fully_connected.md; the device rounds as TFLM's FULLY_CONNECTED).
   Invokes run in sequence on one interpreter per input source, so stateful models
   (resource variables, CALL_ONCE initialisation) are checked across time steps.
"""

from __future__ import annotations

import os
import warnings
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from dtmm import reference as ref
from dtmm.core import fc
from dtmm.core.errors import DtmmError, FormatError, ModelError
from dtmm.core.ops import check_dtmm_ops, dtmm_form, is_dtmm, read_conv, read_dtmm
from dtmm.core.tflite import BuiltinOperator, Model, TensorType, read_file, schema


class VerificationError(DtmmError):
    """The converted model differs from the original; `report` says where."""

    def __init__(self, report: "VerifyReport"):
        self.report = report
        super().__init__(report.failures[0] if report.failures else "verification failed")


@dataclass
class VerifyReport:
    dtmm_ops: list = field(default_factory=list)   # (subgraph, op, name)
    invokes: int = 0
    values_checked: int = 0
    static_only: list = field(default_factory=list)
    failures: list = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    def summary(self) -> str:
        lines = list(self.failures)
        n = len(self.dtmm_ops)
        if self.ok and self.invokes == 0:
            lines.append(f"OK: {n} DTMM_CONV_2D op(s) hold exactly the original "
                         "CONV_2D's weights, bias and parameters; structure identical "
                         "otherwise (no invokes run)")
        elif self.ok:
            lines.append(f"OK: {n} DTMM_CONV_2D op(s) match the original CONV_2D bit "
                         f"for bit over {self.invokes} invoke(s) "
                         f"({self.values_checked} output values); structure identical "
                         "otherwise")
        else:
            lines.append(f"FAILED: {len(self.failures)} difference(s)")
        if self.static_only:
            lines.append("checked statically only (not in subgraph 0): "
                         + ", ".join(self.static_only))
        return "\n".join(lines)


# -- structure -------------------------------------------------------------------------
def _plain(obj):
    """Comparable form of a schema object-API value (options tables, lists)."""
    if obj is None or isinstance(obj, (int, float, str, bool)):
        return obj
    if isinstance(obj, bytes):
        return obj.decode("utf-8", "replace")
    if isinstance(obj, np.ndarray):
        return ("array", obj.dtype.str, obj.tolist())
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if hasattr(obj, "__dict__"):
        return (type(obj).__name__, {k: _plain(v) for k, v in sorted(vars(obj).items())})
    return repr(obj)


def _tensor_sig(t):
    scales, zps, qdim = t.quant()
    data = t.data
    # scales by bit pattern: a NaN scale is unchanged when it is the same NaN
    return (t.shape, t.dtype, t.is_variable, tuple(scales.view(np.uint32).tolist()),
            tuple(zps.tolist()), qdim if len(scales) > 1 else 0,
            None if data is None else bytes(data))


def _names(vec):
    return [t.name if t is not None else None for t in (vec or [])]


def _code(op):
    return (op.opcode.builtin, op.opcode.custom_code)


def _check_dtmm_against_conv(orig, conv, si, oi, where, failures):
    d = read_dtmm(conv, si, oi)  # an op the device rejects is bad input (FormatError)
    try:
        info = read_conv(orig, si, oi)
    except DtmmError as e:
        failures.append(f"{where}: original CONV_2D is invalid: {e}")
        return None
    if info.skip:
        failures.append(f"{where}: original CONV_2D is not convertible ({info.skip})")
        return None
    form = dtmm_form(info, d.version, d.block)  # the same version and block size
    checks = (("filter (FWCS densified)", np.array_equal(d.fwcs.to_dense(), info.weights)),
              ("folded bias", np.array_equal(d.bias, form.bias)),
              ("multiplier", np.array_equal(d.multiplier, form.multiplier)),
              ("shift", np.array_equal(d.shift, form.shift)),
              ("options (stride/dilation/padding/zero points/activation)",
               d.params == info.params))
    for what, same in checks:
        if not same:
            failures.append(f"{where}: {what} differs from the original CONV_2D")
    return d


def compare_structure(orig, conv, report: VerifyReport) -> dict:
    """Append structural differences to report.failures; return
    {(subgraph, op): DtmmOp} for the DTMM ops that decode (also those whose
    constants differ, so the numeric check shows what the difference does)."""
    f = report.failures
    dtmm = {}
    if len(orig.subgraphs) != len(conv.subgraphs):
        f.append(f"subgraph count differs: {len(orig.subgraphs)} vs {len(conv.subgraphs)}")
        return dtmm
    for si, (sa, sb) in enumerate(zip(orig.subgraphs, conv.subgraphs)):
        tag = f"subgraph {si}"
        if sa.name != sb.name:
            f.append(f"{tag}: name {sa.name!r} vs {sb.name!r}")
        if _names(sa.inputs) != _names(sb.inputs) or _names(sa.outputs) != _names(sb.outputs):
            f.append(f"{tag}: inputs/outputs differ")
        if len(sa.operators) != len(sb.operators):
            f.append(f"{tag}: {len(sa.operators)} ops vs {len(sb.operators)}")
            continue
        replaced = set()  # ids of original tensors a DTMM op may drop
        for oi, (a, b) in enumerate(zip(sa.operators, sb.operators)):
            out = _names(b.outputs)
            where = f"op {oi if si == 0 else f'{si}:{oi}'} ({(out or ['?'])[0]})"
            if fc.is_dtmm_fc(b) and not fc.is_dtmm_fc(a):
                if not fc.is_fc(a):
                    f.append(f"{where}: DTMM_FULLY_CONNECTED replaces {a.name}, not "
                             "FULLY_CONNECTED")
                    continue
                if _names(a.inputs)[:1] != _names(b.inputs)[:1] or _names(a.outputs) != out:
                    f.append(f"{where}: DTMM op input/output names differ from the "
                             "original FULLY_CONNECTED's")
                    continue
                replaced.update(id(t) for t in a.inputs[1:] if t is not None)
                d = fc.read_dtmm_fc(conv, si, oi)  # the device would reject it: FormatError
                try:
                    problems = fc.check_against_fc(d, fc.read_fc(orig, si, oi))
                except DtmmError as e:
                    problems = [f"original FULLY_CONNECTED is invalid: {e}"]
                f.extend(f"{where}: {p}" for p in problems)
                dtmm[(si, oi)] = d
                report.dtmm_ops.append((si, oi, out[0]))
                continue
            if is_dtmm(b) and not is_dtmm(a):
                if a.opcode.builtin != BuiltinOperator.CONV_2D:
                    f.append(f"{where}: DTMM_CONV_2D replaces {a.name}, not CONV_2D")
                    continue
                if _names(a.inputs)[:1] != _names(b.inputs)[:1] or _names(a.outputs) != out:
                    f.append(f"{where}: DTMM op input/output names differ from the "
                             "original CONV_2D's")
                    continue
                replaced.update(id(t) for t in a.inputs[1:] if t is not None)
                d = _check_dtmm_against_conv(orig, conv, si, oi, where, f)
                if d is not None:
                    dtmm[(si, oi)] = d
                    report.dtmm_ops.append((si, oi, out[0]))
                continue
            if _code(a) != _code(b):
                f.append(f"{where}: op {_code(a)} became {_code(b)}")
            elif _names(a.inputs) != _names(b.inputs) or _names(a.outputs) != out or \
                    _names(a.intermediates) != _names(b.intermediates):
                f.append(f"{where}: input/output tensor names differ")
            elif _plain(a.builtin_options) != _plain(b.builtin_options) or \
                    _plain(a.custom_options) != _plain(b.custom_options) or \
                    a.builtin_options_type != b.builtin_options_type:
                f.append(f"{where}: options differ")
            elif a.opcode.version != b.opcode.version:
                f.append(f"{where}: op version differs")
        # Tensors: every tensor the converted model kept must be unchanged; the
        # original may only lose the dense constants of replaced convs.
        want, may_drop, have = Counter(), Counter(), {}
        for t in sa.tensors:
            key = (t.name, _tensor_sig(t))
            (may_drop if id(t) in replaced else want)[key] += 1
        for t in sb.tensors:
            key = (t.name, _tensor_sig(t))
            if want[key] > 0:
                want[key] -= 1
            elif may_drop[key] > 0:
                may_drop[key] -= 1  # a replaced conv's constant still used elsewhere
            elif "/dtmm_" not in t.name:  # DTMM constants are checked with their op
                have.setdefault(t.name, 0)
        for (name, _), n in want.items():
            if n > 0:
                f.append(f"{tag}: tensor {name!r} changed or missing")
        for name in have:
            f.append(f"{tag}: tensor {name!r} is new or changed")

    def sigs(model):
        return {sd.key: (model.subgraphs.index(sd.subgraph),
                         [(name_of(tm), t.name) for tm, t in sd.inputs],
                         [(name_of(tm), t.name) for tm, t in sd.outputs])
                for sd in model.signature_defs}

    def name_of(tm):
        return tm.name.decode("utf-8", "replace") if isinstance(tm.name, bytes) else tm.name

    if sigs(orig) != sigs(conv):
        f.append("signature defs differ")

    def meta(model):
        return sorted((md.name, bytes(md.buffer.data if md.buffer.data is not None else b""))
                      for md in model.metadata)

    if meta(orig) != meta(conv):
        f.append("metadata differs")
    return dtmm


# -- numbers ---------------------------------------------------------------------------
def runnable_original(orig: Model) -> bytes | None:
    """What TFLM runs but TFLite's interpreter refuses, made runnable; None if the
    model needs nothing. TFLite's CONV_2D kernel insists on a bias input; TFLM's
    treats an absent one (-1 or 2 inputs) as zero: each bias-less CONV_2D gets a zero
    int32 bias with the scales TFLite expects. TOCO-era files give 1-D bias tensors
    quantized_dimension 3, which TFLite rejects at load and TFLM ignores (no kernel
    reads a bias's quantization): a 1-D tensor's quantized dimension becomes 0."""
    changed = False
    for sg in orig.subgraphs:
        for t in sg.tensors:
            q = t.quantization
            if len(t.shape) == 1 and q is not None and q.quantizedDimension != 0:
                q.quantizedDimension = 0
                changed = True
    for sg in orig.subgraphs:
        for op in sg.operators:
            if op.opcode.builtin != BuiltinOperator.CONV_2D or len(op.inputs) < 2 or \
                    (len(op.inputs) == 3 and op.inputs[2] is not None):
                continue
            x_t, w_t = op.inputs[0], op.inputs[1]
            c_out = w_t.shape[0]
            s_in, s_w = x_t.quant()[0], w_t.quant()[0]
            q = None
            if len(s_in) == 1 and len(s_w) in (1, c_out):
                q = schema.QuantizationParametersT()
                q.scale = [float(np.float32(s_in[0]) * v) for v in s_w]
                q.zeroPoint = [0] * len(s_w)
            bias = orig.add_constant(sg, w_t.name + "/zero_bias", np.zeros(c_out, np.int32),
                                     TensorType.INT32, q)
            op.inputs = op.inputs[:2] + [bias]
            changed = True
    return orig.save() if changed else None


def _interpreter(buf: bytes):
    import tensorflow as tf  # slow: only when running models (the CLI quiets it)

    try:
        with warnings.catch_warnings():  # tf.lite.Interpreter's deprecation notice
            warnings.simplefilter("ignore")
            interp = tf.lite.Interpreter(
                model_content=buf,
                experimental_op_resolver_type=tf.lite.experimental.OpResolverType.BUILTIN_REF,
                experimental_preserve_all_tensors=True)
        interp.allocate_tensors()
    except (ValueError, RuntimeError) as e:
        raise ModelError(f"TFLite cannot load the original model: "
                         f"{str(e).strip().splitlines()[0]}") from None
    return interp


def _random_input(detail, rng):
    shape, dtype = tuple(detail["shape"]), np.dtype(detail["dtype"])
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return rng.integers(info.min, int(info.max) + 1, size=shape, dtype=dtype)
    if dtype == np.bool_:
        return rng.integers(0, 2, size=shape).astype(np.bool_)
    return rng.standard_normal(shape).astype(dtype)


def _sequence(arr, detail, source):
    """An array for one input: its exact shape (one invoke) or [T, *shape] (T)."""
    shape, dtype = tuple(detail["shape"]), np.dtype(detail["dtype"])
    arr = np.asarray(arr)
    if arr.dtype != dtype:
        raise DtmmError(f"{source}: dtype {arr.dtype}, input {detail['name']!r} needs "
                        f"{dtype}")
    if arr.shape == shape:
        return [arr]
    if arr.shape[1:] == shape:
        return list(arr)
    raise DtmmError(f"{source}: shape {list(arr.shape)}, input {detail['name']!r} needs "
                    f"{list(shape)} or [T, {', '.join(map(str, shape))}]")


def load_input_file(path, details) -> list:
    """A list of invokes, each {input index: array}, from .npy (single-input models)
    or .npz (one entry per input, keyed by input name or arr_<i> in input order)."""
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise DtmmError(f"cannot read input {path}: {e}") from None
    if isinstance(data, np.ndarray):
        if len(details) != 1:
            raise DtmmError(f"{path}: the model has {len(details)} inputs; give an .npz "
                            "with one array per input name")
        seqs = [_sequence(data, details[0], path)]
    else:
        seqs = []
        for i, d in enumerate(details):
            key = d["name"] if d["name"] in data.files else f"arr_{i}"
            if key not in data.files:
                raise DtmmError(f"{path}: no array for input {d['name']!r}")
            seqs.append(_sequence(data[key], d, path))
        if len({len(s) for s in seqs}) != 1:
            raise DtmmError(f"{path}: inputs have different sequence lengths")
    return [{d["index"]: s[t] for d, s in zip(details, seqs)} for t in range(len(seqs[0]))]


def _run_and_check(orig_buf, orig, dtmm, feeds, source, report):
    interp = _interpreter(orig_buf)
    # Tensor indices of the model TFLite runs (it may carry added zero biases).
    sg0 = Model.read(orig_buf, "original").subgraphs[0]
    index = {id(t): i for i, t in enumerate(sg0.tensors)}
    for step, feed in enumerate(feeds):
        for idx, arr in feed.items():
            try:
                interp.set_tensor(idx, arr)
            except ValueError as e:  # e.g. an input that also holds constant data
                raise ModelError(f"TFLite cannot set input {idx} of the original model: "
                                 f"{str(e).strip().splitlines()[0]}") from None
        try:
            interp.invoke()
        except (RuntimeError, ValueError) as e:
            raise ModelError(f"TFLite cannot run the original model: "
                             f"{str(e).strip().splitlines()[0]}") from None
        report.invokes += 1
        for (si, oi), d in dtmm.items():
            if si != 0:
                continue
            op = sg0.operators[oi]
            x = interp.get_tensor(index[id(op.inputs[0])])
            expected = interp.get_tensor(index[id(op.outputs[0])])
            try:
                if isinstance(d, fc.DtmmFcOp):  # the interpreter's FC rounds once
                    got = d.run(x, single_rounding=True)
                else:
                    got = ref.dtmm_conv2d(x, d.fwcs, d.bias, d.multiplier, d.shift, d.params)
            except FormatError as e:
                raise ModelError(f"op {oi}: {e}") from None
            report.values_checked += expected.size
            if got.shape != expected.shape or not np.array_equal(got, expected):
                name = op.outputs[0].name
                if got.shape != expected.shape:
                    detail = f"shape {got.shape} vs {expected.shape}"
                else:
                    bad = np.argwhere(got != expected)
                    first = tuple(int(v) for v in bad[0])
                    detail = (f"{len(bad)} of {expected.size} values differ, first at "
                              f"{first}: dtmm {int(got[first])}, tflite "
                              f"{int(expected[first])}")
                report.failures.append(f"layer {name} (op {oi}), {source} invoke "
                                       f"{step}: {detail}")


def verify_models(orig_buf: bytes, conv_buf: bytes, input_files=(), random: int = 4,
                  seed: int = 0, check: bool = True, names=("original", "converted")
                  ) -> VerifyReport:
    orig = Model.read(orig_buf, names[0])
    conv = Model.read(conv_buf, names[1])
    for model, name in ((orig, names[0]), (conv, names[1])):
        check_dtmm_ops(model, name)  # an op the device rejects is bad input, not a difference
    # A CONV_2D convert would refuse is bad input too, and TFLite may not survive
    # running it (a grouped conv with C_out not a multiple of the groups: SIGFPE).
    for si, sg in enumerate(orig.subgraphs):
        for oi, op in enumerate(sg.operators):
            if op.opcode.builtin == BuiltinOperator.CONV_2D:
                try:
                    read_conv(orig, si, oi)
                except DtmmError as e:
                    raise type(e)(f"{names[0]}: {e}") from None
    report = VerifyReport()
    dtmm = compare_structure(orig, conv, report)
    report.static_only = [f"{si}:{oi}" for si, oi in dtmm if si != 0]
    if any(si == 0 for si, _ in dtmm) and (random > 0 or input_files):
        orig_buf = runnable_original(Model.read(orig_buf, names[0])) or orig_buf
        interp = _interpreter(orig_buf)
        try:
            details = sorted(interp.get_input_details(), key=lambda d: d["index"])
        except UnicodeDecodeError:  # TFLite decodes every input's name as UTF-8
            raise ModelError("TFLite cannot describe the original model's inputs: an "
                             "input tensor name is not UTF-8") from None
        sources = []
        if random > 0:
            rng = np.random.default_rng(seed)
            sources.append((f"random (seed {seed})",
                            [{d["index"]: _random_input(d, rng) for d in details}
                             for _ in range(random)]))
        for path in input_files:
            sources.append((os.path.basename(os.fspath(path)),
                            load_input_file(path, details)))
        for source, feeds in sources:
            _run_and_check(orig_buf, orig, dtmm, feeds, source, report)
    if check and not report.ok:
        raise VerificationError(report)
    return report


def verify_files(original, converted, input_files=(), random: int = 4, seed: int = 0,
                 check: bool = True) -> VerifyReport:
    """Verify CONVERTED against ORIGINAL (paths). Raises VerificationError on any
    difference when `check`, else returns the report with its failures."""
    return verify_models(read_file(original), read_file(converted),
                         input_files=input_files, random=random, seed=seed, check=check,
                         names=(os.fspath(original), os.fspath(converted)))
