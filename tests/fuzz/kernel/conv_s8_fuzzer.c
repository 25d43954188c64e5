/* libFuzzer target for the DTMM kernel library's public API (dtmm_ops/dtmm_conv_s8.h):
 * dtmm_conv_s8_validate, dtmm_conv_s8_get_buffer_size and dtmm_conv_s8.
 *
 * Build (tests/fuzz/kernel/fuzz_kernel.sh does it):
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
 *     -I dtmm_ops tests/fuzz/kernel/conv_s8_fuzzer.c dtmm_ops/dtmm_*.c
 *
 * The input is decoded (docs/fuzzing.md, "Kernel input format") into dims, params
 * and FWCS arrays with realistic but adversarial ranges: small layers most of the
 * time, and edge values (0, -1, 65535, 2^30, INT32_MAX, ...) for every size,
 * stride, dilation, padding, zero point, activation bound, multiplier and shift;
 * geometry either consistent with TFLite's padding rules (as the TFLM op computes
 * it) or raw; the FWCS arrays valid or corrupted in one way. Every array is its own
 * allocation of exactly the documented size, so AddressSanitizer reports any read
 * or write outside it.
 *
 * Findings (the process aborts; libFuzzer saves the input):
 *   - any ASan/UBSan report, in validate, get_buffer_size or the convolution;
 *   - validate returns DTMM_OK and the output differs from conv_s8_reference.h;
 *   - an output byte left unwritten (the output is pre-filled with the complement
 *     of the expected value), the input or the FWCS arrays modified, the result
 *     depending on the scratch contents, get_buffer_size < 0 or not a multiple
 *     of 4;
 *   - validate accepts what the contract says it rejects (a corrupted FWCS array,
 *     an out-of-range field): checked by an independent predicate below.
 */
#include <setjmp.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conv_s8_reference.h"
#include "dtmm_conv_s8.h"

/* Layers above these sizes are validated but not run (keeps ~1k exec/s). */
#define MAX_ELEMS (1 << 18)        /* input or output bytes */
#define MAX_WORK ((int64_t)1 << 17) /* output pixels * (kept taps * C_in + C_out) */

/* Printed at exit (DTMM_FUZZ_STATS=1): how the inputs split between statuses. */
static struct {
  long long inputs, status[9], ran, compared_scratch, too_large;
} stats;

static int verbose; /* DTMM_FUZZ_VERBOSE=1: describe every layer (replays) */
static const char* findings_dir; /* DTMM_FUZZ_FINDINGS: keep-going mode, see fail() */

static void print_stats(void) {
  static const char* names[9] = {"OK", "ARG", "VERSION", "PARAMS", "BITMAP", "VALUES",
                                 "UNSUPPORTED", "?", "not validated"};
  int i;
  fprintf(stderr, "dtmm-fuzz-stats: inputs %lld, convolutions run and compared %lld "
          "(%lld also with other scratch contents), validated but too large to run %lld\n",
          stats.inputs, stats.ran, stats.compared_scratch, stats.too_large);
  for (i = 0; i < 9; ++i)
    if (stats.status[i]) fprintf(stderr, "dtmm-fuzz-stats: validate %s: %lld\n", names[i],
                                 stats.status[i]);
}

int LLVMFuzzerInitialize(int* argc, char*** argv) {
  const char* e = getenv("DTMM_FUZZ_STATS");
  (void)argc;
  (void)argv;
  if (e && *e == '1') atexit(print_stats);
  findings_dir = getenv("DTMM_FUZZ_FINDINGS");
  if (findings_dir && !*findings_dir) findings_dir = NULL;
  e = getenv("DTMM_FUZZ_VERBOSE");
  verbose = e && *e == '1';
  return 0;
}

static void count_status(dtmm_status st) {
  const int i = -(int)st;
  stats.status[i >= 0 && i < 7 ? i : 7]++;
}

/* ---------------------------------------------------------------- decoding */

typedef struct {
  const uint8_t* p;
  size_t n;
} reader;

static uint32_t take(reader* r, int bytes) {
  uint32_t v = 0;
  int i;
  for (i = 0; i < bytes; ++i) {
    v |= (uint32_t)(r->n ? *r->p : 0) << (8 * i);
    if (r->n) {
      r->p++;
      r->n--;
    }
  }
  return v;
}

