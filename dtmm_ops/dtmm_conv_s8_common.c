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

#if defined(DTMM_ARCH_MVE)
/* dtmm_copy / dtmm_fill into one of 4 interleaved im2col rows (16-byte chunks 64
 * bytes apart; n and dst's offset multiples of 16). */
DTMM_INLINE void dtmm_copy_il(int8_t* dst, const int8_t* src, int32_t n) {
  if (n <= 0) return;
  __asm volatile(DTMM_MVE_COPY_LOOP(64)
                 : [s] "+r"(src), [d] "+r"(dst)
                 : [n] "r"(n)
                 : "q0", "lr", "memory");
}

DTMM_INLINE void dtmm_fill_il(int8_t* dst, int8_t v, int32_t n) {
  if (n <= 0) return;
  __asm volatile(DTMM_MVE_FILL_LOOP(64)
                 : [d] "+r"(dst)
                 : [n] "r"(n), [v] "r"((int32_t)v)
                 : "q0", "lr", "memory");
}
#endif

/* The im2col copies into a plain row, or (il, MVE) an interleaved one: there a byte
 * offset o of the row is 4 * o from its start (o a multiple of 16). */
DTMM_INLINE void dtmm_row_copy(int8_t* dst, const int8_t* src, int32_t n, int il) {
#if defined(DTMM_ARCH_MVE)
  if (il) {
    dtmm_copy_il(dst, src, n);
    return;
  }
#endif
  (void)il;
  dtmm_copy(dst, src, n);
}

DTMM_INLINE void dtmm_row_fill(int8_t* dst, int8_t v, int32_t n, int il) {
#if defined(DTMM_ARCH_MVE)
  if (il) {
    dtmm_fill_il(dst, v, n);
    return;
  }
#endif
  (void)il;
  dtmm_fill(dst, v, n);
}

/* dtmm_im2col for dilation_w > 1: tap by tap. The fields are read into locals once
 * (stores through int8_t pointers and the MVE copy's asm would reload them). Plain
 * inline: forced inlining changed dtmm_im2col's code (+9 instructions a call on
 * M55); out of line the dilated layers were up to 9 % slower. */
static inline void dtmm_im2col_dilated(const dtmm_geom* g, const int8_t* in, int32_t y,
                                     int32_t ix0, int32_t k0, int32_t k1, int8_t* dst, int il) {
  const int32_t c = g->in_c, ker_w = g->ker_w, ker_h = g->ker_h, row = ker_w * c;
  const int32_t in_w = g->in_w, in_h = g->in_h, dw = g->dw, dh = g->dh;
  const int32_t sc = il ? 4 : 1; /* bytes of dst a byte of the row takes */
  const int8_t zp = (int8_t)g->zp_in;
  const int32_t iy0 = y * g->sh - g->pt, n = k1 - k0;
  /* Used only between in-bounds taps, where dw * C_in is less than an input row
   * (uint32: no overflow where it is not used). */
  const uint32_t step = (uint32_t)dw * (uint32_t)c;
  int32_t kh;
  for (kh = 0; kh < ker_h; ++kh, dst += row * sc) {
    const int32_t iy = iy0 + kh * dh;
    const int8_t* src;
    int8_t* d = dst + k0 * c * sc;
    int32_t i = n;
    const int row_out = iy < 0 || iy >= in_h;
    /* padded taps: the row is zp_in first (one fill: rows are a few bytes) */
    if (row_out || n < ker_w) dtmm_row_fill(dst, zp, row, il);
    if (row_out || n <= 0) continue;
    src = in + (iy * in_w + ix0 + k0 * dw) * c;
    for (;;) {
      if (il) { /* C_in a multiple of 16 */
        dtmm_row_copy(d, src, c, il);
      } else if (c == 4) { /* taps of 1-4 bytes: scalar copies, not a copy loop each */
        memcpy(d, src, 4);
      } else if (c < 4) {
        if (c & 2) memcpy(d, src, 2);
        if (c & 1) d[c - 1] = src[c - 1];
      } else {
        dtmm_copy(d, src, c);
      }
      if (--i == 0) break;
      d += c * sc;
      src += (int32_t)step;
    }
  }
}

