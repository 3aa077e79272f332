/* tests/gpu/gpu_steps.c — the GPU checks as named steps, run in a child process that a parent
 * restarts past a step that killed it.
 *
 * Why: a device session is a few minutes, once. A kernel that faults on the real GPU (an illegal
 * or misaligned address) leaves the CUDA context dead, so in one process every check after it
 * would fail too and say nothing; a kernel that hangs would eat the whole session. The parent
 * never touches CUDA: it forks a child that runs the steps from a given one on, and reads on a
 * pipe which step the child is in and its counts. When the child reports a lost context, dies,
 * or spends more than the step timeout in one step (or before its first), the parent reports
 * that step as failed (a hung child is killed, which ends its kernels) and forks a new child from
 * the next step. The last line is the sum over the children: "N passed, N failed".
 *
 * Pipe lines from the child: "B <index> <name>" a step begins; "C <passed> <failed>" the child's
 * counts after each PASS or FAIL line; "E <index>" the step ended; "D" the child ran its last
 * step; "L" the context was lost in the step (the child exits after it).
 *
 * Environment: PPD_TEST_GPU_STEP_TIMEOUT (seconds one step may run, default 600; 0 none);
 * PPD_TEST_GPU_FAULT=<step> and PPD_TEST_GPU_FAULT_KIND=fault|crash|hang (default fault): after
 * that step (or as a child starts: "start"), launch a kernel on an unmapped address, abort, or
 * hang, so that the runner's tests (tests/tools/test_gpu_runner.sh) can check each way a step
 * can die, on the emulation and on a GPU. */
#include <cuda_runtime_api.h>

#include "ppdock/nn_cuda.h"

#include "gpu_test.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int gpu_small;

/* ---- the child's side ---------------------------------------------------------------------- */

static int step_index;         /* steps seen so far in this child (1-based index of the current) */
static int steps_from = 1;     /* the first step this child runs */
static const char *steps_only; /* --steps: comma-separated names, or NULL for all */
static int pipe_fd = -1;

/* The next name of a comma-separated list at *p: its start, its length in *len, *p moved past
 * it; NULL at the end. */
static const char *next_listed(const char **p, int *len) {
    if (!*p || !**p) return NULL;
    const char *start = *p, *end = strchr(start, ',');
    *len = end ? (int)(end - start) : (int)strlen(start);
    *p = end ? end + 1 : start + *len;
    return start;
}

static int same_name(const char *name, const char *item, int len) {
    return (int)strlen(name) == len && strncmp(name, item, (size_t)len) == 0;
}

static int listed(const char *name) {
    if (!steps_only) return 1;
    const char *p = steps_only, *item;
    int len;
    while ((item = next_listed(&p, &len)))
        if (same_name(name, item, len)) return 1;
    return 0;
}

/* every step's name, for the check that --steps names only steps that exist */
enum { MAX_STEPS = 256 };
static const char *step_names[MAX_STEPS];

int gpu_steps_first(void) {
    return steps_from == 1;
}

void gpu_steps_counted(void) {
    if (pipe_fd >= 0) dprintf(pipe_fd, "C %d %d\n", npass, nfail);
}

int step_begin(const char *name) {
    if (step_index < MAX_STEPS) step_names[step_index] = name;
    step_index++;
    if (step_index < steps_from || !listed(name)) return 0;
    printf("-- step %d %s\n", step_index, name);
    fflush(stdout);
    if (pipe_fd >= 0) dprintf(pipe_fd, "B %d %s\n", step_index, name);
    return 1;
}

/* FAIL for each name of --steps that no step has (a typo would otherwise run nothing and pass) */
static void check_listed_names(void) {
    const char *p = steps_only, *item;
    int len;
    while ((item = next_listed(&p, &len))) {
        int found = 0;
        for (int i = 0; i < step_index && i < MAX_STEPS && !found; i++)
            found = same_name(step_names[i], item, len);
        if (!found)
            report("gpu_steps_option", 0, "--steps names '%.*s', which no step has", len, item);
    }
}

