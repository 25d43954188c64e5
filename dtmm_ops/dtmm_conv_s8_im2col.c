/* im2col driver: any kernel size, stride and dilation. Pixels in raster order,
 * DTMM_P at a time; each group's windows are copied to DTMM_P rows of
 * [taps][C_in] bytes in scratch (zp_in at padded taps, as the bias is folded), so
 * that every stretch of consecutive kept taps of a channel, across kernel rows
 * and dilation gaps, is one dot product over the DTMM_P rows (one dtmm_mac_p; on
 * MVE with C_in a multiple of 16 the rows are interleaved 16 bytes at a time, so
 * one pointer reads all 4: dtmm_im2col_interleaved, dtmm_mac_il_runs).
 * Output channel inner: its bitmap field is read per group, a fully pruned
 * channel is skipped (its constant is written by the caller).
 * Used alone for kernels above DTMM_MAX_TAPS taps, in-place runs that would not
 * fit the window drivers' tables, short kernel rows, dilated kernels over few
 * channels and small 2-D planes (dtmm_conv_s8_choose), and for the pixels the
 * window drivers leave; a lone leftover pixel goes through dtmm_pixel_channels_k. */
#include "dtmm_conv_s8_drivers.h"

int32_t dtmm_im2col_s8_get_buffer_size(const dtmm_geom* g) {
  return DTMM_P * g->taps * g->in_c;
}

/* Tap masks dtmm_tap_fields reads at a time (MVE): a stack block, as the group is
 * on the window drivers' deepest call chain. A kernel of 32-100 taps is read
 * in 2 or 4 pieces of <= 25 taps, for a half or a quarter of the channels at a
 * time. */
#define DTMM_IM2COL_FIELD_BLOCK 16

#if defined(DTMM_ARCH_MVE)
/* Bit j set where fields[j] != 0, j < n <= 16: the channels with a kept tap, so
 * that the group's channel loop never visits a fully pruned one (a visit cost 13
 * instructions: the loop's state lives on the stack around the MAC asm). */
DTMM_INLINE uint32_t dtmm_kept_fields(const uint32_t* fields, int32_t n) {
  uint8_t empty[DTMM_IM2COL_FIELD_BLOCK];
  dtmm_empty_fields(fields, n, empty);
  return vcmpeqq_m_n_u8(vldrbq_z_u8(empty, vctp8q((uint32_t)n)), 0, vctp8q((uint32_t)n));
}

/* One group, 31 < taps <= 100 (MVE): each channel's tap mask in 2 or 4 pieces of
 * <= 25 taps, a run that crosses pieces is two; a half or a quarter of the block
 * of channels at a time; only channels with a kept tap are visited, and each
 * piece's runs are one asm loop (dtmm_mac_p_mask: about 4 runs a piece at s = .5,
 * where it saves 4-5 instructions a run). Its own function, called instead of
 * dtmm_im2col_group: in there its registers slowed the <= 25-tap loop by 1-3 %
 * (whose C run loop is faster on short kernels' one or two runs a channel). */
static __attribute__((noinline)) void dtmm_im2col_group_pieces(
    const dtmm_geom* g, const dtmm_fwcs_filter* f, const int8_t* rows, int32_t np, int8_t* out,
    const int32_t* oo) {
  const uint32x4_t offs = vldrwq_u32((const uint32_t*)oo);
  const int32_t c = g->in_c, rs = g->taps * c, taps = g->taps, out_c = g->out_c;
  const int32x4_t lo = vdupq_n_s32(g->act_min), hi = vdupq_n_s32(g->act_max);
  const int32_t out_off = g->out_off;
  const int8_t* w = f->values;
  uint32_t fields[DTMM_IM2COL_FIELD_BLOCK];
  int32_t b, j, k;
  const int32_t pieces = taps <= 2 * DTMM_IM2COL_PIECE_TAPS ? 2 : 4;
  const int32_t block = DTMM_IM2COL_FIELD_BLOCK / pieces;
  const int32_t nb = (taps + pieces - 1) / pieces; /* the last piece may be shorter */
  for (b = 0; b < out_c; b += block) {
    const int32_t n = out_c - b < block ? out_c - b : block;
    uint32_t kept = 0;
    for (k = 0; k < pieces; ++k) {
      const int32_t t0 = k * nb;
      dtmm_tap_fields(f->bitmap, f->bitmap_bytes, b * taps + t0, taps,
                      taps - t0 < nb ? taps - t0 : nb, n, fields + k * block);
      kept |= dtmm_kept_fields(fields + k * block, n);
    }
    while (kept) {
      dtmm_acc acc;
      j = DTMM_CTZ(kept);
      kept &= kept - 1u;
      dtmm_acc_set(&acc, f->bias[b + j]);
      for (k = 0; k < pieces; ++k) {
        const uint32_t m = fields[k * block + j];
        if (m) w = dtmm_mac_p_mask(m, w, rows + k * nb * c, c, rs, &acc);
      }
      {
        const dtmm_rq_x4 rq = dtmm_rq_channel(f->multiplier[b + j], f->shift[b + j]);
        dtmm_store_p(&acc, np, &rq, out_off, lo, hi, out + b + j, offs);
      }
    }
  }
}

