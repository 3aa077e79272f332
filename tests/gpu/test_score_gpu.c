/* tests/gpu/test_score_gpu.c — the score model on the GPU against the CPU reference: the last
 * glue ops (bit for bit), then whole training passes (ppdock/score_cuda.h) on the golden cases of
 * the ORIGINAL DiffDock-PP (tests/data/diffdock-golden[-bn], PPD_DIFFDOCK_GOLDEN[_BN] override):
 * predictions, every gradient, the batch norms' running statistics, dropout masks, determinism,
 * the pass memory plan, no cudaMalloc per pass, and the optimizer step.
 *
 * Tolerances: predictions within 1e-5 of the CPU (the GEMMs sum in another order) and 1e-4 of
 * the original (the CPU's own tolerance); each gradient tensor within 1e-4 of the CPU's,
 * relative to its largest entry, and 1e-3 of the original's (the CPU's own tolerance).
 */
#include "ppdock/adam.h"
#include "ppdock/graph_ops.h"
#include "ppdock/nn_cuda.h"
#include "ppdock/scatter.h"
#include "ppdock/score_cuda.h"

#include "../common/golden.h"
#include "gpu_test.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- glue ops, bit for bit ------------------------------------------------------------------ */

static int same_as_cpu(const char *what, const void *dev, const float *cpu, int64_t n,
                       const char **which) {
    float *g = malloc(sizeof(float) * (size_t)(n ? n : 1));
    int ok = g && ppd_device_synchronize() == PPD_OK &&
             ppd_device_download(g, dev, sizeof(float) * (size_t)n) == PPD_OK &&
             memcmp(g, cpu, sizeof(float) * (size_t)n) == 0;
    if (!ok && !*which) *which = what;
    free(g);
    return ok;
}

