"""Rewrite int8 CONV_2D operators of a .tflite model into DTMM_CONV_2D.

    out_bytes, report = convert_model(open("m.tflite", "rb").read())
    report = convert_file("m.tflite", "m_dtmm.tflite", min_sparsity=0.5)
    print(report.table())

A conv is rewritten when it is eligible (int8 input/output, int8 per-channel or
per-tensor filter, int32 or no bias), the device accepts its DTMM form (the
contract's ranges), its filterlet sparsity is >= `min_sparsity`, the file-size
model (dtmm.core.size) gives fewer bytes for the DTMM form (FWCS arrays, folded
bias, multiplier, shift, their tensors and the op's options) than for the dense
form, and (with the default prefer="speed") the latency models of
dtmm.core.latency give the DTMM op no more instructions than TFLM's dense CMSIS-NN
CONV_2D on every target of `target` ("any": each fitted target, today Cortex-M4
and Cortex-M55); prefer="size" drops that last condition; `always=True` rewrites
every eligible conv the device accepts (docs/converter.md has the policy). The
model is edited through the object model of dtmm.core.tflite: the conv's operator
is replaced, and saving drops the dense filter/bias tensors and buffers nothing
uses any more. Every other op, tensor, subgraph, signature and metadata entry is
kept as it was. The format is docs/contract.md: DTMM_CONV_2D format version 2 by
default (one packed constant; a 1x1 conv may take blocks of B < C_in input channels,
chosen by `_choose_block` under the same size and speed rule), version 1 with
`format_version=1`.

When no conv is rewritten the output is the input, byte for byte.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from dtmm.core import contract, drivers, fc, latency, size
from dtmm.core.errors import ArgumentError, DtmmError, ModelError
from dtmm.core.fwcs import block_sparsity
from dtmm.core.latency import DEFAULT_PREFER, DEFAULT_TARGET, PREFER
from dtmm.core.ops import WRITE_VERSION, check_dtmm_ops, dtmm_form, read_conv
from dtmm.core.tflite import BuiltinOperator, Model, Operator, read_file, write_atomic
from dtmm.layers import (LayerReport, conv_report, format_table,  # noqa: F401
                         modeled_instructions)


# Constant tensor names of a DTMM_CONV_2D: "<filter>/dtmm_<suffix>" (version 1),
# "<op index>/dtmm_w" (version 2, FULLY_CONNECTED as well).
DTMM_SUFFIXES = tuple(t.name for t in contract.CONV_2D_V1.inputs[1:])
DTMM_V2_SUFFIXES = tuple(t.name for t in contract.CONV_2D_V2.inputs[1:])
FORMAT_VERSIONS = (1, 2)


@dataclass
class ConversionReport:
    layers: list = field(default_factory=list)
    file_bytes_before: int = 0
    file_bytes_after: int = 0
    fc_layers: list = field(default_factory=list)  # one LayerReport per FULLY_CONNECTED
    targets: tuple = ()  # the targets the speed rule used; the image note names them
    # target -> the conv drivers the output's DTMM_CONV_2D ops take (dtmm.core.drivers):
    # what DTMM_CONV_DRIVERS must name so the image links only those
    drivers: dict = field(default_factory=dict)

    @property
    def num_rewritten(self) -> int:
        """CONV_2D rewritten."""
        return sum(r.rewritten for r in self.layers)

    @property
    def num_fc_rewritten(self) -> int:
        return sum(r.rewritten for r in self.fc_layers)

    def table(self) -> str:
        lines = [format_table(self.layers)]
        n = self.num_rewritten
        n_fc = self.num_fc_rewritten
        if n == 0 and n_fc == 0:
            lines.append(f"nothing to rewrite ({len(self.layers)} CONV_2D); "
                         f"file bytes {self.file_bytes_before} (unchanged copy)")
        else:
            before, after = self.file_bytes_before, self.file_bytes_after
            pct = 100.0 * (after - before) / before if before else 0.0
            lines.append(f"rewrote {n} of {len(self.layers)} CONV_2D; file bytes "
                         f"{before} -> {after} ({pct:+.1f}%)")
        # FULLY_CONNECTED rows when one is rewritten or the model has no CONV_2D
        # (the CONV_2D table alone otherwise, as before format version 2).
        if self.fc_layers and (n_fc or not self.layers):
            lines += [format_table(self.fc_layers),
                      f"rewrote {n_fc} of {len(self.fc_layers)} FULLY_CONNECTED"]
        lines += self.driver_lines()
        note = self.image_note()
        if note:
            lines.append(note)
        return "\n".join(lines)

    def driver_lines(self) -> list:
        """Per target, the conv drivers to build (none: no DTMM_CONV_2D)."""
        return [drivers.summary_line(t, names) for t, names in self.drivers.items() if names]

    def _image_ops(self):
        """(DTMM ops the file uses, dense ops it no longer uses at all)."""
        added, dropped = [], []
        for n, layers, dtmm_op, dense_op in (
                (self.num_rewritten, self.layers, contract.CONV_2D.custom_code, "CONV_2D"),
                (self.num_fc_rewritten, self.fc_layers, contract.FULLY_CONNECTED.custom_code,
                 "FULLY_CONNECTED")):
            if n:
                added.append(dtmm_op)
                if n == len(layers):
                    dropped.append(dense_op)
        return added, dropped

    def image_code_bytes(self) -> dict:
        """target -> flash the DTMM ops this file uses add to an app that links DTMM
        only for it, less the code of a dense op it no longer uses at all (measured;
        targets without a measurement are left out)."""
        added, dropped = self._image_ops()
        code = size.op_code_bytes()
        out = {}
        for t in self.targets:
            if t not in code or not added or not all(op in code[t] for op in added):
                continue
            n = sum(code[t][op] for op in added) - sum(code[t].get(op, 0) for op in dropped)
            # DTMM_CONV_2D's figure links every conv driver; the build the driver
            # line names links only the model's
            every = size.conv_kernel_bytes(t, drivers.NAMES)
            only = size.conv_kernel_bytes(t, self.drivers[t]) if t in self.drivers else None
            if contract.CONV_2D.custom_code in added and every is not None and only is not None:
                n -= every - only
            out[t] = n
        return out

    def image_note(self) -> str:
        """Whether the whole image (code + model) shrinks: the file's saving against
        the code the DTMM ops add, per target."""
        code = self.image_code_bytes()
        if not code:
            return ""
        saved = self.file_bytes_before - self.file_bytes_after
        what = "the DTMM ops" + (" built with the drivers above" if self.drivers else "")
        if self._image_ops()[1]:
            what += ", less the dense ops no longer used"
        head = (f"image: the file saves {saved:,} B; the code changes by "
                + ", ".join(f"{t} {n:+,} B" for t, n in code.items())
                + f" ({what}; docs/models.md): ")
        larger = [t for t, n in code.items() if n > saved]
        if not larger:
            return head + "the image is smaller than the dense one"
        grows = ", ".join(f"{t} by {code[t] - saved:,} B" for t in larger)
        return head + f"an app that links DTMM only for this model is larger than the " \
                      f"dense one, {grows}"


def _estimate(conv, form, options_len: int, tensor_users, buffer_users):
    """(bytes before, bytes after) of this conv's own storage."""
    before = size.operator_bytes(3 if conv.bias is not None else 2,
                                 size.CONV_OPTIONS_BYTES)
    before += size.own_bytes(conv.filter, tensor_users, buffer_users)
    before += size.own_bytes(conv.bias, tensor_users, buffer_users)
    fw = form.fwcs
    after = size.dtmm_conv_bytes(len(conv.filter.name), fw.c_out,
                                 fw.kernel_h * fw.kernel_w, fw.c_in, fw.num_kept,
                                 options_len, fw.block, form.version)
    return before, after


