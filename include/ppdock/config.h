/* ppdock/config.h — typed settings from YAML files and --set overrides.
 *
 * Every setting has a name "section.key", a type, a typed default, and (for numbers) a range;
 * the table in lib/io/config_schema.c is the single list (the settings table of docs/config.md is
 * generated from it by ppd_config_write_markdown, and a test keeps the two equal). Tools read
 * settings by name:
 *
 *     ppd_config *cfg; ppd_config_new(&cfg);                // all defaults
 *     ppd_config_load(cfg, "config/db5.yaml");              // any number of files, in order
 *     ppd_config_set(cfg, "data.knn_size=16");              // --set, after the files
 *     int k = (int)ppd_config_int(cfg, "data.knn_size");
 *
 * YAML files: DiffDock-PP's own configs load unchanged. Both of its shapes are read:
 *  - nested sections (`data:`, `model:`, `train:` ...) whose inner-most keys are the settings;
 *    as in DiffDock-PP, a setting is found by its inner-most key alone, whatever section it sits
 *    under (inner-most names are unique in the table);
 *  - flat files of key: value (checkpoint args.yaml).
 * A key that names no setting is a warning "<file>:<line>: unknown key 'x' (ignored)". A value of
 * the wrong type or out of range is an error (PPD_ERR_CONFIG) "<file>:<line>: data.knn_size:
 * expected an integer in [1, 10000], got 'abc'". `null` (or `~`, or an empty value) is accepted
 * only by settings whose default is null. A key given twice in one file: the later one wins,
 * with a warning naming both lines. Booleans: true/false, True/False, yes/no, on/off (YAML 1.1,
 * as PyYAML reads them). Floats: anything strtod reads fully ("1.e-3", "30.", "5"). Integers:
 * decimal only; "20.0" is an error for an integer.
 *
 * --set NAME=VALUE: NAME is "section.key" or just "key"; errors name "--set NAME".
 *
 * Relative paths in settings are relative to the current directory (DiffDock-PP's convention).
 *
 * Getters take a name that must exist in the table with that type; a wrong name or type is a
 * programmer error and aborts with a message (tests cover every name a tool uses).
 */
#ifndef PPDOCK_CONFIG_H
#define PPDOCK_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "ppdock/fsutil.h"
#include "ppdock/status.h"

typedef struct ppd_config ppd_config;

ppd_status ppd_config_new(ppd_config **out);
void ppd_config_free(ppd_config *cfg);

/* Load one YAML file over the current values. Errors: PPD_ERR_IO (cannot read), PPD_ERR_CONFIG
 * (YAML syntax error with line and column; bad value with file:line, key and expected type). */
ppd_status ppd_config_load(ppd_config *cfg, const char *path);
/* Apply "name=value". Errors: PPD_ERR_CONFIG (no '=', unknown name, bad value). */
ppd_status ppd_config_set(ppd_config *cfg, const char *assignment);

/* A null int or float reads as 0: settings whose default is null are checked with
 * ppd_config_is_null first. */
int64_t ppd_config_int(const ppd_config *cfg, const char *name);
double ppd_config_float(const ppd_config *cfg, const char *name);
int ppd_config_bool(const ppd_config *cfg, const char *name);
/* String or enum value; NULL when the value is null. */
const char *ppd_config_str(const ppd_config *cfg, const char *name);
int ppd_config_is_null(const ppd_config *cfg, const char *name);
/* Where the current value came from: "default", "<file>:<line>" or "--set". */
const char *ppd_config_origin(const ppd_config *cfg, const char *name);
/* Number of warnings (unknown keys, duplicates) issued so far. */
int ppd_config_warnings(const ppd_config *cfg);

/* Append "name=value\n" for each of `names` to out, values in a canonical spelling (floats
 * with %.17g, booleans true/false, null as "null"): the text hashed into a cache's parameters,
 * so that two configs meaning the same thing hash the same. */
ppd_status ppd_config_canonical(const ppd_config *cfg, const char *const *names, size_t n,
                                ppd_buf *out);

/* Write every setting as a nested YAML document that ppd_config_load reads back to the same
 * values, with a comment per setting: type, range, origin and help. */
void ppd_config_write_yaml(const ppd_config *cfg, FILE *f);

/* The most recent warning's text, without the program prefix ("" if none): for --json reports
 * and tests. */
const char *ppd_config_last_warning(const ppd_config *cfg);

/* ---- the settings table (lib/io/config_schema.c) ------------------------------------------ */

typedef enum {
    PPD_CFG_BOOL,
    PPD_CFG_INT,   /* int64 in [imin, imax] */
    PPD_CFG_FLOAT, /* finite double in [fmin, fmax] */
    PPD_CFG_STR,
    PPD_CFG_ENUM /* one of `choices` ("a|b|c"), case-sensitive; read with ppd_config_str */
} ppd_config_type;

/* flags: PPD_CFG_COMPAT marks a DiffDock-PP setting that ppdock accepts (so that DiffDock-PP's
 * files load) but ignores. */
enum { PPD_CFG_COMPAT = 1 };

typedef struct {
    const char *name; /* "section.key" */
    ppd_config_type type;
    const char *def; /* default, spelled as a YAML value; NULL: null is the default and allowed */
    int64_t imin, imax;
    double fmin, fmax;
    const char *choices;
    unsigned flags;
    const char *help; /* one line */
} ppd_config_setting;

/* Every setting, grouped by section, in documentation order. */
const ppd_config_setting *ppd_config_table(size_t *n);
/* The setting called "section.key", or (for a name without a dot) the one whose inner-most key
 * is `name`; NULL if none. */
const ppd_config_setting *ppd_config_lookup(const char *name);

/* The Markdown reference of docs/config.md: a table of the settings ppdock uses, then the list of
 * DiffDock-PP settings it accepts and ignores. */
void ppd_config_write_markdown(FILE *f);

#endif
