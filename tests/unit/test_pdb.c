/* PDB reader (lib/io/pdb.c) against Biopython.
 *
 * The expected CA lists and counts are goldens written by Biopython (tests/ref/pdb_ref.py) for
 * the synthetic edge cases in tests/data/pdb/ and the db5-mini structures: tests/data/ref/
 * FILE.ca.txt (all models) and FILE.model0.ca.txt (first model, multi-model files only). Where a
 * test also spells out a value, it is one read off those goldens. Files named dev_* are the
 * documented differences from Biopython (include/ppdock/pdb.h); their goldens show what
 * Biopython does and the tests check what the reader does instead.
 */
#include "../test.h"

#include "ppdock/arena.h"
#include "ppdock/fsutil.h"
#include "ppdock/pdb.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ---- goldens ------------------------------------------------------------------------------- */

typedef struct {
    int model, resnum;
    char chain, icode, letter;
    char resname[4];
    double xyz[3];
} gold_res;

typedef struct {
    int error; /* Biopython raised */
    int n, models, no_ca, hetero, altloc_dropped, nonstandard;
    gold_res *res;
} golden;

static void golden_free(golden *g) {
    free(g->res);
    memset(g, 0, sizeof *g);
}

/* Read tests/data/ref/<base><suffix>; 0 on success. */
static int golden_load(const char *base, const char *suffix, golden *g) {
    memset(g, 0, sizeof *g);
    char rel[512];
    snprintf(rel, sizeof rel, "ref/%s%s", base, suffix);
    ppd_buf b = {0};
    if (ppd_read_file(ppt_data(rel), &b) != PPD_OK) {
        ppt_fail(__FILE__, __LINE__, "cannot read golden %s: %s", rel, ppd_errmsg());
        return -1;
    }
    char *save = NULL, *line = strtok_r((char *)b.data, "\n", &save);
    int rc = 0, k = 0;
    for (; line; line = strtok_r(NULL, "\n", &save)) {
        if (line[0] == '#') continue;
        if (strncmp(line, "error ", 6) == 0) {
            g->error = 1;
            break;
        }
        if (strncmp(line, "counts ", 7) == 0) {
            if (sscanf(line,
                       "counts n=%d models=%d no_ca=%d hetero=%d altloc_dropped=%d "
                       "nonstandard=%d",
                       &g->n, &g->models, &g->no_ca, &g->hetero, &g->altloc_dropped,
                       &g->nonstandard) != 6 ||
                g->n < 0) {
                rc = -1;
                break;
            }
            g->res = calloc((size_t)g->n + 1, sizeof *g->res);
            continue;
        }
        if (!g->res || k >= g->n) {
            rc = -1;
            break;
        }
        gold_res *r = &g->res[k++];
        char name[4] = {0};
        if (sscanf(line, "%d '%c' %d '%c' '%3c' %c %lf %lf %lf", &r->model, &r->chain, &r->resnum,
                   &r->icode, name, &r->letter, &r->xyz[0], &r->xyz[1], &r->xyz[2]) != 9) {
            rc = -1;
            break;
        }
        for (int i = 2; i >= 0 && name[i] == ' '; i--) name[i] = 0; /* padded to 3 */
        memcpy(r->resname, name, 4);
    }
    if (rc == 0 && !g->error && k != g->n) rc = -1;
    if (rc) ppt_fail(__FILE__, __LINE__, "golden %s is malformed", rel);
    ppd_buf_free(&b);
    return rc;
}

/* Parse tests/data/<dir>/<base> and compare every residue and count with its golden. Returns
 * the reader's status (the caller checks error details); failures are reported with `line`. */
