/* DTMM filterlet-sparse int8 convolution (format versions 1 and 2, see
 * docs/contract.md; version 2 adds filterlet blocks: B contiguous input channels
 * per bitmap bit, B < C_in for 1x1 kernels).
 *
 * Framework-free: no heap, no globals, no TFLM headers, C99 (also compiles as C++).
 * One compute function with a validator and a scratch-size companion, in the
 * CMSIS-NN style: dtmm_conv_s8 picks a driver for the layer's shape through named
 * shape predicates (dtmm_conv_s8.c; one file per driver, dtmm_conv_s8_*.c), and
 * the architecture is chosen at compile time in dtmm_conv_s8_support.h (Helium /
 * MVE, Arm DSP, portable C; -DDTMM_FORCE_PORTABLE forces the last). All paths
 * produce identical bytes (tested against dtmm.reference and a TFLite-semantics C
 * conv). Drivers and measurements: docs/kernels.md; the block driver (version 2,
 * 1x1): docs/block_conv.md.
 */
#ifndef DTMM_OPS_DTMM_CONV_S8_H_
#define DTMM_OPS_DTMM_CONV_S8_H_

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The FWCS / options format versions this library reads: 1 (filterlets) and 2
 * (filterlet blocks). DTMM_FORMAT_VERSION is the newest. */
#define DTMM_FORMAT_VERSION_MIN 1
#define DTMM_FORMAT_VERSION 2

typedef enum {
  DTMM_OK = 0,
  DTMM_ERR_ARG = -1,      /* null pointer, non-positive size, size overflow */
  DTMM_ERR_VERSION = -2,  /* unknown format version */
  DTMM_ERR_PARAMS = -3,   /* stride/dilation/padding/activation/shift out of range */
  DTMM_ERR_BITMAP = -4,   /* wrong bitmap length or padding bits set */
  DTMM_ERR_VALUES = -5,   /* values length disagrees with popcount(bitmap) * C_in */
  DTMM_ERR_UNSUPPORTED = -6, /* no driver of this build runs the layer (DTMM_CONV_DRIVERS) */
} dtmm_status;

/* The drivers a build links (docs/kernels.md "Drivers"). dtmm_conv_s8 references
 * every driver of DTMM_CONV_DRIVERS, so --gc-sections keeps them all; an image
 * whose model needs fewer sets it to their sum, e.g.
 *   -DDTMM_CONV_DRIVERS=DTMM_USE_POINTWISE+DTMM_USE_WINDOW
 * (`dtmm convert` prints the set a model needs; TFLM make: DTMM_CONV_DRIVERS="pointwise
 * window"). The window drivers run the borders through im2col, so DTMM_USE_WINDOW
 * brings DTMM_USE_IM2COL. A layer whose driver is left out runs through another
 * built one that computes it (a 1x1 pixel layer through pointwise, the rest through
 * im2col: same bytes, more instructions); where none is built, validation fails
 * with DTMM_ERR_UNSUPPORTED (block-sparse 1x1 layers need DTMM_USE_POINTWISE_BLOCKS).
 * Two more bits are paths of the im2col part (alone or under the window drivers)
 * that only Helium (MVE) builds compile, each 0.7-1.9 KB: DTMM_USE_IM2COL_INTERLEAVED
 * (C_in a multiple of 16, at most 25 taps: rows interleaved 16 bytes at a time) and
 * DTMM_USE_IM2COL_LARGE (kernels of 32-100 taps, tap masks read in pieces). Left
 * out, those layers run through the general im2col rows (same bytes, more
 * instructions); named without im2col or window, they are a build error.
 * Every file of the library must see the same value. */
#define DTMM_USE_PIXEL 1
#define DTMM_USE_POINTWISE 2
#define DTMM_USE_EXPANDED 4
#define DTMM_USE_IM2COL 8
#define DTMM_USE_WINDOW 16
#define DTMM_USE_POINTWISE_BLOCKS 32
#define DTMM_USE_ALL_DRIVERS 63
#define DTMM_USE_IM2COL_INTERLEAVED 64
#define DTMM_USE_IM2COL_LARGE 128
#define DTMM_USE_IM2COL_PATHS (DTMM_USE_IM2COL_INTERLEAVED + DTMM_USE_IM2COL_LARGE)
#define DTMM_USE_ALL 255
#ifndef DTMM_CONV_DRIVERS
#define DTMM_CONV_DRIVERS DTMM_USE_ALL
#endif

