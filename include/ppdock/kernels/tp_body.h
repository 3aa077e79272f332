/* ppdock/kernels/tp_body.h — the per-edge tensor product (ppdock/tp.h), written once for a
 * scalar type. Include it with PPD_TP_REAL (the type) and PPD_TP_FN(name) (the function name)
 * defined: kernels/tp.h instantiates it for float (the library and the CUDA twin); the unit
 * tests instantiate it again for double to check the backward by finite differences in float64
 * on the same source.
 *
 * For each path, M[i][k] = Σ_j C_ijk Y[j] is formed first ((2l1+1) x (2lo+1), at most 5 x 5),
 * then t[k] = Σ_i x1[u, i] M[i][k] per input channel u, then out[w', k] += (c W[u][w']) t[k].
 * Backward reuses M and t: dW[u][w'] = c Σ_k t[k] dout[w', k],
 * dt[k] = Σ_w' (c W[u][w']) dout[w', k], dx1[u, i] += Σ_k M[i][k] dt[k].
 * The CUDA build contracts a*b + c into FMAs in these sums (kernels/hd.h); the tolerance of the
 * GPU comparison covers that.
 */
#if !defined(PPD_TP_REAL) || !defined(PPD_TP_FN)
#error "define PPD_TP_REAL and PPD_TP_FN before including ppdock/kernels/tp_body.h"
#endif

static inline PPD_HD void PPD_TP_FN(ppd_tp_path_matrix)(const ppd_tp_path *p, const float *coef,
                                                        const PPD_TP_REAL *Y, PPD_TP_REAL *M) {
    int n1 = 2 * p->l1 + 1, n2 = 2 * p->l2 + 1, no = 2 * p->lo + 1;
    const float *C = coef + p->coff;
    for (int i = 0; i < n1; i++)
        for (int k = 0; k < no; k++) {
            PPD_TP_REAL s = (PPD_TP_REAL)0;
            for (int j = 0; j < n2; j++)
                s += (PPD_TP_REAL)C[(i * n2 + j) * no + k] * Y[p->off2 + j];
            M[i * no + k] = s;
        }
}

static inline PPD_HD void PPD_TP_FN(ppd_tp_edge_forward)(const ppd_tp_path *paths, int npath,
                                                         const float *coef, int dim_out,
                                                         PPD_TP_REAL *out, const PPD_TP_REAL *x1,
                                                         const PPD_TP_REAL *Y,
                                                         const PPD_TP_REAL *w) {
    for (int k = 0; k < dim_out; k++) out[k] = (PPD_TP_REAL)0;
    for (int q = 0; q < npath; q++) {
        const ppd_tp_path *p = &paths[q];
        int n1 = 2 * p->l1 + 1, no = 2 * p->lo + 1;
        PPD_TP_REAL M[25], t[5];
        PPD_TP_FN(ppd_tp_path_matrix)(p, coef, Y, M);
        PPD_TP_REAL c = (PPD_TP_REAL)p->c;
        for (int u = 0; u < p->mul1; u++) {
            const PPD_TP_REAL *xu = x1 + p->off1 + u * n1;
            for (int k = 0; k < no; k++) {
                PPD_TP_REAL s = (PPD_TP_REAL)0;
                for (int i = 0; i < n1; i++) s += xu[i] * M[i * no + k];
                t[k] = s;
            }
            const PPD_TP_REAL *wu = w + p->woff + u * p->mulo;
            for (int v = 0; v < p->mulo; v++) {
                PPD_TP_REAL cw = c * wu[v];
                PPD_TP_REAL *o = out + p->offo + v * no;
                for (int k = 0; k < no; k++) o[k] += cw * t[k];
            }
        }
    }
}

static inline PPD_HD void
PPD_TP_FN(ppd_tp_edge_backward)(const ppd_tp_path *paths, int npath, const float *coef, int dim_in,
                                PPD_TP_REAL *dx1, PPD_TP_REAL *dw, const PPD_TP_REAL *dout,
                                const PPD_TP_REAL *x1, const PPD_TP_REAL *Y, const PPD_TP_REAL *w) {
    for (int i = 0; i < dim_in; i++) dx1[i] = (PPD_TP_REAL)0;
    for (int q = 0; q < npath; q++) {
        const ppd_tp_path *p = &paths[q];
        int n1 = 2 * p->l1 + 1, no = 2 * p->lo + 1;
        PPD_TP_REAL M[25], t[5], dt[5];
        PPD_TP_FN(ppd_tp_path_matrix)(p, coef, Y, M);
        PPD_TP_REAL c = (PPD_TP_REAL)p->c;
        for (int u = 0; u < p->mul1; u++) {
            const PPD_TP_REAL *xu = x1 + p->off1 + u * n1;
            for (int k = 0; k < no; k++) {
                PPD_TP_REAL s = (PPD_TP_REAL)0;
                for (int i = 0; i < n1; i++) s += xu[i] * M[i * no + k];
                t[k] = s;
                dt[k] = (PPD_TP_REAL)0;
            }
            const PPD_TP_REAL *wu = w + p->woff + u * p->mulo;
            PPD_TP_REAL *dwu = dw + p->woff + u * p->mulo;
            for (int v = 0; v < p->mulo; v++) {
                const PPD_TP_REAL *g = dout + p->offo + v * no;
                PPD_TP_REAL cw = c * wu[v], s = (PPD_TP_REAL)0;
                for (int k = 0; k < no; k++) {
                    s += t[k] * g[k];
                    dt[k] += cw * g[k];
                }
                dwu[v] = c * s;
            }
            PPD_TP_REAL *dxu = dx1 + p->off1 + u * n1;
            for (int i = 0; i < n1; i++) {
                PPD_TP_REAL s = (PPD_TP_REAL)0;
                for (int k = 0; k < no; k++) s += M[i * no + k] * dt[k];
                dxu[i] += s;
            }
        }
    }
}
