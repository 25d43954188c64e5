/* Pointwise driver (1x1 kernels), Arm DSP. A filterlet is a whole filter: a kept
 * channel is one dense dot product of C_in bytes per pixel, a pruned one a
 * constant (written once up front). Kept channels are found by counting trailing
 * zeros in the bitmap, so pruned ones cost nothing here.
 * At stride 1 the plane is one line of consecutive pixels and two kept channels
 * are consecutive rows of values: pairs of channels x pairs of pixels, one
 * dtmm_mac_2x2 each (16 MACs per 20 instructions, against 12 per 20 for one
 * channel and three pixels). An odd channel, other strides and an odd last pixel
 * take one channel at a time: groups of DTMM_P pixels one input stride apart
 * (dtmm_mac_p), the last 1-2 pixels of a line with dtmm_mac_1. */
#include "dtmm_conv_s8_drivers.h"

#if defined(DTMM_ARCH_DSP)

/* a[0..3] += w0.x0, w1.x0, w0.x1, w1.x1 over n bytes, w1 = w0 + c and x1 = x0 +
 * (c << xshift): the asm's register offset shifted by an immediate, as no register
 * is left for a second offset. xshift must be a constant (0 or 1). */
DTMM_INLINE void dtmm_mac_2x2_shifted(const int8_t* w0, const int8_t* x0, int32_t c,
                                      int32_t n, int32_t* a, const int xshift) {
  int32_t s00 = a[0], s01 = a[1], s10 = a[2], s11 = a[3];
  int32_t rest = n & 3;
  const int32_t xc = c << xshift;
#if defined(__OPTIMIZE__) /* -O0 keeps r7 as frame pointer: not enough registers */
  uint32_t wa, wa13, wb, wb13, xv, t = (uint32_t)(n >> 2); /* t: the count, then a temp */
  if (n >= 4)
    __asm volatile(
        "mov lr, %[t]\n"
        "1:\n\t"
        "ldr %[wb], [%[w0], %[c]]\n\t"
        "ldr %[wa], [%[w0]], #4\n\t"
        "sxtb16 %[wb13], %[wb], ror #8\n\t"
        "sxtb16 %[wb], %[wb]\n\t"
        "sxtb16 %[wa13], %[wa], ror #8\n\t"
        "sxtb16 %[wa], %[wa]\n\t"
        "ldr %[xv], [%[x0], %[c], lsl %[sh]]\n\t"
        "sxtb16 %[t], %[xv]\n\t"
        "smlad %[s10], %[t], %[wa], %[s10]\n\t"
        "smlad %[s11], %[t], %[wb], %[s11]\n\t"
        "sxtb16 %[t], %[xv], ror #8\n\t"
        "smlad %[s10], %[t], %[wa13], %[s10]\n\t"
        "smlad %[s11], %[t], %[wb13], %[s11]\n\t"
        "ldr %[xv], [%[x0]], #4\n\t"
        "sxtb16 %[t], %[xv]\n\t"
        "smlad %[s00], %[t], %[wa], %[s00]\n\t"
        "smlad %[s01], %[t], %[wb], %[s01]\n\t"
        "sxtb16 %[t], %[xv], ror #8\n\t"
        "smlad %[s00], %[t], %[wa13], %[s00]\n\t"
        "smlad %[s01], %[t], %[wb13], %[s01]\n\t"
        "subs lr, lr, #1\n\t"
        "bne 1b\n"
        : [s00] "+r"(s00), [s01] "+r"(s01), [s10] "+r"(s10), [s11] "+r"(s11), [w0] "+r"(w0),
          [x0] "+r"(x0), [wa] "=&r"(wa), [wa13] "=&r"(wa13), [wb] "=&r"(wb), [wb13] "=&r"(wb13),
          [xv] "=&r"(xv), [t] "+&r"(t)
        : [c] "r"(c), [sh] "n"(xshift)
        : "cc", "memory", "lr");
#else
  int32_t quads = n >> 2;
  while (quads-- > 0) {
    const uint32_t wa = dtmm_read_u32(w0), wb = dtmm_read_u32(w0 + c);
    const uint32_t xa = dtmm_read_u32(x0), xb = dtmm_read_u32(x0 + xc);
    s00 = __smlad(__sxtb16(xa), __sxtb16(wa), s00);
    s00 = __smlad(dtmm_sxtb16_ror8(xa), dtmm_sxtb16_ror8(wa), s00);
    s01 = __smlad(__sxtb16(xa), __sxtb16(wb), s01);
    s01 = __smlad(dtmm_sxtb16_ror8(xa), dtmm_sxtb16_ror8(wb), s01);
    s10 = __smlad(__sxtb16(xb), __sxtb16(wa), s10);
    s10 = __smlad(dtmm_sxtb16_ror8(xb), dtmm_sxtb16_ror8(wa), s10);
    s11 = __smlad(__sxtb16(xb), __sxtb16(wb), s11);
    s11 = __smlad(dtmm_sxtb16_ror8(xb), dtmm_sxtb16_ror8(wb), s11);
    w0 += 4;
    x0 += 4;
  }
#endif
  while (rest-- > 0) {
    const int32_t va = w0[0], vb = w0[c], pa = x0[0], pb = x0[xc];
    s00 = (int32_t)((uint32_t)s00 + (uint32_t)(va * pa));
    s01 = (int32_t)((uint32_t)s01 + (uint32_t)(vb * pa));
    s10 = (int32_t)((uint32_t)s10 + (uint32_t)(va * pb));
    s11 = (int32_t)((uint32_t)s11 + (uint32_t)(vb * pb));
    w0++;
    x0++;
  }
  a[0] = s00;
  a[1] = s01;
  a[2] = s10;
  a[3] = s11;
}

