/* npy-diff A.npy B.npy [TOL] — compare two float arrays (f32/f16 .npy) of the same shape.
 * Prints "max_abs <x> max_rel <y> n <count>" and exits 0 when max_abs <= TOL (default 0:
 * identical), 1 when larger or the shapes differ, 2 on a read error. For the shell tests. */
#include "ppdock/npy.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: npy-diff A.npy B.npy [TOL]\n");
        return 2;
    }
    double tol = argc > 3 ? atof(argv[3]) : 0.0;
    ppd_npy a, b;
    if (ppd_npy_read(argv[1], &a) || ppd_npy_read(argv[2], &b)) {
        fprintf(stderr, "npy-diff: %s\n", ppd_errmsg());
        return 2;
    }
    int same = a.t.ndim == b.t.ndim;
    for (int i = 0; same && i < a.t.ndim; i++) same = a.t.shape[i] == b.t.shape[i];
    if (!same) {
        printf("shape differs\n");
        return 1;
    }
    double max_abs = 0, max_rel = 0;
    int64_t n = a.t.numel;
    float *fa = malloc(sizeof(float) * (size_t)(n ? n : 1)),
          *fb = malloc(sizeof(float) * (size_t)(n ? n : 1));
    if (!fa || !fb || ppd_tensor_to_f32(&a.t, fa) || ppd_tensor_to_f32(&b.t, fb)) {
        fprintf(stderr, "npy-diff: cannot convert: %s\n", ppd_errmsg());
        return 2;
    }
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)fa[i] - (double)fb[i]);
        if (!(d <= max_abs)) max_abs = d; /* NaN propagates */
        double r = d / (fabs((double)fb[i]) + 1e-6);
        if (r > max_rel) max_rel = r;
    }
    printf("max_abs %.3g max_rel %.3g n %lld\n", max_abs, max_rel, (long long)n);
    free(fa);
    free(fb);
    ppd_npy_free(&a);
    ppd_npy_free(&b);
    return max_abs <= tol ? 0 : 1;
}
