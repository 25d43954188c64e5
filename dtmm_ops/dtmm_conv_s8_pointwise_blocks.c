/* Block pointwise driver (1x1 kernels, filterlet blocks of B < C_in channels,
 * format version 2), every architecture. A channel's kept blocks that follow each
 * other in C_in are consecutive in values and read consecutive input bytes, so
 * each stretch of them is one dense run. Kept channels outermost: their runs are
 * merged once per channel into a small stack table, then groups of DTMM_P pixels
 * along each line of the output (the whole plane at stride 1), all runs of the
 * table per group (MVE: the support header's dtmm_groups_x4 over the table as
 * moves, one vector requantization; DSP and portable: dtmm_mac_p per run), so the
 * run bookkeeping is paid once per channel,
 * not once per group. A channel with more runs than the table holds walks its
 * bitmap per group instead. Fully pruned channels get their constant. A line's
 * last group overlaps its neighbour when 2 or more pixels are left; a single
 * leftover pixel (or a line shorter than a group) goes through dtmm_mac_1 per run.
 * Needs no scratch; stack: the run table (MVE 17 * 12 bytes, the runs converted in
 * place; else 16 * 8). */
#include "dtmm_conv_s8_drivers.h"

/* Runs one channel's table holds (at most (C_in / B + 1) / 2 runs per channel:
 * 16 covers C_in <= 32 * B, e.g. C_in 512 at B = 16). */
#define DTMM_BLK_MAX_RUNS 16


typedef struct {
  int32_t lines, len, pitch, line_in, line_out;
  int32_t full, groups, last, single;
} dtmm_blk_lines;

/* A run of a channel: n bytes of weights (next in values) against input bytes
 * [c0, c0 + n) of every pixel. */
typedef struct {
  int32_t c0, n;
} dtmm_blk_run;

/* The next run of consecutive set bits of the one-word mask m (m != 0): first bit
 * *t, returns its length and clears it (adding the lowest set bit carries through
 * the run; a run up to bit 31 carries out to 0). */
DTMM_INLINE int32_t dtmm_blk_word_run(uint32_t* m, int32_t* t) {
  const uint32_t low = *m & (0u - *m);
  const uint32_t nxt = *m + low;
  const int32_t t0 = DTMM_CTZ(*m);
  *m &= nxt;
  *t = t0;
  return (nxt ? DTMM_CTZ(nxt) : 32) - t0;
}

/* The runs of channel oc (nb bits from bit oc * nb), merged across 32-bit words:
 * returns their number, or -1 when there are more than DTMM_BLK_MAX_RUNS (the
 * table then holds the first DTMM_BLK_MAX_RUNS). */
static int32_t dtmm_blk_channel_runs(const dtmm_fwcs_filter* f, int32_t oc, int32_t nb,
                                     int32_t bk, dtmm_blk_run* tb) {
  int32_t c, s, len, n = 0;
  int32_t end = -1; /* one past the last block of the previous run */
  for (c = 0; c < nb; c += 32) {
    uint32_t m = dtmm_bits(f->bitmap, f->bitmap_bytes, oc * nb + c, nb - c < 32 ? nb - c : 32);
    while (m) {
      len = dtmm_blk_word_run(&m, &s);
      if (c + s == end) { /* continues the run of the previous word */
        tb[n - 1].n += len * bk;
      } else {
        if (n == DTMM_BLK_MAX_RUNS) return -1;
        tb[n].c0 = (c + s) * bk;
        tb[n].n = len * bk;
        n++;
      }
      end = c + s + len;
    }
  }
  return n;
}

#if !defined(DTMM_ARCH_MVE) /* MVE: dtmm_blk_pixel_x4 */
/* One pixel of channel oc over its bitmap (any number of runs). */
static int32_t dtmm_blk_pixel_walk(const dtmm_fwcs_filter* f, int32_t oc, int32_t nb,
                                   int32_t bk, const int8_t* w, const int8_t* x, int32_t a) {
  int32_t c, s, len;
  for (c = 0; c < nb; c += 32) {
    uint32_t m = dtmm_bits(f->bitmap, f->bitmap_bytes, oc * nb + c, nb - c < 32 ? nb - c : 32);
    while (m) {
      len = dtmm_blk_word_run(&m, &s) * bk;
      a = dtmm_mac_1(w, x + (c + s) * bk, len, a);
      w += len;
    }
  }
  return a;
}
#endif

