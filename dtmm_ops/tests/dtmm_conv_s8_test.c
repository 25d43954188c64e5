/* Tests of dtmm_conv_s8 (all compiled paths), its validator and scratch size.
 *
 * Three independent checks of the output bytes:
 *  - golden vectors from the Python reference (dtmm.reference, via gen_golden.py);
 *  - a plain-C dense conv with TFLite's reference semantics (unfolded bias, input
 *    offset added per element, padded taps skipped, gemmlowp-style requantization),
 *    on golden and on many random layer configs;
 *  - guard bytes around output and scratch (no write outside them), and inputs /
 *    FWCS arrays placed at the very end of their buffers where a checker (ASan on
 *    x86) sees any over-read.
 * The same source runs on x86 and, under QEMU, on Cortex-M4 (DSP) and M55 (MVE).
 * Prints "N passed, N failed" and exits non-zero on any failure.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dtmm_conv_s8.h"
#include "dtmm_driver_golden.h"
#include "dtmm_golden.h"

#ifndef DTMM_TEST_RANDOM_CASES
#define DTMM_TEST_RANDOM_CASES 1500
#endif

static int g_passed, g_failed;

static void check(int ok, const char* what, const char* name) {
  if (ok) {
    g_passed++;
  } else {
    g_failed++;
    printf("FAIL %s: %s\n", name, what);
  }
}

/* --------------------------------------------------------------- PRNG
 * xorshift32, mirrored in gen_golden.py: int8 = top byte of the state. */
static uint32_t rng_next(uint32_t* s) {
  uint32_t x = *s;
  x ^= x << 13;
  x ^= x >> 17;
  x ^= x << 5;
  *s = x;
  return x;
}
static int8_t rng_i8(uint32_t* s) { return (int8_t)(rng_next(s) >> 24); }
static int32_t rng_range(uint32_t* s, int32_t lo, int32_t hi) { /* inclusive */
  return lo + (int32_t)(rng_next(s) % (uint32_t)(hi - lo + 1));
}

/* ---------------------------------------------------------- arena
 * A bump allocator over a static buffer (no heap needed on the Cortex-M build).
 * alloc_end() places n bytes flush against the end of a fresh heap block on x86
 * so that ASan flags any read past them. */
#define ARENA_BYTES (1u << 20)
static uint8_t g_arena[ARENA_BYTES];
static size_t g_arena_used;
static void* g_heap_blocks[16];
static int g_heap_n;

static void* alloc(size_t n) {
  void* p;
  n = (n + 15u) & ~(size_t)15u;
  if (g_arena_used + n > ARENA_BYTES) {
    printf("arena exhausted\n");
    exit(2);
  }
  p = g_arena + g_arena_used;
  g_arena_used += n;
  return p;
}
static void* alloc_end(size_t n) {
#if defined(__x86_64__) || defined(__i386__) || defined(__aarch64__)
  uint8_t* p = (uint8_t*)malloc(n ? n : 1);
  if (!p || g_heap_n >= 16) exit(2);
  g_heap_blocks[g_heap_n++] = p;
  return p;
#else
  return alloc(n);
#endif
}
static void arena_reset(void) {
  g_arena_used = 0;
  while (g_heap_n > 0) free(g_heap_blocks[--g_heap_n]);
}

/* ------------------------------------------------- reference (TFLite) */

/* gemmlowp SaturatingRoundingDoublingHighMul + RoundingDivideByPOT, written the way
 * TFLite writes them (independently of the kernel's formulation). */
static int32_t ref_srdhm(int32_t a, int32_t b) {
  const int overflow = a == b && a == INT32_MIN;
  const int64_t ab = (int64_t)a * (int64_t)b;
  const int32_t nudge = ab >= 0 ? (1 << 30) : (1 - (1 << 30));
  const int32_t high = (int32_t)((ab + nudge) / ((int64_t)1 << 31));
  return overflow ? INT32_MAX : high;
}
static int32_t ref_rdbpot(int32_t x, int exponent) {
  const int32_t mask = (int32_t)(((int64_t)1 << exponent) - 1);
  const int32_t remainder = x & mask;
  const int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
  return (x >> exponent) + (remainder > threshold ? 1 : 0);
}
static int32_t ref_mbqm(int32_t x, int32_t mult, int32_t shift) {
  const int left = shift > 0 ? shift : 0;
  const int right = shift > 0 ? 0 : -shift;
  const int32_t xs = (int32_t)(uint32_t)((uint32_t)x * ((uint32_t)1 << left));
  return ref_rdbpot(ref_srdhm(xs, mult), right);
}

typedef struct {
  dtmm_conv_dims d;
  dtmm_conv_params p;
} layer_t;

/* TFLite reference_integer_ops::ConvPerChannel on the dense OHWI filter with the
 * original (unfolded) bias. */
static void ref_conv(const layer_t* L, const int8_t* in, const int8_t* w, const int32_t* bias,
                     const int32_t* mult, const int32_t* shift, int8_t* out) {
  const dtmm_conv_dims* d = &L->d;
  const dtmm_conv_params* p = &L->p;
  int32_t b, y, x, oc, kh, kw, c;
  for (b = 0; b < d->batches; ++b)
    for (y = 0; y < d->output_h; ++y)
      for (x = 0; x < d->output_w; ++x)
        for (oc = 0; oc < d->output_c; ++oc) {
          uint32_t acc = 0;
          int32_t v;
          for (kh = 0; kh < d->kernel_h; ++kh)
            for (kw = 0; kw < d->kernel_w; ++kw) {
              const int32_t iy = y * p->stride_h - p->pad_top + kh * p->dilation_h;
              const int32_t ix = x * p->stride_w - p->pad_left + kw * p->dilation_w;
              if (iy < 0 || iy >= d->input_h || ix < 0 || ix >= d->input_w) continue;
              for (c = 0; c < d->input_c; ++c) {
                const int32_t xv = in[((b * d->input_h + iy) * d->input_w + ix) * d->input_c + c];
                const int32_t wv = w[((oc * d->kernel_h + kh) * d->kernel_w + kw) * d->input_c + c];
                acc += (uint32_t)(wv * (xv - p->input_zero_point));
              }
            }
          acc += (uint32_t)bias[oc];
          /* TFLite adds the output offset in int32 (wrapping in practice), then
           * clamps: docs/contract.md "Semantics". */
          v = (int32_t)((uint32_t)ref_mbqm((int32_t)acc, mult[oc], shift[oc]) +
                        (uint32_t)p->output_offset);
          if (v < p->activation_min) v = p->activation_min;
          if (v > p->activation_max) v = p->activation_max;
          out[((b * d->output_h + y) * d->output_w + x) * d->output_c + oc] = (int8_t)v;
        }
}

/* TFLite ComputeOutSize / ComputePaddingHeightWidth. 0 = SAME, 1 = VALID. */
static int32_t out_size(int32_t in, int32_t k, int32_t s, int32_t dl, int padding, int32_t* pad) {
  const int32_t eff = (k - 1) * dl + 1;
  int32_t out, total;
  if (padding == 0) {
    out = (in + s - 1) / s;
  } else {
    out = (in + s - eff) / s;
    if (in + s - eff < 0) out = 0;
  }
  total = (out - 1) * s + eff - in;
  *pad = total > 0 ? total / 2 : 0;
  return out;
}

/* ------------------------------------------------------------ FWCS */

typedef struct {
  uint8_t* bitmap;
  int32_t bitmap_bytes;
  int8_t* values;
  int32_t n_kept;
} fwcs_t;

/* Kept = bit set in `bitmap` (as given) -> blocks of `w` in increasing bit order;
 * bk = block size (0 = C_in: one bit per filterlet). */
static void fwcs_from_bitmap(const layer_t* L, const int8_t* w, const uint8_t* bitmap,
                             int32_t bk, fwcs_t* f) {
  const int32_t k = L->d.kernel_h * L->d.kernel_w, c = L->d.input_c;
  const int32_t blk = bk ? bk : c;
  const int32_t bits = L->d.output_c * k * (c / blk);
  int32_t b, n = 0;
  f->bitmap_bytes = (bits + 7) / 8;
  for (b = 0; b < bits; ++b) n += (bitmap[b >> 3] >> (b & 7)) & 1;
  f->n_kept = n;
  f->bitmap = (uint8_t*)alloc_end((size_t)f->bitmap_bytes);
  memcpy(f->bitmap, bitmap, (size_t)f->bitmap_bytes);
  f->values = n ? (int8_t*)alloc_end((size_t)n * blk) : NULL;
  n = 0;
  for (b = 0; b < bits; ++b)
    if ((bitmap[b >> 3] >> (b & 7)) & 1)
      memcpy(f->values + (size_t)(n++) * blk, w + (size_t)b * blk, (size_t)blk);
}

static int32_t popcount_bytes(const uint8_t* b, int32_t n) {
  int32_t i, k = 0;
  for (i = 0; i < n; ++i) {
    uint32_t v = b[i];
    for (; v; v &= v - 1u) k++;
  }
  return k;
}

/* ------------------------------------------------------ run one case */

#define GUARD 64
#define GUARD_BYTE 0xA5

static int guard_ok(const uint8_t* p, int32_t n) {
  int32_t i;
  for (i = 0; i < n; ++i)
    if (p[i] != GUARD_BYTE) return 0;
  return 1;
}

/* CMSIS-NN arm_convolve_s8_get_buffer_size for the same layer (DSP / MVE builds). */
static int32_t cmsis_conv_buffer_size(const layer_t* L) {
  const int32_t cols = L->d.kernel_h * L->d.kernel_w * L->d.input_c;
#if defined(__ARM_FEATURE_MVE) && (__ARM_FEATURE_MVE & 1)
  return 4 * ((cols + 15) / 16) * 16;
#else
  return 2 * ((cols + 3) & ~3) * 2;
#endif
}

/* The header's promise: at most CMSIS-NN's scratch, except that layers of C_in <= 8
 * may add their dense filter and a channel list (C_out * (taps * C_in + 4) bytes)
 * plus 8 bytes of alignment. */
static int32_t scratch_bound(const layer_t* L) {
  const int32_t taps = L->d.kernel_h * L->d.kernel_w;
  int32_t b = cmsis_conv_buffer_size(L);
  if (L->d.input_c <= 8) b += L->d.output_c * (taps * L->d.input_c + 4) + 8;
  return b;
}

/* 1x1 layers need no scratch where their drivers are built (not through im2col). */
#define ONE_BY_ONE_DRIVERS_BUILT \
  (((DTMM_CONV_DRIVERS) & (DTMM_USE_PIXEL | DTMM_USE_POINTWISE)) == \
   (DTMM_USE_PIXEL | DTMM_USE_POINTWISE))

/* Whether this build (DTMM_CONV_DRIVERS) runs the layer, by the rule dtmm_conv_s8.h
 * states: its preferred driver, else pointwise for a 1x1 pixel layer, else im2col
 * (which the window drivers bring), never another for block-sparse layers. Also
 * checks that dtmm_conv_s8_driver names the driver that rule picks. */