static ppd_status check_golden_at(int line, const char *dir, const char *base, int first_model) {
    golden g;
    if (golden_load(base, first_model ? ".model0.ca.txt" : ".ca.txt", &g)) return PPD_ERR_INTERNAL;
    char rel[512];
    snprintf(rel, sizeof rel, "%s/%s", dir, base);
    ppd_arena arena;
    ppd_arena_init(&arena, 0, 1);
    ppd_buf raw = {0}, text = {0};
    ppd_pdb_options opts = {.first_model_only = first_model};
    ppd_protein p;
    ppd_status st = ppd_pdb_read(ppt_data(rel), &opts, &raw, &text, &arena, &p);
    if (g.error) {
        if (st == PPD_OK) ppt_fail(__FILE__, line, "%s: Biopython fails, the reader did not", base);
    } else if (g.n == 0) {
        if (st != PPD_ERR_EMPTY)
            ppt_fail(__FILE__, line,
                     "%s: Biopython finds no CA, expected PPD_ERR_EMPTY, got %d (%s)", base,
                     (int)st, ppd_errmsg());
        else if (p.n_models != g.models || p.n_hetero != g.hetero || p.n_skipped_no_ca != g.no_ca)
            ppt_fail(__FILE__, line, "%s: counts differ from Biopython's", base);
    } else if (st != PPD_OK) {
        ppt_fail(__FILE__, line, "%s: %s", base, ppd_errmsg());
    } else if (p.n != g.n || p.n_models != g.models || p.n_skipped_no_ca != g.no_ca ||
               p.n_hetero != g.hetero || p.n_altloc_dropped != g.altloc_dropped ||
               p.n_nonstandard != g.nonstandard) {
        ppt_fail(__FILE__, line,
                 "%s: counts n=%d models=%d no_ca=%d hetero=%d altloc_dropped=%d nonstandard=%d, "
                 "Biopython n=%d models=%d no_ca=%d hetero=%d altloc_dropped=%d nonstandard=%d",
                 base, p.n, p.n_models, p.n_skipped_no_ca, p.n_hetero, p.n_altloc_dropped,
                 p.n_nonstandard, g.n, g.models, g.no_ca, g.hetero, g.altloc_dropped,
                 g.nonstandard);
    } else {
        for (int i = 0; i < p.n; i++) {
            const gold_res *r = &g.res[i];
            int same = p.model[i] == r->model && p.chain[i] == r->chain &&
                       p.resnum[i] == r->resnum && p.icode[i] == r->icode &&
                       strcmp(p.resname[i], r->resname) == 0 && p.seq[i] == r->letter &&
                       p.tokens[i] == ppd_letter_token(r->letter);
            for (int k = 0; k < 3; k++) same &= fabs(p.pos[3 * i + k] - r->xyz[k]) <= 5e-4;
            if (!same) {
                ppt_fail(__FILE__, line,
                         "%s residue %d: got %d '%c' %d '%c' '%s' %c %.3f %.3f %.3f, Biopython %d "
                         "'%c' %d '%c' '%s' %c %.3f %.3f %.3f",
                         base, i, p.model[i], p.chain[i], p.resnum[i], p.icode[i], p.resname[i],
                         p.seq[i], (double)p.pos[3 * i], (double)p.pos[3 * i + 1],
                         (double)p.pos[3 * i + 2], r->model, r->chain, r->resnum, r->icode,
                         r->resname, r->letter, r->xyz[0], r->xyz[1], r->xyz[2]);
                break;
            }
        }
        if ((int)strlen(p.seq) != p.n)
            ppt_fail(__FILE__, line, "%s: seq is not NUL-terminated", base);
    }
    ppd_buf_free(&raw);
    ppd_buf_free(&text);
    ppd_arena_free(&arena);
    golden_free(&g);
    return st;
}

#define CHECK_GOLDEN(base)        check_golden_at(__LINE__, "pdb", (base), 0)
#define CHECK_GOLDEN_MODEL0(base) check_golden_at(__LINE__, "pdb", (base), 1)

/* Parse an in-memory text from an exact-size heap copy, so that reading past `len` (the text
 * is not NUL-terminated) is caught by AddressSanitizer. */
