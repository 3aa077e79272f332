// The score model's training pass on the GPU (ppdock/score_cuda.h): the CPU reference's sequence
// (lib/dock/score_pass.c) with each op replaced by its CUDA twin. Host code only; the kernels
// are the ops of lib/nn/cuda.
//
// Memory is laid out, not allocated: pass_layout() places every tensor of a pass (llm.c's
// activation struct) at an offset computed from the batch's sizes, so the bytes a batch needs
// are known before it runs (ppd_score_device_pass_bytes is the same function with no base) and
// the pass arena holds one pass at a time. The arrays the host prepares (edge lists, their
// scatter plans, edge vectors, times, the lm_ebd input's ESM columns) are one block, the pass's
// inputs, uploaded from the pinned staging buffer in one copy; the rest, the work area, starts
// at the arena's base. The copy runs on a stream of its own: the inputs of pass k + 1 go where
// pass k's pieces are not (ppd_arena_place_inputs), so they arrive while pass k computes, and
// the compute stream waits for them (an event) only when pass k + 1 starts. When the arena has
// no such room, the copy waits for pass k instead.
//
// What the host computes per batch, and why: the cross edges (their count sizes the pass, and
// the rule is the CPU's own loop), the scatter plans (a counting sort per edge list), edge
// vectors and centroids (positions are host inputs; a kernel launch per vector set would cost
// more than the arithmetic). Everything per edge and per channel runs on the device.
#include "ppdock/graph_ops.h"
#include "ppdock/progress.h"
#include "ppdock/scatter.h"
#include "ppdock/score_cuda.h"
#include "ppdock/adam_cuda.h"
#include "ppdock/so3.h"

#include "../nn/cuda/common.cuh"
#include "score_internal.h"

#include <stdlib.h>
#include <string.h>

namespace {

struct plan {
    int64_t *order, *seg; // device
    int64_t T;
};

struct edge_set {
    int64_t E;
    int D;
    float *vec, *raw, *hid, *emb, *Y; // (E, 3) staged, (E, 32 + D), (E, ns), (E, ns), (E, 9)
};

enum { MAXL = PPD_SCORE_MAX_LAYERS };

// Every tensor of one pass. The first group (stage_end bytes, the inputs) is filled on the host
// and uploaded in one copy; the rest (total bytes, the work area) only the device touches.
struct pass_tensors {
    // ---- staged
    int64_t *lig_src, *lig_dst, *rec_src, *rec_dst, *cross_l, *cross_r, *idx_l, *idx_r, *ce_graph,
        *ce_node;
    plan li_recv, li_send, li_pair, ri_recv, ri_send, ri_pair, pcl, pcr, ceg, cen, atom_l, atom_r;
    float *tn_r, *tn_l, *t, *rot_norm, *sig;
    float *lm_in_r, *lm_in_l; // (N, ns + lm): ESM columns staged, the first ns by the device
    edge_set li, ri, cr, ce;  // their vec is staged
    size_t stage_end;
    // ---- device only
    float *temb_r, *temb_l, *gemb, *emb_r, *emb_l;
    float *h_l[MAXL + 1], *h_r[MAXL + 1];
    float *cnt_li, *cnt_ri, *cnt_lc, *cnt_rc, *cnt_ce;
    float *acc[MAXL][4], *ybn[MAXL][4], *bn_mu[MAXL][4], *bn_sf[MAXL][4];
    float *z, *vec[2], *rho[2], *head_in[2], *head_hid[2], *mag[2], *scale[2], *pred;
    float *A, *H1, *Wt, *dWt, *dWt2, *msg, *dmsg, *dX, *dA; // chunk scratch
    // backward
    float *dpred, *dl[MAXL + 1], *dr[MAXL + 1], *dU[4], *d_li, *d_ri, *d_cr, *dce_emb, *tmp;
    float *dz, *dmag, *dhid, *din_h, *de, *dlm;
    size_t total;
};

// Places tensors one after another at PPD_DEVICE_ALIGN; with base NULL it only counts.
struct layout {
    unsigned char *base;
    size_t off;
    template <class T> void take(T **p, int64_t count) {
        size_t bytes = sizeof(T) * (size_t)(count > 0 ? count : 1);
        off = ppd_device_align_up(off);
        *p = base ? (T *)(base + off) : NULL;
        off += bytes;
    }
    void take_plan(plan *p, int64_t entries, int64_t T) {
        take(&p->order, entries);
        take(&p->seg, T + 1);
        p->T = T;
    }
};

struct sizes {
    int64_t Nr, Nl, Er, El, Ec;
    int B;
};

// Scatter-mean statistics widths of layer k's output: fields, and the 0e fields among them.
void bn_counts(const ppd_irreps *ir, int *fields, int *scalars) {
    *fields = *scalars = 0;
    for (int i = 0; i < ir->n; i++) {
        *fields += ir->r[i].mul;
        *scalars += ir->r[i].l == 0 && ir->r[i].p > 0 ? ir->r[i].mul : 0;
    }
}

void layout_edges(layout *L, edge_set *es, int64_t E, int D, int ns) {
    es->E = E;
    es->D = D;
    L->take(&es->raw, E * (TD + D));
    L->take(&es->hid, E * ns);
    L->take(&es->emb, E * ns);
    L->take(&es->Y, E * PPD_SH_DIM);
}

// Places the inputs from in_base and the work area from work_base (NULL, NULL: sizes only).
// Returns the pass's bytes: both parts, each rounded up to PPD_DEVICE_ALIGN.
size_t pass_layout(const ppd_score_model *m, const sizes *z, pass_tensors *t,
                   unsigned char *in_base, unsigned char *work_base) {
    const ppd_score_config *c = &m->cfg;
    int ns = c->ns, lm = c->lm_dim, Lk = c->layers, A = c->num_atom_types, W, D;
    ppd_score_widest(m, &W, &D);
    int64_t C = c->chunk_edges, Nr = z->Nr, Nl = z->Nl, Er = z->Er, El = z->El, Ec = z->Ec;
    int B = z->B;
    layout L = {in_base, 0};
    memset(t, 0, sizeof *t);
    // staged
    L.take(&t->lig_src, El), L.take(&t->lig_dst, El), L.take(&t->rec_src, Er);
    L.take(&t->rec_dst, Er), L.take(&t->cross_l, Ec), L.take(&t->cross_r, Ec);
    L.take(&t->idx_l, Nl), L.take(&t->idx_r, Nr), L.take(&t->ce_graph, Nl), L.take(&t->ce_node, Nl);
    L.take_plan(&t->li_recv, El, Nl), L.take_plan(&t->li_send, El, Nl);
    L.take_plan(&t->li_pair, 2 * El, Nl), L.take_plan(&t->ri_recv, Er, Nr);
    L.take_plan(&t->ri_send, Er, Nr), L.take_plan(&t->ri_pair, 2 * Er, Nr);
    L.take_plan(&t->pcl, Ec, Nl), L.take_plan(&t->pcr, Ec, Nr), L.take_plan(&t->ceg, Nl, B);
    L.take_plan(&t->cen, Nl, Nl), L.take_plan(&t->atom_l, Nl, A), L.take_plan(&t->atom_r, Nr, A);
    L.take(&t->tn_r, Nr), L.take(&t->tn_l, Nl), L.take(&t->t, B), L.take(&t->rot_norm, B);
    L.take(&t->sig, B);
    if (lm > 0) L.take(&t->lm_in_r, Nr * (ns + lm)), L.take(&t->lm_in_l, Nl * (ns + lm));
    L.take(&t->li.vec, 3 * El), L.take(&t->ri.vec, 3 * Er), L.take(&t->cr.vec, 3 * Ec);
    L.take(&t->ce.vec, 3 * Nl);
    t->stage_end = L.off;
    L = layout{work_base, 0};
    // forward
    L.take(&t->temb_r, Nr * TD), L.take(&t->temb_l, Nl * TD), L.take(&t->gemb, (int64_t)B * TD);
    L.take(&t->emb_r, Nr * ns), L.take(&t->emb_l, Nl * ns);
    for (int k = 0; k <= Lk; k++) {
        int d = ppd_score_feature_dim(m, k);
        L.take(&t->h_l[k], Nl * d);
        if (k < Lk) L.take(&t->h_r[k], Nr * d);
    }
    layout_edges(&L, &t->li, El, c->dist_dim, ns);
    layout_edges(&L, &t->ri, Er, c->dist_dim, ns);
    layout_edges(&L, &t->cr, Ec, c->cross_dist_dim, ns);
    layout_edges(&L, &t->ce, Nl, c->dist_dim, ns);
    L.take(&t->cnt_li, Nl), L.take(&t->cnt_ri, Nr), L.take(&t->cnt_lc, Nl);
    L.take(&t->cnt_rc, Nr), L.take(&t->cnt_ce, B);
    for (int k = 0; k < Lk; k++) {
        int dout = m->tp[k].out.dim, fields, scalars;
        bn_counts(&m->tp[k].out, &fields, &scalars);
        for (int call = 0; call < 4; call++) {
            int64_t N = call < 2 ? Nl : Nr;
            if (call >= 2 && k == Lk - 1) continue; // the last layer does not update the receptor
            L.take(&t->acc[k][call], N * dout);
            if (!c->batch_norm) continue;
            L.take(&t->ybn[k][call], N * dout);
            L.take(&t->bn_mu[k][call], scalars);
            L.take(&t->bn_sf[k][call], fields);
        }
    }
    L.take(&t->z, (int64_t)B * 12);
    for (int h = 0; h < 2; h++) {
        L.take(&t->vec[h], 3 * B), L.take(&t->rho[h], B), L.take(&t->head_in[h], B * (1 + TD));
        L.take(&t->head_hid[h], (int64_t)B * ns), L.take(&t->mag[h], B), L.take(&t->scale[h], B);
    }
    L.take(&t->pred, 6 * B);
    L.take(&t->A, C * 3 * ns), L.take(&t->H1, C * 3 * ns), L.take(&t->dA, C * 3 * ns);
    L.take(&t->Wt, C * W), L.take(&t->dWt, C * W), L.take(&t->dWt2, C * W);
    L.take(&t->msg, C * D), L.take(&t->dmsg, C * D), L.take(&t->dX, C * D);
    // backward
    L.take(&t->dpred, 6 * B);
    for (int k = 0; k <= Lk; k++) {
        int d = ppd_score_feature_dim(m, k);
        L.take(&t->dl[k], Nl * d);
        if (k < Lk) L.take(&t->dr[k], Nr * d);
    }
    if (c->batch_norm) {
        int dmax = 0;
        for (int k = 0; k < Lk; k++) dmax = m->tp[k].out.dim > dmax ? m->tp[k].out.dim : dmax;
        for (int call = 0; call < 4; call++) L.take(&t->dU[call], (call < 2 ? Nl : Nr) * dmax);
    }
    L.take(&t->d_li, El * ns), L.take(&t->d_ri, Er * ns), L.take(&t->d_cr, Ec * ns);
    L.take(&t->dce_emb, Nl * ns);
    int64_t Emax = El > Er ? El : Er;
    Emax = Ec > Emax ? Ec : Emax;
    Emax = Nl > Emax ? Nl : Emax;
    L.take(&t->tmp, Emax * ns);
    L.take(&t->dz, (int64_t)B * 12), L.take(&t->dmag, B), L.take(&t->dhid, (int64_t)B * ns);
    L.take(&t->din_h, B * (1 + TD));
    int64_t Nmax = Nr > Nl ? Nr : Nl;
    L.take(&t->de, Nmax * ns);
    if (lm > 0) L.take(&t->dlm, Nmax * (ns + lm));
    t->total = L.off;
    return ppd_device_align_up(t->stage_end) + ppd_device_align_up(t->total);
}

// The fixed part: parameters, gradients, moments, buffers, tables, cuBLAS workspace.
struct fixed_tensors {
    float *params, *grads, *adam_m, *adam_v, *buffers, *clip_scratch, *off_intra, *off_cross;
    size_t *tens_off, *tens_num;
    ppd_tp *tp; // layers + 1 (the final conv last)
    ppd_bn_field *bn_fields[MAXL];
    int bn_nfields[MAXL];
    void *blas_ws;
    size_t total;
};

size_t fixed_layout(const ppd_score_model *m, fixed_tensors *f, unsigned char *base) {
    layout L = {base, 0};
    int64_t P = (int64_t)m->nparams;
    memset(f, 0, sizeof *f);
    L.take(&f->params, P), L.take(&f->grads, P), L.take(&f->adam_m, P), L.take(&f->adam_v, P);
    L.take(&f->buffers, (int64_t)m->nbuffer_floats);
    L.take(&f->clip_scratch, m->ntensors + 2);
    L.take(&f->tens_off, m->ntensors), L.take(&f->tens_num, m->ntensors);
    L.take(&f->off_intra, 64), L.take(&f->off_cross, 64);
    L.take(&f->tp, m->cfg.layers + 1);
    for (int k = 0; k < m->cfg.layers; k++) {
        f->bn_nfields[k] = ppd_bn_fields(&m->tp[k].out, NULL);
        L.take(&f->bn_fields[k], f->bn_nfields[k]);
    }
    unsigned char *ws;
    L.take(&ws, (int64_t)PPD_CUDA_BLAS_WORKSPACE);
    f->blas_ws = ws;
    f->total = L.off;
    return L.off;
}

} // namespace

