/* train — diffusion training of the DiffDock-PP score model from a graph cache and an ESM cache.
 *
 * Thin: options and config, then ppd_train_run (ppdock/train.h), then a summary. Manual:
 * docs/train.md.
 */
#include "ppdock/blas.h"
#include "ppdock/cli.h"
#include "ppdock/config.h"
#include "ppdock/log.h"
#ifdef PPD_HAVE_CUDA
#include "ppdock/score_cuda.h"
#endif
#include "ppdock/train.h"
#include "ppdock/tool.h"

#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The JSON of the GPU's time per kind of op ({"embed": ms, ...}), or null when the run did not
 * profile one (no --profile, or on the CPU). */
static const char *profile_json(const ppd_train_report *r, int profile, char *buf, size_t cap) {
    if (!profile || !r->device[0]) return "null";
    size_t n = (size_t)snprintf(buf, cap, "{");
    for (int k = 0; k < PPD_SCORE_NOPS && n < cap; k++)
        n += (size_t)snprintf(buf + n, cap - n, "%s\"%s\": %.2f", k ? ", " : "",
                              ppd_score_op_name(k), r->device_op_ms[k]);
    if (n < cap) snprintf(buf + n, cap - n, "}");
    return buf;
}

static void usage(FILE *f) {
    fputs(
        "usage: train [options] --graphs DIR [--esm DIR] -o RUN\n"
        "       train --eval-only --init-from FILE --graphs DIR [--esm DIR] [--split S]\n"
        "             [--dump-predictions OUT.jsonl]\n"
        "\n"
        "Train the DiffDock-PP score model on the train split of a graph cache (graph-build)\n"
        "joined with an ESM cache (esm-embed), validating on the val split each epoch.\n"
        "\n"
        "  -g, --graphs DIR        graph cache\n"
        "  -e, --esm DIR           ESM cache (needed unless model.lm_embed_dim is 0; not read\n"
        "                          when it is 0)\n"
        "  -o, --output RUN        run directory: checkpoints, metrics.jsonl, loss.svg\n"
        "      --resume            continue RUN/last.safetensors where it stopped\n"
        "      --init-from FILE    start from a DiffDock-PP .pth (its \"model\" state dict and,\n"
        "                          when present, its Adam state) or a ppdock checkpoint\n"
        "      --max-steps N       stop after N optimizer steps in total\n"
        "      --eval-only         evaluate --split with fixed noise and stop (no training)\n"
        "      --split S           split for --eval-only (default val)\n"
        "      --dump-predictions F  with --eval-only: one JSON line per complex (id, t, sigmas,\n"
        "                          applied updates, predictions, targets, losses)\n"
        "      --seed N            seed (default train.seed)\n"
        "      --device D          auto | cpu | cuda (device.engine; auto: the GPU when there is\n"
        "                          one and this build has CUDA)\n"
        "      --gpu N             CUDA device ordinal (device.index)\n"
        "      --precision P       fp32 | tf32: the GPU's GEMMs (device.precision)\n"
        "      --device-mem-gb X   device memory budget (device.budget_gb; 0: what the cache's\n"
        "                          largest batch can need, at most 95% of free)\n"
        "      --deterministic     fp32 GEMMs on the GPU whatever --precision says, so that runs\n"
        "                          repeat bit for bit (train.deterministic)\n"
        "      --profile           on the GPU, time each kind of op (CUDA events; for\n"
        "                          benchmarks): device_profile_ms in the JSON summary\n"
        "  -c, --config FILE       YAML config (DiffDock-PP's own load as they are); repeatable\n"
        "      --set KEY=VALUE     override a setting; repeatable\n"
        "  -j, --jobs N            threads (default: all CPUs)\n"
        "      --json              one JSON summary object on stdout\n"
        "      --print-config      print every setting with its value and origin, then exit\n"
        "  -q, --quiet / -v, --verbose\n"
        "  -h, --help, --version\n"
        "\n"
        "SIGTERM (SLURM's warning before a time limit or preemption), SIGINT or SIGUSR1 stop\n"
        "the run after the step in progress with last.safetensors saved (--resume continues as\n"
        "if never stopped); another one more than a second later ends it at once.\n"
        "\n"
        "Exit status: 0 done, 1 some complexes were skipped (unreadable records, missing\n"
        "embeddings) or the run was stopped by a signal, 2 usage or config error, 3 I/O, memory\n"
        "or cache failure.\n",
        f);
}

enum {
    OPT_RESUME = 0x2000,
    OPT_INIT,
    OPT_MAX_STEPS,
    OPT_EVAL,
    OPT_SPLIT,
    OPT_DUMP,
    OPT_SEED,
    OPT_DEVICE,
    OPT_GPU,
    OPT_PRECISION,
    OPT_DEVMEM,
    OPT_DETERMINISTIC,
    OPT_PROFILE
};

