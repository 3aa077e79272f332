/* ppdock/esm.h — ESM-2 per-residue embeddings: alphabet, weights, forward pass, batch planner.
 *
 * A reimplementation of the fair-esm ESM-2 inference forward pass (docs/spec/esm2.md), fp32 on
 * the CPU: OpenBLAS sgemm for the projections, plain C + OpenMP for the rest. It reproduces
 * PyTorch fp32 (fair-esm and Hugging Face EsmModel) within ~1e-5 (see "Accuracy" below).
 *
 *   ppd_esm_model m;                       // or ppd_esm_random_init(&m, 6, 320, 20, 0)
 *   ppd_esm_load(&m, "esm2_t33_650M_UR50D.pt");
 *   ppd_esm_plan plan; ppd_esm_plan_opts o = PPD_ESM_PLAN_OPTS_DEFAULT;
 *   o.memory_budget = 8ull << 30; o.threads = 16;
 *   ppd_esm_plan_make(&plan, &m.cfg, lens, n, &o);   // sort, batch, size the workspace
 *   ppd_esm_run(&m, &plan, tokens, -1, sink, ctx);   // sink(ctx, seq, emb[n][d], n, d)
 *
 * Lower level: ppd_esm_workspace_init once, then ppd_esm_forward per batch and
 * ppd_esm_output(ws, b) for each sequence's rows. Nothing allocates inside the batch loop.
 *
 * Shapes: L layers, d embed dim, H heads, hd = d / H, F ffn width (4d), V = 33 tokens. A batch
 * holds B sequences of n_b residues; each becomes T_b = n_b + 2 token rows (<cls> .. <eos>).
 * The engine packs the batch: the projections and the FFN run on the N = sum_b T_b real rows
 * (never on padding), attention runs per sequence on its own T_b x T_b scores (what fair-esm
 * computes for the real rows of a padded batch: its pad keys get probability exactly 0).
 *
 * Accuracy, fp32, against fair-esm 2.0.0 / PyTorch 1.13 fp32 (tests/data/esm, random weights;
 * max abs over all values, tests/unit/test_esm.c): TINY (2 layers, d 64) 11 sequences of 29-269
 * residues: last layer (post-LayerNorm) 2.6e-6, raw layer 1 1.6e-6; the fair-esm padded batch of
 * 4 within 1e-4 (same as alone); window policy 2.1e-6, truncate 1.7e-6; esm2_t6_8M shape (6, 320,
 * 20) up to 269 residues: 2.8e-6. The same sequence alone and in other batches: 1.8e-6 (the
 * GEMM row blocks differ; OpenBLAS's edge kernels round differently), bit-identical for the
 * same batch on the same CPU.
 *
 * fp16 storage of embeddings (ppdock/half.h, round to nearest even): the relative error of each
 * stored value is at most 2^-11 = 4.9e-4 (half an ulp) for |x| in [6.1e-5, 65504]. Measured on
 * the last-layer goldens (215,796 values, |x| <= 3.98): max abs error 9.8e-4, max relative
 * 4.9e-4, rms relative 2.1e-4 (esm_fp16_storage_error). That is ~400x the fp32 engine's error
 * against PyTorch: fp16 storage, not the engine, dominates what downstream code sees.
 *
 * Threads: ppd_esm_workspace_init sets OpenBLAS to one thread (process-wide; the call
 * openblas_set_num_threads(1)) and the engine parallelises itself with OpenMP over `threads`:
 * GEMMs in row chunks (<= 512 rows, one single-threaded sgemm each), attention over (sequence,
 * head) pairs. One thread pool, no OpenBLAS threads spinning against OpenMP's: on 2 cores this
 * was 1.4-2.7x faster than OpenBLAS-threaded GEMMs for the 8M shape, and 7 MB smaller. Use one
 * workspace per thread that drives a model; a model is read-only after loading and can be
 * shared. See ppdock/blas.h: on CPUs OpenBLAS does not recognise it runs generic kernels.
 *
 * Speed (2 threads, 2-core Xeon VM with AVX-512, OPENBLAS_CORETYPE=SkylakeX): 8M shape, 16 DB5.5
 * chains (4,976 residues) in one batch: ~5,900 residues/s; 650M shape, one 512-residue chain:
 * ~126 residues/s (4.1 s; ~165 GFLOP/s). With OpenBLAS's fallback Prescott kernels (the
 * default on that VM): ~1,600 and ~20 residues/s.
 */
