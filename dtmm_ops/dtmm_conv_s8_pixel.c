/* Pixel driver: output planes with fewer pixels than a group (microWakeWord's
 * convs have 1x1 output planes), and the leftover pixels of the portable pointwise
 * driver.
 *
 * One pixel at a time, its window read as [taps][C_in] bytes (in place when the
 * input already has that layout, else copied to scratch), so that every stretch of
 * consecutive kept taps of a channel is one dot product. On MVE the channels go in
 * blocks of 32 (a bitmap word for 1x1): the sums land in a block on the stack and
 * are requantized 4 lanes at a time, with the multipliers and shifts loaded as
 * vectors; a fully pruned channel keeps its bias and costs (almost) nothing. On
 * DSP (k > 1, C_in a multiple of 4) the windows of the 1-2 pixels are widened to
 * int16 once, and each channel's runs and weight loads serve both pixels. */
#include "dtmm_conv_s8_drivers.h"

/* The window of every pixel is contiguous in the input: all taps inside, and
 * tap t at t * C_in from the first. A 1x1 window always is (validated: no padding,
 * no trailing rows). */
DTMM_INLINE int dtmm_window_contiguous(const dtmm_geom* g) {
  return g->taps == 1 || (!dtmm_has_border(g) && (g->ker_w == 1 || g->dw == 1) &&
                          (g->ker_h == 1 || (int64_t)g->dh * g->in_w == g->ker_w));
}

/* The window of output pixel (y, x): in place where contiguous, else copied to copy. */
DTMM_INLINE const int8_t* dtmm_pixel_window_of(const dtmm_geom* g, const int8_t* in, int32_t y,
                                               int32_t x, int contiguous, int8_t* copy) {
  if (contiguous) return in + ((y * g->sh - g->pt) * g->in_w + (x * g->sw - g->pl)) * g->in_c;
  dtmm_im2col(g, in, y, x, copy);
  return copy;
}

#if defined(DTMM_ARCH_DSP)
/* DSP, k > 1: windows of whole words (C_in a multiple of 4) and <= 25 taps (a field
 * in one load) are widened once per pixel, for the MAC loops of dtmm_pixel_wide.
 * Not 1x1: a lone pixel's C_in bytes serve only the kept channels' MACs (widening
 * them cost more than it saved from s = .5 on, microWakeWord's 1x1), and 1x1
 * layers keep needing no scratch. */
DTMM_INLINE int dtmm_pixel_widens(const dtmm_geom* g) {
  return (g->in_c & 3) == 0 && g->taps > 1 && g->taps <= 25;
}
#endif

int32_t dtmm_pixel_s8_get_buffer_size(const dtmm_geom* g) {
#if defined(DTMM_ARCH_DSP)
  /* two widened windows (int16: 2 bytes a byte); a copied window lies in the second
   * half of its pixel's (validated: 4 * taps * C_in fits) */
  if (dtmm_pixel_widens(g)) return 2 * g->taps * g->in_c * (g->out_h * g->out_w > 1 ? 2 : 1);
#endif
  return dtmm_window_contiguous(g) ? 0 : g->taps * g->in_c;
}

/* *acc + the kept taps of the channel whose bitmap field starts at bit pos, over a
 * contiguous window: consecutive kept taps are one run. Kernels above 25 taps
 * (out of line) read the field 32 bits at a time; a run across two words is two
 * dot products. v walks the values; returns where it stops (so that it stays in a
 * register across channels). */
static __attribute__((noinline)) const int8_t* dtmm_channel_dot_long(
    const dtmm_geom* g, const dtmm_fwcs_filter* f, int32_t pos, const int8_t* win,
    const int8_t* v, int32_t* acc) {
  const int32_t c = g->in_c, taps = g->taps;
  int32_t base, t, run, s = *acc;
  for (base = 0; base < taps; base += 32) {
    uint32_t m = dtmm_bits(f->bitmap, f->bitmap_bytes, pos + base, taps - base < 32 ? taps - base : 32);
    while (m) {
      run = dtmm_next_run(&m, 0xFFFFFFFFu, &t) * c;
      s = dtmm_mac_1(v, win + (base + t) * c, run, s);
      v += run;
    }
  }
  *acc = s;
  return v;
}

