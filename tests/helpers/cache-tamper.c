/* cache-tamper — damage a cache on purpose, for the fault-injection tests (never for users).
 *
 *   cache-tamper DIR flip KEY OFFSET      flip bit 4 of byte OFFSET of record KEY's value
 *   cache-tamper DIR delete KEY           delete record KEY (its index entry stays)
 *   cache-tamper DIR garbage KEY          replace record KEY's value by junk of the same length
 *   cache-tamper DIR set-meta NAME VALUE  overwrite a meta value
 *   cache-tamper DIR swap KEY1 KEY2       store KEY1's value under KEY2 as well
 *   cache-tamper DIR never-committed      make DIR an LMDB environment with no commit, as a
 *                                         writer killed before its first commit leaves it
 * KEY "@first" names the first record in key order; the key used is printed on stdout.
 * Exit 0 on success, 1 with a message otherwise. Uses LMDB directly, as a bad disk or a
 * buggy tool would, bypassing every ppdock check. */
#include <errno.h>
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int die(const char *what, int rc) {
    fprintf(stderr, "cache-tamper: %s: %s\n", what, mdb_strerror(rc));
    return 1;
}

int main(int argc, char **argv) {
    int never_committed = argc == 3 && !strcmp(argv[2], "never-committed");
    if (argc < 4 && !never_committed) {
        fprintf(stderr, "usage: cache-tamper DIR flip|delete|garbage|set-meta|swap ARGS...\n"
                        "       cache-tamper DIR never-committed\n");
        return 1;
    }
    const char *dir = argv[1], *op = argv[2];
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi recs, meta;
    if (never_committed && mkdir(dir, 0775) != 0 && errno != EEXIST) {
        fprintf(stderr, "cache-tamper: mkdir %s: %s\n", dir, strerror(errno));
        return 1;
    }
    int rc = mdb_env_create(&env);
    mdb_env_set_maxdbs(env, 4);
    if ((rc = mdb_env_open(env, dir, 0, 0664))) return die("open", rc);
    if (never_committed) { /* mdb_env_open has written data.mdb's two meta pages, nothing more */
        mdb_env_close(env);
        return 0;
    }
    if ((rc = mdb_txn_begin(env, NULL, 0, &txn))) return die("txn", rc);
    if ((rc = mdb_dbi_open(txn, "records", 0, &recs)) || (rc = mdb_dbi_open(txn, "meta", 0, &meta)))
        return die("dbi", rc);
    MDB_val k = {strlen(argv[3]), argv[3]}, v;
    char first[512];
    if (!strcmp(argv[3], "@first")) {
        MDB_cursor *c;
        if ((rc = mdb_cursor_open(txn, recs, &c)) || (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST)))
            return die("first record", rc);
        snprintf(first, sizeof first, "%.*s", (int)k.mv_size, (const char *)k.mv_data);
        mdb_cursor_close(c);
        k.mv_data = first;
        k.mv_size = strlen(first);
        printf("%s\n", first);
    }
    unsigned char *buf = NULL;
    if (!strcmp(op, "set-meta") && argc == 5) {
        MDB_val nv = {strlen(argv[4]), argv[4]};
        rc = mdb_put(txn, meta, &k, &nv, 0);
    } else if ((rc = mdb_get(txn, recs, &k, &v))) {
        return die(argv[3], rc);
    } else if (!strcmp(op, "delete")) {
        rc = mdb_del(txn, recs, &k, NULL);
    } else if (!strcmp(op, "flip") && argc == 5) {
        size_t off = strtoull(argv[4], NULL, 10) % v.mv_size;
        buf = malloc(v.mv_size);
        memcpy(buf, v.mv_data, v.mv_size);
        buf[off] ^= 0x10;
        MDB_val nv = {v.mv_size, buf};
        rc = mdb_put(txn, recs, &k, &nv, 0);
    } else if (!strcmp(op, "garbage")) {
        buf = malloc(v.mv_size);
        for (size_t i = 0; i < v.mv_size; i++) buf[i] = (unsigned char)(i * 131 + 7);
        MDB_val nv = {v.mv_size, buf};
        rc = mdb_put(txn, recs, &k, &nv, 0);
    } else if (!strcmp(op, "swap") && argc == 5) {
        buf = malloc(v.mv_size);
        memcpy(buf, v.mv_data, v.mv_size);
        MDB_val k2 = {strlen(argv[4]), argv[4]}, nv = {v.mv_size, buf};
        rc = mdb_put(txn, recs, &k2, &nv, 0);
    } else {
        fprintf(stderr, "cache-tamper: bad operation '%s'\n", op);
        return 1;
    }
    if (rc) return die(op, rc);
    if ((rc = mdb_txn_commit(txn))) return die("commit", rc);
    mdb_env_close(env);
    free(buf);
    return 0;
}
