/* DTMM block-sparse int8 fully connected (format version 2, see docs/contract.md).
 * Framework-free: no heap, no globals, no TFLM headers, C99 (also compiles as C++).
 * In the CMSIS-NN style: a compute function with a validator and a scratch-size
 * companion; the architecture (Helium / MVE, Arm DSP, portable C) is chosen at
 * compile time in dtmm_conv_s8_support.h, whose MAC loops and requantization this
 * reuses. All paths produce identical bytes (tests/dtmm_fc_s8_test.c).
 *
 * Layout (docs/contract.md "DTMM_FULLY_CONNECTED"): the weights W [C_out, C_in]
 * are cut into blocks of B input channels; w holds the bitmap (bit oc * nb + j for
 * block j of row oc, nb = C_in / B, LSB first, padded to bitmap_bytes =
 * 4 * ceil(C_out * nb / 32)) and then the kept blocks in row-major order; q holds
 * (folded bias, multiplier, shift) per output channel.
 */
#ifndef DTMM_OPS_DTMM_FC_S8_H_
#define DTMM_OPS_DTMM_FC_S8_H_

#include <stdint.h>

#include "dtmm_conv_s8.h" /* dtmm_status */

#ifdef __cplusplus
extern "C" {
#endif

/* The format version of DTMM_FULLY_CONNECTED. */
#define DTMM_FC_FORMAT_VERSION 2

typedef struct {
  int32_t batches;  /* rows of input and output */
  int32_t input_c;  /* C_in: int8 per input row */
  int32_t output_c; /* C_out: int8 per output row */
  int32_t block;    /* B: input channels per block, divides C_in */
} dtmm_fc_dims;

typedef struct {
  int32_t version;                        /* must be DTMM_FC_FORMAT_VERSION */
  int32_t output_offset;                  /* output zero point */
  int32_t activation_min, activation_max; /* int8 clamp range */
} dtmm_fc_params;

typedef struct {
  const int8_t* w;  /* bitmap_bytes + n_kept * B bytes: bitmap, then kept blocks */
  int32_t w_bytes;  /* elements of the w tensor */
  const int32_t* q; /* [C_out][3]: folded bias, multiplier, shift */
} dtmm_fc_filter;

/* Bytes of the bitmap part of w; 0 when dims are invalid. */
int32_t dtmm_fc_s8_bitmap_bytes(const dtmm_fc_dims* dims);

/**
 * @brief Checks dims, params and the packed weights of a DTMM_FULLY_CONNECTED.
 * Rejects: null pointers, non-positive sizes, B that does not divide C_in or is
 * above 65535, sizes whose products overflow int32 (DTMM_ERR_ARG); version !=
 * DTMM_FC_FORMAT_VERSION (DTMM_ERR_VERSION); output offset or activation bounds
 * outside int8, activation_min > activation_max, multiplier < 0, shift outside
 * [-31, 30] (DTMM_ERR_PARAMS); w_bytes < bitmap_bytes or bitmap bits past
 * C_out * nb set (DTMM_ERR_BITMAP); w_bytes != bitmap_bytes + popcount * B
 * (DTMM_ERR_VALUES). After DTMM_OK, dtmm_fc_s8 reads only inside input, w and q
 * and writes only inside output and scratch, whatever the contents. One pass over
 * the bitmap and q: call it once (TFLM: Prepare), not per inference.
 */
dtmm_status dtmm_fc_s8_validate(const dtmm_fc_dims* dims, const dtmm_fc_params* params,
                                const dtmm_fc_filter* filter);

/**
 * @brief Bytes of caller-provided scratch dtmm_fc_s8 needs (compiled path): the
 * DSP path widens one input row to int16 pairs once (2 * C_in rounded down to 8,
 * for C_in >= 8); the other paths need none (0; then scratch may be NULL).
 * 0 for dims dtmm_fc_s8_validate rejects.
 */
int32_t dtmm_fc_s8_get_buffer_size(const dtmm_fc_dims* dims);

/**
 * @brief output[n][oc] = clamp(requantize(q[oc][0] + sum over kept blocks j of
 * row oc of input[n][j*B .. j*B+B) . block) + output_offset), for n < batches.
 * input: batches * C_in int8; output: batches * C_out int8; scratch: at least
 * dtmm_fc_s8_get_buffer_size bytes, 4-byte aligned (a misaligned or NULL scratch
 * takes the path without it: same bytes, slower). Arguments must have passed
 * dtmm_fc_s8_validate. int32 accumulation wraps, as TFLite's.
 */
void dtmm_fc_s8(const dtmm_fc_dims* dims, const dtmm_fc_params* params,
                const dtmm_fc_filter* filter, const int8_t* input, int8_t* output,
                void* scratch);

#ifdef __cplusplus
}
#endif

#endif /* DTMM_OPS_DTMM_FC_S8_H_ */