/* One group, taps <= 25 and C_in a multiple of 16 (MVE), over 4 interleaved rows
 * (dtmm_im2col_interleaved): each run is one dtmm_mac_il_runs step, 9 instructions
 * besides its MAC steps where dtmm_mac_p_runs' spills cost about 20. */
static __attribute__((noinline)) void dtmm_im2col_group_il(const dtmm_geom* g,
                                                           const dtmm_fwcs_filter* f,
                                                           const int8_t* rows, int32_t np,
                                                           int8_t* out, const int32_t* oo) {
  const uint32x4_t offs = vldrwq_u32((const uint32_t*)oo);
  const int32_t c = g->in_c, taps = g->taps, out_c = g->out_c;
  const int32x4_t lo = vdupq_n_s32(g->act_min), hi = vdupq_n_s32(g->act_max);
  const int32_t out_off = g->out_off;
  const int8_t* w = f->values;
  uint32_t fields[DTMM_IM2COL_FIELD_BLOCK];
  int32_t b, j;
  for (b = 0; b < out_c; b += DTMM_IM2COL_FIELD_BLOCK) {
    const int32_t n = out_c - b < DTMM_IM2COL_FIELD_BLOCK ? out_c - b : DTMM_IM2COL_FIELD_BLOCK;
    uint32_t kept;
    dtmm_tap_fields(f->bitmap, f->bitmap_bytes, b * taps, taps, taps, n, fields);
    kept = dtmm_kept_fields(fields, n);
    while (kept) {
      dtmm_acc acc;
      j = DTMM_CTZ(kept);
      kept &= kept - 1u;
      dtmm_acc_set(&acc, f->bias[b + j]);
      w = dtmm_mac_il_runs(fields[j], w, rows, c, &acc);
      {
        const dtmm_rq_x4 rq = dtmm_rq_channel(f->multiplier[b + j], f->shift[b + j]);
        dtmm_store_p(&acc, np, &rq, out_off, lo, hi, out + b + j, offs);
      }
    }
  }
}

#define DTMM_IM2COL_GROUP_ATTR __attribute__((noinline)) /* measured faster on MVE */
#else
#define DTMM_IM2COL_GROUP_ATTR /* slower out of line on DSP */
#endif

/* One group of np <= DTMM_P pixels (the rest of the DTMM_P rows repeat the last
 * pixel), rows rs bytes apart, all channels. The field of a kernel above 31 taps
 * (on MVE: above 100, dtmm_im2col_group_pieces takes 32-100) is read 32 bits at a
 * time; a run that crosses a word is two dot products. */
