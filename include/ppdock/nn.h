/* ppdock/nn.h — tensor ops, CPU reference implementations (plain C + OpenMP).
 *
 * Each op is a plain function `ppd_<op>_forward(out, inputs..., sizes)` on float32 row-major
 * arrays that the caller owns (no allocation inside). The per-element arithmetic of element-wise
 * ops lives in include/ppdock/kernels/<op>.h and is shared with the CUDA twin
 * `ppd_cuda_<op>_forward` (ppdock/nn_cuda.h), which keeps the same argument order plus a stream.
 * Shapes are stated once per op below; E = edges, G = Gaussians per edge, N = nodes/times.
 * The ops cannot fail; sizes must be >= 0 (assert).
 */
#ifndef PPDOCK_NN_H
#define PPDOCK_NN_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Gaussian distance smearing (spec §3.3) --------------------------------------------------
 * out: (E, G)   dist: (E)   offsets: (G)
 *   out[e][g] = exp(gamma * (dist[e] - offsets[g])^2)
 * Score model: intra and centre edges use offsets linspace(0, 30, 32), cross edges (0, 80, 32);
 * gamma = ppd_gaussian_smearing_gamma(offsets). */
void ppd_gaussian_smearing_forward(float *out, const float *dist, const float *offsets, float gamma,
                                   int64_t E, int G);

/* offsets: (G), G >= 2. float32 torch.linspace(start, stop, G) as PyTorch's CPU kernel computes
 * it (AVX2 build): step = (stop - start) / (G - 1) in float32; 8-wide vectors start from
 * start + step * j0 (first half) or stop - step * (G - 1 - j0) (second half) and add
 * step * lane. It can differ by one ulp from the correctly rounded value and from other PyTorch
 * builds (spec §3.3); checkpoints store the offsets, so a loaded model uses those instead. */
void ppd_gaussian_smearing_offsets(float *offsets, float start, float stop, int G);

/* gamma = -0.5 / (offsets[1] - offsets[0])^2, computed in double and rounded to float32 (spec
 * §3.3: -0.5338889207111479 for (0, 30, 32), -0.07507812947500517 for (0, 80, 32)). */
float ppd_gaussian_smearing_gamma(const float *offsets);

/* ---- Sinusoidal time embedding (spec §2.2) ---------------------------------------------------
 * out: (N, 32)   t: (N)
 *   a = float32(10000 * t[n]); out[n] = [sin(a f_0) .. sin(a f_15), cos(a f_0) .. cos(a f_15)]
 * with the exact float32 frequencies below. t = 0 gives [0]*16 + [1]*16. */
void ppd_time_embedding_forward(float *out, const float *t, int64_t N);

/* f_0 .. f_15 as used by ppd_time_embedding_forward (PPD_TIME_EMBEDDING_FREQS). */
extern const float ppd_time_embedding_freqs[16];

/* ---- Linear layer (PyTorch layout: W is (M, K)) ---------------------------------------------
 * out: (N, M)   in: (N, K)   W: (M, K)   b: (M) or NULL
 *   forward:  out = in W^T + b                       (one sgemm)
 *   backward: dW += dout^T in;  db += Σ_n dout[n];  din = dout W   (din, db may be NULL;
 *             dW and db accumulate, din is overwritten)
 * The GEMMs run as single-threaded OpenBLAS calls on row blocks spread over the OpenMP threads
 * (callers set openblas_set_num_threads(1)); results do not depend on the thread count. */
void ppd_linear_forward(float *out, const float *in, const float *W, const float *b, int64_t N,
                        int K, int M);
void ppd_linear_backward(float *din, float *dW, float *db, const float *dout, const float *in,
                         const float *W, int64_t N, int K, int M);

/* ---- ReLU ----------------------------------------------------------------------------------
 * x: (n) in place;  backward: d[i] = 0 where y[i] <= 0 (y = the ReLU's output). */
void ppd_relu_forward(float *x, int64_t n);
/* ---- Dropout after a ReLU --------------------------------------------------------------------
 * y: (rows, cols) in place, the ReLU's output: each element is kept with probability 1 - p and
 * scaled by 1/(1 - p), or zeroed. The mask is a pure function of (seed, site, row0 + row, col)
 * (splitmix64), not of a stream: backward passes that recompute an activation chunk by chunk
 * regenerate exactly the same mask. p = 0 changes nothing.
 * backward: dy[i] = y[i] > 0 ? dy[i] / (1 - p) : 0, with y the forward's output (dropped or
 * negative inputs give 0) — ppd_relu_backward when p = 0. */
void ppd_dropout_forward(float *y, int64_t rows, int cols, int64_t row0, uint64_t seed,
                         uint32_t site, float p);
void ppd_dropout_relu_backward(float *dy, const float *y, int64_t n, float p);

/* x: (N, M) in place: x[n][m] = max(x[n][m] + b[m], 0) (a Linear's bias fused with its ReLU). */
void ppd_bias_relu_forward(float *x, const float *b, int64_t N, int M);
void ppd_relu_backward(float *d, const float *y, int64_t n);

#ifdef __cplusplus
}
#endif

#endif
