#!/usr/bin/env bash
# make bench, train part 1 — one training step (forward, loss, backward, clip, Adam) of the score
# model at the released size (ns 32, nv 6, 4 layers, lm_embed_dim 1280, random weights and
# embeddings), ppdock against DiffDock-PP's own PyTorch code on the SAME inputs and threads,
# side by side in one run: complex 2YVJ (402 + 106 residues) alone and in a batch of four
# (with 5X0T, 3DAW, 1EZU), at t = 0.2, 0.5 and 0.9. The inputs (noised poses, features, edges)
# are written once by bench/diffdock_peer_bench.py make-cases and read by both sides
# (tests/helpers/score-step for ppdock). The peer runs with glibc told to keep freed memory
# (GLIBC_TUNABLES below), its fast configuration. Numbers only, not a test.
#   DIFFDOCK_PP=/path/to/DiffDock-PP (its src/) PEER_PY=/usr/bin/python3 bench/train.sh
# Needs torch, e3nn 0.5.1 and torch_geometric for PEER_PY (tests/ref/diffdock_score_ref.py says
# how to install them). BENCH_PEER_FOUR=0 skips the peer's batches of four (~20 GB, minutes).
set -euo pipefail
cd "$(dirname "$0")/.."
TESTBIN=${PPD_TESTBIN:-build/tests}
OUT=${BENCH_OUT:-bench-out}/train
PEER_PY=${PEER_PY:-/usr/bin/python3}
THREADS=${BENCH_THREADS:-2}
TUNED=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=68719476736
mkdir -p "$OUT"
if ! "$PEER_PY" -c 'import torch, e3nn, torch_geometric' 2> /dev/null; then
    echo "bench: $PEER_PY lacks torch/e3nn/torch_geometric (see tests/ref/diffdock_score_ref.py)" >&2
    exit 2
fi
[ -s "$OUT/cases/model.pth" ] ||
    "$PEER_PY" bench/diffdock_peer_bench.py make-cases --out "$OUT/cases" --seed 0 > "$OUT/make-cases.log"

field() { grep -o "\"$2\": [0-9.e+-]*" "$1" | head -1 | awk '{print $2}'; }

printf '%-10s %8s %11s %11s %8s %10s %10s %8s\n' case cross "ours s" "peer s" "x faster" "ours MB" "peer MB" "x less" |
    tee "$OUT/summary.txt"
for c in one_t0.2 one_t0.5 one_t0.9 four_t0.2 four_t0.5 four_t0.9; do
    steps=3 warm=1
    case $c in four_*) steps=2 ;; esac
    "$TESTBIN/score-step" "$OUT/cases/model.pth" "$OUT/cases/case_$c.pt" "$steps" "$warm" "$THREADS" \
        > "$OUT/ours-$c.json"
    p_s=nan p_mb=nan
    if [ "${BENCH_PEER_FOUR:-1}" = 1 ] || [[ $c != four_* ]]; then
        psteps=2 pwarm=1
        case $c in four_*) psteps=1 pwarm=0 ;; esac
        GLIBC_TUNABLES=$TUNED "$PEER_PY" bench/diffdock_peer_bench.py time --cases "$OUT/cases" --case "$c" \
            --threads "$THREADS" --steps "$psteps" --warmup "$pwarm" > "$OUT/peer-$c.json"
        p_s=$(field "$OUT/peer-$c.json" seconds_per_step_median | awk '{printf "%.2f", $1}')
        p_mb=$(field "$OUT/peer-$c.json" peak_rss_mb | awk '{printf "%.0f", $1}')
    fi
    o_s=$(field "$OUT/ours-$c.json" seconds_per_step_median)
    o_mb=$(field "$OUT/ours-$c.json" peak_rss_mb)
    printf '%-10s %8s %11.2f %11s %8s %10.0f %10s %8s\n' "$c" "$(field "$OUT/ours-$c.json" cross_edges)" "$o_s" \
        "$p_s" "$(awk -v a="$p_s" -v b="$o_s" 'BEGIN { if (a == "nan") print "-"; else printf "%.2f", a / b }')" "$o_mb" \
        "$p_mb" "$(awk -v a="$p_mb" -v b="$o_mb" 'BEGIN { if (a == "nan") print "-"; else printf "%.1f", a / b }')" |
        tee -a "$OUT/summary.txt"
done
