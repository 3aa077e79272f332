/* ESM-2: tokenizer, fp16 conversions, random weights, loading, forward parity with the fair-esm
 * goldens of tests/data/esm (tests/ref/esm_ref.py), batch invariance, long-sequence policies and
 * the batch planner. Every test name starts with esm_. */
#include "../../lib/esm/esm_internal.h"
#include "../test.h"

#include "ppdock/blas.h"
#include "ppdock/esm.h"
#include "ppdock/half.h"
#include "ppdock/kernels/esm_ops.h"
#include "ppdock/status.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ---- helpers: .npy (float32 / int32, C order) and FASTA ------------------------------------ */

typedef struct {
    void *data;
    int ndim;
    int64_t shape[4];
    int64_t numel;
} npy_arr;

/* Loads a little-endian '<f4' or '<i4' C-order .npy; returns 0 on success. */
static int npy_load(const char *path, const char *descr, npy_arr *a) {
    memset(a, 0, sizeof *a);
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    unsigned char pre[10];
    int rc = -1;
    char *hdr = NULL;
    if (fread(pre, 1, 10, f) != 10 || memcmp(pre, "\x93NUMPY", 6) != 0) goto out;
    size_t hl = pre[8] | (size_t)pre[9] << 8;
    if (pre[6] >= 2) {
        unsigned char ext[2];
        if (fread(ext, 1, 2, f) != 2) goto out;
        hl |= (size_t)ext[0] << 16 | (size_t)ext[1] << 24;
    }
    hdr = calloc(hl + 1, 1);
    if (!hdr || fread(hdr, 1, hl, f) != hl) goto out;
    if (!strstr(hdr, descr) || !strstr(hdr, "'fortran_order': False")) goto out;
    const char *s = strstr(hdr, "'shape': (");
    if (!s) goto out;
    s += 10;
    a->numel = 1;
    while (*s && *s != ')' && a->ndim < 4) {
        char *end;
        long long v = strtoll(s, &end, 10);
        if (end == s) break;
        a->shape[a->ndim++] = v;
        a->numel *= v;
        s = end;
        while (*s == ',' || *s == ' ') s++;
    }
    a->data = malloc((size_t)(a->numel ? a->numel : 1) * 4);
    if (!a->data || fread(a->data, 4, (size_t)a->numel, f) != (size_t)a->numel) goto out;
    rc = 0;
out:
    free(hdr);
    fclose(f);
    if (rc) free(a->data), a->data = NULL;
    return rc;
}

typedef struct {
    char name[64];
    char *seq;
    int n;
} fasta_rec;

static int fasta_read(const char *path, fasta_rec *recs, int cap) {
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    char line[8192];
    int n = -1;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = 0;
        if (line[0] == '>') {
            if (++n >= cap) break;
            snprintf(recs[n].name, sizeof recs[n].name, "%s", line + 1);
            recs[n].seq = calloc(1, 1);
            recs[n].n = 0;
        } else if (n >= 0 && line[0]) {
            size_t add = strlen(line);
            recs[n].seq = realloc(recs[n].seq, (size_t)recs[n].n + add + 1);
            memcpy(recs[n].seq + recs[n].n, line, add + 1);
            recs[n].n += (int)add;
        }
    }
    fclose(f);
    return n + 1 > cap ? cap : n + 1;
}

static void fasta_free(fasta_rec *recs, int n) {
    for (int i = 0; i < n; i++) free(recs[i].seq);
}

static double max_abs_diff(const float *a, const float *b, size_t n) {
    double m = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (!(d <= m)) m = d; /* NaN propagates as a failure */
    }
    return m;
}

/* Embed one sequence alone with a fresh exactly-sized workspace; caller frees *out. */
static ppd_status embed_alone(const ppd_esm_model *m, const uint8_t *tok, int n, int layer,
                              int threads, float **out) {
    ppd_esm_workspace ws;
    PPD_TRY(ppd_esm_workspace_init(&ws, &m->cfg,
                                   ppd_esm_workspace_bytes(&m->cfg, n + 2, n, threads), threads));
    ppd_esm_seq s = {tok, n};
    ppd_status st = ppd_esm_forward(m, &ws, &s, 1, layer);
    if (!st) {
        *out = malloc((size_t)n * (size_t)m->cfg.d * sizeof(float) + 1);
        memcpy(*out, ppd_esm_output(&ws, 0), (size_t)n * (size_t)m->cfg.d * sizeof(float));
    }
    ppd_esm_workspace_free(&ws);
    return st;
}

enum { MAXREC = 32 };

/* The test sequences, tokenised with the default policy (unknown -> X). */
typedef struct {
    fasta_rec rec[MAXREC];
    uint8_t *tok[MAXREC];
    int n;
} seqset;

static int seqset_load(seqset *s) {
    s->n = fasta_read(ppt_data("esm/sequences.fasta"), s->rec, MAXREC);
    for (int i = 0; i < s->n; i++) {
        s->tok[i] = malloc((size_t)s->rec[i].n + 1);
        if (ppd_esm_tokenize(s->rec[i].seq, (size_t)s->rec[i].n, PPD_ESM_UNKNOWN_AS_X, s->tok[i],
                             NULL))
            return -1;
    }
    return s->n > 0 ? 0 : -1;
}

static void seqset_free(seqset *s) {
    for (int i = 0; i < s->n; i++) free(s->tok[i]);
    fasta_free(s->rec, s->n);
}

static int seqset_find(const seqset *s, const char *name) {
    for (int i = 0; i < s->n; i++)
        if (!strcmp(s->rec[i].name, name)) return i;
    return -1;
}

/* Compare [n, d] rows with a golden file; returns the max abs error (or 1e9 if unreadable). */
static double golden_err(const char *rel, const float *emb, int n, int d) {
    npy_arr g;
    if (npy_load(ppt_data(rel), "'<f4'", &g)) {
        printf("  cannot read %s\n", rel);
        return 1e9;
    }
    double e = 1e9;
    if (g.ndim == 2 && g.shape[0] == n && g.shape[1] == d)
        e = max_abs_diff(emb, g.data, (size_t)n * (size_t)d);
    else
        printf("  %s: shape mismatch\n", rel);
    free(g.data);
    return e;
}

/* ---- alphabet ---------------------------------------------------------------------------- */

TEST(esm_tokenizer_table) {
    static const char *const want[33] = {
        "<cls>", "<pad>", "<eos>", "<unk>", "L", "A", "G", "V", "S", "E",        "R",
        "T",     "I",     "D",     "P",     "K", "Q", "N", "F", "Y", "M",        "H",
        "W",     "C",     "X",     "B",     "U", "Z", "O", ".", "-", "<null_1>", "<mask>"};
    for (int i = 0; i < 33; i++) CHECK_STR(ppd_esm_token_name(i), want[i]);
    CHECK(ppd_esm_token_name(33) == NULL && ppd_esm_token_name(-1) == NULL);
    const char *letters = "LAGVSERTIDPKQNFYMHWCXBUZO";
    for (int i = 0; letters[i]; i++) CHECK_EQ(ppd_esm_residue_token(letters[i]), 4 + i);
    CHECK_EQ(ppd_esm_residue_token('J'), -1);
    CHECK_EQ(ppd_esm_residue_token('a'), -1);
    CHECK_EQ(ppd_esm_residue_token('.'), -1);
    CHECK_EQ(ppd_esm_residue_token(0), -1);
    CHECK_EQ(ppd_esm_residue_token(200), -1);
}

