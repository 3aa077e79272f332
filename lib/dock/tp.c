/* Irreps and the per-edge-weighted tensor product, CPU reference (ppdock/tp.h). */
#include "ppdock/tp.h"

#include "ppdock/kernels/tp.h"
#include "ppdock/so3.h"

#include <assert.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void irreps_finish(ppd_irreps *ir) {
    ir->dim = 0;
    for (int i = 0; i < ir->n; i++) {
        ir->off[i] = ir->dim;
        ir->dim += ir->r[i].mul * (2 * ir->r[i].l + 1);
    }
}

ppd_status ppd_irreps_parse(ppd_irreps *ir, const char *s) {
    memset(ir, 0, sizeof *ir);
    const char *p = s;
    for (;;) {
        while (isspace((unsigned char)*p)) p++;
        const char *tok = p;
        long mul = 1;
        char *end;
        long a = strtol(p, &end, 10);
        if (end == p)
            return ppd_fail(PPD_ERR_USAGE, "irreps \"%s\": expected a number at \"%s\"", s, tok);
        p = end;
        long l = a;
        if (*p == 'x') {
            mul = a;
            p++;
            l = strtol(p, &end, 10);
            if (end == p)
                return ppd_fail(PPD_ERR_USAGE, "irreps \"%s\": expected a degree at \"%s\"", s,
                                tok);
            p = end;
        }
        if (*p != 'e' && *p != 'o')
            return ppd_fail(PPD_ERR_USAGE, "irreps \"%s\": expected parity 'e' or 'o' at \"%s\"", s,
                            tok);
        int parity = *p == 'e' ? 1 : -1;
        p++;
        if (mul < 1 || l < 0 || l > PPD_TP_LMAX)
            return ppd_fail(
                PPD_ERR_USAGE,
                "irreps \"%s\": block \"%.*s\" needs multiplicity >= 1 and degree <= %d", s,
                (int)(p - tok), tok, PPD_TP_LMAX);
        if (ir->n == PPD_IRREPS_MAX)
            return ppd_fail(PPD_ERR_USAGE, "irreps \"%s\": more than %d blocks", s, PPD_IRREPS_MAX);
        ir->r[ir->n++] = (ppd_irrep){(int)mul, (int)l, parity};
        while (isspace((unsigned char)*p)) p++;
        if (*p == '\0') break;
        if (*p != '+')
            return ppd_fail(PPD_ERR_USAGE, "irreps \"%s\": expected '+' at \"%s\"", s, p);
        p++;
    }
    irreps_finish(ir);
    return PPD_OK;
}

void ppd_irreps_score(ppd_irreps *ir, int ns, int nv, int k) {
    assert(ns >= 1 && nv >= 1 && k >= 0 && k <= 3);
    memset(ir, 0, sizeof *ir);
    const ppd_irrep blocks[4] = {{ns, 0, 1}, {nv, 1, -1}, {nv, 1, 1}, {ns, 0, -1}};
    for (int i = 0; i <= k; i++) ir->r[ir->n++] = blocks[i];
    irreps_finish(ir);
}

const char *ppd_irreps_str(const ppd_irreps *ir, char *buf, size_t n) {
    size_t used = 0;
    if (n) buf[0] = '\0';
    for (int i = 0; i < ir->n && used < n; i++) {
        int w = snprintf(buf + used, n - used, "%s%dx%d%c", i ? "+" : "", ir->r[i].mul, ir->r[i].l,
                         ir->r[i].p > 0 ? 'e' : 'o');
        if (w < 0) break;
        used += (size_t)w;
    }
    return buf;
}

