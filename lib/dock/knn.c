/* Exact k-nearest-neighbour graph on a uniform grid (see ppdock/knn.h).
 *
 * The points are bucketed into cubic cells by a counting sort whose cell ids run x-fastest, so
 * the points of any run of cells along x are one contiguous stretch of memory ("a row run").
 *
 * A query does not walk outward cell by cell. It picks a squared radius T that probably holds
 * k other points, gathers every point with d2 <= T (the rows of cells that reach the sphere,
 * each trimmed along x to the sphere's chord: a few contiguous runs, a branch-free append), and
 * if fewer than k came back it grows T fourfold and gathers again. Once at least k are in hand
 * the answer is exact: every point left out has d2 > T >= the k-th gathered one. The guess is
 * the previous centre's k-th squared distance times 1.5, capped by (r' + step)^2, which fails
 * only by rounding (the previous centre's ball, grown by the step, holds its k neighbours and
 * itself); centres are visited in cell order, so the step is short. The gathered candidates are
 * then grouped into buckets of d2 / T and fed in bucket order to an insertion-sorted list of the k
 * best by (d2, j): they arrive nearly sorted, so insertions shift little, and the walk stops at
 * the first bucket after which the list is full.
 *
 * Every range is widened by a slack far above the rounding of the grid arithmetic, so that a
 * point bucketed into the cell next to its own or a face computed an ulp off can never drop a
 * neighbour or a tie: the result is the brute force's, bit for bit.
 *
 * Measured (2.1 GHz VM, k = 20): ~2,000-2,400 cycles per centre on CA chains and uniform
 * points, flat in n. Worst case O(n^2): thousands of exact duplicates of one point (every one
 * of them is gathered for every centre among them); real CA sets have a handful at most. An outward
 * shell walk (cells or rows, stopping when the k-th best is below the next shell's distance)
 * was 1.3-1.5x slower: candidates arrive in random order, so about k(1 + ln(m/k)) of them are
 * inserted with k/2 shifts each, and the reject branch mispredicts.
 */
#include "ppdock/knn.h"

#include <math.h>
#include <stddef.h>
#include <string.h>

/* Points per cell the grid aims for (at the bounding box's density). Measured on CA chains and
 * uniform points with k = 20: 3 to 6 are within noise of each other; 1 is 15% slower (more
 * rows to trim), much more than 6 scans too many points per row. */
#define KNN_POINTS_PER_CELL 3.0
/* First guess T = this times the previous centre's k-th squared distance (1.2 retries too
 * often, 2.0 gathers too many; both ~6% slower). */
#define KNN_GUESS_FACTOR 1.5
/* Buckets for ordering the gathered candidates; below this many candidates per list entry
 * (m <= kk * 5/4) plain insertion is cheaper. */
#define KNN_BUCKETS 32

/* The one squared distance both implementations use, so that they compare the same doubles.
 * The operands are float32 values widened to double; the library is built as ISO C11, where
 * GCC does not contract a*b + c into an FMA, so the rounding is the same everywhere. */
static inline double knn_d2(const double *a, const double *b) {
    double dx = a[0] - b[0], dy = a[1] - b[1], dz = a[2] - b[2];
    return dx * dx + dy * dy + dz * dz;
}

/* (d, j) before (e, l) in the order of the contract: distance, then the smaller index. */
static inline int knn_before(double d, int32_t j, double e, int32_t l) {
    return d < e || (d == e && j < l);
}

static ppd_status knn_check_args(const float *pos, int32_t n, int32_t k, const int32_t *src,
                                 const int32_t *dst) {
    if (n < 0) return ppd_fail(PPD_ERR_USAGE, "knn graph: point count %d < 0", (int)n);
    if (k < 1) return ppd_fail(PPD_ERR_USAGE, "knn graph: k = %d, must be >= 1", (int)k);
    if (n > 0 && !pos) return ppd_fail(PPD_ERR_USAGE, "knn graph: no positions for %d points", n);
    if (ppd_knn_edge_count(n, k) > 0 && (!src || !dst))
        return ppd_fail(PPD_ERR_USAGE, "knn graph: no output arrays for %lld edges",
                        (long long)ppd_knn_edge_count(n, k));
    for (int32_t i = 0; i < n; i++) {
        const float *p = pos + 3 * (size_t)i;
        if (!isfinite(p[0]) || !isfinite(p[1]) || !isfinite(p[2]))
            return ppd_fail(PPD_ERR_FORMAT,
                            "knn graph: point %d has a non-finite coordinate (%g %g %g)", (int)i,
                            (double)p[0], (double)p[1], (double)p[2]);
    }
    return PPD_OK;
}

