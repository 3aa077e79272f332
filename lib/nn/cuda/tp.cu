// Spherical harmonics and the per-edge-weighted tensor product on the GPU: the CUDA twins of
// ppd_sh_forward, ppd_tp_forward and ppd_tp_backward (ppdock/nn_cuda.h). The harmonics run the
// CPU's body (ppdock/kernels/so3.h) one thread per edge; the tensor product runs the CPU body's
// per-path steps (ppdock/kernels/tp_body.h) one warp per edge, the lanes over channels so that
// the per-edge weights (up to 3,032 floats per edge) are read and written coalesced. On an H200
// (before the unrolling below) they took 55% of a batch-16 training step's GPU time.
#include "ppdock/nn_cuda.h"

#include "common.cuh"
#include "ppdock/kernels/so3.h"
#include "ppdock/kernels/tp.h"
#include "ppdock/so3.h"

#define PPD_EDGE_THREADS 128

static inline unsigned edge_blocks(int64_t E) {
    int64_t b = (E + PPD_EDGE_THREADS - 1) / PPD_EDGE_THREADS;
    return (unsigned)(b < PPD_MAX_ROW_BLOCKS ? b : PPD_MAX_ROW_BLOCKS);
}

static __global__ void sh_forward_kernel(float *Y, const float *vec, int64_t E) {
    int64_t stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; e < E; e += stride)
        ppd_sh_elem(vec + 3 * e, Y + PPD_SH_DIM * e);
}

// The tensor product: one warp per edge (TP_WARPS edges per block). For each path the warp
// forms M = C·Y (a lane per entry, into shared memory) and T[u][k] = c Σ_i x1[u, i] M[i][k]
// (lanes over the input channels u, into shared memory); then the lanes take the weights w[u][v]
// in storage order, so they are read coalesced (tp_path_forward). Each sum runs in the CPU
// body's order (kernels/tp_body.h) but two: the forward's sum over u, which paths of at most 16
// output channels split among the warp's lane groups, and dT of the backward, a sum over v that
// the CPU groups in blocks of 8: within float rounding (the GPU comparison's tolerance). The loops
// over k, the path's 2 lo + 1 output components, are unrolled for lo = 0, 1, 2 (NO = 1, 3, 5: M is
// at most 5 x 5, l <= 2, as in the CPU body), so the per-lane accumulators are registers; with a
// run-time bound they were a 120-byte stack frame read and written in the innermost loops.
#define TP_WARPS 4

// f(std::integral_constant<int, NO>{}) for the path's output width NO = 2 lo + 1 (lo <= 2): the
// one place the per-width instantiations are chosen, for the forward and the backward kernel
template <class F> static inline __device__ void tp_by_width(const ppd_tp_path *p, F &&f) {
    if (p->lo == 0)
        f(std::integral_constant<int, 1>{});
    else if (p->lo == 1)
        f(std::integral_constant<int, 3>{});
    else
        f(std::integral_constant<int, 5>{});
}

// the edge's weight at index `at`: its own plus the shared bias (wb may be NULL)
static inline __device__ float tp_weight(const float *we, const float *wb, int at) {
    return we[at] + (wb ? wb[at] : 0.0f);
}

// the warp's M of path p, a lane per entry; the caller syncs the warp before reading it
static inline __device__ void tp_path_matrix(const ppd_tp *tp, const ppd_tp_path *p,
                                             const float *Ye, float *M, int lane) {
    int no = 2 * p->lo + 1;
    if (lane < (2 * p->l1 + 1) * no)
        M[lane] = ppd_tp_path_matrix_entry(p, tp->coef, Ye, lane / no, lane % no);
}

// T[u][k] = scale Σ_i x1[u, i] M[i][k], lanes over u
template <int NO>
static inline __device__ void tp_path_t(const ppd_tp_path *p, const float *x1, const float *M,
                                        float scale, float *T, int lane) {
    int n1 = 2 * p->l1 + 1, mul1 = p->mul1;
    for (int u = lane; u < mul1; u += PPD_WARP) {
        const float *xu = x1 + p->off1 + u * n1;
#pragma unroll
        for (int k = 0; k < NO; k++) {
            float sum = 0.0f;
            for (int i = 0; i < n1; i++) sum += xu[i] * M[i * NO + k];
            T[u * NO + k] = scale * sum;
        }
    }
}

