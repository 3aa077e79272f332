/* Residue graphs of a complex (see ppdock/graph.h). */
#include "ppdock/graph.h"
#include "ppdock/hash.h"
#include "ppdock/knn.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

typedef struct {
    int pos, edge, seq, tok, rname, rnum, icode, chain;
} side_slots;

static ppd_status layout_side(ppd_rec_layout *l, const char *pfx, const ppd_protein *p, int k,
                              side_slots *s) {
    char nm[PPD_REC_NAME_LEN + 1];
    uint32_t n = (uint32_t)p->n;
    int64_t e = ppd_knn_edge_count(p->n, k);
    if (e > INT32_MAX)
        return ppd_fail(PPD_ERR_NOMEM, "%d residues x k=%d: too many edges for one record", p->n,
                        k);
#define ADD(slot, field, dt, nd, ...)                                                              \
    snprintf(nm, sizeof nm, "%s." field, pfx);                                                     \
    s->slot = ppd_rec_layout_add(l, nm, dt, nd, (const uint32_t[]){__VA_ARGS__});
    ADD(pos, "pos", PPD_DT_F32, 2, n, 3);
    ADD(edge, "edge_index", PPD_DT_I32, 2, 2, (uint32_t)e);
    ADD(seq, "seq", PPD_DT_U8, 1, n);
    ADD(tok, "tokens", PPD_DT_U8, 1, n);
    ADD(rname, "resname", PPD_DT_U8, 2, n, 4);
    ADD(rnum, "resnum", PPD_DT_I32, 1, n);
    ADD(icode, "icode", PPD_DT_U8, 1, n);
    ADD(chain, "chain", PPD_DT_U8, 1, n);
#undef ADD
    return PPD_OK;
}

static ppd_status fill_side(ppd_buf *v, const side_slots *s, const ppd_protein *p, const float c[3],
                            int k, ppd_arena *scratch) {
    int64_t e = ppd_knn_edge_count(p->n, k);
    int32_t *edges = ppd_rec_array_ptr(v, s->edge);
    /* DiffDock-PP builds the kNN graph before centring: same here, on the file coordinates. */
    PPD_TRY(ppd_knn_graph(p->pos, p->n, k, edges, edges + e, scratch));
    float *pos = ppd_rec_array_ptr(v, s->pos);
    for (int64_t i = 0; i < 3 * (int64_t)p->n; i++)
        pos[i] = p->pos[i] - c[i % 3]; /* float32, as torch */
    memcpy(ppd_rec_array_ptr(v, s->seq), p->seq, (size_t)p->n);
    memcpy(ppd_rec_array_ptr(v, s->tok), p->tokens, (size_t)p->n);
    memcpy(ppd_rec_array_ptr(v, s->rname), p->resname, (size_t)p->n * 4);
    memcpy(ppd_rec_array_ptr(v, s->rnum), p->resnum, (size_t)p->n * 4);
    memcpy(ppd_rec_array_ptr(v, s->icode), p->icode, (size_t)p->n);
    memcpy(ppd_rec_array_ptr(v, s->chain), p->chain, (size_t)p->n);
    return PPD_OK;
}

ppd_status ppd_graph_build_record(const char *key, const char *split, const ppd_protein *rec,
                                  const ppd_protein *lig, int knn_k, uint64_t inputs_digest,
                                  uint64_t params_hash, ppd_arena *scratch, ppd_buf *out) {
    if (rec->n < 1 || lig->n < 1)
        return ppd_fail(PPD_ERR_EMPTY, "%s: the %s has no residues with a CA atom", key,
                        rec->n < 1 ? "receptor" : "ligand");
    ppd_rec_layout l;
    ppd_rec_layout_init(&l, PPD_REC_GRAPH);
    side_slots rs, ls;
    PPD_TRY(layout_side(&l, "rec", rec, knn_k, &rs));
    PPD_TRY(layout_side(&l, "lig", lig, knn_k, &ls));
    size_t split_len = strlen(split);
    int sc = ppd_rec_layout_add(&l, "center", PPD_DT_F32, 2, (const uint32_t[]){1, 3});
    int si = ppd_rec_layout_add(&l, "inputs", PPD_DT_U64, 1, (const uint32_t[]){1});
    int sp = ppd_rec_layout_add(&l, "params", PPD_DT_U64, 1, (const uint32_t[]){1});
    int ss = ppd_rec_layout_add(&l, "split", PPD_DT_U8, 1, (const uint32_t[]){(uint32_t)split_len});
    if (rs.chain < 0 || ls.chain < 0 || ss < 0)
        return ppd_fail(PPD_ERR_INTERNAL, "graph record layout overflow");
    PPD_TRY(ppd_rec_layout_build(&l, out));

    /* Centre: mean receptor CA, accumulated in double and stored as float32 (torch's float32
     * mean differs by at most a few ulp). */
    double acc[3] = {0, 0, 0};
    for (int32_t i = 0; i < rec->n; i++)
        for (int d = 0; d < 3; d++) acc[d] += rec->pos[3 * i + d];
    float c[3];
    for (int d = 0; d < 3; d++) c[d] = (float)(acc[d] / rec->n);

    PPD_TRY(fill_side(out, &rs, rec, c, knn_k, scratch));
    PPD_TRY(fill_side(out, &ls, lig, c, knn_k, scratch));
    memcpy(ppd_rec_array_ptr(out, sc), c, sizeof c);
    memcpy(ppd_rec_array_ptr(out, si), &inputs_digest, 8);
    memcpy(ppd_rec_array_ptr(out, sp), &params_hash, 8);
    memcpy(ppd_rec_array_ptr(out, ss), split, split_len);
    ppd_rec_seal(out, key, strlen(key));
    return PPD_OK;
}

