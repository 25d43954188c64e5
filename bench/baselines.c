/* Baselines for bench/kernels: the dense variant of the DTMM driver and a CSR
 * kernel. Both reuse the DTMM helpers (im2col, requantization) so that the
 * comparison measures only what the sparsity format changes. */
#define DTMM_DENSE_VARIANT 1
#include "dtmm_conv_s8.c" /* defines dtmm_dense_conv_s8 and the static helpers */

#include "baselines.h"

#define CSR_P 4

int32_t dtmm_csr_conv_s8_get_buffer_size(const dtmm_conv_dims* dims) {
  return CSR_P * dims->kernel_h * dims->kernel_w * dims->input_c;
}

/* Every group of CSR_P pixels is copied to im2col rows (zp_in at padded taps);
 * each non-zero weight is then loaded once and used for the CSR_P pixels. */
dtmm_status dtmm_csr_conv_s8(const dtmm_conv_dims* dims, const dtmm_conv_params* params,
                             const dtmm_csr_filter* f, const int8_t* input,
                             int8_t* output, void* scratch) {
  dtmm_geom g;
  int32_t b, pix0, j, oc;
  int8_t* col = (int8_t*)scratch;
  int32_t row, npix;
  dtmm_make_geom(dims, params, &g);
  row = g.taps * g.in_c;
  npix = g.out_h * g.out_w;
  for (b = 0; b < dims->batches; ++b) {
    const int8_t* in_b = input + b * g.in_h * g.in_w * g.in_c;
    int8_t* out_b = output + b * npix * g.out_c;
    for (pix0 = 0; pix0 < npix; pix0 += CSR_P) {
      const int32_t np = npix - pix0 < CSR_P ? npix - pix0 : CSR_P;
      const int8_t *c0 = col, *c1 = col + row, *c2 = col + 2 * row, *c3 = col + 3 * row;
      for (j = 0; j < CSR_P; ++j) {
        const int32_t pix = pix0 + (j < np ? j : np - 1);
        const int32_t y = pix / g.out_w;
        dtmm_im2col(&g, in_b, y, pix - y * g.out_w, (int8_t)params->input_zero_point,
                    col + j * row);
      }
      for (oc = 0; oc < g.out_c; ++oc) {
        int32_t a0 = f->bias[oc], a1 = a0, a2 = a0, a3 = a0;
        int32_t i;
        const int32_t end = f->row_ptr[oc + 1];
        for (i = f->row_ptr[oc]; i < end; ++i) {
          const int32_t w = f->val[i];
          const int32_t k = f->col[i];
          a0 += w * c0[k];
          a1 += w * c1[k];
          a2 += w * c2[k];
          a3 += w * c3[k];
        }
        for (j = 0; j < np; ++j) {
          const int32_t a = j == 0 ? a0 : j == 1 ? a1 : j == 2 ? a2 : a3;
          out_b[(pix0 + j) * g.out_c + oc] =
              dtmm_clamp_out(dtmm_requantize(a, f->multiplier[oc], f->shift[oc]),
                             params->output_offset, params->activation_min,
                             params->activation_max);
        }
      }
    }
  }
  return DTMM_OK;
}