static int build_runs(const dtmm_conv_dims* d, const dtmm_conv_params* p, int32_t bk) {
  const int32_t built =
      (DTMM_CONV_DRIVERS) | (((DTMM_CONV_DRIVERS) & DTMM_USE_WINDOW) ? DTMM_USE_IM2COL : 0);
  int32_t preferred = -1, want;
  const int32_t used = dtmm_conv_s8_driver(d, p, bk, &preferred);
  const int32_t driver = used & DTMM_USE_ALL_DRIVERS, best = preferred & DTMM_USE_ALL_DRIVERS;
  if (built & best)
    want = best;
  else if (best == DTMM_USE_POINTWISE_BLOCKS)
    want = 0;
  else if (best == DTMM_USE_PIXEL && d->kernel_h * d->kernel_w == 1 &&
           (built & DTMM_USE_POINTWISE))
    want = DTMM_USE_POINTWISE;
  else
    want = (built & DTMM_USE_IM2COL) ? DTMM_USE_IM2COL : 0;
  check(driver == want, "dtmm_conv_s8_driver disagrees with the documented fallback",
        dtmm_conv_s8_driver_name(best));
  /* the im2col paths: only built ones, and where the driver is the preferred one,
   * every built one the layer would take */
  check((used & ~built) == 0, "dtmm_conv_s8_driver names code this build lacks",
        dtmm_conv_s8_driver_name(best));
  if (driver == best)
    check((used & DTMM_USE_IM2COL_PATHS) == (preferred & built & DTMM_USE_IM2COL_PATHS),
          "dtmm_conv_s8_driver's im2col paths disagree with the preferred ones",
          dtmm_conv_s8_driver_name(best));
  return want != 0;
}

/* Runs validate + kernel on (in, dense filter w masked by bitmap of blocks of bk
 * channels (0 = C_in), folded bias...) and compares with `expected`. */
static void run_case_blocks(const char* name, const layer_t* L, int32_t bk, const int8_t* in,
                            const int8_t* w, const uint8_t* bitmap, const int32_t* folded_bias,
                            const int32_t* mult, const int32_t* shift, const int8_t* expected) {
  const dtmm_conv_dims* d = &L->d;
  const int32_t in_n = d->batches * d->input_h * d->input_w * d->input_c;
  const int32_t out_n = d->batches * d->output_h * d->output_w * d->output_c;
  fwcs_t f;
  dtmm_fwcs_filter filt;
  int8_t* in_copy;
  uint8_t *out_buf, *scr_buf;
  int32_t scratch_bytes;
  dtmm_status st;
  char msg[160];

  fwcs_from_bitmap(L, w, bitmap, bk, &f);
  in_copy = (int8_t*)alloc_end((size_t)in_n);
  memcpy(in_copy, in, (size_t)in_n);
  filt.bitmap = f.bitmap;
  filt.bitmap_bytes = f.bitmap_bytes;
  filt.values = f.values;
  filt.num_filterlets = f.n_kept;
  filt.bias = folded_bias;
  filt.multiplier = mult;
  filt.shift = shift;
  filt.block_size = bk;

  st = dtmm_conv_s8_validate(d, &L->p, &filt);
  if (!build_runs(d, &L->p, bk)) { /* a build without the layer's drivers */
    sprintf(msg, "validate returned %d, not DTMM_ERR_UNSUPPORTED", (int)st);
    check(st == DTMM_ERR_UNSUPPORTED, msg, name);
    return;
  }
  sprintf(msg, "validate returned %d", (int)st);
  check(st == DTMM_OK, msg, name);
  if (st != DTMM_OK) return;

  scratch_bytes = dtmm_conv_s8_get_buffer_size(d, &L->p);
  sprintf(msg, "scratch %ld > bound %ld", (long)scratch_bytes, (long)scratch_bound(L));
  check(scratch_bytes >= 0 && scratch_bytes <= scratch_bound(L), msg, name);

  out_buf = (uint8_t*)alloc((size_t)out_n + 2 * GUARD);
  scr_buf = (uint8_t*)alloc((size_t)scratch_bytes + 2 * GUARD);
  memset(out_buf, GUARD_BYTE, (size_t)out_n + 2 * GUARD);
  memset(scr_buf, GUARD_BYTE, (size_t)scratch_bytes + 2 * GUARD);
  st = dtmm_conv_s8(d, &L->p, &filt, in_copy, (int8_t*)(out_buf + GUARD),
                    scratch_bytes ? scr_buf + GUARD : NULL);
  check(st == DTMM_OK, "compute status", name);
  check(guard_ok(out_buf, GUARD) && guard_ok(out_buf + GUARD + out_n, GUARD),
        "write outside output", name);
  check(guard_ok(scr_buf, GUARD) && guard_ok(scr_buf + GUARD + scratch_bytes, GUARD),
        "write outside scratch", name);
  if (memcmp(out_buf + GUARD, expected, (size_t)out_n) != 0) {
    int32_t i;
    for (i = 0; i < out_n && ((int8_t*)out_buf)[GUARD + i] == expected[i]; ++i) {
    }
    sprintf(msg, "output mismatch at %ld: got %d want %d", (long)i,
            ((int8_t*)out_buf)[GUARD + i], expected[i]);
    check(0, msg, name);
  } else {
    check(1, "", name);
  }
  check(memcmp(in_copy, in, (size_t)in_n) == 0, "input modified", name);
}

static void run_case(const char* name, const layer_t* L, const int8_t* in, const int8_t* w,
                     const uint8_t* bitmap, const int32_t* folded_bias, const int32_t* mult,
                     const int32_t* shift, const int8_t* expected) {
  run_case_blocks(name, L, 0, in, w, bitmap, folded_bias, mult, shift, expected);
}

/* ------------------------------------------------------ golden cases */

static void fold(const layer_t* L, const int8_t* w, const int32_t* bias, int32_t* folded) {
  const int32_t per = L->d.kernel_h * L->d.kernel_w * L->d.input_c;
  int32_t oc, i;
  for (oc = 0; oc < L->d.output_c; ++oc) {
    uint32_t s = 0;
    for (i = 0; i < per; ++i) s += (uint32_t)(int32_t)w[oc * per + i];
    folded[oc] = (int32_t)((uint32_t)bias[oc] - (uint32_t)L->p.input_zero_point * s);
  }
}

static void test_golden(void) {
  int i;
  for (i = 0; i < DTMM_GOLDEN_COUNT; ++i) {
    const dtmm_golden_case* g = &dtmm_golden_cases[i];
    layer_t L;
    int32_t in_n, w_n, out_n, b;
    int8_t *in, *w, *ref;
    uint32_t s = g->seed;
    arena_reset();
    L.d.batches = g->n;
    L.d.input_h = g->h;
    L.d.input_w = g->w;
    L.d.input_c = g->c_in;
    L.d.output_h = g->out_h;
    L.d.output_w = g->out_w;
    L.d.output_c = g->c_out;
    L.d.kernel_h = g->kh;
    L.d.kernel_w = g->kw;
    L.p.version = DTMM_FORMAT_VERSION;
    L.p.stride_h = g->sh;
    L.p.stride_w = g->sw;
    L.p.dilation_h = g->dh;
    L.p.dilation_w = g->dw;
    L.p.pad_top = g->pad_top;
    L.p.pad_left = g->pad_left;
    L.p.input_zero_point = g->zp_in;
    L.p.output_offset = g->zp_out;
    L.p.activation_min = g->act_min;
    L.p.activation_max = g->act_max;
    in_n = g->n * g->h * g->w * g->c_in;
    w_n = g->c_out * g->kh * g->kw * g->c_in;
    out_n = g->n * g->out_h * g->out_w * g->c_out;
    in = (int8_t*)alloc((size_t)in_n);
    w = (int8_t*)alloc((size_t)w_n);
    ref = (int8_t*)alloc((size_t)out_n);
    for (b = 0; b < in_n; ++b) in[b] = rng_i8(&s);
    for (b = 0; b < w_n; ++b) w[b] = rng_i8(&s);
    /* Zero the pruned filterlets so the dense reference sees the same filter. */
    for (b = 0; b < g->c_out * g->kh * g->kw; ++b)
      if (!((g->bitmap[b >> 3] >> (b & 7)) & 1)) memset(w + b * g->c_in, 0, (size_t)g->c_in);
    {
      /* The C reference must agree with the Python one (checks the checker). */
      int32_t* folded = (int32_t*)alloc(sizeof(int32_t) * (size_t)g->c_out);
      fold(&L, w, g->bias, folded);
      check(memcmp(folded, g->folded_bias, sizeof(int32_t) * (size_t)g->c_out) == 0,
            "C fold != Python fold", g->name);
      ref_conv(&L, in, w, g->bias, g->multiplier, g->shift, ref);
      check(memcmp(ref, g->expected, (size_t)out_n) == 0, "C reference != Python reference",
            g->name);
    }
    run_case(g->name, &L, in, w, g->bitmap, g->folded_bias, g->multiplier, g->shift,
             g->expected);
  }
}

/* ------------------------------------------------------ random cases */

static const int32_t k_cins[] = {1, 2, 3, 4, 5, 7, 8, 12, 15, 16, 17, 24, 31, 32, 33, 48, 67};

/* Builds a random valid layer; returns 0 when the drawn shape has no output. */
static int random_layer(uint32_t* s, layer_t* L, int* padding) {
  int32_t pt, pl;
  L->d.batches = rng_range(s, 1, 2);
  L->d.input_h = rng_range(s, 1, 9);
  L->d.input_w = rng_range(s, 1, 9);
  L->d.input_c = k_cins[rng_next(s) % (sizeof(k_cins) / sizeof(k_cins[0]))];
  L->d.output_c = rng_range(s, 1, 9);
  L->d.kernel_h = rng_range(s, 1, 4);
  L->d.kernel_w = rng_range(s, 1, 4);
  if (rng_next(s) % 16 == 0) { /* long kernels: more than one 25-bit bitmap chunk */
    L->d.kernel_h = rng_range(s, 1, 7);
    L->d.kernel_w = rng_range(s, 5, 9);
    L->d.input_w = rng_range(s, 5, 12);
  }
  L->p.version = DTMM_FORMAT_VERSION;
  L->p.stride_h = rng_range(s, 1, 3);
  L->p.stride_w = rng_range(s, 1, 3);
  L->p.dilation_h = rng_range(s, 1, 4) > 3 ? 2 : 1;
  L->p.dilation_w = rng_range(s, 1, 4) > 3 ? 2 : 1;
  *padding = (int)(rng_next(s) & 1);
  L->d.output_h = out_size(L->d.input_h, L->d.kernel_h, L->p.stride_h, L->p.dilation_h, *padding, &pt);
  L->d.output_w = out_size(L->d.input_w, L->d.kernel_w, L->p.stride_w, L->p.dilation_w, *padding, &pl);
  L->p.pad_top = pt;
  L->p.pad_left = pl;
  L->p.input_zero_point = rng_range(s, -128, 127);
  L->p.output_offset = rng_range(s, -128, 127);
  switch (rng_next(s) % 5) {
    case 0: L->p.activation_min = -128; L->p.activation_max = 127; break;
    case 1: L->p.activation_min = L->p.output_offset; L->p.activation_max = 127; break;
    case 2: L->p.activation_min = -128; L->p.activation_max = -128; break;
    case 3: L->p.activation_min = 127; L->p.activation_max = 127; break;
    default:
      L->p.activation_min = rng_range(s, -128, 127);
      L->p.activation_max = rng_range(s, L->p.activation_min, 127);
  }
  return L->d.output_h >= 1 && L->d.output_w >= 1;
}

