// bench/models' TFLM application: runs one .tflite model (dense or DTMM) and marks
// every Invoke() and every operator for the instruction-counting QEMU plugin.
//
//   dtmm_model_app MODEL.tflite INVOKES SEED DUMP.bin
//
// Compiled by TFLM's own make (bench/model_app.mk) for a Cortex-M target with
// OPTIMIZED_KERNEL_DIR=cmsis_nn and EXTERNAL_DIR=<dtmm_ops>, run bare metal under
// qemu-system-arm with semihosting (the model is read from, and the dump written to,
// host files; bench/model_app_startup.c).
//
// Three interpreters run the same model on the same inputs, each Invoke() in turn:
//  * "timing": TFLM's default (greedy) memory plan, the one a device uses, nothing
//    added; the app marks just before and after its Invoke(). Its
//    arena_used_bytes() is reported.
//  * "per-op": the same, but its op resolver hands out copies of the registrations
//    whose invoke is wrapped to mark just before and after the kernel's own invoke
//    (nested for ops that run subgraphs, e.g. CALL_ONCE). Kept apart from "timing"
//    so the whole-model counts carry no hook instructions.
//  * "check": the linear plan (every tensor keeps its own memory). After each
//    Invoke() every non-constant tensor of every subgraph is written to DUMP.bin, so
//    bench/models can compare a DTMM model with its dense original tensor by tensor.
// All three must give equal outputs after each Invoke(), which ties the dumped
// tensors to the measured runs. Inputs: deterministic pseudo-random values from SEED
// and the invoke number. Streaming models get MicroResourceVariables (one per
// VAR_HANDLE op) in each interpreter's own arena.
//
// stdout lines: "ARENA <bytes>", "EV <kind> <invoke> <depth> <op> <tag>" (one per
// dtmm_bench_mark() call, in order: kind I/i = Invoke begin/end, O/o = operator
// begin/end; <op> counts the ops run at that depth since its parent began), then
// "DONE". Any failure prints one "error: ..." line and exits.

#include <array>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "dtmm_ops.h"
#include "tensorflow/lite/micro/memory_helpers.h"
#include "tensorflow/lite/micro/micro_allocator.h"
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"
#include "tensorflow/lite/micro/micro_op_resolver.h"
#include "tensorflow/lite/micro/micro_resource_variable.h"
#include "tensorflow/lite/schema/schema_generated.h"

// Sized for the mps2-an386's 16 MiB PSRAM (bench/model_app.mk).
#ifndef DTMM_BENCH_MODEL_BYTES
#define DTMM_BENCH_MODEL_BYTES (2 << 20)
#endif
#ifndef DTMM_BENCH_ARENA_BYTES
#define DTMM_BENCH_ARENA_BYTES (2 << 20)
#endif
#ifndef DTMM_BENCH_CHECK_ARENA_BYTES
#define DTMM_BENCH_CHECK_ARENA_BYTES (7 << 20)
#endif

// The counting plugin writes its running instruction count whenever this function's
// first instruction executes. noinline + the asm keep exactly one copy of it; noipa
// (GCC) keeps callers from relying on it clobbering no registers, which would move
// their own work between two marks.
#if defined(__GNUC__) && !defined(__clang__)
#define DTMM_BENCH_NOIPA noipa,
#else
#define DTMM_BENCH_NOIPA
#endif
extern "C" __attribute__((DTMM_BENCH_NOIPA noinline, used)) void dtmm_bench_mark(void) {
  __asm__ volatile("" ::: "memory");
}

