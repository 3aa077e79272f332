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
    // PyTorch CPU linspace for float32 (aten RangeFactoriesKernel): the step is a float32
    // quotient, the first half counts up from start and the second half down from stop. Each
    // statement is one rounding (gcc -std=c11 does not contract across them into an FMA).
    float step = (stop - start) / (float)(G - 1);
    int halfway = G / 2;
    for (int j = 0; j < G; j++) {
        if (j < halfway) {
            float s = step * (float)j;
            offsets[j] = start + s;
        } else {
            float s = step * (float)(G - 1 - j);
            offsets[j] = stop - s;
        }
    }
}

float ppd_gaussian_smearing_gamma(const float *offsets) {
    double delta = (double)offsets[1] - (double)offsets[0];
    return (float)(-0.5 / (delta * delta));
}
