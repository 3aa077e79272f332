/* lib/nn CPU ops against the spec's test vectors (docs/spec/diffdock-pp.md §2.2, §3.3, Appendix
 * A.2/A.3), and the device arena's bookkeeping (which is CPU code; see ppdock/device.h). The CUDA
 * twins are compared with these in tests/gpu/test_gpu.c. */
#include "../test.h"

#include "ppdock/device.h"
#include "ppdock/nn.h"
#include "ppdock/rng.h"
#include "ppdock/scatter.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static uint32_t bits(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

/* Distance in ulps between two finite floats of the same sign (enough for these tests). */
static long ulps(float a, float b) {
    long d = (long)bits(a) - (long)bits(b);
    return d < 0 ? -d : d;
}

/* ---- time embedding ------------------------------------------------------------------------ */

TEST(nn_time_embedding_freqs_bit_exact) {
    /* Spec §2.2, transcribed here independently of the header's table. */
    static const float spec[16] = {
        0x1.000000p+0f,  0x1.15142cp-1f,  0x1.2be4aap-2f,  0x1.449610p-3f,
        0x1.5f4ff0p-4f,  0x1.7c3d2cp-5f,  0x1.9b8c2ep-6f,  0x1.bd6f1ap-7f,
        0x1.e21c50p-8f,  0x1.04e74ep-8f,  0x1.1a62d6p-9f,  0x1.31a332p-10f,
        0x1.4acdb4p-11f, 0x1.660aa4p-12f, 0x1.8385b8p-13f, 0x1.a36e2cp-14f,
    };
    for (int k = 0; k < 16; k++) CHECK_EQ(bits(ppd_time_embedding_freqs[k]), bits(spec[k]));
    /* How PyTorch made them: exp(float32(k) * float32(-ln(10000)/15)), the product rounded to
     * float32 (that rounding is why the table is up to 5 ulp away from exp(-k ln(1e4)/15)); its
     * exp is within 1 ulp of the correctly rounded one. A typo in the table would fail this. */
    const float c = (float)(-log(10000.0) / 15.0);
    for (int k = 0; k < 16; k++) {
        float arg = (float)k * c;
        float want = (float)exp((double)arg);
        if (ulps(ppd_time_embedding_freqs[k], want) > 1)
            ppt_fail(__FILE__, __LINE__, "f_%d = %a, exp(%a) = %a", k,
                     (double)ppd_time_embedding_freqs[k], (double)arg, (double)want);
    }
}

TEST(nn_time_embedding_matches_spec_a3) {
    /* Appendix A.3: t = 0.5, PyTorch 1.13 CPU, printed to 8 decimals. */
    static const double want[32] = {
        -0.98796642, -0.80541867, 0.33368611, 0.69280213,  0.99978858,  -0.38796178, -0.06929784,
        -0.91161823, -0.79377580, 0.87029618, -0.97514975, -0.43821609, -0.01319522, 0.99070120,
        0.79797351,  0.47942549,  0.15466841, -0.59270632, 0.94268423,  0.72112775,  -0.02056276,
        0.92167550,  0.99759603,  0.41103801, 0.60821050,  0.49252874,  -0.22154680, 0.89886963,
        -0.99991292, -0.13605565, 0.60269254, 0.87758261,
    };
    float t = 0.5f, out[32];
    ppd_time_embedding_forward(out, &t, 1);
    /* Tolerance 2e-7: print rounding (5e-9) plus PyTorch's and glibc's sinf/cosf each within
     * ~1 ulp (6e-8 near 1). A one-ulp error in a frequency would move entries by up to 6e-5. */
    for (int j = 0; j < 32; j++) CHECK_NEAR(out[j], want[j], 2e-7);
}

TEST(nn_time_embedding_t0_is_zeros_then_ones) {
    float t[2] = {0.0f, 0.0f}, out[64];
    ppd_time_embedding_forward(out, t, 2);
    for (int n = 0; n < 2; n++)
        for (int j = 0; j < 32; j++) CHECK(out[n * 32 + j] == (j < 16 ? 0.0f : 1.0f));
}

