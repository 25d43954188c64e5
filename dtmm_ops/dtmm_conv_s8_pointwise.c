/* Pointwise driver (1x1 kernels), portable C: a filterlet is a whole filter,
 * so a kept channel is one dense dot product of C_in bytes per pixel and a pruned
 * one a constant. Kept channels outermost (found by counting trailing zeros in the
 * bitmap, so pruned channels cost nothing here), then groups of DTMM_P pixels along
 * each line of the output (the whole plane at stride 1), one dtmm_mac_p each. A
 * line's last group overlaps its neighbour when 2 or 3 pixels are left; a single
 * leftover pixel (or a line shorter than a group) goes through the pixel driver. */
#include "dtmm_conv_s8_drivers.h"

#if defined(DTMM_ARCH_PORTABLE) /* MVE: dtmm_conv_s8_pointwise_mve.c, DSP: _2x2.c */

void dtmm_pointwise_s8(const dtmm_geom* g, const dtmm_fwcs_filter* f, const int8_t* in,
                       int8_t* out) {
  const int32_t c = g->in_c, out_c = g->out_c;
  const dtmm_pw_lines L = dtmm_pointwise_lines(g);
  const int32_t lines = L.lines, len = L.len, pitch = L.pitch;
  const int32_t line_in = L.line_in, line_out = L.line_out;
  const int32_t rest = len % DTMM_P;
  const int32_t full = len / DTMM_P;
  /* the overlapping last group, when 2 or more pixels are left */
  const int32_t groups = full + (full > 0 && rest >= 2);
  const int32_t last = len - DTMM_P;
  const int32_t single = groups == 0 ? len : (rest >= 2 ? 0 : rest);
  const int8_t* w = f->values;
  int32_t oc0, l, i;
  int32_t oo[DTMM_P];
  for (i = 0; i < DTMM_P; ++i) oo[i] = i * out_c;
  dtmm_fill_pruned(g, f, out, g->out_h * g->out_w);
  for (oc0 = 0; oc0 < out_c; oc0 += 32) {
    uint32_t m = dtmm_bits(f->bitmap, f->bitmap_bytes, oc0, out_c - oc0 < 32 ? out_c - oc0 : 32);
    while (m) {
      const int32_t oc = oc0 + DTMM_CTZ(m);
      const int32_t bias = f->bias[oc];
      const int32_t mult = f->multiplier[oc], shift = f->shift[oc];
      m &= m - 1u;
      for (l = 0; l < lines; ++l) {
        const int8_t* x = in + l * line_in;
        int8_t* o = out + l * line_out + oc;
        for (i = 0; i < groups; ++i) {
          const int32_t px = i < full ? i * DTMM_P : last;
          dtmm_acc acc;
          dtmm_acc_set(&acc, bias);
          dtmm_mac_p(w, x + px * pitch, pitch, c, &acc);
          dtmm_store_p(&acc, DTMM_P, mult, shift, g, o + px * out_c, oo);
        }
      }
      w += c;
    }
  }
  /* Pixels no group covers: all channels of each, one pixel at a time. */
  for (l = 0; l < lines && single > 0; ++l)
    for (i = len - single; i < len; ++i)
      dtmm_pixel_channels_1x1(g, f, in + l * line_in + i * pitch,
                              out + l * line_out + i * out_c);
}

#endif /* DTMM_ARCH_PORTABLE */
