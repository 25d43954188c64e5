/* Cortex-M benchmark harness for bench/fc_kernels (runs under qemu-system-arm).
 *
 * bench/fc_kernels generates fc_layers.h (the (layer, block size) rows, sparsities
 * and buffer sizes) and builds this file against it. For every row and block
 * sparsity the harness makes random int8 data (fixed seeds), prunes exactly
 * round(s * C_out * C_in / B) random blocks, packs the weights, and calls
 * dtmm_fc_s8 and CMSIS-NN's arm_fully_connected_s8 (per-tensor; kernel sums
 * precomputed outside the call, as TFLM's speed build does in Prepare) on the same
 * weights, each from its own noinline call site. Before each measured call it prints
 *   "CALL <n> <row index> <sparsity %> <kernel> <scratch bytes> <const bytes>"
 * and the n-th plugin record is that call. The outputs must be equal byte for byte
 * ("MISMATCH" fails the run).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arm_nnfunctions.h"
#include "dtmm_fc_s8.h"
#include "fc_layers.h"

#define BIG __attribute__((section(".big"), aligned(16)))

typedef struct {
  int32_t batches, c_in, c_out, block;
} row_t;

static const row_t k_rows[] = {FC_ROWS};
static const int k_sparsity_pct[] = {FC_SPARSITY};

static BIG int8_t g_in[FC_MAX_IN];
static BIG int8_t g_w[FC_MAX_W];
static BIG int8_t g_packed[FC_MAX_W + FC_MAX_BITMAP];
static BIG uint8_t g_drop[FC_MAX_BLOCKS];
static BIG int32_t g_order[FC_MAX_BLOCKS];
static BIG int32_t g_bias[FC_MAX_OC], g_q[3 * FC_MAX_OC], g_sums[FC_MAX_OC];
static BIG int8_t g_out_dtmm[FC_MAX_OUT], g_out_cmsis[FC_MAX_OUT];
static BIG int32_t g_scratch[FC_MAX_SCRATCH / 4];

static uint32_t g_rng;
static uint32_t rng_next(void) {
  uint32_t x = g_rng;
  x ^= x << 13;
  x ^= x >> 17;
  x ^= x << 5;
  g_rng = x;
  return x;
}

static int g_calls;
volatile int32_t g_sink; /* written after each measured call: no tail call */

__attribute__((noinline)) void measure_dtmm_fc(const dtmm_fc_dims* d, const dtmm_fc_params* p,
                                               const dtmm_fc_filter* f, const int8_t* in,
                                               int8_t* out, void* scratch) {
  dtmm_fc_s8(d, p, f, in, out, scratch);
  g_sink = out[0];
}

__attribute__((noinline)) void measure_cmsis_fc(
    const cmsis_nn_context* ctx, const cmsis_nn_fc_params* fp,
    const cmsis_nn_per_tensor_quant_params* qp, const cmsis_nn_dims* id, const int8_t* in,
    const cmsis_nn_dims* fd, const int8_t* w, const cmsis_nn_dims* bd, const int32_t* bias,
    const cmsis_nn_dims* od, int8_t* out) {
  if (arm_fully_connected_s8(ctx, fp, qp, id, in, fd, w, bd, bias, od, out) !=
      ARM_CMSIS_NN_SUCCESS) {
    printf("ERROR arm_fully_connected_s8 rejected a layer\n");
    exit(1);
  }
}

static int32_t pack(const row_t* r, int32_t bm_bytes) {
  const int32_t nb = r->c_in / r->block;
  int32_t b, n = bm_bytes;
  memset(g_packed, 0, (size_t)bm_bytes);
  for (b = 0; b < r->c_out * nb; ++b) {
    if (g_drop[b]) continue;
    g_packed[b >> 3] = (int8_t)((uint8_t)g_packed[b >> 3] | (1u << (b & 7)));
    memcpy(g_packed + n, g_w + (b / nb) * r->c_in + (b % nb) * r->block, (size_t)r->block);
    n += r->block;
  }
  return n;
}

