/* ppdock/esm_cuda.h — ESM-2 on a CUDA GPU: the twins of the CPU layers in lib/esm, the device
 * model and the run loop behind `esm-embed --device cuda` (link libppdock_cuda.a, cudart and
 * cublas).
 *
 *   ppd_esm_plan_opts o = PPD_ESM_PLAN_OPTS_DEFAULT;
 *   o.device = 1; o.memory_budget = 20ull << 30;          // device bytes
 *   ppd_esm_plan_make(&plan, &m.cfg, lens, n, &o);
 *   ppd_cuda_esm_opts co = PPD_CUDA_ESM_OPTS_DEFAULT;
 *   ppd_cuda_esm_run(&m, &plan, tokens, -1, sink, ctx, &co, &report);
 *
 * Memory (DESIGN.md rule 1): ppd_cuda_esm_run makes one device arena at start-up holding the
 * weights, the RoPE tables, the cuBLAS workspace and the plan's largest batch workspace, and
 * pinned host buffers for two batches' tokens and outputs; nothing is allocated per batch.
 *
 * Overlap: each batch's uploads, kernels and download are queued on one stream and marked by an
 * event; the host then packs the next batch into the other pinned slot and queues it, and only
 * then waits for the previous batch's event and hands its rows to the sink. The sink (fp16
 * conversion, LMDB writes) thus runs while the GPU computes the next batch. The
 * planned bytes are plan->peak_bytes (ppdock/esm.h with o.device = 1); the report gives the
 * arena's high-water mark beside it.
 *
 * Arithmetic (DESIGN.md rules 5 and 6): the element-wise bodies are ppdock/kernels/esm_ops.h,
 * the CPU's own; the RoPE tables are computed on the host by the CPU's code and uploaded. What
 * differs from the CPU: the GEMMs (cuBLAS instead of OpenBLAS: another summation order), the
 * LayerNorm statistics (the same double-precision sums in another order) and the attention,
 * which is flash-style (keys in tiles of PPD_CUDA_ESM_KEY_TILE with an online softmax, never a
 * T x T score matrix): per tile exp(s - running max), the running sums rescaled by
 * exp(old max - new max) when the max grows, the output divided once at the end. With one tile
 * (T <= 32) that is the CPU's softmax up to where 1/sum is applied.
 *
 * Precision: PPD_CUDA_FP32 is the parity mode (TF32 off: cuBLAS's default math, and the
 * NVIDIA_TF32_OVERRIDE environment variable is not honoured because CUBLAS_PEDANTIC_MATH is set).
 * PPD_CUDA_TF32 lets cuBLAS use TF32 tensor cores for the projections (10-bit mantissa inputs,
 * fp32 accumulation); everything else stays fp32. PPD_CUDA_BF16 runs the projections on bf16
 * tensor cores: bf16 copies of the projection weights (made once on the device, round to
 * nearest even) and of each GEMM's input (written in bf16 by the op before it: LayerNorm,
 * attention, bias + GELU, the rounding of ppd_cuda_cast_bf16), fp32 accumulation and fp32
 * outputs except fc1's, which is rounded to bf16 (the bias + GELU reads it widened); the
 * attention's two products run on bf16 tensor cores too (ppd_cuda_esm_attention_bf16_forward,
 * for head dimensions 16, 32, 64 and 128, on the bf16 q/k/v that RoPE writes; the fp32 kernel
 * for others); the residual stream, LayerNorm, softmax and GELU stay fp32. Plan with
 * opts.device = 2 for it (the bf16 copies are counted).
 *
 * Errors: PPD_ERR_CUDA with the CUDA or cuBLAS error and the op ("no CUDA device" when there is
 * none), PPD_ERR_NOMEM when the plan does not fit the device's free memory (the message gives
 * both), PPD_ERR_USAGE for a head dimension the attention kernel is not built for (4, 8, 16, 24,
 * 32, 64, 128 are: every released ESM-2 has 16 to 128).
 */
