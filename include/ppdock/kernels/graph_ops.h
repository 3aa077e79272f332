/* ppdock/kernels/graph_ops.h — per-element bodies of ppdock/graph_ops.h, shared by the CPU loops
 * (lib/nn/graph_ops.c) and the CUDA kernels (lib/nn/cuda/graph_ops.cu), DESIGN.md rule 5. */
#ifndef PPDOCK_KERNELS_GRAPH_OPS_H
#define PPDOCK_KERNELS_GRAPH_OPS_H

#include <math.h>

#include "ppdock/kernels/hd.h"

/* (base + yi) + yc, base = h[k] for k < din, else 0 */
static inline PPD_HD float ppd_update_node_elem(float base, float yi, float yc) {
    float v = base + yi;
    return v + yc;
}

/* |v| = sqrt((x² + y²) + z²), each square rounded (no FMA on either side) */
static inline PPD_HD float ppd_edge_length(const float *v) {
    float xx = PPD_MUL(v[0], v[0]), yy = PPD_MUL(v[1], v[1]), zz = PPD_MUL(v[2], v[2]);
    float ss = xx + yy;
    ss = ss + zz;
    return sqrtf(ss);
}

/* the gradient of one message of a scatter-mean */
static inline PPD_HD float ppd_scatter_mean_grad_elem(float dU, float cnt) {
    return dU / cnt;
}

#endif
