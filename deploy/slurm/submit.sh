#!/bin/bash
# Queues the feature array, then the merge with --dependency=afterok: the merge starts when every
# array task has succeeded (a task that failed is resubmitted with `sbatch --array=I ...`; then
# queue the merge again, or run `captioner features` by hand).
#   deploy/slurm/submit.sh [SBATCH OPTIONS...]
# Environment variables CAPTIONER, DATA, BACKBONE, CACHE as in the scripts; options are passed to
# both sbatch calls and override the scripts' #SBATCH lines (e.g. --partition=cpu --cpus-per-task=8).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
mkdir -p logs
array=$(sbatch --parsable "$@" "$here/features-array.sbatch")
array=${array%%;*}
merge=$(sbatch --parsable "$@" --dependency="afterok:$array" "$here/merge.sbatch")
echo "features array: job $array; merge: job $merge (after every task succeeded)"
