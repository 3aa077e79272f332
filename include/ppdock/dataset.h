/* ppdock/dataset.h — the list of complexes a stage works on, and where their files are.
 *
 * Two sources, as DiffDock-PP's DB5 loader and its single-pair mode:
 *  - a data set: `data_file`, a CSV with a header naming at least the column `path` (the complex
 *    id, e.g. 1A2K) and usually `split`; structures at
 *    <data_path>/structures/<id>_r_b.pdb[.gz] and <id>_l_b.pdb[.gz] (receptor, ligand;
 *    `_r_u`/`_l_u` with use_unbound). When both .pdb and .pdb.gz exist, .pdb is used and a
 *    warning says so once.
 *  - a single pair: receptor and ligand paths and an id.
 * CSV reading: UTF-8 BOM and CRLF accepted; fields may be double-quoted (RFC 4180); blank lines
 * skipped; extra columns ignored. Errors name <file>:<line>: no `path` column, a row with fewer
 * fields than the header, an empty id, an id longer than a cache key allows. A repeated id is a
 * warning (the first row wins).
 */
#ifndef PPDOCK_DATASET_H
#define PPDOCK_DATASET_H

#include <stddef.h>

#include "ppdock/fsutil.h"
#include "ppdock/status.h"

typedef struct {
    const char *id;
    const char *split;    /* "" when the CSV has no split column */
    const char *receptor; /* resolved path */
    const char *ligand;
    const char *error; /* NULL, or why the files cannot be used (missing file) */
} ppd_complex_src;

typedef struct {
    ppd_complex_src *items;
    size_t n;
    char *structures;       /* a data set's <data_path>/structures (NULL for a single pair) */
    int structures_missing; /* that directory does not exist (moved, or a wrong data_path) */
    ppd_buf strings;        /* storage for all the strings above */
    ppd_buf array;
} ppd_dataset;

/* Read the CSV and resolve every item's files (an item whose files are missing gets `error`;
 * the list still loads). Errors: PPD_ERR_IO (CSV unreadable), PPD_ERR_FORMAT (<file>:<line>),
 * PPD_ERR_EMPTY (no rows). */
ppd_status ppd_dataset_load(const char *data_path, const char *data_file, int use_unbound,
                            ppd_dataset *out);
/* A one-item list. Errors: PPD_ERR_USAGE (empty or too long id). */
ppd_status ppd_dataset_pair(const char *id, const char *receptor, const char *ligand,
                            ppd_dataset *out);
void ppd_dataset_free(ppd_dataset *ds);

/* A cache records where its records came from in meta "inputs", one source per line:
 *   dataset<TAB><data_path><TAB><data_file><TAB><use_unbound 0|1>
 *   pair<TAB><id><TAB><receptor path><TAB><ligand path>
 * (absolute paths). ppd_inputs_merge adds `line` to `inputs`, replacing a line for the same
 * data_file or the same pair id. ppd_dataset_from_input loads the data set one line names. */
ppd_status ppd_inputs_merge(ppd_buf *inputs, const char *line);
ppd_status ppd_dataset_from_input(const char *line, ppd_dataset *out);

/* Source file path for <dir>/structures/<id>_<role>_<b|u>.pdb[.gz]; role 'r' or 'l'.
 * Returns 1 and fills out if a file exists, 0 otherwise (out then holds the .pdb.gz name). */
int ppd_dataset_structure_path(const char *data_path, const char *id, char role, int unbound,
                               char *out, size_t cap);

#endif
