/* ppdock/tp.h — irreps and the fully connected tensor product with per-edge weights (e3nn 0.5.1
 * FullyConnectedTensorProduct, shared_weights=False; spec diffdock-pp.md §3.1, §3.4).
 *
 * Irreps are a list of blocks "mul x l p" (p = +1 even 'e', −1 odd 'o'); a feature vector lays
 * the blocks out in order, and inside a block of multiplicity m and degree l the index is
 * u·(2l+1) + c (multiplicity-major). l = 1 components are Cartesian (x, y, z) (ppdock/so3.h).
 *
 * The product of node features x1 (irreps IN) with an edge's spherical harmonics Y (irreps SH,
 * here 0e+1o+2e) into OUT, weighted per edge by w (wnum numbers):
 *   paths:   for i1 in IN, i2 in SH, io in OUT (in that nesting order), every (i1, i2, io) with
 *            p1·p2 = po and |l1 − l2| <= lo <= l1 + l2;
 *   weights: one chunk per path, in path order, row-major [mul1][mulo];
 *   norm:    c_io = sqrt((2 lo + 1) / Σ_{paths p into io} mul1(p));
 *   out_io[w', k] += c_io Σ_u W_p[u][w'] Σ_{i,j} C^{l1 l2 lo}_{ijk} x1_i1[u, i] Y_i2[j].
 * Degrees up to 2 are supported everywhere (the model needs l <= 2 for SH, l <= 1 for features).
 *
 * Batched ops over E edges (the per-edge bodies are ppdock/kernels/tp.h, shared with CUDA):
 *   msg: (E, out.dim)   h: (N, in.dim)   send: (E) row of h per edge   Y: (E, sh.dim)   w: (E,
 * wnum) forward:  msg[e] = TP(h[send[e]], Y[e], w[e]) backward: dh_edge[e] = ∂/∂x1 of <dmsg[e], TP>
 * (per edge; the caller scatter-adds it by send), dw[e]      = ∂/∂w  of <dmsg[e], TP>. Both
 * overwrite. Y gets no gradient (positions are inputs, not parameters).
 */
#ifndef PPDOCK_TP_H
#define PPDOCK_TP_H

#include "ppdock/status.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum { PPD_IRREPS_MAX = 8, PPD_TP_PATHS_MAX = 32, PPD_TP_LMAX = 2, PPD_TP_COEF_MAX = 2048 };
/* Largest multiplicity of a block (the per-edge kernels' scratch; kernels/tp_body.h). */
enum { PPD_TP_MULTIPLICITY_MAX = 128 };

typedef struct {
    int mul, l, p;
} ppd_irrep;

typedef struct {
    int n, dim;
    ppd_irrep r[PPD_IRREPS_MAX];
    int off[PPD_IRREPS_MAX];
} ppd_irreps;

/* "8x0e+3x1o" (spaces allowed around '+'; "1o" means "1x1o"). PPD_ERR_USAGE naming the bad
 * token on a syntax error, l > PPD_TP_LMAX, mul < 1 or more than PPD_IRREPS_MAX blocks. */
ppd_status ppd_irreps_parse(ppd_irreps *ir, const char *s);
/* The score model's irreps sequence S_k (spec §3.1), k = 0..3: S0 = ns×0e, S1 = S0 + nv×1o,
 * S2 = S1 + nv×1e, S3 = S2 + ns×0o. */
void ppd_irreps_score(ppd_irreps *ir, int ns, int nv, int k);
/* Text form "8x0e+3x1o" into buf (truncated to n); returns buf. */
const char *ppd_irreps_str(const ppd_irreps *ir, char *buf, size_t n);

typedef struct {
    int i1, i2, io;       /* block indices in IN, SH, OUT */
    int l1, l2, lo;       /* degrees */
    int mul1, mulo;       /* multiplicities of the IN and OUT blocks */
    int off1, off2, offo; /* offsets of the blocks in x1, Y, out */
    int woff;             /* offset of this path's [mul1][mulo] weights in w */
    int coff;             /* offset of its C^{l1 l2 lo} block (float32) in coef */
    float c;              /* path normalisation c_io */
} ppd_tp_path;

typedef struct {
    ppd_irreps in, sh, out;
    int npath, wnum;
    ppd_tp_path path[PPD_TP_PATHS_MAX];
    float coef[PPD_TP_COEF_MAX];
} ppd_tp;

/* Builds the path list, weight layout, norms and Wigner-3j blocks. PPD_ERR_USAGE if a degree
 * exceeds PPD_TP_LMAX, there are more than PPD_TP_PATHS_MAX paths, or an OUT block has no path
 * (e3nn would leave it zero; no layer of the model has one, so it is treated as a mistake). */
ppd_status ppd_tp_init(ppd_tp *tp, const ppd_irreps *in, const ppd_irreps *sh,
                       const ppd_irreps *out);

void ppd_tp_forward(const ppd_tp *tp, float *msg, const float *h, const int64_t *send,
                    const float *Y, const float *w, const float *wb, int64_t E);
void ppd_tp_backward(const ppd_tp *tp, float *dh_edge, float *dw, float *dwb, const float *dmsg,
                     const float *h, const int64_t *send, const float *Y, const float *w,
                     const float *wb, int64_t E);

#ifdef __cplusplus
}
#endif

#endif
