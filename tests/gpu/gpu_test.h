/* tests/gpu/gpu_test.h — what the GPU test files share (tests/gpu/test_gpu.c holds main and
 * these helpers; tests/gpu/test_score_gpu.c the score model's checks,
 * tests/gpu/test_esm_bf16_gpu.c the ESM bf16 mode's kernels). */
#ifndef PPDOCK_TESTS_GPU_TEST_H
#define PPDOCK_TESTS_GPU_TEST_H

#include "ppdock/device.h"
#include "ppdock/rng.h"

#include <stdint.h>

extern int npass, nfail;
/* 1 on the CPU emulation of CUDA (tests/emu): smaller sizes, no timings */
extern int gpu_emulated;

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
