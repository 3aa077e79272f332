/* ppdock/kernels/tp_body.h — the per-edge tensor product (ppdock/tp.h), written once for a
 * scalar type. Include it with PPD_TP_REAL (the type) and PPD_TP_FN(name) (the function name)
 * defined: kernels/tp.h instantiates it for float (the library and the CUDA twin); the unit
 * tests instantiate it again for double to check the backward by finite differences in float64
 * on the same source.
 *
 * For each path, M[i][k] = Σ_j C_ijk Y[j] is formed first ((2l1+1) x (2lo+1), at most 5 x 5),
 * then t[k] = c Σ_i x1[u, i] M[i][k] per input channel u, then out[w', k] += t[k] W[u][w'].
 * Backward reuses M and t: dW[u][w'] = c Σ_k t[k] dout[w', k],
 * dt[k] = Σ_w' W[u][w'] c dout[w', k], dx1[u, i] += Σ_k M[i][k] dt[k].
 * The loops over w' (the output multiplicity) are innermost and unit-stride, marked PPD_SIMD
 * for the CPU compiler (the order of the sums differs from the plain loops by rounding only).
 * The CUDA build contracts a*b + c into FMAs in these sums (kernels/hd.h); the tolerance of the
 * GPU comparison covers that.
 */
#if !defined(PPD_TP_REAL) || !defined(PPD_TP_FN)
#error "define PPD_TP_REAL and PPD_TP_FN before including ppdock/kernels/tp_body.h"
#endif

/* M[i][k] = Σ_j C_ijk Y[j] of path p: one entry (the GPU's lanes take one each). */
static inline PPD_HD PPD_INLINE PPD_TP_REAL PPD_TP_FN(ppd_tp_path_matrix_entry)(
    const ppd_tp_path *p, const float *coef, const PPD_TP_REAL *Y, int i, int k) {
    int n2 = 2 * p->l2 + 1, no = 2 * p->lo + 1;
    const float *C = coef + p->coff;
    PPD_TP_REAL s = (PPD_TP_REAL)0;
    for (int j = 0; j < n2; j++) s += (PPD_TP_REAL)C[(i * n2 + j) * no + k] * Y[p->off2 + j];
    return s;
}

static inline PPD_HD PPD_INLINE void PPD_TP_FN(ppd_tp_path_matrix)(const ppd_tp_path *p,
                                                                   const float *coef,
                                                                   const PPD_TP_REAL *Y,
                                                                   PPD_TP_REAL *M) {
    int n1 = 2 * p->l1 + 1, no = 2 * p->lo + 1;
    for (int i = 0; i < n1; i++)
        for (int k = 0; k < no; k++)
            M[i * no + k] = PPD_TP_FN(ppd_tp_path_matrix_entry)(p, coef, Y, i, k);
}

/* Largest multiplicities the per-edge scratch holds (the model's are ns and nv), and the width of
 * the blocks of output channels the inner loops work on: a constant trip count, so the CPU
 * compiler keeps a block of accumulators in vector registers. */
#ifndef PPD_TP_MUL_MAX
#define PPD_TP_MUL_MAX 128
#endif
#ifndef PPD_TP_VB
#define PPD_TP_VB 8
#endif

/* T[u][k] = scale Σ_i x1[u, i] M[i][k] for every input channel u of path p. */
static inline PPD_HD PPD_INLINE void PPD_TP_FN(ppd_tp_path_t)(const ppd_tp_path *p,
                                                              const PPD_TP_REAL *x1,
                                                              const PPD_TP_REAL *M,
                                                              PPD_TP_REAL scale, PPD_TP_REAL *T) {
    int n1 = 2 * p->l1 + 1, no = 2 * p->lo + 1;
    for (int u = 0; u < p->mul1; u++) {
        const PPD_TP_REAL *xu = x1 + p->off1 + u * n1;
        for (int k = 0; k < no; k++) {
            PPD_TP_REAL sum = (PPD_TP_REAL)0;
            for (int i = 0; i < n1; i++) sum += xu[i] * M[i * no + k];
            T[u * no + k] = scale * sum;
        }
    }
}

