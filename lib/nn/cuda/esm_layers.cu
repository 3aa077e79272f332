// ESM-2 layers on the GPU: the CUDA twins of lib/esm's embed, q/k/v bias + RoPE and attention
// (ppdock/esm_cuda.h; LayerNorm and the residual are esm_residual_ln.cu, bias + GELU
// esm_gelu.cu). Element arithmetic is ppdock/kernels/esm_ops.h, the CPU's own; only the
// reductions' order differs.
#include "ppdock/esm_cuda.h"

#include "async_copy.cuh"
#include "common.cuh"
#include "ppdock/kernels/esm_ops.h"

#include <float.h>

// The sequence that packed row r belongs to: the last b with tok_off[b] <= r.
static __device__ int seq_of_row(const int64_t *tok_off, int B, int64_t r) {
    int lo = 0, hi = B - 1;
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (tok_off[mid] <= r)
            lo = mid;
        else
            hi = mid - 1;
    }
    return lo;
}

// ---- embedding: one warp per row -----------------------------------------------------------

static __global__ void embed_kernel(float *x, const uint8_t *tok, const int64_t *tok_off,
                                    const float *div, int B, const float *E, int d, int64_t N) {
    int64_t stride = (int64_t)gridDim.x * blockDim.y;
    for (int64_t r = (int64_t)blockIdx.x * blockDim.y + threadIdx.y; r < N; r += stride) {
        float *xr = x + r * d;
        int t = tok[r];
        float dv = div[seq_of_row(tok_off, B, r)];
        const float *er = E + (int64_t)t * d;
        for (int c = threadIdx.x; c < d; c += PPD_WARP)
            xr[c] = t == PPD_ESM_TOK_MASK ? 0.0f : ppd_esm_embed_elem(er[c], dv);
    }
}

extern "C" ppd_status ppd_cuda_esm_embed_forward(float *x, const uint8_t *tok,
                                                 const int64_t *tok_off, const float *div, int B,
                                                 const float *E, int d, int64_t N,
                                                 cudaStream_t stream) {
    if (N < 0 || d < 1 || B < 1)
        return ppd_fail(PPD_ERR_USAGE, "esm embed: bad size N=%lld d=%d B=%d", (long long)N, d, B);
    if (N == 0) return PPD_OK;
    PPD_LAUNCH(embed_kernel, ppd_row_blocks(N), dim3(PPD_WARP, PPD_ROWS_PER_BLOCK), 0, stream)
    (x, tok, tok_off, div, B, E, d, N);
    PPD_CUDA_CHECK_LAUNCH("embed_kernel");
    return PPD_OK;
}

// ---- q/k/v bias, query scale and RoPE: one warp per row ----------------------------------------

// One rotary pair: channels a and e = a + h2 of q and k (values and biases), angle (c, s).
struct rope_outs {
    float qa, qe, ka, ke;
};
static inline __device__ rope_outs rope_pair(float qa, float qe, float ka, float ke, float bqa,
                                             float bqe, float bka, float bke, float c, float s,
                                             float qscale) {
    float q1 = ppd_esm_bias_scale_elem(qa, bqa, qscale),
          q2 = ppd_esm_bias_scale_elem(qe, bqe, qscale);
    float k1 = ppd_esm_bias_scale_elem(ka, bka, 1.0f), k2 = ppd_esm_bias_scale_elem(ke, bke, 1.0f);
    return {ppd_esm_rope_lo(q1, q2, c, s), ppd_esm_rope_hi(q1, q2, c, s),
            ppd_esm_rope_lo(k1, k2, c, s), ppd_esm_rope_hi(k1, k2, c, s)};
}