static void run_row(int32_t ri) {
  const row_t* r = &k_rows[ri];
  const int32_t nb = r->c_in / r->block, blocks = r->c_out * nb;
  const int32_t zp_in = 7, zp_out = -3, mult = 1374389535, shift = -9;
  size_t si;
  int32_t i, c;
  for (si = 0; si < sizeof(k_sparsity_pct) / sizeof(k_sparsity_pct[0]); ++si) {
    const int pct = k_sparsity_pct[si];
    const int32_t n_drop = (int32_t)(((int64_t)pct * blocks + 50) / 100);
    dtmm_fc_dims d;
    dtmm_fc_params p;
    dtmm_fc_filter f;
    cmsis_nn_context ctx;
    cmsis_nn_fc_params fp;
    cmsis_nn_per_tensor_quant_params qp;
    cmsis_nn_dims id, fd, bd, od;
    int32_t w_bytes, scratch;
    g_rng = 0x9E3779B9u ^ (uint32_t)(ri * 131 + pct);
    for (i = 0; i < r->batches * r->c_in; ++i) g_in[i] = (int8_t)(rng_next() >> 24);
    for (i = 0; i < r->c_out * r->c_in; ++i) {
      g_w[i] = (int8_t)(rng_next() >> 24);
      if (g_w[i] == 0) g_w[i] = 1; /* every kept block stays kept */
    }
    for (i = 0; i < blocks; ++i) {
      g_order[i] = i;
      g_drop[i] = 0;
    }
    for (i = 0; i < n_drop; ++i) { /* partial Fisher-Yates: n_drop random blocks */
      const int32_t j = i + (int32_t)(rng_next() % (uint32_t)(blocks - i));
      const int32_t t = g_order[i];
      g_order[i] = g_order[j];
      g_order[j] = t;
      g_drop[g_order[i]] = 1;
      memset(g_w + (g_order[i] / nb) * r->c_in + (g_order[i] % nb) * r->block, 0,
             (size_t)r->block);
    }
    for (i = 0; i < r->c_out; ++i) {
      uint32_t s = 0;
      g_bias[i] = (int32_t)(rng_next() >> 18) - 8192;
      for (c = 0; c < r->c_in; ++c) s += (uint32_t)g_w[i * r->c_in + c];
      g_q[3 * i] = (int32_t)((uint32_t)g_bias[i] - (uint32_t)zp_in * s);
      g_q[3 * i + 1] = mult;
      g_q[3 * i + 2] = shift;
    }
    d.batches = r->batches;
    d.input_c = r->c_in;
    d.output_c = r->c_out;
    d.block = r->block;
    w_bytes = pack(r, dtmm_fc_s8_bitmap_bytes(&d));
    p.version = DTMM_FC_FORMAT_VERSION;
    p.output_offset = zp_out;
    p.activation_min = -128;
    p.activation_max = 127;
    f.w = g_packed;
    f.w_bytes = w_bytes;
    f.q = g_q;
    if (dtmm_fc_s8_validate(&d, &p, &f) != DTMM_OK) {
      printf("ERROR row %ld: validate failed\n", (long)ri);
      exit(1);
    }
    scratch = dtmm_fc_s8_get_buffer_size(&d);
    if (scratch > FC_MAX_SCRATCH) {
      printf("ERROR row %ld: scratch %ld > %d\n", (long)ri, (long)scratch, FC_MAX_SCRATCH);
      exit(1);
    }
    { /* what the latency model of dtmm.core.fc reads: kept blocks, runs, full rows */
      int32_t kept = 0, runs = 0, full = 0, oc, j;
      for (oc = 0; oc < r->c_out; ++oc) {
        int32_t row_kept = 0;
        for (j = 0; j < nb; ++j) {
          if (g_drop[oc * nb + j]) continue;
          row_kept++;
          if (j == 0 || g_drop[oc * nb + j - 1]) runs++;
        }
        kept += row_kept;
        full += row_kept == nb;
      }
      printf("STATS %d %ld %ld %ld\n", g_calls, (long)kept, (long)runs, (long)full);
    }
    printf("CALL %d %ld %d dtmm %ld %ld\n", g_calls++, (long)ri, pct, (long)scratch,
           (long)(w_bytes + 12 * r->c_out));
    measure_dtmm_fc(&d, &p, &f, g_in, g_out_dtmm, g_scratch);

    id.n = r->batches;
    id.h = id.w = 1;
    id.c = r->c_in;
    fd.n = r->c_in;
    fd.h = fd.w = 1;
    fd.c = r->c_out;
    bd.n = bd.h = bd.w = 1;
    bd.c = r->c_out;
    od.n = r->batches;
    od.h = od.w = 1;
    od.c = r->c_out;
    fp.input_offset = -zp_in;
    fp.filter_offset = 0;
    fp.output_offset = zp_out;
    fp.activation.min = -128;
    fp.activation.max = 127;
    qp.multiplier = mult;
    qp.shift = shift;
    ctx.size = arm_fully_connected_s8_get_buffer_size(&fd);
    ctx.buf = NULL;
    if (ctx.size > 0) {
      if (ctx.size > (int32_t)sizeof(g_sums)) {
        printf("ERROR row %ld: CMSIS-NN buffer %ld\n", (long)ri, (long)ctx.size);
        exit(1);
      }
      arm_vector_sum_s8(g_sums, r->c_in, r->c_out, g_w, -zp_in, 0, g_bias);
      ctx.buf = g_sums;
    }
    printf("CALL %d %ld %d cmsis_nn %ld %ld\n", g_calls++, (long)ri, pct, (long)ctx.size,
           (long)(r->c_in * r->c_out + 4 * r->c_out));
    measure_cmsis_fc(&ctx, &fp, &qp, &id, g_in, &fd, g_w, &bd, g_bias, &od, g_out_cmsis);
    for (i = 0; i < r->batches * r->c_out; ++i)
      if (g_out_dtmm[i] != g_out_cmsis[i]) {
        printf("MISMATCH row %ld s=%d at %ld: dtmm %d cmsis %d\n", (long)ri, pct, (long)i,
               g_out_dtmm[i], g_out_cmsis[i]);
        exit(1);
      }
  }
}

int main(void) {
  int32_t ri;
  for (ri = 0; ri < (int32_t)(sizeof(k_rows) / sizeof(k_rows[0])); ++ri) run_row(ri);
  printf("DONE %d calls\n", g_calls);
  return 0;
}
