/* PDB reader: the CA view of a protein, exactly as DiffDock-PP gets it from Biopython
 * (see ppdock/pdb.h for the contract).
 *
 * DiffDock-PP parses with Bio.PDB.PDBParser (permissive) and then walks models -> chains ->
 * residues -> atoms, keeping atoms named "CA". Matching it means replaying the parser's state
 * machine (PDBParser._parse_coordinates + StructureBuilder) rather than "reading a PDB file":
 *
 *  - Text: Python decodes the file as UTF-8 and splits it with universal newlines (\n, \r\n and
 *    a lone \r all end a line). Columns are characters; we reject non-ASCII bytes in the records
 *    whose columns we read, so that bytes and characters coincide.
 *  - Numbers: float() and int() of Python: surrounding whitespace (space, \t-\r), '_' between
 *    digits, "inf"/"nan" words. Names and the residue-number token are cut with str.strip() and
 *    str.split(), whose whitespace also includes the separators \x1c-\x1f.
 *  - Residues live in a chain under the id (hetero flag, resseq, icode); a residue seen again
 *    later is the same object, a chain id seen again in the same model is the same chain.
 *  - A residue whose name changes between altlocs becomes a DisorderedResidue: it is detached
 *    and re-appended at the END of its chain, and iterating it gives the selected variant.
 *  - A disordered atom selects the child whose occupancy is strictly greater than every earlier
 *    one (so the first wins ties), starting from -sys.maxsize.
 *
 * Only what can change the CA list is tracked: per residue variant the CA state, plus, for the
 * rare variants that so far hold only altloc atoms, their atom names (a blank-altloc atom is
 * accepted only if its name is new, and a variant with an accepted blank atom can no longer
 * become a point mutation). Everything lives in the caller's arena; nothing is malloc'ed.
 */
#include "ppdock/pdb.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- Python-compatible scalar parsing ------------------------------------------------------ */

/* str.isspace() for ASCII: \t \n \v \f \r, the separators \x1c-\x1f, and space. */
static int py_space(unsigned char c) {
    return c == ' ' || (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x1f);
}

/* float() and int() strip less: only C's isspace() set, so "\x1c1.0" is not a number. */
static int num_space(unsigned char c) {
    return c == ' ' || (c >= 0x09 && c <= 0x0d);
}

static void strip_by(const char **s, size_t *n, int (*space)(unsigned char)) {
    while (*n && space((unsigned char)**s)) (*s)++, (*n)--;
    while (*n && space((unsigned char)(*s)[*n - 1])) (*n)--;
}

static void py_strip(const char **s, size_t *n) {
    strip_by(s, n, py_space);
}

static int is_digit(char c) {
    return c >= '0' && c <= '9';
}

/* Python's digitpart: digit (["_"] digit)*. Returns the length consumed, 0 if none. */
static size_t digitpart(const char *s, size_t n) {
    size_t i = 0;
    if (i >= n || !is_digit(s[i])) return 0;
    i++;
    for (;;) {
        if (i < n && is_digit(s[i]))
            i++;
        else if (i + 1 < n && s[i] == '_' && is_digit(s[i + 1]))
            i += 2;
        else
            return i;
    }
}

static int word_ci(const char *s, size_t n, const char *w) {
    size_t k = strlen(w);
    if (n != k) return 0;
    for (size_t i = 0; i < k; i++)
        if ((s[i] | 0x20) != w[i]) return 0;
    return 1;
}

/* float(s) of Python: 1 and *out on success, 0 where Python raises ValueError. */
static int py_float(const char *s, size_t n, double *out) {
    strip_by(&s, &n, num_space);
    if (n == 0) return 0;
    /* Fast path, nearly every PDB number: [-]ddd.ddd with at most 15 digits. The digits form
     * an exact integer m < 2^53 and 10^k is exact for k <= 22, so m / 10^k is one correctly
     * rounded division: the same double as Python's correctly rounded float(). */
    {
        static const double p10[16] = {1e0, 1e1, 1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                       1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15};
        size_t i = 0, nd = 0, frac = 0;
        int neg = 0, dot = 0;
        uint64_t m = 0;
        if (s[0] == '-' || s[0] == '+') neg = s[0] == '-', i = 1;
        for (; i < n; i++) {
            if (is_digit(s[i])) {
                m = m * 10 + (uint64_t)(s[i] - '0');
                nd++;
                frac += (size_t)dot;
            } else if (s[i] == '.' && !dot) {
                dot = 1;
            } else {
                break;
            }
        }
        if (i == n && nd > 0 && nd <= 15) {
            double v = (double)m / p10[frac];
            *out = neg ? -v : v;
            return 1;
        }
    }
    /* General path: check Python's grammar, drop the underscores, let strtod round. */
    size_t i = 0;
    if (s[0] == '-' || s[0] == '+') i = 1;
    const char *b = s + i;
    size_t bn = n - i;
    if (word_ci(b, bn, "inf") || word_ci(b, bn, "infinity") || word_ci(b, bn, "nan")) {
        /* fall through to strtod, which reads these words the same way */
    } else {
        size_t k = digitpart(b, bn), f = 0;
        if (k < bn && b[k] == '.') {
            f = digitpart(b + k + 1, bn - k - 1);
            if (k == 0 && f == 0) return 0; /* "." alone */
            k += 1 + f;
        } else if (k == 0) {
            return 0;
        }
        if (k < bn && (b[k] == 'e' || b[k] == 'E')) {
            size_t e = k + 1;
            if (e < bn && (b[e] == '+' || b[e] == '-')) e++;
            size_t ed = digitpart(b + e, bn - e);
            if (ed == 0) return 0;
            k = e + ed;
        }
        if (k != bn) return 0;
    }
    char buf[64];
    size_t o = 0;
    for (size_t j = 0; j < n; j++) {
        if (s[j] == '_') continue;
        if (o + 1 >= sizeof buf) return 0; /* fields are at most 8 columns; cannot happen */
        buf[o++] = s[j];
    }
    buf[o] = 0;
    char *end;
    *out = strtod(buf, &end);
    return *end == 0;
}

