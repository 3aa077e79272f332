/* Irreps and the per-edge-weighted tensor product, CPU reference (ppdock/tp.h). */
#include "ppdock/tp.h"

#include "ppdock/kernels/tp.h"
#include "ppdock/so3.h"

#include <assert.h>
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

void ppd_tp_forward(const ppd_tp *tp, float *msg, const float *h, const int64_t *send,
                    const float *Y, const float *w, int64_t E) {
    // msg: (E, out.dim)   h: (N, in.dim)   send: (E)   Y: (E, sh.dim)   w: (E, wnum)
    assert(E >= 0);
    int di = tp->in.dim, dy = tp->sh.dim, dout = tp->out.dim, W = tp->wnum;
#pragma omp parallel for schedule(static) if (E >= 256)
    for (int64_t e = 0; e < E; e++)
        ppd_tp_edge_forward(tp->path, tp->npath, tp->coef, dout, msg + e * dout, h + send[e] * di,
                            Y + e * dy, w + e * W);
}

void ppd_tp_backward(const ppd_tp *tp, float *dh_edge, float *dw, const float *dmsg, const float *h,
                     const int64_t *send, const float *Y, const float *w, int64_t E) {
    // dh_edge: (E, in.dim)   dw: (E, wnum)   dmsg: (E, out.dim); the rest as forward
    assert(E >= 0);
    int di = tp->in.dim, dy = tp->sh.dim, dout = tp->out.dim, W = tp->wnum;
#pragma omp parallel for schedule(static) if (E >= 256)
    for (int64_t e = 0; e < E; e++)
        ppd_tp_edge_backward(tp->path, tp->npath, tp->coef, di, dh_edge + e * di, dw + e * W,
                             dmsg + e * dout, h + send[e] * di, Y + e * dy, w + e * W);
}
