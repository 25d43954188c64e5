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
         (g->ker_h == 1 || g->dh * g->in_w == g->ker_w);
}

int32_t dtmm_pixel_s8_get_buffer_size(const dtmm_geom* g) {
  return dtmm_window_contiguous(g) ? 0 : g->taps * g->in_c;
}

/* acc + the kept taps of the channel whose bitmap field starts at bit pos, over a
 * contiguous window: consecutive kept taps are one run (a kernel above 32 taps is
 * read 32 bits at a time; a run across two words is two dot products). *w walks
 * the values. */
DTMM_INLINE int32_t dtmm_channel_dot(const dtmm_geom* g, const dtmm_fwcs_filter* f,
                                     int32_t pos, const int8_t* win, const int8_t** w,
                                     int32_t acc) {
  const int32_t c = g->in_c, taps = g->taps;
  int32_t base, t, run;
  for (base = 0; base < taps; base += 32) {
    uint32_t m = dtmm_bits(f->bitmap, f->bitmap_bytes, pos + base, taps - base < 32 ? taps - base : 32);
    while (m) {
      run = dtmm_next_run(&m, 0xFFFFFFFFu, &t) * c;
      acc = dtmm_mac_1(*w, win + (base + t) * c, run, acc);
      *w += run;
    }
  }
  return acc;
}

void dtmm_pixel_channels(const dtmm_geom* g, const dtmm_fwcs_filter* f, const int8_t* win,
                         int8_t* out) {
  const int8_t* w = f->values;
  const int32_t out_c = g->out_c, taps = g->taps, c = g->in_c;
  int32_t oc;
#if defined(DTMM_ARCH_MVE)
  const int32x4_t lo = vdupq_n_s32(g->act_min), hi = vdupq_n_s32(g->act_max);
  for (oc = 0; oc < out_c; oc += 4) {
    const int32_t lanes = out_c - oc < 4 ? out_c - oc : 4;
    const mve_pred16_t p = vctp32q((uint32_t)lanes);
    const int32x4_t bias = vldrwq_z_s32(f->bias + oc, p);
    int32_t s0 = vgetq_lane_s32(bias, 0), s1 = vgetq_lane_s32(bias, 1),
            s2 = vgetq_lane_s32(bias, 2), s3 = vgetq_lane_s32(bias, 3);
    dtmm_rq_x4 rq;
    if (taps == 1) { /* pointwise: one bit per channel, a kept one is C_in bytes */
      const uint32_t m = dtmm_bits(f->bitmap, f->bitmap_bytes, oc, lanes);
      if (m & 1u) s0 = dtmm_mac_1(w, win, c, s0), w += c;
      if (m & 2u) s1 = dtmm_mac_1(w, win, c, s1), w += c;
      if (m & 4u) s2 = dtmm_mac_1(w, win, c, s2), w += c;
      if (m & 8u) s3 = dtmm_mac_1(w, win, c, s3), w += c;
    } else {
      s0 = dtmm_channel_dot(g, f, oc * taps, win, &w, s0);
      if (lanes > 1) s1 = dtmm_channel_dot(g, f, (oc + 1) * taps, win, &w, s1);
      if (lanes > 2) s2 = dtmm_channel_dot(g, f, (oc + 2) * taps, win, &w, s2);
      if (lanes > 3) s3 = dtmm_channel_dot(g, f, (oc + 3) * taps, win, &w, s3);
    }
    rq = dtmm_rq_channels(f->multiplier + oc, f->shift + oc, lanes);
    vstrbq_p_s32(out + oc,
                 dtmm_requant_x4(dtmm_vec4(s0, s1, s2, s3), rq.left, rq.mult, rq.neg, g->out_off,
                                 lo, hi),
                 p);
  }
#else
  for (oc = 0; oc < out_c; ++oc) {
    int32_t s = f->bias[oc];
    if (taps == 1) {
      if (dtmm_bits(f->bitmap, f->bitmap_bytes, oc, 1)) {
        s = dtmm_mac_1(w, win, c, s);
        w += c;
      }
    } else {
      s = dtmm_channel_dot(g, f, oc * taps, win, &w, s);
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
