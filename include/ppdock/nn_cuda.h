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
#include "ppdock/tp.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- GEMMs through cuBLAS and the GEMM precision ------------------------------------------- */

typedef enum { PPD_CUDA_FP32 = 0, PPD_CUDA_TF32, PPD_CUDA_BF16 } ppd_cuda_precision;

/* "fp32" / "tf32" / "bf16" to the enum; PPD_ERR_USAGE otherwise. */
ppd_status ppd_cuda_precision_parse(const char *s, ppd_cuda_precision *p);
const char *ppd_cuda_precision_name(ppd_cuda_precision p);

/* ---- GEMM through cuBLAS -------------------------------------------------------------------- */

/* A cuBLAS handle bound to a stream and a precision, its workspace given from the caller's
 * device memory (so that it is planned, not allocated behind the arena's back). */
typedef struct ppd_cuda_blas ppd_cuda_blas;

/* cuBLAS is not linked but opened on first use (loading it leaves ~150 MB resident in any
 * process): ppd_cuda_blas_load resolves its functions once, from the process itself when it
 * already has them (the CPU emulation, a program linked with -lcublas), else from
 * libcublas.so.<the major version built against> (LD_LIBRARY_PATH, the program's run path, the
 * library cache); *from (may be NULL) says which. ppd_cuda_blas_create calls it. Needs no GPU.
 * Errors: PPD_ERR_CUDA (not found, or a function missing: the message says what to do). */
ppd_status ppd_cuda_blas_load(const char **from);

/* workspace: device memory of ws_bytes (PPD_CUDA_BLAS_WORKSPACE recommended), or NULL/0 to let
 * cuBLAS use its own. Errors: ppd_cuda_blas_load's; PPD_ERR_CUDA/PPD_ERR_NOMEM from cuBLAS. */
#define PPD_CUDA_BLAS_WORKSPACE ((size_t)32 << 20)
ppd_status ppd_cuda_blas_create(ppd_cuda_blas **b, cudaStream_t stream, ppd_cuda_precision prec,
                                void *workspace, size_t ws_bytes);
void ppd_cuda_blas_destroy(ppd_cuda_blas *b);

/* dst[i] = bf16(src[i]), round to nearest even (ppd_f32_to_bf16 of ppdock/half.h), n values. */
ppd_status ppd_cuda_cast_bf16(uint16_t *dst, const float *src, int64_t n, cudaStream_t stream);

/* ---- linear layers, ReLU, dropout (ppdock/nn.h) --------------------------------------------
 * Same shapes as the CPU ops, a cuBLAS handle (its stream) for the GEMM ones. The element ops
 * run ppdock/kernels/linear_ops.h's bodies (bit-identical to the CPU, dropout masks included);
 * the GEMMs sum in cuBLAS's order. db (the bias gradient) is a column sum without atomics, in a
 * fixed order (slices of 4,096 rows summed in parallel, in the handle's workspace, when N is
 * larger): runs repeat bit for bit. */
ppd_status ppd_cuda_linear_forward(float *out, const float *in, const float *W, const float *b,
                                   int64_t N, int K, int M, ppd_cuda_blas *blas);
ppd_status ppd_cuda_linear_backward(float *din, float *dW, float *db, const float *dout,
                                    const float *in, const float *W, int64_t N, int K, int M,
                                    ppd_cuda_blas *blas);
ppd_status ppd_cuda_relu_forward(float *x, int64_t n, cudaStream_t stream);
ppd_status ppd_cuda_bias_relu_forward(float *x, const float *b, int64_t N, int M,
                                      cudaStream_t stream);
ppd_status ppd_cuda_relu_backward(float *d, const float *y, int64_t n, cudaStream_t stream);
ppd_status ppd_cuda_dropout_forward(float *y, int64_t rows, int cols, int64_t row0, uint64_t seed,
                                    uint32_t site, float p, cudaStream_t stream);
ppd_status ppd_cuda_dropout_relu_backward(float *dy, const float *y, int64_t n, float p,
                                          cudaStream_t stream);