/* ---- reference ------------------------------------------------------------------------------ */

ppd_status ppd_knn_graph_brute(const float *pos, int32_t n, int32_t k, int32_t *src, int32_t *dst) {
    PPD_TRY(knn_check_args(pos, n, k, src, dst));
    int32_t kk = n - 1 < k ? n - 1 : k;
    if (kk <= 0) return PPD_OK;
    /* The neighbour list of centre i is built in place in src[i*kk ...], sorted by (d2, j); the
     * distances of listed points are recomputed from their indices, so no scratch is needed. */
    for (int32_t i = 0; i < n; i++) {
        int32_t *list = src + (size_t)i * kk;
        double qi[3] = {pos[3 * (size_t)i], pos[3 * (size_t)i + 1], pos[3 * (size_t)i + 2]};
        int32_t count = 0;
        double last = 0; /* squared distance of list[count - 1] */
        for (int32_t j = 0; j < n; j++) {
            if (j == i) continue;
            double pj[3] = {pos[3 * (size_t)j], pos[3 * (size_t)j + 1], pos[3 * (size_t)j + 2]};
            double d = knn_d2(qi, pj);
            if (count == kk && !knn_before(d, j, last, list[kk - 1])) continue;
            int32_t p = count < kk ? count++ : kk - 1;
            while (p > 0) {
                const float *o = pos + 3 * (size_t)list[p - 1];
                double po[3] = {o[0], o[1], o[2]};
                if (!knn_before(d, j, knn_d2(qi, po), list[p - 1])) break;
                list[p] = list[p - 1];
                p--;
            }
            list[p] = j;
            const float *l = pos + 3 * (size_t)list[count - 1];
            double pl[3] = {l[0], l[1], l[2]};
            last = knn_d2(qi, pl);
        }
        for (int32_t e = 0; e < kk; e++) dst[(size_t)i * kk + e] = i;
    }
    return PPD_OK;
}

/* ---- grid ----------------------------------------------------------------------------------- */

typedef struct {
    double origin[3]; /* lower corner: the bounding-box minimum */
    double h, inv_h;  /* cell edge */
    int32_t nc[3];    /* cells per axis (1 on an axis thinner than a cell) */
    int32_t *start;   /* [ncells + 1]: the points of cell c are sorted[start[c] .. start[c+1]) */
    double *xyz;      /* [n][3] positions in cell order, widened to double */
    int32_t *idx;     /* [n] original index of each sorted point */
    int32_t *cell;    /* [n] cell of each original point (for the counting sort) */
    double slack;     /* distance by which rounding may misplace a point or a cell face */
} knn_grid;

/* Cell edge from the density of the bounding box: the box volume over the axes that are at
 * least one cell thick, divided into about n / KNN_POINTS_PER_CELL cells. An axis thinner than a
 * cell (points on a line or a plane, or exactly flat) is dropped and the edge recomputed over
 * the remaining axes; with no axis left (all points equal) a single cell holds everything. Logs
 * keep extreme extents (1e-40 .. 1e38) from under- or overflowing. */
static double knn_cell_edge(const double ext[3], int32_t n) {
    int active[3] = {ext[0] > 0, ext[1] > 0, ext[2] > 0};
    double h = 1;
    for (int iter = 0; iter < 4; iter++) {
        double logv = 0;
        int dims = 0;
        for (int d = 0; d < 3; d++)
            if (active[d]) logv += log(ext[d]), dims++;
        if (dims == 0) return 1;
        h = exp((logv - log((double)n / KNN_POINTS_PER_CELL)) / dims);
        int dropped = 0;
        for (int d = 0; d < 3; d++)
            if (active[d] && ext[d] < h) active[d] = 0, dropped = 1;
        if (!dropped) break;
    }
    return h;
}

/* Bounding box, cell edge and cell counts. The cell count is kept O(n): each active axis has
 * ext/h + 1 <= 2 ext/h cells, so about 8 n / KNN_POINTS_PER_CELL at most; the loop only guards
 * against rounding in the edge computation (and keeps cell ids inside int32). */