void check_score_glue(void) {
    const char *name = "gpu_score_glue_and_heads_match_cpu_bit_for_bit";
    enum { N = 300, T = 41, LD = 40, W = 24, LS = 56, B = 37 };
    ppd_rng r;
    ppd_rng_seed(&r, 77);
    int64_t idx[N], order[N], seg[T + 1];
    for (int i = 0; i < N; i++) idx[i] = (int64_t)ppd_rng_below(&r, T - 3);
    ppd_scatter_plan(order, seg, idx, N, T);
    float *src = rand_floats(&r, (size_t)N * LS, 1.0), *dst0 = rand_floats(&r, (size_t)N * LD, 1.0),
          *acc0 = rand_floats(&r, (size_t)T * LD, 1.0), *cnt = malloc(sizeof(float) * T),
          *z = rand_floats(&r, (size_t)B * 12, 1.0), *temb = rand_floats(&r, (size_t)B * 32, 1.0),
          *mag = rand_floats(&r, B, 1.0), *sig = malloc(sizeof(float) * B),
          *norm = malloc(sizeof(float) * B), *dpred = rand_floats(&r, (size_t)B * 3, 1.0),
          *dhin = rand_floats(&r, (size_t)B * 33, 1.0);
    for (int i = 0; i < T; i++) cnt[i] = (float)(1 + ppd_rng_below(&r, 9));
    for (int g = 0; g < B; g++)
        sig[g] = (float)(0.01 + 30 * ppd_rng_uniform(&r)), norm[g] = (float)ppd_rng_uniform(&r);
    /* CPU */
    float *gat = malloc(sizeof(float) * N * LD), *gat2 = malloc(sizeof(float) * N * LD),
          *add = malloc(sizeof(float) * N * LD), *mean = malloc(sizeof(float) * T * LD),
          *sc = malloc(sizeof(float) * T * LD);
    memcpy(gat, dst0, sizeof(float) * N * LD), memcpy(gat2, dst0, sizeof(float) * N * LD);
    memcpy(add, dst0, sizeof(float) * N * LD), memcpy(mean, acc0, sizeof(float) * T * LD);
    memcpy(sc, acc0, sizeof(float) * T * LD);
    ppd_gather_rows(gat + 3, LD, src, LS, idx, 17, N - 40, W);
    ppd_gather_rows(gat2, LD, src + 5, LS, NULL, 9, N - 9, W);
    ppd_add_rows(add, LD, src + 7, LS, N, W);
    ppd_scatter_mean_forward(mean, cnt, T, LD);
    ppd_scatter_add_cols(sc, LD, src + 2, LS, idx, 30, 200, W);
    float vec[2][B * 3], rho[2][B], hin[2][B * 33], pred[2][B * 3], scale[2][B], dmag[2][B],
        dz[B * 12];
    memset(dz, 0, sizeof dz);
    for (int w = 0; w < 2; w++) {
        ppd_head_input_forward(vec[w], rho[w], hin[w], z, temb, B, w);
        ppd_head_pred_forward(pred[w], scale[w], vec[w], rho[w], mag, sig, norm, B, w == 0, w == 1);
        ppd_head_mag_backward(dmag[w], dpred, vec[w], rho[w], scale[w], B);
        ppd_head_input_backward(dz, dpred, vec[w], rho[w], scale[w], mag, dhin, B, w);
    }
    /* GPU */
    ppd_device_arena a;
    if (ppd_device_arena_create(&a, (size_t)1 << 22) != PPD_OK) {
        report(name, 0, "arena: %s", ppd_errmsg());
        goto out;
    }
    const char *which = NULL;
    int64_t *d_idx = dev_copy(&a, idx, sizeof idx), *d_order = dev_copy(&a, order, sizeof order),
            *d_seg = dev_copy(&a, seg, sizeof seg);
    float *d_src = dev_copy(&a, src, sizeof(float) * N * LS),
          *d_gat = dev_copy(&a, dst0, sizeof(float) * N * LD),
          *d_gat2 = dev_copy(&a, dst0, sizeof(float) * N * LD),
          *d_add = dev_copy(&a, dst0, sizeof(float) * N * LD),
          *d_mean = dev_copy(&a, acc0, sizeof(float) * T * LD),
          *d_sc = dev_copy(&a, acc0, sizeof(float) * T * LD),
          *d_cnt = dev_copy(&a, cnt, sizeof(float) * T),
          *d_z = dev_copy(&a, z, sizeof(float) * B * 12),
          *d_temb = dev_copy(&a, temb, sizeof(float) * B * 32),
          *d_mag = dev_copy(&a, mag, sizeof(float) * B),
          *d_sig = dev_copy(&a, sig, sizeof(float) * B),
          *d_norm = dev_copy(&a, norm, sizeof(float) * B),
          *d_dpred = dev_copy(&a, dpred, sizeof(float) * B * 3),
          *d_dhin = dev_copy(&a, dhin, sizeof(float) * B * 33),
          *d_vec = dev_copy(&a, NULL, sizeof(float) * B * 3),
          *d_rho = dev_copy(&a, NULL, sizeof(float) * B),
          *d_hin = dev_copy(&a, NULL, sizeof(float) * B * 33),
          *d_pred = dev_copy(&a, NULL, sizeof(float) * B * 3),
          *d_scale = dev_copy(&a, NULL, sizeof(float) * B),
          *d_dmag = dev_copy(&a, NULL, sizeof(float) * B),
          *d_dz = dev_copy(&a, dz, sizeof(float) * B * 12);
    ppd_status st = !d_dz ? ppd_fail(PPD_ERR_NOMEM, "device buffers") : PPD_OK;
    if (!st) st = ppd_cuda_gather_rows(d_gat + 3, LD, d_src, LS, d_idx, 17, N - 40, W, NULL);
    if (!st) st = ppd_cuda_gather_rows(d_gat2, LD, d_src + 5, LS, NULL, 9, N - 9, W, NULL);
    if (!st) st = ppd_cuda_add_rows(d_add, LD, d_src + 7, LS, N, W, NULL);
    if (!st) st = ppd_cuda_scatter_mean_forward(d_mean, d_cnt, T, LD, NULL);
    if (!st)
        st =
            ppd_cuda_scatter_add_cols(d_sc, LD, d_src + 2, LS, d_order, d_seg, 30, 200, T, W, NULL);
    int ok = !st;
    ok = ok && same_as_cpu("gather_rows", d_gat, gat, N * LD, &which) &&
         same_as_cpu("gather_rows (no index)", d_gat2, gat2, N * LD, &which) &&
         same_as_cpu("add_rows", d_add, add, N * LD, &which) &&
         same_as_cpu("scatter_mean", d_mean, mean, T * LD, &which) &&
         same_as_cpu("scatter_add_cols", d_sc, sc, T * LD, &which);
    for (int w = 0; ok && w < 2; w++) {
        st = ppd_cuda_head_input_forward(d_vec, d_rho, d_hin, d_z, d_temb, B, w, NULL);
        if (!st)
            st = ppd_cuda_head_pred_forward(d_pred, d_scale, d_vec, d_rho, d_mag, d_sig, d_norm, B,
                                            w == 0, w == 1, NULL);
        if (!st) st = ppd_cuda_head_mag_backward(d_dmag, d_dpred, d_vec, d_rho, d_scale, B, NULL);
        if (!st)
            st = ppd_cuda_head_input_backward(d_dz, d_dpred, d_vec, d_rho, d_scale, d_mag, d_dhin,
                                              B, w, NULL);
        ok = !st && same_as_cpu("head_input (vec)", d_vec, vec[w], B * 3, &which) &&
             same_as_cpu("head_input (rho)", d_rho, rho[w], B, &which) &&
             same_as_cpu("head_input (mlp input)", d_hin, hin[w], B * 33, &which) &&
             same_as_cpu("head_pred", d_pred, pred[w], B * 3, &which) &&
             same_as_cpu("head_pred (scale)", d_scale, scale[w], B, &which) &&
             same_as_cpu("head_mag_backward", d_dmag, dmag[w], B, &which);
    }
    ok = ok && same_as_cpu("head_input_backward", d_dz, dz, B * 12, &which);
    if (st)
        report(name, 0, "%s", ppd_errmsg());
    else
        report(name, ok, "%s differs", which ? which : "?");
    ppd_device_arena_destroy(&a);
out:
    free(src), free(dst0), free(acc0), free(cnt), free(z), free(temb), free(mag), free(sig);
    free(norm), free(dpred), free(dhin), free(gat), free(gat2), free(add), free(mean), free(sc);
}

/* ---- whole passes on the golden cases ------------------------------------------------------- */

static const char *golden_dir(int bn) {
    const char *env = getenv(bn ? "PPD_DIFFDOCK_GOLDEN_BN" : "PPD_DIFFDOCK_GOLDEN");
    return env ? env : bn ? "tests/data/diffdock-golden-bn" : "tests/data/diffdock-golden";
}

/* The worst gradient tensor of `got` against `want` (each relative to want's largest entry). */
static double worst_grad(const ppd_score_model *m, const float *got, const float *want,
                         const char **worst_name) {
    double worst = 0;
    for (int i = 0; i < m->ntensors; i++) {
        const ppd_param_entry *e = &m->tab[i];
        double r = ppt_rel_err(got + e->offset, want + e->offset, (int64_t)e->numel, 1e-8);
        if (!(r <= worst)) worst = r, *worst_name = e->name;
    }
    return worst;
}

