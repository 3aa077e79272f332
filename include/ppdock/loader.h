/* ppdock/loader.h — training batches streamed from a graph cache joined with an ESM cache.
 *
 * Opening scans the graph cache once for the complex ids of each split and their node and edge
 * counts (about 40 bytes per complex); batches are then read record by record from the
 * memory-mapped LMDB files into an arena the caller resets per batch, so host memory holds the
 * current batch, not the data set (DESIGN.md rule 3).
 *
 * A batch is what ppd_score_batch wants (ppdock/score_model.h), positions in the receptor-centred
 * frame with the ligand in its TRUE (bound) pose; the trainer noises the ligand. Node features:
 *   lm_dim > 0: x = [ESM embedding (lm_dim) | ESM token id as float]   (spec §1.3)
 *   lm_dim = 0: x = [1-based index of the 3-letter residue name among the 20 standard names in
 *               sorted order (ALA=1 ... VAL=20), 21 for anything else]
 *
 * Errors of ppd_loader_open: PPD_ERR_USAGE when a directory is not a graph / ESM cache, the ESM
 * cache's width differs from lm_dim, or the graph cache's data.knn_size differs from knn_k (each
 * message names the cache, the value found and the setting to change); cache errors as they
 * come (PPD_ERR_LMDB, PPD_ERR_CORRUPT ...). A complex that cannot be loaded (corrupt record, no
 * embedding for one of its chains, or a node whose x[0] does not truncate to a row of the
 * model's embedding table: DiffDock-PP reads that column as an index, spec §3.2, and PyTorch
 * would raise) is skipped with a warning naming it and what to run; the batch reports how many
 * were skipped.
 */
#ifndef PPDOCK_LOADER_H
#define PPDOCK_LOADER_H

#include "ppdock/arena.h"
#include "ppdock/status.h"

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ppd_loader ppd_loader;

typedef struct {
    const char *graphs; /* graph cache directory (graph-build) */
    const char *esm;    /* ESM cache directory (esm-embed); NULL when lm_dim == 0 */
    int lm_dim, knn_k;
    int index_rows; /* the model's atom_ebd rows: x[0] must truncate into [0, index_rows) */
} ppd_loader_opts;

ppd_status ppd_loader_open(const ppd_loader_opts *o, ppd_loader **out);
void ppd_loader_close(ppd_loader *l);

/* Number of complexes of a split ("train", "val", "test"); 0 for an unknown split. */
int64_t ppd_loader_count(const ppd_loader *l, const char *split);
/* The i-th id of a split (key order), or NULL. */
const char *ppd_loader_id(const ppd_loader *l, const char *split, int64_t i);

typedef struct {
    int B;       /* complexes loaded */
    int skipped; /* complexes of the request that could not be loaded */
    int64_t Nr, Nl, Er, El;
    float *rec_pos, *lig_pos; /* (Nr, 3), (Nl, 3) */
    float *rec_x, *lig_x;     /* (N, 1 + lm_dim) */
    int64_t *rec_batch, *lig_batch;
    int64_t *rec_src, *rec_dst, *lig_src, *lig_dst;
    int64_t *rec_start, *lig_start;   /* (B + 1) first node of each complex */
    int64_t *rec_estart, *lig_estart; /* (B + 1) first edge of each complex */
    const char **ids;                 /* (B) */
} ppd_train_batch;

/* The counts a pass's memory grows with: receptor and ligand nodes and kNN edges, and cross
 * edges. */
typedef struct {
    int64_t Nr, Nl, Er, El, Ec;
} ppd_pass_sizes;

/* An upper bound of any pass of at most B complexes of a split: each count is the sum of the B
 * largest of that count over the split, taken separately, with every receptor-ligand pair a
 * cross edge (Nr x Nl: what the cross-edge cutoff approaches as t -> 1). A pass's memory grows
 * with each count, so none of B complexes of the split needs more than a pass of these sizes.
 * From the counts kept at open (no record is read again); a record that could not be read then
 * is left out, as training skips it. An unknown or empty split gives zeros.
 * Errors: PPD_ERR_NOMEM. */
ppd_status ppd_loader_worst_pass(const ppd_loader *l, const char *split, int B,
                                 ppd_pass_sizes *out);

/* Loads complexes idx[0..n) of a split into a batch allocated from `arena`. */
ppd_status ppd_loader_load(ppd_loader *l, const char *split, const int64_t *idx, int n,
                           ppd_arena *arena, ppd_train_batch *out);

/* ---- read-ahead: the next batch read on a worker thread while the caller computes ----------
 *
 * One worker, one read at a time: ppd_read_ahead_begin starts ppd_loader_load(idx[0..n)) into
 * `arena` (idx is copied); ppd_read_ahead_wait blocks until it ends and returns what
 * ppd_loader_load returned (its message re-raised on the caller's thread), the batch, and the
 * seconds the read took on the worker. Between begin and wait the caller must not use the
 * loader or the arena (LMDB read transactions are opened MDB_NOTLS, so the worker may read
 * through the loader's; the loader's copy buffers are its alone meanwhile). A read that skips
 * complexes warns from the worker, as ppd_loader_load does.
 * Errors: start: PPD_ERR_NOMEM / PPD_ERR_IO (thread creation); begin: PPD_ERR_USAGE while a read
 * is in flight, PPD_ERR_NOMEM; wait: PPD_ERR_USAGE when nothing was begun, else the read's. */
typedef struct ppd_read_ahead ppd_read_ahead;

ppd_status ppd_read_ahead_start(ppd_loader *l, ppd_read_ahead **out);
ppd_status ppd_read_ahead_begin(ppd_read_ahead *r, const char *split, const int64_t *idx, int n,
                                ppd_arena *arena);
ppd_status ppd_read_ahead_wait(ppd_read_ahead *r, ppd_train_batch *out, double *read_seconds);
/* Waits for a read in flight (its result dropped), then ends the worker. NULL is a no-op. */
void ppd_read_ahead_stop(ppd_read_ahead *r);

#ifdef __cplusplus
}
#endif

#endif
