/* Gaussian distance smearing, CPU reference (ppdock/nn.h; body: kernels/gaussian_smearing.h). */
#include "ppdock/nn.h"

#include "ppdock/kernels/gaussian_smearing.h"

#include <assert.h>

void ppd_gaussian_smearing_forward(float *out, const float *dist, const float *offsets, float gamma,
                                   int64_t E, int G) {
    // out: (E, G)   dist: (E)   offsets: (G)
    assert(E >= 0 && G >= 0);
#pragma omp parallel for schedule(static) if (E * G >= 65536)
    for (int64_t e = 0; e < E; e++) {
        float d = dist[e];
        float *row = out + e * G;
        for (int g = 0; g < G; g++) row[g] = ppd_gaussian_smearing_elem(d, offsets[g], gamma);
    }
}

void ppd_gaussian_smearing_offsets(float *offsets, float start, float stop, int G) {
    assert(G >= 2);
    // PyTorch CPU linspace for float32 (aten RangeFactoriesKernel, AVX2 build): the step is a
    // float32 quotient; whole 8-float vectors start from a base (start + step * j0 in the first
    // half, stop - step * (G - 1 - j0) in the second, decided by the vector's first index j0) and
    // add step * lane; leftover elements past the last whole vector are computed one by one by
    // the same two formulas. Each statement is one rounding (no FMA contraction with -std=c11).
    // Checked bit for bit against torch 1.13's linspace(0, 30, 32) and (0, 80, 32) buffers
    // stored in a DiffDock-PP checkpoint (tests/unit/test_score_model.c).
    enum { V = 8 };
    float step = (stop - start) / (float)(G - 1);
    int halfway = G / 2, whole = G / V * V;
    for (int j = 0; j < G; j++) {
        int j0 = j < whole ? j / V * V : j, lane = j - j0;
        float base;
        if (j0 < halfway) {
            float s = step * (float)j0;
            base = start + s;
        } else {
            float s = step * (float)(G - 1 - j0);
            base = stop - s;
        }
        float inc = step * (float)lane;
        offsets[j] = lane ? base + inc : base;
    }
}

float ppd_gaussian_smearing_gamma(const float *offsets) {
    double delta = (double)offsets[1] - (double)offsets[0];
    return (float)(-0.5 / (delta * delta));
}