/* The pinned staging a device needs for passes of these batches: their largest inputs. */
static size_t staging_for(const ppd_score_model *m, const ppd_score_batch *const *bs, int n) {
    size_t most = 0;
    for (int i = 0; i < n; i++) {
        const ppd_score_batch *b = bs[i];
        size_t in = ppd_score_device_input_bytes(m, b->Nr, b->Nl, b->Er, b->El,
                                                 ppd_score_count_cross_edges(m, b), b->B);
        most = in > most ? in : most;
    }
    return most;
}

/* The original's gradients from the case file into g (nparams); 0 if one is missing. */
static int golden_grads(const ppd_score_model *m, const ppt_golden_case *gc, float *g) {
    for (int i = 0; i < m->ntensors; i++) {
        char n[128];
        snprintf(n, sizeof n, "grad.%s", m->tab[i].name);
        int64_t cnt;
        float *w = ppt_tensor_f32(gc->f, n, &cnt);
        if (!w || cnt != (int64_t)m->tab[i].numel) {
            free(w);
            return 0;
        }
        memcpy(g + m->tab[i].offset, w, sizeof(float) * (size_t)cnt);
        free(w);
    }
    return 1;
}

typedef struct {
    const char *tag, *case_name;
    int bn, training;
    float dropout;
    int golden; /* compare with the original's numbers too (not with dropout: other masks) */
    /* TF32 GEMMs (--precision tf32): their error against the fp32 CPU pass, bounded by tol_pred
     * and tol_grad (docs/train.md); fp32 runs are held to 1e-5 and 1e-4 */
    int tf32;
    double tol_pred, tol_grad;
} pass_variant;

static void check_pass(const pass_variant *v) {
    char name[160];
    snprintf(name, sizeof name, "gpu_score_pass_matches_cpu_%s", v->tag);
    ppd_score_config c;
    ppt_golden_config(&c);
    c.batch_norm = v->bn;
    c.dropout = v->dropout;
    c.chunk_edges = 700; /* several chunks of every conv, a partial last one */
    ppd_score_model m, m2;
    ppt_golden_case gc;
    ppd_score_device *d = NULL;
    memset(&gc, 0, sizeof gc);
    if (ppd_score_model_init(&m, &c) != PPD_OK || ppd_score_model_init(&m2, &c) != PPD_OK) {
        report(name, 0, "model: %s", ppd_errmsg());
        return;
    }
    size_t P = m.nparams;
    float *cpu_g = malloc(sizeof(float) * P), *dev_g = malloc(sizeof(float) * P),
          *dev_g2 = malloc(sizeof(float) * P), *gold_g = malloc(sizeof(float) * P),
          *buf0 = malloc(sizeof(float) * (m.nbuffer_floats + 1)),
          *cpu_buf = malloc(sizeof(float) * (m.nbuffer_floats + 1));
    ppd_status st = ppt_golden_weights_load(&m, golden_dir(v->bn));
    if (!st) st = ppt_golden_case_load(&gc, golden_dir(v->bn), v->case_name);
    if (st) {
        report(name, 0, "%s", ppd_errmsg());
        goto out;
    }
    const ppd_score_batch *b = &gc.b;
    int B = b->B;
    int64_t Ec = ppd_score_count_cross_edges(&m, b);
    size_t need = ppd_score_device_pass_bytes(&m, b->Nr, b->Nl, b->Er, b->El, Ec, B);
    memcpy(buf0, m.buffers, sizeof(float) * m.nbuffer_floats);
    m.training = v->training;
    m.dropout_seed = 12345;
    /* the device first (it uploads the initial running statistics), then the CPU pass */
    st = ppd_score_device_create(&d, &m, need + need / 8, staging_for(&m, &b, 1),
                                 v->tf32 ? PPD_CUDA_TF32 : PPD_CUDA_FP32);
    float tr[12], rot[12], dtr[12], drot[12];
    double ltr, lrot;
    if (!st) st = ppd_score_forward(&m, b, tr, rot, NULL);
    ppt_golden_loss(&gc, tr, rot, dtr, drot, &ltr, &lrot);
    ppd_score_zero_grad(&m);
    if (!st) st = ppd_score_backward(&m, dtr, drot);
    if (st) {
        report(name, 0, "set-up or CPU pass: %s", ppd_errmsg());
        goto out;
    }
    memcpy(cpu_g, m.grads, sizeof(float) * P);
    memcpy(cpu_buf, m.buffers, sizeof(float) * m.nbuffer_floats);
    /* the device pass, twice from the same start: determinism and no allocation per pass */
    float gtr[12], grot[12];
    uint64_t mallocs = ppd_device_malloc_count();
    /* on the emulation (sequential, so deterministic by construction) once, but in one variant */
    int runs = gpu_emulated && strcmp(v->tag, "dropout_training") != 0 ? 1 : 2;
    for (int run = 0; run < runs && !st; run++) {
        memcpy(m.buffers, buf0, sizeof(float) * m.nbuffer_floats);
        st = ppd_score_device_upload(d, &m, NULL, NULL);
        if (!st) st = ppd_score_device_zero_grad(d);
        if (!st) st = ppd_score_device_forward(d, b, gtr, grot, NULL);
        if (!st) st = ppd_score_device_backward(d, dtr, drot); /* the CPU's dL/dpred */
        if (!st) st = ppd_score_device_download(d, &m2, NULL, NULL, run ? dev_g2 : dev_g);
    }
    if (st) {
        report(name, 0, "device pass: %s", ppd_errmsg());
        goto out;
    }
    /* predictions, gradients, running statistics */
    double ep = fmax(ppt_rel_err(gtr, tr, 3 * B, 1e-6), ppt_rel_err(grot, rot, 3 * B, 1e-6));
    const char *wn = "";
    double eg = worst_grad(&m, dev_g, cpu_g, &wn);
    double eb =
        m.nbuffer_floats ? ppt_rel_err(m2.buffers, cpu_buf, (int64_t)m.nbuffer_floats, 1e-6) : 0;
    double tp = v->tf32 ? v->tol_pred : 1e-5, tg = v->tf32 ? v->tol_grad : 1e-4;
    char why[512];
    snprintf(why, sizeof why,
             "pred %.2g (tol %.0e), worst gradient %s %.2g (tol %.0e), running "
             "statistics %.2g (tol %.0e)",
             ep, tp, wn, eg, tg, eb, tp);
    report_measured(name, ep <= tp && eg <= tg && eb <= tp, "%s", why);
    if (runs == 2) {
        snprintf(name, sizeof name, "gpu_score_pass_deterministic_%s", v->tag);
        report(name, memcmp(dev_g, dev_g2, sizeof(float) * P) == 0, "two runs' gradients differ");
    }
    snprintf(name, sizeof name, "gpu_score_pass_no_cudamalloc_and_planned_memory_%s", v->tag);
    ppd_score_device_usage u;
    ppd_score_device_usage_get(d, &u);
    report(name,
           ppd_device_malloc_count() == mallocs && u.last_pass_bytes == need &&
               u.pass_high_water <= u.pass_capacity,
           "%llu cudaMalloc in the loop, pass used %zu bytes, planned %zu",
           (unsigned long long)(ppd_device_malloc_count() - mallocs), u.last_pass_bytes, need);
    if (v->golden) {
        snprintf(name, sizeof name, "gpu_score_pass_matches_diffdock_pp_golden_%s", v->tag);
        float *wt = ppt_tensor_f32(gc.f, "tr_pred", NULL),
              *wr = ppt_tensor_f32(gc.f, "rot_pred", NULL);
        double eo =
            wt && wr ? fmax(ppt_rel_err(gtr, wt, 3 * B, 1e-6), ppt_rel_err(grot, wr, 3 * B, 1e-6))
                     : 1;
        const char *wg = "";
        double ego = golden_grads(&m, &gc, gold_g) ? worst_grad(&m, dev_g, gold_g, &wg) : 1;
        report(name, eo <= 1e-4 && ego <= 1e-3,
               "pred %.2g (tol 1e-4), worst gradient %s %.2g (tol 1e-3)", eo, wg, ego);
        free(wt), free(wr);
    }
out:
    ppd_score_device_destroy(d);
    ppt_golden_case_free(&gc);
    ppd_score_model_free(&m), ppd_score_model_free(&m2);
    free(cpu_g), free(dev_g), free(dev_g2), free(gold_g), free(buf0), free(cpu_buf);
}

