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

#ifdef __cplusplus
extern "C" {
#endif

/* out: (E, G)   dist: (E)   offsets: (G). See ppd_gaussian_smearing_forward. */
ppd_status ppd_cuda_gaussian_smearing_forward(float *out, const float *dist, const float *offsets,
                                              float gamma, int64_t E, int G, cudaStream_t stream);

/* out: (N, 32)   t: (N). See ppd_time_embedding_forward. */
ppd_status ppd_cuda_time_embedding_forward(float *out, const float *t, int64_t N,
                                           cudaStream_t stream);

#ifdef __cplusplus
}
#endif

#endif
