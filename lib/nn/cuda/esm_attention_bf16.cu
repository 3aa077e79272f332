// ESM-2 attention on bf16 tensor cores (ppdock/esm_cuda.h: ppd_cuda_esm_attention_bf16_forward),
// the attention of the bf16 precision mode. Flash-style like the fp32 kernel in esm_layers.cu (an
// online softmax over key tiles, memory O(T), no score matrix), but the two products, Q K^T and
// P V, run as warp-level mma.sync (lib/nn/cuda/mma.cuh) instead of one CUDA-core thread per
// query. On the 650M model at T ~ 300 the attention's 4 T d flops per token and layer are only
// 4% of the projections' 24 d^2, but on fp32 CUDA cores (a sixteenth of the bf16 tensor cores'
// rate) they would take a fifth of the time at the 150k tokens/s goal (docs/cuda.md).
//
// Written by hand, not through cuDNN's fused attention: cuDNN's graph API wants padded [B, H, T,
// hd] tensors (our batches are packed rows of (N, 3d) with per-sequence offsets) and cannot run
// in the CPU emulation that checks every kernel in `make test`.
//
// Block (b0 + blockIdx.z, head blockIdx.y, query rows blockIdx.x * 128 ...), 8 warps of 16 query
// rows. Key tiles of 64 rows stream through two shared-memory buffers: while the warps compute
// on one tile, the next one's K and V rows are in flight by cp.async (lib/nn/cuda/async_copy.cuh)
// into the other. Each warp computes its 16 x 64 scores S = Q K^T (8 n-tiles x hd/16 k-steps of
// mma), updates the running max m and sum l of its rows, rounds P = exp(S - m) to bf16 and adds
// P V (4 k-steps x hd/8 n-tiles) into its fp32 output fragments; K and V fragments come from the
// staged rows by ldmatrix (V's transposed, mma.cuh). Rounding points: q, k, v to bf16 (nearest
// even, by the RoPE kernel that writes them) and p; scores, exponentials (2^(s log2 e - m log2
// e), tc_exp2), sums and the output in fp32; l sums the rounded p (on the tensor cores, as P
// times ones), so the output is exactly a convex combination of the bf16 v rows up to fp32
// rounding.
#include "ppdock/esm_cuda.h"

#include "async_copy.cuh"
#include "common.cuh"
#include "mma.cuh"

#include <float.h>
#include <math.h>

// The input is bf16: the q/k/v rows as RoPE wrote them (ppd_cuda_esm_qkv_rope_forward_to_bf16),
// the rounding this kernel's products need anyway, done once per element instead of once per
// query block that stages it, and half the bytes to read.
//
// 8 warps: every query block reads its sequence's whole K and V, so the rows per block set that
// traffic. On the H200 with 4 warps (64 rows) the attention took
// 43% of the 650M's bf16 time, 7x its instruction count's share: about 13 GB of K/V tile reads
// per layer over the DB5.5 chains. 128 rows halve them at the same 16 warps per SM (128
// registers a thread); the results are the same bits (each query row is computed alone).
//
// Why two buffers and cp.async: staging a tile through registers (load, then store to shared
// memory, between two barriers) left the SM idle for a global-memory latency or more per tile:
// the SASS issued the 16 loads of a thread in rounds of at most 4, each waited for before its
// stores (about 5 latencies a tile against the tile's ~300 instructions a warp). Now a tile's
// copies are issued a whole tile ahead, without registers, and the only wait is for copies that
// have had a tile's computation to land.
#define TC_WARPS  8
#define TC_QROWS  (16 * TC_WARPS)
#define TC_KEYS   PPD_CUDA_ESM_TC_KEY_TILE
#define TC_THREAD (32 * TC_WARPS)

// Staged rows: TC_KEYS keys of hd bf16 each, K and V alike as the global rows are, padded by 8
// bf16 so that the stride is an odd multiple of 16 bytes (ldmatrix reads conflict-free,
// mma.cuh). Two buffers of a K tile and a V tile each, in dynamic shared memory (hd 128's 68 KiB
// is over the 48 KiB a kernel gets by default).
#define TC_ROW(HD)  ((HD) + 8)
#define TC_TILE(HD) (TC_KEYS * TC_ROW(HD))
static constexpr size_t tc_smem_bytes(int hd) {
    return (size_t)4 * TC_TILE(hd) * sizeof(uint16_t);
}

