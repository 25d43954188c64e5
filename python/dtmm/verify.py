"""Check a converted model against its original, bit for bit.

    report = verify_files("m.tflite", "m_dtmm.tflite", random=4, seed=0)
    print(report.summary())          # VerificationError (a DtmmError) if anything differs

1. Structure: both models have the same subgraphs, signatures, metadata, ops and
   tensors (by name, shape, type, quantization, constant data), except that each
   DTMM_CONV_2D stands where a CONV_2D was (same position, same input and output
   tensor names) and that conv's dense filter/bias are replaced by the DTMM
   constants. Each DTMM op's constants and options must be exactly what the
   contract derives from that CONV_2D (FWCS densifies to the filter, folded bias,
   multiplier, shift, activation range).
2. Numbers: the original runs in TFLite's interpreter with the BUILTIN_REF kernels,
   keeping every intermediate tensor, on random inputs and on the user's. For every
   DTMM op in subgraph 0, `dtmm.reference.dtmm_conv2d` on the recorded input, with
   the converted model's constants, must equal the original conv's recorded output.
   Invokes run in sequence on one interpreter per input source, so stateful models
   (resource variables, CALL_ONCE initialisation) are checked across time steps.
"""

from __future__ import annotations

import os
import sys
import tempfile
import warnings
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from dtmm import reference as ref
from dtmm.convert import LayerReport, dtmm_constants, parse_conv
from dtmm.errors import DtmmError, ModelError
from dtmm.inspect_model import parse_dtmm
from dtmm.tflite_io import (BuiltinOperator, is_dtmm_op, load_model, opcode_of,
                            quant_of, read_file, shape_of, text)


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


def _tensor_sig(model, t):
    scales, zps, qdim = quant_of(t)
    data = model.buffers[t.buffer].data if t.buffer else None
    return (tuple(shape_of(t)), int(t.type), bool(t.isVariable), tuple(scales.tolist()),
            tuple(zps.tolist()), qdim if len(scales) > 1 else 0,
            None if data is None or len(data) == 0 else bytes(np.asarray(data, np.uint8)))


def _names(sg, idx):
    return [text(sg.tensors[int(i)].name) if int(i) >= 0 else None
            for i in (idx if idx is not None else [])]


def _check_dtmm_against_conv(orig, conv, si, oi, where, failures):
    try:
        d = parse_dtmm(conv, si, oi)
    except DtmmError as e:
        failures.append(f"{where}: {e}")
        return None
    rep = LayerReport(subgraph=si, op_index=oi, name="")
    try:
        info = parse_conv(orig, si, oi, rep)
    except DtmmError as e:
        failures.append(f"{where}: original CONV_2D is invalid: {e}")
        return None
    if info is None:
        failures.append(f"{where}: original CONV_2D is not convertible ({rep.reason})")
        return None
    fw, folded, mult, shift = dtmm_constants(info)
    checks = (("filter (FWCS densified)", np.array_equal(d.fwcs.to_dense(), info.weights)),
              ("folded bias", np.array_equal(d.bias, folded)),
              ("multiplier", np.array_equal(d.multiplier, mult)),
              ("shift", np.array_equal(d.shift, shift)),
              ("options (stride/dilation/padding/zero points/activation)",
               d.params == info.params))
    for what, same in checks:
        if not same:
            failures.append(f"{where}: {what} differs from the original CONV_2D")
    return d


