/* Typed settings from YAML files and --set (see ppdock/config.h).
 *
 * A load walks libyaml's event stream (not its document tree: the events show aliases as such,
 * and every key carries its line). Values are checked as they are met and collected in a list
 * of pending assignments that is applied only when the whole file has been read, so a file with
 * an error changes nothing.
 */
#include "ppdock/config.h"
#include "ppdock/log.h"

#include <ctype.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

enum { MAX_DEPTH = 32, SHOW_MAX = 100 };

typedef struct {
    int is_null;
    int b;
    int64_t i;
    double f;
    char *s; /* PPD_CFG_STR and PPD_CFG_ENUM */
} cfg_value;

struct ppd_config {
    const ppd_config_setting *table;
    size_t n;
    cfg_value *val;
    char **origin; /* NULL: "default" */
    int warnings;
    char last_warning[1024];
};

/* ---- the table ------------------------------------------------------------------------------ */

static const char *inner_name(const char *name) {
    const char *dot = strrchr(name, '.');
    return dot ? dot + 1 : name;
}

const ppd_config_setting *ppd_config_lookup(const char *name) {
    size_t n;
    const ppd_config_setting *t = ppd_config_table(&n);
    int inner = strchr(name, '.') == NULL;
    for (size_t k = 0; k < n; k++)
        if (strcmp(inner ? inner_name(t[k].name) : t[k].name, name) == 0) return &t[k];
    return NULL;
}

static size_t index_of(const ppd_config *cfg, const ppd_config_setting *s) {
    return (size_t)(s - cfg->table);
}

/* ---- parsing one value ---------------------------------------------------------------------- */

/* What a setting accepts, for error messages: "an integer in [1, 10000]". */
static void describe(const ppd_config_setting *s, char *out, size_t cap) {
    int n = 0;
    switch (s->type) {
    case PPD_CFG_BOOL:
        n = snprintf(out, cap, "a boolean (true/false, yes/no, on/off)");
        break;
    case PPD_CFG_INT:
        if (s->imin == INT64_MIN && s->imax == INT64_MAX)
            n = snprintf(out, cap, "an integer");
        else if (s->imax == INT64_MAX)
            n = snprintf(out, cap, "an integer >= %" PRId64, s->imin);
        else
            n = snprintf(out, cap, "an integer in [%" PRId64 ", %" PRId64 "]", s->imin, s->imax);
        break;
    case PPD_CFG_FLOAT:
        if (isinf(s->fmin) && isinf(s->fmax))
            n = snprintf(out, cap, "a number");
        else if (isinf(s->fmax))
            n = snprintf(out, cap, "a number >= %g", s->fmin);
        else
            n = snprintf(out, cap, "a number in [%g, %g]", s->fmin, s->fmax);
        break;
    case PPD_CFG_STR:
        n = snprintf(out, cap, "a string");
        break;
    case PPD_CFG_ENUM: {
        n = snprintf(out, cap, "one of ");
        for (const char *c = s->choices; *c && (size_t)n + 3 < cap; c++) {
            if (*c == '|')
                out[n++] = ',', out[n++] = ' ';
            else
                out[n++] = *c;
        }
        out[n] = 0;
        break;
    }
    }
    if (!s->def && n >= 0 && (size_t)n < cap) snprintf(out + n, cap - (size_t)n, " or null");
}

/* Spellings of null and of booleans that PyYAML (YAML 1.1) resolves for plain scalars. */
static int is_null_word(const char *t) {
    return !*t || !strcmp(t, "~") || !strcmp(t, "null") || !strcmp(t, "Null") || !strcmp(t, "NULL");
}

static int parse_bool(const char *t, int *out) {
    static const char *const yes[] = {"true", "True", "TRUE", "yes", "Yes",
                                      "YES",  "on",   "On",   "ON"};
    static const char *const no[] = {"false", "False", "FALSE", "no", "No",
                                     "NO",    "off",   "Off",   "OFF"};
    for (size_t k = 0; k < sizeof yes / sizeof yes[0]; k++) {
        if (!strcmp(t, yes[k])) return *out = 1, 1;
        if (!strcmp(t, no[k])) return *out = 0, 1;
    }
    return 0;
}

/* Decimal only: "20.0" and "1e3" are not integers, and a leading zero is refused because YAML 1.1
 * (PyYAML) would read "017" as octal 15. */
