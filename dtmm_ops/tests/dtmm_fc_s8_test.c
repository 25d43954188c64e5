/* Tests of dtmm_fc_s8 (all compiled paths), its validator and scratch size.
 *
 * Independent checks of the output bytes:
 *  - golden vectors from the Python reference (dtmm.core.fc, via gen_fc_golden.py);
 *  - a plain-C dense FULLY_CONNECTED with TFLite's reference semantics (unfolded
 *    bias, input offset added per element, gemmlowp requantization) on random
 *    layers: C_in 1..300, every block size dividing C_in up to 64, sparsity 0..1,
 *    batches 1..9, rows with equal bitmaps (the dense groups) and without;
 *  - guard bytes around output and scratch, inputs and w at the very end of their
 *    buffers (ASan on x86 sees any over-read);
 *  - validator corruption cases.
 * Runs on x86 and, under QEMU, on Cortex-M4 (DSP) and M55 (MVE).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dtmm_fc_golden.h"
#include "dtmm_fc_s8.h"

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

/* Buffers: a static arena (Cortex-M) or malloc'ed blocks whose end is the end of
 * the data (x86: ASan flags reads past them). */
#define ARENA_BYTES (1u << 19)
static uint8_t g_arena[ARENA_BYTES] __attribute__((aligned(16)));
static size_t g_arena_used;
static void* g_heap[16];
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
  g_heap[g_heap_n++] = p;
  return p;
#else
  return alloc(n);
#endif
}
static void arena_reset(void) {
  g_arena_used = 0;
  while (g_heap_n > 0) free(g_heap[--g_heap_n]);
}

/* ------------------------------------------------- reference (TFLite) */
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

/* TFLite reference_integer_ops::FullyConnected(PerChannel) on dense W. */
static void ref_fc(const dtmm_fc_dims* d, const dtmm_fc_params* p, int32_t zp_in,
                   const int8_t* x, const int8_t* w, const int32_t* bias, const int32_t* mult,
                   const int32_t* shift, int8_t* out) {
  int32_t n, oc, c;
  for (n = 0; n < d->batches; ++n)
    for (oc = 0; oc < d->output_c; ++oc) {
      uint32_t acc = (uint32_t)bias[oc];
      int32_t v;
      for (c = 0; c < d->input_c; ++c)
        acc += (uint32_t)(((int32_t)x[n * d->input_c + c] - zp_in) * w[oc * d->input_c + c]);
      v = (int32_t)((uint32_t)ref_mbqm((int32_t)acc, mult[oc], shift[oc]) +
                    (uint32_t)p->output_offset);
      v = v < p->activation_min ? p->activation_min : v;
      v = v > p->activation_max ? p->activation_max : v;
      out[n * d->output_c + oc] = (int8_t)v;
    }
}

/* The packed w of dense W (docs/contract.md); returns its length. */
static int32_t pack(const dtmm_fc_dims* d, const int8_t* wd, int8_t* w) {
  const int32_t nb = d->input_c / d->block, bm = dtmm_fc_s8_bitmap_bytes(d);
  int32_t b, c, n = bm;
  memset(w, 0, (size_t)bm);
  for (b = 0; b < d->output_c * nb; ++b) {
    const int8_t* blk = wd + (b / nb) * d->input_c + (b % nb) * d->block;
    int kept = 0;
    for (c = 0; c < d->block; ++c) kept |= blk[c] != 0;
    if (!kept) continue;
    w[b >> 3] = (int8_t)((uint8_t)w[b >> 3] | (1u << (b & 7)));
    memcpy(w + n, blk, (size_t)d->block);
    n += d->block;
  }
  return n;
}

