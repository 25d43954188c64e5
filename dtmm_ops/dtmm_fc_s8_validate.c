/* dtmm_fc_s8_validate (contract in dtmm_fc_s8.h). */
#include "dtmm_fc_s8.h"

#include <stddef.h>

static int32_t popcount8(uint8_t v) {
  int32_t n = 0;
  while (v) {
    v &= (uint8_t)(v - 1u);
    n++;
  }
  return n;
}

dtmm_status dtmm_fc_s8_validate(const dtmm_fc_dims* dims, const dtmm_fc_params* params,
                                const dtmm_fc_filter* filter) {
  int64_t bits, kept = 0;
  int32_t bm_bytes, i, oc;
  if (dims == NULL || params == NULL || filter == NULL || filter->w == NULL ||
      filter->q == NULL)
    return DTMM_ERR_ARG;
  bm_bytes = dtmm_fc_s8_bitmap_bytes(dims); /* 0: sizes invalid */
  if (bm_bytes == 0) return DTMM_ERR_ARG;
  bits = (int64_t)dims->output_c * (dims->input_c / dims->block);
  if (params->version != DTMM_FC_FORMAT_VERSION) return DTMM_ERR_VERSION;
  if (params->output_offset < -128 || params->output_offset > 127 ||
      params->activation_min < -128 || params->activation_max > 127 ||
      params->activation_min > params->activation_max)
    return DTMM_ERR_PARAMS;
  for (oc = 0; oc < dims->output_c; ++oc) {
    const int32_t mult = filter->q[3 * oc + 1], shift = filter->q[3 * oc + 2];
    if (mult < 0 || shift < -31 || shift > 30) return DTMM_ERR_PARAMS;
  }
  if (filter->w_bytes < bm_bytes) return DTMM_ERR_BITMAP;
  {
    const uint8_t* bm = (const uint8_t*)filter->w;
    const int32_t full = (int32_t)(bits >> 3), rest = (int32_t)(bits & 7);
    for (i = 0; i < full; ++i) kept += popcount8(bm[i]);
    if (rest) {
      if (bm[full] >> rest) return DTMM_ERR_BITMAP;
      kept += popcount8(bm[full]);
    }
    for (i = full + (rest ? 1 : 0); i < bm_bytes; ++i)
      if (bm[i]) return DTMM_ERR_BITMAP;
  }
  if ((int64_t)filter->w_bytes != bm_bytes + kept * dims->block) return DTMM_ERR_VALUES;
  return DTMM_OK;
}
