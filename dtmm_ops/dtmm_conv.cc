/* DTMM_CONV_2D for TensorFlow Lite Micro (format versions 1 and 2,
 * docs/contract.md).
 *
 * Version 1: six inputs (input, values, bitmap, bias, multiplier, shift) and
 * long option keys. Version 2: two inputs (input, w) and short keys; w is one
 * constant, 4-byte aligned tensor: the planar per-channel table (bias,
 * multiplier, shift: int32 [C_out] each, read in place), the bitmap zero-padded
 * to a multiple of 4 bytes, the kept blocks of B channels (B < C_in only for 1x1
 * kernels). Init parses the flexbuffer options once (the version first, then
 * that version's keys); Prepare checks every tensor, option and the FWCS arrays
 * (dtmm_conv_s8_validate) and fails with one MicroPrintf naming the problem;
 * Eval only calls dtmm_conv_s8. The op keeps no per-channel arrays in the arena.
 */
#include <stdint.h>

#include <limits>

#include "dtmm_contract_table.h"
#include "dtmm_conv_s8.h"
#include "dtmm_op_checks.h"
#include "dtmm_op_options.h"
#include "dtmm_ops.h"
#include "tensorflow/lite/c/builtin_op_data.h"
#include "tensorflow/lite/c/common.h"
#include "tensorflow/lite/kernels/kernel_util.h"
#include "tensorflow/lite/kernels/padding.h"
#include "tensorflow/lite/micro/kernels/kernel_util.h"
#include "tensorflow/lite/micro/micro_context.h"
#include "tensorflow/lite/micro/micro_log.h"

