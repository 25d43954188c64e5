#!/usr/bin/env python3
"""Writes the model regression inputs (tests/fuzz/regressions/models/) from the
corpus' "tiny" model: one small, self-made file per distinct defect the fuzzer
found, each made by the one edit that reproduces it, plus MANIFEST.json naming
the oracle classes each violated when it was made. test_regressions.py replays
them through the fuzzer's oracles and expects no finding at all.

    python tests/fuzz/make_regressions.py [--out DIR] [--from-findings DIR]
    python tests/fuzz/make_regressions.py --v2-only   # add / refresh the v2 cases only

The "dtmm" cases of CASES edit the format-version-1 conversion of "tiny"
(tiny_dtmm.tflite, as committed); CASES_V2 edit its version-2 conversion
(tiny_dtmm_v2.tflite, made from the committed tiny.tflite): the corruptions
version 2 brings (w length, bitmap padding bits, B not dividing C_in, B < C_in on
a 3x3 kernel), which every reader must reject with one clear error.

--from-findings copies, for the defects no edit of "tiny" reproduces (a TFLite
name-decoding failure, a file TFLite's verifier rejects), the smallest fuzzer
reproducer of that signature from a fuzz_cli.py --out directory.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import tempfile

import numpy as np
from flatbuffers import flexbuffers

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(HERE)), "python"))

import fuzz_cli  # noqa: E402
import fuzz_models  # noqa: E402
import mutate  # noqa: E402
from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema  # noqa: E402

INT32_MAX = (1 << 31) - 1


def _conv(m):
    return m.subgraphs[0].operators[0]


def _t(m, i):
    return m.subgraphs[0].tensors[i]


def _const(m, t, dtype):
    return np.frombuffer(np.asarray(m.buffers[t.buffer].data, np.uint8).tobytes(), dtype).copy()


def _store(m, t, arr):
    m.buffers[t.buffer].data = np.frombuffer(np.asarray(arr).tobytes(), np.uint8).copy()


def _options(op, **kv):
    o = flexbuffers.Loads(bytes(np.asarray(op.customOptions, np.uint8).tobytes()))
    o.update(kv)
    op.customOptions = np.frombuffer(bytes(flexbuffers.Dumps(o)), np.uint8).copy()


# -- one edit per defect: (name, base "orig"|"dtmm", component, what, edit) -----------------
def e_op_inputs_none(m):
    _conv(m).inputs = None


def e_empty_subgraph(m):
    m.subgraphs.append(schema.SubGraphT())


def e_activation_overflow(m):
    op = _conv(m)
    op.builtinOptions.fusedActivationFunction = 3  # RELU6
    _t(m, int(op.outputs[0])).quantization.scale = [1e-45]


def e_no_subgraph_inputs(m):
    m.subgraphs[0].inputs = None


def e_input_with_buffer(m):
    x = _t(m, int(_conv(m).inputs[0]))
    b = schema.BufferT()
    b.data = np.zeros(64, np.uint8)
    m.buffers.append(b)
    x.buffer = len(m.buffers) - 1


def e_huge_dilation_dtmm(m):
    _options(_conv(m), dh=INT32_MAX)


def e_multiline_name(m):
    op = _conv(m)
    _t(m, int(op.outputs[0])).name = "conv\nout"
    w = _t(m, int(op.inputs[1]))
    w.shape = [int(w.shape[0]), int(w.shape[1]), int(w.shape[2]), int(w.shape[3]) + 1]


def e_dilation_65536(m):
    _conv(m).builtinOptions.dilationHFactor = 65536


def e_shift_31(m):
    op = _conv(m)
    s_in = np.float32(_t(m, int(op.inputs[0])).quantization.scale[0])
    s_w = np.asarray(_t(m, int(op.inputs[1])).quantization.scale, np.float32)
    # real multiplier >= 2^30: TFLite's QuantizeMultiplier gives shift 31
    _t(m, int(op.outputs[0])).quantization.scale = [float(s_in * s_w.min() / np.float32(2.0 ** 30.5))]


def e_per_tensor_scales(m):
    q = _t(m, int(_conv(m).inputs[0])).quantization
    q.scale = [q.scale[0], q.scale[0]]


def e_output_zp_200(m):
    _t(m, int(_conv(m).outputs[0])).quantization.zeroPoint = [200]


def e_stride_65536_dtmm(m):
    op = _conv(m)
    _options(op, sh=65536)
    y = _t(m, int(op.outputs[0]))
    y.shape = [1, 1, int(y.shape[2]), int(y.shape[3])]


def e_shift_tensor_31(m):
    t = _t(m, int(_conv(m).inputs[5]))
    s = _const(m, t, np.int32)
    s[0] = 31
    _store(m, t, s)


def e_options_format(m):
    _conv(m).customOptionsFormat = 2


def e_bitmap_padding_bit(m):
    t = _t(m, int(_conv(m).inputs[2]))
    b = _const(m, t, np.uint8)
    b[-1] |= 0x80
    _store(m, t, b)


def e_dilation_int16(m):
    _conv(m).builtinOptions.dilationWFactor = 65534


def e_filter_is_input(m):
    sg = m.subgraphs[0]
    sg.inputs = [int(i) for i in sg.inputs] + [int(_conv(m).inputs[1])]


def e_clamp_wraps(m):
    """Channel 0 a pruned filter with bias INT32_MAX and a multiplier close to 2^31:
    requantize(bias) is INT32_MAX - 1, and + zp_out 127 wraps in TFLite's int32."""
    op = _conv(m)
    w_t, b_t = _t(m, int(op.inputs[1])), _t(m, int(op.inputs[2]))
    w = _const(m, w_t, np.int8).reshape([int(d) for d in w_t.shape])
    w[0] = 0
    _store(m, w_t, w)
    b = _const(m, b_t, np.int32)
    b[0] = INT32_MAX
    _store(m, b_t, b)
    y = _t(m, int(op.outputs[0]))
    y.quantization.zeroPoint = [127]
    x_q, w_q = _t(m, int(op.inputs[0])).quantization, w_t.quantization
    s_in = np.float32(x_q.scale[0])
    # float32 input/filter/output scales whose double ratio has a mantissa within
    # 2^-26 of 1 (QuantizeMultiplier gives >= 2^31 - 32, shift 0)
    for k in range(1, 1 << 16):
        s_w = np.float32(1.0 + k * 2.0 ** -23)
        s_out = np.float32(float(s_in) * float(s_w))
        real = float(s_in) * float(s_w) / float(s_out)
        if 1.0 - 2.0 ** -26 < real < 1.0:
            break
    else:
        raise RuntimeError("no scales found")
    scales = list(w_q.scale)
    scales[0] = float(s_w)
    w_q.scale = scales
    b_t.quantization.scale = [float(s_in * np.float32(s)) for s in scales]
    y.quantization.scale = [float(s_out)]


