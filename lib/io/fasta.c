/* FASTA reading (see ppdock/fasta.h). Hand-written: the format is a few lines of rules and no
 * library in our dependency set reads it. */
#include "ppdock/fasta.h"
#include "ppdock/fsutil.h"

#include <ctype.h>
#include <string.h>

ppd_status ppd_fasta_read(const char *path, ppd_fasta_fn fn, void *ctx) {
    ppd_buf raw = {0}, text = {0}, seq = {0}, name = {0};
    ppd_status st = ppd_read_maybe_gz(path, &raw, &text);
    ppd_buf_free(&raw);
    int line = 0, header_line = 0, have = 0, records = 0;
    const char *p = (const char *)text.data, *end = p ? p + text.len : NULL;
    while (!st && p && p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *e = nl ? nl : end;
        line++;
        if (e > p && e[-1] == '\r') e--;
        if (p < e && *p == '>') {
            if (have)
                st = fn(ctx, (const char *)name.data, seq.len ? (const char *)seq.data : "",
                        seq.len, header_line);
            records += have;
            const char *s = p + 1, *t = s;
            while (t < e && !isspace((unsigned char)*t)) t++;
            if (!st && t == s)
                st = ppd_fail(PPD_ERR_FORMAT, "%s:%d: '>' line without a name", path, line);
            name.len = 0;
            seq.len = 0;
            if (!st) st = ppd_buf_append(&name, s, (size_t)(t - s));
            header_line = line;
            have = 1;
        } else if (p < e && *p != ';') {
            for (const char *c = p; !st && c < e; c++) {
                if (isspace((unsigned char)*c)) continue;
                if (!have)
                    st = ppd_fail(PPD_ERR_FORMAT, "%s:%d: sequence text before the first '>' line",
                                  path, line);
                else
                    st = ppd_buf_append(&seq, c, 1);
            }
        }
        p = nl ? nl + 1 : end;
    }
    if (!st && have) {
        st = fn(ctx, (const char *)name.data, seq.len ? (const char *)seq.data : "", seq.len,
                header_line);
        records++;
    }
    if (!st && records == 0) st = ppd_fail(PPD_ERR_EMPTY, "%s: no FASTA records", path);
    ppd_buf_free(&text);
    ppd_buf_free(&seq);
    ppd_buf_free(&name);
    return st;
}
