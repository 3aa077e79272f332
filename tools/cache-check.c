/* cache-check — fsck for ppdock caches: find, name and (with --repair) drop bad records.
 *
 * Checks every cache directory given (ppdock/check.h lists the checks), reports each problem
 * with its key, and exits with fsck's codes. --repair rebuilds a cache from its good records
 * (never in place), --dump prints one record as JSON, --publish copies a clean, sealed cache
 * compactly to its final place with an atomic rename. Manual: docs/cache-check.md.
 */
#include "ppdock/cache.h"
#include "ppdock/check.h"
#include "ppdock/cli.h"
#include "ppdock/dump.h"
#include "ppdock/log.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* fsck(8) exit codes */
enum { FSCK_OK = 0, FSCK_REPAIRED = 1, FSCK_LEFT = 4, FSCK_ERROR = 8, FSCK_USAGE = 16 };

static void usage(FILE *f) {
    fputs(
        "usage: cache-check [options] DIR...\n"
        "       cache-check --dump KEY DIR\n"
        "       cache-check --publish DEST DIR\n"
        "\n"
        "Check ppdock caches (graph-build and later stages' output) like fsck checks a file "
        "system:\n"
        "LMDB opens, the data file is not truncated, meta and seal, counts, a full walk with "
        "every\n"
        "record's header, checksum, shapes, finite values and invariants.\n"
        "\n"
        "      --inputs          also compare with the inputs the cache records: missing and "
        "stale\n"
        "                        records (source files changed)\n"
        "      --repair          write the good records to a fresh cache, record the dropped "
        "keys,\n"
        "                        swap it in atomically (the original is kept as "
        "DIR.damaged.TIME);\n"
        "                        the next build run rebuilds exactly the dropped records\n"
        "      --dump KEY        print record KEY as JSON (graph: receptor/ligand pos, sequence,\n"
        "                        edge_index, center, ...)\n"
        "      --publish DEST    after a clean check, compacting copy to DEST (atomic rename)\n"
        "      --json            one JSON object per problem, then a summary object per cache\n"
        "  -q, --quiet           print problems only\n"
        "  -v, --verbose         more detail\n"
        "  -h, --help            this text\n"
        "      --version         print the version\n"
        "\n"
        "Exit status (as fsck; or-ed over several caches): 0 clean, 1 problems found and "
        "repaired,\n"
        "4 problems left, 8 operational error (cannot open, I/O), 16 usage error.\n",
        f);
}

typedef struct {
    int json, quiet;
} out_ctx;

static void on_problem(const ppd_problem *p, void *ctx) {
    out_ctx *o = ctx;
    if (o->json) {
        printf("{\"dir\": ");
        ppd_json_str(stdout, p->dir);
        printf(", \"key\": ");
        if (p->key)
            ppd_json_str(stdout, p->key);
        else
            printf("null");
        printf(", \"check\": ");
        ppd_json_str(stdout, p->check);
        printf(", \"detail\": ");
        ppd_json_str(stdout, p->detail);
        printf(", \"repairable\": %s}\n", p->repairable ? "true" : "false");
    } else {
        printf("%s: %s%s%s%s\n", p->dir, p->key ? "record " : "", p->key ? p->key : "",
               p->key ? ": " : "", p->check);
        printf("    %s\n", p->detail);
    }
    fflush(stdout);
}