namespace {

alignas(16) uint8_t g_model[DTMM_BENCH_MODEL_BYTES];
alignas(16) uint8_t g_timing_arena[DTMM_BENCH_ARENA_BYTES];
alignas(16) uint8_t g_per_op_arena[DTMM_BENCH_ARENA_BYTES];
alignas(16) uint8_t g_check_arena[DTMM_BENCH_CHECK_ARENA_BYTES];

[[noreturn]] void Fail(const char* what, const char* detail = "") {
  printf("error: %s%s\n", what, detail);
  fflush(stdout);
  exit(1);
}

// One record per dtmm_bench_mark() call, printed after the runs (printing inside
// the measured spans would count the semihosting calls).
struct Event {
  char kind;
  uint8_t depth;
  uint16_t op;
  uint16_t invoke;
  const char* tag;
};
constexpr int kMaxEvents = 1 << 15;
constexpr int kMaxDepth = 16;
Event g_events[kMaxEvents];
int g_num_events = 0;
int g_invoke = 0;

void Log(char kind, int depth, int op, const char* tag) {
  if (g_num_events == kMaxEvents) Fail("too many operator events");
  g_events[g_num_events++] = {kind, static_cast<uint8_t>(depth), static_cast<uint16_t>(op),
                              static_cast<uint16_t>(g_invoke), tag};
}

// -- per-op marks: wrapped registrations ------------------------------------------
// Each wrapped registration I calls Wrapped<I>, which logs (outside the span),
// marks, calls the kernel's invoke, marks, logs. Between the two marks: the kernel
// and the few instructions of the call itself.
constexpr int kMaxWrapped = 64;
TfLiteStatus (*g_kernel_invoke[kMaxWrapped])(TfLiteContext*, TfLiteNode*);
const char* g_kernel_name[kMaxWrapped];
int g_depth = 0;
int g_next_op[kMaxDepth + 1];

template <int I>
TfLiteStatus Wrapped(TfLiteContext* context, TfLiteNode* node) {
  const int depth = g_depth;
  if (depth >= kMaxDepth) Fail("operators nested too deep");
  const int op = g_next_op[depth]++;
  g_next_op[depth + 1] = 0;
  Log('O', depth, op, g_kernel_name[I]);
  g_depth = depth + 1;
  dtmm_bench_mark();
  const TfLiteStatus status = g_kernel_invoke[I](context, node);
  dtmm_bench_mark();
  g_depth = depth;
  Log('o', depth, op, g_kernel_name[I]);
  return status;
}

template <int... I>
constexpr auto MakeWrappers(std::integer_sequence<int, I...>) {
  return std::array<TfLiteStatus (*)(TfLiteContext*, TfLiteNode*), sizeof...(I)>{
      &Wrapped<I>...};
}
constexpr auto kWrappers = MakeWrappers(std::make_integer_sequence<int, kMaxWrapped>{});

// Resolves ops through `base` and hands out copies of its registrations with the
// invoke wrapped; everything else (init, prepare, parsers) is the kernel's own.
class WrappingOpResolver : public tflite::MicroOpResolver {
 public:
  explicit WrappingOpResolver(const tflite::MicroOpResolver& base) : base_(base) {}
  const TFLMRegistration* FindOp(tflite::BuiltinOperator op) const override {
    return Wrap(base_.FindOp(op), tflite::EnumNameBuiltinOperator(op));
  }
  const TFLMRegistration* FindOp(const char* op) const override {
    return Wrap(base_.FindOp(op), op);
  }
  tflite::TfLiteBridgeBuiltinParseFunction GetOpDataParser(
      tflite::BuiltinOperator op) const override {
    return base_.GetOpDataParser(op);
  }

