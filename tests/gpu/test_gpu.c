/* tests/gpu/test_gpu.c — every CUDA op against its CPU twin, on a real GPU (`make test-gpu`).
 *
 * Plain C, linked with libppdock_cuda.a, libppdock.a and cudart. It describes the device, checks
 * the device arena (alignment, budget failures, no cudaMalloc in a loop), runs each CUDA op on
 * random inputs of realistic size and compares it element by element with the CPU reference,
 * then times both. Output: one `PASS name` / `FAIL name (why)` line per check, `TIME` lines,
 * and `N passed, N failed` at the end.
 *
 * On the CPU emulation (tests/emu, `make test-emu`, device name "ppdock CUDA emulator") the same
 * checks run at smaller sizes and without the timings: they check the kernels' logic, not speed.
 *
 * Exit status: 0 all passed, 1 something failed, 3 no CUDA device (or no usable driver) — the
 * message says so and nothing is run.
 *
 * Tolerance: the element bodies are shared (ppdock/kernels/), so CPU and GPU compute bit-identical
 * arguments and differ only in expf/sinf/cosf: glibc within 1 ulp, CUDA within 2 ulp (no
 * --use_fast_math), hence at most 3 ulp apart; the check allows 4 ulp. Results below 1e-30
 * (underflowing Gaussians, far from every offset) are also accepted when both are below it:
 * they are 23+ orders of magnitude under the features they sit next to.
 */
#include <cuda_runtime_api.h>

#include "ppdock/cuda_check.h"
#include "ppdock/progress.h"
#include "../../lib/esm/esm_internal.h" /* the CPU twins of the ESM layers */
#include "ppdock/adam_cuda.h"
#include "ppdock/device.h"
#include "ppdock/esm.h"
#include "ppdock/graph_ops.h"
#include "ppdock/esm_cuda.h"
#include "ppdock/nn.h"
#include "ppdock/nn_cuda.h"
#include "ppdock/rng.h"
#include "ppdock/scatter.h"
#include "ppdock/so3.h"
#include "ppdock/tp.h"

#include "gpu_test.h"

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef _OPENMP
#include <omp.h>
#endif

enum { TOL_ULPS = 4 };
#define TINY 1e-30

enum { E_EDGES = 1000000, G_GAUSS = 32, N_TIMES = 100000, LOOP_REPS = 100 };

int npass, nfail, gpu_emulated;

static void report_v(const char *name, int ok, int measured, const char *why_fmt, va_list ap) {
    char why[1024];
    vsnprintf(why, sizeof why, why_fmt, ap);
    if (ok) {
        if (measured && getenv("PPD_TEST_VERBOSE")) printf("     %s: %s\n", name, why);
        printf("PASS %s\n", name);
        npass++;
    } else {
        printf("FAIL %s (%s)\n", name, why);
        nfail++;
    }
    fflush(stdout);
    gpu_steps_counted();
}

void report(const char *name, int ok, const char *why_fmt, ...) {
    va_list ap;
    va_start(ap, why_fmt);
    report_v(name, ok, 0, why_fmt, ap);
    va_end(ap);
}

void report_measured(const char *name, int ok, const char *what_fmt, ...) {
    va_list ap;
    va_start(ap, what_fmt);
    report_v(name, ok, 1, what_fmt, ap);
    va_end(ap);
}

/* ---- comparison ---------------------------------------------------------------------------- */

/* Floats mapped to integers that are ordered like the floats, so that a difference is an ulp
 * count across zero too. */
static int64_t ordered(float f) {
    int32_t i;
    memcpy(&i, &f, sizeof i);
    return i < 0 ? (int64_t)INT32_MIN - i : i;
}

typedef struct {
    double max_abs, max_rel; /* max |gpu - cpu|; max |gpu - cpu| / |cpu| over |cpu| >= 1e-6 */
    int64_t max_ulps;        /* over elements not both below TINY */
    int64_t bad, worst;      /* elements out of tolerance; index of the largest ulp distance */
} cmp_result;

static cmp_result compare(const float *gpu, const float *cpu, int64_t n) {
    cmp_result r = {0, 0, 0, 0, 0};
    for (int64_t i = 0; i < n; i++) {
        float g = gpu[i], c = cpu[i];
        if (isnan(g) || isnan(c)) {
            if (!r.bad) r.worst = i;
            r.bad++;
            r.max_ulps = INT64_MAX;
            continue;
        }
        double diff = fabs((double)g - (double)c);
        if (diff > r.max_abs) r.max_abs = diff;
        if (fabs(c) >= 1e-6 && diff / fabs(c) > r.max_rel) r.max_rel = diff / fabs(c);
        if (fabs(g) < TINY && fabs(c) < TINY) continue;
        int64_t u = llabs(ordered(g) - ordered(c));
        if (u > r.max_ulps) {
            r.max_ulps = u;
            r.worst = i;
        }
        if (u > TOL_ULPS) r.bad++;
    }
    return r;
}

static void report_cmp(const char *name, const cmp_result *r, const float *gpu, const float *cpu,
                       int64_t n) {
    printf("     %s: %lld values, max abs %.3g, max rel %.3g, max %lld ulp (tolerance %d ulp)\n",
           name, (long long)n, r->max_abs, r->max_rel, (long long)r->max_ulps, TOL_ULPS);
    report(name, r->bad == 0,
           "%lld of %lld values off by more than %d ulp; worst [%lld] gpu %.9g cpu %.9g",
           (long long)r->bad, (long long)n, TOL_ULPS, (long long)r->worst, (double)gpu[r->worst],
           (double)cpu[r->worst]);
}

/* ---- timing -------------------------------------------------------------------------------- */

typedef struct {
    int op; /* 0 Gaussian smearing, 1 time embedding */
    float *out;
    const float *in, *offsets;
    float gamma;
    int64_t n;
    int G;
} op_call;

static ppd_status run_gpu(const op_call *c) {
    if (c->op == 0)
        return ppd_cuda_gaussian_smearing_forward(c->out, c->in, c->offsets, c->gamma, c->n, c->G,
                                                  NULL);
    return ppd_cuda_time_embedding_forward(c->out, c->in, c->n, NULL);
}

static void run_cpu(const op_call *c) {
    if (c->op == 0)
        ppd_gaussian_smearing_forward(c->out, c->in, c->offsets, c->gamma, c->n, c->G);
    else
        ppd_time_embedding_forward(c->out, c->in, c->n);
}

/* Milliseconds per call on the GPU (cudaEvent, after warm-up), or a negative value on error. */
static double time_gpu_ms(const op_call *c, int reps) {
    cudaEvent_t t0, t1;
    if (cudaEventCreate(&t0) != cudaSuccess) return -1;
    if (cudaEventCreate(&t1) != cudaSuccess) {
        cudaEventDestroy(t0);
        return -1;
    }
    double ms = -1;
    int ok = 1;
    for (int i = 0; i < 3 && ok; i++) ok = run_gpu(c) == PPD_OK;
    ok = ok && cudaEventRecord(t0, NULL) == cudaSuccess;
    for (int i = 0; i < reps && ok; i++) ok = run_gpu(c) == PPD_OK;
    ok = ok && cudaEventRecord(t1, NULL) == cudaSuccess && cudaEventSynchronize(t1) == cudaSuccess;
    float elapsed;
    if (ok && cudaEventElapsedTime(&elapsed, t0, t1) == cudaSuccess) ms = elapsed / reps;
    cudaEventDestroy(t0);
    cudaEventDestroy(t1);
    return ms;
}

static double time_cpu_ms(const op_call *c, int reps) {
    run_cpu(c);
    double t = ppd_now_seconds();
    for (int i = 0; i < reps; i++) run_cpu(c);
    return (ppd_now_seconds() - t) * 1e3 / reps;
}

static void report_time(const char *what, const op_call *gpu, const op_call *cpu, double bytes,
                        double peak_gbs) {
    double g = time_gpu_ms(gpu, 20), c = time_cpu_ms(cpu, 3);
    int threads = 1;
#ifdef _OPENMP
    threads = omp_get_max_threads();
#endif
    if (g <= 0) {
        printf("TIME %s: GPU timing failed: %s\n", what, ppd_errmsg());
        return;
    }
    double ggbs = bytes / (g * 1e-3) / 1e9, cgbs = bytes / (c * 1e-3) / 1e9;
    printf("TIME %s: cuda %.4f ms/call, %.0f GB/s", what, g, ggbs);
    if (peak_gbs > 0) printf(" (%.0f%% of %.0f GB/s peak)", 100 * ggbs / peak_gbs, peak_gbs);
    printf("; cpu %.3f ms/call, %.1f GB/s (%d threads); cuda/cpu speed-up %.0fx\n", c, cgbs,
           threads, c / g);
    fflush(stdout);
}

/* ---- the checks ---------------------------------------------------------------------------- */

static void check_arena_basics(size_t budget) {
    const char *name = "gpu_arena_alignment_budget_reset";
    ppd_device_arena a;
    uint64_t m0 = ppd_device_malloc_count();
    if (ppd_device_arena_create(&a, budget) != PPD_OK) {
        report(name, 0, "create(%zu): %s", budget, ppd_errmsg());
        return;
    }
    int ok = ppd_device_malloc_count() == m0 + 1 && a.capacity == budget && a.owned;
    void *p[4] = {0};
    size_t sizes[4] = {1, 1000, 3, 4096};
    for (int i = 0; i < 4 && ok; i++) {
        p[i] = ppd_device_arena_alloc(&a, sizes[i]);
        ok = p[i] && (uintptr_t)p[i] % PPD_DEVICE_ALIGN == 0;
    }
    /* The memory is really device memory: write a pattern through it and read it back. */
    unsigned char host[4096], back[4096];
    for (int i = 0; i < 4096; i++) host[i] = (unsigned char)(i * 7);
    ok = ok && ppd_device_upload(p[3], host, 4096) == PPD_OK &&
         ppd_device_download(back, p[3], 4096) == PPD_OK && memcmp(host, back, 4096) == 0;
    void *q;
    ok = ok && ppd_device_arena_alloc_st(&a, budget, &q) == PPD_ERR_NOMEM &&
         strstr(ppd_errmsg(), "requested") != NULL;
    size_t hw = a.high_water;
    ppd_device_arena_reset(&a);
    ok = ok && a.used == 0 && a.high_water == hw && ppd_device_arena_alloc(&a, 1) == p[0];
    ppd_device_arena_destroy(&a);
    ok = ok && a.base == NULL && ppd_device_malloc_count() == m0 + 1;
    report(name, ok, "see the checks in %s (last error: %s)", __func__, ppd_errmsg());
}