/* Runs one layer against the dense reference; w_bytes of packed w at its end. */
static void run_case(const char* name, const dtmm_fc_dims* d, const dtmm_fc_params* p,
                     int32_t zp_in, const int8_t* x_src, const int8_t* wd, const int32_t* bias,
                     const int32_t* mult, const int32_t* shift, const int8_t* want) {
  const int32_t in_n = d->batches * d->input_c, out_n = d->batches * d->output_c;
  int8_t* packed = (int8_t*)alloc((size_t)dtmm_fc_s8_bitmap_bytes(d) +
                                  (size_t)d->output_c * d->input_c);
  const int32_t w_bytes = pack(d, wd, packed);
  int8_t* w = (int8_t*)alloc_end((size_t)w_bytes);
  int8_t* x = (int8_t*)alloc_end((size_t)in_n);
  int32_t* q = (int32_t*)alloc_end((size_t)d->output_c * 12);
  const int32_t scratch_n = dtmm_fc_s8_get_buffer_size(d);
  uint8_t* out = (uint8_t*)alloc((size_t)out_n + 32);
  uint8_t* scratch = (uint8_t*)alloc((size_t)scratch_n + 32);
  int8_t* ref = (int8_t*)alloc((size_t)out_n);
  dtmm_fc_filter f;
  dtmm_status st;
  int32_t i, oc, c;
  char msg[96];
  memcpy(w, packed, (size_t)w_bytes);
  memcpy(x, x_src, (size_t)in_n);
  for (oc = 0; oc < d->output_c; ++oc) {
    uint32_t s = 0;
    for (c = 0; c < d->input_c; ++c) s += (uint32_t)wd[oc * d->input_c + c];
    q[3 * oc] = (int32_t)((uint32_t)bias[oc] - (uint32_t)zp_in * s); /* folded */
    q[3 * oc + 1] = mult[oc];
    q[3 * oc + 2] = shift[oc];
  }
  f.w = w;
  f.w_bytes = w_bytes;
  f.q = q;
  st = dtmm_fc_s8_validate(d, p, &f);
  sprintf(msg, "validate returned %d", (int)st);
  check(st == DTMM_OK, msg, name);
  if (st != DTMM_OK) return;
  memset(out, 0xA5, (size_t)out_n + 32);
  memset(scratch, 0x5A, (size_t)scratch_n + 32);
  /* scratch at +16: 16-aligned (the widened path); the guards around it */
  dtmm_fc_s8(d, p, &f, x, (int8_t*)out + 16, scratch_n ? scratch + 16 : NULL);
  if (want == NULL) {
    ref_fc(d, p, zp_in, x, wd, bias, mult, shift, ref);
    want = ref;
  }
  for (i = 0; i < out_n; ++i)
    if ((int8_t)out[16 + i] != want[i]) {
      sprintf(msg, "output mismatch at %ld: got %d want %d", (long)i, (int)(int8_t)out[16 + i],
              (int)want[i]);
      check(0, msg, name);
      return;
    }
  for (i = 0; i < 16; ++i)
    if (out[i] != 0xA5 || out[16 + out_n + i] != 0xA5 || scratch[i] != 0x5A ||
        scratch[16 + scratch_n + i] != 0x5A) {
      check(0, "write outside output/scratch", name);
      return;
    }
  check(1, "", name);
  /* The same bytes without scratch (the fallback path). */
  if (scratch_n) {
    dtmm_fc_s8(d, p, &f, x, (int8_t*)out + 16, NULL);
    check(memcmp(out + 16, want, (size_t)out_n) == 0, "output without scratch differs", name);
  }
}

static void test_golden(void) {
  int32_t i;
  for (i = 0; i < DTMM_FC_GOLDEN_COUNT; ++i) {
    const dtmm_fc_golden* g = &dtmm_fc_goldens[i];
    dtmm_fc_dims d;
    dtmm_fc_params p;
    int32_t *bias, *mult, *shift, oc;
    d.batches = g->batches;
    d.input_c = g->input_c;
    d.output_c = g->output_c;
    d.block = g->block;
    p.version = DTMM_FC_FORMAT_VERSION;
    p.output_offset = g->zp_out;
    p.activation_min = g->act_min;
    p.activation_max = g->act_max;
    bias = (int32_t*)alloc((size_t)d.output_c * 4);
    mult = (int32_t*)alloc((size_t)d.output_c * 4);
    shift = (int32_t*)alloc((size_t)d.output_c * 4);
    for (oc = 0; oc < d.output_c; ++oc) {
      bias[oc] = g->bias[oc];
      mult[oc] = g->multiplier[oc];
      shift[oc] = g->shift[oc];
    }
    run_case(g->name, &d, &p, g->zp_in, g->input, g->weights, bias, mult, shift, g->output);
    arena_reset();
  }
}

