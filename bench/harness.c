/* Cortex-M benchmark harness for bench/kernels (runs under qemu-system-arm).
 *
 * bench/kernels generates bench_layers.h (the selected layers, sparsities and the
 * buffer sizes they need) and builds this file against it. For every layer and
 * filterlet sparsity the harness builds random int8 data (fixed seeds), a random
 * filterlet mask with exactly round(s * C_out * K) pruned filterlets (layers with a
 * block size B: round(s * C_out * C_in / B) pruned blocks, format version 2), the
 * FWCS filter, and calls each kernel once from its own noinline call site: bench/kernels
 * counts the instructions of exactly those calls with the icount_calls TCG plugin.
 * Before each measured call it prints
 *   "CALL <n> <layer index> <sparsity %> <kernel> <scratch bytes> <const bytes>"
 * and the n-th plugin record is that call. Outputs are compared byte for byte
 * (dtmm vs CMSIS-NN on the same weights, or vs the harness's own TFLite-semantics
 * conv where CMSIS-NN is not built or rejects the layer; csr vs CMSIS-NN on the csr
 * weights). Any mismatch or a layer that does not fit the buffers prints an
 * "ERROR" or "MISMATCH" line and fails the run.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_layers.h"
#include "dtmm_conv_s8.h"
#ifdef BENCH_WITH_CSR
#include "baselines.h"
#endif
#ifdef BENCH_WITH_CMSIS
#include "arm_nnfunctions.h"
#endif

#define BIG __attribute__((section(".big")))

typedef struct {
  int32_t h, w, c_in, c_out, kh, kw, sh, sw, dh, dw, valid;
  int32_t block; /* filterlet block size B (version 2); 0 = C_in (version 1) */
} layer_t;

static const layer_t k_layers[] = {BENCH_LAYERS};
static const int k_sparsity_pct[] = {BENCH_SPARSITY};

/* Sizes from bench_layers.h (the maxima over the selected layers); every use is
 * checked again below, so a table that lies fails loudly instead of overflowing. */
static BIG int8_t g_in[BENCH_MAX_IN];
static BIG int8_t g_w[BENCH_MAX_W];      /* dense filterlet-pruned filter (OHWI) */
static BIG int8_t g_values[BENCH_MAX_W]; /* FWCS values */
static BIG uint8_t g_bitmap[BENCH_MAX_FL / 8 + 8]; /* FL: filterlets or blocks */
static BIG uint8_t g_keep[BENCH_MAX_FL];
static BIG int32_t g_order[BENCH_MAX_FL];
static BIG int32_t g_bias[BENCH_MAX_OC], g_folded[BENCH_MAX_OC];
static BIG int32_t g_mult[BENCH_MAX_OC], g_shift[BENCH_MAX_OC];
static BIG int8_t g_out_dtmm[BENCH_MAX_OUT], g_out_ref[BENCH_MAX_OUT];
static BIG int32_t g_scratch[BENCH_MAX_SCRATCH / 4];
#ifdef BENCH_WITH_CSR
static BIG int8_t g_wcsr[BENCH_MAX_W];
static BIG int32_t g_worder[BENCH_MAX_W];
static BIG int32_t g_row_ptr[BENCH_MAX_OC + 1];
static BIG uint16_t g_col[BENCH_MAX_W];
static BIG int8_t g_val[BENCH_MAX_W];
static BIG int32_t g_folded_csr[BENCH_MAX_OC];
static BIG int8_t g_out_csr[BENCH_MAX_OUT], g_out_csr_ref[BENCH_MAX_OUT];
#endif

static uint32_t g_rng;
static uint32_t rng_next(void) {
  uint32_t x = g_rng;
  x ^= x << 13;
  x ^= x >> 17;
  x ^= x << 5;
  g_rng = x;
  return x;
}

static int g_calls, g_failures;
volatile int32_t g_sink;

static void fail_if(int cond, int32_t li, const char* what, long a, long b) {
  if (cond) {
    printf("ERROR layer %ld: %s (%ld > %ld)\n", (long)li, what, a, b);
    exit(1);
  }
}

