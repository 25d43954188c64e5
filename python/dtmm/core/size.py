"""The file-size model: flatbuffer bytes of a conv in its dense CONV_2D form and in
its DTMM form. The converter decides with it whether a rewrite pays; the scheduler's
flash model (dtmm.schedule.cost.FlashModel) sums it over a plan. One model, so the
two cannot drift apart.

Plain arithmetic on ints or NumPy arrays (the scheduler evaluates whole batches).
The terms are the schema's tables and vectors as flatbuffers lays them out (4-byte
offsets and lengths, vtables), estimated, not exact: tests/python/test_convert.py
checks the converter's estimate of the saving against the real file, and
tests/python/test_schedule_cost.py the flash model against converted files (2 %).
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources

from dtmm.core import drivers

# Conv2DOptions table of a CONV_2D operator.
CONV_OPTIONS_BYTES = 20
# The CUSTOM "DTMM_CONV_2D" OperatorCode entry (table + string), once per file.
DTMM_OPCODE_BYTES = 48
# Buffer data vectors are 16-byte aligned in the file (schema force_align: 16); the
# 4-byte rounding below leaves a mean of 6 bytes of alignment padding per buffer.
BUFFER_ALIGN_PAD = 6
# DTMM constants are named "<filter name>/dtmm_<what>": the suffix, on average.
DTMM_NAME_SUFFIX = 14
# Inputs of the DTMM_CONV_2D operator (contract): version 1, version 2.
DTMM_INPUTS = 6
DTMM_V2_INPUTS = 2
# A version-2 op's one constant is named "<op index>/dtmm_w": its length, on average.
DTMM_V2_NAME = 10


def round4(n):
    return (n + 3) // 4 * 4


def tensor_bytes(name_len, rank, n_scales=0):
    """One Tensor table: offset slot, table, shape vector, name string and, with
    scales, its QuantizationParameters (scale float32 + zero point int64 per entry)."""
    cost = 4 + 24 + (4 + 4 * rank) + round4(4 + name_len + 1)
    return cost + (n_scales > 0) * (16 + (4 + 4 * n_scales) + (8 + 8 * n_scales))


def buffer_bytes(data_bytes):
    """One Buffer with data: offset slot, table, data vector, alignment padding."""
    return 4 + 8 + 4 + round4(data_bytes) + BUFFER_ALIGN_PAD


def operator_bytes(n_inputs, options_bytes):
    """One Operator with its inputs/outputs vectors (one output) and options."""
    return 4 + 20 + 2 * 4 + 4 * (n_inputs + 1) + options_bytes


def constant_bytes(name_len, rank, data_bytes, n_scales=0):
    """A constant tensor with its own buffer."""
    return tensor_bytes(name_len, rank, n_scales) + buffer_bytes(data_bytes)


def dense_conv_bytes(filter_name_len, c_out, k, c_in, n_filter_scales,
                     bias_name_len=None, n_bias_scales=0):
    """A CONV_2D with its own int8 filter and (unless bias_name_len is None) int32
    bias, each with its quantization."""
    total = operator_bytes(2 if bias_name_len is None else 3, CONV_OPTIONS_BYTES)
    total = total + constant_bytes(filter_name_len, 4, c_out * k * c_in, n_filter_scales)
    if bias_name_len is not None:
        total = total + constant_bytes(bias_name_len, 1, 4 * c_out, n_bias_scales)
    return total


def dtmm_conv_bytes(filter_name_len, c_out, k, c_in, n_kept, options_len, block=None,
                    version=2):
    """A DTMM_CONV_2D with the operator and its options. Version 2 (what the
    converter writes): one int8 tensor w of 12 * C_out (folded bias, multiplier,
    shift) + the bitmap, one bit per block of `block` (default C_in) input channels
    padded to 4 bytes, + n_kept blocks. Version 1: values [n_kept, C_in] int8,
    bitmap ceil(C_out*K/8), folded bias, multiplier and shift int32 [C_out], each
    its own tensor named after the filter (`block` must be C_in)."""
    if version == 1:
        name = filter_name_len + DTMM_NAME_SUFFIX
        return (operator_bytes(DTMM_INPUTS, options_len + 8)
                + constant_bytes(name, 2, n_kept * c_in)
                + constant_bytes(name, 1, (c_out * k + 7) // 8)
                + 3 * constant_bytes(name, 1, 4 * c_out))
    b = c_in if block is None else block
    bitmap = 4 * ((c_out * k * (c_in // b) + 31) // 32)
    return (operator_bytes(DTMM_V2_INPUTS, options_len + 8)
            + constant_bytes(DTMM_V2_NAME, 1, 12 * c_out + bitmap + n_kept * b))


def block_weight_bytes(c_out, k, c_in, block_size, n_kept_blocks):
    """Weight bytes of a conv (K = kh*kw taps) or FULLY_CONNECTED (K = 1) in the block
    format of contract v2: the kept blocks' int8 values (B each) and the bitmap, one
    bit per block, C_out*K*(C_in/B) bits rounded up to bytes. B = C_in is v1's FWCS
    (values + bitmap). Per-channel constants are not weights (as in
    dense_conv_bytes' filter term); budgets in "weight bytes" compare this against
    c_out * k * c_in for the dense layer."""
    return n_kept_blocks * block_size + (c_out * k * (c_in // block_size) + 7) // 8


def own_bytes(t, tensor_users, buffer_users) -> int:
    """Bytes a dense constant frees when its op is rewritten: nothing if another op
    shares the tensor, the tensor table only if its buffer is shared."""
    if t is None or tensor_users.get(id(t), 0) > 1:
        return 0
    own = tensor_bytes(len(t.name), len(t.shape), len(t.quant()[0]))
    data = t.data
    if buffer_users.get(id(t.buffer), 0) == 1 and data is not None:
        own += buffer_bytes(len(data))
    return own


@lru_cache(maxsize=None)
def op_code_bytes() -> dict:
    """target -> {op name: flash bytes its registration adds to a TFLM image}: the op,
    its kernels and validator as the linker keeps them (--gc-sections), for the DTMM
    ops and CMSIS-NN's CONV_2D, measured by bench/models (models_code.csv;
    data/code_size.json names the run). An image whose app links DTMM only for this
    model is smaller than the dense one only if the model file saves more than the
    DTMM ops add (less a dense op the model no longer uses). Read-only."""
    return {t: dict(ops) for t, ops in _code_size()["ops"].items()}


@lru_cache(maxsize=None)
def _code_size() -> dict:
    with resources.files("dtmm.core").joinpath("data/code_size.json").open() as f:
        return json.load(f)


def conv_kernel_bytes(target: str, names) -> int | None:
    """.text of the DTMM conv kernel library an image links on `target` when built
    with the drivers `names` (DTMM_CONV_DRIVERS; the window drivers bring im2col);
    None where not measured (bench/kernel_size.py --update-code-size)."""
    table = _code_size().get("conv_kernel_bytes", {}).get(target)
    if table is None:
        return None
    return table.get(" ".join(drivers.built(names)) or "-")