static void check_over_budget(const ppd_device_info *info) {
    const char *name = "gpu_arena_over_budget_fails_at_start_up";
    size_t too_much = info->total_bytes + ((size_t)1 << 30);
    ppd_device_arena a;
    uint64_t m0 = ppd_device_malloc_count();
    ppd_status st = ppd_device_arena_create(&a, too_much);
    int ok = st == PPD_ERR_NOMEM && strstr(ppd_errmsg(), "free") != NULL && a.base == NULL;
    printf("     arena create(%zu): %s\n", too_much, ppd_errmsg());
    /* The pre-check refuses without calling cudaMalloc; the counted cudaMalloc path must also turn
     * an out-of-memory into PPD_ERR_NOMEM with the free memory in the message. */
    ok = ok && ppd_device_malloc_count() == m0;
    void *p;
    st = ppd_device_malloc(&p, too_much);
    printf("     device malloc(%zu): %s\n", too_much, ppd_errmsg());
    ok = ok && st == PPD_ERR_NOMEM && p == NULL && strstr(ppd_errmsg(), "free") != NULL;
    ok = ok && ppd_device_malloc_count() == m0 + 1;
    /* An out-of-memory is not sticky: the device still works. */
    ok = ok && cudaGetLastError() == cudaSuccess && ppd_device_synchronize() == PPD_OK;
    report(name, ok, "status %s: %s", ppd_strerror(st), ppd_errmsg());
}

typedef struct {
    float *dist, *offsets, *gs_cpu, *gs_gpu; /* host */
    float *t, *te_cpu, *te_gpu;              /* host */
    float gamma;
} host_data;

static ppd_status run_ops_on_device(ppd_device_arena *a, const host_data *h, int64_t E, int G,
                                    int64_t N, int download) {
    float *d_dist, *d_off, *d_gs, *d_t, *d_te;
    PPD_TRY(ppd_device_arena_alloc_st(a, (size_t)E * sizeof(float), (void **)&d_dist));
    PPD_TRY(ppd_device_arena_alloc_st(a, (size_t)G * sizeof(float), (void **)&d_off));
    PPD_TRY(ppd_device_arena_alloc_st(a, (size_t)E * G * sizeof(float), (void **)&d_gs));
    PPD_TRY(ppd_device_arena_alloc_st(a, (size_t)N * sizeof(float), (void **)&d_t));
    PPD_TRY(ppd_device_arena_alloc_st(a, (size_t)N * 32 * sizeof(float), (void **)&d_te));
    PPD_TRY(ppd_device_upload(d_dist, h->dist, (size_t)E * sizeof(float)));
    PPD_TRY(ppd_device_upload(d_off, h->offsets, (size_t)G * sizeof(float)));
    PPD_TRY(ppd_device_upload(d_t, h->t, (size_t)N * sizeof(float)));
    PPD_TRY(ppd_cuda_gaussian_smearing_forward(d_gs, d_dist, d_off, h->gamma, E, G, NULL));
    PPD_TRY(ppd_cuda_time_embedding_forward(d_te, d_t, N, NULL));
    if (download) {
        PPD_TRY(ppd_device_download(h->gs_gpu, d_gs, (size_t)E * G * sizeof(float)));
        PPD_TRY(ppd_device_download(h->te_gpu, d_te, (size_t)N * 32 * sizeof(float)));
    }
    return ppd_device_synchronize();
}

static size_t plan_bytes(int64_t E, int G, int64_t N) {
    /* dist, offsets, out (E, G), t, out (N, 32), each rounded up to the arena alignment */
    size_t sizes[5] = {(size_t)E, (size_t)G, (size_t)E * G, (size_t)N, (size_t)N * 32}, sum = 0;
    for (int i = 0; i < 5; i++)
        sum +=
            (sizes[i] * sizeof(float) + PPD_DEVICE_ALIGN - 1) / PPD_DEVICE_ALIGN * PPD_DEVICE_ALIGN;
    return sum;
}

static void fill_inputs(host_data *h, int64_t E, int G, float stop, int64_t N, uint64_t seed) {
    ppd_rng r;
    ppd_rng_seed(&r, seed);
    ppd_gaussian_smearing_offsets(h->offsets, 0.0f, stop, G);
    h->gamma = ppd_gaussian_smearing_gamma(h->offsets);
    /* Distances past the last offset too, so that tails underflow to subnormals and zero. */
    for (int64_t e = 0; e < E; e++) h->dist[e] = (float)(1.4 * stop * ppd_rng_uniform(&r));
    float special_d[] = {0.0f, 7.3f, stop, 1e-3f, 1e4f};
    for (int i = 0; i < 5 && i < E; i++) h->dist[i] = special_d[i];
    for (int64_t n = 0; n < N; n++) h->t[n] = (float)ppd_rng_uniform(&r);
    float special_t[] = {0.0f, 1.0f, 0.5f, 1e-7f};
    for (int i = 0; i < 4 && i < N; i++) h->t[i] = special_t[i];
}

static int check_ops(const char *tag, int64_t E, int G, float stop, int64_t N,
                     const ppd_device_info *info, int timing) {
    host_data h;
    h.dist = malloc((size_t)E * sizeof(float));
    h.offsets = malloc((size_t)G * sizeof(float));
    h.gs_cpu = malloc((size_t)E * G * sizeof(float));
    h.gs_gpu = malloc((size_t)E * G * sizeof(float));
    h.t = malloc((size_t)N * sizeof(float));
    h.te_cpu = malloc((size_t)N * 32 * sizeof(float));
    h.te_gpu = malloc((size_t)N * 32 * sizeof(float));
    char name[128];
    int ok = h.dist && h.offsets && h.gs_cpu && h.gs_gpu && h.t && h.te_cpu && h.te_gpu;
    if (!ok) {
        snprintf(name, sizeof name, "gpu_ops_%s", tag);
        report(name, 0, "out of host memory");
        goto out;
    }
    fill_inputs(&h, E, G, stop, N, 42);
    ppd_gaussian_smearing_forward(h.gs_cpu, h.dist, h.offsets, h.gamma, E, G);
    ppd_time_embedding_forward(h.te_cpu, h.t, N);

    ppd_device_arena a;
    size_t budget = plan_bytes(E, G, N);
    if (ppd_device_arena_create(&a, budget) != PPD_OK) {
        snprintf(name, sizeof name, "gpu_ops_%s", tag);
        report(name, 0, "arena of %zu bytes: %s", budget, ppd_errmsg());
        ok = 0;
        goto out;
    }
    if (run_ops_on_device(&a, &h, E, G, N, 1) != PPD_OK) {
        snprintf(name, sizeof name, "gpu_ops_%s", tag);
        report(name, 0, "%s", ppd_errmsg());
        ok = 0;
    } else {
        cmp_result r = compare(h.gs_gpu, h.gs_cpu, E * G);
        snprintf(name, sizeof name, "gpu_gaussian_smearing_matches_cpu_%s", tag);
        report_cmp(name, &r, h.gs_gpu, h.gs_cpu, E * G);
        ok &= r.bad == 0;
        r = compare(h.te_gpu, h.te_cpu, N * 32);
        snprintf(name, sizeof name, "gpu_time_embedding_matches_cpu_%s", tag);
        report_cmp(name, &r, h.te_gpu, h.te_cpu, N * 32);
        ok &= r.bad == 0;
    }

    if (timing && ok) {
        /* Steady state: 100 steps of reset + alloc + upload + both ops, no cudaMalloc. */
        uint64_t m0 = ppd_device_malloc_count();
        size_t hw = a.high_water;
        ppd_status st = PPD_OK;
        for (int i = 0; i < LOOP_REPS && st == PPD_OK; i++) {
            ppd_device_arena_reset(&a);
            st = run_ops_on_device(&a, &h, E, G, N, i == LOOP_REPS - 1);
        }
        cmp_result r = compare(h.gs_gpu, h.gs_cpu, E * G);
        report("gpu_no_cudamalloc_in_a_loop",
               st == PPD_OK && ppd_device_malloc_count() == m0 && a.high_water == hw && r.bad == 0,
               "status %s (%s), cudaMalloc calls %llu -> %llu, high water %zu -> %zu, %lld bad",
               ppd_strerror(st), ppd_errmsg(), (unsigned long long)m0,
               (unsigned long long)ppd_device_malloc_count(), hw, a.high_water, (long long)r.bad);

        /* Timing on the arena's buffers (reallocated in the same order, so the same pointers). */
        ppd_device_arena_reset(&a);
        float *d_dist = ppd_device_arena_alloc(&a, (size_t)E * sizeof(float));
        float *d_off = ppd_device_arena_alloc(&a, (size_t)G * sizeof(float));
        float *d_gs = ppd_device_arena_alloc(&a, (size_t)E * G * sizeof(float));
        float *d_t = ppd_device_arena_alloc(&a, (size_t)N * sizeof(float));
        float *d_te = ppd_device_arena_alloc(&a, (size_t)N * 32 * sizeof(float));
        char what[128];
        op_call g = {0, d_gs, d_dist, d_off, h.gamma, E, G};
        op_call c = {0, h.gs_cpu, h.dist, h.offsets, h.gamma, E, G};
        snprintf(what, sizeof what, "gaussian_smearing E=%lld G=%d", (long long)E, G);
        report_time(what, &g, &c, 4.0 * ((double)E + G + (double)E * G), info->peak_gbs);
        op_call g2 = {1, d_te, d_t, NULL, 0, N, 0};
        op_call c2 = {1, h.te_cpu, h.t, NULL, 0, N, 0};
        snprintf(what, sizeof what, "time_embedding N=%lld", (long long)N);
        report_time(what, &g2, &c2, 4.0 * ((double)N + 32.0 * N), info->peak_gbs);
    }
    ppd_device_arena_destroy(&a);
out:
    free(h.dist);
    free(h.offsets);
    free(h.gs_cpu);
    free(h.gs_gpu);
    free(h.t);
    free(h.te_cpu);
    free(h.te_gpu);
    return ok;
}

/* ---- spherical harmonics and the tensor product (one thread per edge, the CPU's bodies) ----- */

/* max |gpu - cpu| <= tol max |cpu| over the array (sums of products: the GPU contracts them into
 * FMAs, so a relative tolerance on the array's scale, not ulps) */
int close_rel(const char *name, const float *gpu, const float *cpu, int64_t n, double tol) {
    double md = 0, mc = 0;
    int64_t nan = 0;
    for (int64_t i = 0; i < n; i++) {
        if (isnan(gpu[i])) nan++;
        md = fmax(md, fabs((double)gpu[i] - cpu[i]));
        mc = fmax(mc, fabs((double)cpu[i]));
    }
    int ok = !nan && md <= tol * fmax(mc, 1e-30);
    report_measured(name, ok, "max |gpu - cpu| %.3g against max |cpu| %.3g (tol %.0e), %lld NaN",
                    md, mc, tol, (long long)nan);
    return ok;
}

/* The tensor product of layer `layer` (4: the final conv) of a model with ns scalar and nv
 * vector channels. */
