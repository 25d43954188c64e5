/* Window driver, Helium / MVE: uniform-padding rectangles, read in place.
 *
 * The output plane is split into rectangles whose pixels all have the same set of
 * in-bounds taps: per axis the interior [lo, hi) is one class and every border
 * coordinate is its own class (3x3 SAME: 9 rectangles). Rectangle outermost, then
 * output channel: the channel's bitmap field is decoded once per rectangle into a
 * run table (runs merge taps contiguous in the input: a kernel row, or rows whose
 * windows touch); a kept tap that falls into the padding is not read but adds
 * zp_in * sum(w) to the start value (the bias is folded, so a padded tap reads
 * zp_in). The rectangle is covered with 4x1, 2x2 or 1x4 blocks (fewest blocks);
 * the last block of a row or column overlaps its neighbour and a rectangle
 * narrower than the block repeats its last pixel, so every group has 4 pixels
 * (a pointer each, moved from run to run by the table). Rectangles whose blocks
 * would be at most 3/4 full (corners, short edges), and edges of 1-2 blocks where
 * the im2col rows are interleaved and C_in <= C_out, are left to dtmm_im2col_s8. */
#include "dtmm_conv_s8_drivers.h"

#if defined(DTMM_ARCH_MVE)

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

DTMM_INLINE int32_t dtmm_nblocks(int32_t len, int32_t b) { return len <= b ? 1 : (len + b - 1) / b; }

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

/* A rectangle whose blocks would be at most 3/4 full, or fewer than min_blocks,
 * goes to the im2col part, where its pixels share groups with others. */
DTMM_INLINE int dtmm_rect_ok(int32_t wid, int32_t hgt, int32_t min_blocks) {
  int32_t blocks;
  (void)dtmm_block_w(wid, hgt, &blocks);
  return 4 * wid * hgt > 3 * 4 * blocks && blocks >= min_blocks;
}

/* Edges (border row or column classes) of fewer blocks than this go to the im2col
 * part too where its rows are interleaved and C_in <= C_out: there a run costs
 * less than the run table an own rectangle builds per channel for one or two
 * blocks, and the rows' copy (C_in bytes a tap) is shared by at least as many
 * channels (ResNet-8's 3x3 stride-2 conv onto 8x8: -7 .. -9 %); docs/kernels.md
 * "Defaults". */
#ifndef DTMM_EDGE_MIN_BLOCKS
#define DTMM_EDGE_MIN_BLOCKS 3
#endif

/* Which rectangles are computed here, by kind: bit (ybord * 2 + xbord) is set when
 * the rectangles with a border row (ybord) / column (xbord) class are (border
 * classes are one pixel wide); a kind without pixels counts as computed. */
static uint32_t dtmm_rect_kinds(const dtmm_geom* g) {
  const int32_t hi = g->y_hi - g->y_lo, wi = g->x_hi - g->x_lo;
  const int yb = hi < g->out_h, xb = wi < g->out_w; /* border rows / columns exist */
  const int32_t edge_min =
      DTMM_IM2COL_INTERLEAVED(g) && g->in_c <= g->out_c ? DTMM_EDGE_MIN_BLOCKS : 1;
  return (uint32_t)((hi == 0 || wi == 0 || dtmm_rect_ok(wi, hi, 1)) |
                    ((hi == 0 || !xb || dtmm_rect_ok(1, hi, edge_min)) << 1) |
                    ((!yb || wi == 0 || dtmm_rect_ok(wi, 1, edge_min)) << 2) |
                    ((!yb || !xb) << 3)); /* a corner fills a quarter block */
}

/* The pixels of row y from x on to the end of x's class when the rectangles
 * compute that class, else 0. */
static int32_t dtmm_rect_done(const dtmm_geom* g, const void* ctx, int32_t y, int32_t x) {
  const uint32_t kinds = *(const uint32_t*)ctx;
  const int32_t k = ((y < g->y_lo || y >= g->y_hi) ? 2 : 0) + ((x < g->x_lo || x >= g->x_hi) ? 1 : 0);
  return ((kinds >> k) & 1u) ? dtmm_class_end(x, g->x_lo, g->x_hi) - x : 0;
}

