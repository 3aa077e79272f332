// ESM-2 on the GPU: the weights and RoPE tables uploaded once, one device arena for everything
// the plan needs, and the batch loop (ppdock/esm_cuda.h). The layer sequence is the CPU's
// layer_forward (lib/esm/forward.c) with each op replaced by its CUDA twin.
#include "ppdock/esm_cuda.h"
#include "ppdock/progress.h"

#include "../nn/cuda/common.cuh"
#include "esm_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

extern "C" const char *const ppd_cuda_esm_op_names[PPD_ESM_NOPS] = {
    "layernorm", "qkv_gemm", "rope", "attention", "out_gemm",
    "residual",  "fc1_gemm", "gelu", "fc2_gemm"};

namespace {

struct device_engine {
    const ppd_esm_config *c;
    ppd_esm_params p;   // device pointers, the host model's layout
    float *cosv, *sinv; // [L, T_cap, hd/2] each
    int T_cap;
    cudaStream_t stream;
    ppd_cuda_blas *blas;
    // bf16 mode: the projection weights' bf16 copies, stacked over layers like the fp32 ones
    int bf16;
    uint16_t *wqkv16, *wo16, *w116, *w216;
    bool fp32_attention; // bf16 mode without the tensor-core attention (ppd_cuda_esm_opts)
    // profile mode: an event before a layer and after each of its ops, the op each one ends,
    // and the times summed per op (NULL events: not profiling)
    cudaEvent_t prof_ev[16];
    int prof_op[16];
    double *op_ms;
};

// The host model's parameter pointers, rebased from its buffer onto `dev`.
ppd_esm_params rebase(const ppd_esm_model *m, float *dev) {
    ppd_esm_params p = m->p;
    float **fields[] = {&p.embed, &p.ln1_w, &p.ln1_b, &p.wqkv,    &p.bqkv, &p.wo,
                        &p.bo,    &p.ln2_w, &p.ln2_b, &p.w1,      &p.b1,   &p.w2,
                        &p.b2,    &p.lnf_w, &p.lnf_b, &p.inv_freq};
    for (float **f : fields) *f = dev + (*f - m->mem);
    return p;
}

// out (N, M) = inp (N, K) W^T: fp32 (or TF32) cuBLAS, or in bf16 mode in16 (N, K) times the
// weights' bf16 copy, in16 having been written by the op before (layernorm_op, attention_op,
// gelu_op), which then ignores inp. to16: in bf16 mode, the output in bf16 (into out's memory),
// for fc1, whose only reader is the GELU: half the bytes written and read. (Not for the q/k/v
// projection: rounding q and k before their bias and RoPE, and again after, raised the 650M
// shape's rms error against the CPU by 16% on the emulation, fc1 by 3%.)
ppd_status project(const device_engine *e, float *out, const float *inp, const uint16_t *in16,
                   const float *W, const uint16_t *W16, int64_t N, int K, int M, bool to16) {
    if (!e->bf16) return ppd_cuda_esm_matmul_forward(out, inp, W, N, K, M, e->blas);
    if (to16)
        return ppd_cuda_esm_matmul_bf16_forward_to_bf16((uint16_t *)out, in16, W16, N, K, M,
                                                        e->blas);
    return ppd_cuda_esm_matmul_bf16_forward(out, in16, W16, N, K, M, e->blas);
}

// The attention block's buffers. bf16 mode with the tensor-core attention ("tc"): RoPE writes
// q/k/v in bf16 over in16 (the projection input it came from is consumed; the attention would
// round them to bf16 itself, so the bits are the same), the attention its bf16 output over big
// (the fp32 q/k/v are consumed), and the out projection reads it there and writes u. Otherwise
// RoPE works in place in big, the attention writes u (and in bf16 mode its bf16 copy in16), and
// the out projection writes big.
bool tc_attention(const device_engine *e) {
    return e->bf16 && !e->fp32_attention && ppd_cuda_esm_attention_bf16_supported(e->c->head_dim);
}

// The ops that feed a projection. In bf16 mode they write its bf16 input (w->in16, or big for
// the tc attention) directly, rounded as ppd_cuda_cast_bf16 rounds, so no fp32 copy goes
// through memory; otherwise w->u (LayerNorm, attention) or w->big in place (GELU).
ppd_status layernorm_op(const device_engine *e, const ppd_esm_layout *w, const float *lw,
                        const float *lb, int64_t N) {
    int d = e->c->d;
    if (e->bf16)
        return ppd_cuda_esm_layernorm_forward_to_bf16(w->in16, w->x, lw, lb, N, d, e->stream);
    return ppd_cuda_esm_layernorm_forward(w->u, w->x, lw, lb, N, d, e->stream);
}

// What follows a residual update: a LayerNorm feeding a projection (lw != NULL, to_u 0: written
// where layernorm_op writes), the final LayerNorm (to_u 1: fp32 into u, whatever the mode), or
// nothing (lw == NULL: the run stops at this layer's raw residual stream). y may be u.
ppd_status residual_op(const device_engine *e, const ppd_esm_layout *w, const float *y,
                       const float *rb, const float *lw, const float *lb, int to_u, int64_t N) {
    int d = e->c->d;
    if (!lw) return ppd_cuda_esm_residual_forward(w->x, y, rb, N, d, e->stream);
    if (e->bf16 && !to_u)
        return ppd_cuda_esm_residual_layernorm_forward_to_bf16(w->in16, w->x, y, rb, lw, lb, N, d,
                                                               e->stream);
    return ppd_cuda_esm_residual_layernorm_forward(w->u, w->x, y, rb, lw, lb, N, d, e->stream);
}

ppd_status rope_op(const device_engine *e, const ppd_esm_layout *w, const float *bqkv, int B,
                   float qscale, const float *cosv, const float *sinv, int64_t N) {
    const ppd_esm_config *c = e->c;
    if (tc_attention(e))
        return ppd_cuda_esm_qkv_rope_forward_to_bf16(w->in16, w->big, bqkv, w->tok_off, B, c->d,
                                                     c->head_dim, qscale, cosv, sinv, N, e->stream);
    return ppd_cuda_esm_qkv_rope_forward(w->big, bqkv, w->tok_off, B, c->d, c->head_dim, qscale,
                                         cosv, sinv, N, e->stream);
}

ppd_status attention_op(const device_engine *e, const ppd_esm_layout *w, int B, int64_t N,
                        int T_max) {
    const ppd_esm_config *c = e->c;
    if (tc_attention(e))
        return ppd_cuda_esm_attention_bf16_forward_to_bf16(
            (uint16_t *)w->big, w->in16, w->tok_off, B, c->n_heads, c->head_dim, T_max, e->stream);
    PPD_TRY(ppd_cuda_esm_attention_forward(w->u, w->big, w->tok_off, B, c->n_heads, c->head_dim,
                                           T_max, e->stream));
    return e->bf16 ? ppd_cuda_cast_bf16(w->in16, w->u, N * c->d, e->stream) : PPD_OK;
}

// In bf16 mode fc1 wrote its output in bf16 (project's to16).
ppd_status gelu_op(const device_engine *e, const ppd_esm_layout *w, const float *b1, int64_t N) {
    int F = e->c->ffn;
    if (e->bf16)
        return ppd_cuda_esm_bias_gelu_forward_bf16(w->in16, (const uint16_t *)w->big, b1, N, F,
                                                   e->stream);
    return ppd_cuda_esm_bias_gelu_forward(w->big, b1, N, F, e->stream);
}

// Profile mode: event n marks the end of op `op` (n = 0: the layer's start).
ppd_status prof_mark(device_engine *e, int n, int op) {
    if (!e->op_ms) return PPD_OK;
    PPD_CUDA_CHECK(cudaEventRecord(e->prof_ev[n], e->stream));
    e->prof_op[n] = op;
    return PPD_OK;
}

// Profile mode: wait for the layer's last op and add each op's time.
ppd_status prof_collect(device_engine *e, int n) {
    if (!e->op_ms) return PPD_OK;
    PPD_CUDA_CHECK(cudaEventSynchronize(e->prof_ev[n - 1]));
    for (int i = 1; i < n; i++) {
        float ms = 0;
        PPD_CUDA_CHECK(cudaEventElapsedTime(&ms, e->prof_ev[i - 1], e->prof_ev[i]));
        e->op_ms[e->prof_op[i]] += ms;
    }
    return PPD_OK;
}

// Layer l of the `lay` the run computes. Each residual update carries the LayerNorm after it
// (residual_op): the layer's second, then the next layer's first or, after the model's last
// layer, the final one (into u); so only layer 0 runs its first LayerNorm alone.
ppd_status layer_forward(device_engine *e, int l, int lay, const ppd_esm_layout *w, int B,
                         int64_t N, int T_max) {
    const ppd_esm_config *c = e->c;
    const ppd_esm_params *p = &e->p;
    int d = c->d, F = c->ffn, hd = c->head_dim;
    size_t D = (size_t)d, li = (size_t)l, h2 = (size_t)hd / 2;
    float qscale = (float)pow((double)hd, -0.5);
    const float *cosv = e->cosv + li * (size_t)e->T_cap * h2;
    const float *sinv = e->sinv + li * (size_t)e->T_cap * h2;

    int n = 0; // profile events marked
#define OP(op, expr)                                                                               \
    do {                                                                                           \
        PPD_TRY(expr);                                                                             \
        PPD_TRY(prof_mark(e, n++, op));                                                            \
    } while (0)
    PPD_TRY(prof_mark(e, n++, 0));
    // the out projection's input and output (tc_attention)
    bool tc = tc_attention(e);
    const uint16_t *att16 = tc ? (const uint16_t *)w->big : w->in16;
    float *att_out = tc ? w->u : w->big;

    if (l == 0) OP(PPD_ESM_OP_LAYERNORM, layernorm_op(e, w, p->ln1_w, p->ln1_b, N));
    OP(PPD_ESM_OP_QKV_GEMM, project(e, w->big, w->u, w->in16, p->wqkv + li * 3 * D * D,
                                    e->wqkv16 + li * 3 * D * D, N, d, 3 * d, false));
    OP(PPD_ESM_OP_ROPE, rope_op(e, w, p->bqkv + li * 3 * D, B, qscale, cosv, sinv, N));
    OP(PPD_ESM_OP_ATTENTION, attention_op(e, w, B, N, T_max));
    OP(PPD_ESM_OP_OUT_GEMM,
       project(e, att_out, w->u, att16, p->wo + li * D * D, e->wo16 + li * D * D, N, d, d, false));
    OP(PPD_ESM_OP_RESIDUAL,
       residual_op(e, w, att_out, p->bo + li * D, p->ln2_w + li * D, p->ln2_b + li * D, 0, N));
    OP(PPD_ESM_OP_FC1_GEMM, project(e, w->big, w->u, w->in16, p->w1 + li * (size_t)F * D,
                                    e->w116 + li * (size_t)F * D, N, d, F, true));
    OP(PPD_ESM_OP_GELU, gelu_op(e, w, p->b1 + li * (size_t)F, N));
    OP(PPD_ESM_OP_FC2_GEMM, project(e, w->u, w->big, w->in16, p->w2 + li * D * (size_t)F,
                                    e->w216 + li * D * (size_t)F, N, F, d, false));
    // the LayerNorm after the layer: the next layer's first, the final one, or none
    bool last = l + 1 == c->n_layers;
    const float *nw = l + 1 < lay ? p->ln1_w + (li + 1) * D : last ? p->lnf_w : NULL;
    const float *nb = l + 1 < lay ? p->ln1_b + (li + 1) * D : last ? p->lnf_b : NULL;
    OP(PPD_ESM_OP_RESIDUAL, residual_op(e, w, w->u, p->b2 + li * D, nw, nb, last, N));
#undef OP
    return prof_collect(e, n);
}

// Pinned host staging for one batch: the packed tokens and offsets going up, the residue rows
// coming back.
struct staging {
    unsigned char *mem;
    size_t bytes;
    uint8_t *tok;
    int64_t *tok_off, *out_off;
    float *div, *out;
};

size_t align256(size_t n) {
    return (n + 255) & ~(size_t)255;
}

size_t staging_carve(int64_t N, int64_t R, int B, int d, unsigned char *base, staging *st) {
    size_t off = 0;
#define CARVE(field, type, count)                                                                  \
    do {                                                                                           \
        if (base) st->field = (type *)(base + off);                                                \
        off += align256((size_t)(count) * sizeof(type));                                           \
    } while (0)
    CARVE(tok, uint8_t, N);
    CARVE(tok_off, int64_t, B + 1);
    CARVE(out_off, int64_t, B + 1);
    CARVE(div, float, B);
    CARVE(out, float, (size_t)R *(size_t)d);
#undef CARVE
    return off;
}

// What a run allocates in host memory for a plan, piece by piece: the run allocates these and
// ppd_cuda_esm_host_bytes adds them up.
struct host_sizes {
    int maxb;       // the most sequences of one batch
    int64_t maxR;   // the most residue rows of one batch
    size_t staging; // bytes of one pinned staging slot (the run makes two)
    size_t table;   // floats of one RoPE table (cos or sin) over all layers
    size_t seqs;    // bytes of the batch list
    size_t acc;     // bytes of the windows' accumulator (0: no windowed sequence)
};

host_sizes host_layout(const ppd_esm_config *c, const ppd_esm_plan *plan) {
    host_sizes h = {};
    for (int b = 0; b < plan->n_batches; b++) {
        const ppd_esm_batch *bt = &plan->batches[b];
        if (bt->count > h.maxb) h.maxb = bt->count;
        if (bt->tokens - 2 * bt->count > h.maxR) h.maxR = bt->tokens - 2 * bt->count;
    }
    h.staging = staging_carve(plan->max_batch_tokens, h.maxR, h.maxb, c->d, NULL, NULL);
    h.table = (size_t)c->n_layers * (size_t)(plan->max_len + 2) * (size_t)(c->head_dim / 2);
    h.seqs = (size_t)h.maxb * sizeof(ppd_esm_seq);
    h.acc = (size_t)plan->max_windowed * (size_t)c->d * sizeof(float);
    return h;
}

// A batch queued on the device whose rows have not reached the sink yet.
struct batch_out {
    int bi, B;
    int64_t N;
    const ppd_esm_item *its;
};

// Wait for batch p's download, then hand its sequences to the sink (windows blended into acc).
ppd_status finish_batch(const ppd_esm_plan *plan, const batch_out *p, const staging *sg,
                        cudaEvent_t downloaded, int d, float *acc, int *acc_end, ppd_esm_sink sink,
                        void *ctx, ppd_cuda_esm_report *rep) {
    cudaError_t ce = cudaEventSynchronize(downloaded);
    if (ce)
        return ppd_fail_ctx(ppd_cuda_status(ce, __FILE__, __LINE__, "ESM forward"),
                            "ESM CUDA run: batch %d of %d (%d sequences, %lld token rows)",
                            p->bi + 1, plan->n_batches, p->B, (long long)p->N);
    rep->tokens += p->N;
    double t0 = ppd_now_seconds();
    ppd_status s = PPD_OK;
    for (int j = 0; j < p->B && !s; j++) {
        const ppd_esm_item *it = &p->its[j];
        const float *out = sg->out + sg->out_off[j] * (int64_t)d;
        if (it->n_windows == 1) {
            s = sink(ctx, it->seq, out, it->len, d);
            continue;
        }
        if (it->window == 0) *acc_end = 0;
        ppd_esm_blend_window(acc, out, it->start, it->len, *acc_end, d);
        *acc_end = it->start + it->len;
        if (it->window == it->n_windows - 1) s = sink(ctx, it->seq, acc, *acc_end, d);
    }
    rep->sink_seconds += ppd_now_seconds() - t0;
    return s;
}

} // namespace