static void check_tp(const char *tag, int layer, int64_t E, int64_t N, int ns, int nv) {
    ppd_irreps in, sh, out;
    ppd_irreps_score(&in, ns, nv, layer < 3 ? layer : 3);
    ppd_irreps_parse(&sh, "0e+1o+2e");
    if (layer < 4)
        ppd_irreps_score(&out, ns, nv, layer + 1 < 3 ? layer + 1 : 3);
    else
        ppd_irreps_parse(&out, "2x1o+2x1e");
    ppd_tp tp;
    char name[128];
    if (ppd_tp_init(&tp, &in, &sh, &out) != PPD_OK) {
        snprintf(name, sizeof name, "gpu_tp_%s", tag);
        report(name, 0, "%s", ppd_errmsg());
        return;
    }
    int di = in.dim, dout = out.dim, W = tp.wnum;
    size_t szh = (size_t)N * di, szv = (size_t)E * 3, szY = (size_t)E * 9, szw = (size_t)E * W,
           szm = (size_t)E * dout, szx = (size_t)E * di;
    float *h = malloc(szh * 4), *vec = malloc(szv * 4), *Y = malloc(szY * 4), *Yg = malloc(szY * 4),
          *w = malloc(szw * 4), *wb = malloc((size_t)W * 4), *dm = malloc(szm * 4),
          *msg = malloc(szm * 4), *msgg = malloc(szm * 4), *dx = malloc(szx * 4),
          *dxg = malloc(szx * 4), *dw = malloc(szw * 4), *dwg = malloc(szw * 4),
          *dwb = calloc((size_t)W, 4), *dwbg = malloc((size_t)W * 4);
    int64_t *send = malloc((size_t)E * 8);
    ppd_rng r;
    ppd_rng_seed(&r, 17);
    for (size_t i = 0; i < szh; i++) h[i] = (float)ppd_rng_normal(&r);
    for (size_t i = 0; i < szv; i++) vec[i] = (float)(5 * ppd_rng_normal(&r));
    for (size_t i = 0; i < szw; i++) w[i] = (float)ppd_rng_normal(&r);
    for (int i = 0; i < W; i++) wb[i] = (float)(0.1 * ppd_rng_normal(&r));
    for (size_t i = 0; i < szm; i++) dm[i] = (float)ppd_rng_normal(&r);
    for (int64_t e = 0; e < E; e++) send[e] = (int64_t)ppd_rng_below(&r, (uint64_t)N);
    ppd_sh_forward(Y, vec, E);
    ppd_tp_forward(&tp, msg, h, send, Y, w, wb, E);
    ppd_tp_backward(&tp, dx, dw, dwb, dm, h, send, Y, w, wb, E);
    /* the device: poisoned outputs (NaN bytes), then the twins */
    ppd_device_arena a;
    size_t need = (sizeof tp + (szh + szv + 2 * szY + 2 * szw + (size_t)2 * W + 2 * szm + szx) * 4 +
                   (size_t)E * 8) +
                  32 * PPD_DEVICE_ALIGN;
    snprintf(name, sizeof name, "gpu_tp_%s", tag);
    if (ppd_device_arena_create(&a, need) != PPD_OK) {
        report(name, 0, "arena: %s", ppd_errmsg());
        goto out;
    }
    ppd_tp *d_tp;
    float *d_h, *d_vec, *d_Y, *d_w, *d_wb, *d_dm, *d_msg, *d_dx, *d_dw, *d_dwb;
    int64_t *d_send;
    ppd_status st = PPD_OK;
#define DEV(ptr, bytes)                                                                            \
    if (!st) st = ppd_device_arena_alloc_st(&a, (bytes), (void **)&(ptr))
    DEV(d_tp, sizeof tp);
    DEV(d_h, szh * 4);
    DEV(d_vec, szv * 4);
    DEV(d_Y, szY * 4);
    DEV(d_w, szw * 4);
    DEV(d_wb, (size_t)W * 4);
    DEV(d_dm, szm * 4);
    DEV(d_msg, szm * 4);
    DEV(d_dx, szx * 4);
    DEV(d_dw, szw * 4);
    DEV(d_dwb, (size_t)W * 4);
    DEV(d_send, (size_t)E * 8);
#undef DEV
    if (!st) st = ppd_device_upload(d_tp, &tp, sizeof tp);
    if (!st) st = ppd_device_upload(d_h, h, szh * 4);
    if (!st) st = ppd_device_upload(d_vec, vec, szv * 4);
    if (!st) st = ppd_device_upload(d_w, w, szw * 4);
    if (!st) st = ppd_device_upload(d_wb, wb, (size_t)W * 4);
    if (!st) st = ppd_device_upload(d_dm, dm, szm * 4);
    if (!st) st = ppd_device_upload(d_send, send, (size_t)E * 8);
    if (!st && cudaMemset(d_msg, 0xff, szm * 4) != cudaSuccess) st = PPD_ERR_CUDA;
    if (!st && cudaMemset(d_dx, 0xff, szx * 4) != cudaSuccess) st = PPD_ERR_CUDA;
    if (!st && cudaMemset(d_dw, 0xff, szw * 4) != cudaSuccess) st = PPD_ERR_CUDA;
    if (!st && cudaMemset(d_dwb, 0, (size_t)W * 4) != cudaSuccess) st = PPD_ERR_CUDA;
    if (!st) st = ppd_cuda_sh_forward(d_Y, d_vec, E, NULL);
    if (!st) st = ppd_device_download(Yg, d_Y, szY * 4);
    /* the tensor product from the CPU's harmonics, so that it is compared on the same inputs */
    if (!st) st = ppd_device_upload(d_Y, Y, szY * 4);
    if (!st) st = ppd_cuda_tp_forward(d_tp, d_msg, d_h, d_send, d_Y, d_w, d_wb, E, NULL);
    if (!st)
        st = ppd_cuda_tp_backward(d_tp, d_dx, d_dw, d_dwb, d_dm, d_h, d_send, d_Y, d_w, d_wb, E,
                                  NULL);
    if (!st) st = ppd_device_download(msgg, d_msg, szm * 4);
    if (!st) st = ppd_device_download(dxg, d_dx, szx * 4);
    if (!st) st = ppd_device_download(dwg, d_dw, szw * 4);
    if (!st) st = ppd_device_download(dwbg, d_dwb, (size_t)W * 4);
    if (!st) st = ppd_device_synchronize();
    if (st) {
        report(name, 0, "%s", ppd_errmsg());
    } else {
        snprintf(name, sizeof name, "gpu_sh_matches_cpu_%s", tag);
        close_rel(name, Yg, Y, (int64_t)szY, 1e-5);
        snprintf(name, sizeof name, "gpu_tp_forward_matches_cpu_%s", tag);
        close_rel(name, msgg, msg, (int64_t)szm, 1e-4);
        snprintf(name, sizeof name, "gpu_tp_backward_dx_matches_cpu_%s", tag);
        close_rel(name, dxg, dx, (int64_t)szx, 1e-4);
        snprintf(name, sizeof name, "gpu_tp_backward_dw_matches_cpu_%s", tag);
        close_rel(name, dwg, dw, (int64_t)szw, 1e-4);
        snprintf(name, sizeof name, "gpu_tp_backward_dwb_matches_cpu_%s", tag);
        close_rel(name, dwbg, dwb, W, 1e-4);
    }
    ppd_device_arena_destroy(&a);
out:
    free(h), free(vec), free(Y), free(Yg), free(w), free(wb), free(dm), free(msg), free(msgg);
    free(dx), free(dxg), free(dw), free(dwg), free(dwb), free(dwbg), free(send);
}

/* ---- ESM-2: each layer against its CPU twin, then whole runs ------------------------------- */

float *rand_floats(ppd_rng *r, size_t n, double scale) {
    float *x = malloc(n * sizeof *x);
    for (size_t i = 0; x && i < n; i++) x[i] = (float)(scale * ppd_rng_normal(r));
    return x;
}

/* Device copies: upload n bytes of host memory into the arena; NULL on failure. */
void *dev_copy(ppd_device_arena *a, const void *host, size_t bytes) {
    void *d = ppd_device_arena_alloc(a, bytes);
    if (d && host && ppd_device_upload(d, host, bytes) != PPD_OK) return NULL;
    if (d && !host && cudaMemset(d, 0xff, bytes) != cudaSuccess) return NULL; /* poison */
    return d;
}

int fetch_close(const char *name, const void *dev, const float *cpu, int64_t n, double tol) {
    float *g = malloc((size_t)n * sizeof *g);
    int ok = g && ppd_device_synchronize() == PPD_OK &&
             ppd_device_download(g, dev, (size_t)n * sizeof *g) == PPD_OK;
    if (!ok) {
        report(name, 0, "download: %s", ppd_errmsg());
        free(g);
        return 0;
    }
    ok = close_rel(name, g, cpu, n, tol);
    free(g);
    return ok;
}

