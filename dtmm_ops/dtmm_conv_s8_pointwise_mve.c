/* Pointwise driver (1x1 kernels), Helium / MVE: a sparse matrix product. A
 * filterlet is a whole filter, and the kept channels' rows are consecutive in the
 * values, so any 4 kept channels are 4 consecutive rows: one dtmm_mac_1x4_v per 4
 * KEPT channels and pixel (the cost falls with every pruned channel, in steps of
 * 4). Each 4 rows run over every pixel, so their biases and requantization
 * constants are gathered once, and each pixel's 4 sums are requantized together
 * and scattered as 4 bytes. Channels go in blocks of 32 (one bitmap word); a
 * block's pruned channels get their constant (the requantized bias, computed once
 * per block) by one copy of the block per pixel, which the kept channels then
 * overwrite: per pixel a pruned channel costs a byte of that copy; 1-3 pruned
 * channels of a block instead ride in one group of 4 rows with kept ones.
 * (It replaced one kept channel x 4-pixel groups, which stay faster in 4 of the
 * suite's 205 1x1 cells: docs/kernels.md "Defaults".) */
#include "dtmm_conv_s8_drivers.h"

#if defined(DTMM_ARCH_MVE)

#define DTMM_POINTWISE_BLOCK DTMM_WORD_CHANNELS

/* The plane, as the row loops walk it. */
typedef struct {
  const int8_t* in;
  dtmm_pw_lines L;
  int32_t c, out_c, off;
  int32x4_t lo, hi;
} dtmm_pw_plane;

/* Rows w0..w3 for the lanes idx (channels of the block at out) over every pixel:
 * sum + bias requantized and stored to the lanes in p. With `mixed`, the lanes
 * outside `summed` are pruned channels riding along on dummy rows: they store
 * their bias alone. */
DTMM_INLINE void dtmm_pw_rows(const dtmm_pw_plane* P, const int8_t* w0, const int8_t* w1,
                              const int8_t* w2, const int8_t* w3, uint32x4_t idx,
                              mve_pred16_t p, int mixed, mve_pred16_t summed,
                              const int32_t* bias, const int32_t* mult, const int32_t* shift,
                              int8_t* o) {
  const int32x4_t zero = vdupq_n_s32(0);
  const int32x4_t vb = vldrwq_gather_shifted_offset_z_s32(bias, idx, p);
  const int32x4_t sh = vldrwq_gather_shifted_offset_z_s32(shift, idx, p);
  const int32x4_t vm = vldrwq_gather_shifted_offset_z_s32(mult, idx, p);
  const int32x4_t left = vmaxq_s32(sh, zero), neg = vminq_s32(sh, zero);
  const int32x4_t keep = vpselq_s32(vdupq_n_s32(-1), zero, summed);
  const int32_t c = P->c, out_c = P->out_c, off = P->off;
  const int32_t pitch = P->L.pitch;
  int32_t l, k;
  for (l = 0; l < P->L.lines; ++l) {
    const int8_t* xp = P->in + l * P->L.line_in;
    for (k = P->L.len; k > 0; --k, xp += pitch, o += out_c) {
      const int32x4_t sum = dtmm_mac_1x4_v(w0, w1, w2, w3, xp, c);
      if (mixed) { /* all 4 lanes stored; the dummies' sums masked off, no predicate */
        const int32x4_t v = vaddq_s32(vandq_s32(sum, keep), vb);
        vstrbq_scatter_offset_s32(o, idx, dtmm_requant_x4(v, left, vm, neg, off, P->lo, P->hi));
      } else {
        vstrbq_scatter_offset_p_s32(o, idx,
                                    dtmm_requant_x4(vaddq_s32(sum, vb), left, vm, neg, off,
                                                    P->lo, P->hi), p);
      }
    }
  }
}

