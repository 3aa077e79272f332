/* Sliding windows for long sequences (policy PPD_ESM_LONG_WINDOW, see ppdock/esm.h). */
#include "esm_internal.h"

#include "ppdock/kernels/esm_ops.h"

#include <string.h>

int ppd_esm_window_count(int n, int W, int O) {
    if (n <= W) return 1;
    int step = W - O, k = 0;
    while ((int64_t)k * step + W < n) k++;
    /* windows 0 .. k-1 at i*step all end before n; the last starts at n - W (<= k*step) */
    return k + 1;
}

void ppd_esm_window_starts(int n, int W, int O, int *starts) {
    int count = ppd_esm_window_count(n, W, O);
    if (count == 1) {
        starts[0] = 0;
        return;
    }
    for (int i = 0; i < count - 1; i++) starts[i] = i * (W - O);
    starts[count - 1] = n - W;
}

void ppd_esm_blend_window(float *acc, const float *win, int start, int len, int prev_end, int d) {
    int ov = prev_end - start;
    if (ov < 0) ov = 0;
    if (ov > len) ov = len;
    size_t D = (size_t)d;
    for (int k = 0; k < ov; k++) {
        float wb = (float)(k + 1) / (float)(ov + 1); /* float32, as the reference computes it */
        float wa = 1.0f - wb;
        float *a = acc + (size_t)(start + k) * D;
        const float *b = win + (size_t)k * D;
        for (size_t c = 0; c < D; c++) a[c] = ppd_esm_blend_elem(a[c], b[c], wa, wb);
    }
    if (len > ov)
        memcpy(acc + (size_t)(start + ov) * D, win + (size_t)ov * D,
               (size_t)(len - ov) * D * sizeof *acc);
}
