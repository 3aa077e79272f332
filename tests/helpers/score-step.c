/* score-step — time ppdock's training step on a DiffDock-PP case file, for the side-by-side
 * bench against the original (bench/train.sh, bench/diffdock_peer_bench.py).
 *
 *   score-step MODEL.pth CASE.pt [STEPS [WARMUP [THREADS [CHUNK]]]]
 *
 * MODEL.pth: {"model": state_dict} in DiffDock-PP's layout, or a ppdock checkpoint
 * (.safetensors, the same names without "model."); its size (ns, nv, layers, lm_embed_dim) is
 * read from the tensor shapes. CASE.pt: the inputs of one batch as
 * tests/ref/diffdock_score_ref.py writes them (positions already noised, features, kNN edges,
 * batch ids, t, rot_norm, targets). A step is what `train` does per batch: zero the gradients,
 * forward, loss and its gradient, backward, clip the global norm at 1, Adam. Prints one JSON line
 * with the median and minimum step time, the forward and backward medians, the cross edges and
 * the peak RSS. Exit 2 on bad arguments, 3 when a file cannot be read.
 */
#include "ppdock/adam.h"
#include "ppdock/blas.h"
#include "ppdock/diffusion.h"
#include "ppdock/igso3.h"
#include "ppdock/progress.h"
#include "ppdock/score_model.h"
#include "ppdock/tensorfile.h"

#include <cblas.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n ? (n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2])) : 0.0;
}

static const ppd_tensor *need(const ppd_tensor_file *f, const char *name, const char *path) {
    const ppd_tensor *t = ppd_tensor_file_find(f, name);
    if (!t && !strncmp(name, "model.", 6))
        t = ppd_tensor_file_find(f, name + 6); /* a ppdock ckpt */
    if (!t) {
        fprintf(stderr, "score-step: %s has no tensor %s\n", path, name);
        exit(3);
    }
    return t;
}

static float *f32(const ppd_tensor_file *f, const char *name, const char *path, int64_t *n) {
    const ppd_tensor *t = need(f, name, path);
    float *d = malloc(sizeof(float) * (size_t)(t->numel ? t->numel : 1));
    if (!d || ppd_tensor_to_f32(t, d)) exit(3);
    if (n) *n = t->numel;
    return d;
}

static int64_t *i64(const ppd_tensor_file *f, const char *name, const char *path, int64_t *n) {
    const ppd_tensor *t = need(f, name, path);
    if (t->dtype != PPD_TF_I64 || !t->contiguous) {
        fprintf(stderr, "score-step: %s: %s is not contiguous int64\n", path, name);
        exit(3);
    }
    int64_t *d = malloc(sizeof(int64_t) * (size_t)(t->numel ? t->numel : 1));
    if (!d) exit(3);
    memcpy(d, t->data, sizeof(int64_t) * (size_t)t->numel);
    if (n) *n = t->numel;
    return d;
}

