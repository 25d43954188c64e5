/* Internal: the drivers of dtmm_conv_s8 and the choice between them (not part of
 * the public API). Each driver computes one batch image of a validated layer and
 * has a *_get_buffer_size companion; dtmm_conv_s8 (dtmm_conv_s8.c) picks one
 * through the named shape predicates of dtmm_conv_s8_choose. */
#ifndef DTMM_OPS_DTMM_CONV_S8_DRIVERS_H_
#define DTMM_OPS_DTMM_CONV_S8_DRIVERS_H_

#include "dtmm_conv_s8_support.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The drivers, numbered as their DTMM_USE_* bits are (bit = 1 << driver): dense
 * values, so dtmm_conv_s8's switch is a jump table. */
typedef enum {
  DTMM_DRIVER_PIXEL,     /* fewer output pixels than a group: one pixel at a time */
  DTMM_DRIVER_POINTWISE, /* 1x1 kernels: kept channels are whole filters */
  DTMM_DRIVER_EXPANDED,  /* wide kernels, few channels: dense filter in scratch */
  DTMM_DRIVER_IM2COL,    /* groups through im2col rows: any kernel */
  DTMM_DRIVER_WINDOW,    /* in-place windows (MVE: rectangles, else strided lines) */
  DTMM_DRIVER_POINTWISE_BLOCKS, /* 1x1 kernels with filterlet blocks of B < C_in */
  DTMM_DRIVER_NONE       /* no built driver runs the layer (validation rejects it) */
} dtmm_driver;
#define DTMM_DRIVER_BIT(driver) (1 << (driver))

/* The drivers this build links: those of DTMM_CONV_DRIVERS, plus im2col under the
 * window drivers (their borders); with the im2col paths it names, its code. */
#define DTMM_BUILT_DRIVERS                        \
  (((DTMM_CONV_DRIVERS) & DTMM_USE_ALL_DRIVERS) | \
   (((DTMM_CONV_DRIVERS) & DTMM_USE_WINDOW) ? DTMM_USE_IM2COL : 0))
#define DTMM_BUILT_CODE (DTMM_BUILT_DRIVERS | ((DTMM_CONV_DRIVERS) & DTMM_USE_IM2COL_PATHS))
/* Whether the DTMM_USE_* bits `use` are built (usable in #if). */
#define DTMM_BUILT(use) ((DTMM_BUILT_CODE & (use)) != 0)
#if DTMM_BUILT(DTMM_USE_IM2COL_PATHS) && !DTMM_BUILT(DTMM_USE_IM2COL)
#error "DTMM_CONV_DRIVERS: im2col_interleaved / im2col_large are paths of im2col: name im2col or window too"
#endif

/* The dims/params part of dtmm_conv_s8_validate (no filter needed). */
dtmm_status dtmm_check_shape(const dtmm_conv_dims* dims, const dtmm_conv_params* params);

/* The driver dtmm_conv_s8 runs for this layer with every driver built (depends on
 * the shape and the block size only; block_size as in dtmm_fwcs_filter, 0 = C_in). */
dtmm_driver dtmm_conv_s8_choose(const dtmm_geom* g, int32_t block_size);

/* The one it runs in this build: the chosen driver when built, else another built
 * one that computes the layer (same bytes), else DTMM_DRIVER_NONE. */
dtmm_driver dtmm_conv_s8_built_driver(const dtmm_geom* g, int32_t block_size);

/* Output pixels [y, x] one at a time: the window in place when it is contiguous
 * there, else copied to scratch (taps * C_in bytes); channels 4 at a time on MVE. */
void dtmm_pixel_s8(const dtmm_geom* g, const dtmm_fwcs_filter* f, const int8_t* in,
                   int8_t* out, int8_t* scratch);
int32_t dtmm_pixel_s8_get_buffer_size(const dtmm_geom* g);

/* All channels of one pixel whose window w ([taps][C_in], contiguous) is given;
 * out points at the pixel's channel 0. Fully pruned channels are written too. */
void dtmm_pixel_channels(const dtmm_geom* g, const dtmm_fwcs_filter* f, const int8_t* w,
                         int8_t* out);
/* The same through the tap masks' runs only (any kernel, 1x1 too: one run a kept
 * channel): what im2col's lone pixels call (off MVE: where the pixel driver is left
 * out), so that the im2col and window drivers do not link the pixel driver's 1x1 path
 * for the 1x1 layers they run only as a fallback. */
void dtmm_pixel_channels_k(const dtmm_geom* g, const dtmm_fwcs_filter* f, const int8_t* w,
                           int8_t* out);
