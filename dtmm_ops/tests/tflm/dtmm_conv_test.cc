// DTMM_CONV_2D op tests in TFLM's KernelRunner harness.
//
// Every configuration is checked three ways: the DTMM op, an independent dense
// conv in this file, and TFLM's own CONV_2D (reference or CMSIS-NN, whichever this
// build compiled) on the dense pruned filter must give the same bytes. Malformed
// layers must fail in Prepare with a message, never crash.
#include <stdint.h>
#include <string.h>

#include <vector>

#include "dtmm_ops.h"
#include "dtmm_test_util.h"
#include "tensorflow/lite/c/builtin_op_data.h"
#include "tensorflow/lite/c/common.h"
#include "tensorflow/lite/micro/kernels/conv.h"
#include "tensorflow/lite/micro/kernels/kernel_runner.h"
#include "tensorflow/lite/micro/micro_log.h"
#include "tensorflow/lite/micro/test_helpers.h"
#include "tensorflow/lite/micro/testing/micro_test_v2.h"

namespace {

using dtmm_test::Layer;
using dtmm_test::LayerSpec;
using dtmm_test::OptionsSpec;
using tflite::testing::CreateQuantizedTensor;
using tflite::testing::CreateTensor;
using tflite::testing::IntArrayFromInts;

// Tensors of one DTMM_CONV_2D node; tests mutate them before running.
struct DtmmNode {
  int in_dims[5], values_dims[3], bitmap_dims[2], bias_dims[2], mult_dims[2],
      shift_dims[2], out_dims[5];
  TfLiteTensor t[7];  // 6 inputs, then the output
  int inputs[7];
  int outputs[2];

