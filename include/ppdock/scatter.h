/* ppdock/scatter.h — scatter-add of per-edge rows into per-node rows, CPU reference, and the
 * plan that lets the CUDA twin (ppdock/nn_cuda.h) do the same sums in the same order.
 *
 *   acc[idx[e]] += src[e - e0]   for e = e0 .. e0 + n - 1, in increasing e
 *
 * (a convolution's messages into their receivers, or per-edge gradients into their senders; the
 * score model calls it per chunk of edges). The CPU loop adds in edge order. The CUDA twin gives
 * every target row to one thread per column, which walks the target's edges in increasing e,
 * found through a plan made once per edge list: `order` lists the edges grouped by target
 * (a stable counting sort, so each group is in increasing e) and seg[t] .. seg[t + 1] is target
 * t's group. Same additions in the same order: the GPU's sums are bit-identical to the CPU's,
 * with no atomics.
 */
#ifndef PPDOCK_SCATTER_H
#define PPDOCK_SCATTER_H

#include <stdint.h>

#include "ppdock/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* acc: (T, dim)   src: (n, dim)   idx: (E) with 0 <= idx[e] < T */
void ppd_scatter_add_rows(float *acc, const float *src, const int64_t *idx, int64_t e0, int64_t n,
                          int dim);

/* The same with strides: acc rows of ldacc floats, src rows of lds, the first w columns of each
 * (src may point into a wider row, e.g. one part of a concatenated gradient). */
void ppd_scatter_add_cols(float *acc, int ldacc, const float *src, int lds, const int64_t *idx,
                          int64_t e0, int64_t n, int w);

/* order: (E)   seg: (T + 1). PPD_ERR_FORMAT naming the edge when an idx is outside [0, T). */
ppd_status ppd_scatter_plan(int64_t *order, int64_t *seg, const int64_t *idx, int64_t E, int64_t T);

/* The plan of 2E "half edges" v = 2e + p with targets a[e] (p = 0) and b[e] (p = 1) into one
 * array of T rows: each target's group lists v in increasing order, i.e. by edge and, within an
 * edge, a before b. For a loop that adds an edge's two parts to the same array in that order
 * (ppd_gather_concat3_backward of an intra conv). order: (2E)   seg: (T + 1). */
ppd_status ppd_scatter_plan_pairs(int64_t *order, int64_t *seg, const int64_t *a, const int64_t *b,
                                  int64_t E, int64_t T);

#ifdef __cplusplus
}
#endif

#endif
