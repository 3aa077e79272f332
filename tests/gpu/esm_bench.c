/* tests/gpu/esm_bench.c — the CUDA ESM engine's throughput and memory plan on a FASTA file, for
 * scripts/gpu-check.sh (built with the GPU test as build/tests/esm-bench).
 *
 *   esm-bench SHAPE FASTA PRECISION BUDGET_GB [MAX_TOKENS [REPEAT [COMPARE [PROFILE]]]]
 *   esm-bench 33,1280,20 bench/data/db5.5-chains.fasta bf16 20 0 2 8 1
 *
 * Random weights of SHAPE (L,d,H); every sequence of FASTA embedded (last layer) with the plan
 * for a device budget of BUDGET_GB (MAX_TOKENS caps the token rows per batch, 0 = only the
 * budget), REPEAT times (the first run warms up; the best run is reported). The sink only
 * counts, so this times the engine: uploads, kernels, downloads. COMPARE > 0: the first COMPARE
 * sequences are also embedded by the CPU engine (fp32, all host threads) and compared:
 *   ESM_ERROR precision=.. sequences=.. values=.. max_abs=.. max_abs_cpu=.. rel_to_max=.. rms=..
 * One line per run, then
 *   ESM_BENCH shape=.. precision=.. budget_gb=.. batches=.. largest_batch_tokens=.. fit_tokens=..
 *     planned_mib=.. used_mib=.. driver_mib=.. runtime_mib=.. tokens=.. residues=.. seconds=..
 *     tokens_per_s=.. residues_per_s=..   (driver_mib: what the driver counted for the arena,
 *     cudaMemGetInfo; runtime_mib: for the stream and cuBLAS handle, outside the plan)
 * fit_tokens: the most token rows one batch of sequences as long as the longest here could hold
 * within the budget (the planner's own formula; with max_tokens 0 the data set may all fit in
 * one batch, and this says how much more would).
 * PROFILE 1: one more run with every op of every layer timed by CUDA events (a wait per layer,
 * so slower than the timed runs), where the stream's time goes:
 *   ESM_PROFILE precision=.. total_ms=.. layernorm=..% qkv_gemm=..% rope=..% attention=..% ...
 *     attention_tflops=..   (4 T^2 d flops a layer per sequence of T tokens, over its time)
 * PPD_ESM_FP32_ATTENTION=1 (bf16 only): the fp32 attention kernel and a cast instead of the
 * tensor-core one (ppd_cuda_esm_opts.fp32_attention), labelled precision=bf16-f32att.
 * Exit status: 0, 2 usage, 3 no device or a failure (message on stderr).
 */
#include "ppdock/esm.h"
#include "ppdock/esm_cuda.h"
#include "ppdock/fasta.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

typedef struct {
    uint8_t **toks;
    int *lens;
    int n, cap;
} seqs;

static ppd_status on_seq(void *ctx, const char *name, const char *seq, size_t len, int line) {
    seqs *s = ctx;
    (void)name, (void)line;
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 1024;
        s->toks = realloc(s->toks, (size_t)s->cap * sizeof *s->toks);
        s->lens = realloc(s->lens, (size_t)s->cap * sizeof *s->lens);
        if (!s->toks || !s->lens) return ppd_fail(PPD_ERR_NOMEM, "esm-bench: out of memory");
    }
    uint8_t *t = malloc(len + 1);
    if (!t) return ppd_fail(PPD_ERR_NOMEM, "esm-bench: out of memory");
    PPD_TRY(ppd_esm_tokenize(seq, len, PPD_ESM_UNKNOWN_AS_X, t, NULL));
    s->toks[s->n] = t;
    s->lens[s->n++] = (int)len;
    return PPD_OK;
}

typedef struct {
    int64_t residues;
    int keep;     /* sequences 0..keep-1 are copied out */
    float **rows; /* [keep] */
} sink_ctx;

static ppd_status count_sink(void *ctx, int seq, const float *emb, int n, int d) {
    sink_ctx *c = ctx;
    c->residues += n;
    if (seq < c->keep && c->rows) {
        free(c->rows[seq]);
        c->rows[seq] = malloc((size_t)n * d * sizeof(float));
        if (!c->rows[seq]) return ppd_fail(PPD_ERR_NOMEM, "esm-bench: out of memory");
        memcpy(c->rows[seq], emb, (size_t)n * d * sizeof(float));
    }
    return PPD_OK;
}

