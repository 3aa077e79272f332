/* Data set lists (see ppdock/dataset.h). CSV parsing is written here because the only CSV we
 * read is a two-column index; a CSV library would be a dependency for thirty lines. */
#include "ppdock/dataset.h"
#include "ppdock/cache.h"
#include "ppdock/index_set.h"
#include "ppdock/log.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { MAX_FIELDS = 64 };

/* Split one CSV record starting at *p (which is advanced past it). Quoted fields may contain
 * commas, doubled quotes and newlines. Fields are unescaped in place; NUL-terminated. */
static int csv_record(char **p, char *end, char **fields, int max, int *line) {
    int nf = 0;
    char *s = *p;
    for (;;) {
        char *out = s, *start = s;
        if (s < end && *s == '"') {
            s++;
            for (;;) {
                if (s >= end) break;
                if (*s == '"') {
                    if (s + 1 < end && s[1] == '"') {
                        *out++ = '"';
                        s += 2;
                        continue;
                    }
                    s++;
                    break;
                }
                if (*s == '\n') (*line)++;
                *out++ = *s++;
            }
            while (s < end && *s != ',' && *s != '\n' && *s != '\r') s++; /* junk after quote */
        } else {
            while (s < end && *s != ',' && *s != '\n' && *s != '\r') s++;
            out = s;
        }
        char sep = s < end ? *s : '\n';
        *out = 0;
        if (nf < max) fields[nf] = start;
        nf++;
        if (sep == ',') {
            s++;
            continue;
        }
        /* the terminator itself may have been overwritten by the NUL above: use `sep` */
        if (s < end) s++;
        if (sep == '\r' && s < end && *s == '\n') s++;
        break;
    }
    *p = s;
    return nf;
}

static char *trim(char *s) {
    while (*s == ' ' || *s == '\t') s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t')) s[--n] = 0;
    return s;
}

int ppd_dataset_structure_path(const char *data_path, const char *id, char role, int unbound,
                               char *out, size_t cap) {
    static int warned_both;
    char plain[4096];
    snprintf(plain, sizeof plain, "%s/structures/%s_%c_%c.pdb", data_path, id, role,
             unbound ? 'u' : 'b');
    snprintf(out, cap, "%s.gz", plain);
    int have_gz = ppd_file_exists(out), have_plain = ppd_file_exists(plain);
    if (have_plain) {
        if (have_gz && !__atomic_exchange_n(&warned_both, 1, __ATOMIC_RELAXED))
            ppd_warn("%s and %s.gz both exist; using the uncompressed file (warned once)", plain,
                     plain);
        snprintf(out, cap, "%s", plain);
        return 1;
    }
    return have_gz;
}

/* The ids seen so far: a set of their offsets in ds->strings (offsets survive the buffer
 * growing). */
static const void *id_at(const void *ds, size_t off, size_t *len) {
    const char *id = (const char *)((const ppd_dataset *)ds)->strings.data + off;
    *len = strlen(id);
    return id;
}

/* Items are built in two passes over the strings buffer, so pointers are fixed up at the end. */
typedef struct {
    size_t id, split, rec, lig, err; /* offsets into strings; SIZE_MAX = none */
} item_off;

static size_t add_str(ppd_dataset *ds, const char *s, ppd_status *st) {
    size_t off = ds->strings.len;
    if (!*st) *st = ppd_buf_append(&ds->strings, s, strlen(s) + 1);
    return off;
}

static ppd_status finish(ppd_dataset *ds, item_off *offs, size_t n) {
    ds->items = calloc(n ? n : 1, sizeof *ds->items);
    if (!ds->items) return ppd_fail(PPD_ERR_NOMEM, "out of memory");
    const char *base = (const char *)ds->strings.data;
    for (size_t i = 0; i < n; i++) {
        ds->items[i] = (ppd_complex_src){
            .id = base + offs[i].id,
            .split = base + offs[i].split,
            .receptor = base + offs[i].rec,
            .ligand = base + offs[i].lig,
            .error = offs[i].err == SIZE_MAX ? NULL : base + offs[i].err,
        };
    }
    ds->n = n;
    return PPD_OK;
}