def e_nan_scale_unused_tensor(m):
    sg = m.subgraphs[0]
    t = schema.TensorT()
    t.name, t.shape, t.type, t.buffer = "unused_nan_scale", [1], schema.TensorType.INT8, 0
    q = schema.QuantizationParametersT()
    q.scale, q.zeroPoint = [float("nan")], [0]
    t.quantization = q
    sg.tensors.append(t)


def e_grouped_conv_cout(m):
    # input channels 2 -> 8: a grouped conv of 4 groups with C_out 3; TFLite's
    # reference conv divides by C_out / groups = 0
    x = _t(m, _conv(m).inputs[0])
    x.shape = [int(d) for d in x.shape[:3]] + [8]


CASES = [
    ("op_inputs_none", "orig", "inspect, converter", "an operator without an inputs vector", e_op_inputs_none),
    ("empty_subgraph", "orig", "converter, inspect", "a second subgraph with no tensors/operators", e_empty_subgraph),
    ("activation_range_overflow", "orig", "converter", "RELU6 with output scale 1e-45 (float32 range overflow)", e_activation_overflow),
    ("no_subgraph_inputs", "orig", "verify", "a subgraph without inputs: TFLite's invoke fails", e_no_subgraph_inputs),
    ("input_with_buffer", "orig", "verify", "the model input has a constant buffer of the wrong size", e_input_with_buffer),
    ("huge_dilation_dtmm", "dtmm", "verify, inspect", "DTMM option dh = 2^31-1: verify allocates terabytes; inspect accepts", e_huge_dilation_dtmm),
    ("multiline_error", "orig", "converter (messages)", "a tensor name with a newline in an error message", e_multiline_name),
    ("dilation_65536", "orig", "converter", "CONV_2D dilation 65536: emitted, rejected by the TFLM op", e_dilation_65536),
    ("shift_31", "orig", "converter", "a real multiplier >= 2^30: shift 31 emitted, rejected by dtmm_conv_s8_validate", e_shift_31),
    ("input_two_scales", "dtmm", "inspect", "DTMM input with 2 scales, 1 zero point: TFLM says not per-tensor", e_per_tensor_scales),
    ("output_zero_point_200", "dtmm", "inspect", "DTMM output zero point 200", e_output_zp_200),
    ("stride_65536_dtmm", "dtmm", "inspect", "DTMM option sh = 65536 (TFLM op range 1..65535)", e_stride_65536_dtmm),
    ("shift_tensor_31", "dtmm", "inspect", "DTMM shift tensor holds 31 (C validator range -31..30)", e_shift_tensor_31),
    ("options_format", "dtmm", "verify, inspect", "custom_options_format not FLEXBUFFERS", e_options_format),
    ("bitmap_padding_bit", "dtmm", "verify, converter", "a padding bit set in the bitmap: verify exit 1, convert copies it", e_bitmap_padding_bit),
    ("dilation_int16", "orig", "converter/contract", "dilation 65534: TFLite's ConvParams narrow it to int16", e_dilation_int16),
    ("filter_is_input", "orig", "converter", "the conv's filter is also a subgraph input: converted as a constant", e_filter_is_input),
    ("nan_scale_unused_tensor", "orig", "verify", "a tensor with a NaN scale: verify says it changed (NaN != NaN)", e_nan_scale_unused_tensor),
    ("clamp_wraps", "orig", "verify (dtmm.reference)", "requantized + zp_out wraps int32 in TFLite, not in dtmm.reference", e_clamp_wraps),
    ("grouped_conv_cout", "orig", "verify", "a grouped conv with C_out not a multiple of the groups: TFLite dies of SIGFPE", e_grouped_conv_cout),
]

