// Tensor checks shared by the DTMM ops' Prepare (DTMM_CONV_2D,
// DTMM_FULLY_CONNECTED): each failing check prints one MicroPrintf naming the op,
// the tensor and the problem, and returns false. Internal to dtmm_ops.
#ifndef DTMM_OPS_DTMM_OP_CHECKS_H_
#define DTMM_OPS_DTMM_OP_CHECKS_H_

#include <stdint.h>

#include "tensorflow/lite/c/common.h"
#include "tensorflow/lite/kernels/kernel_util.h"
#include "tensorflow/lite/micro/micro_log.h"

// Out of line: inlined, each call site of Prepare would carry the whole check and
// its messages (+1.3 KB in DTMM_CONV_2D's Prepare); as inline functions with external
// linkage both ops share the one copy the linker keeps.
#if defined(__GNUC__)
#define DTMM_OP_CHECK __attribute__((noinline))
#else
#define DTMM_OP_CHECK
#endif

namespace dtmm {
namespace internal {

// Elements of t (-1 if a dimension is negative or the count passes int32).
DTMM_OP_CHECK inline int64_t Elements(const TfLiteTensor* t) {
  int64_t n = 1;
  for (int i = 0; i < t->dims->size; ++i) {
    if (t->dims->data[i] < 0) return -1;
    n *= t->dims->data[i];
    if (n > INT32_MAX) return -1;
  }
  return n;
}

// t is present, of `type`, of rank `rank` (0: any rank >= 1), without negative
// dimensions, of at most INT32_MAX elements, and constant where `constant`.
DTMM_OP_CHECK inline bool CheckTensor(const char* op, const TfLiteTensor* t, const char* what,
                        TfLiteType type, int rank, bool constant) {
  if (t == nullptr) {
    MicroPrintf("%s: %s tensor is missing", op, what);
    return false;
  }
  if (t->type != type) {
    MicroPrintf("%s: %s must be %s, got %s", op, what, TfLiteTypeGetName(type),
                TfLiteTypeGetName(t->type));
    return false;
  }
  if (t->dims == nullptr || (rank > 0 ? t->dims->size != rank : t->dims->size < 1)) {
    MicroPrintf("%s: %s must have rank %s%d, got %d", op, what, rank > 0 ? "" : ">= ",
                rank > 0 ? rank : 1, t->dims == nullptr ? -1 : t->dims->size);
    return false;
  }
  for (int i = 0; i < t->dims->size; ++i) {
    if (t->dims->data[i] < 0) {
      MicroPrintf("%s: %s has a negative dimension", op, what);
      return false;
    }
  }
  if (Elements(t) < 0) {
    MicroPrintf("%s: %s has a negative or too large shape", op, what);
    return false;
  }
  if (constant && !tflite::IsConstantTensor(t)) {
    MicroPrintf("%s: %s must be a constant tensor", op, what);
    return false;
  }
  return true;
}

// A per-tensor zero point, read the way TFLM's kernels read it.
DTMM_OP_CHECK inline bool PerTensorZeroPoint(const char* op, const TfLiteTensor* t, const char* what,
                               int32_t* zp) {
  if (t->quantization.type == kTfLiteAffineQuantization &&
      t->quantization.params != nullptr) {
    const auto* q = static_cast<const TfLiteAffineQuantization*>(t->quantization.params);
    if (q->zero_point != nullptr && q->zero_point->size > 1) {
      MicroPrintf("%s: %s must be per-tensor quantized", op, what);
      return false;
    }
  }
  *zp = t->params.zero_point;
  return true;
}

}  // namespace internal
}  // namespace dtmm

#endif  // DTMM_OPS_DTMM_OP_CHECKS_H_
