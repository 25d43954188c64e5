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

TEST(DtmmConvMalformed, OptionsAsUnsigned) {
  ASSERT_TRUE(BaselineOk());
  // A UInt in range reads as its value; one of 2^63 or more is out of range, even
  // for keys whose range is negative (its int64 bits would be).
  OptionsSpec o;
  o.as_uint = "kh";
  o.uint_value = static_cast<uint64_t>(g_layer.spec.kh);
  EXPECT_EQ(kTfLiteOk, PrepareWith(o));
  ASSERT_LT(g_layer.spec.in_zp, 0);
  o.as_uint = "in_zp";  // in_zp's own int64 bits, as a UInt >= 2^63
  o.uint_value = static_cast<uint64_t>(static_cast<int64_t>(g_layer.spec.in_zp));
  EXPECT_NE(kTfLiteOk, PrepareWith(o));
  o.as_uint = "act_min";
  o.uint_value = ~static_cast<uint64_t>(0);  // -1 as int64
  EXPECT_NE(kTfLiteOk, PrepareWith(o));
  o.as_uint = "kh";
  o.uint_value = static_cast<uint64_t>(1) << 63;
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

// The tensor checks shared with DTMM_FULLY_CONNECTED (dtmm_op_checks.h): a negative
// dimension, and more than INT32_MAX elements, fail in Prepare.
TEST(DtmmConvMalformed, SharedTensorChecks) {
  ASSERT_TRUE(BaselineOk());
  const std::vector<uint8_t> opts = dtmm_test::BuildOptions(g_layer, OptionsSpec());
  {
    DtmmNode node(g_layer, g_dtmm_out);
    node.in_dims[2] = -5;  // input height
    EXPECT_NE(kTfLiteOk, RunDtmm(node, opts));
  }
  {
    DtmmNode node(g_layer, g_dtmm_out);
    node.out_dims[3] = -1;  // output width
    EXPECT_NE(kTfLiteOk, RunDtmm(node, opts));
  }
  {
    DtmmNode node(g_layer, g_dtmm_out);
    node.in_dims[2] = 1 << 20;  // 2^40 * C_in elements
    node.in_dims[3] = 1 << 20;
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

// ---- Version 2: one packed tensor w, short keys, block filterlets. ----

// The version-2 form of a dense pruned layer (docs/contract.md "DTMM_CONV_2D
// version 2"): blocks of b channels, a block kept iff any of its weights is
// non-zero; w = planar int32 table, bitmap padded to 4 bytes, kept blocks.
struct PackedV2 {
  alignas(4) int8_t w[12 * dtmm_test::kMaxChannels + 4 * (dtmm_test::kMaxFilter / 32 + 1) +
                      dtmm_test::kMaxFilter];
  int w_bytes, bitmap_bytes, bitmap_padded, n_kept;
};

void PackV2(const Layer& l, int b, PackedV2* p) {
  const LayerSpec& s = l.spec;
  const int nb = s.in_c / b, bits = s.out_c * l.K() * nb;
  memset(p, 0, sizeof(*p));
  int32_t* table = reinterpret_cast<int32_t*>(p->w);
  for (int oc = 0; oc < s.out_c; ++oc) {
    table[oc] = l.folded_bias[oc];
    table[s.out_c + oc] = l.multiplier[oc];
    table[2 * s.out_c + oc] = l.shift[oc];
  }
  uint8_t* bitmap = reinterpret_cast<uint8_t*>(p->w + 12 * s.out_c);
  p->bitmap_bytes = (bits + 7) / 8;
  p->bitmap_padded = 4 * ((bits + 31) / 32);
  int8_t* values = p->w + 12 * s.out_c + p->bitmap_padded;
  p->n_kept = 0;
  for (int i = 0; i < bits; ++i) {
    const int8_t* blk = &l.filter[i * b];  // OHWI: block i is b contiguous bytes
    bool kept = false;
    for (int c = 0; c < b; ++c) kept = kept || blk[c] != 0;
    if (!kept) continue;
    bitmap[i >> 3] = static_cast<uint8_t>(bitmap[i >> 3] | (1u << (i & 7)));
    memcpy(values + p->n_kept * b, blk, b);
    ++p->n_kept;
  }
  p->w_bytes = 12 * s.out_c + p->bitmap_padded + p->n_kept * b;
}

// Prunes whole blocks of b channels of a 1x1 layer (prune_percent of them) and
// rebuilds the FWCS view and folded biases: the pruned original for blocks.
void PruneBlocks(Layer* l, int b, int prune_percent, uint32_t seed) {
  const LayerSpec& s = l->spec;
  dtmm_test::Rng rng{seed * 2246822519u + 7u};
  const int blocks = s.out_c * l->K() * (s.in_c / b);
  for (int i = 0; i < blocks; ++i) {
    if (rng.Range(0, 99) < prune_percent) memset(&l->filter[i * b], 0, b);
  }
  const int per = l->K() * s.in_c;
  for (int oc = 0; oc < s.out_c; ++oc) {
    int32_t sum = 0;
    for (int i = 0; i < per; ++i) sum += l->filter[oc * per + i];
    l->folded_bias[oc] = l->bias[oc] - s.in_zp * sum;
  }
}

struct V2Options {
  int version = 2;
  int b = 0;  // 0: C_in
  int kh_override = -1;
  const char* omit = nullptr;
};

std::vector<uint8_t> BuildOptionsV2(const Layer& l, const V2Options& o) {
  const LayerSpec& s = l.spec;
  flexbuffers::Builder fbb;
  auto put = [&](const char* key, int value) {
    if (o.omit == nullptr || strcmp(o.omit, key) != 0) fbb.Int(key, value);
  };
  const size_t start = fbb.StartMap();
  put("version", o.version);
  put("b", o.b > 0 ? o.b : s.in_c);
  put("kh", o.kh_override > 0 ? o.kh_override : s.kh);
  put("kw", s.kw);
  put("sh", s.sh);
  put("sw", s.sw);
  put("dh", s.dh);
  put("dw", s.dw);
  put("p", s.padding);
  put("z", s.in_zp);
  put("lo", l.act_min);
  put("hi", l.act_max);
  fbb.EndMap(start);
  fbb.Finish();
  return fbb.GetBuffer();
}

struct DtmmNodeV2 {
  int in_dims[5], w_dims[2], out_dims[5];
  TfLiteTensor t[3];  // input, w, output
  int inputs[3];
  int outputs[2];

  DtmmNodeV2(Layer& l, PackedV2& p, int8_t* out, int w_offset = 0) {
    const LayerSpec& s = l.spec;
    const int in[5] = {4, s.batches, s.in_h, s.in_w, s.in_c};
    const int o[5] = {4, s.batches, l.out_h, l.out_w, s.out_c};
    memcpy(in_dims, in, sizeof(in));
    memcpy(out_dims, o, sizeof(o));
    w_dims[0] = 1;
    w_dims[1] = p.w_bytes;
    t[0] = CreateQuantizedTensor(l.input, IntArrayFromInts(in_dims), l.in_scale, s.in_zp);
    t[1] = CreateTensor(p.w + w_offset, IntArrayFromInts(w_dims));
    t[1].allocation_type = kTfLiteMmapRo;
    t[2] = CreateQuantizedTensor(out, IntArrayFromInts(out_dims), l.out_scale, s.out_zp);
    inputs[0] = 2;
    inputs[1] = 0;
    inputs[2] = 1;
    outputs[0] = 1;
    outputs[1] = 2;
  }
};

TfLiteStatus RunDtmmV2(DtmmNodeV2& node, const std::vector<uint8_t>& options) {
  const TFLMRegistration reg = dtmm::Register_DTMM_CONV_2D();
  tflite::micro::KernelRunner runner(reg, node.t, 3, IntArrayFromInts(node.inputs),
                                     IntArrayFromInts(node.outputs), nullptr);
  TF_LITE_ENSURE_STATUS(runner.InitAndPrepare(reinterpret_cast<const char*>(options.data()),
                                              options.size()));
  return runner.Invoke();
}

PackedV2 g_packed;
int8_t g_v1_out[dtmm_test::kMaxOutput];

// Version 2 at block size b (0: C_in) against the dense reference and TFLM's
// CONV_2D on the same (zeroed-block) weights; at b = C_in also against version 1.
void CheckLayerV2(const LayerSpec& spec, int b, int block_prune_percent) {
  ASSERT_TRUE(dtmm_test::MakeLayer(spec, &g_layer));
  Layer& l = g_layer;
  if (b > 0 && b < spec.in_c) PruneBlocks(&l, b, block_prune_percent, spec.seed);
  const int bk = b > 0 ? b : spec.in_c;
  PackV2(l, bk, &g_packed);
  const int n = l.OutputSize();
  memset(g_dtmm_out, 0x55, sizeof(g_dtmm_out));
  memset(g_tflm_out, 0x66, sizeof(g_tflm_out));
  dtmm_test::DenseReference(l, g_ref_out);
  V2Options o;
  o.b = bk;
  DtmmNodeV2 node(l, g_packed, g_dtmm_out);
  ASSERT_EQ(kTfLiteOk, RunDtmmV2(node, BuildOptionsV2(l, o)));
  ASSERT_EQ(kTfLiteOk, RunTflmConv(l, g_tflm_out));
  EXPECT_EQ(0, memcmp(g_dtmm_out, g_ref_out, n));
  EXPECT_EQ(0, memcmp(g_tflm_out, g_ref_out, n));
  EXPECT_GE(CountDistinct(g_ref_out, n), 3);
  for (int i = n; i < dtmm_test::kMaxOutput; ++i) {
    if (g_dtmm_out[i] != 0x55) {
      EXPECT_EQ(0x55, g_dtmm_out[i]);
      break;
    }
  }
  if (bk == spec.in_c) {  // B = C_in is exactly version 1
    memset(g_v1_out, 0x44, sizeof(g_v1_out));
    // version 1's FWCS arrays, rebuilt from the (unchanged) dense filter
    ASSERT_TRUE(dtmm_test::MakeLayer(spec, &g_layer));
    DtmmNode v1(g_layer, g_v1_out);
    ASSERT_EQ(kTfLiteOk, RunDtmm(v1, dtmm_test::BuildOptions(g_layer, OptionsSpec())));
    EXPECT_EQ(0, memcmp(g_v1_out, g_dtmm_out, n));
  }
}

TEST(DtmmConvV2, BEqualsCin3x3EqualsV1AndConv2d) {
  CheckLayerV2({1, 5, 5, 4, 6, 3, 3, 1, 1, 1, 1, 0, 0, -3, 5, 50, true, 31}, 0, 0);
}
TEST(DtmmConvV2, BEqualsCinDilatedStride2Relu6) {
  CheckLayerV2({2, 6, 5, 3, 5, 2, 3, 2, 1, 2, 1, 0, 3, -128, 0, 30, true, 32}, 0, 0);
}
TEST(DtmmConvV2, BEqualsCin1x1) {
  CheckLayerV2({1, 4, 4, 16, 8, 1, 1, 1, 1, 1, 1, 0, 0, 0, -1, 40, true, 33}, 0, 0);
}
TEST(DtmmConvV2, Blocks1x1B4) {
  CheckLayerV2({1, 4, 4, 16, 8, 1, 1, 1, 1, 1, 1, 0, 0, 3, -1, 0, true, 34}, 4, 50);
}
TEST(DtmmConvV2, Blocks1x1B8Stride2Valid) {
  CheckLayerV2({1, 5, 6, 32, 10, 1, 1, 2, 2, 1, 1, 1, 1, -7, 4, 0, true, 35}, 8, 60);
}
TEST(DtmmConvV2, Blocks1x1B16Batches2Heavy) {
  CheckLayerV2({2, 2, 3, 64, 5, 1, 1, 1, 1, 1, 1, 0, 0, 12, 0, 0, false, 36}, 16, 80);
}
TEST(DtmmConvV2, Blocks1x1B1) {
  CheckLayerV2({1, 3, 3, 12, 7, 1, 1, 1, 1, 1, 1, 0, 0, -20, 9, 0, true, 37}, 1, 50);
}
TEST(DtmmConvV2, Blocks1x1SomeFiltersPruned) {
  CheckLayerV2({1, 5, 3, 32, 12, 1, 1, 1, 1, 1, 1, 0, 0, 1, 2, 40, true, 38}, 8, 30);
}

// ---- Version 2 malformed: Prepare fails with one message. ----

const LayerSpec kV2Base = {1, 4, 4, 32, 5, 1, 1, 1, 1, 1, 1, 0, 0, -2, 3, 0, true, 41};

bool V2BaselineOk(int b) {
  if (!dtmm_test::MakeLayer(kV2Base, &g_layer)) return false;
  PruneBlocks(&g_layer, b, 50, 41);
  PackV2(g_layer, b, &g_packed);
  V2Options o;
  o.b = b;
  DtmmNodeV2 node(g_layer, g_packed, g_dtmm_out);
  return RunDtmmV2(node, BuildOptionsV2(g_layer, o)) == kTfLiteOk;
}

TfLiteStatus PrepareV2(const V2Options& o, int w_delta = 0, int w_offset = 0) {
  DtmmNodeV2 node(g_layer, g_packed, g_dtmm_out, w_offset);
  node.w_dims[1] += w_delta;
  return RunDtmmV2(node, BuildOptionsV2(g_layer, o));
}

TEST(DtmmConvV2Malformed, WrongLength) {
  ASSERT_TRUE(V2BaselineOk(8));
  V2Options o;
  o.b = 8;
  EXPECT_NE(kTfLiteOk, PrepareV2(o, -1));
  EXPECT_NE(kTfLiteOk, PrepareV2(o, 1));
  EXPECT_NE(kTfLiteOk, PrepareV2(o, 8));   // one block too many
  EXPECT_NE(kTfLiteOk, PrepareV2(o, -8));  // one block too few
  EXPECT_NE(kTfLiteOk, PrepareV2(o, -g_packed.w_bytes + 12));  // table only
}

TEST(DtmmConvV2Malformed, Unaligned) {
  ASSERT_TRUE(V2BaselineOk(8));
  V2Options o;
  o.b = 8;
  // the same bytes one byte later: every length check passes, the alignment not
  memmove(g_packed.w + 1, g_packed.w, g_packed.w_bytes);
  EXPECT_NE(kTfLiteOk, PrepareV2(o, 0, 1));
}

TEST(DtmmConvV2Malformed, BitmapPadding) {
  ASSERT_TRUE(V2BaselineOk(8));  // 5 * 4 = 20 bits: 3 bytes, padded to 4
  V2Options o;
  o.b = 8;
  uint8_t* bitmap = reinterpret_cast<uint8_t*>(g_packed.w + 12 * kV2Base.out_c);
  ASSERT_EQ(3, g_packed.bitmap_bytes);
  ASSERT_EQ(4, g_packed.bitmap_padded);
  bitmap[3] = 0x01;  // padding byte
  EXPECT_NE(kTfLiteOk, PrepareV2(o));
  bitmap[3] = 0;
  bitmap[2] = static_cast<uint8_t>(bitmap[2] | 0x10);  // bit 20 >= 20 bits
  EXPECT_NE(kTfLiteOk, PrepareV2(o, 8));  // even with a matching length
  bitmap[2] = static_cast<uint8_t>(bitmap[2] & ~0x10);
  EXPECT_EQ(kTfLiteOk, PrepareV2(o));
}

TEST(DtmmConvV2Malformed, BlockSize) {
  ASSERT_TRUE(V2BaselineOk(8));
  V2Options o;
  o.b = 12;  // does not divide 32
  EXPECT_NE(kTfLiteOk, PrepareV2(o));
  o.b = 64;  // larger than C_in
  EXPECT_NE(kTfLiteOk, PrepareV2(o));
  o.b = 16;  // divides, but w was packed for 8
  EXPECT_NE(kTfLiteOk, PrepareV2(o));
  o = V2Options();
  o.b = 8;
  o.omit = "b";
  EXPECT_NE(kTfLiteOk, PrepareV2(o));
}

TEST(DtmmConvV2Malformed, BlocksNeed1x1) {
  // a 3x3 layer packed at B < C_in: rejected whatever its length
  const LayerSpec spec = {1, 5, 5, 8, 3, 3, 3, 1, 1, 1, 1, 0, 0, 0, 0, 0, true, 42};
  ASSERT_TRUE(dtmm_test::MakeLayer(spec, &g_layer));
  PackV2(g_layer, 4, &g_packed);
  V2Options o;
  o.b = 4;
  EXPECT_NE(kTfLiteOk, PrepareV2(o));
  PackV2(g_layer, 8, &g_packed);  // B = C_in is fine
  o.b = 8;
  EXPECT_EQ(kTfLiteOk, PrepareV2(o));
}

TEST(DtmmConvV2Malformed, VersionsAndInputs) {
  ASSERT_TRUE(V2BaselineOk(8));
  V2Options o;
  o.b = 8;
  for (int v : {3, 0, -1, 1}) {  // 1: version 1 needs its own keys and six inputs
    o.version = v;
    EXPECT_NE(kTfLiteOk, PrepareV2(o));
  }
  o.version = 2;
  for (const char* key : {"version", "kh", "kw", "sh", "sw", "dh", "dw", "p", "z", "lo",
                          "hi"}) {
    o.omit = key;
    EXPECT_NE(kTfLiteOk, PrepareV2(o));
  }
  o.omit = nullptr;
  {
    DtmmNodeV2 node(g_layer, g_packed, g_dtmm_out);
    node.t[1].allocation_type = kTfLiteArenaRw;  // w must be constant
    EXPECT_NE(kTfLiteOk, RunDtmmV2(node, BuildOptionsV2(g_layer, o)));
  }
  {
    DtmmNodeV2 node(g_layer, g_packed, g_dtmm_out);
    node.t[1].type = kTfLiteUInt8;
    EXPECT_NE(kTfLiteOk, RunDtmmV2(node, BuildOptionsV2(g_layer, o)));
  }
  {
    DtmmNodeV2 node(g_layer, g_packed, g_dtmm_out);
    node.inputs[0] = 1;  // w missing
    EXPECT_NE(kTfLiteOk, RunDtmmV2(node, BuildOptionsV2(g_layer, o)));
  }
  {
    // version 2 options on a version-1 node (six inputs)
    ASSERT_TRUE(dtmm_test::MakeLayer(kV2Base, &g_layer));
    DtmmNode node(g_layer, g_dtmm_out);
    o.b = kV2Base.in_c;
    EXPECT_NE(kTfLiteOk, RunDtmm(node, BuildOptionsV2(g_layer, o)));
  }
}

TEST(DtmmConvV2Malformed, RequantConstantsInTable) {
  ASSERT_TRUE(V2BaselineOk(8));
  V2Options o;
  o.b = 8;
  int32_t* table = reinterpret_cast<int32_t*>(g_packed.w);
  const int32_t m = table[kV2Base.out_c + 1], sh = table[2 * kV2Base.out_c + 1];
  table[kV2Base.out_c + 1] = -1;  // multiplier
  EXPECT_NE(kTfLiteOk, PrepareV2(o));
  table[kV2Base.out_c + 1] = m;
  table[2 * kV2Base.out_c + 1] = 31;  // shift
  EXPECT_NE(kTfLiteOk, PrepareV2(o));
  table[2 * kV2Base.out_c + 1] = sh;
  EXPECT_EQ(kTfLiteOk, PrepareV2(o));
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