static void summary(const char *dir, const ppd_check_summary *s, const out_ctx *o, int repaired) {
    if (o->json) {
        printf("{\"dir\": ");
        ppd_json_str(stdout, dir);
        printf(", \"summary\": {\"record_type\": ");
        ppd_json_str(stdout, s->record_type);
        printf(", \"sealed\": %s, \"records\": %llu, \"records_ok\": %llu, \"problems\": %llu, "
               "\"repairable\": %llu, "
               "\"unfixable\": %llu, \"inputs\": %llu, \"missing\": %llu, \"stale\": %llu, "
               "\"dropped_pending\": %llu, \"writer_running\": %s, "
               "\"repaired\": %s",
               s->sealed ? "true" : "false", (unsigned long long)s->records,
               (unsigned long long)s->records_ok, (unsigned long long)s->problems,
               (unsigned long long)s->repairable, (unsigned long long)s->unfixable,
               (unsigned long long)s->inputs, (unsigned long long)s->missing,
               (unsigned long long)s->stale, (unsigned long long)s->dropped_pending,
               s->writer_running ? "true" : "false", repaired ? "true" : "false");
        if (repaired) {
            printf(", \"damaged_copy\": ");
            ppd_json_str(stdout, s->damaged_path);
        }
        puts("}}");
        return;
    }
    if (o->quiet) return;
    printf("%s: %s cache, %s, %llu records, %llu ok, %llu problem%s", dir, s->record_type,
           s->sealed ? "sealed" : "NOT sealed", (unsigned long long)s->records,
           (unsigned long long)s->records_ok, (unsigned long long)s->problems,
           s->problems == 1 ? "" : "s");
    if (s->inputs)
        printf("; inputs: %llu listed, %llu missing, %llu stale", (unsigned long long)s->inputs,
               (unsigned long long)s->missing, (unsigned long long)s->stale);
    printf("\n");
    if (s->dropped_pending)
        printf("%s: note: %llu record(s) dropped by an earlier repair are not rebuilt yet (rerun "
               "the build stage)\n",
               dir, (unsigned long long)s->dropped_pending);
    if (repaired)
        printf("%s: repaired: bad records dropped and listed in meta 'dropped'; the damaged "
               "original is at %s\n",
               dir, s->damaged_path);
    else if (s->problems == 1 && !s->sealed && s->repairable == 1 && !s->writer_running)
        printf("%s: rerun the build stage to complete it (or cache-check --repair %s to seal the "
               "records it has)\n",
               dir, dir);
    else if (s->problems && s->repairable && !s->unfixable && !s->writer_running)
        printf(
            "%s: run cache-check --repair %s to drop the bad records, then rerun the build stage\n",
            dir, dir);
}

/* A cache that could not be checked (no such directory, I/O error): the error on stderr and,
 * with --json, {"dir": DIR, "error": MESSAGE, "status": "PPD_ERR_..."} in the stream. */
static int operational_error(const char *dir, ppd_status st, const out_ctx *o) {
    ppd_error("%s", ppd_errmsg());
    if (o->json) {
        printf("{\"dir\": ");
        ppd_json_str(stdout, dir);
        printf(", ");
        ppd_json_error_members(stdout, st);
        puts("}");
    }
    return FSCK_ERROR;
}

/* Checks (and repairs) one cache; *type receives its record type name ("graph", "esm", "?"). */
static int check_one(const char *dir, int inputs, int repair, out_ctx *o, char type[16]) {
    ppd_check_opts opts = {.inputs = inputs, .report = on_problem, .ctx = o};
    ppd_check_summary s;
    int repaired = 0;
    type[0] = 0;
    ppd_status st =
        repair ? ppd_cache_repair(dir, &opts, &s, &repaired) : ppd_cache_check(dir, &opts, &s);
    if ((st == PPD_ERR_USAGE || st == PPD_ERR_CORRUPT) &&
        repair) { /* refused or impossible; problems reported */
        ppd_error("%s", ppd_errmsg());
        summary(dir, &s, o, 0);
        return FSCK_LEFT;
    }
    if (st) return operational_error(dir, st, o);
    summary(dir, &s, o, repaired);
    snprintf(type, 16, "%s", s.record_type);
    if (!s.problems) return FSCK_OK;
    if (repaired) { /* what is left after the repair (e.g. missing inputs) decides 1 or 4 */
        ppd_check_summary after;
        ppd_check_opts quiet = {.inputs = inputs};
        if (ppd_cache_check(dir, &quiet, &after) != PPD_OK) return FSCK_ERROR;
        return after.problems ? FSCK_LEFT : FSCK_REPAIRED;
    }
    return FSCK_LEFT;
}

static int cross_one(const char *graphs, const char *esm, out_ctx *o) {
    ppd_check_opts opts = {.report = on_problem, .ctx = o};
    ppd_check_summary s;
    ppd_status st = ppd_cache_cross_check(graphs, esm, &opts, &s);
    if (st) return operational_error(graphs, st, o);
    if (o->json) {
        printf("{\"dir\": ");
        ppd_json_str(stdout, graphs);
        printf(", \"esm\": ");
        ppd_json_str(stdout, esm);
        printf(", \"cross_summary\": {\"complexes\": %llu, \"complexes_ok\": %llu, \"problems\": "
               "%llu, "
               "\"missing_embeddings\": %llu}}\n",
               (unsigned long long)s.records, (unsigned long long)s.records_ok,
               (unsigned long long)s.problems, (unsigned long long)s.missing);
    } else if (!o->quiet) {
        printf("%s x %s: %llu complexes, %llu with both embeddings right, %llu problem%s (%llu "
               "missing "
               "embeddings)\n",
               graphs, esm, (unsigned long long)s.records, (unsigned long long)s.records_ok,
               (unsigned long long)s.problems, s.problems == 1 ? "" : "s",
               (unsigned long long)s.missing);
        if (s.missing)
            printf("%s: run esm-embed -g %s -o %s to embed the missing sequences\n", esm, graphs,
                   esm);
    }
    return s.problems ? FSCK_LEFT : FSCK_OK;
}

