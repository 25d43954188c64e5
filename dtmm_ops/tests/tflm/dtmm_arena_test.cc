// Arena bytes of DTMM_CONV_2D next to TFLM's CONV_2D (whichever this build
// compiled: reference, or CMSIS-NN with OPTIMIZED_KERNEL_DIR=cmsis_nn) for the
// bench layers, measured in a MicroInterpreter on one-op models built here.
//
// For each op the test wraps the registration and records what the kernel asks
// the arena for: persistent bytes (AllocatePersistentBuffer, Init + Prepare) and
// scratch bytes (RequestScratchBufferInArena). It also reports the interpreter's
// arena_used_bytes, runs both models and requires identical outputs, and fails
// if DTMM's persistent bytes exceed CONV_2D's or, in the CMSIS-NN build (the bar
// of docs/tflm.md), if its persistent + scratch do. Table in docs/tflm.md.
#include <stdint.h>
#include <string.h>

#include <vector>

#include "dtmm_ops.h"
#include "flatbuffers/flatbuffers.h"
#include "flatbuffers/flexbuffers.h"
#include "tensorflow/lite/kernels/internal/quantization_util.h"
#include "tensorflow/lite/micro/kernels/conv.h"
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/micro/micro_log.h"
#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"
#include "tensorflow/lite/micro/testing/micro_test_v2.h"
#include "tensorflow/lite/schema/schema_generated.h"