/* A kernel that faults, a crash or a hang, after the step named by PPD_TEST_GPU_FAULT. */
static void inject_fault(const char *name) {
    const char *at = getenv("PPD_TEST_GPU_FAULT");
    if (!at || strcmp(at, name) != 0) return;
    const char *kind = getenv("PPD_TEST_GPU_FAULT_KIND");
    if (kind && strcmp(kind, "crash") == 0) abort();
    if (kind && strcmp(kind, "hang") == 0)
        for (;;) pause();
    /* an address no allocation has (page 1 of the address space): the kernel faults on a GPU;
     * the emulation refuses the launch the same way, and both leave the context dead */
    float *bad = (float *)(uintptr_t)4096;
    ppd_cuda_time_embedding_forward(bad, bad, 1024, NULL);
}

void step_end(const char *name) {
    inject_fault(name);
    /* An error still pending after the step: one that a synchronisation clears was left behind by
     * the check (reported, the device goes on); one that stays is a dead context. */
    cudaError_t e = cudaDeviceSynchronize();
    if (e == cudaSuccess) e = cudaGetLastError();
    if (e != cudaSuccess) {
        cudaGetLastError();
        cudaError_t again = cudaDeviceSynchronize();
        if (again == cudaSuccess) again = cudaGetLastError();
        char step[160];
        snprintf(step, sizeof step, "gpu_step_%s", name);
        if (again == cudaSuccess) {
            report(step, 0, "the step left a CUDA error pending: %s", cudaGetErrorString(e));
        } else {
            report(step, 0, "the CUDA context was lost: %s; %s", cudaGetErrorString(again),
                   pipe_fd < 0 ? "the steps after it are not run (--no-fork)"
                               : "the steps after it run in a new process");
            if (pipe_fd < 0) { /* --no-fork: nothing more can run */
                printf("%d passed, %d failed\n", npass, nfail);
                fflush(stdout);
                _exit(1);
            }
            dprintf(pipe_fd, "L\n");
            fflush(stdout);
            _exit(4);
        }
    }
    fflush(stdout);
    if (pipe_fd >= 0) dprintf(pipe_fd, "E %d\n", step_index);
}

/* ---- the parent's side --------------------------------------------------------------------- */

typedef struct {
    int begun, ended, lost, done; /* the last B and E indices, L seen, D seen */
    int passed, failed;           /* the child's counts at its last C line */
    char name[128];               /* the step of the last B line */
} child_state;

/* Apply one line of the child's pipe. */
static void child_line(child_state *c, const char *line) {
    int i, p, f;
    if (sscanf(line, "B %d %127s", &i, c->name) == 2)
        c->begun = i;
    else if (sscanf(line, "C %d %d", &p, &f) == 2)
        c->passed = p, c->failed = f;
    else if (sscanf(line, "E %d", &i) == 1)
        c->ended = i;
    else if (line[0] == 'D')
        c->done = 1;
    else if (line[0] == 'L')
        c->lost = 1;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Run a child from step `from`; its state in *c; returns its wait status, or -1 when it was
 * killed for spending more than timeout_s seconds in one step (or before its first, or between
 * two). */
static int run_child(int from, double timeout_s, int (*run_checks)(void), child_state *c) {
    int fds[2];
    if (pipe(fds) != 0) {
        perror("gpu: pipe");
        exit(2);
    }
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        perror("gpu: fork");
        exit(2);
    }
    if (pid == 0) {
        close(fds[0]);
        pipe_fd = fds[1];
        steps_from = from;
        inject_fault("start");
        int rc = run_checks();
        if (rc != 3) {
            check_listed_names();
            fflush(stdout);
            dprintf(pipe_fd, "D\n");
        }
        _exit(rc);
    }
    close(fds[1]);
    memset(c, 0, sizeof *c);
    char buf[4096];
    size_t have = 0;
    double step_start = now_s();
    int killed = 0;
    for (;;) {
        int wait_ms = -1;
        if (timeout_s > 0) { /* a step, or the set-up before the first, ran too long */
            double left = timeout_s - (now_s() - step_start);
            if (left <= 0) {
                kill(pid, SIGKILL);
                killed = 1;
                break;
            }
            wait_ms = (int)(left * 1000) + 1;
        }
        struct pollfd pfd = {fds[0], POLLIN, 0};
        int r = poll(&pfd, 1, wait_ms);
        if (r < 0 && errno == EINTR) continue;
        if (r == 0) continue; /* the timeout: checked at the top */
        ssize_t n = read(fds[0], buf + have, sizeof buf - 1 - have);
        if (n <= 0) break; /* the child closed the pipe: it exited */
        have += (size_t)n;
        buf[have] = 0;
        char *line = buf, *nl;
        while ((nl = strchr(line, '\n'))) {
            *nl = 0;
            int begun = c->begun, ended = c->ended;
            child_line(c, line);
            if (c->begun != begun || c->ended != ended) step_start = now_s();
            line = nl + 1;
        }
        have = strlen(line);
        memmove(buf, line, have);
    }
    close(fds[0]);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    return killed ? -1 : status;
}

