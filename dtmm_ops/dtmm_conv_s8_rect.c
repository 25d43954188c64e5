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

/* A channel's move table being built (dtmm_moves) and the last tap added (-2
 * after a padded one). */
typedef struct {
  dtmm_moves m;
  int32_t last;
} dtmm_rect_build;

DTMM_INLINE void dtmm_rect_start(dtmm_rect_build* b) {
  dtmm_moves_start(&b->m);
  b->last = -2;
}

/* Appends in-bounds tap t (weights wt), merged into the last run when it continues
 * it in the input. */
DTMM_INLINE void dtmm_rect_add(dtmm_move_run* tb, dtmm_rect_build* b, int32_t t, uint32_t cont,
                               const int32_t* off_in, int32_t in_c, const int8_t* wt) {
  if (b->last == t - 1 && ((cont >> t) & 1u))
    dtmm_moves_extend(tb, &b->m, in_c);
  else
    dtmm_moves_add(tb, &b->m, (uint32_t)off_in[t], in_c, wt);
  b->last = t;
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
  dtmm_move_run tb[DTMM_MAX_RUNS + 1];
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
  dtmm_groups_x4_args lp;
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
    for (j = 0; j < bd.m.nr; ++j) cost_dense += dtmm_run_cost(tb[j].n);
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
    if (dense_ok && br.m.nr > 0) {
      for (j = 0; j < br.m.nr; ++j) cost += dtmm_run_cost(tb[j].n);
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
      dtmm_ptrs_x4 xp;
      if (br.m.nr == 0) {
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
      dtmm_moves_close(tb, &br.m, in_step_i);
      for (j = 0; j < 4; ++j) xp.x[j] = org[j] + (uint32_t)tb[0].d;
      lp.acc[0] = lp.acc[1] = (int32_t)acc0;
      dtmm_groups_x4_table(&lp, tb);
      for (iy = n_out;;) {
        /* the blocks of a row one step apart, then the last one, which overlaps
         * its neighbour, then on to the next row (uintptr_t: wrapping sums of
         * in-bounds steps) */
        if (n_in > 1) {
          dtmm_groups_x4(&lp, &xp, (int8_t*)orow, orow + (uintptr_t)(n_in - 1) * in_step_o, &rq,
                           vlo, vhi, ov);
          dtmm_ptrs_move(&xp, to_last);
        }
        dtmm_groups_x4(&lp, &xp, (int8_t*)(orow + last_o), orow + last_o + in_step_o, &rq, vlo,
                         vhi, ov);
        if (--iy == 0) break;
        dtmm_ptrs_move(&xp, iy == 1 ? to_last_row : to_row);
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
