/* Baseline kernels the benchmark compares DTMM against (bench only, not shipped). */
#ifndef DTMM_BENCH_BASELINES_H_
#define DTMM_BENCH_BASELINES_H_

#include <stdint.h>

#include "dtmm_conv_s8.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Unstructured (per-weight) sparse conv in CSR: what element-wise pruning needs.
 * Row oc holds its non-zero weights, col = index into the [K_h][K_w][C_in] window. */
typedef struct {
  const int32_t* row_ptr; /* [C_out + 1] */
  const uint16_t* col;    /* [nnz] */
  const int8_t* val;      /* [nnz] */
  const int32_t* bias;    /* folded, as DTMM */
  const int32_t* multiplier;
  const int32_t* shift;
} dtmm_csr_filter;

/* Scratch: 4 * K_h * K_w * C_in bytes (an int8 im2col row per pixel of a group). */
int32_t dtmm_csr_conv_s8_get_buffer_size(const dtmm_conv_dims* dims);
dtmm_status dtmm_csr_conv_s8(const dtmm_conv_dims* dims, const dtmm_conv_params* params,
                             const dtmm_csr_filter* filter, const int8_t* input,
                             int8_t* output, void* scratch);

#ifdef __cplusplus
}
#endif

#endif /* DTMM_BENCH_BASELINES_H_ */