/* Tensor dimensions (NHWC). */
typedef struct {
  int32_t batches;
  int32_t input_h, input_w, input_c;
  int32_t output_h, output_w, output_c;
  int32_t kernel_h, kernel_w;
} dtmm_conv_dims;

typedef struct {
  int32_t version;          /* DTMM_FORMAT_VERSION_MIN .. DTMM_FORMAT_VERSION */
  int32_t stride_h, stride_w;
  int32_t dilation_h, dilation_w;
  int32_t pad_top, pad_left; /* as TFLite's ComputePaddingHeightWidth; bottom/right
                                padding is implied by the output size */
  int32_t input_zero_point;  /* value read at padded taps (the bias is folded) */
  int32_t output_offset;     /* output zero point */
  int32_t activation_min, activation_max; /* int8 clamp range */
} dtmm_conv_params;

/* FWCS filter plus the converter's precomputed per-channel constants.
 * With blocks (B = block_size < input_c), bit (oc * K + p) * (input_c / B) + j
 * stands for channels [j*B, (j+1)*B) of filterlet (oc, p), and values holds the
 * kept blocks (B bytes each) in bit order; B = input_c is version 1's layout. */
typedef struct {
  const uint8_t* bitmap;     /* ceil(output_c * kernel_h * kernel_w * (input_c / B) / 8)
                                bytes (unpadded) */
  int32_t bitmap_bytes;
  const int8_t* values;      /* num_filterlets * B int8: the kept filterlets (blocks) */
  int32_t num_filterlets;    /* kept filterlets (blocks); must equal popcount(bitmap) */
  const int32_t* bias;       /* [output_c] folded bias */
  const int32_t* multiplier; /* [output_c] */
  const int32_t* shift;      /* [output_c], positive = left shift */
  int32_t block_size;        /* B; 0 = input_c (version 1 filterlets) */
} dtmm_fwcs_filter;

/**
 * @brief Checks dims, params and the FWCS arrays of a DTMM_CONV_2D layer.
 *
 * Rejects: null pointers, non-positive sizes, sizes whose products overflow int32
 * (DTMM_ERR_ARG); version outside [DTMM_FORMAT_VERSION_MIN, DTMM_FORMAT_VERSION]
 * (DTMM_ERR_VERSION); block_size other than 0 or input_c with version 1 or with
 * a kernel larger than 1x1, block_size < 0 or not dividing input_c
 * (DTMM_ERR_PARAMS); stride or
 * dilation < 1, negative padding or padding beyond the dilated kernel (top/left, and
 * the bottom/right the output size implies), coordinates that overflow int32
 * (output_h * stride_h + (kernel_h - 1) * dilation_h + pad_top + input_h must fit,
 * and the same along w: the stride counts even for a single output row), zero
 * points or activation bounds outside int8, act_min >
 * act_max, multiplier < 0, shift outside [-31, 30] (DTMM_ERR_PARAMS); bitmap
 * length != ceil(C_out * K_h * K_w * (C_in / B) / 8) or padding bits set
 * (DTMM_ERR_BITMAP); num_filterlets != popcount(bitmap), or values NULL with
 * blocks kept (DTMM_ERR_VALUES); a layer no driver of DTMM_CONV_DRIVERS runs
 * (DTMM_ERR_UNSUPPORTED). The caller checks that the values really hold
 * num_filterlets * B bytes (the TFLM op takes both from its tensors' lengths) and,
 * for version 2's 4-byte-padded bitmap, that the padding bytes are zero.
 *
 * After DTMM_OK, dtmm_conv_s8 reads only inside input/values/bitmap/bias/
 * multiplier/shift and writes only inside output and scratch, whatever the
 * contents. Cost: one pass over bitmap and the per-channel arrays; call it once
 * (TFLM: Prepare), not per inference.
 */
