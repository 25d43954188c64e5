"""Per-layer view of any .tflite model, DTMM ops decoded and validated.

    layers = inspect_model(buf)       # list of LayerReport, FormatError on bad DTMM ops
    print(inspect_table(buf))

DTMM ops are read by dtmm.core.ops.read_dtmm, which checks them the way the TFLM
op's Prepare does (options against the contract's table, tensors, FWCS). Every
CONV_2D and DTMM_CONV_2D row carries the modeled instructions of its dense
CMSIS-NN and its DTMM form on each fitted target (dtmm.core.latency).
"""

from __future__ import annotations

from dtmm.core.contract import CONV_2D, decode_options  # noqa: F401
import numpy as np

from dtmm.core import drivers, fc, latency
from dtmm.core.errors import DtmmError
from dtmm.core.geometry import PADDING_NAMES
from dtmm.core.ops import (DtmmOp as DtmmInfo, conv_geometry, is_dtmm,  # noqa: F401
                           read_conv, read_dtmm)
from dtmm.core.tflite import BuiltinOperator, Model
from dtmm.layers import LayerReport, conv_report, format_table, modeled_instructions

OPTION_KEYS = CONV_2D.keys
parse_dtmm = read_dtmm  # the name earlier releases exported


def _dense_bytes(op) -> int:
    return sum(t.data.size for t in op.inputs[1:3] if t is not None and t.data is not None)


def _dense_shape(conv) -> latency.ConvShape:
    """Latency-model shape of a dense int8 conv: its all-zero filterlets as pruned."""
    c_out, kh, kw, c_in = conv.shape
    kept = np.any(np.asarray(conv.weights).reshape(c_out, kh * kw, c_in) != 0, axis=2)
    return latency.ConvShape(
        out_h=conv.out_hw[0], out_w=conv.out_hw[1], c_in=c_in, c_out=c_out, kh=kh, kw=kw,
        stride=tuple(conv.stride), dilation=tuple(conv.dilation),
        kept_filterlets=int(kept.sum()), pruned_filters=int((~kept.any(axis=1)).sum()))


def dtmm_shape(d) -> latency.ConvShape:
    """Latency-model shape of a decoded DTMM_CONV_2D (either version, any B)."""
    fw, p = d.fwcs, d.params
    return latency.ConvShape(
        out_h=d.output_shape[1], out_w=d.output_shape[2], c_in=fw.c_in, c_out=fw.c_out,
        kh=fw.kernel_h, kw=fw.kernel_w, stride=(p.stride_h, p.stride_w),
        dilation=(p.dilation_h, p.dilation_w), kept_filterlets=fw.num_kept,
        pruned_filters=int((~fw.mask.reshape(fw.c_out, -1).any(1)).sum()),
        block=None if fw.block == fw.c_in else fw.block)


def dtmm_reason(d, shape) -> str:
    fw = d.fwcs
    text = f"DTMM_CONV_2D v{d.version}, "
    if fw.block == fw.c_in:
        text += f"{fw.num_kept} kept"
    else:
        text += f"B={fw.block}, {fw.num_kept} of {fw.num_blocks} blocks kept"
    missing = [t for t in latency.conv_targets() if not latency.has_model("dtmm", shape, t)]
    if missing:
        text += f" (no latency model for block-sparse 1x1 on {', '.join(missing)})"
    return text


def inspect_model(buf: bytes, all_ops: bool = False, name: str = "input") -> list:
    """LayerReport per CONV_2D and DTMM_CONV_2D (per op with all_ops). Raises
    ModelError/FormatError for an invalid model or DTMM op."""
    return _inspect(Model.read(buf, name), all_ops)


