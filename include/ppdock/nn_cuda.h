/* ppdock/nn_cuda.h — CUDA twins of the ops in ppdock/nn.h (link libppdock_cuda.a and cudart).
 *
 * Same name with `ppd_cuda_` for `ppd_`, same arguments in the same order, all pointers device
 * pointers, plus a trailing stream (NULL = the legacy default stream). Kernels are launched
 * asynchronously: the returned status covers argument checks and the launch itself
 * (cudaGetLastError), while faults inside a kernel surface at the next synchronising call.
 * Nothing here allocates: inputs, outputs and scratch come from a ppd_device_arena.
 *
 * Errors: PPD_ERR_CUDA (launch failed, or a sticky error from earlier work on the device; the
 * message names the op and cudaGetErrorString), "no CUDA device" when there is none.
 *
 * Includable from C without the CUDA headers: cudaStream_t is declared in ppdock/device.h the
 * way cuda_runtime_api.h declares it (a pointer to the opaque struct CUstream_st), so a C tool
 * can pass streams it got from CUDA, and the two declarations agree when both are seen.
 */
#ifndef PPDOCK_NN_CUDA_H
#define PPDOCK_NN_CUDA_H

#include <stdint.h>

#include "ppdock/device.h"
#include "ppdock/tp.h"

#ifdef __cplusplus
extern "C" {
#endif

/* out: (E, G)   dist: (E)   offsets: (G). See ppd_gaussian_smearing_forward. */
ppd_status ppd_cuda_gaussian_smearing_forward(float *out, const float *dist, const float *offsets,
                                              float gamma, int64_t E, int G, cudaStream_t stream);

/* out: (N, 32)   t: (N). See ppd_time_embedding_forward. */
ppd_status ppd_cuda_time_embedding_forward(float *out, const float *t, int64_t N,
                                           cudaStream_t stream);

/* Y: (E, 9)   vec: (E, 3). See ppd_sh_forward (ppdock/so3.h). */
ppd_status ppd_cuda_sh_forward(float *Y, const float *vec, int64_t E, cudaStream_t stream);

/* The tensor product (ppdock/tp.h) with `tp` a DEVICE copy of the host's ppd_tp (plain data:
 * upload it once with ppd_device_upload). Shapes as ppd_tp_forward / ppd_tp_backward; dwb (may
 * be NULL) accumulates Σ_e dw[e] column by column in edge order (deterministic). */
ppd_status ppd_cuda_tp_forward(const ppd_tp *tp, float *msg, const float *h, const int64_t *send,
                               const float *Y, const float *w, const float *wb, int64_t E,
                               cudaStream_t stream);
ppd_status ppd_cuda_tp_backward(const ppd_tp *tp, float *dh_edge, float *dw, float *dwb,
                                const float *dmsg, const float *h, const int64_t *send,
                                const float *Y, const float *w, const float *wb, int64_t E,
                                cudaStream_t stream);

#ifdef __cplusplus
}
#endif

#endif
