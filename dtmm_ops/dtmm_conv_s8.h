/* DTMM filterlet-sparse int8 convolution (format version 1, see docs/contract.md).
 *
 * Framework-free: no heap, no globals, no TFLM headers. One compute function with a
 * validator and a scratch-size companion, in the CMSIS-NN style. The implementation
 * is chosen at compile time: Helium/MVE (__ARM_FEATURE_MVE), Arm DSP extension
 * (__ARM_FEATURE_DSP) or portable C; all produce identical bytes.
 */
#ifndef DTMM_OPS_DTMM_CONV_S8_H_
#define DTMM_OPS_DTMM_CONV_S8_H_

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The only FWCS / options format version this library reads. */
#define DTMM_FORMAT_VERSION 1

typedef enum {
  DTMM_OK = 0,
  DTMM_ERR_ARG = -1,      /* null pointer, non-positive size, size overflow */
  DTMM_ERR_VERSION = -2,  /* unknown format version */
  DTMM_ERR_PARAMS = -3,   /* stride/dilation/padding/activation/shift out of range */
  DTMM_ERR_BITMAP = -4,   /* wrong bitmap length or padding bits set */
  DTMM_ERR_VALUES = -5,   /* values length disagrees with popcount(bitmap) * C_in */
} dtmm_status;

/* Tensor dimensions (NHWC). */
typedef struct {
  int32_t batches;
  int32_t input_h, input_w, input_c;
  int32_t output_h, output_w, output_c;
  int32_t kernel_h, kernel_w;
} dtmm_conv_dims;

typedef struct {
  int32_t version;          /* must be DTMM_FORMAT_VERSION */
  int32_t stride_h, stride_w;
  int32_t dilation_h, dilation_w;
  int32_t pad_top, pad_left; /* as TFLite's ComputePaddingHeightWidth; bottom/right
                                padding is implied by the output size */
  int32_t input_zero_point;  /* value read at padded taps (the bias is folded) */
  int32_t output_offset;     /* output zero point */
  int32_t activation_min, activation_max; /* int8 clamp range */
} dtmm_conv_params;

/* FWCS filter plus the converter's precomputed per-channel constants. */
typedef struct {
  const uint8_t* bitmap;     /* ceil(output_c * kernel_h * kernel_w / 8) bytes */
  int32_t bitmap_bytes;
  const int8_t* values;      /* num_filterlets * input_c int8, kept filterlets */
  int32_t num_filterlets;    /* rows of values; must equal popcount(bitmap) */
  const int32_t* bias;       /* [output_c] folded bias */
  const int32_t* multiplier; /* [output_c] */
  const int32_t* shift;      /* [output_c], positive = left shift */
} dtmm_fwcs_filter;

/* Checks dims, params and the FWCS arrays (lengths, popcount, padding bits,
 * multiplier >= 0, shift in [-31, 30]). After DTMM_OK, dtmm_conv_s8 reads only
 * inside input/values/bitmap/bias/multiplier/shift and writes only inside output
 * and scratch. Cost: one pass over the bitmap. */
dtmm_status dtmm_conv_s8_validate(const dtmm_conv_dims* dims,
                                  const dtmm_conv_params* params,
                                  const dtmm_fwcs_filter* filter);

/* Bytes of scratch dtmm_conv_s8 needs for these dims on the compiled path
 * (0 is a valid answer; then scratch may be NULL). */
int32_t dtmm_conv_s8_get_buffer_size(const dtmm_conv_dims* dims,
                                     const dtmm_conv_params* params);

/* output[n, y, x, oc] per docs/contract.md "Semantics". Arguments must have passed
 * dtmm_conv_s8_validate. input: batches*input_h*input_w*input_c int8; output:
 * batches*output_h*output_w*output_c int8; scratch: get_buffer_size bytes, 4-byte
 * aligned. */
dtmm_status dtmm_conv_s8(const dtmm_conv_dims* dims, const dtmm_conv_params* params,
                         const dtmm_fwcs_filter* filter, const int8_t* input,
                         int8_t* output, void* scratch);

#ifdef __cplusplus
}
#endif

#endif /* DTMM_OPS_DTMM_CONV_S8_H_ */
