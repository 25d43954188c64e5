/* DTMM_CONV_2D for TensorFlow Lite Micro (format version 1, docs/contract.md).
 *
 * Init parses the flexbuffer options once; Prepare checks every tensor, option
 * and the FWCS arrays (dtmm_conv_s8_validate) and fails with a MicroPrintf on any
 * mismatch; Eval only calls dtmm_conv_s8. The op keeps no per-channel arrays in
 * the arena: multiplier/shift are constant tensors in the model.
 */
#include <stdint.h>

#include <limits>

#include "dtmm_contract_table.h"
#include "dtmm_conv_s8.h"
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

constexpr int kInput = 0;
constexpr int kValues = 1;
constexpr int kBitmap = 2;
constexpr int kBias = 3;
constexpr int kMultiplier = 4;
constexpr int kShift = 5;
constexpr int kNumInputs = 6;
constexpr int kOutput = 0;

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

// Persistent per-node state: under 100 bytes, whatever C_out is.
struct OpData {
  dtmm_conv_dims dims;      // kernel size from Init, the rest from Prepare
  dtmm_conv_params params;  // options from Init, pads and zero points in Prepare
  int32_t in_zp;            // options in_zp, checked against the input tensor
  int scratch_index;        // -1: the compiled kernel path needs no scratch
  options::Status options;  // what Init's ReadOptions found, reported by Prepare
  int8_t padding;           // options padding: 0 = SAME, 1 = VALID
};

void ParseOptions(const char* buffer, size_t length, OpData* data) {
  int32_t o[kNumKeys];
  data->options = options::ReadOptions(buffer, length, kKeys, kNumKeys, o);
  if (data->options.error != options::kOk) return;
  data->params.version = o[kVersion];
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
    case DTMM_ERR_PARAMS: return "stride/dilation/padding/activation/shift out of range";
    case DTMM_ERR_BITMAP: return "bitmap length or padding bits wrong";
    case DTMM_ERR_VALUES: return "values rows != popcount(bitmap)";
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
  return f;
}

bool CheckTensor(const TfLiteTensor* t, const char* what, TfLiteType type,
                 int rank, bool constant) {
  if (t == nullptr) {
    MicroPrintf("DTMM_CONV_2D: %s tensor is missing", what);
    return false;
  }
  if (t->type != type) {
    MicroPrintf("DTMM_CONV_2D: %s must be %s, got %s", what,
                TfLiteTypeGetName(type), TfLiteTypeGetName(t->type));
    return false;
  }
  if (t->dims == nullptr || t->dims->size != rank) {
    MicroPrintf("DTMM_CONV_2D: %s must have rank %d, got %d", what, rank,
                t->dims == nullptr ? -1 : t->dims->size);
    return false;
  }
  for (int i = 0; i < rank; ++i) {
    if (t->dims->data[i] < 0) {
      MicroPrintf("DTMM_CONV_2D: %s has a negative dimension", what);
      return false;
    }
  }
  if (constant && !tflite::IsConstantTensor(t)) {
    MicroPrintf("DTMM_CONV_2D: %s must be a constant tensor", what);
    return false;
  }
  return true;
}

bool CheckPerChannel(const TfLiteTensor* t, const char* what, int c_out) {
  if (!CheckTensor(t, what, kTfLiteInt32, 1, true)) return false;
  if (t->dims->data[0] != c_out) {
    MicroPrintf("DTMM_CONV_2D: %s has %d entries, output has %d channels", what,
                t->dims->data[0], c_out);
    return false;
  }
  return true;
}

// A per-tensor zero point, read the way TFLM's kernels read it.
bool PerTensorZeroPoint(const TfLiteTensor* t, const char* what, int32_t* zp) {
  if (t->quantization.type == kTfLiteAffineQuantization &&
      t->quantization.params != nullptr) {
    const auto* q =
        static_cast<const TfLiteAffineQuantization*>(t->quantization.params);
    if (q->zero_point != nullptr && q->zero_point->size > 1) {
      MicroPrintf("DTMM_CONV_2D: %s must be per-tensor quantized", what);
      return false;
    }
  }
  *zp = t->params.zero_point;
  return true;
}