struct ppd_score_device {
    const ppd_score_model *m;
    fixed_tensors f;
    ppd_score_params p, g;                     // device pointers, the host model's layout
    float *bn_mean[2][MAXL], *bn_var[2][MAXL]; // device running statistics
    unsigned char *fixed_mem;
    ppd_device_arena pass; // one block: placed by pass_layout and ppd_arena_place_inputs
    pass_tensors t;
    sizes z;
    int have_pass; // a forward ran and its tensors are intact for backward
    int staged;    // a pass is laid out and its inputs' upload queued: the next forward's
    float pdrop;
    uint64_t seed;
    int bn_training;
    unsigned char *stage; // pinned host staging
    size_t stage_cap;
    unsigned char *in_base; // the last staged pass's inputs in the pass arena
    // the last staged pass's pieces, which the next one's upload must not overwrite while it may
    // still run: its work area [0, run_work) and its inputs
    size_t run_work;
    ppd_arena_span run_in;
    cudaStream_t stream, copy;    // compute; uploads of inputs
    cudaEvent_t queued, uploaded; // all compute work queued so far; the last upload done
    uint64_t uploads, uploads_waited;
    ppd_cuda_blas *blas;
    size_t last_pass;
    size_t measured;        // our two allocations, by the driver's count
    size_t runtime;         // the rest of the creation's: streams, cuBLAS handle, kernel code
    double stage_s, wait_s; // host seconds staging passes, and blocked on the stream
    // the stream's time in the passes' kernels and the steps (event pairs: forward, backward,
    // clip + Adam), the backward's and the step's read at the next synchronisation
    cudaEvent_t ev[6];
    int ev_pending[3];
    double busy_ms;
    // profile mode: events recorded between kinds of op since the last synchronisation, the op
    // each one ends (-1: a start, ending nothing), and the times summed per op
    int profiling, prof_n, prof_cap;
    cudaEvent_t *prof_ev;
    int *prof_op;
    double op_ms[PPD_SCORE_NOPS];
};

namespace {

// The host staging twin of a staged device pointer.
template <class T> T *H(const ppd_score_device *d, T *dev) {
    return (T *)(d->stage + ((unsigned char *)dev - d->in_base));
}

// The host model's parameter pointers moved from its buffer `from` onto `to`.
ppd_score_params rebase(const ppd_score_params *p, const float *from, float *to) {
    static_assert(sizeof(ppd_score_params) % sizeof(float *) == 0, "pointer-only struct");
    ppd_score_params q = *p;
    float **f = (float **)&q;
    for (size_t i = 0; i < sizeof q / sizeof(float *); i++)
        if (f[i]) f[i] = to + (f[i] - from);
    return q;
}

// Opens (k, 0) or closes (k, 1) event pair k on the stream.
ppd_status mark(ppd_score_device *d, int k, int end) {
    if (!d->ev[2 * k]) return PPD_OK;
    PPD_CUDA_CHECK(cudaEventRecord(d->ev[2 * k + end], d->stream));
    d->ev_pending[k] = end;
    return PPD_OK;
}

// Profile mode: event after the work queued since the last one, which was of kind `op` (-1: a
// start: the gap before it, the host's, is not counted).
ppd_status prof(ppd_score_device *d, int op) {
    if (!d->profiling) return PPD_OK;
    if (d->prof_n == d->prof_cap) { // more kinds of op in a pass than before: grow, once
        int cap = d->prof_cap ? 2 * d->prof_cap : 256;
        cudaEvent_t *ev = (cudaEvent_t *)realloc(d->prof_ev, sizeof *ev * (size_t)cap);
        if (ev) d->prof_ev = ev;
        int *op_of = (int *)realloc(d->prof_op, sizeof *op_of * (size_t)cap);
        if (op_of) d->prof_op = op_of;
        if (!ev || !op_of) return ppd_fail(PPD_ERR_NOMEM, "score device: profile events");
        for (; d->prof_cap < cap; d->prof_cap++)
            PPD_CUDA_CHECK(cudaEventCreate(&d->prof_ev[d->prof_cap]));
    }
    PPD_CUDA_CHECK(cudaEventRecord(d->prof_ev[d->prof_n], d->stream));
    d->prof_op[d->prof_n++] = op;
    return PPD_OK;
}

// Profile mode, once the stream has run everything: each event's time since the one before.
ppd_status prof_collect(ppd_score_device *d) {
    for (int i = 1; i < d->prof_n; i++) {
        if (d->prof_op[i] < 0) continue;
        float ms = 0;
        PPD_CUDA_CHECK(cudaEventElapsedTime(&ms, d->prof_ev[i - 1], d->prof_ev[i]));
        d->op_ms[d->prof_op[i]] += ms;
    }
    d->prof_n = 0;
    return PPD_OK;
}

ppd_status sync_stream(ppd_score_device *d) {
    double t0 = ppd_now_seconds();
    cudaError_t e = cudaStreamSynchronize(d->stream);
    d->wait_s += ppd_now_seconds() - t0;
    PPD_CUDA_CHECK(e);
    PPD_TRY(prof_collect(d));
    for (int k = 0; k < 3; k++) // every closed pair has run now
        if (d->ev_pending[k]) {
            float ms = 0;
            PPD_CUDA_CHECK(cudaEventElapsedTime(&ms, d->ev[2 * k], d->ev[2 * k + 1]));
            d->busy_ms += ms;
            d->ev_pending[k] = 0;
        }
    return PPD_OK;
}

} // namespace

