/* ESM batch planner and the run loop (DESIGN.md rules 1-2, spec esm2.md §5.2; see ppdock/esm.h). */
#include "esm_internal.h"

#include <stdlib.h>
#include <string.h>

static int item_cmp(const void *pa, const void *pb) {
    const ppd_esm_item *a = pa, *b = pb;
    if (a->len != b->len) return a->len < b->len ? -1 : 1;
    if (a->seq != b->seq) return a->seq < b->seq ? -1 : 1;
    return (a->window > b->window) - (a->window < b->window);
}

static double mib(size_t b) {
    return (double)b / (1024.0 * 1024.0);
}

void ppd_esm_plan_free(ppd_esm_plan *plan) {
    free(plan->items);
    free(plan->batches);
    free(plan->rejected);
    memset(plan, 0, sizeof *plan);
}

size_t ppd_esm_bf16_weight_bytes(const ppd_esm_config *c) {
    size_t d = (size_t)c->d, F = (size_t)c->ffn;
    return (size_t)c->n_layers * (3 * d * d + d * d + F * d + d * F) * sizeof(uint16_t);
}

size_t ppd_esm_device_table_bytes(const ppd_esm_config *c, int max_len) {
    return 2 * (size_t)c->n_layers * ((size_t)max_len + 2) * (size_t)(c->head_dim / 2) *
           sizeof(float);
}

/* Workspace of a batch on the planned engine. */
static size_t batch_bytes(const ppd_esm_config *c, const ppd_esm_plan_opts *o, int64_t tokens,
                          int max_len) {
    return o->device ? ppd_esm_device_workspace_bytes(c, tokens, max_len, o->device == 2)
                     : ppd_esm_workspace_bytes(c, tokens, max_len, o->threads);
}

