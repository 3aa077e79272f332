/* kNN graph: the grid search equals the brute force bit for bit, on synthetic point sets built
 * to break grids (lines, planes, duplicates, lattice ties, clusters, extreme coordinates) and on
 * real CA chains, whose expected graphs were computed independently (tests/ref/knn_ref.py). */
#include "../test.h"

#include "ppdock/arena.h"
#include "ppdock/knn.h"
#include "ppdock/rng.h"
#include "ppdock/status.h"

#include <stdint.h>
#include <stdlib.h>

/* Run both implementations on pos[n][3] and compare every edge. Returns 0 when equal; records
 * a failure naming the first difference otherwise. */
static int knn_compare(const char *what, const float *pos, int32_t n, int32_t k) {
    int64_t E = ppd_knn_edge_count(n, k);
    size_t sz = (size_t)(E > 0 ? E : 1) * sizeof(int32_t);
    int32_t *s1 = malloc(sz), *d1 = malloc(sz), *s2 = malloc(sz), *d2 = malloc(sz);
    ppd_arena a;
    int bad = 0;
    if (ppd_arena_init(&a, 0, 1) != PPD_OK) abort();
    if (ppd_knn_graph(pos, n, k, s1, d1, &a) != PPD_OK) {
        ppt_fail(__FILE__, __LINE__, "%s n=%d k=%d: ppd_knn_graph: %s", what, n, k, ppd_errmsg());
        bad = 1;
    } else if (ppd_knn_graph_brute(pos, n, k, s2, d2) != PPD_OK) {
        ppt_fail(__FILE__, __LINE__, "%s n=%d k=%d: brute: %s", what, n, k, ppd_errmsg());
        bad = 1;
    }
    for (int64_t e = 0; e < E && !bad; e++)
        if (s1[e] != s2[e] || d1[e] != d2[e]) {
            ppt_fail(__FILE__, __LINE__, "%s n=%d k=%d: edge %lld is %d->%d, brute force %d->%d",
                     what, n, k, (long long)e, s1[e], d1[e], s2[e], d2[e]);
            bad = 1;
        }
    ppd_arena_free(&a);
    free(s1), free(d1), free(s2), free(d2);
    return bad;
}

static float *uniform_points(uint64_t seed, int32_t n, double side) {
    ppd_rng r;
    ppd_rng_seed(&r, seed);
    float *p = malloc((size_t)(n > 0 ? n : 1) * 3 * sizeof *p);
    for (int32_t i = 0; i < 3 * n; i++) p[i] = (float)(side * ppd_rng_uniform(&r));
    return p;
}

TEST(knn_brute_hand_example) {
    /* Points on the x axis at 0, 1, 3, 4, 4 (the last two coincide). Nearest first, ties by
     * index: 0 -> 1 2; 1 -> 0 2; 2 -> 3 4 (both at 1); 3 -> 4 (0) 2 (1); 4 -> 3 (0) 2 (1). */
    const float pos[] = {0, 0, 0, 1, 0, 0, 3, 0, 0, 4, 0, 0, 4, 0, 0};
    const int32_t want[] = {1, 2, 0, 2, 3, 4, 4, 2, 3, 2};
    int32_t src[10], dst[10];
    REQUIRE_OK(ppd_knn_graph_brute(pos, 5, 2, src, dst));
    for (int e = 0; e < 10; e++) {
        CHECK_EQ(src[e], want[e]);
        CHECK_EQ(dst[e], e / 2);
    }
    ppd_arena a;
    REQUIRE_OK(ppd_arena_init(&a, 1 << 16, 0));
    REQUIRE_OK(ppd_knn_graph(pos, 5, 2, src, dst, &a));
    for (int e = 0; e < 10; e++) {
        CHECK_EQ(src[e], want[e]);
        CHECK_EQ(dst[e], e / 2);
    }
    ppd_arena_free(&a);
}