/* The layers of one batch: B sequences of `lens` residues, model width d, hd, ffn 4d. */
static void check_esm_layers(const char *tag, const int *lens, int B, int d, int hd) {
    char name[160];
    int H = d / hd, F = 4 * d, h2 = hd / 2;
    ppd_rng r;
    ppd_rng_seed(&r, 99);
    int64_t tok_off[64], out_off[64];
    float div[64];
    ppd_esm_seq seqs[64];
    uint8_t *toks[64];
    int maxn = 0;
    for (int b = 0; b < B; b++) {
        toks[b] = malloc((size_t)lens[b] + 1);
        for (int i = 0; i < lens[b]; i++) /* letters and a few <mask> (token dropout) */
            toks[b][i] = (uint8_t)(i % 17 == 3 ? PPD_ESM_TOK_MASK : 4 + ppd_rng_below(&r, 20));
        seqs[b] = (ppd_esm_seq){toks[b], lens[b]};
        if (lens[b] > maxn) maxn = lens[b];
    }
    int64_t N = 0;
    for (int b = 0; b < B; b++) N += lens[b] + 2;
    int T = maxn + 2;
    uint8_t *tok = malloc((size_t)N);
    ppd_esm_pack(seqs, B, tok, tok_off, out_off, div);
    float *E = rand_floats(&r, (size_t)PPD_ESM_VOCAB * d, 1.0);
    float *x = rand_floats(&r, (size_t)N * d, 3.0), *lw = rand_floats(&r, (size_t)d, 1.0),
          *lb = rand_floats(&r, (size_t)d, 1.0), *qkv = rand_floats(&r, (size_t)N * 3 * d, 1.0),
          *bq = rand_floats(&r, (size_t)3 * d, 0.5), *hh = rand_floats(&r, (size_t)N * F, 2.0),
          *b1 = rand_floats(&r, (size_t)F, 0.5), *W = rand_floats(&r, (size_t)F * d, 0.1),
          *inv = malloc((size_t)h2 * sizeof(float)), *cosv = malloc((size_t)T * h2 * 4),
          *sinv = malloc((size_t)T * h2 * 4), *o_cpu = malloc((size_t)N * F * 4),
          *o2 = malloc((size_t)N * 3 * d * 4);
    ppd_esm_default_inv_freq(inv, hd);
    ppd_esm_rope_table(cosv, sinv, inv, T, hd);

    ppd_device_arena a;
    size_t need = (size_t)N * (4 * d + 2 * F + 8) * 4 + (size_t)F * d * 4 + (size_t)T * hd * 4 +
                  (size_t)PPD_ESM_VOCAB * d * 4 + 64 * PPD_DEVICE_ALIGN + (64u << 10);
    snprintf(name, sizeof name, "gpu_esm_layers_%s", tag);
    if (ppd_device_arena_create(&a, need + PPD_CUDA_BLAS_WORKSPACE) != PPD_OK) {
        report(name, 0, "arena: %s", ppd_errmsg());
        goto out;
    }
    int64_t *d_off = dev_copy(&a, tok_off, (size_t)(B + 1) * 8);
    uint8_t *d_tok = dev_copy(&a, tok, (size_t)N);
    float *d_div = dev_copy(&a, div, (size_t)B * 4), *d_E = dev_copy(&a, E, (size_t)33 * d * 4),
          *d_x = dev_copy(&a, x, (size_t)N * d * 4), *d_out = dev_copy(&a, NULL, (size_t)N * F * 4),
          *d_lw = dev_copy(&a, lw, (size_t)d * 4), *d_lb = dev_copy(&a, lb, (size_t)d * 4),
          *d_qkv = dev_copy(&a, qkv, (size_t)N * 3 * d * 4),
          *d_bq = dev_copy(&a, bq, (size_t)3 * d * 4),
          *d_cos = dev_copy(&a, cosv, (size_t)T * h2 * 4),
          *d_sin = dev_copy(&a, sinv, (size_t)T * h2 * 4),
          *d_h = dev_copy(&a, hh, (size_t)N * F * 4), *d_b1 = dev_copy(&a, b1, (size_t)F * 4),
          *d_W = dev_copy(&a, W, (size_t)F * d * 4);
    void *d_ws = ppd_device_arena_alloc(&a, PPD_CUDA_BLAS_WORKSPACE);
    if (!d_off || !d_tok || !d_div || !d_E || !d_x || !d_out || !d_lw || !d_lb || !d_qkv || !d_bq ||
        !d_cos || !d_sin || !d_h || !d_b1 || !d_W || !d_ws) {
        report(name, 0, "device buffers: %s", ppd_errmsg());
        goto out_arena;
    }
    ppd_status st;

    ppd_esm_embed_forward(o_cpu, tok, tok_off, div, B, E, d, 1);
    st = ppd_cuda_esm_embed_forward(d_out, d_tok, d_off, d_div, B, d_E, d, N, NULL);
    snprintf(name, sizeof name, "gpu_esm_embed_matches_cpu_%s", tag);
    if (st)
        report(name, 0, "%s", ppd_errmsg());
    else
        fetch_close(name, d_out, o_cpu, N * d, 1e-6);

    ppd_esm_layernorm_forward(o_cpu, x, lw, lb, N, d, 1);
    st = ppd_cuda_esm_layernorm_forward(d_out, d_x, d_lw, d_lb, N, d, NULL);
    snprintf(name, sizeof name, "gpu_esm_layernorm_matches_cpu_%s", tag);
    if (st)
        report(name, 0, "%s", ppd_errmsg());
    else
        fetch_close(name, d_out, o_cpu, N * d, 1e-6);

    float qscale = (float)pow((double)hd, -0.5);
    memcpy(o2, qkv, (size_t)N * 3 * d * 4);
    ppd_esm_qkv_rope_forward(o2, bq, tok_off, B, d, hd, qscale, cosv, sinv, 1);
    st = ppd_cuda_esm_qkv_rope_forward(d_qkv, d_bq, d_off, B, d, hd, qscale, d_cos, d_sin, N, NULL);
    snprintf(name, sizeof name, "gpu_esm_qkv_rope_matches_cpu_%s", tag);
    if (st)
        report(name, 0, "%s", ppd_errmsg());
    else
        fetch_close(name, d_qkv, o2, N * 3 * d, 1e-6);

    /* attention on the roped q/k/v (identical inputs on both sides: the CPU's o2) */
    float *scores = malloc((size_t)T * T * 4);
    ppd_device_upload(d_qkv, o2, (size_t)N * 3 * d * 4);
    ppd_esm_attention_forward(o_cpu, o2, tok_off, B, H, hd, scores, (int64_t)T * T, 1);
    free(scores);
    /* twice, on a poisoned output: consecutive launches run in the emulation's two orders (its
     * cp.async staging lands early in one, late in the other) */
    for (int run = 0; run < 2; run++) {
        st = cudaMemset(d_out, 0xff, (size_t)N * d * 4) != cudaSuccess
                 ? PPD_ERR_CUDA
                 : ppd_cuda_esm_attention_forward(d_out, d_qkv, d_off, B, H, hd, T, NULL);
        snprintf(name, sizeof name, "gpu_esm_attention_matches_cpu_%s%s", tag,
                 run ? "_second_launch" : "");
        if (st)
            report(name, 0, "%s", ppd_errmsg());
        else
            fetch_close(name, d_out, o_cpu, N * d, 1e-5);
    }

    memcpy(o_cpu, hh, (size_t)N * F * 4);
    ppd_esm_bias_gelu_forward(o_cpu, b1, N, F, 1);
    st = ppd_cuda_esm_bias_gelu_forward(d_h, d_b1, N, F, NULL);
    snprintf(name, sizeof name, "gpu_esm_bias_gelu_matches_cpu_%s", tag);
    if (st)
        report(name, 0, "%s", ppd_errmsg());
    else
        fetch_close(name, d_h, o_cpu, N * F, 1e-6);

    memcpy(o_cpu, x, (size_t)N * d * 4);
    ppd_esm_residual_forward(o_cpu, qkv, lb, N, d, 1); /* y: the first N x d of qkv */
    ppd_device_upload(d_qkv, qkv, (size_t)N * 3 * d * 4);
    st = ppd_cuda_esm_residual_forward(d_x, d_qkv, d_lb, N, d, NULL);
    snprintf(name, sizeof name, "gpu_esm_residual_matches_cpu_%s", tag);
    if (st)
        report(name, 0, "%s", ppd_errmsg());
    else
        fetch_close(name, d_x, o_cpu, N * d, 1e-6);

    /* GEMM: (N, d) x (F, d)^T in fp32 (pedantic: no TF32) */
    ppd_cuda_blas *bl = NULL;
    ppd_device_upload(d_x, x, (size_t)N * d * 4);
    ppd_esm_matmul_forward(o_cpu, x, W, N, d, F, 1);
    st = ppd_cuda_blas_create(&bl, NULL, PPD_CUDA_FP32, d_ws, PPD_CUDA_BLAS_WORKSPACE);
    if (!st) st = ppd_cuda_esm_matmul_forward(d_out, d_x, d_W, N, d, F, bl);
    snprintf(name, sizeof name, "gpu_esm_matmul_fp32_matches_cpu_%s", tag);
    if (st)
        report(name, 0, "%s", ppd_errmsg());
    else
        fetch_close(name, d_out, o_cpu, N * F, 1e-5);
    ppd_cuda_blas_destroy(bl);
out_arena:
    ppd_device_arena_destroy(&a);
out:
    for (int b = 0; b < B; b++) free(toks[b]);
    free(tok), free(E), free(x), free(lw), free(lb), free(qkv), free(bq), free(hh), free(b1);
    free(W), free(inv), free(cosv), free(sinv), free(o_cpu), free(o2);
}

/* ---- Adam and clipping: three steps on random state, the CPU's arithmetic bit for bit ------- */

static void check_adam_clip(void) {
    const char *name = "gpu_adam_and_clip_match_cpu";
    enum { COUNT = 7 };
    size_t numel[COUNT] = {1, 31, 32, 1000, 257, 70001, 3}, offset[COUNT], n = 0;
    for (int t = 0; t < COUNT; t++) offset[t] = n, n += numel[t];
    ppd_rng r;
    ppd_rng_seed(&r, 3);
    float *p = rand_floats(&r, n, 1.0), *m = rand_floats(&r, n, 0.01), *v = malloc(n * 4),
          *g = malloc(n * 4), *pg = malloc(n * 4), *mg = malloc(n * 4), *vg = malloc(n * 4),
          *gg = malloc(n * 4);
    for (size_t i = 0; i < n; i++) v[i] = (float)(1e-4 * fabs(ppd_rng_normal(&r)));
    ppd_device_arena a;
    if (ppd_device_arena_create(&a, 6 * n * 4 + 2 * COUNT * 8 + 16 * PPD_DEVICE_ALIGN) != PPD_OK) {
        report(name, 0, "arena: %s", ppd_errmsg());
        goto out;
    }
    float *d_p = dev_copy(&a, p, n * 4), *d_m = dev_copy(&a, m, n * 4),
          *d_v = dev_copy(&a, v, n * 4), *d_g = dev_copy(&a, NULL, n * 4),
          *d_s = dev_copy(&a, NULL, (COUNT + 2) * 4);
    size_t *d_off = dev_copy(&a, offset, sizeof offset), *d_num = dev_copy(&a, numel, sizeof numel);
    ppd_adam_config c = {
        .lr = 1e-3, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 0.01};
    int ok = d_p && d_m && d_v && d_g && d_s && d_off && d_num;
    double max_total_rel = 0;
    for (int step = 1; ok && step <= 3; step++) {
        for (size_t i = 0; i < n; i++)
            g[i] = (float)((step == 2 ? 50.0 : 0.01) * ppd_rng_normal(&r));
        ok = ppd_device_upload(d_g, g, n * 4) == PPD_OK;
        double total = ppd_clip_grad_norm(g, offset, numel, COUNT, 1.0); /* clips at step 2 */
        ppd_adam_step(p, g, m, v, n, &c, (uint64_t)step);
        float tc[2];
        ok = ok && ppd_cuda_clip_grad_norm(d_g, n, d_off, d_num, COUNT, 1.0, d_s, NULL) == PPD_OK &&
             ppd_cuda_adam_step(d_p, d_g, d_m, d_v, n, &c, (uint64_t)step, NULL) == PPD_OK &&
             ppd_device_synchronize() == PPD_OK && ppd_device_download(tc, d_s, 8) == PPD_OK;
        if (ok) max_total_rel = fmax(max_total_rel, fabs(tc[0] - total) / total);
    }
    ok = ok && ppd_device_download(pg, d_p, n * 4) == PPD_OK &&
         ppd_device_download(mg, d_m, n * 4) == PPD_OK &&
         ppd_device_download(vg, d_v, n * 4) == PPD_OK &&
         ppd_device_download(gg, d_g, n * 4) == PPD_OK;
    if (!ok) {
        report(name, 0, "%s", ppd_errmsg());
    } else {
        /* the clipping norm may differ in the last bit (another summation order); through the
         * factor that is an ulp or two of the update, so allow the elementwise tolerance */
        cmp_result rp = compare(pg, p, (int64_t)n), rm = compare(mg, m, (int64_t)n),
                   rv = compare(vg, v, (int64_t)n), rg = compare(gg, g, (int64_t)n);
        printf("     %s: %zu parameters in %d tensors, 3 steps (one clipped): total norm rel diff "
               "%.2g; max ulp p %lld m %lld v %lld g %lld\n",
               name, n, COUNT, max_total_rel, (long long)rp.max_ulps, (long long)rm.max_ulps,
               (long long)rv.max_ulps, (long long)rg.max_ulps);
        report(name, !rp.bad && !rm.bad && !rv.bad && !rg.bad && max_total_rel < 1e-6,
               "p %lld m %lld v %lld g %lld values off by more than %d ulp, norm rel diff %.2g",
               (long long)rp.bad, (long long)rm.bad, (long long)rv.bad, (long long)rg.bad, TOL_ULPS,
               max_total_rel);
    }
    ppd_device_arena_destroy(&a);
out:
    free(p), free(m), free(v), free(g), free(pg), free(mg), free(vg), free(gg);
}

/* ---- linear layers, ReLU, dropout --------------------------------------------------------- */

