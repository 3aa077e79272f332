// tests/emu/test_emu.cpp — the CPU emulation's own checks: the barriers, shuffles and launch
// checks that the emulated kernel tests rely on behave as on a GPU, and the bugs the emulation
// is meant to expose (a missing __syncthreads, a divergent barrier) do show. Compiled with
// cuda_emu.h force-included, like the library's .cu sources. Prints PASS/FAIL lines and
// "N passed, N failed".
#include "../../lib/nn/cuda/async_copy.cuh"
#include "../../lib/nn/cuda/common.cuh"
#include "../../lib/nn/cuda/mma.cuh"

#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static int npass, nfail;

static void report(const char *name, bool ok, const char *why) {
    printf("%s %s", ok ? "PASS" : "FAIL", name);
    if (!ok) printf(" (%s)", why);
    printf("\n");
    ok ? npass++ : nfail++;
}

// Block sum of in[0..n) into out[blockIdx.x] through shared memory; `sync` = 0 drops the barrier
// between the writes and the tree's reads.
static __global__ void block_sum(float *out, const float *in, int n, int sync) {
    __shared__ float s[256];
    int t = threadIdx.x;
    s[t] = t < n ? in[blockIdx.x * n + t] : 0.0f;
    if (sync) __syncthreads();
    for (int half = 128; half > 0; half /= 2) {
        if (t < half) s[t] += s[t + half];
        if (sync) __syncthreads();
    }
    if (t == 0) out[blockIdx.x] = s[0];
}

// Warp sum by xor shuffles; every lane writes the total. Block (32, 4): four warps.
static __global__ void warp_sum(float *out, const float *in) {
    int lane = threadIdx.x, w = threadIdx.y, row = blockIdx.x * blockDim.y + w;
    float v = in[row * 32 + lane];
    for (int o = 16; o > 0; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o);
    out[row * 32 + lane] = v;
}

// Dynamic shared memory: reverse each block's chunk of n values.
static __global__ void reverse(float *out, const float *in, int n) {
    PPD_EXTERN_SHARED(float, s);
    int t = threadIdx.x;
    s[t] = in[blockIdx.x * n + t];
    __syncthreads();
    out[blockIdx.x * n + t] = s[n - 1 - t];
}

// out[i] = in[i] + 1 for i < n, one block.
static __global__ void add_one(float *out, const float *in, int n) {
    if ((int)threadIdx.x < n) out[threadIdx.x] = in[threadIdx.x] + 1.0f;
}

// Held copies (cuda_emu.h): an upload from pinned memory on one stream, consumed by a kernel on
// another, is seen only when the consumer waits for an event recorded after it; the staging
// buffer is read when the copy runs, not when it is queued.
static void check_held_copies() {
    enum { N = 32 };
    cudaStream_t copy, compute;
    cudaEvent_t uploaded;
    float *pin, *dev, *res;
    bool ok = cudaStreamCreateWithFlags(&copy, cudaStreamNonBlocking) == cudaSuccess &&
              cudaStreamCreateWithFlags(&compute, cudaStreamNonBlocking) == cudaSuccess &&
              cudaEventCreateWithFlags(&uploaded, cudaEventDisableTiming) == cudaSuccess &&
              cudaMallocHost((void **)&pin, 2 * N * sizeof(float)) == cudaSuccess &&
              cudaMalloc((void **)&dev, 2 * N * sizeof(float)) == cudaSuccess;
    if (!ok) {
        report("emu_held_copies_setup", false, "stream, event or allocation failed");
        return;
    }
    res = dev + N;
    for (int i = 0; i < N; i++) pin[i] = (float)i, pin[N + i] = -7.0f;
    cudaMemset(dev, 0, N * sizeof(float));
    cudaMemcpyAsync(dev, pin, N * sizeof(float), cudaMemcpyHostToDevice, copy);
    PPD_LAUNCH(add_one, 1, N, 0, compute)(res, dev, N);
    float *back = pin + N;
    cudaMemcpyAsync(back, res, N * sizeof(float), cudaMemcpyDeviceToHost, compute);
    bool stale = back[5] == -7.0f; // read before synchronising: not there yet
    cudaStreamSynchronize(compute);
    report("emu_download_read_before_sync_is_stale", stale, "the download ran when queued");
    report("emu_upload_not_waited_for_is_not_seen", back[5] == 1.0f,
           "the kernel saw an upload it did not wait for");

    cudaStreamSynchronize(copy);
    for (int i = 0; i < N; i++) pin[i] = (float)(2 * i);
    cudaMemcpyAsync(dev, pin, N * sizeof(float), cudaMemcpyHostToDevice, copy);
    cudaEventRecord(uploaded, copy);
    pin[5] = -1.0f; // rewritten before the copy ran: the copy sends it
    cudaStreamWaitEvent(compute, uploaded, 0);
    PPD_LAUNCH(add_one, 1, N, 0, compute)(res, dev, N);
    cudaMemcpyAsync(back, res, N * sizeof(float), cudaMemcpyDeviceToHost, compute);
    cudaStreamSynchronize(compute);
    report("emu_upload_waited_for_is_seen", back[4] == 9.0f, "the kernel missed its upload");
    report("emu_staging_rewritten_before_copy_sends_new_bytes", back[5] == 0.0f,
           "the copy read the staging buffer when queued");
    cudaEventDestroy(uploaded);
    cudaStreamDestroy(copy);
    cudaStreamDestroy(compute);
    cudaFree(dev);
    cudaFreeHost(pin);
}

