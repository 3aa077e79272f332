// tests/emu/cuda_emu.h — run ppdock's CUDA sources on the CPU, for tests on machines without a GPU.
//
// Force-included (g++ -include) when lib/nn/cuda/*.cu are compiled as C++ for `make test-emu`;
// tests/emu/cuda_emu.cpp implements the runtime calls and the cuBLAS subset the library uses.
// The same sources, unchanged, are what nvcc compiles for the GPU: kernels are launched through
// PPD_LAUNCH (lib/nn/cuda/common.cuh), which is `k<<<grid, block, smem, stream>>>` under nvcc
// and ppd_emu::launcher here.
//
// Why write one: no CUDA emulator is packaged for Debian (gpuocelot is gone, HIP-CPU is not
// packaged and needs HIP spellings), and without one the kernels' indexing, shared memory,
// barriers and warp shuffles would go untested until a GPU is lent.
//
// What it models:
//  - every thread of a block is a fiber (ucontext stack) on one OS thread; blocks run one after
//    another. A fiber runs until it reaches a barrier, so a missing __syncthreads shows as wrong
//    results: thread 0 runs its whole phase before thread 1 writes anything. Every other launch
//    runs its blocks, and each block's threads, in reverse order (set_launch_order), so a read
//    of another thread's or block's write without a barrier is stale in one of the two orders.
//  - __syncthreads is a barrier of all the block's threads (one that has exited makes it an
//    error, as CUDA leaves it undefined); the warp shuffles, __ballot_sync and __syncwarp
//    are barriers of the warp's live lanes; so is the bf16 tensor-core mma (mma.sync m16n8k16,
//    computed from the PTX ISA's fragment layout, products exact, sums in order in fp32), which
//    needs all 32; and so is ldmatrix (m8n8.x4, plain and .trans, from the PTX ISA's layout:
//    lane 8m + r names row r of matrix m, lane 4r + w receives word w of row r). Threads waiting at
//    different barriers with nothing else able to run is a deadlock: the launch prints the kernel,
//    block and thread states and aborts, since on a GPU it would hang or be undefined.
//  - __shared__ is a static thread_local variable: shared by the fibers of the running block.
//    It keeps its contents from block to block (a GPU starts each block with garbage); dynamic
//    shared memory starts each block as bytes 0xff (NaN as floats and bf16).
//  - cp.async (16-byte copies from global to shared memory, zero-filled past the source bytes)
//    lands late on launches that run reversed: at the first __syncthreads after a
//    cp.async.wait_group let it go, so a missing wait or a missing barrier between the wait and
//    the reads gives stale data (later than a GPU for a thread reading its own copy between the
//    wait and the barrier, which ppdock's kernels do not); and at once on the others, so a
//    buffer refilled while other threads still read it (a missing __syncthreads before the
//    copies) is overwritten under them.
//  - launch configurations are checked as the GPU would (block <= 1024 threads, dimensions,
//    shared memory <= 227 KiB, dynamic shared memory over 48 KiB only up to the kernel's
//    cudaFuncAttributeMaxDynamicSharedMemorySize); a bad one sets
//    cudaErrorInvalidConfiguration and runs nothing.
//  - device memory is host memory, counted against an emulated capacity (PPD_EMU_DEVICE_MB,
//    default 4096) so that out-of-memory paths are exercised.
//  - streams and events: kernels, GEMMs and memsets run at launch, in order; events record wall
//    time. Asynchronous copies to or from pinned memory (cudaMallocHost) on a stream other than
//    the legacy one are held until something orders them (the next operation on their stream, a
//    wait on or synchronisation with an event recorded after them, a stream or device
//    synchronisation), as DMA runs late on a GPU: a missing cudaStreamWaitEvent, a staging
//    buffer rewritten before its copy ran, or a download read before synchronising give wrong
//    results. A copy running early (before kernels queued earlier on another stream that read
//    its destination) is not modelled.
//  - arithmetic is the CPU's: __fmul_rn is a plain multiply (the project compiles with
//    -ffp-contract=off), expf/sinf are glibc's. nvcc contracts a*b+c into FMAs where the source
//    does not forbid it, so results can differ from a real GPU in the last bits; parity
//    tolerances must allow for that, as on the GPU.
//  - pointer spaces, at the launch: a pointer argument of a kernel must be null or point into
//    device memory (cudaMalloc), else the launch is refused with cudaErrorIllegalAddress, as a
//    GPU would fault; pointers inside structs passed by value are not checked. Such a fault
//    is sticky, as on a GPU: from then on every call of the process returns it (cudaGetLastError
//    does not clear it; launches, copies, cudaMalloc, synchronisations and GEMMs fail), so code
//    that must go on after a fault has to start a new process.
// What it does not model: concurrency between blocks, the memory model (a race
// between blocks is invisible), timing.
#ifndef PPDOCK_TESTS_CUDA_EMU_H
#define PPDOCK_TESTS_CUDA_EMU_H

