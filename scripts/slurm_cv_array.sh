#!/bin/bash
# Cross-validation spread over a SLURM array: one array task per fold, then one collect job.
#
#   GROUP=cv-loso-p01 sbatch --array=0-9 scripts/slurm_cv_array.sh configs/loso.yaml [--set key=value ...]
#   # when the array is done (or chained: sbatch --dependency=afterok:<array job id> ...):
#   bmi cv --collect runs/cv-loso-p01
#
# Array task K runs `bmi cv CONFIG --group GROUP --fold K` into runs/GROUP/fold<K> (runs_dir must be on storage
# every node sees). The array's range is the number of folds: `bmi cv CONFIG --folds N` counts them, and a task
# past the last fold fails before it trains. The first task to arrive writes runs/GROUP/cv_plan.json; a task
# with another config (or other --set values) is refused before it trains. `bmi cv --collect` refuses, naming
# the missing folds, until every fold has finished, then writes runs/GROUP/cv_summary.json, the same summary a
# single `bmi cv` process would have written. A failed task can simply be resubmitted with --array=K after
# removing its runs/GROUP/fold<K> folder.
#
# With COLLECT=1 the script submits the collect step itself, as a job that runs once every array task succeeded.
#
# Edit the #SBATCH defaults for your cluster, or override them on the sbatch command line.
#SBATCH --job-name=bmi-cv
#SBATCH --array=0-4
#SBATCH --ntasks=1
#SBATCH --gres=gpu:1
#SBATCH --cpus-per-task=8
#SBATCH --time=02:00:00
#SBATCH --output=slurm-%x-%A_%a.out
set -euo pipefail

CONFIG=${1:?usage: GROUP=NAME sbatch --array=0-<folds-1> scripts/slurm_cv_array.sh CONFIG.yaml [--set key=value ...]}
shift
GROUP=${GROUP:?set GROUP=NAME: the shared CV folder under runs_dir and its W&B group, the same for every task}
FOLD=${SLURM_ARRAY_TASK_ID:?run this script as a SLURM array job (sbatch --array=0-<folds-1>)}

# The project's environment (one venv per project: the import names pipeline/models/datasets are ours).
PROJECT_DIR=${PROJECT_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
source "${VENV:-$PROJECT_DIR/.venv}/bin/activate"
export OMP_NUM_THREADS=${SLURM_CPUS_PER_TASK:-1}
# W&B: "auto" is online when the nodes have an API key and network, offline otherwise (then `wandb sync`);
# every fold's run is in the W&B group GROUP with its fold in the config.

if [ "${COLLECT:-0}" = "1" ] && [ "$FOLD" = "${SLURM_ARRAY_TASK_MIN:-0}" ]; then
    # the first task submits the collect job: it runs once every task of this array has succeeded
    ACTIVATE="${VENV:-$PROJECT_DIR/.venv}/bin/activate"
    FOLDER="${RUNS_DIR:-runs}/${GROUP}"
    sbatch --dependency="afterok:${SLURM_ARRAY_JOB_ID}" --job-name=bmi-cv-collect --ntasks=1 --time=00:10:00 \
        --output="slurm-%x-%j.out" --wrap="source \"${ACTIVATE}\" && bmi cv --collect \"${FOLDER}\""
fi

echo "bmi cv: fold ${FOLD} of group ${GROUP} (array job ${SLURM_ARRAY_JOB_ID:-?})"
srun --kill-on-bad-exit=1 bmi cv "$CONFIG" --group "$GROUP" --fold "$FOLD" --no-progress --set trainer.accelerator=auto "$@"