/* Channels [v0, v0 + nv) of the path's output, nv <= PPD_TP_VB: o[v][k] += Σ_u T[u][k] (w +
 * wb)[u][v]. The loops run over the whole block width (constant trip count: vector registers) with
 * the weights beyond nv read as 0. */
static inline PPD_HD PPD_INLINE void
PPD_TP_FN(ppd_tp_block_forward)(const ppd_tp_path *p, const PPD_TP_REAL *T, const PPD_TP_REAL *w,
                                const float *wb, PPD_TP_REAL *o, int v0, int nv) {
    int no = 2 * p->lo + 1, mo = p->mulo;
    PPD_TP_REAL a[5][PPD_TP_VB], wv[PPD_TP_VB];
    for (int k = 0; k < 5; k++)
        for (int j = 0; j < PPD_TP_VB; j++) a[k][j] = (PPD_TP_REAL)0;
    for (int u = 0; u < p->mul1; u++) {
        const PPD_TP_REAL *wr = w + p->woff + u * mo + v0;
        const float *br = wb ? wb + p->woff + u * mo + v0 : NULL;
        for (int j = 0; j < PPD_TP_VB; j++)
            wv[j] = j < nv ? wr[j] + (br ? (PPD_TP_REAL)br[j] : (PPD_TP_REAL)0) : (PPD_TP_REAL)0;
        for (int k = 0; k < no; k++) {
            PPD_TP_REAL tk = T[u * no + k];
            PPD_SIMD
            for (int j = 0; j < PPD_TP_VB; j++) a[k][j] += tk * wv[j];
        }
    }
    for (int j = 0; j < nv; j++)
        for (int k = 0; k < no; k++) o[(v0 + j) * no + k] += a[k][j];
}

/* out = TP(x1, Y, w + wb): wb (the per-edge weights' bias, wnum floats) may be NULL. */
static inline PPD_HD PPD_INLINE void
PPD_TP_FN(ppd_tp_edge_forward)(const ppd_tp_path *paths, int npath, const float *coef, int dim_out,
                               PPD_TP_REAL *out, const PPD_TP_REAL *x1, const PPD_TP_REAL *Y,
                               const PPD_TP_REAL *w, const float *wb) {
    PPD_TP_REAL T[5 * PPD_TP_MUL_MAX];
    for (int k = 0; k < dim_out; k++) out[k] = (PPD_TP_REAL)0;
    for (int q = 0; q < npath; q++) {
        const ppd_tp_path *p = &paths[q];
        PPD_TP_REAL M[25];
        PPD_TP_FN(ppd_tp_path_matrix)(p, coef, Y, M);
        PPD_TP_FN(ppd_tp_path_t)(p, x1, M, (PPD_TP_REAL)p->c, T);
        for (int v0 = 0; v0 < p->mulo; v0 += PPD_TP_VB) PPD_TP_FN(ppd_tp_block_forward)
        (p, T, w, wb, out + p->offo, v0, p->mulo - v0 < PPD_TP_VB ? p->mulo - v0 : PPD_TP_VB);
    }
}

/* Channels [v0, v0 + nv) of input channel u: dw[u][v] = Σ_k T[u][k] G[k][v] (stored, and added
 * to dwb when given) and dT[k] += Σ_v (w + wb)[u][v] G[k][v], with G[k][v] = c dout[v, k] held
 * transposed and zero-padded to whole blocks. */