static void check_linear(const char *tag, int64_t N, int K, int M) {
    char name[160];
    ppd_rng r;
    ppd_rng_seed(&r, 11);
    size_t nin = (size_t)N * K, nout = (size_t)N * M, nw = (size_t)M * K;
    float *in = rand_floats(&r, nin, 1.0), *W = rand_floats(&r, nw, 0.3),
          *b = rand_floats(&r, (size_t)M, 0.5), *dout = rand_floats(&r, nout, 1.0),
          *dW = rand_floats(&r, nw, 0.1), *db = rand_floats(&r, (size_t)M, 0.1),
          *out = malloc(nout * 4), *din = malloc(nin * 4), *y = malloc(nout * 4),
          *dy = malloc(nout * 4);
    ppd_device_arena a;
    snprintf(name, sizeof name, "gpu_linear_%s", tag);
    if (ppd_device_arena_create(&a, (3 * nin + 4 * nout + 2 * nw + 2 * (size_t)M) * 4 +
                                        PPD_CUDA_BLAS_WORKSPACE + 32 * PPD_DEVICE_ALIGN) !=
        PPD_OK) {
        report(name, 0, "arena: %s", ppd_errmsg());
        goto out;
    }
    float *d_in = dev_copy(&a, in, nin * 4), *d_W = dev_copy(&a, W, nw * 4),
          *d_b = dev_copy(&a, b, (size_t)M * 4), *d_dout = dev_copy(&a, dout, nout * 4),
          *d_dW = dev_copy(&a, dW, nw * 4), *d_db = dev_copy(&a, db, (size_t)M * 4),
          *d_out = dev_copy(&a, NULL, nout * 4), *d_din = dev_copy(&a, NULL, nin * 4),
          *d_y = dev_copy(&a, NULL, nout * 4);
    void *ws = ppd_device_arena_alloc(&a, PPD_CUDA_BLAS_WORKSPACE);
    ppd_cuda_blas *bl = NULL;
    if (!d_in || !d_W || !d_b || !d_dout || !d_dW || !d_db || !d_out || !d_din || !d_y || !ws ||
        ppd_cuda_blas_create(&bl, NULL, PPD_CUDA_FP32, ws, PPD_CUDA_BLAS_WORKSPACE) != PPD_OK) {
        report(name, 0, "device buffers: %s", ppd_errmsg());
        goto out_arena;
    }
    ppd_linear_forward(out, in, W, b, N, K, M);
    snprintf(name, sizeof name, "gpu_linear_forward_matches_cpu_%s", tag);
    if (ppd_cuda_linear_forward(d_out, d_in, d_W, d_b, N, K, M, bl))
        report(name, 0, "%s", ppd_errmsg());
    else
        fetch_close(name, d_out, out, (int64_t)nout, 1e-5);

    ppd_linear_backward(din, dW, db, dout, in, W, N, K, M);
    ppd_status st = ppd_cuda_linear_backward(d_din, d_dW, d_db, d_dout, d_in, d_W, N, K, M, bl);
    snprintf(name, sizeof name, "gpu_linear_backward_din_matches_cpu_%s", tag);
    if (st)
        report(name, 0, "%s", ppd_errmsg());
    else
        fetch_close(name, d_din, din, (int64_t)nin, 1e-5);
    snprintf(name, sizeof name, "gpu_linear_backward_dW_accumulates_like_cpu_%s", tag);
    if (!st) fetch_close(name, d_dW, dW, (int64_t)nw, 1e-5);
    /* a column sum over all N rows, in slices of 4,096 on the GPU and in one run on the CPU: the
     * issue's 1e-4 for reductions (H200, N 200,000: 1.3e-5; the emulation's N 5,000: 2.5e-6) */
    snprintf(name, sizeof name, "gpu_linear_backward_db_accumulates_like_cpu_%s", tag);
    if (!st) fetch_close(name, d_db, db, M, 1e-4);

    /* bias + ReLU, dropout (p 0.3, rows offset by row0 = 1000), their backward: bit-identical */
    memcpy(y, dout, nout * 4);
    ppd_bias_relu_forward(y, b, N, M);
    ppd_dropout_forward(y, N, M, 1000, 42, 7, 0.3f);
    st = ppd_device_upload(d_y, dout, nout * 4);
    if (!st) st = ppd_cuda_bias_relu_forward(d_y, d_b, N, M, NULL);
    if (!st) st = ppd_cuda_dropout_forward(d_y, N, M, 1000, 42, 7, 0.3f, NULL);
    snprintf(name, sizeof name, "gpu_bias_relu_dropout_match_cpu_bit_for_bit_%s", tag);
    float *g = malloc(nout * 4);
    if (!st) st = ppd_device_synchronize();
    if (!st) st = ppd_device_download(g, d_y, nout * 4);
    if (st)
        report(name, 0, "%s", ppd_errmsg());
    else
        report(name, memcmp(g, y, nout * 4) == 0, "the outputs differ");
    memcpy(dy, dout, nout * 4);
    ppd_dropout_relu_backward(dy, y, (int64_t)nout, 0.3f);
    st = ppd_device_upload(d_out, dout, nout * 4);
    if (!st) st = ppd_cuda_dropout_relu_backward(d_out, d_y, (int64_t)nout, 0.3f, NULL);
    if (!st) st = ppd_device_synchronize();
    if (!st) st = ppd_device_download(g, d_out, nout * 4);
    snprintf(name, sizeof name, "gpu_dropout_relu_backward_matches_cpu_bit_for_bit_%s", tag);
    if (st)
        report(name, 0, "%s", ppd_errmsg());
    else
        report(name, memcmp(g, dy, nout * 4) == 0, "the gradients differ");
    free(g);
    ppd_cuda_blas_destroy(bl);
out_arena:
    ppd_device_arena_destroy(&a);
out:
    free(in), free(W), free(b), free(dout), free(dW), free(db), free(out), free(din), free(y);
    free(dy);
}

/* ---- scatter-add: chunk by chunk, receivers in random order, some with no edges ------------- */

static void check_scatter(const char *tag, int64_t E, int64_t T, int dim, int64_t chunk) {
    char name[160];
    snprintf(name, sizeof name, "gpu_scatter_add_rows_matches_cpu_bit_for_bit_%s", tag);
    ppd_rng r;
    ppd_rng_seed(&r, 23);
    int64_t *idx = malloc((size_t)E * 8), *order = malloc((size_t)E * 8),
            *seg = malloc((size_t)(T + 1) * 8);
    for (int64_t e = 0; e < E; e++) idx[e] = (int64_t)ppd_rng_below(&r, (uint64_t)(T - T / 4));
    float *src = rand_floats(&r, (size_t)E * dim, 1.0),
          *acc = rand_floats(&r, (size_t)T * dim, 1.0), *g = malloc((size_t)T * dim * 4);
    ppd_device_arena a;
    ppd_status st = ppd_scatter_plan(order, seg, idx, E, T);
    if (!st)
        st = ppd_device_arena_create(&a, ((size_t)E * dim + (size_t)T * dim) * 4 +
                                             ((size_t)2 * E + T + 1) * 8 + 8 * PPD_DEVICE_ALIGN);
    if (st) {
        report(name, 0, "%s", ppd_errmsg());
        goto out;
    }
    float *d_src = dev_copy(&a, src, (size_t)E * dim * 4),
          *d_acc = dev_copy(&a, acc, (size_t)T * dim * 4);
    int64_t *d_order = dev_copy(&a, order, (size_t)E * 8),
            *d_seg = dev_copy(&a, seg, (size_t)(T + 1) * 8);
    int ok = d_src && d_acc && d_order && d_seg;
    for (int64_t e0 = 0; ok && e0 < E; e0 += chunk) {
        int64_t n = E - e0 < chunk ? E - e0 : chunk;
        /* the chunk's rows as the score model has them: src of the chunk starts at row 0 */
        ppd_scatter_add_rows(acc, src + e0 * dim, idx, e0, n, dim);
        ok = ppd_cuda_scatter_add_rows(d_acc, d_src + e0 * dim, d_order, d_seg, e0, n, T, dim,
                                       NULL) == PPD_OK;
    }
    ok = ok && ppd_device_synchronize() == PPD_OK &&
         ppd_device_download(g, d_acc, (size_t)T * dim * 4) == PPD_OK;
    if (!ok)
        report(name, 0, "%s", ppd_errmsg());
    else
        report(name, memcmp(g, acc, (size_t)T * dim * 4) == 0, "the sums differ");
    ppd_device_arena_destroy(&a);
out:
    free(idx), free(order), free(seg), free(src), free(acc), free(g);
}

/* ---- the convolutions' glue: gather/concat, mean gradient, node update, degrees -------------- */

