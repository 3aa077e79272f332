#!/usr/bin/env bash
# scripts/gpu-check.sh end to end on the CPU emulation of CUDA, at toy sizes: every step, the
# A/B against a baseline (this build again), the tables and the compute-sanitizer section (a
# stand-in that runs the program), so that a mistake in the script shows here and not in a
# scarce GPU session. The numbers mean nothing; the structure of summary.txt is what to read.
#
#   make tests build/emu/bin/train && scripts/gpu-dry-run.sh      (OUT: default /tmp/gpu-dry)
#
# Needs the emulated programs (`make tests` with the CUDA headers: build/tests/gpu-emu,
# build/emu/bin/{esm-embed,train}, build/emu/tests/{esm-bench,score-plan}). About 17 minutes on
# 2 cores. Exit status: gpu-check's (0 when every step passed).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu-dry}
root=$PWD
fake=$(mktemp -d)
trap 'rm -rf "$fake"' EXIT
for f in build/tests/gpu-emu build/emu/bin/esm-embed build/emu/bin/train build/emu/tests/esm-bench \
    build/emu/tests/score-plan; do
    [ -x "$f" ] || {
        echo "gpu-dry-run: $f is missing (make tests)" >&2
        exit 2
    }
done
# a build tree as gpu-pack.sh's: the emulated programs under the GPU programs' names
mkdir -p "$fake/build/tests" "$fake/bin" "$fake/path"
for f in build/tests/*; do [ -f "$f" ] && [ -x "$f" ] && ln -s "$root/$f" "$fake/build/tests/"; done
for f in bin/*; do ln -s "$root/$f" "$fake/bin/"; done
ln -sf "$root/build/tests/gpu-emu" "$fake/build/tests/gpu"
ln -sf "$root/build/emu/tests/esm-bench" "$root/build/emu/tests/score-plan" "$fake/build/tests/"
ln -sf "$root/build/emu/bin/esm-embed" "$root/build/emu/bin/train" "$fake/bin/"
# nvidia-smi: a GPU of compute capability 9.0
cat >"$fake/path/nvidia-smi" <<'SMI'
#!/bin/sh
case "$*" in *compute_cap*) echo 9.0 ;; *) echo "dry run: the ppdock CUDA emulator, no GPU" ;; esac
SMI
# compute-sanitizer: runs the program and reports no error
cat >"$fake/path/compute-sanitizer" <<'SAN'
#!/bin/bash
while [ $# -gt 0 ]; do
    case $1 in --tool | --error-exitcode | --print-limit | --target-processes) shift 2 ;; *) break ;; esac
done
"$@"
rc=$?
echo "========= ERROR SUMMARY: 0 errors (dry run: no sanitizer)"
exit $rc
SAN
chmod +x "$fake/path/nvidia-smi" "$fake/path/compute-sanitizer"
head -8 bench/data/db5.5-chains.fasta >"$fake/chains.fasta"
rm -rf "$OUT"
env PATH="$fake/path:$PATH" OUT="$OUT" BUILD="$fake/build" BIN="$fake/bin" PREBUILT=1 \
    BASELINE="$fake" SANITIZER="$fake/path/compute-sanitizer" RACE_STEPS=adam_clip,ops_odd MEM_STEPS=esm_bias_gelu \
    SANITIZE_UNTIL=100000 GPU_TEST_STEP_TIMEOUT=600 STEP_TIMEOUT=1800 ESM_SHAPE=2,64,4 ESM_FASTA="$fake/chains.fasta" \
    TRAIN_N=32 TRAIN_STEPS=2 EPOCH_STEPS=2 PROFILE_STEPS=2 MODEL=demo JOBS=2 scripts/gpu-check.sh