static void test_random(int cases) {
  uint32_t s = 0x2545F491u;
  int i;
  char name[256];
  for (i = 0; i < cases; ++i) {
    layer_t L;
    int padding;
    int32_t in_n, w_n, out_n, k, bits, b, oc;
    int8_t *in, *w, *ref;
    uint8_t* bitmap;
    int32_t *bias, *folded, *mult, *shift;
    uint32_t keep_pct;
    arena_reset();
    if (!random_layer(&s, &L, &padding)) {
      i--;
      continue;
    }
    k = L.d.kernel_h * L.d.kernel_w;
    bits = L.d.output_c * k;
    in_n = L.d.batches * L.d.input_h * L.d.input_w * L.d.input_c;
    w_n = bits * L.d.input_c;
    out_n = L.d.batches * L.d.output_h * L.d.output_w * L.d.output_c;
    in = (int8_t*)alloc((size_t)in_n);
    w = (int8_t*)alloc((size_t)w_n);
    ref = (int8_t*)alloc((size_t)out_n);
    bitmap = (uint8_t*)alloc((size_t)(bits + 7) / 8);
    bias = (int32_t*)alloc(4u * (size_t)L.d.output_c);
    folded = (int32_t*)alloc(4u * (size_t)L.d.output_c);
    mult = (int32_t*)alloc(4u * (size_t)L.d.output_c);
    shift = (int32_t*)alloc(4u * (size_t)L.d.output_c);
    for (b = 0; b < in_n; ++b) in[b] = rng_i8(&s);
    /* Extreme inputs now and then (all -128 / 127 stress the accumulator). */
    if (rng_next(&s) % 8 == 0) memset(in, (rng_next(&s) & 1) ? 0x80 : 0x7F, (size_t)in_n);
    for (b = 0; b < w_n; ++b) w[b] = rng_i8(&s);
    switch (rng_next(&s) % 6) {
      case 0: keep_pct = 100; break;
      case 1: keep_pct = 0; break;
      default: keep_pct = rng_next(&s) % 101;
    }
    memset(bitmap, 0, (size_t)(bits + 7) / 8);
    for (b = 0; b < bits; ++b) {
      if (rng_next(&s) % 100 < keep_pct) {
        bitmap[b >> 3] |= (uint8_t)(1u << (b & 7));
      } else {
        memset(w + b * L.d.input_c, 0, (size_t)L.d.input_c);
      }
    }
    if (L.d.output_c > 1 && rng_next(&s) % 3 == 0) { /* one fully pruned filter */
      oc = rng_range(&s, 0, L.d.output_c - 1);
      for (b = oc * k; b < (oc + 1) * k; ++b) {
        bitmap[b >> 3] &= (uint8_t)~(1u << (b & 7));
        memset(w + b * L.d.input_c, 0, (size_t)L.d.input_c);
      }
    }
    for (oc = 0; oc < L.d.output_c; ++oc) {
      bias[oc] = (int32_t)rng_next(&s) >> rng_range(&s, 8, 31);
      mult[oc] = (rng_next(&s) % 16 == 0) ? 0 : (int32_t)((1u << 30) + (rng_next(&s) >> 2));
      if (rng_next(&s) % 8 == 0) {
        shift[oc] = rng_range(&s, -31, 30); /* extremes: wrap on the left shift */
      } else {
        shift[oc] = rng_range(&s, -14, 0);
      }
      if (mult[oc] == INT32_MIN) mult[oc] = INT32_MAX;
    }
    fold(&L, w, bias, folded);
    ref_conv(&L, in, w, bias, mult, shift, ref);
    snprintf(name, sizeof(name),
            "random#%d n%ld %ldx%ldx%ld->%ld k%ldx%ld s%ld,%ld d%ld,%ld %s zp%ld,%ld act[%ld,%ld] keep%lu%%",
            i, (long)L.d.batches, (long)L.d.input_h, (long)L.d.input_w, (long)L.d.input_c,
            (long)L.d.output_c, (long)L.d.kernel_h, (long)L.d.kernel_w, (long)L.p.stride_h,
            (long)L.p.stride_w, (long)L.p.dilation_h, (long)L.p.dilation_w,
            padding ? "VALID" : "SAME", (long)L.p.input_zero_point, (long)L.p.output_offset,
            (long)L.p.activation_min, (long)L.p.activation_max, (unsigned long)keep_pct);
    run_case(name, &L, in, w, bitmap, folded, mult, shift, ref);
  }
}

/* Fixed shapes that random draws hit rarely: the benchmark layers in miniature,
 * big C_in (several 16-byte blocks plus a tail), 1x1, a kernel wider than 25 taps. */
static void test_fixed_shapes(void) {
  static const int32_t shapes[][10] = {
      /* h, w, c_in, c_out, kh, kw, sh, sw, padding, keep% */
      {6, 6, 3, 8, 3, 3, 1, 1, 0, 100},    {5, 5, 64, 6, 3, 3, 1, 1, 0, 60},
      {4, 4, 128, 5, 3, 3, 1, 1, 0, 25},   {13, 1, 40, 7, 5, 1, 3, 1, 1, 75},
      {5, 4, 64, 9, 1, 1, 1, 1, 1, 50},    {7, 9, 67, 3, 3, 3, 2, 2, 0, 90},
      {3, 30, 2, 4, 1, 30, 1, 1, 0, 70},   {9, 9, 1, 4, 7, 7, 1, 1, 0, 80},
      {1, 1, 33, 3, 3, 3, 1, 1, 0, 100},   {8, 8, 16, 4, 3, 3, 2, 2, 0, 0},
      /* interior lines of 11 and 27 pixels: an overlapping last group */
      {4, 13, 16, 6, 3, 3, 1, 1, 0, 50},   {29, 1, 16, 5, 3, 1, 1, 1, 1, 60},
      {29, 2, 20, 3, 3, 1, 1, 1, 1, 100},
      /* MVE window driver: one-block edges left to the interleaved im2col rows
       * (C_in <= C_out), beside corners and (1x3) as the only im2col pixels */
      {10, 10, 16, 16, 3, 3, 2, 2, 0, 60}, {4, 14, 16, 32, 1, 3, 1, 1, 0, 50},
  };
  uint32_t s = 0xC0FFEEu;
  size_t i;
  char name[64];
  for (i = 0; i < sizeof(shapes) / sizeof(shapes[0]); ++i) {
    const int32_t* t = shapes[i];
    layer_t L;
    int32_t pt, pl, in_n, w_n, out_n, bits, b, oc;
    int8_t *in, *w, *ref;
    uint8_t* bitmap;
    int32_t *bias, *folded, *mult, *shift;
    arena_reset();
    L.d.batches = 1;
    L.d.input_h = t[0];
    L.d.input_w = t[1];
    L.d.input_c = t[2];
    L.d.output_c = t[3];
    L.d.kernel_h = t[4];
    L.d.kernel_w = t[5];
    L.p.version = DTMM_FORMAT_VERSION;
    L.p.stride_h = t[6];
    L.p.stride_w = t[7];
    L.p.dilation_h = L.p.dilation_w = 1;
    L.d.output_h = out_size(t[0], t[4], t[6], 1, (int)t[8], &pt);
    L.d.output_w = out_size(t[1], t[5], t[7], 1, (int)t[8], &pl);
    L.p.pad_top = pt;
    L.p.pad_left = pl;
    L.p.input_zero_point = -128 + (int32_t)(i * 37 % 256);
    L.p.output_offset = -128;
    L.p.activation_min = -128;
    L.p.activation_max = 127;
    bits = t[3] * t[4] * t[5];
    in_n = t[0] * t[1] * t[2];
    w_n = bits * t[2];
    out_n = L.d.output_h * L.d.output_w * t[3];
    in = (int8_t*)alloc((size_t)in_n);
    w = (int8_t*)alloc((size_t)w_n);
    ref = (int8_t*)alloc((size_t)out_n);
    bitmap = (uint8_t*)alloc((size_t)(bits + 7) / 8);
    bias = (int32_t*)alloc(4u * (size_t)t[3]);
    folded = (int32_t*)alloc(4u * (size_t)t[3]);
    mult = (int32_t*)alloc(4u * (size_t)t[3]);
    shift = (int32_t*)alloc(4u * (size_t)t[3]);
    for (b = 0; b < in_n; ++b) in[b] = rng_i8(&s);
    for (b = 0; b < w_n; ++b) w[b] = rng_i8(&s);
    memset(bitmap, 0, (size_t)(bits + 7) / 8);
    for (b = 0; b < bits; ++b) {
      if ((int32_t)(rng_next(&s) % 100) < t[9]) {
        bitmap[b >> 3] |= (uint8_t)(1u << (b & 7));
      } else {
        memset(w + b * t[2], 0, (size_t)t[2]);
      }
    }
    for (oc = 0; oc < t[3]; ++oc) {
      bias[oc] = (int32_t)rng_next(&s) >> 16;
      mult[oc] = (int32_t)((1u << 30) + (rng_next(&s) >> 2));
      shift[oc] = -9 - (int32_t)(rng_next(&s) % 5);
    }
    fold(&L, w, bias, folded);
    ref_conv(&L, in, w, bias, mult, shift, ref);
    sprintf(name, "fixed#%d", (int)i);
    run_case(name, &L, in, w, bitmap, folded, mult, shift, ref);
  }
}

/* ------------------------------------------------------- validator */