static void check_graph_ops(void) {
    const char *name = "gpu_graph_glue_matches_cpu_bit_for_bit";
    enum { NS = 16, DA = 40, DB = 64, DOUT = 48 };
    int64_t NA = 300, NB = 500, E = 4000, e0 = 1234, n = 2000;
    ppd_rng r;
    ppd_rng_seed(&r, 41);
    int64_t *first = malloc((size_t)E * 8), *second = malloc((size_t)E * 8),
            *order = malloc((size_t)E * 8), *seg = malloc((size_t)(NA + 1) * 8);
    for (int64_t e = 0; e < E; e++) {
        first[e] = (int64_t)ppd_rng_below(&r, (uint64_t)(NA - 7)); /* the last 7 get no edge */
        second[e] = (int64_t)ppd_rng_below(&r, (uint64_t)NB);
    }
    float *emb = rand_floats(&r, (size_t)E * NS, 1.0), *hA = rand_floats(&r, (size_t)NA * DA, 1.0),
          *hB = rand_floats(&r, (size_t)NB * DB, 1.0),
          *dU = rand_floats(&r, (size_t)NA * DOUT, 1.0),
          *yi = rand_floats(&r, (size_t)NA * DOUT, 1.0),
          *yc = rand_floats(&r, (size_t)NA * DOUT, 1.0), *A = malloc((size_t)n * 3 * NS * 4),
          *dmsg = malloc((size_t)n * DOUT * 4), *hn = malloc((size_t)NA * DOUT * 4),
          *cnt = malloc((size_t)NA * 4),
          *g = malloc((size_t)NA * DOUT * 4 > (size_t)n * DOUT * 4 ? (size_t)NA * DOUT * 4
                                                                   : (size_t)n * DOUT * 4);
    ppd_scatter_plan(order, seg, first, E, NA);
    ppd_degrees_forward(cnt, first, E, NA);
    ppd_gather_concat3_forward(A, emb, hA, first, DA, hB, second, DB, e0, n, NS);
    ppd_scatter_mean_grad(dmsg, dU, cnt, first, e0, n, DOUT);
    ppd_update_nodes_forward(hn, hA, NA, DA, DOUT, yi, yc);
    ppd_device_arena a;
    if (ppd_device_arena_create(&a, ((size_t)E * NS + (size_t)NA * DA + (size_t)NB * DB +
                                     (size_t)4 * NA * DOUT + (size_t)n * (3 * NS + DOUT) + NA) *
                                            4 +
                                        ((size_t)2 * E + NA + 1) * 8 + 24 * PPD_DEVICE_ALIGN) !=
        PPD_OK) {
        report(name, 0, "arena: %s", ppd_errmsg());
        goto out;
    }
    int64_t *d_first = dev_copy(&a, first, (size_t)E * 8),
            *d_second = dev_copy(&a, second, (size_t)E * 8),
            *d_seg = dev_copy(&a, seg, (size_t)(NA + 1) * 8);
    float *d_emb = dev_copy(&a, emb, (size_t)E * NS * 4),
          *d_hA = dev_copy(&a, hA, (size_t)NA * DA * 4),
          *d_hB = dev_copy(&a, hB, (size_t)NB * DB * 4),
          *d_dU = dev_copy(&a, dU, (size_t)NA * DOUT * 4),
          *d_yi = dev_copy(&a, yi, (size_t)NA * DOUT * 4),
          *d_yc = dev_copy(&a, yc, (size_t)NA * DOUT * 4),
          *d_A = dev_copy(&a, NULL, (size_t)n * 3 * NS * 4),
          *d_dmsg = dev_copy(&a, NULL, (size_t)n * DOUT * 4),
          *d_hn = dev_copy(&a, NULL, (size_t)NA * DOUT * 4),
          *d_cnt = dev_copy(&a, NULL, (size_t)NA * 4);
    ppd_status st = !d_first || !d_second || !d_seg || !d_emb || !d_hA || !d_hB || !d_dU || !d_yi ||
                            !d_yc || !d_A || !d_dmsg || !d_hn || !d_cnt
                        ? ppd_fail(PPD_ERR_NOMEM, "device buffers")
                        : PPD_OK;
    if (!st) st = ppd_cuda_degrees_forward(d_cnt, d_seg, NA, NULL);
    if (!st)
        st = ppd_cuda_gather_concat3_forward(d_A, d_emb, d_hA, d_first, DA, d_hB, d_second, DB, e0,
                                             n, NS, NULL);
    if (!st) st = ppd_cuda_scatter_mean_grad(d_dmsg, d_dU, d_cnt, d_first, e0, n, DOUT, NULL);
    if (!st) st = ppd_cuda_update_nodes_forward(d_hn, d_hA, NA, DA, DOUT, d_yi, d_yc, NULL);
    if (!st) st = ppd_device_synchronize();
    int same = 1;
    const char *which = "";
    if (!st && (st = ppd_device_download(g, d_cnt, (size_t)NA * 4)) == PPD_OK &&
        memcmp(g, cnt, (size_t)NA * 4))
        same = 0, which = "degrees";
    if (!st && same && (st = ppd_device_download(g, d_A, (size_t)n * 3 * NS * 4)) == PPD_OK &&
        memcmp(g, A, (size_t)n * 3 * NS * 4))
        same = 0, which = "gather_concat3";
    if (!st && same && (st = ppd_device_download(g, d_dmsg, (size_t)n * DOUT * 4)) == PPD_OK &&
        memcmp(g, dmsg, (size_t)n * DOUT * 4))
        same = 0, which = "scatter_mean_grad";
    if (!st && same && (st = ppd_device_download(g, d_hn, (size_t)NA * DOUT * 4)) == PPD_OK &&
        memcmp(g, hn, (size_t)NA * DOUT * 4))
        same = 0, which = "update_nodes";
    if (st)
        report(name, 0, "%s", ppd_errmsg());
    else
        report(name, same, "%s differs", which);
    ppd_device_arena_destroy(&a);
out:
    free(first), free(second), free(order), free(seg), free(emb), free(hA), free(hB), free(dU);
    free(yi), free(yc), free(A), free(dmsg), free(hn), free(cnt), free(g);
}

/* the fc input's gradient back to the edges and both ends, chunk by chunk: an intra conv (one
 * node array for both ends, a pair plan) and a cross conv (two arrays, two plans) */
static void check_concat3_backward(int intra) {
    char name[160];
    snprintf(name, sizeof name, "gpu_concat3_backward_matches_cpu_bit_for_bit_%s",
             intra ? "intra" : "cross");
    enum { NS = 16, DA = 40, DB = 24 };
    int64_t NA = 300, NB = intra ? 300 : 450, E = 3000, C = 700;
    int dB = intra ? DA : DB;
    ppd_rng r;
    ppd_rng_seed(&r, 47);
    int64_t *first = malloc((size_t)E * 8), *second = malloc((size_t)E * 8),
            *oA = malloc((size_t)2 * E * 8), *sA = malloc((size_t)(NA + 1) * 8),
            *oB = malloc((size_t)E * 8), *sB = malloc((size_t)(NB + 1) * 8);
    for (int64_t e = 0; e < E; e++) {
        first[e] = (int64_t)ppd_rng_below(&r, (uint64_t)NA);
        second[e] = (int64_t)ppd_rng_below(&r, (uint64_t)NB);
    }
    float *g = rand_floats(&r, (size_t)E * 3 * NS, 1.0),
          *demb = rand_floats(&r, (size_t)E * NS, 1.0), *hA = rand_floats(&r, (size_t)NA * DA, 1.0),
          *hB = rand_floats(&r, (size_t)NB * dB, 1.0),
          *gbuf = malloc((size_t)(E * NS > NB * dB ? (E * NS > NA * DA ? E * NS : NA * DA)
                                                   : (NB * dB > NA * DA ? NB * dB : NA * DA)) *
                         4);
    ppd_status st = intra ? ppd_scatter_plan_pairs(oA, sA, first, second, E, NA)
                          : ppd_scatter_plan(oA, sA, first, E, NA);
    if (!st && !intra) st = ppd_scatter_plan(oB, sB, second, E, NB);
    ppd_device_arena a;
    if (!st)
        st = ppd_device_arena_create(&a,
                                     ((size_t)E * 4 * NS + (size_t)NA * DA + (size_t)NB * dB) * 4 +
                                         ((size_t)3 * E + NA + NB + 2) * 8 + 16 * PPD_DEVICE_ALIGN);
    if (st) {
        report(name, 0, "%s", ppd_errmsg());
        goto out;
    }
    float *d_g = dev_copy(&a, g, (size_t)E * 3 * NS * 4),
          *d_demb = dev_copy(&a, demb, (size_t)E * NS * 4),
          *d_hA = dev_copy(&a, hA, (size_t)NA * DA * 4),
          *d_hB = intra ? d_hA : dev_copy(&a, hB, (size_t)NB * dB * 4);
    int64_t *d_oA = dev_copy(&a, oA, (size_t)(intra ? 2 : 1) * E * 8),
            *d_sA = dev_copy(&a, sA, (size_t)(NA + 1) * 8),
            *d_oB = intra ? NULL : dev_copy(&a, oB, (size_t)E * 8),
            *d_sB = intra ? NULL : dev_copy(&a, sB, (size_t)(NB + 1) * 8);
    if (!d_g || !d_demb || !d_hA || !d_hB || !d_oA || !d_sA || (!intra && (!d_oB || !d_sB)))
        st = ppd_fail(PPD_ERR_NOMEM, "device buffers");
    float *cB = intra ? hA : hB;
    for (int64_t e0 = 0; !st && e0 < E; e0 += C) {
        int64_t n = E - e0 < C ? E - e0 : C;
        ppd_gather_concat3_backward(demb, hA, DA, cB, dB, g + e0 * 3 * NS, first, second, e0, n,
                                    NS);
        st = ppd_cuda_gather_concat3_backward(d_demb, d_hA, DA, d_hB, dB, d_g + e0 * 3 * NS, d_oA,
                                              d_sA, NA, d_oB, d_sB, NB, e0, n, NS, NULL);
    }
    if (!st) st = ppd_device_synchronize();
    int same = 1;
    if (!st && !(st = ppd_device_download(gbuf, d_demb, (size_t)E * NS * 4)))
        same &= memcmp(gbuf, demb, (size_t)E * NS * 4) == 0;
    if (!st && !(st = ppd_device_download(gbuf, d_hA, (size_t)NA * DA * 4)))
        same &= memcmp(gbuf, hA, (size_t)NA * DA * 4) == 0;
    if (!st && !intra && !(st = ppd_device_download(gbuf, d_hB, (size_t)NB * dB * 4)))
        same &= memcmp(gbuf, hB, (size_t)NB * dB * 4) == 0;
    if (st)
        report(name, 0, "%s", ppd_errmsg());
    else
        report(name, same, "the accumulated gradients differ");
    ppd_device_arena_destroy(&a);
out:
    free(first), free(second), free(oA), free(sA), free(oB), free(sB), free(g), free(demb);
    free(hA), free(hB), free(gbuf);
}

/* node embedding rows and the edge MLP's raw input, against the CPU */
static void check_embed_ops(int gauss_first) {
    char name[160];
    snprintf(name, sizeof name, "gpu_node_and_edge_inputs_match_cpu_%s",
             gauss_first ? "gauss_first" : "temb_first");
    enum { D = 32, NS = 16, ROWS = 21 };
    int64_t N = 700, E = 5000;
    ppd_rng r;
    ppd_rng_seed(&r, 43);
    int64_t *idx = malloc((size_t)N * 8), *tnode = malloc((size_t)E * 8);
    for (int64_t n = 0; n < N; n++) idx[n] = (int64_t)ppd_rng_below(&r, ROWS);
    for (int64_t e = 0; e < E; e++) tnode[e] = (int64_t)ppd_rng_below(&r, (uint64_t)N);
    float off[D],
        *vec = rand_floats(&r, (size_t)E * 3, 8.0), *temb = rand_floats(&r, (size_t)N * 32, 1.0),
        *table = rand_floats(&r, (size_t)ROWS * NS, 1.0), *x = rand_floats(&r, (size_t)N * NS, 1.0),
        *raw = malloc((size_t)E * (32 + D) * 4), *gx = malloc((size_t)N * NS * 4),
        *graw = malloc((size_t)E * (32 + D) * 4);
    ppd_gaussian_smearing_offsets(off, 0.0f, 30.0f, D);
    float gamma = ppd_gaussian_smearing_gamma(off);
    ppd_device_arena a;
    if (ppd_device_arena_create(
            &a, ((size_t)E * (35 + D) + (size_t)N * (32 + 2 * NS) + (size_t)ROWS * NS + D) * 4 +
                    ((size_t)N + E) * 8 + 16 * PPD_DEVICE_ALIGN) != PPD_OK) {
        report(name, 0, "arena: %s", ppd_errmsg());
        goto out;
    }
    int64_t *d_idx = dev_copy(&a, idx, (size_t)N * 8), *d_tn = dev_copy(&a, tnode, (size_t)E * 8);
    float *d_vec = dev_copy(&a, vec, (size_t)E * 12), *d_temb = dev_copy(&a, temb, (size_t)N * 128),
          *d_tab = dev_copy(&a, table, (size_t)ROWS * NS * 4),
          *d_x = dev_copy(&a, x, (size_t)N * NS * 4), *d_off = dev_copy(&a, off, sizeof off),
          *d_raw = dev_copy(&a, NULL, (size_t)E * (32 + D) * 4);
    ppd_status st = !d_idx || !d_tn || !d_vec || !d_temb || !d_tab || !d_x || !d_off || !d_raw
                        ? ppd_fail(PPD_ERR_NOMEM, "device buffers")
                        : PPD_OK;
    ppd_add_table_rows(x, table, idx, N, NS);
    ppd_edge_raw_forward(raw, vec, temb, tnode, off, gamma, D, gauss_first, E);
    if (!st) st = ppd_cuda_add_table_rows(d_x, d_tab, d_idx, N, NS, NULL);
    if (!st)
        st = ppd_cuda_edge_raw_forward(d_raw, d_vec, d_temb, d_tn, d_off, gamma, D, gauss_first, E,
                                       NULL);
    if (!st) st = ppd_device_synchronize();
    if (!st) st = ppd_device_download(gx, d_x, (size_t)N * NS * 4);
    if (!st) st = ppd_device_download(graw, d_raw, (size_t)E * (32 + D) * 4);
    if (st) {
        report(name, 0, "%s", ppd_errmsg());
    } else {
        cmp_result cr = compare(graw, raw, E * (32 + D));
        int rows_same = memcmp(gx, x, (size_t)N * NS * 4) == 0;
        report(name, rows_same && cr.bad == 0,
               "embedding rows %s; raw: %lld values off by more than %d ulp",
               rows_same ? "agree" : "differ", (long long)cr.bad, TOL_ULPS);
    }
    ppd_device_arena_destroy(&a);
out:
    free(idx), free(tnode), free(vec), free(temb), free(table), free(x), free(raw), free(gx);
    free(graw);
}