TEST(knn_uniform_random_matches_brute) {
    const int32_t ns[] = {2, 3, 7, 21, 22, 100, 500, 2000};
    const int32_t ks[] = {1, 4, 20, 50};
    for (size_t a = 0; a < sizeof ns / sizeof ns[0]; a++)
        for (size_t b = 0; b < sizeof ks / sizeof ks[0]; b++) {
            float *p = uniform_points(1000 + a * 10 + b, ns[a], 50.0);
            knn_compare("uniform", p, ns[a], ks[b]);
            free(p);
        }
    /* A box much longer on one axis than the others (a few cells thick). */
    float *p = uniform_points(7, 3000, 1.0);
    for (int32_t i = 0; i < 3000; i++) p[3 * i] *= 400.0f, p[3 * i + 1] *= 3.0f;
    knn_compare("slab", p, 3000, 20);
    free(p);
}

TEST(knn_clustered_matches_brute) {
    /* Tight clusters far apart (most grid cells empty, a few crowded), plus lone outliers whose
     * neighbours are many shells away. */
    ppd_rng r;
    ppd_rng_seed(&r, 99);
    int32_t n = 1500;
    float *p = malloc((size_t)n * 3 * sizeof *p);
    for (int32_t i = 0; i < n; i++) {
        int cl = (int)ppd_rng_below(&r, 6);
        for (int d = 0; d < 3; d++) {
            double centre = (cl * 37 + d * 11) % 100 * 10.0;
            p[3 * i + d] = (float)(centre + 0.5 * ppd_rng_normal(&r));
        }
    }
    for (int32_t i = 0; i < 5; i++)
        for (int d = 0; d < 3; d++) p[3 * i + d] = (float)(1000 * ppd_rng_uniform(&r));
    knn_compare("clustered", p, n, 20);
    knn_compare("clustered", p, n, 7);
    knn_compare("clustered", p, 300, 30);
    free(p);
}

TEST(knn_line_and_plane_match_brute) {
    int32_t n = 1200;
    float *p = malloc((size_t)n * 3 * sizeof *p);
    /* Exactly on the x axis, evenly spaced: every centre has equidistant pairs (ties). */
    for (int32_t i = 0; i < n; i++)
        p[3 * i] = (float)(0.5 * i), p[3 * i + 1] = 2, p[3 * i + 2] = -1;
    knn_compare("axis line", p, n, 20);
    knn_compare("axis line", p, n, 1);
    /* A skew line (rounding makes it not quite straight), points in random order. */
    ppd_rng r;
    ppd_rng_seed(&r, 5);
    for (int32_t i = 0; i < n; i++) {
        double t = 300 * ppd_rng_uniform(&r);
        p[3 * i] = (float)(1 + 0.3 * t), p[3 * i + 1] = (float)(-2 + 0.5 * t);
        p[3 * i + 2] = (float)(7 - 0.8 * t);
    }
    knn_compare("skew line", p, n, 20);
    /* The plane z = 3 with random x, y; then a tilted plane. */
    for (int32_t i = 0; i < n; i++) {
        p[3 * i] = (float)(40 * ppd_rng_uniform(&r));
        p[3 * i + 1] = (float)(40 * ppd_rng_uniform(&r));
        p[3 * i + 2] = 3;
    }
    knn_compare("flat plane", p, n, 20);
    for (int32_t i = 0; i < n; i++) p[3 * i + 2] = 0.25f * p[3 * i] - 0.5f * p[3 * i + 1];
    knn_compare("tilted plane", p, n, 16);
    /* A line with a tiny jitter off it (thinner than a cell, but not flat). */
    for (int32_t i = 0; i < n; i++) {
        p[3 * i] = (float)(0.7 * i);
        p[3 * i + 1] = (float)(1e-4 * ppd_rng_normal(&r));
        p[3 * i + 2] = (float)(1e-4 * ppd_rng_normal(&r));
    }
    knn_compare("jittered line", p, n, 20);
    free(p);
}