#ifndef __cplusplus
#error "cuda_emu.h is for C++ (the .cu sources compiled by g++); C code includes cuda_runtime_api.h"
#endif

#define PPD_CUDA_EMU 1

// Qualifiers, defined before the CUDA headers so that their host-compiler defaults do not apply.
#define __host__
#define __device__
#define __global__
#define __constant__
#define __shared__      static thread_local
#define __forceinline__ inline __attribute__((always_inline))
#define __launch_bounds__(...)

#include <cuda_runtime_api.h>

#include <math.h>
#include <stdint.h>
#include <string.h>

#include <cstddef>
#include <type_traits>
#include <utility>

namespace ppd_emu {

// The running thread's coordinates (set by the scheduler at every switch).
extern thread_local uint3 cur_thread, cur_block;
extern thread_local dim3 cur_block_dim, cur_grid_dim;

// Barriers: the block's live threads, or the live lanes of the caller's warp.
void block_barrier();
void warp_barrier(unsigned mask);
// Exchange 8 bytes with lane `src` of the caller's warp (all lanes in `mask` take part); a source
// outside [0, 32) reads the caller's own value.
uint64_t warp_exchange(unsigned mask, uint64_t mine, int src);
// The lanes of `mask` whose pred is nonzero, as a bit mask (a warp-collective barrier).
unsigned warp_ballot(unsigned mask, int pred);
// mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 of the caller's warp: d += A B with the
// PTX ISA's fragment layout (cuda_emu.cpp spells it out); all 32 lanes must call it.
void mma_bf16_m16n8k16(float d[4], const uint32_t a[4], const uint32_t b[2]);
// ldmatrix.sync.aligned.m8n8.x4{.trans}.shared.b16 of the caller's warp: `row` is the 16-byte
// aligned address of the row this lane names; all 32 lanes must call it.
void ldmatrix_x4(uint32_t r[4], const void *row, bool trans);
// cp.async.cg.shared.global of 16 bytes (both addresses 16-byte aligned), the first src_bytes
// (0 or 16) from src and the rest zeros; commit_group; wait_group(n): all but the n newest
// committed groups of the caller have landed.
void cp_async16(void *dst, const void *src, int src_bytes);
void cp_async_commit();
void cp_async_wait(int n);
// The dynamic shared memory of the running block (the launch's smem bytes, all bytes 0xff at
// the start of each block: NaN as floats or bf16, so a read of what no thread wrote shows).
void *dynamic_shared();

// The order a launch runs its blocks in, and a block's threads between barriers: alternating
// (the default: every other launch runs both backwards), forwards or backwards. A thread that
// reads another's write without a barrier between them reads stale data in one of the two
// orders, and so does a block that depends on another block having run.
enum launch_order { ORDER_ALTERNATE, ORDER_FORWARD, ORDER_REVERSE };
void set_launch_order(launch_order o);

// Run body() for every thread of the grid. `name` is the kernel's name, for diagnostics.
// func is the kernel (for its dynamic shared memory limit).
void run_grid(const char *name, const void *func, dim3 grid, dim3 block, size_t smem,
              cudaStream_t stream, void (*body)(void *), void *arg);

// Pointer spaces: true when p is null or points into (or just past) a cudaMalloc block.
// Otherwise the launch would fault on a GPU: prints the kernel, the argument's position and the
// pointer, sets cudaErrorIllegalAddress, and the launch does not run.
bool device_pointer_ok(const char *kernel, int arg, const void *p);

template <class T> bool kernel_arg_ok(const char *kernel, int arg, const T &v) {
    if constexpr (std::is_pointer<T>::value)
        return device_pointer_ok(kernel, arg, (const void *)v);
    else
        return true;
}

// A kernel's identity for cudaFuncSetAttribute: its address (kernels are function pointers).
template <class Kernel> const void *func_key(Kernel k) {
    if constexpr (std::is_pointer<Kernel>::value)
        return reinterpret_cast<const void *>(k);
    else
        return nullptr;
}

template <class Kernel> struct launcher {
    const char *name;
    Kernel kernel;
    dim3 grid, block;
    size_t smem;
    cudaStream_t stream;
    template <class... Args> void operator()(Args... args) const {
        int arg = 0;
        bool ok = true;
        ((ok = kernel_arg_ok(name, arg++, args) && ok), ...);
        if (!ok) return;
        auto call = [&]() { kernel(args...); };
        using call_t = decltype(call);
        run_grid(
            name, func_key(kernel), grid, block, smem, stream,
            [](void *p) { (*static_cast<call_t *>(p))(); }, &call);
    }
};

template <class Kernel>
launcher<Kernel> make_launcher(const char *name, Kernel k, dim3 grid, dim3 block, size_t smem,
                               cudaStream_t stream) {
    return launcher<Kernel>{name, k, grid, block, smem, stream};
}

template <class T> static inline uint64_t to_bits(T v) {
    static_assert(sizeof(T) <= 8, "shuffles move at most 8 bytes");
    uint64_t b = 0;
    memcpy(&b, &v, sizeof v);
    return b;
}
template <class T> static inline T from_bits(uint64_t b) {
    T v;
    memcpy(&v, &b, sizeof v);
    return v;
}

} // namespace ppd_emu