static int parse_int(const char *t, int64_t *out) {
    int neg = 0;
    if (*t == '+' || *t == '-') neg = *t++ == '-';
    if (!isdigit((unsigned char)*t) || (t[0] == '0' && t[1])) return 0;
    uint64_t limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX, acc = 0;
    for (; *t; t++) {
        if (!isdigit((unsigned char)*t)) return 0;
        unsigned d = (unsigned)(*t - '0');
        if (acc > (limit - d) / 10) return 0; /* overflow */
        acc = acc * 10 + d;
    }
    *out = neg ? (int64_t)(0 - acc) : (int64_t)acc;
    return 1;
}

/* Anything strtod reads in full ("1.e-3", "30.", "5"), finite. */
static int parse_float(const char *t, double *out) {
    if (!*t || isspace((unsigned char)*t)) return 0;
    char *end;
    double v = strtod(t, &end);
    if (*end || !isfinite(v)) return 0;
    *out = v == 0 ? 0.0 : v; /* -0 and 0 mean the same: keep one spelling */
    return 1;
}

static int enum_has(const char *choices, const char *t) {
    size_t len = strlen(t);
    for (const char *c = choices; c;) {
        const char *bar = strchr(c, '|');
        size_t clen = bar ? (size_t)(bar - c) : strlen(c);
        if (clen == len && !memcmp(c, t, len)) return 1;
        c = bar ? bar + 1 : NULL;
    }
    return 0;
}

/* Check `text` against setting s and fill *out. `plain`: an unquoted scalar, whose null
 * spellings mean null. `ctx` names the place and the setting ("f.yaml:3: data.knn_size"). */
static ppd_status parse_value(const ppd_config_setting *s, const char *text, int plain,
                              const char *ctx, cfg_value *out) {
    *out = (cfg_value){0};
    char want[256];
    if (plain && is_null_word(text)) {
        if (s->def) {
            describe(s, want, sizeof want);
            return ppd_fail(PPD_ERR_CONFIG, "%s: expected %s, got null", ctx, want);
        }
        out->is_null = 1;
        return PPD_OK;
    }
    int ok = 1;
    switch (s->type) {
    case PPD_CFG_BOOL:
        ok = parse_bool(text, &out->b);
        break;
    case PPD_CFG_INT:
        ok = parse_int(text, &out->i) && out->i >= s->imin && out->i <= s->imax;
        break;
    case PPD_CFG_FLOAT:
        ok = parse_float(text, &out->f) && out->f >= s->fmin && out->f <= s->fmax;
        break;
    case PPD_CFG_ENUM:
        ok = enum_has(s->choices, text);
        break;
    case PPD_CFG_STR:
        break;
    }
    if (!ok) {
        describe(s, want, sizeof want);
        return ppd_fail(PPD_ERR_CONFIG, "%s: expected %s, got '%.*s'%s", ctx, want, SHOW_MAX, text,
                        strlen(text) > SHOW_MAX ? "..." : "");
    }
    if (s->type == PPD_CFG_STR || s->type == PPD_CFG_ENUM) {
        out->s = strdup(text);
        if (!out->s) return ppd_fail(PPD_ERR_NOMEM, "%s: out of memory", ctx);
    }
    return PPD_OK;
}

/* Replace the value of setting k; takes ownership of v's string and of origin (NULL: default). */
static void assign(ppd_config *cfg, size_t k, cfg_value v, char *origin) {
    free(cfg->val[k].s);
    free(cfg->origin[k]);
    cfg->val[k] = v;
    cfg->origin[k] = origin;
}

/* ---- life cycle ----------------------------------------------------------------------------- */

ppd_status ppd_config_new(ppd_config **out) {
    *out = NULL;
    ppd_config *cfg = calloc(1, sizeof *cfg);
    if (!cfg) return ppd_fail(PPD_ERR_NOMEM, "config: out of memory");
    cfg->table = ppd_config_table(&cfg->n);
    cfg->val = calloc(cfg->n, sizeof *cfg->val);
    cfg->origin = calloc(cfg->n, sizeof *cfg->origin);
    if (!cfg->val || !cfg->origin) {
        ppd_config_free(cfg);
        return ppd_fail(PPD_ERR_NOMEM, "config: out of memory");
    }
    for (size_t k = 0; k < cfg->n; k++) {
        const ppd_config_setting *s = &cfg->table[k];
        if (!s->def) {
            cfg->val[k].is_null = 1;
            continue;
        }
        char ctx[160];
        snprintf(ctx, sizeof ctx, "default of %s", s->name);
        cfg_value v;
        /* Defaults are spelled as quoted values: "" is the empty string, not null. */
        ppd_status st = parse_value(s, s->def, 0, ctx, &v);
        if (st) {
            ppd_config_free(cfg);
            return st == PPD_ERR_CONFIG ? ppd_fail_ctx(PPD_ERR_INTERNAL, "config table") : st;
        }
        assign(cfg, k, v, NULL);
    }
    *out = cfg;
    return PPD_OK;
}

