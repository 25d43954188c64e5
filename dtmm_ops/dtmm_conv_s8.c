/* DTMM filterlet-sparse int8 convolution: validator, scratch size and compute.
 *
 * One file for all three paths (see dtmm_conv_s8.h for the contract, and
 * docs/kernels.md for measurements). Output pixels are computed DTMM_P at a time
 * (4 portable/MVE, 3 DSP); the weights of a filterlet are loaded once and used for
 * all of them. A run of kept filterlets that is contiguous in the input (same
 * kernel row, dilation 1; across rows too where DTMM_ROW_MERGE) is one dot product.
 *  1. Fully pruned filters: their constant output is written once per pixel (up
 *     front, or by the rectangles of 2. when they cover the whole plane) and the
 *     channel is skipped otherwise (1x1 layers: a filterlet is a whole filter).
 *  2. MVE and portable (DTMM_RECT), kernels of up to 25 taps: the output plane is
 *     cut into rectangles whose pixels share the same in-bounds taps (3x3 SAME: the
 *     interior, 4 edges, 4 corners). Rectangle outermost, then output channel: the
 *     bitmap field is decoded once per rectangle into a run table, padded kept
 *     taps fold into the start value as zp_in * sum(w), and every 4x1/2x2/1x4 block
 *     of the rectangle reads the input in place (MVE: one asm block per group).
 *     Rectangles whose blocks would be under 3/4 full (corners, short edges) go to
 *     the general part.
 *     DSP: the strided part instead: interior pixels in groups along a row (or a
 *     column for narrow maps), one fixed input stride apart, channel outermost, the
 *     runs decoded once per channel and replayed for every group.
 *  3. General part: the remaining pixels in raster order; a group with a padded
 *     tap is first copied to an int8 im2col buffer in scratch (zp_in at padded
 *     taps, as the bias is folded), then per output channel: bitmap field, runs,
 *     requantization. Kernels of more than 25 taps take only this part.
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
#define DTMM_P 3
#else
#define DTMM_PATH_PORTABLE 1
#define DTMM_P 4
#endif

/* Runs merge across kernel rows when the rows' input windows touch (input width 1,
 * e.g. L5 49x1x40 5x1: its 5 taps become one 200-byte run). On by default except on
 * MVE: there it makes L5 faster (s=0 40,173 -> 31,622 instructions, better than
 * CMSIS-NN's 33,009) but makes the dense baseline, which merges every run, 22 %
 * faster, so that L5's dtmm/dense goes above the goal at s >= .5 (.70/.47/.31);
 * the lead decides between the two goal wordings (docs/kernels.md, "dtmm against
 * CMSIS-NN"). -DDTMM_ROW_MERGE=1 turns it on there. */
#ifndef DTMM_ROW_MERGE
#if defined(DTMM_PATH_MVE)
#define DTMM_ROW_MERGE 0
#else
#define DTMM_ROW_MERGE 1
#endif
#endif

/* Rectangle driver (see dtmm_run_rects) for the 4-pixel paths. */
#if DTMM_P == 4 && !defined(DTMM_NO_RECT)
#define DTMM_RECT 1
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

/* The MAC loop and the requantization; bench/kernels --breakdown builds with
 * DTMM_BENCH_NOINLINE so that the instruction-count plugin can attribute them. */
#if defined(DTMM_BENCH_NOINLINE) && (defined(__GNUC__) || defined(__clang__))
#define DTMM_HOT static __attribute__((noinline))
#else
#define DTMM_HOT DTMM_INLINE
#endif
#if defined(DTMM_BENCH_NOINLINE) && (defined(__GNUC__) || defined(__clang__))
#define DTMM_BENCH_SPLIT static __attribute__((noinline))
#else
#define DTMM_BENCH_SPLIT static
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

/* a_j += sum_i w[i] * x_j[i] over the DTMM_P pixels of a group, n >= 1. The
 * accumulators are passed by address so that, once inlined, they stay in registers. */
#if defined(DTMM_PATH_MVE)

/* A tail-predicated loop (DLSTP/LETP): the last iteration's lanes past n are
 * inactive and not read, so any n needs no separate tail code. The weights are
 * loaded once per 16 bytes and used for the 4 pixels; VMLADAVA accumulates into
 * even general registers ("Te"). */
DTMM_HOT void dtmm_dot(const int8_t* w, const int8_t* x0, const int8_t* x1,
                          const int8_t* x2, const int8_t* x3, int32_t n, int32_t* a0,
                          int32_t* a1, int32_t* a2, int32_t* a3) {
  int32_t s0 = *a0, s1 = *a1, s2 = *a2, s3 = *a3;
  __asm volatile(
      "dlstp.8 lr, %[n]\n"
      "1:\n\t"
      "vldrb.8 q0, [%[w]], #16\n\t"
      "vldrb.8 q1, [%[x0]], #16\n\t"
      "vmladava.s8 %[s0], q1, q0\n\t"
      "vldrb.8 q1, [%[x1]], #16\n\t"
      "vmladava.s8 %[s1], q1, q0\n\t"
      "vldrb.8 q1, [%[x2]], #16\n\t"
      "vmladava.s8 %[s2], q1, q0\n\t"
      "vldrb.8 q1, [%[x3]], #16\n\t"
      "vmladava.s8 %[s3], q1, q0\n\t"
      "letp lr, 1b\n"
      : [s0] "+Te"(s0), [s1] "+Te"(s1), [s2] "+Te"(s2), [s3] "+Te"(s3), [w] "+r"(w),
        [x0] "+r"(x0), [x1] "+r"(x1), [x2] "+r"(x2), [x3] "+r"(x3)
      : [n] "r"(n)
      : "q0", "q1", "lr", "memory");
  *a0 = s0;
  *a1 = s1;
  *a2 = s2;
  *a3 = s3;
}

/* dtmm_dot for 4 input rows rs bytes apart (the im2col rows of a border group): the
 * 3 other pointers are formed inside, so the caller keeps 2 registers live, not 4. */
