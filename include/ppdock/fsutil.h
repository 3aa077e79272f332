/* ppdock/fsutil.h — files, growable buffers, gzip, directories.
 *
 * ppd_buf is a reusable byte buffer: a worker keeps one across items so that reading the N-th
 * file allocates nothing once the largest file has been seen.
 */
#ifndef PPDOCK_FSUTIL_H
#define PPDOCK_FSUTIL_H

#include <stddef.h>
#include <stdint.h>

#include "ppdock/status.h"

typedef struct {
    unsigned char *data;
    size_t len, cap;
} ppd_buf;

/* Make room for at least `cap` bytes (contents kept). PPD_ERR_NOMEM on failure. */
ppd_status ppd_buf_reserve(ppd_buf *b, size_t cap);
ppd_status ppd_buf_append(ppd_buf *b, const void *data, size_t len);
ppd_status ppd_buf_printf(ppd_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void ppd_buf_free(ppd_buf *b);

/* Read a whole file into b (replacing its contents); always NUL-terminates (not counted in len).
 * Errors: PPD_ERR_IO (open/read, errno text), PPD_ERR_NOMEM. */
ppd_status ppd_read_file(const char *path, ppd_buf *b);

/* Decompress gzip data (one or more members, as gzip -d does) into out, NUL-terminated.
 * `name` is used in messages. Errors: PPD_ERR_FORMAT "<name>: truncated gzip stream" /
 * "<name>: corrupt gzip data (<zlib message>)" / output beyond PPD_GUNZIP_MAX (a gzip bomb:
 * the largest PDB files are tens of MB), PPD_ERR_NOMEM. */
#define PPD_GUNZIP_MAX ((size_t)2 << 30)
ppd_status ppd_gunzip(const unsigned char *in, size_t inlen, const char *name, ppd_buf *out);

/* Read a file, decompressing it if it starts with the gzip magic (1f 8b); `raw` receives the
 * file's bytes as stored (for digests), `text` the decompressed contents (same as raw when the
 * file is not gzip). */
ppd_status ppd_read_maybe_gz(const char *path, ppd_buf *raw, ppd_buf *text);

int ppd_file_exists(const char *path);
int ppd_dir_exists(const char *path);
/* mkdir -p (mode 0777 & ~umask). PPD_ERR_IO names the component that failed. */
ppd_status ppd_mkdir_p(const char *path);
/* rm -rf of a directory tree (for temporary and replaced caches only). */
ppd_status ppd_remove_tree(const char *path);
/* fsync a directory so a rename in it is durable. */
ppd_status ppd_fsync_dir(const char *path);
/* Put directory `src` at `dst` atomically. If dst exists, the two are exchanged
 * (renameat2 RENAME_EXCHANGE) and the old dst ends up at `src`; otherwise src is renamed.
 * On file systems without RENAME_EXCHANGE: dst -> "<dst>.old.<pid>", src -> dst, then the old
 * tree is moved to `src` (a short window in which dst does not exist). */
ppd_status ppd_dir_swap(const char *src, const char *dst);
/* Replace the file at path by len bytes of data atomically: written to "<path>.tmp.<pid>", then
 * renamed over path (readers see the old or the new file, never a part). durable: the data and
 * the rename are fsync'ed first (for files a crash must not lose). PPD_ERR_IO names the step
 * that failed; the temporary file is removed. */
ppd_status ppd_write_file_replace(const char *path, const void *data, size_t len, int durable);
/* Open (creating) the lock file `path` and take an exclusive flock on it without waiting;
 * *fd is to be kept open while the lock is needed (closing it, or the process's end, releases
 * it). PPD_ERR_IO when the file cannot be made, and when another process holds the lock: then
 * the message is "<path>: locked by <held_by>" (e.g. "another process writing this cache; wait
 * for it or use another output directory"). A file system without locks (Lustre mounted without
 * -o flock) gives a warning and PPD_OK with *fd = -1: the work goes on unprotected. */
ppd_status ppd_lock_exclusive(const char *path, const char *held_by, int *fd);
/* Directory part of a path ("." if none) into out (cap bytes). */
void ppd_path_dirname(const char *path, char *out, size_t cap);
/* Absolute, normalised form of an existing path (realpath). */
ppd_status ppd_path_absolute(const char *path, char *out, size_t cap);

#endif
