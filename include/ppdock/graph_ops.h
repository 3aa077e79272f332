/* ppdock/graph_ops.h — the score model's gather/scatter glue around its convolutions, CPU
 * reference (lib/nn/graph_ops.c); the CUDA twins are in ppdock/nn_cuda.h and give bit-identical
 * results (copies, one division or two additions per element, integer counts).
 *
 * Shapes: n edges of a chunk starting at edge e0; ns scalar channels; node rows of dA / dB /
 * din / dout floats.
 */
#ifndef PPDOCK_GRAPH_OPS_H
#define PPDOCK_GRAPH_OPS_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A: (n, 3 ns). A[i] = [emb[e], hA[first[e]][:ns], hB[second[e]][:ns]] for e = e0 + i: the input
 * of a convolution's fc (spec §3.5: edge embedding, then the scalar channels of both ends). */
void ppd_gather_concat3_forward(float *A, const float *emb, const float *hA, const int64_t *first,
                                int dA, const float *hB, const int64_t *second, int dB, int64_t e0,
                                int64_t n, int ns);

/* The gradient of ppd_gather_concat3_forward, accumulated: for e = e0 + i in increasing order and
 * each column k, demb[e][k] += g[i][k], dhA[first[e]][k] += g[i][ns + k], then
 * dhB[second[e]][k] += g[i][2 ns + k]. dhA and dhB may be the same array (an intra conv). */
void ppd_gather_concat3_backward(float *demb, float *dhA, int dA, float *dhB, int dB,
                                 const float *g, const int64_t *first, const int64_t *second,
                                 int64_t e0, int64_t n, int ns);

/* dmsg: (n, dout). dmsg[i] = dU[recv[e]] / cnt[recv[e]]: the gradient of a scatter-mean's
 * messages from the gradient of its node means. */
void ppd_scatter_mean_grad(float *dmsg, const float *dU, const float *cnt, const int64_t *recv,
                           int64_t e0, int64_t n, int dout);

/* hn: (N, dout). hn = (pad(h) + yi) + yc, pad(h) = h in the first din columns and 0 after: a
 * layer's node update from its intra and cross convolutions. */
void ppd_update_nodes_forward(float *hn, const float *h, int64_t N, int din, int dout,
                              const float *yi, const float *yc);

/* x: (N, d) in place. x[n] = table[idx[n]] + x[n]: a lookup table's rows added (the score
 * model's atom-type embedding onto its sigma embedding). */
void ppd_add_table_rows(float *x, const float *table, const int64_t *idx, int64_t N, int d);

/* raw: (E, 32 + D). The edge MLP's input of spec §3.3: [temb[tnode[e]], G(|vec[e]|)], or
 * [G, temb] when gauss_first; |v| = sqrt((x² + y²) + z²) in float32, G the Gaussian smearing
 * (ppd_gaussian_smearing_forward) with offsets off (D) and gamma. */
void ppd_edge_raw_forward(float *raw, const float *vec, const float *temb, const int64_t *tnode,
                          const float *off, float gamma, int D, int gauss_first, int64_t E);

/* cnt: (N). In-degrees of the E receivers recv (0 <= recv[e] < N), clamped at 1 (the
 * scatter-mean of an empty set is 0, and dividing by 1 keeps it so). */
void ppd_degrees_forward(float *cnt, const int64_t *recv, int64_t E, int64_t N);

/* dst: rows of ldd floats, src: rows of lds. dst[i][j] = src[r][j] for i < n, j < w, with
 * r = idx[e0 + i], or e0 + i when idx is NULL: rows gathered into the leading (or any, by
 * offsetting dst) columns of a wider array (the lm_ebd input, the final conv's fc input). */
void ppd_gather_rows(float *dst, int ldd, const float *src, int lds, const int64_t *idx, int64_t e0,
                     int64_t n, int w);

/* dst[i][j] += src[i][j] for i < n, j < w; rows of ldd and lds floats (a gradient's slice added
 * onto another, e.g. through the zero padding of a layer's node update). */
void ppd_add_rows(float *dst, int ldd, const float *src, int lds, int64_t n, int w);

/* acc: (N, d) in place. acc[n] /= cnt[n]: a scatter-mean's sums into means (cnt from
 * ppd_degrees_forward). */
void ppd_scatter_mean_forward(float *acc, const float *cnt, int64_t N, int d);

/* ---- the magnitude heads (spec §3.7; bodies in ppdock/kernels/score_heads.h) ------------------
 * B complexes, head w (0 translation, 1 rotation). z: (B, 12) pooled final-conv outputs,
 * temb: (B, 32), vec: (B, 3), rho: (B), head_in: (B, 33) the MLP input [ρ, temb], mag: (B)
 * its output; sig, norm: (B) σ_tr(t) and N(σ_rot(t)) per complex (read only when by_sigma /
 * by_norm); pred: (B, 3), scale: (B). */
void ppd_head_input_forward(float *vec, float *rho, float *head_in, const float *z,
                            const float *temb, int B, int w);
void ppd_head_pred_forward(float *pred, float *scale, const float *vec, const float *rho,
                           const float *mag, const float *sig, const float *norm, int B,
                           int by_sigma, int by_norm);
/* dmag: (B) from dpred (B, 3) */
void ppd_head_mag_backward(float *dmag, const float *dpred, const float *vec, const float *rho,
                           const float *scale, int B);
/* dz: (B, 12): writes head w's columns (3w.., 6 + 3w..) from dpred and dhead_in (B, 33), the
 * gradient of the MLP input (its column 0 is dL/dρ) */
void ppd_head_input_backward(float *dz, const float *dpred, const float *vec, const float *rho,
                             const float *scale, const float *mag, const float *dhead_in, int B,
                             int w);

#ifdef __cplusplus
}
#endif

#endif