def _unique_base(base: str, suffixes, taken: set) -> str:
    while any(f"{base}/dtmm_{n}" in taken for n in suffixes):
        base += "'"
    taken.update(f"{base}/dtmm_{n}" for n in suffixes)
    return base


def _rewrite(model: Model, conv, form, options, opcode, names_used: set,
             taken: set) -> None:
    sg = model.subgraphs[conv.subgraph]
    if form.version == 1:
        base = conv.filter.name or f"conv_{conv.op_index}"
        if base in names_used:  # a filter tensor shared by two convs
            base = f"{base}.op{conv.op_index}"
        names_used.add(base)
    else:  # short names: "<op index>/dtmm_w", unique in the file
        base = _unique_base(f"{conv.op_index}" if conv.subgraph == 0 else
                            f"{conv.subgraph}.{conv.op_index}",
                            [n for n, _, _ in form.arrays()], taken)
    consts = [model.add_constant(sg, f"{base}/dtmm_{name}", array, dtype)
              for name, array, dtype in form.arrays()]
    sg.operators[conv.op_index] = Operator.custom(opcode, [conv.input] + consts,
                                                  [conv.output], options)


def _not_faster_on(modeled: dict) -> list:
    """Targets where the modeled DTMM op is not SPEED_MARGIN below the dense
    CMSIS-NN conv."""
    return [t for t, (dense, dtmm) in modeled.items()
            if not latency.clearly_faster(dense, dtmm)]


