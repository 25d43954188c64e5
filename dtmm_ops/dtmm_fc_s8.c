/* dtmm_fc_s8 (contract in dtmm_fc_s8.h): block-sparse int8 fully connected.
 *
 * A row's kept blocks are walked as maximal runs of consecutive blocks: the kept
 * blocks of a run are consecutive in w and read consecutive input, so each run is
 * one dense MAC loop of the shared support header (dtmm_conv_s8_support.h):
 *   - batches in groups of DTMM_P input rows: dtmm_mac_p (weights loaded once for
 *     the group, as CMSIS-NN's 1x1 conv does for pixels);
 *   - one input row, MVE: groups of 4 output rows with the same bitmap row (every
 *     dense layer) through dtmm_mac_1x4 (input loaded once for the 4 rows), else
 *     dtmm_mac_1 per row;
 *   - one input row, DSP: the row widened once to SXTB16 pairs in scratch, so a
 *     block costs LDR + 2 SXTB16 + LDRD + 2 SMLAD per 4 MACs (CMSIS-NN's two-row
 *     loop: 7.5 per 4 MACs and row);
 *   - portable: dtmm_mac_1 per row.
 */
#include "dtmm_fc_s8.h"

#include <stddef.h>

#include "dtmm_conv_s8_support.h"

/* Iterator over the maximal runs of set bits of one bitmap row (nb bits from bit
 * pos), read 32 at a time; a run that reaches the end of a word continues into
 * the next. */
typedef struct {
  const uint8_t* bm;
  int32_t bm_bytes, pos, nb;
  int32_t next;  /* first block of the next word to load */
  int32_t base;  /* block of bit 0 of m */
  int32_t width; /* bits of the loaded word */
  uint32_t m;    /* unvisited bits of the loaded word */
} fc_runs;

DTMM_INLINE void fc_runs_init(fc_runs* r, const uint8_t* bm, int32_t bm_bytes, int32_t pos,
                              int32_t nb) {
  r->bm = bm;
  r->bm_bytes = bm_bytes;
  r->pos = pos;
  r->nb = nb;
  r->next = 0;
  r->base = 0;
  r->width = 0;
  r->m = 0;
}

/* The next run: its first block in *start, its length returned (0: no more). */
DTMM_INLINE int32_t fc_next_run(fc_runs* r, int32_t* start) {
  int32_t s = 0, len = 0;
  for (;;) {
    int32_t t0, ones;
    uint32_t x;
    if (r->m == 0) {
      if (r->next >= r->nb) break;
      r->base = r->next;
      r->width = r->nb - r->next < 32 ? r->nb - r->next : 32;
      r->m = dtmm_bits(r->bm, r->bm_bytes, r->pos + r->next, r->width);
      r->next += r->width;
      if (r->m == 0) {
        if (len) break;
        continue;
      }
    }
    t0 = DTMM_CTZ(r->m);
    if (len && r->base + t0 != s + len) break; /* a gap: this run ends */
    x = r->m >> t0;
    ones = x == 0xFFFFFFFFu ? 32 : DTMM_CTZ(~x);
    if (len == 0) s = r->base + t0;
    len += ones;
    r->m = (t0 + ones) >= 32 ? 0u : r->m & (0xFFFFFFFFu << (t0 + ones));
    if (r->m != 0 || t0 + ones < r->width) break; /* ends inside this word */
  }
  *start = s;
  return len;
}

DTMM_INLINE int8_t fc_out(int32_t acc, const int32_t* q, const dtmm_fc_params* p) {
  return dtmm_out_s8(dtmm_requantize(acc, q[1], q[2]), p->output_offset, p->activation_min,
                     p->activation_max);
}

#if defined(DTMM_ARCH_MVE)
/* Blocks kept in row oc (popcount of its nb bits). */
static int32_t fc_row_kept(const uint8_t* bm, int32_t bm_bytes, int32_t pos, int32_t nb) {
  int32_t c, n = 0;
  for (c = 0; c < nb; c += 32) {
    uint32_t m = dtmm_bits(bm, bm_bytes, pos + c, nb - c < 32 ? nb - c : 32);
    while (m) {
      m &= m - 1u;
      n++;
    }
  }
  return n;
}
#endif

/* DTMM_P input rows at x (pitch C_in) against every output row. */
static void fc_group(const dtmm_fc_dims* d, const dtmm_fc_params* p, const dtmm_fc_filter* f,
                     int32_t bm_bytes, const int8_t* x, int8_t* out) {
  const uint8_t* bm = (const uint8_t*)f->w;
  const int8_t* wp = f->w + bm_bytes;
  const int32_t nb = d->input_c / d->block, bk = d->block;
  int32_t oc, j;
  for (oc = 0; oc < d->output_c; ++oc) {
    const int32_t* q = f->q + 3 * oc;
    fc_runs r;
    int32_t s, len;
    dtmm_acc acc;
    dtmm_acc_set(&acc, q[0]);
    fc_runs_init(&r, bm, bm_bytes, oc * nb, nb);
    while ((len = fc_next_run(&r, &s)) > 0) {
      dtmm_mac_p(wp, x + s * bk, d->input_c, len * bk, &acc);
      wp += len * bk;
    }
    for (j = 0; j < DTMM_P; ++j) out[j * d->output_c + oc] = fc_out(acc.a[j], q, p);
  }
}

