/* Files, buffers, gzip and directories (see ppdock/fsutil.h). */
#include "ppdock/fsutil.h"

#include "ppdock/log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <zlib.h>

ppd_status ppd_buf_reserve(ppd_buf *b, size_t cap) {
    if (cap <= b->cap) return PPD_OK;
    size_t ncap = b->cap ? b->cap : 4096;
    while (ncap < cap) ncap = ncap > SIZE_MAX / 2 ? cap : ncap * 2;
    unsigned char *p = realloc(b->data, ncap);
    if (!p) return ppd_fail(PPD_ERR_NOMEM, "cannot grow a buffer to %zu bytes", ncap);
    b->data = p;
    b->cap = ncap;
    return PPD_OK;
}

ppd_status ppd_buf_append(ppd_buf *b, const void *data, size_t len) {
    PPD_TRY(ppd_buf_reserve(b, b->len + len + 1));
    if (len) memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = 0;
    return PPD_OK;
}

ppd_status ppd_buf_printf(ppd_buf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) return ppd_fail(PPD_ERR_INTERNAL, "bad format string");
    PPD_TRY(ppd_buf_reserve(b, b->len + (size_t)n + 1));
    va_start(ap, fmt);
    vsnprintf((char *)b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return PPD_OK;
}

void ppd_buf_free(ppd_buf *b) {
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

ppd_status ppd_read_file(const char *path, ppd_buf *b) {
    b->len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return ppd_fail(PPD_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat stbuf;
    if (fstat(fd, &stbuf) == 0 && S_ISDIR(stbuf.st_mode)) {
        close(fd);
        return ppd_fail(PPD_ERR_IO, "%s: is a directory, expected a file", path);
    }
    size_t want = (fstat(fd, &stbuf) == 0 && stbuf.st_size > 0) ? (size_t)stbuf.st_size + 1 : 65536;
    ppd_status st = ppd_buf_reserve(b, want);
    while (st == PPD_OK) {
        if (b->cap - b->len < 2) st = ppd_buf_reserve(b, b->cap * 2);
        if (st) break;
        ssize_t n = read(fd, b->data + b->len, b->cap - b->len - 1);
        if (n < 0) {
            if (errno == EINTR) continue;
            st = ppd_fail(PPD_ERR_IO, "%s: read error: %s", path, strerror(errno));
            break;
        }
        if (n == 0) break;
        b->len += (size_t)n;
    }
    close(fd);
    if (st == PPD_OK) b->data[b->len] = 0;
    return st;
}

ppd_status ppd_gunzip(const unsigned char *in, size_t inlen, const char *name, ppd_buf *out) {
    out->len = 0;
    /* ISIZE (last 4 bytes) is the uncompressed size mod 2^32: a good first guess. */
    size_t guess = inlen * 4 + 4096;
    if (inlen >= 18) {
        uint32_t isize = (uint32_t)in[inlen - 4] | (uint32_t)in[inlen - 3] << 8 |
                         (uint32_t)in[inlen - 2] << 16 | (uint32_t)in[inlen - 1] << 24;
        if (isize >= inlen / 2 && isize < inlen * 1032u + 4096) guess = (size_t)isize + 1;
    }
    PPD_TRY(ppd_buf_reserve(out, guess));
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (inflateInit2(&zs, 15 + 16) != Z_OK)
        return ppd_fail(PPD_ERR_NOMEM, "%s: zlib init failed", name);
    size_t pos = 0;
    ppd_status st = PPD_OK;
    for (;;) {
        /* zlib counts in uInt; feed at most 1 GiB at a time. */
        if (zs.avail_in == 0 && pos < inlen) {
            size_t chunk = inlen - pos > (1u << 30) ? (1u << 30) : inlen - pos;
            zs.next_in = (Bytef *)(in + pos);
            zs.avail_in = (uInt)chunk;
            pos += chunk;
        }
        if (out->cap - out->len < 2) {
            if (out->len >= PPD_GUNZIP_MAX) { /* a gzip bomb or not a structure file */
                st = ppd_fail(PPD_ERR_FORMAT,
                              "%s: decompresses to more than %d GiB; not a structure file", name,
                              (int)(PPD_GUNZIP_MAX >> 30));
                break;
            }
            st = ppd_buf_reserve(out, out->cap * 2);
            if (st) break;
        }
        size_t room = out->cap - out->len - 1;
        if (room > (1u << 30)) room = 1u << 30;
        zs.next_out = out->data + out->len;
        zs.avail_out = (uInt)room;
        int rc = inflate(&zs, Z_NO_FLUSH);
        out->len += room - zs.avail_out;
        if (rc == Z_STREAM_END) {
            /* Another gzip member may follow (concatenated .gz files); anything else ends. */
            size_t left = zs.avail_in + (inlen - pos);
            const unsigned char *next = zs.next_in;
            if (left >= 2 && next[0] == 0x1f && next[1] == 0x8b) {
                inflateReset(&zs);
                continue;
            }
            break;
        }
        if (rc == Z_BUF_ERROR && zs.avail_in == 0 && pos >= inlen) {
            st = ppd_fail(PPD_ERR_FORMAT,
                          "%s: truncated gzip stream (ends after %zu compressed bytes)", name,
                          inlen);
            break;
        }
        if (rc != Z_OK && rc != Z_BUF_ERROR) {
            st = ppd_fail(PPD_ERR_FORMAT, "%s: corrupt gzip data (%s)", name,
                          zs.msg ? zs.msg : "inflate failed");
            break;
        }
    }
    inflateEnd(&zs);
    if (st == PPD_OK) out->data[out->len] = 0;
    return st;
}

ppd_status ppd_read_maybe_gz(const char *path, ppd_buf *raw, ppd_buf *text) {
    PPD_TRY(ppd_read_file(path, raw));
    if (raw->len >= 2 && raw->data[0] == 0x1f && raw->data[1] == 0x8b)
        return ppd_gunzip(raw->data, raw->len, path, text);
    text->len = 0;
    return ppd_buf_append(text, raw->data, raw->len);
}

int ppd_file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

int ppd_dir_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

ppd_status ppd_mkdir_p(const char *path) {
    char tmp[PATH_MAX];
    if (snprintf(tmp, sizeof tmp, "%s", path) >= (int)sizeof tmp)
        return ppd_fail(PPD_ERR_IO, "%s: path too long", path);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        if (mkdir(tmp, 0777) != 0 && errno != EEXIST)
            return ppd_fail(PPD_ERR_IO, "%s: cannot create directory: %s", tmp, strerror(errno));
        *p = '/';
    }
    if (mkdir(tmp, 0777) != 0 && errno != EEXIST)
        return ppd_fail(PPD_ERR_IO, "%s: cannot create directory: %s", tmp, strerror(errno));
    if (!ppd_dir_exists(tmp)) return ppd_fail(PPD_ERR_IO, "%s: exists and is not a directory", tmp);
    return PPD_OK;
}

ppd_status ppd_remove_tree(const char *path) {
    struct stat st;
    if (lstat(path, &st) != 0)
        return errno == ENOENT ? PPD_OK : ppd_fail(PPD_ERR_IO, "%s: %s", path, strerror(errno));
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(path);
        if (!d) return ppd_fail(PPD_ERR_IO, "%s: cannot open directory: %s", path, strerror(errno));
        struct dirent *e;
        ppd_status rc = PPD_OK;
        while (rc == PPD_OK && (e = readdir(d))) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
            char child[PATH_MAX];
            snprintf(child, sizeof child, "%s/%s", path, e->d_name);
            rc = ppd_remove_tree(child);
        }
        closedir(d);
        if (rc) return rc;
        if (rmdir(path) != 0)
            return ppd_fail(PPD_ERR_IO, "%s: cannot remove: %s", path, strerror(errno));
        return PPD_OK;
    }
    if (unlink(path) != 0)
        return ppd_fail(PPD_ERR_IO, "%s: cannot remove: %s", path, strerror(errno));
    return PPD_OK;
}

