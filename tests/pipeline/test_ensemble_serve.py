"""A seed ensemble goes to the rig like any decoder: one ONNX file that `bmi serve` runs unchanged."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_seed_ensemble_is_served_by_bmi_serve(tmp_path, make_experiment):
    from datasets.synthetic import write_synthetic

    files = write_synthetic(tmp_path / "data", n_subjects=1, n_runs=3, trials_per_class=5, fmt="edf", seed=3)
    config = tmp_path / "data" / "exp.yaml"
    raw = make_experiment([f.name for f in files], tmp_path / "runs", trainer={"max_epochs": 2, "min_steps": 0})
    config.write_text(yaml.safe_dump(raw, sort_keys=False))
    cli = [sys.executable, "-m", "pipeline.cli"]
    train = subprocess.run([*cli, "train", str(config), "--seeds", "0,1", "--no-progress", "--name", "ens"],
                           cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert train.returncode == 0, train.stderr[-3000:]
    ensemble = tmp_path / "runs" / "ens-ensemble"
    assert (ensemble / "ensemble.json").is_file() and (tmp_path / "runs" / "ens-seed1").is_dir()
    model = tmp_path / "ensemble.onnx"
    export = subprocess.run([*cli, "export", str(ensemble), "--out", str(model)], cwd=ROOT, capture_output=True,
                            text=True, timeout=300)
    assert export.returncode == 0, export.stderr[-3000:]
    log = tmp_path / "session.csv"
    serve = subprocess.run([*cli, "serve", str(model), "--input", f"replay:{files[-1]}", "--output",
                            "udp://127.0.0.1:9", "--log", str(log), "--duration", "6", "--no-status"],
                           cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert serve.returncode == 0, serve.stderr[-3000:]
    decisions = [r for r in csv.DictReader(log.open()) if r["type"] == "decision"]
    assert len(decisions) > 30 and {r["command"] for r in decisions} <= {"rest", "grasp", "open"}
