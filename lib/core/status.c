/* Status codes and the per-thread error context (see ppdock/status.h). */
#include "ppdock/status.h"

#include <stdio.h>
#include <string.h>

enum { ERRMSG_CAP = 2048 };
static _Thread_local char errmsg[ERRMSG_CAP];

static const char *const names[PPD_STATUS_COUNT] = {
    [PPD_OK] = "PPD_OK: success",
    [PPD_ERR_USAGE] = "PPD_ERR_USAGE: usage error",
    [PPD_ERR_CONFIG] = "PPD_ERR_CONFIG: configuration error",
    [PPD_ERR_IO] = "PPD_ERR_IO: I/O error",
    [PPD_ERR_FORMAT] = "PPD_ERR_FORMAT: malformed input",
    [PPD_ERR_NOMEM] = "PPD_ERR_NOMEM: out of memory or over budget",
    [PPD_ERR_CORRUPT] = "PPD_ERR_CORRUPT: corrupt data",
    [PPD_ERR_VERSION] = "PPD_ERR_VERSION: unsupported format version",
    [PPD_ERR_NOTFOUND] = "PPD_ERR_NOTFOUND: not found",
    [PPD_ERR_LMDB] = "PPD_ERR_LMDB: LMDB error",
    [PPD_ERR_EMPTY] = "PPD_ERR_EMPTY: nothing to work on",
    [PPD_ERR_CUDA] = "PPD_ERR_CUDA: CUDA error",
    [PPD_ERR_INTERNAL] = "PPD_ERR_INTERNAL: internal error (a bug)",
    [PPD_ERR_STOPPED] = "PPD_ERR_STOPPED: stopped by a signal",
};

const char *ppd_strerror(ppd_status st) {
    if ((int)st < 0 || st >= PPD_STATUS_COUNT || !names[st]) return "PPD_ERR_?: unknown status";
    return names[st];
}

const char *ppd_errmsg(void) {
    return errmsg;
}

void ppd_clear_error(void) {
    errmsg[0] = 0;
}

ppd_status ppd_vfail(ppd_status st, const char *fmt, va_list ap) {
    vsnprintf(errmsg, sizeof errmsg, fmt, ap);
    return st;
}

ppd_status ppd_fail(ppd_status st, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    ppd_vfail(st, fmt, ap);
    va_end(ap);
    return st;
}

ppd_status ppd_fail_ctx(ppd_status st, const char *fmt, ...) {
    char prev[ERRMSG_CAP];
    memcpy(prev, errmsg, sizeof prev);
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(errmsg, sizeof errmsg, fmt, ap);
    va_end(ap);
    if (n >= 0 && (size_t)n < sizeof errmsg && prev[0])
        snprintf(errmsg + n, sizeof errmsg - (size_t)n, ": %s", prev);
    return st;
}