/* A batch over the pass arena, or whose inputs exceed the pinned staging made at start-up (which
 * is never grown: no pinned allocation per pass), is refused before it runs, naming what it
 * needs. */
static void check_pass_over_budget(void) {
    const char *name = "gpu_score_pass_over_budget_fails_with_the_bytes_needed";
    ppd_score_config c;
    ppt_golden_config(&c);
    ppd_score_model m;
    ppt_golden_case gc;
    ppd_score_device *d = NULL;
    memset(&gc, 0, sizeof gc);
    if (ppd_score_model_init(&m, &c) != PPD_OK) {
        report(name, 0, "%s", ppd_errmsg());
        return;
    }
    ppd_status st = ppt_golden_case_load(&gc, golden_dir(0), "AB_t0.60");
    if (!st) {
        const ppd_score_batch *b = &gc.b;
        size_t need = ppd_score_device_pass_bytes(&m, b->Nr, b->Nl, b->Er, b->El,
                                                  ppd_score_count_cross_edges(&m, b), b->B);
        st = ppd_score_device_create(&d, &m, need - 1, staging_for(&m, &b, 1), PPD_CUDA_FP32);
        float p[12];
        ppd_status f = st ? st : ppd_score_device_forward(d, b, p, p + 6, NULL);
        report(name, !st && f == PPD_ERR_NOMEM && strstr(ppd_errmsg(), "needs"), "status %d: %s",
               (int)f, ppd_errmsg());
        ppd_score_device_destroy(d);
        d = NULL;
        name = "gpu_score_pass_inputs_over_the_staging_fail_with_the_bytes";
        size_t half = staging_for(&m, &b, 1) / 2;
        st = ppd_score_device_create(&d, &m, need, half, PPD_CUDA_FP32);
        f = st ? st : ppd_score_device_forward(d, b, p, p + 6, NULL);
        ppd_score_device_usage u;
        if (d) ppd_score_device_usage_get(d, &u);
        report(name,
               !st && f == PPD_ERR_NOMEM && strstr(ppd_errmsg(), "pinned staging") &&
                   u.staging_bytes == half,
               "status %d: %s", (int)f, ppd_errmsg());
    } else {
        report(name, 0, "%s", ppd_errmsg());
    }
    ppd_score_device_destroy(d);
    ppt_golden_case_free(&gc);
    ppd_score_model_free(&m);
}

/* Models m and m2 of config c, m with the original's weights (golden set bn: batch norm or
 * not), the case case_name in gc, and a device d whose pass arena holds exactly that case. On
 * an error: reports `name` failed, frees what it made and returns non-zero. */
static int device_case(const char *name, const ppd_score_config *c, int bn, const char *case_name,
                       ppd_score_model *m, ppd_score_model *m2, ppt_golden_case *gc,
                       ppd_score_device **d) {
    memset(gc, 0, sizeof *gc);
    *d = NULL;
    if (ppd_score_model_init(m, c) != PPD_OK || ppd_score_model_init(m2, c) != PPD_OK) {
        report(name, 0, "%s", ppd_errmsg());
        return 1;
    }
    ppd_status st = ppt_golden_weights_load(m, golden_dir(bn));
    if (!st) st = ppt_golden_case_load(gc, golden_dir(bn), case_name);
    const ppd_score_batch *b = &gc->b;
    if (!st)
        st = ppd_score_device_create(d, m,
                                     ppd_score_device_pass_bytes(m, b->Nr, b->Nl, b->Er, b->El,
                                                                 ppd_score_count_cross_edges(m, b),
                                                                 b->B),
                                     staging_for(m, &b, 1), PPD_CUDA_FP32);
    if (!st) return 0;
    report(name, 0, "%s", ppd_errmsg());
    ppd_score_device_destroy(*d);
    ppt_golden_case_free(gc);
    ppd_score_model_free(m), ppd_score_model_free(m2);
    return 1;
}

