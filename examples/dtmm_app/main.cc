// A minimal TFLM app with DTMM: loads a .tflite (DTMM-converted or not), runs
// it, prints every output and the arena it used.
//
//   dtmm_app MODEL.tflite [--runs N] [--input FILE] [--arena-kib K]
//
//   --runs N       invoke N times (streaming models keep their state between
//                  invocations); default 1
//   --input FILE   raw input bytes: for each run, every input tensor in order;
//                  default: a fixed pseudo-random pattern per run
//   --arena-kib K  tensor arena size; default 256
//
// Output, one line each: the model's ops, then per run and output tensor
// "run R output I TYPE[SHAPE]: v0 v1 ...", then "arena: used U of A bytes".
// Exit code 0; 1 if TFLM fails (allocation, Prepare, Invoke); 2 for bad
// arguments or a file that is not a valid .tflite.
//
// On a microcontroller the model is a C array in flash (`xxd -i`) and the
// arena a static buffer; the TFLM calls are the same.

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "dtmm_ops.h"
#include "flatbuffers/flatbuffers.h"
#include "tensorflow/lite/c/common.h"
#include "tensorflow/lite/micro/micro_allocator.h"
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"
#include "tensorflow/lite/micro/micro_resource_variable.h"
#include "tensorflow/lite/schema/schema_generated.h"
#include "tensorflow/lite/schema/schema_utils.h"

