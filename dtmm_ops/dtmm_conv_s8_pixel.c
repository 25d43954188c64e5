/* Pixel driver: output planes with fewer pixels than a group (microWakeWord's
 * convs have 1x1 output planes), and the leftover pixels of the pointwise driver.
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
/* Lane predicate (4 bits per 32-bit lane) of a 4-bit lane mask. */
static const uint16_t k_lane_pred[16] = {
    0x0000, 0x000F, 0x00F0, 0x00FF, 0x0F00, 0x0F0F, 0x0FF0, 0x0FFF,
    0xF000, 0xF00F, 0xF0F0, 0xF0FF, 0xFF00, 0xFF0F, 0xFFF0, 0xFFFF};

/* Per 4-bit lane mask: bits 2j..2j+1 the row (among the kept ones, in order) lane j
 * reads, 0 for a pruned lane (it reads the first kept row; its sum is dropped);
 * bits 8..10 the number kept. */
static const uint16_t k_lane_rows[16] = {0x000, 0x100, 0x100, 0x204, 0x100, 0x210,
                                         0x210, 0x324, 0x100, 0x240, 0x240, 0x384,
                                         0x240, 0x390, 0x390, 0x4E4};

/* 1x1, one pixel, 4 consecutive channels at a time: the kept ones are consecutive
 * rows of C_in values, so any 1-4 kept channels are one dtmm_mac_1x4_v with the row
 * pointers from a table (no branch per lane); the sums are added to the bias in
 * the kept lanes. The bitmap is read a word (8 groups) at a time; a group with no
 * kept channel is its bias, requantized. */
static void dtmm_pixel_pointwise(const dtmm_geom* g, const dtmm_fwcs_filter* f,
                                 const int8_t* win, int8_t* out) {
  const int32_t c = g->in_c, out_c = g->out_c;
  const int32x4_t lo = vdupq_n_s32(g->act_min), hi = vdupq_n_s32(g->act_max);
  const int8_t* w = f->values;
  int32_t oc;
  uint32_t word = 0;
  for (oc = 0; oc < out_c; oc += 4, word >>= 4) {
    const int32_t lanes = out_c - oc < 4 ? out_c - oc : 4;
    const mve_pred16_t p = vctp32q((uint32_t)lanes);
    uint32_t nib;
    int32x4_t acc = vldrwq_z_s32(f->bias + oc, p);
    dtmm_rq_x4 rq;
    if ((oc & 31) == 0) word = dtmm_bits32(f->bitmap, f->bitmap_bytes, oc);
    nib = word & 15u; /* bits past C_out are 0 (validated padding) */
    if (nib) {
      const uint32_t t = k_lane_rows[nib];
      const int8_t* r1 = w + c * (int32_t)((t >> 2) & 3u);
      const int8_t* r2 = w + c * (int32_t)((t >> 4) & 3u);
      const int8_t* r3 = w + c * (int32_t)((t >> 6) & 3u);
      acc = vaddq_m_s32(acc, acc, dtmm_mac_1x4_v(w, r1, r2, r3, win, c), k_lane_pred[nib]);
      w += c * (int32_t)(t >> 8);
    }
    rq = dtmm_rq_channels(f->multiplier + oc, f->shift + oc, lanes);
    vstrbq_p_s32(out + oc, dtmm_requant_x4(acc, rq.left, rq.mult, rq.neg, g->out_off, lo, hi), p);
  }
}
#endif

void dtmm_pixel_channels(const dtmm_geom* g, const dtmm_fwcs_filter* f, const int8_t* win,
                         int8_t* out) {
  const int8_t* w = f->values;
  const int32_t out_c = g->out_c, taps = g->taps;
  int32_t oc;
#if defined(DTMM_ARCH_MVE)
  const int32x4_t lo = vdupq_n_s32(g->act_min), hi = vdupq_n_s32(g->act_max);
  if (taps == 1) {
    dtmm_pixel_pointwise(g, f, win, out);
    return;
  }
  for (oc = 0; oc < out_c; oc += 4) {
    /* 4 channels' sums (a pruned one keeps its bias) into one vector */
    const int32_t lanes = out_c - oc < 4 ? out_c - oc : 4;
    const mve_pred16_t p = vctp32q((uint32_t)lanes);
    int32_t a[4], j;
    dtmm_rq_x4 rq;
    vstrwq_s32(a, vldrwq_z_s32(f->bias + oc, p));
    for (j = 0; j < lanes; ++j) w = dtmm_channel_dot(g, f, (oc + j) * taps, win, w, &a[j]);
    rq = dtmm_rq_channels(f->multiplier + oc, f->shift + oc, lanes);
    vstrbq_p_s32(out + oc,
                 dtmm_requant_x4(vldrwq_s32(a), rq.left, rq.mult, rq.neg, g->out_off, lo, hi), p);
  }
#else
  const int32_t c = g->in_c;
  for (oc = 0; oc < out_c; ++oc) {
    int32_t s = f->bias[oc];
    if (taps == 1) {
      if (dtmm_bits(f->bitmap, f->bitmap_bytes, oc, 1)) {
        s = dtmm_mac_1(w, win, c, s);
        w += c;
      }
    } else {
      int32_t a = s; /* s itself stays in a register */
      w = dtmm_channel_dot(g, f, oc * taps, win, w, &a);
      s = a;
    }
    out[oc] = dtmm_requant_out(s, f->multiplier[oc], f->shift[oc], g);
  }
#endif
}

void dtmm_pixel_s8(const dtmm_geom* g, const dtmm_fwcs_filter* f, const int8_t* in,
                   int8_t* out, int8_t* scratch) {
  const int contiguous = dtmm_window_contiguous(g);
  int32_t y, x;
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