/* ---- batch norm: the CPU body instantiated in float, as the score model does ----------------- */
#define PPD_BN_REAL     float
#define PPD_BN_FN(name) cpu_##name
#include "ppdock/kernels/bn_body.h"
#undef PPD_BN_REAL
#undef PPD_BN_FN

static void check_bn(const char *tag, const char *irreps, int64_t N, int training) {
    char name[160];
    snprintf(name, sizeof name, "gpu_batch_norm_%s", tag);
    ppd_irreps ir;
    if (ppd_irreps_parse(&ir, irreps) != PPD_OK) {
        report(name, 0, "%s", ppd_errmsg());
        return;
    }
    int D = ir.dim, nf = ppd_bn_fields(&ir, NULL), ns = 0;
    ppd_bn_field *fields = malloc((size_t)nf * sizeof *fields);
    ppd_bn_fields(&ir, fields);
    for (int i = 0; i < nf; i++) ns += fields[i].ib >= 0;
    ppd_rng r;
    ppd_rng_seed(&r, 31);
    size_t nx = (size_t)N * D;
    float *x = rand_floats(&r, nx, 2.0), *dy = rand_floats(&r, nx, 1.0),
          *w = rand_floats(&r, (size_t)nf, 1.0), *b = rand_floats(&r, (size_t)ns + 1, 1.0),
          *rm = rand_floats(&r, (size_t)ns + 1, 0.1), *rv = malloc((size_t)nf * 4),
          *dw = rand_floats(&r, (size_t)nf, 0.1), *db = rand_floats(&r, (size_t)ns + 1, 0.1),
          *y = malloc(nx * 4), *dx = malloc(nx * 4), *mu = malloc(((size_t)ns + 1) * 4),
          *sf = malloc((size_t)nf * 4);
    for (int i = 0; i < nf; i++) rv[i] = (float)(0.5 + fabs(ppd_rng_normal(&r)));
    ppd_device_arena a;
    if (ppd_device_arena_create(&a, 6 * nx * 4 + ((size_t)8 * nf + 8) * 4 + (size_t)nf * 12 +
                                        24 * PPD_DEVICE_ALIGN) != PPD_OK) {
        report(name, 0, "arena: %s", ppd_errmsg());
        goto out;
    }
    size_t ss = ((size_t)ns + 1) * 4, sw = (size_t)nf * 4;
    ppd_bn_field *d_f = dev_copy(&a, fields, (size_t)nf * sizeof *fields);
    float *d_x = dev_copy(&a, x, nx * 4), *d_dy = dev_copy(&a, dy, nx * 4),
          *d_w = dev_copy(&a, w, sw), *d_b = dev_copy(&a, b, ss), *d_rm = dev_copy(&a, rm, ss),
          *d_rv = dev_copy(&a, rv, sw), *d_dw = dev_copy(&a, dw, sw), *d_db = dev_copy(&a, db, ss),
          *d_y = dev_copy(&a, NULL, nx * 4), *d_dx = dev_copy(&a, NULL, nx * 4),
          *d_mu = dev_copy(&a, NULL, ss), *d_sf = dev_copy(&a, NULL, sw);
    if (!d_f || !d_x || !d_dy || !d_w || !d_b || !d_rm || !d_rv || !d_dw || !d_db || !d_y ||
        !d_dx || !d_mu || !d_sf) {
        report(name, 0, "device buffers: %s", ppd_errmsg());
        goto out_arena;
    }
    cpu_bn_forward(&ir, x, y, N, w, b, rm, rv, training, mu, sf);
    cpu_bn_backward(&ir, x, dy, dx, N, w, dw, db, training, mu, sf);
    ppd_status st = ppd_cuda_bn_forward(d_f, nf, D, d_x, d_y, N, d_w, d_b, d_rm, d_rv, training,
                                        d_mu, d_sf, NULL);
    if (!st)
        st = ppd_cuda_bn_backward(d_f, nf, D, d_x, d_dy, d_dx, N, d_w, d_dw, d_db, training, d_mu,
                                  d_sf, NULL);
    if (st) {
        report(name, 0, "%s", ppd_errmsg());
        goto out_arena;
    }
    snprintf(name, sizeof name, "gpu_batch_norm_forward_matches_cpu_%s", tag);
    fetch_close(name, d_y, y, (int64_t)nx, 1e-5);
    snprintf(name, sizeof name, "gpu_batch_norm_running_var_matches_cpu_%s", tag);
    fetch_close(name, d_rv, rv, nf, 1e-5);
    snprintf(name, sizeof name, "gpu_batch_norm_running_mean_matches_cpu_%s", tag);
    fetch_close(name, d_rm, rm, ns, 1e-5);
    snprintf(name, sizeof name, "gpu_batch_norm_backward_dx_matches_cpu_%s", tag);
    fetch_close(name, d_dx, dx, (int64_t)nx, 1e-5);
    snprintf(name, sizeof name, "gpu_batch_norm_backward_dw_matches_cpu_%s", tag);
    fetch_close(name, d_dw, dw, nf, 1e-5);
    snprintf(name, sizeof name, "gpu_batch_norm_backward_db_matches_cpu_%s", tag);
    fetch_close(name, d_db, db, ns, 1e-5);
out_arena:
    ppd_device_arena_destroy(&a);
out:
    free(fields), free(x), free(dy), free(w), free(b), free(rm), free(rv), free(dw), free(db);
    free(y), free(dx), free(mu), free(sf);
}

typedef struct {
    float **emb;
    int *n;
    int d, count;
} esm_collect;

/* A collector for n sequences of width d, and its release. */
static esm_collect esm_collect_new(int n, int d) {
    return (esm_collect){calloc((size_t)n, sizeof(float *)), calloc((size_t)n, sizeof(int)), d, 0};
}

static void esm_collect_free(esm_collect *c, int n) {
    for (int i = 0; i < n; i++) free(c->emb[i]);
    free(c->emb), free(c->n);
}

/* n random token sequences of lengths lens (standard amino acids only), drawn from `seed`. */
static uint8_t **random_tokens(const int *lens, int n, uint64_t seed) {
    ppd_rng r;
    ppd_rng_seed(&r, seed);
    uint8_t **toks = calloc((size_t)n, sizeof *toks);
    for (int i = 0; i < n; i++) {
        toks[i] = malloc((size_t)lens[i] + 1);
        for (int j = 0; j < lens[i]; j++) toks[i][j] = (uint8_t)(4 + ppd_rng_below(&r, 20));
    }
    return toks;
}

static void tokens_free(uint8_t **toks, int n) {
    for (int i = 0; i < n; i++) free(toks[i]);
    free(toks);
}

static ppd_status esm_collect_sink(void *ctx, int seq, const float *emb, int n, int d) {
    esm_collect *c = ctx;
    c->emb[seq] = malloc((size_t)n * d * sizeof(float));
    if (!c->emb[seq]) return ppd_fail(PPD_ERR_NOMEM, "test sink");
    memcpy(c->emb[seq], emb, (size_t)n * d * sizeof(float));
    c->n[seq] = n;
    c->count++;
    return PPD_OK;
}

/* Whole runs, CPU engine against CUDA engine, on a random model of shape (L, d, H): every
 * sequence's embeddings, and the device memory the plan predicted against what the arena used. */
static double check_esm_run(const char *tag, int L, int d, int H, const int *lens, int n,
                            int64_t max_tokens, ppd_cuda_precision prec, int fp32_attention,
                            double tol) {
    char name[160];
    snprintf(name, sizeof name, "gpu_esm_run_matches_cpu_%s", tag);
    ppd_esm_model m;
    if (ppd_esm_random_init(&m, L, d, H, 7) != PPD_OK) {
        report(name, 0, "model: %s", ppd_errmsg());
        return -1;
    }
    uint8_t **toks = random_tokens(lens, n, 5);
    esm_collect cpu = esm_collect_new(n, d), gpu = esm_collect_new(n, d);
    ppd_esm_plan pc, pg;
    ppd_esm_plan_opts o = PPD_ESM_PLAN_OPTS_DEFAULT;
    o.max_tokens = max_tokens;
    ppd_status st = ppd_esm_plan_make(&pc, &m.cfg, lens, n, &o);
    if (!st) st = ppd_esm_run(&m, &pc, (const uint8_t *const *)toks, -1, esm_collect_sink, &cpu);
    o.device = prec == PPD_CUDA_BF16 ? 2 : 1;
    if (!st) st = ppd_esm_plan_make(&pg, &m.cfg, lens, n, &o);
    ppd_cuda_esm_opts co = PPD_CUDA_ESM_OPTS_DEFAULT;
    co.precision = prec;
    co.fp32_attention = fp32_attention;
    ppd_cuda_esm_report rep;
    double md = -1, mc = 0;
    if (!st)
        st = ppd_cuda_esm_run(&m, &pg, (const uint8_t *const *)toks, -1, esm_collect_sink, &gpu,
                              &co, &rep);
    if (st) {
        report(name, 0, "%s", ppd_errmsg());
    } else {
        md = 0;
        int ok = cpu.count == n && gpu.count == n;
        for (int i = 0; ok && i < n; i++) {
            ok = cpu.n[i] == gpu.n[i];
            for (int64_t k = 0; ok && k < (int64_t)lens[i] * d; k++) {
                md = fmax(md, fabs((double)gpu.emb[i][k] - cpu.emb[i][k]));
                mc = fmax(mc, fabs((double)cpu.emb[i][k]));
                if (isnan(gpu.emb[i][k])) ok = 0;
            }
        }
        printf("     %s: %d sequences in %d batches, max |gpu - cpu| %.3g, max |cpu| %.3g; "
               "device memory planned %zu, used %zu (%.1f%%), pinned %zu\n",
               name, n, pg.n_batches, md, mc, rep.planned_bytes, rep.arena_high,
               100.0 * (double)rep.arena_high / (double)rep.planned_bytes, rep.pinned_bytes);
        report(name, ok && md <= tol * mc, "max |gpu - cpu| %.3g against max |cpu| %.3g (tol %.0e)",
               md, mc, tol);
        snprintf(name, sizeof name, "gpu_esm_predicts_its_host_memory_%s", tag);
        report(name,
               rep.host_bytes == ppd_cuda_esm_host_bytes(&m.cfg, &pg) &&
                   rep.host_bytes > rep.pinned_bytes,
               "the run allocated %zu host bytes (%zu pinned), ppd_cuda_esm_host_bytes says %zu",
               rep.host_bytes, rep.pinned_bytes, ppd_cuda_esm_host_bytes(&m.cfg, &pg));
        snprintf(name, sizeof name, "gpu_esm_plan_predicts_device_memory_%s", tag);
        report(name,
               rep.arena_high <= rep.planned_bytes &&
                   (double)rep.arena_high >= 0.95 * (double)rep.planned_bytes,
               "planned %zu bytes, the arena's high-water mark %zu", rep.planned_bytes,
               rep.arena_high);
        ppd_esm_plan_free(&pg);
    }
    if (!st || pc.n_batches) ppd_esm_plan_free(&pc);
    tokens_free(toks, n);
    esm_collect_free(&cpu, n), esm_collect_free(&gpu, n);
    ppd_esm_model_free(&m);
    return md;
}