TEST(knn_duplicates_and_lattice_ties_match_brute) {
    /* An integer lattice 9x8x7, each site three times: distance 0 to two copies, then shells of
     * many exactly equal distances, so nearly every choice is a tie broken by index. */
    int32_t n = 9 * 8 * 7 * 3, m = 0;
    float *p = malloc((size_t)n * 3 * sizeof *p);
    for (int copy = 0; copy < 3; copy++)
        for (int x = 0; x < 9; x++)
            for (int y = 0; y < 8; y++)
                for (int z = 0; z < 7; z++, m++)
                    p[3 * m] = (float)x, p[3 * m + 1] = (float)y, p[3 * m + 2] = (float)z;
    knn_compare("lattice x3", p, n, 20);
    knn_compare("lattice x3", p, n, 2);
    knn_compare("lattice x3", p, n, 57);
    /* The same sites shuffled, so index order is unrelated to position. */
    ppd_rng r;
    ppd_rng_seed(&r, 11);
    for (int32_t i = n - 1; i > 0; i--) {
        int32_t j = (int32_t)ppd_rng_below(&r, (uint64_t)i + 1);
        for (int d = 0; d < 3; d++) {
            float t = p[3 * i + d];
            p[3 * i + d] = p[3 * j + d], p[3 * j + d] = t;
        }
    }
    knn_compare("shuffled lattice", p, n, 20);
    /* All points identical: every distance is 0, the neighbours are the smallest other indices. */
    for (int32_t i = 0; i < 3 * 300; i++) p[i] = 1.5f;
    knn_compare("all equal", p, 300, 20);
    int32_t src[300 * 20], dst[300 * 20];
    ppd_arena a;
    REQUIRE_OK(ppd_arena_init(&a, 0, 1));
    REQUIRE_OK(ppd_knn_graph(p, 300, 20, src, dst, &a));
    CHECK_EQ(src[0], 1);
    CHECK_EQ(src[19], 20);
    CHECK_EQ(src[5 * 20 + 4], 4);
    CHECK_EQ(src[5 * 20 + 5], 6);
    ppd_arena_free(&a);
    free(p);
}

TEST(knn_ties_on_cell_faces) {
    /* Equal-distance ties that straddle cell faces, which a search that stops, prunes or trims
     * at "distance <= bound" without care gets wrong. 30 points on one axis spanning 10 give a
     * grid edge of exactly 1 (one active axis, 30 / 3 points per cell over length 10:
     * exp(log 10 - log 10)), so faces fall on the integers. Points sit at 10, 9.5, ..., 0
     * (larger x = smaller index), then duplicates of the ends. A centre at c + 0.5 has two
     * neighbours at 0.5: x = c in its own cell and x = c + 1 on the face of the next cell, the
     * one with the smaller index, which must win the tie. (If the grid's density constant
     * changes, the test still checks ties, just not exactly on faces.) */
    float p[30 * 3] = {0};
    for (int axis = 0; axis < 3; axis++) {
        for (int32_t i = 0; i < 30; i++) {
            float x = i <= 20 ? 10.0f - 0.5f * (float)i : (i % 2 ? 0.0f : 10.0f);
            for (int d = 0; d < 3; d++) p[3 * i + d] = d == axis ? x : 0.0f;
        }
        for (int32_t k = 1; k <= 4; k++) knn_compare("face ties", p, 30, k);
        int32_t src[30], dst[30];
        REQUIRE_OK(ppd_knn_graph_brute(p, 30, 1, src, dst));
        CHECK_EQ(src[3], 2); /* centre x = 8.5: x = 9 (index 2) beats x = 8 (index 4) */
    }
}

TEST(knn_extreme_coordinates_match_brute) {
    /* Far from the origin with sub-millimetre spacing (cell faces computed near 1e5), huge and
     * tiny magnitudes, and mixed signs. */
    float *p = uniform_points(21, 800, 1.0);
    for (int32_t i = 0; i < 3 * 800; i++) p[i] = 1e5f + 0.01f * p[i];
    knn_compare("offset 1e5", p, 800, 20);
    for (int32_t i = 0; i < 3 * 800; i++) p[i] = (p[i] - 1e5f) * 1e32f;
    knn_compare("scale 1e30", p, 800, 20);
    float *q = uniform_points(22, 800, 2.0);
    for (int32_t i = 0; i < 3 * 800; i++) q[i] = (q[i] - 1.0f) * 1e-30f;
    knn_compare("scale 1e-30", q, 800, 20);
    free(p);
    free(q);
}