/* int(s) of Python (base 10): [+-] digitpart, surrounding whitespace already removed. */
static int py_int(const char *s, size_t n, int32_t *out) {
    size_t i = 0;
    int neg = 0;
    if (n && (s[0] == '-' || s[0] == '+')) neg = s[0] == '-', i = 1;
    if (digitpart(s + i, n - i) != n - i || i == n) return 0;
    int64_t v = 0;
    for (; i < n; i++) {
        if (s[i] == '_') continue;
        v = v * 10 + (s[i] - '0');
        if (v > INT32_MAX) return 0; /* the field has 4 columns; cannot happen */
    }
    *out = (int32_t)(neg ? -v : v);
    return 1;
}

/* ---- text checks --------------------------------------------------------------------------- */

/* Length of the valid UTF-8 sequence at p (as Python's strict decoder accepts it), 0 if bad. */
static size_t utf8_len(const unsigned char *p, size_t n) {
    unsigned char c = p[0], lo = 0x80, hi = 0xbf; /* allowed range of the second byte */
    if (c < 0xc2 || c > 0xf4) return 0;           /* continuation byte, overlong lead, > U+10FFFF */
    size_t len = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : 2;
    if (c == 0xe0) lo = 0xa0; /* overlong */
    if (c == 0xed) hi = 0x9f; /* UTF-16 surrogates */
    if (c == 0xf0) lo = 0x90; /* overlong */
    if (c == 0xf4) hi = 0x8f; /* > U+10FFFF */
    if (n < len || p[1] < lo || p[1] > hi) return 0;
    for (size_t i = 2; i < len; i++)
        if ((p[i] & 0xc0) != 0x80) return 0;
    return len;
}

#define ONES  0x0101010101010101ull
#define HIGHS 0x8080808080808080ull

/* Find the first byte Python's UTF-8 decoder rejects, or a NUL (a PDB file has none; NULs are
 * what a crashed write or a binary file leaves). Returns its offset, n when the text is clean.
 * Also reports whether the text is pure ASCII and whether it contains a \r. */
static size_t text_check(const unsigned char *p, size_t n, int *ascii, int *has_cr) {
    size_t i = 0;
    *ascii = 1;
    *has_cr = 0;
    while (i < n) {
        if (n - i >= 32) { /* 32 bytes at a time while they are ASCII and not NUL */
            uint64_t bad = 0, cr = 0;
            for (int k = 0; k < 4; k++) {
                uint64_t w;
                memcpy(&w, p + i + 8 * k, 8);
                uint64_t x = w ^ (ONES * '\r');
                bad |= (w & HIGHS) | ((w - ONES) & ~w & HIGHS);
                cr |= (x - ONES) & ~x & HIGHS;
            }
            if (!bad) {
                *has_cr |= cr != 0;
                i += 32;
                continue;
            }
        }
        unsigned char c = p[i];
        if (c == 0) return i;
        if (c < 0x80) {
            *has_cr |= c == '\r';
            i++;
            continue;
        }
        *ascii = 0;
        size_t len = utf8_len(p + i, n - i);
        if (!len) return i;
        i += len;
    }
    return n;
}

/* Splits text into lines at \n, \r\n or \r (universal newlines). The next \n is remembered, so
 * that a file with \r only (or \r\n) is scanned once, not once per line. */
typedef struct {
    const char *end, *nl; /* nl: the next \n at or after the current line, or end */
    int has_cr, have_nl;
} line_iter;

static const char *line_end(line_iter *it, const char *p) {
    if (!it->have_nl || it->nl < p) {
        const char *q = memchr(p, '\n', (size_t)(it->end - p));
        it->nl = q ? q : it->end;
        it->have_nl = 1;
    }
    if (!it->has_cr) return it->nl;
    const char *r = memchr(p, '\r', (size_t)(it->nl - p));
    return r ? r : it->nl;
}

/* 1-based line number and column of byte offset `off`, counting lines as Python does. */
static void line_col(const char *text, size_t off, uint64_t *line, size_t *col) {
    uint64_t ln = 1;
    size_t start = 0;
    for (size_t i = 0; i < off; i++) {
        if (text[i] == '\n' || (text[i] == '\r' && !(i + 1 < off && text[i + 1] == '\n'))) {
            ln++;
            start = i + 1;
        }
    }
    *line = ln;
    *col = off - start + 1;
}

/* ---- the parser's state -------------------------------------------------------------------- */

/* A residue as a chain child (Biopython Residue or DisorderedResidue), or a hetero residue that
 * only needs to be counted. */
typedef struct {
    int32_t chain; /* index into chains[] */
    int32_t resseq;
    uint32_t order; /* index of its latest entry in events[]: its place in the chain */
    int32_t sel;    /* selected variant (-1 for hetero residues) */
    uint32_t hname; /* hetero residues: the name, part of the id ("H_" + name) */
    char field;     /* ' ', 'H' or 'W' */
    char icode;
    uint8_t disordered; /* a DisorderedResidue (point mutation) */
} slot;

/* One residue name at a slot (a Biopython Residue): the CA and what decides point mutations. */
typedef struct {
    uint32_t resname;    /* up to 3 bytes, zero padded */
    uint8_t has_blank;   /* holds an atom with a blank altloc */
    uint8_t ca;          /* 0: no CA, 1: plain Atom, 2: DisorderedAtom */
    uint32_t ca_full;    /* the CA's full name (columns 13-16) */
    float pos[3];        /* the selected CA's coordinates */
    double occ;          /* plain: its occupancy; disordered: the best occupancy so far */
    uint64_t altlocs[2]; /* disordered: the altloc ids present (bit per ASCII char) */
} variant;