/* Clipping and Adam on the device against the CPU's, from the gradients of a device pass. */
static void check_device_step(void) {
    const char *name = "gpu_score_step_matches_cpu_clip_and_adam";
    ppd_score_config c;
    ppt_golden_config(&c);
    ppd_score_model m, m2;
    ppt_golden_case gc;
    ppd_score_device *d;
    if (device_case(name, &c, 0, "AB_t0.60", &m, &m2, &gc, &d)) return;
    size_t P = m.nparams;
    int nt = m.ntensors;
    float *g = malloc(sizeof(float) * P), *g2 = malloc(sizeof(float) * P),
          *p = malloc(sizeof(float) * P), *am = calloc(P, sizeof(float)),
          *av = calloc(P, sizeof(float));
    size_t *off = malloc(sizeof(size_t) * (size_t)nt), *num = malloc(sizeof(size_t) * (size_t)nt);
    for (int i = 0; i < nt; i++) off[i] = m.tab[i].offset, num[i] = m.tab[i].numel;
    const ppd_score_batch *b = &gc.b;
    ppd_status st = PPD_OK;
    float tr[6], rot[6], dtr[6], drot[6];
    double ltr, lrot, gn_dev = 0;
    if (!st) st = ppd_score_device_forward(d, b, tr, rot, NULL);
    ppt_golden_loss(&gc, tr, rot, dtr, drot, &ltr, &lrot);
    if (!st) st = ppd_score_device_backward(d, dtr, drot);
    if (!st) st = ppd_score_device_download(d, &m2, NULL, NULL, g);
    if (st) {
        report(name, 0, "%s", ppd_errmsg());
        goto out;
    }
    /* the CPU's step on the same gradients, with a max norm that makes the clipping act */
    memcpy(g2, g, sizeof(float) * P);
    double gn = ppd_clip_grad_norm(g2, off, num, nt, 1e30), max_norm = gn / 2;
    memcpy(g2, g, sizeof(float) * P);
    memcpy(p, m.params, sizeof(float) * P);
    ppd_adam_config ac = {1e-3, 0.9, 0.999, 1e-8, 0};
    double gn_cpu = ppd_clip_grad_norm(g2, off, num, nt, max_norm);
    ppd_adam_step(p, g2, am, av, P, &ac, 1);
    st = ppd_score_device_step(d, &ac, 1, max_norm);
    if (!st) st = ppd_score_device_grad_norm(d, &gn_dev);
    if (!st) st = ppd_score_device_download(d, &m2, am, av, NULL);
    if (st) {
        report(name, 0, "%s", ppd_errmsg());
        goto out;
    }
    double ep = ppt_rel_err(m2.params, p, (int64_t)P, 1e-8);
    report(name, fabs(gn_dev - gn_cpu) <= 1e-5 * gn_cpu && ep <= 1e-6,
           "norm %.9g vs the CPU's %.9g, parameters rel err %.2g (tol 1e-6)", gn_dev, gn_cpu, ep);
out:
    ppd_score_device_destroy(d);
    ppt_golden_case_free(&gc);
    ppd_score_model_free(&m), ppd_score_model_free(&m2);
    free(g), free(g2), free(p), free(am), free(av), free(off), free(num);
}

/* What the driver counts for a device's two allocations against their plan (fixed part + pass
 * arena). The CUDA runtime's own memory beside them (about 67 MiB on an H200: the cuBLAS handle
 * and the kernels' code) is reported apart, outside the plan. */
static void check_measured_memory(void) {
    const char *name = "gpu_score_device_memory_measured_by_the_driver_matches_the_plan";
    ppd_score_config c;
    ppt_golden_config(&c);
    ppd_score_model m;
    ppd_score_device *d = NULL;
    if (ppd_score_model_init(&m, &c) != PPD_OK) {
        report(name, 0, "%s", ppd_errmsg());
        return;
    }
    size_t pass = (size_t)256 << 20, planned = ppd_score_device_fixed_bytes(&m) + pass;
    ppd_status st = ppd_score_device_create(&d, &m, pass, 0, PPD_CUDA_FP32);
    if (st) {
        report(name, 0, "%s", ppd_errmsg());
    } else {
        ppd_score_device_usage u;
        ppd_score_device_usage_get(d, &u);
        double r = (double)u.measured_bytes / (double)planned;
        report_measured(name, r >= 0.95 && r <= 1.05,
                        "the driver counted %zu bytes for a plan of %zu (ratio %.4f, tol 5%%), "
                        "and %.1f MiB beside it for CUDA's own (streams, cuBLAS handle, kernels)",
                        u.measured_bytes, planned, r, u.runtime_bytes / 1048576.0);
    }
    ppd_score_device_destroy(d);
    ppd_score_model_free(&m);
}

/* The a, b, a sequence's set-up: models m and m2 of the golden config with dropout p and chunks
 * of 700 edges, m with the original's weights, a = A_t0.30 and b = AB_t0.60. On an error:
 * reports `name` failed, frees what it made and returns non-zero. */
