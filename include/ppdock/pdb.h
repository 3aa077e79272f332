/* ppdock/pdb.h — PDB reader: the residue (CA) view of a protein, as DiffDock-PP builds it.
 *
 * Reads fixed-column PDB text (plain or gzip; ppd_pdb_read detects gzip by its magic bytes) and
 * returns one entry per residue that has an atom named exactly "CA", in the order Biopython's
 * PDBParser iterates them (DiffDock-PP parses with Biopython; docs/spec/diffdock-pp.md §1.1–1.3).
 * tests/ref/compare_biopython.py checks this against Biopython 1.88 (all of DB5.5 agrees):
 *
 *  - Text: lines end at \n, \r\n or a lone \r (Python's universal newlines); line numbers in
 *    messages count them so. Numbers are read as Python's float()/int() read them ("1_0.5",
 *    "+2", "1e1", surrounding tabs are fine).
 *  - Records: ATOM and HETATM are read; everything before the first ATOM/HETATM/MODEL is header;
 *    a record named exactly "END   " or "CONECT" (columns 1-6) ends the coordinates (later
 *    records are ignored, as in Biopython). A bare "END" without padding, or an END in the
 *    header, ends nothing. MODEL, ENDMDL, TER likewise need their 6 columns.
 *  - HETATM residues (ligands, ions, waters) are dropped. ATOM residues are kept whatever their
 *    name; names outside the 20 standard amino acids get sequence letter 'X' and token <unk>.
 *  - Models: every MODEL is kept and concatenated (DiffDock-PP does this; n_models counts them,
 *    empty ones included; ATOM records after an ENDMDL without a new MODEL start a new model)
 *    unless opts.first_model_only is set: then only model 0, the first in the file, is output
 *    (n_models still counts all; the other n_* count what is output).
 *  - Order: models in file order; within a model, chains in order of first appearance (a chain
 *    id that reappears later continues the earlier chain, as in Biopython); within a chain,
 *    residues in order of first appearance, a residue being (resseq, insertion code); a residue
 *    that reappears later is the same residue (its first CA stays).
 *  - Alternate locations: per atom name, the altloc with the highest occupancy is kept; on equal
 *    occupancy the first one in the file (Biopython's rule). A second atom of the same name
 *    without altloc is ignored. One exception, from Biopython's order of insertion: a CA without
 *    altloc followed by altloc CAs is compared after the first of them, so the altloc atom wins
 *    a tie with it. An unparsable occupancy counts as 0 (Biopython fails comparing it); a NaN
 *    occupancy never wins (if none wins, the first altloc is kept; Biopython fails there too).
 *    Names are compared as Biopython does: "CA  " (stripped to "CA") is a CA, and a later atom
 *    whose name differs from the CA's only in spaces is not.
 *  - Point mutations (the residue name differs between altlocs): Biopython turns the residue
 *    into a DisorderedResidue, re-appended at the END of its chain, and iterates the selected
 *    variant: the one defined last, or the one whose name came back last. A residue that already
 *    holds an atom without altloc cannot become one: the second name's atoms are dropped.
 *  - Residues without a CA atom are skipped and counted (n_skipped_no_ca).
 *
 * Errors (never a crash, whatever the bytes): PPD_ERR_FORMAT with "<name>:<line>: <what>" for a
 * record whose coordinates or residue number do not parse or are not finite float32 values, an
 * ATOM/HETATM record shorter than 27 columns, or an ANISOU/SIGUIJ/SIGATM record with a bad
 * number or before any atom (Biopython fails on all of these); PPD_ERR_EMPTY for an empty input
 * ("<name>: empty file") or when no residue with a CA remains ("<name>: no ATOM residues with a
 * CA atom (...)"); PPD_ERR_FORMAT for binary junk, with its line: bytes that are not UTF-8 (what
 * Python's decoder rejects) or a NUL byte anywhere; PPD_ERR_FORMAT / PPD_ERR_IO from gzip and
 * file reading (truncated stream, unreadable file); PPD_ERR_NOMEM.
 *
 * Deliberate differences from Biopython (which accepts these): NaN/inf coordinates or ones that
 * overflow float32 (an error here), NUL bytes (an error), non-ASCII bytes inside ATOM, HETATM,
 * ANISOU, SIGUIJ or SIGATM records (an error; Python would count columns in characters).
 * Conversely, a few inputs on which Biopython raises are read here: altloc occupancies that do
 * not parse (above), and an atom whose name is one digit with no usable element column
 * (Biopython's element guess indexes past the name).
 *
 * Scratch memory (about 100 bytes per residue) comes from `arena` as well; nothing is
 * malloc'ed. Numbers outside the common "[-]ddd.ddd" form go through strtod, which assumes the
 * "C" LC_NUMERIC locale (the default unless the program calls setlocale).
 */