extern "C" size_t ppd_score_device_fixed_bytes(const ppd_score_model *m) {
    fixed_tensors f;
    return fixed_layout(m, &f, NULL);
}

extern "C" size_t ppd_score_device_pass_bytes(const ppd_score_model *m, int64_t Nr, int64_t Nl,
                                              int64_t Er, int64_t El, int64_t Ec, int B) {
    sizes z = {Nr, Nl, Er, El, Ec, B};
    pass_tensors t;
    return pass_layout(m, &z, &t, NULL, NULL);
}

extern "C" size_t ppd_score_device_input_bytes(const ppd_score_model *m, int64_t Nr, int64_t Nl,
                                               int64_t Er, int64_t El, int64_t Ec, int B) {
    sizes z = {Nr, Nl, Er, El, Ec, B};
    pass_tensors t;
    pass_layout(m, &z, &t, NULL, NULL);
    return ppd_device_align_up(t.stage_end);
}

extern "C" ppd_status ppd_score_device_upload(ppd_score_device *d, const ppd_score_model *m,
                                              const float *adam_m, const float *adam_v) {
    size_t P = m->nparams * sizeof(float);
    PPD_CUDA_CHECK(cudaMemcpyAsync(d->f.params, m->params, P, cudaMemcpyHostToDevice, d->stream));
    if (m->nbuffer_floats)
        PPD_CUDA_CHECK(cudaMemcpyAsync(d->f.buffers, m->buffers, m->nbuffer_floats * sizeof(float),
                                       cudaMemcpyHostToDevice, d->stream));
    if (adam_m)
        PPD_CUDA_CHECK(cudaMemcpyAsync(d->f.adam_m, adam_m, P, cudaMemcpyHostToDevice, d->stream));
    if (adam_v)
        PPD_CUDA_CHECK(cudaMemcpyAsync(d->f.adam_v, adam_v, P, cudaMemcpyHostToDevice, d->stream));
    return sync_stream(d);
}

extern "C" ppd_status ppd_score_device_download(ppd_score_device *d, ppd_score_model *m,
                                                float *adam_m, float *adam_v, float *grads) {
    size_t P = m->nparams * sizeof(float);
    PPD_TRY(sync_stream(d));
    PPD_TRY(ppd_device_download(m->params, d->f.params, P));
    if (m->nbuffer_floats)
        PPD_TRY(ppd_device_download(m->buffers, d->f.buffers, m->nbuffer_floats * sizeof(float)));
    if (adam_m) PPD_TRY(ppd_device_download(adam_m, d->f.adam_m, P));
    if (adam_v) PPD_TRY(ppd_device_download(adam_v, d->f.adam_v, P));
    if (grads) PPD_TRY(ppd_device_download(grads, d->f.grads, P));
    return PPD_OK;
}

extern "C" ppd_status ppd_score_device_zero_grad(ppd_score_device *d) {
    PPD_CUDA_CHECK(cudaMemsetAsync(d->f.grads, 0, d->m->nparams * sizeof(float), d->stream));
    return PPD_OK;
}

extern "C" void ppd_score_device_destroy(ppd_score_device *d) {
    if (!d) return;
    if (d->blas) ppd_cuda_blas_destroy(d->blas);
    for (int k = 0; k < 6; k++)
        if (d->ev[k]) cudaEventDestroy(d->ev[k]);
    for (int k = 0; k < d->prof_cap; k++) cudaEventDestroy(d->prof_ev[k]);
    free(d->prof_ev), free(d->prof_op);
    if (d->queued) cudaEventDestroy(d->queued);
    if (d->uploaded) cudaEventDestroy(d->uploaded);
    if (d->copy) cudaStreamDestroy(d->copy);
    if (d->stream) cudaStreamDestroy(d->stream);
    if (d->stage) cudaFreeHost(d->stage);
    ppd_device_arena_destroy(&d->pass);
    ppd_device_free(d->fixed_mem);
    free(d);
}

extern "C" ppd_status ppd_score_device_create(ppd_score_device **out, const ppd_score_model *m,
                                              size_t pass_bytes, size_t staging_bytes,
                                              ppd_cuda_precision prec) {
    *out = NULL;
    ppd_score_device *d = (ppd_score_device *)calloc(1, sizeof *d);
    if (!d) return ppd_fail(PPD_ERR_NOMEM, "score device: out of host memory");
    d->m = m;
    // what the driver says our two allocations take, to set against the plan: free memory before
    // and after them, with the context made first (cudaFree(0)) so that its own memory is not
    // counted; then what the rest of the creation takes (streams, the cuBLAS handle, the kernels'
    // code), which the plan does not hold: about 67 MiB on an H200 with CUDA 13
    size_t free0 = cudaFree(0) == cudaSuccess ? ppd_cuda_free_bytes() : 0, free_mid = 0;
    ppd_status s = ppd_device_malloc((void **)&d->fixed_mem, fixed_layout(m, &d->f, NULL));
    if (!s) {
        fixed_layout(m, &d->f, d->fixed_mem);
        s = ppd_device_arena_create(&d->pass, pass_bytes);
    }
    if (!s) free_mid = ppd_cuda_free_bytes();
    if (!s) {
        cudaError_t ce = cudaStreamCreateWithFlags(&d->stream, cudaStreamNonBlocking);
        if (ce == cudaSuccess) ce = cudaStreamCreateWithFlags(&d->copy, cudaStreamNonBlocking);
        if (ce == cudaSuccess) ce = cudaEventCreateWithFlags(&d->queued, cudaEventDisableTiming);
        if (ce == cudaSuccess) ce = cudaEventCreateWithFlags(&d->uploaded, cudaEventDisableTiming);
        if (ce != cudaSuccess) s = ppd_cuda_status(ce, __FILE__, __LINE__, "streams and events");
    }
    if (!s)
        s = ppd_cuda_blas_create(&d->blas, d->stream, prec, d->f.blas_ws, PPD_CUDA_BLAS_WORKSPACE);
    if (!s && staging_bytes) { // the largest pass's inputs, pinned once (rule 1: not per pass)
        cudaError_t ce = cudaMallocHost((void **)&d->stage, staging_bytes);
        if (ce != cudaSuccess)
            s = ppd_fail_ctx(ppd_cuda_status(ce, __FILE__, __LINE__, "cudaMallocHost"),
                             "score device: %.1f MB of pinned host staging",
                             staging_bytes / 1048576.0);
        else
            d->stage_cap = staging_bytes;
    }
    for (int k = 0; !s && k < 6; k++) {
        cudaError_t ce = cudaEventCreate(&d->ev[k]);
        if (ce != cudaSuccess) s = ppd_cuda_status(ce, __FILE__, __LINE__, "cudaEventCreate");
    }
    if (s) {
        ppd_score_device_destroy(d);
        return s;
    }
    d->p = rebase(&m->p, m->params, d->f.params);
    d->g = rebase(&m->p, m->params, d->f.grads);
    for (int c = 0; c < 2; c++)
        for (int k = 0; k < m->cfg.layers; k++) {
            d->bn_mean[c][k] =
                m->bn_mean[c][k] ? d->f.buffers + (m->bn_mean[c][k] - m->buffers) : NULL;
            d->bn_var[c][k] =
                m->bn_var[c][k] ? d->f.buffers + (m->bn_var[c][k] - m->buffers) : NULL;
        }
    // tables: tensor offsets for the clipping, Gaussian offsets, tensor products, BN fields
    int L = m->cfg.layers, nt = m->ntensors;
    size_t *toff = (size_t *)malloc(sizeof(size_t) * 2 * (size_t)nt);
    ppd_tp *tps = (ppd_tp *)malloc(sizeof(ppd_tp) * (size_t)(L + 1));
    if (!toff || !tps) s = ppd_fail(PPD_ERR_NOMEM, "score device: out of host memory");
    for (int i = 0; !s && i < nt; i++) toff[i] = m->tab[i].offset, toff[nt + i] = m->tab[i].numel;
    for (int k = 0; !s && k <= L; k++) tps[k] = k < L ? m->tp[k] : m->tp_final;
    if (!s) s = ppd_device_upload(d->f.tens_off, toff, sizeof(size_t) * (size_t)nt);
    if (!s) s = ppd_device_upload(d->f.tens_num, toff + nt, sizeof(size_t) * (size_t)nt);
    if (!s) s = ppd_device_upload(d->f.off_intra, m->off_intra, sizeof m->off_intra);
    if (!s) s = ppd_device_upload(d->f.off_cross, m->off_cross, sizeof m->off_cross);
    if (!s) s = ppd_device_upload(d->f.tp, tps, sizeof(ppd_tp) * (size_t)(L + 1));
    for (int k = 0; !s && k < L; k++) {
        ppd_bn_field fl[PPD_IRREPS_MAX * PPD_TP_MULTIPLICITY_MAX];
        int n = ppd_bn_fields(&m->tp[k].out, fl);
        s = ppd_device_upload(d->f.bn_fields[k], fl, sizeof(ppd_bn_field) * (size_t)n);
    }
    free(toff), free(tps);
    // those copies ran on the legacy stream, which the pass's non-blocking stream does not wait
    // for: a pageable copy may still be in flight when cudaMemcpy returns
    if (!s) s = ppd_device_synchronize();
    if (!s) s = ppd_score_device_upload(d, m, NULL, NULL);
    if (!s) {
        size_t P = m->nparams * sizeof(float);
        PPD_CUDA_CHECK(cudaMemsetAsync(d->f.grads, 0, P, d->stream));
        PPD_CUDA_CHECK(cudaMemsetAsync(d->f.adam_m, 0, P, d->stream));
        PPD_CUDA_CHECK(cudaMemsetAsync(d->f.adam_v, 0, P, d->stream));
        s = sync_stream(d);
    }
    if (s) {
        ppd_score_device_destroy(d);
        return s;
    }
    d->measured = ppd_cuda_bytes_taken(free0, free_mid);
    d->runtime = ppd_cuda_bytes_taken(free_mid, ppd_cuda_free_bytes());
    *out = d;
    return PPD_OK;
}

