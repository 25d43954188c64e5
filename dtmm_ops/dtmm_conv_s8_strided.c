/* Window driver, Arm DSP and portable: strided lines, read in place.
 *
 * The interior pixels (windows inside the input) in groups of DTMM_P along a row,
 * or down a column when the interior is narrower than a group (a 49x1 feature
 * map), so that the pixels of a group are one fixed input stride apart: no im2col,
 * no per-group addressing. Output channel outermost: the channel's bitmap field
 * is decoded once into its runs (taps contiguous in the input: a kernel row, or
 * rows whose windows touch) and replayed for every group, one dtmm_mac_p per run.
 * A line whose leftover is at least 3/4 of a group ends with a group that overlaps
 * the previous one (those pixels are computed twice, identically); the border and
 * the shorter leftovers go to dtmm_im2col_s8. */
#include "dtmm_conv_s8_drivers.h"

#if !defined(DTMM_ARCH_MVE)

typedef struct {
  int32_t lines;    /* rows (or columns) holding groups */
  int32_t groups;   /* groups per line */
  int32_t last;     /* first pixel of the last group in a line */
  int32_t covered;  /* pixels of a line that the groups cover */
  int32_t along_y;  /* 0: groups run along x; 1: along y */
  int32_t in_step;  /* input bytes between two pixels of a group */
  int32_t out_step; /* output bytes between two pixels of a group */
} dtmm_strided;

static void dtmm_line_groups(int32_t len, dtmm_strided* s) {
  const int32_t rest = len % DTMM_P;
  s->groups = len / DTMM_P;
  s->covered = s->groups * DTMM_P;
  if (4 * rest >= 3 * DTMM_P) {
    s->groups++;
    s->covered = len;
  }
  s->last = s->covered == len ? len - DTMM_P : (s->groups - 1) * DTMM_P;
}

static void dtmm_strided_layout(const dtmm_geom* g, dtmm_strided* s) {
  const int32_t wi = g->x_hi - g->x_lo, hi = g->y_hi - g->y_lo;
  s->lines = s->groups = s->along_y = s->last = s->covered = 0;
  s->in_step = s->out_step = 0;
  if (wi >= DTMM_P && hi > 0) {
    s->lines = hi;
    dtmm_line_groups(wi, s);
    s->in_step = g->sw * g->in_c; /* < input width * C_in: in bounds */
    s->out_step = g->out_c;
  } else if (hi >= DTMM_P && wi > 0) {
    s->along_y = 1;
    s->lines = wi;
    dtmm_line_groups(hi, s);
    s->in_step = g->sh * g->in_w * g->in_c; /* DTMM_P interior rows: < input size */
    s->out_step = g->out_w * g->out_c;
  }
}

/* The covered pixels of row y from x on (0 where (y, x) is not covered). */
static int32_t dtmm_strided_done(const dtmm_geom* g, const void* ctx, int32_t y, int32_t x) {
  const dtmm_strided* s = (const dtmm_strided*)ctx;
  if (s->groups == 0) return 0;
  if (s->along_y)
    return x >= g->x_lo && x < g->x_hi && y >= g->y_lo && y < g->y_lo + s->covered ? g->x_hi - x
                                                                                    : 0;
  return y >= g->y_lo && y < g->y_hi && x >= g->x_lo && x < g->x_lo + s->covered
             ? g->x_lo + s->covered - x
             : 0;
}

int32_t dtmm_window_s8_get_buffer_size(const dtmm_geom* g) {
  dtmm_strided s;
  dtmm_strided_layout(g, &s);
  /* scratch for the im2col part when any pixel is left to it */
  if (!dtmm_has_border(g) && s.groups > 0 && s.covered == (s.along_y ? g->y_hi - g->y_lo
                                                                     : g->x_hi - g->x_lo))
    return 0;
  return dtmm_im2col_s8_get_buffer_size(g);
}

/* One group, one channel: the channel's runs replayed at input bg. */
DTMM_INLINE void dtmm_strided_group(const dtmm_geom* g, int32_t bias, int32_t mult,
                                    int32_t shift, const int8_t* w, const int8_t* bg,
                                    int8_t* og, int32_t ps, int32_t nr, const int32_t* run_off,
                                    const int32_t* run_len, const int32_t* oo) {
  int32_t k;
  dtmm_acc acc;
  dtmm_acc_set(&acc, bias);
  for (k = 0; k < nr; ++k) {
    dtmm_mac_p(w, bg + run_off[k], ps, run_len[k], &acc);
    w += run_len[k];
  }
  dtmm_store_p(&acc, DTMM_P, mult, shift, g, og, oo);
}

