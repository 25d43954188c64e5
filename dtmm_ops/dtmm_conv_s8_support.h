/* Internal support of the DTMM kernel library (not part of the public API).
 *
 * Everything that differs between the architectures lives here, once: the MAC
 * loops, the requantization and the output clamp, each as a static inline
 * function for the compiled architecture:
 *   - Helium / MVE (__ARM_FEATURE_MVE & 1: Cortex-M55/M85): tail-predicated
 *     VMLADAVA loops, vector requantization (VQRDMULH + rounding fix-up);
 *   - Arm DSP (__ARM_FEATURE_DSP: Cortex-M4/M7/M33): SXTB16 + SMLAD;
 *   - portable C (anything else, or -DDTMM_FORCE_PORTABLE).
 * The drivers (dtmm_conv_s8_*.c) are written once against these. All paths give
 * identical bytes (docs/contract.md "Semantics").
 */
#ifndef DTMM_OPS_DTMM_CONV_S8_SUPPORT_H_
#define DTMM_OPS_DTMM_CONV_S8_SUPPORT_H_

#include <stdint.h>
#include <string.h>

#include "dtmm_conv_s8.h"

#if !defined(DTMM_FORCE_PORTABLE) && defined(__ARM_FEATURE_MVE) && (__ARM_FEATURE_MVE & 1)
#define DTMM_ARCH_MVE 1
#include <arm_mve.h>
#elif !defined(DTMM_FORCE_PORTABLE) && defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
#define DTMM_ARCH_DSP 1
#include <arm_acle.h>
#else
#define DTMM_ARCH_PORTABLE 1
#endif

/* Pixels computed together by the group MAC loops: what fits the registers
 * (DSP: the weights widened once for 3 pixels, 13 registers). */
#if defined(DTMM_ARCH_DSP)
#define DTMM_P 3
#else
#define DTMM_P 4
#endif

/* Kernels of up to DTMM_MAX_TAPS taps use per-channel tap masks in one word; the
 * window drivers' run tables hold DTMM_MAX_RUNS runs (dtmm_conv_s8_choose sends
 * layers whose channels could have more to the im2col driver). */
#define DTMM_MAX_TAPS 32
#define DTMM_MAX_RUNS 16

/* Kernel rows (kernel_w * C_in bytes, dilation 1) shorter than this are not read
 * in place but through im2col rows (dtmm_conv_s8_choose); measured per target in
 * docs/kernels.md. */
#ifndef DTMM_MIN_ROW_BYTES
#define DTMM_MIN_ROW_BYTES 8
#endif
/* 2-D output planes of at most this many pixels go through im2col rows: the window
 * drivers' per-channel run tables are not amortized over so few groups. */
#ifndef DTMM_WINDOW_MIN_PIXELS
#if defined(DTMM_ARCH_MVE)
#define DTMM_WINDOW_MIN_PIXELS 16
#else
#define DTMM_WINDOW_MIN_PIXELS 0
#endif
#endif

/* Dilated kernels over fewer input channels go through im2col rows (MVE: one tap
 * per run in place costs more than the copy). */
#ifndef DTMM_DILATED_MIN_CIN_IN_PLACE
#if defined(DTMM_ARCH_MVE)
#define DTMM_DILATED_MIN_CIN_IN_PLACE 32
#else
#define DTMM_DILATED_MIN_CIN_IN_PLACE 1
#endif
#endif

/* 1x1 kernels onto fewer output pixels than this take the pixel driver (MVE: the
 * pointwise driver's setup per 4 kept rows is not amortized over 1-2 pixels; DSP
 * and portable: its groups need DTMM_P pixels); docs/kernels.md "Defaults". */
#ifndef DTMM_POINTWISE_MIN_PIXELS
#if defined(DTMM_ARCH_MVE)
#define DTMM_POINTWISE_MIN_PIXELS 3
#else
#define DTMM_POINTWISE_MIN_PIXELS DTMM_P
#endif
#endif

/* Window drivers may run a channel as its dense filter (kernel-row runs over the
 * filterlets expanded on the stack, zeros where pruned) when that is cheaper than
 * its kept filterlets' runs: filters of up to this many bytes. */
#define DTMM_EXPAND_MAX_BYTES 128

/* Layers of at most this many input channels and at least this many taps use the
 * expanded (dense) driver (dtmm_conv_s8_choose). */
#ifndef DTMM_EXPANDED_MAX_CIN
#define DTMM_EXPANDED_MAX_CIN 3
#endif
#ifndef DTMM_EXPANDED_MIN_TAPS
#define DTMM_EXPANDED_MIN_TAPS 16
#endif
/* ... and layers of at most this many input channels whose in-place runs are one
 * tap (dilated) or shorter than DTMM_MIN_ROW_BYTES (its scratch bound in
 * dtmm_conv_s8.h: C_in <= 8). */
#ifndef DTMM_EXPANDED_MAX_CIN_DILATED
#define DTMM_EXPANDED_MAX_CIN_DILATED 8
#endif

#if defined(__GNUC__) || defined(__clang__)
#define DTMM_INLINE static inline __attribute__((always_inline))
#define DTMM_CTZ(x) ((int32_t)__builtin_ctz(x))
#else
#define DTMM_INLINE static inline
static inline int32_t DTMM_CTZ(uint32_t x) {
  int32_t n = 0;
  while (!(x & 1u)) {
    x >>= 1;
    n++;
  }
  return n;
}
#endif

/* Code that runs once per call or in Prepare (validation, geometry, the driver
 * choice, pruned channels' constants): compiled for size (gcc; other compilers
 * ignore it) and kept out of line where marked DTMM_NOINLINE. */
#if defined(__GNUC__) && !defined(__clang__)
#define DTMM_SIZE_OPT __attribute__((optimize("Os")))
#else
#define DTMM_SIZE_OPT
#endif
#if defined(__GNUC__) || defined(__clang__)
#define DTMM_NOINLINE __attribute__((noinline))
#else
#define DTMM_NOINLINE
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* The MAC asm blocks only read memory. gcc is told which (an array of unknown size
 * from the lowest pointer of each object: rows of one group lie after its first),
 * so that values the drivers keep in memory are not reloaded after every block;
 * other compilers, -O0 and -Os (where gcc 12 then finds no registers for the
 * memory operands' addresses in the MVE pointwise loop) get the "memory" clobber. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__OPTIMIZE__) && \
    !defined(__OPTIMIZE_SIZE__)
#define DTMM_ASM_READS(p) , "m"(*(const int8_t(*)[])(p))
#define DTMM_ASM_MEMORY
#else /* also gcc -O0: the memory operands would need registers it keeps for the frame */
#define DTMM_ASM_READS(p)
#define DTMM_ASM_MEMORY , "memory"
#endif

/* ------------------------------------------------------------------ geometry */

/* A layer as the drivers see it (one batch). Coordinates y*s - pad + k*d fit in
 * int32 (validated); byte offsets of the input fit too. */
typedef struct {
  /* in the order of dtmm_conv_dims and dtmm_conv_params, so that building it on
   * every call can be block copies (MVE: vector loads and stores) */
  int32_t in_h, in_w, in_c, out_h, out_w, out_c, ker_h, ker_w;
  int32_t sh, sw, dh, dw, pt, pl;
  int32_t zp_in; /* read at padded taps (the bias is folded) */
  int32_t out_off, act_min, act_max;
  int32_t taps;
  int32_t y_lo, y_hi, x_lo, x_hi; /* output pixels whose taps are all inside */
} dtmm_geom;

void dtmm_make_geom(const dtmm_conv_dims* d, const dtmm_conv_params* p, dtmm_geom* g);

DTMM_INLINE int dtmm_has_border(const dtmm_geom* g) {
  return !(g->y_lo == 0 && g->y_hi == g->out_h && g->x_lo == 0 && g->x_hi == g->out_w);
}

/* ------------------------------------------------------------------- bitmap */

/* The 32 bitmap bits from bit pos on (bits past the bitmap read as 0); never
 * reads outside the len bytes. */
DTMM_INLINE uint32_t dtmm_bits32(const uint8_t* bm, int32_t len, int32_t pos) {
  const int32_t q = pos >> 3;
  const uint32_t sh = (uint32_t)pos & 7u;
  uint32_t lo, hi = 0;
  if (q + 5 <= len) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    memcpy(&lo, bm + q, 4); /* one (unaligned) load */
#else
    lo = (uint32_t)bm[q] | ((uint32_t)bm[q + 1] << 8) | ((uint32_t)bm[q + 2] << 16) |
         ((uint32_t)bm[q + 3] << 24);
#endif
    hi = bm[q + 4];
  } else {
    int32_t i;
    lo = 0;
    for (i = 0; i < 4 && q + i < len; ++i) lo |= (uint32_t)bm[q + i] << (8 * i);
    if (q + 4 < len) hi = bm[q + 4];
  }
  return sh ? (lo >> sh) | (hi << (32u - sh)) : lo;
}