static const int32_t kEdges[] = {
    0,          -1,         1,          2,          3,          7,
    65535,      65536,      65537,      46340,      46341,      1 << 20,
    (1 << 24) + 1, 1 << 30, (1 << 30) + 1, INT32_MAX - 1, INT32_MAX, INT32_MIN,
    INT32_MIN + 1, -2,      0x7FFF,     0x8000,     255,        256,
};
#define N_EDGES ((int)(sizeof(kEdges) / sizeof(kEdges[0])))

/* A size-like field: mostly 1..small_max, sometimes an edge value or raw. */
static int32_t take_size(reader* r, int32_t small_max) {
  const uint32_t sel = take(r, 1);
  if (sel < 224) return 1 + (int32_t)(sel % (uint32_t)small_max);
  if (sel < 224 + N_EDGES) return kEdges[sel - 224];
  return (int32_t)take(r, 4);
}

/* An int8-like field: mostly inside [-128, 127], sometimes just outside or raw. */
static int32_t take_int8ish(reader* r) {
  const uint32_t sel = take(r, 1);
  const int32_t v = (int8_t)take(r, 1);
  if (sel < 240) return v;
  if (sel < 244) return 128 + (int32_t)(sel - 240);
  if (sel < 248) return -129 - (int32_t)(sel - 244);
  return (int32_t)take(r, 4);
}

/* TFLite ComputeOutSize / ComputePaddingWithOffset in 64 bits (as the TFLM op's
 * ComputePaddingHeightWidthChecked); results are narrowed like a caller would. */
static void tflite_geometry(int32_t in, int32_t k, int32_t s, int32_t d, int valid,
                            int32_t* out, int32_t* pad) {
  const int64_t eff = ((int64_t)k - 1) * d + 1;
  int64_t o, total;
  if (s <= 0) s = 1;
  o = valid ? ((int64_t)in + s - eff) / s : ((int64_t)in + s - 1) / s;
  total = (o - 1) * s + eff - in;
  if (total < 0) total = 0;
  *out = (int32_t)o;
  *pad = (int32_t)(total / 2);
}

enum { kGeomSame, kGeomValid, kGeomRaw, kGeomPerturbed };

/* One FWCS / per-channel corruption, or none; the contract says validate rejects
 * every one of them except kNone and kValuesNullEmpty. */
enum {
  kNone,
  kBitmapShort,
  kBitmapLong,
  kPaddingBit,
  kFilterletsPlus,
  kFilterletsMinus,
  kValuesNull,
  kMultNegative,
  kShiftHigh,
  kShiftLow,
  kVersion,
  kNullBias,
  kValuesNullEmpty, /* values NULL with no kept row: allowed */
  kNumCorruptions
};

typedef struct {
  dtmm_conv_dims d;
  dtmm_conv_params p;
  int corruption;
  int32_t bitmap_bytes; /* allocated */
  int32_t filterlets;   /* rows of values allocated */
} layer;

/* Whether the contract (dtmm_conv_s8.h) says validate must reject this layer; an
 * independent restatement of the header, in 64 bits. -1: cannot tell (coordinate
 * overflow rules are the validator's own choice), 1 reject, 0 accept. */
