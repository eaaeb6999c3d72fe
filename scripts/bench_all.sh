#!/usr/bin/env bash
# Every benchmark, one results file and one Markdown table:  bash scripts/bench_all.sh [OUT_DIR] [--quick]
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-bench_results}
QUICK=${2:-}
PY=${PYTHON:-.venv/bin/python}
mkdir -p "$OUT"
export WANDB_MODE=disabled MPLBACKEND=Agg
$PY scripts/bench_data.py $QUICK --out "$OUT/data.json"
$PY scripts/bench_train.py $QUICK --out "$OUT/train.json"
$PY scripts/bench_inference.py $QUICK --out "$OUT/inference.json"
$PY scripts/bench_server.py $QUICK --out "$OUT/server.json"
$PY scripts/bench_faults.py --out "$OUT/faults.json"
$PY scripts/bench_accuracy.py $QUICK --out "$OUT/accuracy.json"
$PY scripts/bench_sessions.py $QUICK --out "$OUT/sessions.json"
# bmi compare and the console's runs page at a lab's scale (300 runs; seconds, so no --quick)
$PY scripts/bench_dashboard.py --runs 300 --out "$OUT/dashboard.json"
$PY scripts/bench_report.py "$OUT"