TEST(esm_tokenizer_policies) {
    const char *s = "MKjV*1XJ";
    uint8_t ids[8];
    size_t unk = 99;
    REQUIRE_OK(ppd_esm_tokenize(s, 8, PPD_ESM_UNKNOWN_AS_X, ids, &unk));
    const uint8_t want_x[8] = {20, 15, 24, 7, 24, 24, 24, 24};
    CHECK(memcmp(ids, want_x, 8) == 0);
    CHECK_EQ(unk, 4); /* j * 1 J; X itself is a residue letter */
    REQUIRE_OK(ppd_esm_tokenize(s, 8, PPD_ESM_UNKNOWN_AS_UNK, ids, &unk));
    const uint8_t want_u[8] = {20, 15, 3, 7, 3, 3, 24, 3};
    CHECK(memcmp(ids, want_u, 8) == 0);
    CHECK_EQ(unk, 4);
    CHECK_EQ(ppd_esm_tokenize(s, 8, PPD_ESM_UNKNOWN_ERROR, ids, &unk), PPD_ERR_FORMAT);
    CHECK_ERRMSG_HAS("position 3: 'j'");
    CHECK_EQ(ppd_esm_tokenize("AC\n", 3, PPD_ESM_UNKNOWN_ERROR, ids, NULL), PPD_ERR_FORMAT);
    CHECK_ERRMSG_HAS("0x0a");
    CHECK_OK(ppd_esm_tokenize("", 0, PPD_ESM_UNKNOWN_ERROR, ids, &unk));
    CHECK_EQ(unk, 0);
    /* already-tokenised input: <unk> (graph records) and every residue token pass */
    uint8_t ok[] = {3, 4, 28, 29, 30, 31, 32, 24};
    CHECK_OK(ppd_esm_check_tokens(ok, sizeof ok));
    uint8_t bad1[] = {4, 5, 1};
    CHECK_EQ(ppd_esm_check_tokens(bad1, 3), PPD_ERR_FORMAT);
    CHECK_ERRMSG_HAS("residue 3: token id 1");
    uint8_t bad2[] = {33};
    CHECK_EQ(ppd_esm_check_tokens(bad2, 1), PPD_ERR_FORMAT);
}

TEST(esm_tokenizer_matches_fair_esm_tokens) {
    seqset s;
    REQUIRE(seqset_load(&s) == 0);
    char rel[256];
    for (int i = 0; i < s.n; i++) {
        snprintf(rel, sizeof rel, "esm/tokens/%s.npy", s.rec[i].name);
        npy_arr t;
        if (npy_load(ppt_data(rel), "'<i4'", &t)) {
            CHECK(!"token file readable");
            continue;
        }
        const int32_t *v = t.data;
        CHECK_EQ(t.numel, s.rec[i].n + 2);
        if (t.numel == s.rec[i].n + 2) {
            CHECK_EQ(v[0], PPD_ESM_TOK_CLS);
            CHECK_EQ(v[s.rec[i].n + 1], PPD_ESM_TOK_EOS);
            for (int j = 0; j < s.rec[i].n; j++) CHECK_EQ(v[j + 1], s.tok[i][j]);
        }
        free(t.data);
    }
    seqset_free(&s);
}

/* ---- fp16 / bf16 ---------------------------------------------------------------------------- */