static DTMM_IM2COL_GROUP_ATTR void dtmm_im2col_group(const dtmm_geom* g, const dtmm_fwcs_filter* f,
                              const int8_t* rows, int32_t np, int8_t* out, const int32_t* oo) {
  const int32_t c = g->in_c, rs = g->taps * c, taps = g->taps, out_c = g->out_c;
  const int8_t* w = f->values;
  int32_t oc, pos = 0;
#if defined(DTMM_ARCH_MVE)
  const uint32x4_t offs = vldrwq_u32((const uint32_t*)oo);
  const int32x4_t lo = vdupq_n_s32(g->act_min), hi = vdupq_n_s32(g->act_max);
  const int32_t out_off = g->out_off;
  uint32_t fields[DTMM_IM2COL_FIELD_BLOCK];
  int32_t b, j;
  if (taps <= DTMM_IM2COL_PIECE_TAPS) { /* one field a channel, a block of 16 */
    for (b = 0; b < out_c; b += DTMM_IM2COL_FIELD_BLOCK) {
      const int32_t n = out_c - b < DTMM_IM2COL_FIELD_BLOCK ? out_c - b : DTMM_IM2COL_FIELD_BLOCK;
      dtmm_tap_fields(f->bitmap, f->bitmap_bytes, b * taps, taps, taps, n, fields);
      for (j = 0; j < n; ++j) {
        dtmm_acc acc;
        if (!fields[j]) continue; /* fully pruned: constant written by the caller */
        dtmm_acc_set(&acc, f->bias[b + j]);
        w = dtmm_mac_p_runs(fields[j], w, rows, c, rs, &acc);
        {
          const dtmm_rq_x4 rq = dtmm_rq_channel(f->multiplier[b + j], f->shift[b + j]);
          dtmm_store_p(&acc, np, &rq, out_off, lo, hi, out + b + j, offs);
        }
      }
    }
    return;
  }
#endif
  for (oc = 0; oc < out_c; ++oc, pos += taps) {
    dtmm_acc acc;
    int32_t t, run;
    if (taps <= 31) {
      uint32_t m = dtmm_bits(f->bitmap, f->bitmap_bytes, pos, taps);
      if (!m) continue; /* fully pruned: constant written by the caller */
      dtmm_acc_set(&acc, f->bias[oc]);
      do {
        run = dtmm_next_run_contig(&m, &t) * c;
        dtmm_mac_p(w, rows + t * c, rs, run, &acc);
        w += run;
      } while (m);
    } else {
      int32_t base, any = 0;
      for (base = 0; base < taps; base += 32) {
        uint32_t m = dtmm_bits(f->bitmap, f->bitmap_bytes, pos + base,
                               taps - base < 32 ? taps - base : 32);
        if (!m) continue;
        if (!any) dtmm_acc_set(&acc, f->bias[oc]);
        any = 1;
        do {
          run = dtmm_next_run(&m, 0xFFFFFFFFu, &t) * c;
          dtmm_mac_p(w, rows + (base + t) * c, rs, run, &acc);
          w += run;
        } while (m);
      }
      if (!any) continue;
    }
#if defined(DTMM_ARCH_MVE)
    {
      const dtmm_rq_x4 rq = dtmm_rq_channel(f->multiplier[oc], f->shift[oc]);
      dtmm_store_p(&acc, np, &rq, out_off, lo, hi, out + oc, offs);
    }
#else
    dtmm_store_p(&acc, np, f->multiplier[oc], f->shift[oc], g, out + oc, oo);
#endif
  }
}

/* The next group of up to DTMM_P pixels from (*y, *x) in raster order, skipping
 * those the caller's driver computed; returns how many (0: the plane is done). */
DTMM_INLINE int32_t dtmm_next_group(const dtmm_geom* g, dtmm_pixel_done done, const void* ctx,
                                    int32_t* y, int32_t* x, int32_t* py, int32_t* px) {
  int32_t np = 0;
  while (np < DTMM_P && *y < g->out_h) {
    int32_t skip;
    if (!done || (skip = done(g, ctx, *y, *x)) == 0) {
      py[np] = *y;
      px[np] = *x;
      np++;
    } else {
      *x += skip - 1; /* computed by the caller's driver, up to the end of the row */
    }
    if (++*x >= g->out_w) {
      *x = 0;
      ++*y;
    }
  }
  return np;
}

/* A lone pixel (a corner): one dot per run, not DTMM_P. Through the runs only, so
 * that a build without the pixel driver does not link its 1x1 path (M55: 942 B); off
 * MVE a build with it shares its copy of the loop. */