static int sequence_case(const char *name, float dropout, ppd_score_model *m, ppd_score_model *m2,
                         ppt_golden_case *ga, ppt_golden_case *gb) {
    ppd_score_config c;
    ppt_golden_config(&c);
    c.dropout = dropout;
    c.chunk_edges = 700;
    memset(ga, 0, sizeof *ga), memset(gb, 0, sizeof *gb);
    if (ppd_score_model_init(m, &c) != PPD_OK || ppd_score_model_init(m2, &c) != PPD_OK) {
        report(name, 0, "model: %s", ppd_errmsg());
        return 1;
    }
    ppd_status st = ppt_golden_weights_load(m, golden_dir(0));
    if (!st) st = ppt_golden_case_load(ga, golden_dir(0), "A_t0.30");
    if (!st) st = ppt_golden_case_load(gb, golden_dir(0), "AB_t0.60");
    if (!st) return 0;
    report(name, 0, "set-up: %s", ppd_errmsg());
    ppt_golden_case_free(ga), ppt_golden_case_free(gb);
    ppd_score_model_free(m), ppd_score_model_free(m2);
    return 1;
}

/* Passes a, b, a (ppt_golden_sequence_seeds) one after another without staging, the gradients
 * downloaded after each: they must add up like the CPU's after every pass (a failure names the pass
 * that went wrong, which the staged sequence below cannot). */
static void check_pass_sequence(float dropout) {
    char name[160];
    snprintf(name, sizeof name, "gpu_score_passes_a_b_a_accumulate_like_cpu_%s",
             dropout > 0 ? "dropout" : "no_dropout");
    ppd_score_model m, m2;
    ppt_golden_case ga, gb;
    ppd_score_device *d = NULL;
    if (sequence_case(name, dropout, &m, &m2, &ga, &gb)) return;
    size_t P = m.nparams;
    float *cpu_g = malloc(sizeof(float) * P), *dev_g = malloc(sizeof(float) * P);
    const ppd_score_batch *seq[3] = {&ga.b, &gb.b, &ga.b};
    const ppt_golden_case *gseq[3] = {&ga, &gb, &ga};
    const ppd_score_batch *b = &gb.b;
    int64_t ec = ppd_score_count_cross_edges(&m, b);
    ppd_status st = ppd_score_device_create(
        &d, &m, 2 * ppd_score_device_pass_bytes(&m, b->Nr, b->Nl, b->Er, b->El, ec, b->B),
        staging_for(&m, seq, 3), PPD_CUDA_FP32);
    m.training = 1;
    ppd_score_zero_grad(&m);
    if (!st) st = ppd_score_device_zero_grad(d);
    char why[768];
    int n = 0, ok = 1;
    for (int k = 0; k < 3 && !st; k++) {
        float tr[12], rot[12], dtr[12], drot[12], gtr[12], grot[12];
        double l1, l2;
        m.dropout_seed = ppt_golden_sequence_seeds[k];
        st = ppd_score_forward(&m, seq[k], tr, rot, NULL);
        ppt_golden_loss(gseq[k], tr, rot, dtr, drot, &l1, &l2);
        if (!st) st = ppd_score_backward(&m, dtr, drot);
        if (!st) st = ppd_score_device_forward(d, seq[k], gtr, grot, NULL);
        if (!st) st = ppd_score_device_backward(d, dtr, drot);
        if (!st) st = ppd_score_device_download(d, &m2, NULL, NULL, dev_g);
        if (st) break;
        memcpy(cpu_g, m.grads, sizeof(float) * P);
        int64_t n3 = 3 * seq[k]->B;
        double ep = fmax(ppt_rel_err(gtr, tr, n3, 1e-6), ppt_rel_err(grot, rot, n3, 1e-6));
        const char *wn = "";
        double eg = worst_grad(&m, dev_g, cpu_g, &wn);
        ok = ok && ep <= 1e-5 && eg <= 1e-4;
        n += snprintf(why + n, sizeof why - (size_t)n,
                      "%spass %d: pred %.2g, worst summed gradient %s %.2g", k ? "; " : "", k + 1,
                      ep, wn, eg);
    }
    if (st)
        report(name, 0, "passes: %s", ppd_errmsg());
    else
        report_measured(name, ok, "%s (tol 1e-5, 1e-4)", why);
    ppd_score_device_destroy(d);
    ppt_golden_case_free(&ga), ppt_golden_case_free(&gb);
    ppd_score_model_free(&m), ppd_score_model_free(&m2);
    free(cpu_g), free(dev_g);
}

/* The trainer's pipelining: the next pass staged while the last one's backward is queued, its
 * dropout seed set after staging; passes a, b, a with ppt_golden_sequence_seeds (away from the
 * ReLU kinks, golden.h). Their gradients add up to
 * the CPU's, and the staged pass must be the one run. `room` 0: an arena of exactly b's pass,
 * so each upload waits for the pass before; 1: b's pass plus twice b's inputs, so every upload
 * goes beside the running pass on the copy stream (the emulation holds such a copy until the
 * compute stream waits for it: a forward that did not wait reads stale inputs). */