def _inspect(model: Model, all_ops: bool) -> list:
    layers = []
    for si, sg in enumerate(model.subgraphs):
        for oi, op in enumerate(sg.operators):
            out = op.outputs[0].name if op.outputs and op.outputs[0] is not None else ""
            if fc.is_dtmm_fc(op) or (fc.is_fc(op) and all_ops):
                layers.append(_fc_report(model, si, oi, op, out))
            elif is_dtmm(op):
                d = read_dtmm(model, si, oi)
                fw, p = d.fwcs, d.params
                shape = dtmm_shape(d)
                layers.append(LayerReport(
                    subgraph=si, op_index=oi, name=out, op=op.name,
                    shape=(fw.c_out, fw.kernel_h, fw.kernel_w, fw.c_in),
                    in_hw=d.input_shape[1:3], out_hw=d.output_shape[1:3],
                    stride=(p.stride_h, p.stride_w), dilation=(p.dilation_h, p.dilation_w),
                    padding=PADDING_NAMES[p.padding], activation=f"[{p.act_min},{p.act_max}]",
                    sparsity=fw.sparsity, bytes_after=d.constant_bytes,
                    reason=dtmm_reason(d, shape),
                    modeled=latency.modeled_where_fitted(shape, latency.conv_targets())))
            elif op.opcode.builtin == BuiltinOperator.CONV_2D:
                try:
                    conv = read_conv(model, si, oi)
                    rep = conv_report(conv)
                    rep.reason = ("CONV_2D, " + conv.skip.replace("skipped: ", "")
                                  if conv.skip else "CONV_2D (int8, convertible)")
                    if not conv.skip:
                        rep.modeled = modeled_instructions(_dense_shape(conv),
                                                           latency.conv_targets())
                except DtmmError as e:  # show, don't stop: inspect is for diagnosis
                    try:
                        rep = conv_report(conv_geometry(model, si, oi))
                    except DtmmError:
                        rep = LayerReport(subgraph=si, op_index=oi, name=out)
                    rep.reason = f"invalid: {e}"
                rep.bytes_before = _dense_bytes(op)
                layers.append(rep)
            elif all_ops:
                layers.append(LayerReport(subgraph=si, op_index=oi, name=out, op=op.name,
                                          reason=op.name))
    return layers


def _fc_report(model: Model, si: int, oi: int, op, out: str) -> LayerReport:
    """A row for a DTMM_FULLY_CONNECTED (validated as the device's Prepare does:
    FormatError) or a FULLY_CONNECTED (shown even when invalid)."""
    targets = fc.fc_targets()
    if fc.is_dtmm_fc(op):
        d = fc.read_dtmm_fc(model, si, oi)
        shape = fc.fc_shape(d.weights, d.block, d.batches)
        return LayerReport(
            subgraph=si, op_index=oi, name=out, op=op.name, shape=(d.c_out, 1, 1, d.c_in),
            activation=f"[{d.options['lo']},{d.options['hi']}]", sparsity=d.sparsity,
            bytes_after=d.constant_bytes,
            reason=(f"DTMM_FULLY_CONNECTED v{d.options['version']}, B={d.block}, "
                    f"{shape.kept_blocks} of {d.mask.size} blocks kept, {d.batches} row(s)"),
            modeled={t: (fc.fc_instructions(t, "cmsis_nn", shape),
                         fc.fc_instructions(t, "dtmm", shape)) for t in targets})
    rep = LayerReport(subgraph=si, op_index=oi, name=out, op=op.name)
    try:
        f = fc.read_fc(model, si, oi)
    except DtmmError as e:
        rep.reason = f"invalid: {e}"
        return rep
    rep.bytes_before = _dense_bytes(op)
    if f.skip:
        rep.reason = "FULLY_CONNECTED, " + f.skip.replace("skipped: ", "")
        return rep
    b = fc.block_sizes(f.c_in)[-1]
    shape = fc.fc_shape(f.weights, b, f.batches)
    rep.shape, rep.activation = (f.c_out, 1, 1, f.c_in), f"[{f.act_min},{f.act_max}]"
    rep.sparsity = fc.block_sparsity(f.weights, b)
    rep.reason = f"FULLY_CONNECTED (int8, convertible; sparsity at B={b})"
    rep.modeled = {t: (fc.fc_instructions(t, "cmsis_nn", shape),
                       fc.fc_instructions(t, "dtmm", shape)) for t in targets}
    return rep


def inspect_table(buf: bytes, all_ops: bool = False, name: str = "input") -> str:
    model = Model.read(buf, name)
    layers = _inspect(model, all_ops)
    counts = {}
    for sg in model.subgraphs:
        for op in sg.operators:
            counts[op.name] = counts.get(op.name, 0) + 1
    lines = [format_table(layers, title_after="dtmm")]
    n_dtmm = sum(r.op == "DTMM_CONV_2D" for r in layers)
    n_fc = sum(r.op == "DTMM_FULLY_CONNECTED" for r in layers)
    n_conv = sum(r.op == "CONV_2D" for r in layers)
    lines.append(f"{len(buf)} bytes, {len(model.subgraphs)} subgraph(s), "
                 f"{sum(counts.values())} ops: {n_conv} CONV_2D, {n_dtmm} DTMM_CONV_2D"
                 + (f", {n_fc} DTMM_FULLY_CONNECTED" if n_fc else "") + "; "
                 + ", ".join(f"{k} x{v}" for k, v in sorted(counts.items())))
    if n_dtmm:
        lines += [drivers.summary_line(t, drivers.model_drivers(model, t))
                  for t in latency.conv_targets() if t in drivers.ARCH_OF_TARGET]
    return "\n".join(lines)