// out[t] = in[(t + shift) mod n] through shared memory; sync 0 drops the barrier between the
// write and the neighbour's read.
static __global__ void neighbour(float *out, const float *in, int n, int shift, int sync) {
    __shared__ float s[64];
    int t = threadIdx.x;
    s[t] = in[t];
    if (sync) __syncthreads();
    out[t] = s[(t + shift + n) % n];
}

// Each block reads the block before's result: order-dependent, undefined on a GPU.
static __global__ void chain(float *out) {
    int b = blockIdx.x;
    if (threadIdx.x == 0) out[b] = b == 0 ? 1.0f : out[b - 1] + 1.0f;
}

// Over two launches (one forwards, one backwards), does the kernel ever come out wrong? New
// inputs each launch: shared memory keeps the last launch's values, which would look right.
static bool neighbour_ever_wrong(float *out, float *in, int shift, int sync) {
    static int calls;
    bool wrong = false;
    for (int run = 0; run < 2; run++) {
        calls++;
        for (int t = 0; t < 64; t++) out[t] = -1.0f, in[t] = (float)((t * t + calls) % 61);
        PPD_LAUNCH(neighbour, 1, 64, 0, NULL)(out, in, 64, shift, sync);
        for (int t = 0; t < 64; t++) wrong = wrong || out[t] != in[(t + shift + 64) % 64];
    }
    return wrong;
}

// A barrier reached by half the block only: a hang on a GPU, an abort here.
static __global__ void divergent(float *out) {
    if (threadIdx.x < 16) __syncthreads();
    out[threadIdx.x] = 1.0f;
}

// ldmatrix feeding mma, as the bf16 attention uses it (one warp): with A (16 x 16), K (16 keys x 16
// channels) and V (16 keys x 16 channels) row-major in shared memory, s = A K^T from K's plain
// ldmatrix and o = A V from V's transposed one, both 16 x 16 row-major. Integer values: the
// products are exact, so they equal plain loops only if every fragment is where the PTX ISA puts
// it.
static __global__ void ldmatrix_products(float *s, float *o, const uint16_t *a, const uint16_t *k,
                                         const uint16_t *v) {
    __shared__ __align__(16) uint16_t ks[16][24], vs[16][24]; // rows padded as the kernel's
    int lane = threadIdx.x, g = lane / 4, t = lane % 4;
    for (int i = lane; i < 256; i += 32) ks[i / 16][i % 16] = k[i], vs[i / 16][i % 16] = v[i];
    __syncthreads();
    uint32_t af[4], kb[4], vb[4];
    for (int r = 0; r < 4; r++) {
        int row = g + 8 * (r & 1), col = 2 * t + 8 * (r >> 1);
        af[r] = (uint32_t)a[row * 16 + col] | (uint32_t)a[row * 16 + col + 1] << 16;
    }
    ppd_ldmatrix_x4(kb, &ks[8 * (lane >> 4) + (lane & 7)][8 * ((lane >> 3) & 1)]);
    ppd_ldmatrix_x4_trans(vb, &vs[8 * ((lane >> 3) & 1) + (lane & 7)][8 * (lane >> 4)]);
    float d[4][4] = {};
    ppd_mma_bf16_16816(d[0], af, kb);     // s columns 0..7 (keys 0..7)
    ppd_mma_bf16_16816(d[1], af, kb + 2); // s columns 8..15
    ppd_mma_bf16_16816(d[2], af, vb);     // o columns 0..7 (channels 0..7)
    ppd_mma_bf16_16816(d[3], af, vb + 2); // o columns 8..15
    for (int n = 0; n < 4; n++) {
        float *dst = n < 2 ? s : o;
        int c = 8 * (n & 1) + 2 * t;
        dst[g * 16 + c] = d[n][0], dst[g * 16 + c + 1] = d[n][1];
        dst[(g + 8) * 16 + c] = d[n][2], dst[(g + 8) * 16 + c + 1] = d[n][3];
    }
}

