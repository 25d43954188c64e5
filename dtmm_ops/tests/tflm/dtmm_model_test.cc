// Whole-model tests: the DTMM-converted model and the pruned original it came
// from (models/, made by gen_models.py) must give identical int8 outputs in TFLM's
// MicroInterpreter for the same inputs.
#include <stdint.h>
#include <string.h>

#include "dtmm_ops.h"
#include "models/blocks_dtmm_model.h"
#include "models/blocks_original_model.h"
#include "models/cnn_dtmm_model.h"
#include "models/cnn_original_model.h"
#include "models/kws_dtmm_model.h"
#include "models/kws_original_model.h"
#include "models/mlp_dtmm_model.h"
#include "models/mlp_original_model.h"
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/micro/micro_log.h"
#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"
#include "tensorflow/lite/micro/testing/micro_test_v2.h"
#include "tensorflow/lite/schema/schema_generated.h"

namespace {

constexpr int kArenaSize = 48 * 1024;
alignas(16) uint8_t g_arena_a[kArenaSize];
alignas(16) uint8_t g_arena_b[kArenaSize];
constexpr int kMaxIo = 2048;
int8_t g_out_original[kMaxIo];
int8_t g_out_dtmm[kMaxIo];

using Resolver = tflite::MicroMutableOpResolver<8 + dtmm::kDtmmOpCount>;

bool MakeResolver(Resolver& r) {
  return r.AddConv2D() == kTfLiteOk && r.AddMaxPool2D() == kTfLiteOk &&
         r.AddReshape() == kTfLiteOk && r.AddFullyConnected() == kTfLiteOk &&
         r.AddQuantize() == kTfLiteOk && r.AddDequantize() == kTfLiteOk &&
         dtmm::AddDtmmOps(r) == kTfLiteOk;
}

// Number of operators whose opcode is `builtin` (or the custom op `custom`).
int CountOps(const tflite::Model* model, tflite::BuiltinOperator builtin,
             const char* custom) {
  const auto* codes = model->operator_codes();
  int n = 0;
  for (const auto* sg : *model->subgraphs()) {
    for (const auto* op : *sg->operators()) {
      const auto* code = codes->Get(op->opcode_index());
      // Newer converters fill builtin_code; older ones only the deprecated one.
      const int builtin_code = static_cast<int>(code->builtin_code());
      const int deprecated = static_cast<int>(code->deprecated_builtin_code());
      const auto b = static_cast<tflite::BuiltinOperator>(
          builtin_code > deprecated ? builtin_code : deprecated);
      if (custom != nullptr) {
        const auto* name = code->custom_code();
        if (b == tflite::BuiltinOperator_CUSTOM && name != nullptr &&
            name->size() == strlen(custom) &&
            memcmp(name->data(), custom, name->size()) == 0) {
          ++n;
        }
      } else if (b == builtin) {
        ++n;
      }
    }
  }
  return n;
}

uint32_t g_rng = 12345;
int8_t NextByte() {
  g_rng ^= g_rng << 13;
  g_rng ^= g_rng >> 17;
  g_rng ^= g_rng << 5;
  return static_cast<int8_t>(g_rng & 0xff);
}

// `op` in the original, all of them `dtmm_op` in the converted model.
void CheckPair(const unsigned char* original, const unsigned char* converted,
               tflite::BuiltinOperator op = tflite::BuiltinOperator_CONV_2D,
               const char* dtmm_op = "DTMM_CONV_2D") {
  const tflite::Model* m_orig = tflite::GetModel(original);
  const tflite::Model* m_dtmm = tflite::GetModel(converted);
  // The pair really is "pruned op" vs "DTMM op".
  ASSERT_GT(CountOps(m_orig, op, nullptr), 0);
  ASSERT_EQ(0, CountOps(m_orig, tflite::BuiltinOperator_CUSTOM, dtmm_op));
  ASSERT_EQ(CountOps(m_orig, op, nullptr),
            CountOps(m_dtmm, tflite::BuiltinOperator_CUSTOM, dtmm_op));
  ASSERT_EQ(0, CountOps(m_dtmm, op, nullptr));

  Resolver resolver;
  ASSERT_TRUE(MakeResolver(resolver));
  tflite::MicroInterpreter a(m_orig, resolver, g_arena_a, kArenaSize);
  tflite::MicroInterpreter b(m_dtmm, resolver, g_arena_b, kArenaSize);
  ASSERT_EQ(kTfLiteOk, a.AllocateTensors());
  ASSERT_EQ(kTfLiteOk, b.AllocateTensors());
  MicroPrintf("  arena used: original %d, dtmm %d bytes",
              static_cast<int>(a.arena_used_bytes()),
              static_cast<int>(b.arena_used_bytes()));

  TfLiteTensor* in_a = a.input(0);
  TfLiteTensor* in_b = b.input(0);
  ASSERT_EQ(kTfLiteInt8, in_a->type);
  ASSERT_EQ(in_a->bytes, in_b->bytes);
  ASSERT_EQ(in_a->params.zero_point, in_b->params.zero_point);
  const TfLiteTensor* out_a = a.output(0);
  const TfLiteTensor* out_b = b.output(0);
  ASSERT_EQ(out_a->bytes, out_b->bytes);
  ASSERT_LE(static_cast<int>(out_a->bytes), kMaxIo);
  const int n_out = static_cast<int>(out_a->bytes);

  int distinct_outputs = 0;
  int8_t first[kMaxIo];
  for (int trial = 0; trial < 6; ++trial) {
    for (size_t i = 0; i < in_a->bytes; ++i) {
      // Trial 0: an all-zero-point input (every padded tap equals a real one).
      in_a->data.int8[i] =
          trial == 0 ? static_cast<int8_t>(in_a->params.zero_point) : NextByte();
    }
    memcpy(in_b->data.int8, in_a->data.int8, in_a->bytes);
    ASSERT_EQ(kTfLiteOk, a.Invoke());
    ASSERT_EQ(kTfLiteOk, b.Invoke());
    memcpy(g_out_original, out_a->data.int8, n_out);
    memcpy(g_out_dtmm, out_b->data.int8, n_out);
    int mismatches = 0;
    for (int i = 0; i < n_out; ++i) {
      if (g_out_original[i] != g_out_dtmm[i]) {
        if (mismatches < 5) {
          MicroPrintf("  trial %d [%d]: original %d dtmm %d", trial, i,
                      g_out_original[i], g_out_dtmm[i]);
        }
        ++mismatches;
      }
    }
    EXPECT_EQ(0, mismatches);
    if (trial == 0) {
      memcpy(first, g_out_original, n_out);
    } else if (memcmp(first, g_out_original, n_out) != 0) {
      ++distinct_outputs;
    }
  }
  // The outputs depend on the input (the comparison is not between constants).
  EXPECT_GT(distinct_outputs, 0);
}

TEST(DtmmModel, CnnConvertedMatchesPrunedOriginal) {
  CheckPair(g_cnn_original_model, g_cnn_dtmm_model);
}

TEST(DtmmModel, KwsConvertedMatchesPrunedOriginal) {
  CheckPair(g_kws_original_model, g_kws_dtmm_model);
}

// DTMM_CONV_2D format version 2 (cnn and kws are version 1): a 3x3 conv with
// B = C_in, a block-pruned 1x1 conv with B = 16 and a strided 1x1 with B = C_in.
TEST(DtmmModel, BlocksV2ConvertedMatchesPrunedOriginal) {
  CheckPair(g_blocks_original_model, g_blocks_dtmm_model);
}

TEST(DtmmModel, MlpBlockPrunedMatchesPrunedOriginal) {
  CheckPair(g_mlp_original_model, g_mlp_dtmm_model, tflite::BuiltinOperator_FULLY_CONNECTED,
            "DTMM_FULLY_CONNECTED");
}

}  // namespace

TF_LITE_MICRO_TESTS_MAIN
