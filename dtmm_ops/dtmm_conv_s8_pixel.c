/* Pixel driver: output planes with fewer pixels than a group (microWakeWord's
 * convs have 1x1 output planes), and the leftover pixels of the portable pointwise
 * driver.
 *
 * One pixel at a time, its window read as [taps][C_in] bytes (in place when the
 * input already has that layout, else copied to scratch), so that every stretch of
 * consecutive kept taps of a channel is one dot product. On MVE the channels go 4
 * at a time: four scalar sums become one vector for the requantization, with the
 * 4 channels' multipliers and shifts loaded as vectors and one 4-byte store; a
 * fully pruned channel is then a lane that keeps its bias and costs nothing. */
#include "dtmm_conv_s8_drivers.h"

/* The window of every pixel is contiguous in the input: all taps inside, and
 * tap t at t * C_in from the first. */
static int dtmm_window_contiguous(const dtmm_geom* g) {
  return !dtmm_has_border(g) && (g->ker_w == 1 || g->dw == 1) &&
         (g->ker_h == 1 || (int64_t)g->dh * g->in_w == g->ker_w);
}

int32_t dtmm_pixel_s8_get_buffer_size(const dtmm_geom* g) {
  return dtmm_window_contiguous(g) ? 0 : g->taps * g->in_c;
}

/* *acc + the kept taps of the channel whose bitmap field starts at bit pos, over a
 * contiguous window: consecutive kept taps are one run. Kernels above 25 taps
 * (out of line) read the field 32 bits at a time; a run across two words is two
 * dot products. v walks the values; returns where it stops (so that it stays in a
 * register across channels). */
static __attribute__((noinline)) const int8_t* dtmm_channel_dot_long(
    const dtmm_geom* g, const dtmm_fwcs_filter* f, int32_t pos, const int8_t* win,
    const int8_t* v, int32_t* acc) {
  const int32_t c = g->in_c, taps = g->taps;
  int32_t base, t, run, s = *acc;
  for (base = 0; base < taps; base += 32) {
    uint32_t m = dtmm_bits(f->bitmap, f->bitmap_bytes, pos + base, taps - base < 32 ? taps - base : 32);
    while (m) {
      run = dtmm_next_run(&m, 0xFFFFFFFFu, &t) * c;
      s = dtmm_mac_1(v, win + (base + t) * c, run, s);
      v += run;
    }
  }
  *acc = s;
  return v;
}

DTMM_INLINE const int8_t* dtmm_channel_dot(const dtmm_geom* g, const dtmm_fwcs_filter* f,
                                           int32_t pos, const int8_t* win, const int8_t* v,
                                           int32_t* acc) {
  const int32_t c = g->in_c;
  int32_t t, run, s;
  uint32_t m;
  if (g->taps > 25) return dtmm_channel_dot_long(g, f, pos, win, v, acc);
  m = dtmm_bits(f->bitmap, f->bitmap_bytes, pos, g->taps);
  s = *acc;
  while (m) {
    run = dtmm_next_run_contig(&m, &t) * c;
    s = dtmm_mac_1(v, win + t * c, run, s);
    v += run;
  }
  *acc = s;
  return v;
}

#if defined(DTMM_ARCH_MVE)
/* 1x1, one pixel: a sparse matrix-vector product. The kept channels' rows are
 * consecutive in the values, so any 4 kept channels are 4 consecutive rows: one
 * dtmm_mac_1x4_v per 4 KEPT channels (the cost falls with every pruned channel),
 * the 4 sums scattered to their channels in a block of 32 int32 on the stack
 * (zeroed first, so a pruned channel's sum is 0). Per block (one bitmap word) the
 * channels are then requantized 4 at a time with their biases. */
#define DTMM_PIXEL_BLOCK DTMM_WORD_CHANNELS

/* out[k] = requantized acc[k] + bias[k], k < n: whole groups of
 * 4 unpredicated, then the last 1-3 channels predicated (pointers in locals: the
 * stores to out may alias anything). */
