/* ppdock/adam_cuda.h — Adam and gradient-norm clipping on the GPU, the twins of ppdock/adam.h
 * (link libppdock_cuda.a and cudart). Device pointers; kernels are queued on `stream` and the
 * status covers argument checks and the launches (errors inside surface at the next sync).
 *
 * ppd_cuda_adam_step runs ppdock/kernels/adam.h's body: for the same gradients the parameters
 * and moments are bit-identical to ppd_adam_step's.
 *
 * ppd_cuda_clip_grad_norm is ppd_clip_grad_norm without atomics: one block per tensor sums
 * g² in double (a fixed tree order, so runs repeat bit for bit; the CPU sums sequentially, so
 * the per-tensor norms can differ from the CPU's in the last bit), then one thread forms the
 * float32 total in tensor order and the clipping factor, and the gradients are scaled on the
 * device. Nothing is copied to the host: scratch[0] receives the total norm (download it when it
 * is needed, e.g. for the metrics), scratch[1] the factor, and scratch[2 .. 2 + count) the
 * per-tensor norms (so scratch holds count + 2 floats). offset and numel are device arrays of
 * `count` size_t; n is the buffer's length (the gradients scaled).
 */
#ifndef PPDOCK_ADAM_CUDA_H
#define PPDOCK_ADAM_CUDA_H

#include "ppdock/adam.h"
#include "ppdock/device.h"

#ifdef __cplusplus
extern "C" {
#endif

ppd_status ppd_cuda_adam_step(float *p, const float *g, float *m, float *v, size_t n,
                              const ppd_adam_config *c, uint64_t step, cudaStream_t stream);

ppd_status ppd_cuda_clip_grad_norm(float *g, size_t n, const size_t *offset, const size_t *numel,
                                   int count, double max_norm, float *scratch, cudaStream_t stream);

#ifdef __cplusplus
}
#endif

#endif
