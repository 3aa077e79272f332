#!/usr/bin/env bash
# Submit the pipeline's stages as a chain of SLURM jobs, each waiting for the previous one to
# succeed (--dependency=afterok). Stages join here as they land (esm-embed, train).
#
#   slurm/pipeline.sh CONFIG CACHE_ROOT [graph-build options...]
#   e.g. slurm/pipeline.sh config/finetune_full.yaml /project/caches/abag
set -euo pipefail
CONFIG=${1:?usage: slurm/pipeline.sh CONFIG CACHE_ROOT [graph-build options...]}
ROOT=${2:?usage: slurm/pipeline.sh CONFIG CACHE_ROOT [graph-build options...]}
shift 2
here=$(cd "$(dirname "$0")" && pwd)
g=$(sbatch --parsable "$here/graph-build.sbatch" "$CONFIG" "$ROOT/graphs" "$@")
c=$(sbatch --parsable --dependency=afterok:"$g" "$here/cache-check.sbatch" "$ROOT/graphs" --inputs)
echo "submitted: graph-build $g -> cache-check $c (afterok)"