static void check_ldmatrix() {
    uint16_t *a, *k, *v;
    float *s, *o;
    cudaMalloc((void **)&a, 3 * 256 * sizeof(uint16_t));
    cudaMalloc((void **)&s, 2 * 256 * sizeof(float));
    k = a + 256, v = a + 512, o = s + 256;
    float af[256], kf[256], vf[256];
    for (int i = 0; i < 256; i++) {
        af[i] = (float)((i * 7) % 11 - 5), kf[i] = (float)((i * 5) % 13 - 6);
        vf[i] = (float)((i * 3) % 7 - 3) + (float)(i / 16); // rows differ: a transpose shows
        a[i] = ppd_f32_to_bf16(af[i]), k[i] = ppd_f32_to_bf16(kf[i]), v[i] = ppd_f32_to_bf16(vf[i]);
    }
    PPD_LAUNCH(ldmatrix_products, 1, 32, 0, NULL)(s, o, a, k, v);
    bool ok = cudaGetLastError() == cudaSuccess;
    for (int i = 0; i < 16; i++)
        for (int j = 0; j < 16; j++) {
            float ws = 0.0f, wo = 0.0f;
            for (int c = 0; c < 16; c++) {
                ws += af[i * 16 + c] * kf[j * 16 + c];
                wo += af[i * 16 + c] * vf[c * 16 + j];
            }
            ok = ok && s[i * 16 + j] == ws && o[i * 16 + j] == wo;
        }
    report("emu_ldmatrix_fragments_feed_mma_as_the_ptx_layout", ok,
           "A K^T by plain ldmatrix or A V by ldmatrix.trans differs from the loops");
    cudaFree(a);
    cudaFree(s);
}

// 16 threads stage in[0..64) into shared memory by cp.async (16 bytes each; with fill, the last
// chunk is zero-filled instead), then all 64 read a value another thread copied: out[t] =
// staged[(t + 4) % 64]. wait and sync drop the wait_group or the barrier after it.
static __global__ void staged_neighbour(float *out, const float *in, int wait, int sync, int fill) {
    __shared__ __align__(16) float st[64];
    int t = threadIdx.x;
    if (t < 16) ppd_cp_async16(&st[4 * t], &in[4 * t], fill && t == 15 ? 0 : 16);
    ppd_cp_async_commit();
    if (wait) ppd_cp_async_wait<0>();
    if (sync) __syncthreads();
    out[t] = st[(t + 4) % 64];
}

// Over two launches (forwards: copies land at once; backwards: at the barrier after the wait),
// is the staged read ever wrong? New inputs each launch (shared memory keeps the last values).
static bool staged_ever_wrong(float *out, float *in, int wait, int sync, int fill) {
    static int calls;
    bool wrong = false;
    for (int run = 0; run < 2; run++) {
        calls++;
        for (int i = 0; i < 64; i++) out[i] = -1.0f, in[i] = (float)((i * i + calls) % 61);
        PPD_LAUNCH(staged_neighbour, 1, 64, 0, NULL)(out, in, wait, sync, fill);
        for (int t = 0; t < 64; t++) {
            int i = (t + 4) % 64;
            wrong = wrong || out[t] != (fill && i >= 60 ? 0.0f : in[i]);
        }
    }
    return wrong;
}