#ifndef PPDOCK_ESM_H
#define PPDOCK_ESM_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "ppdock/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- alphabet (spec §1) ---------------------------------------------------------------------
 * The 33-token ESM-2 alphabet: <cls> <pad> <eos> <unk>, L A G V S E R T I D P K Q N F Y M H W C,
 * X B U Z O . -, <null_1>, <mask>. */
enum {
    PPD_ESM_VOCAB = 33,
    PPD_ESM_TOK_CLS = 0,
    PPD_ESM_TOK_PAD = 1,
    PPD_ESM_TOK_EOS = 2,
    PPD_ESM_TOK_UNK = 3,
    PPD_ESM_TOK_X = 24,
    PPD_ESM_TOK_MASK = 32,
};

/* What a character outside the 25 residue letters LAGVSERTIDPKQNFYMHWCXBUZO becomes. fair-esm
 * raises KeyError on such characters (lowercase, J, *, digits, whitespace, ...); ppdock never
 * aborts on them. */
typedef enum {
    PPD_ESM_UNKNOWN_AS_X = 0, /* default: X (24), ESM's own "unknown residue" */
    PPD_ESM_UNKNOWN_AS_UNK,   /* <unk> (3), what the Hugging Face tokenizer does (per character) */
    PPD_ESM_UNKNOWN_ERROR,    /* PPD_ERR_FORMAT naming the first such character and position */
} ppd_esm_unknown_policy;

/* "<cls>", "L", ..., "<mask>"; NULL outside 0..32. */
const char *ppd_esm_token_name(int id);

/* Token id of one of the 25 residue letters (uppercase only), -1 for anything else. */
int ppd_esm_residue_token(int c);

/* Encode n characters of `seq` into ids[n] (no <cls>/<eos>: the engine adds them). The input is
 * taken as it is: no uppercasing, no whitespace stripping; multi-character tokens such as
 * "<mask>" are not recognised (pass token ids for those). *n_unknown (may be NULL) counts the
 * characters the policy replaced. Fails only under PPD_ESM_UNKNOWN_ERROR. */
ppd_status ppd_esm_tokenize(const char *seq, size_t n, ppd_esm_unknown_policy policy, uint8_t *ids,
                            size_t *n_unknown);

/* Already-tokenised input (e.g. graph records, where non-standard residues are <unk> = 3): every
 * id must be a residue-position token, i.e. 3..32 (<unk>, letters, '.', '-', <null_1>, <mask>);
 * <cls>, <pad>, <eos> and ids >= 33 fail with PPD_ERR_FORMAT naming the position. Ids pass
 * through the engine unchanged. */
ppd_status ppd_esm_check_tokens(const uint8_t *ids, size_t n);

/* ---- model (spec §3, §4) ----------------------------------------------------------------- */
typedef struct {
    int n_layers; /* L */
    int d;        /* embed dim */
    int n_heads;  /* H = d / head_dim */
    int head_dim; /* hd = 2 * len(inv_freq) */
    int ffn;      /* F, from fc1 (4d in every released model) */
} ppd_esm_config;

/* Pointers into the model's one float32 buffer, in this order. Per-layer tensors are stacked
 * over layers (llm.c style): wqkv[l] is the [3d, d] block of layer l. W is stored PyTorch-style
 * [out, in], so y = x W^T + b. */
