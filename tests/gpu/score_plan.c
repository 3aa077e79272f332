/* score-plan — the device memory `train --device cuda` plans for the batches of a graph cache at
 * the released model size (ns 32, nv 6, 4 layers, lm_embed_dim 1280, device.edges_per_chunk CHUNK):
 * the fixed part (parameters, gradients, Adam moments, tables, cuBLAS workspace) plus the pass
 * arena a batch of B complexes takes (ppd_score_device_pass_bytes, the exact layout the GPU pass
 * allocates from). Sizes only: nothing runs on a device, so the CPU emulation's build answers
 * the same as a CUDA build.
 *
 *   score-plan GRAPHS B [T [CHUNK]]      (T default 0.5, CHUNK default 32768 as train's)
 *
 * Every split's complexes, in key order, in consecutive groups of B. Cross edges per group: with
 * the ligand in its bound pose at diffusion time T (default 0.5), and the worst case, every
 * receptor-ligand pair (what t -> 1 approaches: the cutoff grows to 3 sigma_tr + 40 = 130 A).
 * Prints one line "SCORE_PLAN key=value ..." with the largest group's numbers, and what train
 * reserves by default for batches of B (default_reserve_gb: ppd_train_pass_reserve, the bound of
 * the train split at B and of the val split at 1 with room for the next pass's upload, plus the
 * fixed part). Exit 0, 2 on bad arguments,
 * 3 on a cache error.
 */
#include "ppdock/loader.h"
#include "ppdock/score_cuda.h"
#include "ppdock/score_model.h"
#include "ppdock/train.h"

#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
    if (argc < 3 || atoi(argv[2]) < 1) {
        fprintf(stderr, "usage: score-plan GRAPHS B [T [CHUNK]]\n");
        return 2;
    }
    int B = atoi(argv[2]);
    float T = argc > 3 ? (float)atof(argv[3]) : 0.5f;
    ppd_score_config c;
    ppd_score_config_default(&c);
    c.chunk_edges = argc > 4 ? atoi(argv[4]) : 32768;
    if (c.chunk_edges < 1) {
        fprintf(stderr, "score-plan: CHUNK must be positive\n");
        return 2;
    }
    ppd_score_model m;
    ppd_loader *l = NULL;
    ppd_arena a;
    ppd_loader_opts lo = {.graphs = argv[1], .lm_dim = 0, .knn_k = 20, .index_rows = 24};
    if (ppd_score_model_init(&m, &c) || ppd_loader_open(&lo, &l) || ppd_arena_init(&a, 0, 1)) {
        fprintf(stderr, "score-plan: %s\n", ppd_errmsg());
        return 3;
    }
    size_t fixed = ppd_score_device_fixed_bytes(&m), best_t = 0, best_w = 0, cpu_w = 0;
    int64_t groups = 0, worst_nodes = 0, worst_cross = 0;
    float *t = malloc(sizeof(float) * (size_t)B), *rn = malloc(sizeof(float) * (size_t)B);
    int64_t *idx = malloc(sizeof(int64_t) * (size_t)B);
    for (int i = 0; i < B; i++) t[i] = T, rn[i] = 1.0f;
    const char *splits[] = {"train", "val", "test"};
    for (int sp = 0; sp < 3; sp++) {
        int64_t n = ppd_loader_count(l, splits[sp]);
        for (int64_t i0 = 0; i0 < n; i0 += B) {
            int nb = (int)(n - i0 < B ? n - i0 : B);
            for (int i = 0; i < nb; i++) idx[i] = i0 + i;
            ppd_arena_reset(&a);
            ppd_train_batch tb;
            if (ppd_loader_load(l, splits[sp], idx, nb, &a, &tb) || tb.B == 0) continue;
            ppd_score_batch b = {.B = tb.B,
                                 .Nr = tb.Nr,
                                 .Nl = tb.Nl,
                                 .Er = tb.Er,
                                 .El = tb.El,
                                 .rec_pos = tb.rec_pos,
                                 .lig_pos = tb.lig_pos,
                                 .rec_x = tb.rec_x,
                                 .lig_x = tb.lig_x,
                                 .rec_batch = tb.rec_batch,
                                 .lig_batch = tb.lig_batch,
                                 .rec_src = tb.rec_src,
                                 .rec_dst = tb.rec_dst,
                                 .lig_src = tb.lig_src,
                                 .lig_dst = tb.lig_dst,
                                 .t = t,
                                 .rot_norm = rn};
            int64_t ec = ppd_score_count_cross_edges(&m, &b), ew = 0;
            for (int g = 0; g < tb.B; g++)
                ew += (tb.rec_start[g + 1] - tb.rec_start[g]) *
                      (tb.lig_start[g + 1] - tb.lig_start[g]);
            size_t pt = ppd_score_device_pass_bytes(&m, tb.Nr, tb.Nl, tb.Er, tb.El, ec, tb.B),
                   pw = ppd_score_device_pass_bytes(&m, tb.Nr, tb.Nl, tb.Er, tb.El, ew, tb.B);
            if (pt > best_t) best_t = pt;
            if (pw > best_w) {
                best_w = pw, worst_nodes = tb.Nr + tb.Nl, worst_cross = ew;
                cpu_w = ppd_score_pass_bytes(&m, tb.Nr, tb.Nl, tb.Er, tb.El, ew, tb.B);
            }
            groups++;
        }
    }
    /* train's default reservation (device.budget_gb 0): the bound of any training batch of B
     * and of an evaluation's single complex, with room for the next pass's upload */
    size_t reserve = 0;
    if (ppd_train_pass_reserve(l, &m, &ppd_score_device_cuda, "train", B, "val", &reserve, NULL))
        fprintf(stderr, "score-plan: %s\n", ppd_errmsg());
    printf("SCORE_PLAN batch=%d chunk_edges=%d groups=%lld fixed_mb=%.1f pass_mb_t%.2f=%.1f "
           "worst_nodes=%lld worst_cross_edges=%lld pass_mb_worst=%.1f total_gb_worst=%.2f "
           "cpu_activation_mb_worst=%.1f default_reserve_gb=%.2f\n",
           B, c.chunk_edges, (long long)groups, fixed / 1048576.0, (double)T, best_t / 1048576.0,
           (long long)worst_nodes, (long long)worst_cross, best_w / 1048576.0,
           (fixed + best_w) / 1073741824.0, cpu_w / 1048576.0, (fixed + reserve) / 1073741824.0);
    free(t), free(rn), free(idx);
    ppd_arena_free(&a);
    ppd_loader_close(l);
    ppd_score_model_free(&m);
    return groups ? 0 : 3;
}
