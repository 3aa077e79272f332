// CUDA side of ppdock/device.h: device queries, the counted cudaMalloc, copies, arena create and
// destroy, and ppd_cuda_status (ppdock/cuda_check.h). The arena's bump bookkeeping is CPU code in
// lib/nn/device_arena.c.
#include "ppdock/device.h"
#include "ppdock/cuda_check.h"

#include <atomic>
#include <stdio.h>
#include <string.h>

#include <cuda_runtime_api.h>

static std::atomic<uint64_t> malloc_calls{0};

static double gib(size_t bytes) {
    return (double)bytes / (1024.0 * 1024.0 * 1024.0);
}

extern "C" int ppd_cuda_is_no_device(cudaError_t err) {
    return err == cudaErrorNoDevice || err == cudaErrorInsufficientDriver;
}

extern "C" ppd_status ppd_cuda_status(cudaError_t err, const char *file, int line,
                                      const char *what) {
    (void)cudaGetLastError(); // clear the last-error slot (sticky errors stay regardless)
    if (ppd_cuda_is_no_device(err))
        return ppd_fail(PPD_ERR_CUDA, "no CUDA device: %s (%s from %s at %s:%d)",
                        cudaGetErrorString(err), cudaGetErrorName(err), what, file, line);
    ppd_status st = err == cudaErrorMemoryAllocation ? PPD_ERR_NOMEM : PPD_ERR_CUDA;
    return ppd_fail(st, "%s:%d: %s: %s: %s", file, line, what, cudaGetErrorName(err),
                    cudaGetErrorString(err));
}

extern "C" ppd_status ppd_device_count(int *n) {
    *n = 0;
    int count = 0;
    PPD_CUDA_CHECK(cudaGetDeviceCount(&count));
    if (count <= 0) return ppd_fail(PPD_ERR_CUDA, "no CUDA device: the driver reports 0 devices");
    *n = count;
    return PPD_OK;
}

extern "C" ppd_status ppd_device_describe(int device, ppd_device_info *info) {
    memset(info, 0, sizeof *info);
    int count;
    PPD_TRY(ppd_device_count(&count));
    if (device < 0 || device >= count)
        return ppd_fail(PPD_ERR_USAGE, "CUDA device %d does not exist (%d device%s)", device, count,
                        count == 1 ? "" : "s");
    cudaDeviceProp p;
    PPD_CUDA_CHECK(cudaGetDeviceProperties(&p, device));
    info->index = device;
    snprintf(info->name, sizeof info->name, "%s", p.name);
    info->cc_major = p.major;
    info->cc_minor = p.minor;
    info->sm_count = p.multiProcessorCount;
    info->total_bytes = p.totalGlobalMem;
    int clock_khz = 0;
    if (cudaDeviceGetAttribute(&clock_khz, cudaDevAttrMemoryClockRate, device) == cudaSuccess)
        info->peak_gbs = 2.0 * clock_khz * 1e3 * (p.memoryBusWidth / 8.0) / 1e9; // double data rate
    (void)cudaGetLastError();
    PPD_CUDA_CHECK(cudaDriverGetVersion(&info->driver_version));
    PPD_CUDA_CHECK(cudaRuntimeGetVersion(&info->runtime_version));
    int cur;
    PPD_CUDA_CHECK(cudaGetDevice(&cur));
    PPD_CUDA_CHECK(cudaSetDevice(device));
    size_t free_b = 0, total_b = 0;
    cudaError_t err = cudaMemGetInfo(&free_b, &total_b);
    cudaSetDevice(cur);
    if (err != cudaSuccess) return ppd_cuda_status(err, __FILE__, __LINE__, "cudaMemGetInfo");
    info->free_bytes = free_b;
    return PPD_OK;
}

extern "C" ppd_status ppd_device_select(int device, ppd_device_info *info) {
    PPD_TRY(ppd_device_describe(device, info)); // checks that it exists
    PPD_CUDA_CHECK(cudaSetDevice(device));
    return PPD_OK;
}

