/* ppdock/kernels/graph_ops.h — per-element bodies of ppdock/graph_ops.h, shared by the CPU loops
 * (lib/nn/graph_ops.c) and the CUDA kernels (lib/nn/cuda/graph_ops.cu), DESIGN.md rule 5. */
#ifndef PPDOCK_KERNELS_GRAPH_OPS_H
#define PPDOCK_KERNELS_GRAPH_OPS_H

#include "ppdock/kernels/hd.h"

/* (base + yi) + yc, base = h[k] for k < din, else 0 */
static inline PPD_HD float ppd_update_node_elem(float base, float yi, float yc) {
    float v = base + yi;
    return v + yc;
}

/* the gradient of one message of a scatter-mean */
static inline PPD_HD float ppd_scatter_mean_grad_elem(float dU, float cnt) {
    return dU / cnt;
}

#endif
