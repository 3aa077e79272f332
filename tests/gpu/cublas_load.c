/* cublas-load — cuBLAS is opened on first use, not at start-up (ppd_cuda_blas_load,
 * ppdock/nn_cuda.h): prints whether a libcublas is mapped into this process before the load,
 * where the functions came from, whether one is mapped after, and the process's resident memory
 * before and after the load (VmRSS, MiB: what loading cuBLAS costs the host, which
 * PPD_CUDA_HOST_RUNTIME_BYTES allows for). Needs no GPU, so it runs in `make test`
 * (tests/tools/test_cuda_build.sh): built with CUDA it opens the real library, built on the CPU
 * emulation it finds the emulator's functions in the program itself.
 *
 *   CUBLAS_LOAD before=absent from=libcublas.so.13 after=present rss_before_mib=3 rss_after_mib=150
 *
 * Exit 0; 3 when the load fails (the message on stderr).
 */
#include "ppdock/nn_cuda.h"

#include <stdio.h>
#include <string.h>

static const char *cublas_mapped(void) {
    FILE *f = fopen("/proc/self/maps", "r");
    char line[4096];
    int found = 0;
    while (f && fgets(line, sizeof line, f))
        if (strstr(line, "/libcublas")) found = 1;
    if (f) fclose(f);
    return f ? (found ? "present" : "absent") : "unknown";
}

/* VmRSS of this process in MiB (-1: unknown) */
static long rss_mib(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld kB", &kb) == 1) break;
    if (f) fclose(f);
    return kb < 0 ? -1 : kb / 1024;
}

int main(void) {
    const char *before = cublas_mapped(), *from = NULL;
    long rss0 = rss_mib();
    ppd_status s = ppd_cuda_blas_load(&from);
    if (s) {
        fprintf(stderr, "cublas-load: %s\n", ppd_errmsg());
        return 3;
    }
    printf("CUBLAS_LOAD before=%s from=%s after=%s rss_before_mib=%ld rss_after_mib=%ld\n", before,
           from, cublas_mapped(), rss0, rss_mib());
    return 0;
}