/* Scratch: the rectangles' tap offsets and dense filter (they run first; kept off
 * the stack, which stays under 1 KB), then the im2col part's rows. Both fit
 * CMSIS-NN's DTMM_P * taps * C_in bytes where C_in >= 2 (C_in 1 is never here). */
DTMM_INLINE int32_t dtmm_rect_scratch(const dtmm_geom* g) {
  const int32_t dense = g->taps * g->in_c;
  return 4 * g->taps + (dense <= DTMM_EXPAND_MAX_BYTES ? dense : 0);
}

int32_t dtmm_window_s8_get_buffer_size(const dtmm_geom* g) {
  const int32_t rect = dtmm_rect_scratch(g);
  const int32_t rows = dtmm_rect_kinds(g) == 15u ? 0 : dtmm_im2col_s8_get_buffer_size(g);
  return rect > rows ? rect : rows;
}

/* One entry of a rectangle channel's run table: the 4 pixel pointers move d bytes,
 * then (n > 0) each multiplies n bytes against w, which leaves it 16 * ceil(n / 16)
 * bytes on (the MAC loop's post-increment). The table ends with n == 0, whose d
 * moves the pointers on to the next group's first run; the first entry's d is that
 * run's offset, where the pointers start (the group loop does not read it). Moves
 * instead of offsets per pixel leave the loop no origin to add: 8 instructions a
 * run plus 12 a group (the first run and the end marker), was 12 a run plus 3. */
typedef struct {
  int32_t d;
  int32_t n;
  const int8_t* w;
} dtmm_rect_run;

/* A run table being built: its runs, the last tap added (-2 after a padded one),
 * the last run's offset from the group's first pixel and its bytes. */
typedef struct {
  int32_t nr, last;
  uint32_t o_last, n_last;
} dtmm_rect_build;

DTMM_INLINE void dtmm_rect_start(dtmm_rect_build* b) {
  b->nr = 0;
  b->last = -2;
  b->o_last = b->n_last = 0;
}

/* Offset of the pointers after the last run (uint32: wrapping; only pointers at
 * in-bounds taps are read). */
DTMM_INLINE uint32_t dtmm_rect_end(const dtmm_rect_build* b) {
  return b->o_last + ((b->n_last + 15u) & ~15u);
}

/* Appends in-bounds tap t (weights wt), merged into the last run when it continues
 * it in the input (a run's move is final once the next one starts; the first
 * run's d is its offset, where the pointers start). */
DTMM_INLINE void dtmm_rect_add(dtmm_rect_run* tb, dtmm_rect_build* b, int32_t t, uint32_t cont,
                               const int32_t* off_in, int32_t in_c, const int8_t* wt) {
  if (b->last == t - 1 && ((cont >> t) & 1u)) {
    b->n_last += (uint32_t)in_c;
    tb[b->nr - 1].n = (int32_t)b->n_last;
  } else {
    const uint32_t o = (uint32_t)off_in[t];
    dtmm_rect_run* r = &tb[b->nr++];
    r->d = (int32_t)(o - dtmm_rect_end(b));
    r->n = in_c;
    r->w = wt;
    b->o_last = o;
    b->n_last = (uint32_t)in_c;
  }
  b->last = t;
}

/* The end marker (at least one run): on to the first run of the group step bytes
 * on. */
DTMM_INLINE void dtmm_rect_close(dtmm_rect_run* tb, const dtmm_rect_build* b, uint32_t step) {
  tb[b->nr].d = (int32_t)(step + (uint32_t)tb[0].d - dtmm_rect_end(b));
  tb[b->nr].n = 0;
}

/* The 4 pixel pointers of the group loop, carried from one call to the next. */
typedef struct {
  uintptr_t x[4];
} dtmm_rect_ptrs;

