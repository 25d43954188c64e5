// DTMM_FULLY_CONNECTED op tests in TFLM's KernelRunner harness.
//
// Every configuration runs the DTMM op on the packed block-sparse weights and
// TFLM's own FULLY_CONNECTED (reference or CMSIS-NN, whichever this build
// compiled) on the dense pruned weights: the bytes must be equal. Malformed ops
// must fail in Prepare with a message, never crash.
#include <math.h>
#include <stdint.h>
#include <string.h>

#include <vector>

#include "dtmm_fc_s8.h"
#include "dtmm_ops.h"
#include "flatbuffers/flexbuffers.h"
#include "tensorflow/lite/c/builtin_op_data.h"
#include "tensorflow/lite/c/common.h"
#include "tensorflow/lite/kernels/internal/quantization_util.h"
#include "tensorflow/lite/micro/kernels/fully_connected.h"
#include "tensorflow/lite/micro/kernels/kernel_runner.h"
#include "tensorflow/lite/micro/micro_log.h"
#include "tensorflow/lite/micro/test_helpers.h"
#include "tensorflow/lite/micro/testing/micro_test_v2.h"

namespace {

using tflite::testing::CreateQuantizedTensor;
using tflite::testing::CreateTensor;
using tflite::testing::IntArrayFromInts;

constexpr int kMaxIn = 4 * 640, kMaxW = 640 * 130, kMaxOut = 4 * 160, kMaxOc = 160;

struct FcSpec {
  int batches, c_in, c_out, block, keep_percent, has_bias, activation, in_zp, out_zp;
  int keep_num_dims;  // input [1, batches, C_in], output [1, batches, C_out]
  uint32_t seed;
};

struct Fc {
  FcSpec s;
  int8_t input[kMaxIn];
  int8_t dense[kMaxW];
  int8_t w[kMaxW + 64];
  int w_bytes;
  int32_t bias[kMaxOc];
  int32_t q[3 * kMaxOc];
  alignas(4) int8_t wq[12 * kMaxOc + kMaxW + 64];  // the op's tensor: q, then w
  int wq_bytes;
  float in_scale, w_scale, out_scale;
  int act_min, act_max;
};

uint32_t Next(uint32_t* s) {
  *s ^= *s << 13;
  *s ^= *s >> 17;
  *s ^= *s << 5;
  return *s;
}

// TFLite's CalculateActivationRangeQuantized for int8.
void ActivationRange(int act, float scale, int zp, int* lo, int* hi) {
  auto quantize = [&](float f) {
    const float v = static_cast<float>(zp) + roundf(f / scale);
    return v < -128.f ? -128 : (v > 127.f ? 127 : static_cast<int>(v));
  };
  *lo = -128;
  *hi = 127;
  if (act == kTfLiteActRelu) {
    *lo = quantize(0.f);
  } else if (act == kTfLiteActRelu6) {
    *lo = quantize(0.f);
    *hi = quantize(6.f);
  } else if (act == kTfLiteActReluN1To1) {
    *lo = quantize(-1.f);
    *hi = quantize(1.f);
  }
  if (*lo < -128) *lo = -128;
}

Fc g_fc;  // large: off the stack
int8_t g_dtmm_out[kMaxOut + 16];
int8_t g_tflm_out[kMaxOut];

// The op's constant tensor (docs/contract.md): the int32 table, then the packed w.
void Join(Fc* f) {
  memcpy(f->wq, f->q, 12 * f->s.c_out);
  memcpy(f->wq + 12 * f->s.c_out, f->w, f->w_bytes);
  f->wq_bytes = 12 * f->s.c_out + f->w_bytes;
}

void MakeFc(const FcSpec& s, Fc* f) {
  uint32_t r = s.seed * 2654435761u + 1u;
  const int nb = s.c_in / s.block;
  f->s = s;
  f->in_scale = 0.05f;
  f->w_scale = 0.004f + 0.001f * static_cast<float>(s.seed % 5);
  f->out_scale = 0.02f * static_cast<float>(s.c_in) / 16.f;
  for (int i = 0; i < s.batches * s.c_in; ++i) f->input[i] = static_cast<int8_t>(Next(&r) >> 24);
  for (int i = 0; i < s.c_out * s.c_in; ++i) f->dense[i] = static_cast<int8_t>(Next(&r) >> 24);
  for (int b = 0; b < s.c_out * nb; ++b) {
    int8_t* blk = f->dense + (b / nb) * s.c_in + (b % nb) * s.block;
    if (static_cast<int>(Next(&r) % 100) >= s.keep_percent) {
      memset(blk, 0, s.block);
    } else if (blk[0] == 0) {
      blk[0] = 1;
    }
  }
  // Pack (docs/contract.md): bitmap padded to 4 bytes, then the kept blocks.
  const int bm = 4 * ((s.c_out * nb + 31) / 32);
  memset(f->w, 0, bm);
  f->w_bytes = bm;
  for (int b = 0; b < s.c_out * nb; ++b) {
    const int8_t* blk = f->dense + (b / nb) * s.c_in + (b % nb) * s.block;
    bool kept = false;
    for (int c = 0; c < s.block; ++c) kept |= blk[c] != 0;
    if (!kept) continue;
    f->w[b >> 3] = static_cast<int8_t>(static_cast<uint8_t>(f->w[b >> 3]) | (1u << (b & 7)));
    memcpy(f->w + f->w_bytes, blk, s.block);
    f->w_bytes += s.block;
  }
  int32_t mult;
  int shift;
  tflite::QuantizeMultiplier(static_cast<double>(f->in_scale) * static_cast<double>(f->w_scale) /
                                 static_cast<double>(f->out_scale),
                             &mult, &shift);
  for (int oc = 0; oc < s.c_out; ++oc) {
    uint32_t sum = 0;
    for (int c = 0; c < s.c_in; ++c) sum += static_cast<uint32_t>(f->dense[oc * s.c_in + c]);
    f->bias[oc] = s.has_bias ? static_cast<int32_t>(Next(&r) >> 19) - 4096 : 0;
    f->q[3 * oc] = static_cast<int32_t>(static_cast<uint32_t>(f->bias[oc]) -
                                        static_cast<uint32_t>(s.in_zp) * sum);
    f->q[3 * oc + 1] = mult;
    f->q[3 * oc + 2] = shift;
  }
  ActivationRange(s.activation, f->out_scale, s.out_zp, &f->act_min, &f->act_max);
  Join(f);
}

struct OptionsSpec {
  int version = 2;
  int block_override = 0;
  int z_delta = 0;
  int lo_override = 1000, hi_override = 1000;
  const char* omit = nullptr;
};

std::vector<uint8_t> BuildOptions(const Fc& f, const OptionsSpec& o) {
  flexbuffers::Builder fbb;
  auto put = [&](const char* key, int value) {
    if (o.omit == nullptr || strcmp(o.omit, key) != 0) fbb.Int(key, value);
  };
  const size_t start = fbb.StartMap();
  put("version", o.version);
  put("b", o.block_override ? o.block_override : f.s.block);
  put("z", f.s.in_zp + o.z_delta);
  put("lo", o.lo_override != 1000 ? o.lo_override : f.act_min);
  put("hi", o.hi_override != 1000 ? o.hi_override : f.act_max);
  fbb.EndMap(start);
  fbb.Finish();
  return fbb.GetBuffer();
}

// Tensors of one DTMM_FULLY_CONNECTED node; tests mutate them before running.
struct DtmmNode {
  int in_dims[4], w_dims[2], out_dims[4];
  TfLiteTensor t[3];
  int inputs[3], outputs[2];
  DtmmNode(Fc& f, int8_t* out) {
    const FcSpec& s = f.s;
    if (s.keep_num_dims) {
      const int in[4] = {3, 1, s.batches, s.c_in}, o[4] = {3, 1, s.batches, s.c_out};
      memcpy(in_dims, in, sizeof(in));
      memcpy(out_dims, o, sizeof(o));
    } else {
      const int in[3] = {2, s.batches, s.c_in}, o[3] = {2, s.batches, s.c_out};
      memcpy(in_dims, in, sizeof(in));
      memcpy(out_dims, o, sizeof(o));
    }
    w_dims[0] = 1;
    w_dims[1] = f.wq_bytes;
    t[0] = CreateQuantizedTensor(f.input, IntArrayFromInts(in_dims), f.in_scale, s.in_zp);
    t[1] = CreateTensor(f.wq, IntArrayFromInts(w_dims));
    t[1].allocation_type = kTfLiteMmapRo;
    t[2] = CreateQuantizedTensor(out, IntArrayFromInts(out_dims), f.out_scale, s.out_zp);
    const int ins[3] = {2, 0, 1};
    memcpy(inputs, ins, sizeof(ins));
    outputs[0] = 1;
    outputs[1] = 2;
  }
};

TfLiteStatus RunDtmm(DtmmNode& node, const std::vector<uint8_t>& options) {
  const TFLMRegistration reg = dtmm::Register_DTMM_FULLY_CONNECTED();
  tflite::micro::KernelRunner runner(reg, node.t, 3, IntArrayFromInts(node.inputs),
                                     IntArrayFromInts(node.outputs), nullptr);
  TF_LITE_ENSURE_STATUS(runner.InitAndPrepare(
      options.empty() ? nullptr : reinterpret_cast<const char*>(options.data()),
      options.size()));
  return runner.Invoke();
}

// TFLM's FULLY_CONNECTED on the dense pruned weights (the "pruned original"), on
// [batches, C_in] -> [batches, C_out]: keep_num_dims changes only the output shape,
// and TFLM's CMSIS-NN FULLY_CONNECTED takes rank > 2 outputs through a 1x1 conv
// whose scratch-index DCHECK aborts in KernelRunner's fake context.
TfLiteStatus RunTflmFc(Fc& f, int8_t* out) {
  const FcSpec& s = f.s;
  int in_dims[3] = {2, s.batches, s.c_in}, out_dims[3] = {2, s.batches, s.c_out};
  int w_dims[3] = {2, s.c_out, s.c_in};
  int b_dims[2] = {1, s.c_out};
  TfLiteTensor t[4] = {
      CreateQuantizedTensor(f.input, IntArrayFromInts(in_dims), f.in_scale, s.in_zp),
      CreateQuantizedTensor(f.dense, IntArrayFromInts(w_dims), f.w_scale, 0),
      CreateQuantizedTensor(f.bias, IntArrayFromInts(b_dims), f.in_scale * f.w_scale, 0),
      CreateQuantizedTensor(out, IntArrayFromInts(out_dims), f.out_scale, s.out_zp),
  };
  t[1].allocation_type = t[2].allocation_type = kTfLiteMmapRo;
  int ins[4] = {3, 0, 1, s.has_bias ? 2 : -1};
  int outs[2] = {1, 3};
  TfLiteFullyConnectedParams params = {};
  params.activation = static_cast<TfLiteFusedActivation>(s.activation);
  params.weights_format = kTfLiteFullyConnectedWeightsFormatDefault;
  params.keep_num_dims = false;
  params.asymmetric_quantize_inputs = false;
  params.quantized_bias_type = kTfLiteInt32;
  const TFLMRegistration reg = tflite::Register_FULLY_CONNECTED();
  tflite::micro::KernelRunner runner(reg, t, 4, IntArrayFromInts(ins), IntArrayFromInts(outs),
                                     &params);
  TF_LITE_ENSURE_STATUS(runner.InitAndPrepare());
  return runner.Invoke();
}

void CheckFc(const FcSpec& spec) {
  MakeFc(spec, &g_fc);
  const int n = spec.batches * spec.c_out;
  memset(g_dtmm_out, 0x55, sizeof(g_dtmm_out));
  memset(g_tflm_out, 0x66, sizeof(g_tflm_out));
  DtmmNode node(g_fc, g_dtmm_out);
  ASSERT_EQ(kTfLiteOk, RunDtmm(node, BuildOptions(g_fc, OptionsSpec())));
  ASSERT_EQ(kTfLiteOk, RunTflmFc(g_fc, g_tflm_out));
  int mismatches = 0;
  for (int i = 0; i < n; ++i) {
    if (g_dtmm_out[i] != g_tflm_out[i]) {
      if (mismatches < 5) MicroPrintf("  [%d] dtmm %d tflm %d", i, g_dtmm_out[i], g_tflm_out[i]);
      ++mismatches;
    }
  }
  EXPECT_EQ(0, mismatches);
  for (int i = n; i < n + 16; ++i) {
    if (g_dtmm_out[i] != 0x55) {
      EXPECT_EQ(0x55, g_dtmm_out[i]);
      break;
    }
  }
}

// batches, c_in, c_out, block, keep%, bias, activation, in_zp, out_zp, keep_num_dims, seed
TEST(DtmmFc, DenseRowsB16) { CheckFc({1, 128, 16, 16, 100, 1, kTfLiteActNone, 3, -5, 0, 1}); }
TEST(DtmmFc, HalfBlocksB16Relu) { CheckFc({1, 128, 20, 16, 50, 1, kTfLiteActRelu, -7, -128, 0, 2}); }
TEST(DtmmFc, SparseB8Batches4) { CheckFc({4, 96, 12, 8, 25, 1, kTfLiteActNone, 12, 4, 0, 3}); }
TEST(DtmmFc, WholeRowBlocksNoBiasRelu6) {
  CheckFc({2, 37, 9, 37, 60, 0, kTfLiteActRelu6, 0, -3, 0, 4});
}
TEST(DtmmFc, KeepNumDimsBatches3) { CheckFc({3, 64, 7, 16, 70, 1, kTfLiteActNone, -1, 2, 1, 5}); }
TEST(DtmmFc, AutoencoderShape640x128) {
  CheckFc({1, 640, 128, 16, 50, 1, kTfLiteActRelu, 5, -128, 0, 6});
}
TEST(DtmmFc, ManyBlocksPerRowB8) { CheckFc({1, 512, 10, 8, 40, 1, kTfLiteActNone, 2, 0, 0, 7}); }
TEST(DtmmFc, EveryBlockPruned) { CheckFc({2, 48, 5, 16, 0, 1, kTfLiteActNone, 9, 1, 0, 8}); }
TEST(DtmmFc, ReluN1To1Batches5) { CheckFc({5, 32, 6, 32, 80, 1, kTfLiteActReluN1To1, 0, 0, 0, 9}); }

// Malformed ops: Prepare fails with a message.
TEST(DtmmFc, RejectsMalformed) {
  MakeFc({1, 64, 8, 16, 50, 1, kTfLiteActNone, 3, -2, 0, 10}, &g_fc);
  {
    DtmmNode node(g_fc, g_dtmm_out);
    EXPECT_EQ(kTfLiteOk, RunDtmm(node, BuildOptions(g_fc, OptionsSpec())));
  }
  auto expect_fail = [&](const OptionsSpec& o) {
    DtmmNode node(g_fc, g_dtmm_out);
    EXPECT_NE(kTfLiteOk, RunDtmm(node, BuildOptions(g_fc, o)));
  };
  OptionsSpec o;
  o.version = 1;
  expect_fail(o);
  o = OptionsSpec();
  o.version = 3;
  expect_fail(o);
  o = OptionsSpec();
  o.omit = "b";
  expect_fail(o);
  o = OptionsSpec();
  o.block_override = 12;  // does not divide C_in 64
  expect_fail(o);
  o = OptionsSpec();
  o.block_override = 8;  // divides, but w holds 16-blocks
  expect_fail(o);
  o = OptionsSpec();
  o.z_delta = 1;
  expect_fail(o);
  o = OptionsSpec();
  o.lo_override = 10;
  o.hi_override = 9;
  expect_fail(o);
  {
    DtmmNode node(g_fc, g_dtmm_out);
    EXPECT_NE(kTfLiteOk, RunDtmm(node, std::vector<uint8_t>()));  // no options
  }
  {
    DtmmNode node(g_fc, g_dtmm_out);
    node.w_dims[1] -= 1;  // one byte short
    EXPECT_NE(kTfLiteOk, RunDtmm(node, BuildOptions(g_fc, OptionsSpec())));
  }
  {
    DtmmNode node(g_fc, g_dtmm_out);
    node.w_dims[1] = 12 * 8 - 1;  // shorter than the per-channel table
    EXPECT_NE(kTfLiteOk, RunDtmm(node, BuildOptions(g_fc, OptionsSpec())));
  }
  {
    DtmmNode node(g_fc, g_dtmm_out);
    node.out_dims[2] = 9;  // output channels != C_out
    EXPECT_NE(kTfLiteOk, RunDtmm(node, BuildOptions(g_fc, OptionsSpec())));
  }
  {
    const int32_t s0 = g_fc.q[2];
    g_fc.q[2] = 31;  // shift out of range
    Join(&g_fc);
    DtmmNode node(g_fc, g_dtmm_out);
    EXPECT_NE(kTfLiteOk, RunDtmm(node, BuildOptions(g_fc, OptionsSpec())));
    g_fc.q[2] = s0;
    Join(&g_fc);
  }
  {
    DtmmNode node(g_fc, g_dtmm_out);
    node.t[1].allocation_type = kTfLiteArenaRw;  // w not constant
    EXPECT_NE(kTfLiteOk, RunDtmm(node, BuildOptions(g_fc, OptionsSpec())));
  }
}

// The tensor checks shared with DTMM_CONV_2D (dtmm_op_checks.h): a negative
// dimension, and more than INT32_MAX elements, fail in Prepare.
TEST(DtmmFc, RejectsBadShapes) {
  MakeFc({1, 64, 8, 16, 50, 1, kTfLiteActNone, 3, -2, 0, 10}, &g_fc);
  const std::vector<uint8_t> opts = BuildOptions(g_fc, OptionsSpec());
  {
    DtmmNode node(g_fc, g_dtmm_out);
    EXPECT_EQ(kTfLiteOk, RunDtmm(node, opts));
  }
  {
    DtmmNode node(g_fc, g_dtmm_out);
    node.in_dims[1] = -1;  // batches
    EXPECT_NE(kTfLiteOk, RunDtmm(node, opts));
  }
  {
    DtmmNode node(g_fc, g_dtmm_out);
    node.out_dims[1] = -1;
    EXPECT_NE(kTfLiteOk, RunDtmm(node, opts));
  }
  {
    DtmmNode node(g_fc, g_dtmm_out);
    node.in_dims[1] = 1 << 30;  // 2^30 * 64 elements
    EXPECT_NE(kTfLiteOk, RunDtmm(node, opts));
  }
}

TEST(DtmmFc, RejectsBitmapPaddingBits) {
  // 3 rows x 2 blocks = 6 bits: bits 6..31 of the bitmap are padding.
  MakeFc({1, 32, 3, 16, 100, 1, kTfLiteActNone, 0, 0, 0, 11}, &g_fc);
  g_fc.w[0] = static_cast<int8_t>(static_cast<uint8_t>(g_fc.w[0]) | 0x40);
  Join(&g_fc);
  DtmmNode node(g_fc, g_dtmm_out);
  EXPECT_NE(kTfLiteOk, RunDtmm(node, BuildOptions(g_fc, OptionsSpec())));
}

TEST(DtmmFc, AddDtmmOpsRegistersBoth) {
  tflite::MicroMutableOpResolver<dtmm::kDtmmOpCount> resolver;
  EXPECT_EQ(kTfLiteOk, dtmm::AddDtmmOps(resolver));
  EXPECT_TRUE(resolver.FindOp("DTMM_CONV_2D") != nullptr);
  EXPECT_TRUE(resolver.FindOp("DTMM_FULLY_CONNECTED") != nullptr);
}

}  // namespace

TF_LITE_MICRO_TESTS_MAIN
