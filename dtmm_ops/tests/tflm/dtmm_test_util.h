// Test helpers for DTMM_CONV_2D in TFLM's KernelRunner harness: a random pruned
// int8 conv layer, its FWCS/DTMM form built the way docs/contract.md says the
// converter builds it, and an independent dense reference conv.
#ifndef DTMM_OPS_TESTS_TFLM_DTMM_TEST_UTIL_H_
#define DTMM_OPS_TESTS_TFLM_DTMM_TEST_UTIL_H_

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <vector>

#include "flatbuffers/flexbuffers.h"
#include "tensorflow/lite/kernels/internal/common.h"
#include "tensorflow/lite/kernels/internal/quantization_util.h"

namespace dtmm_test {

// Sizes stay small: KernelRunner's arena is 10,000 bytes.
constexpr int kMaxInput = 1024;
constexpr int kMaxOutput = 1024;
constexpr int kMaxFilter = 2048;
constexpr int kMaxChannels = 16;
constexpr int kMaxBitmap = (kMaxChannels * 25 + 7) / 8;

struct LayerSpec {
  int batches, in_h, in_w, in_c, out_c;
  int kh, kw, sh, sw, dh, dw;
  int padding;     // contract enum: 0 = SAME, 1 = VALID
  int activation;  // TfLiteFusedActivation: 0 none, 1 relu, 2 relu_n1_to_1, 3 relu6
  int in_zp, out_zp;
  int prune_percent;  // chance a filterlet is pruned; 100 prunes everything
  bool has_bias;
  uint32_t seed;
};

// Deterministic xorshift32 so every target sees the same data.
struct Rng {
  uint32_t s;
  uint32_t Next() {
    s ^= s << 13;
    s ^= s >> 17;
    s ^= s << 5;
    return s;
  }
  int Range(int lo, int hi) {  // inclusive
    return lo + static_cast<int>(Next() % static_cast<uint32_t>(hi - lo + 1));
  }
};

inline int OutSize(int padding, int in, int k, int s, int d) {
  const int eff = (k - 1) * d + 1;
  return padding == 0 ? (in + s - 1) / s : (in + s - eff) / s;
}

inline int PadBefore(int padding, int in, int out, int k, int s, int d) {
  if (padding != 0) return 0;
  const int total = (out - 1) * s + (k - 1) * d + 1 - in;
  return total > 0 ? total / 2 : 0;
}

// TFLite's CalculateActivationRangeQuantized for an int8 output.
inline void ActivationRange(int activation, float scale, int zp, int* lo, int* hi) {
  auto q = [&](float x) {
    return zp + static_cast<int>(tflite::TfLiteRound(x / scale));
  };
  int a = -128, b = 127;
  if (activation == 1) {
    a = q(0.f);
  } else if (activation == 3) {
    a = q(0.f);
    b = q(6.f);
  } else if (activation == 2) {
    a = q(-1.f);
    b = q(1.f);
  }
  *lo = a < -128 ? -128 : a;
  *hi = b > 127 ? 127 : b;
}

// One pruned conv layer: dense original and its DTMM form.
struct Layer {
  LayerSpec spec;
  int out_h, out_w;
  float in_scale, out_scale;
  float filter_scale[kMaxChannels];
  int8_t input[kMaxInput];
  int8_t filter[kMaxFilter];  // OHWI, pruned filterlets are zero
  int32_t bias[kMaxChannels];  // original bias (0 when has_bias is false)
  // DTMM form
  uint8_t bitmap[kMaxBitmap];
  int bitmap_bytes;
  int8_t values[kMaxFilter];
  int n_kept;
  int32_t folded_bias[kMaxChannels];
  int32_t multiplier[kMaxChannels];
  int32_t shift[kMaxChannels];
  int act_min, act_max;