def convert_model(buf: bytes, min_sparsity: float = 0.0, always: bool = False,
                  name: str = "input", target: str = DEFAULT_TARGET,
                  prefer: str = DEFAULT_PREFER, format_version: int = WRITE_VERSION,
                  block_size: int | None = None, smaller_image: bool = False):
    """Convert a .tflite flatbuffer. Returns (output bytes, ConversionReport).
    `name` is how error messages call the model (the CLI passes the file name).
    `target`: cortex-m4, cortex-m55 or any (both); `prefer`: speed (rewrite only
    where smaller and modeled faster by latency.SPEED_MARGIN on the target(s))
    or size (where smaller). `format_version`: the DTMM_CONV_2D layout written,
    2 (default: one packed constant, block filterlets) or 1 (five constants, for
    devices built before version 2). `block_size`: B for every 1x1 conv it divides
    (version 2; test and device models), instead of the converter's choice.
    `smaller_image`: keep the model as it is (every op dense, the input returned)
    when the whole image would grow on a target: the file's saving below the code
    the DTMM ops add there (ConversionReport.image_code_bytes; targets without a
    code measurement are not judged)."""
    if not 0.0 <= float(min_sparsity) <= 1.0:
        raise ArgumentError(f"min_sparsity must be in [0, 1], got {min_sparsity}")
    if format_version not in FORMAT_VERSIONS:
        raise ArgumentError(f"format_version must be one of "
                            f"{', '.join(map(str, FORMAT_VERSIONS))}, got {format_version!r}")
    if prefer not in PREFER:
        raise ArgumentError(f"prefer must be one of {', '.join(PREFER)}, got {prefer!r}")
    if block_size is not None and (format_version != 2 or isinstance(block_size, bool)
                                   or not isinstance(block_size, int) or block_size < 1):
        raise ArgumentError(f"block_size must be a positive int with format_version 2, "
                            f"got {block_size!r}")
    targets = latency.resolve_targets(target)
    buf = bytes(buf)
    model = Model.read(buf, name)
    check_dtmm_ops(model, name)  # never copy an op the device rejects into the output
    report = ConversionReport(file_bytes_before=len(buf), targets=targets)
    tensor_users, buffer_users = model.users()
    plans, fc_plans = [], []
    for si, sg in enumerate(model.subgraphs):
        for oi, op in enumerate(sg.operators):
            if op.opcode.builtin == BuiltinOperator.FULLY_CONNECTED:
                _plan_fc(model, si, oi, name, targets, min_sparsity, always, prefer, report,
                         fc_plans, tensor_users, buffer_users)
                continue
            if op.opcode.builtin != BuiltinOperator.CONV_2D:
                continue
            try:
                conv = read_conv(model, si, oi)
            except DtmmError as e:
                raise type(e)(f"{name}: {e}") from None
            rep = conv_report(conv)
            report.layers.append(rep)
            if conv.skip:
                continue
            form, options = plan_conv(conv, rep, targets, min_sparsity, always, prefer,
                                      format_version, block_size, tensor_users,
                                      buffer_users)
            if rep.rewritten:
                plans.append((conv, form, options))
    if not plans and not fc_plans:
        report.file_bytes_after = len(buf)
        return buf, report
    names_used = set()
    taken = {t.name for sg in model.subgraphs for t in sg.tensors}
    if plans:
        opcode = model.opcode(BuiltinOperator.CUSTOM, contract.CONV_2D.custom_code)
        for conv, form, options in plans:
            _rewrite(model, conv, form, options, opcode, names_used, taken)
    if fc_plans:
        _rewrite_fcs(model, fc_plans, taken)
    out = model.save()
    # What the device will load: the flatbuffer verifier and every DTMM op through
    # the checks of the TFLM op's Prepare, before anything is written.
    written = Model.read(out, f"the conversion of {name}")
    check_dtmm_ops(written, f"the conversion of {name}")
    report.file_bytes_after = len(out)
    report.drivers = {t: drivers.model_drivers(written, t) for t in report.targets
                      if t in drivers.ARCH_OF_TARGET}
    if smaller_image:
        saved = len(buf) - len(out)
        grows = {t: n - saved for t, n in report.image_code_bytes().items() if n > saved}
        if grows:
            why = ", ".join(f"{t} by {n:,} B" for t, n in grows.items())
            for r in report.layers + report.fc_layers:
                if r.rewritten:
                    r.rewritten = False
                    r.reason = f"kept: the whole image would grow ({why}; --smaller-image)"
            report.file_bytes_after = len(buf)
            report.drivers = {}
            return buf, report
    return out, report