/* DTMM_P pixels (pitch apart) of channel oc over its bitmap. */
static void dtmm_blk_group_walk(const dtmm_fwcs_filter* f, int32_t oc, int32_t nb, int32_t bk,
                                const int8_t* w, const int8_t* x, int32_t pitch, dtmm_acc* acc) {
  int32_t c, s, len;
  for (c = 0; c < nb; c += 32) {
    uint32_t m = dtmm_bits(f->bitmap, f->bitmap_bytes, oc * nb + c, nb - c < 32 ? nb - c : 32);
    while (m) {
      len = dtmm_blk_word_run(&m, &s) * bk;
      dtmm_mac_p(w, x + (c + s) * bk, pitch, len, acc);
      w += len;
    }
  }
}

/* One pixel of a channel through its run table. */
DTMM_INLINE int32_t dtmm_blk_pixel_table(const dtmm_blk_run* tb, int32_t nr, const int8_t* w,
                                         const int8_t* x, int32_t a) {
  int32_t r;
  for (r = 0; r < nr; ++r) {
    a = dtmm_mac_1(w, x + tb[r].c0, tb[r].n, a);
    w += tb[r].n;
  }
  return a;
}

/* Requantization of one channel, hoisted out of the pixel loops (the support
 * header's dtmm_channel_rq; MVE: also its vector constants). */
typedef struct {
  int32_t bias;
  dtmm_channel_rq s;
#if defined(DTMM_ARCH_MVE)
  dtmm_rq_x4 rq;
#endif
} dtmm_blk_rq;

static void dtmm_rq_blk_init(dtmm_blk_rq* q, const dtmm_geom* g, const dtmm_fwcs_filter* f,
                             int32_t oc) {
  q->bias = f->bias[oc];
  dtmm_channel_rq_init(&q->s, f->multiplier[oc], f->shift[oc], g);
#if defined(DTMM_ARCH_MVE)
  q->rq = dtmm_rq_channel(f->multiplier[oc], f->shift[oc]);
#endif
}

DTMM_INLINE int8_t dtmm_requant_blk(int32_t acc, const dtmm_blk_rq* q) {
  return dtmm_requant_channel(acc, &q->s);
}

#if defined(DTMM_ARCH_MVE)


/* One channel's sum over one pixel from its bitmap (nb bits from pos); advances
 * *w past the channel's blocks. A fully kept channel is one dense loop. */
DTMM_INLINE int32_t dtmm_blk_channel_1(const dtmm_fwcs_filter* f, int32_t pos, int32_t nb,
                                       int32_t bk, const int8_t** w, const int8_t* x) {
  const int8_t* wp = *w;
  int32_t c, s, len, a = 0;
  if (nb <= 32 && bk == 16) { /* one word: the common case, no loop around it */
    const uint32_t m = dtmm_bits(f->bitmap, f->bitmap_bytes, pos, nb);
    if (m == (nb == 32 ? 0xFFFFFFFFu : (1u << nb) - 1u)) {
      a = dtmm_mac_1(wp, x, nb * 16, 0);
      wp += nb * 16;
    } else if (m) {
      a = dtmm_mac_bits16(&wp, x, m, 0);
    }
    *w = wp;
    return a;
  }
  for (c = 0; c < nb; c += 32) {
    const int32_t n = nb - c < 32 ? nb - c : 32;
    uint32_t m = dtmm_bits(f->bitmap, f->bitmap_bytes, pos + c, n);
    if (m == (n == 32 ? 0xFFFFFFFFu : (1u << n) - 1u)) {
      a = dtmm_mac_1(wp, x + c * bk, n * bk, a);
      wp += n * bk;
    } else if (bk == 16 && m) {
      a = dtmm_mac_bits16(&wp, x + 16 * c, m, a);
    } else {
      while (m) {
        len = dtmm_blk_word_run(&m, &s) * bk;
        a = dtmm_mac_1(wp, x + (c + s) * bk, len, a);
        wp += len;
      }
    }
  }
  *w = wp;
  return a;
}

/* All channels of one pixel (input x, output o), 4 at a time: their sums (4 fully
 * kept channels: the input loaded once for the 4), then one vector requantization
 * and store for the 4 (a plane of one pixel, as in streaming models, is an FC
 * layer). */
