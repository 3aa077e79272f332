/* ppdock/progress.h — a progress bar on stderr.
 *
 *   graph-build  1200/40290  312.4/s  ETA 2m05s  mem 412 MB  [####......]
 *
 * Shows count, rate, ETA and the process's memory high-water mark (peak RSS). It draws only when
 * stderr is a terminal and the log level is at least info; otherwise every call is a no-op, so
 * logs and pipelines stay clean. Redraws are throttled to ~10 per second. Thread-safe: workers
 * may call ppd_progress_add concurrently.
 */
#ifndef PPDOCK_PROGRESS_H
#define PPDOCK_PROGRESS_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ppd_progress ppd_progress;

/* label: short text before the counts; total: 0 if unknown (no ETA). Returns NULL when disabled. */
ppd_progress *ppd_progress_start(const char *label, uint64_t total);
void ppd_progress_add(ppd_progress *p, uint64_t n);
/* Text shown after the rate from the next redraw on (at most 63 bytes), e.g. train's
 * "loss 0.412  8.3 complexes/s". NULL p is fine. */
void ppd_progress_note(ppd_progress *p, const char *note);
/* Final redraw and newline; frees p. NULL is fine. */
void ppd_progress_finish(ppd_progress *p);

/* Erase the bar's line if one is drawn (the logger calls this before printing). */
void ppd_progress_clear_line(void);

/* Peak resident set size of this process in bytes (getrusage ru_maxrss). */
uint64_t ppd_peak_rss_bytes(void);

/* Seconds on the monotonic clock (CLOCK_MONOTONIC): for intervals, not dates. */
double ppd_now_seconds(void);

#ifdef __cplusplus
}
#endif

#endif
