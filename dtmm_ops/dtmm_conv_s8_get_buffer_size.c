/* dtmm_conv_s8_get_buffer_size: the scratch of the driver dtmm_conv_s8 picks. */
#include "dtmm_conv_s8_drivers.h"

DTMM_SIZE_OPT int32_t dtmm_conv_s8_get_buffer_size(const dtmm_conv_dims* dims, const dtmm_conv_params* params) {
  dtmm_geom g;
  int32_t bytes = 0;
  if (dtmm_check_shape(dims, params) != DTMM_OK) return 0; /* validate rejects it */
  dtmm_make_geom(dims, params, &g);
  /* Block layers (1x1, any block size) take the block driver or, at B = C_in, the
   * filterlet drivers: the scratch of a 1x1 layer does not depend on B, as long as
   * the drivers that take it are built (a 1x1 layer through im2col needs rows). */
  switch (dtmm_conv_s8_built_driver(&g, 0)) {
    case DTMM_DRIVER_POINTWISE:
    case DTMM_DRIVER_POINTWISE_BLOCKS: /* no scratch: runs read in place */
      bytes = 0;
      break;
    /* Only the built drivers' companions, so the linker drops the others (the MVE
     * window's pulls in its rectangle planning). */
#if DTMM_BUILT(DTMM_USE_PIXEL)
    case DTMM_DRIVER_PIXEL:
      bytes = dtmm_pixel_s8_get_buffer_size(&g);
      break;
#endif
#if DTMM_BUILT(DTMM_USE_EXPANDED)
    case DTMM_DRIVER_EXPANDED:
      bytes = dtmm_expanded_s8_get_buffer_size(&g);
      break;
#endif
#if DTMM_BUILT(DTMM_USE_IM2COL)
    case DTMM_DRIVER_IM2COL:
      bytes = dtmm_im2col_s8_get_buffer_size(&g);
      break;
#endif
#if DTMM_BUILT(DTMM_USE_WINDOW)
    case DTMM_DRIVER_WINDOW:
      bytes = dtmm_window_s8_get_buffer_size(&g);
      break;
#endif
    default: /* not built: built_driver never returns it */
      break;
  }
  return (bytes + 3) & ~3;
}