TEST(knn_small_n_and_large_k) {
    ppd_arena a;
    REQUIRE_OK(ppd_arena_init(&a, 0, 1));
    CHECK_EQ(ppd_knn_edge_count(0, 20), 0);
    CHECK_EQ(ppd_knn_edge_count(1, 20), 0);
    CHECK_EQ(ppd_knn_edge_count(5, 20), 20);
    CHECK_EQ(ppd_knn_edge_count(30, 20), 600);
    /* n = 0 and n = 1 write nothing, and need no output arrays. */
    CHECK_OK(ppd_knn_graph(NULL, 0, 20, NULL, NULL, &a));
    CHECK_OK(ppd_knn_graph_brute(NULL, 0, 20, NULL, NULL));
    const float one[3] = {1, 2, 3};
    CHECK_OK(ppd_knn_graph(one, 1, 20, NULL, NULL, &a));
    CHECK_OK(ppd_knn_graph_brute(one, 1, 20, NULL, NULL));
    /* n <= k: everyone is everyone's neighbour. */
    for (int32_t n = 2; n <= 22; n++) {
        float *p = uniform_points((uint64_t)n, n, 10.0);
        knn_compare("n<=k", p, n, 20);
        int32_t src[21 * 20], dst[21 * 20];
        if (n <= 21) {
            REQUIRE_OK(ppd_knn_graph(p, n, 20, src, dst, &a));
            for (int32_t i = 0; i < n; i++) {
                int seen[22] = {0};
                for (int32_t e = 0; e < n - 1; e++) seen[src[i * (n - 1) + e]]++;
                for (int32_t j = 0; j < n; j++) CHECK_EQ(seen[j], j != i);
            }
        }
        ppd_arena_reset(&a);
        free(p);
    }
    ppd_arena_free(&a);
}

TEST(knn_rejects_bad_input) {
    float p[4 * 3] = {0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3};
    int32_t src[12], dst[12];
    ppd_arena a;
    REQUIRE_OK(ppd_arena_init(&a, 0, 1));
    CHECK_EQ(ppd_knn_graph(p, 4, 0, src, dst, &a), PPD_ERR_USAGE);
    CHECK_EQ(ppd_knn_graph_brute(p, 4, 0, src, dst), PPD_ERR_USAGE);
    CHECK_EQ(ppd_knn_graph(p, -1, 3, src, dst, &a), PPD_ERR_USAGE);
    CHECK_EQ(ppd_knn_graph_brute(p, -1, 3, src, dst), PPD_ERR_USAGE);
    p[2 * 3 + 1] = NAN;
    CHECK_EQ(ppd_knn_graph(p, 4, 3, src, dst, &a), PPD_ERR_FORMAT);
    CHECK_ERRMSG_HAS("point 2");
    CHECK_EQ(ppd_knn_graph_brute(p, 4, 3, src, dst), PPD_ERR_FORMAT);
    CHECK_ERRMSG_HAS("point 2");
    p[2 * 3 + 1] = 2;
    p[3 * 3 + 2] = -INFINITY;
    CHECK_EQ(ppd_knn_graph(p, 4, 3, src, dst, &a), PPD_ERR_FORMAT);
    CHECK_ERRMSG_HAS("point 3");
    /* A fixed arena too small for the grid reports NOMEM instead of writing past it. */
    ppd_arena tiny;
    REQUIRE_OK(ppd_arena_init(&tiny, 16, 0));
    p[3 * 3 + 2] = 3;
    CHECK_EQ(ppd_knn_graph(p, 4, 3, src, dst, &tiny), PPD_ERR_NOMEM);
    ppd_arena_free(&tiny);
    ppd_arena_free(&a);
}

