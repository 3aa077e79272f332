// tests/emu/cuda_emu.cpp — the CPU emulation behind tests/emu/cuda_emu.h: the block scheduler
// (threads as fibers), the CUDA runtime calls ppdock makes, and the cuBLAS subset it uses
// (through OpenBLAS). Linked instead of libcudart/libcublas into the emulated test programs.
// See cuda_emu.h for what is and is not modelled.
#include "cuda_emu.h"
#include "ppdock/half.h"

#include <cublas_v2.h>

#include <cblas.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>
#include <ucontext.h>

#include <atomic>
#include <map>
#include <mutex>
#include <vector>

// getcontext is declared returns-twice, but the contexts it fills are only templates for
// makecontext and are never resumed, so nothing can be clobbered.
#pragma GCC diagnostic ignored "-Wclobbered"

namespace ppd_emu {

thread_local uint3 cur_thread, cur_block;
thread_local dim3 cur_block_dim, cur_grid_dim;

namespace {

// ---- the scheduler ---------------------------------------------------------------------------

enum fiber_state { RUNNABLE, WAIT_BLOCK, WAIT_WARP, DONE };

// A cp.async in flight (late mode): lands at the first __syncthreads after a wait_group of its
// thread let its group go. On a GPU it may land any time before that wait returns; ppdock's
// kernels read staged tiles only after the wait and a barrier, and the other threads' copies
// need both, so landing this late makes a missing barrier as visible as a missing wait.
struct async_copy {
    void *dst;
    unsigned char bytes[16];
    int group;
    bool released; // a wait_group has let it go: it lands at the next __syncthreads
};

struct fiber {
    ucontext_t start;
    jmp_buf jb;
    char *stack;
    uint3 tid;
    int state, started;
    unsigned warp_mask;             // the mask of the warp barrier it waits at
    std::vector<async_copy> copies; // cp.async not yet landed (late mode)
    int groups;                     // cp.async groups committed so far
};

// Fiber stacks: the per-edge tensor-product bodies keep ~20 KB of scratch on the stack.
constexpr size_t STACK_BYTES = 256 * 1024;
constexpr int MAX_THREADS = 1024;
constexpr size_t MAX_SHARED = 227 * 1024;

void fiber_entry();

struct scheduler {
    std::vector<fiber> fibers;
    char *stacks = nullptr;
    jmp_buf sched_jb;
    fiber *cur = nullptr;
    void (*body)(void *) = nullptr;
    void *arg = nullptr;
    const char *kernel = "";
    uint64_t slots[MAX_THREADS / 32][32];
    struct mma_operands {
        uint32_t a[4], b[2];
    } mma[MAX_THREADS / 32][32];
    std::vector<unsigned char> smem;
    bool late_copies = false; // cp.async lands after its wait (reversed launches) or at once