/* Out of line: its tables leave the stack before the im2col part runs. */
static __attribute__((noinline)) void dtmm_run_strided(const dtmm_geom* g, const dtmm_strided* s,
                                                       const dtmm_fwcs_filter* f,
                                                       const int8_t* in, int8_t* out) {
  int32_t off_in[DTMM_MAX_TAPS];
  const uint32_t cont = dtmm_tap_table(g, off_in);
  /* the runs of a channel (bounded by dtmm_conv_s8_choose); the second set: the
   * dense filter's runs */
  int32_t run_off[DTMM_MAX_RUNS], run_len[DTMM_MAX_RUNS];
  int32_t d_off[DTMM_MAX_RUNS], d_len[DTMM_MAX_RUNS];
  /* the channel's filter, dense, where that is cheaper than its kept runs */
  int8_t wx[DTMM_EXPAND_MAX_BYTES];
  const int32_t taps = g->taps, in_c = g->in_c, ps = s->in_step;
  const int dense_ok = taps * in_c <= DTMM_EXPAND_MAX_BYTES;
  const int8_t* w = f->values;
  int32_t oc, j, t, nd = 0, cost_dense = 0;
  int32_t oo[DTMM_P];
  for (j = 0; j < DTMM_P; ++j) oo[j] = j * s->out_step;
  if (dense_ok) {
    uint32_t m = taps >= 32 ? 0xFFFFFFFFu : (1u << taps) - 1u;
    while (m) {
      const int32_t run = dtmm_next_run(&m, cont, &t);
      d_off[nd] = off_in[t];
      d_len[nd] = run * in_c;
      cost_dense += dtmm_run_cost(d_len[nd++]);
    }
  }
  for (oc = 0; oc < g->out_c; ++oc) {
    const uint32_t m0 = dtmm_bits(f->bitmap, f->bitmap_bytes, oc * taps, taps);
    uint32_t m = m0;
    int32_t nr = 0, total = 0, line, gi, cost = 0;
    const int32_t *ro = run_off, *rl = run_len;
    const int8_t* wc = w;
    if (!m) continue; /* pruned filter: constant output already written */
    while (m) {
      const int32_t run = dtmm_next_run(&m, cont, &t);
      run_off[nr] = off_in[t];
      run_len[nr] = run * in_c;
      cost += dtmm_run_cost(run_len[nr]);
      total += run_len[nr++];
    }
    if (dense_ok && cost_dense < cost) { /* expand the kept filterlets, zeros elsewhere */
      const int8_t* v = w;
      m = m0;
      dtmm_fill(wx, 0, taps * in_c);
      while (m) {
        t = DTMM_CTZ(m);
        m &= m - 1u;
        dtmm_copy(wx + t * in_c, v, in_c);
        v += in_c;
      }
      ro = d_off;
      rl = d_len;
      nr = nd;
      wc = wx;
    }
    {
      const int32_t bias = f->bias[oc], mult = f->multiplier[oc], shift = f->shift[oc];
      for (line = 0; line < s->lines; ++line) {
        const int32_t y0 = s->along_y ? g->y_lo : g->y_lo + line;
        const int32_t x0 = s->along_y ? g->x_lo + line : g->x_lo;
        const int8_t* b = in + ((y0 * g->sh - g->pt) * g->in_w + (x0 * g->sw - g->pl)) * in_c;
        int8_t* o = out + (y0 * g->out_w + x0) * g->out_c + oc;
        for (gi = 0; gi < s->groups; ++gi) {
          const int32_t px = gi < s->groups - 1 ? gi * DTMM_P : s->last;
          dtmm_strided_group(g, bias, mult, shift, wc, b + px * ps, o + px * s->out_step, ps, nr,
                             ro, rl, oo);
        }
      }
    }
    w += total;
  }
}

void dtmm_window_s8(const dtmm_geom* g, const dtmm_fwcs_filter* f, const int8_t* in,
                    int8_t* out, int8_t* scratch) {
  dtmm_strided s;
  dtmm_strided_layout(g, &s);
  dtmm_fill_pruned(g, f, out, g->out_h * g->out_w);
  if (s.groups > 0) dtmm_run_strided(g, &s, f, in, out);
  if (dtmm_window_s8_get_buffer_size(g) > 0)
    dtmm_im2col_s8(g, f, in, out, scratch, dtmm_strided_done, &s);
}

#endif /* !DTMM_ARCH_MVE */
