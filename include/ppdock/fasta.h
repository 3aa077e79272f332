/* ppdock/fasta.h — FASTA files (plain or .gz).
 *
 * A record starts with a '>' line; its name is the text after '>' up to the first whitespace
 * (the rest is the description). Sequence lines that follow are concatenated with all
 * whitespace removed. Lines starting with ';' are comments. Line endings: \n or \r\n.
 * Errors: PPD_ERR_IO (unreadable), PPD_ERR_FORMAT "<file>:<line>: ..." for sequence text before
 * the first '>' or a '>' line without a name, PPD_ERR_EMPTY for a file without records.
 * A record with an empty sequence is passed to the callback with len 0 (the caller decides).
 */
#ifndef PPDOCK_FASTA_H
#define PPDOCK_FASTA_H

#include <stddef.h>

#include "ppdock/status.h"

/* Called once per record, in file order; `line` is the header's line number. A non-OK return
 * stops the reading with that status. */
typedef ppd_status (*ppd_fasta_fn)(void *ctx, const char *name, const char *seq, size_t len,
                                   int line);

ppd_status ppd_fasta_read(const char *path, ppd_fasta_fn fn, void *ctx);

#endif