DTMM_INLINE void dtmm_rect_move(dtmm_rect_ptrs* x, uintptr_t d) {
  x->x[0] += d;
  x->x[1] += d;
  x->x[2] += d;
  x->x[3] += d;
}

/* What the group loop reads from memory (the stack: no register needed). */
typedef struct {
  int32_t acc[2];            /* the start value, twice: two LDRD set the 4 sums */
  struct {
    int32_t n;               /* the first run's bytes (> 0) and weights: one LDRD */
    const int8_t* w;
  } first;
  const dtmm_rect_run* tb1;  /* the table from its second entry */
  uint32_t step_o;           /* output bytes from one group to the next */
  int32_t out_off;
} dtmm_rect_loop;

/* The group loop's end: a register, but at -Os, where gcc 12 then finds none. */
#if defined(__OPTIMIZE_SIZE__)
#define DTMM_RECT_END "m"
#define DTMM_RECT_CMP_END "ldr %[w], %[oe]\n\tcmp %[og], %[w]\n\t"
#else
#define DTMM_RECT_END "r"
#define DTMM_RECT_CMP_END "cmp %[og], %[oe]\n\t"
#endif

/* Groups from the pointers x (outputs og, og + step_o, ...) until og reaches og_end
 * (at least one group): per group every run of the table, requantized as
 * dtmm_requant_x4 and stored as its 4 bytes; x is left at the next group. One asm
 * loop: the compiler's loop spilled the sums' start value, the table, the steps
 * and the clamp around the run loop's 13 registers. */
DTMM_INLINE void dtmm_rect_groups(const dtmm_rect_loop* L, dtmm_rect_ptrs* xp, int8_t* og,
                                  uintptr_t og_end, const dtmm_rq_x4* rq, int32x4_t lo,
                                  int32x4_t hi, uint32x4_t ov) {
#if defined(__GNUC__) && defined(__OPTIMIZE__) /* -O0 keeps r7 as frame pointer */
  int32_t s0, s1, s2, s3;
  const dtmm_rect_run* tb;
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
      DTMM_RECT_CMP_END
      "bne 0b\n"
      : [s0] "=&Te"(s0), [s1] "=&Te"(s1), [s2] "=&Te"(s2), [s3] "=&Te"(s3), [tb] "=&r"(tb),
        [w] "=&r"(w), [x0] "+r"(x0), [x1] "+r"(x1), [x2] "+r"(x2), [x3] "+r"(x3),
        [og] "+r"(og)
      : [acc] "m"(L->acc), [first] "m"(L->first), [tb1] "m"(L->tb1), [off] "m"(L->out_off),
        [so] "m"(L->step_o), [oe] DTMM_RECT_END(og_end), [left] "w"(rq->left),
        [mult] "w"(rq->mult), [neg] "w"(rq->neg), [lo] "w"(lo), [hi] "w"(hi), [ov] "w"(ov)
      : "q0", "q1", "lr", "cc", "memory");
  xp->x[0] = x0;
  xp->x[1] = x1;
  xp->x[2] = x2;
  xp->x[3] = x3;