typedef struct {
    int32_t model;
    char id;
} chain_t;

/* Open-addressing tables (linear probing, power-of-two size, at most half full). */
typedef struct {
    uint32_t variant1, name; /* key: variant index + 1 (0 = empty), atom name */
    uint32_t full;
} atom_ent;

typedef struct {
    uint32_t slot1, resname; /* key: slot index + 1 (0 = empty), residue name */
    uint32_t variant;
} var_ent;

typedef struct {
    const char *name;
    ppd_arena *arena;
    int first_model_only;
    uint64_t lineno;

    int32_t n_models;
    int model_open;
    int32_t chain_map[128]; /* chain id -> chains[] index, valid if that chain is in cur model */
    int chain_set;          /* current_chain_id is not None */
    char cur_chain;
    int32_t cur_chain_idx;
    int res_set; /* current_residue_id is not None */
    char cur_field, cur_icode;
    int32_t cur_resseq;
    uint32_t cur_resname;
    int64_t target; /* slot receiving atoms, or -1: atoms go nowhere (hetero, orphan, None) */
    int seen_atom;  /* an Atom was built (ANISOU & co. need one) */

    chain_t *chains;
    uint32_t n_chains, cap_chains;
    slot *slots;
    uint32_t n_slots, cap_slots;
    variant *vars;
    uint32_t n_vars, cap_vars;
    uint32_t *events;
    uint32_t n_events, cap_events;

    uint32_t *slot_tab; /* slot index + 1 */
    uint32_t slot_mask, slot_used;
    var_ent *var_tab;
    uint32_t var_mask, var_used;
    atom_ent *atom_tab;
    uint32_t atom_mask, atom_used;
} parser;

static ppd_status fail_line(parser *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static ppd_status fail_line(parser *p, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return ppd_fail(PPD_ERR_FORMAT, "%s:%" PRIu64 ": %s", p->name, p->lineno, msg);
}

/* Grow an arena array to hold `need` elements (doubling; the old copy stays in the arena). */
static ppd_status grow(parser *p, void **arr, uint32_t *cap, uint64_t need, size_t elem) {
    if (need <= *cap) return PPD_OK;
    uint64_t ncap = *cap ? (uint64_t)*cap * 2 : 64;
    while (ncap < need) ncap *= 2;
    if (ncap > UINT32_MAX / 2)
        return ppd_fail(PPD_ERR_NOMEM, "%s: too many records for the PDB reader", p->name);
    void *q;
    PPD_TRY(ppd_arena_alloc_st(p->arena, (size_t)ncap * elem, 16, &q));
    if (*cap) memcpy(q, *arr, (size_t)*cap * elem);
    *arr = q;
    *cap = (uint32_t)ncap;
    return PPD_OK;
}

static uint64_t mix64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return x;
}

/* A zeroed table of 2^k entries with room for `used + 1`; the caller re-inserts the old ones. */
static ppd_status table_alloc(parser *p, uint32_t used, uint32_t *mask, size_t elem, void **tab) {
    uint64_t size = 64;
    while (size < 2 * ((uint64_t)used + 1)) size *= 2;
    if (size > (1ull << 31))
        return ppd_fail(PPD_ERR_NOMEM, "%s: too many records for the PDB reader", p->name);
    void *t = ppd_arena_calloc(p->arena, (size_t)size * elem, 16);
    if (!t)
        return ppd_fail(PPD_ERR_NOMEM, "%s: cannot allocate a %zu-byte table", p->name,
                        (size_t)size * elem);
    *tab = t;
    *mask = (uint32_t)(size - 1);
    return PPD_OK;
}

/* -- slots by (chain, field, resseq, icode, hetero name) -- */

static uint64_t slot_hash(int32_t chain, char field, int32_t resseq, char icode, uint32_t hname) {
    uint64_t a = (uint64_t)(uint32_t)chain << 32 | (uint64_t)(uint16_t)resseq << 16 |
                 (uint64_t)(unsigned char)icode << 8 | (unsigned char)field;
    return mix64(a ^ mix64(hname + 1));
}

static uint32_t *slot_find(parser *p, int32_t chain, char field, int32_t resseq, char icode,
                           uint32_t hname) {
    uint32_t i = (uint32_t)slot_hash(chain, field, resseq, icode, hname) & p->slot_mask;
    for (;; i = (i + 1) & p->slot_mask) {
        uint32_t e = p->slot_tab[i];
        if (!e) return &p->slot_tab[i];
        const slot *s = &p->slots[e - 1];
        if (s->chain == chain && s->resseq == resseq && s->icode == icode && s->field == field &&
            s->hname == hname)
            return &p->slot_tab[i];
    }
}

static ppd_status slot_tab_reserve(parser *p) {
    if (p->slot_tab && 2 * ((uint64_t)p->slot_used + 1) <= (uint64_t)p->slot_mask + 1)
        return PPD_OK;
    uint32_t *old = p->slot_tab, old_mask = p->slot_mask;
    void *t;
    PPD_TRY(table_alloc(p, p->slot_used, &p->slot_mask, sizeof *p->slot_tab, &t));
    p->slot_tab = t;
    if (old)
        for (uint32_t i = 0; i <= old_mask; i++) {
            if (!old[i]) continue;
            const slot *s = &p->slots[old[i] - 1];
            *slot_find(p, s->chain, s->field, s->resseq, s->icode, s->hname) = old[i];
        }
    return PPD_OK;
}

/* -- variants of a DisorderedResidue by (slot, resname) -- */

