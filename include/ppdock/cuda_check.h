/* ppdock/cuda_check.h — CUDA runtime errors as ppd_status, for .cu files and for C files built
 * with the CUDA headers (tests/gpu). It includes cuda_runtime_api.h, so the CPU library (the .c
 * files under lib/) must not include it.
 *
 *   PPD_CUDA_CHECK(cudaMemcpyAsync(dst, src, n, cudaMemcpyHostToDevice, stream));
 *
 * returns from the enclosing function (which must return ppd_status) on failure:
 *  - PPD_ERR_NOMEM for cudaErrorMemoryAllocation;
 *  - PPD_ERR_CUDA, "no CUDA device: <text> (<name> from <call> at <file>:<line>)" for
 *    cudaErrorNoDevice and cudaErrorInsufficientDriver;
 *  - PPD_ERR_CUDA otherwise, "<file>:<line>: <call>: <cudaGetErrorName>: <cudaGetErrorString>",
 *    e.g. "lib/nn/cuda/x.cu:42: cudaMemcpyAsync(...): cudaErrorInvalidValue: invalid argument".
 */
#ifndef PPDOCK_CUDA_CHECK_H
#define PPDOCK_CUDA_CHECK_H

#include <cuda_runtime_api.h>

#ifdef __cplusplus
extern "C" {
#endif

#include "ppdock/status.h"

/* Record the message for `err` (not cudaSuccess) raised by `what` at file:line; return the
 * status. Also clears the runtime's last-error slot, so a non-sticky error is not reported a
 * second time by the next cudaGetLastError. */
ppd_status ppd_cuda_status(cudaError_t err, const char *file, int line, const char *what);

/* 1 for the errors that mean "this machine has no usable GPU". */
int ppd_cuda_is_no_device(cudaError_t err);

#ifdef __cplusplus
}
#endif

#define PPD_CUDA_CHECK(call)                                                                       \
    do {                                                                                           \
        cudaError_t ppd_cuda_err_ = (call);                                                        \
        if (ppd_cuda_err_ != cudaSuccess)                                                          \
            return ppd_cuda_status(ppd_cuda_err_, __FILE__, __LINE__, #call);                      \
    } while (0)

#endif