 private:
  const TFLMRegistration* Wrap(const TFLMRegistration* r, const char* name) const {
    if (!r) return nullptr;
    for (int i = 0; i < count_; ++i)
      if (original_[i] == r) return &wrapped_[i];
    if (count_ == kMaxWrapped) Fail("more distinct ops than kMaxWrapped");
    original_[count_] = r;
    wrapped_[count_] = *r;
    wrapped_[count_].invoke = kWrappers[count_];
    g_kernel_invoke[count_] = r->invoke;
    g_kernel_name[count_] = r->custom_name ? r->custom_name : name;
    return &wrapped_[count_++];
  }
  const tflite::MicroOpResolver& base_;
  mutable const TFLMRegistration* original_[kMaxWrapped] = {};
  mutable TFLMRegistration wrapped_[kMaxWrapped] = {};
  mutable int count_ = 0;
};

// Every op the bench models use and more; a model needing another one fails in
// AllocateTensors with TFLM's "Didn't find op" message.
constexpr int kNumOps = 44 + dtmm::kDtmmOpCount;
using Resolver = tflite::MicroMutableOpResolver<kNumOps>;

void AddOps(Resolver& r) {
  TfLiteStatus s = kTfLiteOk;
  s = static_cast<TfLiteStatus>(
      s | r.AddAdd() | r.AddAssignVariable() | r.AddAveragePool2D() |
      r.AddBatchMatMul() | r.AddCallOnce() | r.AddConcatenation() |
      r.AddConv2D() | r.AddDepthwiseConv2D() | r.AddDequantize() |
      r.AddExpandDims() | r.AddFullyConnected() | r.AddGather() |
      r.AddHardSwish() | r.AddLeakyRelu() | r.AddLogistic() |
      r.AddMaxPool2D() | r.AddMaximum() | r.AddMean() | r.AddMinimum() |
      r.AddMul() | r.AddPack() | r.AddPad() | r.AddPadV2() | r.AddPrelu() |
      r.AddQuantize() | r.AddReadVariable() | r.AddRelu() | r.AddRelu6() |
      r.AddReshape() | r.AddResizeNearestNeighbor() | r.AddShape() |
      r.AddSlice() | r.AddSoftmax() | r.AddSplit() | r.AddSplitV() |
      r.AddSqueeze() | r.AddStridedSlice() | r.AddSub() | r.AddSum() |
      r.AddTanh() | r.AddTranspose() | r.AddTransposeConv() | r.AddUnpack() |
      r.AddVarHandle() | dtmm::AddDtmmOps(r));
  if (s != kTfLiteOk) Fail("op resolver is too small");
}

size_t ReadModel(const char* path) {
  FILE* f = fopen(path, "rb");
  if (!f) Fail("cannot open model ", path);
  size_t n = fread(g_model, 1, sizeof(g_model), f);
  const bool more = fgetc(f) != EOF;
  fclose(f);
  if (more) Fail("model is larger than DTMM_BENCH_MODEL_BYTES: ", path);
  if (n < 8) Fail("model file is too short: ", path);
  return n;
}

int CountVarHandles(const tflite::Model* model) {
  int n = 0;
  const auto* codes = model->operator_codes();
  for (const auto* sg : *model->subgraphs()) {
    if (!sg->operators()) continue;
    for (const auto* op : *sg->operators()) {
      const auto* code = codes->Get(op->opcode_index());
      const int builtin = static_cast<int>(code->builtin_code()) > code->deprecated_builtin_code()
                              ? static_cast<int>(code->builtin_code())
                              : code->deprecated_builtin_code();
      if (builtin == tflite::BuiltinOperator_VAR_HANDLE) ++n;
    }
  }
  return n;
}

uint32_t g_rng;
uint32_t NextRandom() {  // xorshift32: same stream on every target
  g_rng ^= g_rng << 13;
  g_rng ^= g_rng >> 17;
  g_rng ^= g_rng << 5;
  return g_rng;
}

void FillInputs(tflite::MicroInterpreter& interp, uint32_t seed, int invoke) {
  g_rng = seed * 2654435761u + static_cast<uint32_t>(invoke) * 40503u + 1u;
  if (g_rng == 0) g_rng = 1;
  for (size_t i = 0; i < interp.inputs_size(); ++i) {
    TfLiteTensor* t = interp.input(i);
    if (t->type == kTfLiteFloat32) {
      float* p = tflite::GetTensorData<float>(t);
      for (size_t k = 0; k < t->bytes / sizeof(float); ++k)
        p[k] = static_cast<float>(static_cast<int32_t>(NextRandom() >> 16) - 32768) /
               32768.0f;
    } else {
      uint8_t* p = tflite::GetTensorData<uint8_t>(t);
      for (size_t k = 0; k < t->bytes; ++k) p[k] = static_cast<uint8_t>(NextRandom() >> 24);
    }
  }
}

// Around the timing Invoke(): log before the begin mark and after the end mark, so
// the span holds only the call (and the marker's own return).
void MarkInvokeBegin() {
  Log('I', 0, 0, "Invoke");
  dtmm_bench_mark();
}
void MarkInvokeEnd() {
  dtmm_bench_mark();
  Log('i', 0, 0, "Invoke");
}

void CopyInputs(tflite::MicroInterpreter& from, tflite::MicroInterpreter& to) {
  for (size_t i = 0; i < from.inputs_size(); ++i) {
    if (from.input(i)->bytes != to.input(i)->bytes) Fail("input sizes differ");
    memcpy(to.input(i)->data.raw, from.input(i)->data.raw, from.input(i)->bytes);
  }
}

void CheckOutputsEqual(tflite::MicroInterpreter& a, tflite::MicroInterpreter& b,
                       const char* what) {
  for (size_t i = 0; i < a.outputs_size(); ++i) {
    const TfLiteTensor* x = a.output(i);
    const TfLiteTensor* y = b.output(i);
    if (x->bytes != y->bytes || memcmp(x->data.raw, y->data.raw, x->bytes) != 0) {
      printf("error: Invoke #%d: output %d of the timing interpreter differs from the "
             "%s interpreter's\n", g_invoke, static_cast<int>(i), what);
      fflush(stdout);
      exit(1);
    }
  }
}

bool IsConstant(const tflite::Model* model, const tflite::Tensor* t) {
  const auto* buffers = model->buffers();
  if (!buffers || t->buffer() >= buffers->size()) return false;
  const auto* data = buffers->Get(t->buffer())->data();
  return data && data->size() > 0;
}

// Record: u32 invoke, u32 subgraph, u32 tensor, u32 bytes, then the bytes.
void DumpTensors(FILE* f, const tflite::Model* model, tflite::MicroInterpreter& interp) {
  const auto* subgraphs = model->subgraphs();
  for (uint32_t s = 0; s < subgraphs->size(); ++s) {
    const auto* tensors = subgraphs->Get(s)->tensors();
    if (!tensors) continue;
    for (uint32_t t = 0; t < tensors->size(); ++t) {
      if (IsConstant(model, tensors->Get(t))) continue;
      TfLiteEvalTensor* e = interp.GetTensor(static_cast<int>(t), static_cast<int>(s));
      size_t bytes = 0;
      if (!e || !e->data.data ||
          tflite::TfLiteEvalTensorByteLength(e, &bytes) != kTfLiteOk)
        continue;  // never allocated (unused) or a type without a byte length
      const uint32_t head[4] = {static_cast<uint32_t>(g_invoke), s, t,
                                static_cast<uint32_t>(bytes)};
      if (fwrite(head, sizeof(head), 1, f) != 1 ||
          (bytes && fwrite(e->data.data, bytes, 1, f) != 1))
        Fail("cannot write the tensor dump");
    }
  }
}

struct Instance {
  tflite::MicroAllocator* allocator;
  tflite::MicroResourceVariables* variables;
};

Instance MakeInstance(uint8_t* arena, size_t bytes, tflite::MemoryPlannerType planner,
                      int num_vars, const char* what) {
  Instance in{tflite::MicroAllocator::Create(arena, bytes, planner), nullptr};
  if (!in.allocator) Fail("cannot create the allocator of the interpreter ", what);
  if (num_vars) {
    in.variables = tflite::MicroResourceVariables::Create(in.allocator, num_vars);
    if (!in.variables) Fail("cannot create resource variables for ", what);
  }
  return in;
}

void Allocate(tflite::MicroInterpreter& interp, const char* what) {
  if (interp.AllocateTensors() != kTfLiteOk)
    Fail("AllocateTensors failed (see the message above) in the interpreter ", what);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 5) Fail("usage: dtmm_model_app MODEL.tflite INVOKES SEED DUMP.bin");
  const int invokes = atoi(argv[2]);
  const uint32_t seed = static_cast<uint32_t>(strtoul(argv[3], nullptr, 10));
  if (invokes < 1) Fail("INVOKES must be >= 1");
  ReadModel(argv[1]);
  const tflite::Model* model = tflite::GetModel(g_model);
  if (model->version() != TFLITE_SCHEMA_VERSION) Fail("unsupported schema version");
#if defined(__ARM_FEATURE_MVE) && (__ARM_FEATURE_MVE & 1)
  printf("ISA mve\n");
#elif defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
  printf("ISA dsp\n");
#else
  printf("ISA scalar\n");
#endif