static uint32_t bits_of(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}
static float float_of(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* Correctly rounded (ties to even) f32 -> f16 by search over the finite f16 values, in double. */
static uint16_t f16_reference(float x) {
    if (x != x) return 0x7e00;
    double ax = fabs((double)x);
    uint16_t sign = x < 0 || (x == 0 && signbit(x)) ? 0x8000 : 0;
    if (ax >= 65520.0) return sign | 0x7c00;
    uint16_t lo = 0, hi = 0x7bff; /* largest |h| <= ax by bisection over the monotone encodings */
    while (lo < hi) {
        uint16_t mid = (uint16_t)((lo + hi + 1) / 2);
        if ((double)ppd_f16_to_f32(mid) <= ax)
            lo = mid;
        else
            hi = (uint16_t)(mid - 1);
    }
    double a = ppd_f16_to_f32(lo), b = ppd_f16_to_f32((uint16_t)(lo + 1));
    if (lo == 0x7bff) b = 65536.0;
    uint16_t r = lo;
    if (ax - a > b - ax || (ax - a == b - ax && (lo & 1))) r = (uint16_t)(lo + 1);
    return sign | r;
}

TEST(esm_half_conversions) {
    /* every f16 widens and narrows back to itself (NaNs stay NaN) */
    for (uint32_t h = 0; h < 65536; h++) {
        float f = ppd_f16_to_f32((uint16_t)h);
        uint16_t back = ppd_f32_to_f16(f);
        if ((h & 0x7c00) == 0x7c00 && (h & 0x3ff))
            CHECK((back & 0x7c00) == 0x7c00 && (back & 0x3ff) && (back & 0x8000) == (h & 0x8000));
        else if (back != h) {
            CHECK_EQ(back, h);
            break;
        }
    }
    /* random floats and the exact midpoints between consecutive f16 values */
    uint64_t z = 12345;
    int bad = 0;
    for (int i = 0; i < 300000 && bad < 3; i++) {
        z = z * 6364136223846793005ULL + 1442695040888963407ULL;
        uint32_t u = (uint32_t)(z >> 32);
        /* bias towards the f16 range: exponents 100..145 */
        u = (u & 0x807fffffu) | ((100u + (u >> 23) % 46u) << 23);
        float x = float_of(u);
        if (ppd_f32_to_f16(x) != f16_reference(x)) {
            bad++;
            CHECK_EQ(ppd_f32_to_f16(x), f16_reference(x));
        }
    }
    for (uint32_t h = 0; h < 0x7bff && bad < 3; h += 7) {
        double mid = ((double)ppd_f16_to_f32((uint16_t)h) + ppd_f16_to_f32((uint16_t)(h + 1))) / 2;
        float x = (float)mid; /* exact: f16 midpoints have 12 significant bits */
        uint16_t want = (h & 1) ? (uint16_t)(h + 1) : (uint16_t)h;
        if (ppd_f32_to_f16(x) != want) {
            bad++;
            CHECK_EQ(ppd_f32_to_f16(x), want);
        }
    }
    CHECK_EQ(ppd_f32_to_f16(65504.0f), 0x7bff);
    CHECK_EQ(ppd_f32_to_f16(65519.99f), 0x7bff);
    CHECK_EQ(ppd_f32_to_f16(65520.0f), 0x7c00);
    CHECK_EQ(ppd_f32_to_f16(-1e10f), 0xfc00);
    CHECK_EQ(ppd_f32_to_f16(0x1p-25f), 0x0000);        /* tie to even zero */
    CHECK_EQ(ppd_f32_to_f16(0x1.000002p-25f), 0x0001); /* just above: smallest subnormal */
    CHECK_EQ(ppd_f32_to_f16(-0.0f), 0x8000);
    CHECK_EQ(ppd_f32_to_f16(0x1p-14f), 0x0400);
    CHECK_EQ(ppd_f32_to_f16(0x1.ff8p-15f), 0x03ff); /* largest subnormal */
    CHECK_EQ(ppd_f32_to_f16(0x1.ffap-15f), 0x03ff);
    CHECK_EQ(ppd_f32_to_f16(0x1.ffcp-15f), 0x0400); /* tie: rounds to even, into the normals */
    /* bf16 */
    CHECK_EQ(ppd_f32_to_bf16(1.0f), 0x3f80);
    CHECK_EQ(ppd_f32_to_bf16(float_of(0x3f808000u)), 0x3f80); /* tie, even stays */
    CHECK_EQ(ppd_f32_to_bf16(float_of(0x3f818000u)), 0x3f82); /* tie, odd rounds up */
    CHECK_EQ(ppd_f32_to_bf16(float_of(0x3f808001u)), 0x3f81);
    CHECK(ppd_bf16_to_f32(ppd_f32_to_bf16(float_of(0x7fc00001u))) !=
          ppd_bf16_to_f32(ppd_f32_to_bf16(float_of(0x7fc00001u)))); /* NaN */
    CHECK_EQ(bits_of(ppd_bf16_to_f32(0xc2f7)), 0xc2f70000u);
    uint16_t h4[4];
    float f4[4] = {1.5f, -2.0f, 0.1f, 70000.0f}, g4[4];
    ppd_f32_to_f16_array(h4, f4, 4);
    ppd_f16_to_f32_array(g4, h4, 4);
    CHECK(g4[0] == 1.5f && g4[1] == -2.0f && fabsf(g4[2] - 0.1f) < 1e-4f && isinf(g4[3]));
}

TEST(esm_f16_array_gives_the_scalar_bits) {
    /* ppd_f32_to_f16_array (F16C where the CPU has it) against the scalar ppd_f32_to_f16 on
     * every value of the top 19 bits (sign, exponent, the mantissa bits f16 keeps) with the
     * dropped 13 bits at zero, one, just below, at and above the tie, and all ones: every
     * exponent's overflow, subnormal and zero cases, NaN and infinity, and the tie rules; the
     * subnormal outputs' higher rounding points are among the top bits. Lengths and offsets
     * that are not multiples of 8 cross the vector loop's tail. */
    static const uint32_t low[] = {0x0000u, 0x0001u, 0x0fffu, 0x1000u, 0x1001u, 0x1fffu};
    enum { NLOW = sizeof low / sizeof low[0], N = (1 << 19) * NLOW };
    float *x = malloc((size_t)N * sizeof *x);
    uint16_t *h = malloc((size_t)(N + 3) * sizeof *h);
    CHECK(x && h);
    if (!x || !h) goto out;
    for (uint32_t top = 0; top < (1u << 19); top++)
        for (int k = 0; k < NLOW; k++) x[top * NLOW + k] = float_of(top << 13 | low[k]);
    ppd_f32_to_f16_array(h + 3, x, N - 5); /* an odd length at an odd offset */
    long bad = 0;
    for (long i = 0; i < N - 5; i++)
        if (h[3 + i] != ppd_f32_to_f16(x[i]) && bad++ < 3) CHECK_EQ(h[3 + i], ppd_f32_to_f16(x[i]));
    CHECK_EQ(bad, 0);
    printf("  (%s path)\n", ppd_f16_array_uses_f16c() ? "F16C" : "scalar");
out:
    free(x), free(h);
}

/* ---- element-wise bodies ------------------------------------------------------------------ */

static double ulps(float got, double want) {
    float w = (float)want;
    double ulp = (double)nextafterf(fabsf(w), INFINITY) - fabs((double)w);
    return fabs((double)got - want) / ulp;
}

TEST(esm_exp_erf_bodies_accuracy) {
    /* the vectorisable exp and erf of ppdock/kernels/esm_ops.h against libm in double */
    double worst_exp = 0, worst_erf = 0, worst_gelu = 0;
    for (int i = 0; i <= 400000; i++) {
        float x = -87.0f * (float)i / 400000.0f;
        double u = ulps(ppd_esm_expf(x), exp((double)x));
        if (u > worst_exp) worst_exp = u;
    }
    for (int i = -450000; i <= 450000; i++) {
        float x = (float)i * 1e-5f;
        double u = ulps(ppd_esm_erff(x), erf((double)x));
        if (u > worst_erf) worst_erf = u;
        float z = x * 2.5f; /* GELU over [-11.25, 11.25] vs the float32 formula with libm erff */
        float ref = (z * 0.5f) * (1.0f + erff(z / 1.41421356237309505f));
        double e = fabs((double)ppd_esm_gelu_elem(z) - (double)ref);
        if (e > worst_gelu) worst_gelu = e;
    }
    CHECK(worst_exp <= 1.0);
    CHECK(worst_erf <= 2.0);
    CHECK(worst_gelu <= 5e-7);
    CHECK(ppd_esm_expf(0.0f) == 1.0f);
    CHECK(ppd_esm_expf(-200.0f) >= 0.0f && ppd_esm_expf(-200.0f) < 2e-38f);
    CHECK(ppd_esm_erff(0.0f) == 0.0f && ppd_esm_erff(10.0f) == 1.0f &&
          ppd_esm_erff(-1e30f) == -1.0f);
    CHECK(ppd_esm_erff(-0.5f) == -ppd_esm_erff(0.5f));
    const char *ct = NULL, *adv = ppd_blas_advice(&ct);
    if (adv) printf("  esm: %s\n", adv);
    CHECK((adv == NULL) == (ct == NULL));
    printf("  esm bodies: exp max %.2f ulp, erf max %.2f ulp, GELU max %.2g abs vs libm erff\n",
           worst_exp, worst_erf, worst_gelu);
}

static uint32_t float_bits(float f) {
    uint32_t b;
    memcpy(&b, &f, sizeof b);
    return b;
}

static float bits_float(uint32_t b) {
    float f;
    memcpy(&f, &b, sizeof f);
    return f;
}

TEST(esm_gelu_gpu_pieces_give_the_cpu_bits) {
    /* The GPU's bias + GELU divides by sqrt(2) through ppd_esm_div_sqrt2_fma and runs erf's far
     * range only where ppd_esm_erf_is_far says (anything else in its place must not matter):
     * both must give the CPU's bits. Floats: every 1021st bit pattern (all binades, both signs,
     * subnormals, inf, NaN), plus every 7th of both signs in the binades where it could break:
     * the FMA path's smallest [2^-100, 2^-99) and largest [2^127, inf), and [1, 4), erf's far
     * range; `make test-long` checks the division on all 2^32 floats. */
    uint64_t div_bad = 0, erf_bad = 0, n = 0;
    uint32_t first_bad = 0;
    const uint32_t lo[] = {0x0d800000u, 0x7f000000u, 0x3f800000u};
    const uint32_t hi[] = {0x0e000000u, 0x7f800000u, 0x40800000u};
    for (int range = -1; range < 3; range++) {
        uint64_t b0 = range < 0 ? 0 : lo[range], b1 = range < 0 ? (1ull << 32) : hi[range];
        uint64_t step = range < 0 ? 1021 : 7;
        for (uint64_t b = b0; b < b1; b += step) {
            for (int sign = 0; sign < (range < 0 ? 1 : 2); sign++) {
                float z = bits_float((uint32_t)b ^ (sign ? 0x80000000u : 0u));
                float want = z / PPD_ESM_SQRT2, got = ppd_esm_div_sqrt2_fma(z);
                int same = float_bits(want) == float_bits(got) || (isnan(want) && isnan(got));
                if (!same && !div_bad++) first_bad = float_bits(z);
                float a = fabsf(z);
                float far = ppd_esm_erf_is_far(a) ? ppd_esm_erf_far(a) : NAN;
                float e = ppd_esm_erf_join(z, a, ppd_esm_erf_near(a), far), w = ppd_esm_erff(z);
                erf_bad += float_bits(e) != float_bits(w) && !(isnan(e) && isnan(w));
                n++;
            }
        }
    }
    /* make test-long (PPD_LONG): the division on all 2^32 floats, the one-off check esm_ops.h
     * cites (about a minute) */
    uint64_t n_div = n;
    if (getenv("PPD_LONG"))
        for (uint64_t b = 0; b < (1ull << 32); b++, n_div++) {
            float z = bits_float((uint32_t)b);
            float want = z / PPD_ESM_SQRT2, got = ppd_esm_div_sqrt2_fma(z);
            int same = float_bits(want) == float_bits(got) || (isnan(want) && isnan(got));
            if (!same && !div_bad++) first_bad = float_bits(z);
        }
    printf("  esm GELU's GPU pieces: %llu floats (%llu for the division), %llu divisions and %llu "
           "erfs differ",
           (unsigned long long)n, (unsigned long long)n_div, (unsigned long long)div_bad,
           (unsigned long long)erf_bad);
    if (div_bad) printf(" (first division at bits 0x%08x)", first_bad);
    printf("\n");
    CHECK(n > 10000000u);
    CHECK(div_bad == 0);
    CHECK(erf_bad == 0);
    /* the guard matters: unguarded, the FMA step gives 2^-148 / sqrt(2) as 2^-148, not 2^-149 */
    CHECK(float_bits(ppd_esm_div_sqrt2_fma(0x1p-148f)) == float_bits(0x1p-149f));
}

/* ---- weights ------------------------------------------------------------------------------ */

static uint64_t fnv1a64_bytes(const void *p, size_t n) {
    const unsigned char *b = p;
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 0x100000001b3ULL;
    return h;
}

/* The model's slice for a generator_check name (NULL: not part of the encoder). */
static const float *tensor_of(const ppd_esm_model *m, const char *name, size_t *n) {
    size_t d = (size_t)m->cfg.d, F = (size_t)m->cfg.ffn, h2 = (size_t)m->cfg.head_dim / 2;
    int l;
    char rest[128];
    if (!strcmp(name, "embed_tokens.weight")) return *n = 33 * d, m->p.embed;
    if (!strcmp(name, "emb_layer_norm_after.weight")) return *n = d, m->p.lnf_w;
    if (sscanf(name, "layers.%d.%127s", &l, rest) != 2) return NULL;
    size_t L = (size_t)l;
    if (!strcmp(rest, "self_attn.q_proj.weight")) return *n = d * d, m->p.wqkv + L * 3 * d * d;
    if (!strcmp(rest, "self_attn.q_proj.bias")) return *n = d, m->p.bqkv + L * 3 * d;
    if (!strcmp(rest, "self_attn.rot_emb.inv_freq")) return *n = h2, m->p.inv_freq + L * h2;
    if (!strcmp(rest, "self_attn_layer_norm.weight")) return *n = d, m->p.ln1_w + L * d;
    if (!strcmp(rest, "fc1.weight")) return *n = F * d, m->p.w1 + L * F * d;
    if (!strcmp(rest, "fc2.weight")) return *n = d * F, m->p.w2 + L * d * F;
    if (!strcmp(rest, "final_layer_norm.bias")) return *n = d, m->p.ln2_b + L * d;
    return NULL;
}

TEST(esm_random_init_matches_reference) {
    FILE *f = fopen(ppt_data("esm/generator_check.tsv"), "r");
    REQUIRE(f != NULL);
    char line[1024];
    int checked = 0, extra = 0;
    ppd_esm_model m = {0};
    int curL = 0, curd = 0, curH = 0;
    while (fgets(line, sizeof line, f)) {
        if (line[0] == '#') continue;
        char name[128], shape[32], tshape[32], v[4][32], b[4][16], fnv[32];
        int seed;
        if (sscanf(line, "%127s %31s %d %31s %31s %31s %31s %31s %15s %15s %15s %15s %31s", name,
                   shape, &seed, tshape, v[0], v[1], v[2], v[3], b[0], b[1], b[2], b[3],
                   fnv) != 13) {
            CHECK(!"parsable generator_check line");
            continue;
        }
        int L, d, H;
        REQUIRE_OK(ppd_esm_parse_shape(shape, &L, &d, &H));
        if (L != curL || d != curd || H != curH) {
            ppd_esm_model_free(&m);
            REQUIRE_OK(ppd_esm_random_init(&m, L, d, H, (uint64_t)seed));
            curL = L, curd = d, curH = H;
        }
        size_t n = 0;
        const float *t = tensor_of(&m, name, &n);
        float *own = NULL;
        if (!t) { /* lm_head tensors: not in the encoder; check the generator itself */
            n = !strcmp(name, "lm_head.bias") ? 33 : (size_t)d * d;
            own = malloc(n * sizeof *own);
            ppd_esm_random_fill(own, n, name, (uint64_t)seed, 0.0f,
                                n == 33 ? 0.02f : (float)sqrt(3.0 / d));
            t = own;
            extra++;
        }
        for (int i = 0; i < 4; i++) {
            uint32_t want = (uint32_t)strtoul(b[i], NULL, 16);
            if (bits_of(t[i]) != want) {
                ppt_fail(__FILE__, __LINE__, "%s (%s) value %d: %08x, reference %08x", name, shape,
                         i, bits_of(t[i]), want);
            }
        }
        uint64_t h = fnv1a64_bytes(t, n * sizeof(float));
        if (h != strtoull(fnv, NULL, 16))
            ppt_fail(__FILE__, __LINE__, "%s (%s): fnv1a64 %016llx, reference %s", name, shape,
                     (unsigned long long)h, fnv);
        free(own);
        checked++;
    }
    fclose(f);
    ppd_esm_model_free(&m);
    CHECK(checked >= 20);
    CHECK(extra >= 4);
}

TEST(esm_load_formats_agree) {
    ppd_esm_model a, b, c, r;
    REQUIRE_OK(ppd_esm_load(&a, ppt_data("esm/tiny/model.safetensors")));
    REQUIRE_OK(ppd_esm_load(&b, ppt_data("esm/tiny/model.pt")));
    REQUIRE_OK(ppd_esm_load(&c, ppt_data("esm/tiny")));
    REQUIRE_OK(ppd_esm_random_init(&r, 2, 64, 4, 0));
    CHECK_EQ(a.cfg.n_layers, 2);
    CHECK_EQ(a.cfg.d, 64);
    CHECK_EQ(a.cfg.n_heads, 4);
    CHECK_EQ(a.cfg.head_dim, 16);
    CHECK_EQ(a.cfg.ffn, 256);
    CHECK_EQ(a.inv_freq_computed, 0);
    CHECK(memcmp(&a.cfg, &b.cfg, sizeof a.cfg) == 0);
    CHECK_EQ(a.n_params, b.n_params);
    CHECK(a.n_params == b.n_params && memcmp(a.mem, b.mem, a.n_params * 4) == 0);
    CHECK(a.n_params == c.n_params && memcmp(a.mem, c.mem, a.n_params * 4) == 0);
    CHECK(a.n_params == r.n_params && memcmp(a.mem, r.mem, a.n_params * 4) == 0);
    CHECK(a.identity == b.identity && a.identity == c.identity && a.identity == r.identity);
    ppd_esm_model r1;
    REQUIRE_OK(ppd_esm_random_init(&r1, 2, 64, 4, 1));
    CHECK(r1.identity != r.identity);
    ppd_esm_model_free(&r1);
    /* spec §3: core parameters 33d + L(12d^2 + 13d) + 2d, plus the inv_freq buffers */
    CHECK_EQ(a.n_params, 33 * 64 + 2 * (12 * 64 * 64 + 13 * 64) + 2 * 64 + 2 * 8);
    ppd_esm_config c8m = {6, 320, 20, 16, 1280};
    CHECK_EQ(ppd_esm_param_count(&c8m), 7408960 + 6 * 8);
    ppd_esm_model_free(&a);
    ppd_esm_model_free(&b);
    ppd_esm_model_free(&c);
    ppd_esm_model_free(&r);
    /* errors name the file */
    ppd_esm_model e;
    CHECK(ppd_esm_load(&e, ppt_data("esm/sequences.fasta")) != PPD_OK);
    CHECK_ERRMSG_HAS("sequences.fasta");
    CHECK_EQ(ppd_esm_load(&e, ppt_data("esm/t6")), PPD_ERR_NOTFOUND);
    CHECK_EQ(ppd_esm_random_init(&e, 2, 63, 4, 0), PPD_ERR_USAGE);
    int L, d, H;
    CHECK_EQ(ppd_esm_parse_shape("6,320", &L, &d, &H), PPD_ERR_USAGE);
    CHECK_EQ(ppd_esm_parse_shape("6,320,20x", &L, &d, &H), PPD_ERR_USAGE);
    CHECK_OK(ppd_esm_parse_shape("33,1280,20", &L, &d, &H));
    CHECK(L == 33 && d == 1280 && H == 20);
}

/* A Hugging Face-layout safetensors file written from a model, in f32 or f16, with or without
 * the inv_freq buffers, under `prefix` ("esm." or ""). */
static int write_hf(const char *path, const ppd_esm_model *m, int f16, int inv_freq,
                    const char *prefix) {
    const ppd_esm_params *p = &m->p;
    size_t d = (size_t)m->cfg.d, F = (size_t)m->cfg.ffn, h2 = (size_t)m->cfg.head_dim / 2;
    enum { MAXT = 512 };
    struct {
        char name[160];
        const float *v;
        size_t r, c; /* c = 0: 1-d */
    } t[MAXT];
    int n = 0;
#define ADD(nm, ptr, rr, cc)                                                                       \
    do {                                                                                           \
        snprintf(t[n].name, sizeof t[n].name, "%s%s", prefix, nm);                                 \
        t[n].v = (ptr), t[n].r = (rr), t[n].c = (cc), n++;                                         \
    } while (0)
    char nm[160];
    ADD("embeddings.word_embeddings.weight", p->embed, 33, d);
    for (int l = 0; l < m->cfg.n_layers; l++) {
        size_t li = (size_t)l;
        static const char *const qkv[3] = {"query", "key", "value"};
        for (int j = 0; j < 3; j++) {
            snprintf(nm, sizeof nm, "encoder.layer.%d.attention.self.%s.weight", l, qkv[j]);
            ADD(nm, p->wqkv + (li * 3 + (size_t)j) * d * d, d, d);
            snprintf(nm, sizeof nm, "encoder.layer.%d.attention.self.%s.bias", l, qkv[j]);
            ADD(nm, p->bqkv + (li * 3 + (size_t)j) * d, d, 0);
        }
        if (inv_freq) {
            snprintf(nm, sizeof nm, "encoder.layer.%d.attention.self.rotary_embeddings.inv_freq",
                     l);
            ADD(nm, p->inv_freq + li * h2, h2, 0);
        }
        snprintf(nm, sizeof nm, "encoder.layer.%d.attention.output.dense.weight", l);
        ADD(nm, p->wo + li * d * d, d, d);
        snprintf(nm, sizeof nm, "encoder.layer.%d.attention.output.dense.bias", l);
        ADD(nm, p->bo + li * d, d, 0);
        snprintf(nm, sizeof nm, "encoder.layer.%d.attention.LayerNorm.weight", l);
        ADD(nm, p->ln1_w + li * d, d, 0);
        snprintf(nm, sizeof nm, "encoder.layer.%d.attention.LayerNorm.bias", l);
        ADD(nm, p->ln1_b + li * d, d, 0);
        snprintf(nm, sizeof nm, "encoder.layer.%d.LayerNorm.weight", l);
        ADD(nm, p->ln2_w + li * d, d, 0);
        snprintf(nm, sizeof nm, "encoder.layer.%d.LayerNorm.bias", l);
        ADD(nm, p->ln2_b + li * d, d, 0);
        snprintf(nm, sizeof nm, "encoder.layer.%d.intermediate.dense.weight", l);
        ADD(nm, p->w1 + li * F * d, F, d);
        snprintf(nm, sizeof nm, "encoder.layer.%d.intermediate.dense.bias", l);
        ADD(nm, p->b1 + li * F, F, 0);
        snprintf(nm, sizeof nm, "encoder.layer.%d.output.dense.weight", l);
        ADD(nm, p->w2 + li * d * F, d, F);
        snprintf(nm, sizeof nm, "encoder.layer.%d.output.dense.bias", l);
        ADD(nm, p->b2 + li * d, d, 0);
    }
    ADD("encoder.emb_layer_norm_after.weight", p->lnf_w, d, 0);
    ADD("encoder.emb_layer_norm_after.bias", p->lnf_b, d, 0);
    ADD("lm_head.bias", p->lnf_b, 33, 0); /* an unused key the loader must ignore */
#undef ADD
    size_t es = f16 ? 2 : 4, cap = 65536, len = 0, off = 0;
    char *hdr = malloc(cap);
    len += (size_t)snprintf(hdr + len, cap - len, "{\"__metadata__\":{\"format\":\"pt\"}");
    for (int i = 0; i < n; i++) {
        size_t cnt = t[i].r * (t[i].c ? t[i].c : 1);
        char shape[64];
        if (t[i].c)
            snprintf(shape, sizeof shape, "[%zu,%zu]", t[i].r, t[i].c);
        else
            snprintf(shape, sizeof shape, "[%zu]", t[i].r);
        len +=
            (size_t)snprintf(hdr + len, cap - len,
                             ",\"%s\":{\"dtype\":\"%s\",\"shape\":%s,\"data_offsets\":[%zu,%zu]}",
                             t[i].name, f16 ? "F16" : "F32", shape, off, off + cnt * es);
        off += cnt * es;
    }
    len += (size_t)snprintf(hdr + len, cap - len, "}");
    while ((8 + len) % 8) hdr[len++] = ' ';
    FILE *f = fopen(path, "wb");
    if (!f) return free(hdr), -1;
    unsigned char le[8];
    for (int b = 0; b < 8; b++) le[b] = (unsigned char)((uint64_t)len >> (8 * b));
    fwrite(le, 1, 8, f);
    fwrite(hdr, 1, len, f);
    for (int i = 0; i < n; i++) {
        size_t cnt = t[i].r * (t[i].c ? t[i].c : 1);
        for (size_t k = 0; k < cnt; k++) {
            if (f16) {
                uint16_t h = ppd_f32_to_f16(t[i].v[k]);
                fwrite(&h, 2, 1, f);
            } else {
                fwrite(&t[i].v[k], 4, 1, f);
            }
        }
    }
    free(hdr);
    return fclose(f);
}

TEST(esm_load_hf_variants_fp16_and_missing_inv_freq) {
    ppd_esm_model r, a, b, c;
    REQUIRE_OK(ppd_esm_random_init(&r, 2, 64, 4, 3));
    /* make every value fp16-representable: an f16 file then holds the same model exactly */
    for (size_t i = 0; i < r.n_params; i++) r.mem[i] = ppd_f16_to_f32(ppd_f32_to_f16(r.mem[i]));
    REQUIRE_OK(ppd_esm_model_finish(&r));
    const char *dir = ppt_tmpdir();
    char p32[4096], p16[4096], pno[4096], cfgp[4096];
    snprintf(p32, sizeof p32, "%s/f32.safetensors", dir);
    snprintf(p16, sizeof p16, "%s/f16.safetensors", dir);
    REQUIRE(write_hf(p32, &r, 0, 1, "esm.") == 0);
    REQUIRE(write_hf(p16, &r, 1, 1, "") == 0);
    REQUIRE_OK(ppd_esm_load(&a, p32));
    REQUIRE_OK(ppd_esm_load(&b, p16));
    CHECK(a.n_params == r.n_params && memcmp(a.mem, r.mem, r.n_params * 4) == 0);
    CHECK(b.n_params == r.n_params && memcmp(b.mem, r.mem, r.n_params * 4) == 0);
    CHECK(a.identity == r.identity && b.identity == r.identity);
    /* no inv_freq: heads from config.json, inv_freq from the spec's fallback formula, which for
     * hd = 16 gives exactly the generator's values */
    snprintf(pno, sizeof pno, "%s/model.safetensors", dir);
    REQUIRE(write_hf(pno, &r, 0, 0, "esm.") == 0);
    ppd_esm_model e;
    CHECK_EQ(ppd_esm_load(&e, pno), PPD_ERR_FORMAT); /* d = 64: no config, not a published d */
    CHECK_ERRMSG_HAS("no inv_freq");
    snprintf(cfgp, sizeof cfgp, "%s/config.json", dir);
    FILE *f = fopen(cfgp, "w");
    REQUIRE(f != NULL);
    fputs("{\n  \"hidden_size\": 64,\n  \"num_attention_heads\": 4\n}\n", f);
    fclose(f);
    REQUIRE_OK(ppd_esm_load(&c, dir));
    CHECK_EQ(c.inv_freq_computed, 1);
    CHECK_EQ(c.cfg.n_heads, 4);
    CHECK(c.n_params == r.n_params && memcmp(c.mem, r.mem, r.n_params * 4) == 0);
    float fb[64];
    for (int hd = 16; hd <= 128; hd *= 2) { /* fallback vs the generator's double formula */
        ppd_esm_default_inv_freq(fb, hd);
        ppd_esm_model g;
        REQUIRE_OK(ppd_esm_random_init(&g, 1, hd * 2, 2, 0));
        CHECK(memcmp(fb, g.p.inv_freq, (size_t)hd / 2 * 4) == 0);
        ppd_esm_model_free(&g);
    }
    ppd_esm_model_free(&a);
    ppd_esm_model_free(&b);
    ppd_esm_model_free(&c);
    ppd_esm_model_free(&r);
}

/* ---- forward parity ----------------------------------------------------------------------------
 */

TEST(esm_tiny_goldens) {
    ppd_esm_model m, mpt;
    REQUIRE_OK(ppd_esm_load(&m, ppt_data("esm/tiny/model.safetensors")));
    REQUIRE_OK(ppd_esm_load(&mpt, ppt_data("esm/tiny/model.pt")));
    seqset s;
    REQUIRE(seqset_load(&s) == 0);
    double worst_last = 0, worst_l1 = 0;
    char rel[256];
    for (int i = 0; i < s.n; i++) {
        int n = s.rec[i].n;
        float *last = NULL, *l1 = NULL, *lpt = NULL, *l1t = NULL;
        REQUIRE_OK(embed_alone(&m, s.tok[i], n, -1, 2, &last));
        REQUIRE_OK(embed_alone(&m, s.tok[i], n, 1, 1, &l1));
        REQUIRE_OK(embed_alone(&mpt, s.tok[i], n, 2, 2, &lpt));
        REQUIRE_OK(embed_alone(&mpt, s.tok[i], n, 2, 1, &l1t));
        snprintf(rel, sizeof rel, "esm/tiny/%s.last.npy", s.rec[i].name);
        double e = golden_err(rel, last, n, 64);
        CHECK(e <= 1e-4);
        if (e > worst_last) worst_last = e;
        snprintf(rel, sizeof rel, "esm/tiny/%s.layer1.npy", s.rec[i].name);
        e = golden_err(rel, l1, n, 64);
        CHECK(e <= 1e-4);
        if (e > worst_l1) worst_l1 = e;
        /* the .pt model gives bit-identical output; 1 thread instead of 2 (other GEMM row
         * blocks) agrees within float32 rounding */
        CHECK(memcmp(last, lpt, (size_t)n * 64 * 4) == 0);
        CHECK(max_abs_diff(last, l1t, (size_t)n * 64) <= 1e-5);
        free(last), free(l1), free(lpt), free(l1t);
    }
    printf("  esm tiny: %d sequences, max abs error last layer %.3g, layer 1 %.3g\n", s.n,
           worst_last, worst_l1);
    seqset_free(&s);
    ppd_esm_model_free(&m);
    ppd_esm_model_free(&mpt);
}

TEST(esm_batch_invariance) {
    ppd_esm_model m;
    REQUIRE_OK(ppd_esm_random_init(&m, 2, 64, 4, 0));
    seqset s;
    REQUIRE(seqset_load(&s) == 0);
    int d = m.cfg.d;
    float *alone[MAXREC];
    int64_t total = 0;
    int maxn = 0;
    for (int i = 0; i < s.n; i++) {
        REQUIRE_OK(embed_alone(&m, s.tok[i], s.rec[i].n, -1, 1, &alone[i]));
        total += s.rec[i].n + 2;
        if (s.rec[i].n > maxn) maxn = s.rec[i].n;
    }
    ppd_esm_workspace ws;
    REQUIRE_OK(
        ppd_esm_workspace_init(&ws, &m.cfg, ppd_esm_workspace_bytes(&m.cfg, total, maxn, 2), 2));
    /* compositions: all in file order, all reversed, the fair-esm batch4 order, pairs */
    int orders[4][MAXREC], counts[4] = {s.n, s.n, 4, 2};
    for (int i = 0; i < s.n; i++) orders[0][i] = i, orders[1][i] = s.n - 1 - i;
    const char *b4[4] = {"2X9A_l", "2CFH_r", "1PPE_l", "1KAC_l"};
    for (int i = 0; i < 4; i++) orders[2][i] = seqset_find(&s, b4[i]);
    orders[3][0] = seqset_find(&s, "2H7V_r"), orders[3][1] = seqset_find(&s, "1PPE_l");
    double worst = 0;
    for (int o = 0; o < 4; o++) {
        ppd_esm_seq batch[MAXREC];
        for (int j = 0; j < counts[o]; j++) {
            REQUIRE(orders[o][j] >= 0);
            batch[j] = (ppd_esm_seq){s.tok[orders[o][j]], s.rec[orders[o][j]].n};
        }
        REQUIRE_OK(ppd_esm_forward(&m, &ws, batch, counts[o], -1));
        for (int j = 0; j < counts[o]; j++) {
            int i = orders[o][j];
            double e = max_abs_diff(ppd_esm_output(&ws, j), alone[i], (size_t)s.rec[i].n * d);
            if (e > worst) worst = e;
            CHECK(e <= 1e-5);
        }
        if (o == 2) { /* the fair-esm padded batch goldens */
            char rel[256];
            for (int j = 0; j < 4; j++) {
                snprintf(rel, sizeof rel, "esm/tiny/batch4.%s.last.npy", b4[j]);
                CHECK(golden_err(rel, ppd_esm_output(&ws, j), s.rec[orders[2][j]].n, d) <= 1e-4);
            }
        }
    }
    /* an empty chain (<cls><eos> only) is a valid member of a batch and changes nothing */
    ppd_esm_seq withempty[3] = {{s.tok[0], s.rec[0].n}, {s.tok[0], 0}, {s.tok[1], s.rec[1].n}};
    REQUIRE_OK(ppd_esm_forward(&m, &ws, withempty, 3, -1));
    CHECK(max_abs_diff(ppd_esm_output(&ws, 2), alone[1], (size_t)s.rec[1].n * d) <= 1e-5);
    CHECK_EQ(ws.out_off[2] - ws.out_off[1], 0);
    printf("  esm batch invariance: max abs difference alone vs batched %.3g\n", worst);
    /* a batch larger than the workspace is refused, not grown */
    ppd_esm_seq two[2] = {{s.tok[0], s.rec[0].n}, {s.tok[0], s.rec[0].n}};
    ppd_esm_workspace small;
    REQUIRE_OK(ppd_esm_workspace_init(
        &small, &m.cfg, ppd_esm_workspace_bytes(&m.cfg, s.rec[0].n + 2, s.rec[0].n, 1), 1));
    CHECK_OK(ppd_esm_forward(&m, &small, two, 1, -1));
    CHECK_EQ(ppd_esm_forward(&m, &small, two, 2, -1), PPD_ERR_NOMEM);
    CHECK_ERRMSG_HAS("workspace");
    CHECK_EQ(ppd_esm_forward(&m, &small, two, 1, 3), PPD_ERR_USAGE);
    uint8_t badtok[3] = {5, 2, 5};
    ppd_esm_seq bad = {badtok, 3};
    CHECK_EQ(ppd_esm_forward(&m, &small, &bad, 1, -1), PPD_ERR_FORMAT);
    ppd_esm_workspace_free(&small);
    ppd_esm_workspace_free(&ws);
    for (int i = 0; i < s.n; i++) free(alone[i]);
    seqset_free(&s);
    ppd_esm_model_free(&m);
}

TEST(esm_layer0_and_mask_tokens) {
    ppd_esm_model m;
    REQUIRE_OK(ppd_esm_random_init(&m, 2, 64, 4, 0));
    uint8_t tok[6] = {5, 32, 6, 32, 7, 3};
    float *x = NULL;
    REQUIRE_OK(embed_alone(&m, tok, 6, 0, 1, &x));
    /* token dropout: <mask> rows 0, others E * 0.88 / (1 - 2/8) */
    float div = 1.0f - (float)2 / (float)8;
    for (int i = 0; i < 6; i++)
        for (int c = 0; c < 64; c++) {
            float want = tok[i] == 32 ? 0.0f : (m.p.embed[tok[i] * 64 + c] * 0.88f) / div;
            if (x[i * 64 + c] != want) {
                CHECK_EQ(bits_of(x[i * 64 + c]), bits_of(want));
                i = 6;
                break;
            }
        }
    free(x);
    ppd_esm_model_free(&m);
}

/* ---- long-sequence policies through the planner and run loop -------------------------------- */

typedef struct {
    float *emb[MAXREC];
    int n[MAXREC];
    int calls;
    int d;
} sink_ctx;

static ppd_status collect(void *ctx, int seq, const float *emb, int n, int d) {
    sink_ctx *c = ctx;
    c->calls++;
    if (seq < 0 || seq >= MAXREC || c->emb[seq])
        return ppd_fail(PPD_ERR_INTERNAL, "sink: sequence %d twice or out of range", seq);
    c->emb[seq] = malloc((size_t)n * (size_t)d * sizeof(float) + 1);
    memcpy(c->emb[seq], emb, (size_t)n * (size_t)d * sizeof(float));
    c->n[seq] = n;
    c->d = d;
    return PPD_OK;
}

static void sink_free(sink_ctx *c) {
    for (int i = 0; i < MAXREC; i++) free(c->emb[i]);
}

static void run_policy(const ppd_esm_model *m, const seqset *s, ppd_esm_plan_opts *o, sink_ctx *out,
                       ppd_esm_plan *plan) {
    int lens[MAXREC];
    const uint8_t *toks[MAXREC];
    for (int i = 0; i < s->n; i++) lens[i] = s->rec[i].n, toks[i] = s->tok[i];
    memset(out, 0, sizeof *out);
    if (ppd_esm_plan_make(plan, &m->cfg, lens, s->n, o)) {
        ppt_fail(__FILE__, __LINE__, "plan: %s", ppd_errmsg());
        return;
    }
    if (ppd_esm_run(m, plan, toks, -1, collect, out))
        ppt_fail(__FILE__, __LINE__, "run: %s", ppd_errmsg());
}

TEST(esm_long_policies_match_goldens) {
    ppd_esm_model m;
    REQUIRE_OK(ppd_esm_random_init(&m, 2, 64, 4, 0));
    seqset s;
    REQUIRE(seqset_load(&s) == 0);
    int lx = seqset_find(&s, "1PXV_r");
    REQUIRE(lx >= 0 && s.rec[lx].n == 183);
    int starts[8];
    CHECK_EQ(ppd_esm_window_count(183, 64, 16), 4);
    ppd_esm_window_starts(183, 64, 16, starts);
    CHECK(starts[0] == 0 && starts[1] == 48 && starts[2] == 96 && starts[3] == 119);
    CHECK_EQ(ppd_esm_window_count(64, 64, 16), 1);
    CHECK_EQ(ppd_esm_window_count(112, 64, 16), 2);

    ppd_esm_plan_opts o = PPD_ESM_PLAN_OPTS_DEFAULT;
    o.threads = 2;
    o.max_tokens = 300;
    o.long_policy = PPD_ESM_LONG_WINDOW;
    o.long_limit = 64;
    o.overlap = 16;
    sink_ctx out;
    ppd_esm_plan plan;
    run_policy(&m, &s, &o, &out, &plan);
    CHECK_EQ(out.calls, s.n);
    int nlong = 0;
    for (int i = 0; i < s.n; i++) nlong += s.rec[i].n > 64;
    CHECK_EQ(plan.n_windowed, nlong);
    REQUIRE(out.emb[lx] && out.n[lx] == 183);
    double ew = golden_err("esm/tiny/1PXV_r.window64-16.last.npy", out.emb[lx], 183, 64);
    CHECK(ew <= 1e-4);
    /* short sequences are untouched by the policy */
    int sh = seqset_find(&s, "1PPE_l");
    CHECK(golden_err("esm/tiny/1PPE_l.last.npy", out.emb[sh], 29, 64) <= 1e-4);
    sink_free(&out);
    ppd_esm_plan_free(&plan);

    o.long_policy = PPD_ESM_LONG_TRUNCATE;
    o.long_limit = 50;
    run_policy(&m, &s, &o, &out, &plan);
    REQUIRE(out.emb[lx] && out.n[lx] == 50);
    double et = golden_err("esm/tiny/1PXV_r.trunc50.last.npy", out.emb[lx], 50, 64);
    CHECK(et <= 1e-4);
    CHECK_EQ(plan.n_truncated, plan.n_long);
    sink_free(&out);
    ppd_esm_plan_free(&plan);

    o.long_policy = PPD_ESM_LONG_WHOLE;
    o.long_limit = 150;
    run_policy(&m, &s, &o, &out, &plan);
    CHECK(golden_err("esm/tiny/1PXV_r.last.npy", out.emb[lx], 183, 64) <= 1e-4);
    for (int b = 0; b < plan.n_batches; b++) /* long sequences alone in their batch */
        if (plan.batches[b].max_len > 150) CHECK_EQ(plan.batches[b].count, 1);
    sink_free(&out);
    ppd_esm_plan_free(&plan);

    o.long_policy = PPD_ESM_LONG_ERROR;
    run_policy(&m, &s, &o, &out, &plan);
    CHECK_EQ(plan.n_rejected, plan.n_long);
    CHECK_EQ(out.calls, s.n - plan.n_rejected);
    for (int r = 0; r < plan.n_rejected; r++) CHECK(out.emb[plan.rejected[r]] == NULL);
    sink_free(&out);
    ppd_esm_plan_free(&plan);
    printf("  esm window 64/16 max abs error %.3g, truncate 50 %.3g\n", ew, et);
    seqset_free(&s);
    ppd_esm_model_free(&m);
}

TEST(esm_t6_goldens) {
    ppd_esm_model m;
    REQUIRE_OK(ppd_esm_random_init(&m, 6, 320, 20, 0));
    seqset s;
    REQUIRE(seqset_load(&s) == 0);
    const char *names[3] = {"1PPE_l", "1KAC_l", "2H7V_r"};
    double worst = 0;
    for (int k = 0; k < 3; k++) {
        int i = seqset_find(&s, names[k]);
        REQUIRE(i >= 0);
        float *e = NULL;
        REQUIRE_OK(embed_alone(&m, s.tok[i], s.rec[i].n, -1, 2, &e));
        char rel[256];
        snprintf(rel, sizeof rel, "esm/t6/%s.last.npy", names[k]);
        double err = golden_err(rel, e, s.rec[i].n, 320);
        CHECK(err <= 1e-4);
        if (err > worst) worst = err;
        free(e);
    }
    printf("  esm t6 (6,320,20): max abs error last layer %.3g\n", worst);
    seqset_free(&s);
    ppd_esm_model_free(&m);
}

TEST(esm_fp16_storage_error) {
    /* The error esm-embed's fp16 records add to the last-layer embeddings (documented in
     * ppdock/esm.h). */
    seqset s;
    REQUIRE(seqset_load(&s) == 0);
    double max_abs = 0, max_rel = 0, sum_sq = 0, max_val = 0;
    size_t count = 0;
    char rel[256];
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < s.n; i++) {
            snprintf(rel, sizeof rel, pass ? "esm/t6/%s.last.npy" : "esm/tiny/%s.last.npy",
                     s.rec[i].name);
            npy_arr g;
            if (npy_load(ppt_data(rel), "'<f4'", &g)) continue;
            const float *v = g.data;
            for (int64_t j = 0; j < g.numel; j++) {
                double x = v[j], y = ppd_f16_to_f32(ppd_f32_to_f16(v[j]));
                double e = fabs(x - y);
                if (e > max_abs) max_abs = e;
                if (fabs(x) > max_val) max_val = fabs(x);
                if (fabs(x) >= 0x1p-14) {
                    if (e / fabs(x) > max_rel) max_rel = e / fabs(x);
                    sum_sq += (e / fabs(x)) * (e / fabs(x));
                    count++;
                }
            }
            free(g.data);
        }
    REQUIRE(count > 0);
    CHECK(max_rel <= 0x1p-11);
    printf("  esm fp16 storage: %zu values (|x| <= %.3g): max abs err %.3g, max rel err %.3g, "
           "rms rel err %.3g\n",
           count, max_val, max_abs, max_rel, sqrt(sum_sq / (double)count));
    seqset_free(&s);
}

