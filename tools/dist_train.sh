#!/usr/bin/env bash
# Train on GPUS processes of this node with torchrun (gloo on the CPU when there is no GPU).
#   tools/dist_train.sh CONFIG GPUS [tools/train.py arguments]
# Multi-node: run it on every node with NNODES, NODE_RANK, MASTER_ADDR and PORT set.
set -euo pipefail

if [ $# -lt 2 ]; then
    echo "usage: $0 CONFIG GPUS [tools/train.py arguments]" >&2
    exit 2
fi
exec "$(dirname "$0")/dist_launch.sh" "$2" train.py "$1" "${@:3}"