DTMM_INLINE const int8_t* dtmm_channel_dot(const dtmm_geom* g, const dtmm_fwcs_filter* f,
                                           int32_t pos, const int8_t* win, const int8_t* v,
                                           int32_t* acc) {
  const int32_t c = g->in_c;
  int32_t t, run, s;
  uint32_t m;
  if (g->taps > 25) return dtmm_channel_dot_long(g, f, pos, win, v, acc);
  m = dtmm_bits(f->bitmap, f->bitmap_bytes, pos, g->taps);
  s = *acc;
  while (m) {
    run = dtmm_next_run_contig(&m, &t) * c;
    s = dtmm_mac_1(v, win + t * c, run, s);
    v += run;
  }
  *acc = s;
  return v;
}

#if defined(DTMM_ARCH_MVE)
/* 1x1, one pixel: a sparse matrix-vector product. The kept channels' rows are
 * consecutive in the values, so any 4 kept channels are 4 consecutive rows: one
 * dtmm_mac_1x4_v per 4 KEPT channels (the cost falls with every pruned channel),
 * the 4 sums scattered to their channels in a block of 32 int32 on the stack
 * (zeroed first, so a pruned channel's sum is 0). Per block (one bitmap word) the
 * channels are then requantized 4 at a time with their biases. */
#define DTMM_PIXEL_BLOCK DTMM_WORD_CHANNELS

/* Out of line: its block and registers stay out of the k > 1 loop around it. */
static __attribute__((noinline)) void dtmm_pixel_pointwise(const dtmm_geom* g, const dtmm_fwcs_filter* f,
                                 const int8_t* win, int8_t* out) {
  const int32_t c = g->in_c, out_c = g->out_c;
  const int32x4_t zero = vdupq_n_s32(0);
  const int8_t* w = f->values;
  int32_t acc[DTMM_PIXEL_BLOCK];
  int32_t b, k;
  for (b = 0; b < out_c; b += DTMM_PIXEL_BLOCK) {
    const int32_t n = out_c - b < DTMM_PIXEL_BLOCK ? out_c - b : DTMM_PIXEL_BLOCK;
    uint32_t m = dtmm_bitmap_word(f->bitmap, f->bitmap_bytes, b >> 3);
    for (k = 0; k < n; k += 4) vstrwq_s32(acc + k, zero);
    while (m) {
      const uint32_t m1 = m & (m - 1u), m2 = m1 & (m1 - 1u), m3 = m2 & (m2 - 1u);
      if (m3) { /* 4 or more left */
        vstrwq_scatter_shifted_offset_s32(acc, dtmm_ctz4(m, m1, m2, m3),
                                          dtmm_mac_1x4_v(w, w + c, w + 2 * c, w + 3 * c, win, c));
        w += 4 * c;
        m = m3 & (m3 - 1u);
      } else if (!m1) { /* the last one: a single row */
        acc[DTMM_CTZ(m)] = dtmm_mac_1(w, win, c, 0);
        w += c;
        m = 0;
      } else { /* the last 2-3: unused lanes read the first row, store nothing */
        const int32_t kept = 2 + (m2 != 0);
        vstrwq_scatter_shifted_offset_p_s32(
            acc, dtmm_ctz4(m, m1, m2 | 0x80000000u, m),
            dtmm_mac_1x4_v(w, w + c, m2 ? w + 2 * c : w, w, win, c),
            vctp32q((uint32_t)kept));
        w += kept * c;
        m = 0;
      }
    }
    dtmm_requant_block_x4(acc, 1, f->bias + b, f->multiplier + b, f->shift + b, n,
                             g->out_off, g->act_min, g->act_max, out + b);
  }
}
#else
/* 1x1, one pixel, a channel at a time: its bit from a word read per 32 channels,
 * the arrays in locals (the byte stores to out may alias anything). */
static void dtmm_pixel_pointwise(const dtmm_geom* g, const dtmm_fwcs_filter* f,
                                 const int8_t* win, int8_t* out) {
  const int32_t c = g->in_c, out_c = g->out_c;
  const int32_t *bias = f->bias, *mult = f->multiplier, *shift = f->shift;
  const int32_t off = g->out_off, lo = g->act_min, hi = g->act_max;
  const int8_t* w = f->values;
  int32_t oc;
  uint32_t m = 0;
  for (oc = 0; oc < out_c; ++oc, m >>= 1) {
    int32_t s = bias[oc];
    if ((oc & 31) == 0) m = dtmm_bitmap_word(f->bitmap, f->bitmap_bytes, oc >> 3);
    if (m & 1u) {
      s = dtmm_mac_1(w, win, c, s);
      w += c;
    }
    out[oc] = dtmm_out_s8(dtmm_requantize(s, mult[oc], shift[oc]), off, lo, hi);
  }
}
#endif

