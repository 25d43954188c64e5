/* dtmm_conv_s8_validate: every field and the FWCS arrays (dtmm_conv_s8.h). After
 * DTMM_OK no driver reads or writes out of bounds and no int32 arithmetic of the
 * library overflows. */
#include "dtmm_contract_table.h"
#include "dtmm_conv_s8_drivers.h"

static DTMM_SIZE_OPT int32_t dtmm_popcount8(uint32_t b) {
  b = b - ((b >> 1) & 0x55u);
  b = (b & 0x33u) + ((b >> 2) & 0x33u);
  return (int32_t)((b + (b >> 4)) & 0x0Fu);
}

/* Whether a * b * c * d (all >= 1) stays <= INT32_MAX. Each partial product is
 * checked before the next multiply, so no int64 product can overflow either. */
static DTMM_NOINLINE DTMM_SIZE_OPT int dtmm_product_fits(int32_t a, int32_t b, int32_t c, int32_t d) {
  const int64_t lim = INT32_MAX;
  int64_t p = (int64_t)a * b;
  if (p > lim) return 0;
  p *= c;
  if (p > lim) return 0;
  return p * d <= lim;
}

/* One axis (height or width; stride s, dilation d >= 1, pad >= 0) of the layer:
 * every coordinate the kernel forms, y*s - pad + k*d for y < out (and the next
 * block origin, out*s), fits in int32 - the stride counts even when the output
 * has a single row or column -; the leading padding and the trailing one the
 * output size implies are at most the dilated kernel (TFLite never pads more:
 * a 1x1 filter then reads no padding, as the pointwise drivers assume). */
static DTMM_NOINLINE DTMM_SIZE_OPT int dtmm_axis_fits(int32_t in, int32_t out, int32_t k,
                                                      int32_t s, int32_t d, int32_t pad) {
  const int64_t span = (int64_t)(k - 1) * d;
  if ((int64_t)out * s + span + pad + in > INT32_MAX) return 0;
  if (pad > span) return 0;
  return (int64_t)(out - 1) * s + span + 1 - in - pad <= span;
}

DTMM_SIZE_OPT dtmm_status dtmm_check_shape(const dtmm_conv_dims* dims,
                                          const dtmm_conv_params* params) {
  const int64_t lim = INT32_MAX;
  if (!dims || !params) return DTMM_ERR_ARG;
  if (dims->batches < 1 || dims->input_h < 1 || dims->input_w < 1 || dims->input_c < 1 ||
      dims->output_h < 1 || dims->output_w < 1 || dims->output_c < 1 || dims->kernel_h < 1 ||
      dims->kernel_w < 1)
    return DTMM_ERR_ARG;
  if (!dtmm_product_fits(dims->batches, dims->input_h, dims->input_w, dims->input_c) ||
      !dtmm_product_fits(dims->batches, dims->output_h, dims->output_w, dims->output_c))
    return DTMM_ERR_ARG;
  /* The bitmap's bits (+ 7 for the byte count) and 4 im2col rows of taps*C_in bytes
   * (the scratch size) must be addressable. */
  if (!dtmm_product_fits(dims->kernel_h, dims->kernel_w, dims->output_c, 1) ||
      (int64_t)dims->kernel_h * dims->kernel_w * dims->output_c + 7 > lim ||
      !dtmm_product_fits(dims->kernel_h, dims->kernel_w, dims->input_c, 4))
    return DTMM_ERR_ARG;

  if (params->version < DTMM_FORMAT_VERSION_MIN || params->version > DTMM_FORMAT_VERSION)
    return DTMM_ERR_VERSION;
  if (params->stride_h < 1 || params->stride_w < 1 || params->dilation_h < 1 ||
      params->dilation_w < 1 || params->pad_top < 0 || params->pad_left < 0)
    return DTMM_ERR_PARAMS;
  if (!dtmm_axis_fits(dims->input_h, dims->output_h, dims->kernel_h, params->stride_h,
                      params->dilation_h, params->pad_top) ||
      !dtmm_axis_fits(dims->input_w, dims->output_w, dims->kernel_w, params->stride_w,
                      params->dilation_w, params->pad_left))
    return DTMM_ERR_PARAMS;
  if (params->input_zero_point < -128 || params->input_zero_point > 127 ||
      params->output_offset < -128 || params->output_offset > 127)
    return DTMM_ERR_PARAMS;
  if (params->activation_min < -128 || params->activation_max > 127 ||
      params->activation_min > params->activation_max)
    return DTMM_ERR_PARAMS;
  return DTMM_OK;
}

DTMM_SIZE_OPT dtmm_status dtmm_conv_s8_validate(const dtmm_conv_dims* dims,
                                                const dtmm_conv_params* params,
                                                const dtmm_fwcs_filter* filter) {
  const int64_t lim = INT32_MAX;
  int64_t bits;
  int32_t i, oc, kept, block;
  dtmm_geom g;
  dtmm_status st;
  if (!dims || !params || !filter) return DTMM_ERR_ARG;
  st = dtmm_check_shape(dims, params);
  if (st != DTMM_OK) return st;
  /* Blocks: B divides C_in; B < C_in only in version 2 and for 1x1 kernels (the
   * only layers with a block driver, docs/contract.md). */
  block = filter->block_size == 0 ? dims->input_c : filter->block_size;
  if (block < 1 || block > dims->input_c || dims->input_c % block != 0) return DTMM_ERR_PARAMS;
  if (block < dims->input_c &&
      (params->version < 2 || dims->kernel_h != 1 || dims->kernel_w != 1))
    return DTMM_ERR_PARAMS;
  /* C_out * K * (C_in / B) bits (+ 7): at most C_out * C_in for 1x1 blocks, and
   * C_out * C_in < 2^31 is not implied by the shape checks. */
  bits = (int64_t)dims->kernel_h * dims->kernel_w * dims->output_c * (dims->input_c / block);
  if (bits + 7 > lim) return DTMM_ERR_ARG;

  if (!filter->bias || !filter->multiplier || !filter->shift) return DTMM_ERR_ARG;
  for (oc = 0; oc < dims->output_c; ++oc) {
    /* Ranges from the contract's table (generated from dtmm.core.contract). */
    if (filter->multiplier[oc] < DTMM_CONV_2D_V1_MULTIPLIER_MIN ||
        filter->shift[oc] < DTMM_CONV_2D_V1_SHIFT_MIN ||
        filter->shift[oc] > DTMM_CONV_2D_V1_SHIFT_MAX)
      return DTMM_ERR_PARAMS;
  }

  if (!filter->bitmap || filter->bitmap_bytes != (int32_t)((bits + 7) / 8)) return DTMM_ERR_BITMAP;
  if (bits & 7) {
    const uint32_t pad_mask = 0xFFu << (uint32_t)(bits & 7);
    if (filter->bitmap[filter->bitmap_bytes - 1] & pad_mask) return DTMM_ERR_BITMAP;
  }
  kept = 0;
  for (i = 0; i < filter->bitmap_bytes; ++i) kept += dtmm_popcount8(filter->bitmap[i]);
  if (filter->num_filterlets != kept) return DTMM_ERR_VALUES;
  if (kept > 0 && !filter->values) return DTMM_ERR_VALUES;
  if ((int64_t)kept * block > lim) return DTMM_ERR_VALUES;
  dtmm_make_geom(dims, params, &g);
  if (dtmm_conv_s8_built_driver(&g, filter->block_size) == DTMM_DRIVER_NONE)
    return DTMM_ERR_UNSUPPORTED;
  return DTMM_OK;
}
