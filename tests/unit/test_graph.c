/* Residue graphs of real complexes (tests/data/db5-mini) against the independent Biopython +
 * NumPy reference in tests/data/ref/graph (tests/ref/graph_ref.py). */
#include "../test.h"

#include "ppdock/graph.h"
#include "ppdock/pdb.h"

#include <stdlib.h>

typedef struct {
    int n, e;
    char seq[4096];
    float *pos;
    int *src; /* [n][min(20, n-1)] sources per destination */
} ref_side;

static int read_side(FILE *f, const char *want, ref_side *s) {
    char name[8];
    if (fscanf(f, " side %7s %d %d", name, &s->n, &s->e) != 3 || strcmp(name, want)) return 0;
    if (fscanf(f, " seq %4095s", s->seq) != 1) return 0;
    s->pos = malloc(sizeof(float) * 3 * (size_t)s->n);
    s->src = malloc(sizeof(int) * (size_t)(s->e ? s->e : 1));
    for (int i = 0; i < 3 * s->n; i++)
        if (fscanf(f, "%f", &s->pos[i]) != 1) return 0;
    for (int i = 0; i < s->e; i++)
        if (fscanf(f, "%d", &s->src[i]) != 1) return 0;
    return 1;
}

static void compare_side(const char *id, const char *which, const ppd_graph_side *g,
                         const ref_side *r) {
    if (g->n != r->n || g->n_edges != r->e) {
        ppt_fail(__FILE__, __LINE__, "%s %s: %d nodes / %lld edges, reference %d / %d", id, which,
                 g->n, (long long)g->n_edges, r->n, r->e);
        return;
    }
    if (memcmp(g->seq, r->seq, (size_t)r->n) != 0)
        ppt_fail(__FILE__, __LINE__, "%s %s: sequence differs", id, which);
    double worst = 0;
    for (int i = 0; i < 3 * r->n; i++) {
        double d = fabs((double)g->pos[i] - r->pos[i]);
        if (d > worst) worst = d;
    }
    if (worst > 2e-4)
        ppt_fail(__FILE__, __LINE__, "%s %s: centred positions differ by %g", id, which, worst);
    int per = r->n > 1 ? r->e / r->n : 0, bad = 0;
    for (int e = 0; e < r->e; e++)
        bad += g->src[e] != r->src[e] || g->dst[e] != (per ? e / per : 0);
    if (bad)
        ppt_fail(__FILE__, __LINE__, "%s %s: %d of %d edges differ from the reference", id, which,
                 bad, r->e);
}

static void check_complex(const char *id) {
    char path[256];
    snprintf(path, sizeof path, "ref/graph/%s.txt", id);
    FILE *f = fopen(ppt_data(path), "r");
    if (!f) {
        ppt_fail(__FILE__, __LINE__, "cannot open %s", ppt_data(path));
        return;
    }
    float c[3];
    ref_side rs = {0}, ls = {0};
    int ok = fscanf(f, " center %f %f %f", &c[0], &c[1], &c[2]) == 3 && read_side(f, "rec", &rs) &&
             read_side(f, "lig", &ls);
    fclose(f);
    if (!ok) {
        ppt_fail(__FILE__, __LINE__, "%s: malformed reference file", id);
        goto done;
    }
    ppd_arena a;
    ppd_arena_init(&a, 0, 1);
    ppd_buf raw = {0}, text = {0}, rec_buf = {0};
    ppd_protein rec, lig;
    ppd_pdb_options opts = {0};
    char rp[128], lp[128];
    snprintf(rp, sizeof rp, "db5-mini/structures/%s_r_b.pdb.gz", id);
    snprintf(lp, sizeof lp, "db5-mini/structures/%s_l_b.pdb.gz", id);
    if (ppd_pdb_read(ppt_data(rp), &opts, &raw, &text, &a, &rec) ||
        ppd_pdb_read(ppt_data(lp), &opts, &raw, &text, &a, &lig) ||
        ppd_graph_build_record(id, "train", &rec, &lig, 20, 1, 2, &a, &rec_buf)) {
        ppt_fail(__FILE__, __LINE__, "%s: %s", id, ppd_errmsg());
    } else {
        ppd_rec_view v;
        ppd_graph g;
        const char *check;
        if (ppd_rec_parse(rec_buf.data, rec_buf.len, id, strlen(id), 1, &v) ||
            ppd_graph_decode(&v, &g) || ppd_graph_validate(&g, 20, &check)) {
            ppt_fail(__FILE__, __LINE__, "%s: %s", id, ppd_errmsg());
        } else {
            for (int d = 0; d < 3; d++)
                if (fabs(g.center[d] - c[d]) > 1e-4)
                    ppt_fail(__FILE__, __LINE__, "%s: center[%d] %.6f vs reference %.6f", id, d,
                             g.center[d], c[d]);
            compare_side(id, "receptor", &g.rec, &rs);
            compare_side(id, "ligand", &g.lig, &ls);
        }
    }
    ppd_buf_free(&raw);
    ppd_buf_free(&text);
    ppd_buf_free(&rec_buf);
    ppd_arena_free(&a);
done:
    free(rs.pos);
    free(rs.src);
    free(ls.pos);
    free(ls.src);
}

TEST(graph_1R0R_matches_reference) {
    check_complex("1R0R");
}
TEST(graph_1HIA_matches_reference) {
    check_complex("1HIA");
}
TEST(graph_1R8S_matches_reference) {
    check_complex("1R8S");
}
TEST(graph_1FC2_matches_reference) {
    check_complex("1FC2");
}

TEST(graph_validate_names_broken_invariants) {
    float pos[3 * 4] = {0, 0, 0, 1, 0, 0, 0, 1, 0, -1, -1, 0};
    int32_t src[8] = {1, 2, 0, 2, 0, 1, 0, 1}, dst[8] = {0, 0, 1, 1, 2, 2, 3, 3};
    ppd_graph_side s = {.n = 4,
                        .n_edges = 8,
                        .pos = pos,
                        .src = src,
                        .dst = dst,
                        .seq = "AAAX",
                        .tokens = (const uint8_t[]){5, 5, 5, 3}};
    float center[3] = {0, 0, 0};
    ppd_graph g = {.rec = s, .lig = s, .center = center};
    const char *check;
    CHECK_OK(ppd_graph_validate(&g, 2, &check));
    src[3] = 1; /* self loop on node 1 */
    CHECK_EQ(ppd_graph_validate(&g, 2, &check), PPD_ERR_CORRUPT);
    CHECK_STR(check, "self-loop");
    src[3] = 7;
    CHECK_EQ(ppd_graph_validate(&g, 2, &check), PPD_ERR_CORRUPT);
    CHECK_STR(check, "edge-range");
    src[3] = 2;
    CHECK_EQ(ppd_graph_validate(&g, 3, &check), PPD_ERR_CORRUPT);
    CHECK_STR(check, "degree");
    pos[0] = 50; /* no longer receptor-centred */
    CHECK_EQ(ppd_graph_validate(&g, 2, &check), PPD_ERR_CORRUPT);
    CHECK_STR(check, "centred");
    pos[0] = NAN;
    CHECK_EQ(ppd_graph_validate(&g, 2, &check), PPD_ERR_CORRUPT);
    CHECK_STR(check, "finite");
    pos[0] = 0;
    g.rec.tokens = (const uint8_t[]){5, 5, 5, 5}; /* 'X' must be <unk> (3) */
    CHECK_EQ(ppd_graph_validate(&g, 2, &check), PPD_ERR_CORRUPT);
    CHECK_STR(check, "seq-tokens");
}