/* The first `k` sequences through the CPU engine, against the GPU rows in g. */
static ppd_status compare_cpu(const ppd_esm_model *m, const seqs *s, int k, float **g,
                              const char *precision) {
    ppd_esm_plan plan;
    ppd_esm_plan_opts o = PPD_ESM_PLAN_OPTS_DEFAULT;
#ifdef _OPENMP
    o.threads = omp_get_max_threads();
#endif
    sink_ctx c = {0, k, calloc((size_t)k, sizeof(float *))};
    if (!c.rows) return ppd_fail(PPD_ERR_NOMEM, "esm-bench: out of memory");
    ppd_status st = ppd_esm_plan_make(&plan, &m->cfg, s->lens, k, &o);
    if (!st) st = ppd_esm_run(m, &plan, (const uint8_t *const *)s->toks, -1, count_sink, &c);
    if (!st) {
        double md = 0, mc = 0, ss = 0;
        int64_t nv = 0;
        for (int i = 0; i < k; i++)
            for (int64_t j = 0; j < (int64_t)s->lens[i] * m->cfg.d; j++) {
                double e = fabs((double)g[i][j] - c.rows[i][j]);
                md = fmax(md, e);
                mc = fmax(mc, fabs((double)c.rows[i][j]));
                ss += e * e;
                nv++;
            }
        printf("ESM_ERROR precision=%s sequences=%d values=%lld max_abs=%.3g max_abs_cpu=%.3g "
               "rel_to_max=%.3g rms=%.3g\n",
               precision, k, (long long)nv, md, mc, md / fmax(mc, 1e-30), sqrt(ss / (double)nv));
        ppd_esm_plan_free(&plan);
    }
    for (int i = 0; i < k; i++) free(c.rows[i]);
    free(c.rows);
    return st;
}