  DtmmNode(Layer& l, int8_t* out) {
    const LayerSpec& s = l.spec;
    const int in[5] = {4, s.batches, s.in_h, s.in_w, s.in_c};
    const int o[5] = {4, s.batches, l.out_h, l.out_w, s.out_c};
    memcpy(in_dims, in, sizeof(in));
    memcpy(out_dims, o, sizeof(o));
    values_dims[0] = 2;
    values_dims[1] = l.n_kept;
    values_dims[2] = s.in_c;
    bitmap_dims[0] = 1;
    bitmap_dims[1] = l.bitmap_bytes;
    bias_dims[0] = mult_dims[0] = shift_dims[0] = 1;
    bias_dims[1] = mult_dims[1] = shift_dims[1] = s.out_c;
    t[0] = CreateQuantizedTensor(l.input, IntArrayFromInts(in_dims), l.in_scale,
                                 s.in_zp);
    t[1] = CreateTensor(l.values, IntArrayFromInts(values_dims));
    t[2] = CreateTensor(l.bitmap, IntArrayFromInts(bitmap_dims));
    t[3] = CreateTensor(l.folded_bias, IntArrayFromInts(bias_dims));
    t[4] = CreateTensor(l.multiplier, IntArrayFromInts(mult_dims));
    t[5] = CreateTensor(l.shift, IntArrayFromInts(shift_dims));
    for (int i = 1; i <= 5; ++i) t[i].allocation_type = kTfLiteMmapRo;
    t[6] = CreateQuantizedTensor(out, IntArrayFromInts(out_dims), l.out_scale,
                                 s.out_zp);
    const int ins[7] = {6, 0, 1, 2, 3, 4, 5};
    memcpy(inputs, ins, sizeof(ins));
    outputs[0] = 1;
    outputs[1] = 6;
  }
};

// Prepare status of the node; when Prepare passes, Invoke must pass too.
TfLiteStatus RunDtmm(DtmmNode& node, const std::vector<uint8_t>& options,
                     bool* invoked = nullptr) {
  const TFLMRegistration reg = dtmm::Register_DTMM_CONV_2D();
  tflite::micro::KernelRunner runner(reg, node.t, 7, IntArrayFromInts(node.inputs),
                                     IntArrayFromInts(node.outputs), nullptr);
  const TfLiteStatus prepared = runner.InitAndPrepare(
      options.empty() ? nullptr : reinterpret_cast<const char*>(options.data()),
      options.size());
  if (invoked != nullptr) *invoked = false;
  if (prepared != kTfLiteOk) return prepared;
  if (invoked != nullptr) *invoked = true;
  return runner.Invoke();
}

// TFLM's CONV_2D on the dense pruned filter (the "pruned original").
TfLiteStatus RunTflmConv(Layer& l, int8_t* out) {
  const LayerSpec& s = l.spec;
  int in_dims[5] = {4, s.batches, s.in_h, s.in_w, s.in_c};
  int f_dims[5] = {4, s.out_c, s.kh, s.kw, s.in_c};
  int b_dims[2] = {1, s.out_c};
  int o_dims[5] = {4, s.batches, l.out_h, l.out_w, s.out_c};
  float f_scales[dtmm_test::kMaxChannels + 1];
  float b_scales[dtmm_test::kMaxChannels + 1];
  int zps[dtmm_test::kMaxChannels + 1];
  f_scales[0] = b_scales[0] = static_cast<float>(s.out_c);
  zps[0] = s.out_c;
  for (int i = 0; i < s.out_c; ++i) {
    f_scales[i + 1] = l.filter_scale[i];
    b_scales[i + 1] = l.in_scale * l.filter_scale[i];
    zps[i + 1] = 0;
  }
  TfLiteAffineQuantization f_quant = {tflite::testing::FloatArrayFromFloats(f_scales),
                                      IntArrayFromInts(zps), 0};
  TfLiteAffineQuantization b_quant = {tflite::testing::FloatArrayFromFloats(b_scales),
                                      IntArrayFromInts(zps), 0};
  TfLiteTensor t[4] = {
      CreateQuantizedTensor(l.input, IntArrayFromInts(in_dims), l.in_scale, s.in_zp),
      CreateTensor(l.filter, IntArrayFromInts(f_dims)),
      CreateTensor(l.bias, IntArrayFromInts(b_dims)),
      CreateQuantizedTensor(out, IntArrayFromInts(o_dims), l.out_scale, s.out_zp),
  };
  t[1].quantization = {kTfLiteAffineQuantization, &f_quant};
  t[2].quantization = {kTfLiteAffineQuantization, &b_quant};
  t[1].allocation_type = t[2].allocation_type = kTfLiteMmapRo;
  int ins[4] = {3, 0, 1, 2};
  int outs[2] = {1, 3};
  TfLiteConvParams params = {};
  params.padding = s.padding == 0 ? kTfLitePaddingSame : kTfLitePaddingValid;
  params.stride_width = s.sw;
  params.stride_height = s.sh;
  params.dilation_width_factor = s.dw;
  params.dilation_height_factor = s.dh;
  params.activation = static_cast<TfLiteFusedActivation>(s.activation);
  params.quantized_bias_type = kTfLiteInt32;
  const TFLMRegistration reg = tflite::Register_CONV_2D();
  tflite::micro::KernelRunner runner(reg, t, 4, IntArrayFromInts(ins),
                                     IntArrayFromInts(outs), &params);
  TF_LITE_ENSURE_STATUS(runner.InitAndPrepare());
  return runner.Invoke();
}

int CountDistinct(const int8_t* v, int n) {
  bool seen[256] = {};
  int count = 0;
  for (int i = 0; i < n; ++i) {
    const int k = v[i] + 128;
    if (!seen[k]) ++count;
    seen[k] = true;
  }
  return count;
}

Layer g_layer;  // large: keep off the (small, on Cortex-M) stack
int8_t g_dtmm_out[dtmm_test::kMaxOutput];
int8_t g_ref_out[dtmm_test::kMaxOutput];
int8_t g_tflm_out[dtmm_test::kMaxOutput];

void CheckLayer(const LayerSpec& spec) {
  ASSERT_TRUE(dtmm_test::MakeLayer(spec, &g_layer));
  Layer& l = g_layer;
  const int n = l.OutputSize();
  memset(g_dtmm_out, 0x55, sizeof(g_dtmm_out));
  memset(g_tflm_out, 0x66, sizeof(g_tflm_out));
  dtmm_test::DenseReference(l, g_ref_out);

  DtmmNode node(l, g_dtmm_out);
  bool invoked = false;
  ASSERT_EQ(kTfLiteOk, RunDtmm(node, dtmm_test::BuildOptions(l, OptionsSpec()),
                               &invoked));
  ASSERT_EQ(kTfLiteOk, RunTflmConv(l, g_tflm_out));

  int mismatches = 0;
  for (int i = 0; i < n; ++i) {
    if (g_dtmm_out[i] != g_ref_out[i] || g_tflm_out[i] != g_ref_out[i]) {
      if (mismatches < 5) {
        MicroPrintf("  [%d] dtmm %d dense %d tflm %d", i, g_dtmm_out[i],
                    g_ref_out[i], g_tflm_out[i]);
      }
      ++mismatches;
    }
  }
  EXPECT_EQ(0, mismatches);
  // Guards against a degenerate layer where every output clamps to one value.
  if (spec.prune_percent < 100) {
    EXPECT_GE(CountDistinct(g_ref_out, n), 3);
  }
  // The op must not write past its output.
  for (int i = n; i < dtmm_test::kMaxOutput; ++i) {
    if (g_dtmm_out[i] != 0x55) {
      EXPECT_EQ(0x55, g_dtmm_out[i]);
      break;
    }
  }
}

// batches, in_h, in_w, in_c, out_c, kh, kw, sh, sw, dh, dw, padding, activation,
// in_zp, out_zp, prune_percent, has_bias, seed
void PrintKernelPath() {
  // The kernel picks its path from these macros (same flags as this file); the
  // log then shows whether e.g. a Cortex-M55 build really has Helium on.
#if defined(__ARM_FEATURE_MVE) && (__ARM_FEATURE_MVE & 1)
  MicroPrintf("DTMM kernel path: Helium (MVE)");
#elif defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
  MicroPrintf("DTMM kernel path: DSP");
#else
  MicroPrintf("DTMM kernel path: portable");
#endif
}

TEST(DtmmConv, Same3x3Stride1) {
  PrintKernelPath();
  CheckLayer({1, 5, 5, 4, 6, 3, 3, 1, 1, 1, 1, 0, 0, -3, 5, 50, true, 1});
}
TEST(DtmmConv, Valid3x3Stride2Relu) {
  CheckLayer({1, 7, 6, 8, 4, 3, 3, 2, 2, 1, 1, 1, 1, 10, -7, 40, true, 2});
}
TEST(DtmmConv, DilatedRectangularRelu6Batches2) {
  CheckLayer({2, 6, 5, 3, 5, 2, 3, 1, 2, 2, 1, 0, 3, -128, 0, 30, true, 3});
}
TEST(DtmmConv, KwsLike5x1Stride3x1Valid) {
  CheckLayer({1, 13, 1, 5, 4, 5, 1, 3, 1, 1, 1, 1, 0, 7, 3, 50, true, 4});
}
TEST(DtmmConv, Pointwise1x1) {
  CheckLayer({1, 4, 4, 16, 8, 1, 1, 1, 1, 1, 1, 0, 0, 0, -1, 50, true, 5});
}
TEST(DtmmConv, PaddingBitsInLastByte) {
  // out_c * K = 3 bits: five padding bits in the only bitmap byte.
  CheckLayer({1, 3, 3, 5, 3, 1, 1, 1, 1, 1, 1, 0, 0, 4, 2, 30, false, 6});
}
TEST(DtmmConv, DenseNoPruning) {
  CheckLayer({1, 5, 4, 6, 5, 3, 3, 1, 1, 1, 1, 0, 0, -9, 1, 0, true, 7});
}
TEST(DtmmConv, HeavyPruningNoBias) {
  CheckLayer({1, 6, 6, 8, 8, 3, 3, 1, 1, 1, 1, 0, 0, 20, -20, 85, false, 8});
}
TEST(DtmmConv, EverythingPruned) {
  // n_kept = 0: every output is requantize(bias).
  CheckLayer({1, 4, 4, 4, 4, 3, 3, 1, 1, 1, 1, 0, 0, 5, 0, 100, true, 9});
}
TEST(DtmmConv, EverythingPrunedValuesWithoutBuffer) {
  // A real model's empty values tensor has no buffer: TFLM gives it no data and
  // plans it in the arena instead of marking it constant. Prepare must accept it.
  ASSERT_TRUE(dtmm_test::MakeLayer(
      {1, 4, 4, 4, 4, 3, 3, 1, 1, 1, 1, 0, 0, 5, 0, 100, true, 9}, &g_layer));
  ASSERT_EQ(0, g_layer.n_kept);
  dtmm_test::DenseReference(g_layer, g_ref_out);
  DtmmNode node(g_layer, g_dtmm_out);
  node.t[1].allocation_type = kTfLiteArenaRw;
  node.t[1].data.data = nullptr;
  ASSERT_EQ(kTfLiteOk, RunDtmm(node, dtmm_test::BuildOptions(g_layer, OptionsSpec())));
  EXPECT_EQ(0, memcmp(g_ref_out, g_dtmm_out, g_layer.OutputSize()));
}

TEST(DtmmConv, ZeroPoint127SamePadding) {
  CheckLayer({1, 5, 5, 3, 4, 3, 3, 2, 2, 1, 1, 0, 1, 127, -128, 50, true, 10});
}
TEST(DtmmConv, ReluN1To1) {
  CheckLayer({1, 4, 5, 4, 4, 3, 2, 1, 1, 1, 2, 1, 2, -5, 0, 50, true, 11});
}
TEST(DtmmConv, KernelLargerThanInputSame) {
  CheckLayer({1, 3, 2, 4, 4, 5, 5, 1, 1, 1, 1, 0, 0, 2, 2, 40, true, 12});
}

// ---- Malformed layers: Prepare fails cleanly. ----

const LayerSpec kMalformedBase = {1, 5, 5, 4, 3, 3, 3, 1, 1, 1, 1, 0, 0, -2, 3, 50,
                                  true, 21};  // out_c * K = 27: padding bits

// Sets up g_layer and checks the unmodified layer prepares and runs.
bool BaselineOk() {
  if (!dtmm_test::MakeLayer(kMalformedBase, &g_layer)) return false;
  DtmmNode node(g_layer, g_dtmm_out);
  return RunDtmm(node, dtmm_test::BuildOptions(g_layer, OptionsSpec())) == kTfLiteOk;
}

TfLiteStatus PrepareWith(const OptionsSpec& o) {
  DtmmNode node(g_layer, g_dtmm_out);
  return RunDtmm(node, dtmm_test::BuildOptions(g_layer, o));
}

TEST(DtmmConvMalformed, OptionsVersion) {
  ASSERT_TRUE(BaselineOk());
  OptionsSpec o;
  o.version = 2;
  EXPECT_NE(kTfLiteOk, PrepareWith(o));
  o.version = 0;
  EXPECT_NE(kTfLiteOk, PrepareWith(o));
  o.version = -1;
  EXPECT_NE(kTfLiteOk, PrepareWith(o));
}

TEST(DtmmConvMalformed, OptionsMissingKey) {
  ASSERT_TRUE(BaselineOk());
  const char* keys[] = {"version", "kh", "kw", "sh", "sw", "dh",
                        "dw", "padding", "in_zp", "act_min", "act_max"};
  for (const char* key : keys) {
    OptionsSpec o;
    o.omit = key;
    EXPECT_NE(kTfLiteOk, PrepareWith(o));
  }
}

TEST(DtmmConvMalformed, OptionsWrongType) {
  ASSERT_TRUE(BaselineOk());
  OptionsSpec o;
  o.bad_type = "kh";
  EXPECT_NE(kTfLiteOk, PrepareWith(o));
  o.bad_type = "version";
  EXPECT_NE(kTfLiteOk, PrepareWith(o));
}

TEST(DtmmConvMalformed, OptionsOutOfRange) {
  ASSERT_TRUE(BaselineOk());
  OptionsSpec o;
  o.padding_override = 2;
  EXPECT_NE(kTfLiteOk, PrepareWith(o));
  o = OptionsSpec();
  o.sh_override = 0;
  EXPECT_NE(kTfLiteOk, PrepareWith(o));
  o = OptionsSpec();
  o.act_min_override = 10;  // act_min > act_max
  o.act_max_override = 9;
  EXPECT_NE(kTfLiteOk, PrepareWith(o));
  o = OptionsSpec();
  o.act_min_override = -129;
  EXPECT_NE(kTfLiteOk, PrepareWith(o));
}

TEST(DtmmConvMalformed, OptionsDisagreeWithShapes) {
  ASSERT_TRUE(BaselineOk());
  OptionsSpec o;
  o.sh_override = 2;  // output would be 3 rows, tensor says 5
  EXPECT_NE(kTfLiteOk, PrepareWith(o));
  o = OptionsSpec();
  o.padding_override = 1;  // VALID: 3x3, tensor says 5x5
  EXPECT_NE(kTfLiteOk, PrepareWith(o));
}

TEST(DtmmConvMalformed, InputZeroPointMismatch) {
  ASSERT_TRUE(BaselineOk());
  OptionsSpec o;
  o.in_zp_delta = 1;
  EXPECT_NE(kTfLiteOk, PrepareWith(o));
}

TEST(DtmmConvMalformed, OptionsNotAFlexbuffer) {
  ASSERT_TRUE(BaselineOk());
  DtmmNode node(g_layer, g_dtmm_out);
  EXPECT_NE(kTfLiteOk, RunDtmm(node, std::vector<uint8_t>()));
  EXPECT_NE(kTfLiteOk, RunDtmm(node, std::vector<uint8_t>{1, 2, 3, 4, 5}));
  EXPECT_NE(kTfLiteOk, RunDtmm(node, std::vector<uint8_t>{0xff, 0xff, 0xff}));
  // A flexbuffer that is not a map.
  flexbuffers::Builder fbb;
  fbb.Int(1);
  fbb.Finish();
  EXPECT_NE(kTfLiteOk, RunDtmm(node, fbb.GetBuffer()));
  // Truncations of a valid buffer.
  const std::vector<uint8_t> good = dtmm_test::BuildOptions(g_layer, OptionsSpec());
  for (size_t cut = 1; cut < good.size(); cut += 3) {
    std::vector<uint8_t> bad(good.begin() + cut, good.end());
    EXPECT_NE(kTfLiteOk, RunDtmm(node, bad));
  }
}

TEST(DtmmConvMalformed, OptionsByteFlipsNeverCrash) {
  // Every single-byte corruption either is rejected or still describes a layer
  // Prepare accepts; under ASan/UBSan nothing may read out of bounds.
  ASSERT_TRUE(BaselineOk());
  const std::vector<uint8_t> good = dtmm_test::BuildOptions(g_layer, OptionsSpec());
  int rejected = 0;
  for (size_t i = 0; i < good.size(); ++i) {
    for (int flip : {0x01, 0x80, 0xff}) {
      std::vector<uint8_t> bad = good;
      bad[i] = static_cast<uint8_t>(bad[i] ^ flip);
      DtmmNode node(g_layer, g_dtmm_out);
      if (RunDtmm(node, bad) != kTfLiteOk) ++rejected;
    }
  }
  EXPECT_GT(rejected, static_cast<int>(good.size()));
}

TEST(DtmmConvMalformed, BitmapPaddingBitSet) {
  ASSERT_TRUE(BaselineOk());
  g_layer.bitmap[g_layer.bitmap_bytes - 1] |= 0x80;  // bit 31 >= 27
  DtmmNode node(g_layer, g_dtmm_out);
  node.values_dims[1] = g_layer.n_kept + 1;  // even with a matching row count
  EXPECT_NE(kTfLiteOk, RunDtmm(node, dtmm_test::BuildOptions(g_layer, OptionsSpec())));
}

TEST(DtmmConvMalformed, BitmapPopcountDisagreesWithValues) {
  ASSERT_TRUE(BaselineOk());
  int b = 0;
  while (g_layer.bitmap[b >> 3] & (1u << (b & 7))) ++b;  // first pruned filterlet
  g_layer.bitmap[b >> 3] = static_cast<uint8_t>(g_layer.bitmap[b >> 3] | (1u << (b & 7)));
  DtmmNode node(g_layer, g_dtmm_out);
  EXPECT_NE(kTfLiteOk, RunDtmm(node, dtmm_test::BuildOptions(g_layer, OptionsSpec())));
}

TEST(DtmmConvMalformed, TensorShapes) {
  ASSERT_TRUE(BaselineOk());
  const std::vector<uint8_t> opts = dtmm_test::BuildOptions(g_layer, OptionsSpec());
  {
    DtmmNode node(g_layer, g_dtmm_out);
    node.bitmap_dims[1] -= 1;
    EXPECT_NE(kTfLiteOk, RunDtmm(node, opts));
  }
  {
    DtmmNode node(g_layer, g_dtmm_out);
    node.bitmap_dims[1] += 1;
    EXPECT_NE(kTfLiteOk, RunDtmm(node, opts));
  }
  {
    DtmmNode node(g_layer, g_dtmm_out);
    node.values_dims[1] -= 1;  // fewer rows than popcount
    EXPECT_NE(kTfLiteOk, RunDtmm(node, opts));
  }
  {
    DtmmNode node(g_layer, g_dtmm_out);
    node.values_dims[2] += 1;  // row length != C_in
    EXPECT_NE(kTfLiteOk, RunDtmm(node, opts));
  }
  {
    DtmmNode node(g_layer, g_dtmm_out);
    node.bias_dims[1] -= 1;
    EXPECT_NE(kTfLiteOk, RunDtmm(node, opts));
  }
  {
    DtmmNode node(g_layer, g_dtmm_out);
    node.shift_dims[1] += 1;
    EXPECT_NE(kTfLiteOk, RunDtmm(node, opts));
  }
  {
    DtmmNode node(g_layer, g_dtmm_out);
    node.out_dims[2] += 1;  // output height
    EXPECT_NE(kTfLiteOk, RunDtmm(node, opts));
  }
  {
    DtmmNode node(g_layer, g_dtmm_out);
    node.out_dims[1] += 1;  // output batches
    EXPECT_NE(kTfLiteOk, RunDtmm(node, opts));
  }
  {
    DtmmNode node(g_layer, g_dtmm_out);
    node.in_dims[0] = 3;  // rank 3 input
    EXPECT_NE(kTfLiteOk, RunDtmm(node, opts));
  }
  {
    DtmmNode node(g_layer, g_dtmm_out);
    node.values_dims[0] = 1;  // rank 1 values
    EXPECT_NE(kTfLiteOk, RunDtmm(node, opts));
  }
}

TEST(DtmmConvMalformed, TensorTypesAndKinds) {
  ASSERT_TRUE(BaselineOk());
  const std::vector<uint8_t> opts = dtmm_test::BuildOptions(g_layer, OptionsSpec());
  const struct {
    int index;
    TfLiteType type;
  } bad_types[] = {{0, kTfLiteInt16}, {1, kTfLiteUInt8}, {2, kTfLiteInt8},
                   {3, kTfLiteInt8},  {4, kTfLiteFloat32}, {5, kTfLiteInt16},
                   {6, kTfLiteUInt8}};
  for (const auto& bt : bad_types) {
    DtmmNode node(g_layer, g_dtmm_out);
    node.t[bt.index].type = bt.type;
    EXPECT_NE(kTfLiteOk, RunDtmm(node, opts));
  }
  for (int i = 1; i <= 5; ++i) {  // weights must be constant
    DtmmNode node(g_layer, g_dtmm_out);
    node.t[i].allocation_type = kTfLiteArenaRw;
    EXPECT_NE(kTfLiteOk, RunDtmm(node, opts));
  }
  {
    DtmmNode node(g_layer, g_dtmm_out);
    node.inputs[0] = 5;  // five inputs
    EXPECT_NE(kTfLiteOk, RunDtmm(node, opts));
  }
  {
    DtmmNode node(g_layer, g_dtmm_out);
    node.t[6].params.zero_point = 200;  // output zero point outside int8
    EXPECT_NE(kTfLiteOk, RunDtmm(node, opts));
  }
}

TEST(DtmmConvMalformed, RequantConstants) {
  ASSERT_TRUE(BaselineOk());
  const std::vector<uint8_t> opts = dtmm_test::BuildOptions(g_layer, OptionsSpec());
  const int32_t m0 = g_layer.multiplier[1];
  const int32_t s0 = g_layer.shift[1];
  g_layer.multiplier[1] = -1;
  {
    DtmmNode node(g_layer, g_dtmm_out);
    EXPECT_NE(kTfLiteOk, RunDtmm(node, opts));
  }
  g_layer.multiplier[1] = m0;
  for (int32_t bad_shift : {31, -32, 1000, -1000}) {
    g_layer.shift[1] = bad_shift;
    DtmmNode node(g_layer, g_dtmm_out);
    EXPECT_NE(kTfLiteOk, RunDtmm(node, opts));
  }
  g_layer.shift[1] = s0;
  DtmmNode node(g_layer, g_dtmm_out);
  EXPECT_EQ(kTfLiteOk, RunDtmm(node, opts));
}

TEST(DtmmOps, AddDtmmOpsRegistersOnce) {
  tflite::MicroMutableOpResolver<dtmm::kDtmmOpCount> resolver;
  EXPECT_EQ(kTfLiteOk, dtmm::AddDtmmOps(resolver));
  EXPECT_TRUE(resolver.FindOp("DTMM_CONV_2D") != nullptr);
  // Full resolver: a clean error, not an overflow.
  EXPECT_NE(kTfLiteOk, dtmm::AddDtmmOps(resolver));
}

}  // namespace

TF_LITE_MICRO_TESTS_MAIN
