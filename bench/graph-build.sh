#!/usr/bin/env bash
# make bench: graph-build over all 246 DB5.5 complexes (bound structures) with -j 2 — wall time
# and peak RSS from /usr/bin/time -v — then the same rerun with nothing changed, cache-check over
# the result, and (when Biopython and SciPy are installed) the DiffDock-PP-style Biopython
# pipeline on the same files in the same run, for the ratio. Not a test: numbers only.
#   DB55=/path/to/db5.5 bench/graph-build.sh     (default ../shared/data/db5.5)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${PPD_BIN:-bin}
DB55=${DB55:-../shared/data/db5.5}
OUT=${BENCH_OUT:-bench-out}
[ -d "$DB55/structures" ] || { echo "bench: $DB55/structures not found (set DB55=...)" >&2; exit 2; }
rm -rf "$OUT"
mkdir -p "$OUT"
# every complex that has both bound files: 246 in DB5.5 (the CSV's train+val list is 228)
{
    echo "path,split"
    for f in "$DB55"/structures/*_r_b.pdb.gz; do
        id=$(basename "$f" _r_b.pdb.gz)
        [ -e "$DB55/structures/${id}_l_b.pdb.gz" ] && echo "$id,train"
    done
} > "$OUT/all.csv"
n=$(($(wc -l < "$OUT/all.csv") - 1))

measure() { # label command...
    local label=$1
    shift
    /usr/bin/time -v "$@" > "$OUT/$label.out" 2> "$OUT/$label.time"
    local wall rss
    wall=$(grep 'Elapsed (wall clock)' "$OUT/$label.time" | awk '{print $NF}')
    rss=$(grep 'Maximum resident set size' "$OUT/$label.time" | awk '{print $NF}')
    printf '%-34s wall %8s   peak RSS %7.1f MB\n' "$label" "$wall" "$(echo "$rss / 1024" | bc -l)"
}

args=(--set "data.data_path=$DB55" --set "data.data_file=$OUT/all.csv" -j 2 -o "$OUT/graphs")
echo "graph-build on $n DB5.5 complexes ($(nproc) CPUs)"
measure "graph-build -j 2 (cold cache dir)" "$BIN/graph-build" "${args[@]}"
measure "graph-build rerun (nothing changed)" "$BIN/graph-build" "${args[@]}"
measure "cache-check" "$BIN/cache-check" "$OUT/graphs"
cat "$OUT/cache-check.out"
du -sh "$OUT/graphs" | awk '{print "cache size: " $1}'
if python3 -c 'import Bio, scipy, numpy' 2>/dev/null; then
    measure "Biopython baseline (DiffDock-PP)" python3 bench/biopython_baseline.py "$DB55" "$OUT/all.csv" "$OUT/baseline.pkl"
    grep -m1 "biopython baseline" "$OUT/Biopython baseline (DiffDock-PP).time" || true
else
    echo "(Biopython/SciPy not installed: baseline skipped; pip install biopython scipy)"
fi