namespace dtmm {
namespace {

using internal::CheckTensor;
using internal::PerTensorZeroPoint;

constexpr const char* kOp = "DTMM_CONV_2D";

constexpr int kInput = 0;
constexpr int kValues = 1;
constexpr int kBitmap = 2;
constexpr int kBias = 3;
constexpr int kMultiplier = 4;
constexpr int kShift = 5;
constexpr int kNumInputs = 6;
constexpr int kOutput = 0;
// Version 2: input and the packed constant w.
constexpr int kW = DTMM_CONV_2D_V2_INPUT_W;
constexpr int kNumInputsV2 = DTMM_CONV_2D_V2_NUM_INPUTS;
static_assert(DTMM_CONV_2D_V2_INPUT_INPUT == kInput, "input first in both versions");
static_assert(DTMM_CONV_2D_V1_VERSION == 1 && DTMM_CONV_2D_V2_VERSION == 2 &&
                  DTMM_FORMAT_VERSION_MIN == 1 && DTMM_FORMAT_VERSION == 2,
              "kernel and contract agree on the versions");

// Options keys in the order OpData stores them; all required.
enum OptionKey {
  kVersion, kKh, kKw, kSh, kSw, kDh, kDw, kPadding, kInZp, kActMin, kActMax,
  kNumKeys
};
using options::KeyInfo;
// Names and ranges: the contract's option table (dtmm_contract_table.h, generated
// from dtmm.core.contract, so Python and the device accept the same options).
// Kernel/stride/dilation bounds keep (k - 1) * d + 1 far from int32 overflow
// before TFLite's padding arithmetic runs; the version is range-checked in
// Prepare so the message can name it.
#define DTMM_KEY_INFO(index, key, lo, hi) {key, lo, hi},
constexpr KeyInfo kKeys[kNumKeys] = {DTMM_CONV_2D_V1_OPTIONS(DTMM_KEY_INFO)};
#undef DTMM_KEY_INFO
static_assert(kNumKeys == DTMM_CONV_2D_V1_NUM_OPTIONS, "option table size");
static_assert(kVersion == DTMM_CONV_2D_V1_OPT_VERSION && kKh == DTMM_CONV_2D_V1_OPT_KH &&
                  kSh == DTMM_CONV_2D_V1_OPT_SH && kDh == DTMM_CONV_2D_V1_OPT_DH &&
                  kPadding == DTMM_CONV_2D_V1_OPT_PADDING &&
                  kInZp == DTMM_CONV_2D_V1_OPT_IN_ZP &&
                  kActMax == DTMM_CONV_2D_V1_OPT_ACT_MAX,
              "OptionKey order is the contract table's");

// Version 2's keys (short names, the block size second).
enum OptionKeyV2 { kV2Version, kV2B, kV2Kh, kV2Kw, kV2Sh, kV2Sw, kV2Dh, kV2Dw, kV2P, kV2Z,
                   kV2Lo, kV2Hi, kNumKeysV2 };
#define DTMM_KEY_INFO(index, key, lo, hi) {key, lo, hi},
constexpr KeyInfo kKeysV2[kNumKeysV2] = {DTMM_CONV_2D_V2_OPTIONS(DTMM_KEY_INFO)};
#undef DTMM_KEY_INFO
static_assert(kNumKeysV2 == DTMM_CONV_2D_V2_NUM_OPTIONS, "option table size (v2)");
static_assert(kV2Version == DTMM_CONV_2D_V2_OPT_VERSION && kV2B == DTMM_CONV_2D_V2_OPT_B &&
                  kV2Kh == DTMM_CONV_2D_V2_OPT_KH && kV2Kw == DTMM_CONV_2D_V2_OPT_KW &&
                  kV2Sh == DTMM_CONV_2D_V2_OPT_SH && kV2Sw == DTMM_CONV_2D_V2_OPT_SW &&
                  kV2Dh == DTMM_CONV_2D_V2_OPT_DH && kV2Dw == DTMM_CONV_2D_V2_OPT_DW &&
                  kV2P == DTMM_CONV_2D_V2_OPT_P && kV2Z == DTMM_CONV_2D_V2_OPT_Z &&
                  kV2Lo == DTMM_CONV_2D_V2_OPT_LO && kV2Hi == DTMM_CONV_2D_V2_OPT_HI,
              "OptionKeyV2 order is the contract table's");

// Persistent per-node state: about 100 bytes, whatever C_out is.
struct OpData {
  dtmm_conv_dims dims;      // kernel size from Init, the rest from Prepare
  dtmm_conv_params params;  // options from Init, pads and zero points in Prepare
  int32_t in_zp;            // options in_zp (v2: z), checked against the input tensor
  int32_t block;            // v2: options b (B); v1: 0 (= C_in)
  int scratch_index;        // -1: the compiled kernel path needs no scratch
  options::Status options;  // what Init's ReadOptions found, reported by Prepare
  int8_t padding;           // options padding (v2: p): 0 = SAME, 1 = VALID
};

// The version key alone (the same first key in every version's table): which
// table the other keys are read with.
const KeyInfo kVersionKey[1] = {kKeys[kVersion]};
static_assert(kVersion == 0 && kV2Version == 0, "version is key 0 in both tables");

void ParseOptionsV2(const char* buffer, size_t length, OpData* data) {
  int32_t o[kNumKeysV2];
  data->options = options::ReadOptions(buffer, length, kKeysV2, kNumKeysV2, o);
  if (data->options.error != options::kOk) return;
  data->block = o[kV2B];
  data->dims.kernel_h = o[kV2Kh];
  data->dims.kernel_w = o[kV2Kw];
  data->params.stride_h = o[kV2Sh];
  data->params.stride_w = o[kV2Sw];
  data->params.dilation_h = o[kV2Dh];
  data->params.dilation_w = o[kV2Dw];
  data->padding = static_cast<int8_t>(o[kV2P]);
  data->in_zp = o[kV2Z];
  data->params.activation_min = o[kV2Lo];
  data->params.activation_max = o[kV2Hi];
}

void ParseOptions(const char* buffer, size_t length, OpData* data) {
  int32_t o[kNumKeys];
  data->block = 0;
  data->params.version = 0;  // none found
  data->options = options::ReadOptions(buffer, length, kVersionKey, 1, o);
  if (data->options.error != options::kOk) return;
  data->params.version = o[kVersion];
  if (o[kVersion] == DTMM_CONV_2D_V2_VERSION) return ParseOptionsV2(buffer, length, data);
  if (o[kVersion] != DTMM_CONV_2D_V1_VERSION) return;  // Prepare names the version
  data->options = options::ReadOptions(buffer, length, kKeys, kNumKeys, o);
  if (data->options.error != options::kOk) return;
  data->dims.kernel_h = o[kKh];
  data->dims.kernel_w = o[kKw];
  data->params.stride_h = o[kSh];
  data->params.stride_w = o[kSw];
  data->params.dilation_h = o[kDh];
  data->params.dilation_w = o[kDw];
  data->padding = static_cast<int8_t>(o[kPadding]);
  data->in_zp = o[kInZp];
  data->params.activation_min = o[kActMin];
  data->params.activation_max = o[kActMax];
}

const char* StatusName(dtmm_status s) {
  switch (s) {
    case DTMM_OK: return "ok";
    case DTMM_ERR_ARG: return "bad argument (null pointer or size)";
    case DTMM_ERR_VERSION: return "unknown format version";
    case DTMM_ERR_PARAMS: return "stride/dilation/padding/activation/shift/block size out of range";
    case DTMM_ERR_BITMAP: return "bitmap length or padding bits wrong";
    case DTMM_ERR_VALUES: return "values rows (blocks) != popcount(bitmap)";
    case DTMM_ERR_UNSUPPORTED: return "no driver of this build runs it";
  }
  return "unknown error";
}

void* Init(TfLiteContext* context, const char* buffer, size_t length) {
  OpData* data = static_cast<OpData*>(
      context->AllocatePersistentBuffer(context, sizeof(OpData)));
  if (data == nullptr) return nullptr;
  ParseOptions(buffer, length, data);
  data->scratch_index = -1;
  return data;
}

// Shared by Prepare (TfLiteTensor) and Eval (TfLiteEvalTensor): the FWCS view of
// the constant inputs. An empty values tensor may have no data pointer.
const int8_t kNoValues[1] = {0};

template <typename T>
dtmm_fwcs_filter MakeFilter(const T* values, const T* bitmap, const T* bias,
                            const T* multiplier, const T* shift) {
  dtmm_fwcs_filter f;
  f.bitmap = static_cast<const uint8_t*>(bitmap->data.data);
  f.bitmap_bytes = bitmap->dims->data[0];
  f.num_filterlets = values->dims->data[0];
  f.values = values->data.data != nullptr
                 ? static_cast<const int8_t*>(values->data.data)
                 : (f.num_filterlets == 0 ? kNoValues : nullptr);
  f.bias = static_cast<const int32_t*>(bias->data.data);
  f.multiplier = static_cast<const int32_t*>(multiplier->data.data);
  f.shift = static_cast<const int32_t*>(shift->data.data);
  f.block_size = 0;  // version 1: one bit per filterlet
  return f;
}

bool CheckPerChannel(const TfLiteTensor* t, const char* what, int c_out) {
  if (!CheckTensor(kOp, t, what, kTfLiteInt32, 1, true)) return false;
  if (t->dims->data[0] != c_out) {
    MicroPrintf("DTMM_CONV_2D: %s has %d entries, output has %d channels", what,
                t->dims->data[0], c_out);
    return false;
  }
  return true;
}

// Dims from the input and output tensors (kernel size came from the options).
TfLiteStatus ReadShapes(OpData* data, const TfLiteTensor* input, const TfLiteTensor* output) {
  if (!CheckTensor(kOp, input, "input", kTfLiteInt8, 4, false) ||
      !CheckTensor(kOp, output, "output", kTfLiteInt8, 4, false)) {
    return kTfLiteError;
  }
  dtmm_conv_dims& d = data->dims;
  d.batches = input->dims->data[0];
  d.input_h = input->dims->data[1];
  d.input_w = input->dims->data[2];
  d.input_c = input->dims->data[3];
  d.output_h = output->dims->data[1];
  d.output_w = output->dims->data[2];
  d.output_c = output->dims->data[3];
  if (output->dims->data[0] != d.batches) {
    MicroPrintf("DTMM_CONV_2D: output batches %d != input batches %d",
                output->dims->data[0], static_cast<int>(d.batches));
    return kTfLiteError;
  }
  return kTfLiteOk;
}

// Version 1: the five constant FWCS tensors.
TfLiteStatus FilterV1(const OpData* data, TfLiteTensor* const* in, dtmm_fwcs_filter* filter) {
  const dtmm_conv_dims& d = data->dims;
  if (!CheckTensor(kOp, in[kValues], "values", kTfLiteInt8, 2, false) ||
      !CheckTensor(kOp, in[kBitmap], "bitmap", kTfLiteUInt8, 1, true)) {
    return kTfLiteError;
  }
  // An empty values tensor (every filterlet pruned) has no buffer, and TFLM then
  // plans it in the arena instead of marking it constant; nothing is read from it.
  if (in[kValues]->dims->data[0] > 0 && !tflite::IsConstantTensor(in[kValues])) {
    MicroPrintf("DTMM_CONV_2D: values must be a constant tensor");
    return kTfLiteError;
  }
  if (in[kValues]->dims->data[1] != d.input_c) {
    MicroPrintf("DTMM_CONV_2D: values rows have %d entries, input has %d channels",
                in[kValues]->dims->data[1], static_cast<int>(d.input_c));
    return kTfLiteError;
  }
  if (!CheckPerChannel(in[kBias], "bias", d.output_c) ||
      !CheckPerChannel(in[kMultiplier], "multiplier", d.output_c) ||
      !CheckPerChannel(in[kShift], "shift", d.output_c)) {
    return kTfLiteError;
  }
  *filter = MakeFilter(in[kValues], in[kBitmap], in[kBias], in[kMultiplier], in[kShift]);
  return kTfLiteOk;
}

// Version 2's layout of w for this layer: the table, the bitmap unpadded and
// padded to 4 bytes (bits: C_out * K * (C_in / B), < 2^31 - 31 after Prepare).
struct PackedLayout {
  int64_t table, bitmap, bitmap_padded;
};

PackedLayout LayoutOf(const dtmm_conv_dims& d, int32_t block) {
  const int64_t bits = static_cast<int64_t>(d.output_c) * d.kernel_h * d.kernel_w *
                       (d.input_c / block);
  return {12 * static_cast<int64_t>(d.output_c), (bits + 7) / 8, 4 * ((bits + 31) / 32)};
}

// The kernel's view of w (checked in Prepare): per-channel arrays read in place.
dtmm_fwcs_filter MakeFilterV2(const void* w, int32_t w_bytes, const dtmm_conv_dims& d,
                              int32_t block) {
  const PackedLayout lay = LayoutOf(d, block);
  const int32_t* table = static_cast<const int32_t*>(w);
  const int8_t* bytes = static_cast<const int8_t*>(w);
  dtmm_fwcs_filter f;
  f.bias = table;
  f.multiplier = table + d.output_c;
  f.shift = table + 2 * d.output_c;
  f.bitmap = reinterpret_cast<const uint8_t*>(bytes + lay.table);
  f.bitmap_bytes = static_cast<int32_t>(lay.bitmap);
  f.values = bytes + lay.table + lay.bitmap_padded;
  f.num_filterlets = static_cast<int32_t>((w_bytes - lay.table - lay.bitmap_padded) / block);
  f.block_size = block;
  return f;
}

int32_t Popcount(const uint8_t* b, int64_t n) {
  int32_t k = 0;
  for (int64_t i = 0; i < n; ++i) {
    for (uint32_t v = b[i]; v != 0; v &= v - 1u) ++k;
  }
  return k;
}

// Version 2: the one packed constant w, its length, alignment and padding.
TfLiteStatus FilterV2(const OpData* data, const TfLiteTensor* w, dtmm_fwcs_filter* filter) {
  const dtmm_conv_dims& d = data->dims;
  const int32_t b = data->block;
  if (!CheckTensor(kOp, w, "w", kTfLiteInt8, 1, true)) return kTfLiteError;
  if (d.input_c < 1 || d.output_c < 1 || b > d.input_c || d.input_c % b != 0) {
    MicroPrintf("DTMM_CONV_2D: option 'b' = %d does not divide C_in = %d",
                static_cast<int>(b), static_cast<int>(d.input_c));
    return kTfLiteError;
  }
  if (b != d.input_c && (d.kernel_h != 1 || d.kernel_w != 1)) {
    MicroPrintf("DTMM_CONV_2D: option 'b' = %d < C_in = %d needs a 1x1 kernel, got %dx%d",
                static_cast<int>(b), static_cast<int>(d.input_c),
                static_cast<int>(d.kernel_h), static_cast<int>(d.kernel_w));
    return kTfLiteError;
  }
  const PackedLayout lay = LayoutOf(d, b);
  const int64_t w_bytes = w->dims->data[0];
  if (lay.bitmap_padded > INT32_MAX - 32 || w_bytes < lay.table + lay.bitmap_padded) {
    MicroPrintf("DTMM_CONV_2D: w has %d bytes, shorter than its per-channel table (12 * "
                "C_out = %d) and bitmap (%d bytes)", static_cast<int>(w_bytes),
                static_cast<int>(12 * d.output_c),
                static_cast<int>(lay.bitmap_padded > INT32_MAX ? -1 : lay.bitmap_padded));
    return kTfLiteError;
  }
  if ((reinterpret_cast<uintptr_t>(w->data.data) & 3u) != 0) {
    MicroPrintf("DTMM_CONV_2D: w is not 4-byte aligned (flatbuffer buffers are)");
    return kTfLiteError;
  }
  const uint8_t* bitmap = static_cast<const uint8_t*>(w->data.data) + lay.table;
  for (int64_t i = lay.bitmap; i < lay.bitmap_padded; ++i) {
    if (bitmap[i] != 0) {
      MicroPrintf("DTMM_CONV_2D: bitmap padding byte %d is not zero",
                  static_cast<int>(i));
      return kTfLiteError;
    }
  }
  const int64_t bits = static_cast<int64_t>(d.output_c) * d.kernel_h * d.kernel_w *
                       (d.input_c / b);
  if ((bits & 7) != 0 && (bitmap[lay.bitmap - 1] >> (bits & 7)) != 0) {
    MicroPrintf("DTMM_CONV_2D: bitmap padding bits (from bit %d) are set",
                static_cast<int>(bits));
    return kTfLiteError;
  }
  const int32_t kept = Popcount(bitmap, lay.bitmap);
  if (w_bytes != lay.table + lay.bitmap_padded + static_cast<int64_t>(kept) * b) {
    MicroPrintf("DTMM_CONV_2D: w has %d bytes, expected 12 * C_out (%d) + bitmap (%d) + "
                "%d kept blocks * B (%d)", static_cast<int>(w_bytes),
                static_cast<int>(lay.table), static_cast<int>(lay.bitmap_padded),
                static_cast<int>(kept), static_cast<int>(b));
    return kTfLiteError;
  }
  *filter = MakeFilterV2(w->data.data, static_cast<int32_t>(w_bytes), d, b);
  return kTfLiteOk;
}

// Both versions: zero points, padding, the kernel's validator, scratch.
TfLiteStatus PrepareLayer(TfLiteContext* context, OpData* data, const TfLiteTensor* input,
                          const TfLiteTensor* output, const dtmm_fwcs_filter& filter) {
  dtmm_conv_dims& d = data->dims;
  int32_t input_zp = 0, output_zp = 0;
  if (!PerTensorZeroPoint(kOp, input, "input", &input_zp) ||
      !PerTensorZeroPoint(kOp, output, "output", &output_zp)) {
    return kTfLiteError;
  }
  if (input_zp != data->in_zp) {
    MicroPrintf("DTMM_CONV_2D: input zero point %d != options %s %d (the bias "
                "was folded with it)", static_cast<int>(input_zp),
                data->params.version == DTMM_CONV_2D_V2_VERSION ? "z" : "in_zp",
                static_cast<int>(data->in_zp));
    return kTfLiteError;
  }
  if (output_zp < -128 || output_zp > 127) {
    MicroPrintf("DTMM_CONV_2D: output zero point %d is not int8",
                static_cast<int>(output_zp));
    return kTfLiteError;
  }

  // Contract padding: 0 = SAME, 1 = VALID (the schema's Padding enum).
  dtmm_conv_params& p = data->params;
  const TfLitePadding padding =
      data->padding == 0 ? kTfLitePaddingSame : kTfLitePaddingValid;
  int out_h = 0, out_w = 0;
  TfLitePaddingValues pad;
  if (tflite::ComputePaddingHeightWidthChecked(
          p.stride_h, p.stride_w, p.dilation_h, p.dilation_w, d.input_h,
          d.input_w, d.kernel_h,
          d.kernel_w, padding, &out_h, &out_w, &pad) != kTfLiteOk ||
      out_h != d.output_h || out_w != d.output_w) {
    MicroPrintf("DTMM_CONV_2D: output is %dx%d, the options and input give %dx%d",
                static_cast<int>(d.output_h), static_cast<int>(d.output_w), out_h,
                out_w);
    return kTfLiteError;
  }

  p.pad_top = pad.height;
  p.pad_left = pad.width;
  p.input_zero_point = input_zp;
  p.output_offset = output_zp;

  int32_t preferred = 0;
  const int32_t used = dtmm_conv_s8_driver(&d, &p, filter.block_size, &preferred);
  const dtmm_status status = dtmm_conv_s8_validate(&d, &p, &filter);
  if (status == DTMM_ERR_UNSUPPORTED) {
    MicroPrintf("DTMM_CONV_2D: this build has no driver for the layer: it needs '%s', "
                "left out of DTMM_CONV_DRIVERS",
                dtmm_conv_s8_driver_name(preferred & DTMM_USE_ALL_DRIVERS));
    return kTfLiteError;
  }
  if (status != DTMM_OK) {
    MicroPrintf("DTMM_CONV_2D: invalid layer: %s (status %d)", StatusName(status),
                static_cast<int>(status));
    return kTfLiteError;
  }
  // Same output, more instructions: say so once per op, in Prepare.
  for (int32_t bit = 1; bit <= DTMM_USE_ALL; bit <<= 1) {
    if (preferred & ~used & bit) {
      MicroPrintf("DTMM_CONV_2D: '%s' is left out of DTMM_CONV_DRIVERS; the layer runs "
                  "through '%s' (same output, slower)", dtmm_conv_s8_driver_name(bit),
                  dtmm_conv_s8_driver_name(used & DTMM_USE_ALL_DRIVERS));
    }
  }

  const int32_t scratch_bytes = dtmm_conv_s8_get_buffer_size(&d, &p);
  if (scratch_bytes < 0) {
    MicroPrintf("DTMM_CONV_2D: scratch size query failed (%d)",
                static_cast<int>(scratch_bytes));
    return kTfLiteError;
  }
  data->scratch_index = -1;
  if (scratch_bytes > 0) {
    TF_LITE_ENSURE_STATUS(context->RequestScratchBufferInArena(
        context, static_cast<size_t>(scratch_bytes), &data->scratch_index));
  }
  return kTfLiteOk;
}

TfLiteStatus PrepareTensors(TfLiteContext* context, OpData* data, TfLiteTensor* const* in,
                            const TfLiteTensor* output) {
  TF_LITE_ENSURE_STATUS(ReadShapes(data, in[kInput], output));
  dtmm_fwcs_filter filter;
  if (data->params.version == DTMM_CONV_2D_V2_VERSION) {
    TF_LITE_ENSURE_STATUS(FilterV2(data, in[kW], &filter));
  } else {
    TF_LITE_ENSURE_STATUS(FilterV1(data, in, &filter));
  }
  return PrepareLayer(context, data, in[kInput], output, filter);
}

TfLiteStatus Prepare(TfLiteContext* context, TfLiteNode* node) {
  OpData* data = static_cast<OpData*>(node->user_data);
  if (data == nullptr) {
    MicroPrintf("DTMM_CONV_2D: no op data (arena too small?)");
    return kTfLiteError;
  }
  const bool v2 = data->params.version == DTMM_CONV_2D_V2_VERSION;
  if (options::ReportOptionsError("DTMM_CONV_2D", data->options, v2 ? kKeysV2 : kKeys) !=
      kTfLiteOk) {
    return kTfLiteError;
  }
  if (data->params.version != DTMM_CONV_2D_V1_VERSION && !v2) {
    MicroPrintf("DTMM_CONV_2D: format version %d is not supported (this build "
                "reads versions %d and %d)", static_cast<int>(data->params.version),
                DTMM_CONV_2D_V1_VERSION, DTMM_CONV_2D_V2_VERSION);
    return kTfLiteError;
  }
  const int num_inputs = v2 ? kNumInputsV2 : kNumInputs;
  if (node->inputs == nullptr || node->outputs == nullptr ||
      node->inputs->size != num_inputs || node->outputs->size != 1) {
    MicroPrintf("DTMM_CONV_2D: version %d expects %d inputs and 1 output",
                static_cast<int>(data->params.version), num_inputs);
    return kTfLiteError;
  }

  tflite::MicroContext* micro_context = tflite::GetMicroContext(context);
  TfLiteTensor* in[kNumInputs];
  for (int i = 0; i < num_inputs; ++i) {
    in[i] = micro_context->AllocateTempInputTensor(node, i);
  }
  TfLiteTensor* output = micro_context->AllocateTempOutputTensor(node, kOutput);

  const TfLiteStatus status = PrepareTensors(context, data, in, output);

  for (int i = 0; i < num_inputs; ++i) {
    if (in[i] != nullptr) micro_context->DeallocateTempTfLiteTensor(in[i]);
  }
  if (output != nullptr) micro_context->DeallocateTempTfLiteTensor(output);
  return status;
}

TfLiteStatus Eval(TfLiteContext* context, TfLiteNode* node) {
  const OpData& data = *static_cast<const OpData*>(node->user_data);
  const TfLiteEvalTensor* input = tflite::micro::GetEvalInput(context, node, kInput);
  TfLiteEvalTensor* output = tflite::micro::GetEvalOutput(context, node, kOutput);
  dtmm_fwcs_filter filter;
  if (data.params.version == DTMM_CONV_2D_V2_VERSION) {
    const TfLiteEvalTensor* w = tflite::micro::GetEvalInput(context, node, kW);
    filter = MakeFilterV2(w->data.data, w->dims->data[0], data.dims, data.block);
  } else {
    filter = MakeFilter(tflite::micro::GetEvalInput(context, node, kValues),
                        tflite::micro::GetEvalInput(context, node, kBitmap),
                        tflite::micro::GetEvalInput(context, node, kBias),
                        tflite::micro::GetEvalInput(context, node, kMultiplier),
                        tflite::micro::GetEvalInput(context, node, kShift));
  }
  void* scratch = data.scratch_index >= 0
                      ? context->GetScratchBuffer(context, data.scratch_index)
                      : nullptr;
  const dtmm_status status = dtmm_conv_s8(
      &data.dims, &data.params, &filter, tflite::micro::GetTensorData<int8_t>(input),
      tflite::micro::GetTensorData<int8_t>(output), scratch);
  if (status != DTMM_OK) {
    MicroPrintf("DTMM_CONV_2D: kernel failed: %s", StatusName(status));
    return kTfLiteError;
  }
  return kTfLiteOk;
}

}  // namespace

TFLMRegistration Register_DTMM_CONV_2D() {
  return tflite::micro::RegisterOp(Init, Prepare, Eval);
}

}  // namespace dtmm