// HD > 0: the head dimension as a constant (16, 32, 64, 128), so the pair's head and offset
// (j / h2, j % h2) are shifts, not the software integer division a run-time hd costs, and each
// lane takes two neighbouring pairs and four v channels at once (8- and 16-byte accesses; the
// launcher checks the alignment). HD = 0: hd at run time, one pair and one v channel a lane. The
// same arithmetic either way. out: qkv itself (fp32, in place: each element is read before it is
// written, by the same thread) or the bf16 rows the tensor-core attention reads.
template <int HD, class T>
static __global__ void
qkv_rope_kernel(T *out, const float *qkv, const float *bqkv, const int64_t *tok_off, int B, int d,
                int hd_rt, float qscale, const float *cosv, const float *sinv, int64_t N) {
    int hd = HD ? HD : hd_rt, h2 = hd / 2, half = d / 2;
    const float *bq = bqkv, *bk = bqkv + d, *bv = bqkv + 2 * d;
    int64_t stride = (int64_t)gridDim.x * blockDim.y;
    for (int64_t r = (int64_t)blockIdx.x * blockDim.y + threadIdx.y; r < N; r += stride) {
        int p = (int)(r - tok_off[seq_of_row(tok_off, B, r)]);
        const float *q = qkv + r * 3 * d, *k = q + d, *v = q + 2 * d;
        T *oq = out + r * 3 * d, *ok = oq + d, *ov = oq + 2 * d;
        const float *c = cosv + (int64_t)p * h2, *s = sinv + (int64_t)p * h2;
        if constexpr (HD > 0) {
            for (int j = 2 * (int)threadIdx.x; j < half; j += 2 * PPD_WARP) {
                int i = j % h2, a = (j / h2) * hd + i, e = a + h2; // i, a, e even
                float2 qa = ppd_load2(q + a), qe = ppd_load2(q + e), ka = ppd_load2(k + a),
                       ke = ppd_load2(k + e);
                float2 bqa = ppd_load2(bq + a), bqe = ppd_load2(bq + e), bka = ppd_load2(bk + a),
                       bke = ppd_load2(bk + e);
                float2 cc = ppd_load2(c + i), ss = ppd_load2(s + i);
                rope_outs x = rope_pair(qa.x, qe.x, ka.x, ke.x, bqa.x, bqe.x, bka.x, bke.x, cc.x,
                                        ss.x, qscale);
                rope_outs y = rope_pair(qa.y, qe.y, ka.y, ke.y, bqa.y, bqe.y, bka.y, bke.y, cc.y,
                                        ss.y, qscale);
                ppd_store2(oq + a, x.qa, y.qa), ppd_store2(oq + e, x.qe, y.qe);
                ppd_store2(ok + a, x.ka, y.ka), ppd_store2(ok + e, x.ke, y.ke);
            }
            for (int j = 4 * (int)threadIdx.x; j < d; j += 4 * PPD_WARP) {
                float4 vv = ppd_load4(v + j), bb = ppd_load4(bv + j);
                float4 o = {ppd_esm_bias_scale_elem(vv.x, bb.x, 1.0f),
                            ppd_esm_bias_scale_elem(vv.y, bb.y, 1.0f),
                            ppd_esm_bias_scale_elem(vv.z, bb.z, 1.0f),
                            ppd_esm_bias_scale_elem(vv.w, bb.w, 1.0f)};
                ppd_store4(ov + j, o);
            }
        } else {
            for (int j = threadIdx.x; j < half; j += PPD_WARP) {
                int i = j % h2, a = (j / h2) * hd + i, e = a + h2;
                rope_outs x = rope_pair(q[a], q[e], k[a], k[e], bq[a], bq[e], bk[a], bk[e], c[i],
                                        s[i], qscale);
                ppd_store(&oq[a], x.qa), ppd_store(&oq[e], x.qe);
                ppd_store(&ok[a], x.ka), ppd_store(&ok[e], x.ke);
            }
            for (int j = threadIdx.x; j < d; j += PPD_WARP)
                ppd_store(&ov[j], ppd_esm_bias_scale_elem(v[j], bv[j], 1.0f));
        }
    }
}

template <class T>
static ppd_status launch_qkv_rope(T *out, const float *qkv, const float *bqkv,
                                  const int64_t *tok_off, int B, int d, int hd, float qscale,
                                  const float *cosv, const float *sinv, int64_t N,
                                  cudaStream_t stream) {
    if (N < 0 || B < 1 || hd < 2 || hd % 2 || d % hd)
        return ppd_fail(PPD_ERR_USAGE, "esm qkv_rope: bad size N=%lld B=%d d=%d hd=%d",
                        (long long)N, B, d, hd);
    if (N == 0) return PPD_OK;
    auto launch = [&](auto HD) {
        auto kernel = qkv_rope_kernel<decltype(HD)::value, T>;
        PPD_LAUNCH_NAMED("qkv_rope_kernel", kernel, ppd_row_blocks(N),
                         dim3(PPD_WARP, PPD_ROWS_PER_BLOCK), 0, stream)
        (out, qkv, bqkv, tok_off, B, d, hd, qscale, cosv, sinv, N);
        return PPD_OK;
    };
    // the listed head dimensions are multiples of 4, so with 16-byte aligned bases every row,
    // pair and table entry the vector loops touch is aligned
    bool vec = ppd_aligned16(out) && ppd_aligned16(qkv) && ppd_aligned16(bqkv) &&
               ppd_aligned16(cosv) && ppd_aligned16(sinv);
    ppd_status st = PPD_OK;
    if (!vec || !ppd_head_dims<16, 32, 64, 128>::call(hd, launch, &st))
        launch(std::integral_constant<int, 0>{});
    PPD_CUDA_CHECK_LAUNCH("qkv_rope_kernel");
    return st;
}

