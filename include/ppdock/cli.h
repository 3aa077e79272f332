/* ppdock/cli.h — what every tool's main() shares: exit codes, job counts, JSON output.
 *
 * Exit codes (DESIGN.md, "Conventions"): 0 success, 1 some inputs failed (the rest succeeded),
 * 2 usage or config error, 3 I/O or resource failure. cache-check uses fsck's codes instead.
 */
#ifndef PPDOCK_CLI_H
#define PPDOCK_CLI_H

#include <stdio.h>

#include "ppdock/status.h"

enum { PPD_EXIT_OK = 0, PPD_EXIT_PARTIAL = 1, PPD_EXIT_USAGE = 2, PPD_EXIT_IO = 3 };

/* 2 for usage/config errors, 1 for a run stopped by a signal (PPD_ERR_STOPPED), 3 for
 * everything else that stops a tool. */
int ppd_exit_code(ppd_status st);
/* Online CPUs (at least 1). */
int ppd_cpu_count(void);
/* Parse a positive integer option value; -1 if it is not one. */
long ppd_parse_count(const char *s);

/* A tool's run failed: the error on stderr and, with --json, one line on stdout,
 * {"error": MESSAGE, "status": "PPD_ERR_IO", "exit": 3}, so that a JSON stream always ends with
 * its outcome. Returns the exit code (ppd_exit_code). */
int ppd_tool_failed(ppd_status st, int json);

/* JSON string literal (quotes included, escapes per RFC 8259; bytes >= 0x80 passed through). */
void ppd_json_str(FILE *f, const char *s);
void ppd_json_strn(FILE *f, const char *s, size_t n);
/* The members of a failure in a JSON object: "error": the thread's last message (ppd_errmsg),
 * "status": st's name ("PPD_ERR_IO"), without braces, for the caller's object. */
void ppd_json_error_members(FILE *f, ppd_status st);

#endif
