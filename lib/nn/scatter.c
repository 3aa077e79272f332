/* Scatter-add of edge rows into node rows and its plan, CPU reference (ppdock/scatter.h). */
#include "ppdock/scatter.h"

#include <string.h>

void ppd_scatter_add_rows(float *acc, const float *src, const int64_t *idx, int64_t e0, int64_t n,
                          int dim) {
    // acc: (T, dim)   src: (n, dim)
    for (int64_t i = 0; i < n; i++) {
        float *o = acc + idx[e0 + i] * dim;
        const float *x = src + i * dim;
        for (int k = 0; k < dim; k++) o[k] += x[k];
    }
}

void ppd_scatter_add_cols(float *acc, int ldacc, const float *src, int lds, const int64_t *idx,
                          int64_t e0, int64_t n, int w) {
    for (int64_t i = 0; i < n; i++) {
        float *o = acc + idx[e0 + i] * ldacc;
        const float *x = src + i * lds;
        for (int k = 0; k < w; k++) o[k] += x[k];
    }
}

ppd_status ppd_scatter_plan(int64_t *order, int64_t *seg, const int64_t *idx, int64_t E,
                            int64_t T) {
    memset(seg, 0, sizeof *seg * (size_t)(T + 1));
    for (int64_t e = 0; e < E; e++) {
        if (idx[e] < 0 || idx[e] >= T)
            return ppd_fail(PPD_ERR_FORMAT, "scatter plan: edge %lld targets node %lld of %lld",
                            (long long)e, (long long)idx[e], (long long)T);
        seg[idx[e] + 1]++;
    }
    for (int64_t t = 0; t < T; t++) seg[t + 1] += seg[t];
    /* stable: edges placed in increasing e; seg[t] is used as the fill cursor, then restored */
    for (int64_t e = 0; e < E; e++) order[seg[idx[e]]++] = e;
    for (int64_t t = T; t > 0; t--) seg[t] = seg[t - 1];
    seg[0] = 0;
    return PPD_OK;
}

ppd_status ppd_scatter_plan_pairs(int64_t *order, int64_t *seg, const int64_t *a, const int64_t *b,
                                  int64_t E, int64_t T) {
    memset(seg, 0, sizeof *seg * (size_t)(T + 1));
    for (int64_t v = 0; v < 2 * E; v++) {
        int64_t t = v % 2 ? b[v / 2] : a[v / 2];
        if (t < 0 || t >= T)
            return ppd_fail(PPD_ERR_FORMAT,
                            "scatter plan: edge %lld end %d targets node %lld of %lld",
                            (long long)(v / 2), (int)(v % 2), (long long)t, (long long)T);
        seg[t + 1]++;
    }
    for (int64_t t = 0; t < T; t++) seg[t + 1] += seg[t];
    for (int64_t v = 0; v < 2 * E; v++) order[seg[v % 2 ? b[v / 2] : a[v / 2]]++] = v;
    for (int64_t t = T; t > 0; t--) seg[t] = seg[t - 1];
    seg[0] = 0;
    return PPD_OK;
}