/* The stream a cuBLAS handle runs on (for element ops that must follow its GEMMs). */
cudaStream_t ppd_cuda_blas_stream(const ppd_cuda_blas *b);
/* The workspace given at creation (NULL, 0 bytes when none). cuBLAS uses it only during its
 * calls, so ops queued on the handle's stream between GEMMs may use it as scratch (the linear
 * layer's bias-gradient slices do). */
void *ppd_cuda_blas_workspace(const ppd_cuda_blas *b, size_t *bytes);

/* ---- scatter-add (ppdock/scatter.h) ------------------------------------------------------------
 * acc: (T, dim)   src: (n, dim); order (E), seg (T + 1): ppd_scatter_plan of the edge list's
 * targets, uploaded. Adds edges e0 .. e0 + n - 1 into their targets in increasing edge order:
 * bit-identical to ppd_scatter_add_rows. */
ppd_status ppd_cuda_scatter_add_rows(float *acc, const float *src, const int64_t *order,
                                     const int64_t *seg, int64_t e0, int64_t n, int64_t T, int dim,
                                     cudaStream_t stream);

/* ppd_scatter_add_cols's twin: acc rows of ldacc, src rows of lds, w columns; plan as above. */
ppd_status ppd_cuda_scatter_add_cols(float *acc, int ldacc, const float *src, int lds,
                                     const int64_t *order, const int64_t *seg, int64_t e0,
                                     int64_t n, int64_t T, int w, cudaStream_t stream);

/* ---- the convolutions' gather/scatter glue (ppdock/graph_ops.h) -----------------------------
 * Same shapes and arguments as the CPU ops, plus the stream; bit-identical results (but for
 * expf in the edge features' Gaussians). The degrees
 * twin counts from the receivers' scatter plan (ppd_scatter_plan's seg, uploaded) instead of
 * walking the edges: the same integers. */
ppd_status ppd_cuda_gather_concat3_forward(float *A, const float *emb, const float *hA,
                                           const int64_t *first, int dA, const float *hB,
                                           const int64_t *second, int dB, int64_t e0, int64_t n,
                                           int ns, cudaStream_t stream);
/* The twin of ppd_gather_concat3_backward, bit-identical. Node rows go through scatter plans:
 * with dhA != dhB, (orderA, segA) = ppd_scatter_plan(first, E, NA) and (orderB, segB) =
 * ppd_scatter_plan(second, E, NB); with dhA == dhB (an intra conv), (orderA, segA) =
 * ppd_scatter_plan_pairs(first, second, E, NA) and orderB/segB are unused. */
ppd_status ppd_cuda_gather_concat3_backward(float *demb, float *dhA, int dA, float *dhB, int dB,
                                            const float *g, const int64_t *orderA,
                                            const int64_t *segA, int64_t NA, const int64_t *orderB,
                                            const int64_t *segB, int64_t NB, int64_t e0, int64_t n,
                                            int ns, cudaStream_t stream);
ppd_status ppd_cuda_scatter_mean_grad(float *dmsg, const float *dU, const float *cnt,
                                      const int64_t *recv, int64_t e0, int64_t n, int dout,
                                      cudaStream_t stream);
ppd_status ppd_cuda_update_nodes_forward(float *hn, const float *h, int64_t N, int din, int dout,
                                         const float *yi, const float *yc, cudaStream_t stream);
ppd_status ppd_cuda_degrees_forward(float *cnt, const int64_t *seg, int64_t N, cudaStream_t stream);
ppd_status ppd_cuda_add_table_rows(float *x, const float *table, const int64_t *idx, int64_t N,
                                   int d, cudaStream_t stream);
/* the Gaussians within the smearing's tolerance (expf: glibc vs CUDA), the rest bit-identical */
ppd_status ppd_cuda_edge_raw_forward(float *raw, const float *vec, const float *temb,
                                     const int64_t *tnode, const float *off, float gamma, int D,
                                     int gauss_first, int64_t E, cudaStream_t stream);

ppd_status ppd_cuda_gather_rows(float *dst, int ldd, const float *src, int lds, const int64_t *idx,
                                int64_t e0, int64_t n, int w, cudaStream_t stream);