/* The same for a 1x1 kernel (w: the pixel's C_in inputs): what the portable
 * pointwise driver calls for its lone pixels, so a build without the pixel driver
 * does not link its k > 1 paths. */
void dtmm_pixel_channels_1x1(const dtmm_geom* g, const dtmm_fwcs_filter* f,
                             const int8_t* w, int8_t* out);

/* 1x1 kernels (no padding; any stride). Needs no scratch. */
void dtmm_pointwise_s8(const dtmm_geom* g, const dtmm_fwcs_filter* f, const int8_t* in,
                       int8_t* out);

/* 1x1 kernels with filterlet blocks of bk < C_in channels (version 2; any stride).
 * Needs no scratch. */
void dtmm_pointwise_blocks_s8(const dtmm_geom* g, const dtmm_fwcs_filter* f, int32_t bk,
                              const int8_t* in, int8_t* out);

/* The kept filterlets expanded to the dense filter in scratch once per call,
 * then a dense conv over im2col rows (never slower as filterlets are pruned). */
void dtmm_expanded_s8(const dtmm_geom* g, const dtmm_fwcs_filter* f, const int8_t* in,
                      int8_t* out, int8_t* scratch);
int32_t dtmm_expanded_s8_get_buffer_size(const dtmm_geom* g);

/* Pixels in groups of DTMM_P, each group's windows copied to DTMM_P im2col rows in
 * scratch: every run of consecutive kept taps is one dot product. `done` (may be
 * NULL) gives the number of consecutive pixels of row y from x on that another
 * driver computed (0: pixel (y, x) is left here; a whole interior is one call);
 * fully pruned channels are skipped (their constant must be written already). */
typedef int32_t (*dtmm_pixel_done)(const dtmm_geom* g, const void* ctx, int32_t y, int32_t x);
void dtmm_im2col_s8(const dtmm_geom* g, const dtmm_fwcs_filter* f, const int8_t* in,
                    int8_t* out, int8_t* scratch, dtmm_pixel_done done, const void* ctx);
int32_t dtmm_im2col_s8_get_buffer_size(const dtmm_geom* g);

/* Tap masks of up to this many taps are one field a channel in dtmm_im2col_s8 (more
 * are read in 2 or 4 pieces). */
#define DTMM_IM2COL_PIECE_TAPS 25

/* The MVE paths of dtmm_im2col_s8 (DTMM_USE_IM2COL_*), by shape: interleaved, its 4
 * rows 16 bytes at a time (one pointer reads the 4 pixels' rows: a run costs 9
 * instructions instead of ~20); large, a kernel of 32-100 taps whose tap masks are
 * read in pieces (up to 31 taps a mask is one word of dtmm_bits: 2 pieces were 3-18 %
 * slower on held-out hk9, 27 taps). Macros: as an inline function the first test
 * compiled to another block order in dtmm_im2col_s8, up to 160 instructions a call
 * more. */
#if defined(DTMM_ARCH_MVE)
#define DTMM_IM2COL_INTERLEAVED_SHAPE(g) \
  ((g)->in_c % 16 == 0 && (g)->taps <= DTMM_IM2COL_PIECE_TAPS)
#define DTMM_IM2COL_LARGE_SHAPE(g) ((g)->taps > 31 && (g)->taps <= 4 * DTMM_IM2COL_PIECE_TAPS)
#else
#define DTMM_IM2COL_INTERLEAVED_SHAPE(g) 0
#define DTMM_IM2COL_LARGE_SHAPE(g) 0
#endif
/* Whether dtmm_im2col_s8 takes them in this build (a path left out: the general rows). */
#define DTMM_IM2COL_INTERLEAVED(g) \
  (DTMM_BUILT(DTMM_USE_IM2COL_INTERLEAVED) && DTMM_IM2COL_INTERLEAVED_SHAPE(g))
#define DTMM_IM2COL_LARGE(g) (DTMM_BUILT(DTMM_USE_IM2COL_LARGE) && DTMM_IM2COL_LARGE_SHAPE(g))

/* In-place windows for kernels of up to DTMM_MAX_TAPS taps; the pixels they leave
 * go through dtmm_im2col_s8. */
void dtmm_window_s8(const dtmm_geom* g, const dtmm_fwcs_filter* f, const int8_t* in,
                    int8_t* out, int8_t* scratch);
int32_t dtmm_window_s8_get_buffer_size(const dtmm_geom* g);

#ifdef __cplusplus
}
#endif

#endif /* DTMM_OPS_DTMM_CONV_S8_DRIVERS_H_ */