void ppd_config_free(ppd_config *cfg) {
    if (!cfg) return;
    for (size_t k = 0; k < cfg->n; k++) {
        if (cfg->val) free(cfg->val[k].s);
        if (cfg->origin) free(cfg->origin[k]);
    }
    free(cfg->val);
    free(cfg->origin);
    free(cfg);
}

static void warn(ppd_config *cfg, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void warn(ppd_config *cfg, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cfg->last_warning, sizeof cfg->last_warning, fmt, ap);
    va_end(ap);
    cfg->warnings++;
    ppd_warn("%s", cfg->last_warning);
}

int ppd_config_warnings(const ppd_config *cfg) {
    return cfg->warnings;
}
const char *ppd_config_last_warning(const ppd_config *cfg) {
    return cfg->last_warning;
}

/* ---- YAML loading --------------------------------------------------------------------------- */

typedef struct {
    size_t k;
    int line;
    cfg_value v;
} pending;

typedef struct {
    ppd_config *cfg;
    const char *path;
    const ppd_buf *text;
    yaml_parser_t parser;
    pending *pend;
    size_t npend, cap;
    int *first_line; /* per setting: line where this file first set it, 0 if not yet */
    ppd_status bad;  /* the first wrong value, reported once the whole file has parsed */
    char bad_msg[2048];
} loader;

/* A wrong value does not stop the walk at once: a YAML syntax error further on is often its
 * cause ("key: [a" is a sequence until the parser finds it never closes) and is the better
 * message. The first value error is kept and reported when the file has parsed. */
static ppd_status defer(loader *L, ppd_status st) {
    if (st != PPD_ERR_CONFIG) return st;
    if (!L->bad) {
        L->bad = st;
        snprintf(L->bad_msg, sizeof L->bad_msg, "%s", ppd_errmsg());
    }
    return PPD_OK;
}

static int line_at_offset(const ppd_buf *b, size_t off) {
    int line = 1;
    for (size_t i = 0; i < off && i < b->len; i++) line += b->data[i] == '\n';
    return line;
}

static ppd_status syntax_error(loader *L) {
    yaml_parser_t *p = &L->parser;
    const char *problem = p->problem ? p->problem : "unknown error";
    if (p->error == YAML_READER_ERROR) /* bad encoding: libyaml gives a byte offset, not a mark */
        return ppd_fail(PPD_ERR_CONFIG, "%s:%d: YAML error: %s (byte %zu)", L->path,
                        line_at_offset(L->text, p->problem_offset), problem, p->problem_offset);
    if (p->error == YAML_MEMORY_ERROR) return ppd_fail(PPD_ERR_NOMEM, "%s: out of memory", L->path);
    if (p->context)
        return ppd_fail(PPD_ERR_CONFIG, "%s:%zu:%zu: YAML syntax error: %s (%s at line %zu)",
                        L->path, p->problem_mark.line + 1, p->problem_mark.column + 1, problem,
                        p->context, p->context_mark.line + 1);
    return ppd_fail(PPD_ERR_CONFIG, "%s:%zu:%zu: YAML syntax error: %s", L->path,
                    p->problem_mark.line + 1, p->problem_mark.column + 1, problem);
}

static ppd_status next_event(loader *L, yaml_event_t *ev) {
    if (!yaml_parser_parse(&L->parser, ev)) return syntax_error(L);
    return PPD_OK;
}

static int event_line(const yaml_event_t *ev) {
    return (int)ev->start_mark.line + 1;
}

/* Consume the rest of a sequence or mapping whose start event has been read. */
static ppd_status skip_node(loader *L) {
    for (int depth = 1; depth > 0;) {
        yaml_event_t ev;
        PPD_TRY(next_event(L, &ev));
        if (ev.type == YAML_SEQUENCE_START_EVENT || ev.type == YAML_MAPPING_START_EVENT) depth++;
        if (ev.type == YAML_SEQUENCE_END_EVENT || ev.type == YAML_MAPPING_END_EVENT) depth--;
        yaml_event_delete(&ev);
    }
    return PPD_OK;
}