static ppd_status parse_exact(const void *text, size_t len, ppd_arena *a, ppd_protein *p) {
    void *copy = malloc(len ? len : 1);
    if (len) memcpy(copy, text, len);
    ppd_status st = ppd_pdb_parse(copy, len, "mem.pdb", NULL, a, p);
    free(copy);
    return st;
}

/* A well-formed ATOM record: 80 columns. */
static void atom_line(char *out, size_t cap, const char *rec, const char *name, char altloc,
                      const char *res, char chain, int seq, double x, double occ) {
    snprintf(out, cap, "%-6s%5d %-4s%c%-3s %c%4d    %8.3f%8.3f%8.3f%6.2f%6.2f          %2s", rec, 1,
             name, altloc, res, chain, seq, x, 1.0, 2.0, occ, 20.0, "C");
}

/* ---- Biopython goldens: synthetic edge cases --------------------------------------------- */

TEST(pdb_basic_two_chains_ligand_and_waters_dropped) {
    REQUIRE_OK(CHECK_GOLDEN("basic.pdb"));
    ppd_arena a;
    ppd_arena_init(&a, 0, 1);
    ppd_buf raw = {0}, text = {0};
    ppd_protein p;
    REQUIRE_OK(ppd_pdb_read(ppt_data("pdb/basic.pdb"), NULL, &raw, &text, &a, &p));
    CHECK_STR(p.seq, "AGSKW");
    const uint8_t tok[5] = {5, 6, 8, 15, 22};
    for (int i = 0; i < 5; i++) CHECK_EQ(p.tokens[i], tok[i]);
    CHECK_EQ(p.chain[0], 'A');
    CHECK_EQ(p.chain[3], 'B');
    CHECK_EQ(p.n_hetero, 3); /* GDP 401 (whose atom " CA " is not a residue CA), HOH 501, 502 */
    CHECK_EQ(p.n_models, 1);
    ppd_buf_free(&raw);
    ppd_buf_free(&text);
    ppd_arena_free(&a);
}

TEST(pdb_hetatm_and_water_dropped_atom_mse_kept_as_unknown) {
    CHECK_OK(CHECK_GOLDEN("hetero.pdb"));
    ppd_status st = CHECK_GOLDEN("hetero_only.pdb"); /* HETATM only: nothing left */
    CHECK_EQ(st, PPD_ERR_EMPTY);
    CHECK_ERRMSG_HAS("no ATOM residues with a CA atom");
}

TEST(pdb_altloc_highest_occupancy_tie_first) {
    CHECK_OK(CHECK_GOLDEN("altloc.pdb"));
}

TEST(pdb_altloc_after_blank_wins_tie_as_in_biopython) {
    CHECK_OK(CHECK_GOLDEN("altloc_blank.pdb"));
    /* Spelled out from the golden: residue 1 has CA ' ' occ 0.5 then CA 'A' occ 0.5 -> 'A';
     * residue 5 has two CAs without altloc -> the first. */
    ppd_arena a;
    ppd_arena_init(&a, 0, 1);
    ppd_buf raw = {0}, text = {0};
    ppd_protein p;
    REQUIRE_OK(ppd_pdb_read(ppt_data("pdb/altloc_blank.pdb"), NULL, &raw, &text, &a, &p));
    REQUIRE_EQ(p.n, 5);
    CHECK_NEAR(p.pos[0], 1.1, 1e-6);
    CHECK_NEAR(p.pos[3 * 4], 5.0, 1e-6);
    ppd_buf_free(&raw);
    ppd_buf_free(&text);
    ppd_arena_free(&a);
}

TEST(pdb_duplicate_atoms_and_names_differing_in_spaces) {
    CHECK_OK(CHECK_GOLDEN("duplicate_atoms.pdb"));
}

TEST(pdb_insertion_codes) {
    CHECK_OK(CHECK_GOLDEN("icode.pdb"));
}

