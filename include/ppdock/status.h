/* ppdock/status.h — status codes and error context.
 *
 * Every library function that can fail returns a ppd_status. On failure it has also recorded a
 * message in a thread-local error context that names the input (file:line, cache key, config
 * key) and, where it helps, what to do next. Callers propagate the status unchanged; the tool's
 * main() prints ppd_errmsg() and maps the status to an exit code.
 *
 *   ppd_status st = ppd_pdb_read(path, &s);
 *   if (st) { fprintf(stderr, "error: %s\n", ppd_errmsg()); return st; }
 *
 * Threads: the error context is per thread. A worker that hands a failure to another thread
 * copies ppd_errmsg() into its result.
 */
#ifndef PPDOCK_STATUS_H
#define PPDOCK_STATUS_H

#include <stdarg.h>

#ifdef __cplusplus /* CUDA sources include this header too */
extern "C" {
#endif

typedef enum {
    PPD_OK = 0,
    PPD_ERR_USAGE,    /* bad command line or API misuse by the caller */
    PPD_ERR_CONFIG,   /* config file or --set value: wrong type, out of range, unreadable */
    PPD_ERR_IO,       /* open/read/write/rename failed (errno text in the message) */
    PPD_ERR_FORMAT,   /* malformed input file (PDB, CSV, YAML): message has file:line */
    PPD_ERR_NOMEM,    /* allocation failed or a planned budget cannot hold the work */
    PPD_ERR_CORRUPT,  /* a cache record or file fails its checksum or structural checks */
    PPD_ERR_VERSION,  /* cache schema / record format version this build does not read */
    PPD_ERR_NOTFOUND, /* a key, file or record that must exist does not */
    PPD_ERR_LMDB,     /* LMDB returned an error not covered above (mdb_strerror in message) */
    PPD_ERR_EMPTY,    /* input has nothing to work on (no residues with CA, empty file) */
    PPD_ERR_CUDA,     /* CUDA runtime/driver error */
    PPD_ERR_INTERNAL, /* a bug: an invariant that should hold did not */
    PPD_ERR_STOPPED,  /* stopped on request (a signal) between units of work: not a failure,
                       * what was done is kept (exit 1, as a partial run) */
    PPD_STATUS_COUNT
} ppd_status;

/* "PPD_ERR_IO: I/O error" — the code's name and a short description. Never NULL. */
const char *ppd_strerror(ppd_status st);

/* The calling thread's last error message, with context ("" if none). */
const char *ppd_errmsg(void);

/* Record a message for `st` in the calling thread's context and return `st`, so that
 * `return ppd_fail(PPD_ERR_FORMAT, "%s:%d: bad residue number", path, line);` reads naturally. */
ppd_status ppd_fail(ppd_status st, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
ppd_status ppd_vfail(ppd_status st, const char *fmt, va_list ap);

/* Prepend context to the current message: "<ctx>: <previous message>". Returns `st`. */
ppd_status ppd_fail_ctx(ppd_status st, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Clear the calling thread's message. */
void ppd_clear_error(void);

/* Propagate a failing status from an expression. */
#define PPD_TRY(expr)                                                                              \
    do {                                                                                           \
        ppd_status ppd_try_st_ = (expr);                                                           \
        if (ppd_try_st_ != PPD_OK) return ppd_try_st_;                                             \
    } while (0)

#ifdef __cplusplus
}
#endif

#endif