static void test_validation(void) {
  /* A valid 2-channel 3x3 layer over 5x5x3, SAME; then one corruption at a time. */
  static const uint8_t good_bitmap[3] = {0x2C, 0x91, 0x01}; /* 18 bits, 7 set */
  static int8_t values[7 * 3];
  static const int32_t bias[2] = {10, -20}, mult[2] = {1 << 30, 1 << 30}, shift[2] = {-3, 1};
  dtmm_conv_dims d = {1, 5, 5, 3, 5, 5, 2, 3, 3};
  dtmm_conv_params p = {DTMM_FORMAT_VERSION, 1, 1, 1, 1, 1, 1, 0, 0, -128, 127};
  dtmm_fwcs_filter f;
  dtmm_conv_dims d2;
  dtmm_conv_params p2;
  dtmm_fwcs_filter f2;
  uint8_t bm[4];
  int32_t bad_shift[2], bad_mult[2];

  f.bitmap = good_bitmap;
  f.bitmap_bytes = 3;
  f.values = values;
  f.num_filterlets = 7;
  f.bias = bias;
  f.multiplier = mult;
  f.shift = shift;
  f.block_size = 0;
  check(dtmm_conv_s8_validate(&d, &p, &f) == DTMM_OK, "valid layer rejected", "validate");

#define EXPECT(call, code, what) check((call) == (code), what, "validate")
  EXPECT(dtmm_conv_s8_validate(NULL, &p, &f), DTMM_ERR_ARG, "null dims");
  EXPECT(dtmm_conv_s8_validate(&d, NULL, &f), DTMM_ERR_ARG, "null params");
  EXPECT(dtmm_conv_s8_validate(&d, &p, NULL), DTMM_ERR_ARG, "null filter");

  f2 = f; f2.bitmap_bytes = 2;
  EXPECT(dtmm_conv_s8_validate(&d, &p, &f2), DTMM_ERR_BITMAP, "bitmap too short");
  f2 = f; f2.bitmap_bytes = 4; memcpy(bm, good_bitmap, 3); bm[3] = 0; f2.bitmap = bm;
  EXPECT(dtmm_conv_s8_validate(&d, &p, &f2), DTMM_ERR_BITMAP, "bitmap too long");
  f2 = f; memcpy(bm, good_bitmap, 3); bm[2] |= 0x04; f2.bitmap = bm; f2.num_filterlets = 8;
  EXPECT(dtmm_conv_s8_validate(&d, &p, &f2), DTMM_ERR_BITMAP, "padding bit set");
  f2 = f; memcpy(bm, good_bitmap, 3); bm[2] |= 0x80; f2.bitmap = bm; f2.num_filterlets = 8;
  EXPECT(dtmm_conv_s8_validate(&d, &p, &f2), DTMM_ERR_BITMAP, "top padding bit set");
  f2 = f; f2.bitmap = NULL;
  EXPECT(dtmm_conv_s8_validate(&d, &p, &f2), DTMM_ERR_BITMAP, "null bitmap");
  f2 = f; f2.num_filterlets = 6;
  EXPECT(dtmm_conv_s8_validate(&d, &p, &f2), DTMM_ERR_VALUES, "too few values rows");
  f2 = f; f2.num_filterlets = 8;
  EXPECT(dtmm_conv_s8_validate(&d, &p, &f2), DTMM_ERR_VALUES, "too many values rows");
  f2 = f; f2.values = NULL;
  EXPECT(dtmm_conv_s8_validate(&d, &p, &f2), DTMM_ERR_VALUES, "null values with kept rows");
  f2 = f; memcpy(bm, good_bitmap, 3); bm[0] ^= 0x02; f2.bitmap = bm; /* popcount 8 */
  EXPECT(dtmm_conv_s8_validate(&d, &p, &f2), DTMM_ERR_VALUES, "bitmap popcount != rows");
  f2 = f; memset(bm, 0, 3); f2.bitmap = bm; f2.num_filterlets = 0; f2.values = NULL;
  EXPECT(dtmm_conv_s8_validate(&d, &p, &f2), DTMM_OK, "all pruned is valid");
  f2 = f; f2.bias = NULL;
  EXPECT(dtmm_conv_s8_validate(&d, &p, &f2), DTMM_ERR_ARG, "null bias");
  f2 = f; f2.multiplier = NULL;
  EXPECT(dtmm_conv_s8_validate(&d, &p, &f2), DTMM_ERR_ARG, "null multiplier");
  f2 = f; bad_shift[0] = 0; bad_shift[1] = 31; f2.shift = bad_shift;
  EXPECT(dtmm_conv_s8_validate(&d, &p, &f2), DTMM_ERR_PARAMS, "shift 31");
  bad_shift[1] = -32;
  EXPECT(dtmm_conv_s8_validate(&d, &p, &f2), DTMM_ERR_PARAMS, "shift -32");
  f2 = f; bad_mult[0] = 1; bad_mult[1] = -5; f2.multiplier = bad_mult;
  EXPECT(dtmm_conv_s8_validate(&d, &p, &f2), DTMM_ERR_PARAMS, "negative multiplier");

  p2 = p; p2.version = 1;
  EXPECT(dtmm_conv_s8_validate(&d, &p2, &f), DTMM_OK, "version 1");
  p2 = p; p2.version = 2;
  EXPECT(dtmm_conv_s8_validate(&d, &p2, &f), DTMM_OK, "version 2 (B = C_in)");
  p2 = p; p2.version = 3;
  EXPECT(dtmm_conv_s8_validate(&d, &p2, &f), DTMM_ERR_VERSION, "version 3");
  p2 = p; p2.version = 0;
  EXPECT(dtmm_conv_s8_validate(&d, &p2, &f), DTMM_ERR_VERSION, "version 0");
  p2 = p; p2.stride_h = 0;
  EXPECT(dtmm_conv_s8_validate(&d, &p2, &f), DTMM_ERR_PARAMS, "stride 0");
  p2 = p; p2.dilation_w = -1;
  EXPECT(dtmm_conv_s8_validate(&d, &p2, &f), DTMM_ERR_PARAMS, "dilation -1");
  p2 = p; p2.pad_top = -1;
  EXPECT(dtmm_conv_s8_validate(&d, &p2, &f), DTMM_ERR_PARAMS, "negative padding");
  p2 = p; p2.pad_left = 3;
  EXPECT(dtmm_conv_s8_validate(&d, &p2, &f), DTMM_ERR_PARAMS, "padding beyond the kernel");
  p2 = p; p2.activation_min = 5; p2.activation_max = 4;
  EXPECT(dtmm_conv_s8_validate(&d, &p2, &f), DTMM_ERR_PARAMS, "act_min > act_max");
  p2 = p; p2.activation_max = 128;
  EXPECT(dtmm_conv_s8_validate(&d, &p2, &f), DTMM_ERR_PARAMS, "act_max 128");
  p2 = p; p2.activation_min = -129;
  EXPECT(dtmm_conv_s8_validate(&d, &p2, &f), DTMM_ERR_PARAMS, "act_min -129");
  p2 = p; p2.input_zero_point = 128;
  EXPECT(dtmm_conv_s8_validate(&d, &p2, &f), DTMM_ERR_PARAMS, "zp_in 128");
  p2 = p; p2.output_offset = -129;
  EXPECT(dtmm_conv_s8_validate(&d, &p2, &f), DTMM_ERR_PARAMS, "zp_out -129");
  p2 = p; p2.stride_h = INT32_MAX;
  EXPECT(dtmm_conv_s8_validate(&d, &p2, &f), DTMM_ERR_PARAMS, "coordinate overflow");

  d2 = d; d2.input_c = 0;
  EXPECT(dtmm_conv_s8_validate(&d2, &p, &f), DTMM_ERR_ARG, "C_in 0");
  d2 = d; d2.batches = -1;
  EXPECT(dtmm_conv_s8_validate(&d2, &p, &f), DTMM_ERR_ARG, "negative batches");
  d2 = d; d2.input_h = 70000; d2.input_w = 70000;
  EXPECT(dtmm_conv_s8_validate(&d2, &p, &f), DTMM_ERR_ARG, "input size overflow");
  d2 = d; d2.output_c = 3; /* bitmap now too short for 27 bits */
  {
    int32_t b3[3] = {0, 0, 0}, m3[3] = {1, 1, 1};
    f2 = f; f2.bias = b3; f2.multiplier = m3; f2.shift = b3;
    EXPECT(dtmm_conv_s8_validate(&d2, &p, &f2), DTMM_ERR_BITMAP, "bitmap for fewer channels");
  }
  d2 = d; d2.input_c = 4; /* same bitmap, values rows now C_in=4: rows still 7: valid */
  EXPECT(dtmm_conv_s8_validate(&d2, &p, &f), DTMM_OK, "rows are counted, not bytes");
#undef EXPECT

  /* Scratch: none for 1x1 kernels, the CMSIS-NN bound otherwise (run_case). */
  {
    dtmm_conv_dims dv = {1, 7, 7, 8, 7, 7, 4, 1, 1};
    dtmm_conv_params pv = {DTMM_FORMAT_VERSION, 1, 1, 1, 1, 0, 0, 0, 0, -128, 127};
    if (ONE_BY_ONE_DRIVERS_BUILT)
      check(dtmm_conv_s8_get_buffer_size(&dv, &pv) == 0, "1x1 layer needs scratch", "buffer_size");
    check(dtmm_conv_s8_get_buffer_size(&d, &p) > 0, "SAME layer needs none", "buffer_size");
    pv.stride_h = 0;
    check(dtmm_conv_s8_get_buffer_size(&dv, &pv) == 0, "invalid layer has a size", "buffer_size");
  }
}


/* ------------------------------------------- regressions (issue 11, kernel C) */

/* One layer from explicit parts, checked against ref_conv. */
static void run_built(const char* name, const layer_t* L, uint32_t seed, int keep_pct,
                      int32_t bias_value, int32_t mult_value, int32_t shift_value) {
  const int32_t k = L->d.kernel_h * L->d.kernel_w, bits = L->d.output_c * k;
  const int32_t in_n = L->d.batches * L->d.input_h * L->d.input_w * L->d.input_c;
  const int32_t w_n = bits * L->d.input_c;
  const int32_t out_n = L->d.batches * L->d.output_h * L->d.output_w * L->d.output_c;
  int8_t* in = (int8_t*)alloc((size_t)in_n);
  int8_t* w = (int8_t*)alloc((size_t)w_n);
  int8_t* ref = (int8_t*)alloc((size_t)out_n);
  uint8_t* bitmap = (uint8_t*)alloc((size_t)(bits + 7) / 8);
  int32_t* bias = (int32_t*)alloc(4u * (size_t)L->d.output_c);
  int32_t* folded = (int32_t*)alloc(4u * (size_t)L->d.output_c);
  int32_t* mult = (int32_t*)alloc(4u * (size_t)L->d.output_c);
  int32_t* shift = (int32_t*)alloc(4u * (size_t)L->d.output_c);
  uint32_t s = seed;
  int32_t b, oc;
  for (b = 0; b < in_n; ++b) in[b] = rng_i8(&s);
  for (b = 0; b < w_n; ++b) w[b] = rng_i8(&s);
  memset(bitmap, 0, (size_t)(bits + 7) / 8);
  for (b = 0; b < bits; ++b) {
    if ((int)(rng_next(&s) % 100) < keep_pct) {
      bitmap[b >> 3] |= (uint8_t)(1u << (b & 7));
    } else {
      memset(w + b * L->d.input_c, 0, (size_t)L->d.input_c);
    }
  }
  for (oc = 0; oc < L->d.output_c; ++oc) {
    bias[oc] = bias_value;
    mult[oc] = mult_value;
    shift[oc] = shift_value;
  }
  fold(L, w, bias, folded);
  ref_conv(L, in, w, bias, mult, shift, ref);
  run_case(name, L, in, w, bitmap, folded, mult, shift, ref);
}

static void set_layer(layer_t* L, int32_t h, int32_t w, int32_t c, int32_t oh, int32_t ow,
                      int32_t oc, int32_t kh, int32_t kw) {
  memset(L, 0, sizeof(*L));
  L->d.batches = 1;
  L->d.input_h = h;
  L->d.input_w = w;
  L->d.input_c = c;
  L->d.output_h = oh;
  L->d.output_w = ow;
  L->d.output_c = oc;
  L->d.kernel_h = kh;
  L->d.kernel_w = kw;
  L->p.version = DTMM_FORMAT_VERSION;
  L->p.stride_h = L->p.stride_w = L->p.dilation_h = L->p.dilation_w = 1;
  L->p.input_zero_point = -3;
  L->p.output_offset = 5;
  L->p.activation_min = -128;
  L->p.activation_max = 127;
}