ppd_status ppd_esm_plan_make(ppd_esm_plan *plan, const ppd_esm_config *c, const int *lens, int n,
                             const ppd_esm_plan_opts *o) {
    memset(plan, 0, sizeof *plan);
    PPD_TRY(ppd_esm_config_check(c));
    if (n < 0 || o->threads < 1 || o->long_limit < 1 || o->max_tokens < 0 || o->max_seqs < 0 ||
        o->device < 0 || o->device > 2)
        return ppd_fail(PPD_ERR_USAGE,
                        "ESM plan: bad options (n=%d threads=%d long_limit=%d max_tokens=%lld "
                        "max_seqs=%d device=%d)",
                        n, o->threads, o->long_limit, (long long)o->max_tokens, o->max_seqs,
                        o->device);
    if (o->long_policy == PPD_ESM_LONG_WINDOW && (o->overlap < 0 || o->overlap >= o->long_limit))
        return ppd_fail(PPD_ERR_USAGE, "ESM plan: window overlap %d must be in 0..%d (window %d)",
                        o->overlap, o->long_limit - 1, o->long_limit);
    plan->cfg = *c;
    plan->threads = o->threads;
    plan->device = o->device;
    plan->n_seqs = n;

    /* items: one per sequence, or one per window */
    int64_t n_items = 0;
    for (int i = 0; i < n; i++) {
        if (lens[i] < 0)
            return ppd_fail(PPD_ERR_USAGE, "ESM plan: sequence %d has length %d", i, lens[i]);
        n_items += lens[i] > o->long_limit && o->long_policy == PPD_ESM_LONG_WINDOW
                       ? ppd_esm_window_count(lens[i], o->long_limit, o->overlap)
                       : 1;
    }
    if (n_items > (1 << 30)) return ppd_fail(PPD_ERR_USAGE, "ESM plan: too many items");
    plan->items = malloc((size_t)(n_items ? n_items : 1) * sizeof *plan->items);
    plan->batches = malloc((size_t)(n_items ? n_items : 1) * sizeof *plan->batches);
    plan->rejected = malloc((size_t)(n ? n : 1) * sizeof *plan->rejected);
    char *alone = calloc((size_t)n + 1, 1);
    int *starts = NULL;
    if (!plan->items || !plan->batches || !plan->rejected || !alone) {
        free(alone);
        ppd_esm_plan_free(plan);
        return ppd_fail(PPD_ERR_NOMEM, "ESM plan: out of memory for %lld items",
                        (long long)n_items);
    }
    int k = 0;
    for (int i = 0; i < n; i++) {
        int len = lens[i];
        if (len <= o->long_limit) {
            plan->items[k++] = (ppd_esm_item){i, 0, len, 0, 1};
            continue;
        }
        plan->n_long++;
        switch (o->long_policy) {
        case PPD_ESM_LONG_WHOLE:
            alone[i] = 1;
            plan->items[k++] = (ppd_esm_item){i, 0, len, 0, 1};
            break;
        case PPD_ESM_LONG_TRUNCATE:
            plan->n_truncated++;
            plan->items[k++] = (ppd_esm_item){i, 0, o->long_limit, 0, 1};
            break;
        case PPD_ESM_LONG_ERROR:
            plan->rejected[plan->n_rejected++] = i;
            break;
        case PPD_ESM_LONG_WINDOW: {
            int nw = ppd_esm_window_count(len, o->long_limit, o->overlap);
            int *s = realloc(starts, (size_t)nw * sizeof *s);
            if (!s) {
                free(starts);
                free(alone);
                ppd_esm_plan_free(plan);
                return ppd_fail(PPD_ERR_NOMEM, "ESM plan: out of memory");
            }
            starts = s;
            ppd_esm_window_starts(len, o->long_limit, o->overlap, starts);
            for (int w = 0; w < nw; w++)
                plan->items[k++] = (ppd_esm_item){i, starts[w], o->long_limit, w, nw};
            plan->n_windowed++;
            if (len > plan->max_windowed) plan->max_windowed = len;
            break;
        }
        }
    }
    free(starts);
    plan->n_items = k;
    qsort(plan->items, (size_t)k, sizeof *plan->items, item_cmp);

    /* fixed memory, then greedy batches (sorted by length, so each batch's longest is its last) */
    int T_threads = o->threads;
    plan->weight_bytes = ppd_esm_param_count(c) * sizeof(float) +
                         (o->device == 2 ? ppd_esm_bf16_weight_bytes(c) : 0);
    /* the CUDA engine blends windows in host memory: not part of a device budget */
    plan->window_bytes = o->device ? 0 : (size_t)plan->max_windowed * (size_t)c->d * sizeof(float);
    /* on the device: the cuBLAS workspace and the RoPE tables of the longest item (items are
     * sorted by length, so it is the last) */
    plan->base_bytes = o->device ? PPD_ESM_DEVICE_BLAS_BYTES +
                                       ppd_esm_device_table_bytes(c, k ? plan->items[k - 1].len : 0)
                                 : PPD_ESM_BASE_BYTES + (size_t)T_threads * PPD_ESM_THREAD_BYTES;
    size_t fixed = plan->weight_bytes + plan->window_bytes + plan->base_bytes;
    size_t budget = o->memory_budget;
    if (budget && fixed > budget) {
        ppd_status st =
            o->device
                ? ppd_fail(PPD_ERR_NOMEM,
                           "ESM plan: the weights (%.1f MiB), the cuBLAS workspace and RoPE "
                           "tables (%.1f MiB) alone exceed the device memory budget (%.1f MiB)",
                           mib(plan->weight_bytes), mib(plan->base_bytes), mib(budget))
                : ppd_fail(PPD_ERR_NOMEM,
                           "ESM plan: the weights (%.1f MiB), window buffer (%.1f MiB) and base "
                           "(%.1f MiB) alone exceed the memory budget (%.1f MiB)",
                           mib(plan->weight_bytes), mib(plan->window_bytes), mib(plan->base_bytes),
                           mib(budget));
        free(alone);
        ppd_esm_plan_free(plan);
        return st;
    }
    int nb = 0;
    ppd_esm_batch *cur = NULL;
    for (int i = 0; i < k; i++) {
        const ppd_esm_item *it = &plan->items[i];
        int own = alone[it->seq];
        if (cur && !own && !alone[plan->items[cur->first].seq]) {
            int64_t tok = cur->tokens + it->len + 2;
            int ml = it->len > cur->max_len ? it->len : cur->max_len;
            size_t bytes = batch_bytes(c, o, tok, ml);
            if ((!o->max_tokens || tok <= o->max_tokens) &&
                (!o->max_seqs || cur->count < o->max_seqs) &&
                (!budget || fixed + bytes <= budget)) {
                cur->count++;
                cur->tokens = tok;
                cur->max_len = ml;
                cur->bytes = bytes;
                continue;
            }
        }
        size_t bytes = batch_bytes(c, o, it->len + 2, it->len);
        if (budget && fixed + bytes > budget) {
            ppd_status st =
                o->device
                    ? ppd_fail(PPD_ERR_NOMEM,
                               "ESM plan: sequence %d (%d residues) needs %.1f MiB of device "
                               "memory even alone (weights %.1f MiB + workspace %.1f MiB + "
                               "base %.1f MiB); the device budget is %.1f MiB. Raise the "
                               "budget (--device-mem-gb) or use a window/truncate policy for long "
                               "sequences",
                               it->seq, it->len, mib(fixed + bytes), mib(plan->weight_bytes),
                               mib(bytes), mib(plan->base_bytes), mib(budget))
                    : ppd_fail(PPD_ERR_NOMEM,
                               "ESM plan: sequence %d (%d residues) needs %.1f MiB even alone "
                               "(weights %.1f MiB + workspace %.1f MiB, of which attention "
                               "scores %.1f MiB for %d threads, + base %.1f MiB); the memory "
                               "budget is %.1f MiB. Raise the budget, use fewer threads, or a "
                               "window/truncate policy for long sequences",
                               it->seq, it->len, mib(fixed + bytes), mib(plan->weight_bytes),
                               mib(bytes),
                               mib((size_t)T_threads * (size_t)(it->len + 2) *
                                   (size_t)(it->len + 2) * sizeof(float)),
                               T_threads, mib(plan->base_bytes + plan->window_bytes), mib(budget));
            free(alone);
            ppd_esm_plan_free(plan);
            return st;
        }
        cur = &plan->batches[nb++];
        *cur = (ppd_esm_batch){i, 1, it->len + 2, it->len, bytes};
    }
    free(alone);
    plan->n_batches = nb;
    for (int b = 0; b < nb; b++) {
        const ppd_esm_batch *bt = &plan->batches[b];
        plan->tokens += bt->tokens;
        plan->padded_tokens += (int64_t)bt->count * (bt->max_len + 2);
        plan->residues += bt->tokens - 2 * (int64_t)bt->count;
        if (bt->tokens > plan->max_batch_tokens) plan->max_batch_tokens = bt->tokens;
        if (bt->max_len > plan->max_len) plan->max_len = bt->max_len;
        if (bt->bytes > plan->workspace_bytes) plan->workspace_bytes = bt->bytes;
    }
    plan->peak_bytes = fixed + plan->workspace_bytes;
    return PPD_OK;
}

