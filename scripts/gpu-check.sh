#!/usr/bin/env bash
# The one script a GPU session runs on a lent machine: shows the GPU, builds everything with CUDA,
# runs the CPU tests (`make test`), every CUDA op against its CPU twin (`make test-gpu`), then the
# GPU benchmarks: the ESM-2 650M shape (random weights) on the 492 DB5.5 chains in fp32, tf32 and
# bf16 (tokens/s, the planner's largest batch for 20 and 70 GB, device memory planned and used,
# the error against the CPU engine on the first chains), esm-embed end to end in bf16, and score
# model training at the released size (batch 8 and 16, an epoch of 10,000 synthetic complexes).
# Each step's output goes to the terminal and to "$OUT/<step>.log"; "$OUT/summary.txt" lists
# each step's exit status, the tests' "N passed, N failed" lines and the benchmark lines; the
# short table comes last. Sized for under 8 minutes on one H100.
#
#   OUT=/path/to/out scripts/gpu-check.sh        (default OUT: ./gpu-out)
#
# Environment: OUT; JOBS (make -j, default 16); BUILD/BIN are passed to make if set;
# CUDA_ARCH overrides the architecture, which otherwise comes from nvidia-smi's compute_cap;
# EMU=1 also builds and runs the CPU emulation of CUDA (off here: the GPU runs the real thing);
# STEP_TIMEOUT: seconds one step may run (default 600); GPU_TEST_STEP_TIMEOUT: seconds one step
# of the GPU test may run (default 60); SANITIZER: a compute-sanitizer (default: the one on PATH;
# gpu-remote.sh names the pack's); SANITIZE_UNTIL: seconds into the check after which no
# sanitizer step starts (default 430); RACE_STEPS, MEM_STEPS: the GPU test's steps racecheck and
# memcheck run (memcheck: all by default);
# BASELINE: a directory with bin/ and build/tests/ of another build (scripts/gpu-pack.sh
# BASELINE=<rev> packs one as gpu-pack/baseline): its ESM bf16 and batch-16 training benchmarks
# run too, and an A/B table with the ratios comes last;
# PREBUILT=1: BUILD and BIN already hold the programs (scripts/gpu-pack.sh, for a GPU machine
# without our build dependencies): no make, no build and no CPU `make test` (CI runs that).
# Exit status: 0 when every step passed, 3 when there is no GPU (nvidia-smi fails or the GPU
# test says so), 1 otherwise. A failed test does not stop the benchmarks (a device session is
# scarce), only a failed build does.
set -u
cd "$(dirname "$0")/.." || exit 2
OUT=${OUT:-./gpu-out}
JOBS=${JOBS:-16}
STEP_TIMEOUT=${STEP_TIMEOUT:-600}
mkdir -p "$OUT" || exit 2
summary="$OUT/summary.txt"
: >"$summary"
failed=0
no_gpu=0

say() { printf '%s\n' "$*" | tee -a "$summary"; }

# step NAME COMMAND...: run it, output to the terminal and $OUT/NAME.log; record the status
# (124 when it ran past STEP_TIMEOUT: a hang costs one step, not the device session) and its
# seconds, for sizing the next device call.
step() {
    local name=$1 rc t0=$SECONDS
    shift
    say "== $name: $*"
    if declare -F "$1" >/dev/null; then # a function of this script (timeout runs programs)
        "$@" 2>&1 | tee "$OUT/$name.log"
    else
        timeout "$STEP_TIMEOUT" "$@" 2>&1 | tee "$OUT/$name.log"
    fi
    rc=${PIPESTATUS[0]}
    grep -E '^[0-9]+ passed, [0-9]+ failed$|^FAIL ' "$OUT/$name.log" >>"$summary"
    say "== $name: exit $rc ($((SECONDS - t0)) s)"
    return "$rc"
}

say "gpu-check: $(date -u '+%Y-%m-%dT%H:%M:%SZ') on $(hostname)"
if command -v git >/dev/null 2>&1 && git rev-parse --git-dir >/dev/null 2>&1; then
    say "commit $(git rev-parse --short HEAD) ($(git status --porcelain | wc -l) changed files)"
