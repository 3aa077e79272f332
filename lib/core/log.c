/* Leveled logging (see ppdock/log.h). */
#include "ppdock/log.h"
#include "ppdock/progress.h"

#include <stdarg.h>
#include <stdio.h>

static ppd_log_level current_level = PPD_LOG_INFO;
static const char *prog_name = "ppdock";

void ppd_log_set_level(ppd_log_level level) {
    current_level = level;
}
ppd_log_level ppd_log_get_level(void) {
    return current_level;
}
void ppd_log_set_prog(const char *prog) {
    prog_name = prog ? prog : "ppdock";
}

void ppd_log(ppd_log_level level, const char *fmt, ...) {
    if (level > current_level) return;
    static const char *const tags[] = {"error: ", "warning: ", "", "debug: ", "trace: "};
    char buf[4096];
    int n = snprintf(buf, sizeof buf, "%s: %s", prog_name, tags[level]);
    if (n < 0) return;
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(buf + n, sizeof buf - (size_t)n, fmt, ap);
    va_end(ap);
    size_t len = (size_t)n + (m > 0 ? (size_t)m : 0);
    if (len > sizeof buf - 2) len = sizeof buf - 2;
    if (len == 0 || buf[len - 1] != '\n') buf[len++] = '\n';
    buf[len] = 0;
    ppd_progress_clear_line(); /* a live progress bar would otherwise be overwritten mid-line */
    fputs(buf, stderr);
}