def _w(m):
    op = _conv(m)
    t = _t(m, op.inputs[1])
    return op, t, _const(m, t, np.uint8)


def e_v2_w_long(m):
    # w one byte longer than table + bitmap + kept blocks (shape and buffer agree)
    _, t, w = _w(m)
    w = np.concatenate([w, np.zeros(1, np.uint8)])
    t.shape = [w.size]
    _store(m, t, w)


def e_v2_w_short(m):
    _, t, w = _w(m)
    t.shape = [w.size - 1]
    _store(m, t, w[:-1])


def e_v2_bitmap_padding_bit(m):
    # tiny: 3 filters x 3x3 taps = 27 bits; bit 31 is padding
    op, t, w = _w(m)
    c_out = int(_t(m, op.outputs[0]).shape[3])
    w[12 * c_out + 3] |= 0x80
    _store(m, t, w)


def e_v2_block_not_dividing(m):
    _options(_conv(m), b=3)  # C_in 2


def e_v2_block_on_3x3(m):
    _options(_conv(m), b=1)  # B < C_in on a 3x3 kernel


CASES_V2 = [
    ("v2_w_long", "dtmm", "converter, inspect, verify", "version 2: w one byte too long", e_v2_w_long),
    ("v2_w_short", "dtmm", "converter, inspect, verify", "version 2: w one byte too short", e_v2_w_short),
    ("v2_bitmap_padding_bit", "dtmm", "converter, inspect, verify", "version 2: a bitmap padding bit set", e_v2_bitmap_padding_bit),
    ("v2_block_not_dividing", "dtmm", "converter, inspect, verify", "version 2: b does not divide C_in", e_v2_block_not_dividing),
    ("v2_block_on_3x3", "dtmm", "converter, inspect, verify", "version 2: b < C_in on a 3x3 kernel", e_v2_block_on_3x3),
]

FROM_FINDINGS = [  # (name, base, component, what, signature substring)
    ("tflite_name_decode", "orig", "verify", "TFLite's tensor-name decoding fails inside verify",
     "UnicodeDecodeError"),
    ("invalid_flatbuffer", "orig", "converter, inspect (loader)",
     "a file TFLite's flatbuffer verifier rejects is converted with exit 0",
     "verifier rejects"),
]


_WORKER = {}


