/* Progress bar on stderr (see ppdock/progress.h). */
#include "ppdock/progress.h"
#include "ppdock/log.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

struct ppd_progress {
    char label[32];
    char note[64]; /* tool-specific text after the rate, e.g. "loss 0.412" */
    uint64_t total, done;
    double t0, last_draw;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static int line_drawn;

double ppd_now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

uint64_t ppd_peak_rss_bytes(void) {
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0) return 0;
    return (uint64_t)ru.ru_maxrss * 1024u; /* Linux reports KiB */
}

static void fmt_dur(char *buf, size_t cap, double s) {
    if (s < 0 || s > 1e7)
        snprintf(buf, cap, "--");
    else if (s < 60)
        snprintf(buf, cap, "%.0fs", s);
    else if (s < 3600)
        snprintf(buf, cap, "%dm%02ds", (int)(s / 60), (int)s % 60);
    else
        snprintf(buf, cap, "%dh%02dm", (int)(s / 3600), ((int)s % 3600) / 60);
}

static void draw(ppd_progress *p, double t) {
    double el = t - p->t0, rate = el > 0 ? (double)p->done / el : 0;
    char eta[16] = "--", bar[24] = "";
    if (p->total && rate > 0) fmt_dur(eta, sizeof eta, (double)(p->total - p->done) / rate);
    if (p->total) {
        int w = 20, fill = (int)((double)w * (double)p->done / (double)p->total);
        if (fill > w) fill = w;
        bar[0] = '[';
        for (int i = 0; i < w; i++) bar[1 + i] = i < fill ? '#' : '.';
        bar[w + 1] = ']';
        bar[w + 2] = 0;
    }
    char tot[32] = "";
    if (p->total) snprintf(tot, sizeof tot, "/%llu", (unsigned long long)p->total);
    fprintf(stderr, "\r\033[K%s %llu%s  %.1f/s%s%s  ETA %s  mem %llu MB  %s", p->label,
            (unsigned long long)p->done, tot, rate, p->note[0] ? "  " : "", p->note, eta,
            (unsigned long long)(ppd_peak_rss_bytes() >> 20), bar);
    fflush(stderr);
    line_drawn = 1;
    p->last_draw = t;
}

ppd_progress *ppd_progress_start(const char *label, uint64_t total) {
    if (!isatty(STDERR_FILENO) || ppd_log_get_level() < PPD_LOG_INFO) return NULL;
    ppd_progress *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    snprintf(p->label, sizeof p->label, "%s", label ? label : "");
    p->total = total;
    p->t0 = ppd_now_seconds();
    return p;
}

void ppd_progress_add(ppd_progress *p, uint64_t n) {
    if (!p) return;
    pthread_mutex_lock(&lock);
    p->done += n;
    double t = ppd_now_seconds();
    if (t - p->last_draw > 0.1) draw(p, t);
    pthread_mutex_unlock(&lock);
}

void ppd_progress_note(ppd_progress *p, const char *note) {
    if (!p) return;
    pthread_mutex_lock(&lock);
    snprintf(p->note, sizeof p->note, "%s", note ? note : "");
    pthread_mutex_unlock(&lock);
}

void ppd_progress_finish(ppd_progress *p) {
    if (!p) return;
    pthread_mutex_lock(&lock);
    draw(p, ppd_now_seconds());
    fputc('\n', stderr);
    line_drawn = 0;
    pthread_mutex_unlock(&lock);
    free(p);
}

void ppd_progress_clear_line(void) {
    if (!line_drawn) return;
    fputs("\r\033[K", stderr);
    line_drawn = 0;
}
