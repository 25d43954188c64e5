#!/usr/bin/env python3
"""Mutation fuzzer for `dtmm convert / inspect / verify`.

    python tests/fuzz/fuzz_cli.py --budget 60                 # CI: ~a minute
    python tests/fuzz/fuzz_cli.py --mutants 5000 --out DIR    # long run, summary in DIR

Seeds: the corpus of fuzz_models.py (small int8 TensorFlow models and their DTMM
conversions), made at start into --corpus (cached). Each mutant (mutate.py:
structured object-API edits, byte flips, truncations) of an original model goes
through `inspect`, `convert --always` and, when that succeeds, `verify MUTANT OUT`;
each mutant of a converted model through `inspect`, `verify ORIGINAL MUTANT` and
`convert`. A fixed list of CLI cases (missing paths, directories, same in/out
file, read-only or impossible output locations, bad --input files) runs first.

The commands run in a worker process (TensorFlow imported once) by calling
`dtmm.cli.main(argv)` with file descriptors 1 and 2 captured, which is what
`python -m dtmm` does; an exception escaping main() is what would print a
traceback. The parent enforces a per-mutant timeout and memory limit and restarts
the worker after a crash, so hangs, aborts and segfaults are findings too.

Oracles (a violated one is a finding of that class):
  exit-code        exit status 0, 2 (verify: also 1), nothing else
  traceback        an exception escapes dtmm.cli.main
  error-line       exit 2 without exactly one "dtmm: error:" line on stderr
  partial-output   an output file or a .dtmm-*.tmp left after a failed convert
  input-modified   an input file changed
  device-rejects-output   convert wrote a DTMM op the device rejects
                   (device_checks.contract_errors: the TFLM op's Prepare restated
                   plus the real C validator through ctypes)
  passthrough-invalid     convert copied an invalid DTMM op of its input unchanged
  inspect-accepts-invalid inspect exit 0 on a DTMM op the device rejects
  verify-accepts-invalid  verify exit 0 on a DTMM op the device rejects
  verify-1-on-invalid     verify exit 1 (difference) where it should say 2 (bad op)
  verify-false-difference verify exit 1 with a numeric difference while the C
                   kernel, on the same inputs, equals TFLite's reference conv
  convert-not-equivalent  a converted op (C kernel == dtmm.reference) differs from
                   TFLite's conv of the original: the converter rewrote a conv it
                   cannot represent
  kernel-differs   the C kernel differs from dtmm.reference and from TFLite
  verify-missed    verify exit 0 although the C kernel differs from TFLite
  verify-rejects-own-output  verify exit 1 (structure) on convert's own output
  accepts-invalid-flatbuffer  convert or inspect exit 0 on a file TFLite's
                   flatbuffer verifier rejects
  crash / timeout / memory  the worker died, hung or grew past --mem-gb
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import csv
import hashlib
import io
import json
import multiprocessing
import os
import random
import re
import shutil
import signal
import stat
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
if HERE not in sys.path:
    sys.path.insert(0, HERE)
if os.path.join(ROOT, "python") not in sys.path:
    sys.path.insert(0, os.path.join(ROOT, "python"))

ERROR_LINE = re.compile(r"^dtmm(?: [\w-]+)?: error: ")
COMPONENT = {
    "exit-code": "CLI", "traceback": "(per command)", "error-line": "CLI",
    "partial-output": "converter", "input-modified": "CLI",
    "device-rejects-output": "converter", "passthrough-invalid": "converter",
    "inspect-accepts-invalid": "inspect", "verify-accepts-invalid": "verify",
    "verify-1-on-invalid": "verify", "verify-false-difference": "verify/reference",
    "kernel-differs": "C kernel", "verify-missed": "verify",
    "convert-not-equivalent": "converter / contract",
    "accepts-invalid-flatbuffer": "converter / inspect (loader)",
    "verify-rejects-own-output": "verify / converter",
    "crash": "(per command)", "timeout": "(per command)", "memory": "(per command)",
}


# ====================================================================== worker side
def _sha(path):
    try:
        with open(path, "rb") as f:
            return hashlib.sha1(f.read()).hexdigest()
    except OSError:
        return None


class CliResult:
    def __init__(self, argv, rc, out, err, tb, seconds):
        self.argv, self.rc, self.out, self.err, self.tb, self.seconds = (
            argv, rc, out, err, tb, seconds)


STATUS_FILE = None  # set by the worker: the parent reads it after a crash


def set_status(what: str) -> None:
    if STATUS_FILE:
        with open(STATUS_FILE, "w") as fh:
            fh.write(what)


def run_cli(argv) -> CliResult:
    """dtmm.cli.main(argv) with fds 1 and 2 captured (C++ log lines included)."""
    import dtmm.cli

    set_status(" ".join(["dtmm"] + [os.path.basename(a) for a in argv]))
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    py_out, py_err = io.StringIO(), io.StringIO()
    with tempfile.TemporaryFile() as fo, tempfile.TemporaryFile() as fe:
        os.dup2(fo.fileno(), 1)
        os.dup2(fe.fileno(), 2)
        tb = None
        t0 = time.time()
        try:
            with contextlib.redirect_stdout(py_out), contextlib.redirect_stderr(py_err):
                try:
                    rc = dtmm.cli.main(list(argv))
                except SystemExit as e:
                    rc = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
                except BaseException:  # noqa: BLE001 - python -m dtmm would print this
                    tb = traceback.format_exc()
                    rc = 1
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
        fo.seek(0)
        fe.seek(0)
        # what the process would write: Python's streams and the C++ libraries' fds
        out = py_out.getvalue() + fo.read().decode("utf-8", "replace")
        err = py_err.getvalue() + fe.read().decode("utf-8", "replace")
    return CliResult(argv, rc, out, err, tb, time.time() - t0)


def _printable(s: str) -> str:
    return "".join(c if c.isprintable() else f"\\x{ord(c) & 0xFF:02x}" for c in s)


def _tb_signature(tb: str) -> str:
    """Exception type and the innermost dtmm frame of a traceback."""
    frames = re.findall(r'File "([^"]+)", line (\d+), in (\S+)', tb)
    last = tb.strip().splitlines()[-1] if tb.strip() else "?"
    etype = last.split(":")[0]
    dtmm_frames = [f for f in frames if "/dtmm/" in f[0]]
    where = dtmm_frames[-1] if dtmm_frames else (frames[-1] if frames else ("?", "?", "?"))
    return f"{etype} in {os.path.basename(where[0])}:{where[2]}"


class Findings:
    def __init__(self):
        self.items = []

    def add(self, cls, command, signature, message):
        self.items.append({"class": cls, "command": command, "signature": signature,
                           "message": _printable(message[:600])})


def check_common(r: CliResult, allowed, f: Findings, outputs=(), inputs=()):
    cmd = r.argv[0] if r.argv else "?"
    if r.tb is not None:
        f.add("traceback", cmd, f"{cmd}: {_tb_signature(r.tb)}", r.tb.strip().splitlines()[-1])
        return
    if r.rc not in allowed:
        f.add("exit-code", cmd, f"{cmd}: exit {r.rc}", r.err.strip()[-300:])
    if r.rc == 2:
        # argparse's own errors come with its usage lines; dtmm's with nothing else
        lines = [l for l in r.err.splitlines() if l.strip() and not l.startswith(
            ("usage:", "       "))]
        errs = [l for l in lines if ERROR_LINE.match(l)]
        if len(errs) != 1:
            f.add("error-line", cmd, f"{cmd}: {len(errs)} error lines",
                  _printable(r.err.strip()[-300:]) or "(empty stderr)")
        elif len(lines) != 1:
            f.add("error-line", cmd, f"{cmd}: error message spans {len(lines)} lines",
                  _printable(r.err.strip()[:300]))
    for path, existed in outputs:
        if r.rc != 0 and not existed and os.path.lexists(path):
            f.add("partial-output", cmd, f"{cmd}: output left after exit {r.rc}", path)
        d = os.path.dirname(os.path.abspath(path))
        if os.path.isdir(d):
            for name in os.listdir(d):
                if name.startswith(".dtmm-") and name.endswith(".tmp"):
                    f.add("partial-output", cmd, f"{cmd}: temp file left", name)
                    with contextlib.suppress(OSError):
                        os.unlink(os.path.join(d, name))
    for path, digest in inputs:
        if digest is not None and _sha(path) != digest:
            f.add("input-modified", cmd, f"{cmd}: input changed", path)


def _parse(path):
    import mutate

    try:
        with open(path, "rb") as fh:
            return mutate.load(fh.read())
    except Exception:  # noqa: BLE001 - unparsable: no DTMM op to judge
        return None


def flatbuffer_invalid(path) -> bool:
    """TFLite's own flatbuffer verifier (tf.lite.Interpreter runs it before any
    parse) rejects the file."""
    import warnings

    import tensorflow as tf

    set_status("oracle: TFLite flatbuffer verifier")
    try:
        with open(path, "rb") as fh:
            data = fh.read()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tf.lite.Interpreter(model_content=data)
    except Exception as e:  # noqa: BLE001
        return "not a valid Flatbuffer" in str(e)
    return False


def _errors(model, which="contract"):
    import device_checks as dc

    if model is None:
        return []
    try:
        return dc.contract_errors(model) if which == "contract" else dc.device_errors(model)
    except Exception as e:  # noqa: BLE001 - a model the replica cannot even walk
        return [(0, -1, f"unreadable by the device check: {type(e).__name__}")]


# -- numeric oracle: the C kernel against TFLite's reference conv ------------------------
def _runnable(model):
    """TFLite's CONV_2D needs a bias input; TFLM treats a missing one as zero. Give
    each bias-less conv a zero bias (an independent copy of what verify does)."""
    import mutate
    import numpy as np
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

    changed = False
    for sg in model.subgraphs:
        for op in sg.operators or []:
            oc = model.operatorCodes[op.opcodeIndex]
            if max(oc.builtinCode, oc.deprecatedBuiltinCode) != schema.BuiltinOperator.CONV_2D:
                continue
            ins = [int(i) for i in op.inputs]
            if len(ins) >= 3 and ins[2] >= 0:
                continue
            w = sg.tensors[ins[1]]
            c_out = int(w.shape[0])
            b = schema.BufferT()
            b.data = np.zeros(4 * c_out, np.uint8)
            model.buffers.append(b)
            t = schema.TensorT()
            t.shape, t.type, t.buffer = [c_out], schema.TensorType.INT32, len(model.buffers) - 1
            t.name = "zero_bias"
            sx = sg.tensors[ins[0]].quantization.scale[0]
            q = schema.QuantizationParametersT()
            q.scale = [float(np.float32(sx) * np.float32(s)) for s in w.quantization.scale]
            q.zeroPoint = [0] * len(q.scale)
            t.quantization = q
            sg.tensors.append(t)
            op.inputs = ins[:2] + [len(sg.tensors) - 1]
            changed = True
    return mutate.pack(model) if changed else None


def kernel_vs_tflite(orig_path, conv_path, seed=0, invokes=3):
    """[(op, message)] where the C kernel on a converted DTMM op differs from the
    original CONV_2D's output in TFLite (BUILTIN_REF); None if TFLite cannot run the
    original or a DTMM op does not pass the device checks."""
    import numpy as np

    import device_checks as dc
    import dtmm_clib
    import mutate

    with open(orig_path, "rb") as fh:
        obuf = fh.read()
    orig = mutate.load(obuf)
    conv = _parse(conv_path)
    if conv is None:
        return None
    layers = []
    sg = conv.subgraphs[0]
    for oi, op in enumerate(sg.operators or []):
        if dc.is_dtmm(conv, op):
            try:
                layer = dc.check_op(conv, sg, op)
            except dc.Reject:
                return None
            if layer is not None:  # None: blocks this tree's C kernel does not run
                layers.append((oi, layer))
    if not layers:
        return []
    set_status("oracle: TFLite on the original (kernel_vs_tflite)")
    obuf = _runnable(mutate.load(obuf)) or obuf
    import tensorflow as tf

    try:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            interp = tf.lite.Interpreter(
                model_content=obuf,
                experimental_op_resolver_type=tf.lite.experimental.OpResolverType.BUILTIN_REF,
                experimental_preserve_all_tensors=True)
        interp.allocate_tensors()
    except Exception:  # noqa: BLE001 - TFLite rejects the original
        return None
    rng = np.random.default_rng(seed)
    details = interp.get_input_details()
    bad = []
    for k in range(invokes):
        try:
            for d in details:
                dt = np.dtype(d["dtype"])
                if np.issubdtype(dt, np.integer):
                    info = np.iinfo(dt)
                    if k == 1:
                        arr = np.full(d["shape"], info.max, dt)
                    elif k == 2:
                        arr = np.full(d["shape"], info.min, dt)
                    else:
                        arr = rng.integers(info.min, int(info.max) + 1, d["shape"], dtype=dt)
                else:
                    arr = rng.standard_normal(d["shape"]).astype(dt)
                interp.set_tensor(d["index"], arr)
            interp.invoke()
        except Exception:  # noqa: BLE001
            return None
        for oi, layer in layers:
            oop = orig.subgraphs[0].operators[oi]
            x = interp.get_tensor(int(oop.inputs[0]))
            want = interp.get_tensor(int(oop.outputs[0]))
            ref = _numpy_reference(x, layer)
            for variant in ("default", "im2col"):
                got = dtmm_clib.load(variant).conv(x, layer)
                if got.shape != want.shape or not np.array_equal(got, want):
                    n = int(np.sum(got != want)) if got.shape == want.shape else -1
                    same_as_ref = ref is not None and np.array_equal(got, ref)
                    bad.append((oi, f"op {oi} ({variant}) invoke {k}: {n} of {want.size} "
                                    "values differ from TFLite", same_as_ref))
                    break
    return bad


def _numpy_reference(x, layer):
    """dtmm.reference on the layer the device accepted (None if it raises)."""
    try:
        from dtmm import reference as ref
        from dtmm.fwcs import FWCS

        d, p = layer.dims, layer.params
        fw = FWCS.from_arrays(d["output_c"], d["kernel_h"], d["kernel_w"], d["input_c"],
                              layer.bitmap, layer.values)
        params = ref.ConvParams(stride_h=p["stride_h"], stride_w=p["stride_w"],
                                dilation_h=p["dilation_h"], dilation_w=p["dilation_w"],
                                padding=layer.padding, input_zero_point=p["input_zero_point"],
                                output_zero_point=p["output_offset"],
                                act_min=p["activation_min"], act_max=p["activation_max"])
        return ref.dtmm_conv2d(x, fw, layer.bias, layer.multiplier, layer.shift, params)
    except Exception:  # noqa: BLE001
        return None


# -- one mutant ---------------------------------------------------------------------
def evaluate(job) -> list:
    f = Findings()
    mutant, kind, work = job["mutant"], job["kind"], job["work"]
    set_status("start")
    h_mut = _sha(mutant)
    out = os.path.join(work, "out.tflite")
    if os.path.lexists(out):
        os.unlink(out)
    mut_model = _parse(mutant)

    invalid_fb = flatbuffer_invalid(mutant)
    r = run_cli(["inspect", mutant])
    check_common(r, {0, 2}, f, inputs=[(mutant, h_mut)])
    if r.rc == 0 and r.tb is None and invalid_fb:
        f.add("accepts-invalid-flatbuffer", "inspect", "inspect: exit 0 on a file TFLite's "
              "verifier rejects", "not a valid Flatbuffer")
    if r.rc == 0 and r.tb is None:
        errs = _errors(mut_model, "device")
        if errs:
            f.add("inspect-accepts-invalid", "inspect", f"inspect: {_msg_class(errs[0][2])}",
                  errs[0][2])

    if kind == "orig":
        argv = ["convert", mutant, "-o", out] + (["--always"] if job.get("always", True)
                                                 else [])
        r = run_cli(argv)
        check_common(r, {0, 2}, f, outputs=[(out, False)], inputs=[(mutant, h_mut)])
        if r.rc == 0 and r.tb is None and invalid_fb:
            f.add("accepts-invalid-flatbuffer", "convert", "convert: exit 0 on a file "
                  "TFLite's verifier rejects", "not a valid Flatbuffer")
        if r.rc == 0 and r.tb is None and os.path.exists(out):
            out_model = _parse(out)
            if out_model is None or flatbuffer_invalid(out):
                f.add("device-rejects-output", "convert", "convert: output is not a valid "
                      "flatbuffer", out)
            errs = _errors(out_model, "contract")
            in_errs = {e[2] for e in _errors(mut_model, "contract")}
            for e in errs:
                cls = "passthrough-invalid" if e[2] in in_errs else "device-rejects-output"
                f.add(cls, "convert", f"convert: {_msg_class(e[2])}", e[2])
            if not errs and job.get("numeric", True):
                h_out = _sha(out)
                r2 = run_cli(["verify", mutant, out])
                # exit 1 is judged below against the C kernel and TFLite
                check_common(r2, {0, 1, 2}, f, inputs=[(mutant, h_mut), (out, h_out)])
                if r2.tb is None and r2.rc in (0, 1):
                    bad = kernel_vs_tflite(mutant, out)
                    if bad:
                        oi, msg, same_as_ref = bad[0]
                        if same_as_ref:  # C == dtmm.reference != TFLite: not equivalent
                            f.add("convert-not-equivalent", "convert",
                                  f"convert: {job.get('mutation_kind', 'op')} differs from "
                                  "TFLite (kernel == dtmm.reference)", msg)
                        else:
                            f.add("kernel-differs", "convert",
                                  "C kernel differs from dtmm.reference and TFLite", msg)
                        if r2.rc == 0:
                            f.add("verify-missed", "verify", "verify OK on a differing op",
                                  msg)
                    elif bad is not None and r2.rc == 1:
                        if "values differ" in r2.err:
                            f.add("verify-false-difference", "verify",
                                  "verify: numeric difference where kernel == TFLite",
                                  r2.err.strip().splitlines()[-1])
                        else:
                            f.add("verify-rejects-own-output", "verify",
                                  "verify: exit 1 on convert's output (structure)",
                                  r2.err.strip()[-300:])
    else:
        orig = job["orig"]
        h_orig = _sha(orig)
        r = run_cli(["verify", orig, mutant])
        check_common(r, {0, 1, 2}, f, inputs=[(mutant, h_mut), (orig, h_orig)])
        if r.tb is None and r.rc in (0, 1):
            errs = _errors(mut_model, "contract")
            if errs and r.rc == 1:
                f.add("verify-1-on-invalid", "verify", f"verify: exit 1 on "
                      f"{_msg_class(errs[0][2])}", errs[0][2])
            if errs and r.rc == 0:
                f.add("verify-accepts-invalid", "verify", f"verify: exit 0 on "
                      f"{_msg_class(errs[0][2])}", errs[0][2])
        r = run_cli(["convert", mutant, "-o", out])
        check_common(r, {0, 2}, f, outputs=[(out, False)], inputs=[(mutant, h_mut)])
        if r.rc == 0 and r.tb is None and invalid_fb:
            f.add("accepts-invalid-flatbuffer", "convert", "convert: exit 0 on a file "
                  "TFLite's verifier rejects", "not a valid Flatbuffer")
        if r.rc == 0 and r.tb is None and os.path.exists(out):
            in_errs = {e[2] for e in _errors(mut_model, "contract")}
            for e in _errors(_parse(out), "contract"):
                cls = "passthrough-invalid" if e[2] in in_errs else "device-rejects-output"
                f.add(cls, "convert", f"convert: {_msg_class(e[2])}", e[2])
    with contextlib.suppress(OSError):
        os.unlink(out)
    return f.items


def _msg_class(msg: str) -> str:
    """A device-check message without its numbers and names: one signature per rule."""
    m = re.sub(r"'[^']*'", "'K'", msg)
    m = re.sub(r"-?\d+(\.\d+)?", "N", m)
    m = re.sub(r"^[^:]*/dtmm_\w+: ", "", m)
    return m[:120]


# -- fixed CLI cases ------------------------------------------------------------------------
def cli_cases(corpus: dict, work: str) -> list:
    """[(name, argv, allowed exit codes, outputs that must not appear, inputs)]"""
    import numpy as np

    tiny, tiny_dtmm, stack = corpus["tiny"], corpus["tiny_dtmm"], corpus["stack"]
    d = os.path.join(work, "cli")
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    a_dir = os.path.join(d, "a_dir")
    os.makedirs(a_dir)
    ro = os.path.join(d, "read_only")
    os.makedirs(ro)
    os.chmod(ro, stat.S_IRUSR | stat.S_IXUSR)
    empty = os.path.join(d, "empty.tflite")
    open(empty, "wb").close()
    local = os.path.join(d, "tiny.tflite")
    shutil.copyfile(tiny, local)
    link = os.path.join(d, "tiny_link.tflite")
    os.symlink(local, link)
    a_file = os.path.join(d, "a_file")
    open(a_file, "wb").write(b"x")
    garbage = os.path.join(d, "garbage.npy")
    open(garbage, "wb").write(b"not numpy")
    wrong_shape = os.path.join(d, "wrong_shape.npy")
    np.save(wrong_shape, np.zeros((2, 3), np.int8))
    wrong_dtype = os.path.join(d, "wrong_dtype.npy")
    np.save(wrong_dtype, np.zeros((1, 5, 5, 2), np.float32))
    no_key = os.path.join(d, "no_key.npz")
    np.savez(no_key, other=np.zeros((1, 5, 5, 2), np.int8))
    good = os.path.join(d, "good.npy")
    np.save(good, np.ones((3, 1, 5, 5, 2), np.int8))
    missing = os.path.join(d, "missing.tflite")
    out = os.path.join(d, "out.tflite")
    cases = [
        ("convert missing input", ["convert", missing, "-o", out], {2}, [out], []),
        ("convert directory input", ["convert", a_dir, "-o", out], {2}, [out], []),
        ("convert empty file", ["convert", empty, "-o", out], {2}, [out], [empty]),
        ("convert into missing dir", ["convert", local, "-o",
                                      os.path.join(d, "nope", "o.tflite")], {2},
         [os.path.join(d, "nope")], [local]),
        ("convert onto a directory", ["convert", local, "-o", a_dir, "--always"], {2}, [],
         [local]),
        ("convert below a file", ["convert", local, "-o", os.path.join(a_file, "o.tflite")],
         {2}, [], [local, a_file]),
        ("convert same file", ["convert", local, "-o", local, "--always"], {2}, [], [local]),
        ("convert same file via symlink", ["convert", local, "-o", link, "--always"], {2}, [],
         [local]),
        ("convert same file, other spelling",
         ["convert", local, "-o", os.path.join(d, ".", "tiny.tflite"), "--always"], {2}, [],
         [local]),
        ("convert same file, nothing to rewrite",
         ["convert", local, "-o", local, "--min-sparsity", "1"], {0, 2}, [], [local]),
        # root ignores directory permissions: then the write may succeed
        ("convert into read-only dir", ["convert", local, "-o", os.path.join(ro, "o.tflite")],
         {2} if os.geteuid() != 0 else {0, 2}, [] if os.geteuid() == 0
         else [os.path.join(ro, "o.tflite")], [local]),
        ("convert bad --min-sparsity", ["convert", local, "-o", out, "--min-sparsity", "2"],
         {2}, [out], [local]),
        ("inspect missing", ["inspect", missing], {2}, [], []),
        ("inspect directory", ["inspect", a_dir], {2}, [], []),
        ("inspect empty", ["inspect", empty], {2}, [], [empty]),
        ("verify missing original", ["verify", missing, tiny_dtmm], {2}, [], [tiny_dtmm]),
        ("verify missing converted", ["verify", tiny, missing], {2}, [], [tiny]),
        ("verify directory", ["verify", a_dir, tiny_dtmm], {2}, [], []),
        ("verify same model", ["verify", tiny, tiny], {0}, [], [tiny]),
        ("verify really different", ["verify", stack, tiny_dtmm], {1}, [], [stack, tiny_dtmm]),
        ("verify swapped", ["verify", tiny_dtmm, tiny], {1, 2}, [], [tiny, tiny_dtmm]),
        ("verify --input missing", ["verify", tiny, tiny_dtmm, "--input", missing], {2}, [],
         []),
        ("verify --input garbage", ["verify", tiny, tiny_dtmm, "--input", garbage], {2}, [],
         [garbage]),
        ("verify --input wrong shape", ["verify", tiny, tiny_dtmm, "--input", wrong_shape],
         {2}, [], [wrong_shape]),
        ("verify --input wrong dtype", ["verify", tiny, tiny_dtmm, "--input", wrong_dtype],
         {2}, [], []),
        ("verify --input npz without key", ["verify", tiny, tiny_dtmm, "--input", no_key],
         {2}, [], []),
        ("verify --input sequence", ["verify", tiny, tiny_dtmm, "--input", good,
                                     "--random", "0"], {0}, [], [good]),
        ("verify --random -1", ["verify", tiny, tiny_dtmm, "--random", "-1"], {2}, [], []),
    ]
    if os.path.isdir("/proc/self"):  # a file system nobody can create files in
        cases.append(("convert into /proc", ["convert", local, "-o",
                                             "/proc/dtmm-fuzz-out.tflite", "--always"],
                      {2}, [], [local]))
    return cases


def evaluate_cli_cases(job) -> list:
    from fuzz_models import build_corpus

    corpus = build_corpus(job["corpus"])
    f = Findings()
    cases = cli_cases(corpus, job["work"])
    for name, argv, allowed, must_not_exist, inputs in cases:
        digests = [(p, _sha(p)) for p in inputs]
        r = run_cli(argv)
        before = len(f.items)
        check_common(r, allowed, f, outputs=[(p, False) for p in must_not_exist],
                     inputs=digests)
        for item in f.items[before:]:
            item["signature"] = f"{name}: {item['signature']}"
            item["case"] = name
    n = len(cases)
    with contextlib.suppress(OSError):
        os.chmod(os.path.join(job["work"], "cli", "read_only"), 0o755)
    return {"items": f.items, "cases": n}


def worker_main(conn, status_file):
    global STATUS_FILE
    STATUS_FILE = status_file
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    while True:
        try:
            job = conn.recv()
        except EOFError:
            return
        if job is None:
            return
        try:
            if job["type"] == "corpus":
                from fuzz_models import build_corpus

                result = build_corpus(job["corpus"])
            elif job["type"] == "cli":
                result = evaluate_cli_cases(job)
            elif job["type"] == "selftest-abort":  # test_oracles: the crash oracle works
                os.abort()
            else:
                result = evaluate(job)
            conn.send(("ok", result))
        except BaseException:  # noqa: BLE001 - the fuzzer's own failure, not a finding
            conn.send(("harness-error", traceback.format_exc()))


# ====================================================================== parent side
class Worker:
    def __init__(self, status_file):
        ctx = multiprocessing.get_context("spawn")
        self.status_file = status_file
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=worker_main, args=(child, status_file), daemon=True)
        self.proc.start()

    def status(self):
        try:
            with open(self.status_file) as fh:
                return fh.read().strip()
        except OSError:
            return "?"

    def rss_gb(self):
        try:
            with open(f"/proc/{self.proc.pid}/status") as fh:
                for line in fh:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1]) / 2**20
        except OSError:
            pass
        return 0.0

    def call(self, job, timeout, mem_gb):
        """('ok', result) | ('harness-error', tb) | ('crash'|'timeout'|'memory', detail)"""
        self.conn.send(job)
        t0 = time.time()
        while True:
            if self.conn.poll(0.2):
                try:
                    return self.conn.recv()
                except EOFError:
                    break
            if not self.proc.is_alive():
                break
            if time.time() - t0 > timeout:
                self.kill()
                return ("timeout", f"{self.status()}: no answer after {timeout} s")
            if mem_gb and self.rss_gb() > mem_gb:
                self.kill()
                return ("memory", f"{self.status()}: worker RSS above {mem_gb} GB")
        self.proc.join(5)
        code = self.proc.exitcode
        sig = -code if code is not None and code < 0 else None
        name = signal.Signals(sig).name if sig else f"exit {code}"
        return ("crash", f"{self.status()}: worker died: {name}")

    def kill(self):
        with contextlib.suppress(Exception):
            self.proc.kill()
        self.proc.join(5)

    def close(self):
        with contextlib.suppress(Exception):
            self.conn.send(None)
        self.proc.join(10)
        if self.proc.is_alive():
            self.kill()


def _slug(s, n=60):
    return re.sub(r"[^A-Za-z0-9]+", "_", s).strip("_")[:n]


class Recorder:
    """Aggregates findings by (class, signature) and keeps a few reproducers each."""

    def __init__(self, out_dir, keep=3):
        self.out_dir = out_dir
        self.keep = keep
        self.by_sig = collections.OrderedDict()
        self.mutants_with_findings = 0
        self.harness_errors = []

    def record(self, items, mutant_path=None, meta=None):
        if items:
            self.mutants_with_findings += 1
        for it in items:
            key = (it["class"], it["signature"])
            e = self.by_sig.setdefault(key, {"count": 0, "examples": [],
                                             "message": it["message"]})
            e["count"] += 1
            if mutant_path and len(e["examples"]) < self.keep and self.out_dir:
                d = os.path.join(self.out_dir, "findings", _slug(it["class"]))
                os.makedirs(d, exist_ok=True)
                h = _sha(mutant_path)[:12]
                dest = os.path.join(d, f"{h}.tflite")
                shutil.copyfile(mutant_path, dest)
                info = dict(meta or {}, **it)
                with open(dest[:-len(".tflite")] + ".json", "w") as fh:
                    json.dump(info, fh, indent=1)
                e["examples"].append(os.path.relpath(dest, self.out_dir))
            elif not mutant_path and len(e["examples"]) < self.keep:
                e["examples"].append(it.get("case", ""))

    def classes(self):
        c = collections.OrderedDict()
        for (cls, sig), e in self.by_sig.items():
            s = c.setdefault(cls, {"hits": 0, "signatures": 0, "example": "",
                                   "message": ""})
            s["hits"] += e["count"]
            s["signatures"] += 1
            if not s["example"] and e["examples"]:
                s["example"], s["message"] = e["examples"][0], e["message"]
        return c

    def write(self, stats):
        if not self.out_dir:
            return
        os.makedirs(self.out_dir, exist_ok=True)
        with open(os.path.join(self.out_dir, "findings.csv"), "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["class", "component", "signature", "hits", "example", "message"])
            for (cls, sig), e in self.by_sig.items():
                w.writerow([cls, COMPONENT.get(cls, ""), sig, e["count"],
                            " ".join(e["examples"]), e["message"]])
        with open(os.path.join(self.out_dir, "summary.md"), "w") as fh:
            fh.write(summary_markdown(self, stats) + "\n")
        with open(os.path.join(self.out_dir, "stats.json"), "w") as fh:
            json.dump(stats, fh, indent=1)


def summary_markdown(rec: Recorder, stats) -> str:
    lines = ["# Model fuzzer summary", "",
             f"{stats['mutants']} mutants ({stats['structured']} structured, "
             f"{stats['bytes']} byte-level or mixed) of {len(stats['seeds'])} seed models, "
             f"{stats['cli_cases']} fixed CLI cases, {stats['seconds']:.0f} s "
             f"({stats['mutants'] / max(stats['seconds'], 1e-9):.2f} mutants/s); "
             f"{rec.mutants_with_findings} inputs with findings, "
             f"{len(rec.harness_errors)} harness errors.", "",
             "| class | component | hits | distinct signatures | example |",
             "|---|---|---:|---:|---|"]
    for cls, s in rec.classes().items():
        lines.append(f"| {cls} | {COMPONENT.get(cls, '')} | {s['hits']} | {s['signatures']} "
                     f"| {s['example']} |")
    if not rec.by_sig:
        lines.append("| (none) | | 0 | 0 | |")
    lines += ["", "| class | signature | hits | message |", "|---|---|---:|---|"]
    for (cls, sig), e in rec.by_sig.items():
        msg = e["message"].replace("|", "/").replace("\n", " ")[:160]
        lines.append(f"| {cls} | {sig.replace('|', '/')} | {e['count']} | {msg} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Mutation fuzzer for dtmm convert/inspect/"
                                             "verify (see the module docstring).")
    ap.add_argument("--budget", type=float, default=60.0,
                    help="seconds (default 60; 0: no time limit, use --mutants)")
    ap.add_argument("--mutants", type=int, default=0, help="stop after N mutants "
                    "(0: only the budget)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--corpus", default=None, help="seed model cache (default: in --work)")
    ap.add_argument("--work", default=None, help="scratch dir (default: a temp dir)")
    ap.add_argument("--out", default=None, help="findings, summary.md, findings.csv")
    ap.add_argument("--timeout", type=float, default=120.0, help="per mutant, seconds")
    ap.add_argument("--mem-gb", type=float, default=6.0)
    ap.add_argument("--no-cli-cases", action="store_true")
    ap.add_argument("--models", default="tiny,tiny_nobias,valid_per_tensor,"
                    "small_input_big_kernel,stack",
                    help="seed models (fuzz_models.SPECS names; each also with _dtmm, "
                         "format version 2, and _dtmm_v1)")
    ap.add_argument("--progress", type=float, default=30.0, help="seconds between lines")
    ap.add_argument("--fail-on-findings", action="store_true",
                    help="exit 1 when any finding (CI)")
    args = ap.parse_args(argv)

    work = args.work or tempfile.mkdtemp(prefix="dtmm-fuzz-")
    os.makedirs(work, exist_ok=True)
    corpus_dir = args.corpus or os.path.join(work, "corpus")
    rec = Recorder(args.out)
    t_start = time.time()
    status_file = os.path.join(work, "worker-status.txt")
    worker = Worker(status_file)
    kind, corpus = worker.call({"type": "corpus", "corpus": corpus_dir}, 600, 0)
    if kind != "ok":
        print(f"fuzz_cli: building the corpus failed: {corpus}", file=sys.stderr)
        return 3
    names = [n for n in args.models.split(",") if n]
    seeds = []
    for n in names:
        seeds.append((n, "orig", corpus[n], None))
        seeds.append((n + "_dtmm", "dtmm", corpus[n + "_dtmm"], corpus[n]))
        seeds.append((n + "_dtmm_v1", "dtmm", corpus[n + "_dtmm_v1"], corpus[n]))
    seed_bytes = {s[0]: open(s[2], "rb").read() for s in seeds}
    # small models first: more mutants per second, smaller reproducers
    weights = [3.0 / (1 + len(seed_bytes[s[0]]) / 2000.0) for s in seeds]
    stats = {"mutants": 0, "structured": 0, "bytes": 0, "skipped": 0, "duplicates": 0,
             "cli_cases": 0, "seeds": [s[0] for s in seeds], "seconds": 0.0,
             "budget": args.budget, "seed": args.seed}

    if not args.no_cli_cases:
        kind, res = worker.call({"type": "cli", "corpus": corpus_dir, "work": work},
                                args.timeout * 4, args.mem_gb)
        if kind == "ok":
            rec.record(res["items"])
            stats["cli_cases"] = res["cases"]
        elif kind == "harness-error":
            rec.harness_errors.append(res)
            print(res, file=sys.stderr)
        else:
            rec.record([{"class": kind, "command": "cli-cases", "signature":
                         f"cli cases: {res}", "message": res}])
            worker = Worker(status_file)

    # the unmutated seeds must pass every oracle (else the fuzzer itself is wrong)
    jobs_dir = os.path.join(work, "mutants")
    os.makedirs(jobs_dir, exist_ok=True)
    rng = random.Random(args.seed)
    seen = set()
    last = time.time()
    i = 0
    while True:
        if args.mutants and stats["mutants"] >= args.mutants:
            break
        if args.budget > 0 and time.time() - t_start > args.budget:
            break
        if i < len(seeds):  # first the seeds themselves, unmutated
            name, kind_, path, orig = seeds[i]
            data, desc, mclass = seed_bytes[name], "unmutated seed", "seed"
        else:
            name, kind_, path, orig = rng.choices(seeds, weights)[0]
            import mutate

            try:
                data, desc = mutate.mutate(seed_bytes[name], rng)
            except mutate.Skip:
                stats["skipped"] += 1
                continue
            mclass = "structured" if not desc.startswith(("truncated", "inserted",
                                                          "overwrite", "zeroed", "copied",
                                                          "header", "word", "empty")) \
                and "bit flips" not in desc else "bytes"
        i += 1
        h = hashlib.sha1(data).hexdigest()
        if h in seen:
            stats["duplicates"] += 1
            continue
        seen.add(h)
        mpath = os.path.join(jobs_dir, f"{h[:16]}.tflite")
        with open(mpath, "wb") as fh:
            fh.write(data)
        job = {"type": "mutant", "mutant": mpath, "kind": kind_, "orig": orig,
               "work": work, "always": rng.random() < 0.8}
        kind, res = worker.call(job, args.timeout, args.mem_gb)
        meta = {"seed_model": name, "mutation": desc, "kind": kind_,
                "original": os.path.basename(orig) if orig else None}
        if kind == "ok":
            items = res
        elif kind == "harness-error":
            rec.harness_errors.append(res)
            print(f"fuzz_cli: harness error on {mpath}:\n{res}", file=sys.stderr)
            items = []
        else:
            items = [{"class": kind, "command": "mutant", "signature": f"{kind}: {res}",
                      "message": f"{res} ({desc})"}]
            worker = Worker(status_file)
        if mclass == "seed" and items:
            print(f"fuzz_cli: the unmutated seed {name} fails an oracle: {items}",
                  file=sys.stderr)
        rec.record(items, mpath, meta)
        stats["mutants"] += 1
        if mclass != "seed":
            stats[mclass] += 1
        os.unlink(mpath)
        if time.time() - last > args.progress:
            last = time.time()
            el = time.time() - t_start
            print(f"[fuzz_cli] {stats['mutants']} mutants in {el:.0f} s "
                  f"({stats['mutants'] / el:.2f}/s), {rec.mutants_with_findings} with "
                  f"findings, {len(rec.by_sig)} distinct signatures", flush=True)
    worker.close()
    stats["seconds"] = time.time() - t_start
    rec.write(stats)
    print(summary_markdown(rec, stats))
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)
    if rec.harness_errors:
        return 3
    if args.fail_on_findings and rec.by_sig:
        return 1
    return 0



if __name__ == "__main__":
    sys.exit(main())