TEST(pdb_discontinuous_chains_merge_into_first_occurrence) {
    CHECK_OK(CHECK_GOLDEN("chains.pdb"));
}

TEST(pdb_multi_model_concatenated_or_first_only) {
    CHECK_OK(CHECK_GOLDEN("multimodel.pdb"));
    CHECK_OK(CHECK_GOLDEN_MODEL0("multimodel.pdb"));
}

TEST(pdb_residues_without_ca_counted) {
    CHECK_OK(CHECK_GOLDEN("no_ca.pdb"));
}

TEST(pdb_nonstandard_names_unknown_token) {
    CHECK_OK(CHECK_GOLDEN("nonstandard.pdb"));
}

TEST(pdb_end_and_conect_stop_like_biopython) {
    CHECK_OK(CHECK_GOLDEN("end_records.pdb"));
    CHECK_OK(CHECK_GOLDEN("conect.pdb"));
}

TEST(pdb_line_endings_crlf_cr_and_no_final_newline) {
    CHECK_OK(CHECK_GOLDEN("crlf.pdb"));
    CHECK_OK(CHECK_GOLDEN("cr_only.pdb"));
    CHECK_OK(CHECK_GOLDEN("noeol.pdb"));
    CHECK_OK(CHECK_GOLDEN("utf8_remark.pdb")); /* UTF-8 outside the atom records is fine */
}

TEST(pdb_python_number_syntax_and_short_lines) {
    CHECK_OK(CHECK_GOLDEN("numbers.pdb"));
}

/* \x1c-\x1f are whitespace to str.split()/strip() (atom name "\x1cCA\x1d" is a CA, resname
 * "\x1fAL" is "AL", residue number "\x1c 12" is 12) but not to float(): "\x1c1.000" is an error. */
TEST(pdb_ascii_separators_like_python) {
    CHECK_OK(CHECK_GOLDEN("separators.pdb"));
    CHECK_EQ(CHECK_GOLDEN("bad_coord_separator.pdb"), PPD_ERR_FORMAT);
    CHECK_ERRMSG_HAS("bad_coord_separator.pdb:3: ATOM record: bad x coordinate");
}

TEST(pdb_point_mutation_moves_residue_to_chain_end) {
    CHECK_OK(CHECK_GOLDEN("point_mutation.pdb"));
}

TEST(pdb_anisou_records_checked_like_biopython) {
    CHECK_OK(CHECK_GOLDEN("anisou.pdb"));
    CHECK_EQ(CHECK_GOLDEN("bad_anisou.pdb"), PPD_ERR_FORMAT);
    CHECK_ERRMSG_HAS("bad_anisou.pdb:2: ANISOU");
    CHECK_EQ(CHECK_GOLDEN("anisou_first.pdb"), PPD_ERR_FORMAT);
    CHECK_ERRMSG_HAS("anisou_first.pdb:2: ANISOU record before any atom");
}

TEST(pdb_gz_input_same_as_plain) {
    CHECK_OK(CHECK_GOLDEN("basic.pdb.gz"));
    ppd_arena a;
    ppd_arena_init(&a, 0, 1);
    ppd_buf raw = {0}, text = {0};
    ppd_protein p;
    REQUIRE_OK(ppd_pdb_read(ppt_data("pdb/basic.pdb.gz"), NULL, &raw, &text, &a, &p));
    CHECK(raw.len >= 2 && raw.data[0] == 0x1f && raw.data[1] == 0x8b); /* stored bytes */
    CHECK(text.len > raw.len);
    CHECK_STR(p.seq, "AGSKW");
    ppd_buf_free(&raw);
    ppd_buf_free(&text);
    ppd_arena_free(&a);
}

/* ---- errors ------------------------------------------------------------------------------- */

TEST(pdb_truncated_gz_is_format_error_naming_file) {
    CHECK_EQ(CHECK_GOLDEN("truncated.pdb.gz"), PPD_ERR_FORMAT);
    CHECK_ERRMSG_HAS("truncated.pdb.gz");
    CHECK_ERRMSG_HAS("truncated gzip");
}