extern "C" size_t ppd_cuda_esm_host_bytes(const ppd_esm_config *c, const ppd_esm_plan *plan) {
    if (plan->n_batches == 0) return 0;
    host_sizes h = host_layout(c, plan);
    return 2 * h.staging + 2 * h.table * sizeof(float) + h.seqs + h.acc;
}

extern "C" ppd_status ppd_cuda_esm_run(const ppd_esm_model *m, const ppd_esm_plan *plan,
                                       const uint8_t *const *tokens, int layer, ppd_esm_sink sink,
                                       void *ctx, const ppd_cuda_esm_opts *o,
                                       ppd_cuda_esm_report *report) {
    const ppd_esm_config *c = &m->cfg;
    if (memcmp(c, &plan->cfg, sizeof *c) != 0)
        return ppd_fail(PPD_ERR_USAGE, "ESM run: the plan was made for another model shape");
    int bf16 = o->precision == PPD_CUDA_BF16;
    if (plan->device != (bf16 ? 2 : 1))
        return ppd_fail(PPD_ERR_USAGE,
                        "ESM CUDA run: the plan was made for %s; %s precision needs a plan made "
                        "with opts.device = %d",
                        plan->device == 0   ? "the CPU engine"
                        : plan->device == 2 ? "bf16 GEMMs"
                                            : "fp32/tf32 GEMMs",
                        ppd_cuda_precision_name(o->precision), bf16 ? 2 : 1);
    int lay;
    PPD_TRY(ppd_esm_resolve_layer(c, layer, &lay));
    ppd_cuda_esm_report rep;
    memset(&rep, 0, sizeof rep);
    if (plan->n_batches == 0) {
        if (report) *report = rep;
        return PPD_OK;
    }
    host_sizes hs = host_layout(c, plan);

    double t_setup = ppd_now_seconds();
    ppd_device_info info;
    PPD_CUDA_CHECK(cudaSetDevice(o->device));
    PPD_TRY(ppd_device_describe(o->device, &info));
    snprintf(rep.device_name, sizeof rep.device_name, "%s", info.name);

    // Everything on the device in one arena: weights, tables, cuBLAS workspace, the largest batch.
    // Each piece is one aligned arena allocation; the plan counts the bytes, the arena adds at
    // most PPD_DEVICE_ALIGN per piece.
    enum { PIECES = 6 };
    size_t capacity = plan->peak_bytes + PIECES * PPD_DEVICE_ALIGN;
    rep.planned_bytes = capacity;
    // the driver's count of the arena, against the plan; then of the stream and cuBLAS handle,
    // which the plan does not hold (about 67 MiB on an H200 with CUDA 13)
    size_t free0 = ppd_cuda_free_bytes();
    ppd_device_arena arena;
    PPD_TRY(ppd_device_arena_create(&arena, capacity));
    size_t free_mid = ppd_cuda_free_bytes();
    rep.measured_bytes = ppd_cuda_bytes_taken(free0, free_mid);

    device_engine e;
    memset(&e, 0, sizeof e);
    e.c = c;
    e.T_cap = plan->max_len + 2;
    e.bf16 = bf16;
    e.fp32_attention = o->fp32_attention != 0;
    // two pinned staging slots: the host packs batch b + 1 and sinks batch b - 1 while the GPU
    // works on batch b (its uploads, kernels and download are queued on e.stream)
    staging st[2];
    memset(st, 0, sizeof st);
    cudaEvent_t downloaded[2] = {NULL, NULL};
    size_t h2 = (size_t)c->head_dim / 2, table = hs.table;
    float *host_tables = NULL, *dmem = NULL;
    void *blas_ws = NULL, *ws = NULL;
    ppd_esm_seq *seqs = NULL;
    float *acc = NULL;
    ppd_status s = PPD_OK;
#define STEP(expr)                                                                                 \
    do {                                                                                           \
        if (!s) s = (expr);                                                                        \
    } while (0)
    STEP(ppd_device_arena_alloc_st(&arena, m->n_params * sizeof(float), (void **)&dmem));
    if (bf16)
        STEP(ppd_device_arena_alloc_st(&arena, ppd_esm_bf16_weight_bytes(c), (void **)&e.wqkv16));
    STEP(ppd_device_arena_alloc_st(&arena, table * sizeof(float), (void **)&e.cosv));
    STEP(ppd_device_arena_alloc_st(&arena, table * sizeof(float), (void **)&e.sinv));
    STEP(ppd_device_arena_alloc_st(&arena, PPD_ESM_DEVICE_BLAS_BYTES, &blas_ws));
    STEP(ppd_device_arena_alloc_st(&arena, plan->workspace_bytes, &ws));
    if (!s) {
        cudaError_t ce = cudaStreamCreateWithFlags(&e.stream, cudaStreamNonBlocking);
        if (ce) s = ppd_cuda_status(ce, __FILE__, __LINE__, "cudaStreamCreateWithFlags");
    }
    STEP(ppd_cuda_blas_create(&e.blas, e.stream, o->precision, blas_ws, PPD_ESM_DEVICE_BLAS_BYTES));
    for (int k = 0; o->profile && !s && k < 16; k++) {
        cudaError_t ce = cudaEventCreate(&e.prof_ev[k]);
        if (ce) s = ppd_cuda_status(ce, __FILE__, __LINE__, "cudaEventCreate (profile)");
    }
    if (o->profile) e.op_ms = rep.op_ms;
    if (s) goto done;
    rep.runtime_bytes = ppd_cuda_bytes_taken(free_mid, ppd_cuda_free_bytes());

    // weights: one copy of the host buffer; tables: the CPU's own cosf/sinf values
    STEP(ppd_device_upload(dmem, m->mem, m->n_params * sizeof(float)));
    // a pageable upload may still be in flight when cudaMemcpy returns, and e.stream does not
    // wait for the legacy stream: finish it before the stream reads the weights
    STEP(ppd_device_synchronize());
    e.p = rebase(m, dmem);
    if (bf16 && !s) { // the projection weights' bf16 copies, made once on the device
        size_t L = (size_t)c->n_layers, D = (size_t)c->d, F = (size_t)c->ffn;
        e.wo16 = e.wqkv16 + L * 3 * D * D;
        e.w116 = e.wo16 + L * D * D;
        e.w216 = e.w116 + L * F * D;
        STEP(ppd_cuda_cast_bf16(e.wqkv16, e.p.wqkv, (int64_t)(L * 3 * D * D), e.stream));
        STEP(ppd_cuda_cast_bf16(e.wo16, e.p.wo, (int64_t)(L * D * D), e.stream));
        STEP(ppd_cuda_cast_bf16(e.w116, e.p.w1, (int64_t)(L * F * D), e.stream));
        STEP(ppd_cuda_cast_bf16(e.w216, e.p.w2, (int64_t)(L * D * F), e.stream));
    }
    host_tables = (float *)malloc(2 * table * sizeof(float));
    rep.host_bytes += 2 * table * sizeof(float);
    if (!host_tables) {
        s = ppd_fail(PPD_ERR_NOMEM, "ESM CUDA run: out of host memory for the RoPE tables");
        goto done;
    }
    for (int l = 0; l < c->n_layers; l++)
        ppd_esm_rope_table(host_tables + (size_t)l * e.T_cap * h2,
                           host_tables + table + (size_t)l * e.T_cap * h2,
                           m->p.inv_freq + (size_t)l * h2, e.T_cap, c->head_dim);
    STEP(ppd_device_upload(e.cosv, host_tables, table * sizeof(float)));
    STEP(ppd_device_upload(e.sinv, host_tables + table, table * sizeof(float)));
    STEP(ppd_device_synchronize());

    for (int k = 0; k < 2 && !s; k++) {
        st[k].bytes = hs.staging;
        rep.pinned_bytes += st[k].bytes;
        rep.host_bytes += st[k].bytes;
        cudaError_t ce = cudaMallocHost((void **)&st[k].mem, st[k].bytes);
        if (!ce) ce = cudaEventCreateWithFlags(&downloaded[k], cudaEventDisableTiming);
        if (ce) {
            if (st[k].mem && !downloaded[k]) cudaFreeHost(st[k].mem);
            st[k].mem = NULL;
            s = ppd_cuda_status(ce, __FILE__, __LINE__, "pinned staging and its event");
            break;
        }
        staging_carve(plan->max_batch_tokens, hs.maxR, hs.maxb, c->d, st[k].mem, &st[k]);
    }
    if (s) goto done;
    seqs = (ppd_esm_seq *)malloc(hs.seqs);
    rep.host_bytes += hs.seqs;
    acc = hs.acc ? (float *)malloc(hs.acc) : NULL;
    rep.host_bytes += acc ? hs.acc : 0;
    if (!seqs || (plan->max_windowed && !acc)) {
        s = ppd_fail(PPD_ERR_NOMEM, "ESM CUDA run: out of host memory for the batch list");
        goto done;
    }

    {
        double t0 = ppd_now_seconds();
        rep.setup_seconds = t0 - t_setup;
        int acc_end = 0;
        batch_out pending = {-1, 0, 0, NULL};
        for (int bi = 0; bi < plan->n_batches && !s; bi++) {
            const ppd_esm_batch *bt = &plan->batches[bi];
            const ppd_esm_item *its = plan->items + bt->first;
            int B = bt->count;
            staging *sg = &st[bi % 2];
            for (int j = 0; j < B; j++)
                seqs[j] = (ppd_esm_seq){tokens[its[j].seq] + its[j].start, its[j].len};
            int64_t N, R;
            int maxn;
            STEP(ppd_esm_batch_check(seqs, B, &N, &R, &maxn));
            if (s) break;
            ppd_esm_layout w;
            size_t need = ppd_esm_carve(c, N, R, B, maxn + 2, 0, bf16, NULL, NULL);
            if (need > plan->workspace_bytes) {
                s = ppd_fail(PPD_ERR_NOMEM,
                             "ESM CUDA run: batch %d needs %zu workspace bytes, "
                             "the plan has %zu",
                             bi, need, plan->workspace_bytes);
                break;
            }
            ppd_esm_carve(c, N, R, B, maxn + 2, 0, bf16, (unsigned char *)ws, &w);
            ppd_esm_pack(seqs, B, sg->tok, sg->tok_off, sg->out_off, sg->div);
            cudaStream_t sm = e.stream;
            // the four uploads come from pinned memory, in stream order before the kernels
            cudaError_t ce = cudaMemcpyAsync(w.tok, sg->tok, (size_t)N, cudaMemcpyHostToDevice, sm);
            if (!ce)
                ce = cudaMemcpyAsync(w.tok_off, sg->tok_off, (size_t)(B + 1) * sizeof(int64_t),
                                     cudaMemcpyHostToDevice, sm);
            if (!ce)
                ce = cudaMemcpyAsync(w.out_off, sg->out_off, (size_t)(B + 1) * sizeof(int64_t),
                                     cudaMemcpyHostToDevice, sm);
            if (!ce)
                ce = cudaMemcpyAsync(w.div, sg->div, (size_t)B * sizeof(float),
                                     cudaMemcpyHostToDevice, sm);
            if (ce) {
                s = ppd_cuda_status(ce, __FILE__, __LINE__, "batch upload");
                break;
            }
            STEP(ppd_cuda_esm_embed_forward(w.x, w.tok, w.tok_off, w.div, B, e.p.embed, c->d, N,
                                            sm));
            for (int l = 0; l < lay && !s; l++) STEP(layer_forward(&e, l, lay, &w, B, N, maxn + 2));
            // rep[L] is post-LayerNorm (the last layer's residual update wrote it to u); the
            // norm is per row
            const float *src = lay == c->n_layers ? w.u : w.x;
            STEP(ppd_cuda_esm_gather_residues(w.out, src, w.tok_off, w.out_off, B, c->d, R, sm));
            if (!s) {
                ce = cudaMemcpyAsync(sg->out, w.out, (size_t)R * (size_t)c->d * sizeof(float),
                                     cudaMemcpyDeviceToHost, sm);
                if (!ce) ce = cudaEventRecord(downloaded[bi % 2], sm);
                if (ce) s = ppd_cuda_status(ce, __FILE__, __LINE__, "batch download");
            }
            if (s) {
                s = ppd_fail_ctx(s, "ESM CUDA run: batch %d of %d (%d sequences, %lld token rows)",
                                 bi + 1, plan->n_batches, B, (long long)N);
                break;
            }
            // while this batch runs, the previous one goes to the sink
            if (pending.bi >= 0)
                STEP(finish_batch(plan, &pending, &st[pending.bi % 2], downloaded[pending.bi % 2],
                                  c->d, acc, &acc_end, sink, ctx, &rep));
            pending = (batch_out){bi, B, N, its};
        }
        if (pending.bi >= 0)
            STEP(finish_batch(plan, &pending, &st[pending.bi % 2], downloaded[pending.bi % 2], c->d,
                              acc, &acc_end, sink, ctx, &rep));
        rep.gpu_seconds = ppd_now_seconds() - t0;
    }
#undef STEP
done:
    rep.arena_high = arena.high_water;
    if (report) *report = rep;
    free(acc);
    free(seqs);
    free(host_tables);
    if (e.stream) cudaStreamSynchronize(e.stream); // no copy may still use the staging
    for (int k = 0; k < 2; k++) {
        if (st[k].mem) cudaFreeHost(st[k].mem);
        if (downloaded[k]) cudaEventDestroy(downloaded[k]);
    }
    for (int k = 0; k < 16; k++)
        if (e.prof_ev[k]) cudaEventDestroy(e.prof_ev[k]);
    ppd_cuda_blas_destroy(e.blas);
    if (e.stream) cudaStreamDestroy(e.stream);
    ppd_device_arena_destroy(&arena);
    return s;
}