#ifndef PPDOCK_ESM_CUDA_H
#define PPDOCK_ESM_CUDA_H

#include <stdint.h>

#include "ppdock/device.h"
#include "ppdock/esm.h"
#include "ppdock/nn_cuda.h"

#ifdef __cplusplus
extern "C" {
#endif

#define PPD_CUDA_ESM_KEY_TILE 32

/* out: (N, M)   inp: (N, K)   W: (M, K), all row-major: out = inp W^T. The twin of
 * ppd_esm_matmul_forward (lib/esm), with the handle in place of the thread count. */
ppd_status ppd_cuda_esm_matmul_forward(float *out, const float *inp, const float *W, int64_t N,
                                       int K, int M, ppd_cuda_blas *b);
/* The same with bf16 inputs (uint16_t bit patterns), fp32 accumulation and fp32 out; `_to_bf16`:
 * out in bf16 too, each element the fp32 sum rounded to nearest even (cuBLAS's epilogue): fc1's,
 * whose only reader, the bias + GELU, then reads half the bytes. */
ppd_status ppd_cuda_esm_matmul_bf16_forward(float *out, const uint16_t *inp, const uint16_t *W,
                                            int64_t N, int K, int M, ppd_cuda_blas *b);
ppd_status ppd_cuda_esm_matmul_bf16_forward_to_bf16(uint16_t *out, const uint16_t *inp,
                                                    const uint16_t *W, int64_t N, int K, int M,
                                                    ppd_cuda_blas *b);

/* ---- the layers: twins of lib/esm/esm_internal.h -----------------------------------------------
 * Same names with ppd_cuda_, same arguments in the same order; device pointers. Where the CPU
 * takes `threads`, these take N = tok_off[B] (the packed token rows, which the launcher cannot
 * read from device memory) where needed, and the stream. */

/* x: (N, d)   tok: (N)   tok_off: (B + 1)   div: (B)   E: (33, d) */
ppd_status ppd_cuda_esm_embed_forward(float *x, const uint8_t *tok, const int64_t *tok_off,
                                      const float *div, int B, const float *E, int d, int64_t N,
                                      cudaStream_t stream);
/* out, inp: (N, d)   w, b: (d) */
ppd_status ppd_cuda_esm_layernorm_forward(float *out, const float *inp, const float *w,
                                          const float *b, int64_t N, int d, cudaStream_t stream);
/* qkv: (N, 3d) in place   bqkv: (3d)   cosv, sinv: (>= T_max, hd/2) */
ppd_status ppd_cuda_esm_qkv_rope_forward(float *qkv, const float *bqkv, const int64_t *tok_off,
                                         int B, int d, int hd, float qscale, const float *cosv,
                                         const float *sinv, int64_t N, cudaStream_t stream);
/* The same writing bf16 rows (uint16_t bit patterns, (N, 3d)) to out, each element the fp32
 * result rounded to nearest even; qkv is left as it was. The bf16 mode's tensor-core attention
 * reads them: it would round q, k and v to bf16 itself. */
ppd_status ppd_cuda_esm_qkv_rope_forward_to_bf16(uint16_t *out, const float *qkv, const float *bqkv,
                                                 const int64_t *tok_off, int B, int d, int hd,
                                                 float qscale, const float *cosv, const float *sinv,
                                                 int64_t N, cudaStream_t stream);
/* out: (N, d)   qkv: (N, 3d); T_max = the longest sequence's token rows. */
ppd_status ppd_cuda_esm_attention_forward(float *out, const float *qkv, const int64_t *tok_off,
                                          int B, int H, int hd, int T_max, cudaStream_t stream);
/* The bf16 precision mode's attention, on tensor cores (lib/nn/cuda/esm_attention_bf16.cu): the
 * same arguments but qkv in bf16 (ppd_cuda_esm_qkv_rope_forward_to_bf16's rows), the same
 * flash-style online softmax, with the probabilities rounded to bf16 (nearest even) for the
 * second product, keys in tiles of PPD_CUDA_ESM_TC_KEY_TILE,
 * the exponentials as 2^(s log2 e - m log2 e) by the GPU's ex2.approx (within 2 ulp of exp2f; the
 * fp32 kernel above uses the CPU's exp body), and fp32 scores, sums and outputs. Needs sm_80; head
 * dimensions 16, 32, 64 and 128 (ppd_cuda_esm_attention_bf16_supported; the run loop uses the fp32
 * kernel for the others). qkv must be 16-byte aligned (device arena blocks are): PPD_ERR_USAGE
 * otherwise. */
#define PPD_CUDA_ESM_TC_KEY_TILE 64
int ppd_cuda_esm_attention_bf16_supported(int hd);
ppd_status ppd_cuda_esm_attention_bf16_forward(float *out, const uint16_t *qkv,
                                               const int64_t *tok_off, int B, int H, int hd,
                                               int T_max, cudaStream_t stream);
/* h: (N, F) in place   b: (F) */
ppd_status ppd_cuda_esm_bias_gelu_forward(float *h, const float *b, int64_t N, int F,
                                          cudaStream_t stream);

/* The bf16 mode's producers of GEMM inputs: the same kernels with each output rounded to bf16
 * (nearest even) as it is stored, which is what ppd_cuda_cast_bf16 of the fp32 output gives,
 * without writing and reading it back in fp32. out: uint16_t bit patterns, the fp32 twin's
 * shape. */
ppd_status ppd_cuda_esm_layernorm_forward_to_bf16(uint16_t *out, const float *inp, const float *w,
                                                  const float *b, int64_t N, int d,
                                                  cudaStream_t stream);
ppd_status ppd_cuda_esm_attention_bf16_forward_to_bf16(uint16_t *out, const uint16_t *qkv,
                                                       const int64_t *tok_off, int B, int H, int hd,
                                                       int T_max, cudaStream_t stream);
/* bias + GELU with bf16 in and out: h (N, F) is the bf16 fc1 GEMM's output (`_to_bf16`),
 * widened exactly, so each element is the fp32 twin's result on the widened input, rounded to
 * bf16; h is left as it was. */
ppd_status ppd_cuda_esm_bias_gelu_forward_bf16(uint16_t *out, const uint16_t *h, const float *b,
                                               int64_t N, int F, cudaStream_t stream);
/* x, y: (N, d)   b: (d); x = x + (y + b) */
ppd_status ppd_cuda_esm_residual_forward(float *x, const float *y, const float *b, int64_t N, int d,
                                         cudaStream_t stream);
/* The residual update followed by a LayerNorm, as every residual update of the layer loop is
 * (lib/nn/cuda/esm_residual_ln.cu): x = x + (y + rb) (ppd_cuda_esm_residual_forward), then
 * out = LayerNorm(x; w, b) (ppd_cuda_esm_layernorm_forward), in one pass over x. out: (N, d),
 * fp32 or bf16 bit patterns. */
ppd_status ppd_cuda_esm_residual_layernorm_forward(float *out, float *x, const float *y,
                                                   const float *rb, const float *w, const float *b,
                                                   int64_t N, int d, cudaStream_t stream);
ppd_status ppd_cuda_esm_residual_layernorm_forward_to_bf16(uint16_t *out, float *x, const float *y,
                                                           const float *rb, const float *w,
                                                           const float *b, int64_t N, int d,
                                                           cudaStream_t stream);

/* out: (R, d)   x: (N, d)   out_off: (B + 1). The residue rows of each sequence (its <cls> and
 * <eos> rows dropped), packed: what the CPU's forward copies out per sequence. */
ppd_status ppd_cuda_esm_gather_residues(float *out, const float *x, const int64_t *tok_off,
                                        const int64_t *out_off, int B, int d, int64_t R,
                                        cudaStream_t stream);

/* ---- the model on the device and the run loop ------------------------------------------------ */

typedef struct {
    ppd_cuda_precision precision;
    int device;  /* CUDA device ordinal */
    int profile; /* time every op of every layer (CUDA events, one wait per layer: slower) */
    /* bf16 mode: 1 runs the fp32 attention kernel and a cast to bf16 (the path of head
     * dimensions the tensor-core kernel lacks) instead of the tensor-core one, which is the
     * default where the head dimension allows: to tell the two apart when measuring or
     * suspecting one (esm-bench's PPD_ESM_FP32_ATTENTION). No effect in fp32 and tf32 modes. */
    int fp32_attention;
} ppd_cuda_esm_opts;

#define PPD_CUDA_ESM_OPTS_DEFAULT                                                                  \
    ((ppd_cuda_esm_opts){                                                                          \
        .precision = PPD_CUDA_FP32, .device = 0, .profile = 0, .fp32_attention = 0})

/* The ops of a layer as profile mode times them (in bf16 mode the op before a projection writes
 * its bf16 input: LayerNorm, attention, GELU). "residual" is the residual update fused with the
 * LayerNorm that follows it (the layer's second, the next layer's first, or the final one);
 * "layernorm" is then the first layer's first LayerNorm alone. */
enum {
    PPD_ESM_OP_LAYERNORM,
    PPD_ESM_OP_QKV_GEMM,
    PPD_ESM_OP_ROPE,
    PPD_ESM_OP_ATTENTION,
    PPD_ESM_OP_OUT_GEMM,
    PPD_ESM_OP_RESIDUAL,
    PPD_ESM_OP_FC1_GEMM,
    PPD_ESM_OP_GELU,
    PPD_ESM_OP_FC2_GEMM,
    PPD_ESM_NOPS
};
extern const char *const ppd_cuda_esm_op_names[PPD_ESM_NOPS];

typedef struct {
    size_t planned_bytes; /* what the plan predicted: the arena's capacity */
    size_t arena_high;    /* the arena's high-water mark */
    size_t pinned_bytes;  /* pinned host staging */
    size_t host_bytes;    /* all the run allocated in host memory, pinned_bytes included */
    /* the arena as the driver counts it (cudaMemGetInfo before and after its allocation): the
     * plan rounded to the driver's pages; 0 when it could not be read */
    size_t measured_bytes;
    /* the stream's and the cuBLAS handle's own by the driver's count, outside the plan (about
     * 67 MiB on an H200, CUDA 13) */
    size_t runtime_bytes;
    int64_t tokens;     /* token rows computed */
    double gpu_seconds; /* wall time of the batch loop, synchronised */
    /* wall time before the loop (the device, the arena, the weights' upload and bf16 copies,
     * cuBLAS), and the sink's share of the loop (the host's, overlapped with the next batch's
     * kernels but not the last one's) */
    double setup_seconds, sink_seconds;
    char device_name[256];
    double op_ms[PPD_ESM_NOPS]; /* profile mode: the stream's time in each op, all layers */
} ppd_cuda_esm_report;

/* The CUDA twin of ppd_esm_run: same plan (made with o.device = 1), tokens, layer and sink; the
 * sink receives float32 rows in host memory, in plan order. report may be NULL. */
ppd_status ppd_cuda_esm_run(const ppd_esm_model *m, const ppd_esm_plan *plan,
                            const uint8_t *const *tokens, int layer, ppd_esm_sink sink, void *ctx,
                            const ppd_cuda_esm_opts *o, ppd_cuda_esm_report *report);

/* The host memory ppd_cuda_esm_run allocates for `plan` (bytes; 0 for an empty plan): the two
 * pinned staging slots (report.pinned_bytes), the RoPE tables it computes before uploading them,
 * the windows' accumulator and the batch list. Not counted: the model's host copy (the caller
 * holds it) and the CUDA runtime's own (PPD_CUDA_HOST_RUNTIME_BYTES, ppdock/device.h). */
size_t ppd_cuda_esm_host_bytes(const ppd_esm_config *c, const ppd_esm_plan *plan);

#ifdef __cplusplus
}
#endif

#endif