/* One row through dtmm_mac_1 per run; returns w after the row's blocks. */
DTMM_INLINE const int8_t* fc_row(const uint8_t* bm, int32_t bm_bytes, int32_t pos,
                                 int32_t nb, int32_t bk, const int8_t* wp, const int8_t* x,
                                 int32_t* acc) {
  fc_runs r;
  int32_t s, len, a = *acc;
  fc_runs_init(&r, bm, bm_bytes, pos, nb);
  while ((len = fc_next_run(&r, &s)) > 0) {
    a = dtmm_mac_1(wp, x + s * bk, len * bk, a);
    wp += len * bk;
  }
  *acc = a;
  return wp;
}

#if defined(DTMM_ARCH_MVE)
/* True when rows oc..oc+3 have the same bitmap row. */
static int fc_same_rows4(const uint8_t* bm, int32_t bm_bytes, int32_t pos, int32_t nb) {
  int32_t c;
  for (c = 0; c < nb; c += 32) {
    const int32_t n = nb - c < 32 ? nb - c : 32;
    const uint32_t m0 = dtmm_bits(bm, bm_bytes, pos + c, n);
    if (dtmm_bits(bm, bm_bytes, pos + nb + c, n) != m0 ||
        dtmm_bits(bm, bm_bytes, pos + 2 * nb + c, n) != m0 ||
        dtmm_bits(bm, bm_bytes, pos + 3 * nb + c, n) != m0)
      return 0;
  }
  return 1;
}
#endif

#if defined(DTMM_ARCH_DSP)
/* x[0 .. 4*quads) as SXTB16 pairs: word 2i = bytes (0, 2), word 2i+1 = bytes (1, 3)
 * of input word i (the halves dtmm_mac_1 pairs the weights with). */
static void fc_widen(const int8_t* x, int32_t quads, uint32_t* xw) {
  while (quads-- > 0) {
    const uint32_t v = dtmm_read_u32(x);
    xw[0] = __sxtb16(v);
    xw[1] = dtmm_sxtb16_ror8(v);
    xw += 2;
    x += 4;
  }
}

/* s += w . x over 4 * quads bytes, x pre-widened at xw (LDRD: xw is 8-aligned). */
DTMM_INLINE int32_t fc_mac_widened(const int8_t* w, const uint32_t* xw, int32_t quads,
                                   int32_t s) {
#if defined(__OPTIMIZE__)
  uint32_t wv, wv2, a, b, t;
  if (quads & 1) {
    __asm volatile(
        "ldr %[wv], [%[w]], #4\n\t"
        "ldrd %[a], %[b], [%[xw]], #8\n\t"
        "sxtb16 %[t], %[wv]\n\t"
        "smlad %[s], %[t], %[a], %[s]\n\t"
        "sxtb16 %[t], %[wv], ror #8\n\t"
        "smlad %[s], %[t], %[b], %[s]\n\t"
        : [s] "+r"(s), [w] "+r"(w), [xw] "+r"(xw), [wv] "=&r"(wv), [a] "=&r"(a),
          [b] "=&r"(b), [t] "=&r"(t)
        : "i"(0) DTMM_ASM_READS(w) DTMM_ASM_READS(xw)
        : "cc" DTMM_ASM_MEMORY);
  }
  quads >>= 1;
  if (quads > 0) {
    __asm volatile(
        "1:\n\t"
        "ldr %[wv], [%[w]], #4\n\t"
        "ldr %[wv2], [%[w]], #4\n\t"
        "ldrd %[a], %[b], [%[xw]], #8\n\t"
        "sxtb16 %[t], %[wv]\n\t"
        "smlad %[s], %[t], %[a], %[s]\n\t"
        "sxtb16 %[t], %[wv], ror #8\n\t"
        "smlad %[s], %[t], %[b], %[s]\n\t"
        "ldrd %[a], %[b], [%[xw]], #8\n\t"
        "sxtb16 %[t], %[wv2]\n\t"
        "smlad %[s], %[t], %[a], %[s]\n\t"
        "sxtb16 %[t], %[wv2], ror #8\n\t"
        "smlad %[s], %[t], %[b], %[s]\n\t"
        "subs %[q], %[q], #1\n\t"
        "bne 1b\n"
        : [s] "+r"(s), [w] "+r"(w), [xw] "+r"(xw), [q] "+r"(quads), [wv] "=&r"(wv),
          [wv2] "=&r"(wv2), [a] "=&r"(a), [b] "=&r"(b), [t] "=&r"(t)
        : "i"(0) DTMM_ASM_READS(w) DTMM_ASM_READS(xw)
        : "cc" DTMM_ASM_MEMORY);
  }
#else
  while (quads-- > 0) {
    const uint32_t wv = dtmm_read_u32(w);
    s = __smlad(dtmm_sxtb16_ror8(wv), xw[1], __smlad(__sxtb16(wv), xw[0], s));
    w += 4;
    xw += 2;
  }
#endif
  return s;
}