/* nb <= 32 bits from bit pos; up to 25 bits are one unaligned load. */
DTMM_INLINE uint32_t dtmm_bits(const uint8_t* bm, int32_t len, int32_t pos, int32_t nb) {
  uint32_t v;
  if (nb <= 25 && (pos >> 3) + 4 <= len) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    memcpy(&v, bm + (pos >> 3), 4);
#else
    const uint8_t* b = bm + (pos >> 3);
    v = (uint32_t)b[0] | ((uint32_t)b[1] << 8) | ((uint32_t)b[2] << 16) | ((uint32_t)b[3] << 24);
#endif
    return (v >> (pos & 7)) & ((1u << nb) - 1u);
  }
  v = dtmm_bits32(bm, len, pos);
  return nb >= 32 ? v : v & ((1u << nb) - 1u);
}

/* The next run of m, a tap mask: first tap *t, returns the number of taps from *t
 * on that are kept and each continue the previous one in memory (`cont` bit i:
 * tap i is contiguous with tap i - 1); clears them from m. m != 0. */
DTMM_INLINE int32_t dtmm_next_run(uint32_t* m, uint32_t cont, int32_t* t) {
  const int32_t t0 = DTMM_CTZ(*m);
  /* run = trailing ones of (m & (cont | first)) >> t0 */
  const uint32_t x = (*m & (cont | (1u << t0))) >> t0;
  const int32_t run = x == 0xFFFFFFFFu ? 32 : DTMM_CTZ(~x);
  *m = (t0 + run) >= 32 ? 0u : *m & (0xFFFFFFFFu << (t0 + run));
  *t = t0;
  return run;
}

/* The next run of consecutive set bits of m (m != 0, bit 31 clear: fields of up to
 * 31 taps, all taps contiguous, as in im2col rows): first bit *t, returns its
 * length; clears it from m. Adding the lowest set bit carries through the run. */
DTMM_INLINE int32_t dtmm_next_run_contig(uint32_t* m, int32_t* t) {
  const uint32_t low = *m & (0u - *m);
  const uint32_t nxt = *m + low;
  const int32_t t0 = DTMM_CTZ(*m);
  *m &= nxt;
  *t = t0;
  return DTMM_CTZ(nxt) - t0;
}

/* ---------------------------------------------------- requantization, clamp */

/* TFLite's MultiplyByQuantizedMultiplier (double rounding), bit-exact for
 * multiplier >= 0 and shift in [-31, 30]. SaturatingRoundingDoublingHighMul is
 * floor((a*b + 2^30) / 2^31) except for a == b == INT32_MIN, which a non-negative
 * multiplier excludes. */
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

/* requantized + output_offset, clamped: the add wraps in int32 as TFLite's does
 * (docs/contract.md), computed in uint32 so that C has no overflow. */
DTMM_INLINE int8_t dtmm_out_s8(int32_t v, int32_t off, int32_t lo, int32_t hi) {
  int32_t s = (int32_t)((uint32_t)v + (uint32_t)off);
  s = s < lo ? lo : s;
  s = s > hi ? hi : s;
  return (int8_t)s;
}

DTMM_INLINE int8_t dtmm_requant_out(int32_t acc, int32_t mult, int32_t shift,
                                    const dtmm_geom* g) {
  return dtmm_out_s8(dtmm_requantize(acc, mult, shift), g->out_off, g->act_min, g->act_max);
}

/* dtmm_requant_out with the per-channel part hoisted out of a driver's pixel
 * loops: the shift split once into left shift, the rounding divide's exponent,
 * mask and threshold (dtmm_channel_rq_init); dtmm_requant_channel is then the same
 * arithmetic, bit-exact, for each accumulator of the channel. */
typedef struct {
  int32_t mult, left, right, mask, thr, off, lo, hi;
} dtmm_channel_rq;

DTMM_INLINE void dtmm_channel_rq_init(dtmm_channel_rq* q, int32_t mult, int32_t shift,
                                      const dtmm_geom* g) {
  q->mult = mult;
  q->left = shift > 0 ? shift : 0;
  q->right = shift > 0 ? 0 : -shift;
  q->mask = (int32_t)((1u << q->right) - 1u);
  q->thr = q->mask >> 1;
  q->off = g->out_off;
  q->lo = g->act_min;
  q->hi = g->act_max;
}

DTMM_INLINE int8_t dtmm_requant_channel(int32_t acc, const dtmm_channel_rq* q) {
  const int32_t x = (int32_t)((uint32_t)acc << q->left); /* int32 wrap, as TFLite */
  const int32_t high = (int32_t)(((int64_t)x * q->mult + ((int64_t)1 << 30)) >> 31);
  const int32_t v = (high >> q->right) +
                    ((high & q->mask) > q->thr + (int32_t)((uint32_t)high >> 31) ? 1 : 0);
  return dtmm_out_s8(v, q->off, q->lo, q->hi);
}

#if defined(DTMM_ARCH_MVE)
/* Four lanes at once: vqrdmulh == SaturatingRoundingDoublingHighMul, and the fix-up
 * makes VRSHL round half away from zero like RoundingDivideByPOT (as TFLite's NEON
 * code does). left = max(shift, 0), neg = -max(-shift, 0) per lane; VADD wraps. */
DTMM_INLINE int32x4_t dtmm_requant_x4(int32x4_t v, int32x4_t left, int32x4_t mult,
                                      int32x4_t neg, int32_t out_off, int32x4_t lo,
                                      int32x4_t hi) {
  v = vqrdmulhq_s32(vshlq_s32(v, left), mult);
  v = vrshlq_s32(vqaddq_s32(v, vshrq_n_s32(vandq_s32(v, neg), 31)), neg);
  return vminq_s32(vmaxq_s32(vaddq_n_s32(v, out_off), lo), hi);
}

/* The per-channel constants of dtmm_requant_x4 for one channel (all lanes). */
typedef struct {
  int32x4_t left, mult, neg;
} dtmm_rq_x4;

DTMM_INLINE dtmm_rq_x4 dtmm_rq_channel(int32_t mult, int32_t shift) {
  dtmm_rq_x4 r;
  r.left = vdupq_n_s32(shift > 0 ? shift : 0);
  r.neg = vdupq_n_s32(shift > 0 ? 0 : shift);
  r.mult = vdupq_n_s32(mult);
  return r;
}

/* out[k] = requantized acc[k] + bias[k] (add_bias 0, a constant at each call: acc
 * holds it; acc = bias, add_bias 0: the constants of pruned channels), k < n: whole groups of 4 unpredicated, then the last 1-3 channels
 * predicated (pointers in locals: the stores to out may alias anything). */
DTMM_INLINE void dtmm_requant_block_x4(const int32_t* acc, int add_bias, const int32_t* bias,
                                       const int32_t* mult, const int32_t* shift, int32_t n,
                                       int32_t out_off, int32_t act_min, int32_t act_max,
                                       int8_t* out) {
  const int32x4_t lo = vdupq_n_s32(act_min), hi = vdupq_n_s32(act_max);
  const int32x4_t zero = vdupq_n_s32(0);
  int32_t k;
  for (k = n >> 2; k > 0; --k) {
    const int32x4_t sh = vldrwq_s32(shift);
    const int32x4_t v =
        add_bias ? vaddq_s32(vldrwq_s32(acc), vldrwq_s32(bias)) : vldrwq_s32(acc);
    vstrbq_s32(out, dtmm_requant_x4(v, vmaxq_s32(sh, zero), vldrwq_s32(mult), vminq_s32(sh, zero),
                                    out_off, lo, hi));
    acc += 4, bias += 4, mult += 4, shift += 4, out += 4;
  }
  if (n & 3) {
    const mve_pred16_t p = vctp32q((uint32_t)(n & 3));
    const int32x4_t sh = vldrwq_z_s32(shift, p);
    const int32x4_t v =
        add_bias ? vaddq_s32(vldrwq_z_s32(acc, p), vldrwq_z_s32(bias, p)) : vldrwq_z_s32(acc, p);
    vstrbq_p_s32(out, dtmm_requant_x4(v, vmaxq_s32(sh, zero), vldrwq_z_s32(mult, p),
                                      vminq_s32(sh, zero), out_off, lo, hi), p);
  }
}

