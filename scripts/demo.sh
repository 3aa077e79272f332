#!/usr/bin/env bash
# make demo: the pipeline on the bundled sample (tests/data/db5-mini, four DB5.5 complexes).
# graph-build makes the residue graphs, esm-embed the ESM-2 embeddings (ESM_WEIGHTS=file for the
# real model; otherwise the bundled tiny random-weight test model), cache-check checks both.
# train then trains a small score model (config/demo.yaml, residue ids instead of ESM features)
# for a few minutes and shows the loss falling.
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
STEPS=${DEMO_STEPS:-600}
echo "== train: the demo model on the three training complexes, $STEPS steps (DEMO_STEPS=...)"
echo "   fixed noise per complex (train.fixed_noise), so the loss can fall to zero: this shows"
echo "   the pipeline learning; real training draws fresh noise every epoch"
"$BIN/train" -c config/demo.yaml -g "$OUT/graphs" -o "$OUT/run" --set train.epochs=100000 \
    --set train.fixed_noise=true --set train.lr=3e-3 --set train.patience=1000000 --max-steps "$STEPS"
echo
echo "== the loss, every $((STEPS / 10)) steps ($OUT/run/metrics.jsonl; curves in $OUT/run/loss.svg)"
grep '"kind": "step"' "$OUT/run/metrics.jsonl" | awk -v every=$((STEPS / 10)) '
    { match($0, /"loss": [^,]*/); l = substr($0, RSTART + 8, RLENGTH - 8); s += l; n++ }
    n == every { printf "   steps %4d..%4d  mean loss %.4f\n", NR - every + 1, NR, s / n; s = 0; n = 0 }'
echo
echo "== train --eval-only: the trained model on the validation complex, predictions dumped"
"$BIN/train" -c config/demo.yaml -g "$OUT/graphs" --eval-only --init-from "$OUT/run/last.safetensors" \
    --dump-predictions "$OUT/run/val-predictions.jsonl"
echo
echo "The caches are in $OUT/graphs and $OUT/esm (format: docs/cache-format.md); the run in"
echo "$OUT/run (checkpoints in safetensors with DiffDock-PP's parameter names: docs/train.md)."
