/* ppdock/blas.h — OpenBLAS's kernels on CPUs it does not recognise.
 *
 * OpenBLAS chooses its kernels from the CPU model when the library loads. On a CPU it does not
 * recognise (e.g. a virtual machine reporting "Intel Xeon Processor") it falls back to generic
 * Prescott (SSE3) kernels: 3.7x slower than its SkylakeX ones for ESM-2 650M here, 5-10x for the
 * score model's fc GEMMs. The variable OPENBLAS_CORETYPE is read when the library loads, so a
 * tool sets it and re-executes itself before doing anything else.
 */
#ifndef PPDOCK_BLAS_H
#define PPDOCK_BLAS_H

#ifdef __cplusplus
extern "C" {
#endif

/* NULL when the kernels match the CPU; else a message naming the core in use and the
 * OPENBLAS_CORETYPE value for this CPU, which is also stored in *coretype (may be NULL). */
const char *ppd_blas_advice(const char **coretype);

/* When the kernels are generic and OPENBLAS_CORETYPE is unset: set it and execv the program
 * again with the same argv (returns only if that fails, after a warning). A value the user set
 * is respected, so this happens at most once. Call it first thing in main(). */
void ppd_blas_reexec(char **argv);

#ifdef __cplusplus
}
#endif

#endif