/* Declared in the support header; defined once here (the block driver calls it
 * too), out of line as the header says. */
__attribute__((noinline)) void dtmm_mac_2x2(const int8_t* w0, const int8_t* x0,
                                            int32_t c, int32_t n, int32_t* a) {
  dtmm_mac_2x2_shifted(w0, x0, c, n, a, 0);
}

/* dtmm_mac_2x2 with the second pixel 2c bytes after the first (1x1 at stride 2). */
static __attribute__((noinline)) void dtmm_mac_2x2_s2(const int8_t* w0, const int8_t* x0,
                                                      int32_t c, int32_t n, int32_t* a) {
  dtmm_mac_2x2_shifted(w0, x0, c, n, a, 1);
}

/* The next kept channel (out_c if none); *m caches the bitmap word of the 32
 * channels from *base. */
DTMM_INLINE int32_t dtmm_next_kept(const dtmm_geom* g, const dtmm_fwcs_filter* f, uint32_t* m,
                                   int32_t* base) {
  int32_t oc;
  while (!*m) {
    *base += 32;
    if (*base >= g->out_c) return g->out_c;
    *m = dtmm_bits(f->bitmap, f->bitmap_bytes, *base,
                   g->out_c - *base < 32 ? g->out_c - *base : 32);
  }
  oc = *base + DTMM_CTZ(*m);
  *m &= *m - 1u;
  return oc;
}

/* One kept channel oc (weights w) over every pixel. */
static void dtmm_pw_channel(const dtmm_geom* g, const dtmm_pw_lines* L, const dtmm_fwcs_filter* f,
                            int32_t oc, const int8_t* w, const int8_t* in, int8_t* out) {
  const int32_t c = g->in_c, out_c = g->out_c;
  const int32_t bias = f->bias[oc], mult = f->multiplier[oc], shift = f->shift[oc];
  const int32_t groups = L->len / DTMM_P;
  int32_t oo[DTMM_P], l, i, j;
  for (j = 0; j < DTMM_P; ++j) oo[j] = j * out_c;
  for (l = 0; l < L->lines; ++l) {
    const int8_t* x = in + l * L->line_in;
    int8_t* o = out + l * L->line_out + oc;
    for (i = 0; i < groups; ++i) {
      dtmm_acc acc;
      dtmm_acc_set(&acc, bias);
      dtmm_mac_p(w, x, L->pitch, c, &acc);
      dtmm_store_p(&acc, DTMM_P, mult, shift, g, o, oo);
      x += DTMM_P * L->pitch;
      o += DTMM_P * out_c;
    }
    for (i = groups * DTMM_P; i < L->len; ++i) {
      *o = dtmm_requant_out(dtmm_mac_1(w, x, c, bias), mult, shift, g);
      x += L->pitch;
      o += out_c;
    }
  }
}