/* Four consecutive channels (lanes past `lanes` are don't-care). */
DTMM_INLINE dtmm_rq_x4 dtmm_rq_channels(const int32_t* mult, const int32_t* shift,
                                        int32_t lanes) {
  const mve_pred16_t p = vctp32q((uint32_t)lanes);
  const int32x4_t s = vldrwq_z_s32(shift, p);
  dtmm_rq_x4 r;
  r.left = vmaxq_s32(s, vdupq_n_s32(0));
  r.neg = vminq_s32(s, vdupq_n_s32(0));
  r.mult = vldrwq_z_s32(mult, p);
  return r;
}

/* Four scalars into one vector (two lane-pair moves). */
DTMM_INLINE int32x4_t dtmm_vec4(int32_t a0, int32_t a1, int32_t a2, int32_t a3) {
  int32x4_t v;
  __asm("vmov %q[v][2], %q[v][0], %[a0], %[a2]\n\t"
        "vmov %q[v][3], %q[v][1], %[a1], %[a3]"
        : [v] "=w"(v)
        : [a0] "r"(a0), [a1] "r"(a1), [a2] "r"(a2), [a3] "r"(a3));
  return v;
}
#endif

/* --------------------------------------------------------------- MAC loops
 *
 * dtmm_mac_p: a += w . x_j over n >= 1 bytes for the DTMM_P pixels x_j = x + j*pitch
 *   (im2col rows, or pixels one input stride apart);
 * dtmm_mac_1: one pixel;
 * and per architecture what its drivers need besides: MVE dtmm_groups_x4 (all runs
 * of a move table for every group of a line), DSP dtmm_mac_2x2 (two channels x two
 * pixels).
 * int32 accumulation wraps, as TFLite's. */

typedef struct {
  int32_t a[DTMM_P];
} dtmm_acc;

/* Modeled instructions of one run-table entry over n bytes for a group: what the
 * window drivers compare to pick between run layouts (MVE: the rectangles' group
 * loop, 8 a run and 10 a 16-byte step). */
DTMM_INLINE int32_t dtmm_run_cost(int32_t n) {
#if defined(DTMM_ARCH_MVE)
  return 8 + 10 * ((n + 15) >> 4);
#elif defined(DTMM_ARCH_DSP)
  return 8 + 5 * n + 7 * (n & 3);
#else
  return 6 + 8 * n;
#endif
}

DTMM_INLINE void dtmm_acc_set(dtmm_acc* acc, int32_t v) {
  int32_t j;
  for (j = 0; j < DTMM_P; ++j) acc->a[j] = v;
}

#if defined(DTMM_ARCH_MVE)

/* The loop of every 4-pixel MVE MAC (dtmm_mac_p, dtmm_mac_p_mask, dtmm_groups_x4),
 * asm text after its DLSTP: per 16 bytes one weight load for the
 * 4 rows; the asm's operands w, x0..x3 (advanced) and s0..s3 (even registers). */
#define DTMM_MVE_MAC4_LOOP                                                           \
  "2:\n\t"                                                                        \
  "vldrb.8 q0, [%[w]], #16\n\t"                                                   \
  "vldrb.8 q1, [%[x0]], #16\n\t"                                                  \
  "vmladava.s8 %[s0], q1, q0\n\t"                                                 \
  "vldrb.8 q1, [%[x1]], #16\n\t"                                                  \
  "vmladava.s8 %[s1], q1, q0\n\t"                                                 \
  "vldrb.8 q1, [%[x2]], #16\n\t"                                                  \
  "vmladava.s8 %[s2], q1, q0\n\t"                                                 \
  "vldrb.8 q1, [%[x3]], #16\n\t"                                                  \
  "vmladava.s8 %[s3], q1, q0\n\t"                                                 \
  "letp lr, 2b\n\t"

/* The next run of a bit-reversed tap mask (operand m, != 0), asm text: x advanced
 * past the pruned taps before it (operand tap_step bytes a tap), len its bytes (c
 * a tap), m shifted past it; the last shift's Z flag is set on the mask's last
 * run. */
#define DTMM_MVE_NEXT_RUN(tap_step)                                                \
  "clz %[len], %[m]\n\t"                                                           \
  "lsls %[m], %[m], %[len]\n\t"                                                    \
  "mla %[x], %[len], %[" #tap_step "], %[x]\n\t"                                   \
  "mvn %[len], %[m]\n\t"                                                           \
  "clz %[len], %[len]\n\t"                                                         \
  "lsls %[m], %[m], %[len]\n\t"                                                    \
  "mul %[len], %[len], %[c]\n\t"

/* Tail-predicated loop (DLSTP/LETP): lanes past n are inactive and not read. The
 * weights are loaded once per 16 bytes and used for the 4 pixels; VMLADAVA
 * accumulates into even registers ("Te"). */
DTMM_INLINE void dtmm_mac_p(const int8_t* w, const int8_t* x0, int32_t pitch, int32_t n,
                            dtmm_acc* acc) {
  int32_t s0 = acc->a[0], s1 = acc->a[1], s2 = acc->a[2], s3 = acc->a[3];
  const int8_t *x1, *x2, *x3;
  __asm volatile(
      "add %[x1], %[x0], %[rs]\n\t"
      "add %[x2], %[x1], %[rs]\n\t"
      "add %[x3], %[x2], %[rs]\n\t"
      "dlstp.8 lr, %[n]\n"
      DTMM_MVE_MAC4_LOOP
      : [s0] "+Te"(s0), [s1] "+Te"(s1), [s2] "+Te"(s2), [s3] "+Te"(s3), [w] "+r"(w),
        [x0] "+r"(x0), [x1] "=&r"(x1), [x2] "=&r"(x2), [x3] "=&r"(x3)
      : [n] "r"(n), [rs] "r"(pitch) DTMM_ASM_READS(w) DTMM_ASM_READS(x0)
      : "q0", "q1", "lr" DTMM_ASM_MEMORY);
  acc->a[0] = s0;
  acc->a[1] = s1;
  acc->a[2] = s2;
  acc->a[3] = s3;
}

/* Every run of a tap mask m over the DTMM_P im2col rows from x, rows rs apart, c
 * bytes a tap: m bit-reversed (tap 0 is bit 31, m != 0, at most 25 bits, so a run
 * is CLZ, then CLZ of ~m), w the mask's kept filterlets in order; returns w past
 * them. dtmm_mac_p_runs: the compiler's loop (its spills cost 21-22 instructions a
 * run besides dtmm_mac_p's 9 a 16-byte step, little around it); dtmm_mac_p_mask:
 * one asm loop, 17 a run, but it needs every register, so the caller's state goes
 * to the stack around it (rs is read from there each run). The last shift's flags
 * end the loop. */
DTMM_INLINE const int8_t* dtmm_mac_p_runs(uint32_t m, const int8_t* w, const int8_t* x,
                                          int32_t c, int32_t rs, dtmm_acc* acc) {
  do {
    const uint32_t skip = (uint32_t)__builtin_clz(m);
    uint32_t len;
    m <<= skip;
    len = (uint32_t)__builtin_clz(~m);
    m <<= len;
    x += (int32_t)skip * c;
    dtmm_mac_p(w, x, rs, (int32_t)len * c, acc);
    w += (int32_t)len * c;
    x += (int32_t)len * c;
  } while (m);
  return w;
}