TEST(nn_time_embedding_rows_follow_float32_arguments) {
    /* Many rows (the OpenMP path): each entry is sin/cos of the float32 product
     * float32(10000 t) * f_k, within 1 ulp of the double-precision value (2^-23 absolute covers
     * 1 ulp at |x| < 1 plus the float rounding of the result). */
    enum { N = 3000 };
    float *t = malloc(N * sizeof *t), *out = malloc((size_t)N * 32 * sizeof *out);
    REQUIRE(t && out);
    ppd_rng r;
    ppd_rng_seed(&r, 7);
    for (int n = 0; n < N; n++) t[n] = (float)ppd_rng_uniform(&r);
    t[0] = 1.0f;
    t[1] = 1e-3f;
    ppd_time_embedding_forward(out, t, N);
    for (int n = 0; n < N && !ppt_failed_now(); n++) {
        float a = 10000.0f * t[n];
        for (int k = 0; k < 16; k++) {
            float x = a * ppd_time_embedding_freqs[k];
            CHECK_NEAR(out[n * 32 + k], sin((double)x), 0x1p-23);
            CHECK_NEAR(out[n * 32 + 16 + k], cos((double)x), 0x1p-23);
        }
    }
    free(t);
    free(out);
}

/* ---- Gaussian smearing --------------------------------------------------------------------- */

TEST(nn_gaussian_smearing_offsets_and_gamma_match_spec) {
    float o[32];
    ppd_gaussian_smearing_offsets(o, 0.0f, 30.0f, 32);
    CHECK(o[0] == 0.0f);
    CHECK(o[31] == 30.0f);
    /* A.2 prints o_1..o_3 to 8 decimals; o_3 = 2.90322566 is one ulp below the correctly rounded
     * 3 * 30 / 31 = 2.9032259, which is what PyTorch's linspace gives and this reproduces. */
    CHECK_NEAR(o[1], 0.96774191, 5e-9);
    CHECK_NEAR(o[2], 1.93548381, 5e-9);
    CHECK_NEAR(o[3], 2.90322566, 5e-9);
    CHECK(o[3] != (float)(3.0 * 30.0 / 31.0));
    for (int j = 1; j < 32; j++) CHECK(o[j] > o[j - 1]);
    CHECK(ppd_gaussian_smearing_gamma(o) == (float)-0.5338889207111479);
    ppd_gaussian_smearing_offsets(o, 0.0f, 80.0f, 32);
    CHECK(o[31] == 80.0f);
    CHECK(ppd_gaussian_smearing_gamma(o) == (float)-0.07507812947500517);
}

TEST(nn_gaussian_smearing_matches_spec_a2) {
    float o[32], out[64];
    ppd_gaussian_smearing_offsets(o, 0.0f, 30.0f, 32);
    float gamma = ppd_gaussian_smearing_gamma(o);
    float d[2] = {7.3f, 7.3f};
    ppd_gaussian_smearing_forward(out, d, o, gamma, 2, 32);
    /* Appendix A.2, j = 3..12; the other entries are "negligible" (below 1e-6). */
    static const double want[10] = {3.294e-05,  0.00187789, 0.03938881, 0.30393550, 0.86277115,
                                    0.90098017, 0.34613112, 0.04891830, 0.00254336, 4.865e-05};
    /* 1e-6 absolute: one ulp in an offset moves an entry by up to ~2.5e-7 (|dG/do| <= 0.5 here,
     * ulp(o) <= 9.5e-7), expf differs by ~1 ulp between libraries, and the printout has 8
     * decimals. The 4-digit entries are also checked relatively (print rounding 5e-4/3.29). */
    for (int i = 0; i < 10; i++) {
        int j = 3 + i;
        CHECK_NEAR(out[j], want[i], 1e-6);
        CHECK_NEAR(out[j] / want[i], 1.0, 2e-4);
        CHECK(out[32 + j] == out[j]);
    }
    for (int j = 0; j < 32; j++)
        if (j < 3 || j > 12) CHECK(out[j] >= 0.0f && out[j] < 1e-6f);
}

