#!/usr/bin/env bash
# Submit the pipeline's stages as a chain of SLURM jobs, each waiting for the previous one to
# succeed (--dependency=afterok): graph-build, esm-embed (ESM_WEIGHTS), cache-check, train
# (RUN_DIR, needs ESM_WEIGHTS).
#
#   [ESM_WEIGHTS=esm2_t33_650M_UR50D.pt [RUN_DIR=DIR]] [GPU_GRES=gpu:1] slurm/pipeline.sh CONFIG CACHE_ROOT [graph-build options...]
#   e.g. ESM_WEIGHTS=/models/esm2_t33_650M_UR50D.pt slurm/pipeline.sh config/finetune_full.yaml /project/caches/abag
#
# GPU_GRES (e.g. gpu:1, gpu:a100:1): esm-embed and train are submitted with --gres=$GPU_GRES and
# run on the GPU they see (device.engine auto); graph-build and cache-check are CPU work.
set -euo pipefail
CONFIG=${1:?usage: slurm/pipeline.sh CONFIG CACHE_ROOT [graph-build options...]}
ROOT=${2:?usage: slurm/pipeline.sh CONFIG CACHE_ROOT [graph-build options...]}
shift 2
here=$(cd "$(dirname "$0")" && pwd)
gpu=()
[ -n "${GPU_GRES:-}" ] && gpu=(--gres="$GPU_GRES")
g=$(sbatch --parsable "$here/graph-build.sbatch" "$CONFIG" "$ROOT/graphs" "$@")
last=$g
if [ -n "${ESM_WEIGHTS:-}" ]; then # ESM-2 weights: embed the graphs' sequences next
    e=$(sbatch --parsable "${gpu[@]}" --dependency=afterok:"$g" "$here/esm-embed.sbatch" "$ESM_WEIGHTS" "$ROOT/graphs" "$ROOT/esm")
    echo "submitted: esm-embed $e (after graph-build $g)"
    last=$e
fi
c=$(sbatch --parsable --dependency=afterok:"$last" "$here/cache-check.sbatch" "$ROOT/graphs" --inputs)
echo "submitted: graph-build $g -> ${e:+esm-embed $e -> }cache-check $c (afterok)"
if [ -n "${RUN_DIR:-}" ] && [ -n "${ESM_WEIGHTS:-}" ]; then # train after the checks pass
    t=$(sbatch --parsable "${gpu[@]}" --dependency=afterok:"$c" "$here/train.sbatch" "$CONFIG" "$ROOT/graphs" "$ROOT/esm" "$RUN_DIR")
    echo "submitted: train $t (after cache-check $c) -> $RUN_DIR"
fi
