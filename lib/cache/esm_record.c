/* ESM embedding records (see ppdock/esm_record.h). */
#include "ppdock/esm_record.h"
#include "ppdock/half.h"
#include "ppdock/hash.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

void ppd_esm_record_key(uint64_t model_identity, const char *policy, const uint8_t *tokens,
                        size_t n, char key[PPD_ESM_KEY_LEN + 1]) {
    ppd_hasher *h = ppd_hasher_new();
    uint64_t d = 0;
    if (h) {
        ppd_hasher_update(h, &model_identity, 8);
        ppd_hasher_update(h, policy, strlen(policy) + 1); /* with its NUL: a separator */
        ppd_hasher_update(h, tokens, n);
        d = ppd_hasher_digest(h);
        ppd_hasher_free(h);
    }
    ppd_hash_hex(d, key);
}

ppd_status ppd_esm_record_build(const char *key, const float *emb, const uint8_t *tokens, int32_t n,
                                int32_t d, int half, uint64_t model_identity, int32_t layer,
                                ppd_buf *out) {
    if (n < 1 || d < 1) return ppd_fail(PPD_ERR_EMPTY, "%s: empty embedding (%d x %d)", key, n, d);
    ppd_rec_layout l;
    ppd_rec_layout_init(&l, PPD_REC_ESM);
    int se = ppd_rec_layout_add(&l, "emb", half ? PPD_DT_F16 : PPD_DT_F32, 2,
                                (const uint32_t[]){(uint32_t)n, (uint32_t)d});
    int st = ppd_rec_layout_add(&l, "tokens", PPD_DT_U8, 1, (const uint32_t[]){(uint32_t)n});
    int sm = ppd_rec_layout_add(&l, "model", PPD_DT_U64, 1, (const uint32_t[]){1});
    int sl = ppd_rec_layout_add(&l, "layer", PPD_DT_I32, 1, (const uint32_t[]){1});
    if (sl < 0) return ppd_fail(PPD_ERR_INTERNAL, "ESM record layout");
    PPD_TRY(ppd_rec_layout_build(&l, out));
    size_t count = (size_t)n * (size_t)d;
    if (half) {
        ppd_f32_to_f16_array(ppd_rec_array_ptr(out, se), emb, count);
    } else {
        memcpy(ppd_rec_array_ptr(out, se), emb, count * sizeof(float));
    }
    memcpy(ppd_rec_array_ptr(out, st), tokens, (size_t)n);
    memcpy(ppd_rec_array_ptr(out, sm), &model_identity, 8);
    memcpy(ppd_rec_array_ptr(out, sl), &layer, 4);
    ppd_rec_seal(out, key, strlen(key));
    return PPD_OK;
}

ppd_status ppd_esm_record_decode(const ppd_rec_view *v, ppd_esm_embedding *e) {
    memset(e, 0, sizeof *e);
    if (v->header.type != PPD_REC_ESM)
        return ppd_fail(PPD_ERR_CORRUPT, "record type %u is not an ESM embedding", v->header.type);
    ppd_rec_array a;
    const void *p;
    PPD_TRY(ppd_rec_find(v, "emb", 0, 2, &a, &e->emb));
    if (a.dtype != PPD_DT_F16 && a.dtype != PPD_DT_F32)
        return ppd_fail(PPD_ERR_CORRUPT, "emb is %s, expected f16 or f32", ppd_dtype_name(a.dtype));
    if (!ppd_rec_array_aligned(e->emb, a.dtype))
        return ppd_fail(PPD_ERR_USAGE, "emb is not aligned in memory: copy the value first");
    e->dtype = a.dtype;
    e->n = (int32_t)a.shape[0];
    e->d = (int32_t)a.shape[1];
    PPD_TRY(ppd_rec_find(v, "tokens", PPD_DT_U8, 1, &a, &p));
    if ((int32_t)a.shape[0] != e->n)
        return ppd_fail(PPD_ERR_CORRUPT, "tokens has %u entries, emb has %d rows", a.shape[0],
                        e->n);
    e->tokens = p;
    PPD_TRY(ppd_rec_find(v, "model", PPD_DT_U64, 1, &a, &p));
    memcpy(&e->model_identity, p, 8);
    PPD_TRY(ppd_rec_find(v, "layer", PPD_DT_I32, 1, &a, &p));
    memcpy(&e->layer, p, 4);
    return PPD_OK;
}

void ppd_esm_embedding_row(const ppd_esm_embedding *e, int32_t i, float *out) {
    if (e->dtype == PPD_DT_F32) {
        memcpy(out, (const float *)e->emb + (size_t)i * (size_t)e->d, (size_t)e->d * sizeof(float));
        return;
    }
    const uint16_t *h = (const uint16_t *)e->emb + (size_t)i * (size_t)e->d;
    for (int32_t j = 0; j < e->d; j++) out[j] = ppd_f16_to_f32(h[j]);
}

ppd_status ppd_esm_record_validate(const ppd_esm_embedding *e, const char **check) {
    *check = "";
    if (e->n < 1 || e->d < 1) {
        *check = "empty";
        return ppd_fail(PPD_ERR_CORRUPT, "embedding is %d x %d", e->n, e->d);
    }
    for (int32_t i = 0; i < e->n; i++)
        if (e->tokens[i] < 3 || e->tokens[i] > 30) {
            *check = "tokens";
            return ppd_fail(PPD_ERR_CORRUPT, "token %d is %u, not a residue id (3..30)", i,
                            e->tokens[i]);
        }
    /* finite values: the generic check of every float array covers emb (f16 and f32) */
    return PPD_OK;
}
