/* dtmm_fc_s8_bitmap_bytes and dtmm_fc_s8_get_buffer_size (contract in dtmm_fc_s8.h). */
#include <stddef.h>

#include "dtmm_fc_s8.h"

#define DTMM_FC_MAX_BLOCK 65535
#define DTMM_INT32_MAX 2147483647LL

/* 0 unless every size is positive, B divides C_in and the products fit int32. */
static int64_t fc_bits(const dtmm_fc_dims* d) {
  if (d == NULL || d->batches < 1 || d->input_c < 1 || d->output_c < 1 || d->block < 1 ||
      d->block > DTMM_FC_MAX_BLOCK || d->input_c % d->block != 0)
    return 0;
  if ((int64_t)d->batches * d->input_c > DTMM_INT32_MAX ||
      (int64_t)d->batches * d->output_c > DTMM_INT32_MAX)
    return 0;
  {
    const int64_t bits = (int64_t)d->output_c * (d->input_c / d->block);
    /* bitmap bytes, rounded up to 4, must fit too */
    return (bits + 31) / 32 * 4 > DTMM_INT32_MAX ? 0 : bits;
  }
}

int32_t dtmm_fc_s8_bitmap_bytes(const dtmm_fc_dims* dims) {
  const int64_t bits = fc_bits(dims);
  return (int32_t)((bits + 31) / 32 * 4);
}

int32_t dtmm_fc_s8_get_buffer_size(const dtmm_fc_dims* dims) {
  if (fc_bits(dims) == 0) return 0;
#if !defined(DTMM_FORCE_PORTABLE) && defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP && \
    !(defined(__ARM_FEATURE_MVE) && (__ARM_FEATURE_MVE & 1))
  /* dtmm_fc_s8.c: two words per 4 input bytes, from C_in >= 8 */
  return dims->input_c >= 8 ? (dims->input_c >> 2) * 8 : 0;
#else
  return 0;
#endif
}