static ppd_status push_pending(loader *L, size_t k, int line, cfg_value v) {
    if (L->npend == L->cap) {
        size_t cap = L->cap ? 2 * L->cap : 64;
        pending *p = realloc(L->pend, cap * sizeof *p);
        if (!p) {
            free(v.s);
            return ppd_fail(PPD_ERR_NOMEM, "%s: out of memory", L->path);
        }
        L->pend = p;
        L->cap = cap;
    }
    L->pend[L->npend++] = (pending){k, line, v};
    return PPD_OK;
}

/* A scalar value for setting s at `line`. */
static ppd_status setting_scalar(loader *L, const ppd_config_setting *s, int line,
                                 const yaml_event_t *ev) {
    char ctx[1200];
    snprintf(ctx, sizeof ctx, "%s:%d: %s", L->path, line, s->name);
    const char *text = (const char *)ev->data.scalar.value;
    if (strlen(text) != ev->data.scalar.length)
        return defer(L, ppd_fail(PPD_ERR_CONFIG, "%s: value contains a NUL character", ctx));
    cfg_value v;
    ppd_status st = parse_value(s, text, ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE, ctx, &v);
    if (st) return defer(L, st);
    size_t k = index_of(L->cfg, s);
    if (L->first_line[k])
        warn(L->cfg, "%s:%d: duplicate key '%s' (also at line %d); the later value wins", L->path,
             line, inner_name(s->name), L->first_line[k]);
    else
        L->first_line[k] = line;
    return push_pending(L, k, line, v);
}

static ppd_status load_mapping(loader *L, int depth);

/* The value of key `key` (at `line`), whose first event is `ev`. */
static ppd_status load_value(loader *L, const char *key, int line, const yaml_event_t *ev,
                             int depth) {
    const ppd_config_setting *s = ppd_config_lookup(key);
    char want[256];
    if (s) describe(s, want, sizeof want);
    switch (ev->type) {
    case YAML_SCALAR_EVENT:
        if (s) return setting_scalar(L, s, line, ev);
        warn(L->cfg, "%s:%d: unknown key '%s' (ignored)", L->path, line, key);
        return PPD_OK;
    case YAML_MAPPING_START_EVENT: /* a section: its keys are settings or further sections */
        if (s) {
            PPD_TRY(defer(L, ppd_fail(PPD_ERR_CONFIG, "%s:%d: %s: expected %s, got a mapping",
                                      L->path, line, s->name, want)));
            return skip_node(L);
        }
        if (depth + 1 >= MAX_DEPTH)
            return ppd_fail(PPD_ERR_CONFIG, "%s:%d: sections nested more than %d deep", L->path,
                            line, MAX_DEPTH);
        return load_mapping(L, depth + 1);
    case YAML_SEQUENCE_START_EVENT:
        if (s)
            PPD_TRY(defer(L, ppd_fail(PPD_ERR_CONFIG, "%s:%d: %s: expected %s, got a sequence",
                                      L->path, line, s->name, want)));
        else
            warn(L->cfg, "%s:%d: unknown key '%s' (ignored)", L->path, line, key);
        return skip_node(L);
    case YAML_ALIAS_EVENT:
        if (s)
            return defer(L, ppd_fail(PPD_ERR_CONFIG,
                                     "%s:%d: %s: expected %s, got an alias (*%s); aliases are "
                                     "not supported",
                                     L->path, line, s->name, want,
                                     (const char *)ev->data.alias.anchor));
        warn(L->cfg, "%s:%d: unknown key '%s' (ignored)", L->path, line, key);
        return PPD_OK;
    default:
        return ppd_fail(PPD_ERR_INTERNAL, "%s:%d: unexpected YAML event %d", L->path, line,
                        (int)ev->type);
    }
}

typedef struct {
    char *key;
    int line;
} seen_key;

/* Warn about a section key given twice in one mapping. Both blocks are read, in order. */
static ppd_status note_section(loader *L, seen_key **seen, size_t *nseen, const char *key,
                               int line) {
    for (size_t i = 0; i < *nseen; i++)
        if (!strcmp((*seen)[i].key, key)) {
            warn(L->cfg, "%s:%d: duplicate section '%s' (also at line %d); both are read", L->path,
                 line, key, (*seen)[i].line);
            return PPD_OK;
        }
    seen_key *p = realloc(*seen, (*nseen + 1) * sizeof *p);
    char *dup = strdup(key);
    if (p) *seen = p;
    if (!p || !dup) {
        free(dup);
        return ppd_fail(PPD_ERR_NOMEM, "%s: out of memory", L->path);
    }
    p[(*nseen)++] = (seen_key){dup, line};
    return PPD_OK;
}