ppd_status ppd_fsync_dir(const char *path) {
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return ppd_fail(PPD_ERR_IO, "%s: cannot open directory: %s", path, strerror(errno));
    int rc = fsync(fd);
    int e = errno;
    close(fd);
    if (rc != 0 && e != EINVAL)
        return ppd_fail(PPD_ERR_IO, "%s: fsync failed: %s", path, strerror(e));
    return PPD_OK;
}

void ppd_path_dirname(const char *path, char *out, size_t cap) {
    const char *slash = strrchr(path, '/');
    if (!slash) {
        snprintf(out, cap, ".");
        return;
    }
    size_t n = (size_t)(slash - path);
    if (n == 0) n = 1; /* "/x" -> "/" */
    snprintf(out, cap, "%.*s", (int)n, path);
}

ppd_status ppd_path_absolute(const char *path, char *out, size_t cap) {
    char buf[PATH_MAX];
    if (!realpath(path, buf)) return ppd_fail(PPD_ERR_IO, "%s: %s", path, strerror(errno));
    if (snprintf(out, cap, "%s", buf) >= (int)cap)
        return ppd_fail(PPD_ERR_IO, "%s: path too long", path);
    return PPD_OK;
}

ppd_status ppd_dir_swap(const char *src, const char *dst) {
    char parent[PATH_MAX];
    ppd_path_dirname(dst, parent, sizeof parent);
    if (!ppd_dir_exists(dst)) {
        if (rename(src, dst) != 0)
            return ppd_fail(PPD_ERR_IO, "rename %s -> %s: %s", src, dst, strerror(errno));
        return ppd_fsync_dir(parent);
    }
#ifdef SYS_renameat2
    if (syscall(SYS_renameat2, AT_FDCWD, src, AT_FDCWD, dst, 2 /* RENAME_EXCHANGE */) == 0)
        return ppd_fsync_dir(parent);
    if (errno != EINVAL && errno != ENOSYS && errno != EOPNOTSUPP)
        return ppd_fail(PPD_ERR_IO, "exchange %s <-> %s: %s", src, dst, strerror(errno));
#endif
    char old[PATH_MAX];
    snprintf(old, sizeof old, "%s.old.%ld", dst, (long)getpid());
    if (rename(dst, old) != 0)
        return ppd_fail(PPD_ERR_IO, "rename %s -> %s: %s", dst, old, strerror(errno));
    if (rename(src, dst) != 0) {
        int e = errno;
        (void)rename(old, dst); /* best effort: put the old tree back */
        return ppd_fail(PPD_ERR_IO, "rename %s -> %s: %s", src, dst, strerror(e));
    }
    if (rename(old, src) != 0)
        return ppd_fail(PPD_ERR_IO, "rename %s -> %s: %s (the replaced cache is at %s)", old, src,
                        strerror(errno), old);
    return ppd_fsync_dir(parent);
}

