#!/usr/bin/env bash
# Evaluate on GPUS processes of this node with torchrun (gloo on the CPU when there is no GPU).
#   tools/dist_test.sh CONFIG CHECKPOINT GPUS [tools/test.py arguments]
# Multi-node: run it on every node with NNODES, NODE_RANK, MASTER_ADDR and PORT set.
set -euo pipefail

if [ $# -lt 3 ]; then
    echo "usage: $0 CONFIG CHECKPOINT GPUS [tools/test.py arguments]" >&2
    exit 2
fi
exec "$(dirname "$0")/dist_launch.sh" "$3" test.py "$1" "$2" "${@:4}"