// Emulated device memory (cudaMalloc), which kernels may be given; here it is host memory too, so
// the checks fill and read it directly.
static float *dmalloc(size_t n) {
    void *p = nullptr;
    if (cudaMalloc(&p, n * sizeof(float)) != cudaSuccess) {
        fprintf(stderr, "emu-selftest: cudaMalloc failed\n");
        exit(1);
    }
    return (float *)p;
}

int main() {
    enum { B = 3, N = 200 };
    float *in = dmalloc(B * N), *out = dmalloc(B), want[B];
    for (int b = 0; b < B; b++) {
        want[b] = 0;
        for (int i = 0; i < N; i++) {
            in[b * N + i] = (float)((i * 7 + b) % 13) - 6.0f;
            want[b] += in[b * N + i];
        }
    }
    PPD_LAUNCH(block_sum, B, 256, 0, NULL)(out, in, N, 1);
    bool ok = cudaGetLastError() == cudaSuccess;
    for (int b = 0; b < B; b++) ok = ok && out[b] == want[b];
    report("emu_block_reduction_with_barriers_is_right", ok, "wrong sums");

    // forwards, the tree's readers (lower threads) run before the writers they need
    ppd_emu::set_launch_order(ppd_emu::ORDER_FORWARD);
    PPD_LAUNCH(block_sum, B, 256, 0, NULL)(out, in, N, 0);
    ppd_emu::set_launch_order(ppd_emu::ORDER_ALTERNATE);
    bool any_wrong = false;
    for (int b = 0; b < B; b++) any_wrong = any_wrong || out[b] != want[b];
    report("emu_missing_syncthreads_gives_wrong_sums", any_wrong,
           "a reduction without __syncthreads came out right: fibers do not run in phases");

    // a missing barrier shows whichever neighbour is read: the next thread's write (stale
    // forwards) or the previous thread's (stale backwards)
    float *nin = dmalloc(64), *nout = dmalloc(64);
    report("emu_missing_syncthreads_shows_for_either_neighbour",
           neighbour_ever_wrong(nout, nin, 1, 0) && neighbour_ever_wrong(nout, nin, -1, 0) &&
               !neighbour_ever_wrong(nout, nin, 1, 1) && !neighbour_ever_wrong(nout, nin, -1, 1),
           "a read of a neighbour's write without a barrier came out right in both orders, or "
           "one with the barrier came out wrong");
    bool chain_wrong = false;
    for (int run = 0; run < 2; run++) {
        for (int b = 0; b < 8; b++) nout[b] = 0.0f;
        PPD_LAUNCH(chain, 8, 32, 0, NULL)(nout);
        for (int b = 0; b < 8; b++) chain_wrong = chain_wrong || nout[b] != (float)(b + 1);
    }
    report("emu_blocks_depending_on_earlier_blocks_show", chain_wrong,
           "a kernel whose blocks read each other's results came out right in both orders");

    float *win = dmalloc(8 * 32), *wout = dmalloc(8 * 32);
    for (int i = 0; i < 8 * 32; i++) win[i] = (float)(i % 32) + 100.0f * (float)(i / 32);
    PPD_LAUNCH(warp_sum, 2, dim3(32, 4), 0, NULL)(wout, win);
    ok = cudaGetLastError() == cudaSuccess;
    for (int i = 0; i < 8 * 32; i++) ok = ok && wout[i] == 496.0f + 3200.0f * (float)(i / 32);
    report("emu_warp_xor_shuffle_sums_each_warp", ok, "wrong warp sums");

    float *rin = dmalloc(2 * 64), *rout = dmalloc(2 * 64);
    for (int i = 0; i < 128; i++) rin[i] = (float)i;
    PPD_LAUNCH(reverse, 2, 64, 64 * sizeof(float), NULL)(rout, rin, 64);
    ok = cudaGetLastError() == cudaSuccess;
    for (int i = 0; i < 128; i++) ok = ok && rout[i] == (float)((i / 64) * 64 + 63 - i % 64);
    report("emu_dynamic_shared_memory", ok, "wrong reversal");

    PPD_LAUNCH(block_sum, 1, 2048, 0, NULL)(out, in, N, 1);
    report("emu_block_of_2048_threads_is_refused",
           cudaGetLastError() == cudaErrorInvalidConfiguration, "launch accepted");
    PPD_LAUNCH(reverse, 1, 64, 300 * 1024, NULL)(rout, rin, 64);
    report("emu_300k_shared_memory_is_refused", cudaGetLastError() == cudaErrorInvalidConfiguration,
           "launch accepted");

    check_held_copies();
    check_ldmatrix();

    float *sin_ = dmalloc(64), *sout = dmalloc(64);
    report("emu_cp_async_needs_its_wait_and_a_barrier",
           !staged_ever_wrong(sout, sin_, 1, 1, 0) && staged_ever_wrong(sout, sin_, 0, 1, 0) &&
               staged_ever_wrong(sout, sin_, 1, 0, 0),
           "staging with wait and barrier came out wrong, or without one of them right");
    report("emu_cp_async_zero_fills", !staged_ever_wrong(sout, sin_, 1, 1, 1),
           "a copy of 0 source bytes did not write zeros");

    // dynamic shared memory over 48 KiB: refused until the kernel's limit is raised
    PPD_LAUNCH(reverse, 1, 64, 64 * 1024, NULL)(rout, rin, 64);
    ok = cudaGetLastError() == cudaErrorInvalidConfiguration;
    ok = ok &&
         cudaFuncSetAttribute((const void *)reverse, cudaFuncAttributeMaxDynamicSharedMemorySize,
                              64 * 1024) == cudaSuccess;
    PPD_LAUNCH(reverse, 1, 64, 64 * 1024, NULL)(rout, rin, 64);
    ok = ok && cudaGetLastError() == cudaSuccess;
    report("emu_dynamic_shared_over_48k_needs_the_attribute", ok,
           "a 64 KiB launch was accepted without cudaFuncSetAttribute, or refused with it");

    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        freopen("/dev/null", "w", stderr);
        PPD_LAUNCH(divergent, 1, 32, 0, NULL)(wout);
        _exit(0);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    report("emu_divergent_syncthreads_aborts", WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT,
           "the launch returned");

    // one past the end of a device block (an empty range's pointer) is accepted
    PPD_LAUNCH(block_sum, B, 256, 0, NULL)(out, in + B * N, 0, 1);
    report("emu_end_pointer_kernel_argument_is_accepted", cudaGetLastError() == cudaSuccess,
           "an end pointer was refused");

    // a host array given to a kernel faults on a GPU: refused, nothing written, and the context
    // is dead from then on (in a child: this process goes on)
    fflush(stdout);
    pid = fork();
    if (pid == 0) {
        freopen("/dev/null", "w", stderr);
        float host[B] = {-1.0f, -1.0f, -1.0f};
        PPD_LAUNCH(block_sum, B, 256, 0, NULL)(host, in, N, 1);
        int bits = cudaGetLastError() == cudaErrorIllegalAddress && host[0] == -1.0f;
        bits |= (cudaGetLastError() == cudaErrorIllegalAddress) << 1; /* not cleared */
        bits |= (cudaDeviceSynchronize() == cudaErrorIllegalAddress) << 2;
        void *p = nullptr;
        bits |= (cudaMalloc(&p, 64) == cudaErrorIllegalAddress && !p) << 3;
        PPD_LAUNCH(block_sum, B, 256, 0, NULL)(out, in, N, 1);
        bits |= (cudaPeekAtLastError() == cudaErrorIllegalAddress) << 4;
        _exit(bits);
    }
    waitpid(pid, &status, 0);
    char why[160];
    snprintf(why, sizeof why,
             "checks 0x%x of 0x1f held (1 refused, 2 not cleared, 4 sync fails, 8 cudaMalloc "
             "fails, 16 later launches fail)",
             WIFEXITED(status) ? WEXITSTATUS(status) : 0);
    report("emu_host_pointer_kernel_argument_faults_for_good",
           WIFEXITED(status) && WEXITSTATUS(status) == 31, why);

    printf("%d passed, %d failed\n", npass, nfail);
    return nfail ? 1 : 0;
}