#if defined(DTMM_ARCH_MVE)
/* The asm text of dtmm_pixel_runs and dtmm_pixel_runs_x16 around what differs: per
 * channel its field (m, from acc) and bias (s), at_channel, then per run the text
 * `run` (it sets x to the window at the run, the values pointer `vals` and len to
 * its bytes, and the Z flag on the channel's last run) and the run's MAC loop;
 * the sum goes to acc over the field. */
#define DTMM_PIXEL_RUNS_ASM(at_channel, run, vals)                                 \
  "1:\n\t"                                                                         \
  "ldr %[m], [%[acc]]\n\t"                                                         \
  "ldr %[s], [%[bias]], #4\n\t"                                                    \
  "cbz %[m], 4f\n\t" at_channel                                                    \
  "2:\n\t" run                                                                     \
  "dlstp.8 lr, %[len]\n"                                                           \
  "3:\n\t"                                                                         \
  "vldrb.8 q0, [%[" #vals "]], #16\n\t"                                            \
  "vldrb.8 q1, [%[x]], #16\n\t"                                                    \
  "vmladava.s8 %[s], q1, q0\n\t"                                                   \
  "letp lr, 3b\n\t"                                                                \
  "bne 2b\n"                                                                       \
  "4:\n\t"                                                                         \
  "str %[s], [%[acc]], #4\n\t"                                                     \
  "cmp %[acc], %[end]\n\t"                                                         \
  "bne 1b\n"

/* acc[j] = bias[j] + the kept taps of channel j . the window (contiguous), with the
 * bit-reversed field of channel j in acc[j] on entry (j < n, n >= 1). One asm loop:
 * a run is the leading ones after the leading zeros (CLZ, shift, CLZ of the
 * complement), and its last shift sets the flags that end the channel. v walks the
 * values; returns where it stops. */
DTMM_INLINE const int8_t* dtmm_pixel_runs(int32_t* acc, const int32_t* bias, int32_t n,
                                          const int8_t* v, const int8_t* win, int32_t c) {
  int32_t* end = acc + n;
  uint32_t m, t, len;
  int32_t s;
  const int8_t *x, *y;
  __asm volatile(
      DTMM_PIXEL_RUNS_ASM(
          "movs %[t], #0\n",
          "clz %[len], %[m]\n\t"       /* pruned taps before the run */
          "lsl %[m], %[m], %[len]\n\t"
          "add %[t], %[t], %[len]\n\t" /* the run's first tap */
          "mvn %[len], %[m]\n\t"
          "clz %[len], %[len]\n\t"      /* its length (32: shifts m to 0) */
          "lsls %[m], %[m], %[len]\n\t" /* Z: the channel's last run */
          "mla %[x], %[t], %[c], %[win]\n\t"
          "add %[t], %[t], %[len]\n\t"
          "mul %[len], %[len], %[c]\n\t"
          "mov %[y], %[v]\n\t"
          "add %[v], %[v], %[len]\n\t",
          y)
      : [acc] "+r"(acc), [bias] "+r"(bias), [v] "+r"(v), [m] "=&l"(m), [s] "=&Te"(s),
        [t] "=&r"(t), [len] "=&r"(len), [x] "=&r"(x), [y] "=&r"(y)
      : [end] "r"(end), [win] "r"(win), [c] "r"(c)
      : "q0", "q1", "lr", "cc", "memory");
  return v;
}

/* dtmm_pixel_runs for C_in a multiple of 16: a run ends on a 16-byte step, so the
 * loop leaves the values and the window exactly past it (9 instructions a run
 * besides the MAC steps, not 13). */
DTMM_INLINE const int8_t* dtmm_pixel_runs_x16(int32_t* acc, const int32_t* bias, int32_t n,
                                              const int8_t* v, const int8_t* win, int32_t c) {
  int32_t* end = acc + n;
  uint32_t m, len;
  int32_t s;
  const int8_t* x;
  __asm volatile(
      DTMM_PIXEL_RUNS_ASM(
          "mov %[x], %[win]\n",
          "clz %[len], %[m]\n\t" /* pruned taps before the run */
          "lsl %[m], %[m], %[len]\n\t"
          "mla %[x], %[len], %[c], %[x]\n\t"
          "mvn %[len], %[m]\n\t"
          "clz %[len], %[len]\n\t"      /* its length (32: shifts m to 0) */
          "lsls %[m], %[m], %[len]\n\t" /* Z: the channel's last run */
          "mul %[len], %[len], %[c]\n\t",
          v)
      : [acc] "+r"(acc), [bias] "+r"(bias), [v] "+r"(v), [m] "=&l"(m), [s] "=&Te"(s),
        [len] "=&r"(len), [x] "=&r"(x)
      : [end] "r"(end), [win] "r"(win), [c] "r"(c)
      : "q0", "q1", "lr", "cc", "memory");
  return v;
}