typedef void (*dtmm_mac_2x2_fn)(const int8_t* w0, const int8_t* x0, int32_t c, int32_t n,
                                int32_t* a);

/* Kept channels c0, c1 (consecutive rows at w) over a line of len pixels at x, one
 * pitch apart, pairs of pixels through mac (dtmm_mac_2x2 for pitch c,
 * dtmm_mac_2x2_s2 for 2c). Out of line: one copy for both strides. */
static DTMM_NOINLINE void dtmm_pw_pair_line(const dtmm_geom* g, const dtmm_fwcs_filter* f,
                                            int32_t c0, int32_t c1, const int8_t* w,
                                            const int8_t* x, int8_t* o, int32_t len,
                                            int32_t pitch, dtmm_mac_2x2_fn mac) {
  /* in locals: the byte stores to o may alias anything, g included */
  const int32_t c = g->in_c, out_c = g->out_c, off = g->out_off, lo = g->act_min,
                hi = g->act_max;
  const int32_t b0 = f->bias[c0], m0 = f->multiplier[c0], s0 = f->shift[c0];
  const int32_t b1 = f->bias[c1], m1 = f->multiplier[c1], s1 = f->shift[c1];
  int32_t i;
  for (i = 0; i + 1 < len; i += 2) {
    int32_t a[4];
    a[0] = b0;
    a[1] = b1;
    a[2] = b0;
    a[3] = b1;
    mac(w, x, c, c, a);
    o[c0] = dtmm_out_s8(dtmm_requantize(a[0], m0, s0), off, lo, hi);
    o[c1] = dtmm_out_s8(dtmm_requantize(a[1], m1, s1), off, lo, hi);
    o[out_c + c0] = dtmm_out_s8(dtmm_requantize(a[2], m0, s0), off, lo, hi);
    o[out_c + c1] = dtmm_out_s8(dtmm_requantize(a[3], m1, s1), off, lo, hi);
    x += 2 * pitch;
    o += 2 * out_c;
  }
  if (i < len) { /* odd last pixel */
    o[c0] = dtmm_out_s8(dtmm_requantize(dtmm_mac_1(w, x, c, b0), m0, s0), off, lo, hi);
    o[c1] = dtmm_out_s8(dtmm_requantize(dtmm_mac_1(w + c, x, c, b1), m1, s1), off, lo, hi);
  }
}

void dtmm_pointwise_s8(const dtmm_geom* g, const dtmm_fwcs_filter* f, const int8_t* in,
                       int8_t* out) {
  const int32_t c = g->in_c, out_c = g->out_c;
  dtmm_pw_lines L;
  const int8_t* w = f->values;
  int32_t base = -32;
  uint32_t m = 0;
  int pairs;
  L = dtmm_pointwise_lines(g);
  /* pairs of pixels: consecutive (stride 1, one line) or 2 apart along each line */
  pairs = L.len >= 2 && (L.flat || g->sw == 2);
  dtmm_fill_pruned(g, f, out, g->out_h * g->out_w);
  for (;;) {
    const int32_t c0 = dtmm_next_kept(g, f, &m, &base);
    int32_t c1, l;
    if (c0 >= out_c) break;
    c1 = pairs ? dtmm_next_kept(g, f, &m, &base) : out_c;
    if (c1 >= out_c) { /* one channel */
      dtmm_pw_channel(g, &L, f, c0, w, in, out);
      w += c;
      continue;
    }
    if (L.flat)
      dtmm_pw_pair_line(g, f, c0, c1, w, in, out, L.len, c, dtmm_mac_2x2);
    else
      for (l = 0; l < L.lines; ++l)
        dtmm_pw_pair_line(g, f, c0, c1, w, in + l * L.line_in, out + l * L.line_out, L.len,
                          L.pitch, dtmm_mac_2x2_s2);
    w += 2 * c;
  }
}

#endif /* DTMM_ARCH_DSP */
