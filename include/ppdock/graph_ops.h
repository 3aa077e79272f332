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

#ifdef __cplusplus
}
#endif

#endif