typedef struct {
    float *embed;         /* [V, d]      embed_tokens.weight */
    float *ln1_w, *ln1_b; /* [L, d]      self_attn_layer_norm */
    float *wqkv;          /* [L, 3d, d]  q_proj, k_proj, v_proj weights, stacked by rows */
    float *bqkv;          /* [L, 3d]     their biases */
    float *wo, *bo;       /* [L, d, d], [L, d]  out_proj */
    float *ln2_w, *ln2_b; /* [L, d]      final_layer_norm (the pre-FFN LayerNorm) */
    float *w1, *b1;       /* [L, F, d], [L, F]  fc1 */
    float *w2, *b2;       /* [L, d, F], [L, d]  fc2 */
    float *lnf_w, *lnf_b; /* [d]         emb_layer_norm_after */
    float *inv_freq;      /* [L, hd/2]   rot_emb.inv_freq (fp16-rounded values, spec §2.3.5) */
} ppd_esm_params;

typedef struct {
    ppd_esm_config cfg;
    ppd_esm_params p;
    float *mem; /* the one parameter buffer (n_params floats) */
    size_t n_params;
    /* XXH3-64 over "ppdock-esm2-v1", the config (5 x int32 LE) and the parameter buffer in the
     * order above: the same model gives the same identity from .pt or .safetensors, fp32 or
     * fp16 storage (after widening). esm-embed keys its cache records with it. */
    uint64_t identity;
    int inv_freq_computed; /* 1: the checkpoint had no inv_freq, the spec fallback was used */
} ppd_esm_model;

/* Parameters of the core model (embedding, layers, final LayerNorm): 33d + L(12d^2 + 13d) + 2d
 * for F = 4d (spec §3: 7,408,960 for the 8M model), plus L*hd/2 for the inv_freq buffers. */
size_t ppd_esm_param_count(const ppd_esm_config *c);

/* Load a checkpoint: a fair-esm .pt (torch.save zip; "model" state dict with raw
 * "encoder.sentence_encoder." / "encoder." prefixes or stripped names), a Hugging Face
 * model.safetensors ("esm." prefix or none), or a directory holding model.safetensors (or
 * pytorch_model.bin). The shape is derived from the tensors: d from the embedding, hd from
 * inv_freq, F from fc1, L by counting layers. fp16/bf16 tensors are widened exactly. Keys the
 * encoder does not use (lm_head, contact_head, position_embeddings, position_ids, ...) are
 * ignored. Missing inv_freq: the spec fallback fp16(1 / 10000^(2i/hd)) (fp32 formula, rounded
 * to fp16, widened). Errors: PPD_ERR_IO/FORMAT from the file reader, PPD_ERR_NOTFOUND naming a
 * missing tensor, PPD_ERR_FORMAT naming a tensor of the wrong shape. */
ppd_status ppd_esm_load(ppd_esm_model *m, const char *path);

/* Deterministic random weights of shape (L, d, H) with F = 4d, bit-identical to
 * tests/ref/esm_ref.py (docs/esm-random-weights.md). PPD_ERR_USAGE for a bad shape (d % H, odd
 * hd, non-positive sizes). */
ppd_status ppd_esm_random_init(ppd_esm_model *m, int L, int d, int H, uint64_t seed);

/* The generator itself: dst[i] = offset + r_i * amplitude for tensor `name` (fair-esm stripped
 * name), i = 0..n-1. ppd_esm_random_init uses it for every tensor. */
void ppd_esm_random_fill(float *dst, size_t n, const char *name, uint64_t seed, float offset,
                         float amplitude);

/* Parse "L,d,H" (e.g. "33,1280,20"), the --random-init argument. PPD_ERR_USAGE otherwise. */
ppd_status ppd_esm_parse_shape(const char *s, int *L, int *d, int *H);

void ppd_esm_model_free(ppd_esm_model *m);

/* Recompute m->identity, after parameters were changed in place (e.g. rounded to fp16). */
ppd_status ppd_esm_model_finish(ppd_esm_model *m);

/* The spec's inv_freq when a checkpoint has none (§2.3.5): fp16(1 / 10000^(2i/hd)) from the
 * float32 formula, widened; inv_freq[hd/2]. Equal to the generator's values for hd 16..128. */
void ppd_esm_default_inv_freq(float *inv_freq, int head_dim);

/* Map a layer request to 0..L: negative values wrap like fair-esm's repr_layers (-1 = L).
 * Layer 0 is the scaled embedding, 1..L-1 the raw residual stream after that layer, L the
 * post-LayerNorm output (spec §2.4). PPD_ERR_USAGE when out of range. */