extern "C" void ppd_score_device_usage_get(const ppd_score_device *d, ppd_score_device_usage *u) {
    u->fixed_bytes = d->f.total;
    u->pass_capacity = d->pass.capacity;
    u->pass_high_water = d->pass.high_water;
    u->last_pass_bytes = d->last_pass;
    u->staging_bytes = d->stage_cap;
    u->measured_bytes = d->measured;
    u->runtime_bytes = d->runtime;
    u->stage_seconds = d->stage_s;
    u->wait_seconds = d->wait_s;
    u->busy_seconds = 1e-3 * d->busy_ms;
    u->uploads = d->uploads;
    u->uploads_waited = d->uploads_waited;
    for (int k = 0; k < PPD_SCORE_NOPS; k++) u->op_ms[k] = d->op_ms[k];
}

extern "C" ppd_status ppd_score_device_profile(ppd_score_device *d, int on) {
    PPD_TRY(sync_stream(d)); // events recorded so far are counted or dropped whole
    d->profiling = on;
    return PPD_OK;
}

// ---- host preparation of one batch ---------------------------------------------------------

namespace {

ppd_status host_plan(const ppd_score_device *d, const plan *p, const int64_t *idx, int64_t E) {
    return ppd_scatter_plan(H(d, p->order), H(d, p->seg), idx, E, p->T);
}

ppd_status stage_batch(ppd_score_device *d, const ppd_score_batch *b) {
    const ppd_score_model *m = d->m;
    const ppd_score_config *c = &m->cfg;
    pass_tensors *t = &d->t;
    int ns = c->ns, lm = c->lm_dim, B = b->B;
    int64_t Nr = b->Nr, Nl = b->Nl, Er = b->Er, El = b->El, Ec = d->z.Ec;
    memcpy(H(d, t->lig_src), b->lig_src, sizeof(int64_t) * (size_t)El);
    memcpy(H(d, t->lig_dst), b->lig_dst, sizeof(int64_t) * (size_t)El);
    memcpy(H(d, t->rec_src), b->rec_src, sizeof(int64_t) * (size_t)Er);
    memcpy(H(d, t->rec_dst), b->rec_dst, sizeof(int64_t) * (size_t)Er);
    int64_t *cl = H(d, t->cross_l), *cr = H(d, t->cross_r);
    ppd_score_cross_pairs(c, b, cl, cr);
    PPD_TRY(ppd_score_atom_rows(c, Nr, b->rec_x, H(d, t->idx_r), "receptor"));
    PPD_TRY(ppd_score_atom_rows(c, Nl, b->lig_x, H(d, t->idx_l), "ligand"));
    memcpy(H(d, t->ce_graph), b->lig_batch, sizeof(int64_t) * (size_t)Nl);
    int64_t *cen = H(d, t->ce_node);
    for (int64_t n = 0; n < Nl; n++) cen[n] = n;
    PPD_TRY(host_plan(d, &t->li_recv, b->lig_src, El));
    PPD_TRY(host_plan(d, &t->li_send, b->lig_dst, El));
    PPD_TRY(ppd_scatter_plan_pairs(H(d, t->li_pair.order), H(d, t->li_pair.seg), b->lig_src,
                                   b->lig_dst, El, Nl));
    PPD_TRY(host_plan(d, &t->ri_recv, b->rec_src, Er));
    PPD_TRY(host_plan(d, &t->ri_send, b->rec_dst, Er));
    PPD_TRY(ppd_scatter_plan_pairs(H(d, t->ri_pair.order), H(d, t->ri_pair.seg), b->rec_src,
                                   b->rec_dst, Er, Nr));
    PPD_TRY(host_plan(d, &t->pcl, cl, Ec));
    PPD_TRY(host_plan(d, &t->pcr, cr, Ec));
    PPD_TRY(host_plan(d, &t->ceg, b->lig_batch, Nl));
    PPD_TRY(host_plan(d, &t->cen, cen, Nl));
    PPD_TRY(host_plan(d, &t->atom_l, H(d, t->idx_l), Nl));
    PPD_TRY(host_plan(d, &t->atom_r, H(d, t->idx_r), Nr));
    float *tn_r = H(d, t->tn_r), *tn_l = H(d, t->tn_l), *sig = H(d, t->sig);
    for (int64_t n = 0; n < Nr; n++) tn_r[n] = b->t[b->rec_batch[n]];
    for (int64_t n = 0; n < Nl; n++) tn_l[n] = b->t[b->lig_batch[n]];
    memcpy(H(d, t->t), b->t, sizeof(float) * (size_t)B);
    memcpy(H(d, t->rot_norm), b->rot_norm, sizeof(float) * (size_t)B);
    for (int g = 0; g < B; g++) sig[g] = ppd_score_sigma_tr(c, b->t[g]);
    if (lm > 0) { // the ESM columns; the device writes the embedding columns in front
        ppd_gather_rows(H(d, t->lm_in_r) + ns, ns + lm, b->rec_x + 1, 1 + lm, NULL, 0, Nr, lm);
        ppd_gather_rows(H(d, t->lm_in_l) + ns, ns + lm, b->lig_x + 1, 1 + lm, NULL, 0, Nl, lm);
    }
    // edge vectors: intra dst - src, cross receptor - ligand, centre ligand - its centroid
    ppd_score_edge_vectors(H(d, t->li.vec), b->lig_pos, b->lig_dst, b->lig_pos, b->lig_src, El);
    ppd_score_edge_vectors(H(d, t->ri.vec), b->rec_pos, b->rec_dst, b->rec_pos, b->rec_src, Er);
    ppd_score_edge_vectors(H(d, t->cr.vec), b->rec_pos, cr, b->lig_pos, cl, Ec);
    ppd_score_centre_vectors(b, H(d, t->ce.vec));
    return PPD_OK;
}

// ---- the pass on the device ------------------------------------------------------------------

struct conv_dir {
    const int64_t *recv, *send;
    const plan *precv, *psend;
    const float *hsend;
    float *acc;
    const float *dU, *cnt;
    float *dhsend;
};

struct conv_job {
    const ppd_tp *tp, *tp_dev;
    ppd_linear_params fc[2], gfc[2];
    int64_t E;
    const int64_t *first, *second;
    const plan *pA, *pB; // backward scatter of the fc input's node parts (pA a pair plan if intra)
    const float *hA, *hB;
    int dA, dB;
    float *dhA, *dhB;
    const float *emb, *Y;
    float *demb;
    int ndir;
    conv_dir dir[2];
    uint32_t site;
};

#define TRY PPD_TRY

ppd_status edge_features(ppd_score_device *d, edge_set *es, const float *temb, const int64_t *tnode,
                         const float *off, float gamma, int gauss_first,
                         const ppd_linear_params mlp[2], uint32_t site) {
    int ns = d->m->cfg.ns, R = TD + es->D;
    cudaStream_t s = d->stream;
    TRY(ppd_cuda_edge_raw_forward(es->raw, es->vec, temb, tnode, off, gamma, es->D, gauss_first,
                                  es->E, s));
    TRY(ppd_cuda_sh_forward(es->Y, es->vec, es->E, s));
    TRY(ppd_cuda_linear_forward(es->hid, es->raw, mlp[0].w, mlp[0].b, es->E, R, ns, d->blas));
    TRY(ppd_cuda_relu_forward(es->hid, es->E * ns, s));
    TRY(ppd_cuda_dropout_forward(es->hid, es->E, ns, 0, d->seed, site, d->pdrop, s));
    return ppd_cuda_linear_forward(es->emb, es->hid, mlp[1].w, mlp[1].b, es->E, ns, ns, d->blas);
}

ppd_status edge_features_backward(ppd_score_device *d, const edge_set *es, const float *demb,
                                  const ppd_linear_params gmlp[2], const ppd_linear_params mlp[2],
                                  float *dhid) {
    int ns = d->m->cfg.ns, R = TD + es->D;
    TRY(ppd_cuda_linear_backward(dhid, gmlp[1].w, gmlp[1].b, demb, es->hid, mlp[1].w, es->E, ns, ns,
                                 d->blas));
    TRY(ppd_cuda_dropout_relu_backward(dhid, es->hid, es->E * ns, d->pdrop, d->stream));
    return ppd_cuda_linear_backward(NULL, gmlp[0].w, gmlp[0].b, dhid, es->raw, mlp[0].w, es->E, R,
                                    ns, d->blas);
}

ppd_status embed_nodes(ppd_score_device *d, int64_t N, const float *temb, const int64_t *idx,
                       float *emb, float *lm_in, float *h0) {
    const ppd_score_config *c = &d->m->cfg;
    int ns = c->ns, lm = c->lm_dim;
    TRY(ppd_cuda_linear_forward(emb, temb, d->p.sigma_ebd.w, d->p.sigma_ebd.b, N, TD, ns, d->blas));
    TRY(ppd_cuda_add_table_rows(emb, d->p.atom_ebd, idx, N, ns, d->stream));
    if (lm == 0) return ppd_cuda_gather_rows(h0, ns, emb, ns, NULL, 0, N, ns, d->stream);
    TRY(ppd_cuda_gather_rows(lm_in, ns + lm, emb, ns, NULL, 0, N, ns, d->stream));
    return ppd_cuda_linear_forward(h0, lm_in, d->p.lm_ebd.w, d->p.lm_ebd.b, N, ns + lm, ns,
                                   d->blas);
}

ppd_status conv_chunk_fc(ppd_score_device *d, const conv_job *j, int64_t e0, int64_t n) {
    pass_tensors *t = &d->t;
    int ns = d->m->cfg.ns, F = 3 * ns, W = j->tp->wnum;
    TRY(ppd_cuda_gather_concat3_forward(t->A, j->emb, j->hA, j->first, j->dA, j->hB, j->second,
                                        j->dB, e0, n, ns, d->stream));
    TRY(ppd_cuda_linear_forward(t->H1, t->A, j->fc[0].w, NULL, n, F, F, d->blas));
    TRY(ppd_cuda_bias_relu_forward(t->H1, j->fc[0].b, n, F, d->stream));
    TRY(ppd_cuda_dropout_forward(t->H1, n, F, e0, d->seed, j->site, d->pdrop, d->stream));
    return ppd_cuda_linear_forward(t->Wt, t->H1, j->fc[1].w, NULL, n, F, W, d->blas);
}

ppd_status conv_forward(ppd_score_device *d, const conv_job *j) {
    pass_tensors *t = &d->t;
    int dout = j->tp->out.dim;
    int64_t C = d->m->cfg.chunk_edges;
    for (int64_t e0 = 0; e0 < j->E; e0 += C) {
        int64_t n = j->E - e0 < C ? j->E - e0 : C;
        TRY(conv_chunk_fc(d, j, e0, n));
        TRY(prof(d, PPD_SCORE_OP_CONV_FC));
        for (int k = 0; k < j->ndir; k++) {
            const conv_dir *cd = &j->dir[k];
            TRY(ppd_cuda_tp_forward(j->tp_dev, t->msg, cd->hsend, cd->send + e0,
                                    j->Y + e0 * PPD_SH_DIM, t->Wt, j->fc[1].b, n, d->stream));
            TRY(prof(d, PPD_SCORE_OP_TP));
            TRY(ppd_cuda_scatter_add_rows(cd->acc, t->msg, cd->precv->order, cd->precv->seg, e0, n,
                                          cd->precv->T, dout, d->stream));
            TRY(prof(d, PPD_SCORE_OP_SCATTER));
        }
    }
    return PPD_OK;
}

ppd_status conv_backward(ppd_score_device *d, const conv_job *j) {
    pass_tensors *t = &d->t;
    int ns = d->m->cfg.ns, F = 3 * ns, W = j->tp->wnum, din = j->tp->in.dim, dout = j->tp->out.dim;
    int64_t C = d->m->cfg.chunk_edges;
    cudaStream_t s = d->stream;
    for (int64_t e0 = 0; e0 < j->E; e0 += C) {
        int64_t n = j->E - e0 < C ? j->E - e0 : C;
        TRY(conv_chunk_fc(d, j, e0, n));
        TRY(prof(d, PPD_SCORE_OP_CONV_FC));
        for (int k = 0; k < j->ndir; k++) {
            const conv_dir *cd = &j->dir[k];
            TRY(ppd_cuda_scatter_mean_grad(t->dmsg, cd->dU, cd->cnt, cd->recv, e0, n, dout, s));
            TRY(prof(d, PPD_SCORE_OP_SCATTER));
            TRY(ppd_cuda_tp_backward(j->tp_dev, t->dX, k == 0 ? t->dWt : t->dWt2, j->gfc[1].b,
                                     t->dmsg, cd->hsend, cd->send + e0, j->Y + e0 * PPD_SH_DIM,
                                     t->Wt, j->fc[1].b, n, s));
            TRY(prof(d, PPD_SCORE_OP_TP));
            TRY(ppd_cuda_scatter_add_rows(cd->dhsend, t->dX, cd->psend->order, cd->psend->seg, e0,
                                          n, cd->psend->T, din, s));
            TRY(prof(d, PPD_SCORE_OP_SCATTER));
        }
        if (j->ndir == 2) TRY(ppd_cuda_add_rows(t->dWt, W, t->dWt2, W, n, W, s));
        float *dH1 = t->dA, *dAin = t->H1; // as the CPU: dH1 in dA's buffer, then dA in H1's
        TRY(ppd_cuda_linear_backward(dH1, j->gfc[1].w, NULL, t->dWt, t->H1, j->fc[1].w, n, F, W,
                                     d->blas));
        TRY(ppd_cuda_dropout_relu_backward(dH1, t->H1, n * F, d->pdrop, s));
        TRY(ppd_cuda_linear_backward(dAin, j->gfc[0].w, j->gfc[0].b, dH1, t->A, j->fc[0].w, n, F, F,
                                     d->blas));
        TRY(prof(d, PPD_SCORE_OP_CONV_FC));
        const plan *pB = j->pB ? j->pB : j->pA;
        TRY(ppd_cuda_gather_concat3_backward(j->demb, j->dhA, j->dA, j->dhB, j->dB, dAin,
                                             j->pA->order, j->pA->seg, j->pA->T, pB->order, pB->seg,
                                             pB->T, e0, n, ns, s));
        TRY(prof(d, PPD_SCORE_OP_SCATTER));
    }
    return PPD_OK;
}

conv_job intra_job(const ppd_tp *tp, const ppd_tp *tp_dev, int64_t E, const int64_t *src,
                   const int64_t *dst, const plan *recv, const plan *send, const plan *pair,
                   float *h, const edge_set *es, float *acc, const float *cnt) {
    conv_job j;
    memset(&j, 0, sizeof j);
    j.tp = tp, j.tp_dev = tp_dev, j.E = E, j.first = src, j.second = dst, j.pA = pair;
    j.hA = h, j.hB = h, j.dA = j.dB = tp->in.dim, j.emb = es->emb, j.Y = es->Y, j.ndir = 1;
    conv_dir *cd = &j.dir[0];
    cd->recv = src, cd->send = dst, cd->precv = recv, cd->psend = send, cd->hsend = h;
    cd->acc = acc, cd->cnt = cnt;
    return j;
}

void layer_jobs(ppd_score_device *d, int k, conv_job jobs[3], float *const acc[4]) {
    const ppd_score_model *m = d->m;
    pass_tensors *t = &d->t;
    int L = m->cfg.layers;
    const ppd_tp *tp = &m->tp[k], *tpd = d->f.tp + k;
    float *hl = t->h_l[k], *hr = t->h_r[k];
    jobs[0] = intra_job(tp, tpd, d->z.El, t->lig_src, t->lig_dst, &t->li_recv, &t->li_send,
                        &t->li_pair, hl, &t->li, acc[0], t->cnt_li);
    conv_job *x = &jobs[1];
    memset(x, 0, sizeof *x);
    x->tp = tp, x->tp_dev = tpd, x->E = d->z.Ec, x->first = t->cross_l, x->second = t->cross_r;
    x->pA = &t->pcl, x->pB = &t->pcr, x->hA = hl, x->hB = hr, x->dA = x->dB = tp->in.dim;
    x->emb = t->cr.emb, x->Y = t->cr.Y, x->ndir = k < L - 1 ? 2 : 1;
    conv_dir *c0 = &x->dir[0], *c1 = &x->dir[1];
    c0->recv = t->cross_l, c0->send = t->cross_r, c0->precv = &t->pcl, c0->psend = &t->pcr;
    c0->hsend = hr, c0->acc = acc[1], c0->cnt = t->cnt_lc;
    c1->recv = t->cross_r, c1->send = t->cross_l, c1->precv = &t->pcr, c1->psend = &t->pcl;
    c1->hsend = hl, c1->acc = acc[3], c1->cnt = t->cnt_rc;
    jobs[2] = intra_job(tp, tpd, k < L - 1 ? d->z.Er : 0, t->rec_src, t->rec_dst, &t->ri_recv,
                        &t->ri_send, &t->ri_pair, hr, &t->ri, acc[2], t->cnt_ri);
    for (int i = 0; i < 3; i++) {
        const ppd_linear_params *fc = (i == 1 ? d->p.cross_fc : d->p.intra_fc)[k],
                                *gfc = (i == 1 ? d->g.cross_fc : d->g.intra_fc)[k];
        jobs[i].site = SITE_CONV + 4 * (uint32_t)k + (uint32_t)i;
        jobs[i].fc[0] = fc[0], jobs[i].fc[1] = fc[1];
        jobs[i].gfc[0] = gfc[0], jobs[i].gfc[1] = gfc[1];
    }
}

ppd_status zero(ppd_score_device *d, float *p, int64_t n) {
    if (n > 0) PPD_CUDA_CHECK(cudaMemsetAsync(p, 0, sizeof(float) * (size_t)n, d->stream));
    return PPD_OK;
}

ppd_status final_chunk_fc(ppd_score_device *d, int64_t e0, int64_t n) {
    const ppd_score_model *m = d->m;
    pass_tensors *t = &d->t;
    int ns = m->cfg.ns, F2 = 2 * ns, W = m->tp_final.wnum, din = m->tp_final.in.dim;
    const float *h = t->h_l[m->cfg.layers];
    TRY(ppd_cuda_gather_rows(t->A, F2, t->ce.emb, ns, NULL, e0, n, ns, d->stream));
    TRY(ppd_cuda_gather_rows(t->A + ns, F2, h, din, t->ce_graph, e0, n, ns, d->stream));
    TRY(ppd_cuda_linear_forward(t->H1, t->A, d->p.final_fc[0].w, NULL, n, F2, F2, d->blas));
    TRY(ppd_cuda_bias_relu_forward(t->H1, d->p.final_fc[0].b, n, F2, d->stream));
    TRY(ppd_cuda_dropout_forward(t->H1, n, F2, e0, d->seed, SITE_FINAL, d->pdrop, d->stream));
    return ppd_cuda_linear_forward(t->Wt, t->H1, d->p.final_fc[1].w, NULL, n, F2, W, d->blas);
}

ppd_status heads_forward(ppd_score_device *d) {
    const ppd_score_model *m = d->m;
    const ppd_score_config *c = &m->cfg;
    pass_tensors *t = &d->t;
    int ns = c->ns, B = d->z.B;
    int64_t Nl = d->z.Nl, C = c->chunk_edges;
    cudaStream_t s = d->stream;
    const float *h = t->h_l[c->layers];
    TRY(ppd_cuda_degrees_forward(t->cnt_ce, t->ceg.seg, B, s));
    TRY(edge_features(d, &t->ce, t->temb_l, t->ce_node, d->f.off_intra, m->gamma_intra, 1,
                      d->p.center_edge, SITE_CENTRE_EDGES));
    TRY(zero(d, t->z, (int64_t)B * 12));
    const ppd_tp *tpd = d->f.tp + c->layers;
    for (int64_t e0 = 0; e0 < Nl; e0 += C) {
        int64_t n = Nl - e0 < C ? Nl - e0 : C;
        TRY(final_chunk_fc(d, e0, n));
        TRY(ppd_cuda_tp_forward(tpd, t->msg, h, t->ce_node + e0, t->ce.Y + e0 * PPD_SH_DIM, t->Wt,
                                d->p.final_fc[1].b, n, s));
        TRY(ppd_cuda_scatter_add_rows(t->z, t->msg, t->ceg.order, t->ceg.seg, e0, n, B, 12, s));
    }
    TRY(ppd_cuda_scatter_mean_forward(t->z, t->cnt_ce, B, 12, s));
    const ppd_linear_params *head[2] = {d->p.tr_head, d->p.rot_head};
    for (int h2 = 0; h2 < 2; h2++) {
        TRY(ppd_cuda_head_input_forward(t->vec[h2], t->rho[h2], t->head_in[h2], t->z, t->gemb, B,
                                        h2, s));
        TRY(ppd_cuda_linear_forward(t->head_hid[h2], t->head_in[h2], head[h2][0].w, head[h2][0].b,
                                    B, 1 + TD, ns, d->blas));
        TRY(ppd_cuda_relu_forward(t->head_hid[h2], (int64_t)B * ns, s));
        TRY(ppd_cuda_dropout_forward(t->head_hid[h2], B, ns, 0, d->seed, SITE_HEADS + (uint32_t)h2,
                                     d->pdrop, s));
        TRY(ppd_cuda_linear_forward(t->mag[h2], t->head_hid[h2], head[h2][1].w, head[h2][1].b, B,
                                    ns, 1, d->blas));
        TRY(ppd_cuda_head_pred_forward(
            t->pred + 3 * B * h2, t->scale[h2], t->vec[h2], t->rho[h2], t->mag[h2], t->sig,
            t->rot_norm, B, c->scale_by_sigma && h2 == 0, c->scale_by_sigma && h2 == 1, s));
    }
    return PPD_OK;
}

ppd_status device_forward(ppd_score_device *d) {
    const ppd_score_model *m = d->m;
    const ppd_score_config *c = &m->cfg;
    pass_tensors *t = &d->t;
    int L = c->layers, B = d->z.B;
    int64_t Nr = d->z.Nr, Nl = d->z.Nl;
    cudaStream_t s = d->stream;
    TRY(prof(d, -1));
    TRY(ppd_cuda_time_embedding_forward(t->temb_r, t->tn_r, Nr, s));
    TRY(ppd_cuda_time_embedding_forward(t->temb_l, t->tn_l, Nl, s));
    TRY(ppd_cuda_time_embedding_forward(t->gemb, t->t, B, s));
    TRY(embed_nodes(d, Nr, t->temb_r, t->idx_r, t->emb_r, t->lm_in_r, t->h_r[0]));
    TRY(embed_nodes(d, Nl, t->temb_l, t->idx_l, t->emb_l, t->lm_in_l, t->h_l[0]));
    TRY(prof(d, PPD_SCORE_OP_EMBED));
    TRY(edge_features(d, &t->li, t->temb_l, t->lig_src, d->f.off_intra, m->gamma_intra, 0,
                      d->p.rec_edge, SITE_LIG_EDGES));
    TRY(edge_features(d, &t->ri, t->temb_r, t->rec_src, d->f.off_intra, m->gamma_intra, 0,
                      d->p.rec_edge, SITE_REC_EDGES));
    TRY(edge_features(d, &t->cr, t->temb_l, t->cross_l, d->f.off_cross, m->gamma_cross, 0,
                      d->p.cross_edge, SITE_CROSS_EDGES));
    TRY(prof(d, PPD_SCORE_OP_EDGE_MLP));
    TRY(ppd_cuda_degrees_forward(t->cnt_li, t->li_recv.seg, Nl, s));
    TRY(ppd_cuda_degrees_forward(t->cnt_ri, t->ri_recv.seg, Nr, s));
    TRY(ppd_cuda_degrees_forward(t->cnt_lc, t->pcl.seg, Nl, s));
    TRY(ppd_cuda_degrees_forward(t->cnt_rc, t->pcr.seg, Nr, s));
    for (int k = 0; k < L; k++) {
        int din = m->tp[k].in.dim, dout = m->tp[k].out.dim, calls = k < L - 1 ? 4 : 2;
        for (int call = 0; call < calls; call++)
            TRY(zero(d, t->acc[k][call], (call < 2 ? Nl : Nr) * dout));
        TRY(prof(d, PPD_SCORE_OP_SCATTER)); // with the degrees before the first layer
        conv_job jobs[3];
        layer_jobs(d, k, jobs, t->acc[k]);
        for (int i = 0; i < 3; i++) TRY(conv_forward(d, &jobs[i]));
        const float *cnt[4] = {t->cnt_li, t->cnt_lc, t->cnt_ri, t->cnt_rc};
        float *Y[4] = {t->acc[k][0], t->acc[k][1], t->acc[k][2], t->acc[k][3]};
        for (int call = 0; call < calls; call++) {
            int64_t N = call < 2 ? Nl : Nr;
            TRY(ppd_cuda_scatter_mean_forward(t->acc[k][call], cnt[call], N, dout, s));
            TRY(prof(d, PPD_SCORE_OP_SCATTER));
            if (!c->batch_norm) continue;
            int conv = call & 1;
            Y[call] = t->ybn[k][call];
            TRY(ppd_cuda_bn_forward(d->f.bn_fields[k], d->f.bn_nfields[k], dout, t->acc[k][call],
                                    Y[call], N, d->p.bn[conv][k].w, d->p.bn[conv][k].b,
                                    d->bn_mean[conv][k], d->bn_var[conv][k], d->bn_training,
                                    t->bn_mu[k][call], t->bn_sf[k][call], s));
            TRY(prof(d, PPD_SCORE_OP_BATCH_NORM));
        }
        TRY(ppd_cuda_update_nodes_forward(t->h_l[k + 1], t->h_l[k], Nl, din, dout, Y[0], Y[1], s));
        if (k < L - 1)
            TRY(ppd_cuda_update_nodes_forward(t->h_r[k + 1], t->h_r[k], Nr, din, dout, Y[2], Y[3],
                                              s));
        TRY(prof(d, PPD_SCORE_OP_SCATTER));
    }
    TRY(heads_forward(d));
    return prof(d, PPD_SCORE_OP_HEADS);
}

ppd_status heads_backward(ppd_score_device *d, float *dh) {
    const ppd_score_model *m = d->m;
    const ppd_score_config *c = &m->cfg;
    pass_tensors *t = &d->t;
    int ns = c->ns, B = d->z.B, F2 = 2 * ns, W = m->tp_final.wnum, din = m->tp_final.in.dim;
    int64_t Nl = d->z.Nl, C = c->chunk_edges;
    cudaStream_t s = d->stream;
    const float *h = t->h_l[c->layers];
    const ppd_linear_params *head[2] = {d->p.tr_head, d->p.rot_head},
                            *ghead[2] = {d->g.tr_head, d->g.rot_head};
    for (int h2 = 0; h2 < 2; h2++) {
        const float *dpred = t->dpred + 3 * B * h2;
        TRY(ppd_cuda_head_mag_backward(t->dmag, dpred, t->vec[h2], t->rho[h2], t->scale[h2], B, s));
        TRY(ppd_cuda_linear_backward(t->dhid, ghead[h2][1].w, ghead[h2][1].b, t->dmag,
                                     t->head_hid[h2], head[h2][1].w, B, ns, 1, d->blas));
        TRY(ppd_cuda_dropout_relu_backward(t->dhid, t->head_hid[h2], (int64_t)B * ns, d->pdrop, s));
        TRY(ppd_cuda_linear_backward(t->din_h, ghead[h2][0].w, ghead[h2][0].b, t->dhid,
                                     t->head_in[h2], head[h2][0].w, B, 1 + TD, ns, d->blas));
        TRY(ppd_cuda_head_input_backward(t->dz, dpred, t->vec[h2], t->rho[h2], t->scale[h2],
                                         t->mag[h2], t->din_h, B, h2, s));
    }
    TRY(zero(d, t->dce_emb, Nl * ns));
    const ppd_tp *tpd = d->f.tp + c->layers;
    for (int64_t e0 = 0; e0 < Nl; e0 += C) {
        int64_t n = Nl - e0 < C ? Nl - e0 : C;
        TRY(final_chunk_fc(d, e0, n));
        TRY(ppd_cuda_scatter_mean_grad(t->dmsg, t->dz, t->cnt_ce, t->ce_graph, e0, n, 12, s));
        TRY(ppd_cuda_tp_backward(tpd, t->dX, t->dWt, d->g.final_fc[1].b, t->dmsg, h,
                                 t->ce_node + e0, t->ce.Y + e0 * PPD_SH_DIM, t->Wt,
                                 d->p.final_fc[1].b, n, s));
        TRY(ppd_cuda_scatter_add_rows(dh, t->dX, t->cen.order, t->cen.seg, e0, n, Nl, din, s));
        TRY(ppd_cuda_linear_backward(t->dA, d->g.final_fc[1].w, NULL, t->dWt, t->H1,
                                     d->p.final_fc[1].w, n, F2, W, d->blas));
        TRY(ppd_cuda_dropout_relu_backward(t->dA, t->H1, n * F2, d->pdrop, s));
        PPD_CUDA_CHECK(cudaMemcpyAsync(t->H1, t->dA, sizeof(float) * (size_t)(n * F2),
                                       cudaMemcpyDeviceToDevice, s));
        TRY(ppd_cuda_linear_backward(t->dA, d->g.final_fc[0].w, d->g.final_fc[0].b, t->H1, t->A,
                                     d->p.final_fc[0].w, n, F2, F2, d->blas));
        TRY(ppd_cuda_add_rows(t->dce_emb + e0 * ns, ns, t->dA, F2, n, ns, s));
        TRY(ppd_cuda_scatter_add_cols(dh, din, t->dA + ns, F2, t->ceg.order, t->ceg.seg, e0, n, B,
                                      ns, s));
    }
    return edge_features_backward(d, &t->ce, t->dce_emb, d->g.center_edge, d->p.center_edge,
                                  t->tmp);
}

ppd_status embed_backward(ppd_score_device *d, int64_t N, const float *dh0, const plan *atom,
                          const float *lm_in, const float *temb) {
    const ppd_score_config *c = &d->m->cfg;
    pass_tensors *t = &d->t;
    int ns = c->ns, lm = c->lm_dim;
    cudaStream_t s = d->stream;
    if (lm == 0) {
        TRY(ppd_cuda_gather_rows(t->de, ns, dh0, ns, NULL, 0, N, ns, s));
    } else {
        TRY(ppd_cuda_linear_backward(t->dlm, d->g.lm_ebd.w, d->g.lm_ebd.b, dh0, lm_in,
                                     d->p.lm_ebd.w, N, ns + lm, ns, d->blas));
        TRY(ppd_cuda_gather_rows(t->de, ns, t->dlm, ns + lm, NULL, 0, N, ns, s));
    }
    TRY(ppd_cuda_scatter_add_rows(d->g.atom_ebd, t->de, atom->order, atom->seg, 0, N, atom->T, ns,
                                  s));
    return ppd_cuda_linear_backward(NULL, d->g.sigma_ebd.w, d->g.sigma_ebd.b, t->de, temb,
                                    d->p.sigma_ebd.w, N, TD, ns, d->blas);
}

ppd_status device_backward(ppd_score_device *d) {
    const ppd_score_model *m = d->m;
    pass_tensors *t = &d->t;
    int L = m->cfg.layers;
    int64_t Nr = d->z.Nr, Nl = d->z.Nl;
    cudaStream_t s = d->stream;
    TRY(prof(d, -1));
    for (int k = 0; k <= L; k++) {
        int dk = ppd_score_feature_dim(m, k);
        TRY(zero(d, t->dl[k], Nl * dk));
        if (k < L) TRY(zero(d, t->dr[k], Nr * dk));
    }
    TRY(prof(d, PPD_SCORE_OP_SCATTER));
    TRY(heads_backward(d, t->dl[L]));
    TRY(prof(d, PPD_SCORE_OP_HEADS));
    int ns = m->cfg.ns;
    TRY(zero(d, t->d_li, d->z.El * ns));
    TRY(zero(d, t->d_ri, d->z.Er * ns));
    TRY(zero(d, t->d_cr, d->z.Ec * ns));
    for (int k = L - 1; k >= 0; k--) {
        int din = m->tp[k].in.dim, dout = m->tp[k].out.dim;
        TRY(ppd_cuda_add_rows(t->dl[k], din, t->dl[k + 1], dout, Nl, din, s));
        float *dr_next = k < L - 1 ? t->dr[k + 1] : NULL;
        if (dr_next) TRY(ppd_cuda_add_rows(t->dr[k], din, dr_next, dout, Nr, din, s));
        TRY(prof(d, PPD_SCORE_OP_SCATTER));
        float *const no_acc[4] = {NULL, NULL, NULL, NULL};
        conv_job jobs[3];
        layer_jobs(d, k, jobs, no_acc);
        const float *dU[4] = {t->dl[k + 1], t->dl[k + 1], dr_next, dr_next};
        if (m->cfg.batch_norm)
            for (int c = 0; c < (k < L - 1 ? 4 : 2); c++) {
                int64_t N = c < 2 ? Nl : Nr;
                int conv = c & 1;
                TRY(ppd_cuda_bn_backward(d->f.bn_fields[k], d->f.bn_nfields[k], dout, t->acc[k][c],
                                         c < 2 ? t->dl[k + 1] : dr_next, t->dU[c], N,
                                         d->p.bn[conv][k].w, d->g.bn[conv][k].w, d->g.bn[conv][k].b,
                                         d->bn_training, t->bn_mu[k][c], t->bn_sf[k][c], s));
                dU[c] = t->dU[c];
                TRY(prof(d, PPD_SCORE_OP_BATCH_NORM));
            }
        jobs[0].dir[0].dU = dU[0], jobs[0].dir[0].dhsend = t->dl[k];
        jobs[0].dhA = jobs[0].dhB = t->dl[k], jobs[0].demb = t->d_li;
        jobs[1].dir[0].dU = dU[1], jobs[1].dir[0].dhsend = t->dr[k];
        jobs[1].dir[1].dU = dU[3], jobs[1].dir[1].dhsend = t->dl[k];
        jobs[1].dhA = t->dl[k], jobs[1].dhB = t->dr[k], jobs[1].demb = t->d_cr;
        jobs[2].dir[0].dU = dU[2], jobs[2].dir[0].dhsend = t->dr[k];
        jobs[2].dhA = jobs[2].dhB = t->dr[k], jobs[2].demb = t->d_ri;
        for (int i = 0; i < 3; i++) TRY(conv_backward(d, &jobs[i]));
    }
    TRY(edge_features_backward(d, &t->li, t->d_li, d->g.rec_edge, d->p.rec_edge, t->tmp));
    TRY(edge_features_backward(d, &t->ri, t->d_ri, d->g.rec_edge, d->p.rec_edge, t->tmp));
    TRY(edge_features_backward(d, &t->cr, t->d_cr, d->g.cross_edge, d->p.cross_edge, t->tmp));
    TRY(prof(d, PPD_SCORE_OP_EDGE_MLP));
    TRY(embed_backward(d, Nl, t->dl[0], &t->atom_l, t->lm_in_l, t->temb_l));
    TRY(embed_backward(d, Nr, t->dr[0], &t->atom_r, t->lm_in_r, t->temb_r));
    return prof(d, PPD_SCORE_OP_EMBED);
}

} // namespace