static int contract_rejects(const layer* L, int popcount, int need_bytes_ok) {
  const dtmm_conv_dims* d = &L->d;
  const dtmm_conv_params* p = &L->p;
  if (d->batches < 1 || d->input_h < 1 || d->input_w < 1 || d->input_c < 1 ||
      d->output_h < 1 || d->output_w < 1 || d->output_c < 1 || d->kernel_h < 1 ||
      d->kernel_w < 1)
    return 1;
  if (p->version < DTMM_FORMAT_VERSION_MIN || p->version > DTMM_FORMAT_VERSION) return 1;
  if (p->stride_h < 1 || p->stride_w < 1 || p->dilation_h < 1 || p->dilation_w < 1 ||
      p->pad_top < 0 || p->pad_left < 0)
    return 1;
  if (p->pad_top > ((int64_t)d->kernel_h - 1) * p->dilation_h ||
      p->pad_left > ((int64_t)d->kernel_w - 1) * p->dilation_w)
    return 1;
  /* bottom/right padding implied by the output size: not beyond the dilated kernel */
  {
    const int64_t span_h = ((int64_t)d->kernel_h - 1) * p->dilation_h;
    const int64_t span_w = ((int64_t)d->kernel_w - 1) * p->dilation_w;
    if (((int64_t)d->output_h - 1) * p->stride_h + span_h + 1 - d->input_h - p->pad_top >
            span_h ||
        ((int64_t)d->output_w - 1) * p->stride_w + span_w + 1 - d->input_w - p->pad_left >
            span_w)
      return 1;
  }
  if (p->input_zero_point < -128 || p->input_zero_point > 127 || p->output_offset < -128 ||
      p->output_offset > 127 || p->activation_min < -128 || p->activation_max > 127 ||
      p->activation_min > p->activation_max)
    return 1;
  switch (L->corruption) {
    case kBitmapShort: case kBitmapLong: case kPaddingBit: case kFilterletsPlus:
    case kFilterletsMinus: case kMultNegative: case kShiftHigh: case kShiftLow:
    case kVersion: case kNullBias:
      return 1;
    case kValuesNull:
      if (popcount > 0) return 1;
      break; /* no kept row: NULL values are allowed */
    default:
      break;
  }
  (void)need_bytes_ok;
  {
    /* Far from any int32 overflow (margin 2^30): the header promises DTMM_OK.
     * Closer to it, which sizes overflow is the validator's own rule. */
    /* in double: every factor is >= 1 here and the margin needs no precision */
    const double m = (double)(1 << 30);
    const double taps = (double)d->kernel_h * d->kernel_w;
    const double reach_h = ((double)d->output_h - 1) * p->stride_h +
                           ((double)d->kernel_h - 1) * p->dilation_h + p->pad_top +
                           d->input_h + p->stride_h;
    const double reach_w = ((double)d->output_w - 1) * p->stride_w +
                           ((double)d->kernel_w - 1) * p->dilation_w + p->pad_left +
                           d->input_w + p->stride_w;
    if ((double)d->batches * d->input_h * d->input_w * d->input_c >= m ||
        (double)d->batches * d->output_h * d->output_w * d->output_c >= m ||
        taps * d->output_c >= m || taps * d->input_c * 4 >= m || reach_h >= m ||
        reach_w >= m || (double)popcount * d->input_c >= m)
      return -1;
  }
  return 0;
}

static void describe(const layer* L) {
  const dtmm_conv_dims* d = &L->d;
  const dtmm_conv_params* p = &L->p;
  fprintf(stderr,
          "  dims: N=%d in=%dx%dx%d out=%dx%dx%d k=%dx%d\n"
          "  params: v=%d s=%dx%d d=%dx%d pad=%d,%d zp_in=%d zp_out=%d act=[%d,%d]\n"
          "  corruption=%d bitmap_bytes=%d filterlets=%d\n",
          d->batches, d->input_h, d->input_w, d->input_c, d->output_h, d->output_w,
          d->output_c, d->kernel_h, d->kernel_w, p->version, p->stride_h, p->stride_w,
          p->dilation_h, p->dilation_w, p->pad_top, p->pad_left, p->input_zero_point,
          p->output_offset, p->activation_min, p->activation_max, L->corruption,
          L->bitmap_bytes, L->filterlets);
}

/* Keep-going mode (fuzz_kernel.sh --long): DTMM_FUZZ_FINDINGS=DIR saves the first
 * input of each distinct finding (harness check or UBSan report site) there and
 * continues with the next input instead of aborting; UBSan must be built
 * recoverable. Without it every finding aborts and libFuzzer saves the input. */
static const uint8_t* cur_data;
static size_t cur_size;
static jmp_buf keep_going;

static void save_finding(const char* tag) {
  char path[4096];
  size_t i, n = 0;
  FILE* f;
  for (i = 0; tag[i] && n + 1 < 200; ++i) {
    const char c = tag[i];
    path[n++] = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
                    ? c : '_';
  }
  path[n] = 0;
  {
    char full[4400];
    snprintf(full, sizeof(full), "%s/%s.bin", findings_dir, path);
    f = fopen(full, "rb");
    if (f) { /* first input per signature only */
      fclose(f);
      return;
    }
    f = fopen(full, "wb");
    if (f) {
      fwrite(cur_data, 1, cur_size, f);
      fclose(f);
    }
  }
}