uint64_t ppd_graph_inputs_digest(uint64_t receptor_file_hash, uint64_t ligand_file_hash) {
    uint64_t both[2] = {receptor_file_hash, ligand_file_hash};
    return ppd_hash64(both, sizeof both);
}

/* ---- decoding ---------------------------------------------------------------------------------
 */

static ppd_status find_rows(const ppd_rec_view *v, const char *pfx, const char *field, int dt,
                            int nd, int64_t rows, uint32_t cols, const void **data) {
    char nm[PPD_REC_NAME_LEN + 8];
    snprintf(nm, sizeof nm, "%s%s", pfx, field);
    ppd_rec_array a;
    PPD_TRY(ppd_rec_find(v, nm, dt, nd, &a, data));
    if (rows >= 0 && a.shape[0] != (uint64_t)rows)
        return ppd_fail(PPD_ERR_CORRUPT, "%s has %u rows, expected %lld", nm, a.shape[0],
                        (long long)rows);
    if (nd == 2 && cols && a.shape[1] != cols)
        return ppd_fail(PPD_ERR_CORRUPT, "%s has %u columns, expected %u", nm, a.shape[1], cols);
    return PPD_OK;
}

static ppd_status decode_side(const ppd_rec_view *v, const char *pfx, ppd_graph_side *s) {
    ppd_rec_array a;
    const void *p;
    char nm[32];
    snprintf(nm, sizeof nm, "%spos", pfx);
    PPD_TRY(ppd_rec_find(v, nm, PPD_DT_F32, 2, &a, &p));
    if (a.shape[1] != 3)
        return ppd_fail(PPD_ERR_CORRUPT, "%s has %u columns, expected 3", nm, a.shape[1]);
    s->n = (int32_t)a.shape[0];
    s->pos = p;
    snprintf(nm, sizeof nm, "%sedge_index", pfx);
    PPD_TRY(ppd_rec_find(v, nm, PPD_DT_I32, 2, &a, &p));
    if (a.shape[0] != 2)
        return ppd_fail(PPD_ERR_CORRUPT, "%s has %u rows, expected 2", nm, a.shape[0]);
    s->n_edges = a.shape[1];
    s->src = p;
    s->dst = s->src + s->n_edges;
    PPD_TRY(find_rows(v, pfx, "seq", PPD_DT_U8, 1, s->n, 0, &p));
    s->seq = p;
    PPD_TRY(find_rows(v, pfx, "tokens", PPD_DT_U8, 1, s->n, 0, &p));
    s->tokens = p;
    PPD_TRY(find_rows(v, pfx, "resname", PPD_DT_U8, 2, s->n, 4, &p));
    s->resname = p;
    PPD_TRY(find_rows(v, pfx, "resnum", PPD_DT_I32, 1, s->n, 0, &p));
    s->resnum = p;
    PPD_TRY(find_rows(v, pfx, "icode", PPD_DT_U8, 1, s->n, 0, &p));
    s->icode = p;
    PPD_TRY(find_rows(v, pfx, "chain", PPD_DT_U8, 1, s->n, 0, &p));
    s->chain = p;
    return PPD_OK;
}

ppd_status ppd_graph_decode(const ppd_rec_view *v, ppd_graph *g) {
    memset(g, 0, sizeof *g);
    if ((uintptr_t)v->value % 16)
        return ppd_fail(PPD_ERR_USAGE,
                        "record value is not 16-byte aligned; use ppd_graph_decode_copy");
    if (v->header.type != PPD_REC_GRAPH)
        return ppd_fail(PPD_ERR_CORRUPT, "record type %u is not a graph", v->header.type);
    PPD_TRY(decode_side(v, "rec.", &g->rec));
    PPD_TRY(decode_side(v, "lig.", &g->lig));
    const void *p;
    ppd_rec_array a;
    PPD_TRY(find_rows(v, "", "center", PPD_DT_F32, 2, 1, 3, &p));
    g->center = p;
    PPD_TRY(find_rows(v, "", "inputs", PPD_DT_U64, 1, 1, 0, &p));
    memcpy(&g->inputs_digest, p, 8);
    PPD_TRY(find_rows(v, "", "params", PPD_DT_U64, 1, 1, 0, &p));
    memcpy(&g->params_hash, p, 8);
    PPD_TRY(ppd_rec_find(v, "split", PPD_DT_U8, 1, &a, &p));
    g->split = p;
    g->split_len = a.shape[0];
    return PPD_OK;
}

