// GEMMs through cuBLAS (ppdock/esm_cuda.h): a handle bound to a stream, a precision and a planned
// workspace, and the row-major out = inp W^T of the CPU's ppd_esm_matmul_forward.
#include "ppdock/esm_cuda.h"

#include "common.cuh"
#include "ppdock/half.h"

#include <cublas_v2.h>

#include <dlfcn.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

// cuBLAS is opened when the first handle is made, not linked: loading libcublas and the
// libcublasLt it needs runs their static initialisers, which leave about 150 MB resident in
// every process that links them (CPU runs, --help and --version included), memory no plan
// counted. A process that already has cuBLAS (the CPU emulation exports its own; a program
// linked with -lcublas) uses those functions; otherwise the soname of the cuBLAS major version
// built against is opened, found through LD_LIBRARY_PATH, the program's run path
// (CUDA_HOME/lib64) or the system's library cache.
#define PPD_STRINGIFY2(x) #x
#define PPD_STRINGIFY(x)  PPD_STRINGIFY2(x)
#define PPD_CUBLAS_SONAME "libcublas.so." PPD_STRINGIFY(CUBLAS_VER_MAJOR)

// cublasGemmEx is overloaded in C++ (a wrapper takes the old cudaDataType compute type): the C
// function's type, checked against the header in an unevaluated cast (no reference to link)
typedef cublasStatus_t (*gemm_ex_fn)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int,
                                     int, const void *, const void *, cudaDataType, int,
                                     const void *, cudaDataType, int, const void *, void *,
                                     cudaDataType, int, cublasComputeType_t, cublasGemmAlgo_t);

static struct {
    decltype(&cublasCreate_v2) create;
    decltype(&cublasDestroy_v2) destroy;
    decltype(&cublasSetStream_v2) set_stream;
    decltype(&cublasSetMathMode) set_math_mode;
    decltype(&cublasSetWorkspace_v2) set_workspace;
    decltype(&cublasSgemm_v2) sgemm;
    decltype(static_cast<gemm_ex_fn>(&cublasGemmEx)) gemm_ex;
    const char *from; // where the functions came from (NULL: not loaded; error says why)
    char error[768];
} blas_api;
static pthread_once_t blas_once = PTHREAD_ONCE_INIT;

template <typename F> static int blas_resolve(void *lib, const char *name, F *fn) {
    *fn = (F)dlsym(lib, name);
    if (!*fn)
        snprintf(blas_api.error, sizeof blas_api.error,
                 "%s lacks %s (a cuBLAS older than the one built against?)", blas_api.from, name);
    return *fn != NULL;
}

static void blas_load(void) {
    void *lib = RTLD_DEFAULT;
    blas_api.from = "this program";
    if (!dlsym(RTLD_DEFAULT, "cublasCreate_v2")) {
#ifdef PPD_CUDA_EMU
        // the emulated programs must not reach the real library (its calls would take the
        // emulator's host pointers for device ones)
        snprintf(blas_api.error, sizeof blas_api.error,
                 "the CUDA emulation's cuBLAS is not exported (link the program with -rdynamic)");
        blas_api.from = NULL;
        return;
#else
        lib = dlopen(PPD_CUBLAS_SONAME, RTLD_NOW | RTLD_LOCAL);
        if (!lib) {
            snprintf(blas_api.error, sizeof blas_api.error,
                     "cannot load cuBLAS (%s): the GPU engine needs the cuBLAS of CUDA %d; put "
                     "its lib64 directory in LD_LIBRARY_PATH (e.g. module load cuda), or run "
                     "with --device cpu",
                     dlerror(), CUBLAS_VER_MAJOR);
            blas_api.from = NULL;
            return;
        }
        blas_api.from = PPD_CUBLAS_SONAME;
#endif
    }
    if (!blas_resolve(lib, "cublasCreate_v2", &blas_api.create) ||
        !blas_resolve(lib, "cublasDestroy_v2", &blas_api.destroy) ||
        !blas_resolve(lib, "cublasSetStream_v2", &blas_api.set_stream) ||
        !blas_resolve(lib, "cublasSetMathMode", &blas_api.set_math_mode) ||
        !blas_resolve(lib, "cublasSetWorkspace_v2", &blas_api.set_workspace) ||
        !blas_resolve(lib, "cublasSgemm_v2", &blas_api.sgemm) ||
        !blas_resolve(lib, "cublasGemmEx", &blas_api.gemm_ex))
        blas_api.from = NULL;
}