extern "C" ppd_status ppd_cuda_esm_qkv_rope_forward(float *qkv, const float *bqkv,
                                                    const int64_t *tok_off, int B, int d, int hd,
                                                    float qscale, const float *cosv,
                                                    const float *sinv, int64_t N,
                                                    cudaStream_t stream) {
    return launch_qkv_rope(qkv, qkv, bqkv, tok_off, B, d, hd, qscale, cosv, sinv, N, stream);
}

extern "C" ppd_status ppd_cuda_esm_qkv_rope_forward_to_bf16(
    uint16_t *out, const float *qkv, const float *bqkv, const int64_t *tok_off, int B, int d,
    int hd, float qscale, const float *cosv, const float *sinv, int64_t N, cudaStream_t stream) {
    return launch_qkv_rope(out, qkv, bqkv, tok_off, B, d, hd, qscale, cosv, sinv, N, stream);
}

// ---- attention: flash-style, one thread per query row -------------------------------------
// Block (b0 + blockIdx.z, head blockIdx.y, query rows blockIdx.x * QROWS ...): the block walks the
// sequence's keys in tiles of KT rows staged in shared memory; each thread keeps its query, its
// running max, sum and output accumulator in registers. Memory: O(T) per sequence, no scores.
//
// The tiles stream through two buffers by cp.async (async_copy.cuh), as in the bf16 kernel: tile
// i + 1's K and V rows are in flight while tile i is computed. Loaded through registers between
// two barriers, a tile cost the block its 64 loads a thread in rounds of a few, each a
// global-memory latency, at 4 blocks of 2 warps an SM (226 registers a thread at hd 64), with
// little else to run meanwhile.

#define QROWS 64
#define KT    PPD_CUDA_ESM_KEY_TILE

// two buffers of a K and a V tile, KT x hd floats each
static constexpr size_t at_smem_bytes(int hd) {
    return (size_t)4 * KT * hd * sizeof(float);
}

template <int HD>
static __global__ void __launch_bounds__(QROWS)
    attention_kernel(float *out, const float *qkv, const int64_t *tok_off, int H, int b0) {
    static_assert(HD % 4 == 0, "rows of whole 16-byte copies");
    PPD_EXTERN_SHARED(float4, at_smem);                // 16-byte aligned, as cp.async needs
    float *stage = reinterpret_cast<float *>(at_smem); // buffer u: K at 2u, V at 2u + 1
    int b = b0 + (int)blockIdx.z, h = blockIdx.y;
    int64_t r0 = tok_off[b];
    int T = (int)(tok_off[b + 1] - r0);
    int q0 = blockIdx.x * QROWS;
    if (q0 >= T) return; // the whole block: shorter sequences of the batch
    int d = H * HD, ld = 3 * d;
    int row = q0 + threadIdx.x;
    bool active = row < T;

    // K and V rows of key tile k into buffer u; keys past the sequence's end are zeros (never
    // read: the scores mask them)
    auto stage_tile = [&](int k, int u) {
        const float *kv = qkv + (r0 + k * KT) * ld + d + h * HD;
        ppd_cp_async_rows<KT, HD * 4, QROWS, 2>(stage + 2 * u * KT * HD, HD * 4, KT * HD * 4, kv,
                                                4 * ld, 4 * d, T - k * KT);
        ppd_cp_async_commit();
    };
    int ntiles = (T + KT - 1) / KT;
    stage_tile(0, 0);

    float q[HD], acc[HD];
    const float *qp = qkv + (r0 + (active ? row : q0)) * ld + h * HD;
#pragma unroll
    for (int c = 0; c < HD; c++) {
        q[c] = qp[c];
        acc[c] = 0.0f;
    }
    float m = 0.0f, l = 0.0f;
    bool first = true;
    for (int k = 0; k < ntiles; k++) {
        ppd_tile_ready(k, ntiles, stage_tile);
        int nk = T - k * KT < KT ? T - k * KT : KT;
        const float(*Ks)[HD] = reinterpret_cast<const float(*)[HD]>(stage + 2 * (k & 1) * KT * HD);
        const float(*Vs)[HD] = Ks + KT;
        if (active) {
            float s[KT], tmax = -FLT_MAX;
#pragma unroll
            for (int j = 0; j < KT; j++) {
                if (j < nk) {
                    float dot = 0.0f;
#pragma unroll
                    for (int c = 0; c < HD; c++) dot += q[c] * Ks[j][c];
                    s[j] = dot;
                    tmax = dot > tmax ? dot : tmax;
                }
            }
            float mnew = first || tmax > m ? tmax : m;
            if (!first && mnew > m) {
                float corr = ppd_esm_softmax_exp(m, mnew);
                l *= corr;
#pragma unroll
                for (int c = 0; c < HD; c++) acc[c] *= corr;
            }
            m = mnew;
            first = false;
#pragma unroll
            for (int j = 0; j < KT; j++) {
                if (j < nk) {
                    float p = ppd_esm_softmax_exp(s[j], m);
                    l += p;
#pragma unroll
                    for (int c = 0; c < HD; c++) acc[c] += p * Vs[j][c];
                }
            }
        }
        __syncthreads();
    }
    if (!active) return;
    float inv = 1.0f / l;
    float *o = out + (r0 + row) * d + h * HD;
#pragma unroll
    for (int c = 0; c < HD; c++) o[c] = acc[c] * inv;
}