ppd_status ppd_cuda_add_rows(float *dst, int ldd, const float *src, int lds, int64_t n, int w,
                             cudaStream_t stream);
ppd_status ppd_cuda_scatter_mean_forward(float *acc, const float *cnt, int64_t N, int d,
                                         cudaStream_t stream);
/* the magnitude heads (ppdock/graph_ops.h): one thread per complex, the shared bodies */
ppd_status ppd_cuda_head_input_forward(float *vec, float *rho, float *head_in, const float *z,
                                       const float *temb, int B, int w, cudaStream_t stream);
ppd_status ppd_cuda_head_pred_forward(float *pred, float *scale, const float *vec, const float *rho,
                                      const float *mag, const float *sig, const float *norm, int B,
                                      int by_sigma, int by_norm, cudaStream_t stream);
ppd_status ppd_cuda_head_mag_backward(float *dmag, const float *dpred, const float *vec,
                                      const float *rho, const float *scale, int B,
                                      cudaStream_t stream);
ppd_status ppd_cuda_head_input_backward(float *dz, const float *dpred, const float *vec,
                                        const float *rho, const float *scale, const float *mag,
                                        const float *dhead_in, int B, int w, cudaStream_t stream);

/* ---- batch norm (e3nn 0.5.1 BatchNorm; kernels/bn_body.h) ------------------------------------
 * The fields of an irreps (one per channel of each block): column, width d = 2l + 1, and the
 * index among the 0e fields (their mean and bias), -1 for the others. ppd_bn_fields fills out
 * (may be NULL) and returns the count; upload the table for the kernels. */
typedef struct {
    int col, d, ib;
} ppd_bn_field;
int ppd_bn_fields(const ppd_irreps *ir, ppd_bn_field *out);

/* x, y: (N, D); the arguments of bn_forward / bn_backward with the irreps as a field table.
 * One block per field, double sums in a fixed order (no atomics). */
ppd_status ppd_cuda_bn_forward(const ppd_bn_field *fields, int nfields, int D, const float *x,
                               float *y, int64_t N, const float *w, const float *bias, float *rmean,
                               float *rvar, int training, float *mu, float *sf,
                               cudaStream_t stream);
ppd_status ppd_cuda_bn_backward(const ppd_bn_field *fields, int nfields, int D, const float *x,
                                const float *dy, float *dx, int64_t N, const float *w, float *dw,
                                float *db, int training, const float *mu, const float *sf,
                                cudaStream_t stream);

/* ---- element ops ---------------------------------------------------------------------------- */

/* out: (E, G)   dist: (E)   offsets: (G). See ppd_gaussian_smearing_forward. */
ppd_status ppd_cuda_gaussian_smearing_forward(float *out, const float *dist, const float *offsets,
                                              float gamma, int64_t E, int G, cudaStream_t stream);

/* out: (N, 32)   t: (N). See ppd_time_embedding_forward. */
ppd_status ppd_cuda_time_embedding_forward(float *out, const float *t, int64_t N,
                                           cudaStream_t stream);

/* Y: (E, 9)   vec: (E, 3). See ppd_sh_forward (ppdock/so3.h). */
ppd_status ppd_cuda_sh_forward(float *Y, const float *vec, int64_t E, cudaStream_t stream);

/* The tensor product (ppdock/tp.h) with `tp` a DEVICE copy of the host's ppd_tp (plain data:
 * upload it once with ppd_device_upload). Shapes as ppd_tp_forward / ppd_tp_backward; dwb (may
 * be NULL) accumulates Σ_e dw[e] column by column in edge order (deterministic). */
ppd_status ppd_cuda_tp_forward(const ppd_tp *tp, float *msg, const float *h, const int64_t *send,
                               const float *Y, const float *w, const float *wb, int64_t E,
                               cudaStream_t stream);
ppd_status ppd_cuda_tp_backward(const ppd_tp *tp, float *dh_edge, float *dw, float *dwb,
                                const float *dmsg, const float *h, const int64_t *send,
                                const float *Y, const float *w, const float *wb, int64_t E,
                                cudaStream_t stream);

#ifdef __cplusplus
}
#endif

#endif