static void test_random(int cases) {
  uint32_t s = 0x1234567u;
  int i;
  for (i = 0; i < cases; ++i) {
    dtmm_fc_dims d;
    dtmm_fc_params p;
    int32_t divs[16], nd = 0, b, oc, c, zp_in, lo, hi, keep, same;
    int8_t *x, *wd;
    int32_t *bias, *mult, *shift;
    char name[96];
    d.input_c = rng_range(&s, 0, 3) == 0 ? rng_range(&s, 1, 300) : 16 * rng_range(&s, 1, 16);
    d.output_c = rng_range(&s, 1, 40);
    d.batches = rng_range(&s, 0, 2) ? 1 : rng_range(&s, 1, 9);
    for (b = 1; b <= d.input_c && nd < 15; ++b)
      if (d.input_c % b == 0 && (b <= 64 || b == d.input_c)) divs[nd++] = b;
    d.block = divs[rng_range(&s, 0, nd - 1)];
    keep = rng_range(&s, 0, 4) == 0 ? 100 : rng_range(&s, 0, 100);
    same = rng_range(&s, 0, 3) == 0; /* rows share one bitmap row */
    zp_in = rng_range(&s, -128, 127);
    p.version = DTMM_FC_FORMAT_VERSION;
    p.output_offset = rng_range(&s, -128, 127);
    lo = rng_range(&s, -128, 127);
    hi = rng_range(&s, -128, 127);
    if (rng_range(&s, 0, 1)) {
      lo = -128;
      hi = 127;
    }
    p.activation_min = lo < hi ? lo : hi;
    p.activation_max = lo < hi ? hi : lo;
    x = (int8_t*)alloc((size_t)d.batches * d.input_c);
    wd = (int8_t*)alloc((size_t)d.output_c * d.input_c);
    bias = (int32_t*)alloc((size_t)d.output_c * 4);
    mult = (int32_t*)alloc((size_t)d.output_c * 4);
    shift = (int32_t*)alloc((size_t)d.output_c * 4);
    for (c = 0; c < d.batches * d.input_c; ++c) x[c] = rng_i8(&s);
    for (oc = 0; oc < d.output_c; ++oc) {
      for (c = 0; c < d.input_c; ++c) wd[oc * d.input_c + c] = rng_i8(&s);
      for (b = 0; b < d.input_c / d.block; ++b) {
        int8_t* blk = wd + oc * d.input_c + b * d.block;
        if (same && oc > 0) { /* copy row 0's pattern */
          int kept0 = 0;
          for (c = 0; c < d.block; ++c) kept0 |= wd[b * d.block + c] != 0;
          if (!kept0) memset(blk, 0, (size_t)d.block);
          else if (blk[0] == 0) blk[0] = 1;
        } else if (rng_range(&s, 0, 99) >= keep) {
          memset(blk, 0, (size_t)d.block);
        } else if (blk[0] == 0) {
          blk[0] = 1; /* a kept block has a nonzero value */
        }
      }
      bias[oc] = (int32_t)rng_next(&s) >> rng_range(&s, 0, 31);
      mult[oc] = rng_range(&s, 0, 9) == 0 ? 0 : (int32_t)(rng_next(&s) >> 1) | (1 << 30);
      shift[oc] = rng_range(&s, 0, 9) == 0 ? rng_range(&s, -31, 30) : rng_range(&s, -12, 2);
    }
    snprintf(name, sizeof(name), "random#%d %ldx%ld->%ld B%ld keep%ld%%%s", i,
             (long)d.batches, (long)d.input_c, (long)d.output_c, (long)d.block, (long)keep,
             same ? " same-rows" : "");
    run_case(name, &d, &p, zp_in, x, wd, bias, mult, shift, NULL);
    arena_reset();
  }
}