dtmm_status dtmm_conv_s8_validate(const dtmm_conv_dims* dims,
                                  const dtmm_conv_params* params,
                                  const dtmm_fwcs_filter* filter);

/**
 * @brief Bytes of caller-provided scratch dtmm_conv_s8 needs (compiled path).
 *
 * Depends only on dims/params; 0 for arguments dtmm_conv_s8_validate rejects.
 * 0 for 1x1 kernels (blocks or not) and for DSP/portable layers whose windows are
 * all read in place (then scratch may be NULL), except on DSP the 1-2 pixel layers
 * of k > 1 with C_in a multiple of 4 and <= 25 taps: their windows widened to int16,
 * 2 * K * C_in bytes a pixel; otherwise up to P * K * C_in
 * (K = kernel_h * kernel_w, P = 4 MVE/portable, 3 DSP: one int8 im2col row per
 * pixel of a group; the MVE window driver: its tap offsets and one dense filter,
 * 4 * K + K * C_in, if larger), rounded up to 4: never more than CMSIS-NN's
 * arm_convolve_s8_get_buffer_size for the same layer (4 * K * C_in DSP,
 * 4 * roundup16(K * C_in) MVE; C_in >= 2) - except for the layers the expanded
 * driver takes (C_in <= 3 with >= 16 taps, C_in == 1, C_in <= 8 when dilated or
 * when its kernel rows read in place are under 8 bytes), which need their dense
 * filter and a channel list on top:
 * C_out * (K * C_in + 4) bytes (DS-CNN's 10x4 first conv: 2,816).
 */
int32_t dtmm_conv_s8_get_buffer_size(const dtmm_conv_dims* dims,
                                     const dtmm_conv_params* params);

/**
 * @brief The code dtmm_conv_s8 runs a layer with in this build, as DTMM_USE_* bits:
 * the driver's and those of the im2col paths it may take (0: none of the built
 * drivers runs it, or dims/params are invalid).
 *
 * @param[in]  block_size  as dtmm_fwcs_filter's (0 = input_c)
 * @param[out] preferred   (may be NULL) the same with every driver and path built: a
 *                         bit in it but not in the result is code the layer would
 *                         run faster with (TFLM's op says so in Prepare)
 */
int32_t dtmm_conv_s8_driver(const dtmm_conv_dims* dims, const dtmm_conv_params* params,
                            int32_t block_size, int32_t* preferred);

/* "pixel", "pointwise", "expanded", "im2col", "window", "pointwise_blocks",
 * "im2col_interleaved", "im2col_large" for one DTMM_USE_* bit (the names of TFLM
 * make's DTMM_CONV_DRIVERS), "none" otherwise. */
const char* dtmm_conv_s8_driver_name(int32_t driver);

/**
 * @brief DTMM_CONV_2D: output[n, y, x, oc] per docs/contract.md "Semantics".
 *
 * @param[in]  dims, params, filter  must have passed dtmm_conv_s8_validate
 *                                   (not re-checked here)
 * @param[in]  input    batches*input_h*input_w*input_c int8 (NHWC)
 * @param[out] output   batches*output_h*output_w*output_c int8 (NHWC); must not
 *                      overlap input
 * @param[in]  scratch  dtmm_conv_s8_get_buffer_size bytes, 4-byte aligned (NULL
 *                      allowed when that is 0); contents need no initialization
 * @return DTMM_OK
 *
 * Accumulation wraps in int32 like TFLite; requantization is TFLite's
 * MultiplyByQuantizedMultiplier (double rounding); the output offset is added in
 * int32 wrapping like TFLite's, then clamped. Worst-case stack and code size per
 * target: docs/kernels.md (bench/kernel_size.py).
 */
dtmm_status dtmm_conv_s8(const dtmm_conv_dims* dims, const dtmm_conv_params* params,
                         const dtmm_fwcs_filter* filter, const int8_t* input,
                         int8_t* output, void* scratch);

#ifdef __cplusplus
}
#endif

#endif /* DTMM_OPS_DTMM_CONV_S8_H_ */
