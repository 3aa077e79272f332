/* ppdock/esm_record.h — ESM embedding records (record type PPD_REC_ESM) and their keys.
 *
 * esm-embed writes one record per UNIQUE embedded sequence, under the key
 *     16 lowercase hex digits of XXH3-64( model identity (u64 LE) ‖ policy text ‖ 0x00 ‖ tokens )
 * where the tokens are the ESM-2 alphabet ids of the residues (no cls/eos) and the policy text
 * names the long-sequence policy ("whole", "window:W:O", "truncate:N"). Identical chains in
 * different complexes (antibody constant regions, repeated antigens) share one record; a reader
 * holding a graph record finds the embedding of each side by computing this key from the side's
 * tokens and the ESM cache's meta params (esm.model, esm.policy).
 *
 * Arrays (docs/cache-format.md §3.2):
 *   emb     f16 or f32 [L, d]  per-residue representation of the requested layer
 *   tokens  u8  [L]            the residue tokens embedded (ids 3..30)
 *   model   u64 [1]            the model identity
 *   layer   i32 [1]            the layer (0..n_layers; n_layers = after the final LayerNorm)
 */
#ifndef PPDOCK_ESM_RECORD_H
#define PPDOCK_ESM_RECORD_H

#include <stddef.h>
#include <stdint.h>

#include "ppdock/fsutil.h"
#include "ppdock/record.h"
#include "ppdock/status.h"

#define PPD_ESM_KEY_LEN 16

/* key: PPD_ESM_KEY_LEN hex digits + NUL. */
void ppd_esm_record_key(uint64_t model_identity, const char *policy, const uint8_t *tokens,
                        size_t n, char key[PPD_ESM_KEY_LEN + 1]);

/* Build a sealed record. emb is [n][d] float32; stored as float16 (round to nearest even) when
 * half is set, else float32. */
ppd_status ppd_esm_record_build(const char *key, const float *emb, const uint8_t *tokens, int32_t n,
                                int32_t d, int half, uint64_t model_identity, int32_t layer,
                                ppd_buf *out);

typedef struct {
    int32_t n, d;
    int dtype;             /* PPD_DT_F16 or PPD_DT_F32 */
    const void *emb;       /* [n][d] in dtype */
    const uint8_t *tokens; /* [n] */
    uint64_t model_identity;
    int32_t layer;
} ppd_esm_embedding;

/* Point at a parsed record's arrays (the value must be aligned for its dtype: copy otherwise).
 * PPD_ERR_CORRUPT names the missing or inconsistent array. */
ppd_status ppd_esm_record_decode(const ppd_rec_view *v, ppd_esm_embedding *e);
/* Invariants: n >= 1, d >= 1, tokens are residue ids 3..30, emb finite. PPD_ERR_CORRUPT with the
 * check's name in *check ("tokens", "finite", "empty"). */
ppd_status ppd_esm_record_validate(const ppd_esm_embedding *e, const char **check);
/* Row i of the embedding as float32 (widening float16). */
void ppd_esm_embedding_row(const ppd_esm_embedding *e, int32_t i, float *out);

#endif