static void dtmm_blk_pixel_x4(const dtmm_geom* g, const dtmm_fwcs_filter* f, int32_t nb,
                              int32_t bk, const int8_t* x, int8_t* o) {
  const int32x4_t lo = vdupq_n_s32(g->act_min), hi = vdupq_n_s32(g->act_max);
  const int8_t* w = f->values;
  const int32_t c_in = g->in_c;
  int32_t oc0;
  for (oc0 = 0; oc0 < g->out_c; oc0 += 4) {
    const int32_t lanes = g->out_c - oc0 < 4 ? g->out_c - oc0 : 4;
    const mve_pred16_t p = vctp32q((uint32_t)lanes);
    int32_t a[4] = {0, 0, 0, 0}, j;
    dtmm_rq_x4 rq;
    int32x4_t v;
    int full4 = lanes == 4 && nb <= 32;
    if (full4) {
      const uint32_t all = nb == 32 ? 0xFFFFFFFFu : (1u << nb) - 1u;
      for (j = 0; j < 4 && full4; ++j)
        full4 = dtmm_bits(f->bitmap, f->bitmap_bytes, (oc0 + j) * nb, nb) == all;
    }
    if (full4) {
      dtmm_mac_rows_1x4(w, c_in, x, c_in, a);
      w += 4 * c_in;
    } else {
      for (j = 0; j < lanes; ++j) a[j] = dtmm_blk_channel_1(f, (oc0 + j) * nb, nb, bk, &w, x);
    }
    rq = dtmm_rq_channels(f->multiplier + oc0, f->shift + oc0, lanes);
    v = vaddq_s32(dtmm_vec4(a[0], a[1], a[2], a[3]), vldrwq_z_s32(f->bias + oc0, p));
    v = dtmm_requant_x4(v, rq.left, rq.mult, rq.neg, g->out_off, lo, hi);
    vstrbq_p_s32(o + oc0, v, p);
  }
}
#endif

#if !defined(DTMM_ARCH_MVE)
/* The pixels of one line that no group covers (see the file comment). */
static void dtmm_blk_singles(const dtmm_geom* g, const dtmm_blk_lines* L,
                             const dtmm_fwcs_filter* f, int32_t oc, int32_t nb, int32_t bk,
                             const dtmm_blk_run* tb, int32_t nr, const int8_t* w,
                             const dtmm_blk_rq* q, const int8_t* x, int8_t* o) {
  int32_t i;
  for (i = L->len - L->single; i < L->len; ++i) {
    const int8_t* xp = x + i * L->pitch;
    const int32_t a = nr >= 0 ? dtmm_blk_pixel_table(tb, nr, w, xp, q->bias)
                              : dtmm_blk_pixel_walk(f, oc, nb, bk, w, xp, q->bias);
    o[i * g->out_c] = dtmm_requant_blk(a, q);
  }
}
#endif

#if defined(DTMM_ARCH_DSP)
/* True when every block of channel oc is kept. */
static int dtmm_blk_full(const dtmm_fwcs_filter* f, int32_t oc, int32_t nb) {
  int32_t c;
  for (c = 0; c < nb; c += 32) {
    const int32_t n = nb - c < 32 ? nb - c : 32;
    if (dtmm_bits(f->bitmap, f->bitmap_bytes, oc * nb + c, n) !=
        (n == 32 ? 0xFFFFFFFFu : (1u << n) - 1u))
      return 0;
  }
  return 1;
}

/* Two fully kept channels oc, oc + 1 (consecutive rows of c bytes at w) over a
 * plane that is one line of consecutive pixels: pairs of pixels through
 * dtmm_mac_2x2 (16 MACs per 20 instructions, as the dense pointwise driver). */
static void dtmm_blk_pair(const dtmm_geom* g, const dtmm_fwcs_filter* f, int32_t oc, int32_t len,
                          const int8_t* w, const int8_t* in, int8_t* out) {
  const int32_t c = g->in_c, out_c = g->out_c;
  dtmm_blk_rq q0, q1;
  const int8_t* x = in;
  int8_t* o = out;
  int32_t i;
  dtmm_rq_blk_init(&q0, g, f, oc);
  dtmm_rq_blk_init(&q1, g, f, oc + 1);
  for (i = 0; i + 1 < len; i += 2) {
    int32_t a[4];
    a[0] = q0.bias;
    a[1] = q1.bias;
    a[2] = q0.bias;
    a[3] = q1.bias;
    dtmm_mac_2x2(w, x, c, c, a);
    o[oc] = dtmm_requant_blk(a[0], &q0);
    o[oc + 1] = dtmm_requant_blk(a[1], &q1);
    o[out_c + oc] = dtmm_requant_blk(a[2], &q0);
    o[out_c + oc + 1] = dtmm_requant_blk(a[3], &q1);
    x += 2 * c;
    o += 2 * out_c;
  }
  if (i < len) { /* odd last pixel */
    o[oc] = dtmm_requant_blk(dtmm_mac_1(w, x, c, q0.bias), &q0);
    o[oc + 1] = dtmm_requant_blk(dtmm_mac_1(w + c, x, c, q1.bias), &q1);
  }
}
#endif