namespace {

struct BenchLayer {
  const char* name;
  int h, w, cin, cout, kh, kw, sh, sw;
  tflite::Padding padding;
};

// The bench layers (bench/ measures their instruction counts).
const BenchLayer kLayers[] = {
    {"32x32x3->32 3x3 same", 32, 32, 3, 32, 3, 3, 1, 1, tflite::Padding_SAME},
    {"16x16x64->128 3x3 same", 16, 16, 64, 128, 3, 3, 1, 1, tflite::Padding_SAME},
    {"8x8x128->256 3x3 same", 8, 8, 128, 256, 3, 3, 1, 1, tflite::Padding_SAME},
    {"16x16x64->64 3x3 same", 16, 16, 64, 64, 3, 3, 1, 1, tflite::Padding_SAME},
    {"49x1x40->32 5x1 s(3,1) valid", 49, 1, 40, 32, 5, 1, 3, 1,
     tflite::Padding_VALID},
    {"16x16x64->64 1x1", 16, 16, 64, 64, 1, 1, 1, 1, tflite::Padding_SAME},
};

// ---- What a kernel asks the arena for ----
struct OpArena {
  size_t persistent;
  size_t scratch;
  int scratch_buffers;
};
OpArena g_rec;
TFLMRegistration g_real;  // registration being wrapped (one op per model)
void* (*g_real_persistent)(TfLiteContext*, size_t);
TfLiteStatus (*g_real_scratch)(TfLiteContext*, size_t, int*);

void* RecordPersistent(TfLiteContext* c, size_t bytes) {
  g_rec.persistent += bytes;
  return g_real_persistent(c, bytes);
}
TfLiteStatus RecordScratch(TfLiteContext* c, size_t bytes, int* index) {
  g_rec.scratch += bytes;
  ++g_rec.scratch_buffers;
  return g_real_scratch(c, bytes, index);
}
void Hook(TfLiteContext* c) {
  g_real_persistent = c->AllocatePersistentBuffer;
  g_real_scratch = c->RequestScratchBufferInArena;
  c->AllocatePersistentBuffer = RecordPersistent;
  c->RequestScratchBufferInArena = RecordScratch;
}
void Unhook(TfLiteContext* c) {
  c->AllocatePersistentBuffer = g_real_persistent;
  c->RequestScratchBufferInArena = g_real_scratch;
}
void* WrappedInit(TfLiteContext* c, const char* buf, size_t len) {
  if (g_real.init == nullptr) return nullptr;
  Hook(c);
  void* r = g_real.init(c, buf, len);
  Unhook(c);
  return r;
}
TfLiteStatus WrappedPrepare(TfLiteContext* c, TfLiteNode* n) {
  Hook(c);
  const TfLiteStatus s = g_real.prepare(c, n);
  Unhook(c);
  return s;
}
TFLMRegistration Wrap(const TFLMRegistration& real) {
  g_real = real;
  g_rec = OpArena{0, 0, 0};
  TFLMRegistration w = real;
  w.init = WrappedInit;
  w.prepare = WrappedPrepare;
  return w;
}

// ---- One-op models ----
uint32_t g_rng = 777;
int Next(int lo, int hi) {
  g_rng ^= g_rng << 13;
  g_rng ^= g_rng >> 17;
  g_rng ^= g_rng << 5;
  return lo + static_cast<int>(g_rng % static_cast<uint32_t>(hi - lo + 1));
}

struct Quant {
  float in_scale = 0.03f, out_scale = 0.6f;
  int in_zp = -4, out_zp = 6;
  std::vector<float> filter_scales;
};

using Fbb = flatbuffers::FlatBufferBuilder;

// TFLM's flatbuffers patch removes the builder's default allocator.
class HeapAllocator : public flatbuffers::Allocator {
 public:
  uint8_t* allocate(size_t size) override { return new uint8_t[size]; }
  void deallocate(uint8_t* p, size_t) override { delete[] p; }
};
HeapAllocator g_heap;

flatbuffers::Offset<tflite::Buffer> DataBuffer(Fbb& fbb, const void* data,
                                               size_t bytes) {
  fbb.ForceVectorAlignment(bytes, 1, 16);
  return tflite::CreateBuffer(
      fbb, fbb.CreateVector(static_cast<const uint8_t*>(data), bytes));
}

flatbuffers::Offset<tflite::QuantizationParameters> PerTensor(Fbb& fbb, float s,
                                                              int zp) {
  return tflite::CreateQuantizationParameters(
      fbb, 0, 0, fbb.CreateVector(std::vector<float>{s}),
      fbb.CreateVector(std::vector<int64_t>{zp}));
}

std::vector<uint8_t> Finish(Fbb& fbb, const std::vector<flatbuffers::Offset<tflite::Buffer>>& buffers,
                            const std::vector<flatbuffers::Offset<tflite::Tensor>>& tensors,
                            flatbuffers::Offset<tflite::Operator> op,
                            flatbuffers::Offset<tflite::OperatorCode> code,
                            int n_tensors) {
  const int32_t in[] = {0};
  const int32_t out[] = {n_tensors - 1};
  auto sg = tflite::CreateSubGraph(
      fbb, fbb.CreateVector(tensors), fbb.CreateVector(in, 1),
      fbb.CreateVector(out, 1),
      fbb.CreateVector(std::vector<flatbuffers::Offset<tflite::Operator>>{op}));
  auto model = tflite::CreateModel(
      fbb, TFLITE_SCHEMA_VERSION,
      fbb.CreateVector(std::vector<flatbuffers::Offset<tflite::OperatorCode>>{code}),
      fbb.CreateVector(std::vector<flatbuffers::Offset<tflite::SubGraph>>{sg}), 0,
      fbb.CreateVector(buffers));
  tflite::FinishModelBuffer(fbb, model);
  return std::vector<uint8_t>(fbb.GetBufferPointer(),
                              fbb.GetBufferPointer() + fbb.GetSize());
}

void OutSize(const BenchLayer& l, int* oh, int* ow) {
  if (l.padding == tflite::Padding_SAME) {
    *oh = (l.h + l.sh - 1) / l.sh;
    *ow = (l.w + l.sw - 1) / l.sw;
  } else {
    *oh = (l.h - l.kh + l.sh) / l.sh;
    *ow = (l.w - l.kw + l.sw) / l.sw;
  }
}

// Dense CONV_2D with a filterlet-pruned filter (OHWI).
std::vector<uint8_t> ConvModel(const BenchLayer& l, const std::vector<int8_t>& filter,
                               const std::vector<int32_t>& bias, const Quant& q) {
  Fbb fbb(4096, &g_heap);
  int oh, ow;
  OutSize(l, &oh, &ow);
  std::vector<flatbuffers::Offset<tflite::Buffer>> buffers = {
      tflite::CreateBuffer(fbb), DataBuffer(fbb, filter.data(), filter.size()),
      DataBuffer(fbb, bias.data(), bias.size() * 4)};
  std::vector<float> bias_scales;
  for (float fs : q.filter_scales) bias_scales.push_back(q.in_scale * fs);
  const std::vector<int64_t> zeros(l.cout, 0);
  std::vector<flatbuffers::Offset<tflite::Tensor>> t = {
      tflite::CreateTensor(fbb, fbb.CreateVector(std::vector<int32_t>{1, l.h, l.w, l.cin}),
                           tflite::TensorType_INT8, 0, fbb.CreateString("in"),
                           PerTensor(fbb, q.in_scale, q.in_zp)),
      tflite::CreateTensor(
          fbb, fbb.CreateVector(std::vector<int32_t>{l.cout, l.kh, l.kw, l.cin}),
          tflite::TensorType_INT8, 1, fbb.CreateString("filter"),
          tflite::CreateQuantizationParameters(fbb, 0, 0, fbb.CreateVector(q.filter_scales),
                                               fbb.CreateVector(zeros),
                                               tflite::QuantizationDetails_NONE, 0, 0)),
      tflite::CreateTensor(
          fbb, fbb.CreateVector(std::vector<int32_t>{l.cout}), tflite::TensorType_INT32, 2,
          fbb.CreateString("bias"),
          tflite::CreateQuantizationParameters(fbb, 0, 0, fbb.CreateVector(bias_scales),
                                               fbb.CreateVector(zeros),
                                               tflite::QuantizationDetails_NONE, 0, 0)),
      tflite::CreateTensor(fbb, fbb.CreateVector(std::vector<int32_t>{1, oh, ow, l.cout}),
                           tflite::TensorType_INT8, 0, fbb.CreateString("out"),
                           PerTensor(fbb, q.out_scale, q.out_zp)),
  };
  const int32_t ins[] = {0, 1, 2};
  const int32_t outs[] = {3};
  auto op = tflite::CreateOperator(
      fbb, 0, fbb.CreateVector(ins, 3), fbb.CreateVector(outs, 1),
      tflite::BuiltinOptions_Conv2DOptions,
      tflite::CreateConv2DOptions(fbb, l.padding, l.sw, l.sh).Union());
  auto code = tflite::CreateOperatorCode(fbb, tflite::BuiltinOperator_CONV_2D, 0, 1,
                                         tflite::BuiltinOperator_CONV_2D);
  return Finish(fbb, buffers, t, op, code, 4);
}

// The same layer in DTMM form, built per docs/contract.md.
std::vector<uint8_t> DtmmModel(const BenchLayer& l, const std::vector<int8_t>& filter,
                               const std::vector<int32_t>& bias, const Quant& q) {
  const int k = l.kh * l.kw;
  std::vector<uint8_t> bitmap((l.cout * k + 7) / 8, 0);
  std::vector<int8_t> values;
  std::vector<int32_t> folded(l.cout), mult(l.cout), shift(l.cout);
  for (int b = 0; b < l.cout * k; ++b) {
    bool kept = false;
    for (int c = 0; c < l.cin; ++c) kept = kept || filter[b * l.cin + c] != 0;
    if (!kept) continue;
    bitmap[b >> 3] = static_cast<uint8_t>(bitmap[b >> 3] | (1u << (b & 7)));
    values.insert(values.end(), filter.begin() + b * l.cin,
                  filter.begin() + (b + 1) * l.cin);
  }
  for (int oc = 0; oc < l.cout; ++oc) {
    int32_t sum = 0;
    for (int i = 0; i < k * l.cin; ++i) sum += filter[oc * k * l.cin + i];
    folded[oc] = bias[oc] - q.in_zp * sum;
    int s = 0;
    tflite::QuantizeMultiplier(static_cast<double>(q.in_scale) *
                                   static_cast<double>(q.filter_scales[oc]) /
                                   static_cast<double>(q.out_scale),
                               &mult[oc], &s);
    shift[oc] = s;
  }
  const int n_kept = static_cast<int>(values.size()) / l.cin;
  if (values.empty()) values.push_back(0);  // keep a non-empty buffer
  Fbb fbb(4096, &g_heap);
  int oh, ow;
  OutSize(l, &oh, &ow);
  std::vector<flatbuffers::Offset<tflite::Buffer>> buffers = {
      tflite::CreateBuffer(fbb),
      DataBuffer(fbb, values.data(), static_cast<size_t>(n_kept) * l.cin),
      DataBuffer(fbb, bitmap.data(), bitmap.size()),
      DataBuffer(fbb, folded.data(), folded.size() * 4),
      DataBuffer(fbb, mult.data(), mult.size() * 4),
      DataBuffer(fbb, shift.data(), shift.size() * 4)};
  auto vec = [&](std::vector<int32_t> v) { return fbb.CreateVector(v); };
  std::vector<flatbuffers::Offset<tflite::Tensor>> t = {
      tflite::CreateTensor(fbb, vec({1, l.h, l.w, l.cin}), tflite::TensorType_INT8, 0,
                           fbb.CreateString("in"), PerTensor(fbb, q.in_scale, q.in_zp)),
      tflite::CreateTensor(fbb, vec({n_kept, l.cin}), tflite::TensorType_INT8, 1,
                           fbb.CreateString("filter/dtmm_values")),
      tflite::CreateTensor(fbb, vec({static_cast<int32_t>(bitmap.size())}),
                           tflite::TensorType_UINT8, 2,
                           fbb.CreateString("filter/dtmm_bitmap")),
      tflite::CreateTensor(fbb, vec({l.cout}), tflite::TensorType_INT32, 3,
                           fbb.CreateString("filter/dtmm_bias")),
      tflite::CreateTensor(fbb, vec({l.cout}), tflite::TensorType_INT32, 4,
                           fbb.CreateString("filter/dtmm_multiplier")),
      tflite::CreateTensor(fbb, vec({l.cout}), tflite::TensorType_INT32, 5,
                           fbb.CreateString("filter/dtmm_shift")),
      tflite::CreateTensor(fbb, vec({1, oh, ow, l.cout}), tflite::TensorType_INT8, 0,
                           fbb.CreateString("out"), PerTensor(fbb, q.out_scale, q.out_zp)),
  };
  flexbuffers::Builder opts;
  const size_t start = opts.StartMap();
  opts.Int("version", 1);
  opts.Int("kh", l.kh);
  opts.Int("kw", l.kw);
  opts.Int("sh", l.sh);
  opts.Int("sw", l.sw);
  opts.Int("dh", 1);
  opts.Int("dw", 1);
  opts.Int("padding", l.padding == tflite::Padding_SAME ? 0 : 1);
  opts.Int("in_zp", q.in_zp);
  opts.Int("act_min", -128);
  opts.Int("act_max", 127);
  opts.EndMap(start);
  opts.Finish();
  const int32_t ins[] = {0, 1, 2, 3, 4, 5};
  const int32_t outs[] = {6};
  auto op = tflite::CreateOperator(fbb, 0, fbb.CreateVector(ins, 6),
                                   fbb.CreateVector(outs, 1), tflite::BuiltinOptions_NONE,
                                   0, fbb.CreateVector(opts.GetBuffer()));
  auto code = tflite::CreateOperatorCode(fbb, tflite::BuiltinOperator_CUSTOM,
                                         fbb.CreateString("DTMM_CONV_2D"), 1,
                                         tflite::BuiltinOperator_CUSTOM);
  return Finish(fbb, buffers, t, op, code, 7);
}

constexpr size_t kArenaSize = 160 * 1024;
alignas(16) uint8_t g_arena[kArenaSize];

struct Measured {
  OpArena op;
  size_t arena_used;
};

// Runs a one-op model with `reg` wrapped; copies the output into `out`.
bool Measure(const std::vector<uint8_t>& model_data, const TFLMRegistration& reg,
             bool custom, const std::vector<int8_t>& input,
             std::vector<int8_t>* out, Measured* m) {
  const TFLMRegistration wrapped = Wrap(reg);
  tflite::MicroMutableOpResolver<1> resolver;
  if (custom) {
    if (resolver.AddCustom("DTMM_CONV_2D", &wrapped) != kTfLiteOk) return false;
  } else if (resolver.AddConv2D(wrapped) != kTfLiteOk) {
    return false;
  }
  const tflite::Model* model = tflite::GetModel(model_data.data());
  tflite::MicroInterpreter interpreter(model, resolver, g_arena, kArenaSize);
  if (interpreter.AllocateTensors() != kTfLiteOk) return false;
  m->op = g_rec;
  m->arena_used = interpreter.arena_used_bytes();
  TfLiteTensor* in = interpreter.input(0);
  if (in->bytes != input.size()) return false;
  memcpy(in->data.int8, input.data(), input.size());
  if (interpreter.Invoke() != kTfLiteOk) return false;
  const TfLiteTensor* o = interpreter.output(0);
  out->assign(o->data.int8, o->data.int8 + o->bytes);
  return true;
}

TEST(DtmmArena, NotLargerThanConv2D) {
#if defined(CMSIS_NN)
  const char* conv_kind = "CMSIS-NN CONV_2D";
#else
  const char* conv_kind = "reference CONV_2D";
#endif
  MicroPrintf("| layer | %s persistent | scratch | arena_used | DTMM persistent | "
              "scratch | arena_used |", conv_kind);
  MicroPrintf("|---|---:|---:|---:|---:|---:|---:|");
  for (const BenchLayer& l : kLayers) {
    Quant q;
    const int k = l.kh * l.kw;
    std::vector<int8_t> filter(static_cast<size_t>(l.cout) * k * l.cin);
    std::vector<int32_t> bias(l.cout);
    for (int oc = 0; oc < l.cout; ++oc) {
      q.filter_scales.push_back(0.002f + 0.0001f * Next(0, 20));
      bias[oc] = Next(-3000, 3000);
      for (int p = 0; p < k; ++p) {
        const bool pruned = Next(0, 99) < 60;
        for (int c = 0; c < l.cin; ++c) {
          filter[(oc * k + p) * l.cin + c] =
              pruned ? 0 : static_cast<int8_t>(Next(-127, 127) | 1);
        }
      }
    }
    std::vector<int8_t> input(static_cast<size_t>(l.h) * l.w * l.cin);
    for (auto& v : input) v = static_cast<int8_t>(Next(-128, 127));

    Measured conv = {}, dtmm = {};
    std::vector<int8_t> out_conv, out_dtmm;
    ASSERT_TRUE(Measure(ConvModel(l, filter, bias, q), tflite::Register_CONV_2D(),
                        false, input, &out_conv, &conv));
    ASSERT_TRUE(Measure(DtmmModel(l, filter, bias, q), dtmm::Register_DTMM_CONV_2D(),
                        true, input, &out_dtmm, &dtmm));
    MicroPrintf("| %s | %d | %d | %d | %d | %d | %d |", l.name,
                static_cast<int>(conv.op.persistent), static_cast<int>(conv.op.scratch),
                static_cast<int>(conv.arena_used), static_cast<int>(dtmm.op.persistent),
                static_cast<int>(dtmm.op.scratch), static_cast<int>(dtmm.arena_used));
    EXPECT_TRUE(out_conv == out_dtmm);
    EXPECT_LE(dtmm.op.persistent, conv.op.persistent);
#if defined(CMSIS_NN)
    // The bar (docs/tflm.md): persistent + scratch not above CMSIS-NN's CONV_2D.
    // The reference CONV_2D uses no scratch; against it only persistent bytes are
    // compared, and the padded layers where DTMM's im2col scratch makes the total
    // larger are reported in the table above.
    EXPECT_LE(dtmm.op.persistent + dtmm.op.scratch, conv.op.persistent + conv.op.scratch);
#endif
  }
}

}  // namespace

TF_LITE_MICRO_TESTS_MAIN