static void label(int32_t li, int pct, const char* kernel, int32_t scratch, int32_t konst) {
  printf("CALL %d %ld %d %s %ld %ld\n", g_calls++, (long)li, pct, kernel, (long)scratch,
         (long)konst);
}

/* One call site per kernel; the store after the call keeps it from being a tail
 * call, so the instruction after the BL is the measurement's return site. */
__attribute__((noinline)) void measure_dtmm(const dtmm_conv_dims* d, const dtmm_conv_params* p,
                                            const dtmm_fwcs_filter* f, const int8_t* in,
                                            int8_t* out, void* scr) {
  g_sink = dtmm_conv_s8(d, p, f, in, out, scr);
}
#ifdef BENCH_WITH_CSR
__attribute__((noinline)) void measure_csr(const dtmm_conv_dims* d, const dtmm_conv_params* p,
                                           const dtmm_csr_filter* f, const int8_t* in,
                                           int8_t* out, void* scr) {
  g_sink = dtmm_csr_conv_s8(d, p, f, in, out, scr);
}
#endif
#ifdef BENCH_WITH_CMSIS
__attribute__((noinline)) void measure_cmsis(const cmsis_nn_context* ctx,
                                             const cmsis_nn_conv_params* cp,
                                             const cmsis_nn_per_channel_quant_params* qp,
                                             const cmsis_nn_dims* id, const int8_t* in,
                                             const cmsis_nn_dims* fd, const int8_t* w,
                                             const cmsis_nn_dims* bd, const int32_t* bias,
                                             const cmsis_nn_dims* od, int8_t* out) {
  g_sink = arm_convolve_wrapper_s8(ctx, cp, qp, id, in, fd, w, bd, bias, od, out);
}
#endif

/* TFLite reference_integer_ops::ConvPerChannel (unfolded bias, x - zp_in, padded
 * taps skipped); the check where CMSIS-NN is not available for a layer. */
static int32_t ref_requantize(int32_t acc, int32_t mult, int32_t shift) {
  const int32_t left = shift > 0 ? shift : 0, right = shift > 0 ? 0 : -shift;
  const int32_t x = (int32_t)((uint32_t)acc << left);
  const int64_t ab = (int64_t)x * mult;
  const int32_t nudge = ab >= 0 ? (1 << 30) : (1 - (1 << 30));
  const int32_t high = (int32_t)((ab + nudge) / ((int64_t)1 << 31));
  const int32_t mask = (int32_t)(((int64_t)1 << right) - 1);
  const int32_t rem = high & mask, thr = (mask >> 1) + (high < 0 ? 1 : 0);
  return (high >> right) + (rem > thr ? 1 : 0);
}
static void ref_conv(const dtmm_conv_dims* d, const dtmm_conv_params* p, const int8_t* in,
                     const int8_t* w, const int32_t* bias, int8_t* out) {
  int32_t y, x, oc, kh, kw, c;
  for (y = 0; y < d->output_h; ++y)
    for (x = 0; x < d->output_w; ++x)
      for (oc = 0; oc < d->output_c; ++oc) {
        uint32_t acc = (uint32_t)bias[oc];
        int32_t v;
        for (kh = 0; kh < d->kernel_h; ++kh)
          for (kw = 0; kw < d->kernel_w; ++kw) {
            const int32_t iy = y * p->stride_h - p->pad_top + kh * p->dilation_h;
            const int32_t ix = x * p->stride_w - p->pad_left + kw * p->dilation_w;
            const int8_t *xi, *wi;
            if (iy < 0 || iy >= d->input_h || ix < 0 || ix >= d->input_w) continue;
            xi = in + (iy * d->input_w + ix) * d->input_c;
            wi = w + ((oc * d->kernel_h + kh) * d->kernel_w + kw) * d->input_c;
            for (c = 0; c < d->input_c; ++c)
              acc += (uint32_t)(wi[c] * (xi[c] - p->input_zero_point));
          }
        v = (int32_t)((uint32_t)ref_requantize((int32_t)acc, g_mult[oc], g_shift[oc]) +
                      (uint32_t)p->output_offset);
        v = v < p->activation_min ? p->activation_min : v;
        v = v > p->activation_max ? p->activation_max : v;
        out[(y * d->output_w + x) * d->output_c + oc] = (int8_t)v;
      }
}

