/* DTMM filterlet-sparse int8 convolution: validator, scratch size and compute.
 *
 * One driver for all three paths (see dtmm_conv_s8.h for the contract):
 *  - output pixels are taken in raster order in groups of DTMM_P (4 portable/MVE,
 *    2 DSP), so a group may span rows (a 1-wide output such as a 49x1 feature map
 *    still fills every group);
 *  - interior groups read the input in place (a filterlet's C_in inputs are
 *    contiguous in NHWC); a group with any padded tap is first copied to an int8
 *    im2col buffer in scratch with zp_in at padded taps, then runs the same code;
 *  - per output channel the K-bit bitmap field is read once per group, and each run
 *    of kept filterlets that is contiguous in the input (same kernel row, dilation 1)
 *    is one dot product: the weights are loaded once and used for every pixel;
 *  - per output channel and group: bias, the runs, then requantization.
 * Only the dot product and the requantization differ between the paths.
 */
#include "dtmm_conv_s8.h"

#include <string.h>

#if !defined(DTMM_FORCE_PORTABLE) && defined(__ARM_FEATURE_MVE) && (__ARM_FEATURE_MVE & 1)
#define DTMM_PATH_MVE 1
#include <arm_mve.h>
#define DTMM_P 4
#elif !defined(DTMM_FORCE_PORTABLE) && defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
#define DTMM_PATH_DSP 1
#include <arm_acle.h>
#define DTMM_P 2
#else
#define DTMM_PATH_PORTABLE 1
#define DTMM_P 4
#endif

/* The bench builds this file a second time with DTMM_DENSE_VARIANT defined: the same
 * driver without the bitmap (every filterlet kept, `values` is the dense OHWI
 * filter). It is the dense baseline the sparse kernel is measured against. */
#ifdef DTMM_DENSE_VARIANT
#define DTMM_CONV_FN dtmm_dense_conv_s8
#define DTMM_SIZE_FN dtmm_dense_conv_s8_get_buffer_size
#else
#define DTMM_CONV_FN dtmm_conv_s8
#define DTMM_SIZE_FN dtmm_conv_s8_get_buffer_size
#endif

/* Bitmap bits read per step: 25 keeps shift + width within one 32-bit word. */
#define DTMM_CHUNK 25

#if defined(__GNUC__) || defined(__clang__)
#define DTMM_INLINE static inline __attribute__((always_inline))
#define DTMM_CTZ(x) ((int32_t)__builtin_ctz(x))
#else
#define DTMM_INLINE static inline
static inline int32_t DTMM_CTZ(uint32_t x) {
  int32_t n = 0;
  while (!(x & 1u)) { x >>= 1; n++; }
  return n;
}
#endif

/* ------------------------------------------------------------------ geometry */

typedef struct {
  int32_t in_h, in_w, in_c, out_h, out_w, out_c, ker_h, ker_w, taps;
  int32_t sh, sw, dh, dw, pt, pl;
  int32_t y_lo, y_hi, x_lo, x_hi; /* output pixels whose taps are all inside */
} dtmm_geom;