    scheduler() : fibers(MAX_THREADS) {
        stacks = (char *)mmap(nullptr, STACK_BYTES * MAX_THREADS, PROT_READ | PROT_WRITE,
                              MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (stacks == MAP_FAILED) {
            perror("cuda_emu: mmap of the fiber stacks");
            abort();
        }
        for (int i = 0; i < MAX_THREADS; i++) {
            fibers[i].stack = stacks + (size_t)i * STACK_BYTES;
            if (getcontext(&fibers[i].start) != 0) {
                perror("cuda_emu: getcontext");
                abort();
            }
            fibers[i].start.uc_stack.ss_sp = fibers[i].stack;
            fibers[i].start.uc_stack.ss_size = STACK_BYTES;
            fibers[i].start.uc_link = nullptr;
            makecontext(&fibers[i].start, fiber_entry, 0);
        }
    }
};

thread_local scheduler *sched;

// A fiber lives as long as its scheduler: entered once (swapcontext, which costs two
// sigprocmask system calls), then it runs one GPU thread after another, parking between them
// with _setjmp/_longjmp (no system call).
void fiber_entry() {
    scheduler *s = sched;
    for (;;) {
        s->body(s->arg);
        fiber *f = s->cur;
        f->state = DONE;
        if (_setjmp(f->jb) == 0) _longjmp(s->sched_jb, 1); // resumed for the next thread
    }
}

// noinline: the _setjmp frames stay small and hold nothing that changes before the jump back.
__attribute__((noinline)) void resume(scheduler *s, fiber *f) {
    s->cur = f;
    cur_thread = f->tid;
    if (_setjmp(s->sched_jb) == 0) {
        if (!f->started) {
            f->started = 1;
            ucontext_t from;
            swapcontext(&from, &f->start); // never returns: the fiber longjmps back
        } else {
            _longjmp(f->jb, 1);
        }
    }
}

__attribute__((noinline)) void yield(int state) {
    scheduler *s = sched;
    fiber *f = s->cur;
    f->state = state;
    if (_setjmp(f->jb) == 0) _longjmp(s->sched_jb, 1);
}

[[noreturn]] void deadlock(scheduler *s, int nthreads, const char *why) {
    fprintf(stderr,
            "cuda_emu: %s in kernel %s, block (%u,%u,%u) of (%u,%u,%u), block (%u,%u,%u)\n"
            "cuda_emu: thread states (R runnable, B at __syncthreads, W at a warp barrier, D "
            "done):\n",
            why, s->kernel, cur_block.x, cur_block.y, cur_block.z, cur_grid_dim.x, cur_grid_dim.y,
            cur_grid_dim.z, cur_block_dim.x, cur_block_dim.y, cur_block_dim.z);
    for (int t = 0; t < nthreads; t++) {
        fputc("RBWD"[s->fibers[t].state], stderr);
        if (t % 64 == 63) fputc('\n', stderr);
    }
    fputc('\n', stderr);
    abort();
}

// The late-mode cp.async copies a wait_group has released, at a block barrier's release.
void land_released(fiber *f) {
    size_t kept = 0;
    for (async_copy &c : f->copies)
        if (c.released)
            memcpy(c.dst, c.bytes, sizeof c.bytes);
        else
            f->copies[kept++] = c;
    f->copies.resize(kept);
}

thread_local launch_order order_mode = ORDER_ALTERNATE;
thread_local uint64_t launches;

void run_block(scheduler *s, int nthreads, bool reverse) {
    for (int t = 0; t < nthreads; t++) {
        fiber *f = &s->fibers[t];
        f->tid.x = t % cur_block_dim.x;
        f->tid.y = (t / cur_block_dim.x) % cur_block_dim.y;
        f->tid.z = t / (cur_block_dim.x * cur_block_dim.y);
        f->state = RUNNABLE; // started stays: a fiber entered once is resumed by _longjmp
        f->copies.clear();
        f->groups = 0;
    }
    int nwarps = (nthreads + 31) / 32;
    for (;;) {
        for (int k = 0; k < nthreads; k++) {
            int t = reverse ? nthreads - 1 - k : k;
            if (s->fibers[t].state == RUNNABLE) resume(s, &s->fibers[t]);
        }
        int done = 0, at_block = 0, released = 0;
        for (int t = 0; t < nthreads; t++) {
            done += s->fibers[t].state == DONE;
            at_block += s->fibers[t].state == WAIT_BLOCK;
        }
        if (done == nthreads) return;
        // warps whose live lanes all wait at a warp barrier go on
        for (int w = 0; w < nwarps; w++) {
            int t0 = 32 * w, t1 = t0 + 32 < nthreads ? t0 + 32 : nthreads;
            int waiting = 0, live = 0;
            unsigned need = 0;
            for (int t = t0; t < t1; t++) {
                const fiber *f = &s->fibers[t];
                if (f->state == DONE) continue;
                live++;
                if (f->state == WAIT_WARP) {
                    waiting++;
                    need |= f->warp_mask;
                }
            }
            if (!live || waiting != live) continue;
            for (int l = 0; l < 32; l++)
                if ((need >> l & 1u) && (t0 + l >= t1 || s->fibers[t0 + l].state == DONE))
                    deadlock(s, nthreads, "a warp shuffle or __syncwarp names a lane that exited");
            for (int t = t0; t < t1; t++)
                if (s->fibers[t].state == WAIT_WARP) s->fibers[t].state = RUNNABLE;
            released = 1;
        }
        if (released) continue;
        // CUDA requires every thread of the block at each __syncthreads: one that exited (an
        // early return) makes the barrier undefined, so it is an error here
        if (at_block == nthreads) {
            for (int t = 0; t < nthreads; t++) {
                if (s->fibers[t].state == WAIT_BLOCK) s->fibers[t].state = RUNNABLE;
                land_released(&s->fibers[t]);
            }
            continue;
        }
        deadlock(s, nthreads,
                 done ? "__syncthreads or a shuffle reached after other threads exited"
                      : "threads wait at different barriers (divergent __syncthreads or shuffle)");
    }
}

// ---- runtime state ---------------------------------------------------------------------------

thread_local cudaError_t last_error = cudaSuccess;
// A kernel's fault (here: a launch given a pointer that is not device memory) kills the context
// on a GPU: every later call of any host thread returns it, and cudaGetLastError does not clear
// it, until the process exits. Process-wide, as a context is.
std::atomic<int> sticky_error{cudaSuccess};

cudaError_t fail(cudaError_t e) {
    last_error = e;
    return e;
}

// The error every call returns once the context is dead (cudaSuccess while it lives).
cudaError_t dead() {
    return (cudaError_t)sticky_error.load(std::memory_order_relaxed);
}

std::mutex mem_mu;
std::map<void *, size_t> device_allocs;
size_t device_used;
std::atomic<uint64_t> frees; // cudaFree calls so far

size_t device_capacity() {
    static size_t cap = [] {
        const char *env = getenv("PPD_EMU_DEVICE_MB");
        long mb = env ? atol(env) : 4096;
        return (size_t)(mb > 0 ? mb : 4096) << 20;
    }();
    return cap;
}

struct emu_event {
    double t;
    cudaStream_t stream; // where it was recorded, and how many copies that stream had queued
    uint64_t seq;
};

// Asynchronous copies to or from pinned host memory are DMA on a GPU: they run when their
// stream reaches them, not when they are queued. Kernels run here at launch, but such copies are
// held back until something orders them: another operation on their stream, a wait on or a
// synchronisation with an event recorded after them, a stream or device synchronisation, a
// synchronous copy, a free. So a consumer on another stream that does not wait for its upload
// reads stale memory, a host that rewrites a staging buffer before its copy ran sends the new
// bytes, and a host that reads a download before synchronising reads the old ones: races on a
// GPU, wrong results here. Copies from pageable memory run at once (CUDA stages them before
// returning). One host thread at a time queues or runs them (q_mu).
struct held_copy {
    void *dst;
    const void *src;
    size_t n;
    uint64_t seq;
};
struct stream_queue {
    std::vector<held_copy> held;
    uint64_t queued; // copies ever queued on the stream
};
std::recursive_mutex q_mu;
std::map<cudaStream_t, stream_queue> queues;
std::map<const char *, size_t> pinned; // cudaMallocHost blocks: start -> bytes

bool is_pinned(const void *p) {
    std::lock_guard<std::recursive_mutex> g(q_mu);
    const char *c = (const char *)p;
    auto it = pinned.upper_bound(c);
    if (it == pinned.begin()) return false;
    --it;
    return c < it->first + it->second;
}

// Runs the copies held on `s` that were queued before its copy number `upto`.
void run_held(cudaStream_t s, uint64_t upto) {
    std::lock_guard<std::recursive_mutex> g(q_mu);
    auto it = queues.find(s);
    if (it == queues.end()) return;
    std::vector<held_copy> &h = it->second.held;
    size_t k = 0;
    for (; k < h.size() && h[k].seq < upto; k++) memmove(h[k].dst, h[k].src, h[k].n);
    h.erase(h.begin(), h.begin() + (long)k);
}

void run_stream(cudaStream_t s) {
    run_held(s, UINT64_MAX);
}

void run_all_held() {
    std::lock_guard<std::recursive_mutex> g(q_mu);
    for (auto &q : queues) run_stream(q.first);
}

// Before an operation on `s` runs: the legacy stream (0) waits for every stream, others for
// their own queue.
void order_before(cudaStream_t s) {
    if (s)
        run_stream(s);
    else
        run_all_held();
}

double now_ms() {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

} // namespace

void block_barrier() {
    yield(WAIT_BLOCK);
}

void warp_barrier(unsigned mask) {
    sched->cur->warp_mask = mask;
    yield(WAIT_WARP);
}

uint64_t warp_exchange(unsigned mask, uint64_t mine, int src) {
    scheduler *s = sched;
    int t = (int)(s->cur - s->fibers.data()), w = t / 32, lane = t % 32;
    s->slots[w][lane] = mine;
    warp_barrier(mask);
    uint64_t v = src >= 0 && src < 32 ? s->slots[w][src] : mine;
    warp_barrier(mask);
    return v;
}

unsigned warp_ballot(unsigned mask, int pred) {
    scheduler *s = sched;
    int t = (int)(s->cur - s->fibers.data()), w = t / 32, lane = t % 32;
    s->slots[w][lane] = pred != 0;
    warp_barrier(mask);
    unsigned r = 0;
    for (int l = 0; l < 32; l++)
        if ((mask >> l & 1) && s->slots[w][l]) r |= 1u << l;
    warp_barrier(mask);
    return r;
}

[[noreturn]] void misaligned(const char *what, const void *p) {
    fprintf(stderr,
            "cuda_emu: kernel %s: %s address %p is not 16-byte aligned: a GPU would fault\n",
            sched->kernel, what, p);
    abort();
}

// ldmatrix m8n8.x4, b16: lane 8m + r gives the address of row r of matrix m (8 bf16, 16 bytes);
// register m of lane 4r + w is word w of row r (elements 2w, 2w + 1, the lower in the low half),
// or with .trans word w of row r of the transpose: elements [2w][r] and [2w + 1][r].
void ldmatrix_x4(uint32_t r[4], const void *row, bool trans) {
    scheduler *s = sched;
    int t = (int)(s->cur - s->fibers.data()), w = t / 32, lane = t % 32;
    if ((uintptr_t)row % 16) misaligned("ldmatrix row", row);
    s->slots[w][lane] = (uint64_t)(uintptr_t)row;
    warp_barrier(0xffffffffu); // .sync.aligned: all 32 lanes
    int g = lane / 4, tq = lane % 4;
    uint32_t out[4];
    for (int m = 0; m < 4; m++) {
        uint16_t lo, hi;
        if (!trans) {
            const uint16_t *p = (const uint16_t *)(uintptr_t)s->slots[w][8 * m + g];
            lo = p[2 * tq], hi = p[2 * tq + 1];
        } else {
            lo = ((const uint16_t *)(uintptr_t)s->slots[w][8 * m + 2 * tq])[g];
            hi = ((const uint16_t *)(uintptr_t)s->slots[w][8 * m + 2 * tq + 1])[g];
        }
        out[m] = (uint32_t)lo | (uint32_t)hi << 16;
    }
    warp_barrier(0xffffffffu); // every lane has read the addresses before a slot is reused
    memcpy(r, out, sizeof out);
}

// The source is read at the copy (no kernel writes global memory that it also copies from);
// the destination is written when the copy lands.
void cp_async16(void *dst, const void *src, int src_bytes) {
    if ((uintptr_t)dst % 16) misaligned("cp.async shared", dst);
    if (src_bytes && (uintptr_t)src % 16) misaligned("cp.async global", src);
    async_copy c;
    c.dst = dst;
    memset(c.bytes, 0, sizeof c.bytes);
    if (src_bytes) memcpy(c.bytes, src, (size_t)(src_bytes < 16 ? src_bytes : 16));
    fiber *f = sched->cur;
    c.group = f->groups;
    c.released = false;
    if (sched->late_copies)
        f->copies.push_back(c);
    else
        memcpy(dst, c.bytes, sizeof c.bytes);
}

void cp_async_commit() {
    sched->cur->groups++;
}

void cp_async_wait(int n) {
    fiber *f = sched->cur;
    for (async_copy &c : f->copies)
        if (c.group < f->groups - n) c.released = true;
}

// The PTX ISA's fragment layout for mma.m16n8k16 with bf16 inputs (g = lane / 4, t = lane % 4;
// each 32-bit register holds two bf16, the lower index in the low half):
//   A (16 x 16, row): a[0] = A[g][2t, 2t+1]   a[1] = A[g+8][2t, 2t+1]
//                     a[2] = A[g][2t+8, +9]   a[3] = A[g+8][2t+8, +9]
//   B (16 x 8, col):  b[0] = B[2t, 2t+1][g]   b[1] = B[2t+8, 2t+9][g]
//   C, D (16 x 8):    d[0..1] = D[g][2t, 2t+1]   d[2..3] = D[g+8][2t, 2t+1]
// Products of bf16 values are exact in fp32; the sum over k runs in order, in fp32.
namespace {
float bf16_half(uint32_t reg, int k) {
    uint32_t bits = (k & 1 ? reg >> 16 : reg & 0xffffu) << 16;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}
} // namespace

void mma_bf16_m16n8k16(float d[4], const uint32_t a[4], const uint32_t b[2]) {
    scheduler *s = sched;
    int t = (int)(s->cur - s->fibers.data()), w = t / 32, lane = t % 32;
    memcpy(s->mma[w][lane].a, a, sizeof s->mma[w][lane].a);
    memcpy(s->mma[w][lane].b, b, sizeof s->mma[w][lane].b);
    warp_barrier(0xffffffffu); // all 32 lanes take part, as mma.sync.aligned requires
    const auto &m = s->mma[w];
    int g = lane / 4, tq = lane % 4;
    float out[4];
    for (int e = 0; e < 4; e++) {
        int i = g + (e >= 2 ? 8 : 0), j = 2 * tq + (e & 1);
        float acc = d[e];
        for (int k = 0; k < 16; k++) {
            float av = bf16_half(m[(i % 8) * 4 + (k % 8) / 2].a[(i >= 8) + 2 * (k >= 8)], k);
            float bv = bf16_half(m[j * 4 + (k % 8) / 2].b[k >= 8], k);
            acc += av * bv;
        }
        out[e] = acc;
    }
    warp_barrier(0xffffffffu); // the operands are read before any lane reuses its slot
    memcpy(d, out, sizeof out);
}

bool device_pointer_ok(const char *kernel, int arg, const void *p) {
    if (!p) return true;
    // the last block found, while no block has been freed since: most arguments of a launch
    // point into one arena, and launches are many
    thread_local const char *lo, *hi;
    thread_local uint64_t seen_frees = UINT64_MAX;
    const char *c = (const char *)p;
    if (seen_frees == frees.load(std::memory_order_relaxed) && c >= lo && c <= hi) return true;
    {
        std::lock_guard<std::mutex> g(mem_mu);
        auto it = device_allocs.upper_bound((void *)p);
        if (it != device_allocs.begin()) {
            --it;
            if (c <= (const char *)it->first + it->second) {
                lo = (const char *)it->first, hi = lo + it->second;
                seen_frees = frees.load(std::memory_order_relaxed);
                return true;
            }
        }
    }
    fprintf(stderr,
            "cuda_emu: kernel %s: argument %d (%p) is not device memory: a GPU would fault\n",
            kernel, arg + 1, p);
    sticky_error = cudaErrorIllegalAddress;
    fail(cudaErrorIllegalAddress);
    return false;
}

void set_launch_order(launch_order o) {
    order_mode = o;
}

void *dynamic_shared() {
    return sched->smem.data();
}

// cudaFuncAttributeMaxDynamicSharedMemorySize per kernel (48 KiB unless raised).
std::mutex attr_mu;
std::map<const void *, int> max_dynamic_shared;

size_t dynamic_shared_limit(const void *func) {
    std::lock_guard<std::mutex> g(attr_mu);
    auto it = max_dynamic_shared.find(func);
    return it == max_dynamic_shared.end() ? 48 * 1024 : (size_t)it->second;
}

void run_grid(const char *name, const void *func, dim3 grid, dim3 block, size_t smem,
              cudaStream_t stream, void (*body)(void *), void *arg) {
    order_before(stream);
    if (dead()) {
        fail(dead()); // the context is dead: nothing runs
        return;
    }
    unsigned long long nthreads = (unsigned long long)block.x * block.y * block.z;
    if (nthreads == 0 || nthreads > MAX_THREADS || block.x > 1024 || block.y > 1024 ||
        block.z > 64 || grid.x == 0 || grid.y == 0 || grid.z == 0 || grid.x > 2147483647u ||
        grid.y > 65535 || grid.z > 65535 || smem > MAX_SHARED ||
        smem > dynamic_shared_limit(func)) {
        fprintf(stderr,
                "cuda_emu: kernel %s: invalid launch configuration grid (%u,%u,%u) block "
                "(%u,%u,%u) shared %zu bytes\n",
                name, grid.x, grid.y, grid.z, block.x, block.y, block.z, smem);
        fail(cudaErrorInvalidConfiguration);
        return;
    }
    if (!sched) sched = new scheduler;
    scheduler *s = sched;
    s->body = body;
    s->arg = arg;
    s->kernel = name;
    s->smem.assign(smem ? smem : 1, 0);
    cur_grid_dim = grid;
    cur_block_dim = block;
    bool reverse = order_mode == ORDER_REVERSE || (order_mode == ORDER_ALTERNATE && launches % 2);
    launches++;
    s->late_copies = reverse;
    uint64_t nblocks = (uint64_t)grid.x * grid.y * grid.z;
    for (uint64_t k = 0; k < nblocks; k++) {
        uint64_t i = reverse ? nblocks - 1 - k : k;
        cur_block = make_uint3((unsigned)(i % grid.x), (unsigned)(i / grid.x % grid.y),
                               (unsigned)(i / ((uint64_t)grid.x * grid.y)));
        if (smem) memset(s->smem.data(), 0xff, smem); // a GPU's are garbage: NaN here
        run_block(s, (int)nthreads, reverse);
    }
}

} // namespace ppd_emu

using namespace ppd_emu;

// ---- the CUDA runtime subset -------------------------------------------------------------------

extern "C" {

cudaError_t cudaGetLastError(void) {
    if (dead()) return dead();
    cudaError_t e = last_error;
    last_error = cudaSuccess;
    return e;
}

cudaError_t cudaPeekAtLastError(void) {
    return dead() ? dead() : last_error;
}

const char *cudaGetErrorName(cudaError_t e) {
    switch (e) {
    case cudaSuccess:
        return "cudaSuccess";
    case cudaErrorInvalidValue:
        return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation:
        return "cudaErrorMemoryAllocation";
    case cudaErrorInvalidConfiguration:
        return "cudaErrorInvalidConfiguration";
    case cudaErrorInvalidDevice:
        return "cudaErrorInvalidDevice";
    case cudaErrorNoDevice:
        return "cudaErrorNoDevice";
    case cudaErrorIllegalAddress:
        return "cudaErrorIllegalAddress";
    default:
        return "cudaErrorUnknown";
    }
}

const char *cudaGetErrorString(cudaError_t e) {
    switch (e) {
    case cudaSuccess:
        return "no error";
    case cudaErrorInvalidValue:
        return "invalid argument";
    case cudaErrorMemoryAllocation:
        return "out of memory";
    case cudaErrorInvalidConfiguration:
        return "invalid configuration argument";
    case cudaErrorInvalidDevice:
        return "invalid device ordinal";
    case cudaErrorNoDevice:
        return "no CUDA-capable device is detected";
    case cudaErrorIllegalAddress:
        return "an illegal memory access was encountered";
    default:
        return "unknown error";
    }
}

cudaError_t cudaGetDeviceCount(int *n) {
    *n = 1;
    return cudaSuccess;
}

cudaError_t cudaGetDevice(int *d) {
    *d = 0;
    return cudaSuccess;
}

cudaError_t cudaSetDevice(int d) {
    return d == 0 ? cudaSuccess : fail(cudaErrorInvalidDevice);
}

cudaError_t cudaGetDeviceProperties(struct cudaDeviceProp *p, int d) {
    if (d != 0) return fail(cudaErrorInvalidDevice);
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "ppdock CUDA emulator (CPU)");
    p->major = 9;
    p->minor = 0;
    p->multiProcessorCount = 1;
    p->totalGlobalMem = device_capacity();
    p->sharedMemPerBlock = 48 * 1024;
    p->maxThreadsPerBlock = MAX_THREADS;
    p->maxThreadsDim[0] = 1024;
    p->memoryBusWidth = 0;
    return cudaSuccess;
}

cudaError_t cudaFuncSetAttribute(const void *func, enum cudaFuncAttribute attr, int value) {
    if (attr != cudaFuncAttributeMaxDynamicSharedMemorySize) return cudaSuccess;
    if (value < 0 || (size_t)value > MAX_SHARED) return fail(cudaErrorInvalidValue);
    std::lock_guard<std::mutex> g(attr_mu);
    max_dynamic_shared[func] = value;
    return cudaSuccess;
}

cudaError_t cudaDeviceGetAttribute(int *v, enum cudaDeviceAttr attr, int d) {
    (void)attr;
    if (d != 0) return fail(cudaErrorInvalidDevice);
    *v = 0;
    return cudaSuccess;
}

cudaError_t cudaDriverGetVersion(int *v) {
    *v = 0;
    return cudaSuccess;
}

cudaError_t cudaRuntimeGetVersion(int *v) {
    *v = CUDART_VERSION;
    return cudaSuccess;
}

cudaError_t cudaMemGetInfo(size_t *free_b, size_t *total_b) {
    std::lock_guard<std::mutex> g(mem_mu);
    *total_b = device_capacity();
    *free_b = *total_b - device_used;
    return cudaSuccess;
}

cudaError_t cudaMalloc(void **p, size_t bytes) {
    std::lock_guard<std::mutex> g(mem_mu);
    *p = nullptr;
    if (dead()) return fail(dead());
    if (bytes > device_capacity() - device_used) return fail(cudaErrorMemoryAllocation);
    void *m = aligned_alloc(256, (bytes + 255) / 256 * 256 + 256);
    if (!m) return fail(cudaErrorMemoryAllocation);
    device_allocs[m] = bytes;
    device_used += bytes;
    *p = m;
    return cudaSuccess;
}

cudaError_t cudaFree(void *p) {
    if (!p) return cudaSuccess;
    run_all_held(); // cudaFree synchronises the device
    std::lock_guard<std::mutex> g(mem_mu);
    auto it = device_allocs.find(p);
    if (it == device_allocs.end()) return fail(cudaErrorInvalidValue);
    device_used -= it->second;
    device_allocs.erase(it);
    frees++;
    free(p);
    return cudaSuccess;
}

cudaError_t cudaMallocHost(void **p, size_t bytes) {
    *p = aligned_alloc(256, (bytes + 255) / 256 * 256 + 256);
    if (!*p) return fail(cudaErrorMemoryAllocation);
    std::lock_guard<std::recursive_mutex> g(q_mu);
    pinned[(const char *)*p] = bytes;
    return cudaSuccess;
}

cudaError_t cudaHostAlloc(void **p, size_t bytes, unsigned flags) {
    (void)flags;
    return cudaMallocHost(p, bytes);
}

cudaError_t cudaFreeHost(void *p) {
    if (!p) return cudaSuccess;
    std::lock_guard<std::recursive_mutex> g(q_mu);
    run_all_held(); // cudaFreeHost synchronises the device
    if (!pinned.erase((const char *)p)) return fail(cudaErrorInvalidValue);
    free(p);
    return cudaSuccess;
}

cudaError_t cudaMemcpy(void *dst, const void *src, size_t n, enum cudaMemcpyKind kind) {
    (void)kind;
    if (dead()) return fail(dead());
    if (n && (!dst || !src)) return fail(cudaErrorInvalidValue);
    run_all_held(); // the legacy stream, and the host waits
    if (n) memmove(dst, src, n);
    return cudaSuccess;
}

cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t n, enum cudaMemcpyKind kind,
                            cudaStream_t s) {
    (void)kind;
    if (dead()) return fail(dead());
    if (n && (!dst || !src)) return fail(cudaErrorInvalidValue);
    if (!n) return cudaSuccess;
    std::lock_guard<std::recursive_mutex> g(q_mu);
    if (s && (is_pinned(dst) || is_pinned(src))) {
        stream_queue &q = queues[s];
        q.held.push_back(held_copy{dst, src, n, q.queued++});
        return cudaSuccess;
    }
    order_before(s);
    memmove(dst, src, n);
    return cudaSuccess;
}

cudaError_t cudaMemset(void *dst, int v, size_t n) {
    if (dead()) return fail(dead());
    if (n && !dst) return fail(cudaErrorInvalidValue);
    run_all_held();
    if (n) memset(dst, v, n);
    return cudaSuccess;
}

cudaError_t cudaMemsetAsync(void *dst, int v, size_t n, cudaStream_t s) {
    if (dead()) return fail(dead());
    if (n && !dst) return fail(cudaErrorInvalidValue);
    order_before(s);
    if (n) memset(dst, v, n);
    return cudaSuccess;
}

cudaError_t cudaDeviceSynchronize(void) {
    if (dead()) return fail(dead());
    run_all_held();
    return last_error;
}

cudaError_t cudaStreamCreate(cudaStream_t *s) {
    *s = (cudaStream_t)malloc(16);
    return cudaSuccess;
}

cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned flags) {
    (void)flags;
    return cudaStreamCreate(s);
}