TEST(pdb_empty_inputs_are_empty_errors) {
    CHECK_EQ(CHECK_GOLDEN("empty.pdb"), PPD_ERR_EMPTY);
    CHECK_ERRMSG_HAS("empty.pdb: empty file");
    CHECK_EQ(CHECK_GOLDEN("blank_lines.pdb"), PPD_ERR_EMPTY);
    CHECK_ERRMSG_HAS("blank_lines.pdb: no ATOM residues with a CA atom");
    ppd_arena a;
    ppd_arena_init(&a, 0, 1);
    ppd_buf raw = {0}, text = {0};
    ppd_protein p;
    CHECK_EQ(ppd_pdb_read(ppt_data("pdb/no-such-file.pdb"), NULL, &raw, &text, &a, &p), PPD_ERR_IO);
    CHECK_ERRMSG_HAS("no-such-file.pdb");
    ppd_buf_free(&raw);
    ppd_buf_free(&text);
    ppd_arena_free(&a);
}

TEST(pdb_binary_junk_is_format_error_with_line) {
    CHECK_EQ(CHECK_GOLDEN("junk.bin"), PPD_ERR_FORMAT);
    CHECK_ERRMSG_HAS("junk.bin:2: byte 0x89 in column 1 is not UTF-8");
}

TEST(pdb_bad_coordinate_reports_file_and_line) {
    CHECK_EQ(CHECK_GOLDEN("bad_coord.pdb"), PPD_ERR_FORMAT);
    CHECK_ERRMSG_HAS("bad_coord.pdb:4: ATOM record: bad x coordinate '   1.2x3'");
    CHECK_EQ(CHECK_GOLDEN("missing_coord.pdb"), PPD_ERR_FORMAT);
    CHECK_ERRMSG_HAS("missing_coord.pdb:4: ATOM record: bad z coordinate");
    CHECK_EQ(CHECK_GOLDEN("bad_resseq.pdb"), PPD_ERR_FORMAT);
    CHECK_ERRMSG_HAS("bad_resseq.pdb:4: ATOM record: bad residue number '  A1'");
    CHECK_EQ(CHECK_GOLDEN("blank_resseq.pdb"), PPD_ERR_FORMAT);
    CHECK_ERRMSG_HAS("blank_resseq.pdb:4:");
    CHECK_EQ(CHECK_GOLDEN("short_atom.pdb"), PPD_ERR_FORMAT);
    CHECK_ERRMSG_HAS("short_atom.pdb:4: ATOM record too short (22 columns");
}

/* The documented differences from Biopython (their goldens show Biopython's side). */
TEST(pdb_deviations_from_biopython) {
    ppd_arena a;
    ppd_arena_init(&a, 0, 1);
    ppd_buf raw = {0}, text = {0};
    ppd_protein p;
    CHECK_EQ(ppd_pdb_read(ppt_data("pdb/dev_nan_coord.pdb"), NULL, &raw, &text, &a, &p),
             PPD_ERR_FORMAT);
    CHECK_ERRMSG_HAS("dev_nan_coord.pdb:4: ATOM record: x coordinate '     nan' is not a finite");
    CHECK_EQ(ppd_pdb_read(ppt_data("pdb/dev_huge_coord.pdb"), NULL, &raw, &text, &a, &p),
             PPD_ERR_FORMAT);
    CHECK_ERRMSG_HAS("dev_huge_coord.pdb:4:");
    CHECK_EQ(ppd_pdb_read(ppt_data("pdb/dev_nul.pdb"), NULL, &raw, &text, &a, &p), PPD_ERR_FORMAT);
    CHECK_ERRMSG_HAS("dev_nul.pdb:4: NUL byte in column 9");
    CHECK_EQ(ppd_pdb_read(ppt_data("pdb/dev_nonascii_atom.pdb"), NULL, &raw, &text, &a, &p),
             PPD_ERR_FORMAT);
    CHECK_ERRMSG_HAS("dev_nonascii_atom.pdb:4: non-ASCII byte 0xc3 in column 80");
    /* CA altloc A occ 0.40, altloc B with occupancy "x.xx": Biopython raises TypeError; here it
     * counts as 0 and A is kept. */
    REQUIRE_OK(ppd_pdb_read(ppt_data("pdb/dev_bad_occupancy.pdb"), NULL, &raw, &text, &a, &p));
    REQUIRE_EQ(p.n, 1);
    CHECK_NEAR(p.pos[0], 1.0, 1e-6);
    CHECK_EQ(p.n_altloc_dropped, 1);
    ppd_buf_free(&raw);
    ppd_buf_free(&text);
    ppd_arena_free(&a);
}

