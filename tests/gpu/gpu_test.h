/* tests/gpu/gpu_test.h — what the GPU test files share (tests/gpu/test_gpu.c holds main and
 * these helpers; tests/gpu/test_score_gpu.c the score model's checks,
 * tests/gpu/test_esm_bf16_gpu.c the ESM bf16 mode's kernels). */
#ifndef PPDOCK_TESTS_GPU_TEST_H
#define PPDOCK_TESTS_GPU_TEST_H

#include "ppdock/device.h"
#include "ppdock/rng.h"

#include <stdint.h>

extern int npass, nfail;
/* 1 on the CPU emulation of CUDA (tests/emu): no timings, bit-exact where the GPU rounds */
extern int gpu_emulated;
/* 1 for the emulation's smaller sizes: on the emulation, or with --small (compute-sanitizer) */
extern int gpu_small;

/* tests/gpu/gpu_steps.c: main's body. Parses [--small] [--no-fork] [--steps NAME,...], runs
 * run_checks in child processes from step to step (a new child after a step that lost the CUDA
 * context, died or hung past PPD_TEST_GPU_STEP_TIMEOUT seconds; with --no-fork in this process,
 * stopping at a lost context), prints "N passed, N failed" summed over them and returns the exit
 * status: 0 all passed, 1 a failure, 2 bad options, 3 no CUDA device (run_checks returned 3 before
 * its first step). */
int gpu_steps_main(int argc, char **argv, int (*run_checks)(void));
/* STEP(name, call): run the call as the step `name` when it is selected and not yet run by an
 * earlier child; afterwards a pending CUDA error fails the step, and a lost context ends the
 * child. */
int step_begin(const char *name);
void step_end(const char *name);
#define STEP(name, call)                                                                           \
    do {                                                                                           \
        if (step_begin(name)) {                                                                    \
            call;                                                                                  \
            step_end(name);                                                                        \
        }                                                                                          \
    } while (0)
/* 1 in the child that runs from the first step (once-only reports go there) */
int gpu_steps_first(void);
/* tell the parent the counts (report does, after each line) */
void gpu_steps_counted(void);

/* one PASS/FAIL line */
void report(const char *name, int ok, const char *why_fmt, ...);
/* report, and with PPD_TEST_VERBOSE also a passing check's measurement (gpu-check's log) */
void report_measured(const char *name, int ok, const char *what_fmt, ...);
/* max |gpu - cpu| <= tol · max |cpu| and no NaN; reports under name */
int close_rel(const char *name, const float *gpu, const float *cpu, int64_t n, double tol);
/* n normal floats times scale (malloc) */
float *rand_floats(ppd_rng *r, size_t n, double scale);
/* bytes from the arena, filled from host (or poisoned with 0xff when host is NULL) */
void *dev_copy(ppd_device_arena *a, const void *host, size_t bytes);
/* download n floats of dev and close_rel them against cpu */
int fetch_close(const char *name, const void *dev, const float *cpu, int64_t n, double tol);

/* tests/gpu/test_esm_bf16_gpu.c */
void check_esm_attention_bf16(void);
/* tests/gpu/test_esm_gelu_gpu.c */
void check_esm_bias_gelu(void);
/* tests/gpu/test_esm_residual_ln_gpu.c */
void check_esm_residual_layernorm(void);

/* tests/gpu/test_score_gpu.c */
void check_score_glue(void);
void check_score_device(void);

#endif