TEST(knn_scratch_reaches_steady_state) {
    /* Per-item use: reset before each call; after the largest item, no more mallocs. */
    float *p = uniform_points(3, 2000, 30.0);
    int32_t *src = malloc(2000 * 20 * sizeof *src), *dst = malloc(2000 * 20 * sizeof *dst);
    ppd_arena a;
    REQUIRE_OK(ppd_arena_init(&a, 0, 1));
    for (int round = 0; round < 2; round++) {
        ppd_arena_reset(&a);
        REQUIRE_OK(ppd_knn_graph(p, 2000, 20, src, dst, &a));
    }
    uint64_t m = a.mallocs;
    for (int32_t n = 100; n <= 2000; n += 100) {
        ppd_arena_reset(&a);
        REQUIRE_OK(ppd_knn_graph(p, n, 20, src, dst, &a));
    }
    CHECK_EQ(a.mallocs, m);
    CHECK(a.high_water < (size_t)2000 * 80); /* O(n + cells): ~60 bytes a point */
    ppd_arena_free(&a);
    free(p), free(src), free(dst);
}

/* ---- real CA chains ------------------------------------------------------------------------- */

typedef struct {
    float *pos;
    int32_t n;
} ca_chain;

/* "x y z" lines; strtof rounds the decimals exactly as numpy.float32 does in knn_ref.py. */
static int read_ca(const char *name, ca_chain *c) {
    char rel[256];
    snprintf(rel, sizeof rel, "knn/%s.ca.txt", name);
    FILE *f = fopen(ppt_data(rel), "r");
    if (!f) return -1;
    size_t cap = 256;
    c->pos = malloc(cap * 3 * sizeof *c->pos);
    c->n = 0;
    char line[256];
    while (fgets(line, sizeof line, f)) {
        if ((size_t)c->n == cap) cap *= 2, c->pos = realloc(c->pos, cap * 3 * sizeof *c->pos);
        char *s = line, *end;
        for (int d = 0; d < 3; d++, s = end) {
            c->pos[3 * c->n + d] = strtof(s, &end);
            if (end == s) {
                fclose(f);
                return -1;
            }
        }
        c->n++;
    }
    fclose(f);
    return 0;
}

/* The k = 20 graph written by knn_ref.py: line i = the neighbours of centre i, in order. */
static int32_t *read_k20(const char *name, int32_t n) {
    char rel[256];
    snprintf(rel, sizeof rel, "knn/%s.k20.txt", name);
    FILE *f = fopen(ppt_data(rel), "r");
    if (!f) return NULL;
    int32_t *want = malloc((size_t)n * 20 * sizeof *want);
    for (int32_t e = 0; e < n * 20; e++)
        if (fscanf(f, "%d", &want[e]) != 1) {
            free(want);
            fclose(f);
            return NULL;
        }
    int extra;
    if (fscanf(f, "%d", &extra) == 1) free(want), want = NULL;
    fclose(f);
    return want;
}

static const char *chains[] = {"1R0R_r_b", "1HIA_r_b", "1EXB_r_b"};
static const int32_t chain_n[] = {274, 230, 1304};

TEST(knn_protein_chains_match_reference) {
    ppd_arena a;
    REQUIRE_OK(ppd_arena_init(&a, 0, 1));
    for (int c = 0; c < 3; c++) {
        ca_chain ch;
        REQUIRE(read_ca(chains[c], &ch) == 0);
        CHECK_EQ(ch.n, chain_n[c]);
        int32_t *want = read_k20(chains[c], ch.n);
        REQUIRE(want != NULL);
        size_t E = (size_t)ch.n * 20;
        int32_t *src = malloc(E * sizeof *src), *dst = malloc(E * sizeof *dst);
        ppd_arena_reset(&a);
        REQUIRE_OK(ppd_knn_graph(ch.pos, ch.n, 20, src, dst, &a));
        int bad = 0;
        for (size_t e = 0; e < E && !bad; e++)
            if (src[e] != want[e] || dst[e] != (int32_t)(e / 20)) {
                ppt_fail(__FILE__, __LINE__, "%s: edge %zu is %d->%d, reference %d->%d", chains[c],
                         e, src[e], dst[e], want[e], (int)(e / 20));
                bad = 1;
            }
        REQUIRE_OK(ppd_knn_graph_brute(ch.pos, ch.n, 20, src, dst));
        for (size_t e = 0; e < E && !bad; e++)
            if (src[e] != want[e]) {
                ppt_fail(__FILE__, __LINE__, "%s: brute edge %zu is %d, reference %d", chains[c], e,
                         src[e], want[e]);
                bad = 1;
            }
        knn_compare(chains[c], ch.pos, ch.n, 8);
        knn_compare(chains[c], ch.pos, ch.n, 64);
        free(src), free(dst), free(want), free(ch.pos);
    }
    ppd_arena_free(&a);
}