int main(int argc, char **argv) {
    ppd_blas_reexec(argv);
    ppd_tool t;
    if (ppd_tool_init(&t, "train", argc)) return PPD_EXIT_IO;
    ppd_train_opts o = {.seed = -1};
    struct option longopts[] = {PPD_TOOL_LONGOPTS,
                                {"graphs", required_argument, 0, 'g'},
                                {"esm", required_argument, 0, 'e'},
                                {"output", required_argument, 0, 'o'},
                                {"resume", no_argument, 0, OPT_RESUME},
                                {"init-from", required_argument, 0, OPT_INIT},
                                {"max-steps", required_argument, 0, OPT_MAX_STEPS},
                                {"eval-only", no_argument, 0, OPT_EVAL},
                                {"split", required_argument, 0, OPT_SPLIT},
                                {"dump-predictions", required_argument, 0, OPT_DUMP},
                                {"seed", required_argument, 0, OPT_SEED},
                                {"device", required_argument, 0, OPT_DEVICE},
                                {"gpu", required_argument, 0, OPT_GPU},
                                {"precision", required_argument, 0, OPT_PRECISION},
                                {"device-mem-gb", required_argument, 0, OPT_DEVMEM},
                                {"deterministic", no_argument, 0, OPT_DETERMINISTIC},
                                {"profile", no_argument, 0, OPT_PROFILE},
                                {0, 0, 0, 0}};
    /* options that are settings: --set KEY=VALUE under their own names */
    static const ppd_tool_setting_opt as_set[] = {{OPT_DEVICE, "device.engine"},
                                                  {OPT_GPU, "device.index"},
                                                  {OPT_PRECISION, "device.precision"},
                                                  {OPT_DEVMEM, "device.budget_gb"}};
    int opt;
    while ((opt = getopt_long(argc, argv, PPD_TOOL_SHORTOPTS "g:e:o:", longopts, NULL)) != -1) {
        if (ppd_tool_option(&t, opt, optarg)) continue;
        if (ppd_tool_setting_option(&t, opt, optarg, as_set, sizeof as_set / sizeof as_set[0]))
            continue;
        char *end;
        switch (opt) {
        case 'g':
            o.graphs = optarg;
            break;
        case 'e':
            o.esm = optarg;
            break;
        case 'o':
            o.run_dir = optarg;
            break;
        case OPT_RESUME:
            o.resume = 1;
            break;
        case OPT_INIT:
            o.init_from = optarg;
            break;
        case OPT_EVAL:
            o.eval_only = 1;
            break;
        case OPT_DETERMINISTIC:
            if (ppd_tool_add_set(&t, "train.deterministic", "true")) t.usage_error = 1;
            break;
        case OPT_PROFILE:
            o.profile = 1;
            break;
        case OPT_SPLIT:
            o.split = optarg;
            break;
        case OPT_DUMP:
            o.dump_path = optarg;
            break;
        case OPT_MAX_STEPS:
        case OPT_SEED:
            if (opt == OPT_MAX_STEPS)
                o.max_steps = strtoll(optarg, &end, 10);
            else
                o.seed = strtoll(optarg, &end, 10);
            if (*end || (opt == OPT_MAX_STEPS ? o.max_steps < 1 : o.seed < 0)) {
                fprintf(stderr, "train: --%s wants a %s integer, not \"%s\"\n",
                        opt == OPT_MAX_STEPS ? "max-steps" : "seed",
                        opt == OPT_MAX_STEPS ? "positive" : "non-negative", optarg);
                t.usage_error = 1;
            }
            break;
        default:
            t.usage_error = 2;
        }
    }
    if (t.usage_error == 0 && !t.help && !t.version && !t.print_config) {
        const char *why = NULL;
        if (!o.graphs)
            why = "--graphs DIR is required";
        else if (o.eval_only && !o.init_from)
            why = "--eval-only needs --init-from FILE";
        else if (!o.eval_only && !o.run_dir)
            why = "-o RUN is required";
        else if (o.dump_path && !o.eval_only)
            why = "--dump-predictions goes with --eval-only";
        else if (o.resume && o.init_from)
            why = "--resume and --init-from exclude each other";
        if (why) {
            fprintf(stderr, "train: %s\n", why);
            t.usage_error = 2;
        }
    }
    int rc = ppd_tool_options_done(&t, argc, argv, optind, usage);
    ppd_config *cfg = NULL;
    if (rc < 0 && ppd_tool_config(&t, &cfg)) rc = t.exit_code;
    if (rc < 0) {
        o.threads = t.jobs > 0 ? t.jobs : (int)sysconf(_SC_NPROCESSORS_ONLN);
        o.quiet = t.verbosity <= PPD_LOG_WARN;
#ifdef PPD_HAVE_CUDA
        o.device_ops = &ppd_score_device_cuda;
#endif
        if (!o.eval_only) {
            /* the run stops at the next step boundary, checkpointed (ppd_train_opts.stop) */
            o.stop = ppd_tool_catch_stop_signals();
        }
        ppd_train_report r;
        ppd_status st = ppd_train_run(&o, cfg, &r);
        if (st) {
            rc = ppd_tool_failed(st, t.json);
        } else {
            rc = r.skipped || r.interrupted ? PPD_EXIT_PARTIAL : PPD_EXIT_OK;
        }
        /* no validation yet (no val split, or no epoch ended): no best loss, not 0 */
        char best_json[32] = "null", best_text[32] = "none yet";
        if (r.best_val_loss != 0) {
            snprintf(best_json, sizeof best_json, "%.9g", r.best_val_loss);
            snprintf(best_text, sizeof best_text, "%.6g", r.best_val_loss);
        }
        if (!st && t.json) {
            char prof[512];
            if (o.eval_only) {
                printf("{\"split\": "); /* names and paths are the user's: escaped */
                ppd_json_str(stdout, o.split ? o.split : "val");
                printf(", \"complexes\": %lld, \"loss\": %.9g, \"tr_loss\": %.9g, "
                       "\"rot_loss\": %.9g, \"peak_rss_mb\": %.1f}\n",
                       (long long)r.eval_complexes, r.eval_loss, r.eval_tr_loss, r.eval_rot_loss,
                       (double)r.peak_rss / 1048576.0);
            } else {
                printf("{\"run\": ");
                ppd_json_str(stdout, o.run_dir);
                printf(", \"device\": ");
                ppd_json_str(stdout, r.device[0] ? r.device : "cpu");
                printf(
                    ", \"steps\": %lld, \"epochs\": %lld, \"complexes\": %lld, \"skipped\": %lld, "
                    "\"last_loss\": %.9g, \"best_val_loss\": %s, \"seconds\": %.3f, "
                    "\"complexes_per_s\": %.4g, \"peak_rss_mb\": %.1f, "
                    "\"device_fixed_mb\": %.1f, \"device_reserved_mb\": %.1f, "
                    "\"device_measured_mb\": %.1f, \"device_runtime_mb\": %.1f, "
                    "\"device_planned_peak_mb\": %.1f, "
                    "\"device_peak_mb\": %.1f, \"device_uploads\": %llu, "
                    "\"device_uploads_waited\": %llu, \"device_profile_ms\": %s, "
                    "\"interrupted\": %s}\n",
                    (long long)r.steps, (long long)r.epochs, (long long)r.complexes,
                    (long long)r.skipped, r.last_loss, best_json, r.seconds, r.complexes_per_s,
                    (double)r.peak_rss / 1048576.0, r.device_fixed / 1048576.0,
                    r.device_reserved / 1048576.0, r.device_measured / 1048576.0,
                    r.device_runtime / 1048576.0,
                    (r.device_fixed + r.device_planned_peak) / 1048576.0,
                    (r.device_fixed + r.device_used_peak) / 1048576.0,
                    (unsigned long long)r.device_uploads,
                    (unsigned long long)r.device_uploads_waited,
                    profile_json(&r, o.profile, prof, sizeof prof),
                    r.interrupted ? "true" : "false");
            }
        } else if (!st && t.verbosity > PPD_LOG_WARN) {
            if (o.eval_only)
                fprintf(stderr, "train: %s: %lld complexes, loss %.6g (tr %.6g, rot %.6g)\n",
                        o.split ? o.split : "val", (long long)r.eval_complexes, r.eval_loss,
                        r.eval_tr_loss, r.eval_rot_loss);
            else
                fprintf(stderr,
                        "train: %lld steps, %lld epochs, %.1f complexes/s, last loss %.6g, best "
                        "val loss %s, peak RSS %.0f MB -> %s\n",
                        (long long)r.steps, (long long)r.epochs, r.complexes_per_s, r.last_loss,
                        best_text, (double)r.peak_rss / 1048576.0, o.run_dir);
            if (r.device[0])
                fprintf(stderr,
                        "train: GPU %s: device memory planned %.1f MB, used %.1f MB (of %.1f MB "
                        "reserved; the driver counted %.1f MB for the reservation and %.1f MB "
                        "for CUDA's own)\n",
                        r.device, (r.device_fixed + r.device_planned_peak) / 1048576.0,
                        (r.device_fixed + r.device_used_peak) / 1048576.0,
                        r.device_reserved / 1048576.0, r.device_measured / 1048576.0,
                        r.device_runtime / 1048576.0);
        }
    }
    ppd_config_free(cfg);
    ppd_tool_free(&t);
    return rc < 0 ? 0 : rc;
}