def compare_structure(orig, conv, report: VerifyReport) -> dict:
    """Append structural differences to report.failures; return
    {(subgraph, op): DtmmInfo} for the DTMM ops that decode (also those whose
    constants differ, so the numeric check shows what the difference does)."""
    f = report.failures
    dtmm = {}
    if len(orig.subgraphs) != len(conv.subgraphs):
        f.append(f"subgraph count differs: {len(orig.subgraphs)} vs {len(conv.subgraphs)}")
        return dtmm
    for si, (sa, sb) in enumerate(zip(orig.subgraphs, conv.subgraphs)):
        tag = f"subgraph {si}"
        if text(sa.name) != text(sb.name):
            f.append(f"{tag}: name {text(sa.name)!r} vs {text(sb.name)!r}")
        if _names(sa, sa.inputs) != _names(sb, sb.inputs) or \
                _names(sa, sa.outputs) != _names(sb, sb.outputs):
            f.append(f"{tag}: inputs/outputs differ")
        ops_a, ops_b = sa.operators or [], sb.operators or []
        if len(ops_a) != len(ops_b):
            f.append(f"{tag}: {len(ops_a)} ops vs {len(ops_b)}")
            continue
        replaced = set()  # original tensor indices a DTMM op may drop
        for oi, (a, b) in enumerate(zip(ops_a, ops_b)):
            out = _names(sb, b.outputs)
            where = f"op {oi if si == 0 else f'{si}:{oi}'} ({(out or ['?'])[0]})"
            code_a = opcode_of(orig, a)
            if is_dtmm_op(conv, b) and not is_dtmm_op(orig, a):
                if code_a[0] != BuiltinOperator.CONV_2D:
                    f.append(f"{where}: DTMM_CONV_2D replaces {code_a}, not CONV_2D")
                    continue
                if _names(sa, a.inputs)[:1] != _names(sb, b.inputs)[:1] or \
                        _names(sa, a.outputs) != out:
                    f.append(f"{where}: DTMM op input/output names differ from the "
                             "original CONV_2D's")
                    continue
                replaced.update(int(i) for i in list(a.inputs)[1:] if int(i) >= 0)
                d = _check_dtmm_against_conv(orig, conv, si, oi, where, f)
                if d is not None:
                    dtmm[(si, oi)] = d
                    report.dtmm_ops.append((si, oi, out[0]))
                continue
            if code_a != opcode_of(conv, b):
                f.append(f"{where}: op {code_a} became {opcode_of(conv, b)}")
            elif _names(sa, a.inputs) != _names(sb, b.inputs) or \
                    _names(sa, a.outputs) != out or \
                    _names(sa, a.intermediates) != _names(sb, b.intermediates):
                f.append(f"{where}: input/output tensor names differ")
            elif _plain(a.builtinOptions) != _plain(b.builtinOptions) or \
                    _plain(a.customOptions) != _plain(b.customOptions) or \
                    a.builtinOptionsType != b.builtinOptionsType:
                f.append(f"{where}: options differ")
            elif orig.operatorCodes[a.opcodeIndex].version != \
                    conv.operatorCodes[b.opcodeIndex].version:
                f.append(f"{where}: op version differs")
        # Tensors: every tensor the converted model kept must be unchanged; the
        # original may only lose the dense constants of replaced convs.
        want, may_drop, have = Counter(), Counter(), {}
        for ti, t in enumerate(sa.tensors):
            key = (text(t.name), _tensor_sig(orig, t))
            (may_drop if ti in replaced else want)[key] += 1
        for t in sb.tensors:
            name = text(t.name)
            key = (name, _tensor_sig(conv, t))
            if want[key] > 0:
                want[key] -= 1
            elif may_drop[key] > 0:
                may_drop[key] -= 1  # a replaced conv's constant still used elsewhere
            elif "/dtmm_" not in name:  # DTMM constants are checked with their op
                have.setdefault(name, 0)
        for (name, _), n in want.items():
            if n > 0:
                f.append(f"{tag}: tensor {name!r} changed or missing")
        for name in have:
            f.append(f"{tag}: tensor {name!r} is new or changed")
    # Signatures and metadata.
    def sigs(model):
        out = {}
        for sd in model.signatureDefs or []:
            sg = model.subgraphs[sd.subgraphIndex]
            out[text(sd.signatureKey)] = (
                sd.subgraphIndex,
                [(text(tm.name), text(sg.tensors[tm.tensorIndex].name))
                 for tm in sd.inputs or []],
                [(text(tm.name), text(sg.tensors[tm.tensorIndex].name))
                 for tm in sd.outputs or []])
        return out

    if sigs(orig) != sigs(conv):
        f.append("signature defs differ")

    def meta(model):
        return sorted((text(m.name), bytes(np.asarray(
            model.buffers[m.buffer].data if model.buffers[m.buffer].data is not None
            else [], np.uint8))) for m in model.metadata or [])

    if meta(orig) != meta(conv):
        f.append("metadata differs")
    return dtmm