def _evaluate(path, kind, orig, work):
    """The fuzzer's verdict, in its worker process (a reproducer may kill it)."""
    if "w" not in _WORKER:
        _WORKER["w"] = fuzz_cli.Worker(os.path.join(work, "status"))
    job = {"type": "mutant", "mutant": path, "kind": kind, "orig": orig, "work": work,
           "always": True}
    res, items = _WORKER["w"].call(job, 300, 6.0)
    if res != "ok":
        del _WORKER["w"]
        return [f"{res}: {items}"]
    return sorted({f"{i['class']}: {i['signature']}" for i in items})


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.path.join(HERE, "regressions", "models"))
    ap.add_argument("--from-findings", default=None, help="fuzz_cli --out dirs, comma-separated")
    ap.add_argument("--v2-only", action="store_true",
                    help="write only the version-2 cases from the committed tiny.tflite "
                         "and update their MANIFEST entries")
    args = ap.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    work = tempfile.mkdtemp(prefix="dtmm-regressions-")
    if args.v2_only:
        return _write_v2(args.out, work)
    corpus = fuzz_models.build_corpus(os.path.join(work, "corpus"), names=["tiny"])
    tiny_path = os.path.join(args.out, "tiny.tflite")
    with open(corpus["tiny"], "rb") as f:
        tiny = f.read()
    with open(corpus["tiny_dtmm_v1"], "rb") as f:  # CASES edit version 1
        tiny_dtmm = f.read()
    for path, data in ((tiny_path, tiny), (os.path.join(args.out, "tiny_dtmm.tflite"), tiny_dtmm)):
        with open(path, "wb") as f:
            f.write(data)
    manifest = []
    for name, kind, component, what, edit in CASES:
        model = mutate.load(tiny if kind == "orig" else tiny_dtmm)
        edit(model)
        path = os.path.join(args.out, f"{name}.tflite")
        with open(path, "wb") as f:
            f.write(mutate.pack(model))
        found = _evaluate(path, kind, tiny_path, work)
        manifest.append({"file": os.path.basename(path), "kind": kind,
                         "original": "tiny.tflite" if kind == "dtmm" else None,
                         "component": component, "defect": what, "found": found})
        print(f"{name}: {found}")
    if args.from_findings:
        for name, kind, component, what, needle in FROM_FINDINGS:
            best = None
            for j in [j for d in args.from_findings.split(",")
                      for j in glob.glob(os.path.join(d, "findings", "*", "*.json"))]:
                with open(j) as f:
                    info = json.load(f)
                if needle in info["signature"] and info["kind"] == kind:
                    p = j[:-len(".json")] + ".tflite"
                    if best is None or os.path.getsize(p) < os.path.getsize(best):
                        best = p
            if best is None:
                print(f"{name}: no fuzzer finding with {needle!r}", file=sys.stderr)
                continue
            path = os.path.join(args.out, f"{name}.tflite")
            with open(best, "rb") as f, open(path, "wb") as g:
                g.write(f.read())
            found = _evaluate(path, kind, tiny_path, work)
            manifest.append({"file": os.path.basename(path), "kind": kind, "original": None,
                             "component": component, "defect": what, "found": found})
            print(f"{name}: {found}")
    if "w" in _WORKER:
        _WORKER["w"].close()
    with open(os.path.join(args.out, "MANIFEST.json"), "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")
    return _write_v2(args.out, work)


def _write_v2(out, work) -> int:
    """The CASES_V2 reproducers from out/tiny.tflite's version-2 conversion, their
    MANIFEST entries replaced or appended."""
    from dtmm.convert import convert_model

    tiny_path = os.path.join(out, "tiny.tflite")
    with open(tiny_path, "rb") as f:
        tiny_v2, _ = convert_model(f.read(), always=True, format_version=2)
    with open(os.path.join(out, "tiny_dtmm_v2.tflite"), "wb") as f:
        f.write(tiny_v2)
    mpath = os.path.join(out, "MANIFEST.json")
    with open(mpath) as f:
        manifest = [c for c in json.load(f) if c["file"] not in
                    {f"{n}.tflite" for n, *_ in CASES_V2}]
    for name, kind, component, what, edit in CASES_V2:
        model = mutate.load(tiny_v2)
        edit(model)
        path = os.path.join(out, f"{name}.tflite")
        with open(path, "wb") as f:
            f.write(mutate.pack(model))
        found = _evaluate(path, kind, tiny_path, work)
        manifest.append({"file": os.path.basename(path), "kind": kind,
                         "original": "tiny.tflite", "component": component,
                         "defect": what, "found": found})
        print(f"{name}: {found}")
    if "w" in _WORKER:
        _WORKER["w"].close()
    with open(mpath, "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