static double dist2(const float *p, int32_t i, int32_t j) {
    double s = 0;
    for (int d = 0; d < 3; d++) {
        double t = (double)p[3 * i + d] - (double)p[3 * j + d];
        s += t * t;
    }
    return s;
}

TEST(knn_protein_chains_properties) {
    /* Properties that do not lean on either implementation: edge counts, no self loops, sorted
     * lists, and no non-neighbour closer than the k-th neighbour (direct O(n^2) scan). */
    const int32_t ks[] = {20, 5};
    ppd_arena a;
    REQUIRE_OK(ppd_arena_init(&a, 0, 1));
    for (int c = 0; c < 3; c++) {
        ca_chain ch;
        REQUIRE(read_ca(chains[c], &ch) == 0);
        for (int t = 0; t < 2; t++) {
            int32_t n = ch.n, k = ks[t];
            size_t E = (size_t)ppd_knn_edge_count(n, k);
            int32_t *src = malloc(E * sizeof *src), *dst = malloc(E * sizeof *dst);
            int32_t *count = calloc((size_t)n, sizeof *count);
            char *is_nbr = calloc((size_t)n, 1);
            ppd_arena_reset(&a);
            REQUIRE_OK(ppd_knn_graph(ch.pos, n, k, src, dst, &a));
            for (size_t e = 0; e < E; e++) {
                REQUIRE(dst[e] >= 0 && dst[e] < n && src[e] >= 0 && src[e] < n);
                count[dst[e]]++;
                CHECK(src[e] != dst[e]);
            }
            int bad = 0;
            for (int32_t i = 0; i < n && !bad; i++) {
                if (count[i] != k) {
                    ppt_fail(__FILE__, __LINE__, "%s k=%d: centre %d has %d edges", chains[c], k, i,
                             count[i]);
                    bad = 1;
                }
                const int32_t *nb = src + (size_t)i * k;
                for (int32_t e = 0; e < k; e++) {
                    if (is_nbr[nb[e]]) bad = 1; /* a neighbour listed twice */
                    is_nbr[nb[e]] = 1;
                    if (e > 0 && dist2(ch.pos, i, nb[e]) < dist2(ch.pos, i, nb[e - 1])) bad = 1;
                }
                double kth = dist2(ch.pos, i, nb[k - 1]);
                for (int32_t j = 0; j < n; j++)
                    if (j != i && !is_nbr[j] && dist2(ch.pos, i, j) < kth) {
                        ppt_fail(__FILE__, __LINE__,
                                 "%s k=%d: centre %d: non-neighbour %d is closer (%.6f) than the "
                                 "k-th (%.6f)",
                                 chains[c], k, i, j, sqrt(dist2(ch.pos, i, j)), sqrt(kth));
                        bad = 1;
                        break;
                    }
                for (int32_t e = 0; e < k; e++) is_nbr[nb[e]] = 0;
                if (bad && !ppt_failed_now())
                    ppt_fail(__FILE__, __LINE__, "%s k=%d: centre %d: duplicate or unsorted list",
                             chains[c], k, i);
            }
            free(src), free(dst), free(count), free(is_nbr);
        }
        free(ch.pos);
    }
    ppd_arena_free(&a);
}