static var_ent *var_find(parser *p, uint32_t slot1, uint32_t resname) {
    uint32_t i = (uint32_t)mix64((uint64_t)slot1 << 32 | resname) & p->var_mask;
    for (;; i = (i + 1) & p->var_mask) {
        var_ent *e = &p->var_tab[i];
        if (!e->slot1 || (e->slot1 == slot1 && e->resname == resname)) return e;
    }
}

static ppd_status var_insert(parser *p, uint32_t slot_idx, uint32_t resname, uint32_t v) {
    if (!p->var_tab || 2 * ((uint64_t)p->var_used + 1) > (uint64_t)p->var_mask + 1) {
        var_ent *old = p->var_tab;
        uint32_t old_mask = p->var_mask;
        void *t;
        PPD_TRY(table_alloc(p, p->var_used, &p->var_mask, sizeof *p->var_tab, &t));
        p->var_tab = t;
        if (old)
            for (uint32_t i = 0; i <= old_mask; i++)
                if (old[i].slot1) *var_find(p, old[i].slot1, old[i].resname) = old[i];
    }
    *var_find(p, slot_idx + 1, resname) = (var_ent){slot_idx + 1, resname, v};
    p->var_used++;
    return PPD_OK;
}

/* -- atom names of the variants that hold only altloc atoms so far -- */

static atom_ent *atom_find(parser *p, uint32_t variant1, uint32_t name) {
    uint32_t i = (uint32_t)mix64((uint64_t)variant1 << 32 | name) & p->atom_mask;
    for (;; i = (i + 1) & p->atom_mask) {
        atom_ent *e = &p->atom_tab[i];
        if (!e->variant1 || (e->variant1 == variant1 && e->name == name)) return e;
    }
}

static ppd_status atom_insert(parser *p, uint32_t v, uint32_t name, uint32_t full) {
    if (!p->atom_tab || 2 * ((uint64_t)p->atom_used + 1) > (uint64_t)p->atom_mask + 1) {
        atom_ent *old = p->atom_tab;
        uint32_t old_mask = p->atom_mask;
        void *t;
        PPD_TRY(table_alloc(p, p->atom_used, &p->atom_mask, sizeof *p->atom_tab, &t));
        p->atom_tab = t;
        if (old)
            for (uint32_t i = 0; i <= old_mask; i++)
                if (old[i].variant1) *atom_find(p, old[i].variant1, old[i].name) = old[i];
    }
    *atom_find(p, v + 1, name) = (atom_ent){v + 1, name, full};
    p->atom_used++;
    return PPD_OK;
}

/* Does variant v hold an atom called `name`? Its full name in *full if so. */
static int atom_lookup(parser *p, uint32_t v, uint32_t name, uint32_t *full) {
    if (!p->atom_tab) return 0;
    const atom_ent *e = atom_find(p, v + 1, name);
    if (!e->variant1) return 0;
    *full = e->full;
    return 1;
}

/* ---- building the structure (StructureBuilder's rules) ------------------------------------- */

static uint32_t pack4(const char *s, size_t n) {
    uint32_t v = 0;
    for (size_t i = 0; i < n && i < 4; i++) v |= (uint32_t)(unsigned char)s[i] << (8 * i);
    return v;
}

#define NAME_CA ((uint32_t)'C' | (uint32_t)'A' << 8)

static ppd_status new_model(parser *p) {
    if (p->n_models == INT32_MAX) return fail_line(p, "too many models");
    p->n_models++;
    p->model_open = 1;
    p->chain_set = 0;
    p->res_set = 0;
    return PPD_OK;
}

/* init_chain: a chain id already in this model continues that chain. */
static ppd_status enter_chain(parser *p, char id) {
    int32_t model = p->n_models - 1;
    int32_t c = p->chain_map[(unsigned char)id & 0x7f];
    if (c < 0 || p->chains[c].model != model) {
        PPD_TRY(grow(p, (void **)&p->chains, &p->cap_chains, (uint64_t)p->n_chains + 1,
                     sizeof *p->chains));
        c = (int32_t)p->n_chains++;
        p->chains[c] = (chain_t){model, id};
        p->chain_map[(unsigned char)id & 0x7f] = c;
    }
    p->cur_chain_idx = c;
    return PPD_OK;
}

static ppd_status push_event(parser *p, uint32_t s) {
    PPD_TRY(
        grow(p, (void **)&p->events, &p->cap_events, (uint64_t)p->n_events + 1, sizeof *p->events));
    p->slots[s].order = p->n_events;
    p->events[p->n_events++] = s;
    return PPD_OK;
}

static ppd_status new_variant(parser *p, uint32_t resname, int32_t *out) {
    PPD_TRY(grow(p, (void **)&p->vars, &p->cap_vars, (uint64_t)p->n_vars + 1, sizeof *p->vars));
    variant *v = &p->vars[p->n_vars];
    memset(v, 0, sizeof *v);
    v->resname = resname;
    *out = (int32_t)p->n_vars++;
    return PPD_OK;
}