DTMM_INLINE void dtmm_pixel_requant_block(const int32_t* acc, const int32_t* bias,
                                          const int32_t* mult, const int32_t* shift,
                                          int32_t n, int32_t out_off, int32_t act_min,
                                          int32_t act_max, int8_t* out) {
  const int32x4_t lo = vdupq_n_s32(act_min), hi = vdupq_n_s32(act_max);
  const int32x4_t zero = vdupq_n_s32(0);
  int32_t k;
  for (k = n >> 2; k > 0; --k) {
    const int32x4_t sh = vldrwq_s32(shift);
    const int32x4_t v = vaddq_s32(vldrwq_s32(acc), vldrwq_s32(bias));
    vstrbq_s32(out, dtmm_requant_x4(v, vmaxq_s32(sh, zero), vldrwq_s32(mult), vminq_s32(sh, zero),
                                    out_off, lo, hi));
    acc += 4, bias += 4, mult += 4, shift += 4, out += 4;
  }
  if (n & 3) {
    const mve_pred16_t p = vctp32q((uint32_t)(n & 3));
    const int32x4_t sh = vldrwq_z_s32(shift, p);
    const int32x4_t v = vaddq_s32(vldrwq_z_s32(acc, p), vldrwq_z_s32(bias, p));
    vstrbq_p_s32(out, dtmm_requant_x4(v, vmaxq_s32(sh, zero), vldrwq_z_s32(mult, p),
                                      vminq_s32(sh, zero), out_off, lo, hi), p);
  }
}

/* Out of line: its block and registers stay out of the k > 1 loop around it. */
static __attribute__((noinline)) void dtmm_pixel_pointwise(const dtmm_geom* g, const dtmm_fwcs_filter* f,
                                 const int8_t* win, int8_t* out) {
  const int32_t c = g->in_c, out_c = g->out_c;
  const int32x4_t zero = vdupq_n_s32(0);
  const int8_t* w = f->values;
  int32_t acc[DTMM_PIXEL_BLOCK];
  int32_t b, k;
  for (b = 0; b < out_c; b += DTMM_PIXEL_BLOCK) {
    const int32_t n = out_c - b < DTMM_PIXEL_BLOCK ? out_c - b : DTMM_PIXEL_BLOCK;
    uint32_t m = dtmm_bitmap_word(f->bitmap, f->bitmap_bytes, b >> 3);
    for (k = 0; k < n; k += 4) vstrwq_s32(acc + k, zero);
    while (m) {
      const uint32_t m1 = m & (m - 1u), m2 = m1 & (m1 - 1u), m3 = m2 & (m2 - 1u);
      if (m3) { /* 4 or more left */
        vstrwq_scatter_shifted_offset_s32(acc, dtmm_ctz4(m, m1, m2, m3),
                                          dtmm_mac_1x4_v(w, w + c, w + 2 * c, w + 3 * c, win, c));
        w += 4 * c;
        m = m3 & (m3 - 1u);
      } else if (!m1) { /* the last one: a single row */
        acc[DTMM_CTZ(m)] = dtmm_mac_1(w, win, c, 0);
        w += c;
        m = 0;
      } else { /* the last 2-3: unused lanes read the first row, store nothing */
        const int32_t kept = 2 + (m2 != 0);
        vstrwq_scatter_shifted_offset_p_s32(
            acc, dtmm_ctz4(m, m1, m2 | 0x80000000u, m),
            dtmm_mac_1x4_v(w, w + c, m2 ? w + 2 * c : w, w, win, c),
            vctp32q((uint32_t)kept));
        w += kept * c;
        m = 0;
      }
    }
    dtmm_pixel_requant_block(acc, f->bias + b, f->multiplier + b, f->shift + b, n,
                             g->out_off, g->act_min, g->act_max, out + b);
  }
}
#else
/* 1x1, one pixel, a channel at a time: its bit from a word read per 32 channels,
 * the arrays in locals (the byte stores to out may alias anything). */
static void dtmm_pixel_pointwise(const dtmm_geom* g, const dtmm_fwcs_filter* f,
                                 const int8_t* win, int8_t* out) {
  const int32_t c = g->in_c, out_c = g->out_c;
  const int32_t *bias = f->bias, *mult = f->multiplier, *shift = f->shift;
  const int32_t off = g->out_off, lo = g->act_min, hi = g->act_max;
  const int8_t* w = f->values;
  int32_t oc;
  uint32_t m = 0;
  for (oc = 0; oc < out_c; ++oc, m >>= 1) {
    int32_t s = bias[oc];
    if ((oc & 31) == 0) m = dtmm_bitmap_word(f->bitmap, f->bitmap_bytes, oc >> 3);
    if (m & 1u) {
      s = dtmm_mac_1(w, win, c, s);
      w += c;
    }
    out[oc] = dtmm_out_s8(dtmm_requantize(s, mult[oc], shift[oc]), off, lo, hi);
  }
}
#endif