#define threadIdx (ppd_emu::cur_thread)
#define blockIdx  (ppd_emu::cur_block)
#define blockDim  (ppd_emu::cur_block_dim)
#define gridDim   (ppd_emu::cur_grid_dim)
#define warpSize  32

static inline void __syncthreads() {
    ppd_emu::block_barrier();
}
static inline void __syncwarp(unsigned mask = 0xffffffffu) {
    ppd_emu::warp_barrier(mask);
}

static inline unsigned ppd_emu_lane() {
    unsigned t = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
    return t % 32u;
}

template <class T> static inline T __shfl_sync(unsigned mask, T v, int src, int width = 32) {
    int lane = (int)ppd_emu_lane(), base = lane & ~(width - 1);
    int s = base + (src & (width - 1));
    return ppd_emu::from_bits<T>(ppd_emu::warp_exchange(mask, ppd_emu::to_bits(v), s));
}
template <class T>
static inline T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32) {
    int lane = (int)ppd_emu_lane(), s = lane ^ lane_mask;
    if ((s & ~(width - 1)) != (lane & ~(width - 1))) s = lane;
    return ppd_emu::from_bits<T>(ppd_emu::warp_exchange(mask, ppd_emu::to_bits(v), s));
}
template <class T>
static inline T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32) {
    int lane = (int)ppd_emu_lane(), s = lane + (int)delta;
    if ((s & ~(width - 1)) != (lane & ~(width - 1))) s = lane;
    return ppd_emu::from_bits<T>(ppd_emu::warp_exchange(mask, ppd_emu::to_bits(v), s));
}
template <class T>
static inline T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = 32) {
    int lane = (int)ppd_emu_lane(), s = lane - (int)delta;
    if (s < 0 || (s & ~(width - 1)) != (lane & ~(width - 1))) s = lane;
    return ppd_emu::from_bits<T>(ppd_emu::warp_exchange(mask, ppd_emu::to_bits(v), s));
}

static inline unsigned __ballot_sync(unsigned mask, int pred) {
    return ppd_emu::warp_ballot(mask, pred);
}

// Only the device functions ppdock's kernels use. No atomics: the kernels do without them, so
// that every reduction has a fixed order (a kernel that used one would not compile here).
static inline float __fmul_rn(float a, float b) {
    return a * b;
}
static inline float __uint_as_float(unsigned x) {
    float f;
    memcpy(&f, &x, sizeof f);
    return f;
}
static inline int __popc(unsigned x) {
    int n = 0;
    for (; x; x &= x - 1) n++;
    return n;
}

#endif