// a[k] += Σ T[u][k] (w + wb)[u][v] over u = u0, u0 + du, ... < mul1
template <int NO>
static inline __device__ void tp_forward_sum(const ppd_tp_path *p, const float *T, const float *we,
                                             const float *wb, int v, int u0, int du, float *a) {
    int mo = p->mulo;
    for (int u = u0; u < p->mul1; u += du) {
        float wv = tp_weight(we, wb, p->woff + u * mo + v);
#pragma unroll
        for (int k = 0; k < NO; k++) a[k] += T[u * NO + k] * wv;
    }
}

// out[v, k] += Σ_u T[u][k] (w + wb)[u][v]. Lanes over the path's weights in storage order
// (u mo + v), so each warp load is G mo consecutive floats: G = 32 / mo groups of mo lanes, group
// g summing u = g, g + G, ... for its v, then the groups' sums added in g order (through R, the
// warp's 32 x NO scratch). With lanes over v alone, a path of 6 output channels (8 of a layer's
// 12 at the released size) kept 6 lanes of 32 busy and read 24 bytes a load. mo > 16 (one
// group) is lanes over v as before. The sum over u is in G interleaved parts, not the CPU body's
// single order: within float rounding (the comparison's 1e-4).
template <int NO>
static inline __device__ void tp_path_forward(const ppd_tp_path *p, const float *T, const float *we,
                                              const float *wb, float *out, float *R, int lane) {
    int mo = p->mulo;
    int G = mo <= PPD_WARP / 2 ? PPD_WARP / mo : 1; // warp-uniform
    if (G == 1) {
        for (int v = lane; v < mo; v += PPD_WARP) {
            float a[NO] = {};
            tp_forward_sum<NO>(p, T, we, wb, v, 0, 1, a);
            float *o = out + p->offo + v * NO;
#pragma unroll
            for (int k = 0; k < NO; k++) o[k] += a[k];
        }
        return;
    }
    int g = lane / mo;
    float a[NO] = {};
    if (g < G) tp_forward_sum<NO>(p, T, we, wb, lane % mo, g, G, a);
#pragma unroll
    for (int k = 0; k < NO; k++) R[lane * NO + k] = a[k];
    __syncwarp(); // R is read again only after the kernel's sync between paths
    if (lane < mo) {
        float *o = out + p->offo + lane * NO;
#pragma unroll
        for (int k = 0; k < NO; k++) {
            float sum = R[lane * NO + k];
            for (int j = 1; j < G; j++) sum += R[(j * mo + lane) * NO + k];
            o[k] += sum;
        }
    }
}

template <int NO>
static inline __device__ void tp_path_forward_all(const ppd_tp_path *p, const float *x1,
                                                  const float *M, float *T, const float *we,
                                                  const float *wb, float *out, float *R, int lane) {
    tp_path_t<NO>(p, x1, M, p->c, T, lane);
    __syncwarp();
    tp_path_forward<NO>(p, T, we, wb, out, R, lane);
}

static __global__ void tp_forward_kernel(const ppd_tp *tp, float *msg, const float *h,
                                         const int64_t *send, const float *Y, const float *w,
                                         const float *wb, int64_t E) {
    __shared__ float Tsh[TP_WARPS][5 * PPD_TP_MUL_MAX], Msh[TP_WARPS][25],
        Rsh[TP_WARPS][5 * PPD_WARP];
    float *T = Tsh[threadIdx.y], *M = Msh[threadIdx.y], *R = Rsh[threadIdx.y];
    int lane = (int)threadIdx.x, di = tp->in.dim, dy = tp->sh.dim, dout = tp->out.dim, W = tp->wnum;
    int64_t stride = (int64_t)gridDim.x * blockDim.y;
    for (int64_t e = (int64_t)blockIdx.x * blockDim.y + threadIdx.y; e < E; e += stride) {
        float *out = msg + e * dout;
        const float *x1 = h + send[e] * di, *Ye = Y + e * dy, *we = w + e * W;
        for (int k = lane; k < dout; k += PPD_WARP) out[k] = 0.0f;
        for (int q = 0; q < tp->npath; q++) {
            const ppd_tp_path *p = &tp->path[q];
            tp_path_matrix(tp, p, Ye, M, lane);
            __syncwarp();
            tp_by_width(p, [&](auto NO) {
                tp_path_forward_all<decltype(NO)::value>(p, x1, M, T, we, wb, out, R, lane);
            });
            __syncwarp(); // T, M and R are the next path's
        }
    }
}