ppd_status ppd_lock_exclusive(const char *path, const char *held_by, int *fd) {
    *fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0664);
    if (*fd < 0) return ppd_fail(PPD_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
    if (flock(*fd, LOCK_EX | LOCK_NB) == 0) return PPD_OK;
    int err = errno;
    close(*fd);
    *fd = -1;
    if (err == EWOULDBLOCK) return ppd_fail(PPD_ERR_IO, "%s: locked by %s", path, held_by);
    if (err == ENOSYS || err == ENOLCK || err == EOPNOTSUPP || err == EINVAL) {
        /* e.g. Lustre mounted without -o flock: run unprotected rather than not at all */
        ppd_warn("%s: this file system does not support locks (%s): nothing stops a second "
                 "process from writing here at the same time",
                 path, strerror(err));
        return PPD_OK;
    }
    return ppd_fail(PPD_ERR_IO, "%s: cannot lock: %s", path, strerror(err));
}

ppd_status ppd_write_file_replace(const char *path, const void *data, size_t len, int durable) {
    ppd_buf tmp = {0};
    PPD_TRY(ppd_buf_printf(&tmp, "%s.tmp.%ld", path, (long)getpid()));
    const char *t = (const char *)tmp.data;
    ppd_status st = PPD_OK;
    FILE *fp = fopen(t, "wb");
    if (!fp) {
        st = ppd_fail(PPD_ERR_IO, "%s: cannot create: %s", t, strerror(errno));
    } else {
        int bad = fwrite(data, 1, len, fp) != len || fflush(fp) != 0 ||
                  (durable && fsync(fileno(fp)) != 0);
        int e = errno;
        if (fclose(fp) != 0 && !bad) bad = 1, e = errno;
        if (bad) st = ppd_fail(PPD_ERR_IO, "%s: write failed: %s", t, strerror(e));
    }
    if (!st && rename(t, path) != 0)
        st = ppd_fail(PPD_ERR_IO, "%s: cannot rename into place: %s", path, strerror(errno));
    if (st) unlink(t);
    if (!st && durable) {
        char dir[PATH_MAX];
        ppd_path_dirname(path, dir, sizeof dir);
        st = ppd_fsync_dir(dir);
    }
    ppd_buf_free(&tmp);
    return st;
}