extern "C" ppd_status ppd_score_device_stage(ppd_score_device *d, const ppd_score_batch *b) {
    const ppd_score_model *m = d->m;
    if (d->staged) {
        // a pass staged and never run: which of its pieces and its predecessor's are still in
        // use is no longer tracked, so let everything finish and start from an idle arena
        PPD_TRY(sync_stream(d));
        PPD_CUDA_CHECK(cudaStreamSynchronize(d->copy));
        d->run_work = 0, d->run_in = ppd_arena_span{0, 0};
    }
    d->have_pass = 0, d->staged = 0;
    PPD_TRY(ppd_score_check_batch(b));
    sizes z = {b->Nr, b->Nl, b->Er, b->El, ppd_score_cross_pairs(&m->cfg, b, NULL, NULL), b->B};
    size_t need = pass_layout(m, &z, &d->t, NULL, NULL);
    if (need > d->pass.capacity)
        return ppd_fail(PPD_ERR_NOMEM,
                        "score device: this batch (%d complexes, %lld + %lld nodes, %lld cross "
                        "edges) needs %.1f MB of pass memory, the arena has %.1f MB: raise the "
                        "device budget or lower the batch",
                        b->B, (long long)b->Nr, (long long)b->Nl, (long long)z.Ec, need / 1048576.0,
                        d->pass.capacity / 1048576.0);
    if (d->t.stage_end > d->stage_cap)
        return ppd_fail(PPD_ERR_NOMEM,
                        "score device: this batch (%d complexes, %lld + %lld nodes, %lld cross "
                        "edges) uploads %.1f MB of inputs, the pinned staging made at start-up "
                        "holds %.1f MB (ppd_score_device_create's staging_bytes)",
                        b->B, (long long)b->Nr, (long long)b->Nl, (long long)z.Ec,
                        d->t.stage_end / 1048576.0, d->stage_cap / 1048576.0);
    size_t in = ppd_device_align_up(d->t.stage_end), work = ppd_device_align_up(d->t.total), off;
    int early = ppd_arena_place_inputs(d->pass.capacity, d->run_work, d->run_in, work, in, &off);
    if (early < 0) return ppd_fail(PPD_ERR_NOMEM, "score device: pass arena (%zu bytes)", need);
    d->z = z;
    d->in_base = d->pass.base + off;
    pass_layout(m, &z, &d->t, d->in_base, d->pass.base);
    d->last_pass = need;
    double t0 = ppd_now_seconds();
    // the staging buffer is rewritten only once the last upload from it has run (it has when a
    // forward consumed it; this is a no-op wait then)
    PPD_CUDA_CHECK(cudaEventSynchronize(d->uploaded));
    PPD_TRY(stage_batch(d, b));
    d->stage_s += ppd_now_seconds() - t0;
    if (!early) { // no room beside the last pass: the upload waits for it
        PPD_CUDA_CHECK(cudaEventRecord(d->queued, d->stream));
        PPD_CUDA_CHECK(cudaStreamWaitEvent(d->copy, d->queued, 0));
    }
    PPD_CUDA_CHECK(
        cudaMemcpyAsync(d->in_base, d->stage, d->t.stage_end, cudaMemcpyHostToDevice, d->copy));
    PPD_CUDA_CHECK(cudaEventRecord(d->uploaded, d->copy));
    // the compute stream reads the inputs only after they arrived: from the next work queued on
    // it, which is this pass's forward (the last pass's backward and step are queued already)
    PPD_CUDA_CHECK(cudaStreamWaitEvent(d->stream, d->uploaded, 0));
    // only now is this the pass the next upload must avoid: had its inputs been refused above
    // (a bad atom type, say), the last pass, whose backward may still run, stays the one
    size_t held = early ? (d->run_work > work ? d->run_work : work) + d->run_in.bytes + in : need;
    if (held > d->pass.high_water) d->pass.high_water = held;
    d->run_work = work, d->run_in = ppd_arena_span{off, in};
    d->uploads++, d->uploads_waited += !early;
    d->staged = 1;
    return PPD_OK;
}