// dw[u][v] = Σ_k T[u][k] G[k][v] (lanes over the path's mul1 x mo entries in storage order, so
// every warp store is 32 consecutive floats: with lanes over v alone, a path of 6 output channels
// kept 6 lanes busy for 32 rounds); dT[k] = Σ_v (w + wb)[u][v] G[k][v], then dx1[u, i] +=
// Σ_k M[i][k] dT[k] (lanes over u). dT's lanes read rows of the weights mo floats apart (a warp
// load touching 32 cache lines at mo 32), so the dw walk, which visits the weights in storage
// order, also copies them into Ws (rows an odd number of floats apart, mo | 1: the dT reads are
// conflict-free) when the path's fit (mul1 (mo | 1) <= TP_WS, every path at the released size);
// the sums are the same either way.
#define TP_WS (32 * 33)
template <int NO>
static inline __device__ void tp_path_backward(const ppd_tp_path *p, const float *M, const float *T,
                                               const float *G, const float *we, const float *wb,
                                               float *dwe, float *dx1, float *Ws, int lane) {
    int n1 = 2 * p->l1 + 1, mo = p->mulo, mul1 = p->mul1, woff = p->woff;
    int ld = mo | 1;
    bool staged = mul1 * ld <= TP_WS; // warp-uniform
    // entry i = u mo + v; a step of 32 entries is du rows and dv columns, one carry at most
    int u = lane / mo, v = lane % mo, du = PPD_WARP / mo, dv = PPD_WARP % mo;
    for (int i = lane; i < mul1 * mo; i += PPD_WARP) {
        float d = 0.0f;
#pragma unroll
        for (int k = 0; k < NO; k++) d += T[u * NO + k] * G[k * mo + v];
        dwe[woff + i] = d;
        if (staged) Ws[u * ld + v] = tp_weight(we, wb, woff + i);
        u += du, v += dv;
        if (v >= mo) v -= mo, u++;
    }
    if (staged) __syncwarp();
    for (int u = lane; u < mul1; u += PPD_WARP) {
        float dT[NO];
#pragma unroll
        for (int k = 0; k < NO; k++) dT[k] = 0.0f;
        for (int v = 0; v < mo; v++) {
            float wv = staged ? Ws[u * ld + v] : tp_weight(we, wb, woff + u * mo + v);
#pragma unroll
            for (int k = 0; k < NO; k++) dT[k] += wv * G[k * mo + v];
        }
        float *dxu = dx1 + p->off1 + u * n1;
        for (int i = 0; i < n1; i++) {
            float sum = 0.0f;
#pragma unroll
            for (int k = 0; k < NO; k++) sum += M[i * NO + k] * dT[k];
            dxu[i] += sum;
        }
    }
}

template <int NO>
static inline __device__ void
tp_path_backward_all(const ppd_tp_path *p, const float *x1, const float *M, float *T, float *G,
                     const float *go, const float *we, const float *wb, float *dwe, float *dx1,
                     float *Ws, int lane) {
    int mo = p->mulo;
    tp_path_t<NO>(p, x1, M, 1.0f, T, lane);   // T without the path norm
    for (int v = lane; v < mo; v += PPD_WARP) // G[k][v] = c dout[v, k]
#pragma unroll
        for (int k = 0; k < NO; k++) G[k * mo + v] = p->c * go[p->offo + v * NO + k];
    __syncwarp();
    tp_path_backward<NO>(p, M, T, G, we, wb, dwe, dx1, Ws, lane);
}