/* The keys of a mapping whose start event has been read, up to its end event. */
static ppd_status load_mapping(loader *L, int depth) {
    seen_key *seen = NULL;
    size_t nseen = 0;
    ppd_status st = PPD_OK;
    for (;;) {
        yaml_event_t kev, vev;
        if ((st = next_event(L, &kev))) break;
        if (kev.type == YAML_MAPPING_END_EVENT) {
            yaml_event_delete(&kev);
            break;
        }
        int line = event_line(&kev);
        if (kev.type != YAML_SCALAR_EVENT ||
            strlen((char *)kev.data.scalar.value) != kev.data.scalar.length) {
            yaml_event_delete(&kev);
            st = ppd_fail(PPD_ERR_CONFIG, "%s:%d: a key must be a plain name", L->path, line);
            break;
        }
        char *key = strdup((char *)kev.data.scalar.value);
        yaml_event_delete(&kev);
        if (!key) {
            st = ppd_fail(PPD_ERR_NOMEM, "%s: out of memory", L->path);
            break;
        }
        if ((st = next_event(L, &vev))) {
            free(key);
            break;
        }
        if (vev.type == YAML_MAPPING_START_EVENT && !ppd_config_lookup(key))
            st = note_section(L, &seen, &nseen, key, line);
        if (!st) st = load_value(L, key, line, &vev, depth);
        yaml_event_delete(&vev);
        free(key);
        if (st) break;
    }
    for (size_t i = 0; i < nseen; i++) free(seen[i].key);
    free(seen);
    return st;
}

/* stream-start, at most one document whose root is a mapping (or empty), stream-end. */
static ppd_status load_stream(loader *L) {
    yaml_event_t ev;
    PPD_TRY(next_event(L, &ev)); /* stream start */
    yaml_event_delete(&ev);
    for (int docs = 0;;) {
        PPD_TRY(next_event(L, &ev));
        yaml_event_type_t type = ev.type;
        int line = event_line(&ev);
        yaml_event_delete(&ev);
        if (type == YAML_STREAM_END_EVENT) return PPD_OK;
        if (docs++)
            return ppd_fail(PPD_ERR_CONFIG, "%s:%d: more than one YAML document", L->path, line);
        PPD_TRY(next_event(L, &ev)); /* the root node */
        line = event_line(&ev);
        type = ev.type;
        int empty = type == YAML_SCALAR_EVENT && ev.data.scalar.length == 0 &&
                    ev.data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
        yaml_event_delete(&ev);
        if (type == YAML_MAPPING_START_EVENT)
            PPD_TRY(load_mapping(L, 0));
        else if (!empty)
            return ppd_fail(PPD_ERR_CONFIG, "%s:%d: expected a mapping of settings (key: value)",
                            L->path, line);
        PPD_TRY(next_event(L, &ev)); /* document end */
        yaml_event_delete(&ev);
    }
}

ppd_status ppd_config_load(ppd_config *cfg, const char *path) {
    ppd_buf text = {0};
    PPD_TRY(ppd_read_file(path, &text));
    loader L = {.cfg = cfg, .path = path, .text = &text};
    L.first_line = calloc(cfg->n, sizeof *L.first_line);
    if (!L.first_line || !yaml_parser_initialize(&L.parser)) {
        free(L.first_line);
        ppd_buf_free(&text);
        return ppd_fail(PPD_ERR_NOMEM, "%s: out of memory", path);
    }
    yaml_parser_set_input_string(&L.parser, text.data, text.len);
    ppd_status st = load_stream(&L);
    if (!st && L.bad) st = ppd_fail(L.bad, "%s", L.bad_msg);
    /* Origins first, so that running out of memory cannot leave the file half applied. */
    char **origins = st ? NULL : calloc(L.npend + 1, sizeof *origins);
    if (!st && !origins) st = ppd_fail(PPD_ERR_NOMEM, "%s: out of memory", path);
    for (size_t i = 0; i < L.npend && !st; i++)
        if (asprintf(&origins[i], "%s:%d", path, L.pend[i].line) < 0) {
            origins[i] = NULL;
            st = ppd_fail(PPD_ERR_NOMEM, "%s: out of memory", path);
        }
    for (size_t i = 0; i < L.npend; i++) {
        if (st) { /* an error anywhere leaves cfg as it was */
            free(L.pend[i].v.s);
            if (origins) free(origins[i]);
        } else {
            assign(cfg, L.pend[i].k, L.pend[i].v, origins[i]);
        }
    }
    free(origins);
    free(L.pend);
    free(L.first_line);
    yaml_parser_delete(&L.parser);
    ppd_buf_free(&text);
    return st;
}