/* init_residue: decide which residue (if any) receives the atoms that follow. */
static ppd_status enter_residue(parser *p, uint32_t resname, char field, int32_t resseq,
                                char icode) {
    uint32_t hname = field == 'H' ? resname : 0;
    PPD_TRY(slot_tab_reserve(p));
    uint32_t *ent = slot_find(p, p->cur_chain_idx, field, resseq, icode, hname);
    p->target = -1;
    if (*ent) {
        uint32_t si = *ent - 1;
        slot *s = &p->slots[si];
        if (field != ' ') return PPD_OK; /* hetero id defined twice: atoms go to an orphan */
        if (s->disordered) {
            var_ent *ve = var_find(p, si + 1, resname);
            if (ve->slot1) {
                /* Biopython selects that variant, then builds a new Residue that the chain
                 * refuses ("defined twice"): the atoms that follow are lost. */
                s->sel = (int32_t)ve->variant;
                return PPD_OK;
            }
            int32_t v;
            PPD_TRY(new_variant(p, resname, &v));
            PPD_TRY(var_insert(p, si, resname, (uint32_t)v));
            p->slots[si].sel = v;
            p->target = si;
            return PPD_OK;
        }
        const variant *v0 = &p->vars[s->sel];
        if (v0->resname == resname) {
            p->target = si;
            return PPD_OK;
        }
        /* A point mutation: only allowed if every atom so far has an altloc; otherwise
         * Biopython refuses the residue and drops its atoms. */
        if (v0->has_blank) return PPD_OK;
        int32_t v;
        PPD_TRY(new_variant(p, resname, &v));
        s = &p->slots[si];
        s->disordered = 1;
        PPD_TRY(var_insert(p, si, p->vars[s->sel].resname, (uint32_t)s->sel));
        PPD_TRY(var_insert(p, si, resname, (uint32_t)v));
        s->sel = v;
        PPD_TRY(push_event(p, si)); /* detached and re-added: now last in its chain */
        p->target = si;
        return PPD_OK;
    }
    PPD_TRY(grow(p, (void **)&p->slots, &p->cap_slots, (uint64_t)p->n_slots + 1, sizeof *p->slots));
    uint32_t si = p->n_slots++;
    slot *s = &p->slots[si];
    *s = (slot){.chain = p->cur_chain_idx,
                .resseq = resseq,
                .sel = -1,
                .hname = hname,
                .field = field,
                .icode = icode};
    *slot_find(p, p->cur_chain_idx, field, resseq, icode, hname) = si + 1;
    p->slot_used++;
    if (field != ' ') return PPD_OK; /* hetero: counted, never output */
    int32_t v;
    PPD_TRY(new_variant(p, resname, &v));
    p->slots[si].sel = v;
    PPD_TRY(push_event(p, si));
    p->target = si;
    return PPD_OK;
}

/* DisorderedAtom.disordered_add for the CA: select if strictly better than all before. */
static void ca_disordered_add(variant *v, char altloc, double occ, const float xyz[3]) {
    unsigned a = (unsigned char)altloc & 0x7f;
    v->altlocs[a >> 6] |= 1ull << (a & 63);
    if (occ > v->occ) {
        v->occ = occ;
        memcpy(v->pos, xyz, sizeof v->pos);
    }
}

/* Biopython starts a DisorderedAtom's best occupancy at -sys.maxsize; no double lies strictly
 * between -(2^63 - 1) and -2^63, so -2^63 compares the same. */
#define OCC_START (-0x1p63)

/* The CA part of init_atom. `xyz` and `occ` are this atom's. */
static void add_ca(variant *v, char altloc, uint32_t full, const float xyz[3], double occ) {
    if (altloc == ' ') {
        if (v->ca) return; /* "Atom CA defined twice": the first one stays */
        v->ca = 1;
        v->ca_full = full;
        v->has_blank = 1;
        v->occ = occ;
        memcpy(v->pos, xyz, sizeof v->pos);
        return;
    }
    if (v->ca == 2) {
        ca_disordered_add(v, altloc, occ, xyz);
        return;
    }
    float old_pos[3];
    double old_occ = v->occ;
    int had_plain = v->ca == 1;
    memcpy(old_pos, v->pos, sizeof old_pos);
    v->ca = 2;
    v->ca_full = full;
    v->occ = OCC_START;
    memset(v->altlocs, 0, sizeof v->altlocs);
    /* Fallback if no occupancy ever wins (NaN, <= -2^63; Biopython then has no selected atom
     * and fails later): keep the first child's coordinates. */
    memcpy(v->pos, xyz, sizeof v->pos);
    ca_disordered_add(v, altloc, occ, xyz);
    /* A CA without altloc seen before: Biopython adds the new atom first, then the old one, so
     * on equal occupancy the altloc atom wins. */
    if (had_plain) ca_disordered_add(v, ' ', old_occ, old_pos);
}

/* init_atom for an atom of the current target residue. */
static ppd_status add_atom(parser *p, const char *line, size_t len, char altloc,
                           const float xyz[3]) {
    variant *v = &p->vars[p->slots[p->target].sel];
    uint32_t vi = (uint32_t)p->slots[p->target].sel;
    const char *fn = line + 12; /* columns 13-16; len >= 27 here */
    uint32_t full = pack4(fn, 4);
    /* name: the full name without spaces, unless it has inner spaces (or is blank) */
    size_t a = 0, b = 4;
    while (a < 4 && py_space((unsigned char)fn[a])) a++;
    while (b > a && py_space((unsigned char)fn[b - 1])) b--;
    int one_word = a < b;
    for (size_t i = a; i < b; i++) one_word &= !py_space((unsigned char)fn[i]);
    uint32_t name = one_word ? pack4(fn + a, b - a) : full;

    if (name == NAME_CA && !(v->ca && v->ca_full != full)) {
        double occ = 0; /* unparsable occupancy: 0 (Biopython keeps None and fails comparing) */
        size_t o0 = 54, o1 = len < 60 ? len : 60;
        if (o1 > o0 && !py_float(line + o0, o1 - o0, &occ)) occ = 0;
        add_ca(v, altloc, full, xyz, occ);
        return PPD_OK;
    }
    if (name == NAME_CA) name = full; /* "CA" and e.g. "CA  " differ only in spaces */
    /* Not the CA. Atom names matter only while the variant has no blank-altloc atom (see the
     * top of this file). */
    if (v->has_blank) return PPD_OK;
    uint32_t have_full;
    int have = atom_lookup(p, vi, name, &have_full);
    if (have && have_full != full) {
        name = full;
        have = atom_lookup(p, vi, name, &have_full);
    }
    if (have) return PPD_OK; /* disordered_add, or a refused duplicate */
    if (altloc == ' ') {
        v->has_blank = 1; /* accepted; the variant's name set is not needed any more */
        return PPD_OK;
    }
    return atom_insert(p, vi, name, full);
}

