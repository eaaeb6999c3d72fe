"""Quiet by default: a training run prints what it does and its result, not third-party chatter (shown with
--verbose), and its own summary comes last."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: what each third-party source printed on every run before it was filtered
NOISE = ("GPU available", "litlogger", "anonymous setting", "LeafSpec", "smaller than the logging interval",
         "Restoring states", "Loaded model weights", "max_epochs=", "Testing", "Validation")


def test_bmi_train_is_quiet_unless_verbose(write_config, tmp_path):
    path = write_config(tracking={"mode": "offline"}, trainer={"max_epochs": 2, "enable_progress_bar": True})
    cmd = [sys.executable, "-m", "pipeline.cli", "train", str(path)]
    env = {"WANDB_MODE": "offline", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "COLUMNS": "100"}
    quiet = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=180, env=env)
    assert quiet.returncode == 0, quiet.stderr[-2000:]
    text = quiet.stdout + quiet.stderr
    assert not [n for n in NOISE if n in text], text
    assert json.loads(quiet.stdout[quiet.stdout.rindex("\n{\n"):])["run_id"]  # the run's own summary, last
    loud = subprocess.run(cmd + ["--verbose"], cwd=ROOT, capture_output=True, text=True, timeout=180, env=env)
    assert loud.returncode == 0 and "GPU available" in loud.stdout + loud.stderr
