/* Independent reference of DTMM_CONV_2D for the kernel fuzzer (docs/contract.md,
 * "Semantics"), written from the contract and TFLite's reference int8 conv, not
 * from dtmm_ops/: one output at a time, 64-bit coordinates, no tap tables.
 *
 *   acc  = bias[oc] + sum over kept (oc, kh, kw), c of xin * w      (int32, wrapping)
 *   xin  = input[n, iy, ix, c] inside the input, else zp_in
 *   q    = MultiplyByQuantizedMultiplier(acc, multiplier[oc], shift[oc])
 *   out  = clamp(q + zp_out (int32, wrapping, as TFLite's `acc += output_offset`),
 *                act_min, act_max)
 *
 * Every wrap is done in uint32, so the reference has no undefined behaviour itself.
 */
#ifndef DTMM_FUZZ_CONV_S8_REFERENCE_H_
#define DTMM_FUZZ_CONV_S8_REFERENCE_H_

#include <stdint.h>
#include <stdlib.h>

#include "dtmm_conv_s8.h"

static int32_t ref_wrap32(int64_t v) { return (int32_t)(uint32_t)(uint64_t)v; }

/* gemmlowp SaturatingRoundingDoublingHighMul, as TFLite's reference code. */
static int32_t ref_srdhm(int32_t a, int32_t b) {
  const int64_t ab = (int64_t)a * (int64_t)b;
  const int64_t nudge = ab >= 0 ? (1 << 30) : (1 - (1 << 30));
  if (a == INT32_MIN && b == INT32_MIN) return INT32_MAX;
  return (int32_t)((ab + nudge) / ((int64_t)1 << 31)); /* C division truncates */
}

/* gemmlowp RoundingDivideByPOT, exponent in [0, 31]. */
static int32_t ref_rdbpot(int32_t x, int exponent) {
  const int64_t mask = ((int64_t)1 << exponent) - 1;
  const int64_t remainder = (int64_t)x & mask;
  const int64_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
  /* arithmetic shift of a negative value: floor division by 2^exponent */
  const int64_t q = (int64_t)x >= 0 ? ((int64_t)x >> exponent)
                                    : -((-(int64_t)x + mask) >> exponent);
  return (int32_t)(q + (remainder > threshold ? 1 : 0));
}

/* TFLite MultiplyByQuantizedMultiplier(int32 x, multiplier, shift): the left shift
 * is `x * (1 << left_shift)` in int32 (wrapping in practice). */
static int32_t ref_mbqm(int32_t x, int32_t multiplier, int32_t shift) {
  const int left = shift > 0 ? shift : 0;
  const int right = shift > 0 ? 0 : -shift;
  const int32_t shifted = ref_wrap32((int64_t)x * ((int64_t)1 << left));
  return ref_rdbpot(ref_srdhm(shifted, multiplier), right);
}

/* Row of `values` for each bit of the bitmap (-1: pruned), or NULL when the table
 * would be too large. Caller frees. */
static int32_t* ref_rows(const dtmm_conv_dims* d, const dtmm_fwcs_filter* f) {
  const int64_t bits = (int64_t)d->output_c * d->kernel_h * d->kernel_w;
  int32_t* rows;
  int64_t b;
  int32_t next = 0;
  if (bits <= 0 || bits > (1 << 24)) return NULL;
  rows = (int32_t*)malloc((size_t)bits * sizeof(int32_t));
  if (!rows) return NULL;
  for (b = 0; b < bits; ++b) {
    const int kept = (f->bitmap[b >> 3] >> (b & 7)) & 1;
    rows[b] = kept ? next++ : -1;
  }
  return rows;
}

/* output[n, y, x, oc] of a validated layer. rows from ref_rows. */
static void ref_conv_s8(const dtmm_conv_dims* d, const dtmm_conv_params* p,
                        const dtmm_fwcs_filter* f, const int32_t* rows,
                        const int8_t* input, int8_t* output) {
  const int64_t K = (int64_t)d->kernel_h * d->kernel_w;
  int64_t n, y, x, oc, kh, kw, c;
  for (n = 0; n < d->batches; ++n) {
    for (y = 0; y < d->output_h; ++y) {
      for (x = 0; x < d->output_w; ++x) {
        for (oc = 0; oc < d->output_c; ++oc) {
          uint32_t acc = (uint32_t)f->bias[oc];
          int32_t q, v;
          for (kh = 0; kh < d->kernel_h; ++kh) {
            const int64_t iy = y * p->stride_h - p->pad_top + kh * p->dilation_h;
            for (kw = 0; kw < d->kernel_w; ++kw) {
              const int64_t ix = x * p->stride_w - p->pad_left + kw * p->dilation_w;
              const int32_t row = rows[oc * K + kh * d->kernel_w + kw];
              const int inside = iy >= 0 && iy < d->input_h && ix >= 0 && ix < d->input_w;
              const int8_t* w;
              if (row < 0) continue;
              w = f->values + (int64_t)row * d->input_c;
              for (c = 0; c < d->input_c; ++c) {
                const int32_t xin =
                    inside ? input[((n * d->input_h + iy) * d->input_w + ix) * d->input_c + c]
                           : p->input_zero_point;
                acc += (uint32_t)(xin * (int32_t)w[c]);
              }
            }
          }
          q = ref_mbqm((int32_t)acc, f->multiplier[oc], f->shift[oc]);
          v = (int32_t)((uint32_t)q + (uint32_t)p->output_offset);
          if (v < p->activation_min) v = p->activation_min;
          if (v > p->activation_max) v = p->activation_max;
          output[((n * d->output_h + y) * d->output_w + x) * d->output_c + oc] = (int8_t)v;
        }
      }
    }
  }
}

#endif /* DTMM_FUZZ_CONV_S8_REFERENCE_H_ */