DTMM_INLINE const int8_t* dtmm_mac_p_mask(uint32_t m, const int8_t* w, const int8_t* x,
                                          int32_t c, int32_t rs, dtmm_acc* acc) {
#if !defined(__OPTIMIZE__) /* gcc -O0 keeps r7 for the frame: too few registers left */
  return dtmm_mac_p_runs(m, w, x, c, rs, acc);
#else
  int32_t s0 = acc->a[0], s1 = acc->a[1], s2 = acc->a[2], s3 = acc->a[3], len;
  const int8_t *x0, *x1, *x2, *x3;
  __asm volatile(
      "1:\n\t"
      DTMM_MVE_NEXT_RUN(c)
      "ldr %[x3], %[rs]\n\t"
      "mov %[x0], %[x]\n\t"
      "add %[x1], %[x], %[x3]\n\t"
      "add %[x2], %[x1], %[x3]\n\t"
      "add %[x3], %[x2], %[x3]\n\t"
      "add %[x], %[x], %[len]\n\t"
      "dlstp.8 lr, %[len]\n\t"
      "add %[len], %[w], %[len]\n" /* the weights past the run (the loop's w is
                                        16 bytes a step) */
      DTMM_MVE_MAC4_LOOP
      "mov %[w], %[len]\n\t"
      "bne 1b\n"
      : [s0] "+Te"(s0), [s1] "+Te"(s1), [s2] "+Te"(s2), [s3] "+Te"(s3), [m] "+r"(m),
        [w] "+r"(w), [x] "+r"(x), [len] "=&r"(len), [x0] "=&r"(x0), [x1] "=&r"(x1),
        [x2] "=&r"(x2), [x3] "=&r"(x3)
      : [c] "r"(c), [rs] "m"(rs)
      : "q0", "q1", "lr", "cc", "memory");
  acc->a[0] = s0;
  acc->a[1] = s1;
  acc->a[2] = s2;
  acc->a[3] = s3;
  return w;
#endif
}

/* dtmm_mac_p_mask over 4 interleaved im2col rows (dtmm_im2col_interleaved: their
 * 16-byte chunks in turn, so one pointer with immediate offsets reads all 4) of c
 * bytes a tap, c a multiple of 16: a run starts on a chunk and ends on one, so
 * the loop leaves w and x exactly past it. 9 instructions a run besides the
 * MAC steps, and no register to spill. */
DTMM_INLINE const int8_t* dtmm_mac_il_runs(uint32_t m, const int8_t* w, const int8_t* x,
                                           int32_t c, dtmm_acc* acc) {
  int32_t s0 = acc->a[0], s1 = acc->a[1], s2 = acc->a[2], s3 = acc->a[3];
  uint32_t len;
  __asm volatile(
      "1:\n\t"
      DTMM_MVE_NEXT_RUN(c4) /* x: 4 bytes a byte of a row */
      "dlstp.8 lr, %[len]\n"
      "2:\n\t"
      "vldrb.8 q0, [%[w]], #16\n\t"
      "vldrb.8 q1, [%[x], #16]\n\t"
      "vmladava.s8 %[s1], q1, q0\n\t"
      "vldrb.8 q1, [%[x], #32]\n\t"
      "vmladava.s8 %[s2], q1, q0\n\t"
      "vldrb.8 q1, [%[x], #48]\n\t"
      "vmladava.s8 %[s3], q1, q0\n\t"
      "vldrb.8 q1, [%[x]], #64\n\t"
      "vmladava.s8 %[s0], q1, q0\n\t"
      "letp lr, 2b\n\t"
      "bne 1b\n"
      : [s0] "+Te"(s0), [s1] "+Te"(s1), [s2] "+Te"(s2), [s3] "+Te"(s3), [m] "+r"(m),
        [w] "+r"(w), [x] "+r"(x), [len] "=&r"(len)
      : [c] "r"(c), [c4] "r"(4 * c) DTMM_ASM_READS(w) DTMM_ASM_READS(x)
      : "q0", "q1", "lr", "cc" DTMM_ASM_MEMORY);
  acc->a[0] = s0;
  acc->a[1] = s1;
  acc->a[2] = s2;
  acc->a[3] = s3;
  return w;
}

DTMM_INLINE int32_t dtmm_mac_1(const int8_t* w, const int8_t* x, int32_t n, int32_t s) {
  __asm volatile(
      "dlstp.8 lr, %[n]\n"
      "1:\n\t"
      "vldrb.8 q0, [%[w]], #16\n\t"
      "vldrb.8 q1, [%[x]], #16\n\t"
      "vmladava.s8 %[s], q1, q0\n\t"
      "letp lr, 1b\n"
      : [s] "+Te"(s), [w] "+r"(w), [x] "+r"(x)
      : [n] "r"(n) DTMM_ASM_READS(w) DTMM_ASM_READS(x)
      : "q0", "q1", "lr" DTMM_ASM_MEMORY);
  return s;
}

/* Four channels of one pixel: a[j] += w[j] . x over n >= 1 bytes; the input is
 * loaded once per 16 bytes for the 4 rows of weights. */
DTMM_INLINE void dtmm_mac_1x4(const int8_t* w0, const int8_t* w1, const int8_t* w2,
                              const int8_t* w3, const int8_t* x, int32_t n, int32_t* a) {
  int32_t s0 = a[0], s1 = a[1], s2 = a[2], s3 = a[3];
  __asm volatile(
      "dlstp.8 lr, %[n]\n"
      "1:\n\t"
      "vldrb.8 q1, [%[x]], #16\n\t"
      "vldrb.8 q0, [%[w0]], #16\n\t"
      "vmladava.s8 %[s0], q1, q0\n\t"
      "vldrb.8 q0, [%[w1]], #16\n\t"
      "vmladava.s8 %[s1], q1, q0\n\t"
      "vldrb.8 q0, [%[w2]], #16\n\t"
      "vmladava.s8 %[s2], q1, q0\n\t"
      "vldrb.8 q0, [%[w3]], #16\n\t"
      "vmladava.s8 %[s3], q1, q0\n\t"
      "letp lr, 1b\n"
      : [s0] "+Te"(s0), [s1] "+Te"(s1), [s2] "+Te"(s2), [s3] "+Te"(s3), [w0] "+r"(w0),
        [w1] "+r"(w1), [w2] "+r"(w2), [w3] "+r"(w3), [x] "+r"(x)
      : [n] "r"(n) DTMM_ASM_READS(w0) DTMM_ASM_READS(x) /* w1..w3 lie after w0 */
      : "q0", "q1", "lr" DTMM_ASM_MEMORY);
  a[0] = s0;
  a[1] = s1;
  a[2] = s2;
  a[3] = s3;
}

/* dtmm_mac_1x4 over 4 rows `row` bytes apart, out of line: its asm needs every
 * register, none left for a caller's loop. Static: each caller's file keeps its
 * copy, so gcc still knows at the call which registers it clobbers. */
static __attribute__((noinline, unused)) void dtmm_mac_rows_1x4(const int8_t* w, int32_t row,
                                                                const int8_t* x, int32_t n,
                                                                int32_t* a) {
  dtmm_mac_1x4(w, w + row, w + 2 * row, w + 3 * row, x, n, a);
}

/* s += one 16-byte block per set bit of m (m != 0): block t of x against the next
 * 16 bytes of *w. 9 instructions per kept block, no run bookkeeping (the block
 * drivers of DTMM_CONV_2D and DTMM_FULLY_CONNECTED at B = 16). */
DTMM_INLINE int32_t dtmm_mac_bits16(const int8_t** w, const int8_t* x, uint32_t m, int32_t s) {
  const int8_t* wp = *w;
  uint32_t t;
  __asm volatile(
      "1:\n\t"
      "rbit %[t], %[m]\n\t"
      "clz %[t], %[t]\n\t"
      "add %[t], %[x], %[t], lsl #4\n\t"
      "vldrb.8 q0, [%[t]]\n\t"
      "vldrb.8 q1, [%[w]], #16\n\t"
      "vmladava.s8 %[s], q0, q1\n\t"
      "sub %[t], %[m], #1\n\t"
      "ands %[m], %[m], %[t]\n\t"
      "bne 1b\n"
      : [s] "+Te"(s), [w] "+r"(wp), [m] "+r"(m), [t] "=&r"(t)
      : [x] "r"(x) DTMM_ASM_READS(wp) DTMM_ASM_READS(x)
      : "q0", "q1", "cc" DTMM_ASM_MEMORY);
  *w = wp;
  return s;
}