static void test_regressions(void) {
  layer_t L;
  dtmm_fwcs_filter f;
  static const uint8_t one_bit[1] = {0x01};
  static const int8_t one_row[16] = {1};
  static const int32_t z1[1] = {0}, m1[1] = {1 << 30};
  f.bitmap = one_bit;
  f.bitmap_bytes = 1;
  f.values = one_row;
  f.num_filterlets = 1;
  f.bias = z1;
  f.multiplier = m1;
  f.shift = z1;
  f.block_size = 0;

  /* The coordinate bound counts the stride when the output has one row or column:
   * with out_h = 1 and a stride near INT32_MAX the interior arithmetic used to
   * overflow and padded taps were read in place, far before the input. */
  arena_reset();
  set_layer(&L, 3, 3, 1, 1, 3, 1, 1, 1);
  L.p.stride_h = INT32_MAX - 1;
  check(dtmm_conv_s8_validate(&L.d, &L.p, &f) == DTMM_ERR_PARAMS,
        "stride near INT32_MAX with one output row accepted", "regress stride out_h=1");
  L.p.stride_h = 1;
  L.p.stride_w = INT32_MAX;
  L.d.output_h = 3;
  L.d.output_w = 1;
  check(dtmm_conv_s8_validate(&L.d, &L.p, &f) == DTMM_ERR_PARAMS,
        "stride INT32_MAX with one output column accepted", "regress stride out_w=1");
  /* Large strides that fit are computed exactly (the interior starts at
   * ceil(pad / stride), without forming pad + stride - 1). */
  set_layer(&L, 5, 6, 3, 1, 2, 4, 3, 3);
  L.p.stride_h = (1 << 30) + 12345;
  L.p.stride_w = 5;
  L.p.pad_top = 1;
  L.p.pad_left = 1;
  run_built("regress huge stride, one output row", &L, 11u, 70, 1000, 1 << 30, -8);
  set_layer(&L, 6, 5, 16, 2, 1, 5, 3, 3);
  L.p.stride_h = 4;
  L.p.stride_w = (1 << 30) + 77;
  L.p.pad_top = 1;
  L.p.pad_left = 2;
  run_built("regress huge stride, one output column", &L, 12u, 80, -500, 1 << 30, -9);

  /* stride * input_w * C_in above INT32_MAX with one output row: the row step
   * is never used but was computed in int32 (signed overflow). */
  arena_reset();
  set_layer(&L, 3, 1024, 64, 1, 1024, 3, 3, 1);
  L.p.stride_h = 1 << 16;
  run_built("regress row step overflow (3x1)", &L, 13u, 60, 123, 1 << 30, -10);
  arena_reset();
  set_layer(&L, 2, 1024, 64, 1, 1024, 4, 1, 1);
  L.p.stride_h = 1 << 16;
  run_built("regress row step overflow (1x1)", &L, 14u, 60, 123, 1 << 30, -10);

  /* The output offset is added in int32 wrapping like TFLite's: a requantized
   * value near INT32_MAX plus 100 wraps negative and clamps to act_min; computed
   * without wrap (int64, or signed-overflow UB) it gave act_max. */
  arena_reset();
  set_layer(&L, 2, 2, 4, 2, 2, 3, 1, 1);
  L.p.input_zero_point = 0;
  L.p.output_offset = 100;
  run_built("regress clamp wraps (1x1)", &L, 15u, 0, INT32_MAX - 5, INT32_MAX, 0);
  set_layer(&L, 4, 4, 16, 4, 4, 5, 3, 3);
  L.p.input_zero_point = 0;
  L.p.output_offset = 127;
  L.p.pad_top = L.p.pad_left = 1;
  run_built("regress clamp wraps (3x3)", &L, 16u, 0, INT32_MAX - 100, INT32_MAX, 0);
  set_layer(&L, 1, 1, 8, 1, 1, 6, 1, 1);
  L.p.input_zero_point = 0;
  L.p.output_offset = -128;
  run_built("regress clamp wraps down", &L, 17u, 0, INT32_MIN + 3, INT32_MAX, 0);
  {
    /* the wrapped case really is the one tested: the expected outputs are act_min */
    const int32_t acc = INT32_MAX - 5;
    const int32_t v = (int32_t)((uint32_t)ref_mbqm(acc, INT32_MAX, 0) + 100u);
    check(v < -128, "wrap case does not wrap", "regress clamp wraps");
  }
}


/* A layer from a shape row {h, w, c_in, c_out, kh, kw, sh, sw, dh, dw, valid, ...}:
 * output size and padding as TFLite computes them. */
static void shape_layer(layer_t* L, const int32_t* t) {
  int32_t pt, pl;
  const int32_t oh = out_size(t[0], t[4], t[6], t[8], (int)t[10], &pt);
  const int32_t ow = out_size(t[1], t[5], t[7], t[9], (int)t[10], &pl);
  set_layer(L, t[0], t[1], t[2], oh, ow, t[3], t[4], t[5]);
  L->p.stride_h = t[6];
  L->p.stride_w = t[7];
  L->p.dilation_h = t[8];
  L->p.dilation_w = t[9];
  L->p.pad_top = pt;
  L->p.pad_left = pl;
}

/* Shapes that pick each driver of dtmm_conv_s8_choose (docs/kernels.md), at several
 * sparsities: tiny planes (the pixel driver, also above 25 and 32 taps), 1x1 at
 * stride 1 and 2 with odd pixel and channel counts (pairs, groups, leftovers),
 * small C_in with wide kernels (expanded), dilated and large kernels (im2col),
 * in-place windows with short rows (dense-row alternative) and long ones. */
static void test_driver_shapes(void) {
  static const int32_t shapes[][13] = {
      /* h, w, c_in, c_out, kh, kw, sh, sw, dh, dw, valid, keep%, seed */
      {5, 1, 40, 13, 5, 1, 3, 1, 1, 1, 1, 100, 1}, {5, 1, 40, 13, 5, 1, 3, 1, 1, 1, 1, 60, 2},
      {7, 7, 9, 6, 7, 7, 1, 1, 1, 1, 1, 70, 3},    {1, 1, 30, 11, 3, 3, 1, 1, 1, 1, 0, 80, 4},
      {1, 1, 64, 13, 1, 1, 1, 1, 1, 1, 0, 100, 5}, {1, 1, 64, 13, 1, 1, 1, 1, 1, 1, 0, 75, 6},
      {1, 1, 64, 14, 1, 1, 1, 1, 1, 1, 0, 40, 7},  {1, 2, 12, 9, 1, 1, 1, 1, 1, 1, 0, 50, 8},
      {3, 3, 20, 10, 1, 1, 1, 1, 1, 1, 0, 100, 9}, {3, 3, 20, 10, 1, 1, 1, 1, 1, 1, 0, 55, 10},
      {5, 7, 17, 7, 1, 1, 2, 2, 1, 1, 0, 70, 11},  {7, 5, 13, 5, 1, 1, 1, 2, 1, 1, 0, 90, 12},
      {15, 6, 1, 9, 10, 4, 2, 2, 1, 1, 0, 100, 13}, {15, 6, 1, 9, 10, 4, 2, 2, 1, 1, 0, 45, 14},
      {13, 13, 3, 5, 7, 7, 2, 2, 1, 1, 0, 65, 15}, {9, 9, 2, 6, 5, 5, 1, 1, 1, 1, 1, 50, 16},
      {8, 8, 1, 7, 3, 3, 1, 1, 1, 1, 0, 70, 17},   {9, 9, 6, 5, 3, 3, 1, 1, 2, 2, 0, 80, 18},
      {10, 10, 33, 4, 3, 3, 1, 1, 2, 2, 0, 60, 19}, {9, 9, 40, 4, 3, 3, 1, 1, 2, 1, 0, 70, 20},
      {12, 12, 12, 5, 7, 7, 1, 1, 1, 1, 0, 30, 21}, {10, 8, 20, 6, 6, 6, 1, 1, 1, 1, 0, 85, 22},
      {10, 10, 3, 8, 3, 3, 1, 1, 1, 1, 0, 100, 23}, {10, 10, 3, 8, 3, 3, 1, 1, 1, 1, 0, 35, 24},
      {9, 11, 5, 6, 3, 3, 2, 2, 1, 1, 0, 65, 25},  {12, 9, 16, 7, 5, 5, 1, 1, 1, 1, 0, 20, 26},
      {9, 9, 48, 6, 3, 3, 1, 1, 1, 1, 0, 50, 27},  {21, 1, 24, 5, 5, 1, 3, 1, 1, 1, 1, 80, 28},
      {6, 6, 16, 9, 2, 2, 1, 1, 1, 1, 0, 60, 29},  {4, 9, 8, 5, 1, 3, 1, 1, 1, 1, 0, 75, 30},
      /* few channels, in-place runs under DTMM_MIN_ROW_BYTES (expanded) and at it */
      {10, 10, 2, 7, 1, 3, 1, 1, 1, 1, 0, 100, 31}, {9, 7, 4, 6, 5, 1, 2, 2, 1, 1, 1, 55, 32},
      {8, 6, 7, 9, 5, 1, 1, 1, 1, 1, 0, 40, 33},   {8, 6, 8, 5, 5, 1, 1, 1, 1, 1, 0, 60, 34},
      {6, 5, 9, 5, 5, 1, 1, 1, 1, 1, 0, 100, 35},  {20, 1, 2, 6, 5, 1, 1, 1, 1, 1, 0, 70, 36},
      /* dilated taps of 2-5 bytes copied to im2col rows (both borders padded) */
      {20, 24, 2, 5, 10, 4, 2, 2, 2, 2, 1, 80, 37}, {9, 11, 3, 4, 3, 3, 1, 2, 2, 3, 0, 60, 38},
      {7, 9, 4, 6, 3, 3, 1, 1, 1, 2, 0, 90, 39},   {8, 9, 5, 6, 3, 3, 1, 1, 2, 2, 0, 50, 40},
      {5, 5, 3, 4, 3, 3, 2, 2, 2, 2, 1, 80, 41},
      /* 1x1 at stride 2 with rows shorter than a group: lines down the columns */
      {28, 3, 12, 9, 1, 1, 2, 2, 1, 1, 0, 70, 42}, {13, 5, 6, 11, 1, 1, 2, 2, 1, 1, 0, 100, 43},
      {10, 2, 20, 5, 1, 1, 1, 2, 1, 1, 0, 60, 44}, {8, 3, 9, 5, 1, 1, 2, 2, 1, 1, 0, 85, 45},
      {7, 7, 16, 6, 1, 1, 3, 3, 1, 1, 0, 50, 46},
  };
  size_t i;
  char name[160];
  for (i = 0; i < sizeof(shapes) / sizeof(shapes[0]); ++i) {
    const int32_t* t = shapes[i];
    layer_t L;
    arena_reset();
    shape_layer(&L, t);
    L.p.input_zero_point = -128 + (int32_t)(i * 53 % 256);
    L.p.output_offset = (int32_t)(i * 29 % 256) - 128;
    snprintf(name, sizeof(name), "driver#%d %ldx%ldx%ld->%ld k%ldx%ld s%ld d%ld keep%ld%%", (int)i,
             (long)t[0], (long)t[1], (long)t[2], (long)t[3], (long)t[4], (long)t[5], (long)t[6],
             (long)t[8], (long)t[11]);
    run_built(name, &L, 0x9E3779B9u + (uint32_t)t[12], (int)t[11], (int32_t)(i * 977) - 5000,
              (1 << 30) + (int32_t)(i * 7919), -9 - (int32_t)(i % 5));
  }
}

/* Window drivers (grp): MVE rectangles' asm group loop (rows of 1, 2 and many
 * blocks, 4x1 / 2x2 / 1x4 blocks, the overlapping last block), the classes the
 * im2col part skips a row at a time (corners and short edges left to it, lines),
 * DSP/portable strided lines with leftovers; positive shifts (the left shift of
 * the requantization) and fully pruned channels at low keep rates. */