static void compare(const char* what, int32_t li, int pct, const int8_t* a, const int8_t* b,
                    int32_t n) {
  int32_t i;
  for (i = 0; i < n; ++i) {
    if (a[i] != b[i]) {
      printf("MISMATCH %s layer %ld s=%d at %ld: %d vs %d\n", what, (long)li, pct, (long)i, a[i],
             b[i]);
      g_failures++;
      return;
    }
  }
}

/* Fisher-Yates prefix: the first `count` of order[0..n) become a random subset. */
static void random_subset(int32_t* order, int32_t n, int32_t count) {
  int32_t i;
  for (i = 0; i < n; ++i) order[i] = i;
  for (i = 0; i < count; ++i) {
    const int32_t j = i + (int32_t)(rng_next() % (uint32_t)(n - i));
    const int32_t t = order[i];
    order[i] = order[j];
    order[j] = t;
  }
}

/* The reference output of the current weights: CMSIS-NN's when it takes the layer
 * (its call measured under `label`), else the harness's own conv. Returns 1 when
 * CMSIS-NN produced it. */
static int reference(int32_t li, int pct, const char* name, const dtmm_conv_dims* d,
                     const dtmm_conv_params* p, const int8_t* w, const int32_t* bias,
                     int8_t* out) {
#ifdef BENCH_WITH_CMSIS
  const layer_t* L = &k_layers[li];
  cmsis_nn_context ctx;
  cmsis_nn_conv_params cp;
  cmsis_nn_per_channel_quant_params qp;
  cmsis_nn_dims id = {1, L->h, L->w, L->c_in}, fdm = {L->c_out, L->kh, L->kw, L->c_in};
  cmsis_nn_dims bd = {1, 1, 1, L->c_out}, od = {1, d->output_h, d->output_w, L->c_out};
  cp.input_offset = -p->input_zero_point;
  cp.output_offset = p->output_offset;
  cp.stride.h = L->sh;
  cp.stride.w = L->sw;
  cp.padding.h = p->pad_top;
  cp.padding.w = p->pad_left;
  cp.dilation.h = L->dh;
  cp.dilation.w = L->dw;
  cp.activation.min = p->activation_min;
  cp.activation.max = p->activation_max;
  qp.multiplier = g_mult;
  qp.shift = g_shift;
  ctx.size = arm_convolve_wrapper_s8_get_buffer_size(&cp, &id, &fdm, &od);
  ctx.buf = ctx.size ? g_scratch : NULL;
  fail_if(ctx.size > BENCH_MAX_SCRATCH, li, "CMSIS-NN scratch", (long)ctx.size,
          (long)BENCH_MAX_SCRATCH);
  label(li, pct, name, ctx.size, d->output_c * d->kernel_h * d->kernel_w * d->input_c + 12 * d->output_c);
  measure_cmsis(&ctx, &cp, &qp, &id, g_in, &fdm, w, &bd, bias, &od, out);
  if (g_sink == 0) return 1;
  printf("NOTE layer %ld: arm_convolve_wrapper_s8 returned %ld\n", (long)li, (long)g_sink);
#else
  (void)li;
  (void)pct;
  (void)name;
#endif
  ref_conv(d, p, g_in, w, bias, out);
  return 0;
}

