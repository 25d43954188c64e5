/* dtmm_conv_s8: picks the driver for the layer's shape (CMSIS-NN's wrapper style)
 * and runs it per batch image. Contract: dtmm_conv_s8.h; measurements behind every
 * choice: docs/kernels.md. */
#include "dtmm_conv_s8_drivers.h"

/* Fewer output pixels than a group: grouping would compute mostly copies. */
static int dtmm_is_tiny_plane(const dtmm_geom* g) { return g->out_h * g->out_w < DTMM_P; }

/* 1x1 kernels: a filterlet is a whole filter, kept channels are dense rows. */
static int dtmm_is_pointwise(const dtmm_geom* g) { return g->taps == 1; }

/* Read in place, a window falls into runs of at most one kernel row (dilation 1)
 * or one tap; im2col rows make every stretch of consecutive kept taps one run. It
 * pays where in-place runs are short or the tap masks do not fit a word. */
static int dtmm_is_im2col_better(const dtmm_geom* g) {
  return g->taps > DTMM_MAX_TAPS || g->dw > 1 || g->ker_w * g->in_c < DTMM_MIN_ROW_BYTES;
}

dtmm_driver dtmm_conv_s8_choose(const dtmm_geom* g) {
  if (dtmm_is_tiny_plane(g)) return DTMM_DRIVER_PIXEL;
  if (dtmm_is_pointwise(g)) return DTMM_DRIVER_POINTWISE;
  if (dtmm_is_im2col_better(g)) return DTMM_DRIVER_IM2COL;
  return DTMM_DRIVER_WINDOW;
}

dtmm_status dtmm_conv_s8(const dtmm_conv_dims* dims, const dtmm_conv_params* params,
                         const dtmm_fwcs_filter* filter, const int8_t* input,
                         int8_t* output, void* scratch) {
  dtmm_geom g;
  dtmm_driver driver;
  int32_t b;
  int8_t* scr = (int8_t*)scratch;
  dtmm_make_geom(dims, params, &g);
  driver = dtmm_conv_s8_choose(&g);
  for (b = 0; b < dims->batches; ++b) {
    /* validated: both products < 2^31 */
    const int8_t* in = input + b * g.in_h * g.in_w * g.in_c;
    int8_t* out = output + b * g.out_h * g.out_w * g.out_c;
    switch (driver) {
      case DTMM_DRIVER_PIXEL:
        dtmm_pixel_s8(&g, filter, in, out, scr);
        break;
      case DTMM_DRIVER_POINTWISE:
        dtmm_pointwise_s8(&g, filter, in, out);
        break;
      case DTMM_DRIVER_IM2COL:
        dtmm_fill_pruned(&g, filter, out, g.out_h * g.out_w);
        dtmm_im2col_s8(&g, filter, in, out, scr, 0, 0);
        break;
      case DTMM_DRIVER_WINDOW:
        dtmm_window_s8(&g, filter, in, out, scr);
        break;
    }
  }
  return DTMM_OK;
}
