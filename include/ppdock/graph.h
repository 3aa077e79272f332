/* ppdock/graph.h — the residue graph of a complex: building it, its record, its invariants.
 *
 * A graph record (record type PPD_REC_GRAPH, keyed by the complex id) holds, for each side
 * S in {rec, lig} (receptor, ligand; N = that side's residues with a CA, E its edges):
 *
 *   S.pos        f32 [N,3]  CA coordinates minus the centre (receptor-centred frame)
 *   S.edge_index i32 [2,E]  row 0: sources (the neighbour j), row 1: destinations (the centre
 *                           i); kNN with k = data.knn_size, self excluded, centre-major, by
 *                           distance (ppdock/knn.h), computed on the original coordinates
 *   S.seq        u8  [N]    one-letter codes ('X' = not one of the 20 standard residues)
 *   S.tokens     u8  [N]    ESM-2 alphabet ids (<unk> = 3 for 'X')
 *   S.resname    u8  [N,4]  residue names, NUL-padded
 *   S.resnum     i32 [N]    residue numbers
 *   S.icode      u8  [N]    insertion codes (' ' = none)
 *   S.chain      u8  [N]    chain ids
 * and for the complex:
 *   center       f32 [1,3]  mean receptor CA position (the original frame = pos + center)
 *   inputs       u64 [1]    digest of the two source files (XXH3-64 of their two digests)
 *   params       u64 [1]    hash of the parameters that shaped the record
 *   split        u8  [L]    the dataset split ("train", "val", "test", or "" for a single pair)
 *
 * This is DiffDock-PP's HeteroData graph (docs/spec/diffdock-pp.md §1.2) plus what later stages
 * need (sequences for ESM, chain ids and residue numbers to write docked PDB files).
 */
#ifndef PPDOCK_GRAPH_H
#define PPDOCK_GRAPH_H

#include <stddef.h>
#include <stdint.h>

#include "ppdock/arena.h"
#include "ppdock/fsutil.h"
#include "ppdock/pdb.h"
#include "ppdock/record.h"
#include "ppdock/status.h"

typedef struct {
    int32_t n;
    int64_t n_edges;
    const float *pos;      /* [n][3] */
    const int32_t *src;    /* [n_edges] edge_index row 0 */
    const int32_t *dst;    /* [n_edges] edge_index row 1 */
    const char *seq;       /* [n], not NUL-terminated */
    const uint8_t *tokens; /* [n] */
    const char (*resname)[4];
    const int32_t *resnum;
    const char *icode;
    const char *chain;
} ppd_graph_side;

typedef struct {
    ppd_graph_side rec, lig;
    const float *center; /* [3] */
    uint64_t inputs_digest, params_hash;
    const char *split; /* not NUL-terminated */
    size_t split_len;
} ppd_graph;

/* Build the record of one complex into out (sealed, ready to store under `key`). The kNN
 * scratch comes from `scratch`. Errors from ppd_knn_graph; PPD_ERR_EMPTY if a side has no
 * residues. */
ppd_status ppd_graph_build_record(const char *key, const char *split, const ppd_protein *rec,
                                  const ppd_protein *lig, int knn_k, uint64_t inputs_digest,
                                  uint64_t params_hash, ppd_arena *scratch, ppd_buf *out);

/* The inputs digest a graph record carries: XXH3-64 of the two files' XXH3-64 digests (each
 * over the file's bytes as stored, compressed or not), receptor first. */
uint64_t ppd_graph_inputs_digest(uint64_t receptor_file_hash, uint64_t ligand_file_hash);

/* Point a ppd_graph at the arrays of a parsed record. The value must be 16-byte aligned
 * (copy it into a ppd_buf otherwise: ppd_graph_decode_copy does). Errors: PPD_ERR_CORRUPT naming
 * the missing or inconsistent array ("rec.tokens has 12 entries, rec.pos has 13 rows"). */
ppd_status ppd_graph_decode(const ppd_rec_view *v, ppd_graph *g);
/* Copy the value into `storage` (aligned), then decode. */
ppd_status ppd_graph_decode_copy(const ppd_rec_view *v, ppd_buf *storage, ppd_graph *g);

/* Check the invariants of a decoded graph; knn_k <= 0 skips the per-node degree check.
 * On failure returns PPD_ERR_CORRUPT and names the check in `check` (a short identifier such
 * as "edge-range", "degree", "self-loop", "edge-order", "seq-tokens", "finite", "centred",
 * "empty") with details in ppd_errmsg(). */
ppd_status ppd_graph_validate(const ppd_graph *g, int knn_k, const char **check);

#endif