/* ---- real structures -------------------------------------------------------------------- */

TEST(pdb_db5_mini_matches_biopython) {
    static const char *files[] = {"1FC2_l_b.pdb.gz", "1FC2_l_u.pdb.gz", "1FC2_r_b.pdb.gz",
                                  "1FC2_r_u.pdb.gz", "1HIA_l_b.pdb.gz", "1HIA_r_b.pdb.gz",
                                  "1R0R_l_b.pdb.gz", "1R0R_r_b.pdb.gz", "1R8S_l_b.pdb.gz",
                                  "1R8S_r_b.pdb.gz"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++)
        CHECK_OK(check_golden_at(__LINE__, "db5-mini/structures", files[i], 0));
}

TEST(pdb_arena_steady_state_no_malloc) {
    static const char *files[] = {"db5-mini/structures/1FC2_l_u.pdb.gz",
                                  "db5-mini/structures/1R0R_r_b.pdb.gz", "pdb/basic.pdb"};
    ppd_arena a;
    ppd_arena_init(&a, 0, 1);
    ppd_buf raw = {0}, text = {0};
    uint64_t mallocs = 0;
    for (int round = 0; round < 3; round++) {
        if (round == 2) mallocs = a.mallocs;
        for (int i = 0; i < 3; i++) {
            ppd_arena_reset(&a);
            ppd_protein p;
            REQUIRE_OK(ppd_pdb_read(ppt_data(files[i]), NULL, &raw, &text, &a, &p));
        }
    }
    CHECK_EQ(a.mallocs, mallocs);
    /* a fixed arena that is too small fails cleanly */
    ppd_arena small;
    ppd_arena_init(&small, 4096, 0);
    ppd_protein p;
    CHECK_EQ(ppd_pdb_read(ppt_data(files[0]), NULL, &raw, &text, &small, &p), PPD_ERR_NOMEM);
    ppd_arena_free(&small);
    ppd_buf_free(&raw);
    ppd_buf_free(&text);
    ppd_arena_free(&a);
}

/* ---- tables and robustness --------------------------------------------------------------- */

TEST(pdb_letters_and_esm_tokens) {
    static const char *names[20] = {"LEU", "ALA", "GLY", "VAL", "SER", "GLU", "ARG",
                                    "THR", "ILE", "ASP", "PRO", "LYS", "GLN", "ASN",
                                    "PHE", "TYR", "MET", "HIS", "TRP", "CYS"};
    const char *letters = "LAGVSERTIDPKQNFYMHWC";
    for (int i = 0; i < 20; i++) {
        CHECK_EQ(ppd_residue_letter(names[i]), letters[i]);
        CHECK_EQ(ppd_letter_token(letters[i]), 4 + i); /* ESM-2: L=4 ... C=23 */
    }
    CHECK_EQ(ppd_residue_letter("MSE"), 'X');
    CHECK_EQ(ppd_residue_letter("ala"), 'X'); /* keys are upper case only */
    CHECK_EQ(ppd_residue_letter("AL"), 'X');
    CHECK_EQ(ppd_residue_letter(""), 'X');
    CHECK_EQ(ppd_residue_letter(NULL), 'X');
    CHECK_EQ(ppd_letter_token('X'), PPD_TOKEN_UNK);
    CHECK_EQ(ppd_letter_token('B'), PPD_TOKEN_UNK);
    CHECK_EQ(ppd_letter_token(0), PPD_TOKEN_UNK);
}