def plan_conv(conv, rep, targets, min_sparsity: float = 0.0, always: bool = False,
              prefer: str = DEFAULT_PREFER, format_version: int = WRITE_VERSION,
              block_size: int | None = None, tensor_users=None, buffer_users=None):
    """dtmm convert's decision for one CONV_2D (`conv` from read_conv, not skipped):
    fills `rep` (conv_report(conv)) with rewritten, reason, bytes and modeled
    instructions and returns (form, options) of the DTMM form it would write.
    The scheduler prices 1x1 conv block ratios with this (schedule.blocks)."""
    if tensor_users is None or buffer_users is None:
        raise ArgumentError("plan_conv needs the model's tensor_users and buffer_users "
                            "(Model.users())")
    c_out, kh, kw, c_in = conv.shape
    forced = block_size if block_size is not None and (kh, kw) == (1, 1) and \
        block_size < c_in and c_in % block_size == 0 else None
    form = dtmm_form(conv, format_version, forced)
    if forced is not None:
        rep.sparsity = form.fwcs.sparsity
    options = contract.encode_map(form.options)
    rep.bytes_before, rep.bytes_after = _estimate(
        conv, form, len(options), tensor_users, buffer_users)
    rep.modeled = latency.modeled_where_fitted(conv_shape(conv, form.fwcs), targets)
    # a target with no model for this form (forced blocks) is not faster there
    slower = _not_faster_on(rep.modeled) + [t for t in targets if t not in rep.modeled]
    rejected = form.device_rejects()
    if rejected:
        rep.reason = f"kept: the device would reject the DTMM form ({rejected})"
    elif not always and rep.sparsity < min_sparsity:
        rep.reason = (f"kept: sparsity {100 * rep.sparsity:.1f}% < "
                      f"{100 * min_sparsity:.1f}%")
    elif not always and rep.bytes_after >= rep.bytes_before:
        rep.reason = "kept: DTMM form is not smaller"
    elif not always and prefer == "speed" and slower:
        rep.reason = (f"kept: DTMM not modeled {latency.margin_text()} faster on "
                      + ", ".join(slower))
    else:
        rep.rewritten = True
        if always:
            rep.reason = "rewritten (--always)"
        elif prefer == "size":
            rep.reason = "rewritten: smaller" + (
                f" (not modeled {latency.margin_text()} faster on "
                f"{', '.join(slower)})" if slower else "")
        else:
            rep.reason = f"rewritten: smaller, modeled {latency.margin_text()}+ faster"
    if forced is not None:
        rep.reason += f" (B={forced} forced)"
    elif not always and not rejected and format_version == 2:
        block = _choose_block(conv, rep, targets, min_sparsity, prefer,
                              tensor_users, buffer_users)
        if block is not None:
            form, options = block
    return form, options