static void check_stage_ahead(int room) {
    /* room 0's gradients, which room 1's must equal bit for bit: the arithmetic does not depend
     * on where the inputs lie or when they arrived, so a difference is a race between the copy
     * stream and the passes (visible on a GPU; the emulation runs kernels at launch) */
    static float *serial_g;
    const char *name = room ? "gpu_score_pass_uploads_beside_the_running_pass_match_cpu"
                            : "gpu_score_pass_staged_ahead_matches_cpu";
    ppd_score_model m, m2;
    ppt_golden_case ga, gb;
    ppd_score_device *d = NULL;
    if (sequence_case(name, 0.2f, &m, &m2, &ga, &gb)) return;
    size_t P = m.nparams;
    float *cpu_g = malloc(sizeof(float) * P), *dev_g = malloc(sizeof(float) * P);
    const ppd_score_batch *a = &ga.b, *b = &gb.b;
    int64_t ec = ppd_score_count_cross_edges(&m, b);
    size_t need = ppd_score_device_pass_bytes(&m, b->Nr, b->Nl, b->Er, b->El, ec, b->B);
    size_t in = ppd_score_device_input_bytes(&m, b->Nr, b->Nl, b->Er, b->El, ec, b->B);
    const ppd_score_batch *seq[3] = {a, b, a};
    ppd_status st = ppd_score_device_create(&d, &m, need + (room ? 2 * in : 0),
                                            staging_for(&m, seq, 3), PPD_CUDA_FP32);
    /* the CPU: passes a, b, a with their seeds, gradients summed */
    const ppt_golden_case *gseq[3] = {&ga, &gb, &ga};
    float tr[3][12], rot[3][12], dtr[3][12], drot[3][12];
    double l1, l2;
    m.training = 1;
    ppd_score_zero_grad(&m);
    for (int k = 0; k < 3 && !st; k++) {
        m.dropout_seed = ppt_golden_sequence_seeds[k];
        st = ppd_score_forward(&m, seq[k], tr[k], rot[k], NULL);
        ppt_golden_loss(gseq[k], tr[k], rot[k], dtr[k], drot[k], &l1, &l2);
        if (!st) st = ppd_score_backward(&m, dtr[k], drot[k]);
    }
    if (st) {
        report(name, 0, "set-up or CPU passes: %s", ppd_errmsg());
        goto out;
    }
    memcpy(cpu_g, m.grads, sizeof(float) * P);
    /* the device: forward a, backward a queued, b staged, the seed set, forward b, ... */
    float gtr[12], grot[12];
    ppd_status wrong_backward = PPD_OK, wrong_forward = PPD_OK;
    double ep = 0;
    st = ppd_score_device_zero_grad(d);
    m.dropout_seed = ppt_golden_sequence_seeds[0];
    if (!st) st = ppd_score_device_forward(d, a, gtr, grot, NULL);
    if (!st) st = ppd_score_device_backward(d, dtr[0], drot[0]);
    for (int k = 1; k < 3 && !st; k++) {
        st = ppd_score_device_stage(d, seq[k]);
        if (!st && k == 1 && !room) {
            wrong_backward = ppd_score_device_backward(d, dtr[0], drot[0]);  /* a's tensors gone */
            wrong_forward = ppd_score_device_forward(d, a, gtr, grot, NULL); /* b is staged */
            st = ppd_score_device_stage(d, b); /* staged twice: synchronises */
        }
        m.dropout_seed = ppt_golden_sequence_seeds[k];
        if (!st) st = ppd_score_device_forward(d, seq[k], gtr, grot, NULL);
        int64_t n3 = 3 * seq[k]->B;
        if (!st)
            ep = fmax(ep,
                      fmax(ppt_rel_err(gtr, tr[k], n3, 1e-6), ppt_rel_err(grot, rot[k], n3, 1e-6)));
        if (!st) st = ppd_score_device_backward(d, dtr[k], drot[k]);
    }
    if (!st) st = ppd_score_device_download(d, &m2, NULL, NULL, dev_g);
    if (st) {
        report(name, 0, "device passes: %s", ppd_errmsg());
        goto out;
    }
    const char *wn = "";
    double eg = worst_grad(&m, dev_g, cpu_g, &wn);
    ppd_score_device_usage u;
    ppd_score_device_usage_get(d, &u);
    /* 3 passes (4 uploads with the double staging); without room every upload after the first
     * waits, with room none does */
    uint64_t want_up = room ? 3 : 4, want_waited = room ? 0 : 2;
    report_measured(
        name,
        ep <= 1e-5 && eg <= 1e-4 && wrong_backward == (room ? PPD_OK : PPD_ERR_USAGE) &&
            wrong_forward == (room ? PPD_OK : PPD_ERR_USAGE) && u.uploads == want_up &&
            u.uploads_waited == want_waited && u.pass_high_water <= u.pass_capacity,
        "pred of the staged passes %.2g (tol 1e-5), worst summed gradient %s %.2g (tol 1e-4), "
        "backward after staging: status %d, forward of another batch: status %d; uploads %llu "
        "(want %llu), waited %llu (want %llu); arena held %zu of %zu bytes",
        ep, wn, eg, (int)wrong_backward, (int)wrong_forward, (unsigned long long)u.uploads,
        (unsigned long long)want_up, (unsigned long long)u.uploads_waited,
        (unsigned long long)want_waited, u.pass_high_water, u.pass_capacity);
    if (room && serial_g)
        report("gpu_score_pass_uploads_beside_the_running_pass_give_the_serial_bits",
               memcmp(dev_g, serial_g, sizeof(float) * P) == 0,
               "gradients differ from the run whose uploads waited");
    if (!room) {
        free(serial_g);
        serial_g = dev_g, dev_g = NULL;
    } else {
        free(serial_g);
        serial_g = NULL;
    }
out:
    ppd_score_device_destroy(d);
    ppt_golden_case_free(&ga), ppt_golden_case_free(&gb);
    ppd_score_model_free(&m), ppd_score_model_free(&m2);
    free(cpu_g), free(dev_g);
}

/* Profile mode: every kind of op of a batch-norm pass and step gets time, the kinds add up to no
 * more than the stream's busy time, and the events change no bit of the result. */
