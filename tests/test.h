/* tests/test.h — the unit-test harness.
 *
 * A test is a function declared with TEST(name); it registers itself at start-up. CHECK*
 * macros record a failure (file:line and the values) and let the test go on; REQUIRE* stop the
 * test. The runner (tests/unit/main.c) prints one line per test:
 *     PASS name
 *     FAIL name  (tests/unit/test_x.c:42: expected 3 == 4)
 * and exits non-zero if anything failed. `unit NAME...` runs only tests whose name contains
 * one of the arguments.
 *
 * Test data: ppt_data(path) resolves a path under tests/data (PPD_TESTDATA overrides the root),
 * ppt_tmpdir() gives a fresh directory under $TMPDIR that is removed after the run.
 */
#ifndef PPDOCK_TEST_H
#define PPDOCK_TEST_H

#include <math.h>
#include <stdio.h>
#include <string.h>

typedef void (*ppt_fn)(void);
void ppt_register(const char *name, ppt_fn fn);
void ppt_fail(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int ppt_failed_now(void);
const char *ppt_data(const char *rel); /* static buffer per call slot (8 slots, rotating) */
const char *ppt_tmpdir(void);          /* fresh per test */

/* The larger of a running worst error and a new one, keeping a NaN: fmax drops NaNs, so a NaN
 * result would pass any tolerance. */
static inline double ppt_worst(double worst, double e) {
    return (e > worst || isnan(e)) && !isnan(worst) ? e : worst;
}

#define TEST(name)                                                                                 \
    static void name(void);                                                                        \
    __attribute__((constructor)) static void ppt_reg_##name(void) {                                \
        ppt_register(#name, name);                                                                 \
    }                                                                                              \
    static void name(void)

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) ppt_fail(__FILE__, __LINE__, "CHECK(%s)", #cond);                             \
    } while (0)
#define REQUIRE(cond)                                                                              \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            ppt_fail(__FILE__, __LINE__, "REQUIRE(%s)", #cond);                                    \
            return;                                                                                \
        }                                                                                          \
    } while (0)
#define CHECK_EQ(a, b)                                                                             \
    do {                                                                                           \
        long long ppt_a = (long long)(a), ppt_b = (long long)(b);                                  \
        if (ppt_a != ppt_b)                                                                        \
            ppt_fail(__FILE__, __LINE__, "%s == %s: %lld != %lld", #a, #b, ppt_a, ppt_b);          \
    } while (0)
#define REQUIRE_EQ(a, b)                                                                           \
    do {                                                                                           \
        long long ppt_a = (long long)(a), ppt_b = (long long)(b);                                  \
        if (ppt_a != ppt_b) {                                                                      \
            ppt_fail(__FILE__, __LINE__, "%s == %s: %lld != %lld", #a, #b, ppt_a, ppt_b);          \
            return;                                                                                \
        }                                                                                          \
    } while (0)
#define CHECK_NEAR(a, b, tol)                                                                      \
    do {                                                                                           \
        double ppt_a = (double)(a), ppt_b = (double)(b);                                           \
        if (!(fabs(ppt_a - ppt_b) <= (tol)))                                                       \
            ppt_fail(__FILE__, __LINE__, "%s ~ %s: %.9g vs %.9g (tol %g)", #a, #b, ppt_a, ppt_b,   \
                     (double)(tol));                                                               \
    } while (0)
#define CHECK_STR(a, b)                                                                            \
    do {                                                                                           \
        const char *ppt_a = (a), *ppt_b = (b);                                                     \
        if (!ppt_a || !ppt_b || strcmp(ppt_a, ppt_b) != 0)                                         \
            ppt_fail(__FILE__, __LINE__, "%s == %s: \"%s\" vs \"%s\"", #a, #b,                     \
                     ppt_a ? ppt_a : "(null)", ppt_b ? ppt_b : "(null)");                          \
    } while (0)
/* A ppd_status expression that must succeed; prints ppd_errmsg() otherwise. */
#define CHECK_OK(expr)                                                                             \
    do {                                                                                           \
        int ppt_st = (int)(expr);                                                                  \
        if (ppt_st != 0) ppt_fail(__FILE__, __LINE__, "%s failed: %s", #expr, ppd_errmsg());       \
    } while (0)
#define REQUIRE_OK(expr)                                                                           \
    do {                                                                                           \
        int ppt_st = (int)(expr);                                                                  \
        if (ppt_st != 0) {                                                                         \
            ppt_fail(__FILE__, __LINE__, "%s failed: %s", #expr, ppd_errmsg());                    \
            return;                                                                                \
        }                                                                                          \
    } while (0)
/* Message substring check: the last error message must contain `needle`. */
#define CHECK_ERRMSG_HAS(needle)                                                                   \
    do {                                                                                           \
        if (!strstr(ppd_errmsg(), (needle)))                                                       \
            ppt_fail(__FILE__, __LINE__, "error message \"%s\" lacks \"%s\"", ppd_errmsg(),        \
                     (needle));                                                                    \
    } while (0)

#endif