/* ---- planner -------------------------------------------------------------------------------- */

TEST(esm_planner_budgets) {
    ppd_esm_config c = {6, 320, 20, 16, 1280};
    enum { N = 400 };
    int lens[N];
    uint64_t z = 7;
    for (int i = 0; i < N; i++) {
        z = z * 6364136223846793005ULL + 1442695040888963407ULL;
        lens[i] = 20 + (int)((z >> 33) % 700);
    }
    lens[17] = 2000; /* a long one */
    lens[18] = 0;    /* an empty chain is still an item (<cls><eos>) */
    ppd_esm_plan_opts o = PPD_ESM_PLAN_OPTS_DEFAULT;
    o.threads = 4;
    o.max_tokens = 8192;
    o.memory_budget = (size_t)400 << 20;
    ppd_esm_plan p;
    REQUIRE_OK(ppd_esm_plan_make(&p, &c, lens, N, &o));
    int *seen = calloc(N, sizeof *seen);
    size_t fixed = p.weight_bytes + p.window_bytes + p.base_bytes;
    for (int b = 0; b < p.n_batches; b++) {
        const ppd_esm_batch *bt = &p.batches[b];
        int64_t tok = 0;
        int ml = 0;
        for (int j = bt->first; j < bt->first + bt->count; j++) {
            tok += p.items[j].len + 2;
            if (p.items[j].len > ml) ml = p.items[j].len;
            seen[p.items[j].seq]++;
            if (j > 0) CHECK(p.items[j].len >= p.items[j - 1].len); /* sorted */
        }
        CHECK_EQ(tok, bt->tokens);
        CHECK_EQ(ml, bt->max_len);
        if (bt->count > 1) CHECK(bt->tokens <= o.max_tokens);
        CHECK(fixed + bt->bytes <= o.memory_budget);
        CHECK_EQ(bt->bytes, ppd_esm_workspace_bytes(&c, bt->tokens, bt->max_len, 4));
        if (bt->max_len == 2000) CHECK_EQ(bt->count, 1);
    }
    for (int i = 0; i < N; i++) CHECK_EQ(seen[i], 1);
    CHECK(p.peak_bytes <= o.memory_budget);
    CHECK(p.padded_tokens >= p.tokens);
    ppd_esm_plan_print(&p, stdout);
    int nb_large = p.n_batches;
    ppd_esm_plan_free(&p);

    /* no token cap: the memory budget alone shapes the batches, and they use it */
    o.max_tokens = 0;
    o.memory_budget = (size_t)160 << 20;
    REQUIRE_OK(ppd_esm_plan_make(&p, &c, lens, N, &o));
    size_t avail = o.memory_budget - (p.weight_bytes + p.base_bytes), fullest = 0;
    for (int b = 0; b < p.n_batches; b++) {
        CHECK(p.batches[b].bytes <= avail);
        if (p.batches[b].bytes > fullest) fullest = p.batches[b].bytes;
    }
    CHECK(fullest > avail * 9 / 10);
    CHECK(p.n_batches != nb_large);
    CHECK(p.peak_bytes <= o.memory_budget);
    ppd_esm_plan_free(&p);

    /* one sequence that cannot fit even alone: an error that says how much it needs */
    lens[17] = 6000;
    CHECK_EQ(ppd_esm_plan_make(&p, &c, lens, N, &o), PPD_ERR_NOMEM);
    CHECK_ERRMSG_HAS("sequence 17 (6000 residues) needs");
    CHECK_ERRMSG_HAS("MiB even alone");
    /* ... which a window policy solves */
    o.long_policy = PPD_ESM_LONG_WINDOW;
    o.long_limit = 1022;
    o.overlap = 200;
    REQUIRE_OK(ppd_esm_plan_make(&p, &c, lens, N, &o));
    CHECK_EQ(p.n_windowed, 1);
    memset(seen, 0, N * sizeof *seen);
    for (int j = 0; j < p.n_items; j++)
        if (p.items[j].seq == 17) seen[p.items[j].window]++;
    int nw = ppd_esm_window_count(6000, 1022, 200);
    for (int w = 0; w < nw; w++) CHECK_EQ(seen[w], 1);
    CHECK_EQ(p.window_bytes, (size_t)6000 * 320 * 4);
    ppd_esm_plan_free(&p);
    /* weights alone over budget; bad options */
    o.memory_budget = 1 << 20;
    CHECK_EQ(ppd_esm_plan_make(&p, &c, lens, N, &o), PPD_ERR_NOMEM);
    CHECK_ERRMSG_HAS("weights");
    o.memory_budget = 0;
    o.overlap = 1022;
    CHECK_EQ(ppd_esm_plan_make(&p, &c, lens, N, &o), PPD_ERR_USAGE);
    free(seen);
}