/* First and one-past-last output index whose taps lie inside [0, in). */
static void dtmm_interior(int32_t in, int32_t out, int32_t k, int32_t s, int32_t d,
                          int32_t pad, int32_t* lo, int32_t* hi) {
  const int32_t span = (k - 1) * d; /* validated: no overflow */
  int32_t l = (pad + s - 1) / s;    /* y*s - pad >= 0 */
  int32_t h;
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

static void dtmm_make_geom(const dtmm_conv_dims* d, const dtmm_conv_params* p,
                           dtmm_geom* g) {
  g->in_h = d->input_h;
  g->in_w = d->input_w;
  g->in_c = d->input_c;
  g->out_h = d->output_h;
  g->out_w = d->output_w;
  g->out_c = d->output_c;
  g->ker_h = d->kernel_h;
  g->ker_w = d->kernel_w;
  g->taps = d->kernel_h * d->kernel_w;
  g->sh = p->stride_h;
  g->sw = p->stride_w;
  g->dh = p->dilation_h;
  g->dw = p->dilation_w;
  g->pt = p->pad_top;
  g->pl = p->pad_left;
  dtmm_interior(g->in_h, g->out_h, g->ker_h, g->sh, g->dh, g->pt, &g->y_lo, &g->y_hi);
  dtmm_interior(g->in_w, g->out_w, g->ker_w, g->sw, g->dw, g->pl, &g->x_lo, &g->x_hi);
}

static int dtmm_has_border(const dtmm_geom* g) {
  return !(g->y_lo == 0 && g->y_hi == g->out_h && g->x_lo == 0 && g->x_hi == g->out_w);
}

/* ----------------------------------------------------------------- validator */

#ifndef DTMM_DENSE_VARIANT
static int32_t dtmm_popcount8(uint32_t b) {
  b = b - ((b >> 1) & 0x55u);
  b = (b & 0x33u) + ((b >> 2) & 0x33u);
  return (int32_t)((b + (b >> 4)) & 0x0Fu);
}

dtmm_status dtmm_conv_s8_validate(const dtmm_conv_dims* dims,
                                  const dtmm_conv_params* params,
                                  const dtmm_fwcs_filter* filter) {
  const int64_t lim = INT32_MAX;
  int64_t taps, bits, in_elems, out_elems, span_h, span_w, reach_h, reach_w;
  int32_t i, oc, kept;

  if (!dims || !params || !filter) return DTMM_ERR_ARG;
  if (dims->batches < 1 || dims->input_h < 1 || dims->input_w < 1 || dims->input_c < 1 ||
      dims->output_h < 1 || dims->output_w < 1 || dims->output_c < 1 ||
      dims->kernel_h < 1 || dims->kernel_w < 1)
    return DTMM_ERR_ARG;
  in_elems = (int64_t)dims->batches * dims->input_h * dims->input_w;
  if (in_elems > lim || in_elems * dims->input_c > lim) return DTMM_ERR_ARG;
  out_elems = (int64_t)dims->batches * dims->output_h * dims->output_w;
  if (out_elems > lim || out_elems * dims->output_c > lim) return DTMM_ERR_ARG;
  taps = (int64_t)dims->kernel_h * dims->kernel_w;
  bits = taps * dims->output_c;
  /* 4 im2col rows of taps*C_in bytes must be addressable (scratch size). */
  if (bits + 7 > lim || taps * dims->input_c * 4 > lim) return DTMM_ERR_ARG;

  if (params->version != DTMM_FORMAT_VERSION) return DTMM_ERR_VERSION;
  if (params->stride_h < 1 || params->stride_w < 1 || params->dilation_h < 1 ||
      params->dilation_w < 1 || params->pad_top < 0 || params->pad_left < 0)
    return DTMM_ERR_PARAMS;
  /* Every coordinate the kernel forms, y*s - pad + k*d, must fit in int32. */
  span_h = (int64_t)(dims->kernel_h - 1) * params->dilation_h;
  span_w = (int64_t)(dims->kernel_w - 1) * params->dilation_w;
  reach_h = (int64_t)(dims->output_h - 1) * params->stride_h + span_h + params->pad_top +
            dims->input_h;
  reach_w = (int64_t)(dims->output_w - 1) * params->stride_w + span_w + params->pad_left +
            dims->input_w;
  if (reach_h > lim || reach_w > lim) return DTMM_ERR_PARAMS;
  if (params->pad_top > span_h || params->pad_left > span_w) return DTMM_ERR_PARAMS;
  if (params->input_zero_point < -128 || params->input_zero_point > 127 ||
      params->output_offset < -128 || params->output_offset > 127)
    return DTMM_ERR_PARAMS;
  if (params->activation_min < -128 || params->activation_max > 127 ||
      params->activation_min > params->activation_max)
    return DTMM_ERR_PARAMS;

  if (!filter->bias || !filter->multiplier || !filter->shift) return DTMM_ERR_ARG;
  for (oc = 0; oc < dims->output_c; ++oc) {
    if (filter->multiplier[oc] < 0 || filter->shift[oc] < -31 || filter->shift[oc] > 30)
      return DTMM_ERR_PARAMS;
  }

  if (!filter->bitmap || filter->bitmap_bytes != (int32_t)((bits + 7) / 8))
    return DTMM_ERR_BITMAP;
  if (bits & 7) {
    const uint32_t pad_mask = 0xFFu << (uint32_t)(bits & 7);
    if (filter->bitmap[filter->bitmap_bytes - 1] & pad_mask) return DTMM_ERR_BITMAP;
  }
  kept = 0;
  for (i = 0; i < filter->bitmap_bytes; ++i) kept += dtmm_popcount8(filter->bitmap[i]);
  if (filter->num_filterlets != kept) return DTMM_ERR_VALUES;
  if (kept > 0 && !filter->values) return DTMM_ERR_VALUES;
  if ((int64_t)kept * dims->input_c > lim) return DTMM_ERR_VALUES;
  return DTMM_OK;
}
#endif

/* -------------------------------------------------------------- scratch size */

int32_t DTMM_SIZE_FN(const dtmm_conv_dims* dims,
                                              const dtmm_conv_params* params) {
  dtmm_geom g;
  int32_t bytes = 0;
  if (!dims || !params) return 0;
  dtmm_make_geom(dims, params, &g);
  /* im2col rows only for groups that touch padding; layers without padding
   * (VALID, 1x1) need none. DTMM_P rows of taps*C_in int8 is at most the 4 rows
   * of taps*C_in that CMSIS-NN's arm_convolve_s8 asks for (2 int16 rows on DSP). */
  if (dtmm_has_border(&g)) bytes = DTMM_P * g.taps * g.in_c;
  return (bytes + 3) & ~3;
}

/* ---------------------------------------------------------- requantization */

/* TFLite's MultiplyByQuantizedMultiplier (double rounding), bit-exact for
 * multiplier >= 0 and shift in [-31, 30]. SaturatingRoundingDoublingHighMul
 * equals floor((a*b + 2^30) / 2^31) except for a == b == INT32_MIN, which a
 * non-negative multiplier excludes. */
DTMM_INLINE int32_t dtmm_requantize(int32_t acc, int32_t mult, int32_t shift) {
  const int32_t left = shift > 0 ? shift : 0;
  const int32_t right = shift > 0 ? 0 : -shift;
  const int32_t x = (int32_t)((uint32_t)acc << left); /* int32 wrap, as TFLite */
  const int64_t prod = (int64_t)x * mult + ((int64_t)1 << 30);
  const int32_t high = (int32_t)(prod >> 31);
  /* RoundingDivideByPOT: round half away from zero. */
  const int32_t mask = (int32_t)((1u << right) - 1u);
  const int32_t rem = high & mask;
  const int32_t thr = (mask >> 1) + (high < 0 ? 1 : 0);
  return (high >> right) + (rem > thr ? 1 : 0);
}

DTMM_INLINE int8_t dtmm_clamp_out(int32_t v, int32_t off, int32_t lo, int32_t hi) {
  v += off;
  v = v < lo ? lo : v;
  v = v > hi ? hi : v;
  return (int8_t)v;
}

/* ------------------------------------------------------------- dot products */

/* acc[j] += sum_i w[i] * x_j[i] for the DTMM_P pixels of a group, n >= 1. */
#if defined(DTMM_PATH_MVE)

DTMM_INLINE void dtmm_dot(const int8_t* w, const int8_t* const* x, int32_t n,
                          int32_t* acc) {
  const int8_t* x0 = x[0];
  const int8_t* x1 = x[1];
  const int8_t* x2 = x[2];
  const int8_t* x3 = x[3];
  int32_t a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3];
  int32_t blocks = n >> 4;
  const int32_t rest = n & 15;
  while (blocks-- > 0) {
    const int8x16_t vw = vldrbq_s8(w);
    a0 = vmladavaq_s8(a0, vldrbq_s8(x0), vw);
    a1 = vmladavaq_s8(a1, vldrbq_s8(x1), vw);
    a2 = vmladavaq_s8(a2, vldrbq_s8(x2), vw);
    a3 = vmladavaq_s8(a3, vldrbq_s8(x3), vw);
    w += 16;
    x0 += 16;
    x1 += 16;
    x2 += 16;
    x3 += 16;
  }
  if (rest) {
    /* Predicated-off lanes are not read: no access past the row. */
    const mve_pred16_t p = vctp8q((uint32_t)rest);
    const int8x16_t vw = vldrbq_z_s8(w, p);
    a0 = vmladavaq_s8(a0, vldrbq_z_s8(x0, p), vw);
    a1 = vmladavaq_s8(a1, vldrbq_z_s8(x1, p), vw);
    a2 = vmladavaq_s8(a2, vldrbq_z_s8(x2, p), vw);
    a3 = vmladavaq_s8(a3, vldrbq_z_s8(x3, p), vw);
  }
  acc[0] = a0;
  acc[1] = a1;
  acc[2] = a2;
  acc[3] = a3;
}