DTMM_INLINE void dtmm_im2col_lone(const dtmm_geom* g, const dtmm_fwcs_filter* f,
                                  const int8_t* in, int32_t y, int32_t x, int8_t* out,
                                  int8_t* scratch) {
  dtmm_im2col(g, in, y, x, scratch);
#if DTMM_BUILT(DTMM_USE_PIXEL) && !defined(DTMM_ARCH_MVE)
  dtmm_pixel_channels(g, f, scratch, out + (y * g->out_w + x) * g->out_c);
#else
  dtmm_pixel_channels_k(g, f, scratch, out + (y * g->out_w + x) * g->out_c);
#endif
}

/* The plane group by group: the group's windows to scratch, then its channels. il
 * (MVE, C_in a multiple of 16, <= 25 taps): the windows into 4 interleaved rows
 * (dtmm_im2col_interleaved) for dtmm_im2col_group_il; a short group's rows past np
 * keep what scratch held (their lanes are computed but never stored). */
DTMM_INLINE void dtmm_im2col_groups(const dtmm_geom* g, const dtmm_fwcs_filter* f,
                                    const int8_t* in, int8_t* out, int8_t* scratch,
                                    dtmm_pixel_done done, const void* ctx, int il) {
  const int32_t rs = g->taps * g->in_c;
  int32_t y = 0, x = 0, j;
#if defined(DTMM_ARCH_MVE)
  const int in_pieces = DTMM_IM2COL_LARGE(g);
#else
  (void)il;
#endif
  for (;;) {
    int32_t py[DTMM_P], px[DTMM_P], oo[DTMM_P];
    const int32_t np = dtmm_next_group(g, done, ctx, &y, &x, py, px);
    if (np == 0) break;
    if (np == 1) {
      dtmm_im2col_lone(g, f, in, py[0], px[0], out, scratch);
      continue;
    }
    for (j = 0; j < DTMM_P; ++j) {
      /* A short group repeats its last pixel; only np outputs are stored. */
      const int32_t jj = j < np ? j : np - 1;
      oo[j] = (py[jj] * g->out_w + px[jj]) * g->out_c;
#if defined(DTMM_ARCH_MVE)
      if (il) {
        if (j < np) dtmm_im2col_interleaved(g, in, py[j], px[j], scratch + 16 * j);
        continue;
      }
#endif
      if (j < np) dtmm_im2col(g, in, py[j], px[j], scratch + j * rs);
      else memcpy(scratch + j * rs, scratch + (np - 1) * rs, (size_t)rs);
    }
#if defined(DTMM_ARCH_MVE)
    if (il)
      dtmm_im2col_group_il(g, f, scratch, np, out, oo);
    else if (in_pieces)
      dtmm_im2col_group_pieces(g, f, scratch, np, out, oo);
    else
#endif
      dtmm_im2col_group(g, f, scratch, np, out, oo);
  }
}

#if defined(DTMM_ARCH_MVE)
/* The interleaved groups as a loop of their own: a test per group in the other
 * loop cost its groups 7 instructions each. A function of its own too: calling
 * dtmm_im2col_groups(..., 1) straight from dtmm_im2col_s8 compiled to up to 0.14 %
 * more instructions on M55 (sw_p4). */
static void dtmm_im2col_s8_il(const dtmm_geom* g, const dtmm_fwcs_filter* f, const int8_t* in,
                              int8_t* out, int8_t* scratch, dtmm_pixel_done done,
                              const void* ctx) {
  dtmm_im2col_groups(g, f, in, out, scratch, done, ctx, 1);
}
#endif

void dtmm_im2col_s8(const dtmm_geom* g, const dtmm_fwcs_filter* f, const int8_t* in,
                    int8_t* out, int8_t* scratch, dtmm_pixel_done done, const void* ctx) {
#if defined(DTMM_ARCH_MVE)
  if (DTMM_IM2COL_INTERLEAVED(g)) {
    dtmm_im2col_s8_il(g, f, in, out, scratch, done, ctx);
    return;
  }
#endif
  dtmm_im2col_groups(g, f, in, out, scratch, done, ctx, 0);
}
