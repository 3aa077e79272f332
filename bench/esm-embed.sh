#!/usr/bin/env bash
# make bench, ESM part: esm-embed against the fair-esm PyTorch peer, side by side in one run, on
# this machine's CPUs (2 threads each), with the same deterministic random weights
# (docs/esm-random-weights.md) at the 8M shape (6,320,20) and the 650M shape (33,1280,20), on
#   (a) one 512-residue chain, and
#   (b) the dataset workload: every bound-chain sequence of DB5.5 (8M), or a fixed 16-chain
#       subset of it (650M; tests/ref/db5_sequences.py), fair-esm batched as its extract.py does
#       (4,096-token batches).
# The peer runs "tuned" (GLIBC_TUNABLES keeps freed memory: no page-fault churn) and "stock".
# Figures: residues/s of the forward passes (model load excluded on both sides), peak RSS
# (/usr/bin/time -v for esm-embed, getrusage in the peer), and esm-embed's predicted peak.
# Needs /usr/bin/python3 with torch + fair-esm, and python3 with Biopython (for the FASTA).
#   ESM_BENCH_SHAPES="6,320,20 33,1280,20" DB55=../shared/data/db5.5 bench/esm-embed.sh
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${PPD_BIN:-bin}
DB55=${DB55:-../shared/data/db5.5}
OUT=${BENCH_OUT:-bench-out}/esm
SHAPES=${ESM_BENCH_SHAPES:-6,320,20 33,1280,20}
PEER_PY=${PEER_PY:-/usr/bin/python3}
TUNED=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=68719476736
mkdir -p "$OUT"
# esm-embed runs OpenBLAS with the kernels for this CPU (it re-executes with OPENBLAS_CORETYPE
# when OpenBLAS does not recognise the CPU); PyTorch here links the same libopenblas, so the
# peer gets the same setting: the comparison is engine against engine, not kernel against kernel.
CORETYPE=$("$BIN/esm-embed" --blas-coretype)
export OPENBLAS_CORETYPE=$CORETYPE
echo "OpenBLAS kernels: ${CORETYPE:-as detected} (both sides)"
if ! "$PEER_PY" -c 'import torch, esm' 2>/dev/null; then
    echo "bench: $PEER_PY lacks torch/fair-esm (apt-get install python3-torch; pip install fair-esm)" >&2
    exit 2
fi
[ -s "$OUT/db5.fasta" ] || python3 tests/ref/db5_sequences.py --db55 "$DB55" "$OUT/db5.fasta" --subset650 "$OUT/db5_16.fasta"
# (a): the first DB5.5 chain of at least 512 residues, cut to 512
awk '/^>/{h=$0; next} length($0) >= 512 {print h; print substr($0, 1, 512); exit}' "$OUT/db5.fasta" > "$OUT/single512.fasta"

json_field() { grep -o "\"$2\": [0-9.e+-]*" "$1" | head -1 | awk '{print $2}'; }

ours() { # shape fasta label -> "residues/s peakMB predictedMB"
    rm -rf "$OUT/cache-$3"
    /usr/bin/time -v "$BIN/esm-embed" --device cpu --random-init "$1" --fasta "$2" -o "$OUT/cache-$3" -j 2 --dtype f32 \
        --mem-gb 12 --json -q > "$OUT/$3.json" 2> "$OUT/$3.time"
    local rss
    rss=$(awk '/Maximum resident set size/ {print $NF / 1024}' "$OUT/$3.time")
    echo "$(json_field "$OUT/$3.json" residues_per_s) $rss $(json_field "$OUT/$3.json" predicted_peak_mb)"
}

peer() { # shape fasta mode tunables label -> "residues/s peakMB"
    if [ -n "$4" ]; then
        GLIBC_TUNABLES=$4 "$PEER_PY" tests/ref/esm_peer_bench.py --shape "$1" --seed 0 --threads 2 --fasta "$2" \
            --mode "$3" > "$OUT/$5.json"
    else
        env -u GLIBC_TUNABLES "$PEER_PY" tests/ref/esm_peer_bench.py --shape "$1" --seed 0 --threads 2 --fasta "$2" \
            --mode "$3" > "$OUT/$5.json"
    fi
    echo "$(json_field "$OUT/$5.json" residues_per_s) $(json_field "$OUT/$5.json" peak_rss_mb)"
}

printf '%-11s %-9s %12s %12s %12s %8s %10s %10s %10s %10s\n' shape workload "ours r/s" "tuned r/s" \
    "stock r/s" "x tuned" "ours MB" "plan MB" "tuned MB" "stock MB" | tee "$OUT/summary.txt"
for shape in $SHAPES; do
    data="$OUT/db5.fasta"
    [ "$shape" = 33,1280,20 ] && data="$OUT/db5_16.fasta"
    for w in single dataset; do
        f=$data
        [ "$w" = single ] && f="$OUT/single512.fasta"
        tag="${shape//,/x}-$w"
        read -r o_rps o_rss o_plan <<<"$(ours "$shape" "$f" "ours-$tag")"
        read -r t_rps t_rss <<<"$(peer "$shape" "$f" "$w" "$TUNED" "tuned-$tag")"
        read -r s_rps s_rss <<<"$(peer "$shape" "$f" "$w" "" "stock-$tag")"
        ratio=$(awk -v a="$o_rps" -v b="$t_rps" 'BEGIN{printf "%.2f", a / b}')
        printf '%-11s %-9s %12.1f %12.1f %12.1f %8s %10.0f %10.0f %10.0f %10.0f\n' "$shape" "$w" "$o_rps" "$t_rps" \
            "$s_rps" "$ratio" "$o_rss" "$o_plan" "$t_rss" "$s_rss" | tee -a "$OUT/summary.txt"
    done
done