void ppd_esm_plan_print(const ppd_esm_plan *plan, FILE *f) {
    fprintf(f,
            "ESM plan: %d sequences -> %d items in %d batches (%d threads); %d longer than the "
            "limit: %d windowed, %d truncated, %d rejected\n",
            plan->n_seqs, plan->n_items, plan->n_batches, plan->threads, plan->n_long,
            plan->n_windowed, plan->n_truncated, plan->n_rejected);
    double pad = plan->tokens
                     ? 100.0 * (double)(plan->padded_tokens - plan->tokens) / (double)plan->tokens
                     : 0.0;
    fprintf(f,
            "  token rows: %lld computed (packed, %lld residues); a padded engine would compute "
            "%lld (+%.1f%% padding)\n",
            (long long)plan->tokens, (long long)plan->residues, (long long)plan->padded_tokens,
            pad);
    fprintf(f, "  largest batch %lld token rows, longest item %d residues\n",
            (long long)plan->max_batch_tokens, plan->max_len);
    fprintf(f,
            "  predicted peak %.1f MiB = weights %.1f + workspace %.1f + window buffer %.1f + "
            "base %.1f\n",
            mib(plan->peak_bytes), mib(plan->weight_bytes), mib(plan->workspace_bytes),
            mib(plan->window_bytes), mib(plan->base_bytes));
}

ppd_status ppd_esm_run(const ppd_esm_model *m, const ppd_esm_plan *plan,
                       const uint8_t *const *tokens, int layer, ppd_esm_sink sink, void *ctx) {
    if (memcmp(&m->cfg, &plan->cfg, sizeof m->cfg) != 0)
        return ppd_fail(PPD_ERR_USAGE, "ESM run: the plan was made for another model shape");
    int lay;
    PPD_TRY(ppd_esm_resolve_layer(&m->cfg, layer, &lay));
    if (plan->n_batches == 0) return PPD_OK;
    int maxb = 0;
    for (int b = 0; b < plan->n_batches; b++)
        if (plan->batches[b].count > maxb) maxb = plan->batches[b].count;
    ppd_esm_workspace ws;
    PPD_TRY(ppd_esm_workspace_init(&ws, &m->cfg, plan->workspace_bytes, plan->threads));
    size_t D = (size_t)m->cfg.d;
    ppd_esm_seq *seqs = malloc((size_t)maxb * sizeof *seqs);
    float *acc = plan->max_windowed ? malloc((size_t)plan->max_windowed * D * sizeof *acc) : NULL;
    ppd_status st = PPD_OK;
    if (!seqs || (plan->max_windowed && !acc)) {
        st = ppd_fail(PPD_ERR_NOMEM, "ESM run: out of memory for the batch list / window buffer");
        goto done;
    }
    int acc_end = 0;
    for (int b = 0; b < plan->n_batches && !st; b++) {
        const ppd_esm_batch *bt = &plan->batches[b];
        const ppd_esm_item *its = plan->items + bt->first;
        for (int j = 0; j < bt->count; j++)
            seqs[j] = (ppd_esm_seq){tokens[its[j].seq] + its[j].start, its[j].len};
        st = ppd_esm_forward(m, &ws, seqs, bt->count, lay);
        for (int j = 0; j < bt->count && !st; j++) {
            const ppd_esm_item *it = &its[j];
            const float *out = ppd_esm_output(&ws, j);
            if (it->n_windows == 1) {
                st = sink(ctx, it->seq, out, it->len, m->cfg.d);
                continue;
            }
            if (it->window == 0) acc_end = 0;
            ppd_esm_blend_window(acc, out, it->start, it->len, acc_end, m->cfg.d);
            acc_end = it->start + it->len;
            if (it->window == it->n_windows - 1) st = sink(ctx, it->seq, acc, acc_end, m->cfg.d);
        }
    }
done:
    free(acc);
    free(seqs);
    ppd_esm_workspace_free(&ws);
    return st;
}
