/* ppdock/pdb.h — PDB reader: the residue (CA) view of a protein, as DiffDock-PP builds it.
 *
 * Reads fixed-column PDB text (plain or gzip; ppd_pdb_read detects gzip by its magic bytes) and
 * returns one entry per residue that has an atom named exactly "CA", in the order Biopython's
 * PDBParser iterates them (DiffDock-PP parses with Biopython; docs/spec/diffdock-pp.md §1.1–1.3):
 *
 *  - Records: ATOM and HETATM are read; everything before the first ATOM/HETATM/MODEL is header;
 *    an END or CONECT record ends the coordinates (later records are ignored, as in Biopython).
 *  - HETATM residues (ligands, ions, waters) are dropped. ATOM residues are kept whatever their
 *    name; names outside the 20 standard amino acids get sequence letter 'X' and token <unk>.
 *  - Models: every MODEL is kept and concatenated (DiffDock-PP does this; n_models counts them)
 *    unless opts.first_model_only is set.
 *  - Order: models in file order; within a model, chains in order of first appearance (a chain
 *    id that reappears later continues the earlier chain, as in Biopython); within a chain,
 *    residues in order of first appearance, a residue being (resseq, insertion code).
 *  - Alternate locations: per atom name, the altloc with the highest occupancy is kept; on equal
 *    occupancy the first one in the file (Biopython's rule). A second atom of the same name
 *    without altloc is ignored. Residues whose name differs between altlocs (point mutations)
 *    keep the variant Biopython selects: the one defined last.
 *  - Residues without a CA atom are skipped and counted (n_skipped_no_ca).
 *
 * Errors (never a crash, whatever the bytes): PPD_ERR_FORMAT with "<name>:<line>: <what>" for a
 * record whose coordinates or residue number do not parse or are not finite; PPD_ERR_EMPTY when
 * no residue with a CA remains ("<name>: no ATOM residues with a CA atom"); PPD_ERR_FORMAT for
 * binary junk (a NUL byte or a non-text record, with its line); PPD_ERR_FORMAT / PPD_ERR_IO from
 * gzip and file reading (truncated stream, unreadable file); PPD_ERR_NOMEM.
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
    int32_t n;           /* residues with a CA atom: the graph's nodes */
    float *pos;          /* [n][3] CA coordinates, Å, file frame */
    char *seq;           /* [n+1] one-letter codes, NUL-terminated; 'X' = not one of the 20 */
    uint8_t *tokens;     /* [n] ESM alphabet ids; PPD_TOKEN_UNK for 'X' */
    char (*resname)[4];  /* [n] residue name, NUL-terminated (up to 3 chars) */
    int32_t *resnum;     /* [n] residue sequence number (columns 23-26) */
    char *icode;         /* [n] insertion code (column 27), ' ' when none */
    char *chain;         /* [n] chain id (column 22) */
    int32_t *model;      /* [n] 0-based index of the MODEL the residue came from */
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