extern "C" ppd_status ppd_score_device_forward(ppd_score_device *d, const ppd_score_batch *b,
                                               float *tr_pred, float *rot_pred, int64_t *n_cross) {
    const ppd_score_model *m = d->m;
    if (!d->staged)
        PPD_TRY(ppd_score_device_stage(d, b));
    else if (b->B != d->z.B || b->Nr != d->z.Nr || b->Nl != d->z.Nl || b->Er != d->z.Er ||
             b->El != d->z.El)
        return ppd_fail(PPD_ERR_USAGE,
                        "score device: forward of another batch than the one "
                        "staged (%d complexes, %lld + %lld nodes staged)",
                        d->z.B, (long long)d->z.Nr, (long long)d->z.Nl);
    d->staged = 0;
    d->pdrop = m->training ? m->cfg.dropout : 0.0f;
    d->bn_training = m->training;
    d->seed = m->dropout_seed;
    PPD_TRY(mark(d, 0, 0));
    PPD_TRY(device_forward(d));
    PPD_TRY(mark(d, 0, 1));
    size_t pb = sizeof(float) * 3 * (size_t)b->B;
    PPD_CUDA_CHECK(cudaMemcpyAsync(tr_pred, d->t.pred, pb, cudaMemcpyDeviceToHost, d->stream));
    PPD_CUDA_CHECK(
        cudaMemcpyAsync(rot_pred, d->t.pred + 3 * b->B, pb, cudaMemcpyDeviceToHost, d->stream));
    PPD_TRY(sync_stream(d));
    if (n_cross) *n_cross = d->z.Ec;
    d->have_pass = 1;
    return PPD_OK;
}