fi

if ! step nvidia-smi nvidia-smi; then
    no_gpu=1
    failed=1
fi
step nvcc nvcc --version || [ "${PREBUILT:-0}" = 1 ] || failed=1

arch=${CUDA_ARCH:-}
if [ -z "$arch" ] && command -v nvidia-smi >/dev/null 2>&1; then
    arch=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d ' .')
fi
make_vars=()
[ -n "$arch" ] && make_vars+=("CUDA_ARCH=$arch")
[ -n "${BUILD:-}" ] && make_vars+=("BUILD=$BUILD")
[ -n "${BIN:-}" ] && make_vars+=("BIN=$BIN")
# the CPU emulation of CUDA is for machines without a GPU: here the real kernels run the same
# checks (test-gpu, and the cuda_ suites below), so make test skips it (EMU=1 keeps it)
make_vars+=("EMU=${EMU:-0}")

# build: the programs and make test (CPU), or with PREBUILT=1 a check that the pack is complete
build() {
    if [ "${PREBUILT:-0}" = 1 ]; then
        local f missing=0
        for f in "${BUILD:-build}"/tests/gpu "${BUILD:-build}"/tests/esm-bench "${BIN:-bin}"/train; do
            [ -x "$f" ] || {
                echo "gpu-check: PREBUILT=1 but $f is missing (run scripts/gpu-pack.sh)"
                missing=1
            }
        done
        ldd "${BIN:-bin}"/* "${BUILD:-build}"/tests/gpu | grep 'not found' && missing=1
        # cuBLAS is opened at run time, so ldd does not name it: the check program says why not
        if [ -x "${BUILD:-build}"/tests/cublas-load ] && ! "${BUILD:-build}"/tests/cublas-load; then
            missing=1
        fi
        return "$missing"
    fi
    make -j"$JOBS" "${make_vars[@]}" all tests
}
# suite_passed STEP: the shell suite of STEP's log reported tests and none failed (a suite whose
# tests were not defined, a wrong directory, reports none and exits 0)
suite_passed() {
    grep -q '^FAIL ' "$OUT/$1.log" && return 1
    grep -q '^PASS ' "$OUT/$1.log" && return 0
    say "gpu-check: $1 ran no test"
    return 1
}
if step build build; then
    if [ "${PREBUILT:-0}" != 1 ]; then step test make "${make_vars[@]}" test || failed=1; fi
    # make test-gpu's program; verbose: the log keeps every check's measured error (TF32's
    # against fp32 and the bf16 attention's among them)
    # each check step in a child process: a step that faults, crashes or runs past
    # GPU_TEST_STEP_TIMEOUT seconds fails alone and the steps after it still run
    step test-gpu env PPD_TEST_VERBOSE=1 PPD_TEST_GPU_STEP_TIMEOUT="${GPU_TEST_STEP_TIMEOUT:-60}" \
        "${BUILD:-build}/tests/gpu"
    rc=$?
    grep -E '^ +[a-z0-9_]*(tf32|attention_bf16)[a-z0-9_]*: ' "$OUT/test-gpu.log" >>"$summary"
    if [ "$rc" -ne 0 ]; then
        failed=1
        grep -q 'no CUDA device' "$OUT/test-gpu.log" && no_gpu=1
    fi
    # that runner on the GPU: an injected kernel fault (a real illegal address), crash and hang
    step gpu-runner env PPD_BIN="${BIN:-bin}" PPD_TESTBIN="${BUILD:-build}/tests" \
        PPD_GPU_TEST_BIN="${BUILD:-build}/tests/gpu" bash tests/tools/test_gpu_runner.sh || failed=1
    suite_passed gpu-runner || failed=1
    # esm-embed's CUDA engine on the GPU against fair-esm's goldens (the suite's cuda_engine tests,
    # which make test runs on the CPU emulation)
    step esm-embed-gpu env PPD_BIN="${BIN:-bin}" PPD_TESTBIN="${BUILD:-build}/tests" \
        PPD_EMU_BIN="${BIN:-bin}" PPD_TEST_FILTER=cuda_engine bash tests/tools/test_esm_embed.sh || failed=1
    suite_passed esm-embed-gpu || failed=1
    # train's GPU pass: the 50-step loss curve against the CPU, resume, memory reports (the
    # suite's cuda_ tests, which make test runs on the CPU emulation)
    step train-gpu env PPD_BIN="${BIN:-bin}" PPD_TESTBIN="${BUILD:-build}/tests" \
        PPD_EMU_BIN="${BIN:-bin}" PPD_TEST_FILTER=cuda_ bash tests/tools/test_train.sh || failed=1
    suite_passed train-gpu || failed=1
else
    failed=1
    say "build failed: tests not run"
fi

if [ "$no_gpu" -eq 1 ]; then
    say "gpu-check: NO GPU on this machine"
    exit 3
fi
if [ ! -x "${BUILD:-build}/tests/esm-bench" ] || [ ! -x "${BIN:-bin}/train" ]; then
    say "gpu-check: FAILED before the benchmarks could run (see $OUT/*.log)"
    exit 1
fi
# a device session is scarce: a failed test does not stop the benchmarks (their numbers are
# reported beside the failure; the exit status stays 1)
if [ "$failed" -ne 0 ]; then
    say "gpu-check: tests FAILED (see $OUT/*.log); benchmarks next all the same"
else
    say "gpu-check: all tests passed; benchmarks next"
fi

# ---- benchmarks -------------------------------------------------------------------------------
BUILD_DIR=${BUILD:-build}
BIN_DIR=${BIN:-bin}
FASTA=${ESM_FASTA:-bench/data/db5.5-chains.fasta}
SHAPE=${ESM_SHAPE:-33,1280,20}
bench_failed=0
esm_bench() { # name precision budget_gb compare profile [max_tokens: 0 = no cap]
    step "esm-$1" "$BUILD_DIR/tests/esm-bench" "$SHAPE" "$FASTA" "$2" "$3" "${6:-0}" 2 "$4" "$5" ||
        bench_failed=1
    grep -E '^ESM_(BENCH|ERROR|PROFILE) ' "$OUT/esm-$1.log" >>"$summary"
}
# base_esm PRECISION: the baseline build's ESM benchmark (profiled), right after this build's of
# the same precision, so that a drift of the GPU's clocks during the check does not land on one
# side of the A/B
base_esm() {
    [ -n "${BASELINE:-}" ] || return 0
    step "base-esm-$1" "$BASELINE/build/tests/esm-bench" "$SHAPE" "$FASTA" "$1" 20 0 2 0 1 ||
        bench_failed=1
}
# profile 1: one more run with each op timed (where the time goes: attention or GEMMs)
esm_bench fp32-20g fp32 20 4 1
esm_bench tf32-20g tf32 20 4 1
# tf32's attention is the fp32 kernel (one thread per query row), restaged since 88f9d47
base_esm tf32
esm_bench bf16-20g bf16 20 4 1
base_esm bf16
esm_bench bf16-70g bf16 70 0 0
# the batches esm-embed runs: at most 16,384 token rows each (PPD_ESM_PLAN_OPTS_DEFAULT), where
# the runs above plan without a cap; whether the cap costs tokens/s
esm_bench bf16cap16k-20g bf16 20 0 0 16384
# bf16 with the fp32 attention kernel instead of the tensor-core one: what the tensor-core
# kernel gains, and this build's bf16 numbers even if that kernel fails on the GPU
PPD_ESM_FP32_ATTENTION=1 esm_bench bf16f32att-20g bf16 20 4 1
# embed_bf16 STEP BIN: esm-embed end to end in bf16 (random 650M weights, every chain) into a
# fresh cache, removed after
embed_bf16() {
    rm -rf "$OUT/esm-cache"
    step "$1" "$2/esm-embed" --random-init "$SHAPE" --fasta "$FASTA" -o "$OUT/esm-cache" \
        --device cuda --precision bf16 --device-mem-gb 20 -j "$JOBS" --json || bench_failed=1
    rm -rf "$OUT/esm-cache"
}
embed_bf16 esm-embed-bf16 "$BIN_DIR"
[ -n "${BASELINE:-}" ] && embed_bf16 base-esm-embed-bf16 "$BASELINE/bin"
grep -E '^\{' "$OUT/esm-embed-bf16.log" >>"$summary"

# training at the released size: batch 8 and 16, and an epoch of 10,000 synthetic complexes
# (EPOCH_STEPS=150: a sample of 1,200 complexes and the epoch time it gives; 0: the whole epoch)
keep=0
[ -n "${BASELINE:-}" ] && keep=1 # the baseline trains on the same set
step train-bench env OUT="$OUT" PPD_BIN="$BIN_DIR" PPD_TESTBIN="$BUILD_DIR/tests" JOBS="$JOBS" \
    N="${TRAIN_N:-10000}" STEPS="${TRAIN_STEPS:-20}" EPOCH_STEPS="${EPOCH_STEPS:-150}" KEEP_SET=$keep \
    bash bench/train-gpu.sh ||
    bench_failed=1
grep -E '^(TRAIN_BENCH|TRAIN_PROFILE|SCORE_PLAN) ' "$OUT/train-bench.log" >>"$summary"

# A/B: training at batch 16 (with the profile) again from a baseline build (its ESM runs came
# each after this build's above), on the same GPU in the same run, for ratios that do not
# depend on the machine
if [ -n "${BASELINE:-}" ]; then
    step base-train-bench env OUT="$OUT/base" PPD_BIN="$BASELINE/bin" JOBS="$JOBS" \
        N="${TRAIN_N:-10000}" STEPS="${TRAIN_STEPS:-20}" RUNS="batch16 b16-profile" SET_FROM="$OUT/train-gpu" bash bench/train-gpu.sh ||
        bench_failed=1
    rm -rf "$OUT/train-gpu/set" "$OUT/train-gpu/graphs" "$OUT/train-gpu/esm"
fi

say ""
say "== ESM-2 650M shape, 492 DB5.5 chains (132,414 residues), one GPU"
say "precision   budget  cap    batches largest-batch  fits      planned-MiB used-MiB  driver-MiB tokens/s   error(rel to max)"
for f in "$OUT"/esm-*-*g.log; do
    [ -e "$f" ] || continue
    awk '/^ESM_BENCH /{for(i=2;i<=NF;i++){split($i,kv,"=");v[kv[1]]=kv[2]}}
         /^ESM_ERROR /{for(i=2;i<=NF;i++){split($i,kv,"=");e[kv[1]]=kv[2]}}
         END{printf "%-11s %-7s %-6s %-7s %-14s %-9s %-11s %-9s %-10s %-10s %s\n", v["precision"], v["budget_gb"]"G",
             (v["max_tokens"] + 0 > 0 ? v["max_tokens"] : "-"), v["batches"], v["largest_batch_tokens"], v["fit_tokens"], v["planned_mib"], v["used_mib"],
             v["driver_mib"], v["tokens_per_s"], (e["rel_to_max"] == "" ? "-" : e["rel_to_max"])}' "$f" | tee -a "$summary"
done
say ""
say "== ESM-2 650M shape: the stream's time per op (profiled run, all layers)"
grep -h '^ESM_PROFILE ' "$OUT"/esm-*-*g.log 2>/dev/null | sed 's/^ESM_PROFILE //' | tee -a "$summary"
# opms FILE OP...: the stream milliseconds of the ops in FILE's ESM_PROFILE line (its total
# times their shares); per op, so builds whose op lists were fused differently compare (the
# residual carries the next LayerNorm since f60e5d0: compare residual + layernorm)
opms() {
    [ -e "$1" ] || return 0
    local f=$1
    shift
    awk -v ops="$*" 'index($0, "ESM_PROFILE ") == 1 {
        for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] + 0 }
        n = split(ops, o, " "); s = 0
        for (j = 1; j <= n; j++) s += v[o[j]]
        printf "%.1f\n", v["total_ms"] * s / 100; exit }' "$f"
}
if [ -e "$OUT/esm-bf16f32att-20g.log" ]; then
    tc=$(opms "$OUT/esm-bf16-20g.log" attention) f32=$(opms "$OUT/esm-bf16f32att-20g.log" attention)
    say "bf16 attention: tensor-core kernel ${tc:-?} ms, fp32 kernel and cast ${f32:-?} ms"
fi
# json FILE KEY: a number from esm-embed's --json line
json() { [ -e "$1" ] && grep -o "\"$2\": [0-9.]*" "$1" | head -1 | grep -o '[0-9.]*$'; }
if [ -e "$OUT/esm-embed-bf16.log" ]; then
    # the host plan of a GPU run (the CUDA runtime's share is an allowance, ppdock/device.h)
    say "esm-embed bf16 host memory: predicted $(json "$OUT/esm-embed-bf16.log" predicted_peak_mb) MiB," \
        "peak RSS $(json "$OUT/esm-embed-bf16.log" peak_rss_mb) MiB"
fi
say ""
say "== score model training, released size (ns 32, nv 6, 4 layers, lm 1280), one GPU"
[ -e "$OUT/train-gpu/summary.txt" ] && tee -a "$summary" <"$OUT/train-gpu/summary.txt"
# kv FILE PREFIX KEY: KEY's value (KEY=v or KEY:v) on FILE's first line that starts with PREFIX
kv() {
    [ -e "$1" ] && awk -v p="$2" -v k="$3" 'index($0, p) == 1 {
        for (i = 2; i <= NF; i++) if (index($i, k "=") == 1 || index($i, k ":") == 1) {
            print substr($i, length(k) + 2); exit } }' "$1"
}
if [ -n "${BASELINE:-}" ]; then
    say ""
    say "== A/B: this build against the baseline ($BASELINE), the same GPU in the same run"
    ab() { # label base new
        awk -v l="$1" -v b="$2" -v n="$3" 'BEGIN {
            r = ""
            if (b + 0 > 0 && n + 0 > 0 && b !~ /%/) r = sprintf("x%.3f", n / b)
            if (b == "") b = "-"
            if (n == "") n = "-"
            printf "%-36s base %-10s new %-10s %s\n", l, b, n, r }' | tee -a "$summary"
    }
    ab "ESM-2 650M bf16 tokens/s" "$(kv "$OUT/base-esm-bf16.log" ESM_BENCH tokens_per_s)" \
        "$(kv "$OUT/esm-bf16-20g.log" ESM_BENCH tokens_per_s)"
    ab "ESM bf16 attention share" "$(kv "$OUT/base-esm-bf16.log" ESM_PROFILE attention)" \
        "$(kv "$OUT/esm-bf16-20g.log" ESM_PROFILE attention)"
    for ops in "attention" "gelu" "rope" "residual layernorm" "qkv_gemm out_gemm fc1_gemm fc2_gemm"; do
        # shellcheck disable=SC2086 # ops is a list of op names
        ab "ESM bf16 ms: $ops" "$(opms "$OUT/base-esm-bf16.log" $ops)" \
            "$(opms "$OUT/esm-bf16-20g.log" $ops)"
    done
    ab "ESM-2 650M tf32 tokens/s" "$(kv "$OUT/base-esm-tf32.log" ESM_BENCH tokens_per_s)" \
        "$(kv "$OUT/esm-tf32-20g.log" ESM_BENCH tokens_per_s)"
    ab "ESM tf32 ms: attention" "$(opms "$OUT/base-esm-tf32.log" attention)" \
        "$(opms "$OUT/esm-tf32-20g.log" attention)"
    ab "ESM bf16 attention TFLOP/s" "$(kv "$OUT/base-esm-bf16.log" ESM_PROFILE attention_tflops)" \
        "$(kv "$OUT/esm-bf16-20g.log" ESM_PROFILE attention_tflops)"
    ab "esm-embed bf16 residues/s" "$(json "$OUT/base-esm-embed-bf16.log" residues_per_s)" \
        "$(json "$OUT/esm-embed-bf16.log" residues_per_s)"
    ab "esm-embed bf16 embed seconds" "$(json "$OUT/base-esm-embed-bf16.log" embed_seconds)" \
        "$(json "$OUT/esm-embed-bf16.log" embed_seconds)"
    ab "ESM bf16 bias + GELU share" "$(kv "$OUT/base-esm-bf16.log" ESM_PROFILE gelu)" \
        "$(kv "$OUT/esm-bf16-20g.log" ESM_PROFILE gelu)"
    ab "train batch 16 steps/s" "$(kv "$OUT/base/train-gpu/batch16.line" TRAIN_BENCH steps_per_s)" \
        "$(kv "$OUT/train-gpu/batch16.line" TRAIN_BENCH steps_per_s)"
    ab "train batch 16 tensor-product share" "$(kv "$OUT/base/train-gpu/profile.line" TRAIN_PROFILE tp)" \
        "$(kv "$OUT/train-gpu/profile.line" TRAIN_PROFILE tp)"
    ab "train batch 16 conv_fc share" "$(kv "$OUT/base/train-gpu/profile.line" TRAIN_PROFILE conv_fc)" \
        "$(kv "$OUT/train-gpu/profile.line" TRAIN_PROFILE conv_fc)"
fi

# ---- compute-sanitizer: the GPU checks at the emulation's sizes under racecheck (shared-memory
# hazards: the attention's cp.async staging, the warp queues, the tensor products' staged
# weights) and memcheck (out-of-bounds and misaligned accesses), last, while time is left.
# Errors it finds fail the check (exit 9); a sanitizer that cannot run here is only noted.
SANITIZER=${SANITIZER:-$(command -v compute-sanitizer || true)}
RACE_STEPS=${RACE_STEPS:-esm_attention_bf16,esm_layers_hd64,esm_layers_hd128,esm_bias_gelu,esm_residual_layernorm,tp_layer3_ns32,tp_layer2_ns40,scatter_intra,bn_training,linear_odd,adam_clip}
SANITIZE_UNTIL=${SANITIZE_UNTIL:-430} # no sanitizer step starts later (seconds into the check)
sanitize() { # name tool [steps]
    local left=$((SANITIZE_UNTIL - SECONDS)) rc
    if [ "$left" -lt 30 ]; then
        say "== sanitize-$1: skipped, $SECONDS s into the check"
        return 0
    fi
    local only=()
    [ -n "${3:-}" ] && only=(--steps "$3")
    step "sanitize-$1" timeout "$left" "$SANITIZER" --tool "$2" --error-exitcode 9 --print-limit 20 \
        --target-processes application-only "$BUILD_DIR/tests/gpu" --no-fork --small "${only[@]}"
    rc=$?
    grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$OUT/sanitize-$1.log" |
        sed "s/^/sanitize-$1: /" >>"$summary"
    case $rc in
        0) ;;
        9)
            say "gpu-check: compute-sanitizer $2 found errors (see $OUT/sanitize-$1.log)"
            failed=1
            ;;
        *) say "gpu-check: compute-sanitizer $2 exited $rc (no sanitizer error counted; see the log)" ;;
    esac
}
say ""
if [ -n "$SANITIZER" ] && [ -x "$SANITIZER" ]; then
    say "== compute-sanitizer ($SANITIZER)"
    sanitize race racecheck "$RACE_STEPS"
    sanitize mem memcheck "${MEM_STEPS:-}"
else
    say "== compute-sanitizer: none here (scripts/gpu-pack.sh packs one): not run"
fi

if [ "$bench_failed" -ne 0 ] || [ "$failed" -ne 0 ]; then
    [ "$failed" -ne 0 ] && say "gpu-check: tests FAILED (see $OUT/*.log and the FAIL lines above)"
    [ "$bench_failed" -ne 0 ] && say "gpu-check: a benchmark FAILED (see $OUT/*.log)"
    exit 1
fi
say "gpu-check: all steps passed"
