/* Shared pieces of the tools' main() (see ppdock/cli.h). */
#include "ppdock/cli.h"

#include "ppdock/log.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int ppd_exit_code(ppd_status st) {
    switch (st) {
    case PPD_OK:
        return PPD_EXIT_OK;
    case PPD_ERR_USAGE:
    case PPD_ERR_CONFIG:
        return PPD_EXIT_USAGE;
    case PPD_ERR_STOPPED:
        return PPD_EXIT_PARTIAL;
    default:
        return PPD_EXIT_IO;
    }
}

int ppd_cpu_count(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

long ppd_parse_count(const char *s) {
    if (!s || !*s) return -1;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || v < 1) return -1;
    return v;
}

void ppd_json_strn(FILE *f, const char *s, size_t n) {
    fputc('"', f);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        switch (c) {
        case '"':
            fputs("\\\"", f);
            break;
        case '\\':
            fputs("\\\\", f);
            break;
        case '\n':
            fputs("\\n", f);
            break;
        case '\r':
            fputs("\\r", f);
            break;
        case '\t':
            fputs("\\t", f);
            break;
        default:
            if (c < 0x20)
                fprintf(f, "\\u%04x", c);
            else
                fputc(c, f);
        }
    }
    fputc('"', f);
}

void ppd_json_str(FILE *f, const char *s) {
    ppd_json_strn(f, s ? s : "", s ? strlen(s) : 0);
}

void ppd_json_error_members(FILE *f, ppd_status st) {
    const char *name = ppd_strerror(st), *colon = strchr(name, ':'); /* "PPD_ERR_IO: I/O error" */
    fprintf(f, "\"error\": ");
    ppd_json_str(f, ppd_errmsg());
    fprintf(f, ", \"status\": ");
    ppd_json_strn(f, name, colon ? (size_t)(colon - name) : strlen(name));
}

int ppd_tool_failed(ppd_status st, int json) {
    int rc = ppd_exit_code(st);
    ppd_error("%s", ppd_errmsg());
    if (json) {
        printf("{");
        ppd_json_error_members(stdout, st);
        printf(", \"exit\": %d}\n", rc);
        fflush(stdout);
    }
    return rc;
}