extern "C" ppd_status ppd_score_device_backward(ppd_score_device *d, const float *dtr,
                                                const float *drot) {
    if (!d->have_pass) return ppd_fail(PPD_ERR_USAGE, "score device: backward without a forward");
    size_t pb = sizeof(float) * 3 * (size_t)d->z.B;
    // the caller's arrays are pageable host memory: these small copies complete on return
    PPD_CUDA_CHECK(cudaMemcpyAsync(d->t.dpred, dtr, pb, cudaMemcpyHostToDevice, d->stream));
    PPD_CUDA_CHECK(
        cudaMemcpyAsync(d->t.dpred + 3 * d->z.B, drot, pb, cudaMemcpyHostToDevice, d->stream));
    PPD_TRY(mark(d, 1, 0));
    PPD_TRY(device_backward(d));
    return mark(d, 1, 1);
}

extern "C" ppd_status ppd_score_device_step(ppd_score_device *d, const ppd_adam_config *c,
                                            uint64_t step, double max_norm) {
    const ppd_score_model *m = d->m;
    PPD_TRY(mark(d, 2, 0));
    PPD_TRY(prof(d, -1));
    PPD_TRY(ppd_cuda_clip_grad_norm(d->f.grads, m->nparams, d->f.tens_off, d->f.tens_num,
                                    m->ntensors, max_norm, d->f.clip_scratch, d->stream));
    PPD_TRY(ppd_cuda_adam_step(d->f.params, d->f.grads, d->f.adam_m, d->f.adam_v, m->nparams, c,
                               step, d->stream));
    PPD_TRY(prof(d, PPD_SCORE_OP_OPTIMIZER));
    return mark(d, 2, 1);
}

extern "C" ppd_status ppd_score_device_grad_norm(ppd_score_device *d, double *grad_norm) {
    float g;
    PPD_CUDA_CHECK(
        cudaMemcpyAsync(&g, d->f.clip_scratch, sizeof g, cudaMemcpyDeviceToHost, d->stream));
    PPD_TRY(sync_stream(d));
    *grad_norm = g;
    return PPD_OK;
}

extern "C" const ppd_score_device_ops ppd_score_device_cuda = {
    ppd_device_select,          ppd_score_device_fixed_bytes, ppd_score_device_pass_bytes,
    ppd_score_device_create,    ppd_score_device_destroy,     ppd_score_device_upload,
    ppd_score_device_download,  ppd_score_device_stage,       ppd_score_device_forward,
    ppd_score_device_backward,  ppd_score_device_zero_grad,   ppd_score_device_step,
    ppd_score_device_grad_norm, ppd_score_device_usage_get,   ppd_score_device_input_bytes,
    ppd_score_device_profile};