static void knn_grid_shape(knn_grid *g, const float *pos, int32_t n) {
    double lo[3], hi[3];
    for (int d = 0; d < 3; d++) lo[d] = hi[d] = pos[d];
    for (int32_t i = 1; i < n; i++)
        for (int d = 0; d < 3; d++) {
            double v = pos[3 * (size_t)i + d];
            if (v < lo[d]) lo[d] = v;
            if (v > hi[d]) hi[d] = v;
        }
    double ext[3], mag = 0;
    for (int d = 0; d < 3; d++) {
        ext[d] = hi[d] - lo[d];
        g->origin[d] = lo[d];
        mag = fmax(mag, fmax(fabs(lo[d]), fabs(hi[d])));
    }
    double h = knn_cell_edge(ext, n);
    double max_cells = fmin(8.0 * n / KNN_POINTS_PER_CELL + 64, 1 << 30);
    for (;;) {
        double cells = 1;
        for (int d = 0; d < 3; d++) {
            double c = floor(ext[d] / h) + 1;
            cells *= c;
            g->nc[d] = c < 2147483647.0 ? (int32_t)c : 2147483647;
        }
        if (cells <= max_cells) break;
        h *= 1.25;
    }
    g->h = h;
    g->inv_h = 1 / h;
    /* Positions, faces and cell indices are computed in double from float32 inputs: errors are a
     * few ulp of the largest magnitude involved. 1e-12 of it is a thousandfold margin. */
    g->slack = 1e-12 * (mag + fmax(ext[0], fmax(ext[1], ext[2])) + h);
}

/* The cell along axis d holding coordinate v, clamped to the grid (v may be +-inf). Truncation
 * is floor for c > 0 and, unlike floor() on baseline x86-64, is not a libm call. */
static inline int32_t knn_cell_of(const knn_grid *g, int d, double v) {
    double c = (v - g->origin[d]) * g->inv_h;
    if (!(c > 0)) return 0;
    if (c >= g->nc[d] - 1) return g->nc[d] - 1;
    return (int32_t)c;
}

static ppd_status knn_grid_build(knn_grid *g, const float *pos, int32_t n, ppd_arena *a) {
    knn_grid_shape(g, pos, n);
    size_t ncells = (size_t)g->nc[0] * g->nc[1] * g->nc[2];
    void *p;
    PPD_TRY(ppd_arena_alloc_st(a, (ncells + 1) * sizeof *g->start, 64, &p));
    g->start = p;
    PPD_TRY(ppd_arena_alloc_st(a, (size_t)n * 3 * sizeof *g->xyz, 64, &p));
    g->xyz = p;
    PPD_TRY(ppd_arena_alloc_st(a, (size_t)n * sizeof *g->idx, 64, &p));
    g->idx = p;
    PPD_TRY(ppd_arena_alloc_st(a, (size_t)n * sizeof *g->cell, 64, &p));
    g->cell = p;

    /* Counting sort by cell: count, prefix sum, scatter (stable: index order within a cell),
     * after which start[c] has moved to the end of cell c and is shifted back. */
    for (size_t c = 0; c <= ncells; c++) g->start[c] = 0;
    for (int32_t i = 0; i < n; i++) {
        const float *q = pos + 3 * (size_t)i;
        int32_t c = (knn_cell_of(g, 2, q[2]) * g->nc[1] + knn_cell_of(g, 1, q[1])) * g->nc[0] +
                    knn_cell_of(g, 0, q[0]);
        g->cell[i] = c;
        g->start[c + 1]++;
    }
    for (size_t c = 0; c < ncells; c++) g->start[c + 1] += g->start[c];
    for (int32_t i = 0; i < n; i++) {
        int32_t s = g->start[g->cell[i]]++;
        for (int d = 0; d < 3; d++) g->xyz[3 * (size_t)s + d] = pos[3 * (size_t)i + d];
        g->idx[s] = i;
    }
    for (size_t c = ncells; c > 0; c--) g->start[c] = g->start[c - 1];
    g->start[0] = 0;
    return PPD_OK;
}

/* ---- gather --------------------------------------------------------------------------------- */

/* Gap along axis d between coordinate v and cell c, less the slack, at least 0: a lower bound
 * on |v - w| for any point w bucketed into that cell. */
static inline double knn_gap(const knn_grid *g, int d, double v, int32_t c) {
    double lo = g->origin[d] + c * g->h, gap = 0;
    if (v < lo)
        gap = lo - v;
    else if (v > lo + g->h)
        gap = v - (lo + g->h);
    gap -= g->slack;
    return gap > 0 ? gap : 0;
}

