/* Cortex-M benchmark harness for bench/kernels (runs under qemu-system-arm).
 *
 * For every layer and filterlet sparsity it builds random int8 data (fixed seeds),
 * the FWCS filter (random filterlet mask with exactly round(s*C_out*K) pruned), a CSR
 * filter at the same weight sparsity (random per-weight mask), and calls each kernel
 * once from its own noinline call site: bench/kernels counts the instructions of
 * exactly those calls with the icount_calls TCG plugin. Before each measured call it
 * prints "CALL <n> <layer> <c_in> <sparsity%> <kernel> <scratch> <const>"; the n-th
 * plugin record is that call. Outputs are compared byte for byte (dense vs DTMM vs
 * CMSIS-NN on the same weights; CSR vs the dense kernel on the CSR weights), and any
 * mismatch fails the run.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "baselines.h"
#include "dtmm_conv_s8.h"

#ifdef DTMM_BENCH_CMSIS
#include "arm_nnfunctions.h"
#endif

#define BIG __attribute__((section(".big")))

typedef struct {
  const char* name;
  int32_t h, w, c_in, c_out, kh, kw, sh, sw, same;
} layer_t;

static const layer_t k_layers[] = {
    {"L1", 32, 32, 3, 32, 3, 3, 1, 1, 1},   {"L2", 16, 16, 64, 128, 3, 3, 1, 1, 1},
    {"L3", 8, 8, 128, 256, 3, 3, 1, 1, 1},  {"L4", 16, 16, 64, 64, 3, 3, 1, 1, 1},
    {"L5", 49, 1, 40, 32, 5, 1, 3, 1, 0},   {"L6", 16, 16, 64, 64, 1, 1, 1, 1, 0},
};
static const int k_sparsity_pct[] = {0, 25, 50, 75, 90};

#define MAX_IN (32 * 32 * 64)
#define MAX_OUT (32 * 32 * 256)
#define MAX_W (256 * 9 * 128)
#define MAX_OC 256
#define MAX_SCRATCH (64 * 1024)

static BIG int8_t g_in[MAX_IN];
static BIG int8_t g_w[MAX_W];      /* dense filterlet-pruned filter */
static BIG int8_t g_wcsr[MAX_W];   /* dense per-weight-pruned filter */
static BIG int8_t g_values[MAX_W]; /* FWCS values */
static BIG uint8_t g_bitmap[MAX_W / 8 + 8];
static BIG uint8_t g_keep[MAX_OC * 9];
static BIG int32_t g_order[MAX_W];
static BIG int32_t g_row_ptr[MAX_OC + 1];
static BIG uint16_t g_col[MAX_W];
static BIG int8_t g_val[MAX_W];
static BIG int32_t g_bias[MAX_OC], g_folded[MAX_OC], g_folded_csr[MAX_OC];
static BIG int32_t g_mult[MAX_OC], g_shift[MAX_OC];
static BIG int8_t g_out_dense[MAX_OUT], g_out_dtmm[MAX_OUT], g_out_csr[MAX_OUT];
static BIG int8_t g_out_check[MAX_OUT];
#ifdef DTMM_BENCH_CMSIS
static BIG int8_t g_out_cmsis[MAX_OUT];
#endif
static BIG int32_t g_scratch[MAX_SCRATCH / 4];

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

static void label(const layer_t* L, int pct, const char* kernel, int32_t scratch,
                  int32_t konst) {
  printf("CALL %d %s %ld %d %s %ld %ld\n", g_calls++, L->name, (long)L->c_in, pct, kernel,
         (long)scratch, (long)konst);
}

/* One call site per kernel; the store after the call keeps it from being a tail
 * call, so the instruction after the BL is the measurement's return site. */
__attribute__((noinline)) void measure_dtmm(const dtmm_conv_dims* d, const dtmm_conv_params* p,
                                            const dtmm_fwcs_filter* f, const int8_t* in,
                                            int8_t* out, void* scr) {
  g_sink = dtmm_conv_s8(d, p, f, in, out, scr);
}
__attribute__((noinline)) void measure_dense(const dtmm_conv_dims* d, const dtmm_conv_params* p,
                                             const dtmm_fwcs_filter* f, const int8_t* in,
                                             int8_t* out, void* scr) {
  g_sink = dtmm_dense_conv_s8(d, p, f, in, out, scr);
}
__attribute__((noinline)) void measure_csr(const dtmm_conv_dims* d, const dtmm_conv_params* p,
                                           const dtmm_csr_filter* f, const int8_t* in,
                                           int8_t* out, void* scr) {
  g_sink = dtmm_csr_conv_s8(d, p, f, in, out, scr);
}
#ifdef DTMM_BENCH_CMSIS
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

