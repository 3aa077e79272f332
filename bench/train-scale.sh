#!/usr/bin/env bash
# make bench, train part 2 — host memory must not grow with the data set. Builds a synthetic
# set of N complexes (new ids, each a symlink to the same DB5.5 complex so that every batch has
# the same size and only the number of records varies), its graph cache (graph-build) and an
# ESM-shaped cache of random 1280-wide embeddings (tests/helpers/esm-random), then trains the
# released model size (ns 32, nv 6, 4 layers, lm_embed_dim 1280) for a fixed number of steps of
# one epoch, for N = 1,000 and N = 10,000. Peak RSS of train from /usr/bin/time -v; the two must
# agree within 10% and stay under 2 GB. Numbers only, not a test.
#   DB55=../shared/data/db5.5 SCALE_COMPLEX=1AY7 SCALE_STEPS=8 bench/train-scale.sh
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${PPD_BIN:-bin}
TESTBIN=${PPD_TESTBIN:-build/tests}
DB55=${DB55:-../shared/data/db5.5}
OUT=${BENCH_OUT:-bench-out}/train-scale
ID=${SCALE_COMPLEX:-1AY7}
STEPS=${SCALE_STEPS:-8}
[ -e "$DB55/structures/${ID}_r_b.pdb.gz" ] || { echo "bench: no $DB55/structures/${ID}_r_b.pdb.gz" >&2; exit 2; }
rm -rf "$OUT"
mkdir -p "$OUT"
db55=$(cd "$DB55" && pwd)
released=(--set model.ns=32 --set model.nv=6 --set model.num_conv_layers=4 --set model.lm_embed_dim=1280
    --set model.dist_embed_dim=32 --set model.cross_dist_embed_dim=32 --set train.batch_size=4
    --set train.epochs=1 --set train.checkpoint_steps=0)

printf '%-8s %12s %12s %14s %14s %10s\n' complexes "graphs MB" "esm MB" "graph-build s" "train RSS MB" "s/step" |
    tee "$OUT/summary.txt"
for n in 1000 10000; do
    d="$OUT/set$n"
    mkdir -p "$d/structures"
    printf 'path,split\n' > "$d/splits.csv"
    for i in $(seq 0 $((n - 1))); do
        c=$(printf 'S%05d' "$i")
        ln -s "$db55/structures/${ID}_r_b.pdb.gz" "$d/structures/${c}_r_b.pdb.gz"
        ln -s "$db55/structures/${ID}_l_b.pdb.gz" "$d/structures/${c}_l_b.pdb.gz"
        echo "$c,train" >> "$d/splits.csv"
    done
    t0=$(date +%s.%N)
    "$BIN/graph-build" -c config/demo.yaml --set "data.data_path=$d" --set "data.data_file=$d/splits.csv" \
        -j 2 -q -o "$d/graphs"
    t1=$(date +%s.%N)
    "$TESTBIN/esm-random" "$d/graphs" "$d/esm" 1280 2> /dev/null
    /usr/bin/time -v "$BIN/train" -c config/demo.yaml "${released[@]}" -g "$d/graphs" -e "$d/esm" \
        -o "$d/run" -j 2 --max-steps "$STEPS" -q > "$d/train.out" 2> "$d/train.time"
    rss=$(awk '/Maximum resident set size/ {print $NF / 1024}' "$d/train.time")
    sps=$(grep '"kind": "step"' "$d/run/metrics.jsonl" | sed 's/.*"seconds": \([^,]*\),.*/\1/' |
        awk '{ s += $1; n++ } END { printf "%.2f", s / n }')
    printf '%-8s %12.1f %12.1f %14.2f %14.1f %10s\n' "$n" \
        "$(du -sm "$d/graphs" | cut -f1)" "$(du -sm "$d/esm" | cut -f1)" \
        "$(echo "$t1 - $t0" | bc -l)" "$rss" "$sps" | tee -a "$OUT/summary.txt"
    rm -rf "$d/structures"
done
