/* Helpers shared by the DTMM drivers: geometry, tap tables, im2col, the constant
 * output of fully pruned channels. */
#include <string.h>

#include "dtmm_conv_s8_support.h"

/* First and one-past-last output index whose taps lie inside [0, in). Written so
 * that no intermediate overflows for any validated layer (the stride may be close
 * to INT32_MAX when the output has one row). */
DTMM_INLINE void dtmm_interior(int32_t in, int32_t out, int32_t k, int32_t s, int32_t d,
                               int32_t pad, int32_t* lo, int32_t* hi) {
  const int32_t span = (k - 1) * d;      /* validated: fits */
  int32_t l, h;
  /* Most layers (VALID, 1x1): every tap inside, without the divisions' ~15
   * instructions per axis on every call (validated: (out - 1) * s + span fits). */
  if (pad == 0 && (out - 1) * s + span <= in - 1) {
    *lo = 0;
    *hi = out;
    return;
  }
  l = pad / s + (pad % s != 0); /* first y with y*s - pad >= 0 */
  if (in - 1 - span + pad < 0) {
    h = 0;
  } else {
    h = (in - 1 - span + pad) / s + 1; /* y*s - pad + span <= in - 1 */
  }
  if (h > out) h = out;
  if (l > h) l = h;
  *lo = l;
  *hi = h;
}

/* Field by field in the struct's order (on MVE gcc merges them into vector copies). */
void dtmm_make_geom(const dtmm_conv_dims* d, const dtmm_conv_params* p, dtmm_geom* g) {
  g->in_h = d->input_h;
  g->in_w = d->input_w;
  g->in_c = d->input_c;
  g->out_h = d->output_h;
  g->out_w = d->output_w;
  g->out_c = d->output_c;
  g->ker_h = d->kernel_h;
  g->ker_w = d->kernel_w;
  g->sh = p->stride_h;
  g->sw = p->stride_w;
  g->dh = p->dilation_h;
  g->dw = p->dilation_w;
  g->pt = p->pad_top;
  g->pl = p->pad_left;
  g->zp_in = p->input_zero_point;
  g->out_off = p->output_offset;
  g->act_min = p->activation_min;
  g->act_max = p->activation_max;
  g->taps = d->kernel_h * d->kernel_w;
  dtmm_interior(g->in_h, g->out_h, g->ker_h, g->sh, g->dh, g->pt, &g->y_lo, &g->y_hi);
  dtmm_interior(g->in_w, g->out_w, g->ker_w, g->sw, g->dw, g->pl, &g->x_lo, &g->x_hi);
}

uint32_t dtmm_tap_table(const dtmm_geom* g, int32_t* off) {
  int32_t t;
  uint32_t cont = 0;
  for (t = 0; t < g->taps; ++t) {
    const int32_t kh = t / g->ker_w, kw = t - kh * g->ker_w;
    /* Unsigned: with a kernel taller than the input this may wrap; such a layer has
     * no interior pixel, so the value is never used. */
    off[t] = (int32_t)(((uint32_t)kh * (uint32_t)g->dh * (uint32_t)g->in_w +
                        (uint32_t)kw * (uint32_t)g->dw) *
                       (uint32_t)g->in_c);
    if (t > 0 && (uint32_t)off[t] - (uint32_t)off[t - 1] == (uint32_t)g->in_c) cont |= 1u << t;
  }
  return cont;
}

/* dtmm_im2col for dilation_w > 1: tap by tap. The fields are read into locals once
 * (stores through int8_t pointers and the MVE copy's asm would reload them). */
