#!/usr/bin/env bash
# GPU training benchmark (scripts/gpu-check.sh runs it on a lent GPU) — the score model at the
# released size (ns 32, nv 6, 4 layers, lm_embed_dim 1280, random weights) trained with
# `train --device cuda` on a synthetic set of N complexes (default 10,000): new ids, each a
# symlink to one of the four bound db5-mini complexes in turn (1R0R, 1HIA, 1R8S, 1FC2: 325, 278,
# 347, 249 residues), its graph cache (graph-build) and an ESM-shaped cache of random 1280-wide
# embeddings (tests/helpers/esm-random).
#   1. batch 8 and batch 16: STEPS optimizer steps each; steps/s and complexes/s over the steps
#      after the first (the first pays cuBLAS's start-up), the device memory planned and used;
#      batch 16 again with TF32 GEMMs (--precision tf32) for their speed-up;
#   2. the epoch: EPOCH_STEPS steps of batch 8 (0: the whole epoch, N/8 steps), its complexes/s
#      and the epoch time it gives for N complexes.
# One line per run, "TRAIN_BENCH key=value ...", then a table. Numbers only, not a test. Where the
# step's time goes (means over the steps after the first, metrics.jsonl): step ms; gpu ms, the
# stream's time in the step's kernels (CUDA events: gpu ms / step ms is the GPU's utilisation);
# prep ms, the host noising, planning and staging passes (overlapped when prepared ahead); wait
# ms, the host blocked on the GPU; read ms, the step waiting for its batch (0 when read ahead);
# waited, the passes whose input upload had to wait for the pass before (0: all overlapped);
# host MB, train's peak RSS (the CUDA context and cuBLAS included).
# TRAIN_PROFILE: the share of each kind of op in the GPU's time of a batch-16 step (--profile).
#   OUT=dir N=10000 STEPS=30 EPOCH_STEPS=0 bench/train-gpu.sh
# MODEL=demo runs config/demo.yaml's small model instead (to try the script on the CPU emulation:
# PPD_BIN=a directory with graph-build and build/emu/bin/train).
# RUNS: the runs to make (default "batch8 batch16 b16-tf32 b16-profile epoch"); PROFILE_STEPS:
# the profiled run's steps (default 10); KEEP_SET=1 keeps
# the synthetic set's graph and ESM caches; SET_FROM=DIR trains on a kept set (DIR/graphs,
# DIR/esm) instead of making one: scripts/gpu-check.sh's A/B against a baseline build.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${PPD_BIN:-bin}
TESTBIN=${PPD_TESTBIN:-build/tests}
OUT=${OUT:-bench-out}/train-gpu
N=${N:-10000}
STEPS=${STEPS:-30}
EPOCH_STEPS=${EPOCH_STEPS:-0}
JOBS=${JOBS:-$(nproc)}
RUNS=${RUNS:-batch8 batch16 b16-tf32 b16-profile epoch}
rm -rf "$OUT"
mkdir -p "$OUT"
GRAPHS=$OUT/graphs ESMC=$OUT/esm
if [ -n "${SET_FROM:-}" ]; then
    GRAPHS=$SET_FROM/graphs ESMC=$SET_FROM/esm
else
    mkdir -p "$OUT/set/structures"
    mini=$(cd tests/data/db5-mini/structures && pwd)
    ids=(1R0R 1HIA 1R8S 1FC2)
    printf 'path,split\n' >"$OUT/set/splits.csv"
    for i in $(seq 0 $((N - 1))); do
        c=$(printf 'S%05d' "$i") src=${ids[$((i % 4))]}
        ln -s "$mini/${src}_r_b.pdb.gz" "$OUT/set/structures/${c}_r_b.pdb.gz"
        ln -s "$mini/${src}_l_b.pdb.gz" "$OUT/set/structures/${c}_l_b.pdb.gz"
        echo "$c,train" >>"$OUT/set/splits.csv"
    done
    "$BIN/graph-build" -c config/demo.yaml --set "data.data_path=$OUT/set" \
        --set "data.data_file=$OUT/set/splits.csv" -j "$JOBS" -q -o "$GRAPHS"
    "$TESTBIN/esm-random" "$GRAPHS" "$ESMC" 1280 2>/dev/null
    # the device memory plan of batch 8 and 16 (bound poses at t = 0.5, every pair a cross edge)
    "$TESTBIN/score-plan" "$GRAPHS" 8 | tee "$OUT/plan8.line"
    "$TESTBIN/score-plan" "$GRAPHS" 16 | tee "$OUT/plan16.line"
