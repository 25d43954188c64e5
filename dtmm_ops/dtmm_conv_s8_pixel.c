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

/* Sum of the kept taps of the channel whose bitmap field starts at bit pos, over a
 * contiguous window: consecutive kept taps (across the 32-bit words of the field)
 * are one run. *w walks the values. */
DTMM_INLINE int32_t dtmm_channel_dot(const dtmm_geom* g, const dtmm_fwcs_filter* f,
                                     int32_t pos, const int8_t* win, const int8_t** w,
                                     int32_t acc) {
  const int32_t c = g->in_c;
  int32_t base = 0, start = 0, len = 0, left;
  for (left = g->taps; left > 0; left -= 32, base += 32, pos += 32) {
    uint32_t m = dtmm_bits(f->bitmap, f->bitmap_bytes, pos, left < 32 ? left : 32);
    while (m) {
      int32_t t;
      const int32_t run = dtmm_next_run(&m, 0xFFFFFFFFu, &t);
      if (len && start + len == base + t) {
        len += run; /* continues across the word boundary */
        continue;
      }
      if (len) {
        acc = dtmm_mac_1(*w, win + start * c, len * c, acc);
        *w += len * c;
      }
      start = base + t;
      len = run;
    }
  }
  if (len) {
    acc = dtmm_mac_1(*w, win + start * c, len * c, acc);
    *w += len * c;
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
    int32_t s[4] = {0, 0, 0, 0};
    int32_t j;
    dtmm_rq_x4 rq;
    memcpy(s, f->bias + oc, 4u * (uint32_t)lanes);
    if (taps == 1) { /* pointwise: one bit per channel, a kept one is C_in bytes */
      const uint32_t m = dtmm_bits(f->bitmap, f->bitmap_bytes, oc, lanes);
      for (j = 0; j < lanes; ++j)
        if ((m >> j) & 1u) {
          s[j] = dtmm_mac_1(w, win, c, s[j]);
          w += c;
        }
    } else {
      for (j = 0; j < lanes; ++j) s[j] = dtmm_channel_dot(g, f, (oc + j) * taps, win, &w, s[j]);
    }
    rq = dtmm_rq_channels(f->multiplier + oc, f->shift + oc, lanes);
    vstrbq_p_s32(out + oc,
                 dtmm_requant_x4(dtmm_vec4(s[0], s[1], s[2], s[3]), rq.left, rq.mult, rq.neg,
                                 g->out_off, lo, hi),
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
