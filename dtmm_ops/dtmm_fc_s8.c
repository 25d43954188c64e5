/* dtmm_fc_s8 (contract in dtmm_fc_s8.h): block-sparse int8 fully connected.
 *
 * A row's bitmap is read 32 blocks at a time and walked as runs of consecutive
 * kept blocks: the blocks of a run are consecutive in w and read consecutive
 * input, so each run is one dense MAC loop of the shared support header
 * (dtmm_conv_s8_support.h):
 *   - batches in groups of DTMM_P input rows: dtmm_mac_p (weights loaded once for
 *     the group, as CMSIS-NN's 1x1 conv does for pixels);
 *   - one input row, MVE: 4 output rows at a time; rows with the same bitmap row
 *     (every dense layer) through dtmm_mac_1x4 (input loaded once for the 4),
 *     else per row a dense loop when it is fully kept, one VMLADAVA per set bit
 *     when B = 16, dtmm_mac_1 per run otherwise; one vector requantization for
 *     the 4 channels;
 *   - one input row, DSP: the row widened once to SXTB16 pairs in scratch, so 4
 *     MACs cost LDR + LDRD + 2 SXTB16 + 2 SMLAD (CMSIS-NN's two-row loop: 7.5
 *     instructions per 4 MACs and row);
 *   - portable: dtmm_mac_1 per run.
 */
#include "dtmm_fc_s8.h"

#include <stddef.h>

#include "dtmm_conv_s8_support.h"

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

/* The next run of the one-word row m (m != 0): first bit *t, returns its length
 * and clears it (adding the lowest set bit carries through the run; a run up to
 * bit 31 carries out to 0). */
DTMM_INLINE int32_t fc_word_run(uint32_t* m, int32_t* t) {
  const uint32_t low = *m & (0u - *m);
  const uint32_t nxt = *m + low;
  const int32_t t0 = DTMM_CTZ(*m);
  *m &= nxt;
  *t = t0;
  return (nxt ? DTMM_CTZ(nxt) : 32) - t0;
}

/* DTMM_P input rows at x (pitch C_in) against every output row. Out of line: inlined
 * into dtmm_fc_s8, gcc 12 -O3 finds no registers for the MVE MAC loop's operands. */
static DTMM_NOINLINE void fc_group(const dtmm_fc_dims* d, const dtmm_fc_params* p,
                                   const dtmm_fc_filter* f, int32_t bm_bytes, const int8_t* x,
                                   int8_t* out) {
  const uint8_t* bm = (const uint8_t*)f->w;
  const int8_t* wp = f->w + bm_bytes;
  const int32_t nb = d->input_c / d->block, bk = d->block;
  int32_t oc, j;
  for (oc = 0; oc < d->output_c; ++oc) {
    const int32_t* q = f->q + 3 * oc;
    int32_t s, len, c;
    dtmm_acc acc;
    dtmm_acc_set(&acc, q[0]);
    for (c = 0; c < nb; c += 32) {
      uint32_t m = dtmm_bits(bm, bm_bytes, oc * nb + c, nb - c < 32 ? nb - c : 32);
      while (m) {
        len = fc_word_run(&m, &s) * bk;
        dtmm_mac_p(wp, x + (c + s) * bk, d->input_c, len, &acc);
        wp += len;
      }
    }
    for (j = 0; j < DTMM_P; ++j) out[j * d->output_c + oc] = fc_out(acc.a[j], q, p);
  }
}