/* A run table of moves, for 4 pixels a constant distance apart in every run (a
 * block of a rectangle, 4 pixels of a line): entry k moves the 4 pixel pointers d
 * bytes, then (n > 0) each multiplies n bytes against w, which leaves it
 * 16 * ceil(n / 16) bytes on (the MAC loop's post-increment). The table ends with
 * n == 0, whose d moves the pointers on to the next group's first run; the first
 * entry's d is that run's offset, where the pointers start (dtmm_groups_x4 does not
 * read it). Moves instead of 4 offsets a run leave the group loop no origin to add:
 * 8 instructions a run plus 12 a group (the first run and the end marker), where
 * offsets took 12 a run plus 3. */
typedef struct {
  int32_t d;
  int32_t n;
  const int8_t* w;
} dtmm_move_run;

/* A move table being built: its runs, the last run's offset from the group's first
 * pixel and its bytes. */
typedef struct {
  int32_t nr;
  uint32_t o_last, n_last;
} dtmm_moves;

DTMM_INLINE void dtmm_moves_start(dtmm_moves* b) {
  b->nr = 0;
  b->o_last = b->n_last = 0;
}

/* Where a pointer is after a run of n bytes from offset o: the MAC loop steps 16
 * bytes at a time (uint32: wrapping; only pointers at the runs are read). */
DTMM_INLINE uint32_t dtmm_move_end(uint32_t o, uint32_t n) {
  return o + ((n + 15u) & ~15u);
}

/* Offset of the pointers after the last run. */
DTMM_INLINE uint32_t dtmm_moves_end(const dtmm_moves* b) {
  return dtmm_move_end(b->o_last, b->n_last);
}

/* Appends a run of n bytes at offset o (a run's move is final once the next one
 * starts). */
DTMM_INLINE void dtmm_moves_add(dtmm_move_run* tb, dtmm_moves* b, uint32_t o, int32_t n,
                                const int8_t* w) {
  dtmm_move_run* r = &tb[b->nr++];
  r->d = (int32_t)(o - dtmm_moves_end(b));
  r->n = n;
  r->w = w;
  b->o_last = o;
  b->n_last = (uint32_t)n;
}

/* Lengthens the last run by n bytes. */
DTMM_INLINE void dtmm_moves_extend(dtmm_move_run* tb, dtmm_moves* b, int32_t n) {
  b->n_last += (uint32_t)n;
  tb[b->nr - 1].n = (int32_t)b->n_last;
}

/* The end marker (at least one run): on to the first run of the group step bytes
 * on. */
DTMM_INLINE void dtmm_moves_close(dtmm_move_run* tb, const dtmm_moves* b, uint32_t step) {
  tb[b->nr].d = (int32_t)(step + (uint32_t)tb[0].d - dtmm_moves_end(b));
  tb[b->nr].n = 0;
}

/* The 4 pixel pointers of dtmm_groups_x4, carried from one call to the next. */
typedef struct {
  uintptr_t x[4];
} dtmm_ptrs_x4;

DTMM_INLINE void dtmm_ptrs_move(dtmm_ptrs_x4* x, uintptr_t d) {
  x->x[0] += d;
  x->x[1] += d;
  x->x[2] += d;
  x->x[3] += d;
}

/* What dtmm_groups_x4 reads from memory (the caller's stack: no register needed). */
typedef struct {
  int32_t acc[2];            /* the start value, twice: two LDRD set the 4 sums */
  struct {
    int32_t n;               /* the first run's bytes (> 0) and weights: one LDRD */
    const int8_t* w;
  } first;
  const dtmm_move_run* tb1;  /* the table from its second entry */
  uint32_t step_o;           /* output bytes from one group to the next */
  int32_t out_off;
} dtmm_groups_x4_args;

/* Sets the table's first run and entries in L. */
DTMM_INLINE void dtmm_groups_x4_table(dtmm_groups_x4_args* L, const dtmm_move_run* tb) {
  L->first.n = tb[0].n;
  L->first.w = tb[0].w;
  L->tb1 = tb + 1;
}

/* The group loop's end: a register, but at -Os, where gcc 12 then finds none. */
#if defined(__OPTIMIZE_SIZE__)
#define DTMM_GROUPS_END "m"
#define DTMM_GROUPS_CMP_END "ldr %[w], %[oe]\n\tcmp %[og], %[w]\n\t"
#else
#define DTMM_GROUPS_END "r"
#define DTMM_GROUPS_CMP_END "cmp %[og], %[oe]\n\t"
#endif

/* Groups from the pointers x (outputs og, og + step_o, ...) until og reaches og_end
 * (at least one group): per group every run of the move table, requantized as
 * dtmm_requant_x4 and stored as its 4 bytes at og + ov; x is left at the next
 * group. One asm loop: the compiler's loop spilled the sums' start value, the
 * table, the steps and the clamp around the run loop's 13 registers. */
DTMM_INLINE void dtmm_groups_x4(const dtmm_groups_x4_args* L, dtmm_ptrs_x4* xp, int8_t* og,
                                uintptr_t og_end, const dtmm_rq_x4* rq, int32x4_t lo,
                                int32x4_t hi, uint32x4_t ov) {
#if defined(__GNUC__) && defined(__OPTIMIZE__) /* -O0 keeps r7 as frame pointer */
  int32_t s0, s1, s2, s3;
  const dtmm_move_run* tb;
  const int8_t* w;
  uintptr_t x0 = xp->x[0], x1 = xp->x[1], x2 = xp->x[2], x3 = xp->x[3];
  __asm volatile(
      "0:\n\t"
      "ldrd %[s0], %[s1], %[acc]\n\t"
      "ldrd %[s2], %[s3], %[acc]\n\t"
      "ldr %[tb], %[tb1]\n\t"
      "ldrd lr, %[w], %[first]\n\t"
      "dlstp.8 lr, lr\n"
      DTMM_MVE_MAC4_LOOP
      "ldr %[w], [%[tb]], #12\n\t"
      "add %[x0], %[w]\n\t"
      "add %[x1], %[w]\n\t"
      "add %[x2], %[w]\n\t"
      "add %[x3], %[w]\n\t"
      "ldrd lr, %[w], [%[tb], #-8]\n\t"
      "wlstp.8 lr, lr, 3f\n\t"
      "b 2b\n"
      "3:\n\t"
      "vmov q0[2], q0[0], %[s0], %[s2]\n\t"
      "vmov q0[3], q0[1], %[s1], %[s3]\n\t"
      "vshl.s32 q0, q0, %q[left]\n\t"
      "vqrdmulh.s32 q0, q0, %q[mult]\n\t"
      "vand q1, q0, %q[neg]\n\t"
      "vshr.s32 q1, q1, #31\n\t"
      "vqadd.s32 q0, q0, q1\n\t"
      "vrshl.s32 q0, q0, %q[neg]\n\t"
      "ldr %[w], %[off]\n\t"
      "vadd.i32 q0, q0, %[w]\n\t"
      "vmax.s32 q0, q0, %q[lo]\n\t"
      "vmin.s32 q0, q0, %q[hi]\n\t"
      "vstrb.32 q0, [%[og], %q[ov]]\n\t"
      "ldr %[w], %[so]\n\t"
      "add %[og], %[w]\n\t"
      DTMM_GROUPS_CMP_END
      "bne 0b\n"
      : [s0] "=&Te"(s0), [s1] "=&Te"(s1), [s2] "=&Te"(s2), [s3] "=&Te"(s3), [tb] "=&r"(tb),
        [w] "=&r"(w), [x0] "+r"(x0), [x1] "+r"(x1), [x2] "+r"(x2), [x3] "+r"(x3),
        [og] "+r"(og)
      : [acc] "m"(L->acc), [first] "m"(L->first), [tb1] "m"(L->tb1), [off] "m"(L->out_off),
        [so] "m"(L->step_o), [oe] DTMM_GROUPS_END(og_end), [left] "w"(rq->left),
        [mult] "w"(rq->mult), [neg] "w"(rq->neg), [lo] "w"(lo), [hi] "w"(hi), [ov] "w"(ov)
      : "q0", "q1", "lr", "cc", "memory");
  xp->x[0] = x0;
  xp->x[1] = x1;
  xp->x[2] = x2;
  xp->x[3] = x3;
#else
  do {
    int32_t s[4] = {L->acc[0], L->acc[0], L->acc[0], L->acc[0]};
    const dtmm_move_run* r = L->tb1;
    int32_t n = L->first.n, j, k;
    const int8_t* w = L->first.w;
    for (;;) {
      for (j = 0; j < 4; ++j) {
        const int8_t* x = (const int8_t*)xp->x[j];
        for (k = 0; k < n; ++k) s[j] += (int32_t)x[k] * w[k];
      }
      dtmm_ptrs_move(xp, dtmm_move_end(0, (uint32_t)n));
      dtmm_ptrs_move(xp, (uintptr_t)(uint32_t)r->d);
      n = r->n;
      w = r->w;
      ++r;
      if (n == 0) break;
    }
    vstrbq_scatter_offset_s32(og, ov,
                              dtmm_requant_x4(vldrwq_s32(s), rq->left, rq->mult, rq->neg,
                                              L->out_off, lo, hi));
    og += L->step_o;
  } while ((uintptr_t)og != og_end);
#endif
}