static int has_non_ascii(const char *s, size_t n, size_t *at) {
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] >= 0x80) return *at = i, 1;
    return 0;
}

/* Python's line[a:b] for a line of `len` characters. */
static size_t field(size_t len, size_t a, size_t b, size_t *n) {
    *n = a >= len ? 0 : (b < len ? b : len) - a;
    return a;
}

/* A printable copy of a field for messages. */
static const char *show(const char *s, size_t n, char *buf, size_t cap) {
    size_t o = 0;
    for (size_t i = 0; i < n && o + 1 < cap; i++)
        buf[o++] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '?';
    buf[o] = 0;
    return buf;
}

/* An ATOM or HETATM record (PDBParser._parse_coordinates, then the builder). */
static ppd_status on_atom(parser *p, const char *line, size_t len, int hetatm) {
    const char *rec = hetatm ? "HETATM" : "ATOM";
    char buf[32];
    if (!p->model_open) PPD_TRY(new_model(p));
    if (len < 27)
        return fail_line(p, "%s record too short (%zu columns, needs at least 27)", rec, len);
    /* resseq = int(line[22:26].split()[0]) */
    const char *rs = line + 22;
    size_t rn = 4;
    while (rn && py_space((unsigned char)*rs)) rs++, rn--;
    size_t tok = 0;
    while (tok < rn && !py_space((unsigned char)rs[tok])) tok++;
    int32_t resseq;
    if (!py_int(rs, tok, &resseq))
        return fail_line(p, "%s record: bad residue number '%s' (columns 23-26)", rec,
                         show(line + 22, 4, buf, sizeof buf));
    float xyz[3];
    for (int k = 0; k < 3; k++) {
        size_t n, a = field(len, 30 + 8 * (size_t)k, 38 + 8 * (size_t)k, &n);
        double d;
        if (!py_float(line + a, n, &d))
            return fail_line(p, "%s record: bad %c coordinate '%s' (columns %d-%d)", rec, 'x' + k,
                             show(line + a, n, buf, sizeof buf), 31 + 8 * k, 38 + 8 * k);
        xyz[k] = (float)d; /* numpy's float32 array: the double rounded once more */
        if (!isfinite(xyz[k]))
            return fail_line(p, "%s record: %c coordinate '%s' is not a finite float32", rec,
                             'x' + k, show(line + a, n, buf, sizeof buf));
    }
    p->seen_atom = 1;
    char altloc = line[16], chain = line[21], icode = line[26];
    const char *rname = line + 17;
    size_t rlen = 3;
    py_strip(&rname, &rlen);
    uint32_t resname = pack4(rname, rlen);
    char fieldc = ' ';
    if (hetatm) fieldc = (resname == pack4("HOH", 3) || resname == pack4("WAT", 3)) ? 'W' : 'H';
    /* The parser calls init_residue when the chain id, the residue id or the name changes. */
    int new_residue = 0;
    if (!p->chain_set || p->cur_chain != chain) {
        p->chain_set = 1;
        p->cur_chain = chain;
        PPD_TRY(enter_chain(p, chain));
        new_residue = 1;
    } else if (!p->res_set || p->cur_field != fieldc || p->cur_resseq != resseq ||
               p->cur_icode != icode || p->cur_resname != resname) {
        new_residue = 1;
    }
    if (new_residue) {
        p->res_set = 1;
        p->cur_field = fieldc;
        p->cur_resseq = resseq;
        p->cur_icode = icode;
        p->cur_resname = resname;
        PPD_TRY(enter_residue(p, resname, fieldc, resseq, icode));
    }
    if (p->target < 0) return PPD_OK;
    return add_atom(p, line, len, altloc, xyz);
}

/* ANISOU / SIGUIJ / SIGATM: Biopython converts every field with float() (a bad one raises)
 * and attaches the values to the last atom built (none yet: it raises too). */
static ppd_status on_atom_extra(parser *p, const char *line, size_t len, const char *rec,
                                const size_t (*cols)[2], int ncols) {
    char buf[32];
    for (int k = 0; k < ncols; k++) {
        size_t n, a = field(len, cols[k][0], cols[k][1], &n);
        double d;
        if (!py_float(line + a, n, &d))
            return fail_line(p, "%s record: bad number '%s' (columns %zu-%zu)", rec,
                             show(line + a, n, buf, sizeof buf), cols[k][0] + 1, cols[k][1]);
    }
    if (!p->seen_atom) return fail_line(p, "%s record before any atom", rec);
    return PPD_OK;
}

static const size_t anisou_cols[6][2] = {{28, 35}, {35, 42}, {43, 49},
                                         {49, 56}, {56, 63}, {63, 70}};
static const size_t siguij_cols[6][2] = {{28, 35}, {35, 42}, {42, 49},
                                         {49, 56}, {56, 63}, {63, 70}};
static const size_t sigatm_cols[5][2] = {{30, 38}, {38, 46}, {46, 54}, {54, 60}, {60, 66}};

/* The record name (columns 1-6) as a number, 0 for lines shorter than 6 columns. */
static uint64_t rec_key(const char *line, size_t len) {
    if (len < 6) return 0;
    uint64_t k = 0;
    memcpy(&k, line, 6);
    return k;
}

