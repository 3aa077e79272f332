/* libFuzzer harness for the PDB reader: `make fuzz` (FUZZ_SECONDS=N) builds it with
 * -fsanitize=fuzzer,address,undefined and runs it on tests/fuzz/corpus/.
 *
 * Each input is parsed as PDB text (all models, then the first model only); an input that starts
 * with the gzip magic (1f 8b) is also gunzipped and the result parsed, as ppd_pdb_read does.
 * The input is handed over in an exact-size buffer, so a read past `len` is an ASan report.
 * Beyond "no crash", the harness checks what the reader promises: a success has at least one
 * residue, finite coordinates and the documented letters/tokens; a failure is one of the
 * documented statuses and carries a message.
 */
#include "ppdock/arena.h"
#include "ppdock/fsutil.h"
#include "ppdock/pdb.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void check(const char *text, size_t len, int first_model, ppd_arena *a) {
    ppd_arena_reset(a);
    ppd_pdb_options opts = {.first_model_only = first_model};
    ppd_protein p;
    ppd_status st = ppd_pdb_parse(text, len, "fuzz.pdb", &opts, a, &p);
    if (st != PPD_OK) {
        if (st != PPD_ERR_FORMAT && st != PPD_ERR_EMPTY && st != PPD_ERR_NOMEM) abort();
        if (strncmp(ppd_errmsg(), "fuzz.pdb", 8) != 0) abort();
        return;
    }
    if (p.n < 1 || p.n_models < 1 || p.seq[p.n] != 0) abort();
    for (int32_t i = 0; i < p.n; i++) {
        for (int k = 0; k < 3; k++)
            if (!isfinite(p.pos[3 * i + k])) abort();
        if (p.tokens[i] != ppd_letter_token(p.seq[i])) abort();
        if (p.seq[i] != ppd_residue_letter(p.resname[i])) abort();
        if (p.model[i] < 0 || p.model[i] >= p.n_models) abort();
        if (first_model && p.model[i] != 0) abort();
        if (strlen(p.resname[i]) > 3) abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static ppd_arena arena;
    static ppd_buf gz;
    static int init;
    if (!init) {
        if (ppd_arena_init(&arena, 0, 1) != PPD_OK) abort();
        init = 1;
    }
    char *copy = malloc(size ? size : 1);
    if (!copy) return 0;
    if (size) memcpy(copy, data, size);
    check(copy, size, 0, &arena);
    check(copy, size, 1, &arena);
    free(copy);
    if (size >= 2 && data[0] == 0x1f && data[1] == 0x8b) {
        if (ppd_gunzip(data, size, "fuzz.pdb.gz", &gz) == PPD_OK) {
            char *t = malloc(gz.len ? gz.len : 1);
            if (!t) return 0;
            if (gz.len) memcpy(t, gz.data, gz.len);
            check(t, gz.len, 0, &arena);
            free(t);
        }
    }
    return 0;
}
