#!/usr/bin/env bash
# make demo: the pipeline on the bundled sample (tests/data/db5-mini, four DB5.5 complexes).
# graph-build makes the residue graphs, esm-embed the ESM-2 embeddings (ESM_WEIGHTS=file for the
# real model; otherwise the bundled tiny random-weight test model), cache-check checks both.
# Later stages (train) join here as they land.
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
if [ -n "${ESM_WEIGHTS:-}" ]; then
    echo "== esm-embed: ESM-2 embeddings of every chain, weights $ESM_WEIGHTS -> $OUT/esm"
    "$BIN/esm-embed" --weights "$ESM_WEIGHTS" -g "$OUT/graphs" -o "$OUT/esm" -v
else
    cat <<'TXT'
== esm-embed: no ESM-2 weights named (ESM_WEIGHTS=...). To embed with the real model, get
   esm2_t33_650M_UR50D.pt (what DiffDock-PP uses) from
   https://dl.fbaipublicfiles.com/fair-esm/models/esm2_t33_650M_UR50D.pt, or model.safetensors
   from huggingface.co/facebook/esm2_t33_650M_UR50D, then:  make demo ESM_WEIGHTS=/path/to/file
   Meanwhile the demo embeds with the bundled TINY random-weight test model (not a real model):
TXT
    "$BIN/esm-embed" --weights tests/data/esm/tiny/model.safetensors -g "$OUT/graphs" -o "$OUT/esm" -v
fi
echo
echo "== cache-check $OUT/graphs $OUT/esm: both caches and every chain's embedding"
"$BIN/cache-check" "$OUT/graphs" "$OUT/esm"
echo
echo "The caches are in $OUT/graphs and $OUT/esm (format: docs/cache-format.md)."
