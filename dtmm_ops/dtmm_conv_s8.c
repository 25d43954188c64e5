/* dtmm_conv_s8: picks the driver for the layer's shape (CMSIS-NN's wrapper style)
 * and runs it per batch image. Contract: dtmm_conv_s8.h; measurements behind every
 * choice: docs/kernels.md. */
#include "dtmm_conv_s8_drivers.h"

/* Fewer output pixels than a group: grouping would compute mostly copies (1x1
 * kernels: fewer than DTMM_POINTWISE_MIN_PIXELS). */
static int dtmm_is_tiny_plane(const dtmm_geom* g) {
  const int32_t pixels = g->out_h * g->out_w;
  return pixels < DTMM_POINTWISE_MIN_PIXELS || (g->taps > 1 && pixels < DTMM_P);
}

/* 1x1 kernels: a filterlet is a whole filter, kept channels are dense rows. */
static int dtmm_is_pointwise(const dtmm_geom* g) { return g->taps == 1; }

static int dtmm_is_dilated(const dtmm_geom* g) {
  return (g->dw > 1 && g->ker_w > 1) || (g->dh > 1 && g->ker_h > 1);
}

/* Bytes of the longest run a window read in place can have: the whole window when
 * its kernel rows touch in the input (kernel as wide as dilation_h input rows),
 * else one kernel row (dilation 1) or one tap. */
static int32_t dtmm_inplace_run_bytes(const dtmm_geom* g) {
  if (g->dw > 1 && g->ker_w > 1) return g->in_c;
  if ((int64_t)g->dh * g->in_w == g->ker_w) return g->taps * g->in_c;
  return g->ker_w * g->in_c;
}

/* Filterlets of 1-3 bytes over many taps (or single-byte ones, or short dilated
 * ones, or few channels whose in-place runs are shorter than DTMM_MIN_ROW_BYTES:
 * 5x1 / 1x3 kernels over 2-8 channels): runs stay a few bytes long and multiply
 * with sparsity; the dense filter, expanded once into scratch, is faster at low
 * sparsity and never slower as filterlets are pruned. */
static int dtmm_is_expanded_better(const dtmm_geom* g) {
  return (g->in_c <= DTMM_EXPANDED_MAX_CIN && (g->taps >= DTMM_EXPANDED_MIN_TAPS || g->in_c == 1)) ||
         (g->in_c <= DTMM_EXPANDED_MAX_CIN_DILATED &&
          (dtmm_is_dilated(g) || dtmm_inplace_run_bytes(g) < DTMM_MIN_ROW_BYTES));
}

/* The most runs a channel can have read in place (every other tap kept): they
 * must fit the window drivers' run tables. */
static int32_t dtmm_inplace_max_runs(const dtmm_geom* g) {
  /* last tap of a row, next row's first (int64: a dilation may be huge) */
  const int rows_touch = (int64_t)g->dh * g->in_w == g->ker_w;
  if (g->dw > 1 && g->ker_w > 1) return g->taps;     /* no two taps of a row touch */
  if (rows_touch) return (g->taps + 1) / 2;
  return g->ker_w == 1 ? g->taps : g->ker_h * ((g->ker_w + 1) / 2);
}

/* A small 2-D output plane: the window drivers' per-rectangle (per-channel) run
 * tables would serve one or two groups each. Lines (N x 1, 1 x N) are one
 * rectangle with several groups and stay in place. */
static int dtmm_is_small_plane(const dtmm_geom* g) {
  return g->out_h > 1 && g->out_w > 1 && g->out_h * g->out_w <= DTMM_WINDOW_MIN_PIXELS;
}

/* im2col rows make every stretch of consecutive kept taps one run, across kernel
 * rows and dilation gaps; that pays where in-place runs are short, and is needed
 * where the tap masks do not fit a word. */
static int dtmm_is_im2col_better(const dtmm_geom* g) {
  return g->taps > DTMM_MAX_TAPS || dtmm_inplace_max_runs(g) > DTMM_MAX_RUNS ||
         dtmm_inplace_run_bytes(g) < DTMM_MIN_ROW_BYTES ||
         (dtmm_is_dilated(g) && g->in_c < DTMM_DILATED_MIN_CIN_IN_PLACE) ||
         dtmm_is_small_plane(g);
}

/* Filterlet blocks (version 2, 1x1 kernels only): bits stand for B < C_in channels,
 * which only the block driver reads. */
static int dtmm_is_block_sparse(const dtmm_geom* g, int32_t block_size) {
  return block_size > 0 && block_size < g->in_c;
}

dtmm_driver dtmm_conv_s8_choose(const dtmm_geom* g, int32_t block_size) {
  if (dtmm_is_block_sparse(g, block_size)) return DTMM_DRIVER_POINTWISE_BLOCKS;
  if (dtmm_is_tiny_plane(g)) return DTMM_DRIVER_PIXEL;
  if (dtmm_is_pointwise(g)) return DTMM_DRIVER_POINTWISE;
  if (dtmm_is_expanded_better(g)) return DTMM_DRIVER_EXPANDED;
  if (dtmm_is_im2col_better(g)) return DTMM_DRIVER_IM2COL;
  return DTMM_DRIVER_WINDOW;
}

/* The drivers that compute every layer the chosen one does: pointwise a 1x1 pixel
 * layer; im2col any filterlet (B = C_in) layer. */