void dtmm_pointwise_blocks_s8(const dtmm_geom* g, const dtmm_fwcs_filter* f, int32_t bk,
                              const int8_t* in, int8_t* out) {
  const int32_t out_c = g->out_c, nb = g->in_c / bk;
  /* Stride 1 and as wide as the input: the plane is one line (1x1 has no padding,
   * so in and out pixels correspond one to one); else one line per output row. */
  const int flat = g->sh == 1 && g->sw == 1 && g->out_w == g->in_w;
  const int8_t* w = f->values;
  dtmm_blk_lines L;
  int32_t oc, l, i, rest;
#if defined(DTMM_ARCH_MVE)
  /* The runs, then (converted in place, last first) the table as moves for
   * dtmm_groups_x4: one stack array for both. */
  union {
    dtmm_move_run x[DTMM_BLK_MAX_RUNS + 1];
    dtmm_blk_run b[DTMM_BLK_MAX_RUNS];
  } table;
  dtmm_move_run* const xt = table.x;
  dtmm_blk_run* const tb = table.b;
  dtmm_groups_x4_args ga;
  const uint32_t offs_u[4] = {0, (uint32_t)out_c, 2u * (uint32_t)out_c, 3u * (uint32_t)out_c};
  const uint32x4_t offs = vld1q_u32(offs_u);
  const int32x4_t lo = vdupq_n_s32(g->act_min), hi = vdupq_n_s32(g->act_max);
  ga.step_o = (uint32_t)(DTMM_P * out_c);
  ga.out_off = g->out_off;
#endif
#if !defined(DTMM_ARCH_MVE)
  dtmm_blk_run tb[DTMM_BLK_MAX_RUNS];
#endif
  L.lines = flat ? 1 : g->out_h;
  L.len = flat ? g->out_h * g->out_w : g->out_w;
  /* uint32: a stride may be huge when the output has one row or column; the step
   * is then never used. */
  L.pitch = (int32_t)((uint32_t)g->sw * (uint32_t)g->in_c);
  L.line_in = (int32_t)((uint32_t)g->sh * (uint32_t)g->in_w * (uint32_t)g->in_c);
  L.line_out = g->out_w * out_c;
  rest = L.len % DTMM_P;
  L.full = L.len / DTMM_P;
  L.groups = L.full + (L.full > 0 && rest >= 2);
  L.last = L.len - DTMM_P;
  L.single = L.groups == 0 ? L.len : (rest >= 2 ? 0 : rest);

#if defined(DTMM_ARCH_MVE)
  /* No group at all (lines shorter than DTMM_P): every pixel goes through
   * dtmm_blk_pixel_x4 below. */
  if (L.groups == 0) oc = out_c; else
#endif
  oc = 0;
  for (; oc < out_c; ++oc) {
    int32_t nr;
#if defined(DTMM_ARCH_DSP)
    /* dtmm_mac_2x2 needs C_in >= 4 (one word per row) */
    if (flat && L.len >= 2 && g->in_c >= 4 && oc + 1 < out_c && dtmm_blk_full(f, oc, nb) &&
        dtmm_blk_full(f, oc + 1, nb)) {
      dtmm_blk_pair(g, f, oc, L.len, w, in, out);
      w += 2 * g->in_c;
      ++oc;
      continue;
    }
#endif
    nr = dtmm_blk_channel_runs(f, oc, nb, bk, tb);
    int32_t kept_bytes = 0, r;
    dtmm_blk_rq q;
    dtmm_rq_blk_init(&q, g, f, oc);
    if (nr == 0) { /* fully pruned: its constant in every pixel */
      const int8_t v = dtmm_requant_blk(q.bias, &q);
      int8_t* o = out + oc;
      for (i = g->out_h * g->out_w; i > 0; --i, o += out_c) *o = v;
      continue;
    }
    if (nr > 0) {
      for (r = 0; r < nr; ++r) kept_bytes += tb[r].n;
    } else { /* more runs than the table: count the channel's blocks */
      int32_t c;
      for (c = 0; c < nb; c += 32) {
        uint32_t m = dtmm_bits(f->bitmap, f->bitmap_bytes, oc * nb + c, nb - c < 32 ? nb - c : 32);
        for (; m; m &= m - 1u) kept_bytes += bk;
      }
    }
#if defined(DTMM_ARCH_MVE)
    if (nr > 0) {
      /* Last run first: entry r (bytes 12r..12r+11) needs runs r and r - 1 (bytes
       * 8r - 8..8r + 7), of which only run r lies under it, read just before; the
       * moves as dtmm_moves_add computes them, the end marker on to the next group
       * DTMM_P pixels on. */
      const int8_t* wr = w + kept_bytes;
      const uint32_t c_first = (uint32_t)tb[0].c0,
                     end = dtmm_move_end((uint32_t)tb[nr - 1].c0, (uint32_t)tb[nr - 1].n);
      xt[nr].d = (int32_t)((uint32_t)DTMM_P * (uint32_t)L.pitch + c_first - end);
      xt[nr].n = 0;
      for (r = nr - 1; r >= 0; --r) {
        const uint32_t c0 = (uint32_t)tb[r].c0;
        const int32_t n = tb[r].n;
        const uint32_t prev =
            r > 0 ? dtmm_move_end((uint32_t)tb[r - 1].c0, (uint32_t)tb[r - 1].n) : 0;
        wr -= n;
        xt[r].d = (int32_t)(c0 - prev);
        xt[r].n = n;
        xt[r].w = wr;
      }
      dtmm_groups_x4_table(&ga, xt);
      ga.acc[0] = ga.acc[1] = q.bias;
    }
#endif
    for (l = 0; l < L.lines; ++l) {
      const int8_t* x = in + l * L.line_in;
      int8_t* o = out + l * L.line_out + oc;
#if defined(DTMM_ARCH_MVE)
      if (nr > 0) { /* the hot loop: the line's groups, then the overlapping last one */
        dtmm_ptrs_x4 xp;
        const uintptr_t x0 = (uintptr_t)x + (uint32_t)xt[0].d;
        xp.x[0] = x0;
        xp.x[1] = x0 + (uint32_t)L.pitch;
        xp.x[2] = x0 + 2u * (uint32_t)L.pitch;
        xp.x[3] = x0 + 3u * (uint32_t)L.pitch;
        dtmm_groups_x4(&ga, &xp, o, (uintptr_t)o + (uintptr_t)L.full * ga.step_o, &q.rq, lo, hi,
                       offs);
        if (L.groups > L.full) {
          dtmm_ptrs_move(&xp, (uintptr_t)(L.last - L.full * DTMM_P) * (uint32_t)L.pitch);
          dtmm_groups_x4(&ga, &xp, o + L.last * out_c,
                         (uintptr_t)(o + L.last * out_c) + ga.step_o, &q.rq, lo, hi, offs);
        }
        continue;
      }
#endif
      for (i = 0; i < L.groups; ++i) {
        const int32_t px = i < L.full ? i * DTMM_P : L.last;
        const int8_t* xp = x + px * L.pitch;
#if defined(DTMM_ARCH_MVE)
        int32x4_t v;
        { /* nr < 0: more runs than the table */
          dtmm_acc acc;
          dtmm_acc_set(&acc, q.bias);
          dtmm_blk_group_walk(f, oc, nb, bk, w, xp, L.pitch, &acc);
          v = dtmm_vec4(acc.a[0], acc.a[1], acc.a[2], acc.a[3]);
        }
        v = dtmm_requant_x4(v, q.rq.left, q.rq.mult, q.rq.neg, g->out_off, lo, hi);
        vstrbq_scatter_offset_s32(o + px * out_c, offs, v);
#else
        dtmm_acc acc;
        dtmm_acc_set(&acc, q.bias);
        if (nr > 0) {
          const int8_t* wr = w;
          for (r = 0; r < nr; ++r) {
            dtmm_mac_p(wr, xp + tb[r].c0, L.pitch, tb[r].n, &acc);
            wr += tb[r].n;
          }
        } else {
          dtmm_blk_group_walk(f, oc, nb, bk, w, xp, L.pitch, &acc);
        }
        { /* unrolled: the sums stay in registers */
          int8_t* op = o + px * out_c;
          op[0] = dtmm_requant_blk(acc.a[0], &q);
          op[out_c] = dtmm_requant_blk(acc.a[1], &q);
          op[2 * out_c] = dtmm_requant_blk(acc.a[2], &q);
#if DTMM_P == 4
          op[3 * out_c] = dtmm_requant_blk(acc.a[3], &q);
#endif
        }
#endif
      }
#if !defined(DTMM_ARCH_MVE) /* MVE: all channels of each single pixel below */
      if (L.single > 0) dtmm_blk_singles(g, &L, f, oc, nb, bk, tb, nr, w, &q, x, o);
#endif
    }
    w += kept_bytes;
  }
#if defined(DTMM_ARCH_MVE)
  for (l = 0; l < L.lines && L.single > 0; ++l)
    for (i = L.len - L.single; i < L.len; ++i)
      dtmm_blk_pixel_x4(g, f, nb, bk, in + l * L.line_in + i * L.pitch,
                        out + l * L.line_out + i * out_c);
#endif
}