extern "C" ppd_status ppd_cuda_blas_load(const char **from) {
    pthread_once(&blas_once, blas_load);
    if (from) *from = blas_api.from;
    return blas_api.from ? PPD_OK : ppd_fail(PPD_ERR_CUDA, "%s", blas_api.error);
}

struct ppd_cuda_blas {
    cublasHandle_t handle;
    ppd_cuda_precision precision;
    cudaStream_t stream;
    void *workspace;
    size_t ws_bytes;
};

static ppd_status blas_status(cublasStatus_t st, const char *what) {
    return ppd_fail(st == CUBLAS_STATUS_ALLOC_FAILED ? PPD_ERR_NOMEM : PPD_ERR_CUDA,
                    "%s: cuBLAS status %d (%s)", what, (int)st,
                    st == CUBLAS_STATUS_NOT_INITIALIZED    ? "not initialised: no usable GPU?"
                    : st == CUBLAS_STATUS_ALLOC_FAILED     ? "out of device memory"
                    : st == CUBLAS_STATUS_INVALID_VALUE    ? "invalid value"
                    : st == CUBLAS_STATUS_EXECUTION_FAILED ? "execution failed"
                                                           : "see cublas_api.h");
}

#define PPD_CUBLAS_CHECK(call)                                                                     \
    do {                                                                                           \
        cublasStatus_t ppd_blas_st_ = (call);                                                      \
        if (ppd_blas_st_ != CUBLAS_STATUS_SUCCESS) return blas_status(ppd_blas_st_, #call);        \
    } while (0)

extern "C" ppd_status ppd_cuda_precision_parse(const char *s, ppd_cuda_precision *p) {
    if (!strcmp(s, "fp32"))
        *p = PPD_CUDA_FP32;
    else if (!strcmp(s, "tf32"))
        *p = PPD_CUDA_TF32;
    else if (!strcmp(s, "bf16"))
        *p = PPD_CUDA_BF16;
    else
        return ppd_fail(PPD_ERR_USAGE, "precision '%s': expected fp32, tf32 or bf16", s);
    return PPD_OK;
}

extern "C" const char *ppd_cuda_precision_name(ppd_cuda_precision p) {
    return p == PPD_CUDA_TF32 ? "tf32" : p == PPD_CUDA_BF16 ? "bf16" : "fp32";
}

extern "C" ppd_status ppd_cuda_blas_create(ppd_cuda_blas **out, cudaStream_t stream,
                                           ppd_cuda_precision prec, void *workspace,
                                           size_t ws_bytes) {
    *out = NULL;
    PPD_TRY(ppd_cuda_blas_load(NULL));
    ppd_cuda_blas *b = (ppd_cuda_blas *)calloc(1, sizeof *b);
    if (!b) return ppd_fail(PPD_ERR_NOMEM, "cuBLAS handle: out of host memory");
    cublasStatus_t st = blas_api.create(&b->handle);
    if (st != CUBLAS_STATUS_SUCCESS) {
        free(b);
        return blas_status(st, "cublasCreate");
    }
    b->precision = prec;
    b->stream = stream;
    if (workspace && ws_bytes) b->workspace = workspace, b->ws_bytes = ws_bytes;
    // FP32: pedantic, so that neither TF32 nor NVIDIA_TF32_OVERRIDE changes the parity runs.
    // BF16 GEMMs use tensor cores whatever the mode; their fp32 GEMMs (none in ESM) stay exact.
    cublasMath_t math = prec == PPD_CUDA_TF32   ? CUBLAS_TF32_TENSOR_OP_MATH
                        : prec == PPD_CUDA_BF16 ? CUBLAS_DEFAULT_MATH
                                                : CUBLAS_PEDANTIC_MATH;
    if ((st = blas_api.set_stream(b->handle, stream)) != CUBLAS_STATUS_SUCCESS ||
        (st = blas_api.set_math_mode(b->handle, math)) != CUBLAS_STATUS_SUCCESS ||
        (workspace && ws_bytes &&
         (st = blas_api.set_workspace(b->handle, workspace, ws_bytes)) != CUBLAS_STATUS_SUCCESS)) {
        blas_api.destroy(b->handle);
        free(b);
        return blas_status(st, "cuBLAS handle set-up");
    }
    *out = b;
    return PPD_OK;
}

extern "C" cudaStream_t ppd_cuda_blas_stream(const ppd_cuda_blas *b) {
    return b->stream;
}

extern "C" void *ppd_cuda_blas_workspace(const ppd_cuda_blas *b, size_t *bytes) {
    *bytes = b->ws_bytes;
    return b->workspace;
}

extern "C" ppd_status ppd_cuda_sgemm(ppd_cuda_blas *b, int ta, int tb, int m, int n, int k,
                                     const float *A, int lda, const float *B, int ldb, float beta,
                                     float *C, int ldc) {
    const float one = 1.0f;
    PPD_CUBLAS_CHECK(blas_api.sgemm(b->handle, ta ? CUBLAS_OP_T : CUBLAS_OP_N,
                                    tb ? CUBLAS_OP_T : CUBLAS_OP_N, m, n, k, &one, A, lda, B, ldb,
                                    &beta, C, ldc));
    return PPD_OK;
}

extern "C" void ppd_cuda_blas_destroy(ppd_cuda_blas *b) {
    if (!b) return;
    blas_api.destroy(b->handle);
    free(b);
}

extern "C" ppd_status ppd_cuda_esm_matmul_forward(float *out, const float *inp, const float *W,
                                                  int64_t N, int K, int M, ppd_cuda_blas *b) {
    // out: (N, M)   inp: (N, K)   W: (M, K)
    if (N < 0 || K < 0 || M < 0 || N > 2147483647)
        return ppd_fail(PPD_ERR_USAGE, "matmul: bad size N=%lld K=%d M=%d", (long long)N, K, M);
    if (N == 0 || M == 0) return PPD_OK;
    // Row-major out (N, M) is column-major out^T (M, N) = W (M, K) x inp^T (K, N): W is the
    // column-major (K, M) matrix transposed, inp the column-major (K, N) one as it is.
    const float one = 1.0f, zero = 0.0f;
    PPD_CUBLAS_CHECK(blas_api.sgemm(b->handle, CUBLAS_OP_T, CUBLAS_OP_N, M, (int)N, K, &one, W, K,
                                    inp, K, &zero, out, M));
    return PPD_OK;
}

// out (N, M) = inp W^T, bf16 inputs, fp32 accumulation, out of type `ct` (fp32 or bf16, rounded
// by cuBLAS's epilogue); layout as ppd_cuda_esm_matmul_forward.
static ppd_status matmul_bf16(void *out, cudaDataType ct, const uint16_t *inp, const uint16_t *W,
                              int64_t N, int K, int M, ppd_cuda_blas *b) {
    if (N < 0 || K < 0 || M < 0 || N > 2147483647)
        return ppd_fail(PPD_ERR_USAGE, "matmul bf16: bad size N=%lld K=%d M=%d", (long long)N, K,
                        M);
    if (N == 0 || M == 0) return PPD_OK;
    const float one = 1.0f, zero = 0.0f;
    PPD_CUBLAS_CHECK(blas_api.gemm_ex(b->handle, CUBLAS_OP_T, CUBLAS_OP_N, M, (int)N, K, &one, W,
                                      CUDA_R_16BF, K, inp, CUDA_R_16BF, K, &zero, out, ct, M,
                                      CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    return PPD_OK;
}

extern "C" ppd_status ppd_cuda_esm_matmul_bf16_forward(float *out, const uint16_t *inp,
                                                       const uint16_t *W, int64_t N, int K, int M,
                                                       ppd_cuda_blas *b) {
    return matmul_bf16(out, CUDA_R_32F, inp, W, N, K, M, b);
}

extern "C" ppd_status ppd_cuda_esm_matmul_bf16_forward_to_bf16(uint16_t *out, const uint16_t *inp,
                                                               const uint16_t *W, int64_t N, int K,
                                                               int M, ppd_cuda_blas *b) {
    return matmul_bf16(out, CUDA_R_16BF, inp, W, N, K, M, b);
}

static __global__ void cast_bf16_kernel(uint16_t *dst, const float *src, int64_t n) {
    int64_t stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
        dst[i] = ppd_f32_to_bf16(src[i]);
}

extern "C" ppd_status ppd_cuda_cast_bf16(uint16_t *dst, const float *src, int64_t n,
                                         cudaStream_t stream) {
    if (n < 0) return ppd_fail(PPD_ERR_USAGE, "cast bf16: negative size %lld", (long long)n);
    if (n == 0) return PPD_OK;
    PPD_LAUNCH(cast_bf16_kernel, ppd_elem_blocks(n), PPD_ELEM_THREADS, 0, stream)
    (dst, src, n);
    PPD_CUDA_CHECK_LAUNCH("cast_bf16_kernel");
    return PPD_OK;
}