static __global__ void tp_backward_kernel(const ppd_tp *tp, float *dh_edge, float *dw,
                                          const float *dmsg, const float *h, const int64_t *send,
                                          const float *Y, const float *w, const float *wb,
                                          int64_t E) {
    __shared__ float Tsh[TP_WARPS][5 * PPD_TP_MUL_MAX], Gsh[TP_WARPS][5 * PPD_TP_MUL_MAX],
        Msh[TP_WARPS][25], Wsh[TP_WARPS][TP_WS];
    float *T = Tsh[threadIdx.y], *G = Gsh[threadIdx.y], *M = Msh[threadIdx.y],
          *Ws = Wsh[threadIdx.y];
    int lane = (int)threadIdx.x, di = tp->in.dim, dy = tp->sh.dim, dout = tp->out.dim, W = tp->wnum;
    int64_t stride = (int64_t)gridDim.x * blockDim.y;
    for (int64_t e = (int64_t)blockIdx.x * blockDim.y + threadIdx.y; e < E; e += stride) {
        float *dx1 = dh_edge + e * di, *dwe = dw + e * W;
        const float *x1 = h + send[e] * di, *Ye = Y + e * dy, *we = w + e * W,
                    *go = dmsg + e * dout;
        for (int i = lane; i < di; i += PPD_WARP) dx1[i] = 0.0f;
        for (int q = 0; q < tp->npath; q++) {
            const ppd_tp_path *p = &tp->path[q];
            tp_path_matrix(tp, p, Ye, M, lane);
            __syncwarp(); // M; and lane u adds into rows another lane zeroed
            tp_by_width(p, [&](auto NO) {
                tp_path_backward_all<decltype(NO)::value>(p, x1, M, T, G, go, we, wb, dwe, dx1, Ws,
                                                          lane);
            });
            __syncwarp(); // T, G, M and Ws are the next path's
        }
    }
}

static inline unsigned tp_blocks(int64_t E) {
    int64_t b = (E + TP_WARPS - 1) / TP_WARPS;
    return (unsigned)(b < PPD_MAX_ROW_BLOCKS ? b : PPD_MAX_ROW_BLOCKS);
}

// dwb[i] += Σ_e dw[e][i]: blocks (32, 32) over groups of 32 columns (common.cuh), W read on the
// device (the host holds only the device copy of the tensor product). Deterministic.
static __global__ void column_sum_kernel(const ppd_tp *tp, float *dwb, const float *dw, int64_t E) {
    __shared__ float part[32][33];
    int W = tp->wnum;
    for (int c0 = (int)blockIdx.x * 32; c0 < W; c0 += (int)gridDim.x * 32) {
        ppd_column_sum_block(dwb, dw, E, W, c0, part);
        __syncthreads(); // part is reused by the next group
    }
}

extern "C" ppd_status ppd_cuda_sh_forward(float *Y, const float *vec, int64_t E,
                                          cudaStream_t stream) {
    if (E < 0) return ppd_fail(PPD_ERR_USAGE, "sh_forward: negative size (E=%lld)", (long long)E);
    if (E == 0) return PPD_OK;
    PPD_LAUNCH(sh_forward_kernel, edge_blocks(E), PPD_EDGE_THREADS, 0, stream)(Y, vec, E);
    PPD_CUDA_CHECK_LAUNCH("sh_forward_kernel");
    return PPD_OK;
}

extern "C" ppd_status ppd_cuda_tp_forward(const ppd_tp *tp, float *msg, const float *h,
                                          const int64_t *send, const float *Y, const float *w,
                                          const float *wb, int64_t E, cudaStream_t stream) {
    if (E < 0) return ppd_fail(PPD_ERR_USAGE, "tp_forward: negative size (E=%lld)", (long long)E);
    if (E == 0) return PPD_OK;
    PPD_LAUNCH(tp_forward_kernel, tp_blocks(E), dim3(PPD_WARP, TP_WARPS), 0, stream)
    (tp, msg, h, send, Y, w, wb, E);
    PPD_CUDA_CHECK_LAUNCH("tp_forward_kernel");
    return PPD_OK;
}

extern "C" ppd_status ppd_cuda_tp_backward(const ppd_tp *tp, float *dh_edge, float *dw, float *dwb,
                                           const float *dmsg, const float *h, const int64_t *send,
                                           const float *Y, const float *w, const float *wb,
                                           int64_t E, cudaStream_t stream) {
    if (E < 0) return ppd_fail(PPD_ERR_USAGE, "tp_backward: negative size (E=%lld)", (long long)E);
    if (E == 0) return PPD_OK;
    PPD_LAUNCH(tp_backward_kernel, tp_blocks(E), dim3(PPD_WARP, TP_WARPS), 0, stream)
    (tp, dh_edge, dw, dmsg, h, send, Y, w, wb, E);
    PPD_CUDA_CHECK_LAUNCH("tp_backward_kernel");
    if (dwb) {
        // 128 blocks cover W up to 4,096 in one round (the model's widest is 3,032)
        PPD_LAUNCH(column_sum_kernel, 128, dim3(32, 32), 0, stream)(tp, dwb, dw, E);
        PPD_CUDA_CHECK_LAUNCH("column_sum_kernel");
    }
    return PPD_OK;
}