template <int HD>
static ppd_status launch_attention(float *out, const float *qkv, const int64_t *tok_off, int B,
                                   int H, int T_max, cudaStream_t stream) {
    return ppd_launch_attention(attention_kernel<HD>, "attention_kernel launch", QROWS, QROWS,
                                at_smem_bytes(HD), out, qkv, tok_off, B, H, T_max, stream);
}

extern "C" ppd_status ppd_cuda_esm_attention_forward(float *out, const float *qkv,
                                                     const int64_t *tok_off, int B, int H, int hd,
                                                     int T_max, cudaStream_t stream) {
    if (B < 1 || H < 1 || T_max < 0)
        return ppd_fail(PPD_ERR_USAGE, "esm attention: bad size B=%d H=%d T_max=%d", B, H, T_max);
    if (T_max == 0) return PPD_OK;
    ppd_status st = PPD_OK;
    auto launch = [&](auto HD) {
        return launch_attention<decltype(HD)::value>(out, qkv, tok_off, B, H, T_max, stream);
    };
    if (ppd_head_dims<4, 8, 16, 24, 32, 64, 128>::call(hd, launch, &st)) return st;
    return ppd_fail(PPD_ERR_USAGE,
                    "esm attention: head dimension %d has no CUDA kernel (built for 4, 8, 16, "
                    "24, 32, 64, 128; add it in lib/nn/cuda/esm_layers.cu)",
                    hd);
}

// ---- residue rows out of the packed token rows
// ----------------------------------------------------

static __global__ void gather_residues_kernel(float *out, const float *x, const int64_t *tok_off,
                                              const int64_t *out_off, int B, int d, int64_t R) {
    int64_t stride = (int64_t)gridDim.x * blockDim.y;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.y + threadIdx.y; i < R; i += stride) {
        int b = seq_of_row(out_off, B, i);
        const float *src = x + (tok_off[b] + 1 + (i - out_off[b])) * d; // skip <cls>
        for (int c = threadIdx.x; c < d; c += PPD_WARP) out[i * d + c] = src[c];
    }
}

extern "C" ppd_status ppd_cuda_esm_gather_residues(float *out, const float *x,
                                                   const int64_t *tok_off, const int64_t *out_off,
                                                   int B, int d, int64_t R, cudaStream_t stream) {
    if (R < 0 || B < 1 || d < 1)
        return ppd_fail(PPD_ERR_USAGE, "esm gather: bad size R=%lld B=%d d=%d", (long long)R, B, d);
    if (R == 0) return PPD_OK;
    PPD_LAUNCH(gather_residues_kernel, ppd_row_blocks(R), dim3(PPD_WARP, PPD_ROWS_PER_BLOCK), 0,
               stream)
    (out, x, tok_off, out_off, B, d, R);
    PPD_CUDA_CHECK_LAUNCH("gather_residues_kernel");
    return PPD_OK;
}