/* ---- --set ---------------------------------------------------------------------------------- */

static void trim(const char **b, const char **e) {
    while (*b < *e && isspace((unsigned char)**b)) (*b)++;
    while (*e > *b && isspace((unsigned char)(*e)[-1])) (*e)--;
}

ppd_status ppd_config_set(ppd_config *cfg, const char *assignment) {
    const char *eq = strchr(assignment, '=');
    if (!eq)
        return ppd_fail(PPD_ERR_CONFIG,
                        "--set %s: expected NAME=VALUE, e.g. --set data.knn_size=16", assignment);
    const char *nb = assignment, *ne = eq, *vb = eq + 1, *ve = eq + strlen(eq);
    trim(&nb, &ne);
    trim(&vb, &ve);
    char name[256];
    if ((size_t)(ne - nb) >= sizeof name || ne == nb)
        return ppd_fail(PPD_ERR_CONFIG, "--set %s: bad setting name", assignment);
    memcpy(name, nb, (size_t)(ne - nb));
    name[ne - nb] = 0;
    const ppd_config_setting *s = ppd_config_lookup(name);
    if (!s) {
        const ppd_config_setting *near =
            strchr(name, '.') ? ppd_config_lookup(inner_name(name)) : NULL;
        if (near)
            return ppd_fail(PPD_ERR_CONFIG, "--set %s: unknown setting (did you mean %s?)", name,
                            near->name);
        return ppd_fail(PPD_ERR_CONFIG, "--set %s: unknown setting (see docs/config.md)", name);
    }
    char *value = strndup(vb, (size_t)(ve - vb));
    char *origin = strdup("--set");
    ppd_status st = PPD_OK;
    if (!value || !origin) st = ppd_fail(PPD_ERR_NOMEM, "--set %s: out of memory", name);
    cfg_value v;
    if (!st) {
        char ctx[300];
        snprintf(ctx, sizeof ctx, "--set %s", s->name);
        /* The value reads as a plain YAML scalar, except that an empty value for a string that
         * cannot be null means the empty string (there is no way to quote on a command line). */
        int plain = !(s->type == PPD_CFG_STR && s->def && !*value);
        st = parse_value(s, value, plain, ctx, &v);
    }
    free(value);
    if (st) {
        free(origin);
        return st;
    }
    assign(cfg, index_of(cfg, s), v, origin);
    return PPD_OK;
}

/* ---- getters -------------------------------------------------------------------------------- */

/* A wrong name or type in a getter is a bug in the calling tool, not bad input. */
static const cfg_value *get(const ppd_config *cfg, const char *name, int type_a, int type_b,
                            const char *getter) {
    const ppd_config_setting *s = ppd_config_lookup(name);
    if (!s || strcmp(s->name, name) != 0) {
        fprintf(stderr, "ppdock: bug: %s(\"%s\"): no such setting (use the full section.key)\n",
                getter, name);
        abort();
    }
    if (type_a >= 0 && (int)s->type != type_a && (int)s->type != type_b) {
        fprintf(stderr, "ppdock: bug: %s(\"%s\"): the setting has another type\n", getter, name);
        abort();
    }
    return &cfg->val[index_of(cfg, s)];
}

int64_t ppd_config_int(const ppd_config *cfg, const char *name) {
    return get(cfg, name, PPD_CFG_INT, PPD_CFG_INT, "ppd_config_int")->i;
}

double ppd_config_float(const ppd_config *cfg, const char *name) {
    return get(cfg, name, PPD_CFG_FLOAT, PPD_CFG_FLOAT, "ppd_config_float")->f;
}

int ppd_config_bool(const ppd_config *cfg, const char *name) {
    return get(cfg, name, PPD_CFG_BOOL, PPD_CFG_BOOL, "ppd_config_bool")->b;
}