#else
  do {
    int32_t s[4] = {L->acc[0], L->acc[0], L->acc[0], L->acc[0]};
    const dtmm_rect_run* r = L->tb1;
    int32_t n = L->first.n, j, k;
    const int8_t* w = L->first.w;
    for (;;) {
      for (j = 0; j < 4; ++j) {
        const int8_t* x = (const int8_t*)xp->x[j];
        for (k = 0; k < n; ++k) s[j] += (int32_t)x[k] * w[k];
      }
      dtmm_rect_move(xp, (uintptr_t)(((uint32_t)n + 15u) & ~15u));
      dtmm_rect_move(xp, (uintptr_t)(uint32_t)r->d);
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

/* One rectangle [y0, y1) x [x0, x1), all channels. Out of line: its run table
 * leaves the stack before the im2col part runs. */
static __attribute__((noinline)) void dtmm_rect(const dtmm_geom* g, const dtmm_fwcs_filter* f,
                                                const int8_t* in, int8_t* out, int8_t* scratch,
                                                int pruned_done, int32_t y0, int32_t y1,
                                                int32_t x0, int32_t x1) {
  int32_t* off_in = (int32_t*)(void*)scratch; /* scratch is aligned */
  const uint32_t cont = dtmm_tap_table(g, off_in);
  /* the runs of a channel (dtmm_conv_s8_choose bounds them), plus the end marker */
  dtmm_rect_run tb[DTMM_MAX_RUNS + 1];
  const int32_t taps = g->taps, in_c = g->in_c, out_c = g->out_c;
  const uint32_t zp = (uint32_t)g->zp_in;
  /* Byte steps inside the input; used only between pixels of one class, where
   * they are smaller than the input (uint32: no overflow for any stride). */
  const int32_t row_in = (int32_t)((uint32_t)g->sh * (uint32_t)g->in_w * (uint32_t)in_c);
  const int32_t col_in = (int32_t)((uint32_t)g->sw * (uint32_t)in_c);
  const int32x4_t vlo = vdupq_n_s32(g->act_min), vhi = vdupq_n_s32(g->act_max);
  const uint32_t ym = dtmm_axis_mask(y0, g->in_h, g->ker_h, g->sh, g->dh, g->pt);
  const uint32_t xm = dtmm_axis_mask(x0, g->in_w, g->ker_w, g->sw, g->dw, g->pl);
  const int32_t wid = x1 - x0, hgt = y1 - y0;
  int32_t bw, bh, nbx, nby, best, j, oc, pos = 0, kh, cost_dense = 0;
  dtmm_rect_build bd, br; /* the dense table, the channel's */
  /* the channel's filter, dense, for the dense alternative (small filters only) */
  int8_t* wx = scratch + 4 * g->taps;
  const int dense_ok = taps * in_c <= DTMM_EXPAND_MAX_BYTES;
  int32_t din[4], oo[4];
  int32_t n_in, n_out;
  /* block steps (uint32: wrapping arithmetic, the values used are in bounds) */
  uint32_t in_step_i, in_step_o, in_last_i, in_last_o, out_step_i, out_step_o, out_last_i,
      out_last_o;
  intptr_t bo0;
  uint32_t vm = 0;
  const int8_t* w = f->values;
  uint32x4_t ov;
  dtmm_rect_loop lp;
  uintptr_t last_i, last_o; /* the last block of a row from the row's first */
  uintptr_t to_last, to_row, to_last_row;
  uintptr_t org[4]; /* the first block's pixels in the input */
  for (kh = 0; kh < g->ker_h; ++kh)
    if ((ym >> kh) & 1u) vm |= xm << (kh * g->ker_w);
  bw = dtmm_block_w(wid, hgt, &best);
  bh = 4 / bw;
  nbx = dtmm_nblocks(wid, bw);
  nby = dtmm_nblocks(hgt, bh);
  for (j = 0; j < 4; ++j) {
    int32_t jx = j % bw, jy = j / bw;
    if (jx > wid - 1) jx = wid - 1; /* narrower than the block: repeat */
    if (jy > hgt - 1) jy = hgt - 1;
    din[j] = (int32_t)((uint32_t)jy * (uint32_t)row_in + (uint32_t)jx * (uint32_t)col_in);
    oo[j] = (jy * g->out_w + jx) * out_c;
  }
  ov = vldrwq_u32((const uint32_t*)oo);
  /* Input/output byte steps between blocks (the last step is shorter). The inner
   * block loop runs along the axis with more blocks (a 1-wide column such as a
   * 49x1 feature map is one loop, not one outer iteration per block). */
  {
    const uint32_t xl = (uint32_t)(dtmm_origin(nbx - 1, nbx, wid, bw) - (nbx - 2) * bw);
    const uint32_t yl = (uint32_t)(dtmm_origin(nby - 1, nby, hgt, bh) - (nby - 2) * bh);
    const uint32_t ys = (uint32_t)g->out_w * (uint32_t)out_c, ri = (uint32_t)row_in,
                   ci = (uint32_t)col_in, oc_u = (uint32_t)out_c, bwu = (uint32_t)bw,
                   bhu = (uint32_t)bh;
    if (nbx >= nby) {
      n_in = nbx, n_out = nby;
      in_step_i = bwu * ci, in_step_o = bwu * oc_u;
      in_last_i = xl * ci, in_last_o = xl * oc_u;
      out_step_i = bhu * ri, out_step_o = bhu * ys;
      out_last_i = yl * ri, out_last_o = yl * ys;
    } else {
      n_in = nby, n_out = nbx;
      in_step_i = bhu * ri, in_step_o = bhu * ys;
      in_last_i = yl * ri, in_last_o = yl * ys;
      out_step_i = bwu * ci, out_step_o = bwu * oc_u;
      out_last_i = xl * ci, out_last_o = xl * oc_u;
    }
  }
  lp.step_o = in_step_o;
  lp.out_off = g->out_off;
  last_i = n_in > 1 ? (uintptr_t)(n_in - 2) * in_step_i + in_last_i : 0;
  last_o = n_in > 1 ? (uintptr_t)(n_in - 2) * in_step_o + in_last_o : 0;
  /* pointer moves: from after a row's first n_in - 1 groups to its last block, and
   * from after that block to the next row's first (the last row's step is shorter) */
  to_last = (uintptr_t)in_last_i - in_step_i;
  to_row = (uintptr_t)out_step_i - last_i - in_step_i;
  to_last_row = (uintptr_t)out_last_i - last_i - in_step_i;
  /* The first block's origin: outside the input for a top/left border rectangle
   * (only origin + in-bounds tap offset is ever turned into a pointer). */
  bo0 = (intptr_t)((int64_t)(y0 * g->sh - g->pt) * g->in_w * in_c +
                   (int64_t)(x0 * g->sw - g->pl) * in_c);
  for (j = 0; j < 4; ++j) org[j] = (uintptr_t)in + (uintptr_t)bo0 + (uintptr_t)din[j];
  /* The dense alternative: every in-bounds tap, weights from wx, the channel's
   * kept filterlets expanded there (zeros where pruned). Its runs are whole kernel
   * rows, fewer than the kept filterlets' runs where those are short and split. */
  if (dense_ok) {
    uint32_t mv = vm;
    dtmm_rect_start(&bd);
    while (mv) {
      const int32_t t = DTMM_CTZ(mv);
      mv &= mv - 1u;
      dtmm_rect_add(tb, &bd, t, cont, off_in, in_c, wx + t * in_c);
    }
    for (j = 0; j < bd.nr; ++j) cost_dense += dtmm_run_cost(tb[j].n);
  }
  for (oc = 0; oc < out_c; ++oc, pos += taps) {
    const uint32_t m0 = dtmm_bits(f->bitmap, f->bitmap_bytes, pos, taps);
    uint32_t m = m0, acc0;
    const int8_t* w0 = w;
    int32_t iy, ix, pend, cost = 0;
    dtmm_rect_start(&br);
    if (!m && pruned_done) continue; /* constant output already written */
    /* Kept taps in order: in-bounds ones become runs, padded ones add zp_in * sum(w). */
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
        dtmm_rect_add(tb, &br, t, cont, off_in, in_c, w);
      } else {
        pend += in_c; /* consecutive padded kept filterlets: one sum */
        br.last = -2;
      }
      w += in_c;
    }
    if (pend) acc0 += zp * (uint32_t)dtmm_wsum(w - pend, pend);
    if (dense_ok && br.nr > 0) {
      for (j = 0; j < br.nr; ++j) cost += dtmm_run_cost(tb[j].n);
      if (cost_dense < cost) { /* expand: the table becomes the dense one */
        uint32_t mk = m0;
        const int8_t* v = w0;
        dtmm_fill(wx, 0, taps * in_c);
        while (mk) { /* kept taps in order, their values one row each */
          const int32_t t = DTMM_CTZ(mk);
          mk &= mk - 1u;
          if ((vm >> t) & 1u) dtmm_copy(wx + t * in_c, v, in_c);
          v += in_c;
        }
        dtmm_rect_start(&br);
        {
          uint32_t mv = vm;
          while (mv) {
            const int32_t t = DTMM_CTZ(mv);
            mv &= mv - 1u;
            dtmm_rect_add(tb, &br, t, cont, off_in, in_c, wx + t * in_c);
          }
        }
      }
    }
    {
      const dtmm_rq_x4 rq = dtmm_rq_channel(f->multiplier[oc], f->shift[oc]);
      uintptr_t orow = (uintptr_t)(out + (y0 * g->out_w + x0) * out_c + oc);
      dtmm_rect_ptrs xp;
      if (br.nr == 0) {
        /* No in-bounds kept tap (a pruned filter, or all kept taps padded): one
         * constant for the whole rectangle, requantized once. */
        const int32x4_t v = dtmm_requant_x4(vdupq_n_s32((int32_t)acc0), rq.left, rq.mult, rq.neg,
                                            g->out_off, vlo, vhi);
        for (iy = n_out; iy > 0; --iy) {
          uintptr_t og = orow;
          for (ix = n_in; ix > 0; --ix) {
            vstrbq_scatter_offset_s32((int8_t*)og, ov, v);
            og += ix == 2 ? in_last_o : in_step_o;
          }
          orow += iy == 2 ? out_last_o : out_step_o;
        }
        continue;
      }
      dtmm_rect_close(tb, &br, in_step_i);
      for (j = 0; j < 4; ++j) xp.x[j] = org[j] + (uint32_t)tb[0].d;
      lp.acc[0] = lp.acc[1] = (int32_t)acc0;
      lp.first.n = tb[0].n;
      lp.first.w = tb[0].w;
      lp.tb1 = tb + 1;
      for (iy = n_out;;) {
        /* the blocks of a row one step apart, then the last one, which overlaps
         * its neighbour, then on to the next row (uintptr_t: wrapping sums of
         * in-bounds steps) */
        if (n_in > 1) {
          dtmm_rect_groups(&lp, &xp, (int8_t*)orow, orow + (uintptr_t)(n_in - 1) * in_step_o, &rq,
                           vlo, vhi, ov);
          dtmm_rect_move(&xp, to_last);
        }
        dtmm_rect_groups(&lp, &xp, (int8_t*)(orow + last_o), orow + last_o + in_step_o, &rq, vlo,
                         vhi, ov);
        if (--iy == 0) break;
        dtmm_rect_move(&xp, iy == 1 ? to_last_row : to_row);
        orow += iy == 1 ? out_last_o : out_step_o;
      }
    }
  }
}

void dtmm_window_s8(const dtmm_geom* g, const dtmm_fwcs_filter* f, const int8_t* in,
                    int8_t* out, int8_t* scratch) {
  const uint32_t kinds = dtmm_rect_kinds(g);
  /* When the rectangles cover every pixel they also write the pruned channels'
   * constants (from the field they decode anyway); otherwise the im2col part,
   * which skips them, needs them written up front. */
  const int fill = kinds != 15u;
  int32_t y0, y1, x0, x1;
  if (fill) dtmm_fill_pruned(g, f, out, g->out_h * g->out_w);
  for (y0 = 0; y0 < g->out_h; y0 = y1) {
    y1 = dtmm_class_end(y0, g->y_lo, g->y_hi);
    for (x0 = 0; x0 < g->out_w; x0 = x1) {
      x1 = dtmm_class_end(x0, g->x_lo, g->x_hi);
      if (dtmm_rect_done(g, &kinds, y0, x0))
        dtmm_rect(g, f, in, out, scratch, fill, y0, y1, x0, x1);
    }
  }
  if (fill) dtmm_im2col_s8(g, f, in, out, scratch, dtmm_rect_done, &kinds);
}

#endif /* DTMM_ARCH_MVE */