static int dump(const char *dir, const char *key) {
    ppd_cache_reader *r;
    ppd_status st = ppd_cache_reader_open(dir, &r);
    if (st) {
        ppd_error("%s", ppd_errmsg());
        return st == PPD_ERR_CORRUPT || st == PPD_ERR_VERSION ? FSCK_LEFT : FSCK_ERROR;
    }
    ppd_rec_view v;
    st = ppd_cache_reader_get(r, key, &v);
    if (!st) st = ppd_record_write_json(stdout, key, &v);
    if (st) ppd_error("%s", ppd_errmsg());
    ppd_cache_reader_close(r);
    if (st == PPD_ERR_CORRUPT) return FSCK_LEFT;
    return st ? FSCK_ERROR : FSCK_OK;
}

static int publish(const char *dir, const char *dest, out_ctx *o) {
    char type[16];
    int rc = check_one(dir, 0, 0, o, type);
    if (rc != FSCK_OK) {
        ppd_error("%s is not clean; not publishing it to %s", dir, dest);
        return rc;
    }
    ppd_status st = ppd_cache_publish(dir, dest);
    if (st) return operational_error(dir, st, o);
    if (!o->quiet && !o->json) printf("%s: published to %s\n", dir, dest);
    return FSCK_OK;
}

int main(int argc, char **argv) {
    ppd_log_set_prog("cache-check");
    enum { OPT_INPUTS = 1000, OPT_REPAIR, OPT_DUMP, OPT_PUBLISH, OPT_JSON, OPT_VERSION };
    static const struct option longopts[] = {
        {"inputs", no_argument, 0, OPT_INPUTS},   {"repair", no_argument, 0, OPT_REPAIR},
        {"dump", required_argument, 0, OPT_DUMP}, {"publish", required_argument, 0, OPT_PUBLISH},
        {"json", no_argument, 0, OPT_JSON},       {"quiet", no_argument, 0, 'q'},
        {"verbose", no_argument, 0, 'v'},         {"help", no_argument, 0, 'h'},
        {"version", no_argument, 0, OPT_VERSION}, {0, 0, 0, 0}};
    int inputs = 0, repair = 0, verbosity = PPD_LOG_INFO, opt;
    const char *dump_key = NULL, *dest = NULL;
    out_ctx o = {0};
    while ((opt = getopt_long(argc, argv, "qvh", longopts, NULL)) != -1) {
        switch (opt) {
        case OPT_INPUTS:
            inputs = 1;
            break;
        case OPT_REPAIR:
            repair = 1;
            break;
        case OPT_DUMP:
            dump_key = optarg;
            break;
        case OPT_PUBLISH:
            dest = optarg;
            break;
        case OPT_JSON:
            o.json = 1;
            break;
        case 'q':
            o.quiet = 1;
            verbosity = PPD_LOG_WARN;
            break;
        case 'v':
            verbosity = PPD_LOG_DEBUG;
            break;
        case 'h':
            usage(stdout);
            return FSCK_OK;
        case OPT_VERSION:
            printf("cache-check %s\n", PPD_VERSION);
            return FSCK_OK;
        default:
            usage(stderr);
            return FSCK_USAGE;
        }
    }
    ppd_log_set_level((ppd_log_level)verbosity);
    int ndirs = argc - optind;
    if (ndirs < 1) {
        ppd_error("give at least one cache directory (see --help)");
        return FSCK_USAGE;
    }
    if ((dump_key || dest) && (ndirs != 1 || repair || (dump_key && dest))) {
        ppd_error("--dump and --publish take exactly one DIR and do not combine with --repair or "
                  "each other");
        return FSCK_USAGE;
    }
    if (dump_key) return dump(argv[optind], dump_key);
    if (dest) return publish(argv[optind], dest, &o);
    int rc = 0;
    char(*types)[16] = calloc((size_t)ndirs, sizeof *types);
    if (!types) return FSCK_ERROR;
    for (int i = 0; i < ndirs; i++) rc |= check_one(argv[optind + i], inputs, repair, &o, types[i]);
    /* every graph cache against every ESM cache given with it */
    for (int i = 0; i < ndirs; i++)
        for (int j = 0; j < ndirs; j++)
            if (!strcmp(types[i], "graph") && !strcmp(types[j], "esm"))
                rc |= cross_one(argv[optind + i], argv[optind + j], &o);
    free(types);
    return rc;
}