ppd_status ppd_esm_resolve_layer(const ppd_esm_config *c, int layer, int *out);

/* ---- workspace and forward pass (spec §2) ----------------------------------------------------
 * One block, planned up front. For a batch of N = sum(n_b + 2) token rows, R = sum(n_b) residue
 * rows and T = max(n_b) + 2 it holds (float32):
 *   activations  N * (2d + max(3d, F))   x, LayerNorm output, qkv / FFN hidden (c_tok = 6)
 *   outputs      R * d                    the requested layer, residue rows only
 *   scores       threads * T^2            one T x T tile per thread (alpha = 1 per tile)
 *   tables       T * hd                   RoPE cos/sin; tokens and offsets
 * each piece 64-byte aligned. */
typedef struct {
    ppd_esm_config cfg;
    int threads;
    size_t bytes; /* capacity */
    unsigned char *mem;
    /* the last forward's outputs */
    int n_seqs;
    float *out;       /* [R, d] */
    int64_t *out_off; /* [n_seqs + 1] residue row offsets */
} ppd_esm_workspace;

/* Bytes a batch of `tokens` packed rows (sum of n_b + 2), longest sequence max_len residues,
 * needs with `threads` threads. Exact, including alignment. */
size_t ppd_esm_workspace_bytes(const ppd_esm_config *c, int64_t tokens, int max_len, int threads);

/* The same for the CUDA engine (ppdock/esm_cuda.h): activations and outputs only; its attention
 * keeps no score tiles (memory linear in T) and its RoPE tables live beside the weights. bf16:
 * plus the bf16 copy of each GEMM input, which also holds RoPE's bf16 q/k/v (2 bytes x tokens x
 * max(3d, F)). */
size_t ppd_esm_device_workspace_bytes(const ppd_esm_config *c, int64_t tokens, int max_len,
                                      int bf16);

/* Bytes of the bf16 copies of the projection weights (q/k/v, out, fc1, fc2) that the CUDA
 * engine's bf16 mode keeps beside the fp32 parameters. */
size_t ppd_esm_bf16_weight_bytes(const ppd_esm_config *c);

/* Allocate (and touch) `bytes` (>= the largest ppd_esm_workspace_bytes of the batches to come).
 * threads >= 1. Sets OpenBLAS to one thread. PPD_ERR_NOMEM names the size. */
ppd_status ppd_esm_workspace_init(ppd_esm_workspace *ws, const ppd_esm_config *c, size_t bytes,
                                  int threads);
void ppd_esm_workspace_free(ppd_esm_workspace *ws);

/* One sequence of a batch: n residue token ids (ppd_esm_tokenize / ppd_esm_check_tokens). */
typedef struct {
    const uint8_t *tokens;
    int n;
} ppd_esm_seq;

/* Embed B sequences; afterwards ppd_esm_output(ws, b) holds sequence b's [n_b, d] rows of the
 * requested layer (<cls>/<eos> dropped). Runs layers 1..layer only. Errors: PPD_ERR_USAGE (bad
 * layer, B < 1, config differs from the workspace's), PPD_ERR_FORMAT (a bad token id),
 * PPD_ERR_NOMEM (the batch needs more than the workspace holds: the message gives both). */
ppd_status ppd_esm_forward(const ppd_esm_model *m, ppd_esm_workspace *ws, const ppd_esm_seq *seqs,
                           int B, int layer);

/* Sequence b's rows from the last forward; valid until the next one. */
static inline const float *ppd_esm_output(const ppd_esm_workspace *ws, int b) {
    return ws->out + ws->out_off[b] * ws->cfg.d;
}

/* OpenBLAS kernel selection: ppdock/blas.h. */