  static Resolver resolver;
  AddOps(resolver);
  static WrappingOpResolver per_op_resolver(resolver);
  const int num_vars = CountVarHandles(model);
  using tflite::MemoryPlannerType;
  const Instance t = MakeInstance(g_timing_arena, sizeof(g_timing_arena),
                                  MemoryPlannerType::kGreedy, num_vars, "timing");
  const Instance p = MakeInstance(g_per_op_arena, sizeof(g_per_op_arena),
                                  MemoryPlannerType::kGreedy, num_vars, "per-op");
  const Instance c = MakeInstance(g_check_arena, sizeof(g_check_arena),
                                  MemoryPlannerType::kLinear, num_vars, "check");
  static tflite::MicroInterpreter timing(model, resolver, t.allocator, t.variables);
  static tflite::MicroInterpreter per_op(model, per_op_resolver, p.allocator, p.variables);
  static tflite::MicroInterpreter check(model, resolver, c.allocator, c.variables);
  Allocate(timing, "timing");
  Allocate(per_op, "per-op");
  Allocate(check, "check");
  if (!check.preserve_all_tensors()) Fail("the check interpreter does not keep tensors");
  printf("ARENA %u\n", static_cast<unsigned>(timing.arena_used_bytes()));

  FILE* dump = fopen(argv[4], "wb");
  if (!dump) Fail("cannot create ", argv[4]);
  for (g_invoke = 1; g_invoke <= invokes; ++g_invoke) {
    FillInputs(timing, seed, g_invoke);
    CopyInputs(timing, per_op);
    CopyInputs(timing, check);
    MarkInvokeBegin();
    const TfLiteStatus status = timing.Invoke();
    MarkInvokeEnd();
    if (status != kTfLiteOk) Fail("Invoke failed (timing)");
    g_depth = 0;
    g_next_op[0] = 0;
    if (per_op.Invoke() != kTfLiteOk) Fail("Invoke failed (per-op)");
    if (check.Invoke() != kTfLiteOk) Fail("Invoke failed (check)");
    CheckOutputsEqual(timing, per_op, "per-op");
    CheckOutputsEqual(timing, check, "check");
    DumpTensors(dump, model, check);
  }
  if (fclose(dump) != 0) Fail("cannot write the tensor dump");
  for (int i = 0; i < g_num_events; ++i) {
    const Event& e = g_events[i];
    printf("EV %c %u %u %u %s\n", e.kind, e.invoke, e.depth, e.op, e.tag ? e.tag : "?");
  }
  printf("DONE\n");
  return 0;
}