static ppd_status add_item(ppd_dataset *ds, const char *data_path, const char *id,
                           const char *split, int unbound, item_off *o) {
    char rec[4200], lig[4200], err[9000];
    ppd_status st = PPD_OK;
    int hr = ppd_dataset_structure_path(data_path, id, 'r', unbound, rec, sizeof rec);
    int hl = ppd_dataset_structure_path(data_path, id, 'l', unbound, lig, sizeof lig);
    o->id = add_str(ds, id, &st);
    o->split = add_str(ds, split, &st);
    o->rec = add_str(ds, rec, &st);
    o->lig = add_str(ds, lig, &st);
    o->err = SIZE_MAX;
    if (!hr || !hl) {
        const char *which = !hr ? rec : lig;
        size_t n = strlen(which);
        /* name the .pdb and the .pdb.gz that were tried */
        snprintf(err, sizeof err, "%s file not found: %.*s or %s", !hr ? "receptor" : "ligand",
                 (int)(n > 3 && !strcmp(which + n - 3, ".gz") ? n - 3 : n), which, which);
        o->err = add_str(ds, err, &st);
    }
    return st;
}

ppd_status ppd_dataset_load(const char *data_path, const char *data_file, int use_unbound,
                            ppd_dataset *out) {
    memset(out, 0, sizeof *out);
    ppd_buf text = {0};
    PPD_TRY(ppd_read_file(data_file, &text));
    char *p = (char *)text.data, *end = p + text.len;
    if (text.len >= 3 && !memcmp(p, "\xef\xbb\xbf", 3)) p += 3;
    for (char *q = p; q < end; q++)
        if (*q == 0) {
            ppd_buf_free(&text);
            return ppd_fail(PPD_ERR_FORMAT, "%s: binary data (a NUL byte) in a CSV file",
                            data_file);
        }
    char *fields[MAX_FIELDS];
    int line = 1, col_path = -1, col_split = -1, nhead = 0;
    ppd_status st = PPD_OK;
    /* header: first non-blank record */
    while (p < end && (*p == '\n' || *p == '\r')) {
        if (*p == '\n') line++;
        p++;
    }
    int head_line = line;
    nhead = csv_record(&p, end, fields, MAX_FIELDS, &line);
    line++;
    for (int i = 0; i < nhead && i < MAX_FIELDS; i++) {
        char *f = trim(fields[i]);
        if (!strcmp(f, "path")) col_path = i;
        if (!strcmp(f, "split")) col_split = i;
    }
    if (col_path < 0) {
        ppd_buf_free(&text);
        return ppd_fail(PPD_ERR_FORMAT,
                        "%s:%d: the header has no 'path' column (expected e.g. \"path,split\")",
                        data_file, head_line);
    }
    item_off *offs = NULL;
    size_t n = 0, cap = 0;
    ppd_index_set ids;
    ppd_index_set_init(&ids, id_at, out);
    while (!st && p < end) {
        if (*p == '\n' || *p == '\r') { /* blank line */
            if (*p == '\n') line++;
            p++;
            continue;
        }
        int row_line = line;
        int nf = csv_record(&p, end, fields, MAX_FIELDS, &line);
        line++;
        if (nf == 1 && !*trim(fields[0])) continue;
        if (nf <= col_path || (col_split >= 0 && nf <= col_split)) {
            st = ppd_fail(PPD_ERR_FORMAT, "%s:%d: %d field%s, the header has %d", data_file,
                          row_line, nf, nf == 1 ? "" : "s", nhead);
            break;
        }
        char *id = trim(fields[col_path]);
        const char *split = col_split >= 0 ? trim(fields[col_split]) : "";
        if (!*id) {
            st = ppd_fail(PPD_ERR_FORMAT, "%s:%d: empty 'path' (complex id)", data_file, row_line);
            break;
        }
        if (strlen(id) > PPD_CACHE_MAX_KEY - 32 || strchr(id, '/')) {
            st = ppd_fail(PPD_ERR_FORMAT,
                          "%s:%d: complex id '%.60s' is not a DB5-style id (too long or a path; "
                          "DIPS .dill pairs are not supported)",
                          data_file, row_line, id);
            break;
        }
        if (n == cap) {
            cap = cap ? cap * 2 : 256;
            item_off *no = realloc(offs, cap * sizeof *offs);
            if (!no) {
                st = ppd_fail(PPD_ERR_NOMEM, "out of memory");
                break;
            }
            offs = no;
        }
        st = add_item(out, data_path, id, split, use_unbound, &offs[n]);
        if (st) break;
        size_t *slot;
        st = ppd_index_set_find(&ids, id, strlen(id), &slot);
        if (!st && *slot)
            ppd_warn("%s:%d: complex '%s' listed again (the first row is used)", data_file,
                     row_line, id);
        else if (!st)
            ppd_index_set_put(&ids, slot, offs[n++].id);
    }
    ppd_index_set_free(&ids);
    if (!st && n == 0) st = ppd_fail(PPD_ERR_EMPTY, "%s: no complexes listed", data_file);
    if (!st) st = finish(out, offs, n);
    free(offs);
    ppd_buf_free(&text);
    if (!st && asprintf(&out->structures, "%s/structures", data_path) < 0)
        out->structures = NULL, st = ppd_fail(PPD_ERR_NOMEM, "out of memory");
    if (!st) out->structures_missing = !ppd_dir_exists(out->structures);
    if (st) ppd_dataset_free(out);
    return st;
}

