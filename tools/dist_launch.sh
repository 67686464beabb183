#!/usr/bin/env bash
# torchrun a tools/ script on NPROC processes of this node; dist_test.sh and dist_train.sh
# call it. Multi-node: run it on every node with NNODES, NODE_RANK, MASTER_ADDR and PORT set.
# Without a GPU the scripts use gloo on the CPU. If any process fails, torchrun stops the
# others and exits non-zero, with that process's one ERROR line (mmclip.cli.torchrun:
# torchrun without its launcher traceback; MMCLIP_DEBUG=1 brings torchrun's output back).
# OMP_NUM_THREADS and MKL_NUM_THREADS default to 1, the value torchrun and mmengine would
# pick, set here so that they do not warn about it from every process; on a CPU-only node
# give each process its share of the cores: OMP_NUM_THREADS=$(( $(nproc) / NPROC )).
#   tools/dist_launch.sh NPROC SCRIPT [script arguments]
set -euo pipefail

NPROC=$1
SCRIPT=$2
shift 2
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-"127.0.0.1"}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
export MKL_NUM_THREADS=${MKL_NUM_THREADS:-$OMP_NUM_THREADS}

PYTHONPATH="$(dirname "$0")/..${PYTHONPATH:+:$PYTHONPATH}" \
exec python -m mmclip.cli.torchrun \
    --nnodes="$NNODES" \
    --node_rank="$NODE_RANK" \
    --master_addr="$MASTER_ADDR" \
    --nproc_per_node="$NPROC" \
    --master_port="$PORT" \
    "$(dirname "$0")/$SCRIPT" "$@" --launcher pytorch