const char *ppd_config_str(const ppd_config *cfg, const char *name) {
    const cfg_value *v = get(cfg, name, PPD_CFG_STR, PPD_CFG_ENUM, "ppd_config_str");
    return v->is_null ? NULL : v->s;
}

int ppd_config_is_null(const ppd_config *cfg, const char *name) {
    return get(cfg, name, -1, -1, "ppd_config_is_null")->is_null;
}

const char *ppd_config_origin(const ppd_config *cfg, const char *name) {
    const cfg_value *v = get(cfg, name, -1, -1, "ppd_config_origin");
    const char *o = cfg->origin[(size_t)(v - cfg->val)];
    return o ? o : "default";
}

/* ---- canonical text ------------------------------------------------------------------------- */

ppd_status ppd_config_canonical(const ppd_config *cfg, const char *const *names, size_t n,
                                ppd_buf *out) {
    for (size_t i = 0; i < n; i++) {
        const ppd_config_setting *s = ppd_config_lookup(names[i]);
        if (!s) return ppd_fail(PPD_ERR_USAGE, "canonical config: unknown setting '%s'", names[i]);
        const cfg_value *v = &cfg->val[index_of(cfg, s)];
        PPD_TRY(ppd_buf_printf(out, "%s=", s->name));
        if (v->is_null) {
            PPD_TRY(ppd_buf_printf(out, "null"));
        } else if (s->type == PPD_CFG_BOOL) {
            PPD_TRY(ppd_buf_printf(out, "%s", v->b ? "true" : "false"));
        } else if (s->type == PPD_CFG_INT) {
            PPD_TRY(ppd_buf_printf(out, "%" PRId64, v->i));
        } else if (s->type == PPD_CFG_FLOAT) {
            PPD_TRY(ppd_buf_printf(out, "%.17g", v->f));
        } else { /* escape '\' and newline so that the lines stay one per setting */
            for (const char *c = v->s; *c; c++) {
                const char *esc = *c == '\\' ? "\\\\" : *c == '\n' ? "\\n" : NULL;
                PPD_TRY(esc ? ppd_buf_append(out, esc, 2) : ppd_buf_append(out, c, 1));
            }
        }
        PPD_TRY(ppd_buf_append(out, "\n", 1));
    }
    return PPD_OK;
}

/* ---- YAML and Markdown writers -------------------------------------------------------------- */

/* The shortest spelling that reads back to the same double, with a '.' so that PyYAML (YAML 1.1)
 * reads it as a float too ("1.0e-06", "30.0"). */
static void format_float(double v, char *out, size_t cap) {
    char tmp[64];
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*g", prec, v);
        if (strtod(tmp, NULL) == v) break;
    }
    char *e = strchr(tmp, 'e');
    if (strchr(tmp, '.'))
        snprintf(out, cap, "%s", tmp);
    else if (e)
        snprintf(out, cap, "%.*s.0%s", (int)(e - tmp), tmp, e);
    else
        snprintf(out, cap, "%s.0", tmp);
}

static void write_quoted(FILE *f, const char *s) {
    fputc('"', f);
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        if (*c == '"' || *c == '\\')
            fprintf(f, "\\%c", *c);
        else if (*c == '\n')
            fputs("\\n", f);
        else if (*c == '\t')
            fputs("\\t", f);
        else if (*c < 0x20 || *c == 0x7f)
            fprintf(f, "\\x%02x", *c);
        else
            fputc(*c, f);
    }
    fputc('"', f);
}

/* A value as YAML text; strings are always double-quoted so that "null" or "true" stay strings. */
static void write_value(FILE *f, const ppd_config_setting *s, const cfg_value *v) {
    char num[64];
    if (v->is_null) {
        fputs("null", f);
    } else if (s->type == PPD_CFG_BOOL) {
        fputs(v->b ? "true" : "false", f);
    } else if (s->type == PPD_CFG_INT) {
        fprintf(f, "%" PRId64, v->i);
    } else if (s->type == PPD_CFG_FLOAT) {
        format_float(v->f, num, sizeof num);
        fputs(num, f);
    } else {
        write_quoted(f, v->s);
    }
}

static const char *type_name(ppd_config_type t) {
    static const char *const names[] = {"bool", "int", "float", "string", "enum"};
    return names[t];
}

/* Comment text must stay on its line. */
static void write_comment_text(FILE *f, const char *s) {
    for (; *s; s++) fputc((unsigned char)*s < 0x20 ? '?' : *s, f);
}

