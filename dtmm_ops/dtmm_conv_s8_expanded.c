/* Expanded driver: wide kernels over few input channels (DS-CNN's 10x4 first conv
 * over 1 channel, 7x7 stems over 3). A filterlet there is 1-3 bytes, so runs of
 * kept filterlets are a few bytes long and their count grows with sparsity: the
 * run-by-run drivers would get slower as filterlets are pruned. This one expands
 * the kept filterlets into the dense [C_out][taps][C_in] filter in scratch once
 * per call (zeros where pruned; fully pruned channels are left out), then runs a
 * dense conv over im2col rows: DTMM_P pixels per group, one dtmm_mac_p over all
 * taps per kept channel. Its cost falls with fully pruned channels only, and never
 * rises with sparsity. */
#include "dtmm_conv_s8_drivers.h"

/* Scratch: DTMM_P im2col rows, the expanded filter, the list of kept channels
 * (each part a multiple of 4 bytes). */
#define DTMM_ROUND4(n) (((n) + 3) & ~3)
int32_t dtmm_expanded_s8_get_buffer_size(const dtmm_geom* g) {
  const int32_t row = g->taps * g->in_c;
  return DTMM_ROUND4(DTMM_P * row) + DTMM_ROUND4(g->out_c * row) + 4 * g->out_c;
}

/* The dense filter of the kept channels into w_out ([kept][taps][C_in]) and their
 * indices into kept; returns how many. A fully pruned channel's constant goes to
 * out here (no second pass over the fields). */
static int32_t dtmm_expand(const dtmm_geom* g, const dtmm_fwcs_filter* f, int8_t* w_out,
                           int32_t* kept, int8_t* out) {
  const int32_t c = g->in_c, taps = g->taps, row = taps * c;
  const int8_t* v = f->values;
  int32_t oc, n = 0, pos = 0;
  for (oc = 0; oc < g->out_c; ++oc, pos += taps) {
    int8_t* dst = w_out + n * row;
    int32_t base, any = 0;
    for (base = 0; base < taps; base += 32) {
      uint32_t m = dtmm_bits(f->bitmap, f->bitmap_bytes, pos + base,
                             taps - base < 32 ? taps - base : 32);
      int32_t t = 0;
      if (m && !any) {
        dtmm_fill(dst, 0, row);
        any = 1;
      }
      while (m) { /* per kept filterlet: the cost falls with sparsity */
        t = DTMM_CTZ(m);
        m &= m - 1u;
        dtmm_copy(dst + (base + t) * c, v, c);
        v += c;
      }
    }
    if (any) kept[n++] = oc;
    else dtmm_fill_channel(g, f, out, g->out_h * g->out_w, oc);
  }
  return n;
}

void dtmm_expanded_s8(const dtmm_geom* g, const dtmm_fwcs_filter* f, const int8_t* in,
                      int8_t* out, int8_t* scratch) {
  const int32_t row = g->taps * g->in_c, out_c = g->out_c;
  int8_t* rows = scratch;
  int8_t* wx = scratch + DTMM_ROUND4(DTMM_P * row);
  int32_t* kept = (int32_t*)(void*)(wx + DTMM_ROUND4(out_c * row)); /* scratch is aligned */
  const int32_t n_kept = dtmm_expand(g, f, wx, kept, out);
  int32_t pix, npix = g->out_h * g->out_w, j, k;
#if defined(DTMM_ARCH_MVE)
  const int32x4_t lo = vdupq_n_s32(g->act_min), hi = vdupq_n_s32(g->act_max);
#endif
  for (pix = 0; pix < npix; pix += DTMM_P) {
    const int32_t np = npix - pix < DTMM_P ? npix - pix : DTMM_P;
    int32_t oo[DTMM_P];
#if defined(DTMM_ARCH_MVE)
    uint32x4_t offs;
#endif
    for (j = 0; j < DTMM_P; ++j) {
      const int32_t p = pix + (j < np ? j : np - 1), y = p / g->out_w;
      oo[j] = p * out_c;
      if (j < np) dtmm_im2col(g, in, y, p - y * g->out_w, rows + j * row);
      else memcpy(rows + j * row, rows + (np - 1) * row, (size_t)row);
    }
#if defined(DTMM_ARCH_MVE)
    offs = vldrwq_u32((const uint32_t*)oo);
#endif
    for (k = 0; k < n_kept; ++k) {
      const int32_t oc = kept[k];
      dtmm_acc acc;
      dtmm_acc_set(&acc, f->bias[oc]);
      dtmm_mac_p(wx + k * row, rows, row, row, &acc);
#if defined(DTMM_ARCH_MVE)
      {
        const dtmm_rq_x4 rq = dtmm_rq_channel(f->multiplier[oc], f->shift[oc]);
        dtmm_store_p(&acc, np, &rq, g->out_off, lo, hi, out + oc, offs);
      }
#else
      dtmm_store_p(&acc, np, f->multiplier[oc], f->shift[oc], g, out + oc, oo);
#endif
    }
  }
}