/* k > 1, MVE: per block of channels the sums from the biases (a pruned channel
 * keeps its bias), then the block's requantization, 4 channels a vector. Out of
 * line, as the 1x1 path: only one of their blocks is on the stack. The run loop's
 * test per block costs C_in % 16 != 0 layers about 6 instructions a call; a copy
 * of the function per loop would cost 478 B. */
__attribute__((noinline)) void dtmm_pixel_channels_k(const dtmm_geom* g,
                                                     const dtmm_fwcs_filter* f,
                                                     const int8_t* win, int8_t* out) {
  const int8_t* w = f->values;
  const int32_t out_c = g->out_c, taps = g->taps, c = g->in_c;
  int32_t acc[DTMM_PIXEL_BLOCK], oc, j, pos = 0;
  for (oc = 0; oc < out_c; oc += DTMM_PIXEL_BLOCK, pos += DTMM_PIXEL_BLOCK * taps) {
    const int32_t n = out_c - oc < DTMM_PIXEL_BLOCK ? out_c - oc : DTMM_PIXEL_BLOCK;
    if (taps <= 25) { /* a field in 4 bytes: fields first, then one asm loop */
      dtmm_tap_fields(f->bitmap, f->bitmap_bytes, pos, taps, taps, n, (uint32_t*)acc);
      if (c % 16 == 0)
        w = dtmm_pixel_runs_x16(acc, f->bias + oc, n, w, win, c);
      else
        w = dtmm_pixel_runs(acc, f->bias + oc, n, w, win, c);
    } else {
      for (j = 0; j < n; ++j) {
        int32_t a = f->bias[oc + j];
        w = dtmm_channel_dot_long(g, f, pos + j * taps, win, w, &a);
        acc[j] = a;
      }
    }
    dtmm_requant_block_x4(acc, 0, f->bias + oc, f->multiplier + oc, f->shift + oc, n,
                             g->out_off, g->act_min, g->act_max, out + oc);
  }
}
#endif

#if defined(DTMM_ARCH_DSP)
/* Every channel over one or two (two, a constant at each call) widened windows x0
 * and x0 + taps * C_in / 2 words, outputs at out and out + C_out: the field, its
 * runs and the weight loads are shared by both pixels. */
DTMM_INLINE void dtmm_pixel_wide(const dtmm_geom* g, const dtmm_fwcs_filter* f,
                                 const uint32_t* x0, int two, int8_t* out) {
  const int32_t c = g->in_c, taps = g->taps, out_c = g->out_c;
  const uint32_t* x1 = x0 + ((taps * c) >> 1);
  const int8_t* v = f->values;
  int32_t oc, pos = 0, t;
  for (oc = 0; oc < out_c; ++oc, pos += taps) {
    int32_t s0 = f->bias[oc], s1 = s0;
    uint32_t m = dtmm_bits(f->bitmap, f->bitmap_bytes, pos, taps);
    while (m) {
      const int32_t run = dtmm_next_run_contig(&m, &t) * c, at = (t * c) >> 1;
      if (two)
        dtmm_mac_2_wide(v, x0 + at, x1 + at, run, &s0, &s1);
      else
        s0 = dtmm_mac_1_wide(v, x0 + at, run, s0);
      v += run;
    }
    out[oc] = dtmm_requant_out(s0, f->multiplier[oc], f->shift[oc], g);
    if (two) out[out_c + oc] = dtmm_requant_out(s1, f->multiplier[oc], f->shift[oc], g);
  }
}

/* The plane (1-2 pixels: a tiny plane on DSP) two pixels at a time: each window,
 * in place or copied (into the second half of its widened window's scratch, which
 * widening forward never overtakes), widened into scratch. */
static DTMM_NOINLINE void dtmm_pixel_plane_wide(const dtmm_geom* g, const dtmm_fwcs_filter* f,
                                                const int8_t* in, int8_t* out,
                                                int8_t* scratch) {
  const int32_t n = g->taps * g->in_c, pixels = g->out_h * g->out_w;
  const int contiguous = dtmm_window_contiguous(g);
  uint32_t* wide = (uint32_t*)(void*)scratch; /* 4-byte aligned (contract) */
  int32_t p, j;
  for (p = 0; p < pixels; p += 2) {
    const int32_t np = pixels - p < 2 ? pixels - p : 2;
    for (j = 0; j < np; ++j) {
      const int32_t y = (p + j) / g->out_w, x = (p + j) - y * g->out_w;
      uint32_t* dst = wide + j * (n >> 1);
      dtmm_widen_s8(dtmm_pixel_window_of(g, in, y, x, contiguous, (int8_t*)(void*)dst + n), n,
                    dst);
    }
    if (np == 2) /* two inlined bodies: one with a test per run was 6-16 % slower */
      dtmm_pixel_wide(g, f, wide, 1, out + p * g->out_c);
    else
      dtmm_pixel_wide(g, f, wide, 0, out + p * g->out_c);
  }
}
#endif

