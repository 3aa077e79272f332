#!/usr/bin/env bash
# The one script a GPU session runs on a lent machine: shows the GPU, builds everything with CUDA,
# runs the CPU tests (`make test`) and every CUDA op against its CPU twin (`make test-gpu`).
# Each step's output goes to the terminal and to "$OUT/<step>.log"; "$OUT/summary.txt" lists
# each step's exit status and the tests' "N passed, N failed" lines.
#
#   OUT=/path/to/out scripts/gpu-check.sh        (default OUT: ./gpu-out)
#
# Environment: OUT; JOBS (make -j, default 16); BUILD/BIN are passed to make if set;
# CUDA_ARCH overrides the architecture, which otherwise comes from nvidia-smi's compute_cap.
# Exit status: 0 when every step passed, 3 when there is no GPU (nvidia-smi fails or the GPU
# test says so), 1 otherwise.
set -u
cd "$(dirname "$0")/.." || exit 2
OUT=${OUT:-./gpu-out}
JOBS=${JOBS:-16}
mkdir -p "$OUT" || exit 2
summary="$OUT/summary.txt"
: >"$summary"
failed=0
no_gpu=0

say() { printf '%s\n' "$*" | tee -a "$summary"; }

# step NAME COMMAND...: run it, output to the terminal and $OUT/NAME.log; record the status.
step() {
    local name=$1 rc
    shift
    say "== $name: $*"
    "$@" 2>&1 | tee "$OUT/$name.log"
    rc=${PIPESTATUS[0]}
    grep -E '^[0-9]+ passed, [0-9]+ failed$|^FAIL ' "$OUT/$name.log" >>"$summary"
    say "== $name: exit $rc"
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
step nvcc nvcc --version || failed=1

arch=${CUDA_ARCH:-}
if [ -z "$arch" ] && command -v nvidia-smi >/dev/null 2>&1; then
    arch=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d ' .')
fi
make_vars=()
[ -n "$arch" ] && make_vars+=("CUDA_ARCH=$arch")
[ -n "${BUILD:-}" ] && make_vars+=("BUILD=$BUILD")
[ -n "${BIN:-}" ] && make_vars+=("BIN=$BIN")

if step build make -j"$JOBS" "${make_vars[@]}" all tests; then
    step test make "${make_vars[@]}" test || failed=1
    step test-gpu make "${make_vars[@]}" test-gpu
    rc=$?
    if [ "$rc" -ne 0 ]; then
        failed=1
        grep -q 'no CUDA device' "$OUT/test-gpu.log" && no_gpu=1
    fi
else
    failed=1
    say "build failed: tests not run"
fi

if [ "$no_gpu" -eq 1 ]; then
    say "gpu-check: NO GPU on this machine"
    exit 3
fi
if [ "$failed" -ne 0 ]; then
    say "gpu-check: FAILED (see $OUT/*.log)"
    exit 1
fi
say "gpu-check: all steps passed"