// "device 0 (NVIDIA H100 80GB HBM3): 78.52 GiB free of 79.11 GiB" into buf, best effort.
static void describe_memory(char *buf, size_t cap) {
    int dev = -1;
    size_t free_b = 0, total_b = 0;
    cudaDeviceProp p;
    if (cudaGetDevice(&dev) != cudaSuccess || cudaMemGetInfo(&free_b, &total_b) != cudaSuccess ||
        cudaGetDeviceProperties(&p, dev) != cudaSuccess) {
        (void)cudaGetLastError();
        snprintf(buf, cap, "free memory unknown (cudaMemGetInfo failed)");
        return;
    }
    snprintf(buf, cap, "device %d (%s): %.2f GiB free of %.2f GiB (%zu of %zu bytes)", dev, p.name,
             gib(free_b), gib(total_b), free_b, total_b);
}

extern "C" ppd_status ppd_device_malloc(void **ptr, size_t bytes) {
    *ptr = NULL;
    malloc_calls.fetch_add(1, std::memory_order_relaxed);
    cudaError_t err = cudaMalloc(ptr, bytes);
    if (err == cudaSuccess) return PPD_OK;
    *ptr = NULL;
    if (err != cudaErrorMemoryAllocation)
        return ppd_cuda_status(err, __FILE__, __LINE__, "cudaMalloc");
    (void)cudaGetLastError();
    char mem[512];
    describe_memory(mem, sizeof mem);
    return ppd_fail(PPD_ERR_NOMEM, "cudaMalloc of %zu bytes (%.2f GiB) failed: %s", bytes,
                    gib(bytes), mem);
}

extern "C" void ppd_device_free(void *ptr) {
    if (ptr && cudaFree(ptr) != cudaSuccess) (void)cudaGetLastError();
}

extern "C" uint64_t ppd_device_malloc_count(void) {
    return malloc_calls.load(std::memory_order_relaxed);
}

extern "C" ppd_status ppd_device_upload(void *dst_device, const void *src_host, size_t bytes) {
    PPD_CUDA_CHECK(cudaMemcpy(dst_device, src_host, bytes, cudaMemcpyHostToDevice));
    return PPD_OK;
}

extern "C" ppd_status ppd_device_download(void *dst_host, const void *src_device, size_t bytes) {
    PPD_CUDA_CHECK(cudaMemcpy(dst_host, src_device, bytes, cudaMemcpyDeviceToHost));
    return PPD_OK;
}

extern "C" ppd_status ppd_device_synchronize(void) {
    PPD_CUDA_CHECK(cudaDeviceSynchronize());
    return PPD_OK;
}

extern "C" ppd_status ppd_device_arena_create(ppd_device_arena *a, size_t capacity) {
    memset(a, 0, sizeof *a);
    a->device = -1;
    if (capacity == 0) return ppd_fail(PPD_ERR_USAGE, "device arena: a budget of 0 bytes");
    int dev;
    PPD_CUDA_CHECK(cudaGetDevice(&dev));
    size_t free_b = 0, total_b = 0;
    PPD_CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
    if (capacity > free_b) {
        char mem[512];
        describe_memory(mem, sizeof mem);
        return ppd_fail(PPD_ERR_NOMEM,
                        "device arena: budget of %zu bytes (%.2f GiB) does not fit: %s; lower "
                        "the device memory budget or free the GPU",
                        capacity, gib(capacity), mem);
    }
    void *p;
    ppd_status st = ppd_device_malloc(&p, capacity);
    if (st) return ppd_fail_ctx(st, "device arena: budget of %zu bytes", capacity);
    a->base = (unsigned char *)p;
    a->capacity = capacity;
    a->device = dev;
    a->owned = 1;
    return PPD_OK;
}

extern "C" void ppd_device_arena_destroy(ppd_device_arena *a) {
    if (a->owned) ppd_device_free(a->base);
    memset(a, 0, sizeof *a);
    a->device = -1;
}