fi
released=(--set model.ns=32 --set model.nv=6 --set model.num_conv_layers=4
    --set model.lm_embed_dim=1280 --set model.dist_embed_dim=32 --set model.cross_dist_embed_dim=32
    --set train.epochs=1 --set train.checkpoint_steps=0)
if [ "${MODEL:-released}" = demo ]; then
    released=(--set model.lm_embed_dim=1280 --set train.epochs=1 --set train.checkpoint_steps=0)
fi

# run NAME BATCH STEPS [ARGS...]: one training run on the GPU (fp32 GEMMs unless ARGS say
# otherwise); prints its TRAIN_BENCH line
run() {
    local name=$1 batch=$2 steps=$3 max=()
    shift 3
    case " $RUNS " in *" $name "*) ;; *) return 0 ;; esac
    [ "$steps" -gt 0 ] && max=(--max-steps "$steps")
    "$BIN/train" -c config/demo.yaml "${released[@]}" --set train.batch_size="$batch" \
        -g "$GRAPHS" -e "$ESMC" -o "$OUT/run-$name" -j "$JOBS" --device cuda "${max[@]}" \
        "$@" -q --json >"$OUT/$name.json"
    # the reservation (fixed part + pass arena) and what the driver counted for it
    # and how many passes' uploads had to wait for the pass before (0 when the copy stream
    # overlaps them all)
    local reserved measured waited rss
    reserved=$(grep -o '"device_reserved_mb": [0-9.]*' "$OUT/$name.json" | awk '{print $2}')
    measured=$(grep -o '"device_measured_mb": [0-9.]*' "$OUT/$name.json" | awk '{print $2}')
    waited=$(grep -o '"device_uploads_waited": [0-9]*' "$OUT/$name.json" | awk '{print $2}')
    # the host's peak RSS (the CUDA context and cuBLAS included, which no host plan counts)
    rss=$(grep -o '"peak_rss_mb": [0-9.]*' "$OUT/$name.json" | tail -1 | awk '{print $2}')
    awk -v name="$name" -v batch="$batch" -v n="$N" -v res="$reserved" -v mea="$measured" \
        -v waited="$waited" -v rss="$rss" '
        /"kind": "step"/ {
            match($0, /"seconds": [0-9.e+-]*/); s = substr($0, RSTART + 11, RLENGTH - 11)
            match($0, /"complexes": [0-9]*/); c = substr($0, RSTART + 13, RLENGTH - 13)
            match($0, /"device_peak_mb": [0-9.]*/); p = substr($0, RSTART + 18, RLENGTH - 18)
            match($0, /"device_planned_mb": [0-9.]*/); q = substr($0, RSTART + 21, RLENGTH - 21)
            match($0, /"prep_ms": [0-9.]*/); h = substr($0, RSTART + 11, RLENGTH - 11)
            match($0, /"device_wait_ms": [0-9.]*/); w = substr($0, RSTART + 18, RLENGTH - 18)
            match($0, /"batch_wait_ms": [0-9.]*/); r = substr($0, RSTART + 17, RLENGTH - 17)
            match($0, /"device_busy_ms": [0-9.]*/); g = substr($0, RSTART + 18, RLENGTH - 18)
            steps++
            if (steps > 1) { secs += s; cx += c; prep += h; wait += w; rd += r; busy += g }
            if (p + 0 > peak) peak = p + 0
            if (q + 0 > planned) planned = q + 0
        }
        END {
            cps = secs > 0 ? cx / secs : 0
            printf "TRAIN_BENCH run=%s batch=%d steps=%d steps_per_s=%.3f complexes_per_s=%.2f " \
                   "device_planned_mb=%.0f device_peak_mb=%.0f reserved_mb=%.0f " \
                   "driver_counted_mb=%.0f epoch_%d_s=%.0f step_ms=%.1f prep_ms=%.1f " \
                   "device_wait_ms=%.1f batch_wait_ms=%.1f gpu_busy_ms=%.1f " \
                   "uploads_waited=%d host_rss_mb=%.0f\n", name, batch, steps,
                   (steps > 1 ? (steps - 1) / secs : 0), cps, planned, peak, res, mea, n,
                   (cps > 0 ? n / cps : 0), (steps > 1 ? 1e3 * secs / (steps - 1) : 0),
                   (steps > 1 ? prep / (steps - 1) : 0), (steps > 1 ? wait / (steps - 1) : 0),
                   (steps > 1 ? rd / (steps - 1) : 0), (steps > 1 ? busy / (steps - 1) : 0),
                   waited, rss
        }' "$OUT/run-$name/metrics.jsonl" | tee "$OUT/$name.line"
}
run batch8 8 "$STEPS"
run batch16 16 "$STEPS"
run b16-tf32 16 "$STEPS" --precision tf32
# where a batch-16 step's GPU time goes: each kind of op's share of the stream's time (CUDA
# events between them, --profile), over PROFILE_STEPS steps (default 10)
run b16-profile 16 "${PROFILE_STEPS:-10}" --profile >/dev/null
if [ -e "$OUT/b16-profile.json" ]; then
    psteps=$(grep -o '"steps": [0-9]*' "$OUT/b16-profile.json" | awk '{print $2}')
    grep -o '"device_profile_ms": {[^}]*}' "$OUT/b16-profile.json" | tr -d '{}",' | awk -v steps="$psteps" '{
            for (i = 2; i < NF; i += 2) { name[i] = $i; ms[i] = $(i + 1); total += $(i + 1) }
            printf "TRAIN_PROFILE batch=16 steps=%d total_ms=%.1f", steps, total
            for (i = 2; i < NF; i += 2) printf " %s%.1f%%", name[i], (total > 0 ? 100 * ms[i] / total : 0)
            printf "\n" }' | tee "$OUT/profile.line"