static void dtmm_im2col_dilated(const dtmm_geom* g, const int8_t* in, int32_t y, int32_t ix0,
                                int32_t k0, int32_t k1, int8_t* dst) {
  const int32_t c = g->in_c, ker_w = g->ker_w, ker_h = g->ker_h, row = ker_w * c;
  const int32_t in_w = g->in_w, in_h = g->in_h, dw = g->dw, dh = g->dh;
  const int8_t zp = (int8_t)g->zp_in;
  const int32_t iy0 = y * g->sh - g->pt, n = k1 - k0;
  /* Used only between in-bounds taps, where dw * C_in is less than an input row
   * (uint32: no overflow where it is not used). */
  const uint32_t step = (uint32_t)dw * (uint32_t)c;
  int32_t kh;
  for (kh = 0; kh < ker_h; ++kh, dst += row) {
    const int32_t iy = iy0 + kh * dh;
    const int8_t* src;
    int8_t* d = dst + k0 * c;
    int32_t i = n;
    const int row_out = iy < 0 || iy >= in_h;
    /* padded taps: the row is zp_in first (one fill: rows are a few bytes) */
    if (row_out || n < ker_w) dtmm_fill(dst, zp, row);
    if (row_out || n <= 0) continue;
    src = in + (iy * in_w + ix0 + k0 * dw) * c;
    for (;;) {
      if (c == 4) { /* taps of 1-4 bytes: scalar copies, not a copy loop each */
        memcpy(d, src, 4);
      } else if (c < 4) {
        if (c & 2) memcpy(d, src, 2);
        if (c & 1) d[c - 1] = src[c - 1];
      } else {
        dtmm_copy(d, src, c);
      }
      if (--i == 0) break;
      d += c;
      src += (int32_t)step;
    }
  }
}

void dtmm_im2col(const dtmm_geom* g, const int8_t* in, int32_t y, int32_t x, int8_t* dst) {
  const int32_t c = g->in_c, row = g->ker_w * c;
  const int8_t zp = (int8_t)g->zp_in;
  const int32_t ix0 = x * g->sw - g->pl;
  int32_t kh, k0 = 0, k1 = g->ker_w;
  /* Kernel columns [k0, k1) are inside the input (the same for every row). */
  while (k0 < g->ker_w && ix0 + k0 * g->dw < 0) k0++;
  while (k1 > k0 && ix0 + (k1 - 1) * g->dw >= g->in_w) k1--;
  if (g->dw > 1) {
    dtmm_im2col_dilated(g, in, y, ix0, k0, k1, dst);
    return;
  }
  for (kh = 0; kh < g->ker_h; ++kh, dst += row) {
    const int32_t iy = y * g->sh - g->pt + kh * g->dh;
    if (iy < 0 || iy >= g->in_h || k0 >= k1) {
      dtmm_fill(dst, zp, row);
      continue;
    }
    dtmm_fill(dst, zp, k0 * c);
    dtmm_copy(dst + k0 * c, in + (iy * g->in_w + ix0 + k0) * c, (k1 - k0) * c);
    dtmm_fill(dst + k1 * c, zp, (g->ker_w - k1) * c);
  }
}

/* One pruned channel's constant into every pixel. */
void dtmm_fill_channel(const dtmm_geom* g, const dtmm_fwcs_filter* f, int8_t* out,
                              int32_t pixels, int32_t oc) {
  const int32_t out_c = g->out_c;
  const int8_t v = dtmm_requant_out(f->bias[oc], f->multiplier[oc], f->shift[oc], g);
  int8_t* o = out + oc;
  int32_t i = pixels;
  for (; i >= 4; i -= 4) {
    o[0] = v;
    o[out_c] = v;
    o[2 * out_c] = v;
    o[3 * out_c] = v;
    o += 4 * out_c;
  }
  for (; i > 0; --i) {
    *o = v;
    o += out_c;
  }
}

void dtmm_fill_pruned(const dtmm_geom* g, const dtmm_fwcs_filter* f, int8_t* out,
                      int32_t pixels) {
  int32_t oc;
  if (g->taps == 1) { /* one bit per channel: the pruned ones from the bitmap words */
    for (oc = 0; oc < g->out_c; oc += 32) {
      const int32_t nb = g->out_c - oc < 32 ? g->out_c - oc : 32;
      uint32_t m = ~dtmm_bits(f->bitmap, f->bitmap_bytes, oc, nb) &
                   (nb == 32 ? 0xFFFFFFFFu : (1u << nb) - 1u);
      while (m) {
        dtmm_fill_channel(g, f, out, pixels, oc + DTMM_CTZ(m));
        m &= m - 1u;
      }
    }
    return;
  }
  for (oc = 0; oc < g->out_c; ++oc)
    if (dtmm_channel_pruned(g, f, oc)) dtmm_fill_channel(g, f, out, pixels, oc);
}