/* Called by UBSan's runtime for every report (compiler-rt ubsan_monitor). */
void __ubsan_get_current_report_data(const char** kind, const char** message,
                                     const char** file, unsigned* line, unsigned* col,
                                     char** addr);
void __ubsan_on_report(void) {
  const char *kind = "", *message = "", *file = "";
  unsigned line = 0, col = 0;
  char* addr = NULL;
  char tag[512];
  const char* base;
  if (!findings_dir) return;
  __ubsan_get_current_report_data(&kind, &message, &file, &line, &col, &addr);
  base = strrchr(file, '/');
  snprintf(tag, sizeof(tag), "ubsan-%s-%u-%s", base ? base + 1 : file, line, kind);
  save_finding(tag);
}

static void fail(const char* what, const layer* L, int64_t where) {
  fprintf(stderr, "\nDTMM FUZZ FINDING: %s (at %lld)\n", what, (long long)where);
  describe(L);
  if (findings_dir) {
    char tag[512];
    snprintf(tag, sizeof(tag), "harness-%s", what);
    save_finding(tag);
    longjmp(keep_going, 1);
  }
  abort();
}

/* Fills dst[0..n) from the data pool (cycled), styled by `style`. */
static void fill_bytes(uint8_t* dst, size_t n, const uint8_t* pool, size_t pool_n,
                       uint32_t style, uint32_t salt) {
  size_t i;
  for (i = 0; i < n; ++i) {
    uint8_t b = pool_n ? pool[(i + salt) % pool_n] : (uint8_t)(i * 37 + salt);
    switch (style & 3) {
      case 1: b = (b & 1) ? 0x7F : 0x80; break; /* extremes: int32 wrap */
      case 2: b = (uint8_t)(b ^ (uint8_t)(i * 131 + salt)); break;
      default: break;
    }
    dst[i] = b;
  }
}

