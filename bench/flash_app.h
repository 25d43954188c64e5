// bench/models' flash image: the smallest TFLM application that runs one model, so
// the linker (--gc-sections) keeps exactly the kernels the model's ops need. One
// image per model variant (dense / DTMM); its flash is the ELF's .text + .ARM.exidx +
// .data, the model included (bench/flash_model.S). bench/models generates the two
// per-image parts: AddModelOps (one Add* per op the model uses) and the model bytes.
#ifndef DTMM_BENCH_FLASH_APP_H_
#define DTMM_BENCH_FLASH_APP_H_

#include "tensorflow/lite/c/common.h"
#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"

// Resolver capacity: unused slots cost RAM (.bss), not flash.
constexpr unsigned int kFlashMaxOps = 48;
using FlashResolver = tflite::MicroMutableOpResolver<kFlashMaxOps>;

// Generated per image: registers the model's ops, returns kTfLiteError if one fails.
TfLiteStatus AddModelOps(FlashResolver& resolver);
// Generated per image: the model's VAR_HANDLE count (streaming models), 0 if none.
extern const int kModelResourceVariables;

// bench/flash_model.S: the .tflite file, 16-byte aligned, in .rodata.
extern "C" const unsigned char dtmm_flash_model[];

#endif  // DTMM_BENCH_FLASH_APP_H_