/* ---- long sequences --------------------------------------------------------------------------
 * Sequences longer than `long_limit` residues get the policy:
 *   WHOLE     embedded whole, in a batch of their own (default);
 *   WINDOW    windows of W = long_limit residues starting at 0, W-O, 2(W-O), ... while a window
 *             ends before n, then one last window at n - W; each embedded alone with its own
 *             <cls>/<eos>. In the overlap of ov residues between a window and the next (A the
 *             earlier result, B the new window), position k = 0..ov-1 gets
 *             (1 - t) A + t B with t = (k + 1) / (ov + 1) (float32 throughout, each product
 *             rounded, as tests/ref/esm_ref.py does). Requires 0 <= O < W.
 *   TRUNCATE  the first long_limit residues (fair-esm's truncation_seq_length);
 *   ERROR     not embedded; listed in plan->rejected. */
typedef enum {
    PPD_ESM_LONG_WHOLE = 0,
    PPD_ESM_LONG_WINDOW,
    PPD_ESM_LONG_TRUNCATE,
    PPD_ESM_LONG_ERROR,
} ppd_esm_long_policy;

/* Number of windows for n residues (1 when n <= W), and their starts. */
int ppd_esm_window_count(int n, int W, int O);
void ppd_esm_window_starts(int n, int W, int O, int *starts);

/* Add window rows win[len][d], which start at residue `start`, to acc[n][d]: rows before
 * prev_end (the end of what acc holds) are blended as above, the rest copied. prev_end = 0 for
 * the first window. */
void ppd_esm_blend_window(float *acc, const float *win, int start, int len, int prev_end, int d);

/* ---- batch planner (DESIGN.md rules 1 and 2, spec §5.2) -------------------------------------
 * Sequences are sorted by length and packed greedily into batches whose workspace fits the
 * memory budget (activations grow with tokens, scores with threads x T^2) and whose token rows
 * stay under max_tokens. Peak memory of a run is predicted as
 *   weights (4 P) + workspace (max over batches) + window accumulator (longest windowed n x d x
 *   4) + PPD_ESM_BASE_BYTES + threads x PPD_ESM_THREAD_BYTES (program and libraries, thread
 *   stacks, OpenBLAS packing buffers).
 * Measured peak RSS (getrusage ru_maxrss) vs predicted, random weights, OpenBLAS 0.3.21
 * SkylakeX kernels: 8M shape, 16 DB5.5 chains (4,976 residues) in one batch, 1 / 2 / 4 threads:
 * 82.2 / 84.8 / 92.4 MiB measured, 82.6 / 86.1 / 93.1 predicted; all 492 DB5.5 chains (132k
 * residues) in 4096-token batches: 92.4 / 93.3; same with a 200 MiB budget (12 batches): 198.6 /
 * 199.7, 150 MiB and 4 threads: 149.4 / 149.9; 35M shape, 400 MiB budget: 398.3 / 398.8; 650M
 * shape, one 512-residue chain: 2507.8 / 2509.0; 16 chains, 3000 MiB budget: 2663.2 / 2663.6.
 * Below ~20 MiB (toy models) the constants dominate and the prediction is high by up to 25%.
 * Memory the caller holds (the sequences, the records it writes) is not included.
 * A sequence that fits no shared batch gets a batch of its own; one that does not fit even
 * alone fails the plan with PPD_ERR_NOMEM saying how much memory it needs. */
#define PPD_ESM_BASE_BYTES   ((size_t)8 << 20)
#define PPD_ESM_THREAD_BYTES ((size_t)2 << 20)

typedef struct {
    size_t memory_budget; /* bytes for the whole process; 0 = no limit */
    int64_t max_tokens;   /* cap on sum(n + 2) per batch (fair-esm's toks_per_batch); 0 = none */
    int max_seqs;         /* cap on sequences per batch; 0 = none */
    int threads;          /* >= 1 */
    ppd_esm_long_policy long_policy;
    int long_limit; /* residues (1022: the ESM-2 training crop) */
    int overlap;    /* WINDOW overlap O */
    /* 1: plan for the CUDA engine; 2: the CUDA engine with bf16 GEMMs. memory_budget is then
     * device memory, batches are sized by ppd_esm_device_workspace_bytes, and the fixed part is
     * the device weights (with bf16, ppd_esm_bf16_weight_bytes more), the cuBLAS workspace
     * (PPD_ESM_DEVICE_BLAS_BYTES) and the RoPE tables (ppd_esm_device_table_bytes); host memory
     * is not planned. */
    int device;
} ppd_esm_plan_opts;