static inline PPD_HD PPD_INLINE void
PPD_TP_FN(ppd_tp_block_backward)(const ppd_tp_path *p, const PPD_TP_REAL *T, const PPD_TP_REAL *G,
                                 int ldg, const PPD_TP_REAL *w, const float *wb, PPD_TP_REAL *dw,
                                 PPD_TP_REAL *dwb, int u, PPD_TP_REAL *dT, int v0, int nv) {
    int no = 2 * p->lo + 1, mo = p->mulo;
    const PPD_TP_REAL *wr = w + p->woff + u * mo + v0;
    const float *br = wb ? wb + p->woff + u * mo + v0 : NULL;
    PPD_TP_REAL wv[PPD_TP_VB], d[PPD_TP_VB];
    for (int j = 0; j < PPD_TP_VB; j++) {
        wv[j] = j < nv ? wr[j] + (br ? (PPD_TP_REAL)br[j] : (PPD_TP_REAL)0) : (PPD_TP_REAL)0;
        d[j] = (PPD_TP_REAL)0;
    }
    for (int k = 0; k < no; k++) {
        const PPD_TP_REAL *gk = G + k * ldg + v0;
        PPD_TP_REAL tk = T[u * no + k], sum = (PPD_TP_REAL)0;
        PPD_SIMD_SUM(sum)
        for (int j = 0; j < PPD_TP_VB; j++) {
            d[j] += tk * gk[j];
            sum += wv[j] * gk[j];
        }
        dT[k] += sum;
    }
    PPD_TP_REAL *dwr = dw + p->woff + u * mo + v0;
    for (int j = 0; j < nv; j++) dwr[j] = d[j];
    if (dwb) {
        PPD_TP_REAL *acc = dwb + p->woff + u * mo + v0;
        for (int j = 0; j < nv; j++) acc[j] += d[j];
    }
}

/* dwb (wnum, may be NULL) accumulates dw: the gradient of the weights' bias. */
static inline PPD_HD PPD_INLINE void
PPD_TP_FN(ppd_tp_edge_backward)(const ppd_tp_path *paths, int npath, const float *coef, int dim_in,
                                PPD_TP_REAL *dx1, PPD_TP_REAL *dw, PPD_TP_REAL *dwb,
                                const PPD_TP_REAL *dout, const PPD_TP_REAL *x1,
                                const PPD_TP_REAL *Y, const PPD_TP_REAL *w, const float *wb) {
    enum { LDG = PPD_TP_MUL_MAX + PPD_TP_VB };
    PPD_TP_REAL T[5 * PPD_TP_MUL_MAX], G[5 * LDG];
    for (int i = 0; i < dim_in; i++) dx1[i] = (PPD_TP_REAL)0;
    for (int q = 0; q < npath; q++) {
        const ppd_tp_path *p = &paths[q];
        int n1 = 2 * p->l1 + 1, no = 2 * p->lo + 1, mo = p->mulo;
        int padded = (mo + PPD_TP_VB - 1) / PPD_TP_VB * PPD_TP_VB;
        PPD_TP_REAL M[25], dT[5];
        PPD_TP_FN(ppd_tp_path_matrix)(p, coef, Y, M);
        PPD_TP_FN(ppd_tp_path_t)(p, x1, M, (PPD_TP_REAL)1, T);
        PPD_TP_REAL c = (PPD_TP_REAL)p->c;
        const PPD_TP_REAL *go = dout + p->offo;
        for (int k = 0; k < no; k++) {
            for (int v = 0; v < mo; v++) G[k * LDG + v] = c * go[v * no + k];
            for (int v = mo; v < padded; v++) G[k * LDG + v] = (PPD_TP_REAL)0;
        }
        for (int u = 0; u < p->mul1; u++) {
            for (int k = 0; k < no; k++) dT[k] = (PPD_TP_REAL)0;
            for (int v0 = 0; v0 < mo; v0 += PPD_TP_VB) PPD_TP_FN(ppd_tp_block_backward)
            (p, T, G, LDG, w, wb, dw, dwb, u, dT, v0, mo - v0 < PPD_TP_VB ? mo - v0 : PPD_TP_VB);
            PPD_TP_REAL *dxu = dx1 + p->off1 + u * n1;
            for (int i = 0; i < n1; i++) {
                PPD_TP_REAL sum = (PPD_TP_REAL)0;
                for (int k = 0; k < no; k++) sum += M[i * no + k] * dT[k];
                dxu[i] += sum;
            }
        }
    }
}
