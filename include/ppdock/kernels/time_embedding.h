/* ppdock/kernels/time_embedding.h — per-element body of the sinusoidal time embedding
 * (spec diffdock-pp.md §2.2; embedding_scale 10000, dim 32):
 *
 *   a = float32(10000 * t)                                       t: (N), out: (N, 32)
 *   out[n][k]      = sin(a * f_k)      k = 0..15
 *   out[n][16 + k] = cos(a * f_k)
 *
 * f_k is the float32 table below, PyTorch CPU's exp(float32(k) * float32(-ln(10000)/15)).
 * It must be used bit for bit: a reaches 1e4, so one ulp in f_k moves the embedding by ~6e-5.
 * The table is written once here as a macro; the CPU defines ppd_time_embedding_freqs[] from it
 * (lib/nn/time_embedding.c) and the GPU a device copy (lib/nn/cuda/time_embedding.cu), and the
 * body takes the table as a pointer.
 *
 * sinf/cosf: glibc's are within 1 ulp (glibc manual); CUDA's are within 2 ulp
 * over the full range (arguments here stay below 1.1e4, inside CUDA's fast reduction path, which
 * keeps that bound). The products are single IEEE multiplies on both sides, so CPU and GPU
 * differ by at most 3 ulp of the result.
 */
#ifndef PPDOCK_KERNELS_TIME_EMBEDDING_H
#define PPDOCK_KERNELS_TIME_EMBEDDING_H

#include <math.h>

#include "ppdock/kernels/hd.h"

#define PPD_TIME_EMBEDDING_DIM   32
#define PPD_TIME_EMBEDDING_HALF  16
#define PPD_TIME_EMBEDDING_SCALE 10000.0f

/* f_0 .. f_15, float32 (spec §2.2, PyTorch CPU). */
#define PPD_TIME_EMBEDDING_FREQS                                                                   \
    0x1.000000p+0f, 0x1.15142cp-1f, 0x1.2be4aap-2f, 0x1.449610p-3f, 0x1.5f4ff0p-4f,                \
        0x1.7c3d2cp-5f, 0x1.9b8c2ep-6f, 0x1.bd6f1ap-7f, 0x1.e21c50p-8f, 0x1.04e74ep-8f,            \
        0x1.1a62d6p-9f, 0x1.31a332p-10f, 0x1.4acdb4p-11f, 0x1.660aa4p-12f, 0x1.8385b8p-13f,        \
        0x1.a36e2cp-14f

/* Output j (0..31) of the embedding of time t; freqs: the 16 f_k. */
static inline PPD_HD float ppd_time_embedding_elem(float t, int j, const float *freqs) {
    float a = PPD_TIME_EMBEDDING_SCALE * t;
    float x = a * freqs[j & (PPD_TIME_EMBEDDING_HALF - 1)];
    return j < PPD_TIME_EMBEDDING_HALF ? sinf(x) : cosf(x);
}

#endif
