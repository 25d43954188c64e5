/* Pointwise driver (1x1 kernels), Arm DSP: two kept channels x two pixels per
 * dtmm_mac_2x2 (16 MACs per 20 instructions, against 12 per 20 for one channel and
 * three pixels). Pairs of kept channels outermost (found by counting trailing
 * zeros in the bitmap; pruned channels are written once up front), then pairs of
 * pixels along each line of the output; an odd channel or pixel is paired with
 * itself and stored once. */
#include "dtmm_conv_s8_drivers.h"

#if defined(DTMM_ARCH_DSP)

/* The next kept channel at or after *oc (out_c if none); *m caches the bitmap
 * word of the 32 channels from *base. */
DTMM_INLINE int32_t dtmm_next_kept(const dtmm_geom* g, const dtmm_fwcs_filter* f, uint32_t* m,
                                   int32_t* base) {
  while (!*m) {
    *base += 32;
    if (*base >= g->out_c) return g->out_c;
    *m = dtmm_bits(f->bitmap, f->bitmap_bytes, *base,
                   g->out_c - *base < 32 ? g->out_c - *base : 32);
  }
  {
    const int32_t oc = *base + DTMM_CTZ(*m);
    *m &= *m - 1u;
    return oc;
  }
}

void dtmm_pointwise_s8(const dtmm_geom* g, const dtmm_fwcs_filter* f, const int8_t* in,
                       int8_t* out) {
  const int32_t c = g->in_c, out_c = g->out_c;
  const int flat = g->sh == 1 && g->sw == 1;
  const int32_t lines = flat ? 1 : g->out_h;
  const int32_t len = flat ? g->out_h * g->out_w : g->out_w;
  const int32_t pitch = g->sw * c;
  const int32_t line_in = g->sh * g->in_w * c, line_out = g->out_w * out_c;
  const int8_t* w = f->values;
  int32_t base = -32;
  uint32_t m = 0;
  dtmm_fill_pruned(g, f, out, g->out_h * g->out_w);
  for (;;) {
    const int32_t c0 = dtmm_next_kept(g, f, &m, &base);
    int32_t c1, l, i;
    const int8_t* w1;
    if (c0 >= out_c) break;
    c1 = dtmm_next_kept(g, f, &m, &base);
    w1 = c1 < out_c ? w + c : w;
    {
      const int32_t b0 = f->bias[c0], m0 = f->multiplier[c0], s0 = f->shift[c0];
      const int32_t cc = c1 < out_c ? c1 : c0;
      const int32_t b1 = f->bias[cc], m1 = f->multiplier[cc], s1 = f->shift[cc];
      for (l = 0; l < lines; ++l) {
        const int8_t* x = in + l * line_in;
        int8_t* o = out + l * line_out;
        for (i = 0; i < len; i += 2) {
          const int two = i + 1 < len;
          int32_t a[4];
          a[0] = b0;
          a[1] = b1;
          a[2] = b0;
          a[3] = b1;
          dtmm_mac_2x2(w, w1, x, two ? x + pitch : x, c, a);
          o[c0] = dtmm_requant_out(a[0], m0, s0, g);
          o[cc] = dtmm_requant_out(a[1], m1, s1, g);
          if (two) {
            o[out_c + c0] = dtmm_requant_out(a[2], m0, s0, g);
            o[out_c + cc] = dtmm_requant_out(a[3], m1, s1, g);
          }
          x += 2 * pitch;
          o += 2 * out_c;
        }
      }
    }
    if (c1 >= out_c) break;
    w += 2 * c;
  }
}

#endif /* DTMM_ARCH_DSP */