#define REC(s)                                                                                     \
    ((uint64_t)(unsigned char)s[0] | (uint64_t)(unsigned char)s[1] << 8 |                          \
     (uint64_t)(unsigned char)s[2] << 16 | (uint64_t)(unsigned char)s[3] << 24 |                   \
     (uint64_t)(unsigned char)s[4] << 32 | (uint64_t)(unsigned char)s[5] << 40)

static int rec_is(const char *line, size_t len, const char *rec6) {
    uint64_t k = 0;
    memcpy(&k, rec6, 6);
    return len >= 6 && rec_key(line, len) == k;
}

/* One line of the coordinate section. *stop is set at END / CONECT. */
static ppd_status on_line(parser *p, const char *line, size_t len, int ascii, int *stop) {
    uint64_t k = rec_key(line, len); /* lines under 6 columns match no record: ignored */
    if (!k) return PPD_OK;
    int hetatm = k == REC("HETATM"), atom = k == REC("ATOM  ");
    int anisou = k == REC("ANISOU"), siguij = k == REC("SIGUIJ"), sigatm = k == REC("SIGATM");
    if (!ascii && (atom || hetatm || anisou || siguij || sigatm)) {
        size_t at;
        if (has_non_ascii(line, len, &at))
            return fail_line(p,
                             "non-ASCII byte 0x%02x in column %zu of a record that is read by "
                             "columns (%.6s)",
                             (unsigned char)line[at], at + 1, line);
    }
    if (atom || hetatm) return on_atom(p, line, len, hetatm);
    if (anisou) return on_atom_extra(p, line, len, "ANISOU", anisou_cols, 6);
    if (siguij) return on_atom_extra(p, line, len, "SIGUIJ", siguij_cols, 6);
    if (sigatm) return on_atom_extra(p, line, len, "SIGATM", sigatm_cols, 5);
    if (k == REC("MODEL ")) return new_model(p);
    if (k == REC("ENDMDL")) {
        p->model_open = 0;
        p->chain_set = 0;
        p->res_set = 0;
        return PPD_OK;
    }
    if (k == REC("END   ") || k == REC("CONECT")) *stop = 1;
    return PPD_OK; /* TER, REMARK, MASTER, unknown records: ignored */
}

/* ---- output -------------------------------------------------------------------------------- */

static const char *const std_names[20] = {"ALA", "CYS", "ASP", "GLU", "PHE", "GLY", "HIS",
                                          "ILE", "LYS", "LEU", "MET", "ASN", "PRO", "GLN",
                                          "ARG", "SER", "THR", "VAL", "TRP", "TYR"};
static const char std_letters[21] = "ACDEFGHIKLMNPQRSTVWY";

char ppd_residue_letter(const char *resname3) {
    if (!resname3) return 'X';
    for (int i = 0; i < 20; i++)
        if (strcmp(resname3, std_names[i]) == 0) return std_letters[i];
    return 'X';
}

uint8_t ppd_letter_token(char letter) {
    static const char order[] = "LAGVSERTIDPKQNFYMHWC"; /* ESM-2 ids 4..23 */
    if (letter == 0) return PPD_TOKEN_UNK;
    const char *q = strchr(order, letter);
    return q ? (uint8_t)(4 + (q - order)) : PPD_TOKEN_UNK;
}

static int model_wanted(const parser *p, int32_t model) {
    return !p->first_model_only || model == 0;
}

/* Lay the CA residues out in Biopython's iteration order: chains by creation (which is model
 * order, then chain order within the model), residues by their place in the chain's list. */
static ppd_status emit(parser *p, ppd_protein *out) {
    uint32_t *count, *order;
    PPD_TRY(ppd_arena_alloc_st(p->arena, ((size_t)p->n_chains + 1) * sizeof *count, 16,
                               (void **)&count));
    memset(count, 0, ((size_t)p->n_chains + 1) * sizeof *count);
    uint64_t n = 0;
    for (uint32_t s = 0; s < p->n_slots; s++) {
        const slot *sl = &p->slots[s];
        int32_t model = p->chains[sl->chain].model;
        if (!model_wanted(p, model)) continue;
        if (sl->field != ' ') {
            out->n_hetero++;
            continue;
        }
        const variant *v = &p->vars[sl->sel];
        if (!v->ca) {
            out->n_skipped_no_ca++;
            continue;
        }
        count[sl->chain + 1]++;
        n++;
    }
    if (n > INT32_MAX) return ppd_fail(PPD_ERR_NOMEM, "%s: too many residues", p->name);
    for (uint32_t c = 0; c < p->n_chains; c++) count[c + 1] += count[c];
    PPD_TRY(ppd_arena_alloc_st(p->arena, (size_t)(n ? n : 1) * sizeof *order, 16, (void **)&order));
    for (uint32_t k = 0; k < p->n_events; k++) {
        uint32_t s = p->events[k];
        const slot *sl = &p->slots[s];
        if (sl->order != k) continue; /* moved to the end of its chain later */
        if (!model_wanted(p, p->chains[sl->chain].model) || !p->vars[sl->sel].ca) continue;
        order[count[sl->chain]++] = s;
    }

    size_t nn = (size_t)n;
    out->n = (int32_t)n;
    void *m[8];
    PPD_TRY(ppd_arena_alloc_st(p->arena, (nn ? nn : 1) * 3 * sizeof(float), 16, &m[0]));
    PPD_TRY(ppd_arena_alloc_st(p->arena, nn + 1, 16, &m[1]));
    PPD_TRY(ppd_arena_alloc_st(p->arena, nn ? nn : 1, 16, &m[2]));
    PPD_TRY(ppd_arena_alloc_st(p->arena, (nn ? nn : 1) * 4, 16, &m[3]));
    PPD_TRY(ppd_arena_alloc_st(p->arena, (nn ? nn : 1) * sizeof(int32_t), 16, &m[4]));
    PPD_TRY(ppd_arena_alloc_st(p->arena, nn ? nn : 1, 16, &m[5]));
    PPD_TRY(ppd_arena_alloc_st(p->arena, nn ? nn : 1, 16, &m[6]));
    PPD_TRY(ppd_arena_alloc_st(p->arena, (nn ? nn : 1) * sizeof(int32_t), 16, &m[7]));
    out->pos = m[0];
    out->seq = m[1];
    out->tokens = m[2];
    out->resname = m[3];
    out->resnum = m[4];
    out->icode = m[5];
    out->chain = m[6];
    out->model = m[7];
    for (size_t i = 0; i < nn; i++) {
        const slot *sl = &p->slots[order[i]];
        const variant *v = &p->vars[sl->sel];
        memcpy(&out->pos[3 * i], v->pos, sizeof v->pos);
        for (int k = 0; k < 4; k++) out->resname[i][k] = (char)(v->resname >> (8 * k));
        out->resname[i][3] = 0;
        char letter = ppd_residue_letter(out->resname[i]);
        out->seq[i] = letter;
        out->tokens[i] = ppd_letter_token(letter);
        out->n_nonstandard += letter == 'X';
        out->resnum[i] = sl->resseq;
        out->icode[i] = sl->icode;
        out->chain[i] = p->chains[sl->chain].id;
        out->model[i] = p->chains[sl->chain].model;
        if (v->ca == 2) {
            int k = __builtin_popcountll(v->altlocs[0]) + __builtin_popcountll(v->altlocs[1]);
            out->n_altloc_dropped += k - 1;
        }
    }
    out->seq[nn] = 0;
    return PPD_OK;
}