/* The cuBLAS workspace the CUDA engine hands cuBLAS from its arena (what cuBLAS asks for on
 * Hopper). */
#define PPD_ESM_DEVICE_BLAS_BYTES ((size_t)32 << 20)
/* RoPE cos and sin tables on the device: one per layer, positions 0..max_len+1. */
size_t ppd_esm_device_table_bytes(const ppd_esm_config *c, int max_len);

#define PPD_ESM_PLAN_OPTS_DEFAULT                                                                  \
    ((ppd_esm_plan_opts){.memory_budget = 0,                                                       \
                         .max_tokens = 16384,                                                      \
                         .max_seqs = 0,                                                            \
                         .threads = 1,                                                             \
                         .long_policy = PPD_ESM_LONG_WHOLE,                                        \
                         .long_limit = 1022,                                                       \
                         .overlap = 128,                                                           \
                         .device = 0})

/* One piece of work: residues [start, start + len) of sequence `seq`. */
typedef struct {
    int seq;
    int start, len;
    int window, n_windows; /* window number and count (0 and 1 unless windowed) */
} ppd_esm_item;

typedef struct {
    int first, count; /* items [first, first + count) */
    int64_t tokens;   /* sum(len + 2) */
    int max_len;      /* longest item, residues */
    size_t bytes;     /* ppd_esm_workspace_bytes of this batch */
} ppd_esm_batch;

typedef struct {
    ppd_esm_config cfg;
    int threads;
    int device; /* planned for the CUDA engine: opts.device (1, or 2 with bf16 GEMMs) */
    int n_seqs;
    ppd_esm_item *items; /* in execution order */
    int n_items;
    ppd_esm_batch *batches;
    int n_batches;
    int *rejected; /* sequences refused by PPD_ESM_LONG_ERROR */
    int n_rejected;
    int n_long;               /* sequences longer than long_limit (whatever the policy did) */
    int n_windowed;           /* of those, split into windows */
    int n_truncated;          /* of those, truncated */
    int64_t residues;         /* residue rows embedded (window overlaps counted twice) */
    int64_t tokens;           /* sum over items of len + 2 (what this engine computes) */
    int64_t padded_tokens;    /* sum over batches of count * (max_len + 2): a padded engine */
    int64_t max_batch_tokens; /* largest batch */
    int max_len;              /* longest item */
    int max_windowed;         /* longest windowed sequence (0 if none) */
    size_t weight_bytes, workspace_bytes, window_bytes, base_bytes;
    size_t peak_bytes; /* predicted peak resident memory of ppd_esm_run */
} ppd_esm_plan;

/* lens[n]: residues per sequence (>= 0). PPD_ERR_USAGE for bad options, PPD_ERR_NOMEM when the
 * weights or one sequence alone exceed the budget. */
ppd_status ppd_esm_plan_make(ppd_esm_plan *plan, const ppd_esm_config *c, const int *lens, int n,
                             const ppd_esm_plan_opts *o);
void ppd_esm_plan_free(ppd_esm_plan *plan);

/* Human-readable summary: batches, tokens, padding a padded engine would add, predicted peak. */
void ppd_esm_plan_print(const ppd_esm_plan *plan, FILE *f);

/* Receives each finished sequence (all windows blended), in plan order. emb is [n][d] float32,
 * valid during the call; n is the embedded length (long_limit for a truncated sequence). A
 * non-OK return stops the run with that status. */
typedef ppd_status (*ppd_esm_sink)(void *ctx, int seq, const float *emb, int n, int d);

/* Run a plan: allocates the workspace and window accumulator once, then runs every batch.
 * tokens[seq] holds the plan's lens[seq] ids. */
ppd_status ppd_esm_run(const ppd_esm_model *m, const ppd_esm_plan *plan,
                       const uint8_t *const *tokens, int layer, ppd_esm_sink sink, void *ctx);

#ifdef __cplusplus
}
#endif

#endif
