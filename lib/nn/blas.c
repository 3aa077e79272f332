/* OpenBLAS kernel selection on CPUs it does not recognise (ppdock/blas.h). */
#include "ppdock/blas.h"

#include "ppdock/log.h"

#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

const char *ppd_blas_advice(const char **coretype) {
    static char msg[256];
    const char *core = openblas_get_corename();
    if (coretype) *coretype = NULL;
    if (!core) return NULL;
    static const char *const generic[] = {"prescott",  "core2", "penryn", "dunnington",
                                          "nehalem",   "atom",  "katmai", "coppermine",
                                          "northwood", "banias"};
    int is_generic = 0;
    for (size_t i = 0; i < sizeof generic / sizeof generic[0]; i++)
        is_generic |= strcasecmp(core, generic[i]) == 0;
    const char *want = NULL;
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    if (__builtin_cpu_supports("avx512f"))
        want = "SkylakeX";
    else if (__builtin_cpu_supports("avx2"))
        want = "Haswell";
#endif
    if (coretype) *coretype = NULL;
    if (!is_generic || !want) return NULL;
    if (coretype) *coretype = want;
    snprintf(msg, sizeof msg,
             "OpenBLAS runs its generic %s kernels on this CPU (model not recognised); set "
             "OPENBLAS_CORETYPE=%s in the environment (2-4x faster GEMMs)",
             core, want);
    return msg;
}

void ppd_blas_reexec(char **argv) {
    const char *coretype = NULL, *advice = ppd_blas_advice(&coretype);
    if (!advice || !coretype || getenv("OPENBLAS_CORETYPE")) return;
    setenv("OPENBLAS_CORETYPE", coretype, 1);
    execv("/proc/self/exe", argv);
    ppd_warn("%s (re-running with it failed: set OPENBLAS_CORETYPE=%s yourself)", advice, coretype);
}