#ifndef PPDOCK_PDB_H
#define PPDOCK_PDB_H

#include <stddef.h>
#include <stdint.h>

#include "ppdock/arena.h"
#include "ppdock/fsutil.h"
#include "ppdock/status.h"

/* ESM-2 alphabet ids (docs/spec/esm2.md §1): L=4 A=5 G=6 V=7 S=8 E=9 R=10 T=11 I=12 D=13 P=14
 * K=15 Q=16 N=17 F=18 Y=19 M=20 H=21 W=22 C=23, <unk>=3. */
enum { PPD_TOKEN_UNK = 3 };

typedef struct {
    int first_model_only; /* 0 (default): concatenate all models, as DiffDock-PP */
} ppd_pdb_options;

typedef struct {
    int32_t n;          /* residues with a CA atom: the graph's nodes */
    float *pos;         /* [n][3] CA coordinates, Å, file frame */
    char *seq;          /* [n+1] one-letter codes, NUL-terminated; 'X' = not one of the 20 */
    uint8_t *tokens;    /* [n] ESM alphabet ids; PPD_TOKEN_UNK for 'X' */
    char (*resname)[4]; /* [n] residue name, NUL-terminated (up to 3 chars) */
    int32_t *resnum;    /* [n] residue sequence number (columns 23-26) */
    char *icode;        /* [n] insertion code (column 27), ' ' when none */
    char *chain;        /* [n] chain id (column 22) */
    int32_t *model;     /* [n] 0-based index of the MODEL the residue came from */
    /* What was dropped, for reports: */
    int32_t n_models;         /* models seen (1 when there are no MODEL records) */
    int32_t n_skipped_no_ca;  /* ATOM residues without a CA atom */
    int32_t n_hetero;         /* HETATM residues dropped (incl. waters) */
    int32_t n_altloc_dropped; /* CA atoms not kept because another altloc won */
    int32_t n_nonstandard;    /* kept residues whose name is not one of the 20 ('X') */
} ppd_protein;

/* Parse PDB text (text[len] need not be NUL-terminated). All arrays of *out are allocated
 * from `arena` (growable or large enough); `name` (usually the file path) prefixes messages. */
ppd_status ppd_pdb_parse(const char *text, size_t len, const char *name,
                         const ppd_pdb_options *opts, ppd_arena *arena, ppd_protein *out);

/* Read `path` (.pdb or .pdb.gz, by content), parse it. `raw` receives the file's bytes as
 * stored (for source digests) and `text` the decompressed text; both are reusable buffers. */
ppd_status ppd_pdb_read(const char *path, const ppd_pdb_options *opts, ppd_buf *raw, ppd_buf *text,
                        ppd_arena *arena, ppd_protein *out);

/* One-letter code and ESM token of a residue name ("ALA" -> 'A', 5). Unknown: 'X', 3. */
char ppd_residue_letter(const char *resname3);
uint8_t ppd_letter_token(char letter);

#endif