static size_t section_len(const char *name) {
    return (size_t)(strchr(name, '.') - name);
}

void ppd_config_write_yaml(const ppd_config *cfg, FILE *f) {
    fputs("# ppdock configuration: every setting with its value. Each comment gives the type,\n"
          "# the allowed values, where the value came from, and what it does.\n",
          f);
    for (size_t a = 0; a < cfg->n; a++) {
        const char *sec = cfg->table[a].name;
        size_t slen = section_len(sec);
        int first = 1; /* write each section once, at its first setting */
        for (size_t b = 0; b < a && first; b++)
            first = !(section_len(cfg->table[b].name) == slen &&
                      !memcmp(cfg->table[b].name, sec, slen));
        if (!first) continue;
        fprintf(f, "%.*s:\n", (int)slen, sec);
        for (size_t k = a; k < cfg->n; k++) {
            const ppd_config_setting *s = &cfg->table[k];
            if (section_len(s->name) != slen || memcmp(s->name, sec, slen)) continue;
            const char *origin = cfg->origin[k] ? cfg->origin[k] : "default";
            char want[256] = "a boolean"; /* the spellings are in docs/config.md */
            if (s->type != PPD_CFG_BOOL) describe(s, want, sizeof want);
            fprintf(f, "  %s: ", inner_name(s->name));
            write_value(f, s, &cfg->val[k]);
            fprintf(f, "  # %s; from ", want);
            write_comment_text(f, origin);
            fputs("; ", f);
            write_comment_text(f, s->help);
            if (s->flags & PPD_CFG_COMPAT) fputs(" [DiffDock-PP only, ignored]", f);
            fputc('\n', f);
        }
    }
}

static void md_range(FILE *f, const ppd_config_setting *s) {
    switch (s->type) {
    case PPD_CFG_INT:
        if (s->imax == INT64_MAX)
            fprintf(f, ">= %" PRId64, s->imin);
        else
            fprintf(f, "%" PRId64 " .. %" PRId64, s->imin, s->imax);
        break;
    case PPD_CFG_FLOAT:
        if (isinf(s->fmax))
            fprintf(f, ">= %g", s->fmin);
        else
            fprintf(f, "%g .. %g", s->fmin, s->fmax);
        break;
    case PPD_CFG_ENUM:
        for (const char *c = s->choices; *c; c++)
            if (*c == '|')
                fputs("`, `", f);
            else
                fputc(*c, f);
        break;
    default:
        break;
    }
}

void ppd_config_write_markdown(FILE *f) {
    size_t n;
    const ppd_config_setting *t = ppd_config_table(&n);
    fputs("| setting | type | default | allowed | meaning |\n|---|---|---|---|---|\n", f);
    for (size_t k = 0; k < n; k++) {
        const ppd_config_setting *s = &t[k];
        if (s->flags & PPD_CFG_COMPAT) continue;
        fprintf(f, "| `%s` | %s | ", s->name, type_name(s->type));
        if (!s->def)
            fputs("null", f);
        else if (s->type == PPD_CFG_STR && !*s->def)
            fputs("`\"\"`", f);
        else
            fprintf(f, "`%s`", s->def);
        fputs(" | ", f);
        if (s->type == PPD_CFG_ENUM) fputc('`', f);
        md_range(f, s);
        if (s->type == PPD_CFG_ENUM) fputc('`', f);
        if (!s->def) fputs(s->type == PPD_CFG_STR ? "null" : ", null", f);
        fprintf(f, " | %s |\n", s->help);
    }
    fputs("\nDiffDock-PP settings that ppdock reads, type-checks and ignores:\n\n", f);
    for (size_t a = 0; a < n; a++) {
        size_t slen = section_len(t[a].name);
        int first = 1, any = 0;
        for (size_t b = 0; b < a && first; b++)
            first = !(section_len(t[b].name) == slen && !memcmp(t[b].name, t[a].name, slen));
        if (!first) continue;
        for (size_t k = a; k < n; k++) {
            if (!(t[k].flags & PPD_CFG_COMPAT) || section_len(t[k].name) != slen ||
                memcmp(t[k].name, t[a].name, slen))
                continue;
            if (!any++)
                fprintf(f, "- `%.*s`: ", (int)slen, t[k].name);
            else
                fputs(", ", f);
            fprintf(f, "`%s`", inner_name(t[k].name));
        }
        if (any) fputc('\n', f);
    }
}