/* The batch workspace's `big` rows hold what each engine writes there, whatever the shape: fp32
 * q/k/v (3d) and FFN rows (F) on the CPU and in the CUDA engine's fp32 mode; in its bf16 mode
 * fp32 q/k/v, the out projection's fp32 rows (d) and fc1's bf16 rows (F halves), and the bf16
 * GEMM inputs (in16) hold LayerNorm's and the GELU's rows and RoPE's bf16 q/k/v (max(3d, F)
 * halves). The bf16 layout is no larger than it needs: 3d floats a row where F <= 6d. */
TEST(esm_workspace_rows_hold_what_the_engines_write) {
    const ppd_esm_config shapes[] = {{33, 1280, 20, 64, 5120}, /* 650M: F = 4d */
                                     {2, 64, 4, 16, 1024},     /* F = 16d: fc1's rows dominate */
                                     {2, 96, 4, 24, 100}};     /* F < 3d */
    enum { N = 37, R = 33, B = 2, T = 20 };
    for (size_t k = 0; k < sizeof shapes / sizeof *shapes; k++) {
        const ppd_esm_config *c = &shapes[k];
        size_t d = (size_t)c->d, F = (size_t)c->ffn, q = 3 * d;
        for (int mode = 0; mode < 3; mode++) { /* CPU (2 threads), CUDA fp32, CUDA bf16 */
            int threads = mode == 0 ? 2 : 0, bf16 = mode == 2;
            size_t bytes = ppd_esm_carve(c, N, R, B, T, threads, bf16, NULL, NULL);
            unsigned char *mem = malloc(bytes);
            REQUIRE(mem);
            ppd_esm_layout w;
            memset(&w, 0, sizeof w);
            CHECK_EQ(ppd_esm_carve(c, N, R, B, T, threads, bf16, mem, &w), bytes);
            size_t big = (size_t)((unsigned char *)w.out - (unsigned char *)w.big);
            size_t need = bf16 ? (q * 4 > F * 2 ? q * 4 : F * 2) : (q > F ? q : F) * 4;
            CHECK(big >= N * need);
            CHECK(big < N * need + 64); /* no more than that, up to the alignment */
            if (bf16) {
                size_t in16 = bytes - (size_t)((unsigned char *)w.in16 - mem);
                CHECK(in16 >= N * (q > F ? q : F) * 2);
            }
            free(mem);
        }
    }
}