TEST(pdb_inline_line_numbers_count_cr_and_crlf) {
    char l1[128], l2[128];
    atom_line(l1, sizeof l1, "ATOM", "CA", ' ', "ALA", 'A', 1, 1.0, 1.0);
    atom_line(l2, sizeof l2, "ATOM", "CA", ' ', "GLY", 'A', 2, 2.0, 1.0);
    memcpy(l2 + 30, "   x.000", 8);
    char text[512];
    /* lines: 1 REMARK (\r), 2 ATOM (\r\n), 3 blank (\n), 4 the bad ATOM */
    int n = snprintf(text, sizeof text, "REMARK\r%s\r\n\n%s", l1, l2);
    ppd_arena a;
    ppd_arena_init(&a, 0, 1);
    ppd_protein p;
    CHECK_EQ(parse_exact(text, (size_t)n, &a, &p), PPD_ERR_FORMAT);
    CHECK_ERRMSG_HAS("mem.pdb:4: ATOM record: bad x coordinate");
    /* without the bad line: one residue, no newline at the end */
    n = snprintf(text, sizeof text, "REMARK\r%s", l1);
    REQUIRE_OK(parse_exact(text, (size_t)n, &a, &p));
    CHECK_EQ(p.n, 1);
    CHECK_NEAR(p.pos[0], 1.0, 1e-6);
    /* a NUL in the middle of an ATOM record */
    text[7 + 40] = 0;
    CHECK_EQ(parse_exact(text, (size_t)n, &a, &p), PPD_ERR_FORMAT);
    CHECK_ERRMSG_HAS("mem.pdb:2: NUL byte in column 41");
    ppd_arena_free(&a);
}

/* A large file whose lines end in \r only (or in \r\n) is split in one pass: 60k header lines
 * would take minutes if each line searched the rest of the buffer for a \n. */
TEST(pdb_cr_only_large_file_is_linear) {
    const char *eols[2] = {"\r", "\r\n"};
    ppd_arena a;
    ppd_arena_init(&a, 0, 1);
    for (int e = 0; e < 2; e++) {
        ppd_buf b = {0};
        for (int i = 0; i < 60000; i++)
            REQUIRE_OK(ppd_buf_printf(&b, "REMARK %-73d%s", i, eols[e]));
        char l[128];
        atom_line(l, sizeof l, "ATOM", "CA", ' ', "TRP", 'A', 1, 3.0, 1.0);
        REQUIRE_OK(ppd_buf_printf(&b, "%s%s", l, eols[e]));
        memcpy(l + 30, "   1.x00", 8);
        REQUIRE_OK(ppd_buf_printf(&b, "%s%s", l, eols[e]));
        ppd_protein p;
        CHECK_EQ(parse_exact(b.data, b.len, &a, &p), PPD_ERR_FORMAT);
        CHECK_ERRMSG_HAS("mem.pdb:60002: ATOM record: bad x coordinate '   1.x00'");
        ppd_buf_free(&b);
    }
    ppd_arena_free(&a);
}

/* First model only when model 0 is empty: nothing to output (model 0 is the first in the file,
 * as structure[0] is in Biopython); counts still see every model. */
