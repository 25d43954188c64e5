/* DTMM ops for TensorFlow Lite Micro.
 *
 * Add DTMM to an app that already has a MicroMutableOpResolver:
 *
 *   tflite::MicroMutableOpResolver<kMyOps + dtmm::kDtmmOpCount> resolver;
 *   ...
 *   dtmm::AddDtmmOps(resolver);
 *
 * Supported TFLM: tensorflow/tflite-micro 90b983c2b3f1480642e040bbd2ddb37b998f3424
 * (see docs/tflm.md).
 */
#ifndef DTMM_OPS_DTMM_OPS_H_
#define DTMM_OPS_DTMM_OPS_H_

#include "tensorflow/lite/c/common.h"
#include "tensorflow/lite/micro/micro_common.h"
#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"

namespace dtmm {

// Custom-op names the converter writes (docs/contract.md).
constexpr const char* kDtmmConv2DName = "DTMM_CONV_2D";
constexpr const char* kDtmmFullyConnectedName = "DTMM_FULLY_CONNECTED";

// Number of resolver slots AddDtmmOps uses.
constexpr unsigned int kDtmmOpCount = 2;

// DTMM_CONV_2D: filterlet-sparse int8 convolution (format version 1).
TFLMRegistration Register_DTMM_CONV_2D();

// DTMM_FULLY_CONNECTED: block-sparse int8 fully connected (format version 2).
TFLMRegistration Register_DTMM_FULLY_CONNECTED();

// Registers every DTMM op with the resolver. Returns kTfLiteError (after a
// MicroPrintf from the resolver) when it is full or an op is already registered.
template <unsigned int tOpCount>
TfLiteStatus AddDtmmOps(tflite::MicroMutableOpResolver<tOpCount>& resolver) {
  const TFLMRegistration conv = Register_DTMM_CONV_2D();
  const TFLMRegistration fc = Register_DTMM_FULLY_CONNECTED();
  TF_LITE_ENSURE_STATUS(resolver.AddCustom(kDtmmConv2DName, &conv));
  return resolver.AddCustom(kDtmmFullyConnectedName, &fc);
}

}  // namespace dtmm

#endif  // DTMM_OPS_DTMM_OPS_H_
