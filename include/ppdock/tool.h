/* ppdock/tool.h — the command-line options every configurable tool shares.
 *
 *   -c, --config FILE      YAML config (repeatable, applied in order)
 *       --set KEY=VALUE    a setting (repeatable, after the files)
 *   -j, --jobs N           threads (default: all CPUs)
 *       --json             machine-readable output
 *       --print-config     print every setting with its value and origin, then exit
 *   -q / -v (-vv)          log level warn / debug (trace)
 *   -h, --help, --version
 *
 *   ppd_tool t;
 *   ppd_tool_init(&t, "graph-build", argc);
 *   struct option longopts[] = {PPD_TOOL_LONGOPTS, {"output", required_argument, 0, 'o'}, {0}};
 *   while ((opt = getopt_long(argc, argv, PPD_TOOL_SHORTOPTS "o:", longopts, NULL)) != -1) {
 *       if (ppd_tool_option(&t, opt, optarg)) continue;
 *       ...the tool's own options; default: t.usage_error = 2
 *   }
 *   int rc = ppd_tool_options_done(&t, argc, argv, optind, usage); // -1: go on, else exit(rc)
 *   ppd_config *cfg;
 *   if (ppd_tool_config(&t, &cfg)) exit(t.exit_code);
 */
#ifndef PPDOCK_TOOL_H
#define PPDOCK_TOOL_H

#include <getopt.h>
#include <signal.h>
#include <stdio.h>

#include "ppdock/config.h"
#include "ppdock/device.h"
#include "ppdock/status.h"

enum { PPD_OPT_SET = 0x1000, PPD_OPT_JSON, PPD_OPT_PRINT_CONFIG, PPD_OPT_VERSION };

#define PPD_TOOL_SHORTOPTS "c:j:qvh"
#define PPD_TOOL_LONGOPTS                                                                          \
    {"config", required_argument, 0, 'c'}, {"set", required_argument, 0, PPD_OPT_SET},             \
        {"jobs", required_argument, 0, 'j'}, {"json", no_argument, 0, PPD_OPT_JSON},               \
        {"print-config", no_argument, 0, PPD_OPT_PRINT_CONFIG}, {"quiet", no_argument, 0, 'q'},    \
        {"verbose", no_argument, 0, 'v'}, {"help", no_argument, 0, 'h'}, {                         \
        "version", no_argument, 0, PPD_OPT_VERSION                                                 \
    }

typedef struct {
    const char *prog;
    char **configs, **sets; /* owned copies */
    int n_configs, n_sets, cap;
    int jobs, json, print_config, verbosity;
    int help, version;
    int usage_error; /* 1: message printed; 2: also print the usage text */
    int exit_code;   /* set by ppd_tool_config on failure */
} ppd_tool;

ppd_status ppd_tool_init(ppd_tool *t, const char *prog, int argc);
/* Handle one of the shared options; 0 if `opt` is not one of them. */
int ppd_tool_option(ppd_tool *t, int opt, const char *arg);
/* Queue "key=value" as if given with --set (for tool-specific spellings of settings). */
ppd_status ppd_tool_add_set(ppd_tool *t, const char *key, const char *value);
/* A tool's options that spell a setting (--gpu N for device.index=N): when `opt` is one of
 * the n entries of map, queue its setting and return 1; else 0. */
typedef struct {
    int opt;
    const char *key;
} ppd_tool_setting_opt;
int ppd_tool_setting_option(ppd_tool *t, int opt, const char *arg, const ppd_tool_setting_opt *map,
                            size_t n);
/* After the getopt loop: set the log level, refuse stray arguments, and answer --help,
 * --version and usage errors. Returns -1 to go on, else the exit status to return. */
int ppd_tool_options_done(ppd_tool *t, int argc, char **argv, int optind_, void (*usage)(FILE *f));
/* The config of -c and --set. On an error it prints it, sets t->exit_code and returns it;
 * with --print-config it prints the config and returns PPD_ERR_USAGE with exit_code 0. */
ppd_status ppd_tool_config(ppd_tool *t, ppd_config **out);
void ppd_tool_free(ppd_tool *t);

/* device.engine (`engine`: cpu | cuda | auto) of `tool`: *use_gpu = 1, with device `index` made
 * current and described in *info, when the GPU runs. `select` is ppd_device_select in a build
 * with CUDA, NULL without. auto takes the GPU when there is one and falls back to the CPU
 * otherwise (a debug message says why). Errors: engine cuda in a build without CUDA
 * (PPD_ERR_USAGE, saying how to build with it) or with no usable GPU (select's error); a
 * device.index that does not exist (PPD_ERR_USAGE), with auto too. */
ppd_status ppd_tool_pick_device(const char *tool, const char *engine,
                                ppd_status (*select)(int index, ppd_device_info *info), int index,
                                ppd_device_info *info, int *use_gpu);

/* SIGTERM (SLURM's warning before a time limit or preemption), SIGINT and SIGUSR1 set the flag
 * returned instead of ending the process: the tool stops at its next unit of work (a training
 * step, an embedded sequence, a built complex) and keeps what it did. Another signal within a
 * second of the first is taken for the same stop delivered twice (SLURM signals every process
 * of a job and a batch script may pass the signal on); one after that ends the process at once
 * (the signal's default action). */
volatile sig_atomic_t *ppd_tool_catch_stop_signals(void);

#endif