/* One row over the widened input (B % 4 == 0, or one block per row). */
DTMM_INLINE const int8_t* fc_row_widened(const uint8_t* bm, int32_t bm_bytes, int32_t pos,
                                         int32_t nb, int32_t bk, const int8_t* wp,
                                         const int8_t* x, const uint32_t* xw, int32_t* acc) {
  fc_runs r;
  int32_t s, len, a = *acc;
  fc_runs_init(&r, bm, bm_bytes, pos, nb);
  while ((len = fc_next_run(&r, &s)) > 0) {
    const int32_t n = len * bk, quads = n >> 2, c0 = s * bk;
    a = fc_mac_widened(wp, xw + (c0 >> 1), quads, a);
    if (n & 3) a = dtmm_mac_1(wp + 4 * quads, x + c0 + 4 * quads, n & 3, a);
    wp += n;
  }
  *acc = a;
  return wp;
}
#endif

/* One input row at x against every output row. */
static void fc_single(const dtmm_fc_dims* d, const dtmm_fc_params* p, const dtmm_fc_filter* f,
                      int32_t bm_bytes, const int8_t* x, int8_t* out, void* scratch) {
  const uint8_t* bm = (const uint8_t*)f->w;
  const int8_t* wp = f->w + bm_bytes;
  const int32_t nb = d->input_c / d->block, bk = d->block;
  int32_t oc = 0;
#if defined(DTMM_ARCH_DSP)
  if (scratch != NULL && ((uintptr_t)scratch & 7u) == 0 && d->input_c >= 8 &&
      (bk % 4 == 0 || nb == 1)) {
    uint32_t* xw = (uint32_t*)scratch;
    fc_widen(x, d->input_c >> 2, xw);
    for (; oc < d->output_c; ++oc) {
      int32_t acc = f->q[3 * oc];
      wp = fc_row_widened(bm, bm_bytes, oc * nb, nb, bk, wp, x, xw, &acc);
      out[oc] = fc_out(acc, f->q + 3 * oc, p);
    }
    return;
  }
#else
  (void)scratch;
#endif
#if defined(DTMM_ARCH_MVE)
  while (oc + 4 <= d->output_c) {
    const int32_t pos = oc * nb;
    int32_t a[4], j;
    if (!fc_same_rows4(bm, bm_bytes, pos, nb)) {
      for (j = 0; j < 4; ++j) {
        a[j] = f->q[3 * (oc + j)];
        wp = fc_row(bm, bm_bytes, pos + j * nb, nb, bk, wp, x, &a[j]);
      }
    } else {
      const int32_t row = fc_row_kept(bm, bm_bytes, pos, nb) * bk;
      fc_runs r;
      int32_t s, len, done = 0;
      for (j = 0; j < 4; ++j) a[j] = f->q[3 * (oc + j)];
      fc_runs_init(&r, bm, bm_bytes, pos, nb);
      while ((len = fc_next_run(&r, &s)) > 0) {
        const int8_t* w0 = wp + done;
        dtmm_mac_1x4(w0, w0 + row, w0 + 2 * row, w0 + 3 * row, x + s * bk, len * bk, a);
        done += len * bk;
      }
      wp += 4 * row;
    }
    for (j = 0; j < 4; ++j) out[oc + j] = fc_out(a[j], f->q + 3 * (oc + j), p);
    oc += 4;
  }
#endif
  for (; oc < d->output_c; ++oc) {
    int32_t acc = f->q[3 * oc];
    wp = fc_row(bm, bm_bytes, oc * nb, nb, bk, wp, x, &acc);
    out[oc] = fc_out(acc, f->q + 3 * oc, p);
  }
}

void dtmm_fc_s8(const dtmm_fc_dims* dims, const dtmm_fc_params* params,
                const dtmm_fc_filter* filter, const int8_t* input, int8_t* output,
                void* scratch) {
  const int32_t bm_bytes = dtmm_fc_s8_bitmap_bytes(dims);
  int32_t n = 0;
  for (; n + DTMM_P <= dims->batches; n += DTMM_P)
    fc_group(dims, params, filter, bm_bytes, input + n * dims->input_c,
             output + n * dims->output_c);
  for (; n < dims->batches; ++n)
    fc_single(dims, params, filter, bm_bytes, input + n * dims->input_c,
              output + n * dims->output_c, scratch);
}
