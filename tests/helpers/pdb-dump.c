/* pdb-dump: print the CA view of PDB files in the format of the Biopython goldens
 * (tests/ref/pdb_ref.py writes the same lines; tests/ref/compare_biopython.py diffs the two).
 *
 *   pdb-dump [--first-model] FILE...
 *
 * Per file (preceded by "# file PATH" when several are given):
 *   counts n=N models=M no_ca=K hetero=H altloc_dropped=A nonstandard=X
 *   MODEL 'CHAIN' RESSEQ 'ICODE' 'RES' LETTER X Y Z        (one line per CA residue, %.3f)
 * or, when the reader fails:
 *   error PPD_ERR_...: message
 * Exit status: 0 if every file parsed, 1 otherwise, 2 on usage errors.
 */
#include "ppdock/arena.h"
#include "ppdock/fsutil.h"
#include "ppdock/pdb.h"

#include <stdio.h>
#include <string.h>

static void print_protein(const ppd_protein *p) {
    printf("counts n=%d models=%d no_ca=%d hetero=%d altloc_dropped=%d nonstandard=%d\n", p->n,
           p->n_models, p->n_skipped_no_ca, p->n_hetero, p->n_altloc_dropped, p->n_nonstandard);
    for (int32_t i = 0; i < p->n; i++)
        printf("%d '%c' %d '%c' '%-3s' %c %.3f %.3f %.3f\n", p->model[i], p->chain[i], p->resnum[i],
               p->icode[i], p->resname[i], p->seq[i], (double)p->pos[3 * i],
               (double)p->pos[3 * i + 1], (double)p->pos[3 * i + 2]);
}

int main(int argc, char **argv) {
    ppd_pdb_options opts = {0};
    int first = 1;
    if (first < argc && strcmp(argv[first], "--first-model") == 0) {
        opts.first_model_only = 1;
        first++;
    }
    if (first >= argc) {
        fprintf(stderr, "usage: pdb-dump [--first-model] FILE...\n");
        return 2;
    }
    ppd_arena arena;
    if (ppd_arena_init(&arena, 0, 1) != PPD_OK) {
        fprintf(stderr, "pdb-dump: %s\n", ppd_errmsg());
        return 2;
    }
    ppd_buf raw = {0}, text = {0};
    int rc = 0;
    for (int i = first; i < argc; i++) {
        if (argc - first > 1) printf("# file %s\n", argv[i]);
        ppd_arena_reset(&arena);
        ppd_protein prot;
        ppd_status st = ppd_pdb_read(argv[i], &opts, &raw, &text, &arena, &prot);
        if (st == PPD_OK) {
            print_protein(&prot);
        } else {
            /* the status name only: "PPD_ERR_FORMAT: malformed ..." -> "PPD_ERR_FORMAT" */
            const char *s = ppd_strerror(st);
            int n = (int)strcspn(s, ":");
            printf("error %.*s: %s\n", n, s, ppd_errmsg());
            rc = 1;
        }
    }
    ppd_buf_free(&raw);
    ppd_buf_free(&text);
    ppd_arena_free(&arena);
    return rc;
}
