/* esm-sink-bench — what esm-embed's sink costs per residue, the two ways it can be done, side by
 * side in one run (make bench: bench/esm-sink.sh).
 *
 *   esm-sink-bench DIR [RECORDS [LEN [WIDTH [ROUNDS]]]]     (defaults 476 271 1280 3)
 *
 * RECORDS embeddings of LEN x WIDTH values (the defaults: the 129k residues of the 492 DB5.5
 * chains at the 650M width, 271 the mean length) are made fp16 records and written to fresh
 * caches under DIR, ROUNDS times each way, alternating:
 *   serial: the scalar fp32 -> fp16 conversion and ppd_cache_writer_put on the calling thread
 *           (esm-embed before the cache queue);
 *   queued: ppd_f32_to_f16_array (F16C where the CPU has it) and ppd_cache_queue_push, the puts
 *           on the queue's thread (esm-embed now).
 * Per way, the median over the rounds of: the caller's seconds in building records, its seconds
 * in total (what the engine's thread would spend with no GPU work to overlap), and the seconds
 * until every record is put; then the ratios. One line each:
 *   SINK_BENCH way=serial residues=.. build_s=.. caller_s=.. total_s=..
 *   SINK_BENCH way=queued residues=.. build_s=.. caller_s=.. total_s=.. put_thread_s=..
 *   SINK_RATIO build=.. caller=.. total=..      (serial / queued)
 * Both ways must build the same record bytes (checked first). Exit 0, 2 on bad arguments, 3 on
 * a cache error or differing records.
 */
#include "ppdock/cache.h"
#include "ppdock/cache_queue.h"
#include "ppdock/esm_record.h"
#include "ppdock/half.h"
#include "ppdock/progress.h"
#include "ppdock/record.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    double build, caller, total, put_thread;
} timing;

/* The record esm-embed's sink builds: ppd_esm_record_build (the array conversion, F16C where the
 * CPU has it), or the same layout filled by the scalar function, as esm_record.c did before. */
static ppd_status build(const char *key, const float *emb, const uint8_t *tok, int n, int d,
                        int scalar, ppd_buf *out) {
    if (!scalar) return ppd_esm_record_build(key, emb, tok, n, d, 1, 1, 33, out);
    ppd_rec_layout l;
    ppd_rec_layout_init(&l, PPD_REC_ESM);
    int se =
        ppd_rec_layout_add(&l, "emb", PPD_DT_F16, 2, (const uint32_t[]){(uint32_t)n, (uint32_t)d});
    int st = ppd_rec_layout_add(&l, "tokens", PPD_DT_U8, 1, (const uint32_t[]){(uint32_t)n});
    int sm = ppd_rec_layout_add(&l, "model", PPD_DT_U64, 1, (const uint32_t[]){1});
    int sl = ppd_rec_layout_add(&l, "layer", PPD_DT_I32, 1, (const uint32_t[]){1});
    if (sl < 0) return ppd_fail(PPD_ERR_INTERNAL, "ESM record layout");
    PPD_TRY(ppd_rec_layout_build(&l, out));
    uint16_t *h = ppd_rec_array_ptr(out, se);
    for (size_t i = 0; i < (size_t)n * (size_t)d; i++) h[i] = ppd_f32_to_f16(emb[i]);
    uint64_t model = 1;
    int32_t layer = 33;
    memcpy(ppd_rec_array_ptr(out, st), tok, (size_t)n);
    memcpy(ppd_rec_array_ptr(out, sm), &model, 8);
    memcpy(ppd_rec_array_ptr(out, sl), &layer, 4);
    ppd_rec_seal(out, key, strlen(key));
    return PPD_OK;
}