ppd_status ppd_graph_decode_copy(const ppd_rec_view *v, ppd_buf *storage, ppd_graph *g) {
    storage->len = 0;
    PPD_TRY(ppd_buf_append(storage, v->value, v->len));
    ppd_rec_view c = *v;
    c.value = storage->data;
    return ppd_graph_decode(&c, g);
}

/* ---- invariants -------------------------------------------------------------------------------
 */

static ppd_status side_fail(const char **check, const char *name, const char *side, const char *fmt,
                            ...) __attribute__((format(printf, 4, 5)));
static ppd_status side_fail(const char **check, const char *name, const char *side, const char *fmt,
                            ...) {
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    *check = name;
    return ppd_fail(PPD_ERR_CORRUPT, "%s: %s", side, buf);
}

static ppd_status validate_side(const ppd_graph_side *s, const char *side, int k,
                                const char **check) {
    if (s->n < 1) return side_fail(check, "empty", side, "no residues");
    for (int64_t i = 0; i < 3 * (int64_t)s->n; i++)
        if (!isfinite(s->pos[i]))
            return side_fail(check, "finite", side, "pos[%lld][%lld] is not finite",
                             (long long)(i / 3), (long long)(i % 3));
    for (int32_t i = 0; i < s->n; i++) {
        char c = s->seq[i];
        if (c < 'A' || c > 'Z')
            return side_fail(check, "seq-letters", side, "seq[%d] is byte %d, not a letter A-Z", i,
                             (unsigned char)c);
        if (ppd_letter_token(c) != s->tokens[i])
            return side_fail(check, "seq-tokens", side,
                             "residue %d: letter '%c' but token %u (expected %u)", i, c,
                             s->tokens[i], ppd_letter_token(c));
    }
    int32_t per = k > 0 ? (s->n - 1 < k ? s->n - 1 : k) : -1;
    if (per >= 0 && s->n_edges != (int64_t)s->n * per)
        return side_fail(check, "degree", side, "%lld edges; %d residues with k=%d need %lld",
                         (long long)s->n_edges, s->n, k, (long long)s->n * per);
    for (int64_t e = 0; e < s->n_edges; e++) {
        int32_t a = s->src[e], b = s->dst[e];
        if (a < 0 || a >= s->n || b < 0 || b >= s->n)
            return side_fail(check, "edge-range", side, "edge %lld (%d -> %d) outside 0..%d",
                             (long long)e, a, b, s->n - 1);
        if (a == b)
            return side_fail(check, "self-loop", side, "edge %lld is a self loop on node %d",
                             (long long)e, a);
        if (e > 0 && b < s->dst[e - 1])
            return side_fail(check, "edge-order", side,
                             "edge %lld: destinations not in centre-major order", (long long)e);
        if (per > 0 && b != (int32_t)(e / per))
            return side_fail(check, "degree", side,
                             "edge %lld ends at node %d; expected %lld (k=%d per node)",
                             (long long)e, b, (long long)(e / per), k);
    }
    return PPD_OK;
}

ppd_status ppd_graph_validate(const ppd_graph *g, int knn_k, const char **check) {
    *check = "";
    PPD_TRY(validate_side(&g->rec, "receptor", knn_k, check));
    PPD_TRY(validate_side(&g->lig, "ligand", knn_k, check));
    for (int d = 0; d < 3; d++)
        if (!isfinite(g->center[d])) {
            *check = "finite";
            return ppd_fail(PPD_ERR_CORRUPT, "center[%d] is not finite", d);
        }
    /* Receptor-centred: the receptor's mean position is the origin up to float32 rounding. */
    double m[3] = {0, 0, 0};
    for (int32_t i = 0; i < g->rec.n; i++)
        for (int d = 0; d < 3; d++) m[d] += g->rec.pos[3 * i + d];
    for (int d = 0; d < 3; d++) {
        double tol = 1e-3 + 1e-6 * fabs(g->center[d]);
        if (fabs(m[d] / g->rec.n) > tol) {
            *check = "centred";
            return ppd_fail(PPD_ERR_CORRUPT,
                            "receptor mean position[%d] is %.4g, not 0: positions are not "
                            "receptor-centred",
                            d, m[d] / g->rec.n);
        }
    }
    return PPD_OK;
}