static void compare(const char* what, const layer_t* L, int pct, const int8_t* a,
                    const int8_t* b, int32_t n) {
  int32_t i;
  for (i = 0; i < n; ++i) {
    if (a[i] != b[i]) {
      printf("MISMATCH %s %s s=%d at %ld: %d vs %d\n", what, L->name, pct, (long)i, a[i], b[i]);
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

static void run_layer(const layer_t* L, int pct) {
  dtmm_conv_dims d;
  dtmm_conv_params p;
  dtmm_fwcs_filter f, fd;
  dtmm_csr_filter fc;
  const int32_t k = L->kh * L->kw, c = L->c_in, oc_n = L->c_out;
  const int32_t nfl = oc_n * k, nw = nfl * c;
  int32_t i, oc, n_kept, nnz, n_in, n_out, pad_h, pad_w, scr;

  d.batches = 1;
  d.input_h = L->h;
  d.input_w = L->w;
  d.input_c = c;
  d.output_c = oc_n;
  d.kernel_h = L->kh;
  d.kernel_w = L->kw;
  if (L->same) {
    d.output_h = (L->h + L->sh - 1) / L->sh;
    d.output_w = (L->w + L->sw - 1) / L->sw;
  } else {
    d.output_h = (L->h - L->kh + L->sh) / L->sh;
    d.output_w = (L->w - L->kw + L->sw) / L->sw;
  }
  pad_h = ((d.output_h - 1) * L->sh + L->kh - L->h);
  pad_w = ((d.output_w - 1) * L->sw + L->kw - L->w);
  p.version = DTMM_FORMAT_VERSION;
  p.stride_h = L->sh;
  p.stride_w = L->sw;
  p.dilation_h = p.dilation_w = 1;
  p.pad_top = pad_h > 0 ? pad_h / 2 : 0;
  p.pad_left = pad_w > 0 ? pad_w / 2 : 0;
  p.input_zero_point = -128;
  p.output_offset = -128;
  p.activation_min = -128;
  p.activation_max = 127;
  n_in = L->h * L->w * c;
  n_out = d.output_h * d.output_w * oc_n;

  g_rng = 0x1234567u + (uint32_t)(L - k_layers) * 7919u + (uint32_t)pct * 104729u;
  for (i = 0; i < n_in; ++i) g_in[i] = (int8_t)(rng_next() >> 24);
  for (i = 0; i < nw; ++i) g_w[i] = (int8_t)(rng_next() >> 24);
  memcpy(g_wcsr, g_w, (size_t)nw);
  for (oc = 0; oc < oc_n; ++oc) {
    g_bias[oc] = (int32_t)(rng_next() % 20001u) - 10000;
    g_mult[oc] = (int32_t)(0x40000000u + (rng_next() >> 2));
    g_shift[oc] = -9 - (int32_t)(rng_next() % 5u);
  }
  /* Filterlet mask: exactly round(s * C_out * K) pruned. */
  random_subset(g_order, nfl, (nfl * pct + 50) / 100);
  memset(g_keep, 1, (size_t)nfl);
  for (i = 0; i < (nfl * pct + 50) / 100; ++i) g_keep[g_order[i]] = 0;
  memset(g_bitmap, 0, (size_t)(nfl + 7) / 8);
  n_kept = 0;
  for (i = 0; i < nfl; ++i) {
    if (g_keep[i]) {
      g_bitmap[i >> 3] |= (uint8_t)(1u << (i & 7));
      memcpy(g_values + n_kept * c, g_w + i * c, (size_t)c);
      n_kept++;
    } else {
      memset(g_w + i * c, 0, (size_t)c);
    }
  }
  /* Per-weight mask at the same weight sparsity, non-zero weights kept. */
  random_subset(g_order, nw, (nw * pct + 50) / 100);
  for (i = 0; i < nw; ++i)
    if (g_wcsr[i] == 0) g_wcsr[i] = 1;
  for (i = 0; i < (nw * pct + 50) / 100; ++i) g_wcsr[g_order[i]] = 0;
  nnz = 0;
  for (oc = 0; oc < oc_n; ++oc) {
    g_row_ptr[oc] = nnz;
    for (i = 0; i < k * c; ++i) {
      const int8_t v = g_wcsr[oc * k * c + i];
      if (v) {
        g_col[nnz] = (uint16_t)i;
        g_val[nnz] = v;
        nnz++;
      }
    }
  }
  g_row_ptr[oc_n] = nnz;
  /* Folded biases (contract input 3). */
  for (oc = 0; oc < oc_n; ++oc) {
    int32_t s1 = 0, s2 = 0;
    for (i = 0; i < k * c; ++i) {
      s1 += g_w[oc * k * c + i];
      s2 += g_wcsr[oc * k * c + i];
    }
    g_folded[oc] = g_bias[oc] - p.input_zero_point * s1;
    g_folded_csr[oc] = g_bias[oc] - p.input_zero_point * s2;
  }

  f.bitmap = g_bitmap;
  f.bitmap_bytes = (nfl + 7) / 8;
  f.values = g_values;
  f.num_filterlets = n_kept;
  f.bias = g_folded;
  f.multiplier = g_mult;
  f.shift = g_shift;
  if (dtmm_conv_s8_validate(&d, &p, &f) != DTMM_OK) {
    printf("MISMATCH validate %s\n", L->name);
    g_failures++;
    return;
  }
  fd = f;
  fd.values = g_w;
  fd.num_filterlets = nfl;
  fc.row_ptr = g_row_ptr;
  fc.col = g_col;
  fc.val = g_val;
  fc.bias = g_folded_csr;
  fc.multiplier = g_mult;
  fc.shift = g_shift;

  scr = dtmm_dense_conv_s8_get_buffer_size(&d, &p);
  label(L, pct, "dense", scr, nw + 12 * oc_n);
  measure_dense(&d, &p, &fd, g_in, g_out_dense, g_scratch);

  scr = dtmm_conv_s8_get_buffer_size(&d, &p);
  label(L, pct, "dtmm", scr, f.bitmap_bytes + n_kept * c + 12 * oc_n);
  measure_dtmm(&d, &p, &f, g_in, g_out_dtmm, g_scratch);
  compare("dtmm-vs-dense", L, pct, g_out_dtmm, g_out_dense, n_out);

  scr = dtmm_csr_conv_s8_get_buffer_size(&d);
  label(L, pct, "csr", scr, 4 * (oc_n + 1) + 3 * nnz + 12 * oc_n);
  measure_csr(&d, &p, &fc, g_in, g_out_csr, g_scratch);
  fd.values = g_wcsr;
  fd.bias = g_folded_csr;
  label(L, pct, "check", 0, 0); /* dense on the CSR weights: verification only */
  measure_dense(&d, &p, &fd, g_in, g_out_check, g_scratch);
  compare("csr-vs-dense", L, pct, g_out_csr, g_out_check, n_out);

#ifdef DTMM_BENCH_CMSIS
  {
    cmsis_nn_context ctx;
    cmsis_nn_conv_params cp;
    cmsis_nn_per_channel_quant_params qp;
    cmsis_nn_dims id = {1, L->h, L->w, c}, fdm = {oc_n, L->kh, L->kw, c};
    cmsis_nn_dims bd = {1, 1, 1, oc_n}, od = {1, d.output_h, d.output_w, oc_n};
    cp.input_offset = -p.input_zero_point;
    cp.output_offset = p.output_offset;
    cp.stride.h = L->sh;
    cp.stride.w = L->sw;
    cp.padding.h = p.pad_top;
    cp.padding.w = p.pad_left;
    cp.dilation.h = cp.dilation.w = 1;
    cp.activation.min = p.activation_min;
    cp.activation.max = p.activation_max;
    qp.multiplier = g_mult;
    qp.shift = g_shift;
    ctx.size = arm_convolve_wrapper_s8_get_buffer_size(&cp, &id, &fdm, &od);
    ctx.buf = ctx.size ? g_scratch : NULL;
    if (ctx.size > MAX_SCRATCH) {
      printf("MISMATCH cmsis scratch too big\n");
      g_failures++;
      return;
    }
    memset(g_out_cmsis, 0, (size_t)n_out);
    label(L, pct, "cmsis_nn", ctx.size, nw + 12 * oc_n);
    measure_cmsis(&ctx, &cp, &qp, &id, g_in, &fdm, g_w, &bd, g_bias, &od, g_out_cmsis);
    if (g_sink != 0) {
      printf("MISMATCH cmsis status %ld %s\n", (long)g_sink, L->name);
      g_failures++;
    }
    compare("cmsis-vs-dense", L, pct, g_out_cmsis, g_out_dense, n_out);
  }
#endif
}

int main(void) {
  size_t li, si;
  for (li = 0; li < sizeof(k_layers) / sizeof(k_layers[0]); ++li)
    for (si = 0; si < sizeof(k_sparsity_pct) / sizeof(k_sparsity_pct[0]); ++si)
      run_layer(&k_layers[li], k_sparsity_pct[si]);
  printf("DONE calls=%d failures=%d\n", g_calls, g_failures);
  return g_failures ? 1 : 0;
}