ppd_status ppd_tp_init(ppd_tp *tp, const ppd_irreps *in, const ppd_irreps *sh,
                       const ppd_irreps *out) {
    memset(tp, 0, sizeof *tp);
    tp->in = *in;
    tp->sh = *sh;
    tp->out = *out;
    char b1[128], b2[128], b3[128];
    for (int i1 = 0; i1 < in->n; i1++)
        for (int i2 = 0; i2 < sh->n; i2++)
            for (int io = 0; io < out->n; io++) {
                ppd_irrep a = in->r[i1], b = sh->r[i2], o = out->r[io];
                if (a.p * b.p != o.p || o.l < abs(a.l - b.l) || o.l > a.l + b.l) continue;
                if (tp->npath == PPD_TP_PATHS_MAX)
                    return ppd_fail(
                        PPD_ERR_USAGE, "tensor product %s x %s -> %s: more than %d paths",
                        ppd_irreps_str(in, b1, sizeof b1), ppd_irreps_str(sh, b2, sizeof b2),
                        ppd_irreps_str(out, b3, sizeof b3), PPD_TP_PATHS_MAX);
                if (a.mul > PPD_TP_MULTIPLICITY_MAX || o.mul > PPD_TP_MULTIPLICITY_MAX)
                    return ppd_fail(PPD_ERR_USAGE,
                                    "tensor product: multiplicities above %d are not supported "
                                    "(%s -> %s)",
                                    PPD_TP_MULTIPLICITY_MAX, ppd_irreps_str(in, b1, sizeof b1),
                                    ppd_irreps_str(out, b3, sizeof b3));
                ppd_tp_path *p = &tp->path[tp->npath++];
                *p = (ppd_tp_path){.i1 = i1,
                                   .i2 = i2,
                                   .io = io,
                                   .l1 = a.l,
                                   .l2 = b.l,
                                   .lo = o.l,
                                   .mul1 = a.mul,
                                   .mulo = o.mul,
                                   .off1 = in->off[i1],
                                   .off2 = sh->off[i2],
                                   .offo = out->off[io],
                                   .woff = tp->wnum};
                tp->wnum += a.mul * o.mul;
            }
    /* the 3j blocks, and c_io = sqrt((2 lo + 1) / Σ_{paths into io} mul1 · mul2) with mul2 = 1
     * (e3nn's "element" path normalisation with "component" irreps) */
    int coef_used = 0;
    for (int q = 0; q < tp->npath; q++) {
        ppd_tp_path *p = &tp->path[q];
        if (sh->r[p->i2].mul != 1)
            return ppd_fail(PPD_ERR_USAGE,
                            "tensor product: the second operand %s must have "
                            "multiplicity 1 in every block",
                            ppd_irreps_str(sh, b2, sizeof b2));
        int size = (2 * p->l1 + 1) * (2 * p->l2 + 1) * (2 * p->lo + 1);
        if (coef_used + size > PPD_TP_COEF_MAX)
            return ppd_fail(PPD_ERR_USAGE, "tensor product: more than %d Wigner-3j coefficients",
                            PPD_TP_COEF_MAX);
        double C[125];
        ppd_wigner_3j(p->l1, p->l2, p->lo, C);
        for (int i = 0; i < size; i++) tp->coef[coef_used + i] = (float)C[i];
        p->coff = coef_used;
        coef_used += size;
        int fan = 0;
        for (int r = 0; r < tp->npath; r++)
            if (tp->path[r].io == p->io) fan += tp->path[r].mul1;
        p->c = (float)sqrt((2.0 * p->lo + 1.0) / fan);
    }
    for (int io = 0; io < out->n; io++) {
        int has = 0;
        for (int q = 0; q < tp->npath; q++) has |= tp->path[q].io == io;
        if (!has)
            return ppd_fail(PPD_ERR_USAGE,
                            "tensor product %s x %s -> %s: output block %d has no path",
                            ppd_irreps_str(in, b1, sizeof b1), ppd_irreps_str(sh, b2, sizeof b2),
                            ppd_irreps_str(out, b3, sizeof b3), io);
    }
    return PPD_OK;
}

/* Edges [e0, e1): the per-edge bodies compiled for the CPU's vector width (kernels/hd.h). */
PPD_SIMD_CLONES static void forward_range(const ppd_tp *tp, float *msg, const float *h,
                                          const int64_t *send, const float *Y, const float *w,
                                          const float *wb, int64_t e0, int64_t e1) {
    int di = tp->in.dim, dy = tp->sh.dim, dout = tp->out.dim, W = tp->wnum;
    for (int64_t e = e0; e < e1; e++)
        ppd_tp_edge_forward(tp->path, tp->npath, tp->coef, dout, msg + e * dout, h + send[e] * di,
                            Y + e * dy, w + e * W, wb);
}

