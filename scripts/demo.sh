#!/usr/bin/env bash
# make demo: the pipeline on the bundled sample (tests/data/db5-mini, four DB5.5 complexes).
# Stage 1 builds the residue graphs, stage 2 checks the cache; later stages (esm-embed, train)
# join here as they land.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${PPD_BIN:-bin}
OUT=${DEMO_OUT:-demo-out}
rm -rf "$OUT"
mkdir -p "$OUT"

echo "== graph-build: config/demo.yaml -> $OUT/graphs"
"$BIN/graph-build" -c config/demo.yaml -o "$OUT/graphs"
echo
echo "== graph-build again: nothing changed, nothing rebuilt"
"$BIN/graph-build" -c config/demo.yaml -o "$OUT/graphs"
echo
echo "== cache-check --inputs $OUT/graphs"
"$BIN/cache-check" --inputs "$OUT/graphs"
echo
echo "== one record (cache-check --dump 1HIA), abridged"
"$BIN/cache-check" --dump 1HIA "$OUT/graphs" | cut -c1-200
echo
echo "The cache is in $OUT/graphs (format: docs/cache-format.md)."