#if defined(DTMM_ARCH_MVE)
/* k > 1, MVE: per block of channels the sums (0 for a pruned channel), then the
 * block's requantization with the biases, 4 channels a vector. Out of line, as the
 * 1x1 path: only one of their blocks is on the stack. */
static __attribute__((noinline)) void dtmm_pixel_window(const dtmm_geom* g,
                                                        const dtmm_fwcs_filter* f,
                                                        const int8_t* win, int8_t* out) {
  const int8_t* w = f->values;
  const uint8_t* bm = f->bitmap;
  const int32_t out_c = g->out_c, taps = g->taps, c = g->in_c, len = f->bitmap_bytes;
  const uint32_t field = taps <= 25 ? (1u << taps) - 1u : 0u;
  int32_t acc[DTMM_PIXEL_BLOCK], oc, j, pos = 0;
  for (oc = 0; oc < out_c; oc += DTMM_PIXEL_BLOCK) {
    const int32_t n = out_c - oc < DTMM_PIXEL_BLOCK ? out_c - oc : DTMM_PIXEL_BLOCK;
    if (field) { /* <= 25 taps: the field is one load, the sum stays in a register */
      for (j = 0; j < n; ++j, pos += taps) {
        int32_t s = 0, t, run;
        uint32_t m;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
        if ((pos >> 3) + 4 <= len) {
          memcpy(&m, bm + (pos >> 3), 4);
          m = (m >> (pos & 7)) & field;
        } else
#endif
          m = dtmm_bits(bm, len, pos, taps);
        while (m) {
          run = dtmm_next_run_contig(&m, &t) * c;
          s = dtmm_mac_1(w, win + t * c, run, s);
          w += run;
        }
        acc[j] = s;
      }
    } else {
      for (j = 0; j < n; ++j, pos += taps) {
        int32_t a = 0;
        w = dtmm_channel_dot_long(g, f, pos, win, w, &a);
        acc[j] = a;
      }
    }
    dtmm_pixel_requant_block(acc, f->bias + oc, f->multiplier + oc, f->shift + oc, n,
                             g->out_off, g->act_min, g->act_max, out + oc);
  }
}
#endif

#if defined(DTMM_ARCH_PORTABLE) /* only the portable pointwise driver has lone pixels */
void dtmm_pixel_channels_1x1(const dtmm_geom* g, const dtmm_fwcs_filter* f,
                             const int8_t* win, int8_t* out) {
  dtmm_pixel_pointwise(g, f, win, out);
}
#endif

void dtmm_pixel_channels(const dtmm_geom* g, const dtmm_fwcs_filter* f, const int8_t* win,
                         int8_t* out) {
  if (g->taps == 1) {
    dtmm_pixel_pointwise(g, f, win, out);
    return;
  }
#if defined(DTMM_ARCH_MVE)
  dtmm_pixel_window(g, f, win, out);
#else
  {
    const int8_t* w = f->values;
    const int32_t out_c = g->out_c, taps = g->taps;
    int32_t oc;
    for (oc = 0; oc < out_c; ++oc) {
      int32_t s = f->bias[oc];
      int32_t a = s; /* s itself stays in a register */
      w = dtmm_channel_dot(g, f, oc * taps, win, w, &a);
      s = a;
      out[oc] = dtmm_requant_out(s, f->multiplier[oc], f->shift[oc], g);
    }
  }
#endif
}

void dtmm_pixel_s8(const dtmm_geom* g, const dtmm_fwcs_filter* f, const int8_t* in,
                   int8_t* out, int8_t* scratch) {
  const int contiguous = dtmm_window_contiguous(g);
  int32_t y, x;
  if (contiguous && g->out_h == 1 && g->out_w == 1) { /* microWakeWord's convs */
    dtmm_pixel_channels(g, f, in - (g->pt * g->in_w + g->pl) * g->in_c, out);
    return;
  }
  for (y = 0; y < g->out_h; ++y)
    for (x = 0; x < g->out_w; ++x) {
      const int8_t* win;
      if (contiguous) {
        win = in + ((y * g->sh - g->pt) * g->in_w + (x * g->sw - g->pl)) * g->in_c;
      } else {
        dtmm_im2col(g, in, y, x, scratch);
        win = scratch;
      }
      dtmm_pixel_channels(g, f, win, out + (y * g->out_w + x) * g->out_c);
    }
}