def conv_decision(conv, targets, prefer: str = DEFAULT_PREFER, tensor_users=None,
                  buffer_users=None):
    """plan_conv at the defaults of `dtmm convert` (format version 2) as the
    scheduler reads it: (rewritten, bytes before, bytes after, {target: (dense
    CMSIS-NN, DTMM) modeled instructions}, B written)."""
    rep = conv_report(conv)
    form, _ = plan_conv(conv, rep, targets, prefer=prefer, tensor_users=tensor_users,
                        buffer_users=buffer_users)
    return rep.rewritten, rep.bytes_before, rep.bytes_after, dict(rep.modeled or {}), \
        form.block


# -- block filterlets for 1x1 convs (format version 2) -----------------------------
def block_candidates(conv) -> list:
    """Block sizes B < C_in (fc.BLOCK_CANDIDATES dividing C_in) a 1x1 conv may take:
    those whose blocks are sparser than its filterlets (else B = C_in skips as
    much with fewer bits)."""
    c_out, kh, kw, c_in = conv.shape
    if (kh, kw) != (1, 1):
        return []
    return [b for b in fc.BLOCK_CANDIDATES if b < c_in and c_in % b == 0
            and block_sparsity(conv.weights, b) > conv.sparsity]


def _choose_block(conv, rep, targets, min_sparsity, prefer, tensor_users, buffer_users):
    """(form, options) of the best block size B < C_in of a 1x1 conv when it beats
    the B = C_in decision already in `rep` (updated in place), else None. Same rule
    as FULLY_CONNECTED: smaller, and with prefer="speed" modeled SPEED_MARGIN
    faster on every target; a target with no block model never takes B < C_in for
    speed (prefer="size" may)."""
    best = None
    no_model = set()
    for b in block_candidates(conv):
        form = dtmm_form(conv, 2, b)
        if form.device_rejects() or form.fwcs.sparsity < min_sparsity:
            continue
        options = contract.encode_map(form.options)
        before, after = _estimate(conv, form, len(options), tensor_users, buffer_users)
        if after >= before:
            continue
        shape = conv_shape(conv, form.fwcs)
        modeled = latency.modeled_where_fitted(shape, targets)
        missing = [t for t in targets if t not in modeled]
        no_model.update(missing)
        fast = not missing and not _not_faster_on(modeled)
        if prefer == "speed" and not fast:
            continue
        key = (after, sum(m for _, m in modeled.values())) if prefer == "size" else \
            (sum(m for _, m in modeled.values()), after)
        if best is None or key < best[0]:
            best = (key, form, options, after, modeled, missing)
    if best is None:
        if no_model and prefer == "speed":
            rep.reason += f"; B < C_in: {latency.no_model_text(sorted(no_model))}"
        return None
    key, form, options, after, modeled, missing = best
    if rep.rewritten:  # B = C_in is rewritten already: the block form must beat it
        base = (rep.bytes_after, sum(m for _, m in rep.modeled.values())) \
            if prefer == "size" else (sum(m for _, m in rep.modeled.values()),
                                      rep.bytes_after)
        if base <= key:
            return None
    rep.rewritten = True
    rep.bytes_after, rep.modeled, rep.sparsity = after, modeled, form.fwcs.sparsity
    rep.reason = f"rewritten: B={form.block}, smaller" + (
        f", modeled {latency.margin_text()}+ faster" if not missing and
        not _not_faster_on(modeled) else
        f" ({latency.no_model_text(missing)})" if missing else
        f" (not modeled {latency.margin_text()} faster on "
        f"{', '.join(_not_faster_on(modeled))})")
    return form, options