TEST(pdb_first_model_only_takes_model_zero_even_if_empty) {
    char l[128], text[512];
    atom_line(l, sizeof l, "ATOM", "CA", ' ', "ALA", 'A', 1, 1.0, 1.0);
    int n = snprintf(text, sizeof text, "MODEL        1\nENDMDL\nMODEL        2\n%s\nENDMDL\n", l);
    ppd_arena a;
    ppd_arena_init(&a, 0, 1);
    ppd_protein p;
    REQUIRE_OK(parse_exact(text, (size_t)n, &a, &p));
    CHECK_EQ(p.n, 1);
    CHECK_EQ(p.model[0], 1);
    CHECK_EQ(p.n_models, 2);
    ppd_pdb_options first = {.first_model_only = 1};
    CHECK_EQ(ppd_pdb_parse(text, (size_t)n, "m.pdb", &first, &a, &p), PPD_ERR_EMPTY);
    CHECK_EQ(p.n_models, 2);
    ppd_arena_free(&a);
}

/* Every prefix of a real file, each in an exact-size buffer: no read past the end, every
 * result a clean success or error. */
TEST(pdb_every_prefix_parses_or_fails_cleanly) {
    ppd_buf b = {0};
    REQUIRE_OK(ppd_read_file(ppt_data("pdb/altloc.pdb"), &b));
    ppd_arena a;
    ppd_arena_init(&a, 0, 1);
    int ok = 0;
    for (size_t len = 0; len <= b.len; len++) {
        ppd_arena_reset(&a);
        ppd_protein p;
        ppd_status st = parse_exact(b.data, len, &a, &p);
        if (st == PPD_OK) {
            ok++;
            CHECK(p.n >= 1 && p.n <= 7);
        } else if (st != PPD_ERR_FORMAT && st != PPD_ERR_EMPTY) {
            ppt_fail(__FILE__, __LINE__, "prefix %zu: unexpected status %d", len, (int)st);
        }
    }
    CHECK(ok > 0);
    ppd_buf_free(&b);
    ppd_arena_free(&a);
}

/* Deterministic mutation fuzzing of a small valid file (the libFuzzer harness in tests/fuzz/
 * goes further; this runs in every `make test`, under sanitizers too). */
TEST(pdb_random_mutations_never_crash) {
    ppd_buf b = {0};
    REQUIRE_OK(ppd_read_file(ppt_data("pdb/point_mutation.pdb"), &b));
    static const char pool[] = " \t\r\n\x0b\x1c_.+-eE0123456789ABCabc'\"\x80\xc3\xa9\xff\0"
                               "ATOMHETAENDMODLCONIS";
    ppd_arena a;
    ppd_arena_init(&a, 0, 1);
    unsigned char *buf = malloc(b.len + 64);
    uint64_t s = 0x9e3779b97f4a7c15ull;
    for (int iter = 0; iter < 3000; iter++) {
        size_t len = b.len;
        memcpy(buf, b.data, len);
        int edits = 1 + (int)(s % 8);
        for (int e = 0; e < edits; e++) {
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            size_t at = (size_t)(s >> 33) % (len ? len : 1);
            switch ((s >> 20) % 4) {
            case 0:
                buf[at] = (unsigned char)pool[(s >> 8) % (sizeof pool - 1)];
                break;
            case 1:
                len = at;
                break; /* truncate */
            case 2:
                memmove(buf + at, buf + at + 1, len - at - 1), len--;
                break; /* delete */
            default:
                buf[at] = (unsigned char)(s >> 40);
                break; /* any byte */
            }
            if (len == 0) break;
        }
        ppd_arena_reset(&a);
        ppd_protein p;
        ppd_status st = parse_exact(buf, len, &a, &p);
        if (st == PPD_OK) {
            CHECK(p.n > 0 && (int)strlen(p.seq) <= p.n);
            for (int i = 0; i < p.n; i++) CHECK(isfinite(p.pos[3 * i]));
        } else {
            CHECK(st == PPD_ERR_FORMAT || st == PPD_ERR_EMPTY);
            CHECK(strstr(ppd_errmsg(), "mem.pdb") != NULL);
        }
        if (ppt_failed_now()) break;
    }
    free(buf);
    ppd_buf_free(&b);
    ppd_arena_free(&a);
}