static void run_layer(int32_t li, int pct) {
  const layer_t* L = &k_layers[li];
  dtmm_conv_dims d;
  dtmm_conv_params p;
  dtmm_fwcs_filter f;
  const int32_t k = L->kh * L->kw, c = L->c_in, oc_n = L->c_out;
  /* one mask bit per filterlet, or per block of B channels: `unit` bytes each,
   * consecutive in the dense OHWI filter */
  const int32_t unit = L->block > 0 ? L->block : c;
  const int32_t nfl = oc_n * k * (c / unit), nw = oc_n * k * c;
  const int32_t eff_h = (L->kh - 1) * L->dh + 1, eff_w = (L->kw - 1) * L->dw + 1;
  int32_t i, oc, n_kept, n_in, n_out, pad_h, pad_w, scr, n_pruned;

  d.batches = 1;
  d.input_h = L->h;
  d.input_w = L->w;
  d.input_c = c;
  d.output_c = oc_n;
  d.kernel_h = L->kh;
  d.kernel_w = L->kw;
  if (L->valid) {
    d.output_h = (L->h - eff_h + L->sh) / L->sh;
    d.output_w = (L->w - eff_w + L->sw) / L->sw;
  } else {
    d.output_h = (L->h + L->sh - 1) / L->sh;
    d.output_w = (L->w + L->sw - 1) / L->sw;
  }
  pad_h = (d.output_h - 1) * L->sh + eff_h - L->h;
  pad_w = (d.output_w - 1) * L->sw + eff_w - L->w;
  p.version = unit < c ? 2 : 1;
  p.stride_h = L->sh;
  p.stride_w = L->sw;
  p.dilation_h = L->dh;
  p.dilation_w = L->dw;
  p.pad_top = pad_h > 0 ? pad_h / 2 : 0;
  p.pad_left = pad_w > 0 ? pad_w / 2 : 0;
  p.input_zero_point = -128;
  p.output_offset = -128;
  p.activation_min = -128;
  p.activation_max = 127;
  n_in = L->h * L->w * c;
  n_out = d.output_h * d.output_w * oc_n;
  fail_if(n_in > BENCH_MAX_IN, li, "input bytes", n_in, BENCH_MAX_IN);
  fail_if(n_out > BENCH_MAX_OUT, li, "output bytes", n_out, BENCH_MAX_OUT);
  fail_if(nw > BENCH_MAX_W, li, "filter bytes", nw, BENCH_MAX_W);
  fail_if(nfl > BENCH_MAX_FL, li, "filterlets", nfl, BENCH_MAX_FL);
  fail_if(oc_n > BENCH_MAX_OC, li, "output channels", oc_n, BENCH_MAX_OC);
  fail_if(nfl < 1 || n_in < 1 || n_out < 1, li, "empty layer", 1, 0);
  fail_if(c % unit != 0, li, "block size does not divide C_in", unit, c);

  g_rng = 0x1234567u + (uint32_t)li * 7919u + (uint32_t)pct * 104729u;
  for (i = 0; i < n_in; ++i) g_in[i] = (int8_t)(rng_next() >> 24);
  for (i = 0; i < nw; ++i) g_w[i] = (int8_t)(rng_next() >> 24);
  for (oc = 0; oc < oc_n; ++oc) {
    g_bias[oc] = (int32_t)(rng_next() % 20001u) - 10000;
    g_mult[oc] = (int32_t)(0x40000000u + (rng_next() >> 2));
    g_shift[oc] = -9 - (int32_t)(rng_next() % 5u);
  }
  /* Filterlet (block) mask: exactly round(s * C_out * K * C_in / unit) pruned. */
  n_pruned = (int32_t)(((int64_t)nfl * pct + 50) / 100);
  random_subset(g_order, nfl, n_pruned);
  memset(g_keep, 1, (size_t)nfl);
  for (i = 0; i < n_pruned; ++i) g_keep[g_order[i]] = 0;
  memset(g_bitmap, 0, (size_t)(nfl + 7) / 8);
  n_kept = 0;
  for (i = 0; i < nfl; ++i) {
    if (g_keep[i]) {
      g_bitmap[i >> 3] |= (uint8_t)(1u << (i & 7));
      memcpy(g_values + n_kept * unit, g_w + i * unit, (size_t)unit);
      n_kept++;
    } else {
      memset(g_w + i * unit, 0, (size_t)unit);
    }
  }
  /* Folded biases (contract input 3). */
  for (oc = 0; oc < oc_n; ++oc) {
    uint32_t s1 = 0;
    for (i = 0; i < k * c; ++i) s1 += (uint32_t)g_w[oc * k * c + i];
    g_folded[oc] = (int32_t)((uint32_t)g_bias[oc] - (uint32_t)p.input_zero_point * s1);
  }

  f.bitmap = g_bitmap;
  f.bitmap_bytes = (nfl + 7) / 8;
  f.values = g_values;
  f.num_filterlets = n_kept;
  f.bias = g_folded;
  f.multiplier = g_mult;
  f.shift = g_shift;
  f.block_size = unit < c ? unit : 0;
  if (dtmm_conv_s8_validate(&d, &p, &f) != DTMM_OK) {
    printf("ERROR layer %ld: dtmm_conv_s8_validate rejected it\n", (long)li);
    exit(1);
  }
  scr = dtmm_conv_s8_get_buffer_size(&d, &p);
  fail_if(scr > BENCH_MAX_SCRATCH, li, "dtmm scratch", scr, BENCH_MAX_SCRATCH);
  memset(g_out_dtmm, 0x5A, (size_t)n_out);
  label(li, pct, "dtmm", scr, f.bitmap_bytes + n_kept * unit + 12 * oc_n);
  measure_dtmm(&d, &p, &f, g_in, g_out_dtmm, g_scratch);

  memset(g_out_ref, 0x3C, (size_t)n_out);
  reference(li, pct, "cmsis_nn", &d, &p, g_w, g_bias, g_out_ref);
  compare("dtmm-vs-reference", li, pct, g_out_dtmm, g_out_ref, n_out);

#ifdef BENCH_WITH_CSR
  {
    dtmm_csr_filter fc;
    int32_t nnz = 0;
    const int32_t n_zero = (int32_t)(((int64_t)nw * pct + 50) / 100);
    /* Per-weight mask at the same weight sparsity, non-zero weights kept. */
    for (i = 0; i < nw; ++i) g_wcsr[i] = (int8_t)((rng_next() >> 24) | 1);
    random_subset(g_worder, nw, n_zero);
    for (i = 0; i < n_zero; ++i) g_wcsr[g_worder[i]] = 0;
    for (oc = 0; oc < oc_n; ++oc) {
      uint32_t s2 = 0;
      g_row_ptr[oc] = nnz;
      for (i = 0; i < k * c; ++i) {
        const int8_t v = g_wcsr[oc * k * c + i];
        s2 += (uint32_t)v;
        if (v) {
          g_col[nnz] = (uint16_t)i;
          g_val[nnz] = v;
          nnz++;
        }
      }
      g_folded_csr[oc] = (int32_t)((uint32_t)g_bias[oc] - (uint32_t)p.input_zero_point * s2);
    }
    g_row_ptr[oc_n] = nnz;
    fc.row_ptr = g_row_ptr;
    fc.col = g_col;
    fc.val = g_val;
    fc.bias = g_folded_csr;
    fc.multiplier = g_mult;
    fc.shift = g_shift;
    scr = dtmm_csr_conv_s8_get_buffer_size(&d);
    fail_if(scr > BENCH_MAX_SCRATCH, li, "csr scratch", scr, BENCH_MAX_SCRATCH);
    label(li, pct, "csr", scr, 4 * (oc_n + 1) + 3 * nnz + 12 * oc_n);
    measure_csr(&d, &p, &fc, g_in, g_out_csr, g_scratch);
    reference(li, pct, "check", &d, &p, g_wcsr, g_bias, g_out_csr_ref);
    compare("csr-vs-reference", li, pct, g_out_csr, g_out_csr_ref, n_out);
  }
#endif
}

int main(void) {
  size_t li, si;
  for (li = 0; li < sizeof(k_layers) / sizeof(k_layers[0]); ++li)
    for (si = 0; si < sizeof(k_sparsity_pct) / sizeof(k_sparsity_pct[0]); ++si)
      run_layer((int32_t)li, k_sparsity_pct[si]);
  printf("DONE calls=%d failures=%d\n", g_calls, g_failures);
  return g_failures ? 1 : 0;
}