#if defined(DTMM_ARCH_PORTABLE) /* only the portable pointwise driver has lone pixels */
void dtmm_pixel_channels_1x1(const dtmm_geom* g, const dtmm_fwcs_filter* f,
                             const int8_t* win, int8_t* out) {
  dtmm_pixel_pointwise(g, f, win, out);
}
#endif

#if !defined(DTMM_ARCH_MVE)
/* Every channel through its runs (DSP, portable). */
DTMM_INLINE void dtmm_pixel_runs_each(const dtmm_geom* g, const dtmm_fwcs_filter* f,
                                      const int8_t* win, int8_t* out) {
  const int8_t* w = f->values;
  const int32_t out_c = g->out_c, taps = g->taps;
  int32_t oc;
  for (oc = 0; oc < out_c; ++oc) {
    int32_t s = f->bias[oc];
    int32_t a = s; /* s itself stays in a register */
    w = dtmm_channel_dot(g, f, oc * taps, win, w, &a);
    s = a;
    out[oc] = dtmm_requant_out(s, f->multiplier[oc], f->shift[oc], g);
  }
}

/* A copy of its own for builds without the pixel driver (dtmm_im2col_lone): the
 * pixel driver's k > 1 loop stays inlined in dtmm_pixel_channels beside its 1x1 one
 * (calling this from there cost microWakeWord's 1x1 layers up to 2 % on M4). */
void dtmm_pixel_channels_k(const dtmm_geom* g, const dtmm_fwcs_filter* f, const int8_t* win,
                           int8_t* out) {
  dtmm_pixel_runs_each(g, f, win, out);
}
#endif

void dtmm_pixel_channels(const dtmm_geom* g, const dtmm_fwcs_filter* f, const int8_t* win,
                         int8_t* out) {
  if (g->taps == 1) {
    dtmm_pixel_pointwise(g, f, win, out);
    return;
  }
#if defined(DTMM_ARCH_MVE)
  dtmm_pixel_channels_k(g, f, win, out);
#else
  dtmm_pixel_runs_each(g, f, win, out);
#endif
}

/* Every pixel of the plane, its window in place (contiguous) or copied to scratch. */
static DTMM_NOINLINE void dtmm_pixel_plane(const dtmm_geom* g, const dtmm_fwcs_filter* f,
                                           const int8_t* in, int8_t* out, int8_t* scratch) {
  const int contiguous = dtmm_window_contiguous(g);
  int32_t y, x;
  for (y = 0; y < g->out_h; ++y)
    for (x = 0; x < g->out_w; ++x)
      dtmm_pixel_channels(g, f, dtmm_pixel_window_of(g, in, y, x, contiguous, scratch),
                          out + (y * g->out_w + x) * g->out_c);
}

void dtmm_pixel_s8(const dtmm_geom* g, const dtmm_fwcs_filter* f, const int8_t* in,
                   int8_t* out, int8_t* scratch) {
#if defined(DTMM_ARCH_DSP)
  /* Widening costs about 2 instructions a window byte; it saves 0.5 a kept byte on
   * one pixel, about 2.25 on two (one weight load and widening, one run decoding for
   * both): it pays from 4 kept filterlets a tap on one pixel, from 1 on two
   * (measured on both sides: microWakeWord's 5x1 and a 5x1 over 128 channels at
   * s = .9, held-out hx30 at .9). */
  if (dtmm_pixel_widens(g) &&
      f->num_filterlets >= (g->out_h * g->out_w > 1 ? 1 : 4) * g->taps) {
    dtmm_pixel_plane_wide(g, f, in, out, scratch);
    return;
  }
#endif
  /* One pixel whose window is the input (microWakeWord's convs): straight to the
   * channels. */
  if (g->out_h == 1 && g->out_w == 1 && dtmm_window_contiguous(g)) {
    dtmm_pixel_channels(g, f, in, out); /* no border: no padding either */
    return;
  }
  dtmm_pixel_plane(g, f, in, out, scratch);
}