static void* xmalloc(size_t n) {
  void* p = malloc(n ? n : 1);
  if (!p) abort();
  return p;
}

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  reader r = {data, size};
  layer L;
  dtmm_conv_dims* d = &L.d;
  dtmm_conv_params* p = &L.p;
  uint32_t flags, geom, style, density, mult_mode, shift_mode, bias_mode;
  int32_t pads_raw_top, pads_raw_left;
  const uint8_t* pool;
  size_t pool_n;
  int64_t bits, in_elems, out_elems, kept_work;
  int32_t oc, popcount = 0, i, need_bytes;
  uint8_t* bitmap = NULL;
  int8_t* values = NULL;
  int32_t *bias = NULL, *mult = NULL, *shift = NULL;
  dtmm_fwcs_filter f;
  dtmm_status st;
  int rejects;

  memset(&L, 0, sizeof(L));
  stats.inputs++;
  cur_data = data;
  cur_size = size;
  if (findings_dir && setjmp(keep_going)) return 0; /* a finding: next input (leaks) */
  flags = take(&r, 1);
  geom = flags & 3;
  L.corruption = (int)(((flags >> 2) & 15) < kNumCorruptions ? ((flags >> 2) & 15) : kNone);
  style = flags >> 6;
  d->batches = take_size(&r, 3);
  d->input_h = take_size(&r, 12);
  d->input_w = take_size(&r, 12);
  d->input_c = take_size(&r, 24);
  d->output_c = take_size(&r, 16);
  d->kernel_h = take_size(&r, 8);
  d->kernel_w = take_size(&r, 8);
  p->version = DTMM_FORMAT_VERSION;
  p->stride_h = take_size(&r, 4);
  p->stride_w = take_size(&r, 4);
  p->dilation_h = take_size(&r, 4);
  p->dilation_w = take_size(&r, 4);
  p->input_zero_point = take_int8ish(&r);
  p->output_offset = take_int8ish(&r);
  p->activation_min = take_int8ish(&r);
  p->activation_max = take_int8ish(&r);
  if (p->activation_min > p->activation_max && (take(&r, 1) & 1)) {
    const int32_t t = p->activation_min; /* usually a valid range */
    p->activation_min = p->activation_max;
    p->activation_max = t;
  }
  if (geom == kGeomRaw) {
    d->output_h = take_size(&r, 12);
    d->output_w = take_size(&r, 12);
    pads_raw_top = take_size(&r, 8);
    pads_raw_left = take_size(&r, 8);
    /* 0..7 mostly; edge values as they are */
    if (pads_raw_top >= 1 && pads_raw_top <= 8) pads_raw_top -= 1;
    if (pads_raw_left >= 1 && pads_raw_left <= 8) pads_raw_left -= 1;
    p->pad_top = pads_raw_top;
    p->pad_left = pads_raw_left;
  } else {
    const int valid = geom == kGeomValid;
    tflite_geometry(d->input_h, d->kernel_h, p->stride_h, p->dilation_h, valid,
                    &d->output_h, &p->pad_top);
    tflite_geometry(d->input_w, d->kernel_w, p->stride_w, p->dilation_w, valid,
                    &d->output_w, &p->pad_left);
    if (geom == kGeomPerturbed) { /* one field off by a little */
      const uint32_t which = take(&r, 1) % 4;
      const int64_t delta = (int64_t)(take(&r, 1) % 5) - 2;
      int32_t* field = which == 0 ? &d->output_h
                     : which == 1 ? &d->output_w
                     : which == 2 ? &p->pad_top : &p->pad_left;
      const int64_t v = *field + delta;
      *field = v > INT32_MAX ? INT32_MAX : v < INT32_MIN ? INT32_MIN : (int32_t)v;
    }
  }
  density = take(&r, 1);
  mult_mode = take(&r, 1);
  shift_mode = take(&r, 1);
  bias_mode = take(&r, 1);
  pool = r.p;
  pool_n = r.n;

  /* Per-channel arrays must hold output_c entries: a caller cannot pass more. */
  if (d->output_c < 1 || d->output_c > 4096) {
    dtmm_fwcs_filter empty;
    memset(&empty, 0, sizeof(empty));
    if (d->output_c >= 1) { /* too large to allocate per-channel arrays */
      stats.status[8]++;
      return 0;
    }
    /* non-positive C_out: validate must reject before touching any array */
    st = dtmm_conv_s8_validate(d, p, &empty);
    count_status(st);
    if (st == DTMM_OK) fail("accepted C_out < 1", &L, 0);
    return 0;
  }
  if (d->kernel_h < 1 || d->kernel_w < 1) {
    bits = 0;
    need_bytes = 0;
  } else if ((double)d->output_c * d->kernel_h * d->kernel_w > (double)(1 << 24)) {
    bits = -1;
    need_bytes = -1;
  } else {
    bits = (int64_t)d->output_c * d->kernel_h * d->kernel_w;
    need_bytes = (int32_t)((bits + 7) / 8);
  }

  bias = (int32_t*)xmalloc((size_t)d->output_c * 4);
  mult = (int32_t*)xmalloc((size_t)d->output_c * 4);
  shift = (int32_t*)xmalloc((size_t)d->output_c * 4);
  for (oc = 0; oc < d->output_c; ++oc) {
    const uint32_t b = pool_n ? pool[((size_t)oc * 7 + 1) % pool_n] : 0;
    const uint32_t rnd = (b + 1) * 2654435761u ^ ((uint32_t)oc + 1) * 40503u ^ mult_mode << 16;
    switch (mult_mode & 3) {
      case 0: mult[oc] = (int32_t)((1u << 30) | (rnd & 0x3FFFFFFFu)); break; /* QuantizeMultiplier range */
      case 1: mult[oc] = INT32_MAX - (int32_t)(rnd & 3); break;
      case 2: mult[oc] = (int32_t)(rnd & 0x7FFFFFFFu); break;
      default: mult[oc] = (int32_t)(rnd & 1 ? 0 : (1u << 30)); break;
    }
    switch (shift_mode & 3) {
      case 0: shift[oc] = -(int32_t)((rnd >> 8) % 12); break;
      case 1: shift[oc] = (int32_t)((rnd >> 8) % 62) - 31; break; /* [-31, 30] */
      case 2: shift[oc] = (rnd >> 8) & 1 ? 30 : -31; break;
      default: shift[oc] = (int32_t)((rnd >> 8) % 8); break;
    }
    switch (bias_mode & 3) {
      case 0: bias[oc] = (int32_t)(rnd >> 4) % 100000; break;
      case 1: bias[oc] = (rnd & 1) ? INT32_MAX - (int32_t)(rnd >> 28) : INT32_MIN + (int32_t)(rnd >> 28); break;
      case 2: bias[oc] = (int32_t)(rnd * 747796405u); break;
      default: bias[oc] = 0; break;
    }
  }

  /* Bitmap: density/256 of the filterlets kept (0: fully pruned, 255: dense). */
  L.bitmap_bytes = need_bytes;
  if (need_bytes < 0) {
    /* too many bits to build a bitmap: a 1-byte one is the wrong length, so
     * validate must reject the layer (and not read past that byte) */
    uint8_t one = 0;
    f.bitmap = &one;
    f.bitmap_bytes = 1;
    f.values = NULL;
    f.num_filterlets = 0;
    f.bias = bias;
    f.multiplier = mult;
    f.shift = shift;
    f.block_size = 0; /* version 1 filterlets */
    st = dtmm_conv_s8_validate(d, p, &f);
    count_status(st);
    if (st == DTMM_OK) fail("validate accepted a 1-byte bitmap for > 2^24 bits", &L, bits);
    free(bias); free(mult); free(shift);
    return 0;
  }
  if (L.corruption == kBitmapShort) L.bitmap_bytes = need_bytes - 1;
  if (L.corruption == kBitmapLong) L.bitmap_bytes = need_bytes + 1;
  if (L.bitmap_bytes < 0) L.bitmap_bytes = 0;
  bitmap = (uint8_t*)xmalloc((size_t)L.bitmap_bytes);
  memset(bitmap, 0, (size_t)L.bitmap_bytes);
  for (i = 0; i < (int32_t)bits && (i >> 3) < L.bitmap_bytes; ++i) {
    const uint8_t b = pool_n ? pool[((size_t)i * 13 + 5) % pool_n] : (uint8_t)(i * 97);
    const uint32_t h = ((uint32_t)b * 2246822519u + (uint32_t)i * 3266489917u) >> 24;
    const int keep = density == 255 ? 1 : (h < density);
    if (keep) {
      bitmap[i >> 3] |= (uint8_t)(1u << (i & 7));
      popcount++;
    }
  }
  if (L.corruption == kPaddingBit) {
    if (bits & 7) {
      bitmap[L.bitmap_bytes - 1] |= (uint8_t)(0x80u);
    } else {
      L.corruption = kNone; /* no padding bits in this layer */
    }
  }
  L.filterlets = popcount;
  if (L.corruption == kFilterletsPlus) L.filterlets = popcount + 1;
  if (L.corruption == kFilterletsMinus) {
    if (popcount > 0) L.filterlets = popcount - 1; else L.corruption = kNone;
  }
  if ((double)L.filterlets * d->input_c > MAX_ELEMS) {
    free(bias); free(mult); free(shift); free(bitmap);
    stats.status[8]++;
    return 0; /* values too large to allocate */
  }
  if (L.corruption == kValuesNull || L.corruption == kValuesNullEmpty) {
    values = NULL;
    if (L.corruption == kValuesNullEmpty && popcount > 0) L.corruption = kValuesNull;
  } else {
    /* a negative C_in gets no bytes: validate rejects it before reading values */
    const size_t n_values =
        d->input_c > 0 ? (size_t)L.filterlets * (size_t)d->input_c : 0;
    values = (int8_t*)xmalloc(n_values);
    fill_bytes((uint8_t*)values, n_values, pool, pool_n, style, 11);
  }
  if (L.corruption == kMultNegative) mult[d->output_c - 1] = -1 - (int32_t)(density & 7);
  if (L.corruption == kShiftHigh) shift[0] = 31 + (int32_t)(density & 1);
  if (L.corruption == kShiftLow) shift[0] = -32 - (int32_t)(density & 1);
  if (L.corruption == kVersion) p->version = (density & 1) ? 0 : DTMM_FORMAT_VERSION + 1;

  f.bitmap = bitmap;
  f.bitmap_bytes = L.bitmap_bytes;
  f.values = values;
  f.num_filterlets = L.filterlets;
  f.bias = L.corruption == kNullBias ? NULL : bias;
  f.multiplier = mult;
  f.shift = shift;
  f.block_size = 0; /* version 1 filterlets */

  if (verbose) describe(&L);
  st = dtmm_conv_s8_validate(d, p, &f);
  count_status(st);
  if (verbose) fprintf(stderr, "  validate: %d\n", (int)st);
  rejects = contract_rejects(&L, popcount, 1);
  if (st == DTMM_OK && rejects == 1) fail("validate accepted a layer the contract rejects", &L, st);
  if (st != DTMM_OK && rejects == 0) fail("validate rejected a valid layer", &L, st);

  if (st == DTMM_OK) {
    const int32_t scratch_bytes = dtmm_conv_s8_get_buffer_size(d, p);
    /* double first: a validator that wrongly accepts must not make this overflow */
    const double in_d = (double)d->batches * d->input_h * d->input_w * d->input_c;
    const double out_d = (double)d->batches * d->output_h * d->output_w * d->output_c;
    /* kept MACs, plus one bitmap bit per output value and tap (the reference
     * walks every tap, the kernel's large-kernel path decodes the bitmap per pixel) */
    const double work_d = (double)d->batches * d->output_h * d->output_w *
                          ((double)popcount * d->input_c + d->output_c +
                           (double)d->output_c * d->kernel_h * d->kernel_w / 8);
    in_elems = in_d <= MAX_ELEMS ? (int64_t)in_d : -1;
    out_elems = out_d <= MAX_ELEMS ? (int64_t)out_d : -1;
    kept_work = work_d <= (double)MAX_WORK ? (int64_t)work_d : -1;
    if (scratch_bytes < 0 || (scratch_bytes & 3))
      fail("get_buffer_size is negative or not a multiple of 4", &L, scratch_bytes);
    if (dtmm_conv_s8_get_buffer_size(d, p) != scratch_bytes)
      fail("get_buffer_size is not deterministic", &L, scratch_bytes);
    if (in_elems >= 0 && out_elems >= 0 && kept_work >= 0 && scratch_bytes <= MAX_ELEMS) {
      int8_t* input = (int8_t*)xmalloc((size_t)in_elems);
      int8_t* input_copy = (int8_t*)xmalloc((size_t)in_elems);
      int8_t* output = (int8_t*)xmalloc((size_t)out_elems);
      int8_t* expected = (int8_t*)xmalloc((size_t)out_elems);
      uint8_t* scratch = scratch_bytes > 0 ? (uint8_t*)xmalloc((size_t)scratch_bytes) : NULL;
      uint8_t* bitmap_copy = (uint8_t*)xmalloc((size_t)L.bitmap_bytes);
      int32_t* rows = ref_rows(d, &f);
      int64_t k;
      if (!rows) abort();
      stats.ran++;
      fill_bytes((uint8_t*)input, (size_t)in_elems, pool, pool_n, style >> 1, 3);
      memcpy(input_copy, input, (size_t)in_elems);
      memcpy(bitmap_copy, bitmap, (size_t)L.bitmap_bytes);
      ref_conv_s8(d, p, &f, rows, input, expected);
      for (k = 0; k < out_elems; ++k) output[k] = (int8_t)~expected[k];
      if (scratch) fill_bytes(scratch, (size_t)scratch_bytes, pool, pool_n, 2, 7);
      if (dtmm_conv_s8(d, p, &f, input, output, scratch) != DTMM_OK)
        fail("dtmm_conv_s8 did not return DTMM_OK after validate", &L, 0);
      for (k = 0; k < out_elems; ++k)
        if (output[k] != expected[k]) {
          fprintf(stderr, "output[%lld] = %d, reference %d\n", (long long)k, output[k],
                  expected[k]);
          fail("output differs from the contract's semantics", &L, k);
        }
      if (memcmp(input, input_copy, (size_t)in_elems) != 0) fail("input modified", &L, 0);
      if (memcmp(bitmap, bitmap_copy, (size_t)L.bitmap_bytes) != 0)
        fail("bitmap modified", &L, 0);
      if (scratch && (density & 3) == 0) { /* other scratch contents: same bytes */
        stats.compared_scratch++;
        memset(scratch, 0xA5, (size_t)scratch_bytes);
        if (dtmm_conv_s8(d, p, &f, input, output, scratch) != DTMM_OK) abort();
        for (k = 0; k < out_elems; ++k)
          if (output[k] != expected[k]) fail("output depends on scratch contents", &L, k);
      }
      free(rows);
      free(bitmap_copy);
      free(scratch);
      free(expected);
      free(output);
      free(input_copy);
      free(input);
    } else {
      stats.too_large++;
    }
  }
  free(values);
  free(bitmap);
  free(shift);
  free(mult);
  free(bias);
  return 0;
}
