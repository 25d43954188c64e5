/* CSR baseline for bench/kernels (--csr): what unstructured, per-weight pruning
 * needs at the same weight sparsity. Every group of CSR_P pixels is copied to int8
 * im2col rows (zp_in at padded taps, the bias is folded as in DTMM); each non-zero
 * weight is then loaded once and used for the CSR_P pixels. Same semantics as
 * dtmm_conv_s8 (docs/contract.md), written independently of the library. */
#include "baselines.h"

#include <string.h>

#define CSR_P 4

int32_t dtmm_csr_conv_s8_get_buffer_size(const dtmm_conv_dims* dims) {
  return CSR_P * dims->kernel_h * dims->kernel_w * dims->input_c;
}

static int32_t csr_requantize(int32_t acc, int32_t mult, int32_t shift) {
  const int32_t left = shift > 0 ? shift : 0, right = shift > 0 ? 0 : -shift;
  const int32_t x = (int32_t)((uint32_t)acc << left);
  const int32_t high = (int32_t)(((int64_t)x * mult + ((int64_t)1 << 30)) >> 31);
  const int32_t mask = (int32_t)((1u << right) - 1u);
  const int32_t rem = high & mask, thr = (mask >> 1) + (high < 0 ? 1 : 0);
  return (high >> right) + (rem > thr ? 1 : 0);
}

static void csr_im2col(const dtmm_conv_dims* d, const dtmm_conv_params* p, const int8_t* in,
                       int32_t y, int32_t x, int8_t* dst) {
  int32_t kh, kw;
  const int32_t c = d->input_c;
  for (kh = 0; kh < d->kernel_h; ++kh) {
    const int32_t iy = y * p->stride_h - p->pad_top + kh * p->dilation_h;
    for (kw = 0; kw < d->kernel_w; ++kw) {
      const int32_t ix = x * p->stride_w - p->pad_left + kw * p->dilation_w;
      if (iy >= 0 && iy < d->input_h && ix >= 0 && ix < d->input_w) {
        memcpy(dst, in + (iy * d->input_w + ix) * c, (size_t)c);
      } else {
        memset(dst, (int8_t)p->input_zero_point, (size_t)c);
      }
      dst += c;
    }
  }
}

dtmm_status dtmm_csr_conv_s8(const dtmm_conv_dims* d, const dtmm_conv_params* p,
                             const dtmm_csr_filter* f, const int8_t* input, int8_t* output,
                             void* scratch) {
  const int32_t row = d->kernel_h * d->kernel_w * d->input_c;
  const int32_t npix = d->output_h * d->output_w;
  int8_t* col = (int8_t*)scratch;
  int32_t b, pix0, j, oc;
  for (b = 0; b < d->batches; ++b) {
    const int8_t* in_b = input + b * d->input_h * d->input_w * d->input_c;
    int8_t* out_b = output + b * npix * d->output_c;
    for (pix0 = 0; pix0 < npix; pix0 += CSR_P) {
      const int32_t np = npix - pix0 < CSR_P ? npix - pix0 : CSR_P;
      const int8_t *c0 = col, *c1 = col + row, *c2 = col + 2 * row, *c3 = col + 3 * row;
      for (j = 0; j < CSR_P; ++j) {
        const int32_t pix = pix0 + (j < np ? j : np - 1);
        const int32_t y = pix / d->output_w;
        csr_im2col(d, p, in_b, y, pix - y * d->output_w, col + j * row);
      }
      for (oc = 0; oc < d->output_c; ++oc) {
        uint32_t a[CSR_P];
        int32_t i;
        const int32_t end = f->row_ptr[oc + 1];
        a[0] = a[1] = a[2] = a[3] = (uint32_t)f->bias[oc];
        for (i = f->row_ptr[oc]; i < end; ++i) {
          const int32_t w = f->val[i];
          const int32_t k = f->col[i];
          a[0] += (uint32_t)(w * c0[k]);
          a[1] += (uint32_t)(w * c1[k]);
          a[2] += (uint32_t)(w * c2[k]);
          a[3] += (uint32_t)(w * c3[k]);
        }
        for (j = 0; j < np; ++j) {
          int32_t v = (int32_t)((uint32_t)csr_requantize((int32_t)a[j], f->multiplier[oc],
                                                         f->shift[oc]) +
                                (uint32_t)p->output_offset);
          v = v < p->activation_min ? p->activation_min : v;
          v = v > p->activation_max ? p->activation_max : v;
          out_b[(pix0 + j) * d->output_c + oc] = (int8_t)v;
        }
      }
    }
  }
  return DTMM_OK;
}