#elif defined(DTMM_PATH_DSP)

DTMM_INLINE uint32_t dtmm_read_u32(const int8_t* p) {
  uint32_t v;
  memcpy(&v, p, 4); /* LDR: unaligned access is allowed on v7E-M/v8-M Main */
  return v;
}
/* SXTB16 with ROR #8: bytes 1 and 3 sign-extended into two halfwords. */
DTMM_INLINE uint32_t dtmm_sxtb16_ror8(uint32_t v) {
  uint32_t r;
  __asm("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(v));
  return r;
}

/* Bytes (0,2) and (1,3) of weights and inputs are widened the same way, so two
 * SMLADs give w0*x0 + w2*x2 + w1*x1 + w3*x3 without any repacking. */
DTMM_INLINE void dtmm_dot(const int8_t* w, const int8_t* const* x, int32_t n,
                          int32_t* acc) {
  const int8_t* x0 = x[0];
  const int8_t* x1 = x[1];
  int32_t a0 = acc[0], a1 = acc[1];
  int32_t quads = n >> 2;
  int32_t rest = n & 3;
  while (quads-- > 0) {
    const uint32_t wv = dtmm_read_u32(w);
    const uint32_t xa = dtmm_read_u32(x0);
    const uint32_t xb = dtmm_read_u32(x1);
    const uint32_t w02 = __sxtb16(wv);
    const uint32_t w13 = dtmm_sxtb16_ror8(wv);
    a0 = __smlad(__sxtb16(xa), w02, a0);
    a0 = __smlad(dtmm_sxtb16_ror8(xa), w13, a0);
    a1 = __smlad(__sxtb16(xb), w02, a1);
    a1 = __smlad(dtmm_sxtb16_ror8(xb), w13, a1);
    w += 4;
    x0 += 4;
    x1 += 4;
  }
  while (rest-- > 0) {
    const int32_t wi = *w++;
    a0 += wi * *x0++;
    a1 += wi * *x1++;
  }
  acc[0] = a0;
  acc[1] = a1;
}

#else /* portable */

/* Branch-free inner loop; uint32 accumulation wraps like the int32 contract. */
DTMM_INLINE void dtmm_dot(const int8_t* w, const int8_t* const* x, int32_t n,
                          int32_t* acc) {
  const int8_t* x0 = x[0];
  const int8_t* x1 = x[1];
  const int8_t* x2 = x[2];
  const int8_t* x3 = x[3];
  uint32_t a0 = (uint32_t)acc[0], a1 = (uint32_t)acc[1];
  uint32_t a2 = (uint32_t)acc[2], a3 = (uint32_t)acc[3];
  int32_t i;
  for (i = 0; i < n; ++i) {
    const int32_t wi = w[i];
    a0 += (uint32_t)(wi * x0[i]);
    a1 += (uint32_t)(wi * x1[i]);
    a2 += (uint32_t)(wi * x2[i]);
    a3 += (uint32_t)(wi * x3[i]);
  }
  acc[0] = (int32_t)a0;
  acc[1] = (int32_t)a1;
  acc[2] = (int32_t)a2;
  acc[3] = (int32_t)a3;
}

#endif

/* Requantizes and stores one output channel of the group (np <= DTMM_P pixels). */
#if defined(DTMM_PATH_MVE)
DTMM_INLINE void dtmm_store(const int32_t* acc, int32_t np, int32_t mult, int32_t shift,
                            const dtmm_conv_params* p, int8_t* out, int32_t out_c) {
  /* vqrdmulh == SaturatingRoundingDoublingHighMul; the fixup makes VRSHL round
   * half away from zero like RoundingDivideByPOT (as TFLite's NEON code does). */
  const int32_t left = shift > 0 ? shift : 0;
  const int32_t right = shift > 0 ? 0 : -shift;
  int32x4_t v = vldrwq_s32(acc);
  int32x4_t fix;
  v = vqrdmulhq_n_s32(vshlq_r_s32(v, left), mult);
  fix = vshrq_n_s32(vandq_s32(v, vdupq_n_s32(-right)), 31);
  v = vrshlq_n_s32(vqaddq_s32(v, fix), -right);
  v = vaddq_n_s32(v, p->output_offset);
  v = vmaxq_s32(v, vdupq_n_s32(p->activation_min));
  v = vminq_s32(v, vdupq_n_s32(p->activation_max));
  {
    const uint32x4_t offs = vmulq_n_u32(vidupq_n_u32(0, 1), (uint32_t)out_c);
    vstrbq_scatter_offset_p_s32(out, offs, v, vctp32q((uint32_t)np));
  }
}
#else
DTMM_INLINE void dtmm_store(const int32_t* acc, int32_t np, int32_t mult, int32_t shift,
                            const dtmm_conv_params* p, int8_t* out, int32_t out_c) {
  int32_t j;
  for (j = 0; j < np; ++j) {
    out[j * out_c] = dtmm_clamp_out(dtmm_requantize(acc[j], mult, shift), p->output_offset,
                                    p->activation_min, p->activation_max);
  }
}
#endif

/* ----------------------------------------------------------------- helpers */

/* nb (<= DTMM_CHUNK) bitmap bits starting at bit pos; never reads past len bytes. */
DTMM_INLINE uint32_t dtmm_bits(const uint8_t* bm, int32_t len, int32_t pos, int32_t nb) {
  const int32_t q = pos >> 3;
  uint32_t v;
  if (q + 4 <= len) {
    v = (uint32_t)bm[q] | ((uint32_t)bm[q + 1] << 8) | ((uint32_t)bm[q + 2] << 16) |
        ((uint32_t)bm[q + 3] << 24);
  } else {
    int32_t i;
    v = 0;
    for (i = 0; q + i < len; ++i) v |= (uint32_t)bm[q + i] << (8 * i);
  }
  return (v >> (pos & 7)) & ((1u << nb) - 1u);
}

/* Offsets of taps [first, first + n) for an in-place pixel (row pitch of the
 * input) and an im2col row (taps back to back), plus the "continues the previous
 * tap contiguously" masks used to merge runs. */
static void dtmm_tap_tables(const dtmm_geom* g, int32_t first, int32_t n, int32_t* off_in,
                            int32_t* off_col, uint32_t* cont_in, uint32_t* cont_col) {
  int32_t i;
  uint32_t ci = 0, cc = 0;
  for (i = 0; i < n; ++i) {
    const int32_t t = first + i;
    const int32_t kh = t / g->ker_w, kw = t % g->ker_w;
    /* Unsigned: with a kernel taller than the input this may wrap; such a layer
     * has no interior pixel, so the value is never used. */
    off_in[i] = (int32_t)(((uint32_t)kh * (uint32_t)g->dh * (uint32_t)g->in_w +
                           (uint32_t)kw * (uint32_t)g->dw) *
                          (uint32_t)g->in_c);
    off_col[i] = t * g->in_c;
    if (i > 0) {
      cc |= 1u << i;
      if (kw > 0 && g->dw == 1) ci |= 1u << i;
    }
  }
  *cont_in = ci;
  *cont_col = cc;
}

/* Copies the taps of output pixel (y, x) to dst ([taps][C_in]), zp_in where padded. */
static void dtmm_im2col(const dtmm_geom* g, const int8_t* in, int32_t y, int32_t x,
                        int8_t zp, int8_t* dst) {
  int32_t kh, kw;
  const int32_t c = g->in_c;
  for (kh = 0; kh < g->ker_h; ++kh) {
    const int32_t iy = y * g->sh - g->pt + kh * g->dh;
    for (kw = 0; kw < g->ker_w; ++kw) {
      const int32_t ix = x * g->sw - g->pl + kw * g->dw;
      if (iy >= 0 && iy < g->in_h && ix >= 0 && ix < g->in_w) {
        memcpy(dst, in + (iy * g->in_w + ix) * c, (size_t)c);
      } else {
        memset(dst, zp, (size_t)c);
      }
      dst += c;
    }
  }
}

/* ------------------------------------------------------------------ compute */

dtmm_status DTMM_CONV_FN(const dtmm_conv_dims* dims,
                                  const dtmm_conv_params* params,
                                  const dtmm_fwcs_filter* filter, const int8_t* input,
                                  int8_t* output, void* scratch) {
  dtmm_geom g;
  int32_t off_in[DTMM_CHUNK], off_col[DTMM_CHUNK];
  uint32_t cont_in, cont_col;
  int32_t b, pix0, j;
  int32_t npix, taps, in_c, out_c, single_chunk;
  int8_t* col = (int8_t*)scratch;

  dtmm_make_geom(dims, params, &g);
  taps = g.taps;
  in_c = g.in_c;
  out_c = g.out_c;
  npix = g.out_h * g.out_w;
  single_chunk = taps <= DTMM_CHUNK;
  if (single_chunk) dtmm_tap_tables(&g, 0, taps, off_in, off_col, &cont_in, &cont_col);

  for (b = 0; b < dims->batches; ++b) {
    const int8_t* in_b = input + b * g.in_h * g.in_w * in_c; /* validated < 2^31 */
    int8_t* out_b = output + b * npix * out_c;
    for (pix0 = 0; pix0 < npix; pix0 += DTMM_P) {
      const int8_t* base[DTMM_P];
      const int32_t np = npix - pix0 < DTMM_P ? npix - pix0 : DTMM_P;
      int32_t py[DTMM_P], px[DTMM_P];
      int border = 0;
      const int32_t* offs;
      uint32_t cont;
      const int8_t* wrow = filter->values;
      int32_t bitpos = 0, oc;

      for (j = 0; j < DTMM_P; ++j) {
        /* A short last group repeats its last pixel; only np outputs are stored. */
        const int32_t pix = pix0 + (j < np ? j : np - 1);
        py[j] = pix / g.out_w;
        px[j] = pix - py[j] * g.out_w;
        border |= py[j] < g.y_lo || py[j] >= g.y_hi || px[j] < g.x_lo || px[j] >= g.x_hi;
      }
      if (border) {
        for (j = 0; j < DTMM_P; ++j) {
          int8_t* dst = col + j * taps * in_c;
          dtmm_im2col(&g, in_b, py[j], px[j], (int8_t)params->input_zero_point, dst);
          base[j] = dst;
        }
        offs = off_col;
        cont = cont_col;
      } else {
        for (j = 0; j < DTMM_P; ++j) {
          base[j] = in_b + ((py[j] * g.sh - g.pt) * g.in_w + (px[j] * g.sw - g.pl)) * in_c;
        }
        offs = off_in;
        cont = cont_in;
      }

      for (oc = 0; oc < out_c; ++oc) {
        int32_t acc[DTMM_P];
        int32_t first;
        for (j = 0; j < DTMM_P; ++j) acc[j] = filter->bias[oc];
        for (first = 0; first < taps; first += DTMM_CHUNK) {
          const int32_t nb = taps - first < DTMM_CHUNK ? taps - first : DTMM_CHUNK;
#ifdef DTMM_DENSE_VARIANT
          uint32_t m = (1u << nb) - 1u;
#else
          uint32_t m = dtmm_bits(filter->bitmap, filter->bitmap_bytes, bitpos, nb);
#endif
          bitpos += nb;
          if (!single_chunk) {
            dtmm_tap_tables(&g, first, nb, off_in, off_col, &cont_in, &cont_col);
            cont = border ? cont_col : cont_in;
          }
          while (m) {
            const int8_t* x[DTMM_P];
            const int32_t t = DTMM_CTZ(m);
            /* Run of kept taps starting at t that are contiguous in the input. */
            const uint32_t u = (m & (cont | (1u << t))) >> t;
            const int32_t run = u == 0xFFFFFFFFu ? 32 : DTMM_CTZ(~u);
            const int32_t n = run * in_c;
            const int32_t o = offs[t];
            m &= 0xFFFFFFFEu << (t + run - 1);
            for (j = 0; j < DTMM_P; ++j) x[j] = base[j] + o;
            dtmm_dot(wrow, x, n, acc);
            wrow += n;
          }
        }
        dtmm_store(acc, np, filter->multiplier[oc], filter->shift[oc], params,
                   out_b + pix0 * out_c + oc, out_c);
      }
    }
  }
  return DTMM_OK;
}