static void check_profile(void) {
    const char *name = "gpu_score_profile_times_every_kind_of_op_and_changes_nothing";
    ppd_score_config c;
    ppt_golden_config(&c);
    c.batch_norm = 1;
    ppd_score_model m, m2;
    ppt_golden_case gc;
    ppd_score_device *d;
    if (device_case(name, &c, 1, "A_t0.85", &m, &m2, &gc, &d)) return;
    size_t P = m.nparams;
    float *g[2] = {malloc(sizeof(float) * P), malloc(sizeof(float) * P)};
    const ppd_score_batch *b = &gc.b;
    ppd_status st = PPD_OK;
    ppd_adam_config ac = {1e-3, 0.9, 0.999, 1e-8, 0};
    m.training = 1;
    for (int on = 0; on < 2 && !st; on++) {
        float tr[6], rot[6], dtr[6], drot[6];
        double l1, l2, gn;
        st = ppd_score_device_profile(d, on);
        if (!st) st = ppd_score_device_upload(d, &m, NULL, NULL);
        if (!st) st = ppd_score_device_zero_grad(d);
        if (!st) st = ppd_score_device_forward(d, b, tr, rot, NULL);
        ppt_golden_loss(&gc, tr, rot, dtr, drot, &l1, &l2);
        if (!st) st = ppd_score_device_backward(d, dtr, drot);
        if (!st) st = ppd_score_device_step(d, &ac, 1, 1e30);
        if (!st) st = ppd_score_device_grad_norm(d, &gn);
        if (!st) st = ppd_score_device_download(d, &m2, NULL, NULL, g[on]);
    }
    if (st) {
        report(name, 0, "%s", ppd_errmsg());
        goto out;
    }
    ppd_score_device_usage u;
    ppd_score_device_usage_get(d, &u);
    char why[512] = "";
    int n = 0, timed = 1;
    double sum = 0;
    for (int k = 0; k < PPD_SCORE_NOPS; k++) {
        n += snprintf(why + n, sizeof why - (size_t)n, "%s %.3g ms, ", ppd_score_op_name(k),
                      u.op_ms[k]);
        timed = timed && u.op_ms[k] > 0;
        sum += u.op_ms[k];
    }
    /* the busy time spans both runs, the profile only the second */
    report_measured(name,
                    timed && sum <= 1e3 * u.busy_seconds * 1.001 + 0.01 &&
                        memcmp(g[0], g[1], sizeof(float) * P) == 0,
                    "%stotal %.3g ms against %.3g ms busy; gradients %s", why, sum,
                    1e3 * u.busy_seconds,
                    memcmp(g[0], g[1], sizeof(float) * P) ? "differ" : "equal");
out:
    ppd_score_device_destroy(d);
    ppt_golden_case_free(&gc);
    ppd_score_model_free(&m), ppd_score_model_free(&m2);
    free(g[0]), free(g[1]);
}

/* train reserves the pass of ppd_loader_worst_pass's counts (each the largest B summed) for
 * any batch: sound only if a pass's bytes never shrink as any one count grows. */
static void check_pass_bytes_monotone(void) {
    const char *name = "gpu_score_pass_bytes_grow_with_every_count";
    ppd_score_config c;
    ppd_score_config_default(&c); /* the released size, train's GPU chunk */
    c.chunk_edges = 32768;
    ppd_score_model m;
    if (ppd_score_model_init(&m, &c) != PPD_OK) {
        report(name, 0, "%s", ppd_errmsg());
        return;
    }
    uint64_t r = 88172645463325252ull;
    int bad = 0;
    char why[256] = "";
    for (int trial = 0; trial < 2000 && !bad; trial++) {
        int64_t a[6], b[6];
        for (int k = 0; k < 6; k++) {
            r ^= r << 13, r ^= r >> 7, r ^= r << 17;
            /* counts up to a few times the chunk, and small ones around it */
            a[k] = (int64_t)(r % (k == 5 ? 16 : (trial % 2 ? 200000 : 40000)));
        }
        a[5] += 1;
        for (int k = 0; k < 6 && !bad; k++) {
            memcpy(b, a, sizeof a);
            b[k] += 1 + (int64_t)(r % (k == 5 ? 4 : 70000));
            size_t pa = ppd_score_device_pass_bytes(&m, a[0], a[1], a[2], a[3], a[4], (int)a[5]);
            size_t pb = ppd_score_device_pass_bytes(&m, b[0], b[1], b[2], b[3], b[4], (int)b[5]);
            if (pb < pa) {
                bad = 1;
                snprintf(why, sizeof why, "count %d from %lld to %lld: %zu bytes -> %zu", k,
                         (long long)a[k], (long long)b[k], pa, pb);
            }
        }
    }
    report(name, !bad, "%s", why);
    ppd_score_model_free(&m);
}

void check_score_device(void) {
    static const pass_variant v[] = {
        {"A_t0.30", "A_t0.30", 0, 0, 0.0f, 1, 0, 0, 0},
        {"AB_t0.60_two_complexes", "AB_t0.60", 0, 0, 0.0f, 1, 0, 0, 0},
        {"batch_norm_training", "A_t0.85", 1, 1, 0.0f, 1, 0, 0, 0},
        {"batch_norm_eval", "AB_t0.60", 1, 0, 0.0f, 0, 0, 0, 0},
        {"dropout_training", "AB_t0.60", 0, 1, 0.2f, 0, 0, 0, 0},
        /* TF32 rounds the GEMM operands to 10 mantissa bits (2^-11 relative); bounds with
         * room for the 4 layers' growth, measured on a GPU by gpu-check (PPD_TEST_VERBOSE) */
        {"tf32_batch_norm_training", "A_t0.85", 1, 1, 0.0f, 0, 1, 1e-2, 5e-2},
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) check_pass(&v[i]);
    check_pass_over_budget();
    check_pass_bytes_monotone();
    check_pass_sequence(0.0f);
    check_pass_sequence(0.2f);
    check_stage_ahead(0);
    check_stage_ahead(1);
    check_device_step();
    check_profile();
    check_measured_memory();
}