int main(int argc, char **argv) {
    ppd_blas_reexec(argv);
    if (argc < 3) {
        fprintf(stderr, "usage: score-step MODEL.pth CASE.pt [STEPS [WARMUP [THREADS [CHUNK]]]]\n");
        return 2;
    }
    const char *mpath = argv[1], *cpath = argv[2];
    int steps = argc > 3 ? atoi(argv[3]) : 3, warm = argc > 4 ? atoi(argv[4]) : 1;
    int threads = argc > 5 ? atoi(argv[5]) : 2, chunk = argc > 6 ? atoi(argv[6]) : 4096;
    if (steps < 1 || warm < 0 || threads < 1 || chunk < 1) return 2;
    openblas_set_num_threads(1); /* the model threads itself with OpenMP (ppdock/nn.h) */
#ifdef _OPENMP
    omp_set_num_threads(threads);
#endif
    ppd_tensor_file *mf, *cf;
    if (ppd_tensor_file_open(mpath, &mf) || ppd_tensor_file_open(cpath, &cf)) {
        fprintf(stderr, "score-step: %s\n", ppd_errmsg());
        return 3;
    }
    /* the model's size from its shapes: lm_ebd [ns, ns + lm], intra fc.3 of layer 0 [ns^2 + ns nv]
     */
    ppd_score_config c;
    ppd_score_config_default(&c);
    const ppd_tensor *lm = need(mf, "model.encoder.atom_embed.lm_ebd.weight", mpath);
    const ppd_tensor *w0 = need(mf, "model.encoder.intra_convs.0.fc.3.weight", mpath);
    c.ns = (int)lm->shape[0];
    c.lm_dim = (int)(lm->shape[1] - lm->shape[0]);
    c.nv = (int)((w0->shape[0] - (int64_t)c.ns * c.ns) / c.ns);
    c.layers = 0;
    char name[128];
    for (int k = 0; k < PPD_SCORE_MAX_LAYERS; k++) {
        snprintf(name, sizeof name, "model.encoder.intra_convs.%d.fc.0.weight", k);
        if (ppd_tensor_file_find(mf, name) || ppd_tensor_file_find(mf, name + 6)) c.layers = k + 1;
    }
    c.chunk_edges = chunk;
    ppd_score_model m;
    if (ppd_score_model_init(&m, &c)) {
        fprintf(stderr, "score-step: %s\n", ppd_errmsg());
        return 2;
    }
    for (int i = 0; i < m.ntensors; i++) {
        snprintf(name, sizeof name, "model.%s", m.tab[i].name);
        if (ppd_tensor_to_f32(need(mf, name, mpath), m.params + m.tab[i].offset)) return 3;
    }
    int64_t nr, nl, er, el, B;
    float *rec_pos = f32(cf, "rec_pos", cpath, &nr), *lig_pos = f32(cf, "lig_pos", cpath, &nl);
    float *rec_x = f32(cf, "rec_x", cpath, NULL), *lig_x = f32(cf, "lig_x", cpath, NULL);
    float *t = f32(cf, "t", cpath, &B), *rot_norm = f32(cf, "rot_norm", cpath, NULL);
    float *tr_score = f32(cf, "tr_score", cpath, NULL),
          *rot_score = f32(cf, "rot_score", cpath, NULL);
    int64_t *rb = i64(cf, "rec_batch", cpath, NULL), *lb = i64(cf, "lig_batch", cpath, NULL);
    int64_t *re = i64(cf, "rec_edge_index", cpath, &er),
            *le = i64(cf, "lig_edge_index", cpath, &el);
    er /= 2, el /= 2;
    ppd_score_batch b = {.B = (int)B,
                         .Nr = nr / 3,
                         .Nl = nl / 3,
                         .Er = er,
                         .El = el,
                         .rec_pos = rec_pos,
                         .lig_pos = lig_pos,
                         .rec_x = rec_x,
                         .lig_x = lig_x,
                         .rec_batch = rb,
                         .lig_batch = lb,
                         .rec_src = re,
                         .rec_dst = re + er,
                         .lig_src = le,
                         .lig_dst = le + el,
                         .t = t,
                         .rot_norm = rot_norm};
    ppd_igso3 T;
    if (ppd_igso3_build(&T, threads)) return 3;
    ppd_diffusion_cfg dc = ppd_diffusion_cfg_default();
    ppd_adam_config ac = {1e-3, 0.9, 0.999, 1e-8, 0.0};
    float *am = calloc(m.nparams, sizeof(float)), *av = calloc(m.nparams, sizeof(float));
    size_t *off = malloc(sizeof(size_t) * (size_t)m.ntensors),
           *num = malloc(sizeof(size_t) * (size_t)m.ntensors);
    float *pred = malloc(sizeof(float) * (size_t)B * 12);
    double *ts = malloc(sizeof(double) * (size_t)steps * 3);
    if (!am || !av || !off || !num || !pred || !ts) return 3;
    for (int i = 0; i < m.ntensors; i++) off[i] = m.tab[i].offset, num[i] = m.tab[i].numel;
    int64_t ncross = 0;
    double first_loss = 0;
    for (int s = 0; s < warm + steps; s++) {
        double t0 = ppd_now_seconds();
        ppd_score_zero_grad(&m);
        if (ppd_score_forward(&m, &b, pred, pred + 3 * B, &ncross)) {
            fprintf(stderr, "score-step: %s\n", ppd_errmsg());
            return 2;
        }
        double t1 = ppd_now_seconds();
        ppd_diffusion_loss L;
        ppd_diffusion_loss_forward_backward(&dc, &T, (int)B, t, pred, pred + 3 * B, tr_score,
                                            rot_score, &L, pred + 6 * B, pred + 9 * B);
        if (s == 0) first_loss = L.loss;
        if (ppd_score_backward(&m, pred + 6 * B, pred + 9 * B)) return 3;
        ppd_clip_grad_norm(m.grads, off, num, m.ntensors, 1.0);
        ppd_adam_step(m.params, m.grads, am, av, m.nparams, &ac, (uint64_t)s + 1);
        double t2 = ppd_now_seconds();
        if (s >= warm) {
            int i = s - warm;
            ts[i] = t2 - t0, ts[steps + i] = t1 - t0, ts[2 * steps + i] = t2 - t1;
        }
    }
    double mn = ts[0];
    for (int i = 1; i < steps; i++) mn = ts[i] < mn ? ts[i] : mn;
    double step_med = median(ts, steps), fwd = median(ts + steps, steps),
           bwd = median(ts + 2 * steps, steps);
    printf("{\"case\": \"%s\", \"threads\": %d, \"steps\": %d, \"chunk_edges\": %d, "
           "\"seconds_per_step_median\": %.4f, \"seconds_per_step_min\": %.4f, "
           "\"forward_seconds_median\": %.4f, \"backward_seconds_median\": %.4f, "
           "\"cross_edges\": %lld, \"loss\": %.7g, \"peak_rss_mb\": %.1f, "
           "\"model\": [%d, %d, %d, %d]}\n",
           cpath, threads, steps, chunk, step_med, mn, fwd, bwd, (long long)ncross, first_loss,
           (double)ppd_peak_rss_bytes() / 1048576.0, c.ns, c.nv, c.layers, c.lm_dim);
    return 0;
}