cudaError_t cudaStreamDestroy(cudaStream_t s) {
    std::lock_guard<std::recursive_mutex> g(q_mu);
    run_stream(s); // its queued work completes
    queues.erase(s);
    free((void *)s);
    return cudaSuccess;
}

cudaError_t cudaStreamSynchronize(cudaStream_t s) {
    if (dead()) return fail(dead());
    order_before(s);
    return last_error;
}

cudaError_t cudaStreamWaitEvent(cudaStream_t s, cudaEvent_t e, unsigned flags) {
    (void)s, (void)flags;
    const emu_event *ev = (const emu_event *)e;
    if (ev->stream)
        run_held(ev->stream, ev->seq);
    else
        run_all_held();
    return cudaSuccess;
}

cudaError_t cudaEventCreate(cudaEvent_t *e) {
    *e = (cudaEvent_t) new emu_event{0, nullptr, 0};
    return cudaSuccess;
}

cudaError_t cudaEventCreateWithFlags(cudaEvent_t *e, unsigned flags) {
    (void)flags;
    return cudaEventCreate(e);
}

cudaError_t cudaEventDestroy(cudaEvent_t e) {
    delete (emu_event *)e;
    return cudaSuccess;
}

cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s) {
    std::lock_guard<std::recursive_mutex> g(q_mu);
    emu_event *ev = (emu_event *)e;
    ev->t = now_ms();
    ev->stream = s;
    ev->seq = s ? queues[s].queued : 0;
    return cudaSuccess;
}