static void test_validation(void) {
  int8_t w[4 + 2 * 8] __attribute__((aligned(4)));
  int32_t q[2 * 3] = {0, 1 << 30, 0, 0, 1 << 30, -3};
  dtmm_fc_dims d = {1, 16, 2, 8};
  dtmm_fc_params p = {DTMM_FC_FORMAT_VERSION, 0, -128, 127};
  dtmm_fc_filter f;
  memset(w, 1, sizeof(w));
  w[0] = 0x9; /* blocks 0 and 3 kept */
  w[1] = w[2] = w[3] = 0;
  f.w = w;
  f.w_bytes = (int32_t)sizeof(w);
  f.q = q;
  check(dtmm_fc_s8_validate(&d, &p, &f) == DTMM_OK, "valid layer", "validate");
  check(dtmm_fc_s8_bitmap_bytes(&d) == 4, "bitmap bytes", "validate");
#define EXPECT(expr, code, what)                                          \
  do {                                                                    \
    dtmm_fc_dims d2 = d;                                                  \
    dtmm_fc_params p2 = p;                                                \
    dtmm_fc_filter f2 = f;                                                \
    int8_t w2[sizeof(w)];                                                 \
    int32_t q2[6];                                                        \
    memcpy(w2, w, sizeof(w));                                             \
    memcpy(q2, q, sizeof(q));                                             \
    f2.w = w2;                                                            \
    f2.q = q2;                                                            \
    expr;                                                                 \
    check(dtmm_fc_s8_validate(&d2, &p2, &f2) == (code), what, "validate"); \
  } while (0)
  EXPECT(d2.block = 3, DTMM_ERR_ARG, "block does not divide C_in");
  EXPECT(d2.block = 0, DTMM_ERR_ARG, "block 0");
  EXPECT(d2.batches = 0, DTMM_ERR_ARG, "batches 0");
  EXPECT(d2.output_c = -1, DTMM_ERR_ARG, "negative C_out");
  EXPECT((d2.batches = 1 << 20, d2.input_c = 1 << 12, d2.block = 1), DTMM_ERR_ARG,
         "batches * C_in overflows");
  EXPECT(f2.w = NULL, DTMM_ERR_ARG, "null w");
  EXPECT(f2.q = NULL, DTMM_ERR_ARG, "null q");
  EXPECT(p2.version = 1, DTMM_ERR_VERSION, "version 1");
  EXPECT(p2.version = 3, DTMM_ERR_VERSION, "version 3");
  EXPECT(p2.output_offset = 128, DTMM_ERR_PARAMS, "output offset");
  EXPECT((p2.activation_min = 5, p2.activation_max = 4), DTMM_ERR_PARAMS, "empty clamp");
  EXPECT(q2[1] = -1, DTMM_ERR_PARAMS, "negative multiplier");
  EXPECT(q2[5] = 31, DTMM_ERR_PARAMS, "shift 31");
  EXPECT(q2[5] = -32, DTMM_ERR_PARAMS, "shift -32");
  EXPECT(f2.w_bytes = 3, DTMM_ERR_BITMAP, "w shorter than the bitmap");
  EXPECT(w2[0] = 0x19, DTMM_ERR_BITMAP, "padding bit 4 set");
  EXPECT(w2[2] = 1, DTMM_ERR_BITMAP, "padding byte set");
  EXPECT(w2[0] = 0x1, DTMM_ERR_VALUES, "one block fewer than the values");
  EXPECT(f2.w_bytes = 19, DTMM_ERR_VALUES, "w one byte short");
#undef EXPECT
  check(dtmm_fc_s8_get_buffer_size(NULL) == 0, "scratch of NULL dims", "validate");
  {
    dtmm_fc_dims bad = {1, 16, 2, 3};
    check(dtmm_fc_s8_get_buffer_size(&bad) == 0 && dtmm_fc_s8_bitmap_bytes(&bad) == 0,
          "sizes of invalid dims", "validate");
  }
}

int main(int argc, char** argv) {
  int cases = DTMM_TEST_RANDOM_CASES;
  if (argc > 1) cases = atoi(argv[1]);
  test_validation();
  test_golden();
  test_random(cases);
  printf("dtmm_fc_s8_test (%s path): %d passed, %d failed\n",
#if defined(DTMM_FORCE_PORTABLE)
         "portable",
#elif defined(__ARM_FEATURE_MVE) && (__ARM_FEATURE_MVE & 1)
         "MVE",
#elif defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
         "DSP",
#else
         "portable",
#endif
         g_passed, g_failed);
  return g_failed ? 1 : 0;
}
