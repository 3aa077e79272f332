#!/usr/bin/env bash
# make bench, esm-embed's sink: building the fp16 records of the 492 DB5.5 chains' 129k residues
# at the 650M width and writing them to an LMDB cache, the way esm-embed did it before (scalar
# conversion, puts on the engine's thread) and the way it does now (F16C conversion, puts on the
# cache queue's thread), alternating in one run (tests/helpers/esm-sink-bench.c: medians of 3
# rounds and their ratios). /usr/bin/time -v gives the run's peak RSS.
#   SINK_RECORDS=476 SINK_LEN=271 SINK_WIDTH=1280 bench/esm-sink.sh
set -euo pipefail
cd "$(dirname "$0")/.."
TESTBIN=${PPD_TESTBIN:-build/tests}
OUT=${BENCH_OUT:-bench-out}/esm-sink
rm -rf "$OUT"
mkdir -p "$OUT/caches"
/usr/bin/time -v "$TESTBIN/esm-sink-bench" "$OUT/caches" "${SINK_RECORDS:-476}" "${SINK_LEN:-271}" \
    "${SINK_WIDTH:-1280}" 3 >"$OUT/bench.txt" 2>"$OUT/time.txt"
rm -rf "$OUT/caches"
cat "$OUT/bench.txt"
awk '/Maximum resident set size/ {printf "peak RSS %.0f MB\n", $NF / 1024}' "$OUT/time.txt"