/* bf16 mode, with the tensor-core attention and with fp32_attention: each within the bf16
 * tolerance of the CPU, and really two paths (the tensor-core attention rounds its probabilities
 * to bf16, the fp32 kernel does not, so the two runs' errors differ). */
static void check_esm_bf16_runs(const int *lens, int n) {
    double tc = check_esm_run("hd64_bf16", 2, 128, 2, lens, n, 4096, PPD_CUDA_BF16, 0, 3e-2);
    double f32 =
        check_esm_run("hd64_bf16_fp32_attention", 2, 128, 2, lens, n, 4096, PPD_CUDA_BF16, 1, 3e-2);
    report("gpu_esm_fp32_attention_option_takes_the_fp32_kernel", tc >= 0 && f32 >= 0 && tc != f32,
           "max |gpu - cpu| %.9g with the tensor-core attention, %.9g with fp32_attention", tc,
           f32);
}

/* Profile mode times every op without changing a bit of the output, and its op times add up
 * to no more than the run took. */
static void check_esm_profile(const int *lens, int n) {
    const char *name = "gpu_esm_profile_times_each_op_and_changes_nothing";
    ppd_esm_model m;
    if (ppd_esm_random_init(&m, 2, 64, 4, 7) != PPD_OK) {
        report(name, 0, "model: %s", ppd_errmsg());
        return;
    }
    uint8_t **toks = random_tokens(lens, n, 9);
    esm_collect a = esm_collect_new(n, 64), b = esm_collect_new(n, 64);
    ppd_esm_plan plan;
    ppd_esm_plan_opts o = PPD_ESM_PLAN_OPTS_DEFAULT;
    o.max_tokens = 256, o.device = 1;
    ppd_cuda_esm_opts co = PPD_CUDA_ESM_OPTS_DEFAULT;
    ppd_cuda_esm_report ra, rb;
    ppd_status st = ppd_esm_plan_make(&plan, &m.cfg, lens, n, &o);
    if (!st)
        st = ppd_cuda_esm_run(&m, &plan, (const uint8_t *const *)toks, -1, esm_collect_sink, &a,
                              &co, &ra);
    co.profile = 1;
    if (!st)
        st = ppd_cuda_esm_run(&m, &plan, (const uint8_t *const *)toks, -1, esm_collect_sink, &b,
                              &co, &rb);
    if (st) {
        report(name, 0, "%s", ppd_errmsg());
    } else {
        int same = a.count == n && b.count == n;
        for (int i = 0; same && i < n; i++)
            same = memcmp(a.emb[i], b.emb[i], sizeof(float) * (size_t)lens[i] * 64) == 0;
        double total = 0, unprofiled = 0;
        int positive = 1;
        for (int k = 0; k < PPD_ESM_NOPS; k++) {
            total += rb.op_ms[k], unprofiled += ra.op_ms[k];
            if (!(rb.op_ms[k] > 0)) positive = 0;
        }
        report(name,
               same && positive && unprofiled == 0 && total <= 1e3 * rb.gpu_seconds * 1.05 + 1,
               "outputs %s, op times %s (attention %.3g ms, fc1 %.3g ms), %.3g ms of ops in a "
               "%.3g ms run, %.3g ms reported without profiling",
               same ? "identical" : "DIFFER", positive ? "all > 0" : "NOT all > 0",
               rb.op_ms[PPD_ESM_OP_ATTENTION], rb.op_ms[PPD_ESM_OP_FC1_GEMM], total,
               1e3 * rb.gpu_seconds, unprofiled);
        ppd_esm_plan_free(&plan);
    }
    tokens_free(toks, n);
    esm_collect_free(&a, n), esm_collect_free(&b, n);
    ppd_esm_model_free(&m);
}

/* The checks, as steps (gpu_steps.c runs them in child processes); 3 when there is no GPU. */
static int run_checks(void) {
    int count = 0;
    if (ppd_device_count(&count) != PPD_OK || count == 0) {
        fprintf(stderr, "gpu: %s\n", ppd_errmsg());
        fprintf(stderr, "gpu: this test needs a CUDA GPU; nothing was run (exit 3)\n");
        return 3;
    }
    ppd_device_info info;
    if (ppd_device_describe(0, &info) != PPD_OK) {
        fprintf(stderr, "gpu: cannot describe device 0: %s\n", ppd_errmsg());
        return strncmp(ppd_errmsg(), "no CUDA device", 14) == 0 ? 3 : 1;
    }
    if (gpu_steps_first()) {
        printf("device %d of %d: %s, compute capability %d.%d, %d SMs, %.2f GiB (%.2f GiB free), "
               "peak %.0f GB/s, driver %d, runtime %d\n",
               info.index, count, info.name, info.cc_major, info.cc_minor, info.sm_count,
               (double)info.total_bytes / (1 << 30), (double)info.free_bytes / (1 << 30),
               info.peak_gbs, info.driver_version, info.runtime_version);
        report("gpu_device_describe", info.total_bytes > 0 && info.name[0], "empty description");
    }
    int emu = gpu_emulated = strstr(info.name, "ppdock CUDA emulator") != NULL;
    int small = gpu_small = gpu_small || emu;

    STEP("arena_basics", check_arena_basics((size_t)64 << 20));
    STEP("arena_over_budget", check_over_budget(&info));
    /* Odd sizes first (G > 32 walks the lane loop twice, a partial last block), then the
     * realistic ones with the loop and timing checks. Cross-edge range 0..80 for the odd case. */
    STEP("ops_odd", check_ops("odd_sizes", 1003, 50, 80.0f, 77, &info, 0));
    if (small)
        STEP("ops", check_ops("small", E_EDGES / 100, G_GAUSS, 30.0f, N_TIMES / 100, &info, 0));
    else
        STEP("ops", check_ops("realistic", E_EDGES, G_GAUSS, 30.0f, N_TIMES, &info, 1));
    STEP("tp_layer0", check_tp("layer0", 0, 3001, 57, 8, 3));
    STEP("tp_layer3", check_tp("layer3", 3, small ? 2011 : 20011, 400, 8, 3));
    STEP("tp_final", check_tp("final", 4, 777, 300, 8, 3));
    /* the released widths (ns 32, nv 6: full warps over the output channels), and ns 40 (more
     * channels than lanes: each lane takes two) */
    STEP("tp_layer3_ns32", check_tp("layer3_ns32", 3, small ? 301 : 20011, 100, 32, 6));
    STEP("tp_layer2_ns40", check_tp("layer2_ns40", 2, small ? 157 : 5003, 80, 40, 6));

    STEP("adam_clip", check_adam_clip());
    STEP("graph_ops", check_graph_ops());
    STEP("embed_ops", check_embed_ops(0));
    STEP("embed_ops_gauss_first", check_embed_ops(1));
    STEP("concat3_backward_intra", check_concat3_backward(1));
    STEP("concat3_backward_cross", check_concat3_backward(0));
    /* the score model's layer irreps (ns 16, nv 4), training and evaluation */
    STEP("bn_training", check_bn("training", "16x0e+4x1o+4x1e+16x0o", 333, 1));
    STEP("bn_evaluation", check_bn("evaluation", "16x0e+4x1o+4x2e", 101, 0));
    STEP("scatter_intra", check_scatter("intra", 20000, 400, 40, 3000));
    STEP("scatter_wide_rows", check_scatter("wide_rows", 5000, 1000, 100, 5000));
    /* the score model's shapes: edge MLP layers (E x 2ns+32 -> 32), odd sizes */
    STEP("linear_odd", check_linear("odd", 1001, 77, 33));
    STEP("linear_edge_mlp", check_linear("edge_mlp", small ? 5000 : 200000, 96, 32));

    /* ESM layers: hd 16 (8M/TINY), 64 (650M, 3B) and 128 (15B: the fp32 attention's 64 KiB of
     * dynamic shared memory); sequences across several key tiles and query blocks, one of
     * length 0 */
    int lens_a[] = {1, 5, 0, 33, 70, 150};
    STEP("esm_layers_hd16", check_esm_layers("hd16", lens_a, 6, 64, 16));
    STEP("esm_layers_hd64", check_esm_layers("hd64", lens_a, 6, 128, 64));
    STEP("esm_layers_hd128", check_esm_layers("hd128", lens_a, 6, 256, 128));
    STEP("esm_attention_bf16", check_esm_attention_bf16());
    STEP("esm_bias_gelu", check_esm_bias_gelu());
    STEP("esm_residual_layernorm", check_esm_residual_layernorm());
    int lens_run[] = {12, 140, 3, 64, 31, 90, 200, 7, 0, 45};
    STEP("esm_run_tiny_fp32",
         check_esm_run("tiny_fp32", 2, 64, 4, lens_run, 10, 256, PPD_CUDA_FP32, 0, 1e-4));
    STEP("esm_run_hd64_fp32",
         check_esm_run("hd64_fp32", 2, 128, 2, lens_run, 10, 4096, PPD_CUDA_FP32, 0, 1e-4));
    /* tf32 and bf16 tensor cores: the error against the fp32 CPU engine, bounded as documented
     * (docs/esm-embed.md); on the emulation tf32 is fp32, bf16 rounds the operands exactly as
     * the GPU does and sums in fp32 */
    STEP("esm_run_hd64_tf32",
         check_esm_run("hd64_tf32", 2, 128, 2, lens_run, 10, 4096, PPD_CUDA_TF32, 0, 5e-3));
    /* and bf16 without the tensor-core attention (the fp32 kernel and a cast), as esm-bench's
     * PPD_ESM_FP32_ATTENTION runs it */
    STEP("esm_run_hd64_bf16", check_esm_bf16_runs(lens_run, 10));
    /* head dimension 24 (ESM-2 35M): no tensor-core attention, the fp32 kernel and a cast */
    STEP("esm_run_hd24_bf16",
         check_esm_run("hd24_bf16", 2, 96, 4, lens_run, 10, 4096, PPD_CUDA_BF16, 0, 3e-2));
    STEP("esm_profile", check_esm_profile(lens_run, 10));

    /* the score model: its remaining glue ops, then whole passes on the golden cases */
    STEP("score_glue", check_score_glue());
    STEP("score_device", check_score_device());
    return nfail ? 1 : 0;
}

int main(int argc, char **argv) {
    return gpu_steps_main(argc, argv, run_checks);
}