fi
run epoch 8 "$EPOCH_STEPS"
printf '\n%-8s %6s %7s %9s %12s %12s %10s %12s %10s %14s %8s %8s %8s %8s %8s %7s %8s\n' run \
    batch steps "steps/s" "complexes/s" "planned MB" "peak MB" "reserved MB" "driver MB" \
    "epoch of $N" "step ms" "gpu ms" "prep ms" "wait ms" "read ms" "waited" "host MB" |
    tee "$OUT/summary.txt"
for f in "$OUT"/batch8.line "$OUT"/batch16.line "$OUT"/b16-tf32.line "$OUT"/epoch.line; do
    [ -e "$f" ] || continue
    awk '{for(i=2;i<=NF;i++){split($i,kv,"=");v[kv[1]]=kv[2]}
          for(k in v) if (k ~ /^epoch_/) e = v[k]
          printf "%-8s %6s %7s %9s %12s %12s %10s %12s %10s %13ss %8s %8s %8s %8s %8s %7s %8s\n",
                 v["run"], v["batch"], v["steps"], v["steps_per_s"], v["complexes_per_s"],
                 v["device_planned_mb"], v["device_peak_mb"], v["reserved_mb"],
                 v["driver_counted_mb"], e, v["step_ms"], v["gpu_busy_ms"], v["prep_ms"],
                 v["device_wait_ms"], v["batch_wait_ms"], v["uploads_waited"], v["host_rss_mb"]}' \
        "$f" | tee -a "$OUT/summary.txt"
done
[ -e "$OUT/profile.line" ] &&
    sed 's/^TRAIN_PROFILE /\nGPU time per kind of op, batch 16: /' "$OUT/profile.line" | tee -a "$OUT/summary.txt"
[ "${KEEP_SET:-0}" = 1 ] || rm -rf "$OUT/set" "$OUT/esm" "$OUT/graphs"