void dtmm_pointwise_s8(const dtmm_geom* g, const dtmm_fwcs_filter* f, const int8_t* in,
                       int8_t* out) {
  const int32_t c = g->in_c, out_c = g->out_c, pixels = g->out_h * g->out_w;
  const int32x4_t zero = vdupq_n_s32(0);
  const int8_t* w = f->values;
  dtmm_pw_plane P;
  int8_t consts[DTMM_POINTWISE_BLOCK];
  int32_t b, k;
  P.in = in;
  P.L = dtmm_pointwise_lines(g);
  P.c = c;
  P.out_c = out_c;
  P.off = g->out_off;
  P.lo = vdupq_n_s32(g->act_min);
  P.hi = vdupq_n_s32(g->act_max);
  for (b = 0; b < out_c; b += DTMM_POINTWISE_BLOCK) {
    const int32_t n = out_c - b < DTMM_POINTWISE_BLOCK ? out_c - b : DTMM_POINTWISE_BLOCK;
    const uint32_t all = n < DTMM_POINTWISE_BLOCK ? (1u << n) - 1u : 0xFFFFFFFFu;
    const int32_t *bias = f->bias + b, *mult = f->multiplier + b, *shift = f->shift + b;
    uint32_t m = dtmm_bitmap_word(f->bitmap, f->bitmap_bytes, b >> 3) & all;
    const uint32_t pruned = ~m & all, p1 = pruned & (pruned - 1u), p2 = p1 & (p1 - 1u);
    if (pruned && !(p2 & (p2 - 1u)) && n >= 4) {
      /* 1-3 pruned: they ride in one group with the first q = 4 - pruned kept
       * channels (lanes q..3, on dummy rows), so the block takes as many groups as
       * with none pruned; their constants would cost more than the lanes they free */
      const uint32_t m1 = m & (m - 1u), m2 = m1 & (m1 - 1u);
      const int32_t q = 4 - (1 + (p1 != 0) + (p2 != 0));
      dtmm_pw_rows(&P, w, q > 1 ? w + c : w, q > 2 ? w + 2 * c : w, w,
                   dtmm_ctz4(m, q > 1 ? m1 : pruned, q > 2 ? m2 : q > 1 ? pruned : p1,
                             q > 2 ? pruned : q > 1 ? p1 : p2),
                   vctp32q(4), 1, vctp32q((uint32_t)q), bias, mult, shift, out + b);
      w += q * c;
      m = q > 2 ? m2 & (m2 - 1u) : q > 1 ? m2 : m1;
    } else if (pruned) { /* their constants, then one copy of the block per pixel */
      /* The constants as dtmm_requant_block_x4 computes them; calling it (inline or
       * out of line) cost this driver's loops 2-3 % at s = 0 in register allocation. */
      const mve_pred16_t first16 = vctp8q((uint32_t)n);
      const mve_pred16_t last16 = vctp8q((uint32_t)(n > 16 ? n - 16 : 0));
      int8x16_t k0, k1;
      int8_t* o = out + b;
      for (k = 0; k < n; k += 4) {
        const mve_pred16_t p = vctp32q((uint32_t)(n - k));
        const int32x4_t sh = vldrwq_z_s32(shift + k, p);
        vstrbq_p_s32(consts + k,
                     dtmm_requant_x4(vldrwq_z_s32(bias + k, p), vmaxq_s32(sh, zero),
                                     vldrwq_z_s32(mult + k, p), vminq_s32(sh, zero), P.off,
                                     P.lo, P.hi), p);
      }
      k0 = vldrbq_s8(consts);
      k1 = vldrbq_s8(consts + 16);
      for (k = pixels; k > 0; --k, o += out_c) {
        vstrbq_p_s8(o, k0, first16);
        vstrbq_p_s8(o + 16, k1, last16);
      }
    }
    while (m) {
      const uint32_t m1 = m & (m - 1u), m2 = m1 & (m1 - 1u), m3 = m2 & (m2 - 1u);
      const int32_t kept = m3 ? 4 : m2 ? 3 : m1 ? 2 : 1;
      /* lanes past `kept` repeat the first channel: predicated off */
      dtmm_pw_rows(&P, w, m1 ? w + c : w, m2 ? w + 2 * c : w, m3 ? w + 3 * c : w,
                   dtmm_ctz4(m, m1 ? m1 : m, m2 ? m2 : m, m3 ? m3 : m),
                   vctp32q((uint32_t)kept), 0, 0, bias, mult, shift, out + b);
      w += kept * c;
      m = m3 & (m3 - 1u);
    }
  }
}

#endif /* DTMM_ARCH_MVE */