dtmm_driver dtmm_conv_s8_built_driver(const dtmm_geom* g, int32_t block_size) {
  const dtmm_driver chosen = dtmm_conv_s8_choose(g, block_size);
#if DTMM_BUILT_DRIVERS == DTMM_USE_ALL_DRIVERS
  return chosen; /* every driver built: not one instruction more per call */
#else
  if (DTMM_BUILT_DRIVERS & DTMM_DRIVER_BIT(chosen)) return chosen;
  if (chosen == DTMM_DRIVER_POINTWISE_BLOCKS) return DTMM_DRIVER_NONE;
  if (chosen == DTMM_DRIVER_PIXEL && g->taps == 1 && DTMM_BUILT(DTMM_USE_POINTWISE))
    return DTMM_DRIVER_POINTWISE;
  return DTMM_BUILT(DTMM_USE_IM2COL) ? DTMM_DRIVER_IM2COL : DTMM_DRIVER_NONE;
#endif
}

/* The DTMM_USE_* bits of the code driver d runs the layer with where `built` is
 * built: its own, and the im2col paths its shape takes (the window drivers' leftover
 * pixels go through im2col too, so they may). */
static DTMM_SIZE_OPT int32_t dtmm_use_bits(const dtmm_geom* g, dtmm_driver d, int32_t built) {
  int32_t bits;
  (void)g; /* the path predicates are 0 off MVE */
  if (d == DTMM_DRIVER_NONE) return 0;
  bits = DTMM_DRIVER_BIT(d);
  if (d == DTMM_DRIVER_IM2COL || d == DTMM_DRIVER_WINDOW) {
    if (DTMM_IM2COL_INTERLEAVED_SHAPE(g)) bits |= DTMM_USE_IM2COL_INTERLEAVED & built;
    if (DTMM_IM2COL_LARGE_SHAPE(g)) bits |= DTMM_USE_IM2COL_LARGE & built;
  }
  return bits;
}

DTMM_SIZE_OPT int32_t dtmm_conv_s8_driver(const dtmm_conv_dims* dims,
                                          const dtmm_conv_params* params,
                                          int32_t block_size, int32_t* preferred) {
  dtmm_geom g;
  if (preferred) *preferred = 0;
  if (dtmm_check_shape(dims, params) != DTMM_OK) return 0;
  dtmm_make_geom(dims, params, &g);
  if (preferred) *preferred = dtmm_use_bits(&g, dtmm_conv_s8_choose(&g, block_size), DTMM_USE_ALL);
  return dtmm_use_bits(&g, dtmm_conv_s8_built_driver(&g, block_size), DTMM_BUILT_CODE);
}

DTMM_SIZE_OPT const char* dtmm_conv_s8_driver_name(int32_t driver) {
  switch (driver) {
    case DTMM_USE_PIXEL: return "pixel";
    case DTMM_USE_POINTWISE: return "pointwise";
    case DTMM_USE_EXPANDED: return "expanded";
    case DTMM_USE_IM2COL: return "im2col";
    case DTMM_USE_WINDOW: return "window";
    case DTMM_USE_POINTWISE_BLOCKS: return "pointwise_blocks";
    case DTMM_USE_IM2COL_INTERLEAVED: return "im2col_interleaved";
    case DTMM_USE_IM2COL_LARGE: return "im2col_large";
    default: return "none";
  }
}

dtmm_status dtmm_conv_s8(const dtmm_conv_dims* dims, const dtmm_conv_params* params,
                         const dtmm_fwcs_filter* filter, const int8_t* input,
                         int8_t* output, void* scratch) {
  dtmm_geom g;
  dtmm_driver driver;
  int32_t b, in_size, out_size;
  int8_t* scr = (int8_t*)scratch;
  const int8_t* in = input;
  int8_t* out = output;
  dtmm_make_geom(dims, params, &g);
  driver = dtmm_conv_s8_built_driver(&g, filter->block_size);
  /* validated: both < 2^31; in locals, as the drivers get g's address */
  in_size = g.in_h * g.in_w * g.in_c;
  out_size = g.out_h * g.out_w * g.out_c;
  (void)scr; /* unused when only scratch-free drivers are built */
  (void)in, (void)out; /* unused when no driver is built */
  for (b = 0; b < dims->batches; ++b, in += in_size, out += out_size) {
    /* Only the built drivers are referenced, so the linker drops the others. */
    switch (driver) {
#if DTMM_BUILT(DTMM_USE_PIXEL)
      case DTMM_DRIVER_PIXEL:
        dtmm_pixel_s8(&g, filter, in, out, scr);
        break;
#endif
#if DTMM_BUILT(DTMM_USE_POINTWISE)
      case DTMM_DRIVER_POINTWISE:
        dtmm_pointwise_s8(&g, filter, in, out);
        break;
#endif
#if DTMM_BUILT(DTMM_USE_EXPANDED)
      case DTMM_DRIVER_EXPANDED:
        dtmm_expanded_s8(&g, filter, in, out, scr);
        break;
#endif
#if DTMM_BUILT(DTMM_USE_IM2COL)
      case DTMM_DRIVER_IM2COL:
        dtmm_fill_pruned(&g, filter, out, g.out_h * g.out_w);
        dtmm_im2col_s8(&g, filter, in, out, scr, 0, 0);
        break;
#endif
#if DTMM_BUILT(DTMM_USE_WINDOW)
      case DTMM_DRIVER_WINDOW:
        dtmm_window_s8(&g, filter, in, out, scr);
        break;
#endif
#if DTMM_BUILT(DTMM_USE_POINTWISE_BLOCKS)
      case DTMM_DRIVER_POINTWISE_BLOCKS:
        dtmm_pointwise_blocks_s8(&g, filter, filter->block_size, in, out);
        break;
#endif
#if DTMM_BUILT_DRIVERS != DTMM_USE_ALL_DRIVERS
      default: /* DTMM_DRIVER_NONE: validation rejected the layer */
        return DTMM_ERR_UNSUPPORTED;
#else
      default: /* every driver is built: dtmm_conv_s8_choose picked one */
        break;
#endif
    }
  }
  return DTMM_OK;
}