// 2^x for the softmax: on the GPU ex2.approx.ftz (one special-function instruction, relative
// error below 2^-22, results under 2^-126 flushed to zero) instead of ppd_esm_expf's 25
// instructions, which made the exponentials the largest part of the kernel's arithmetic (one per
// score). This mode rounds every p to bf16 (8 bits), so the last-bit difference is far below its
// error; the fp32 kernel keeps the CPU's exp. The emulation computes exp2f.
static inline __device__ float tc_exp2(float x) {
#ifdef PPD_CUDA_EMU
    return exp2f(x);
#else
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
    return y;
#endif
}
#define TC_LOG2E 1.44269504088896341f

// The bf16 pair at element e of a row (e even): one 32-bit word, the lower channel in its low
// half as the mma fragments want it (mma.cuh).
static inline __device__ uint32_t tc_pair(const uint16_t *row, int e) {
    return *reinterpret_cast<const uint32_t *>(row + e);
}

// Up to hd 64, two blocks an SM (16 warps): at most 128 registers a thread; hd 128 needs more.
template <int HD, class OutT>
static __global__ void __launch_bounds__(TC_THREAD, HD <= 64 ? 2 : 1)
    attention_bf16_kernel(OutT *out, const uint16_t *qkv, const int64_t *tok_off, int H, int b0) {
    static_assert(HD % 16 == 0 && TC_KEYS == 64, "tiles: hd a multiple of 16, 64 keys");
    PPD_EXTERN_SHARED(uint4, tc_smem); // uint4: 16-byte aligned, as cp.async and ldmatrix need
    uint16_t *stage = reinterpret_cast<uint16_t *>(tc_smem); // buffer u: K at 2u, V at 2u + 1
    int b = b0 + (int)blockIdx.z, h = blockIdx.y;
    int64_t r0 = tok_off[b];
    int T = (int)(tok_off[b + 1] - r0);
    int q0 = blockIdx.x * TC_QROWS;
    if (q0 >= T) return; // the whole block: shorter sequences of the batch
    int d = H * HD, ld = 3 * d;
    int warp = (int)threadIdx.x / 32, lane = (int)threadIdx.x % 32, g = lane / 4, t = lane % 4;
    int rowA = q0 + 16 * warp + g, rowB = rowA + 8; // the two query rows of this lane
    bool live = q0 + 16 * warp < T;                 // warp-uniform: any of its rows is a query

    // K and V rows of key tile k into buffer u; keys past the sequence's end are zeros
    auto stage_tile = [&](int k, int u) {
        const uint16_t *kv = qkv + (r0 + k * TC_KEYS) * ld + d + h * HD;
        ppd_cp_async_rows<TC_KEYS, HD * 2, TC_THREAD, 2>(stage + 2 * u * TC_TILE(HD),
                                                         TC_ROW(HD) * 2, TC_TILE(HD) * 2, kv,
                                                         2 * ld, 2 * d, T - k * TC_KEYS);
        ppd_cp_async_commit();
    };
    int ntiles = (T + TC_KEYS - 1) / TC_KEYS;
    stage_tile(0, 0);

    // Q as A fragments, one per 16-wide k slice of the head dimension (rows past T are zeros)
    uint32_t qa[HD / 16][4];
    const uint16_t *qA = qkv + (r0 + (rowA < T ? rowA : 0)) * ld + h * HD;
    const uint16_t *qB = qkv + (r0 + (rowB < T ? rowB : 0)) * ld + h * HD;
#pragma unroll
    for (int kk = 0; kk < HD / 16; kk++) {
        int c = 16 * kk + 2 * t;
        qa[kk][0] = rowA < T ? tc_pair(qA, c) : 0u;
        qa[kk][1] = rowB < T ? tc_pair(qB, c) : 0u;
        qa[kk][2] = rowA < T ? tc_pair(qA, c + 8) : 0u;
        qa[kk][3] = rowB < T ? tc_pair(qB, c + 8) : 0u;
    }
    float o[HD / 8][4];
#pragma unroll
    for (int n = 0; n < HD / 8; n++) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.0f;
    // l: the rows' sums of the rounded p as an mma accumulator, P times a column of ones (D's
    // columns are all equal: l[0] row A's sum, l[2] row B's). The tensor cores add the 16 p of
    // each k slice across the group's 4 lanes; on CUDA cores that was 64 of the full tile's 401
    // SASS instructions (unpacking each bf16 half and adding it), for 4 mma here.
    float mA = 0.0f, mB = 0.0f, l[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    const uint32_t ones[2] = {0x3f803f80u, 0x3f803f80u}; // bf16 pairs (1, 1)
    bool first = true;
    // This lane's ldmatrix rows within a tile: for K (plain), matrix m = lane / 8 is keys
    // 8 (m / 2) .. +7 of an n-tile pair, channels 8 (m % 2) .. +7 of a k slice (b[0], b[1] of
    // n-tile 2np, then of 2np + 1); for V (.trans), keys 8 (m % 2) .. +7 of a 16-key slice,
    // channels 8 (m / 2) .. +7 of an n-tile pair (the same order of fragments).
    int k_row = (8 * (lane >> 4) + (lane & 7)) * TC_ROW(HD) + 8 * ((lane >> 3) & 1);
    int v_row = (8 * ((lane >> 3) & 1) + (lane & 7)) * TC_ROW(HD) + 8 * (lane >> 4);

    // One key tile of nk keys from buffer u: scores, the online softmax's update, O += P V.
    // FULL (nk = 64, every tile but a sequence's last) drops the per-score key masks.
    auto tile = [&](auto full, int nk, int u) {
        constexpr bool FULL = decltype(full)::value;
        const uint16_t *Ks = stage + 2 * u * TC_TILE(HD), *Vs = Ks + TC_TILE(HD);
        // S = Q K^T: n-tile n holds keys 8n .. 8n+7; this lane's are 8n + 2t, 8n + 2t + 1
        float s[TC_KEYS / 8][4];
#pragma unroll
        for (int n = 0; n < TC_KEYS / 8; n++) s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.0f;
#pragma unroll
        for (int np = 0; np < TC_KEYS / 16; np++)
#pragma unroll
            for (int kk = 0; kk < HD / 16; kk++) {
                uint32_t kb[4];
                ppd_ldmatrix_x4(kb, Ks + 16 * np * TC_ROW(HD) + 16 * kk + k_row);
                ppd_mma_bf16_16816(s[2 * np], qa[kk], kb);
                ppd_mma_bf16_16816(s[2 * np + 1], qa[kk], kb + 2);
            }
        // the tile's row maxima over the valid keys, across the 4 lanes of the group
        float tA = -FLT_MAX, tB = -FLT_MAX;
#pragma unroll
        for (int n = 0; n < TC_KEYS / 8; n++)
#pragma unroll
            for (int e = 0; e < 2; e++)
                if (FULL || 8 * n + 2 * t + e < nk) {
                    tA = fmaxf(tA, s[n][e]); // one FMNMX; t is never NaN, so as t < s ? s : t
                    tB = fmaxf(tB, s[n][2 + e]);
                }
#pragma unroll
        for (int x = 1; x < 4; x *= 2) {
            float oA = __shfl_xor_sync(0xffffffffu, tA, x),
                  oB = __shfl_xor_sync(0xffffffffu, tB, x);
            tA = fmaxf(tA, oA);
            tB = fmaxf(tB, oB);
        }
        float nA = first || tA > mA ? tA : mA, nB = first || tB > mB ? tB : mB;
        // rescaling by 1 changes nothing, so a warp whose 16 rows kept their maxima (most tiles
        // after a sequence's first few) skips the 2 hd / 8 + 4 multiplies
        float cA = !first && nA > mA ? tc_exp2((mA - nA) * TC_LOG2E) : 1.0f;
        float cB = !first && nB > mB ? tc_exp2((mB - nB) * TC_LOG2E) : 1.0f;
        if (__ballot_sync(0xffffffffu, cA != 1.0f || cB != 1.0f)) {
            l[0] *= cA, l[1] *= cA;
            l[2] *= cB, l[3] *= cB;
#pragma unroll
            for (int n = 0; n < HD / 8; n++) {
                o[n][0] *= cA, o[n][1] *= cA;
                o[n][2] *= cB, o[n][3] *= cB;
            }
        }
        mA = nA, mB = nB, first = false;
        // exp(s - m) = 2^(s log2 e - m log2 e): one fused multiply-add and one ex2 a score
        float mlA = mA * TC_LOG2E, mlB = mB * TC_LOG2E;

        // P = exp(S - m) in bf16, packed straight into A fragments (keys 16kk .. 16kk+15), then
        // O += P V
#pragma unroll
        for (int kk = 0; kk < TC_KEYS / 16; kk++) {
            uint32_t pa[4];
#pragma unroll
            for (int half = 0; half < 2; half++) { // n-tile 2kk (keys +0..7), 2kk+1 (+8..15)
                const float *sn = s[2 * kk + half];
                int key = 16 * kk + 8 * half + 2 * t;
                bool v0 = FULL || key < nk, v1 = FULL || key + 1 < nk;
                float p0 = v0 ? tc_exp2(fmaf(sn[0], TC_LOG2E, -mlA)) : 0.0f;
                float p1 = v1 ? tc_exp2(fmaf(sn[1], TC_LOG2E, -mlA)) : 0.0f;
                float p2 = v0 ? tc_exp2(fmaf(sn[2], TC_LOG2E, -mlB)) : 0.0f;
                float p3 = v1 ? tc_exp2(fmaf(sn[3], TC_LOG2E, -mlB)) : 0.0f;
                pa[2 * half] = ppd_pack_bf16x2(p0, p1);
                pa[2 * half + 1] = ppd_pack_bf16x2(p2, p3);
            }
            ppd_mma_bf16_16816(l, pa, ones);
#pragma unroll
            for (int np = 0; np < HD / 16; np++) {
                uint32_t vb[4];
                ppd_ldmatrix_x4_trans(vb, Vs + 16 * kk * TC_ROW(HD) + 16 * np + v_row);
                ppd_mma_bf16_16816(o[2 * np], pa, vb);
                ppd_mma_bf16_16816(o[2 * np + 1], pa, vb + 2);
            }
        }
    };

    for (int k = 0; k < ntiles; k++) {
        ppd_tile_ready(k, ntiles, stage_tile);
        int nk = T - k * TC_KEYS < TC_KEYS ? T - k * TC_KEYS : TC_KEYS;
        if (live) {
            if (nk == TC_KEYS)
                tile(std::true_type{}, nk, k & 1);
            else
                tile(std::false_type{}, nk, k & 1);
        }
        __syncthreads();
    }
    if (!live) return;
    float iA = 1.0f / l[0], iB = 1.0f / l[2];
#pragma unroll
    for (int n = 0; n < HD / 8; n++) {
        int c = h * HD + 8 * n + 2 * t;
        if (rowA < T) {
            OutT *dst = out + (r0 + rowA) * d + c;
            ppd_store(&dst[0], o[n][0] * iA);
            ppd_store(&dst[1], o[n][1] * iA);
        }
        if (rowB < T) {
            OutT *dst = out + (r0 + rowB) * d + c;
            ppd_store(&dst[0], o[n][2] * iB);
            ppd_store(&dst[1], o[n][3] * iB);
        }
    }
}

template <int HD, class OutT>
static ppd_status launch_attention_bf16(OutT *out, const uint16_t *qkv, const int64_t *tok_off,
                                        int B, int H, int T_max, cudaStream_t stream) {
    return ppd_launch_attention(attention_bf16_kernel<HD, OutT>, "attention_bf16_kernel launch",
                                TC_QROWS, TC_THREAD, tc_smem_bytes(HD), out, qkv, tok_off, B, H,
                                T_max, stream);
}

using tc_head_dims = ppd_head_dims<16, 32, 64, 128>;

extern "C" int ppd_cuda_esm_attention_bf16_supported(int hd) {
    return tc_head_dims::has(hd);
}

template <class OutT>
static ppd_status attention_bf16(OutT *out, const uint16_t *qkv, const int64_t *tok_off, int B,
                                 int H, int hd, int T_max, cudaStream_t stream) {
    if (B < 1 || H < 1 || T_max < 0)
        return ppd_fail(PPD_ERR_USAGE, "esm attention bf16: bad size B=%d H=%d T_max=%d", B, H,
                        T_max);
    if (T_max == 0) return PPD_OK;
    ppd_status st = PPD_OK;
    auto launch = [&](auto HD) {
        return launch_attention_bf16<decltype(HD)::value>(out, qkv, tok_off, B, H, T_max, stream);
    };
    if (tc_head_dims::call(hd, launch, &st)) return st;
    return ppd_fail(PPD_ERR_USAGE,
                    "esm attention bf16: head dimension %d has no tensor-core kernel (16, 32, "
                    "64, 128; ppd_cuda_esm_attention_bf16_supported says which)",
                    hd);
}

extern "C" ppd_status ppd_cuda_esm_attention_bf16_forward(float *out, const uint16_t *qkv,
                                                          const int64_t *tok_off, int B, int H,
                                                          int hd, int T_max, cudaStream_t stream) {
    return attention_bf16(out, qkv, tok_off, B, H, hd, T_max, stream);
}

extern "C" ppd_status ppd_cuda_esm_attention_bf16_forward_to_bf16(uint16_t *out,
                                                                  const uint16_t *qkv,
                                                                  const int64_t *tok_off, int B,
                                                                  int H, int hd, int T_max,
                                                                  cudaStream_t stream) {
    return attention_bf16(out, qkv, tok_off, B, H, hd, T_max, stream);
}