TEST(nn_gaussian_smearing_layout_and_arithmetic) {
    /* Odd sizes and the OpenMP path: out[e*G + g] is expf(gamma * x*x) with x = d - o in float32;
     * against double exp of the same float32 argument, within 1 ulp (glibc expf's bound). */
    enum { G = 7 };
    for (int round = 0; round < 2; round++) {
        int64_t E = round == 0 ? 5 : 20000;
        float *d = malloc((size_t)E * sizeof *d), *out = malloc((size_t)E * G * sizeof *out);
        REQUIRE(d && out);
        float o[G] = {0.0f, 0.5f, 1.0f, 3.0f, 7.5f, 12.0f, 40.0f};
        float gamma = -0.75f;
        ppd_rng r;
        ppd_rng_seed(&r, 11 + (uint64_t)round);
        for (int64_t e = 0; e < E; e++) d[e] = (float)(45.0 * ppd_rng_uniform(&r));
        d[0] = 0.0f;
        ppd_gaussian_smearing_forward(out, d, o, gamma, E, G);
        for (int64_t e = 0; e < E && !ppt_failed_now(); e++)
            for (int g = 0; g < G; g++) {
                float x = d[e] - o[g];
                float arg = gamma * (x * x);
                float want = (float)exp((double)arg);
                float got = out[e * G + g];
                if (ulps(got, want) > 1)
                    ppt_fail(__FILE__, __LINE__, "e=%lld g=%d: got %a want %a", (long long)e, g,
                             (double)got, (double)want);
            }
        CHECK(out[0] == 1.0f); /* d = o = 0 */
        free(d);
        free(out);
    }
}

/* ---- device arena bookkeeping (no GPU needed) ---------------------------------------------- */

TEST(nn_device_arena_alignment_reset_high_water) {
    unsigned char *buf = malloc(4096 + 512);
    REQUIRE(buf);
    ppd_device_arena a;
    ppd_device_arena_wrap(&a, buf + 8, 4096); /* deliberately misaligned base */
    CHECK_EQ(a.device, -1);
    CHECK_EQ(a.owned, 0);
    unsigned char *p = ppd_device_arena_alloc(&a, 10);
    unsigned char *q = ppd_device_arena_alloc(&a, 100);
    REQUIRE(p && q);
    CHECK_EQ((uintptr_t)p % PPD_DEVICE_ALIGN, 0);
    CHECK_EQ((uintptr_t)q % PPD_DEVICE_ALIGN, 0);
    CHECK(p >= buf + 8 && q >= p + 10 && q + 100 <= buf + 8 + 4096);
    CHECK_EQ(q - p, PPD_DEVICE_ALIGN);
    CHECK_EQ(a.used, (size_t)(q + 100 - (buf + 8)));
    CHECK(ppd_device_arena_alloc(&a, 4096) == NULL); /* does not fit: no growth */
    void *r;
    CHECK_EQ(ppd_device_arena_alloc_st(&a, 5000, &r), PPD_ERR_NOMEM);
    CHECK(r == NULL);
    CHECK_ERRMSG_HAS("5000 bytes requested");
    CHECK_ERRMSG_HAS("of 4096 bytes in use");
    size_t hw = a.high_water;
    CHECK_EQ(hw, a.used);
    ppd_device_arena_reset(&a);
    CHECK_EQ(a.used, 0);
    CHECK_EQ(a.high_water, hw);
    CHECK(ppd_device_arena_alloc(&a, 10) == p); /* same pieces after a reset */
    CHECK_EQ(a.high_water, hw);
    /* Exactly full, then zero bytes still fit, one more byte does not. */
    ppd_device_arena_reset(&a);
    size_t lead = (size_t)(p - (buf + 8));
    CHECK(ppd_device_arena_alloc(&a, 4096 - lead) == p);
    CHECK(ppd_device_arena_alloc(&a, 1) == NULL);
    CHECK_EQ(a.high_water, 4096);
    /* Sizes near SIZE_MAX must not wrap around. */
    ppd_device_arena_reset(&a);
    CHECK(ppd_device_arena_alloc(&a, SIZE_MAX) == NULL);
    CHECK(ppd_device_arena_alloc(&a, SIZE_MAX - 100) == NULL);
    free(buf);
}

/* The next pass's inputs go where the running pass's pieces are not: checked over random
 * sequences of passes against the pieces themselves, and never waiting when the arena has the
 * documented room (the largest pass plus twice the largest inputs). */