PPD_SIMD_CLONES static void backward_range(const ppd_tp *tp, float *dh_edge, float *dw,
                                           float *dwb_local, const float *dmsg, const float *h,
                                           const int64_t *send, const float *Y, const float *w,
                                           const float *wb, int64_t e0, int64_t e1) {
    int di = tp->in.dim, dy = tp->sh.dim, dout = tp->out.dim, W = tp->wnum;
    for (int64_t e = e0; e < e1; e++)
        ppd_tp_edge_backward(tp->path, tp->npath, tp->coef, di, dh_edge + e * di, dw + e * W,
                             dwb_local, dmsg + e * dout, h + send[e] * di, Y + e * dy, w + e * W,
                             wb);
}

/* Edges split into one contiguous range per thread (the same ranges every call). */
static void thread_range(int64_t E, int64_t *e0, int64_t *e1) {
    int nt = 1, id = 0;
#ifdef _OPENMP
    nt = omp_get_num_threads();
    id = omp_get_thread_num();
#endif
    int64_t per = (E + nt - 1) / nt;
    *e0 = per * id < E ? per * id : E;
    *e1 = *e0 + per < E ? *e0 + per : E;
}

void ppd_tp_forward(const ppd_tp *tp, float *msg, const float *h, const int64_t *send,
                    const float *Y, const float *w, const float *wb, int64_t E) {
    // msg: (E, out.dim)   h: (N, in.dim)   send: (E)   Y: (E, sh.dim)   w: (E, wnum)   wb: (wnum)
    assert(E >= 0);
#pragma omp parallel if (E >= 256)
    {
        int64_t e0, e1;
        thread_range(E, &e0, &e1);
        forward_range(tp, msg, h, send, Y, w, wb, e0, e1);
    }
}

void ppd_tp_backward(const ppd_tp *tp, float *dh_edge, float *dw, float *dwb, const float *dmsg,
                     const float *h, const int64_t *send, const float *Y, const float *w,
                     const float *wb, int64_t E) {
    // dh_edge: (E, in.dim)   dw: (E, wnum)   dwb: (wnum)   dmsg: (E, out.dim); the rest as forward
    assert(E >= 0);
    int W = tp->wnum;
    enum { LOCAL_MAX = 4096 }; /* floats of a thread's bias-gradient sum on its stack (16 KB) */
    enum { MAX_THREADS = 256 };
    int max_threads = 1;
#ifdef _OPENMP
    max_threads = omp_get_max_threads();
#endif
    int local_ok = dwb && W <= LOCAL_MAX && max_threads <= MAX_THREADS;
    float *parts[MAX_THREADS];
#pragma omp parallel if (E >= 256)
    {
        /* each thread sums its edges' dw into its own copy of the bias gradient; the copies are
         * then added in thread order, so the result does not depend on timing */
        float local[LOCAL_MAX];
        int id = 0, nt = 1;
#ifdef _OPENMP
        id = omp_get_thread_num();
        nt = omp_get_num_threads();
#endif
        int mine = local_ok;
        if (mine) memset(local, 0, sizeof(float) * (size_t)W);
        parts[id < MAX_THREADS ? id : 0] = local;
        int64_t e0, e1;
        thread_range(E, &e0, &e1);
        backward_range(tp, dh_edge, dw, mine ? local : NULL, dmsg, h, send, Y, w, wb, e0, e1);
#pragma omp barrier
#pragma omp single
        if (mine)
            for (int t = 0; t < nt; t++)
                for (int i = 0; i < W; i++) dwb[i] += parts[t][i];
    }
    if (dwb && !local_ok) /* wider than the stack copy: one pass over dw, columns split */
#pragma omp parallel for schedule(static)
        for (int i = 0; i < W; i++) {
            float sum = 0.0f;
            for (int64_t e = 0; e < E; e++) sum += dw[e * W + i];
            dwb[i] += sum;
        }
}