  int InputSize() const {
    return spec.batches * spec.in_h * spec.in_w * spec.in_c;
  }
  int OutputSize() const { return spec.batches * out_h * out_w * spec.out_c; }
  int K() const { return spec.kh * spec.kw; }
};

// Fills a layer from its spec. Returns false when the spec exceeds the buffers.
inline bool MakeLayer(const LayerSpec& spec, Layer* l) {
  memset(l, 0, sizeof(*l));
  l->spec = spec;
  l->out_h = OutSize(spec.padding, spec.in_h, spec.kh, spec.sh, spec.dh);
  l->out_w = OutSize(spec.padding, spec.in_w, spec.kw, spec.sw, spec.dw);
  const int k = spec.kh * spec.kw;
  if (spec.out_c > kMaxChannels || l->InputSize() > kMaxInput ||
      l->OutputSize() > kMaxOutput || spec.out_c * k * spec.in_c > kMaxFilter ||
      (spec.out_c * k + 7) / 8 > kMaxBitmap || l->out_h <= 0 || l->out_w <= 0) {
    return false;
  }
  Rng rng{spec.seed * 2654435761u + 1u};
  l->in_scale = 0.02f + 0.001f * rng.Range(0, 30);
  for (int i = 0; i < l->InputSize(); ++i) {
    l->input[i] = static_cast<int8_t>(rng.Range(-128, 127));
  }
  float mean_fs = 0.f;
  for (int oc = 0; oc < spec.out_c; ++oc) {
    l->filter_scale[oc] = 0.002f + 0.0005f * rng.Range(0, 20);
    mean_fs += l->filter_scale[oc] / spec.out_c;
  }
  // Output scale near the accumulator's spread, so outputs are not all clamped.
  const int taps = k * spec.in_c;
  int spread = 1;
  while (spread * spread < taps) ++spread;
  l->out_scale = l->in_scale * mean_fs * 60.f * spread;
  for (int oc = 0; oc < spec.out_c; ++oc) {
    for (int p = 0; p < k; ++p) {
      const bool pruned = rng.Range(0, 99) < spec.prune_percent;
      for (int c = 0; c < spec.in_c; ++c) {
        int v = pruned ? 0 : rng.Range(-127, 127);
        // A kept filterlet stays kept even if its draw were all zero.
        if (!pruned && c == 0 && v == 0) v = 1;
        l->filter[(oc * k + p) * spec.in_c + c] = static_cast<int8_t>(v);
      }
    }
    l->bias[oc] = spec.has_bias ? rng.Range(-20000, 20000) : 0;
  }

  // FWCS: bit b = oc*K + p, LSB first; values in increasing b.
  l->bitmap_bytes = (spec.out_c * k + 7) / 8;
  l->n_kept = 0;
  for (int b = 0; b < spec.out_c * k; ++b) {
    const int8_t* f = &l->filter[b * spec.in_c];
    bool kept = false;
    for (int c = 0; c < spec.in_c; ++c) kept = kept || f[c] != 0;
    if (!kept) continue;
    l->bitmap[b >> 3] = static_cast<uint8_t>(l->bitmap[b >> 3] | (1u << (b & 7)));
    memcpy(&l->values[l->n_kept * spec.in_c], f, spec.in_c);
    ++l->n_kept;
  }
  for (int oc = 0; oc < spec.out_c; ++oc) {
    int32_t sum = 0;
    for (int i = 0; i < k * spec.in_c; ++i) sum += l->filter[oc * k * spec.in_c + i];
    l->folded_bias[oc] = l->bias[oc] - spec.in_zp * sum;
    const double scale = static_cast<double>(l->in_scale) *
                         static_cast<double>(l->filter_scale[oc]) /
                         static_cast<double>(l->out_scale);
    int shift = 0;
    tflite::QuantizeMultiplier(scale, &l->multiplier[oc], &shift);
    l->shift[oc] = shift;
  }
  ActivationRange(spec.activation, l->out_scale, spec.out_zp, &l->act_min,
                  &l->act_max);
  return true;
}

// Independent dense int8 conv with TFLite's per-channel semantics: input offset
// per tap, padded taps skipped, original bias, no folding.
inline void DenseReference(const Layer& l, int8_t* out) {
  const LayerSpec& s = l.spec;
  const int pt = PadBefore(s.padding, s.in_h, l.out_h, s.kh, s.sh, s.dh);
  const int pl = PadBefore(s.padding, s.in_w, l.out_w, s.kw, s.sw, s.dw);
  for (int n = 0; n < s.batches; ++n) {
    for (int y = 0; y < l.out_h; ++y) {
      for (int x = 0; x < l.out_w; ++x) {
        for (int oc = 0; oc < s.out_c; ++oc) {
          int32_t acc = 0;
          for (int i = 0; i < s.kh; ++i) {
            for (int j = 0; j < s.kw; ++j) {
              const int iy = y * s.sh - pt + i * s.dh;
              const int ix = x * s.sw - pl + j * s.dw;
              if (iy < 0 || iy >= s.in_h || ix < 0 || ix >= s.in_w) continue;
              for (int c = 0; c < s.in_c; ++c) {
                const int32_t xv =
                    l.input[((n * s.in_h + iy) * s.in_w + ix) * s.in_c + c];
                const int32_t wv =
                    l.filter[((oc * s.kh + i) * s.kw + j) * s.in_c + c];
                acc += (xv - s.in_zp) * wv;
              }
            }
          }
          acc += l.bias[oc];
          int32_t o = tflite::MultiplyByQuantizedMultiplier(acc, l.multiplier[oc],
                                                            l.shift[oc]);
          o += s.out_zp;
          o = o < l.act_min ? l.act_min : (o > l.act_max ? l.act_max : o);
          out[((n * l.out_h + y) * l.out_w + x) * s.out_c + oc] =
              static_cast<int8_t>(o);
        }
      }
    }
  }
}

// Options as the converter writes them. `omit` drops a key, `bad_type` writes
// that key as a string; version/other values can be overridden by the caller.
struct OptionsSpec {
  int version = 1;
  int padding_override = -1;  // -1: from the layer
  int sh_override = -1;
  int in_zp_delta = 0;
  int act_min_override = 1000;  // 1000: from the layer
  int act_max_override = 1000;
  const char* omit = nullptr;
  const char* bad_type = nullptr;
  const char* as_uint = nullptr;  // this key written as a flexbuffer UInt of uint_value
  uint64_t uint_value = 0;
};

inline std::vector<uint8_t> BuildOptions(const Layer& l, const OptionsSpec& o) {
  flexbuffers::Builder fbb;
  const LayerSpec& s = l.spec;
  auto put = [&](const char* key, int value) {
    if (o.omit != nullptr && strcmp(o.omit, key) == 0) return;
    if (o.bad_type != nullptr && strcmp(o.bad_type, key) == 0) {
      fbb.String(key, "1");
      return;
    }
    if (o.as_uint != nullptr && strcmp(o.as_uint, key) == 0) {
      fbb.UInt(key, o.uint_value);
      return;
    }
    fbb.Int(key, value);
  };
  const size_t start = fbb.StartMap();
  put("version", o.version);
  put("kh", s.kh);
  put("kw", s.kw);
  put("sh", o.sh_override >= 0 ? o.sh_override : s.sh);
  put("sw", s.sw);
  put("dh", s.dh);
  put("dw", s.dw);
  put("padding", o.padding_override >= 0 ? o.padding_override : s.padding);
  put("in_zp", s.in_zp + o.in_zp_delta);
  put("act_min", o.act_min_override != 1000 ? o.act_min_override : l.act_min);
  put("act_max", o.act_max_override != 1000 ? o.act_max_override : l.act_max);
  fbb.EndMap(start);
  fbb.Finish();
  return fbb.GetBuffer();
}

}  // namespace dtmm_test

#endif  // DTMM_OPS_TESTS_TFLM_DTMM_TEST_UTIL_H_