/* Append every point j != i with knn_d2(q, p_j) <= T to cd/cj (capacity n); return how many.
 * Scanned: each row of cells (y, z) whose gap to q is within sqrt(T), along x from the cell of
 * q.x - w to that of q.x + w, w the sphere's half-chord over that row, all widened by the slack
 * (and T by the rounding of a squared sum), so no point with d2 <= T is missed. T may be inf. */
static int32_t knn_gather(const knn_grid *g, const double q[3], int32_t i, double T, double *cd,
                          int32_t *cj) {
    double T2 = T * (1 + 1e-12), pad = 2 * g->slack, R = sqrt(T2);
    int32_t m = 0;
    int32_t z0 = knn_cell_of(g, 2, q[2] - R - pad), z1 = knn_cell_of(g, 2, q[2] + R + pad);
    for (int32_t z = z0; z <= z1; z++) {
        double gz = knn_gap(g, 2, q[2], z), rz = T2 - gz * gz;
        if (rz < 0) continue;
        double wy = sqrt(rz);
        int32_t y0 = knn_cell_of(g, 1, q[1] - wy - pad), y1 = knn_cell_of(g, 1, q[1] + wy + pad);
        for (int32_t y = y0; y <= y1; y++) {
            double gy = knn_gap(g, 1, q[1], y), ry = rz - gy * gy;
            if (ry < 0) continue;
            double wx = sqrt(ry);
            int32_t x0 = knn_cell_of(g, 0, q[0] - wx - pad);
            int32_t x1 = knn_cell_of(g, 0, q[0] + wx + pad);
            int32_t row = (z * g->nc[1] + y) * g->nc[0];
            int32_t b = g->start[row + x0], e = g->start[row + x1 + 1];
            /* Write every point, keep it by advancing m: no branch to mispredict. m <= n - 1
             * before each write, so the writes stay inside the buffers. */
            for (int32_t p = b; p < e; p++) {
                double d = knn_d2(q, g->xyz + 3 * (size_t)p);
                int32_t j = g->idx[p];
                cd[m] = d;
                cj[m] = j;
                m += (d <= T) & (j != i);
            }
        }
    }
    return m;
}

/* ---- select --------------------------------------------------------------------------------- */

typedef struct {
    int32_t kk, count;
    uint64_t *best_k; /* [kk] the list, sorted by (d2, j); d2 as knn_key */
    int32_t *best_j;
    double *cd; /* [n] gathered candidates: squared distance and index */
    int32_t *cj;
    double *sd; /* [n] the same, grouped by bucket */
    int32_t *sj;
    uint8_t *cb; /* [n] bucket of each candidate */
} knn_work;

/* The bit pattern of a squared distance. For doubles >= +0 (knn_d2 never gives -0: x - x is +0)
 * these order as the values do, and integer compares need no NaN care, which keeps the
 * insertion loop tight. */
static inline uint64_t knn_key(double d) {
    uint64_t u;
    memcpy(&u, &d, sizeof u);
    return u;
}

/* Offer (d, j) to the list: insert it in (d2, j) order if the list has room or it beats the
 * last entry, which then falls off. */
static inline void knn_offer(knn_work *W, double d, int32_t j) {
    uint64_t key = knn_key(d);
    int32_t p;
    if (W->count < W->kk) {
        p = W->count++;
    } else {
        uint64_t lk = W->best_k[W->kk - 1];
        if (key > lk || (key == lk && j > W->best_j[W->kk - 1])) return;
        p = W->kk - 1;
    }
    for (; p > 0; p--) {
        uint64_t pk = W->best_k[p - 1];
        if (pk < key || (pk == key && W->best_j[p - 1] < j)) break;
        W->best_k[p] = pk;
        W->best_j[p] = W->best_j[p - 1];
    }
    W->best_k[p] = key;
    W->best_j[p] = j;
}

/* The kk first of the m gathered candidates (all with d2 <= T) in (d2, j) order, into the list.
 * Candidates are first grouped by bucket floor(d2 / T * KNN_BUCKETS): the bucket is monotone in
 * d2, so a later bucket's candidates are all strictly farther than an earlier one's, and once
 * the list is full at the end of a bucket it is final. */
