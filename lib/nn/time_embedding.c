/* Sinusoidal time embedding, CPU reference (see ppdock/nn.h, ppdock/kernels/time_embedding.h). */
#include "ppdock/nn.h"

#include "ppdock/kernels/time_embedding.h"

#include <assert.h>

const float ppd_time_embedding_freqs[PPD_TIME_EMBEDDING_HALF] = {PPD_TIME_EMBEDDING_FREQS};

void ppd_time_embedding_forward(float *out, const float *t, int64_t N) {
    // out: (N, 32)   t: (N)
    assert(N >= 0);
    enum { D = PPD_TIME_EMBEDDING_DIM };
#pragma omp parallel for schedule(static) if (N >= 2048)
    for (int64_t n = 0; n < N; n++) {
        float tn = t[n];
        float *row = out + n * D;
        for (int j = 0; j < D; j++)
            row[j] = ppd_time_embedding_elem(tn, j, ppd_time_embedding_freqs);
    }
}
