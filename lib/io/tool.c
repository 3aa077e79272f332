/* The options every configurable tool shares (see ppdock/tool.h). */
#include "ppdock/tool.h"
#include "ppdock/cli.h"
#include "ppdock/log.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

ppd_status ppd_tool_init(ppd_tool *t, const char *prog, int argc) {
    memset(t, 0, sizeof *t);
    t->prog = prog;
    t->jobs = ppd_cpu_count();
    t->verbosity = PPD_LOG_INFO;
    t->cap = argc + 16;
    t->configs = calloc((size_t)t->cap, sizeof *t->configs);
    t->sets = calloc((size_t)t->cap, sizeof *t->sets);
    ppd_log_set_prog(prog);
    if (!t->configs || !t->sets) return ppd_fail(PPD_ERR_NOMEM, "out of memory");
    return PPD_OK;
}

static ppd_status push(ppd_tool *t, char **list, int *n, const char *s) {
    if (*n >= t->cap) return ppd_fail(PPD_ERR_USAGE, "too many options");
    if (!(list[*n] = strdup(s))) return ppd_fail(PPD_ERR_NOMEM, "out of memory");
    (*n)++;
    return PPD_OK;
}

ppd_status ppd_tool_add_set(ppd_tool *t, const char *key, const char *value) {
    char buf[4096];
    snprintf(buf, sizeof buf, "%s=%s", key, value);
    return push(t, t->sets, &t->n_sets, buf);
}

int ppd_tool_setting_option(ppd_tool *t, int opt, const char *arg, const ppd_tool_setting_opt *map,
                            size_t n) {
    for (size_t k = 0; k < n; k++)
        if (map[k].opt == opt) {
            if (ppd_tool_add_set(t, map[k].key, arg)) t->usage_error = 1;
            return 1;
        }
    return 0;
}

int ppd_tool_option(ppd_tool *t, int opt, const char *arg) {
    switch (opt) {
    case 'c':
        if (push(t, t->configs, &t->n_configs, arg)) t->usage_error = 1;
        return 1;
    case PPD_OPT_SET:
        if (push(t, t->sets, &t->n_sets, arg)) t->usage_error = 1;
        return 1;
    case 'j':
        if ((t->jobs = (int)ppd_parse_count(arg)) < 1) {
            ppd_error("-j %s: give a positive number of threads", arg);
            t->usage_error = 1;
        }
        return 1;
    case PPD_OPT_JSON:
        t->json = 1;
        return 1;
    case PPD_OPT_PRINT_CONFIG:
        t->print_config = 1;
        return 1;
    case 'q':
        t->verbosity = PPD_LOG_WARN;
        return 1;
    case 'v':
        t->verbosity = t->verbosity < PPD_LOG_DEBUG ? PPD_LOG_DEBUG : PPD_LOG_TRACE;
        return 1;
    case 'h':
        t->help = 1;
        return 1;
    case PPD_OPT_VERSION:
        t->version = 1;
        return 1;
    case '?':
        t->usage_error = 2;
        return 1; /* getopt printed the message */
    default:
        return 0;
    }
}

int ppd_tool_options_done(ppd_tool *t, int argc, char **argv, int optind_, void (*usage)(FILE *f)) {
    ppd_log_set_level((ppd_log_level)t->verbosity);
    if (!t->usage_error && !t->help && !t->version && optind_ < argc) {
        ppd_error("unexpected argument '%s' (see --help)", argv[optind_]);
        t->usage_error = 1;
    }
    if (t->usage_error == 2) usage(stderr);
    if (t->usage_error) return PPD_EXIT_USAGE;
    if (t->help) {
        usage(stdout);
        return PPD_EXIT_OK;
    }
    if (t->version) {
        printf("%s %s\n", t->prog, PPD_VERSION);
        return PPD_EXIT_OK;
    }
    return -1;
}

ppd_status ppd_tool_config(ppd_tool *t, ppd_config **out) {
    *out = NULL;
    ppd_config *cfg = NULL;
    ppd_status st = ppd_config_new(&cfg);
    for (int i = 0; !st && i < t->n_configs; i++) st = ppd_config_load(cfg, t->configs[i]);
    for (int i = 0; !st && i < t->n_sets; i++) st = ppd_config_set(cfg, t->sets[i]);
    if (st) {
        ppd_error("%s", ppd_errmsg());
        t->exit_code = ppd_exit_code(st);
        ppd_config_free(cfg);
        return st;
    }
    if (t->print_config) {
        ppd_config_write_yaml(cfg, stdout);
        ppd_config_free(cfg);
        t->exit_code = PPD_EXIT_OK;
        return PPD_ERR_USAGE;
    }
    *out = cfg;
    return PPD_OK;
}

void ppd_tool_free(ppd_tool *t) {
    for (int i = 0; i < t->n_configs; i++) free(t->configs[i]);
    for (int i = 0; i < t->n_sets; i++) free(t->sets[i]);
    free(t->configs);
    free(t->sets);
    memset(t, 0, sizeof *t);
}

ppd_status ppd_tool_pick_device(const char *tool, const char *engine,
                                ppd_status (*select)(int index, ppd_device_info *info), int index,
                                ppd_device_info *info, int *use_gpu) {
    *use_gpu = 0;
    if (!strcmp(engine, "cpu")) return PPD_OK;
    int want = !strcmp(engine, "cuda");
    if (!select) {
        if (want)
            return ppd_fail(PPD_ERR_USAGE,
                            "device.engine=cuda: this %s was built without CUDA (build where nvcc "
                            "and the CUDA toolkit are installed; `make` prints whether CUDA is "
                            "found)",
                            tool);
        return PPD_OK;
    }
    ppd_status st = select(index, info);
    if (st == PPD_ERR_USAGE || (st && want))
        return ppd_fail_ctx(st, "device.engine=%s, device.index=%d", engine, index);
    if (st) {
        ppd_debug("device.engine=auto: %s; %s runs on the CPU", ppd_errmsg(), tool);
        return PPD_OK;
    }
    *use_gpu = 1;
    return PPD_OK;
}

static volatile sig_atomic_t stop_requested;
static struct timespec first_stop;

/* The first signal asks for a stop; one more within a second is the same stop delivered twice
 * (at scancel or the time limit SLURM signals every process of the job, and the batch script
 * passes it on too); a later one ends the process at once. */
static void on_stop_signal(int sig) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now); /* async-signal-safe (POSIX) */
    if (!stop_requested) {
        first_stop = now;
        stop_requested = 1;
        return;
    }
    if ((now.tv_sec - first_stop.tv_sec) * 1000000000L + (now.tv_nsec - first_stop.tv_nsec) <
        1000000000L)
        return;
    signal(sig, SIG_DFL);
    raise(sig);
}

volatile sig_atomic_t *ppd_tool_catch_stop_signals(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sa.sa_flags = SA_RESTART; /* reads and writes go on; the work loop looks at the flag */
    sigemptyset(&sa.sa_mask); /* one handler at a time: it reads and writes first_stop */
    sigaddset(&sa.sa_mask, SIGTERM);
    sigaddset(&sa.sa_mask, SIGINT);
    sigaddset(&sa.sa_mask, SIGUSR1);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);
    return &stop_requested;
}