static void test_window_shapes(void) {
  static const int32_t shapes[][14] = {
      /* h, w, c_in, c_out, kh, kw, sh, sw, dh, dw, valid, keep%, seed, shift */
      {5, 5, 16, 7, 3, 3, 1, 1, 1, 1, 0, 50, 101, -7}, {6, 9, 16, 9, 3, 3, 1, 1, 1, 1, 0, 90, 102, 1},
      {17, 3, 20, 6, 3, 3, 1, 1, 1, 1, 0, 60, 103, -8}, {3, 17, 24, 6, 3, 3, 1, 1, 1, 1, 0, 40, 104, 2},
      {16, 16, 16, 5, 3, 3, 2, 2, 1, 1, 0, 50, 105, -6}, {15, 15, 17, 6, 3, 3, 2, 2, 1, 1, 0, 25, 106, -9},
      {9, 6, 18, 5, 3, 3, 1, 1, 1, 1, 0, 10, 107, -5}, {7, 7, 32, 4, 3, 3, 1, 1, 1, 1, 0, 100, 108, 0},
      {10, 10, 16, 5, 5, 5, 2, 2, 1, 1, 0, 50, 109, -7}, {8, 1, 32, 6, 3, 1, 1, 1, 1, 1, 0, 70, 110, -6},
      {1, 8, 32, 6, 1, 3, 1, 1, 1, 1, 0, 30, 111, 1},  {21, 2, 16, 5, 3, 3, 1, 1, 1, 1, 0, 75, 112, -8},
      {2, 21, 16, 5, 3, 3, 1, 1, 1, 1, 0, 65, 113, -7}, {12, 12, 9, 6, 2, 2, 1, 1, 1, 1, 0, 55, 114, 3},
      {9, 13, 20, 5, 3, 3, 1, 2, 1, 1, 1, 45, 115, -6}, {6, 6, 16, 33, 3, 3, 1, 1, 1, 1, 0, 15, 116, -5},
  };
  size_t i;
  char name[160];
  for (i = 0; i < sizeof(shapes) / sizeof(shapes[0]); ++i) {
    const int32_t* t = shapes[i];
    layer_t L;
    arena_reset();
    shape_layer(&L, t);
    L.p.input_zero_point = -128 + (int32_t)(i * 71 % 256);
    L.p.output_offset = (int32_t)(i * 37 % 256) - 128;
    snprintf(name, sizeof(name), "window#%d %ldx%ldx%ld->%ld k%ldx%ld s%ld keep%ld%% shift%ld",
             (int)i, (long)t[0], (long)t[1], (long)t[2], (long)t[3], (long)t[4], (long)t[5],
             (long)t[6], (long)t[11], (long)t[13]);
    run_built(name, &L, 0x85EBCA6Bu + (uint32_t)t[12], (int)t[11], (int32_t)(i * 613) - 3000,
              t[13] > 0 ? (1 << 28) + (int32_t)(i * 104729) : (1 << 30) + (int32_t)(i * 7919),
              t[13]);
  }
}

/* 1x1 onto one pixel and onto planes (the pixel driver's sparse matrix-vector
 * product, px, and the MVE pointwise driver's 4 kept rows over every pixel), and
 * k > 1 onto one pixel (the pixel driver's runs of kept taps): kept filterlets
 * from a 64-bit pattern repeated over the bitmap (bit b of the layer is
 * bit b % 64), so that every branch is hit on purpose: all kept, all pruned, groups
 * of 4 kept channels across 32-channel blocks, the last 1, 2 or 3 kept channels of
 * a block, blocks with and without pruned channels, C_out not a multiple of 4 or
 * 32, C_in not a multiple of 16, planes on both sides of DTMM_POINTWISE_MIN_PIXELS,
 * strided planes (one line per output row). */
static void run_pattern(const char* name, const layer_t* L, uint32_t seed, uint64_t pattern) {
  const int32_t taps = L->d.kernel_h * L->d.kernel_w;
  const int32_t bits = L->d.output_c * taps, c = L->d.input_c;
  const int32_t in_n = L->d.input_h * L->d.input_w * c, w_n = bits * c;
  const int32_t out_n = L->d.output_h * L->d.output_w * L->d.output_c;
  int8_t* in = (int8_t*)alloc((size_t)in_n);
  int8_t* w = (int8_t*)alloc((size_t)w_n);
  int8_t* ref = (int8_t*)alloc((size_t)out_n);
  uint8_t* bitmap = (uint8_t*)alloc((size_t)(bits + 7) / 8);
  int32_t* bias = (int32_t*)alloc(4u * (size_t)L->d.output_c);
  int32_t* folded = (int32_t*)alloc(4u * (size_t)L->d.output_c);
  int32_t* mult = (int32_t*)alloc(4u * (size_t)L->d.output_c);
  int32_t* shift = (int32_t*)alloc(4u * (size_t)L->d.output_c);
  uint32_t s = seed;
  int32_t b;
  for (b = 0; b < in_n; ++b) in[b] = rng_i8(&s);
  for (b = 0; b < w_n; ++b) w[b] = rng_i8(&s);
  memset(bitmap, 0, (size_t)(bits + 7) / 8);
  for (b = 0; b < bits; ++b) {
    if ((pattern >> (b % 64)) & 1u)
      bitmap[b >> 3] |= (uint8_t)(1u << (b & 7));
    else
      memset(w + b * c, 0, (size_t)c);
  }
  for (b = 0; b < L->d.output_c; ++b) {
    /* per-channel constants that differ (lanes must not be mixed up) */
    bias[b] = (int32_t)(rng_next(&s) % 20001) - 10000;
    mult[b] = (1 << 30) + (int32_t)(rng_next(&s) % (1u << 29));
    shift[b] = -(int32_t)(rng_next(&s) % 12) + (b % 7 == 3 ? 2 : 0);
  }
  fold(L, w, bias, folded);
  ref_conv(L, in, w, bias, mult, shift, ref);
  run_case(name, L, in, w, bitmap, folded, mult, shift, ref);
}

static void test_pixel_pointwise_shapes(void) {
  static const int32_t shapes[][6] = {
      /* h, w, c_in, c_out, stride, seed */
      {1, 1, 32, 64, 1, 1},  {1, 1, 17, 37, 1, 2},  {1, 1, 130, 7, 1, 3},  {1, 1, 1, 33, 1, 4},
      {1, 1, 64, 3, 1, 5},   {1, 1, 48, 96, 1, 6},  {2, 2, 64, 37, 1, 7},  {3, 3, 64, 13, 1, 8},
      {3, 3, 63, 13, 1, 9},  {3, 3, 128, 5, 1, 10}, {5, 5, 64, 9, 2, 11}, {2, 5, 80, 6, 1, 12},
      {1, 9, 72, 11, 1, 13}, {3, 4, 64, 9, 1, 14},  {2, 1, 33, 70, 1, 15}, {3, 1, 96, 8, 1, 16},
      {6, 6, 40, 70, 2, 17}, {4, 8, 16, 33, 1, 18}, {5, 7, 24, 40, 2, 19}, {9, 1, 8, 100, 3, 20},
  };
  static const uint64_t patterns[] = {
      ~0ull,                 0ull,                  0x5555555555555555ull, 0x8000000080000000ull,
      0xC0000000C0000000ull, 0xE0000000E0000000ull, 0x0000001F0000001Full, 0x0000007700000077ull,
      0x000000F7000000F7ull, 0x8001F00E6000001Bull, 0xFFFFFFF0FFFFFFFEull,
  };
  size_t i, j;
  char name[160];
  for (i = 0; i < sizeof(shapes) / sizeof(shapes[0]); ++i) {
    for (j = 0; j < sizeof(patterns) / sizeof(patterns[0]); ++j) {
      const int32_t* t = shapes[i];
      layer_t L;
      const int32_t oh = (t[0] + t[4] - 1) / t[4], ow = (t[1] + t[4] - 1) / t[4];
      arena_reset();
      set_layer(&L, t[0], t[1], t[2], oh, ow, t[3], 1, 1);
      L.p.stride_h = L.p.stride_w = t[4];
      L.p.input_zero_point = -128 + (int32_t)((i * 11 + j) * 53 % 256);
      L.p.output_offset = (int32_t)((i + j) * 29 % 256) - 128;
      if (j % 3 == 1) { /* a narrower activation range */
        L.p.activation_min = -100;
        L.p.activation_max = 90;
      }
      snprintf(name, sizeof(name), "pixel-pw#%d %ldx%ldx%ld->%ld s%ld pattern %08lx%08lx", (int)i,
               (long)t[0], (long)t[1], (long)t[2], (long)t[3], (long)t[4],
               (unsigned long)(patterns[j] >> 32), (unsigned long)(patterns[j] & 0xFFFFFFFFu));
      run_pattern(name, &L, 0x51ED2701u + (uint32_t)(t[5] * 131 + (int32_t)j), patterns[j]);
    }
  }
}

/* k > 1 onto one pixel (VALID, the window is the input: microWakeWord's convs):
 * fields that start at every bit offset, end at the bitmap's last byte, or lie in
 * a bitmap of fewer than 4 bytes; up to 25 taps (one field load) and past it. */
/* Kept-filterlet patterns for run_pattern over k > 1 layers: all kept, all pruned,
 * alternating taps, nearly all pruned, pairs, irregular, nearly all kept, mixed,
 * sparse nibbles. */
static const uint64_t k_tap_patterns[] = {
    ~0ull, 0ull, 0x5555555555555555ull, 0x8000000080000000ull, 0x3333333333333333ull,
    0x8001F00E6000001Bull, 0xFFFFFFF0FFFFFFFEull, 0x0123456789ABCDEFull, 0x0000F00000000F00ull,
};
#define DTMM_TAP_PATTERNS (sizeof(k_tap_patterns) / sizeof(k_tap_patterns[0]))

static void test_pixel_window_shapes(void) {
  static const int32_t shapes[][5] = {
      /* kh, kw, c_in, c_out, seed */
      {5, 1, 40, 32, 1}, {5, 1, 40, 30, 2}, {5, 1, 40, 64, 3}, {3, 1, 16, 1, 4},
      {3, 3, 8, 2, 5},   {2, 1, 3, 3, 6},   {5, 5, 4, 9, 7},   {1, 7, 17, 37, 8},
      {3, 2, 33, 70, 9}, {2, 2, 1, 13, 10}, {4, 3, 24, 5, 11}, {9, 3, 2, 6, 12},
  };
  const uint64_t* patterns = k_tap_patterns;
  size_t i, j;
  char name[160];
  for (i = 0; i < sizeof(shapes) / sizeof(shapes[0]); ++i) {
    for (j = 0; j < DTMM_TAP_PATTERNS; ++j) {
      const int32_t* t = shapes[i];
      layer_t L;
      arena_reset();
      set_layer(&L, t[0], t[1], t[2], 1, 1, t[3], t[0], t[1]);
      L.p.input_zero_point = -128 + (int32_t)((i * 7 + j) * 37 % 256);
      L.p.output_offset = (int32_t)((i + 2 * j) * 31 % 256) - 128;
      snprintf(name, sizeof(name), "pixel-win#%d %ldx%ld c%ld->%ld pattern %08lx%08lx", (int)i,
               (long)t[0], (long)t[1], (long)t[2], (long)t[3],
               (unsigned long)(patterns[j] >> 32), (unsigned long)(patterns[j] & 0xFFFFFFFFu));
      run_pattern(name, &L, 0x2F6B1A53u + (uint32_t)(t[4] * 131 + (int32_t)j), patterns[j]);
      /* Two output pixels (2x1), windows in place, and with a padded top row (copied
       * windows: on DSP into the scratch they are widened in): the pixel driver's
       * two-pixel path on DSP, its plane loop elsewhere. */
      if (j % 3 == 0) {
        int pad;
        for (pad = 0; pad <= (t[0] > 1); ++pad) {
          arena_reset();
          set_layer(&L, t[0] + 1 - pad, t[1], t[2], 2, 1, t[3], t[0], t[1]);
          L.p.pad_top = pad;
          L.p.input_zero_point = -128 + (int32_t)((i * 5 + j) * 41 % 256);
          snprintf(name, sizeof(name), "pixel-2px#%d %ldx%ld c%ld->%ld pad %d pattern %08lx%08lx",
                   (int)i, (long)t[0], (long)t[1], (long)t[2], (long)t[3], pad,
                   (unsigned long)(patterns[j] >> 32),
                   (unsigned long)(patterns[j] & 0xFFFFFFFFu));
          run_pattern(name, &L, 0x51C3D2E1u + (uint32_t)(t[4] * 173 + (int32_t)j), patterns[j]);
        }
      }
    }
  }
}

