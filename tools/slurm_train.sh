#!/usr/bin/env bash
# Train on a Slurm cluster: one task per GPU, across as many nodes as GPUS needs.
#   [GPUS=8] [GPUS_PER_NODE=min(GPUS, 8)] [CPUS_PER_TASK=5] [SRUN_ARGS=...] \
#   tools/slurm_train.sh PARTITION JOB_NAME CONFIG [WORK_DIR] [tools/train.py arguments]
# Pass --resume: re-submitting the same command then continues a preempted run.
set -euo pipefail

if [ $# -lt 3 ]; then
    echo "usage: $0 PARTITION JOB_NAME CONFIG [WORK_DIR] [tools/train.py arguments]" >&2
    exit 2
fi
PARTITION=$1
JOB_NAME=$2
CONFIG=$3
shift 3
WORK_DIR_ARGS=()
if [ $# -gt 0 ] && [[ $1 != -* ]]; then
    WORK_DIR_ARGS=(--work-dir "$1")
    shift
fi
exec "$(dirname "$0")/slurm_launch.sh" "$PARTITION" "$JOB_NAME" train.py "$CONFIG" \
    "${WORK_DIR_ARGS[@]}" "$@"