namespace {

// The builtin ops registered below; the resolver needs one slot per Add*() call
// plus dtmm::kDtmmOpCount for the DTMM ops.
constexpr int kBuiltinOpCount = 17;
using OpResolver =
    tflite::MicroMutableOpResolver<kBuiltinOpCount + dtmm::kDtmmOpCount>;

// Streaming models (microWakeWord) keep state in resource variables; TFLM
// needs a MicroResourceVariables with room for all of them.
constexpr int kMaxResourceVariables = 32;

// Ops of int8 CNNs and keyword spotting models, and the variable ops of
// streaming models. A model with another op fails in AllocateTensors with
// TFLM's "Didn't find op for builtin opcode ..."; add it here.
TfLiteStatus RegisterOps(OpResolver& resolver) {
  TF_LITE_ENSURE_STATUS(resolver.AddConv2D());  // convs left dense by `dtmm convert`
  TF_LITE_ENSURE_STATUS(resolver.AddDepthwiseConv2D());
  TF_LITE_ENSURE_STATUS(resolver.AddFullyConnected());
  TF_LITE_ENSURE_STATUS(resolver.AddMaxPool2D());
  TF_LITE_ENSURE_STATUS(resolver.AddAveragePool2D());
  TF_LITE_ENSURE_STATUS(resolver.AddReshape());
  TF_LITE_ENSURE_STATUS(resolver.AddAdd());
  TF_LITE_ENSURE_STATUS(resolver.AddConcatenation());
  TF_LITE_ENSURE_STATUS(resolver.AddStridedSlice());
  TF_LITE_ENSURE_STATUS(resolver.AddSoftmax());
  TF_LITE_ENSURE_STATUS(resolver.AddLogistic());
  TF_LITE_ENSURE_STATUS(resolver.AddQuantize());
  TF_LITE_ENSURE_STATUS(resolver.AddDequantize());
  TF_LITE_ENSURE_STATUS(resolver.AddCallOnce());
  TF_LITE_ENSURE_STATUS(resolver.AddVarHandle());
  TF_LITE_ENSURE_STATUS(resolver.AddReadVariable());
  TF_LITE_ENSURE_STATUS(resolver.AddAssignVariable());
  return dtmm::AddDtmmOps(resolver);  // "DTMM_CONV_2D"
}

int Usage(const char* argv0) {
  std::fprintf(stderr,
               "usage: %s MODEL.tflite [--runs N] [--input FILE] "
               "[--arena-kib K]\n",
               argv0);
  return 2;
}

int Error(const std::string& what) {
  std::fprintf(stderr, "dtmm_app: error: %s\n", what.c_str());
  return 2;
}

bool ReadFile(const char* path, std::vector<uint8_t>* bytes) {
  FILE* f = std::fopen(path, "rb");
  if (f == nullptr) return false;
  uint8_t chunk[4096];
  size_t n;
  while ((n = std::fread(chunk, 1, sizeof(chunk), f)) > 0) {
    bytes->insert(bytes->end(), chunk, chunk + n);
  }
  const bool ok = !std::ferror(f);
  std::fclose(f);
  return ok;
}

bool ParseCount(const char* text, long min, long max, long* value) {
  char* end = nullptr;
  const long v = std::strtol(text, &end, 10);
  if (end == text || *end != '\0' || v < min || v > max) return false;
  *value = v;
  return true;
}

// "CONV_2D x2, DTMM_CONV_2D x3": what the model runs, so a user sees at once
// whether the conversion took.
std::string OpSummary(const tflite::Model* model) {
  std::map<std::string, int> counts;
  const auto* codes = model->operator_codes();
  for (const auto* subgraph : *model->subgraphs()) {
    if (subgraph->operators() == nullptr) continue;
    for (const auto* op : *subgraph->operators()) {
      std::string name = "?";
      if (codes != nullptr && op->opcode_index() < codes->size()) {
        const auto* code = codes->Get(op->opcode_index());
        const tflite::BuiltinOperator builtin = tflite::GetBuiltinCode(code);
        if (builtin == tflite::BuiltinOperator_CUSTOM) {
          name = code->custom_code() ? code->custom_code()->str() : "CUSTOM";
        } else {
          name = tflite::EnumNameBuiltinOperator(builtin);
        }
      }
      ++counts[name];
    }
  }
  std::string out;
  for (const auto& entry : counts) {
    if (!out.empty()) out += ", ";
    out += entry.first + " x" + std::to_string(entry.second);
  }
  return out;
}

// xorshift32: the same inputs on every host, for comparing two models' outputs.
uint32_t NextRandom(uint32_t* state) {
  uint32_t x = *state;
  x ^= x << 13;
  x ^= x >> 17;
  x ^= x << 5;
  return *state = x;
}

void FillPattern(TfLiteTensor* t, uint32_t seed) {
  uint32_t state = seed * 2654435761u + 1u;
  if (t->type == kTfLiteFloat32) {
    float* v = t->data.f;
    for (size_t i = 0; i < t->bytes / sizeof(float); ++i) {
      v[i] = static_cast<float>(NextRandom(&state) % 2001) / 1000.0f - 1.0f;
    }
  } else {
    uint8_t* v = t->data.uint8;
    for (size_t i = 0; i < t->bytes; ++i) {
      v[i] = static_cast<uint8_t>(NextRandom(&state) >> 24);
    }
  }
}

void PrintTensor(int run, size_t index, const TfLiteTensor* t) {
  std::printf("run %d output %zu %s[", run, index, TfLiteTypeGetName(t->type));
  for (int d = 0; t->dims != nullptr && d < t->dims->size; ++d) {
    std::printf(d ? ",%d" : "%d", t->dims->data[d]);
  }
  std::printf("]:");
  switch (t->type) {
    case kTfLiteInt8:
      for (size_t i = 0; i < t->bytes; ++i) std::printf(" %d", t->data.int8[i]);
      break;
    case kTfLiteUInt8:
      for (size_t i = 0; i < t->bytes; ++i) std::printf(" %u", t->data.uint8[i]);
      break;
    case kTfLiteInt16:
      for (size_t i = 0; i < t->bytes / 2; ++i) std::printf(" %d", t->data.i16[i]);
      break;
    case kTfLiteInt32:
      for (size_t i = 0; i < t->bytes / 4; ++i) std::printf(" %ld", static_cast<long>(t->data.i32[i]));
      break;
    case kTfLiteFloat32:
      for (size_t i = 0; i < t->bytes / 4; ++i) std::printf(" %.9g", t->data.f[i]);
      break;
    default:
      std::printf(" (%zu bytes)", t->bytes);
  }
  std::printf("\n");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || argv[1][0] == '-') return Usage(argv[0]);
  const char* model_path = argv[1];
  const char* input_path = nullptr;
  long runs = 1;
  long arena_kib = 256;
  for (int i = 2; i < argc; ++i) {
    const std::string flag = argv[i];
    if (i + 1 >= argc) return Usage(argv[0]);
    const char* value = argv[++i];
    if (flag == "--runs") {
      if (!ParseCount(value, 1, 1000000, &runs)) return Error("--runs takes 1..1000000");
    } else if (flag == "--arena-kib") {
      if (!ParseCount(value, 1, 1 << 20, &arena_kib)) return Error("--arena-kib takes 1..1048576");
    } else if (flag == "--input") {
      input_path = value;
    } else {
      return Usage(argv[0]);
    }
  }