/* The pruned channels' constants written up front (MVE: per 16 channels one
 * predicated store per pixel, or a byte store per channel where 1-2 are pruned;
 * the tap masks gathered, or read one channel at a time above 25 taps) and the
 * im2col groups' tap masks read a block of channels at a time (in pieces above
 * 25 taps): layers of the
 * im2col part and of windows it completes, C_out across 16- and 32-channel blocks
 * and partial ones, over the 64-bit patterns of run_pattern. Rows merged in the
 * im2col copy: kernels as wide as the input, inputs one pixel wide. */
static void test_fill_shapes(void) {
  static const int32_t shapes[][13] = {
      /* h, w, c_in, c_out, kh, kw, sh, sw, dh, dw, valid, (unused), seed */
      {8, 1, 32, 32, 3, 1, 1, 1, 1, 1, 0, 0, 1},  {1, 8, 16, 20, 1, 3, 1, 1, 1, 1, 0, 0, 2},
      {4, 4, 32, 40, 3, 3, 1, 1, 1, 1, 1, 0, 3},  {12, 12, 16, 8, 3, 3, 1, 1, 1, 1, 0, 0, 4},
      {10, 10, 16, 17, 7, 7, 1, 1, 1, 1, 0, 0, 5}, {12, 1, 24, 8, 5, 1, 1, 1, 2, 1, 1, 0, 6},
      {6, 3, 8, 35, 3, 3, 1, 1, 1, 1, 0, 0, 7},   {7, 5, 12, 48, 3, 5, 2, 1, 1, 1, 0, 0, 8},
      /* above 25 taps: one word (26 taps), 2 pieces (49, 40), 4 (81; 51: a
       * shorter last piece), above 100 taps (121: one word at a time) */
      {9, 9, 16, 9, 7, 7, 1, 1, 1, 1, 0, 0, 9},   {12, 6, 8, 21, 10, 4, 1, 1, 1, 1, 0, 0, 10},
      {5, 30, 5, 7, 2, 13, 2, 1, 1, 2, 0, 0, 11}, {10, 10, 4, 6, 9, 9, 1, 1, 1, 1, 0, 0, 12},
      {6, 20, 3, 37, 3, 17, 1, 1, 1, 1, 0, 0, 13}, {12, 12, 2, 5, 11, 11, 1, 1, 1, 1, 0, 0, 14},
  };
  const uint64_t* patterns = k_tap_patterns;
  size_t i, j;
  char name[160];
  for (i = 0; i < sizeof(shapes) / sizeof(shapes[0]); ++i) {
    for (j = 0; j < DTMM_TAP_PATTERNS; ++j) {
      const int32_t* t = shapes[i];
      layer_t L;
      arena_reset();
      shape_layer(&L, t);
      L.p.input_zero_point = -128 + (int32_t)((i * 11 + j) * 43 % 256);
      L.p.output_offset = (int32_t)((i + 3 * j) * 29 % 256) - 128;
      snprintf(name, sizeof(name), "fill#%d %ldx%ldx%ld->%ld k%ldx%ld pattern %08lx%08lx", (int)i,
               (long)t[0], (long)t[1], (long)t[2], (long)t[3], (long)t[4], (long)t[5],
               (unsigned long)(patterns[j] >> 32), (unsigned long)(patterns[j] & 0xFFFFFFFFu));
      run_pattern(name, &L, 0x6A09E667u + (uint32_t)(t[12] * 151 + (int32_t)j), patterns[j]);
    }
  }
}

/* ------------------------------------------------ filterlet blocks (version 2) */

/* Corruptions of a valid 1x1 block layer: 3 channels over C_in 32 at B = 8 (4
 * blocks per channel, 12 bits, 2 bytes), one at a time. */
static void test_block_validation(void) {
  static const uint8_t good_bitmap[2] = {0x5B, 0x09}; /* 12 bits, 7 set */
  static int8_t values[7 * 8];
  static const int32_t bias[3] = {1, 2, 3}, mult[3] = {1 << 30, 1 << 30, 1 << 30},
                       shift[3] = {-3, 0, 1};
  dtmm_conv_dims d = {1, 4, 4, 32, 4, 4, 3, 1, 1};
  dtmm_conv_params p = {2, 1, 1, 1, 1, 0, 0, 0, 0, -128, 127};
  dtmm_conv_dims d2;
  dtmm_conv_params p2;
  dtmm_fwcs_filter f, f2;
  uint8_t bm[8];
  f.bitmap = good_bitmap;
  f.bitmap_bytes = 2;
  f.values = values;
  f.num_filterlets = 7;
  f.bias = bias;
  f.multiplier = mult;
  f.shift = shift;
  f.block_size = 8;
#define EXPECT(call, code, what) check((call) == (code), what, "validate blocks")
  EXPECT(dtmm_conv_s8_validate(&d, &p, &f), DTMM_OK, "valid block layer");
  p2 = p; p2.version = 1;
  EXPECT(dtmm_conv_s8_validate(&d, &p2, &f), DTMM_ERR_PARAMS, "version 1 with B < C_in");
  p2 = p; p2.version = 3;
  EXPECT(dtmm_conv_s8_validate(&d, &p2, &f), DTMM_ERR_VERSION, "version 3");
  f2 = f; f2.block_size = 12;
  EXPECT(dtmm_conv_s8_validate(&d, &p, &f2), DTMM_ERR_PARAMS, "B not dividing C_in");
  f2 = f; f2.block_size = -8;
  EXPECT(dtmm_conv_s8_validate(&d, &p, &f2), DTMM_ERR_PARAMS, "negative B");
  f2 = f; f2.block_size = 64;
  EXPECT(dtmm_conv_s8_validate(&d, &p, &f2), DTMM_ERR_PARAMS, "B > C_in");
  d2 = d; d2.kernel_h = d2.kernel_w = 3; d2.output_h = d2.output_w = 2;
  EXPECT(dtmm_conv_s8_validate(&d2, &p, &f), DTMM_ERR_PARAMS, "B < C_in with a 3x3 kernel");
  d2 = d; d2.kernel_w = 3; d2.output_w = 2;
  EXPECT(dtmm_conv_s8_validate(&d2, &p, &f), DTMM_ERR_PARAMS, "B < C_in with a 1x3 kernel");
  f2 = f; f2.bitmap_bytes = 1;
  EXPECT(dtmm_conv_s8_validate(&d, &p, &f2), DTMM_ERR_BITMAP, "block bitmap too short");
  /* version 2's 4-byte padding is the op's: the kernel takes the unpadded length */
  f2 = f; memset(bm, 0, sizeof(bm)); memcpy(bm, good_bitmap, 2); f2.bitmap = bm;
  f2.bitmap_bytes = 4;
  EXPECT(dtmm_conv_s8_validate(&d, &p, &f2), DTMM_ERR_BITMAP, "padded block bitmap length");
  /* B = 0 reads one bit per filter: 3 bits, the block bitmap's others are padding */
  f2 = f; f2.bitmap_bytes = 1; f2.block_size = 0; f2.num_filterlets = popcount_bytes(good_bitmap, 1);
  EXPECT(dtmm_conv_s8_validate(&d, &p, &f2), DTMM_ERR_BITMAP, "B = 0 with a block bitmap");
  f2 = f; memcpy(bm, good_bitmap, 2); bm[1] |= 0x10; f2.bitmap = bm; f2.num_filterlets = 8;
  EXPECT(dtmm_conv_s8_validate(&d, &p, &f2), DTMM_ERR_BITMAP, "block padding bit set");
  f2 = f; f2.num_filterlets = 6;
  EXPECT(dtmm_conv_s8_validate(&d, &p, &f2), DTMM_ERR_VALUES, "too few blocks");
  f2 = f; f2.num_filterlets = 8;
  EXPECT(dtmm_conv_s8_validate(&d, &p, &f2), DTMM_ERR_VALUES, "too many blocks");
  f2 = f; f2.values = NULL;
  EXPECT(dtmm_conv_s8_validate(&d, &p, &f2), DTMM_ERR_VALUES, "null values with blocks kept");
  f2 = f; memset(bm, 0, 2); f2.bitmap = bm; f2.values = NULL; f2.num_filterlets = 0;
  EXPECT(dtmm_conv_s8_validate(&d, &p, &f2), DTMM_OK, "all blocks pruned");
  f2 = f; f2.block_size = 32; f2.bitmap_bytes = 1; memset(bm, 0, 2); bm[0] = 0x05;
  f2.bitmap = bm; f2.num_filterlets = 2;
  EXPECT(dtmm_conv_s8_validate(&d, &p, &f2), DTMM_OK, "B = C_in explicitly");
  d2 = d; d2.kernel_h = d2.kernel_w = 3; d2.output_h = d2.output_w = 2;
  f2.bitmap_bytes = 4; /* 27 bits */
  {
    uint8_t bm27[4] = {0x05, 0, 0, 0};
    int32_t b3[3] = {0, 0, 0};
    f2.bitmap = bm27; f2.num_filterlets = 2; f2.shift = b3;
    EXPECT(dtmm_conv_s8_validate(&d2, &p, &f2), DTMM_OK, "version 2, B = C_in, 3x3");
    f2.block_size = 0;
    EXPECT(dtmm_conv_s8_validate(&d2, &p, &f2), DTMM_OK, "version 2, B = 0, 3x3");
  }
#undef EXPECT
  /* scratch: none for 1x1 block layers */
  if (ONE_BY_ONE_DRIVERS_BUILT)
    check(dtmm_conv_s8_get_buffer_size(&d, &p) == 0, "1x1 block layer needs scratch", "buffer_size");
}

/* One random 1x1 layer at block size bk with keep_pct % of the blocks kept (and
 * optionally one fully pruned, one fully kept channel), against ref_conv on the
 * dense filter with the pruned blocks zeroed. */
