#!/bin/bash
# Multi-node, multi-GPU DDP training under SLURM.
#
#   sbatch --nodes=2 --gres=gpu:4 --ntasks-per-node=4 scripts/slurm_train.sh configs/train_ddp.yaml [--set key=value ...]
#
# SLURM starts one task per GPU (ntasks-per-node = GPUs per node); Lightning's SLURMEnvironment reads
# SLURM_PROCID / SLURM_LOCALID / SLURM_NODEID / SLURM_NTASKS and sets up the process group itself, so
# trainer.devices must equal the tasks per node and trainer.num_nodes the node count (set below from the
# allocation, overriding the YAML). All ranks share one run id (--name), so they write one run directory
# on the shared filesystem (runs_dir must be on storage every node sees).
#
# Edit the #SBATCH defaults for your cluster, or override them on the sbatch command line.
#SBATCH --job-name=bmi-train
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=4
#SBATCH --gres=gpu:4
#SBATCH --cpus-per-task=8
#SBATCH --time=04:00:00
#SBATCH --output=slurm-%x-%j.out
set -euo pipefail

CONFIG=${1:?usage: sbatch scripts/slurm_train.sh CONFIG.yaml [--set key=value ...]}
shift

# The project's environment (one venv per project: the import names pipeline/models/datasets are ours).
PROJECT_DIR=${PROJECT_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
source "${VENV:-$PROJECT_DIR/.venv}/bin/activate"

NODES=${SLURM_JOB_NUM_NODES:-${SLURM_NNODES:-1}}
TASKS_PER_NODE=${SLURM_NTASKS_PER_NODE:-1}
TASKS_PER_NODE=${TASKS_PER_NODE%%(*}   # "4(x2)" -> "4"
RUN_NAME=${RUN_NAME:-$(date +%Y%m%d-%H%M%S)-slurm${SLURM_JOB_ID:-0}}

export OMP_NUM_THREADS=${SLURM_CPUS_PER_TASK:-1}
export NCCL_ASYNC_ERROR_HANDLING=1
# W&B: "auto" is online when the nodes have an API key and network, offline otherwise (then `wandb sync`).

echo "bmi train: ${NODES} node(s) x ${TASKS_PER_NODE} GPU(s), run ${RUN_NAME}"
srun --kill-on-bad-exit=1 bmi train "$CONFIG" \
    --name "$RUN_NAME" \
    --no-progress \
    --set trainer.strategy=ddp \
    --set trainer.accelerator=gpu \
    --set "trainer.num_nodes=${NODES}" \
    --set "trainer.devices=${TASKS_PER_NODE}" \
    "$@"