/* ---- entry points -------------------------------------------------------------------------- */

ppd_status ppd_pdb_parse(const char *text, size_t len, const char *name,
                         const ppd_pdb_options *opts, ppd_arena *arena, ppd_protein *out) {
    memset(out, 0, sizeof *out);
    if (!name) name = "(pdb)";
    if (!text && len) return ppd_fail(PPD_ERR_USAGE, "%s: NULL text", name);
    if (len == 0) return ppd_fail(PPD_ERR_EMPTY, "%s: empty file", name);

    /* Python decodes the whole file before parsing: a bad byte anywhere fails first. */
    int ascii, has_cr;
    size_t bad = text_check((const unsigned char *)text, len, &ascii, &has_cr);
    if (bad < len) {
        uint64_t line;
        size_t col;
        line_col(text, bad, &line, &col);
        unsigned char c = (unsigned char)text[bad];
        if (c == 0)
            return ppd_fail(PPD_ERR_FORMAT,
                            "%s:%" PRIu64 ": NUL byte in column %zu (binary data, "
                            "not PDB text)",
                            name, line, col);
        return ppd_fail(PPD_ERR_FORMAT,
                        "%s:%" PRIu64 ": byte 0x%02x in column %zu is not UTF-8 "
                        "text (binary data, not PDB text)",
                        name, line, c, col);
    }

    parser p;
    memset(&p, 0, sizeof p);
    p.name = name;
    p.arena = arena;
    p.first_model_only = opts ? opts->first_model_only : 0;
    p.target = -1;
    for (int i = 0; i < 128; i++) p.chain_map[i] = -1;
    /* First guesses from the size (~81 bytes per atom record) to avoid most regrowth. */
    uint64_t guess = len / 81 + 16;
    PPD_TRY(grow(&p, (void **)&p.slots, &p.cap_slots, guess / 8 + 16, sizeof *p.slots));
    PPD_TRY(grow(&p, (void **)&p.vars, &p.cap_vars, guess / 8 + 16, sizeof *p.vars));
    PPD_TRY(grow(&p, (void **)&p.events, &p.cap_events, guess / 8 + 16, sizeof *p.events));

    /* PDBParser: everything before the first ATOM/HETATM/MODEL line is header (an END there is
     * not the end); if there is none, only the last line is read as coordinates. */
    const char *end = text + len, *s = text;
    const char *last = NULL;
    size_t last_len = 0;
    uint64_t last_no = 0;
    int coords = 0, stop = 0;
    line_iter it = {.end = end, .has_cr = has_cr};
    while (s < end && !stop) {
        const char *e = line_end(&it, s);
        size_t ll = (size_t)(e - s);
        p.lineno++;
        if (!coords &&
            (rec_is(s, ll, "ATOM  ") || rec_is(s, ll, "HETATM") || rec_is(s, ll, "MODEL ")))
            coords = 1;
        if (coords) {
            ppd_status st = on_line(&p, s, ll, ascii, &stop);
            if (st) return st;
        } else {
            last = s, last_len = ll, last_no = p.lineno;
        }
        /* next line: after "\r\n", "\n" or "\r" */
        s = e < end ? e + 1 + (*e == '\r' && e + 1 < end && e[1] == '\n') : end;
    }
    if (!coords && last) {
        p.lineno = last_no;
        PPD_TRY(on_line(&p, last, last_len, ascii, &stop));
    }

    PPD_TRY(emit(&p, out));
    out->n_models = p.n_models;
    if (out->n == 0)
        return ppd_fail(PPD_ERR_EMPTY,
                        "%s: no ATOM residues with a CA atom (%d models, %d "
                        "HETATM residues, %d ATOM residues without CA)",
                        name, out->n_models, out->n_hetero, out->n_skipped_no_ca);
    return PPD_OK;
}

ppd_status ppd_pdb_read(const char *path, const ppd_pdb_options *opts, ppd_buf *raw, ppd_buf *text,
                        ppd_arena *arena, ppd_protein *out) {
    memset(out, 0, sizeof *out);
    PPD_TRY(ppd_read_maybe_gz(path, raw, text));
    return ppd_pdb_parse((const char *)text->data, text->len, path, opts, arena, out);
}
