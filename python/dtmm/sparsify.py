"""`dtmm sparsify`: zero the lowest-L1 filterlets of every eligible conv, at the int8 level.

    dtmm sparsify model_int8.tflite -o model_s75.tflite --sparsity 0.75 [--blocks 16]

    out_bytes, layers = sparsify_model(buf, 0.75)
    layers = sparsify_file("in.tflite", "out.tflite", 0.75)

Previews what a filterlet sparsity buys (size with `dtmm convert`, speed with
`bench/models`) before any retraining: no accuracy is kept, it is magnitude pruning
of the shipped int8 weights. A filterlet is the C_in values of one (c_out, k_h, k_w)
tap of an OHWI filter (docs/contract.md). In each eligible CONV_2D the filterlets
with the lowest L1 norm of their int8 values are zeroed until
round(sparsity * filterlets) of them are zero (ties: lowest filterlet index first;
filterlets that are already zero count, and a layer already sparser is left as is).

Eligible: CONV_2D with int8 input and output and a constant int8 4-D filter that
covers all input channels (not grouped), its filter used by no other tensor or op.

With --blocks B (default: off, FULLY_CONNECTED untouched) the same share of each
eligible int8 FULLY_CONNECTED's blocks is zeroed the same way: a block is B
consecutive input channels of one weight row (the unit DTMM_FULLY_CONNECTED skips,
docs/fully_connected.md). Eligible: what `dtmm convert` can rewrite (dtmm.core.fc
read_fc) with C_in a multiple of B and the weights used by no other tensor or op.
The 1x1 convs whose C_in is a multiple of B (and larger) get blocks too: B
consecutive input channels of one filter, the unit DTMM_CONV_2D version 2 skips
(docs/contract.md); K x K convs and 1x1 convs B does not divide keep filterlets.
Nothing else in the model changes; with nothing to zero, OUT is a byte-identical copy.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np

from dtmm.cli import register
from dtmm.core.errors import ArgumentError, DtmmError, ModelError
from dtmm.core.fc import read_fc
from dtmm.core.tflite import BuiltinOperator, Model, TensorType, read_file, write_atomic


@dataclass
class LayerSparsity:
    subgraph: int
    op_index: int
    name: str                    # output tensor name
    shape: tuple = ()            # OHWI filter shape; FC: [C_out, C_in]
    filterlets: int = 0          # FC: blocks of `block` input channels
    zero_before: int = 0
    zero_after: int = 0
    l1_removed: float = 0.0      # share of the filter's L1 norm zeroed here
    note: str = ""               # why a layer was skipped; "" when eligible
    kind: str = "CONV_2D"        # or "FULLY_CONNECTED"
    block: int = 0               # block size B (0: a conv's whole filterlets)

    @property
    def eligible(self) -> bool:
        return not self.note

    @property
    def where(self) -> str:
        return f"{self.op_index}" if self.subgraph == 0 else f"{self.subgraph}:{self.op_index}"


def target_zeros(sparsity: float, filterlets: int) -> int:
    """Zero filterlets a layer of `filterlets` gets at `sparsity` (round half up)."""
    return min(filterlets, int(math.floor(sparsity * filterlets + 0.5)))


def _lowest_l1_units(units: np.ndarray, sparsity: float) -> np.ndarray:
    """Bool [n]: which of the n rows of `units` [n, unit size] to zero (the lowest L1
    first, ties by index), at least the already-zero ones."""
    l1 = np.abs(units.astype(np.int64)).sum(axis=1)
    k = max(target_zeros(sparsity, l1.size), int((l1 == 0).sum()))
    order = np.argsort(l1, kind="stable")
    mask = np.zeros(l1.size, bool)
    mask[order[:k]] = True
    return mask


def lowest_l1_mask(filter_ohwi: np.ndarray, sparsity: float) -> np.ndarray:
    """Bool [C_out, K_h, K_w]: the filterlets to zero (the lowest L1 first, ties by
    index), at least the already-zero ones."""
    c_out, kh, kw, c_in = filter_ohwi.shape
    return _lowest_l1_units(filter_ohwi.reshape(-1, c_in), sparsity).reshape(c_out, kh, kw)


def lowest_l1_block_mask(weights: np.ndarray, block: int, sparsity: float) -> np.ndarray:
    """Bool [C_out, C_in / B]: the FC weight blocks to zero, as lowest_l1_mask
    (blocks in row-major order: row 0's blocks first)."""
    c_out, c_in = weights.shape
    if block < 1 or c_in % block:
        raise ArgumentError(f"block size {block} does not divide C_in={c_in}")
    return _lowest_l1_units(weights.reshape(-1, block), sparsity).reshape(c_out, -1)


def conv_takes_blocks(filter_shape, block: int) -> bool:
    """Whether --blocks B zeroes blocks (not filterlets) of a conv: 1x1 kernels
    with C_in a multiple of B above B (docs/contract.md: B < C_in only for 1x1)."""
    _, kh, kw, c_in = filter_shape
    return (kh, kw) == (1, 1) and block < c_in and c_in % block == 0


def _eligible_filter(op, tensor_users, buffer_users, layer):
    """The filter tensor of an eligible conv and its int8 values, or None with
    layer.note set."""
    if len(op.inputs) < 2 or len(op.outputs) != 1 or None in op.inputs[:2] + op.outputs:
        raise ModelError(f"CONV_2D {layer.where}: needs 2-3 inputs and 1 output, has "
                         f"{len(op.inputs)} and {len(op.outputs)}")
    x_t, w_t, y_t = op.inputs[0], op.inputs[1], op.outputs[0]
    layer.shape = w_t.shape
    if TensorType.INT8 != x_t.dtype or TensorType.INT8 != y_t.dtype \
            or TensorType.INT8 != w_t.dtype:
        layer.note = "skipped: not an int8 conv with int8 filter"
        return None
    if len(layer.shape) != 4 or min(layer.shape) < 1:
        raise ModelError(f"CONV_2D {layer.where} ({layer.name}): filter shape "
                         f"{list(layer.shape)} is not a 4-D OHWI filter")
    if len(x_t.shape) != 4 or x_t.shape[3] != layer.shape[3]:
        layer.note = "skipped: grouped conv or input channels differ"
        return None
    weights = w_t.value(f"CONV_2D {layer.where} filter")
    if weights is None or w_t.is_variable:
        layer.note = "skipped: filter is not constant"
        return None
    # one reference (this op's input) and one tensor on its buffer: a filter that is
    # also a subgraph input, another op's input or shares its data stays as it is
    if tensor_users.get(id(w_t), 0) != 1 or buffer_users.get(id(w_t.buffer), 0) != 1:
        layer.note = "skipped: filter is shared with another op or tensor"
        return None
    return w_t, weights


def _eligible_fc(model, si, oi, block, tensor_users, buffer_users, layer):
    """The weight tensor of an eligible FULLY_CONNECTED and its int8 [C_out, C_in]
    values, or None with layer.note set."""
    fc = read_fc(model, si, oi)
    layer.shape = tuple(fc.filter.shape)
    if fc.skip:
        layer.note = fc.skip
        return None
    if fc.c_in % block:
        layer.note = f"skipped: C_in={fc.c_in} is not a multiple of block {block}"
        return None
    w_t = fc.filter
    if w_t.is_variable or tensor_users.get(id(w_t), 0) != 1 \
            or buffer_users.get(id(w_t.buffer), 0) != 1:
        layer.note = "skipped: weights are shared with another op or tensor"
        return None
    return w_t, fc.weights


def sparsify_model(buf: bytes, sparsity: float, name: str = "input", blocks: int | None = None):
    """Returns (output bytes, [LayerSparsity] for every CONV_2D, and with `blocks`
    for every FULLY_CONNECTED too). The output is `buf` itself when nothing had to
    be zeroed."""
    if not 0.0 <= float(sparsity) <= 1.0:
        raise ArgumentError(f"sparsity must be in [0, 1], got {sparsity}")
    if blocks is not None and (isinstance(blocks, bool) or int(blocks) != blocks
                               or blocks < 1):
        raise ArgumentError(f"block size must be a positive integer, got {blocks}")
    buf = bytes(buf)
    model = Model.read(buf, name)
    tensor_users, buffer_users = model.users()
    layers, changed = [], False
    for si, sg in enumerate(model.subgraphs):
        for oi, op in enumerate(sg.operators):
            is_conv = op.opcode.builtin == BuiltinOperator.CONV_2D
            is_fc = blocks is not None and op.opcode.builtin == BuiltinOperator.FULLY_CONNECTED
            if not (is_conv or is_fc):
                continue
            out_name = op.outputs[0].name if op.outputs and op.outputs[0] is not None else ""
            layer = LayerSparsity(si, oi, out_name)
            layers.append(layer)
            try:
                if is_conv:
                    found = _eligible_filter(op, tensor_users, buffer_users, layer)
                else:
                    layer.kind, layer.block = "FULLY_CONNECTED", int(blocks)
                    found = _eligible_fc(model, si, oi, int(blocks), tensor_users,
                                         buffer_users, layer)
            except DtmmError as e:
                raise type(e)(f"{name}: {e}") from None
            if found is None:
                continue
            w_t, weights = found
            if is_conv and blocks is not None and conv_takes_blocks(weights.shape, blocks):
                layer.block = int(blocks)  # a 1x1 conv: blocks, as an FC row
            if is_conv and not layer.block:
                kept = weights.reshape(-1, weights.shape[3]).any(axis=1)
                mask = lowest_l1_mask(weights, sparsity)
            else:
                rows = weights.reshape(weights.shape[0], -1)
                kept = rows.reshape(-1, layer.block).any(axis=1)
                mask = lowest_l1_block_mask(rows, layer.block, sparsity)
            layer.filterlets = int(mask.size)
            layer.zero_before = int((~kept).sum())
            layer.zero_after = int(mask.sum())
            total_l1 = float(np.abs(weights.astype(np.int64)).sum())
            if layer.zero_after == layer.zero_before:
                continue
            pruned = weights.copy()
            if is_conv and not layer.block:
                pruned[mask] = 0
            else:
                pruned.reshape(-1, layer.block)[mask.reshape(-1)] = 0
            layer.l1_removed = 1.0 - float(np.abs(pruned.astype(np.int64)).sum()) / total_l1
            w_t.buffer.data = pruned
            changed = True
    return (model.save() if changed else buf), layers


def sparsify_file(in_path, out_path, sparsity: float, blocks: int | None = None):
    """Sparsify IN into OUT (written atomically; IN is never modified)."""
    buf = read_file(in_path)
    out, layers = sparsify_model(buf, sparsity, name=os.fspath(in_path), blocks=blocks)
    if os.path.exists(out_path) and os.path.samefile(in_path, out_path):
        raise ModelError(f"output {out_path} is the input file; choose another path")
    write_atomic(out_path, out)
    return layers


def table(layers) -> str:
    head = (f"{'op':>5}  {'name':<36}  {'CoutxKhxKwxCin':<15} {'filterlets':>10} "
            f"{'zero before':>11} {'zero after':>10} {'sparsity':>8} {'L1 zeroed':>9}  note")
    lines = [head, "-" * len(head)]
    for r in layers:
        shape = "x".join(map(str, r.shape)) if r.shape else "?"
        nm = r.name.split(";")[0]
        if r.kind != "CONV_2D":
            nm = f"FC/B{r.block} {nm}"
        elif r.block:
            nm = f"1x1/B{r.block} {nm}"
        nm = nm if len(nm) <= 36 else "..." + nm[-33:]
        if r.eligible:
            lines.append(f"{r.where:>5}  {nm:<36}  {shape:<15} {r.filterlets:>10} "
                         f"{r.zero_before:>11} {r.zero_after:>10} "
                         f"{100 * r.zero_after / r.filterlets:>7.1f}% "
                         f"{100 * r.l1_removed:>8.1f}%")
        else:
            lines.append(f"{r.where:>5}  {nm:<36}  {shape:<15} {'':>10} {'':>11} "
                         f"{'':>10} {'':>8} {'':>9}  {r.note}")
    return "\n".join(lines)


def _fraction(s: str) -> float:
    import argparse

    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {s!r}") from None
    if not 0.0 <= v <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {s}")
    return v


def _block_size(s: str) -> int:
    import argparse

    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {s!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {s}")
    return v


def _sparsify_args(p):
    p.add_argument("input", metavar="IN.tflite")
    p.add_argument("-o", "--output", metavar="OUT.tflite", required=True)
    p.add_argument("--sparsity", type=_fraction, required=True, metavar="X",
                   help="share of each eligible conv's filterlets to zero (0..1), "
                        "lowest L1 norm first")
    p.add_argument("--blocks", type=_block_size, default=None, metavar="B",
                   help="zero blocks of B input channels instead of filterlets in 1x1 "
                        "convs whose C_in is a multiple of B, and that share of each int8 "
                        "FULLY_CONNECTED's blocks (lowest L1 first; an FC whose C_in is "
                        "not a multiple of B stays dense). Default: filterlets only, FCs "
                        "untouched")


def _sparsify_run(args) -> int:
    layers = sparsify_file(args.input, args.output, args.sparsity, args.blocks)
    print(table(layers))
    parts = []
    for kind in ("CONV_2D", "FULLY_CONNECTED"):
        of = [r for r in layers if r.kind == kind]
        if kind == "CONV_2D" or args.blocks is not None:
            n = sum(r.eligible for r in of)
            changed = sum(r.eligible and r.zero_after > r.zero_before for r in of)
            parts.append(f"{n} of {len(of)} {kind} eligible, {changed} changed")
    print(f"{'; '.join(parts)}; wrote {args.output}")
    return 0


register("sparsify", "zero the lowest-L1 filterlets of each int8 CONV_2D (preview a "
         "sparsity before retraining)", _sparsify_args, _sparsify_run)
