"""TFLite's conv output size and padding (padding.h ComputePaddingHeightWidth)."""

from __future__ import annotations

from dtmm.core.errors import FormatError

# schema Padding
PADDING_SAME, PADDING_VALID = 0, 1
PADDING_NAMES = {PADDING_SAME: "SAME", PADDING_VALID: "VALID"}


def out_size_and_padding(in_size: int, kernel: int, stride: int, dilation: int,
                         padding: int) -> tuple[int, int]:
    """(output size, leading padding) as TFLite's ComputeOutSize /
    ComputePaddingWithOffset; the trailing padding is whatever the output needs."""
    eff = (kernel - 1) * dilation + 1
    if padding == PADDING_SAME:
        out = (in_size + stride - 1) // stride
    elif padding == PADDING_VALID:
        out = int((in_size + stride - eff) / stride)  # C truncation
    else:
        raise FormatError(f"unknown padding {padding}")
    total = max((out - 1) * stride + eff - in_size, 0)
    return out, total // 2