TfLiteStatus PrepareTensors(TfLiteContext* context, OpData* data,
                            TfLiteTensor* const* in, const TfLiteTensor* output) {
  const TfLiteTensor* input = in[kInput];
  if (!CheckTensor(input, "input", kTfLiteInt8, 4, false) ||
      !CheckTensor(output, "output", kTfLiteInt8, 4, false) ||
      !CheckTensor(in[kValues], "values", kTfLiteInt8, 2, false) ||
      !CheckTensor(in[kBitmap], "bitmap", kTfLiteUInt8, 1, true)) {
    return kTfLiteError;
  }
  // An empty values tensor (every filterlet pruned) has no buffer, and TFLM then
  // plans it in the arena instead of marking it constant; nothing is read from it.
  if (in[kValues]->dims->data[0] > 0 && !tflite::IsConstantTensor(in[kValues])) {
    MicroPrintf("DTMM_CONV_2D: values must be a constant tensor");
    return kTfLiteError;
  }
  dtmm_conv_dims& d = data->dims;  // kernel_h/w came from the options
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

  int32_t input_zp = 0, output_zp = 0;
  if (!PerTensorZeroPoint(input, "input", &input_zp) ||
      !PerTensorZeroPoint(output, "output", &output_zp)) {
    return kTfLiteError;
  }
  if (input_zp != data->in_zp) {
    MicroPrintf("DTMM_CONV_2D: input zero point %d != options in_zp %d (the bias "
                "was folded with in_zp)", static_cast<int>(input_zp),
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

  const dtmm_fwcs_filter filter =
      MakeFilter(in[kValues], in[kBitmap], in[kBias], in[kMultiplier], in[kShift]);
  const dtmm_status status = dtmm_conv_s8_validate(&d, &p, &filter);
  if (status != DTMM_OK) {
    MicroPrintf("DTMM_CONV_2D: invalid layer: %s (status %d)", StatusName(status),
                static_cast<int>(status));
    return kTfLiteError;
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

TfLiteStatus Prepare(TfLiteContext* context, TfLiteNode* node) {
  OpData* data = static_cast<OpData*>(node->user_data);
  if (data == nullptr) {
    MicroPrintf("DTMM_CONV_2D: no op data (arena too small?)");
    return kTfLiteError;
  }
  if (options::ReportOptionsError("DTMM_CONV_2D", data->options, kKeys) != kTfLiteOk) {
    return kTfLiteError;
  }
  if (data->params.version != DTMM_FORMAT_VERSION) {
    MicroPrintf("DTMM_CONV_2D: format version %d is not supported (this build "
                "reads version %d)", static_cast<int>(data->params.version),
                DTMM_FORMAT_VERSION);
    return kTfLiteError;
  }
  if (node->inputs == nullptr || node->outputs == nullptr ||
      node->inputs->size != kNumInputs || node->outputs->size != 1) {
    MicroPrintf("DTMM_CONV_2D: expects %d inputs and 1 output", kNumInputs);
    return kTfLiteError;
  }

  tflite::MicroContext* micro_context = tflite::GetMicroContext(context);
  TfLiteTensor* in[kNumInputs];
  for (int i = 0; i < kNumInputs; ++i) {
    in[i] = micro_context->AllocateTempInputTensor(node, i);
  }
  TfLiteTensor* output = micro_context->AllocateTempOutputTensor(node, kOutput);

  const TfLiteStatus status = PrepareTensors(context, data, in, output);

  for (int i = 0; i < kNumInputs; ++i) {
    if (in[i] != nullptr) micro_context->DeallocateTempTfLiteTensor(in[i]);
  }
  if (output != nullptr) micro_context->DeallocateTempTfLiteTensor(output);
  return status;
}

TfLiteStatus Eval(TfLiteContext* context, TfLiteNode* node) {
  const OpData& data = *static_cast<const OpData*>(node->user_data);
  const TfLiteEvalTensor* input = tflite::micro::GetEvalInput(context, node, kInput);
  TfLiteEvalTensor* output = tflite::micro::GetEvalOutput(context, node, kOutput);
  const dtmm_fwcs_filter filter =
      MakeFilter(tflite::micro::GetEvalInput(context, node, kValues),
                 tflite::micro::GetEvalInput(context, node, kBitmap),
                 tflite::micro::GetEvalInput(context, node, kBias),
                 tflite::micro::GetEvalInput(context, node, kMultiplier),
                 tflite::micro::GetEvalInput(context, node, kShift));
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
