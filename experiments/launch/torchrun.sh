#!/usr/bin/env bash
# `seglab fit` on one node or several with torchrun (DDP, one process per GPU).
#
# Usage:  experiments/launch/torchrun.sh CONFIG.yaml [--section.key value ...]
#
#   one node, all its GPUs:   experiments/launch/torchrun.sh experiments/camvid_unet_resnet34.yaml
#   two nodes, run on each:   NNODES=2 NODE_RANK=0 MASTER_ADDR=node0 experiments/launch/torchrun.sh X.yaml   (on node0)
#                             NNODES=2 NODE_RANK=1 MASTER_ADDR=node0 experiments/launch/torchrun.sh X.yaml   (on node1)
#
# Environment (defaults in brackets):
#   NNODES [1]             number of nodes taking part
#   NODE_RANK [0]          this node's rank, 0..NNODES-1; node 0 hosts the rendezvous
#   GPUS_PER_NODE [all]    processes on this node (torch.cuda.device_count(); 1 without a GPU)
#   MASTER_ADDR [127.0.0.1], MASTER_PORT [29500]   address of node 0, reachable from every node
#   STRATEGY [ddp]         Lightning strategy, e.g. ddp_find_unused_parameters_true
#   PYTHON [python3]       the interpreter that has seglab installed
#
# The trainer's num_nodes/devices/strategy are set here from the same variables, after the
# user's arguments, so Lightning (TorchElasticEnvironment, detected from torchrun's variables)
# always agrees with torchrun about the world size.
set -euo pipefail

if [[ $# -lt 1 || $1 == -h || $1 == --help ]]; then
    sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
fi
CONFIG=$1
shift
if [[ ! -f $CONFIG ]]; then
    echo "torchrun.sh: config file '$CONFIG' not found" >&2
    exit 2
fi

PYTHON=${PYTHON:-python3}
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
MASTER_ADDR=${MASTER_ADDR:-127.0.0.1}
MASTER_PORT=${MASTER_PORT:-29500}
STRATEGY=${STRATEGY:-ddp}
if [[ -z ${GPUS_PER_NODE:-} ]]; then
    GPUS_PER_NODE=$("$PYTHON" -c 'import torch; print(max(1, torch.cuda.device_count()))')
fi

exec "$PYTHON" -m torch.distributed.run \
    --nnodes "$NNODES" \
    --nproc_per_node "$GPUS_PER_NODE" \
    --node_rank "$NODE_RANK" \
    --master_addr "$MASTER_ADDR" \
    --master_port "$MASTER_PORT" \
    -m seglab fit --config "$CONFIG" "$@" \
    --trainer.num_nodes "$NNODES" \
    --trainer.devices "$GPUS_PER_NODE" \
    --trainer.strategy "$STRATEGY"
