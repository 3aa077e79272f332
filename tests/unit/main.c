/* Unit-test runner: runs every TEST registered by the linked test files (see tests/test.h). */
#include "../test.h"

#include "ppdock/fsutil.h"
#include "ppdock/log.h"
#include "ppdock/status.h"

#include <stdarg.h>
#include <stdlib.h>
#include <unistd.h>

typedef struct {
    const char *name;
    ppt_fn fn;
} entry;

static entry tests[1024];
static int ntests;
static int cur_failed;
static char cur_msg[2048];
static char tmp_root[4096];
static char tmp_cur[4200];
static int tmp_seq;

void ppt_register(const char *name, ppt_fn fn) {
    if (ntests < (int)(sizeof tests / sizeof tests[0])) tests[ntests++] = (entry){name, fn};
}

void ppt_fail(const char *file, int line, const char *fmt, ...) {
    if (!cur_failed) {
        int n = snprintf(cur_msg, sizeof cur_msg, "%s:%d: ", file, line);
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(cur_msg + n, sizeof cur_msg - (size_t)n, fmt, ap);
        va_end(ap);
    }
    cur_failed++;
}

int ppt_failed_now(void) {
    return cur_failed;
}

const char *ppt_data(const char *rel) {
    static char slots[8][4096];
    static int slot;
    char *s = slots[slot++ & 7];
    const char *root = getenv("PPD_TESTDATA");
    snprintf(s, 4096, "%s/%s", root ? root : "tests/data", rel);
    return s;
}

const char *ppt_tmpdir(void) {
    snprintf(tmp_cur, sizeof tmp_cur, "%s/t%03d", tmp_root, ++tmp_seq);
    if (ppd_mkdir_p(tmp_cur) != PPD_OK) {
        fprintf(stderr, "cannot create %s: %s\n", tmp_cur, ppd_errmsg());
        exit(2);
    }
    return tmp_cur;
}

static int cmp_entry(const void *a, const void *b) {
    return strcmp(((const entry *)a)->name, ((const entry *)b)->name);
}

int main(int argc, char **argv) {
    ppd_log_set_prog("unit");
    ppd_log_set_level(getenv("PPD_TEST_VERBOSE") ? PPD_LOG_DEBUG : PPD_LOG_ERROR);
    const char *t = getenv("TMPDIR");
    snprintf(tmp_root, sizeof tmp_root, "%s/ppdock-unit.%ld", t ? t : "/tmp", (long)getpid());
    qsort(tests, (size_t)ntests, sizeof tests[0], cmp_entry);
    int pass = 0, fail = 0;
    for (int i = 0; i < ntests; i++) {
        if (argc > 1) {
            int want = 0;
            for (int a = 1; a < argc; a++) want |= strstr(tests[i].name, argv[a]) != NULL;
            if (!want) continue;
        }
        cur_failed = 0;
        cur_msg[0] = 0;
        ppd_clear_error();
        tests[i].fn();
        if (cur_failed) {
            printf("FAIL %s  (%s%s)\n", tests[i].name, cur_msg,
                   cur_failed > 1 ? " ... and more" : "");
            fail++;
        } else {
            printf("PASS %s\n", tests[i].name);
            pass++;
        }
        fflush(stdout);
    }
    if (!getenv("PPD_KEEP_TMP")) ppd_remove_tree(tmp_root);
    printf("unit: %d passed, %d failed\n", pass, fail);
    return fail ? 1 : 0;
}
