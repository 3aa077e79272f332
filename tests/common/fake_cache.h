/* tests/common/fake_cache.h — synthetic graph records and sealed graph caches for the unit
 * tests (cache format, checker, loader): proteins on a noisy helix, no PDB files needed.
 *
 * Records are built by the real graph builder (ppd_graph_build_record, kNN k = 10, split
 * "train") under PPT_FAKE_PARAMS, so a cache of them opens with the loader (knn_k 10, lm_dim 0).
 * Errors come back as the library's ppd_status with its message. */
#ifndef PPDOCK_TESTS_FAKE_CACHE_H
#define PPDOCK_TESTS_FAKE_CACHE_H

#include "ppdock/fsutil.h"
#include "ppdock/status.h"

#include <stddef.h>
#include <stdint.h>

extern const char *const PPT_FAKE_PARAMS; /* "graph.format=1\ndata.knn_size=10\n" */

/* The record of complex `key`: an nr-residue receptor and an nl-residue ligand (at most 400
 * each) drawn from `seed`, all alanine but every 7th residue an 'X' (MSE). */
ppd_status ppt_fake_graph_record(const char *key, int nr, int nl, uint64_t seed, ppd_buf *out);

/* A sealed graph cache in dir of n records C000, C001, ... (30 + i % 50 receptor and 12 + i % 9
 * ligand residues, seed i), committed batch_bytes at a time; map_bytes 0: the default map. */
ppd_status ppt_fake_graph_cache(const char *dir, int n, size_t batch_bytes, size_t map_bytes);

#endif
