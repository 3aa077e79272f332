/* Records as JSON (see ppdock/dump.h). */
#include "ppdock/dump.h"
#include "ppdock/cli.h"
#include "ppdock/graph.h"
#include "ppdock/hash.h"

#include <string.h>

static void floats3(FILE *f, const float *p, int32_t n) {
    fputc('[', f);
    for (int32_t i = 0; i < n; i++)
        fprintf(f, "%s[%.9g, %.9g, %.9g]", i ? ", " : "", p[3 * i], p[3 * i + 1], p[3 * i + 2]);
    fputc(']', f);
}

static void ints(FILE *f, const int32_t *p, int64_t n) {
    fputc('[', f);
    for (int64_t i = 0; i < n; i++) fprintf(f, "%s%d", i ? ", " : "", p[i]);
    fputc(']', f);
}

static void side_json(FILE *f, const ppd_graph_side *s) {
    fprintf(f, "{\"num_nodes\": %d, \"num_edges\": %lld, \"sequence\": ", s->n,
            (long long)s->n_edges);
    ppd_json_strn(f, s->seq, (size_t)s->n);
    fputs(", \"tokens\": [", f);
    for (int32_t i = 0; i < s->n; i++) fprintf(f, "%s%u", i ? ", " : "", s->tokens[i]);
    fputs("], \"pos\": ", f);
    floats3(f, s->pos, s->n);
    fputs(", \"edge_index\": [", f);
    ints(f, s->src, s->n_edges);
    fputs(", ", f);
    ints(f, s->dst, s->n_edges);
    fputs("], \"chain\": ", f);
    ppd_json_strn(f, s->chain, (size_t)s->n);
    fputs(", \"resnum\": ", f);
    ints(f, s->resnum, s->n);
    fputs(", \"icode\": ", f);
    ppd_json_strn(f, s->icode, (size_t)s->n);
    fputs(", \"resname\": [", f);
    for (int32_t i = 0; i < s->n; i++) {
        if (i) fputs(", ", f);
        ppd_json_strn(f, s->resname[i], strnlen(s->resname[i], 4));
    }
    fputs("]}", f);
}

static ppd_status generic_json(FILE *f, const char *key, const ppd_rec_view *v) {
    fputs("{\"key\": ", f);
    ppd_json_str(f, key);
    fprintf(f, ", \"type\": %u, \"version\": %u, \"arrays\": [", v->header.type, v->header.version);
    for (uint32_t i = 0; i < v->header.n_arrays; i++) {
        ppd_rec_array a;
        ppd_rec_array_at(v, i, &a);
        fprintf(f, "%s{\"name\": ", i ? ", " : "");
        ppd_json_strn(f, a.name, strnlen(a.name, PPD_REC_NAME_LEN));
        fprintf(f, ", \"dtype\": \"%s\", \"shape\": [", ppd_dtype_name(a.dtype));
        for (int d = 0; d < a.ndim; d++) fprintf(f, "%s%u", d ? ", " : "", a.shape[d]);
        fputs("]}", f);
    }
    fputs("]}\n", f);
    return PPD_OK;
}

ppd_status ppd_record_write_json(FILE *f, const char *key, const ppd_rec_view *v) {
    if (v->header.type != PPD_REC_GRAPH) return generic_json(f, key, v);
    ppd_buf storage = {0};
    ppd_graph g;
    ppd_status st = ppd_graph_decode_copy(v, &storage, &g);
    if (st) {
        ppd_buf_free(&storage);
        return st;
    }
    char hin[17], hpar[17];
    ppd_hash_hex(g.inputs_digest, hin);
    ppd_hash_hex(g.params_hash, hpar);
    fputs("{\"key\": ", f);
    ppd_json_str(f, key);
    fputs(", \"type\": \"graph\", \"split\": ", f);
    ppd_json_strn(f, g.split, g.split_len);
    fprintf(f,
            ", \"center\": [%.9g, %.9g, %.9g], \"inputs_digest\": \"%s\", \"params_hash\": "
            "\"%s\",\n \"receptor\": ",
            g.center[0], g.center[1], g.center[2], hin, hpar);
    side_json(f, &g.rec);
    fputs(",\n \"ligand\": ", f);
    side_json(f, &g.lig);
    fputs("}\n", f);
    ppd_buf_free(&storage);
    return PPD_OK;
}