int main(int argc, char **argv) {
    if (argc < 5) {
        fprintf(stderr, "usage: esm-bench SHAPE FASTA fp32|tf32|bf16 BUDGET_GB [MAX_TOKENS [REPEAT "
                        "[COMPARE]]]\n");
        return 2;
    }
    int L, d, H, repeat = argc > 6 ? atoi(argv[6]) : 2, compare = argc > 7 ? atoi(argv[7]) : 0,
                 profile = argc > 8 ? atoi(argv[8]) : 0;
    ppd_cuda_esm_opts co = PPD_CUDA_ESM_OPTS_DEFAULT;
    double budget_gb = atof(argv[4]);
    if (ppd_esm_parse_shape(argv[1], &L, &d, &H) ||
        ppd_cuda_precision_parse(argv[3], &co.precision) || budget_gb <= 0 || repeat < 1) {
        fprintf(stderr, "esm-bench: %s\n", ppd_errmsg());
        return 2;
    }
    /* PPD_ESM_FP32_ATTENTION=1: bf16 without the tensor-core attention (labelled bf16-f32att) */
    const char *fa = getenv("PPD_ESM_FP32_ATTENTION");
    co.fp32_attention = fa && atoi(fa) && co.precision == PPD_CUDA_BF16;
    const char *label = co.fp32_attention ? "bf16-f32att" : argv[3];
    seqs s = {0};
    ppd_esm_model m;
    ppd_esm_plan plan;
    ppd_status st = ppd_fasta_read(argv[2], on_seq, &s);
    if (!st) st = ppd_esm_random_init(&m, L, d, H, 0);
    ppd_esm_plan_opts o = PPD_ESM_PLAN_OPTS_DEFAULT;
    o.device = co.precision == PPD_CUDA_BF16 ? 2 : 1;
    o.memory_budget = (size_t)(budget_gb * (double)(1ull << 30));
    o.max_tokens = argc > 5 ? atoll(argv[5]) : 0;
    if (!st) st = ppd_esm_plan_make(&plan, &m.cfg, s.lens, s.n, &o);
    if (st) {
        fprintf(stderr, "esm-bench: %s\n", ppd_errmsg());
        return 3;
    }
    if (compare > s.n) compare = s.n;
    /* the largest batch (token rows) that fits: fixed part + workspace(tokens) <= budget */
    int64_t lo = 0, hi = (int64_t)1 << 40;
    size_t fixed = plan.weight_bytes + plan.base_bytes;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo + 1) / 2;
        size_t ws = ppd_esm_device_workspace_bytes(&m.cfg, mid, plan.max_len, o.device == 2);
        if (fixed + ws <= o.memory_budget)
            lo = mid;
        else
            hi = mid - 1;
    }
    int64_t fit_tokens = lo;
    ppd_cuda_esm_report best = {0};
    int64_t residues = 0;
    sink_ctx sc = {0, compare, compare ? calloc((size_t)compare, sizeof(float *)) : NULL};
    for (int r = 0; r < repeat && !st; r++) {
        ppd_cuda_esm_report rep;
        sc.residues = 0;
        st = ppd_cuda_esm_run(&m, &plan, (const uint8_t *const *)s.toks, -1, count_sink, &sc, &co,
                              &rep);
        residues = sc.residues;
        if (st) break;
        printf("run %d: %.3f s, %.0f tokens/s\n", r + 1, rep.gpu_seconds,
               (double)rep.tokens / rep.gpu_seconds);
        if (r == 0 || rep.gpu_seconds < best.gpu_seconds) best = rep;
    }
    if (st) {
        fprintf(stderr, "esm-bench: %s\n", ppd_errmsg());
        return 3;
    }
    printf(
        "ESM_BENCH device=\"%s\" shape=%s precision=%s budget_gb=%g max_tokens=%lld sequences=%d "
        "batches=%d largest_batch_tokens=%lld fit_tokens=%lld planned_mib=%.1f used_mib=%.1f "
        "driver_mib=%.1f runtime_mib=%.1f tokens=%lld "
        "residues=%lld seconds=%.3f tokens_per_s=%.0f residues_per_s=%.0f\n",
        best.device_name, argv[1], label, budget_gb, (long long)o.max_tokens, s.n, plan.n_batches,
        (long long)plan.max_batch_tokens, (long long)fit_tokens,
        (double)best.planned_bytes / (1 << 20), (double)best.arena_high / (1 << 20),
        (double)best.measured_bytes / (1 << 20), (double)best.runtime_bytes / (1 << 20),
        (long long)best.tokens, (long long)residues, best.gpu_seconds,
        (double)best.tokens / best.gpu_seconds, (double)residues / best.gpu_seconds);
    if (profile) {
        ppd_cuda_esm_opts po = co;
        po.profile = 1;
        ppd_cuda_esm_report pr;
        sink_ctx quiet = {0, 0, NULL};
        st = ppd_cuda_esm_run(&m, &plan, (const uint8_t *const *)s.toks, -1, count_sink, &quiet,
                              &po, &pr);
        if (st) {
            fprintf(stderr, "esm-bench: profiled run: %s\n", ppd_errmsg());
            return 3;
        }
        double total = 0;
        for (int k = 0; k < PPD_ESM_NOPS; k++) total += pr.op_ms[k];
        printf("ESM_PROFILE precision=%s total_ms=%.1f", label, total);
        double att_ms = 0;
        for (int k = 0; k < PPD_ESM_NOPS; k++) {
            printf(" %s=%.1f%%", ppd_cuda_esm_op_names[k],
                   total > 0 ? 100.0 * pr.op_ms[k] / total : 0.0);
            if (!strcmp(ppd_cuda_esm_op_names[k], "attention")) att_ms = pr.op_ms[k];
        }
        /* the attention's useful flops, 4 T^2 d a layer for each item of T = len + 2 tokens (Q K^T
         * and P V; no padding counted), over its measured time: how far it is from the tensor
         * cores' rate */
        double att_flops = 0;
        for (int i = 0; i < plan.n_items; i++) {
            double T = plan.items[i].len + 2.0;
            att_flops += 4.0 * T * T * m.cfg.d * m.cfg.n_layers;
        }
        printf(" attention_tflops=%.1f\n", att_ms > 0 ? att_flops / (att_ms * 1e9) : 0.0);
    }
    if (compare && sc.rows && compare_cpu(&m, &s, compare, sc.rows, label) != PPD_OK) {
        fprintf(stderr, "esm-bench: CPU comparison: %s\n", ppd_errmsg());
        return 3;
    }
    for (int i = 0; i < compare && sc.rows; i++) free(sc.rows[i]);
    free(sc.rows);
    ppd_esm_plan_free(&plan);
    ppd_esm_model_free(&m);
    for (int i = 0; i < s.n; i++) free(s.toks[i]);
    free(s.toks);
    free(s.lens);
    return 0;
}