DTMM_INLINE void dtmm_im2col_row(const dtmm_geom* g, const int8_t* in, int32_t y, int32_t x,
                                 int8_t* dst, int il) {
  const int32_t c = g->in_c, row = g->ker_w * c, sc = il ? 4 : 1;
  const int8_t zp = (int8_t)g->zp_in;
  const int32_t ix0 = x * g->sw - g->pl;
  int32_t kh, k0 = 0, k1 = g->ker_w;
  /* Kernel columns [k0, k1) are inside the input (the same for every row). */
  while (k0 < g->ker_w && ix0 + k0 * g->dw < 0) k0++;
  while (k1 > k0 && ix0 + (k1 - 1) * g->dw >= g->in_w) k1--;
  if (g->dw > 1) {
    dtmm_im2col_dilated(g, in, y, ix0, k0, k1, dst, il);
    return;
  }
  {
    /* Locals: the fills' and copies' asm clobbers memory, so fields would be
     * reloaded per row. */
    const int32_t ker_h = g->ker_h, in_h = g->in_h, in_w = g->in_w, dh = g->dh;
    const int32_t left = k0 * c, mid = (k1 - k0) * c, right = row - left - mid;
    int32_t iy = y * g->sh - g->pt;
    if (ker_h > 1 && mid > 0 && left == 0 && right == 0 && (int64_t)dh * in_w == g->ker_w) {
      /* Whole kernel rows that touch in the input (a kernel as wide as the input,
       * or an input one pixel wide): the rows inside are one copy. */
      int32_t lo = 0, hi = ker_h;
      while (lo < hi && iy + lo * dh < 0) lo++;
      while (hi > lo && iy + (hi - 1) * dh >= in_h) hi--;
      dtmm_row_fill(dst, zp, lo * row, il);
      if (hi > lo)
        dtmm_row_copy(dst + lo * row * sc, in + ((iy + lo * dh) * in_w + ix0) * c,
                      (hi - lo) * row, il);
      dtmm_row_fill(dst + hi * row * sc, zp, (ker_h - hi) * row, il);
      return;
    }
    /* iy steps in uint32: past the last row it may leave int32 (never used then) */
    for (kh = 0; kh < ker_h; ++kh, dst += row * sc, iy = (int32_t)((uint32_t)iy + (uint32_t)dh)) {
      if (iy < 0 || iy >= in_h || mid <= 0) {
        dtmm_row_fill(dst, zp, row, il);
        continue;
      }
      dtmm_row_fill(dst, zp, left, il);
      dtmm_row_copy(dst + left * sc, in + (iy * in_w + ix0 + k0) * c, mid, il);
      dtmm_row_fill(dst + (left + mid) * sc, zp, right, il);
    }
  }
}

void dtmm_im2col(const dtmm_geom* g, const int8_t* in, int32_t y, int32_t x, int8_t* dst) {
  dtmm_im2col_row(g, in, y, x, dst, 0);
}

#if defined(DTMM_ARCH_MVE)
void dtmm_im2col_interleaved(const dtmm_geom* g, const int8_t* in, int32_t y, int32_t x,
                             int8_t* dst) {
  dtmm_im2col_row(g, in, y, x, dst, 1);
}
#endif