/* Sum of n >= 1 int8 weights (a padded tap reads zp_in: its term is zp_in * sum). */
DTMM_INLINE int32_t dtmm_wsum(const int8_t* w, int32_t n) {
  int32_t s = 0;
  __asm volatile(
      "dlstp.8 lr, %[n]\n"
      "1:\n\t"
      "vldrb.8 q0, [%[w]], #16\n\t"
      "vaddva.s8 %[s], q0\n\t"
      "letp lr, 1b\n"
      : [s] "+Te"(s), [w] "+r"(w)
      : [n] "r"(n) DTMM_ASM_READS(w)
      : "q0", "lr" DTMM_ASM_MEMORY);
  return s;
}

#elif defined(DTMM_ARCH_DSP)

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
 * SMLADs give w0*x0 + w2*x2 + w1*x1 + w3*x3 without repacking; the weights are
 * widened once for the 3 pixels (20 instructions per 12 MACs). In asm so that the
 * loop keeps its 12 values in registers whatever the driver around it holds. */
DTMM_INLINE void dtmm_mac_p(const int8_t* w, const int8_t* x0, int32_t pitch, int32_t n,
                            dtmm_acc* acc) {
  const int8_t* x1 = x0 + pitch;
  const int8_t* x2 = x1 + pitch;
  int32_t s0 = acc->a[0], s1 = acc->a[1], s2 = acc->a[2];
  int32_t quads = n >> 2;
  int32_t rest = n & 3;
#if defined(__OPTIMIZE__) /* -O0 keeps r7 as frame pointer: 11 registers */
  if (quads > 0) {
    uint32_t w02, w13, xv, t;
    __asm volatile(
        "1:\n\t"
        "ldr %[xv], [%[w]], #4\n\t"
        "sxtb16 %[w02], %[xv]\n\t"
        "sxtb16 %[w13], %[xv], ror #8\n\t"
        "ldr %[xv], [%[x0]], #4\n\t"
        "sxtb16 %[t], %[xv]\n\t"
        "smlad %[s0], %[t], %[w02], %[s0]\n\t"
        "sxtb16 %[t], %[xv], ror #8\n\t"
        "smlad %[s0], %[t], %[w13], %[s0]\n\t"
        "ldr %[xv], [%[x1]], #4\n\t"
        "sxtb16 %[t], %[xv]\n\t"
        "smlad %[s1], %[t], %[w02], %[s1]\n\t"
        "sxtb16 %[t], %[xv], ror #8\n\t"
        "smlad %[s1], %[t], %[w13], %[s1]\n\t"
        "ldr %[xv], [%[x2]], #4\n\t"
        "sxtb16 %[t], %[xv]\n\t"
        "smlad %[s2], %[t], %[w02], %[s2]\n\t"
        "sxtb16 %[t], %[xv], ror #8\n\t"
        "smlad %[s2], %[t], %[w13], %[s2]\n\t"
        "subs %[q], %[q], #1\n\t"
        "bne 1b\n"
        : [s0] "+r"(s0), [s1] "+r"(s1), [s2] "+r"(s2), [w] "+r"(w), [x0] "+r"(x0),
          [x1] "+r"(x1), [x2] "+r"(x2), [q] "+r"(quads), [w02] "=&r"(w02), [w13] "=&r"(w13),
          [xv] "=&r"(xv), [t] "=&r"(t)
        : "i"(0) DTMM_ASM_READS(w) DTMM_ASM_READS(x0) /* x1, x2 lie after x0 */
        : "cc" DTMM_ASM_MEMORY);
  }
#else
  while (quads-- > 0) {
    const uint32_t wv = dtmm_read_u32(w), w02 = __sxtb16(wv), w13 = dtmm_sxtb16_ror8(wv);
    const uint32_t xa = dtmm_read_u32(x0), xb = dtmm_read_u32(x1), xc = dtmm_read_u32(x2);
    s0 = __smlad(dtmm_sxtb16_ror8(xa), w13, __smlad(__sxtb16(xa), w02, s0));
    s1 = __smlad(dtmm_sxtb16_ror8(xb), w13, __smlad(__sxtb16(xb), w02, s1));
    s2 = __smlad(dtmm_sxtb16_ror8(xc), w13, __smlad(__sxtb16(xc), w02, s2));
    w += 4;
    x0 += 4;
    x1 += 4;
    x2 += 4;
  }
#endif
  while (rest-- > 0) {
    const int32_t wi = *w++;
    s0 = (int32_t)((uint32_t)s0 + (uint32_t)(wi * *x0++));
    s1 = (int32_t)((uint32_t)s1 + (uint32_t)(wi * *x1++));
    s2 = (int32_t)((uint32_t)s2 + (uint32_t)(wi * *x2++));
  }
  acc->a[0] = s0;
  acc->a[1] = s1;
  acc->a[2] = s2;
}

DTMM_INLINE int32_t dtmm_mac_1(const int8_t* w, const int8_t* x, int32_t n, int32_t s) {
  int32_t quads = n >> 2;
  int32_t rest = n & 3;
  if (quads > 0) {
    uint32_t wv, xv, t, u;
    __asm volatile(
        "1:\n\t"
        "ldr %[wv], [%[w]], #4\n\t"
        "ldr %[xv], [%[x]], #4\n\t"
        "sxtb16 %[t], %[wv]\n\t"
        "sxtb16 %[u], %[xv]\n\t"
        "smlad %[s], %[t], %[u], %[s]\n\t"
        "sxtb16 %[t], %[wv], ror #8\n\t"
        "sxtb16 %[u], %[xv], ror #8\n\t"
        "smlad %[s], %[t], %[u], %[s]\n\t"
        "subs %[q], %[q], #1\n\t"
        "bne 1b\n"
        : [s] "+r"(s), [w] "+r"(w), [x] "+r"(x), [q] "+r"(quads), [wv] "=&r"(wv),
          [xv] "=&r"(xv), [t] "=&r"(t), [u] "=&r"(u)
        : "i"(0) DTMM_ASM_READS(w) DTMM_ASM_READS(x)
        : "cc" DTMM_ASM_MEMORY);
  }
  while (rest-- > 0) s = (int32_t)((uint32_t)s + (uint32_t)(*w++ * *x++));
  return s;
}

/* Inputs widened once (dtmm_widen_s8), for the pixel driver, where one window
 * serves every channel: n bytes (a multiple of 4) become n / 2 words, each 4 bytes
 * as SXTB16 widens the weights, (x0, x2) then (x1, x3), so a MAC loop widens only
 * its weights: 8 instructions per 4 MACs for one pixel (dtmm_mac_1: 10), 11 per 8
 * for two (one weight load and widening for both). */
DTMM_INLINE void dtmm_widen_s8(const int8_t* x, int32_t n, uint32_t* dst) {
  for (; n > 0; n -= 4, x += 4, dst += 2) {
    const uint32_t v = dtmm_read_u32(x);
    dst[0] = __sxtb16(v);
    dst[1] = dtmm_sxtb16_ror8(v);
  }
}