/* One row through dtmm_mac_1 per run; returns w after the row's blocks. */
DTMM_INLINE const int8_t* fc_row(const uint8_t* bm, int32_t bm_bytes, int32_t pos,
                                 int32_t nb, int32_t bk, const int8_t* wp, const int8_t* x,
                                 int32_t* acc) {
  int32_t s, len, c, a = *acc;
  for (c = 0; c < nb; c += 32) {
    uint32_t m = dtmm_bits(bm, bm_bytes, pos + c, nb - c < 32 ? nb - c : 32);
    while (m) {
      len = fc_word_run(&m, &s) * bk;
      a = dtmm_mac_1(wp, x + (c + s) * bk, len, a);
      wp += len;
    }
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


/* Four rows with the same bitmap row (row bytes each, from wp) over their runs. */
static void fc_rows4_same(const uint8_t* bm, int32_t bm_bytes, int32_t pos, int32_t nb,
                          int32_t bk, const int8_t* wp, int32_t row, const int8_t* x,
                          int32_t* a) {
  int32_t s, len, c;
  for (c = 0; c < nb; c += 32) {
    uint32_t m = dtmm_bits(bm, bm_bytes, pos + c, nb - c < 32 ? nb - c : 32);
    while (m) {
      len = fc_word_run(&m, &s) * bk;
      dtmm_mac_rows_1x4(wp, row, x + (c + s) * bk, len, a);
      wp += len;
    }
  }
}


/* One row of blocks of 16 (MVE): a kept row is one dense loop, otherwise one
 * block per set bit. */
DTMM_INLINE const int8_t* fc_row16(const uint8_t* bm, int32_t bm_bytes, int32_t pos,
                                   int32_t nb, const int8_t* wp, const int8_t* x,
                                   int32_t* acc) {
  int32_t c;
  for (c = 0; c < nb; c += 32) {
    const int32_t n = nb - c < 32 ? nb - c : 32;
    const uint32_t m = dtmm_bits(bm, bm_bytes, pos + c, n);
    if (m == (n == 32 ? 0xFFFFFFFFu : (1u << n) - 1u)) {
      *acc = dtmm_mac_1(wp, x + 16 * c, 16 * n, *acc);
      wp += 16 * n;
    } else if (m) {
      *acc = dtmm_mac_bits16(&wp, x + 16 * c, m, *acc);
    }
  }
  return wp;
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

/* s += w . x over 4 * quads bytes, x pre-widened at xw (LDRD: xw is 4-aligned):
 * 12 instructions per 8 MACs in the loop. */
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
        "ldr %[wv2], [%[w], #4]\n\t"
        "ldr %[wv], [%[w]], #8\n\t"
        "ldrd %[a], %[b], [%[xw]], #16\n\t"
        "sxtb16 %[t], %[wv]\n\t"
        "smlad %[s], %[t], %[a], %[s]\n\t"
        "sxtb16 %[t], %[wv], ror #8\n\t"
        "smlad %[s], %[t], %[b], %[s]\n\t"
        "ldrd %[a], %[b], [%[xw], #-8]\n\t"
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

/* n bytes from input byte c0 (a multiple of 4) over the widened input. */
DTMM_INLINE int32_t fc_mac_run_widened(const int8_t* wp, const int8_t* x, const uint32_t* xw,
                                       int32_t c0, int32_t n, int32_t a) {
  const int32_t quads = n >> 2;
  a = fc_mac_widened(wp, xw + (c0 >> 1), quads, a);
  if (n & 3) a = dtmm_mac_1(wp + 4 * quads, x + c0 + 4 * quads, n & 3, a);
  return a;
}

/* One row over the widened input (B % 4 == 0, or one block per row). */
DTMM_INLINE const int8_t* fc_row_widened(const uint8_t* bm, int32_t bm_bytes, int32_t pos,
                                         int32_t nb, int32_t bk, const int8_t* wp,
                                         const int8_t* x, const uint32_t* xw, int32_t* acc) {
  int32_t s, len, c, a = *acc;
  for (c = 0; c < nb; c += 32) {
    uint32_t m = dtmm_bits(bm, bm_bytes, pos + c, nb - c < 32 ? nb - c : 32);
    while (m) {
      len = fc_word_run(&m, &s) * bk;
      a = fc_mac_run_widened(wp, x, xw, (c + s) * bk, len, a);
      wp += len;
    }
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
  if (scratch != NULL && ((uintptr_t)scratch & 3u) == 0 && d->input_c >= 8 &&
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
  {
    /* (bias, multiplier, shift) of 4 channels: one gather each */
    const uint32x4_t rows = {0, 3, 6, 9};
    const int32x4_t lo = vdupq_n_s32(p->activation_min), hi = vdupq_n_s32(p->activation_max);
    for (; oc + 4 <= d->output_c; oc += 4) {
      const int32_t pos = oc * nb;
      const int32_t* q = f->q + 3 * oc;
      int32_t a[4] = {0, 0, 0, 0}, j;
      int32x4_t v, sh;
      if (nb <= 32) {
        const uint32_t full = nb == 32 ? 0xFFFFFFFFu : (1u << nb) - 1u;
        uint32_t m[4];
        for (j = 0; j < 4; ++j) m[j] = dtmm_bits(bm, bm_bytes, pos + j * nb, nb);
        if (m[0] == m[1] && m[0] == m[2] && m[0] == m[3]) {
          const int32_t row = (int32_t)__builtin_popcount(m[0]) * bk;
          if (m[0] == full) {
            dtmm_mac_1x4(wp, wp + row, wp + 2 * row, wp + 3 * row, x, row, a);
          } else {
            fc_rows4_same(bm, bm_bytes, pos, nb, bk, wp, row, x, a);
          }
          wp += 4 * row;
        } else {
          for (j = 0; j < 4; ++j) {
            uint32_t mm = m[j];
            int32_t s, len;
            if (mm == full) {
              a[j] = dtmm_mac_1(wp, x, d->input_c, 0);
              wp += d->input_c;
            } else if (bk == 16 && mm) {
              a[j] = dtmm_mac_bits16(&wp, x, mm, 0);
            } else {
              while (mm) {
                len = fc_word_run(&mm, &s) * bk;
                a[j] = dtmm_mac_1(wp, x + s * bk, len, a[j]);
                wp += len;
              }
            }
          }
        }
      } else if (fc_same_rows4(bm, bm_bytes, pos, nb)) {
        const int32_t row = fc_row_kept(bm, bm_bytes, pos, nb) * bk;
        if (row == d->input_c) {
          dtmm_mac_1x4(wp, wp + row, wp + 2 * row, wp + 3 * row, x, row, a);
        } else {
          fc_rows4_same(bm, bm_bytes, pos, nb, bk, wp, row, x, a);
        }
        wp += 4 * row;
      } else if (bk == 16) {
        for (j = 0; j < 4; ++j) wp = fc_row16(bm, bm_bytes, pos + j * nb, nb, wp, x, &a[j]);
      } else {
        for (j = 0; j < 4; ++j) wp = fc_row(bm, bm_bytes, pos + j * nb, nb, bk, wp, x, &a[j]);
      }
      v = vaddq_s32(dtmm_vec4(a[0], a[1], a[2], a[3]), vldrwq_gather_shifted_offset_s32(q, rows));
      sh = vldrwq_gather_shifted_offset_s32(q + 2, rows);
      v = dtmm_requant_x4(v, vmaxq_s32(sh, vdupq_n_s32(0)),
                          vldrwq_gather_shifted_offset_s32(q + 1, rows),
                          vminq_s32(sh, vdupq_n_s32(0)), p->output_offset, lo, hi);
      vstrbq_s32(out + oc, v);
    }
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
