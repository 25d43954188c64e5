// bench/models' flash image (see flash_app.h): allocate and invoke the embedded model
// once. Run under qemu-system-arm it exits 0 after a successful Invoke(), so the
// measured image is known to work; the exit code names the step that failed.
#include <cstdint>

#include "flash_app.h"
#include "tensorflow/lite/micro/micro_allocator.h"
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/micro/micro_resource_variable.h"
#include "tensorflow/lite/schema/schema_generated.h"

#ifndef DTMM_FLASH_ARENA_BYTES
#define DTMM_FLASH_ARENA_BYTES (2 << 20)
#endif

namespace {
alignas(16) uint8_t g_arena[DTMM_FLASH_ARENA_BYTES];
}  // namespace

int main(int, char**) {
  const tflite::Model* model = tflite::GetModel(dtmm_flash_model);
  if (model->version() != TFLITE_SCHEMA_VERSION) return 10;
  static FlashResolver resolver;
  if (AddModelOps(resolver) != kTfLiteOk) return 11;
  tflite::MicroAllocator* allocator =
      tflite::MicroAllocator::Create(g_arena, sizeof(g_arena));
  if (allocator == nullptr) return 12;
  tflite::MicroResourceVariables* variables = nullptr;
  if (kModelResourceVariables > 0) {
    variables = tflite::MicroResourceVariables::Create(allocator, kModelResourceVariables);
    if (variables == nullptr) return 13;
  }
  static tflite::MicroInterpreter interpreter(model, resolver, allocator, variables);
  if (interpreter.AllocateTensors() != kTfLiteOk) return 14;
  if (interpreter.Invoke() != kTfLiteOk) return 15;
  return 0;
}
