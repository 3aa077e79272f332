/* ppdock/kernels/linear_ops.h — per-element bodies of the ReLU, bias + ReLU and dropout ops of
 * ppdock/nn.h, shared by the CPU loops (lib/nn/linear.c) and their CUDA twins
 * (lib/nn/cuda/linear.cu), DESIGN.md rule 5. Comparisons and one multiply each: bit-identical on
 * both sides. The dropout mask is a pure function of (seed, site, row, col) (splitmix64), so the
 * CPU and the GPU, and a backward that recomputes a chunk, draw the same mask.
 */
#ifndef PPDOCK_KERNELS_LINEAR_OPS_H
#define PPDOCK_KERNELS_LINEAR_OPS_H

#include <stdint.h>

#include "ppdock/kernels/hd.h"

static inline PPD_HD float ppd_relu_elem(float x) {
    return x > 0.0f ? x : 0.0f;
}

/* max(x + b, 0): a Linear's bias fused with its ReLU */
static inline PPD_HD float ppd_bias_relu_elem(float x, float b) {
    float v = x + b;
    return v > 0.0f ? v : 0.0f;
}

/* the gradient through a ReLU whose output was y */
static inline PPD_HD float ppd_relu_backward_elem(float d, float y) {
    return y > 0.0f ? d : 0.0f;
}

static inline PPD_HD uint64_t ppd_splitmix64(uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

/* Dropout's per-call constants: keep when the top 32 bits of the hash are >= threshold. */
static inline PPD_HD uint64_t ppd_dropout_threshold(float p) {
    return (uint64_t)((double)p * 4294967296.0);
}
static inline PPD_HD uint64_t ppd_dropout_base(uint64_t seed, uint32_t site) {
    return ppd_splitmix64(seed ^ ((uint64_t)site << 40));
}
/* The key of absolute row `row` (row0 + r). */
static inline PPD_HD uint64_t ppd_dropout_row_key(uint64_t base, int64_t row) {
    return ppd_splitmix64(base + (uint64_t)row);
}
/* y kept and scaled, or 0, for column c of the row with key rk */
static inline PPD_HD float ppd_dropout_elem(float y, uint64_t rk, int c, uint64_t threshold,
                                            float scale) {
    uint64_t h = ppd_splitmix64(rk + (uint64_t)c) >> 32;
    return h >= threshold ? y * scale : 0.0f;
}
/* the gradient through dropout after a ReLU, y the forward's output */
static inline PPD_HD float ppd_dropout_relu_backward_elem(float dy, float y, float scale) {
    return y > 0.0f ? dy * scale : 0.0f;
}

#endif