/* How a child that did not finish ended, from run_child's status. */
static void describe_end(int status, double timeout_s, char *buf, size_t size) {
    if (status == -1)
        snprintf(buf, size, "no result after %.0f s: killed", timeout_s);
    else if (WIFSIGNALED(status))
        snprintf(buf, size, "the check process died of signal %d", WTERMSIG(status));
    else
        snprintf(buf, size, "the check process exited %d", WEXITSTATUS(status));
}

int gpu_steps_main(int argc, char **argv, int (*run_checks)(void)) {
    int no_fork = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--small") == 0) {
            gpu_small = 1;
        } else if (strcmp(argv[i], "--no-fork") == 0) {
            no_fork = 1;
        } else if (strcmp(argv[i], "--steps") == 0 && i + 1 < argc) {
            steps_only = argv[++i];
        } else {
            fprintf(stderr,
                    "usage: %s [--small] [--no-fork] [--steps NAME,NAME...]\n"
                    "  --small    the emulation's smaller sizes (for compute-sanitizer runs)\n"
                    "  --no-fork  run the steps in this process, stopping at a lost context (for\n"
                    "             tools that watch one process, as compute-sanitizer)\n"
                    "  --steps    run only these steps (names as in the \"-- step\" lines)\n",
                    argv[0]);
            return 2;
        }
    }
    if (no_fork) {
        int rc = run_checks();
        if (rc == 3) return 3;
        check_listed_names();
        printf("%d passed, %d failed\n", npass, nfail);
        return nfail ? 1 : 0;
    }
    const char *t = getenv("PPD_TEST_GPU_STEP_TIMEOUT");
    double timeout_s = t ? atof(t) : 600;
    int passed = 0, failed = 0, from = 1;
    for (;;) {
        child_state c;
        int status = run_child(from, timeout_s, run_checks, &c);
        passed += c.passed, failed += c.failed;
        if (c.done && WIFEXITED(status)) break;
        if (WIFEXITED(status) && WEXITSTATUS(status) == 3 && !c.begun) return 3; /* no GPU */
        char how[80];
        describe_end(status, timeout_s, how, sizeof how);
        if (c.begun == 0) { /* nothing to skip past */
            printf("FAIL gpu_checks (%s before the first step)\n", how);
            failed++;
            break;
        }
        if (!c.lost) { /* the child could not say so: the parent reports it */
            if (c.begun > c.ended)
                printf("FAIL gpu_step_%s (%s; the steps after it run in a new process)\n", c.name,
                       how);
            else
                printf("FAIL gpu_checks (%s after step %s; the steps after it run in a new "
                       "process)\n",
                       how, c.name);
            failed++;
        }
        fflush(stdout);
        from = c.begun + 1;
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
