/* Adam and clipping against a double-precision transcription of torch.optim.Adam and
 * clip_grad_norm_ (ppdock/adam.h), several steps with weight decay. */
#include "../test.h"

#include "ppdock/adam.h"
#include "ppdock/rng.h"

TEST(adam_matches_reference_over_steps) {
    enum { N = 257 };
    float p[N], g[N], m[N] = {0}, v[N] = {0};
    double pd[N], md[N] = {0}, vd[N] = {0};
    ppd_rng r;
    ppd_rng_seed(&r, 1);
    for (int i = 0; i < N; i++) pd[i] = p[i] = (float)ppd_rng_normal(&r);
    ppd_adam_config c = {
        .lr = 1e-3, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 1e-2};
    for (uint64_t t = 1; t <= 5; t++) {
        for (int i = 0; i < N; i++) g[i] = (float)ppd_rng_normal(&r) * (i % 7 == 0 ? 1e-6f : 1.0f);
        ppd_adam_step(p, g, m, v, N, &c, t);
        double bc1 = 1 - pow(0.9, (double)t), bc2 = 1 - pow(0.999, (double)t);
        for (int i = 0; i < N; i++) {
            double gi = g[i] + 1e-2 * pd[i];
            md[i] = 0.9 * md[i] + 0.1 * gi;
            vd[i] = 0.999 * vd[i] + 0.001 * gi * gi;
            pd[i] -= 1e-3 / bc1 * md[i] / (sqrt(vd[i]) / sqrt(bc2) + 1e-8);
        }
    }
    double worst = 0;
    for (int i = 0; i < N; i++) worst = ppt_worst(worst, fabs(p[i] - pd[i]));
    CHECK(worst < 1e-6);
    /* the first step moves every weight by about lr (Adam's normalisation) */
}

TEST(adam_clip_grad_norm) {
    float g[6] = {3, 4, 0, 0, 12, 0};
    size_t off[2] = {0, 4}, num[2] = {4, 2};
    double total = ppd_clip_grad_norm(g, off, num, 2, 1.0);
    CHECK_NEAR(total, 13.0, 1e-6);
    double n2 = 0;
    for (int i = 0; i < 6; i++) n2 += (double)g[i] * g[i];
    CHECK_NEAR(sqrt(n2), 1.0, 1e-6);
    CHECK_NEAR(g[0] / g[1], 0.75, 1e-6);
    float h[2] = {0.3f, 0.4f};
    size_t o1[1] = {0}, n1[1] = {2};
    CHECK_NEAR(ppd_clip_grad_norm(h, o1, n1, 1, 1.0), 0.5, 1e-7);
    CHECK_EQ(h[0], 0.3f); /* below the limit: untouched */
}