# -- FULLY_CONNECTED -> DTMM_FULLY_CONNECTED (format version 2, dtmm.core.fc) ---------
def _plan_fc(model, si, oi, name, targets, min_sparsity, always, prefer, report, fc_plans,
             tensor_users, buffer_users) -> None:
    """Report one FULLY_CONNECTED and queue its rewrite when dtmm.core.fc.choose
    picks a block size for it."""
    try:
        f = fc.read_fc(model, si, oi)
    except DtmmError as e:
        raise type(e)(f"{name}: {e}") from None
    op = model.subgraphs[si].operators[oi]
    rep = LayerReport(subgraph=si, op_index=oi, name=f.output.name, op="FULLY_CONNECTED",
                      shape=tuple(f.filter.shape) if len(f.filter.shape) == 2 else None,
                      reason=f.skip)
    report.fc_layers.append(rep)
    if f.skip:
        return
    rep.shape = (f.c_out, 1, 1, f.c_in)
    rep.activation = f"[{f.act_min},{f.act_max}]"
    # `always` forces CONV_2D only: FCs follow the size and speed rules.
    choice = fc.choose(f, [t for t in targets if t in fc.fc_targets()],
                       lambda t: size.own_bytes(t, tensor_users, buffer_users),
                       min_sparsity, prefer)
    rep.bytes_before, rep.bytes_after = choice.bytes_before, choice.bytes_after
    rep.modeled, rep.reason, rep.rewritten = choice.modeled, choice.reason, choice.rewritten
    rep.sparsity = choice.form.sparsity if choice.form is not None else \
        fc.block_sparsity(f.weights, 16 if f.c_in % 16 == 0 else f.c_in)
    if choice.rewritten:
        fc_plans.append((f, choice, op))


def _rewrite_fcs(model: Model, fc_plans, taken: set) -> None:
    opcode = model.opcode(BuiltinOperator.CUSTOM, contract.FULLY_CONNECTED.custom_code)
    for f, choice, op in fc_plans:
        sg = model.subgraphs[f.subgraph]
        base = _unique_base(f"{f.op_index}" if f.subgraph == 0 else
                            f"{f.subgraph}.{f.op_index}",
                            [n for n, _, _ in choice.form.arrays()], taken)
        consts = []
        for n, array, dtype in choice.form.arrays():
            consts.append(model.add_constant(sg, f"{base}/dtmm_{n}", array, dtype))
        sg.operators[f.op_index] = Operator.custom(opcode, [f.input] + consts, [f.output],
                                                   choice.options)


def conv_shape(conv, fwcs) -> latency.ConvShape:
    """What the latency models read of a conv with filter `fwcs` (kept_filterlets
    counts kept blocks when fwcs.block < C_in)."""
    c_out, kh, kw, c_in = conv.shape
    return latency.ConvShape(
        out_h=conv.out_hw[0], out_w=conv.out_hw[1], c_in=c_in, c_out=c_out, kh=kh, kw=kw,
        stride=tuple(conv.stride), dilation=tuple(conv.dilation),
        kept_filterlets=fwcs.num_kept,
        pruned_filters=int((~fwcs.mask.reshape(c_out, -1).any(axis=1)).sum()),
        block=None if fwcs.block == c_in else fwcs.block)


def convert_file(in_path, out_path, min_sparsity: float = 0.0, always: bool = False,
                 target: str = DEFAULT_TARGET, prefer: str = DEFAULT_PREFER,
                 format_version: int = WRITE_VERSION,
                 block_size: int | None = None,
                 smaller_image: bool = False) -> ConversionReport:
    """Convert IN to OUT (written atomically; IN is never modified). When nothing
    is rewritten OUT is a byte-identical copy of IN. Options as convert_model."""
    buf = read_file(in_path)
    out, report = convert_model(buf, min_sparsity=min_sparsity, always=always,
                                name=os.fspath(in_path), target=target, prefer=prefer,
                                format_version=format_version, block_size=block_size,
                                smaller_image=smaller_image)
    if os.path.exists(out_path) and os.path.samefile(in_path, out_path):
        raise ModelError(f"output {out_path} is the input file; choose another path")
    write_atomic(out_path, out)
    return report