TEST(nn_arena_place_inputs_never_overlaps_the_running_pass) {
    const size_t A = PPD_DEVICE_ALIGN;
    size_t off;
    /* by hand: an empty arena's first inputs go to the top; the next ones below them */
    CHECK_EQ(ppd_arena_place_inputs(100 * A, 0, (ppd_arena_span){0, 0}, 10 * A, 5 * A, &off), 1);
    CHECK_EQ(off, 95 * A);
    CHECK_EQ(ppd_arena_place_inputs(100 * A, 10 * A, (ppd_arena_span){95 * A, 5 * A}, 30 * A, 4 * A,
                                    &off),
             1);
    CHECK_EQ(off, 30 * A); /* above the larger work area */
    /* no room beside the running pass: the top, and wait */
    CHECK_EQ(ppd_arena_place_inputs(40 * A, 30 * A, (ppd_arena_span){35 * A, 5 * A}, 30 * A, 6 * A,
                                    &off),
             0);
    CHECK_EQ(off, 34 * A);
    /* not even alone: -1; unaligned sizes count whole alignment units */
    CHECK_EQ(ppd_arena_place_inputs(40 * A, 0, (ppd_arena_span){0, 0}, 30 * A, 10 * A + 1, &off),
             -1);
    CHECK_EQ(
        ppd_arena_place_inputs(40 * A + A / 2, 0, (ppd_arena_span){0, 0}, 30 * A - 1, 10 * A, &off),
        1);
    CHECK_EQ(off, 30 * A);

    uint64_t r = 0x9E3779B97F4A7C15ull;
    int bad = 0, waited = 0, overlapped = 0;
    for (int trial = 0; trial < 400 && !bad; trial++) {
        r ^= r << 13, r ^= r >> 7, r ^= r << 17;
        size_t wp = (size_t)(r % 5000 + 10) * A, wi = (size_t)(r % 997 % (wp / A) + 1) * A;
        /* documented room on even trials; tighter (waits allowed) on odd ones */
        size_t cap = trial % 2 ? wp + (size_t)(r % 3) * wi : wp + 2 * wi;
        size_t pw = 0;
        ppd_arena_span pin = {0, 0};
        for (int k = 0; k < 50 && !bad; k++) {
            r ^= r << 13, r ^= r >> 7, r ^= r << 17;
            size_t in = (size_t)(r % (wi + 1)); /* any bytes, not aligned */
            size_t work = (size_t)((r >> 20) % (wp - (in + A - 1) / A * A + 1));
            int got = ppd_arena_place_inputs(cap, pw, pin, work, in, &off);
            size_t wa = (work + A - 1) / A * A, ia = (in + A - 1) / A * A;
            size_t pe = pin.off + (pin.bytes + A - 1) / A * A;
            int clear = off % A == 0 && off >= wa && off + ia <= cap;
            int apart =
                off >= pw && (ia == 0 || pin.bytes == 0 || off + ia <= pin.off || off >= pe);
            if (got < 0 || !clear || (got == 1 && !apart) || (trial % 2 == 0 && got != 1)) bad = 1;
            waited += got == 0, overlapped += got == 1;
            pw = work, pin = (ppd_arena_span){off, in};
        }
    }
    CHECK(!bad);
    CHECK(waited > 0 && overlapped > 0); /* the tight arenas exercised both answers */
}

TEST(nn_device_arena_without_memory_is_a_usage_error) {
    ppd_device_arena a;
    memset(&a, 0, sizeof a);
    void *r;
    CHECK_EQ(ppd_device_arena_alloc_st(&a, 16, &r), PPD_ERR_USAGE);
    ppd_device_arena_wrap(&a, NULL, 100);
    CHECK_EQ(a.capacity, 0);
    CHECK(ppd_device_arena_alloc(&a, 0) == NULL);
}

TEST(nn_scatter_plan_groups_edges_by_target_in_edge_order) {
    /* targets of 7 edges; node 1 gets none, node 3 three */
    const int64_t idx[7] = {3, 0, 3, 2, 0, 3, 2};
    int64_t order[7], seg[5];
    CHECK_OK(ppd_scatter_plan(order, seg, idx, 7, 4));
    const int64_t want_order[7] = {1, 4, 3, 6, 0, 2, 5}, want_seg[5] = {0, 2, 2, 4, 7};
    for (int i = 0; i < 7; i++) CHECK_EQ(order[i], want_order[i]);
    for (int i = 0; i < 5; i++) CHECK_EQ(seg[i], want_seg[i]);
    /* the scatter itself: rows added to their targets */
    float src[7], acc[4] = {0, 0, 0, 0};
    for (int i = 0; i < 7; i++) src[i] = (float)(i + 1);
    ppd_scatter_add_rows(acc, src + 2, idx, 2, 5, 1); /* edges 2..6 only */
    CHECK(acc[0] == 5.0f && acc[1] == 0.0f && acc[2] == 4.0f + 7.0f && acc[3] == 3.0f + 6.0f);
    const int64_t bad[2] = {0, 4};
    CHECK_EQ(ppd_scatter_plan(order, seg, bad, 2, 4), PPD_ERR_FORMAT);
    CHECK(strstr(ppd_errmsg(), "edge 1 targets node 4 of 4") != NULL);
}