/* s + w . x over n bytes (n a multiple of 4, n >= 4), x widened. */
DTMM_INLINE int32_t dtmm_mac_1_wide(const int8_t* w, const uint32_t* x, int32_t n, int32_t s) {
  int32_t quads = n >> 2;
  uint32_t wv, w02, a, b;
  __asm volatile(
      "1:\n\t"
      "ldr %[wv], [%[w]], #4\n\t"
      "ldrd %[a], %[b], [%[x]], #8\n\t"
      "sxtb16 %[w02], %[wv]\n\t"
      "sxtb16 %[wv], %[wv], ror #8\n\t"
      "smlad %[s], %[a], %[w02], %[s]\n\t"
      "smlad %[s], %[b], %[wv], %[s]\n\t"
      "subs %[q], %[q], #1\n\t"
      "bne 1b\n"
      : [s] "+r"(s), [w] "+r"(w), [x] "+r"(x), [q] "+r"(quads), [wv] "=&r"(wv),
        [w02] "=&r"(w02), [a] "=&r"(a), [b] "=&r"(b)
      : "i"(0) DTMM_ASM_READS(w) DTMM_ASM_READS(x)
      : "cc" DTMM_ASM_MEMORY);
  return s;
}

/* *s0 += w . x0, *s1 += w . x1 over n bytes (a multiple of 4, n >= 4), both widened. */
DTMM_INLINE void dtmm_mac_2_wide(const int8_t* w, const uint32_t* x0, const uint32_t* x1,
                                 int32_t n, int32_t* s0, int32_t* s1) {
  int32_t quads = n >> 2, a0 = *s0, a1 = *s1;
  uint32_t wv, w02, a, b;
  __asm volatile(
      "1:\n\t"
      "ldr %[wv], [%[w]], #4\n\t"
      "ldrd %[a], %[b], [%[x0]], #8\n\t"
      "sxtb16 %[w02], %[wv]\n\t"
      "sxtb16 %[wv], %[wv], ror #8\n\t"
      "smlad %[a0], %[a], %[w02], %[a0]\n\t"
      "smlad %[a0], %[b], %[wv], %[a0]\n\t"
      "ldrd %[a], %[b], [%[x1]], #8\n\t"
      "smlad %[a1], %[a], %[w02], %[a1]\n\t"
      "smlad %[a1], %[b], %[wv], %[a1]\n\t"
      "subs %[q], %[q], #1\n\t"
      "bne 1b\n"
      : [a0] "+r"(a0), [a1] "+r"(a1), [w] "+r"(w), [x0] "+r"(x0), [x1] "+r"(x1),
        [q] "+r"(quads), [wv] "=&r"(wv), [w02] "=&r"(w02), [a] "=&r"(a), [b] "=&r"(b)
      : "i"(0) DTMM_ASM_READS(w) DTMM_ASM_READS(x0) DTMM_ASM_READS(x1)
      : "cc" DTMM_ASM_MEMORY);
  *s0 = a0;
  *s1 = a1;
}

/* Two channels x two pixels, a[0] = w0.x0, a[1] = w1.x0, a[2] = w0.x1, a[3] = w1.x1,
 * where the second channel's weights and the second pixel are both c bytes after
 * the first (kept 1x1 channels are consecutive rows of values; pixels of a plane
 * at stride 1 are consecutive): 16 MACs per 20 instructions. The 13 values and
 * the loop counter (lr) fill every register, so it is out of line and in asm
 * (gcc spills 4 of them otherwise); n >= 4. Defined in dtmm_conv_s8_pointwise_2x2.c. */
void dtmm_mac_2x2(const int8_t* w0, const int8_t* x0, int32_t c, int32_t n, int32_t* a);

DTMM_INLINE int32_t dtmm_wsum(const int8_t* w, int32_t n) {
  uint32_t s = 0;
  int32_t i;
  for (i = 0; i < n; ++i) s += (uint32_t)(int32_t)w[i];
  return (int32_t)s;
}

#else /* portable */

DTMM_INLINE void dtmm_mac_p(const int8_t* w, const int8_t* x0, int32_t pitch, int32_t n,
                            dtmm_acc* acc) {
  const int8_t* x1 = x0 + pitch;
  const int8_t* x2 = x1 + pitch;
  const int8_t* x3 = x2 + pitch;
  uint32_t s0 = (uint32_t)acc->a[0], s1 = (uint32_t)acc->a[1], s2 = (uint32_t)acc->a[2],
           s3 = (uint32_t)acc->a[3];
  int32_t i;
  for (i = 0; i < n; ++i) {
    const int32_t wi = w[i];
    s0 += (uint32_t)(wi * x0[i]);
    s1 += (uint32_t)(wi * x1[i]);
    s2 += (uint32_t)(wi * x2[i]);
    s3 += (uint32_t)(wi * x3[i]);
  }
  acc->a[0] = (int32_t)s0;
  acc->a[1] = (int32_t)s1;
  acc->a[2] = (int32_t)s2;
  acc->a[3] = (int32_t)s3;
}

DTMM_INLINE int32_t dtmm_mac_1(const int8_t* w, const int8_t* x, int32_t n, int32_t s) {
  uint32_t u = (uint32_t)s;
  int32_t i;
  for (i = 0; i < n; ++i) u += (uint32_t)(w[i] * x[i]);
  return (int32_t)u;
}

DTMM_INLINE int32_t dtmm_wsum(const int8_t* w, int32_t n) {
  uint32_t s = 0;
  int32_t i;
  for (i = 0; i < n; ++i) s += (uint32_t)(int32_t)w[i];
  return (int32_t)s;
}

#endif

/* Requantizes the DTMM_P sums of a group for one channel and stores the first np
 * at out + oo[j] (MVE: the same offsets as a vector). */
#if defined(DTMM_ARCH_MVE)
DTMM_INLINE void dtmm_store_p(const dtmm_acc* acc, int32_t np, const dtmm_rq_x4* rq,
                              int32_t out_off, int32x4_t lo, int32x4_t hi, int8_t* out,
                              uint32x4_t offs) {
  const int32x4_t v = dtmm_requant_x4(dtmm_vec4(acc->a[0], acc->a[1], acc->a[2], acc->a[3]),
                                      rq->left, rq->mult, rq->neg, out_off, lo, hi);
  vstrbq_scatter_offset_p_s32(out, offs, v, vctp32q((uint32_t)np));
}
#else
DTMM_INLINE void dtmm_store_p(const dtmm_acc* acc, int32_t np, int32_t mult, int32_t shift,
                              const dtmm_geom* g, int8_t* out, const int32_t* oo) {
  int32_t j;
  for (j = 0; j < np; ++j) out[oo[j]] = dtmm_requant_out(acc->a[j], mult, shift, g);
}
#endif

/* --------------------------------------------------------- shared helpers */

#if defined(DTMM_ARCH_MVE)
/* The MVE copy and fill loops, asm text: n bytes (operand n) from s, or of q0 = v,
 * to d, which advances `step` bytes per 16 (16: contiguous; 64: one of 4
 * interleaved im2col rows, dtmm_im2col_interleaved). */
#define DTMM_MVE_COPY_LOOP(step)                                                   \
  "dlstp.8 lr, %[n]\n"                                                             \
  "1:\n\t"                                                                         \
  "vldrb.8 q0, [%[s]], #16\n\t"                                                    \
  "vstrb.8 q0, [%[d]], #" #step "\n\t"                                             \
  "letp lr, 1b\n"
#define DTMM_MVE_FILL_LOOP(step)                                                   \
  "vdup.8 q0, %[v]\n\t"                                                            \
  "dlstp.8 lr, %[n]\n"                                                             \
  "1:\n\t"                                                                         \
  "vstrb.8 q0, [%[d]], #" #step "\n\t"                                             \
  "letp lr, 1b\n"
#endif

/* Small copies and fills inline: a kernel row of C_in 1 is a few bytes, where a
 * library call costs more than the copy (word loops: gcc keeps them inline). */
DTMM_INLINE void dtmm_copy(int8_t* dst, const int8_t* src, int32_t n) {
#if defined(DTMM_ARCH_MVE)
  if (n <= 0) return;
  __asm volatile(DTMM_MVE_COPY_LOOP(16)
      : [s] "+r"(src), [d] "+r"(dst)
      : [n] "r"(n)
      : "q0", "lr", "memory");
#else
  if (n > 32) {
    memcpy(dst, src, (size_t)n);
    return;
  }
  for (; n >= 4; n -= 4, dst += 4, src += 4) memcpy(dst, src, 4);
  if (n & 2) {
    memcpy(dst, src, 2);
    dst += 2;
    src += 2;
  }
  if (n & 1) *dst = *src;
#endif
}

