/* DTMM_FULLY_CONNECTED for TensorFlow Lite Micro (format version 2,
 * docs/contract.md).
 *
 * Init parses the flexbuffer options once; Prepare checks every tensor, option
 * and the packed weights (dtmm_fc_s8_validate) and fails with a MicroPrintf on
 * any mismatch; Eval only calls dtmm_fc_s8. The op's one constant tensor w holds
 * the per-channel table (12 * C_out bytes: folded bias, multiplier, shift), then
 * the bitmap and the kept blocks; the persistent arena is the small OpData.
 */
#include <stdint.h>

#include "dtmm_contract_table.h"
#include "dtmm_fc_s8.h"
#include "dtmm_op_checks.h"
#include "dtmm_op_options.h"
#include "dtmm_ops.h"
#include "tensorflow/lite/c/common.h"
#include "tensorflow/lite/kernels/kernel_util.h"
#include "tensorflow/lite/micro/kernels/kernel_util.h"
#include "tensorflow/lite/micro/micro_context.h"
#include "tensorflow/lite/micro/micro_log.h"

namespace dtmm {
namespace {

constexpr const char* kOp = "DTMM_FULLY_CONNECTED";

using internal::CheckTensor;
using internal::Elements;
using internal::PerTensorZeroPoint;

constexpr int kInput = DTMM_FULLY_CONNECTED_V2_INPUT_INPUT;
constexpr int kW = DTMM_FULLY_CONNECTED_V2_INPUT_W;
constexpr int kNumInputs = DTMM_FULLY_CONNECTED_V2_NUM_INPUTS;
constexpr int kOutput = 0;

// Options keys in the contract table's order; all required.
enum OptionKey { kVersion, kBlock, kInZp, kActMin, kActMax, kNumKeys };
using options::KeyInfo;
#define DTMM_KEY_INFO(index, key, lo, hi) {key, lo, hi},
constexpr KeyInfo kKeys[kNumKeys] = {DTMM_FULLY_CONNECTED_V2_OPTIONS(DTMM_KEY_INFO)};
#undef DTMM_KEY_INFO
static_assert(kNumKeys == DTMM_FULLY_CONNECTED_V2_NUM_OPTIONS, "option table size");
static_assert(kVersion == DTMM_FULLY_CONNECTED_V2_OPT_VERSION &&
                  kBlock == DTMM_FULLY_CONNECTED_V2_OPT_B &&
                  kInZp == DTMM_FULLY_CONNECTED_V2_OPT_Z &&
                  kActMin == DTMM_FULLY_CONNECTED_V2_OPT_LO &&
                  kActMax == DTMM_FULLY_CONNECTED_V2_OPT_HI,
              "OptionKey order is the contract table's");
static_assert(DTMM_FULLY_CONNECTED_V2_VERSION == DTMM_FC_FORMAT_VERSION,
              "kernel and contract agree on the version");

// Persistent per-node state: 44 bytes, whatever the layer.
struct OpData {
  dtmm_fc_dims dims;      // block from Init, the rest from Prepare
  dtmm_fc_params params;  // options from Init, output offset in Prepare
  int32_t in_zp;          // options z, checked against the input tensor
  int scratch_index;      // -1: the compiled kernel path needs no scratch
  options::Status options;  // what Init's ReadOptions found, reported by Prepare
};

void ParseOptions(const char* buffer, size_t length, OpData* data) {
  int32_t o[kNumKeys];
  data->options = options::ReadOptions(buffer, length, kKeys, kNumKeys, o);
  if (data->options.error != options::kOk) return;
  data->params.version = o[kVersion];
  data->dims.block = o[kBlock];
  data->in_zp = o[kInZp];
  data->params.activation_min = o[kActMin];
  data->params.activation_max = o[kActMax];
}

const char* StatusName(dtmm_status s) {
  switch (s) {
    case DTMM_OK: return "ok";
    case DTMM_ERR_ARG: return "bad sizes (block must divide C_in, products must fit int32)";
    case DTMM_ERR_VERSION: return "unknown format version";
    case DTMM_ERR_PARAMS: return "activation range, output offset, multiplier or shift out of range";
    case DTMM_ERR_BITMAP: return "w shorter than its bitmap, or bitmap padding bits set";
    case DTMM_ERR_VALUES: return "w length != bitmap bytes + popcount(bitmap) * block";
    case DTMM_ERR_UNSUPPORTED: break;  // conv driver sets only
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

// The kernel's view of w: the int32 table first, then bitmap and blocks.
dtmm_fc_filter MakeFilter(const void* w, int32_t w_bytes, int32_t c_out) {
  dtmm_fc_filter f;
  f.q = static_cast<const int32_t*>(w);
  f.w = static_cast<const int8_t*>(w) + 12 * c_out;
  f.w_bytes = w_bytes - 12 * c_out;
  return f;
}

TfLiteStatus PrepareTensors(TfLiteContext* context, OpData* data, TfLiteTensor* const* in,
                            const TfLiteTensor* output) {
  if (!CheckTensor(kOp, in[kInput], "input", kTfLiteInt8, 0, false) ||
      !CheckTensor(kOp, output, "output", kTfLiteInt8, 0, false) ||
      !CheckTensor(kOp, in[kW], "w", kTfLiteInt8, 1, true)) {
    return kTfLiteError;
  }
  const int64_t in_n = Elements(in[kInput]), out_n = Elements(output);
  const int32_t c_out = output->dims->data[output->dims->size - 1];
  if (c_out < 1 || out_n % c_out != 0 || out_n == 0) {
    MicroPrintf("%s: output has no channels", kOp);
    return kTfLiteError;
  }
  const int32_t w_bytes = in[kW]->dims->data[0];
  if (w_bytes < 12 * static_cast<int64_t>(c_out)) {
    MicroPrintf("%s: w has %d bytes, the per-channel table of C_out = %d needs %d", kOp,
                static_cast<int>(w_bytes), static_cast<int>(c_out),
                static_cast<int>(12 * c_out));
    return kTfLiteError;
  }
  if ((reinterpret_cast<uintptr_t>(in[kW]->data.data) & 3u) != 0) {
    MicroPrintf("%s: w is not 4-byte aligned (flatbuffer vectors are)", kOp);
    return kTfLiteError;
  }
  const int64_t batches = out_n / c_out;
  if (in_n % batches != 0 || in_n == 0) {
    MicroPrintf("%s: input of %d values is not %d rows", kOp, static_cast<int>(in_n),
                static_cast<int>(batches));
    return kTfLiteError;
  }
  dtmm_fc_dims& d = data->dims;  // block came from the options
  d.batches = static_cast<int32_t>(batches);
  d.input_c = static_cast<int32_t>(in_n / batches);
  d.output_c = c_out;

  int32_t input_zp = 0, output_zp = 0;
  if (!PerTensorZeroPoint(kOp, in[kInput], "input", &input_zp) ||
      !PerTensorZeroPoint(kOp, output, "output", &output_zp)) {
    return kTfLiteError;
  }
  if (input_zp != data->in_zp) {
    MicroPrintf("%s: input zero point %d != options z %d (the bias was folded with z)",
                kOp, static_cast<int>(input_zp), static_cast<int>(data->in_zp));
    return kTfLiteError;
  }
  if (output_zp < -128 || output_zp > 127) {
    MicroPrintf("%s: output zero point %d is not int8", kOp, static_cast<int>(output_zp));
    return kTfLiteError;
  }
  data->params.output_offset = output_zp;

  const dtmm_fc_filter filter = MakeFilter(in[kW]->data.data, w_bytes, c_out);
  const dtmm_status status = dtmm_fc_s8_validate(&d, &data->params, &filter);
  if (status != DTMM_OK) {
    MicroPrintf("%s: invalid layer (C_in %d, C_out %d, block %d): %s (status %d)", kOp,
                static_cast<int>(d.input_c), static_cast<int>(d.output_c),
                static_cast<int>(d.block), StatusName(status), static_cast<int>(status));
    return kTfLiteError;
  }
  const int32_t scratch_bytes = dtmm_fc_s8_get_buffer_size(&d);
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
    MicroPrintf("%s: no op data (arena too small?)", kOp);
    return kTfLiteError;
  }
  if (options::ReportOptionsError(kOp, data->options, kKeys) != kTfLiteOk) {
    return kTfLiteError;
  }
  if (data->params.version != DTMM_FC_FORMAT_VERSION) {
    MicroPrintf("%s: format version %d is not supported (this build reads version %d)",
                kOp, static_cast<int>(data->params.version), DTMM_FC_FORMAT_VERSION);
    return kTfLiteError;
  }
  if (data->params.activation_min > data->params.activation_max) {
    MicroPrintf("%s: activation range [%d, %d] is empty", kOp,
                static_cast<int>(data->params.activation_min),
                static_cast<int>(data->params.activation_max));
    return kTfLiteError;
  }
  if (node->inputs == nullptr || node->outputs == nullptr ||
      node->inputs->size != kNumInputs || node->outputs->size != 1) {
    MicroPrintf("%s: expects %d inputs and 1 output", kOp, kNumInputs);
    return kTfLiteError;
  }
  tflite::MicroContext* micro_context = tflite::GetMicroContext(context);
  TfLiteTensor* in[kNumInputs];
  for (int i = 0; i < kNumInputs; ++i) in[i] = micro_context->AllocateTempInputTensor(node, i);
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
  const TfLiteEvalTensor* w = tflite::micro::GetEvalInput(context, node, kW);
  const dtmm_fc_filter filter = MakeFilter(w->data.data, w->dims->data[0], data.dims.output_c);
  void* scratch = data.scratch_index >= 0
                      ? context->GetScratchBuffer(context, data.scratch_index)
                      : nullptr;
  dtmm_fc_s8(&data.dims, &data.params, &filter, tflite::micro::GetTensorData<int8_t>(input),
             tflite::micro::GetTensorData<int8_t>(output), scratch);
  return kTfLiteOk;
}

}  // namespace

TFLMRegistration Register_DTMM_FULLY_CONNECTED() {
  return tflite::micro::RegisterOp(Init, Prepare, Eval);
}

}  // namespace dtmm