# -- numbers ---------------------------------------------------------------------------
def runnable_original(orig) -> bytes | None:
    """TFLite's CONV_2D kernel insists on a bias input; TFLM's treats an absent one
    (-1 or 2 inputs) as zero. Give each bias-less CONV_2D a zero int32 bias with
    the scales TFLite expects, so TFLite can run the model; None if none lacks one."""
    from dtmm.tflite_io import save_model, schema

    changed = False
    for sg in orig.subgraphs:
        for op in sg.operators or []:
            if opcode_of(orig, op)[0] != BuiltinOperator.CONV_2D:
                continue
            ins = [int(i) for i in op.inputs]
            if len(ins) == 3 and ins[2] >= 0:
                continue
            w_t = sg.tensors[ins[1]]
            c_out = shape_of(w_t)[0]
            s_in = quant_of(sg.tensors[ins[0]])[0]
            s_w = quant_of(w_t)[0]
            buf = schema.BufferT()
            buf.data = np.zeros(4 * c_out, np.uint8)
            orig.buffers.append(buf)
            t = schema.TensorT()
            t.shape, t.type, t.buffer = [c_out], schema.TensorType.INT32, len(orig.buffers) - 1
            t.name = text(w_t.name) + "/zero_bias"
            if len(s_in) == 1 and len(s_w) in (1, c_out):
                q = schema.QuantizationParametersT()
                q.scale = [float(np.float32(s_in[0]) * v) for v in s_w]
                q.zeroPoint = [0] * len(s_w)
                t.quantization = q
            sg.tensors.append(t)
            op.inputs = ins[:2] + [len(sg.tensors) - 1]
            changed = True
    return save_model(orig) if changed else None


def _import_tensorflow():
    """Import TensorFlow (slow: only when running models) without its C++ start-up
    log lines on stderr; they are replayed if the import fails."""
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as log:
        os.dup2(log.fileno(), 2)
        try:
            import tensorflow as tf
        except BaseException:
            os.dup2(saved, 2)
            log.seek(0)
            sys.stderr.write(log.read().decode("utf-8", "replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
    return tf


def _interpreter(buf: bytes):
    tf = _import_tensorflow()

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
    sg0 = orig.subgraphs[0]
    for step, feed in enumerate(feeds):
        for idx, arr in feed.items():
            interp.set_tensor(idx, arr)
        interp.invoke()
        report.invokes += 1
        for (si, oi), d in dtmm.items():
            if si != 0:
                continue
            op = sg0.operators[oi]
            x = interp.get_tensor(int(op.inputs[0]))
            expected = interp.get_tensor(int(op.outputs[0]))
            got = ref.dtmm_conv2d(x, d.fwcs, d.bias, d.multiplier, d.shift, d.params)
            report.values_checked += expected.size
            if got.shape != expected.shape or not np.array_equal(got, expected):
                name = text(sg0.tensors[int(op.outputs[0])].name)
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
    orig = load_model(orig_buf, names[0])
    conv = load_model(conv_buf, names[1])
    report = VerifyReport()
    dtmm = compare_structure(orig, conv, report)
    report.static_only = [f"{si}:{oi}" for si, oi in dtmm if si != 0]
    if any(si == 0 for si, _ in dtmm) and (random > 0 or input_files):
        orig_buf = runnable_original(load_model(orig_buf, "original")) or orig_buf
        interp = _interpreter(orig_buf)
        details = sorted(interp.get_input_details(), key=lambda d: d["index"])
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