static void run_blocks(const char* name, const layer_t* L, int32_t bk, uint32_t seed,
                       int keep_pct, int edge_channels) {
  const int32_t c = L->d.input_c, nb = c / bk, bits = L->d.output_c * nb;
  const int32_t in_n = L->d.batches * L->d.input_h * L->d.input_w * c;
  const int32_t w_n = L->d.output_c * c;
  const int32_t out_n = L->d.batches * L->d.output_h * L->d.output_w * L->d.output_c;
  int8_t* in = (int8_t*)alloc((size_t)in_n);
  int8_t* w = (int8_t*)alloc((size_t)w_n);
  int8_t* ref = (int8_t*)alloc((size_t)out_n);
  uint8_t* bitmap = (uint8_t*)alloc((size_t)(bits + 7) / 8);
  int32_t* bias = (int32_t*)alloc(4u * (size_t)L->d.output_c);
  int32_t* folded = (int32_t*)alloc(4u * (size_t)L->d.output_c);
  int32_t* mult = (int32_t*)alloc(4u * (size_t)L->d.output_c);
  int32_t* shift = (int32_t*)alloc(4u * (size_t)L->d.output_c);
  uint32_t s = seed;
  int32_t b, oc;
  for (b = 0; b < in_n; ++b) in[b] = rng_i8(&s);
  for (b = 0; b < w_n; ++b) w[b] = rng_i8(&s);
  memset(bitmap, 0, (size_t)(bits + 7) / 8);
  for (b = 0; b < bits; ++b) {
    const int32_t ch = b / nb;
    int keep = (int)(rng_next(&s) % 100) < keep_pct;
    if (edge_channels && L->d.output_c > 2 && ch == 1) keep = 0;
    if (edge_channels && L->d.output_c > 2 && ch == L->d.output_c - 1) keep = 1;
    if (keep) {
      bitmap[b >> 3] |= (uint8_t)(1u << (b & 7));
    } else {
      memset(w + b * bk, 0, (size_t)bk);
    }
  }
  for (oc = 0; oc < L->d.output_c; ++oc) {
    bias[oc] = (int32_t)rng_next(&s) >> rng_range(&s, 12, 31);
    mult[oc] = (int32_t)((1u << 30) + (rng_next(&s) >> 2));
    shift[oc] = rng_range(&s, -12, 0);
    switch (rng_next(&s) % 16) { /* extremes of the requantization */
      case 0: shift[oc] = rng_range(&s, -31, 30); break; /* wraps on the left shift */
      case 1: mult[oc] = 0; break;
      case 2: mult[oc] = INT32_MAX; shift[oc] = -31; break;
      case 3: bias[oc] = (rng_next(&s) & 1) ? INT32_MAX - 7 : INT32_MIN + 7; break;
      default: break;
    }
  }
  fold(L, w, bias, folded);
  ref_conv(L, in, w, bias, mult, shift, ref);
  run_case_blocks(name, L, bk, in, w, bitmap, folded, mult, shift, ref);
}

/* Shapes aimed at the block driver: odd pixel counts (groups, overlapped last
 * groups, single pixels), strides 1 and 2 (lines), B = 1..32, C_in up to 256 (more
 * than 32 blocks per channel: runs across bitmap words, more runs than the table),
 * all-pruned and all-kept channels, several sparsities; then random layers. */
static void test_block_shapes(int random_cases) {
  static const int32_t shapes[][10] = {
      /* h, w, c_in, c_out, stride, valid, B, keep%, batches, seed */
      {1, 1, 16, 5, 1, 0, 8, 50, 1, 1},     {1, 2, 32, 7, 1, 0, 16, 60, 1, 2},
      {1, 3, 64, 9, 1, 0, 16, 70, 2, 3},    {3, 3, 64, 13, 1, 0, 16, 50, 1, 4},
      {5, 5, 64, 16, 1, 0, 16, 25, 1, 5},   {5, 5, 64, 16, 1, 0, 16, 10, 1, 6},
      {5, 5, 64, 16, 1, 0, 16, 100, 1, 7},  {4, 5, 64, 16, 1, 0, 16, 0, 1, 8},
      {7, 7, 32, 11, 2, 0, 8, 50, 1, 9},    {7, 6, 32, 11, 2, 1, 4, 40, 1, 10},
      {6, 9, 48, 6, 2, 0, 16, 75, 1, 11},   {5, 7, 96, 8, 1, 0, 32, 50, 1, 12},
      {4, 4, 128, 10, 1, 0, 16, 50, 1, 13}, {3, 5, 256, 7, 1, 0, 16, 40, 1, 14},
      {3, 3, 256, 5, 2, 0, 8, 50, 1, 15},   {2, 3, 256, 4, 1, 0, 1, 50, 1, 16},
      {3, 3, 64, 6, 1, 0, 1, 30, 1, 17},    {3, 4, 64, 6, 1, 0, 4, 50, 1, 18},
      {5, 5, 40, 9, 1, 0, 8, 90, 1, 19},    {9, 1, 64, 5, 1, 0, 16, 50, 1, 20},
      {1, 9, 64, 5, 2, 1, 16, 50, 1, 21},   {6, 6, 256, 32, 1, 0, 32, 25, 1, 22},
      {2, 2, 66, 5, 1, 0, 2, 50, 2, 23},    {11, 3, 24, 7, 1, 0, 12, 50, 1, 24},
  };
  size_t i;
  char name[160];
  uint32_t s = 0xB10C5EEDu;
  for (i = 0; i < sizeof(shapes) / sizeof(shapes[0]); ++i) {
    const int32_t* t = shapes[i];
    layer_t L;
    int32_t pt, pl, oh, ow;
    arena_reset();
    oh = out_size(t[0], 1, t[4], 1, (int)t[5], &pt);
    ow = out_size(t[1], 1, t[4], 1, (int)t[5], &pl);
    set_layer(&L, t[0], t[1], t[2], oh, ow, t[3], 1, 1);
    L.d.batches = t[8];
    L.p.version = 2;
    L.p.stride_h = L.p.stride_w = t[4];
    L.p.input_zero_point = -128 + (int32_t)(i * 71 % 256);
    L.p.output_offset = (int32_t)(i * 37 % 256) - 128;
    snprintf(name, sizeof(name), "blocks#%d %ldx%ldx%ld->%ld s%ld B%ld keep%ld%%", (int)i,
             (long)t[0], (long)t[1], (long)t[2], (long)t[3], (long)t[4], (long)t[6], (long)t[7]);
    run_blocks(name, &L, t[6], 0x51ED270Bu + (uint32_t)t[9], (int)t[7], (int)(i & 1));
  }
  for (i = 0; i < (size_t)random_cases; ++i) {
    static const int32_t cins[] = {2, 4, 8, 12, 16, 24, 32, 48, 64, 80, 96, 128, 192, 256};
    static const int32_t bks[] = {1, 2, 4, 8, 16, 32};
    layer_t L;
    int32_t c, bk, pt, pl, st;
    int padding;
    arena_reset();
    c = cins[rng_next(&s) % (sizeof(cins) / sizeof(cins[0]))];
    do {
      bk = bks[rng_next(&s) % (sizeof(bks) / sizeof(bks[0]))];
    } while (bk >= c || c % bk != 0);
    st = rng_range(&s, 1, 3);
    padding = (int)(rng_next(&s) & 1);
    set_layer(&L, rng_range(&s, 1, 9), rng_range(&s, 1, 9), c, 0, 0, rng_range(&s, 1, 20), 1, 1);
    L.d.batches = rng_range(&s, 1, 2);
    L.p.version = 2;
    L.p.stride_h = st;
    L.p.stride_w = rng_range(&s, 1, 3);
    L.d.output_h = out_size(L.d.input_h, 1, L.p.stride_h, 1, padding, &pt);
    L.d.output_w = out_size(L.d.input_w, 1, L.p.stride_w, 1, padding, &pl);
    L.p.input_zero_point = rng_range(&s, -128, 127);
    L.p.output_offset = rng_range(&s, -128, 127);
    if (rng_next(&s) & 1) {
      L.p.activation_min = rng_range(&s, -128, 0);
      L.p.activation_max = rng_range(&s, L.p.activation_min, 127);
    }
    snprintf(name, sizeof(name), "random blocks#%d n%ld %ldx%ldx%ld->%ld s%ld,%ld B%ld",
             (int)i, (long)L.d.batches, (long)L.d.input_h, (long)L.d.input_w, (long)c,
             (long)L.d.output_c, (long)L.p.stride_h, (long)L.p.stride_w, (long)bk);
    run_blocks(name, &L, bk, rng_next(&s), (int)(rng_next(&s) % 101), (int)(rng_next(&s) & 1));
  }
}

/* ------------------------------------------------- driver choice vs Python */

/* dtmm_conv_s8_choose on this architecture == dtmm.core.drivers (what `dtmm convert`
 * tells users to build), for every shape of dtmm_driver_golden.h. */
static void test_driver_golden(void) {
  int i;
  for (i = 0; i < DTMM_DRIVER_GOLDEN_COUNT; ++i) {
    const dtmm_driver_golden_case* c = &dtmm_driver_golden_cases[i];
    const dtmm_conv_dims d = {1, c->h, c->w, c->c_in, c->out_h, c->out_w, c->c_out, c->kh, c->kw};
    const dtmm_conv_params p = {DTMM_FORMAT_VERSION, c->sh, c->sw, c->dh, c->dw, c->pad_top,
                                c->pad_left, 0, 0, -128, 127};
#if defined(__ARM_FEATURE_MVE) && (__ARM_FEATURE_MVE & 1) && !defined(DTMM_FORCE_PORTABLE)
    const int32_t want = c->mve;
#elif defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP && !defined(DTMM_FORCE_PORTABLE)
    const int32_t want = c->dsp;
#else
    const int32_t want = c->portable;
#endif
    int32_t preferred = -1;
    char msg[200];
    (void)dtmm_conv_s8_driver(&d, &p, c->block, &preferred);
    sprintf(msg,
            "case %d (%dx%dx%d -> %dx%d, %dx%d s%d d%d,%d B%d): C picks %s (DTMM_USE_* %d), "
            "Python %s (%d)",
            i, (int)c->h, (int)c->w, (int)c->c_in, (int)c->out_h, (int)c->out_w, (int)c->kh,
            (int)c->kw, (int)c->sh, (int)c->dh, (int)c->dw, (int)c->block,
            dtmm_conv_s8_driver_name(preferred & DTMM_USE_ALL_DRIVERS), (int)preferred,
            dtmm_conv_s8_driver_name(want & DTMM_USE_ALL_DRIVERS), (int)want);
    check(preferred == want, msg, "driver golden");
  }
}

int main(int argc, char** argv) {
  int cases = DTMM_TEST_RANDOM_CASES;
  if (argc > 1) cases = atoi(argv[1]);
  /* The validator's field checks use layers every driver set need not run; with
   * fewer drivers, run_case checks every layer's DTMM_OK / DTMM_ERR_UNSUPPORTED. */
  if (((DTMM_CONV_DRIVERS) & DTMM_USE_ALL_DRIVERS) == DTMM_USE_ALL_DRIVERS) test_validation();
  test_regressions();
  test_driver_golden();
  test_driver_shapes();
  test_window_shapes();
  test_pixel_pointwise_shapes();
  test_pixel_window_shapes();
  test_fill_shapes();
  test_fixed_shapes();
  test_golden();
  test_random(cases);
  if (((DTMM_CONV_DRIVERS) & DTMM_USE_ALL_DRIVERS) == DTMM_USE_ALL_DRIVERS) test_block_validation();
  test_block_shapes(cases / 5);
  printf("dtmm_conv_s8_test (%s path, drivers 0x%02x): %d passed, %d failed\n",
#if defined(DTMM_FORCE_PORTABLE)
         "portable",
#elif defined(__ARM_FEATURE_MVE) && (__ARM_FEATURE_MVE & 1)
         "MVE",
#elif defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
         "DSP",
#else
         "portable",
#endif
         (unsigned)(DTMM_CONV_DRIVERS), g_passed, g_failed);
  return g_failed ? 1 : 0;
}