DTMM_INLINE void dtmm_fill(int8_t* dst, int8_t v, int32_t n) {
#if defined(DTMM_ARCH_MVE)
  if (n <= 0) return;
  __asm volatile(DTMM_MVE_FILL_LOOP(16)
      : [d] "+r"(dst)
      : [n] "r"(n), [v] "r"((int32_t)v)
      : "q0", "lr", "memory");
#else
  const uint32_t pat = 0x01010101u * (uint8_t)v;
  if (n > 32) {
    memset(dst, v, (size_t)n);
    return;
  }
  for (; n >= 4; n -= 4, dst += 4) memcpy(dst, &pat, 4);
  if (n & 2) {
    memcpy(dst, &pat, 2);
    dst += 2;
  }
  if (n & 1) *dst = v;
#endif
}

/* Offsets of the taps of a kernel of up to DTMM_MAX_TAPS for a pixel read in place,
 * and the mask of taps that continue the previous one in memory (the same kernel
 * row with dilation 1, or the next row's first tap when the rows' windows touch:
 * input width 1 or a kernel as wide as the input). Only used where every tap of a
 * run is in bounds. Returns the continuation mask. */
uint32_t dtmm_tap_table(const dtmm_geom* g, int32_t* off);

/* Copies the window of output pixel (y, x) to dst as [taps][C_in], zp_in at padded
 * taps. */
void dtmm_im2col(const dtmm_geom* g, const int8_t* in, int32_t y, int32_t x, int8_t* dst);

#if defined(DTMM_ARCH_MVE)
/* The same window as row j of 4 interleaved rows at dst - 16 * j: each 16-byte chunk
 * k of the row at dst + 64 * k (C_in a multiple of 16), as dtmm_mac_il_runs reads
 * them. */
void dtmm_im2col_interleaved(const dtmm_geom* g, const int8_t* in, int32_t y, int32_t x,
                             int8_t* dst);
#endif

/* Writes requantize(bias) of channel oc to every pixel. */
void dtmm_fill_channel(const dtmm_geom* g, const dtmm_fwcs_filter* f, int8_t* out,
                       int32_t pixels, int32_t oc);

/* Writes requantize(bias) to every pixel of each fully pruned channel. */
void dtmm_fill_pruned(const dtmm_geom* g, const dtmm_fwcs_filter* f, int8_t* out,
                      int32_t pixels);

#if defined(DTMM_ARCH_MVE)
/* fields[j] = nb <= 25 bits of channel j's tap mask from bit pos + j * stride, bit-
 * reversed so that the first is bit 31, for j < n (n >= 1); fields has room for n
 * rounded up to 4. Reads only inside the bitmap's len bytes. */
void dtmm_tap_fields(const uint8_t* bm, int32_t len, int32_t pos, int32_t stride, int32_t nb,
                     int32_t n, uint32_t* fields);

/* empty[j] = 1 where fields[j] == 0 (a fully pruned channel), 0 elsewhere, for j < n
 * rounded up to 4: dtmm_tap_fields' output narrowed to a byte a channel. */
DTMM_INLINE void dtmm_empty_fields(const uint32_t* fields, int32_t n, uint8_t* empty) {
  int32_t j;
  for (j = 0; j < n; j += 4) /* CLZ 32 >> 5 */
    vstrbq_u32(empty + j, vshrq_n_u32(vclzq_u32(vldrwq_u32(fields + j)), 5));
}
#endif

/* True when output channel oc has no kept filterlet. */
DTMM_INLINE int dtmm_channel_pruned(const dtmm_geom* g, const dtmm_fwcs_filter* f,
                                    int32_t oc) {
  int32_t pos = oc * g->taps, left = g->taps;
  if (left <= 25) return !dtmm_bits(f->bitmap, f->bitmap_bytes, pos, left);
  for (; left > 0; left -= 32, pos += 32)
    if (dtmm_bits(f->bitmap, f->bitmap_bytes, pos, left < 32 ? left : 32)) return 0;
  return 1;
}

/* ---- px ---- */

/* 1x1 kernels (no padding): the output plane as lines of pixels one input pitch
 * apart, as the pointwise drivers walk it. Stride 1 and as wide as the input: one
 * line (in and out pixels correspond one to one); else one line per output row (an
 * output narrower than the input leaves input columns unread). Steps computed in
 * uint32: a stride may be huge when the output has one row or column, and such a
 * step is then never used. */
typedef struct {
  int32_t flat, lines, len, pitch, line_in, line_out;
} dtmm_pw_lines;

DTMM_INLINE dtmm_pw_lines dtmm_pointwise_lines(const dtmm_geom* g) {
  dtmm_pw_lines L;
  L.flat = g->sh == 1 && g->sw == 1 && g->out_w == g->in_w;
  L.lines = L.flat ? 1 : g->out_h;
  L.len = L.flat ? g->out_h * g->out_w : g->out_w;
  L.pitch = (int32_t)((uint32_t)g->sw * (uint32_t)g->in_c);
  L.line_in = (int32_t)((uint32_t)g->sh * (uint32_t)g->in_w * (uint32_t)g->in_c);
  L.line_out = g->out_w * g->out_c;
  return L;
}

/* Channels of one bitmap word (1x1 kernels: one bit per channel). */
#define DTMM_WORD_CHANNELS 32

/* The 32 bitmap bits from byte q on (bits past the bitmap read as 0; the
 * validated padding bits of the last byte are 0). */
DTMM_INLINE uint32_t dtmm_bitmap_word(const uint8_t* bm, int32_t len, int32_t q) {
  uint32_t v = 0;
  int32_t i;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  if (q + 4 <= len) {
    memcpy(&v, bm + q, 4); /* one (unaligned) load */
    return v;
  }
#endif
  for (i = 0; i < 4 && q + i < len; ++i) v |= (uint32_t)bm[q + i] << (8 * i);
  return v;
}

#if defined(DTMM_ARCH_MVE)
/* Lane j: the index of the lowest set bit of mj (mj != 0). */
DTMM_INLINE uint32x4_t dtmm_ctz4(uint32_t m0, uint32_t m1, uint32_t m2, uint32_t m3) {
  return vreinterpretq_u32_s32(dtmm_vec4((int32_t)DTMM_CTZ(m0), (int32_t)DTMM_CTZ(m1),
                                         (int32_t)DTMM_CTZ(m2), (int32_t)DTMM_CTZ(m3)));
}

/* Four channels of one pixel from zero: lane j = w[j] . x over n >= 1 bytes, as one
 * vector (dtmm_mac_1x4 with the sums moved to a vector inside the block). */
DTMM_INLINE int32x4_t dtmm_mac_1x4_v(const int8_t* w0, const int8_t* w1, const int8_t* w2,
                                     const int8_t* w3, const int8_t* x, int32_t n) {
  int32_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  int32x4_t v;
  __asm volatile(
      "dlstp.8 lr, %[n]\n"
      "1:\n\t"
      "vldrb.8 q1, [%[x]], #16\n\t"
      "vldrb.8 q0, [%[w0]], #16\n\t"
      "vmladava.s8 %[s0], q1, q0\n\t"
      "vldrb.8 q0, [%[w1]], #16\n\t"
      "vmladava.s8 %[s1], q1, q0\n\t"
      "vldrb.8 q0, [%[w2]], #16\n\t"
      "vmladava.s8 %[s2], q1, q0\n\t"
      "vldrb.8 q0, [%[w3]], #16\n\t"
      "vmladava.s8 %[s3], q1, q0\n\t"
      "letp lr, 1b\n\t"
      "vmov %q[v][2], %q[v][0], %[s0], %[s2]\n\t"
      "vmov %q[v][3], %q[v][1], %[s1], %[s3]\n"
      : [s0] "+Te"(s0), [s1] "+Te"(s1), [s2] "+Te"(s2), [s3] "+Te"(s3), [w0] "+r"(w0),
        [w1] "+r"(w1), [w2] "+r"(w2), [w3] "+r"(w3), [x] "+r"(x), [v] "=&w"(v)
      : [n] "r"(n) DTMM_ASM_READS(w0) DTMM_ASM_READS(x) /* w1..w3 lie after w0 */
      : "q0", "q1", "lr" DTMM_ASM_MEMORY);
  return v;
}
#endif

#ifdef __cplusplus
}
#endif

#endif /* DTMM_OPS_DTMM_CONV_S8_SUPPORT_H_ */