DTMM_HOT void dtmm_dot_rs(const int8_t* w, const int8_t* x0, int32_t rs, int32_t n,
                          int32_t* a0, int32_t* a1, int32_t* a2, int32_t* a3) {
  int32_t s0 = *a0, s1 = *a1, s2 = *a2, s3 = *a3;
  const int8_t *x1, *x2, *x3;
  __asm volatile(
      "add %[x1], %[x0], %[rs]\n\t"
      "add %[x2], %[x1], %[rs]\n\t"
      "add %[x3], %[x2], %[rs]\n\t"
      "dlstp.8 lr, %[n]\n"
      "1:\n\t"
      "vldrb.8 q0, [%[w]], #16\n\t"
      "vldrb.8 q1, [%[x0]], #16\n\t"
      "vmladava.s8 %[s0], q1, q0\n\t"
      "vldrb.8 q1, [%[x1]], #16\n\t"
      "vmladava.s8 %[s1], q1, q0\n\t"
      "vldrb.8 q1, [%[x2]], #16\n\t"
      "vmladava.s8 %[s2], q1, q0\n\t"
      "vldrb.8 q1, [%[x3]], #16\n\t"
      "vmladava.s8 %[s3], q1, q0\n\t"
      "letp lr, 1b\n"
      : [s0] "+Te"(s0), [s1] "+Te"(s1), [s2] "+Te"(s2), [s3] "+Te"(s3), [w] "+r"(w),
        [x0] "+r"(x0), [x1] "=&r"(x1), [x2] "=&r"(x2), [x3] "=&r"(x3)
      : [n] "r"(n), [rs] "r"(rs)
      : "q0", "q1", "lr", "memory");
  *a0 = s0;
  *a1 = s1;
  *a2 = s2;
  *a3 = s3;
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
 * SMLADs give w0*x0 + w2*x2 + w1*x1 + w3*x3 without any repacking; the weights are
 * widened once for the 3 pixels (3 is what fits the 13 registers without spills:
 * 20 instructions per 12 MACs, against 15 per 8 with 2 pixels). */
DTMM_HOT void dtmm_dot(const int8_t* w, const int8_t* x0, const int8_t* x1,
                          const int8_t* x2, int32_t n, int32_t* a0, int32_t* a1,
                          int32_t* a2) {
  int32_t s0 = *a0, s1 = *a1, s2 = *a2;
  int32_t quads = n >> 2;
  int32_t rest = n & 3;
  while (quads-- > 0) {
    const uint32_t wv = dtmm_read_u32(w);
    const uint32_t xa = dtmm_read_u32(x0);
    const uint32_t xb = dtmm_read_u32(x1);
    const uint32_t xc = dtmm_read_u32(x2);
    const uint32_t w02 = __sxtb16(wv);
    const uint32_t w13 = dtmm_sxtb16_ror8(wv);
    s0 = __smlad(__sxtb16(xa), w02, s0);
    s0 = __smlad(dtmm_sxtb16_ror8(xa), w13, s0);
    s1 = __smlad(__sxtb16(xb), w02, s1);
    s1 = __smlad(dtmm_sxtb16_ror8(xb), w13, s1);
    s2 = __smlad(__sxtb16(xc), w02, s2);
    s2 = __smlad(dtmm_sxtb16_ror8(xc), w13, s2);
    w += 4;
    x0 += 4;
    x1 += 4;
    x2 += 4;
  }
  while (rest-- > 0) {
    const int32_t wi = *w++; /* int32 accumulation wraps (uint32 arithmetic, no UB) */
    s0 = (int32_t)((uint32_t)s0 + (uint32_t)(wi * *x0++));
    s1 = (int32_t)((uint32_t)s1 + (uint32_t)(wi * *x1++));
    s2 = (int32_t)((uint32_t)s2 + (uint32_t)(wi * *x2++));
  }
  *a0 = s0;
  *a1 = s1;
  *a2 = s2;
}

#else /* portable */

/* Branch-free inner loop; uint32 accumulation wraps like the int32 contract. */
DTMM_HOT void dtmm_dot(const int8_t* w, const int8_t* x0, const int8_t* x1,
                          const int8_t* x2, const int8_t* x3, int32_t n, int32_t* a0,
                          int32_t* a1, int32_t* a2, int32_t* a3) {
  uint32_t s0 = (uint32_t)*a0, s1 = (uint32_t)*a1, s2 = (uint32_t)*a2, s3 = (uint32_t)*a3;
  int32_t i;
  for (i = 0; i < n; ++i) {
    const int32_t wi = w[i];
    s0 += (uint32_t)(wi * x0[i]);
    s1 += (uint32_t)(wi * x1[i]);
    s2 += (uint32_t)(wi * x2[i]);
    s3 += (uint32_t)(wi * x3[i]);
  }
  *a0 = (int32_t)s0;
  *a1 = (int32_t)s1;
  *a2 = (int32_t)s2;
  *a3 = (int32_t)s3;
}

#endif

/* Requantizes one output channel of the group and stores its np <= DTMM_P pixels
 * (out points at pixel 0, channel oc; pixels are out_c apart). */
#if defined(DTMM_PATH_MVE)
DTMM_HOT void dtmm_store(int32_t a0, int32_t a1, int32_t a2, int32_t a3, mve_pred16_t pred,
                            int32_t mult, int32_t shift, int32_t out_off, int32x4_t vlo,
                            int32x4_t vhi, int8_t* out, uint32x4_t offs) {
  /* vqrdmulh == SaturatingRoundingDoublingHighMul; the fixup makes VRSHL round
   * half away from zero like RoundingDivideByPOT (as TFLite's NEON code does). */
  const int32_t left = shift > 0 ? shift : 0;
  const int32_t right = shift > 0 ? 0 : -shift;
  int32x4_t v, fix;
  /* two lane-pair moves (the intrinsics give a VDUP and 3 single-lane moves) */
  __asm("vmov %q[v][2], %q[v][0], %[a0], %[a2]\n\t"
        "vmov %q[v][3], %q[v][1], %[a1], %[a3]"
        : [v] "=w"(v)
        : [a0] "r"(a0), [a1] "r"(a1), [a2] "r"(a2), [a3] "r"(a3));
  v = vqrdmulhq_n_s32(vshlq_r_s32(v, left), mult);
  fix = vshrq_n_s32(vandq_s32(v, vdupq_n_s32(-right)), 31);
  v = vrshlq_n_s32(vqaddq_s32(v, fix), -right);
  v = vaddq_n_s32(v, out_off);
  v = vminq_s32(vmaxq_s32(v, vlo), vhi); /* clamp vectors hoisted by the caller */
  vstrbq_scatter_offset_p_s32(out, offs, v, pred); /* the group's first np pixels */
}
#else
DTMM_HOT void dtmm_store1(int32_t a, int32_t mult, int32_t shift, int32_t out_off,
                             int32_t act_min, int32_t act_max, int8_t* out) {
  *out = dtmm_clamp_out(dtmm_requantize(a, mult, shift), out_off, act_min, act_max);
}
#endif

/* ----------------------------------------------------------------- helpers */

/* nb (<= DTMM_CHUNK) bitmap bits starting at bit pos; never reads past len bytes. */
DTMM_INLINE uint32_t dtmm_bits(const uint8_t* bm, int32_t len, int32_t pos, int32_t nb) {
  const int32_t q = pos >> 3;
  uint32_t v;
  if (q + 4 <= len) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    memcpy(&v, bm + q, 4); /* one (unaligned) load */
#else
    v = (uint32_t)bm[q] | ((uint32_t)bm[q + 1] << 8) | ((uint32_t)bm[q + 2] << 16) |
        ((uint32_t)bm[q + 3] << 24);
#endif
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
#if DTMM_ROW_MERGE
      /* Contiguous with the previous tap: the same kernel row with dilation 1, or
       * the next row's first tap when the rows' windows touch (input width 1, or a
       * kernel as wide as the input). Only used where both taps are in bounds, so
       * the wrapping difference is the exact one. */
      if ((uint32_t)off_in[i] - (uint32_t)off_in[i - 1] == (uint32_t)g->in_c) ci |= 1u << i;
#else
      if (kw > 0 && g->dw == 1) ci |= 1u << i;
#endif
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

/* The group code is written once for DTMM_P = 4 or 3 pixels. */
#if DTMM_P == 4
#define DTMM_ACCS int32_t a0, a1, a2, a3
#define DTMM_ACC_SET(v) (a0 = a1 = a2 = a3 = (v))
#define DTMM_DOT(w, x0, x1, x2, x3, n) \
  dtmm_dot((w), (x0), (x1), (x2), (x3), (n), &a0, &a1, &a2, &a3)
#else
#define DTMM_ACCS int32_t a0, a1, a2
#define DTMM_ACC_SET(v) (a0 = a1 = a2 = (v))
#define DTMM_DOT(w, x0, x1, x2, x3, n) dtmm_dot((w), (x0), (x1), (x2), (n), &a0, &a1, &a2)
#endif

/* Requantize and store the current channel of the group: pixel j goes to
 * base + oo[j] (MVE: the same offsets as a vector), only the first np pixels. The
 * requantization constants are locals rq_* of the caller (kept out of memory so
 * that the asm's memory clobber does not force reloads). */
#if defined(DTMM_PATH_MVE)
#define DTMM_STORE(base, oo, ov)                                                      \
  dtmm_store(a0, a1, a2, a3, rq_pred, rq_mult, rq_shift, rq_off, rq_vlo, rq_vhi, (base), (ov))
#else
#define DTMM_STORE1(a, ptr) dtmm_store1((a), rq_mult, rq_shift, rq_off, rq_min, rq_max, (ptr))
#if DTMM_P == 4
#define DTMM_STORE(base, oo, ov)                        \
  do {                                                  \
    DTMM_STORE1(a0, (base) + (oo)[0]);                  \
    if (np > 1) DTMM_STORE1(a1, (base) + (oo)[1]);      \
    if (np > 2) DTMM_STORE1(a2, (base) + (oo)[2]);      \
    if (np > 3) DTMM_STORE1(a3, (base) + (oo)[3]);      \
  } while (0)
#else
#define DTMM_STORE(base, oo, ov)                        \
  do {                                                  \
    DTMM_STORE1(a0, (base) + (oo)[0]);                  \
    if (np > 1) DTMM_STORE1(a1, (base) + (oo)[1]);      \
    if (np > 2) DTMM_STORE1(a2, (base) + (oo)[2]);      \
  } while (0)
#endif
#endif

/* Bitmap field of one output channel (all ones in the dense variant). */
#ifdef DTMM_DENSE_VARIANT
#define DTMM_FIELD(f, pos, nb) ((1u << (nb)) - 1u)
#else
#define DTMM_FIELD(f, pos, nb) dtmm_bits((f)->bitmap, (f)->bitmap_bytes, (pos), (nb))
#endif

/* Run of kept taps from t = ctz(m) on that are contiguous in the input; clears them
 * from m. `cont` marks taps that continue the previous one in memory. */
#define DTMM_NEXT_RUN(m, cont, t, run)                              \
  do {                                                              \
    (t) = DTMM_CTZ(m);                                              \
    (run) = DTMM_CTZ(~(((m) & ((cont) | (1u << (t)))) >> (t)));     \
    (m) &= 0xFFFFFFFEu << ((t) + (run)-1);                          \
  } while (0)

/* Layout of the "strided" part of the output: all interior pixels, taken DTMM_P
 * at a time along a row (or down the column when the interior is narrower than
 * DTMM_P, e.g. a 49x1 feature map), so that the pixels of a group are one fixed
 * input stride apart and need no im2col and no per-group address arithmetic. A
 * line whose length leaves at least 3/4 of a group ends with a group that
 * overlaps the previous one (those pixels are computed twice, identically);
 * shorter leftovers go to the general path, which measured cheaper for them. */
typedef struct {
  int32_t lines;      /* rows (or columns) holding groups */
  int32_t groups;     /* groups per line */
  int32_t last;       /* first pixel of the last group in a line */
  int32_t covered;    /* pixels of a line that the groups cover */
  int32_t along_y;    /* 0: groups run along x; 1: along y */
  int32_t in_step;    /* input bytes between two pixels of a group */
  int32_t out_step;   /* output bytes between two pixels of a group */
} dtmm_strided;

static void dtmm_line_groups(int32_t len, dtmm_strided* s) {
  const int32_t rest = len % DTMM_P;
  s->groups = len / DTMM_P;
  s->covered = s->groups * DTMM_P;
  if (4 * rest >= 3 * DTMM_P) {
    s->groups++;
    s->covered = len;
  }
  s->last = s->covered == len ? len - DTMM_P : (s->groups - 1) * DTMM_P;
}

static void dtmm_strided_layout(const dtmm_geom* g, dtmm_strided* s) {
  const int32_t wi = g->x_hi - g->x_lo, hi = g->y_hi - g->y_lo;
  s->lines = s->groups = s->along_y = s->last = s->covered = 0;
  s->in_step = s->out_step = 0;
  if (wi >= DTMM_P && hi > 0) {
    s->lines = hi;
    dtmm_line_groups(wi, s);
    s->in_step = g->sw * g->in_c;
    s->out_step = g->out_c;
  } else if (hi >= DTMM_P && wi > 0) {
    s->along_y = 1;
    s->lines = wi;
    dtmm_line_groups(hi, s);
    s->in_step = g->sh * g->in_w * g->in_c;
    s->out_step = g->out_w * g->out_c;
  }
}

#if !defined(DTMM_RECT) /* the 3-pixel DSP path: strided part + general part */
static int dtmm_in_strided(const dtmm_geom* g, const dtmm_strided* s, int32_t y, int32_t x) {
  if (s->groups == 0) return 0;
  if (s->along_y) {
    return x >= g->x_lo && x < g->x_hi && y >= g->y_lo && y < g->y_lo + s->covered;
  }
  return y >= g->y_lo && y < g->y_hi && x >= g->x_lo && x < g->x_lo + s->covered;
}

/* One strided group, one output channel: the channel's runs replayed at bg. */
DTMM_INLINE void dtmm_strided_group(int32_t bias, int32_t rq_mult, int32_t rq_shift,
                                    int32_t rq_off, int32_t rq_min, int32_t rq_max,
                                    const int8_t* w, const int8_t* bg, int8_t* og,
                                    int32_t ps, int32_t nr, const int32_t* run_off,
                                    const int32_t* run_len, const int32_t* oo
#if defined(DTMM_PATH_MVE)
                                    ,
                                    uint32x4_t ov
#endif
) {
  const int32_t np = DTMM_P;
  int32_t k;
#if defined(DTMM_PATH_MVE)
  const int32x4_t rq_vlo = vdupq_n_s32(rq_min), rq_vhi = vdupq_n_s32(rq_max);
  const mve_pred16_t rq_pred = vctp32q((uint32_t)np);
#endif
  DTMM_ACCS;
  DTMM_ACC_SET(bias);
  for (k = 0; k < nr; ++k) {
    const int8_t* x = bg + run_off[k];
    DTMM_DOT(w, x, x + ps, x + 2 * ps, x + 3 * ps, run_len[k]);
    w += run_len[k];
  }
  (void)oo;
  DTMM_STORE(og, oo, ov);
}

#if defined(DTMM_PATH_MVE)
#define DTMM_OV_ARG , ov
#else
#define DTMM_OV_ARG
#endif

/* Strided part, output channel outermost: a channel's bitmap field is decoded
 * once into its runs (offset, length), then replayed for every group. Kernels of
 * up to DTMM_CHUNK taps. */
DTMM_BENCH_SPLIT void dtmm_run_strided(const dtmm_geom* g, const dtmm_strided* s,
                             const dtmm_conv_params* p, const dtmm_fwcs_filter* f,
                             const int8_t* in_b, int8_t* out_b, const int32_t* off_in,
                             uint32_t cont) {
  int32_t run_off[DTMM_CHUNK], run_len[DTMM_CHUNK];
  const int32_t taps = g->taps, in_c = g->in_c, ps = s->in_step;
  const int32_t rq_off = p->output_offset, rq_min = p->activation_min,
                rq_max = p->activation_max;
  const int8_t* w = f->values;
  int32_t oc, j;
  int32_t oo[DTMM_P];
#if defined(DTMM_PATH_MVE)
  const uint32x4_t ov = vmulq_n_u32(vidupq_n_u32(0, 1), (uint32_t)s->out_step);
#endif
  for (j = 0; j < DTMM_P; ++j) oo[j] = j * s->out_step;
  for (oc = 0; oc < g->out_c; ++oc) {
    uint32_t m = DTMM_FIELD(f, oc * taps, taps);
    int32_t nr = 0, total = 0, line, gi, t, run;
    if (!m) continue; /* pruned filter: constant output already written */
    const int32_t bias = f->bias[oc], rq_mult = f->multiplier[oc], rq_shift = f->shift[oc];
    while (m) {
      DTMM_NEXT_RUN(m, cont, t, run);
      run_off[nr] = off_in[t];
      run_len[nr] = run * in_c;
      total += run_len[nr++];
    }
    for (line = 0; line < s->lines; ++line) {
      const int32_t y0 = s->along_y ? g->y_lo : g->y_lo + line;
      const int32_t x0 = s->along_y ? g->x_lo + line : g->x_lo;
      const int8_t* b = in_b + ((y0 * g->sh - g->pt) * g->in_w + (x0 * g->sw - g->pl)) * in_c;
      int8_t* o = out_b + (y0 * g->out_w + x0) * g->out_c + oc;
      for (gi = 1; gi < s->groups; ++gi, b += DTMM_P * ps, o += DTMM_P * s->out_step) {
        dtmm_strided_group(bias, rq_mult, rq_shift, rq_off, rq_min, rq_max, w, b, o, ps, nr,
                           run_off, run_len, oo DTMM_OV_ARG);
      }
      /* The last group may overlap its neighbour. */
      b -= (s->groups - 1) * DTMM_P * ps;
      o -= (s->groups - 1) * DTMM_P * s->out_step;
      dtmm_strided_group(bias, rq_mult, rq_shift, rq_off, rq_min, rq_max, w, b + s->last * ps,
                         o + s->last * s->out_step, ps, nr, run_off, run_len, oo DTMM_OV_ARG);
    }
    w += total;
  }
}

#endif /* !DTMM_RECT */

/* One group of up to DTMM_P arbitrary pixels (borders, leftovers), all output
 * channels: base[j] is pixel j's input window (in place, or an im2col row),
 * offs/cont describe the taps of the current DTMM_CHUNK-tap piece, pixel j's
 * output is out_b + oo[j] + oc. */
DTMM_BENCH_SPLIT void dtmm_run_group(const dtmm_geom* g, const dtmm_conv_params* p,
                           const dtmm_fwcs_filter* f, const int8_t* const* base, int border,
                           int32_t* off_in, int32_t* off_col, uint32_t cont_in,
                           uint32_t cont_col, int32_t np, int8_t* out_b, const int32_t* oo) {
  const int32_t taps = g->taps, in_c = g->in_c;
  const int8_t* w = f->values;
  const int8_t* b0 = base[0];
  const int8_t* b1 = base[1];
  const int8_t* b2 = base[2];
#if DTMM_P == 4
  const int8_t* b3 = base[3];
#else
  const int8_t* b3 = b2;
#endif
  const int32_t* offs = border ? off_col : off_in;
  uint32_t cont = border ? cont_col : cont_in;
  const int32_t rq_off = p->output_offset, rq_min = p->activation_min,
                rq_max = p->activation_max;
  int32_t oc, pos = 0;
#if defined(DTMM_PATH_MVE)
  const uint32x4_t ov = vldrwq_u32((const uint32_t*)oo);
  const int32x4_t rq_vlo = vdupq_n_s32(rq_min), rq_vhi = vdupq_n_s32(rq_max);
  const mve_pred16_t rq_pred = vctp32q((uint32_t)np);
  const int32_t rs = taps * in_c; /* im2col row pitch */
#else
  const int32_t ov = 0;
#endif
  (void)ov;
  (void)b2;
  (void)b3;
  for (oc = 0; oc < g->out_c; ++oc) {
    int32_t first, rq_mult, rq_shift;
    DTMM_ACCS;
    if (taps <= DTMM_CHUNK) {
      uint32_t m = DTMM_FIELD(f, pos, taps);
      pos += taps;
#ifndef DTMM_DENSE_VARIANT
      if (!m) continue; /* pruned filter: constant output already written */
#endif
      DTMM_ACC_SET(f->bias[oc]);
#if defined(DTMM_PATH_MVE)
      if (border) { /* im2col rows rs apart, every tap contiguous with the previous */
        while (m) {
          const int32_t t = DTMM_CTZ(m);
          const int32_t run = DTMM_CTZ(~(m >> t));
          const int32_t n = run * in_c;
          m &= 0xFFFFFFFEu << (t + run - 1);
          dtmm_dot_rs(w, b0 + off_col[t], rs, n, &a0, &a1, &a2, &a3);
          w += n;
        }
      } else
#endif
      while (m) {
        int32_t t, run, n, o;
        DTMM_NEXT_RUN(m, cont, t, run);
        n = run * in_c;
        o = offs[t];
        DTMM_DOT(w, b0 + o, b1 + o, b2 + o, b3 + o, n);
        w += n;
      }
    } else {
      /* Large kernels: tap tables rebuilt per DTMM_CHUNK-bit piece. */
      DTMM_ACC_SET(f->bias[oc]);
      for (first = 0; first < taps; first += DTMM_CHUNK) {
        const int32_t nb = taps - first < DTMM_CHUNK ? taps - first : DTMM_CHUNK;
        uint32_t m = DTMM_FIELD(f, pos, nb);
        pos += nb;
        if (!m) continue;
        dtmm_tap_tables(g, first, nb, off_in, off_col, &cont_in, &cont_col);
        cont = border ? cont_col : cont_in;
        while (m) {
          int32_t t, run, n, o;
          DTMM_NEXT_RUN(m, cont, t, run);
          n = run * in_c;
          o = offs[t];
          DTMM_DOT(w, b0 + o, b1 + o, b2 + o, b3 + o, n);
          w += n;
        }
      }
    }
    rq_mult = f->multiplier[oc];
    rq_shift = f->shift[oc];
    DTMM_STORE(out_b + oc, oo, ov);
  }
}

#if defined(DTMM_RECT)
/* ------------------------------------------------- uniform-padding rectangles
 *
 * The output plane is split into rectangles whose pixels all have the same set of
 * in-bounds taps: per axis, the interior [lo, hi) is one class and every border
 * coordinate is its own class (3x3 SAME: 9 rectangles). Inside a rectangle every
 * kept tap that is in bounds is read in place, and a kept tap that falls in the
 * padding contributes zp_in * sum(w) (the bias is folded, so a padded tap reads
 * zp_in): no im2col, and a channel's bitmap field is decoded once per rectangle,
 * not once per group. Groups are 4x1, 2x2 or 1x4 blocks of pixels (whichever
 * needs the fewest blocks); the last block of a row or column overlaps its
 * neighbour, and a rectangle narrower than the block repeats its last pixel, so
 * every group has 4 pixels (recomputed pixels are stored twice, identically). */

/* Bit k set iff kernel index k of output coordinate o reads inside [0, in). */
static uint32_t dtmm_axis_mask(int32_t o, int32_t in, int32_t k, int32_t s, int32_t d,
                               int32_t pad) {
  uint32_t m = 0;
  int32_t i;
  const int32_t c0 = o * s - pad;
  for (i = 0; i < k; ++i) {
    const int32_t c = c0 + i * d;
    if (c >= 0 && c < in) m |= 1u << i;
  }
  return m;
}

/* One past the last coordinate of the class that starts at o. */
DTMM_INLINE int32_t dtmm_class_end(int32_t o, int32_t lo, int32_t hi) {
  return (o >= lo && o < hi) ? hi : o + 1;
}

DTMM_INLINE int32_t dtmm_nblocks(int32_t len, int32_t b) {
  return len <= b ? 1 : (len + b - 1) / b;
}

/* Block origin i of n along an axis of length len (the last one overlaps). */
DTMM_INLINE int32_t dtmm_origin(int32_t i, int32_t n, int32_t len, int32_t b) {
  return i < n - 1 ? i * b : (len > b ? len - b : 0);
}

/* Block shape of a wid x hgt rectangle: bw (bh = 4 / bw), fewest blocks; 4x1, then
 * 2x2, then 1x4 on ties. */
static int32_t dtmm_block_w(int32_t wid, int32_t hgt, int32_t* blocks) {
  int32_t bw = 4, best = dtmm_nblocks(wid, 4) * dtmm_nblocks(hgt, 1);
  if (dtmm_nblocks(wid, 2) * dtmm_nblocks(hgt, 2) < best) {
    bw = 2;
    best = dtmm_nblocks(wid, 2) * dtmm_nblocks(hgt, 2);
  }
  if (dtmm_nblocks(wid, 1) * dtmm_nblocks(hgt, 4) < best) {
    bw = 1;
    best = dtmm_nblocks(wid, 1) * dtmm_nblocks(hgt, 4);
  }
  *blocks = best;
  return bw;
}

/* A rectangle whose blocks would be less than 3/4 full (corners, short edges)
 * goes to the general path instead, where its pixels share groups with others. */
static int dtmm_rect_ok(int32_t wid, int32_t hgt) {
  int32_t blocks;
  (void)dtmm_block_w(wid, hgt, &blocks);
  return 4 * wid * hgt > 3 * DTMM_P * blocks;
}

/* Which rectangles dtmm_run_rects computes, by kind: bit (ybord * 2 + xbord) is
 * set when the rectangles with a border row (ybord) / column (xbord) class do
 * (border classes are one pixel wide). */
static uint32_t dtmm_rect_kinds(const dtmm_geom* g) {
  const int32_t hi = g->y_hi - g->y_lo, wi = g->x_hi - g->x_lo;
  /* a kind that has no pixel counts as computed (15: nothing left over) */
  const int yb = hi < g->out_h, xb = wi < g->out_w; /* border rows / columns exist */
  return (uint32_t)((hi == 0 || wi == 0 || dtmm_rect_ok(wi, hi)) |
                    ((hi == 0 || !xb || dtmm_rect_ok(1, hi)) << 1) |
                    ((!yb || wi == 0 || dtmm_rect_ok(wi, 1)) << 2) |
                    ((!yb || !xb || dtmm_rect_ok(1, 1)) << 3));
}

DTMM_INLINE int dtmm_in_rects(const dtmm_geom* g, uint32_t kinds, int32_t y, int32_t x) {
  const int32_t k = ((y < g->y_lo || y >= g->y_hi) ? 2 : 0) + ((x < g->x_lo || x >= g->x_hi) ? 1 : 0);
  return (int)((kinds >> k) & 1u);
}

/* Sum of n >= 1 int8 weights (the padded-tap correction). */
DTMM_HOT int32_t dtmm_wsum(const int8_t* w, int32_t n) {
#if defined(DTMM_PATH_MVE)
  int32_t s = 0;
  __asm volatile(
      "dlstp.8 lr, %[n]\n"
      "1:\n\t"
      "vldrb.8 q0, [%[w]], #16\n\t"
      "vaddva.s8 %[s], q0\n\t"
      "letp lr, 1b\n"
      : [s] "+Te"(s), [w] "+r"(w)
      : [n] "r"(n)
      : "q0", "lr", "memory");
  return s;
#else
  int32_t s = 0, i;
  for (i = 0; i < n; ++i) s += w[i];
  return s;
#endif
}

/* A run of a rectangle's channel, ready for a group at input pointer p: pixel j
 * reads n bytes at p + o[j] (tap offset plus the pixel's offset in the block), the
 * weights at w. A table ends with n == 0. */
typedef struct {
  int32_t o[4];
  int32_t n;
  const int8_t* w;
} dtmm_run;

#if defined(DTMM_PATH_MVE)
/* All runs of one group in one asm block (3 LDRD + 4 ADD per run, then the
 * tail-predicated MAC loop of dtmm_dot), returning the 4 accumulators as one
 * vector for the requantization (an empty table gives acc0). p may point outside
 * the input: only in-bounds taps are added to it. */
DTMM_HOT int32x4_t dtmm_rect_dots(const dtmm_run* tb, const int8_t* p, int32_t acc0) {
  int32_t s0 = acc0, s1 = acc0, s2 = acc0, s3 = acc0, n;
  const int8_t *x0, *x1, *x2, *x3, *w;
  int32x4_t v;
  __asm volatile(
      "ldrd %[n], %[w], [%[tb], #16]\n\t"
      "cmp %[n], #0\n\t"
      "beq 3f\n"
      "1:\n\t"
      "ldrd %[x0], %[x1], [%[tb]]\n\t"
      "ldrd %[x2], %[x3], [%[tb], #8]\n\t"
      "add %[x0], %[p]\n\t"
      "add %[x1], %[p]\n\t"
      "add %[x2], %[p]\n\t"
      "add %[x3], %[p]\n\t"
      "adds %[tb], #24\n\t"
      "dlstp.8 lr, %[n]\n"
      "2:\n\t"
      "vldrb.8 q0, [%[w]], #16\n\t"
      "vldrb.8 q1, [%[x0]], #16\n\t"
      "vmladava.s8 %[s0], q1, q0\n\t"
      "vldrb.8 q1, [%[x1]], #16\n\t"
      "vmladava.s8 %[s1], q1, q0\n\t"
      "vldrb.8 q1, [%[x2]], #16\n\t"
      "vmladava.s8 %[s2], q1, q0\n\t"
      "vldrb.8 q1, [%[x3]], #16\n\t"
      "vmladava.s8 %[s3], q1, q0\n\t"
      "letp lr, 2b\n\t"
      "ldrd %[n], %[w], [%[tb], #16]\n\t"
      "cmp %[n], #0\n\t"
      "bne 1b\n"
      "3:\n\t"
      "vmov %q[v][2], %q[v][0], %[s0], %[s2]\n\t"
      "vmov %q[v][3], %q[v][1], %[s1], %[s3]\n"
      : [s0] "+Te"(s0), [s1] "+Te"(s1), [s2] "+Te"(s2), [s3] "+Te"(s3), [tb] "+r"(tb),
        [n] "=&r"(n), [w] "=&r"(w), [x0] "=&r"(x0), [x1] "=&r"(x1), [x2] "=&r"(x2),
        [x3] "=&r"(x3), [v] "=&w"(v)
      : [p] "r"(p)
      : "q0", "q1", "lr", "memory");
  return v;
}
#endif

#if defined(DTMM_PATH_MVE)
/* Requantizes the 4 accumulators of a group (TFLite rounding, as in dtmm_store,
 * with the per-channel shift vectors hoisted) and scatters them to out + offs. */
DTMM_HOT void dtmm_store_v(int32x4_t v, int32x4_t vleft, int32_t mult, int32x4_t vneg,
                           int32_t out_off, int32x4_t vlo, int32x4_t vhi, int8_t* out,
                           uint32x4_t offs) {
  v = vqrdmulhq_n_s32(vshlq_s32(v, vleft), mult);
  v = vrshlq_s32(vqaddq_s32(v, vshrq_n_s32(vandq_s32(v, vneg), 31)), vneg);
  v = vminq_s32(vmaxq_s32(vaddq_n_s32(v, out_off), vlo), vhi);
  vstrbq_scatter_offset_s32(out, offs, v);
}
#endif

/* Rectangles, rectangle outermost, then output channel, then groups. */
DTMM_BENCH_SPLIT void dtmm_run_rects(const dtmm_geom* g, const dtmm_conv_params* p,
                                     const dtmm_fwcs_filter* f, const int8_t* in_b,
                                     int8_t* out_b, const int32_t* off_in, uint32_t cont,
                                     int pruned_done) {
  dtmm_run tb[DTMM_CHUNK + 1];
  (void)pruned_done; /* the dense variant has no pruned filter */
  const int32_t taps = g->taps, in_c = g->in_c, out_c = g->out_c;
  const int32_t rq_off = p->output_offset, rq_min = p->activation_min,
                rq_max = p->activation_max;
  const uint32_t zp = (uint32_t)p->input_zero_point;
  const int32_t row_in = g->sh * g->in_w * in_c, col_in = g->sw * in_c;
  int32_t y0, y1, x0, x1;
#if defined(DTMM_PATH_MVE)
  const int32x4_t vlo = vdupq_n_s32(rq_min), vhi = vdupq_n_s32(rq_max);
#endif
  for (y0 = 0; y0 < g->out_h; y0 = y1) {
    const uint32_t ym = dtmm_axis_mask(y0, g->in_h, g->ker_h, g->sh, g->dh, g->pt);
    y1 = dtmm_class_end(y0, g->y_lo, g->y_hi);
    for (x0 = 0; x0 < g->out_w; x0 = x1) {
      const uint32_t xm = dtmm_axis_mask(x0, g->in_w, g->ker_w, g->sw, g->dw, g->pl);
      const int32_t hgt = y1 - y0;
      int32_t wid, bw, bh, nbx, nby, best, j, oc, pos = 0, kh;
      int32_t din[DTMM_P], oo[DTMM_P];
      int32_t n_in, n_out, in_step_i, in_step_o, in_last_i, in_last_o, out_step_i, out_step_o,
          out_last_i, out_last_o, bo0, oo0;
      uint32_t vm = 0;
      const int8_t* w = f->values;
#if defined(DTMM_PATH_MVE)
      uint32x4_t ov;
#endif
      x1 = dtmm_class_end(x0, g->x_lo, g->x_hi);
      wid = x1 - x0;
      for (kh = 0; kh < g->ker_h; ++kh)
        if ((ym >> kh) & 1u) vm |= xm << (kh * g->ker_w);
      if (!dtmm_rect_ok(wid, hgt)) continue; /* general path */
      bw = dtmm_block_w(wid, hgt, &best);
      bh = DTMM_P / bw;
      nbx = dtmm_nblocks(wid, bw);
      nby = dtmm_nblocks(hgt, bh);
      for (j = 0; j < DTMM_P; ++j) {
        int32_t jx = j % bw, jy = j / bw;
        if (jx > wid - 1) jx = wid - 1; /* narrower than the block: repeat */
        if (jy > hgt - 1) jy = hgt - 1;
        din[j] = jy * row_in + jx * col_in;
        oo[j] = (jy * g->out_w + jx) * out_c;
      }
#if defined(DTMM_PATH_MVE)
      ov = vldrwq_u32((const uint32_t*)oo);
#endif
      /* Input/output byte steps between blocks (the last step is shorter), and
       * the first block (its input offset is negative for a top/left border
       * rectangle; only in-bounds taps are added to it). The inner block loop runs along the axis with more blocks (a 1-wide column
       * such as L5 is one loop, not one outer iteration per block). */
      {
        const int32_t xl = dtmm_origin(nbx - 1, nbx, wid, bw) - (nbx - 2) * bw;
        const int32_t yl = dtmm_origin(nby - 1, nby, hgt, bh) - (nby - 2) * bh;
        const int32_t ys = g->out_w * out_c;
        if (nbx >= nby) {
          n_in = nbx, n_out = nby;
          in_step_i = bw * col_in, in_step_o = bw * out_c;
          in_last_i = xl * col_in, in_last_o = xl * out_c;
          out_step_i = bh * row_in, out_step_o = bh * ys;
          out_last_i = yl * row_in, out_last_o = yl * ys;
        } else {
          n_in = nby, n_out = nbx;
          in_step_i = bh * row_in, in_step_o = bh * ys;
          in_last_i = yl * row_in, in_last_o = yl * ys;
          out_step_i = bw * col_in, out_step_o = bw * out_c;
          out_last_i = xl * col_in, out_last_o = xl * out_c;
        }
      }
      bo0 = (y0 * g->sh - g->pt) * g->in_w * in_c + (x0 * g->sw - g->pl) * in_c;
      oo0 = (y0 * g->out_w + x0) * out_c;
      for (oc = 0; oc < out_c; ++oc, pos += taps) {
        uint32_t m = DTMM_FIELD(f, pos, taps);
        uint32_t acc0;
        int32_t nr = 0, last = -2, iy, ix, pend;
#ifndef DTMM_DENSE_VARIANT
        if (!m && pruned_done) continue; /* constant output already written */
#endif
        /* Kept taps in order: in-bounds ones become runs (merged when contiguous in
         * the input), padded ones add zp_in * sum(w). */
        acc0 = (uint32_t)f->bias[oc];
        pend = 0;
        while (m) {
          const int32_t t = DTMM_CTZ(m);
          m &= m - 1u;
          if ((vm >> t) & 1u) {
            if (pend) { /* padded taps before this one: weights w - pend .. w */
              acc0 += zp * (uint32_t)dtmm_wsum(w - pend, pend);
              pend = 0;
            }
            if (last == t - 1 && ((cont >> t) & 1u)) {
              tb[nr - 1].n += in_c;
            } else {
              const int32_t o = off_in[t];
              tb[nr].o[0] = o + din[0];
              tb[nr].o[1] = o + din[1];
              tb[nr].o[2] = o + din[2];
              tb[nr].o[3] = o + din[3];
              tb[nr].n = in_c;
              tb[nr].w = w;
              nr++;
            }
            last = t;
          } else {
            pend += in_c; /* consecutive kept filterlets: one sum */
            last = -2;
          }
          w += in_c;
        }
        if (pend) acc0 += zp * (uint32_t)dtmm_wsum(w - pend, pend);
        tb[nr].n = 0;
        {
          const int32_t rq_mult = f->multiplier[oc], rq_shift = f->shift[oc];
#if defined(DTMM_PATH_MVE)
          const int32_t left = rq_shift > 0 ? rq_shift : 0;
          const int32_t right = rq_shift > 0 ? 0 : -rq_shift;
          const int32x4_t vneg = vdupq_n_s32(-right), vleft = vdupq_n_s32(left);
#endif
          /* Integer addresses: a border block's origin may lie outside the input;
           * only origin + in-bounds tap offset is ever turned into a pointer. */
          uintptr_t prow = (uintptr_t)in_b + (uintptr_t)(intptr_t)bo0;
          int8_t* orow = out_b + oo0 + oc;
#if defined(DTMM_PATH_MVE)
          if (nr == 0) {
            /* No in-bounds kept tap (a pruned filter, or all kept taps padded): one
             * constant for the whole rectangle, requantized once. */
            int32x4_t v = vqrdmulhq_n_s32(vshlq_r_s32(vdupq_n_s32((int32_t)acc0), left), rq_mult);
            v = vrshlq_n_s32(vqaddq_s32(v, vshrq_n_s32(vandq_s32(v, vneg), 31)), -right);
            v = vminq_s32(vmaxq_s32(vaddq_n_s32(v, rq_off), vlo), vhi);
            for (iy = n_out; iy > 0; --iy) {
              int8_t* og = orow;
              for (ix = n_in; ix > 0; --ix) {
                vstrbq_scatter_offset_s32(og, ov, v);
                og += ix == 2 ? in_last_o : in_step_o;
              }
              orow += iy == 2 ? out_last_o : out_step_o;
            }
            continue;
          }
#endif
          for (iy = n_out; iy > 0; --iy) {
            uintptr_t pg = prow;
            int8_t* og = orow;
            for (ix = n_in; ix > 0; --ix) {
#if defined(DTMM_PATH_MVE)
              dtmm_store_v(dtmm_rect_dots(tb, (const int8_t*)pg, (int32_t)acc0), vleft, rq_mult,
                           vneg, rq_off, vlo, vhi, og, ov);
#else
              const int32_t np = DTMM_P;
              int32_t k;
              DTMM_ACCS;
              DTMM_ACC_SET((int32_t)acc0);
              for (k = 0; k < nr; ++k) {
                const int8_t* x = (const int8_t*)(pg + (uintptr_t)tb[k].o[0]);
                DTMM_DOT(tb[k].w, x, x + (tb[k].o[1] - tb[k].o[0]), x + (tb[k].o[2] - tb[k].o[0]),
                         x + (tb[k].o[3] - tb[k].o[0]), tb[k].n);
              }
              DTMM_STORE(og, oo, 0);
#endif
              /* next block; the last one of the row overlaps its neighbour */
              pg += (uintptr_t)(ix == 2 ? in_last_i : in_step_i);
              og += ix == 2 ? in_last_o : in_step_o;
            }
            prow += (uintptr_t)(iy == 2 ? out_last_i : out_step_i);
            orow += iy == 2 ? out_last_o : out_step_o;
          }
        }
      }
    }
  }
}
#endif /* DTMM_RECT */

#ifndef DTMM_DENSE_VARIANT
/* A fully pruned filter's output channel is the constant requantize(bias): written
 * here for every pixel (one store each), so that the group loop skips the channel
 * after reading its bitmap field. This is what makes 1x1 convolutions (where a
 * filterlet is a whole filter) scale with sparsity. */
DTMM_BENCH_SPLIT void dtmm_fill_pruned(const dtmm_geom* g, const dtmm_conv_params* p,
                             const dtmm_fwcs_filter* f, int8_t* out, int32_t pixels) {
  int32_t oc, pos = 0;
  const int32_t out_c = g->out_c;
  for (oc = 0; oc < out_c; ++oc) {
    uint32_t any;
    int32_t first;
    if (g->taps <= DTMM_CHUNK) { /* one field read per channel */
      any = dtmm_bits(f->bitmap, f->bitmap_bytes, pos, g->taps);
    } else {
      any = 0;
      for (first = 0; first < g->taps; first += DTMM_CHUNK) {
        const int32_t nb = g->taps - first < DTMM_CHUNK ? g->taps - first : DTMM_CHUNK;
        any |= dtmm_bits(f->bitmap, f->bitmap_bytes, pos + first, nb);
      }
    }
    pos += g->taps;
    if (!any) {
      const int8_t v = dtmm_clamp_out(dtmm_requantize(f->bias[oc], f->multiplier[oc], f->shift[oc]),
                                      p->output_offset, p->activation_min, p->activation_max);
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
  }
}
#endif

dtmm_status DTMM_CONV_FN(const dtmm_conv_dims* dims, const dtmm_conv_params* params,
                         const dtmm_fwcs_filter* filter, const int8_t* input,
                         int8_t* output, void* scratch) {
  dtmm_geom g;
  dtmm_strided st;
  int32_t off_in[DTMM_CHUNK], off_col[DTMM_CHUNK];
  uint32_t cont_in = 0, cont_col = 0;
  int fill = 1; /* pruned filters written up front */
  (void)fill;
#if defined(DTMM_RECT)
  uint32_t kinds;
#endif
  int32_t b, j, npix, taps, in_c, out_c, small;
  int8_t* col = (int8_t*)scratch;

  dtmm_make_geom(dims, params, &g);
  taps = g.taps;
  in_c = g.in_c;
  out_c = g.out_c;
  npix = g.out_h * g.out_w;
  small = taps <= DTMM_CHUNK;
  if (small) dtmm_tap_tables(&g, 0, taps, off_in, off_col, &cont_in, &cont_col);
  dtmm_strided_layout(&g, &st);
#if defined(DTMM_RECT)
  kinds = small ? dtmm_rect_kinds(&g) : 0u;
#endif
  if (!small) st.groups = 0; /* large kernels take the general path only */
#if defined(DTMM_RECT)
  /* When the rectangles cover every pixel they also write the pruned filters'
   * constants (from the bitmap field they decode anyway); otherwise the general
   * path, which skips pruned filters, needs them written up front. */
  fill = !small || kinds != 15u;
#endif
#ifndef DTMM_DENSE_VARIANT
  if (fill) dtmm_fill_pruned(&g, params, filter, output, dims->batches * npix);
#endif

  for (b = 0; b < dims->batches; ++b) {
    const int8_t* in_b = input + b * g.in_h * g.in_w * in_c; /* validated < 2^31 */
    int8_t* out_b = output + b * npix * out_c;
    int32_t y = 0, x = 0; /* raster cursor of the general path */
#if defined(DTMM_RECT)
    /* Pixels in place through the rectangles; the rest below. */
    if (small) dtmm_run_rects(&g, params, filter, in_b, out_b, off_in, cont_in, fill);
    if (kinds == 15u) continue; /* no pixel left */
#else
    if (st.groups > 0) dtmm_run_strided(&g, &st, params, filter, in_b, out_b, off_in, cont_in);
#endif
    /* Everything else, DTMM_P pixels at a time in raster order. */
    for (;;) {
      const int8_t* base[DTMM_P];
      int32_t py[DTMM_P], px[DTMM_P], oo[DTMM_P];
      int32_t np = 0;
      int border = 0;
      while (np < DTMM_P && y < g.out_h) {
#if defined(DTMM_RECT)
        if (!dtmm_in_rects(&g, kinds, y, x)) {
#else
        if (!dtmm_in_strided(&g, &st, y, x)) {
#endif
          py[np] = y;
          px[np] = x;
          np++;
        }
        if (++x == g.out_w) {
          x = 0;
          ++y;
        }
      }
      if (np == 0) break;
      for (j = 0; j < DTMM_P; ++j) {
        /* A short group repeats its last pixel; only np outputs are stored. */
        const int32_t jj = j < np ? j : np - 1;
        py[j] = py[jj];
        px[j] = px[jj];
        oo[j] = (py[j] * g.out_w + px[j]) * out_c;
        border |= py[j] < g.y_lo || py[j] >= g.y_hi || px[j] < g.x_lo || px[j] >= g.x_hi;
      }
      for (j = 0; j < DTMM_P; ++j) {
        if (border) {
          int8_t* dst = col + j * taps * in_c;
          dtmm_im2col(&g, in_b, py[j], px[j], (int8_t)params->input_zero_point, dst);
          base[j] = dst;
        } else {
          base[j] = in_b + ((py[j] * g.sh - g.pt) * g.in_w + (px[j] * g.sw - g.pl)) * in_c;
        }
      }
      dtmm_run_group(&g, params, filter, base, border, off_in, off_col, cont_in, cont_col, np,
                     out_b, oo);
    }
  }
  return DTMM_OK;
}