  // The model, 16-byte aligned as flatbuffers want for their widest scalars.
  std::vector<uint8_t> file;
  if (!ReadFile(model_path, &file)) return Error(std::string("cannot read ") + model_path);
  std::vector<uint64_t> aligned((file.size() + 15) / 8 + 1);
  uint8_t* model_data = reinterpret_cast<uint8_t*>(aligned.data());
  if (reinterpret_cast<uintptr_t>(model_data) % 16 != 0) model_data += 8;
  std::memcpy(model_data, file.data(), file.size());

  // An untrusted file: check the flatbuffer before TFLM walks it.
  flatbuffers::Verifier verifier(model_data, file.size());
  if (!tflite::VerifyModelBuffer(verifier)) {
    return Error(std::string(model_path) + " is not a valid .tflite flatbuffer");
  }
  const tflite::Model* model = tflite::GetModel(model_data);
  if (model->version() != TFLITE_SCHEMA_VERSION) {
    return Error("model schema version " + std::to_string(model->version()) +
                 ", this TFLM reads " + std::to_string(TFLITE_SCHEMA_VERSION));
  }
  if (model->subgraphs() == nullptr || model->subgraphs()->size() == 0) {
    return Error(std::string(model_path) + " has no subgraph");
  }
  std::printf("model: %s\n", OpSummary(model).c_str());

  static OpResolver resolver;
  if (RegisterOps(resolver) != kTfLiteOk) {
    std::fprintf(stderr, "dtmm_app: error: registering ops failed\n");
    return 1;
  }

  const size_t arena_size = static_cast<size_t>(arena_kib) * 1024;
  std::vector<uint64_t> arena_words(arena_size / 8 + 2);
  uint8_t* arena = reinterpret_cast<uint8_t*>(arena_words.data());
  if (reinterpret_cast<uintptr_t>(arena) % 16 != 0) arena += 8;

  // The allocator comes first so the resource variables live in the same arena.
  tflite::MicroAllocator* allocator = tflite::MicroAllocator::Create(arena, arena_size);
  if (allocator == nullptr) {
    std::fprintf(stderr, "dtmm_app: error: arena of %zu bytes too small for the allocator\n", arena_size);
    return 1;
  }
  tflite::MicroResourceVariables* variables =
      tflite::MicroResourceVariables::Create(allocator, kMaxResourceVariables);
  tflite::MicroInterpreter interpreter(model, resolver, allocator, variables);
  if (interpreter.AllocateTensors() != kTfLiteOk) {
    std::fprintf(stderr, "dtmm_app: error: AllocateTensors failed (see above; a larger --arena-kib?)\n");
    return 1;
  }

  size_t run_bytes = 0;
  for (size_t i = 0; i < interpreter.inputs_size(); ++i) run_bytes += interpreter.input(i)->bytes;
  std::vector<uint8_t> inputs;
  if (input_path != nullptr) {
    if (!ReadFile(input_path, &inputs)) return Error(std::string("cannot read ") + input_path);
    if (inputs.size() != run_bytes * static_cast<size_t>(runs)) {
      return Error(std::string(input_path) + " has " + std::to_string(inputs.size()) +
                   " bytes; " + std::to_string(runs) + " run(s) of this model take " +
                   std::to_string(run_bytes * runs));
    }
  }

  for (int run = 0; run < runs; ++run) {
    size_t offset = static_cast<size_t>(run) * run_bytes;
    for (size_t i = 0; i < interpreter.inputs_size(); ++i) {
      TfLiteTensor* t = interpreter.input(i);
      if (input_path != nullptr) {
        std::memcpy(t->data.raw, inputs.data() + offset, t->bytes);
        offset += t->bytes;
      } else {
        FillPattern(t, static_cast<uint32_t>(run * 131 + i + 1));
      }
    }
    if (interpreter.Invoke() != kTfLiteOk) {
      std::fprintf(stderr, "dtmm_app: error: Invoke failed in run %d\n", run);
      return 1;
    }
    for (size_t i = 0; i < interpreter.outputs_size(); ++i) {
      PrintTensor(run, i, interpreter.output(i));
    }
  }
  std::printf("arena: used %zu of %zu bytes\n", interpreter.arena_used_bytes(), arena_size);
  return 0;
}
