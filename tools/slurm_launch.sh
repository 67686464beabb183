#!/usr/bin/env bash
# srun a tools/ script with one task per GPU, across as many nodes as GPUS needs;
# slurm_test.sh and slurm_train.sh call it.
#   [GPUS=8] [GPUS_PER_NODE=min(GPUS, 8)] [CPUS_PER_TASK=5] [SRUN_ARGS=...] \
#   tools/slurm_launch.sh PARTITION JOB_NAME SCRIPT [script arguments]
# --kill-on-bad-exit ends every task as soon as one fails, and srun exits non-zero.
# OMP_NUM_THREADS and MKL_NUM_THREADS default to 1 (mmengine's value, set here so that it
# does not warn about it from every task).
set -euo pipefail

PARTITION=$1
JOB_NAME=$2
SCRIPT=$3
shift 3
GPUS=${GPUS:-8}
GPUS_PER_NODE=${GPUS_PER_NODE:-$(( GPUS < 8 ? GPUS : 8 ))}
CPUS_PER_TASK=${CPUS_PER_TASK:-5}
SRUN_ARGS=${SRUN_ARGS:-""}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
export MKL_NUM_THREADS=${MKL_NUM_THREADS:-$OMP_NUM_THREADS}

# shellcheck disable=SC2086  # SRUN_ARGS is a list of options
PYTHONPATH="$(dirname "$0")/..${PYTHONPATH:+:$PYTHONPATH}" \
exec srun -p "$PARTITION" \
    --job-name="$JOB_NAME" \
    --gres=gpu:"$GPUS_PER_NODE" \
    --ntasks="$GPUS" \
    --ntasks-per-node="$GPUS_PER_NODE" \
    --cpus-per-task="$CPUS_PER_TASK" \
    --kill-on-bad-exit=1 \
    ${SRUN_ARGS} \
    python -u "$(dirname "$0")/$SCRIPT" "$@" --launcher slurm