static ppd_status one_round(const char *dir, int queued, const float *emb, const uint8_t *tok,
                            int records, int n, int d, timing *t) {
    ppd_cache_writer_opts o = {
        .record_type = PPD_REC_ESM, .producer = "esm-sink-bench", .params = "bench=1"};
    ppd_cache_writer *w;
    PPD_TRY(ppd_cache_writer_open(dir, &o, &w));
    ppd_cache_queue *q = NULL;
    ppd_buf rec = {0};
    ppd_status st = queued ? ppd_cache_queue_start(w, 32u << 20, 4096, &q) : PPD_OK;
    memset(t, 0, sizeof *t);
    double t0 = ppd_now_seconds();
    for (int r = 0; r < records && !st; r++) {
        char key[32];
        snprintf(key, sizeof key, "seq%05d", r);
        double tb = ppd_now_seconds();
        st = build(key, emb, tok, n, d, !queued, &rec);
        t->build += ppd_now_seconds() - tb;
        if (st) break;
        uint64_t ph = ppd_cache_writer_params_hash(w);
        st = queued ? ppd_cache_queue_push(q, key, &rec, (uint64_t)r, ph)
                    : ppd_cache_writer_put(w, key, rec.data, rec.len, (uint64_t)r, ph);
    }
    t->caller = ppd_now_seconds() - t0;
    if (q) {
        ppd_status qst = ppd_cache_queue_finish(q, &t->put_thread);
        if (!st) st = qst;
    }
    if (!st) st = ppd_cache_writer_commit(w);
    t->total = ppd_now_seconds() - t0;
    if (!st) st = ppd_cache_writer_seal(w);
    ppd_cache_writer_close(w);
    ppd_buf_free(&rec);
    return st;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: esm-sink-bench DIR [RECORDS [LEN [WIDTH [ROUNDS]]]]\n");
        return 2;
    }
    int records = argc > 2 ? atoi(argv[2]) : 476, n = argc > 3 ? atoi(argv[3]) : 271;
    int d = argc > 4 ? atoi(argv[4]) : 1280, rounds = argc > 5 ? atoi(argv[5]) : 3;
    if (records < 1 || n < 1 || d < 1 || rounds < 1 || rounds > 16) {
        fprintf(stderr, "esm-sink-bench: RECORDS, LEN, WIDTH >= 1 and ROUNDS 1..16\n");
        return 2;
    }
    float *emb = malloc((size_t)n * (size_t)d * sizeof *emb);
    uint8_t *tok = malloc((size_t)n);
    if (!emb || !tok) return 3;
    for (size_t i = 0; i < (size_t)n * (size_t)d; i++) /* embedding-like values, |x| < 4 */
        emb[i] = (float)((i * 7919u) % 8000u) / 1000.0f - 4.0f;
    for (int i = 0; i < n; i++) tok[i] = (uint8_t)(4 + i % 20);
    /* the two ways make the same bytes (F16C's conversion is the scalar function's) */
    ppd_buf a = {0}, b = {0};
    if (build("seq00000", emb, tok, n, d, 1, &a) || build("seq00000", emb, tok, n, d, 0, &b) ||
        a.len != b.len || memcmp(a.data, b.data, a.len)) {
        fprintf(stderr, "esm-sink-bench: the two ways built different records\n");
        return 3;
    }
    ppd_buf_free(&a);
    ppd_buf_free(&b);
    double v[2][4][16];
    for (int r = 0; r < rounds; r++)
        for (int way = 0; way < 2; way++) {
            char dir[4096];
            snprintf(dir, sizeof dir, "%s/%s-%d", argv[1], way ? "queued" : "serial", r);
            timing t;
            if (one_round(dir, way, emb, tok, records, n, d, &t) != PPD_OK) {
                fprintf(stderr, "esm-sink-bench: %s\n", ppd_errmsg());
                return 3;
            }
            v[way][0][r] = t.build, v[way][1][r] = t.caller, v[way][2][r] = t.total;
            v[way][3][r] = t.put_thread;
        }
    double m[2][4];
    for (int way = 0; way < 2; way++)
        for (int k = 0; k < 4; k++) m[way][k] = median(v[way][k], rounds);
    long long residues = (long long)records * n;
    printf("SINK_BENCH way=serial residues=%lld build_s=%.3f caller_s=%.3f total_s=%.3f\n",
           residues, m[0][0], m[0][1], m[0][2]);
    printf("SINK_BENCH way=queued residues=%lld build_s=%.3f caller_s=%.3f total_s=%.3f "
           "put_thread_s=%.3f f16c=%d\n",
           residues, m[1][0], m[1][1], m[1][2], m[1][3], ppd_f16_array_uses_f16c());
    printf("SINK_RATIO build=%.2f caller=%.2f total=%.2f\n", m[0][0] / m[1][0], m[0][1] / m[1][1],
           m[0][2] / m[1][2]);
    free(emb);
    free(tok);
    return 0;
}