cudaError_t cudaEventSynchronize(cudaEvent_t e) {
    if (dead()) return fail(dead());
    const emu_event *ev = (const emu_event *)e;
    if (ev->stream)
        run_held(ev->stream, ev->seq);
    else
        run_all_held();
    return last_error;
}

cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t a, cudaEvent_t b) {
    *ms = (float)(((emu_event *)b)->t - ((emu_event *)a)->t);
    return cudaSuccess;
}

// ---- the cuBLAS subset (column-major, as cuBLAS) ---------------------------------------------

struct emu_cublas {
    cudaStream_t stream;
    cublasMath_t math;
};

cublasStatus_t cublasCreate_v2(cublasHandle_t *h) {
    *h = (cublasHandle_t) new emu_cublas{nullptr, CUBLAS_DEFAULT_MATH};
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasDestroy_v2(cublasHandle_t h) {
    delete (emu_cublas *)h;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetStream_v2(cublasHandle_t h, cudaStream_t s) {
    ((emu_cublas *)h)->stream = s;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetMathMode(cublasHandle_t h, cublasMath_t m) {
    ((emu_cublas *)h)->math = m;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetWorkspace_v2(cublasHandle_t h, void *ws, size_t bytes) {
    (void)h, (void)ws, (void)bytes;
    return CUBLAS_STATUS_SUCCESS;
}

static CBLAS_TRANSPOSE tr(cublasOperation_t op) {
    return op == CUBLAS_OP_N ? CblasNoTrans : CblasTrans;
}

cublasStatus_t cublasSgemm_v2(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m,
                              int n, int k, const float *alpha, const float *A, int lda,
                              const float *B, int ldb, const float *beta, float *C, int ldc) {
    order_before(((emu_cublas *)h)->stream);
    if (dead()) return CUBLAS_STATUS_EXECUTION_FAILED; // a dead context
    if (m < 0 || n < 0 || k < 0) return CUBLAS_STATUS_INVALID_VALUE;
    if (m == 0 || n == 0) return CUBLAS_STATUS_SUCCESS;
    cblas_sgemm(CblasColMajor, tr(ta), tr(tb), m, n, k, *alpha, A, lda, B, ldb, *beta, C, ldc);
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSgemmStridedBatched(cublasHandle_t h, cublasOperation_t ta,
                                         cublasOperation_t tb, int m, int n, int k,
                                         const float *alpha, const float *A, int lda, long long sa,
                                         const float *B, int ldb, long long sb, const float *beta,
                                         float *C, int ldc, long long sc, int batch) {
    for (int i = 0; i < batch; i++) {
        cublasStatus_t st = cublasSgemm_v2(h, ta, tb, m, n, k, alpha, A + i * sa, lda, B + i * sb,
                                           ldb, beta, C + i * sc, ldc);
        if (st != CUBLAS_STATUS_SUCCESS) return st;
    }
    return CUBLAS_STATUS_SUCCESS;
}

// bf16 or fp32 A, B and C, fp32 accumulation: the operands widened exactly, then sgemm; a bf16
// C rounded to nearest even as it is stored (cuBLAS's epilogue rounding).
static float *widen(const void *src, cudaDataType t, size_t n) {
    float *f = (float *)malloc((n ? n : 1) * sizeof *f);
    if (!f) return nullptr;
    for (size_t i = 0; i < n; i++) {
        if (t == CUDA_R_32F) {
            f[i] = ((const float *)src)[i];
        } else {
            uint32_t b = (uint32_t)((const uint16_t *)src)[i] << 16;
            memcpy(&f[i], &b, sizeof b);
        }
    }
    return f;
}

static bool emu_gemm_type(cudaDataType t) {
    return t == CUDA_R_16BF || t == CUDA_R_32F;
}

cublasStatus_t cublasGemmEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m,
                            int n, int k, const void *alpha, const void *A, cudaDataType at,
                            int lda, const void *B, cudaDataType bt, int ldb, const void *beta,
                            void *C, cudaDataType ct, int ldc, cublasComputeType_t compute,
                            cublasGemmAlgo_t algo) {
    (void)algo;
    order_before(((emu_cublas *)h)->stream);
    if (dead()) return CUBLAS_STATUS_EXECUTION_FAILED; // a dead context
    if (!emu_gemm_type(at) || !emu_gemm_type(bt) || !emu_gemm_type(ct) ||
        compute != CUBLAS_COMPUTE_32F)
        return CUBLAS_STATUS_NOT_SUPPORTED;
    if (m < 0 || n < 0 || k < 0 || ldc < m) return CUBLAS_STATUS_INVALID_VALUE;
    if (m == 0 || n == 0) return CUBLAS_STATUS_SUCCESS;
    // column-major operands: A is lda x (ta == N ? k : m), B is ldb x (tb == N ? n : k)
    size_t na = (size_t)lda * (size_t)(ta == CUBLAS_OP_N ? k : m);
    size_t nb = (size_t)ldb * (size_t)(tb == CUBLAS_OP_N ? n : k);
    size_t nc = (size_t)ldc * (size_t)n;
    float *fa = widen(A, at, na), *fb = widen(B, bt, nb);
    float *fc = ct == CUDA_R_32F ? (float *)C : widen(C, ct, nc);
    cublasStatus_t st = CUBLAS_STATUS_ALLOC_FAILED;
    if (fa && fb && fc)
        st = cublasSgemm_v2(h, ta, tb, m, n, k, (const float *)alpha, fa, lda, fb, ldb,
                            (const float *)beta, fc, ldc);
    if (st == CUBLAS_STATUS_SUCCESS && ct == CUDA_R_16BF)
        for (int j = 0; j < n; j++)
            for (int i = 0; i < m; i++) {
                size_t e = (size_t)j * (size_t)ldc + (size_t)i;
                ((uint16_t *)C)[e] = ppd_f32_to_bf16(fc[e]);
            }
    free(fa);
    free(fb);
    if (fc != C) free(fc);
    return st;
}

} // extern "C"