/* v into one channel (at o) of every pixel. */
static void dtmm_fill_value(int8_t* o, int32_t out_c, int32_t pixels, int8_t v) {
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

/* One pruned channel's constant into every pixel. */
void dtmm_fill_channel(const dtmm_geom* g, const dtmm_fwcs_filter* f, int8_t* out,
                       int32_t pixels, int32_t oc) {
  dtmm_fill_value(out + oc, g->out_c, pixels,
                  dtmm_requant_out(f->bias[oc], f->multiplier[oc], f->shift[oc], g));
}

#if defined(DTMM_ARCH_MVE)
/* fields[j] = nb <= 25 bits of channel j's tap mask (bits pos + j * stride on) bit-
 * reversed, so the first is bit 31; j < n, and fields has room for n rounded up to 4
 * (the last group is stored whole). 4 channels a vector: the 4 bytes from each
 * field's first byte by 4 byte gathers, shifted by its bit offset. A field's bytes
 * past the bitmap are read from 4 bytes back instead (the shift grows by 8 a byte:
 * the field stays in those 32 bits), so no group reads outside it. A bitmap of
 * less than 4 bytes is read from a zero-padded copy. */
void dtmm_tap_fields(const uint8_t* bm, int32_t len, int32_t pos, int32_t stride, int32_t nb,
                     int32_t n, uint32_t* fields) {
  const uint32_t step = (uint32_t)(4 * stride);
  uint32x4_t p = vmlaq_n_u32(vdupq_n_u32((uint32_t)pos), vidupq_n_u32(0, 1), (uint32_t)stride);
  uint32x4_t last;
  uint8_t padded[4] = {0, 0, 0, 0};
  int32_t j;
  if (len < 4) {
    memcpy(padded, bm, (size_t)len);
    bm = padded;
    len = 4;
  }
  last = vdupq_n_u32((uint32_t)(len - 4));
  j = 0;
  do { /* n >= 1: no test before the first group */
    const uint32x4_t o = vminq_u32(vshrq_n_u32(p, 3), last);
    const int32x4_t sh = vreinterpretq_s32_u32(vsubq_u32(p, vshlq_n_u32(o, 3)));
    uint32x4_t v = vsliq_n_u32(vldrbq_gather_offset_u32(bm + 2, o),
                               vldrbq_gather_offset_u32(bm + 3, o), 8);
    v = vsliq_n_u32(vldrbq_gather_offset_u32(bm + 1, o), v, 8);
    v = vsliq_n_u32(vldrbq_gather_offset_u32(bm, o), v, 8);
    /* the bottom nb bits reversed (the rest zeroed), then up to bit 31 */
    v = vshlq_r_u32(vbrsrq_n_u32(vshlq_u32(v, vnegq_s32(sh)), nb), 32 - nb);
    vstrwq_u32(fields + j, v);
    p = vaddq_n_u32(p, step);
  } while ((j += 4) < n);
}

/* consts[j] = the output of fully pruned channel oc + j (its requantized bias),
 * j < n. Out of line: measured 2-3 % faster at s = .9 on small planes than
 * inlined into the fill. */
static DTMM_NOINLINE void dtmm_pruned_consts(const dtmm_geom* g, const dtmm_fwcs_filter* f,
                                             int32_t oc, int32_t n, int8_t* consts) {
  dtmm_requant_block_x4(f->bias + oc, 0, f->bias + oc, f->multiplier + oc, f->shift + oc, n,
                        g->out_off, g->act_min, g->act_max, consts);
}

/* Pruned channels among 16 from which one predicated 16-byte store per pixel is
 * cheaper than a byte store per pixel and channel (about 3.5 against 1.5
 * instructions a pixel). */
#define DTMM_FILL_VECTOR_MIN 3

/* k > 1 on MVE: per block of 32 channels the fully pruned ones as byte-lane
 * predicates (the tap masks from dtmm_tap_fields where they fit a word), their
 * constants 4 lanes at a time, then per 16 channels one predicated 16-byte store
 * per pixel that writes only the pruned channels' bytes (a byte store per pixel
 * and channel where only 1-2 of the 16 are pruned). The scalar loop paid a field read, a
 * requantization and a store per pixel for each pruned channel (~70 instructions
 * a channel on an 8-pixel plane). */
static void dtmm_fill_pruned_blocks(const dtmm_geom* g, const dtmm_fwcs_filter* f,
                                    int8_t* out, int32_t pixels) {
  const int32_t out_c = g->out_c, taps = g->taps;
  uint32_t fields[DTMM_WORD_CHANNELS];
  int8_t pruned[DTMM_WORD_CHANNELS], consts[DTMM_WORD_CHANNELS];
  int32_t oc, j, i;
  for (oc = 0; oc < out_c; oc += DTMM_WORD_CHANNELS) {
    const int32_t n = out_c - oc < DTMM_WORD_CHANNELS ? out_c - oc : DTMM_WORD_CHANNELS;
    const mve_pred16_t in0 = vctp8q((uint32_t)n), in1 = vctp8q((uint32_t)(n > 16 ? n - 16 : 0));
    mve_pred16_t p0, p1;
    if (taps <= 25) {
      dtmm_tap_fields(f->bitmap, f->bitmap_bytes, oc * taps, taps, taps, n, fields);
      dtmm_empty_fields(fields, n, (uint8_t*)pruned);
    } else {
      for (j = 0; j < n; ++j) pruned[j] = (int8_t)dtmm_channel_pruned(g, f, oc + j);
    }
    p0 = vcmpneq_n_s8(vldrbq_z_s8(pruned, in0), 0);
    p1 = vcmpneq_n_s8(vldrbq_z_s8(pruned + 16, in1), 0);
    if ((p0 | p1) == 0) continue;
    dtmm_pruned_consts(g, f, oc, n, consts);
    for (j = 0; j < n; j += 16) { /* each half of the block */
      const mve_pred16_t p = j ? p1 : p0;
      const uint32_t count = (uint32_t)__builtin_popcount(p);
      if (count >= DTMM_FILL_VECTOR_MIN) { /* one predicated store per pixel */
        const int8x16_t k = vldrbq_z_s8(consts + j, p);
        int8_t* o = out + oc + j;
        for (i = pixels; i > 0; --i, o += out_c) vstrbq_p_s8(o, k, p);
      } else if (count) { /* a store per pixel and pruned channel */
        uint32_t m = p;
        while (m) {
          const int32_t k = DTMM_CTZ(m);
          dtmm_fill_value(out + oc + j + k, out_c, pixels, consts[j + k]);
          m &= m - 1u;
        }
      }
    }
  }
}
#endif

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
#if defined(DTMM_ARCH_MVE)
  dtmm_fill_pruned_blocks(g, f, out, pixels);
#else
  for (oc = 0; oc < g->out_c; ++oc)
    if (dtmm_channel_pruned(g, f, oc)) dtmm_fill_channel(g, f, out, pixels, oc);
#endif
}