static void knn_select(knn_work *W, int32_t m, double T) {
    W->count = 0;
    if (!(T > 0) || T == INFINITY || m <= W->kk + W->kk / 4) {
        for (int32_t e = 0; e < m; e++) knn_offer(W, W->cd[e], W->cj[e]);
        return;
    }
    int32_t first[KNN_BUCKETS + 1] = {0}, fill[KNN_BUCKETS];
    double scale = KNN_BUCKETS / T;
    for (int32_t e = 0; e < m; e++) {
        int b = (int)(W->cd[e] * scale); /* d2 <= T: at most KNN_BUCKETS (rounding) */
        b = b < KNN_BUCKETS - 1 ? b : KNN_BUCKETS - 1;
        W->cb[e] = (uint8_t)b;
        first[b + 1]++;
    }
    for (int b = 0; b < KNN_BUCKETS; b++) first[b + 1] += first[b];
    memcpy(fill, first, sizeof fill);
    for (int32_t e = 0; e < m; e++) {
        int32_t t = fill[W->cb[e]]++;
        W->sd[t] = W->cd[e];
        W->sj[t] = W->cj[e];
    }
    for (int b = 0; b < KNN_BUCKETS && W->count < W->kk; b++)
        for (int32_t t = first[b]; t < first[b + 1]; t++) knn_offer(W, W->sd[t], W->sj[t]);
}

/* ---- graph ---------------------------------------------------------------------------------- */

static ppd_status knn_work_alloc(knn_work *W, int32_t n, int32_t kk, ppd_arena *a) {
    void *p;
    W->kk = kk;
    PPD_TRY(ppd_arena_alloc_st(a, (size_t)kk * sizeof *W->best_k, 64, &p));
    W->best_k = p;
    PPD_TRY(ppd_arena_alloc_st(a, (size_t)kk * sizeof *W->best_j, 64, &p));
    W->best_j = p;
    PPD_TRY(ppd_arena_alloc_st(a, (size_t)n * sizeof *W->cd, 64, &p));
    W->cd = p;
    PPD_TRY(ppd_arena_alloc_st(a, (size_t)n * sizeof *W->cj, 64, &p));
    W->cj = p;
    PPD_TRY(ppd_arena_alloc_st(a, (size_t)n * sizeof *W->sd, 64, &p));
    W->sd = p;
    PPD_TRY(ppd_arena_alloc_st(a, (size_t)n * sizeof *W->sj, 64, &p));
    W->sj = p;
    PPD_TRY(ppd_arena_alloc_st(a, (size_t)n * sizeof *W->cb, 64, &p));
    W->cb = p;
    return PPD_OK;
}

ppd_status ppd_knn_graph(const float *pos, int32_t n, int32_t k, int32_t *src, int32_t *dst,
                         ppd_arena *scratch) {
    PPD_TRY(knn_check_args(pos, n, k, src, dst));
    int32_t kk = n - 1 < k ? n - 1 : k;
    if (kk <= 0) return PPD_OK;
    if (!scratch) return ppd_fail(PPD_ERR_USAGE, "knn graph: no scratch arena");

    knn_grid g;
    PPD_TRY(knn_grid_build(&g, pos, n, scratch));
    knn_work W = {0};
    PPD_TRY(knn_work_alloc(&W, n, kk, scratch));

    /* Past the grid's diagonal a radius holds everything: search with T = inf instead. */
    double diag2 = 0;
    for (int d = 0; d < 3; d++) diag2 += (g.nc[d] * g.h) * (g.nc[d] * g.h);
    /* First centre: the radius whose ball holds ~2 kk points at the box density. */
    double T0 = g.h * g.h * pow(0.5 * kk / KNN_POINTS_PER_CELL, 2.0 / 3.0);
    double kth = 0, prev[3] = {0, 0, 0};

    /* Centres in cell order: consecutive centres are close (a good guess, warm cache). */
    for (int32_t s = 0; s < n; s++) {
        int32_t i = g.idx[s];
        const double *q = g.xyz + 3 * (size_t)s;
        double T = T0;
        if (s > 0) {
            double r = sqrt(kth) + sqrt(knn_d2(q, prev));
            T = fmin(KNN_GUESS_FACTOR * kth, r * r * (1 + 1e-9));
        }
        int32_t m;
        while ((m = knn_gather(&g, q, i, T, W.cd, W.cj)) < kk)
            T = T >= diag2 ? INFINITY : T > 0 ? 4 * T : g.h * g.h;
        knn_select(&W, m, T);
        uint64_t u = W.best_k[kk - 1];
        memcpy(&kth, &u, sizeof kth);
        memcpy(prev, q, sizeof prev);
        for (int32_t e = 0; e < kk; e++) {
            src[(size_t)i * kk + e] = W.best_j[e];
            dst[(size_t)i * kk + e] = i;
        }
    }
    return PPD_OK;
}