ppd_status ppd_dataset_pair(const char *id, const char *receptor, const char *ligand,
                            ppd_dataset *out) {
    memset(out, 0, sizeof *out);
    if (!*id || strlen(id) > PPD_CACHE_MAX_KEY - 32)
        return ppd_fail(PPD_ERR_USAGE, "--id '%.60s': give a name of 1 to %d bytes", id,
                        PPD_CACHE_MAX_KEY - 32);
    item_off o;
    ppd_status st = PPD_OK;
    o.id = add_str(out, id, &st);
    o.split = add_str(out, "", &st);
    o.rec = add_str(out, receptor, &st);
    o.lig = add_str(out, ligand, &st);
    o.err = SIZE_MAX;
    char err[9000];
    if (!ppd_file_exists(receptor) || !ppd_file_exists(ligand)) {
        snprintf(err, sizeof err, "%s file not found: %s",
                 !ppd_file_exists(receptor) ? "receptor" : "ligand",
                 !ppd_file_exists(receptor) ? receptor : ligand);
        o.err = add_str(out, err, &st);
    }
    if (!st) st = finish(out, &o, 1);
    if (st) ppd_dataset_free(out);
    return st;
}

void ppd_dataset_free(ppd_dataset *ds) {
    free(ds->items);
    free(ds->structures);
    ppd_buf_free(&ds->strings);
    ppd_buf_free(&ds->array);
    memset(ds, 0, sizeof *ds);
}

/* Identity of an inputs line: "dataset\t<path>\t<file>" -> up to the data_file; "pair\t<id>". */
static size_t line_identity_len(const char *line) {
    int want_tabs = !strncmp(line, "dataset\t", 8) ? 3 : 2;
    const char *p = line;
    for (int tabs = 0; *p && *p != '\n'; p++)
        if (*p == '\t' && ++tabs == want_tabs) break;
    return (size_t)(p - line);
}

ppd_status ppd_inputs_merge(ppd_buf *inputs, const char *line) {
    ppd_buf out = {0};
    size_t id = line_identity_len(line);
    const char *p = inputs->len ? (const char *)inputs->data : "";
    ppd_status st = PPD_OK;
    while (*p && !st) {
        const char *nl = strchr(p, '\n');
        size_t n = nl ? (size_t)(nl - p) : strlen(p);
        size_t pid = line_identity_len(p);
        if (!(pid == id && !strncmp(p, line, id)) && n) {
            st = ppd_buf_append(&out, p, n);
            if (!st) st = ppd_buf_append(&out, "\n", 1);
        }
        p += n + (nl ? 1 : 0);
    }
    if (!st) st = ppd_buf_printf(&out, "%s\n", line);
    if (st) {
        ppd_buf_free(&out);
        return st;
    }
    ppd_buf_free(inputs);
    *inputs = out;
    return PPD_OK;
}

ppd_status ppd_dataset_from_input(const char *line, ppd_dataset *out) {
    char buf[3 * 4096 + 64];
    snprintf(buf, sizeof buf, "%s", line);
    char *nl = strchr(buf, '\n');
    if (nl) *nl = 0;
    char *f[5] = {0};
    int nf = 0;
    for (char *s = buf; nf < 5;) {
        f[nf++] = s;
        char *t = strchr(s, '\t');
        if (!t) break;
        *t = 0;
        s = t + 1;
    }
    if (nf == 4 && !strcmp(f[0], "dataset"))
        return ppd_dataset_load(f[1], f[2], !strcmp(f[3], "1"), out);
    if (nf == 4 && !strcmp(f[0], "pair")) return ppd_dataset_pair(f[1], f[2], f[3], out);
    return ppd_fail(PPD_ERR_CORRUPT, "unreadable inputs line '%.80s'", line);
}
