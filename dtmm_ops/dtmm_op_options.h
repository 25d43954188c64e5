/* The DTMM ops' custom options: one flexbuffer map of required integer keys
 * whose names and ranges come from the contract table (dtmm_contract_table.h).
 * Both TFLM ops read them in Init with ReadOptions and report the first problem in
 * Prepare with ReportOptionsError, so a malformed op fails with one MicroPrintf
 * naming the key. The model is not trusted: the buffer is verified first.
 */
#ifndef DTMM_OPS_DTMM_OP_OPTIONS_H_
#define DTMM_OPS_DTMM_OP_OPTIONS_H_

#include <stddef.h>
#include <stdint.h>

#include "flatbuffers/flexbuffers.h"
#include "tensorflow/lite/c/common.h"
#include "tensorflow/lite/micro/micro_log.h"

namespace dtmm {
namespace options {

struct KeyInfo {
  const char* name;
  int32_t min, max;  // every option is an int32
};

enum Error : int8_t {
  kOk = 0,
  kNoOptions,      // empty custom options
  kNotFlexbuffer,  // fails flexbuffers::VerifyBuffer
  kNotMap,
  kMissingKey,
  kNotInt,
  kOutOfRange,
};

// What Init found: the error and the index of the key it is about.
struct Status {
  int8_t error;
  int8_t key;
};

// Reads keys[0..num_keys) into out (all required, each within its range).
inline Status ReadOptions(const char* buffer, size_t length, const KeyInfo* keys,
                          int num_keys, int32_t* out) {
  if (buffer == nullptr || length == 0) return {kNoOptions, 0};
  const uint8_t* bytes = reinterpret_cast<const uint8_t*>(buffer);
  if (!flexbuffers::VerifyBuffer(bytes, length)) return {kNotFlexbuffer, 0};
  const flexbuffers::Reference root = flexbuffers::GetRoot(bytes, length);
  if (!root.IsMap()) return {kNotMap, 0};
  const flexbuffers::Map map = root.AsMap();
  for (int k = 0; k < num_keys; ++k) {
    const int8_t key = static_cast<int8_t>(k);
    const flexbuffers::Reference ref = map[keys[k].name];
    if (ref.IsNull()) return {kMissingKey, key};
    if (!ref.IsInt() && !ref.IsUInt()) return {kNotInt, key};
    // AsInt64 reads a UInt as its uint64 bits: >= 2^63 turns negative, which
    // must not pass as a negative option (AsUInt64 would add 0.5 KB of code).
    const int64_t v = ref.AsInt64();
    if (ref.IsUInt() && v < 0) return {kOutOfRange, key};
    if (v < keys[k].min || v > keys[k].max) return {kOutOfRange, key};
    out[k] = static_cast<int32_t>(v);
  }
  return {kOk, 0};
}

// kTfLiteOk for kOk; otherwise one MicroPrintf "<op>: ..." and kTfLiteError.
inline TfLiteStatus ReportOptionsError(const char* op, Status s, const KeyInfo* keys) {
  const KeyInfo& key = keys[s.key];
  switch (s.error) {
    case kOk:
      return kTfLiteOk;
    case kNoOptions:
      MicroPrintf("%s: custom options are missing", op);
      break;
    case kNotFlexbuffer:
      MicroPrintf("%s: custom options are not a valid flexbuffer", op);
      break;
    case kNotMap:
      MicroPrintf("%s: custom options are not a flexbuffer map", op);
      break;
    case kMissingKey:
      MicroPrintf("%s: option '%s' is missing", op, key.name);
      break;
    case kNotInt:
      MicroPrintf("%s: option '%s' is not an integer", op, key.name);
      break;
    default:
      MicroPrintf("%s: option '%s' is outside [%d, %d]", op, key.name,
                  static_cast<int>(key.min), static_cast<int>(key.max));
      break;
  }
  return kTfLiteError;
}

}  // namespace options
}  // namespace dtmm

#endif  // DTMM_OPS_DTMM_OP_OPTIONS_H_
