"""The per-layer table `dtmm convert` and `dtmm inspect` print.

    print(format_table(report.layers))
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dtmm.core import latency

from dtmm.core.geometry import PADDING_NAMES
from dtmm.core.quant import ACTIVATION_NAMES


@dataclass
class LayerReport:
    subgraph: int
    op_index: int
    name: str                 # output tensor name
    op: str = "CONV_2D"
    shape: tuple | None = None  # (C_out, K_h, K_w, C_in)
    in_hw: tuple | None = None
    out_hw: tuple | None = None
    stride: tuple | None = None
    dilation: tuple | None = None
    padding: str = ""
    activation: str = ""
    sparsity: float | None = None
    bytes_before: int | None = None
    bytes_after: int | None = None
    rewritten: bool = False
    reason: str = ""
    # target -> (dense CMSIS-NN, DTMM) modeled instructions (dtmm.core.latency)
    modeled: dict = field(default_factory=dict)

    @property
    def where(self) -> str:
        return f"{self.op_index}" if self.subgraph == 0 else f"{self.subgraph}:{self.op_index}"


def _short(name: str, width: int) -> str:
    name = name.split(";")[0]  # fused TF names: the first part is the layer
    return name if len(name) <= width else "..." + name[-(width - 3):]


def _hw(t):
    return "?" if t is None else f"{t[0]}x{t[1]}"


TARGET_SHORT = {"cortex-m4": "m4", "cortex-m55": "m55"}


def _k(n: float) -> str:
    return f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n / 1e3:.1f}k" if n >= 1e4 else f"{n:.0f}"


def _modeled(r) -> str:
    return " ".join(f"{TARGET_SHORT.get(t, t)} {_k(d)}/{_k(m)}"
                    for t, (d, m) in sorted(r.modeled.items()))


def modeled_instructions(shape: latency.ConvShape, targets) -> dict:
    """target -> (dense CMSIS-NN, DTMM) modeled instructions of one conv."""
    return {t: (latency.conv_instructions(t, "cmsis_nn", shape),
                latency.conv_instructions(t, "dtmm", shape)) for t in targets}


def format_table(layers, title_after="after", name_width=36) -> str:
    """Rows of LayerReport; with modeled instructions a column 'instr dense/dtmm'."""
    mw = max([len(_modeled(r)) for r in layers] + [0])
    mcol = f"{'instr dense/dtmm':<{max(mw, 16)}}  " if mw else ""
    head = (f"{'op':>5}  {'name':<{name_width}}  {'CoutxKhxKwxCin':<15} "
            f"{'in->out':<13} {'stride':<7}{'dil':<5}{'pad':<6}{'act':<13}{'sparse':>7} "
            f"{'before':>8} {title_after:>8}  {mcol}result")
    lines = [head, "-" * len(head)]
    for r in layers:
        shape = "x".join(map(str, r.shape)) if r.shape else "?"
        io = f"{_hw(r.in_hw)}->{_hw(r.out_hw)}" if r.in_hw else ""
        s = f"{r.stride[0]}x{r.stride[1]}" if r.stride else ""
        d = f"{r.dilation[0]}x{r.dilation[1]}" if r.dilation else ""
        sp = f"{100 * r.sparsity:6.1f}%" if r.sparsity is not None else ""
        b0 = "" if r.bytes_before is None else str(r.bytes_before)
        b1 = "" if r.bytes_after is None else str(r.bytes_after)
        lines.append(f"{r.where:>5}  {_short(r.name, name_width):<{name_width}}  "
                     f"{shape:<15} {io:<13} {s:<7}{d:<5}{r.padding:<6}"
                     f"{r.activation:<13}{sp:>7} {b0:>8} {b1:>8}  "
                     + (f"{_modeled(r):<{max(mw, 16)}}  " if mw else "") + r.reason)
    return "\n".join(lines)


def conv_report(conv) -> LayerReport:
    """The row of a CONV_2D read by dtmm.core.ops.read_conv (reason left to the caller)."""
    op = conv.op
    name = op.outputs[0].name if op.outputs and op.outputs[0] is not None else ""
    return LayerReport(
        subgraph=conv.subgraph, op_index=conv.op_index, name=name, shape=conv.shape,
        in_hw=conv.in_hw, out_hw=conv.out_hw, stride=conv.stride, dilation=conv.dilation,
        padding=PADDING_NAMES.get(conv.padding, str(conv.padding)),
        activation=ACTIVATION_NAMES.get(conv.activation, str(conv.activation)),
        sparsity=conv.sparsity, reason=conv.skip)
