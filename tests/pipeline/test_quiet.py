"""Quiet by default: a training run prints what it does and its result, not third-party chatter (shown with
--verbose), and its own summary comes last."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: what each third-party source printed on every run before it was filtered
NOISE = ("GPU available", "litlogger", "anonymous setting", "LeafSpec", "smaller than the logging interval",
         "Restoring states", "Loaded model weights", "max_epochs=", "Testing", "Validation")


def _train(write_config, tmp_path, *extra):
    # refit on: both fits of a default small-data run stay quiet
    path = write_config(tracking={"mode": "offline"}, trainer={"max_epochs": 2, "enable_progress_bar": True, "refit": True})
    env = {"WANDB_MODE": "offline", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "COLUMNS": "100"}
    out = subprocess.run([sys.executable, "-m", "pipeline.cli", "train", str(path), *extra], cwd=ROOT,
                         capture_output=True, text=True, timeout=180, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    return out


def test_bmi_train_is_quiet(write_config, tmp_path):
    out = _train(write_config, tmp_path)
    text = out.stdout + out.stderr
    assert not [n for n in NOISE if n in text], text
    assert json.loads(out.stdout[out.stdout.rindex("\n{\n"):])["run_id"]  # the run's own summary, last


@pytest.mark.slow
def test_bmi_train_verbose_shows_the_third_party_lines(write_config, tmp_path):
    out = _train(write_config, tmp_path, "--verbose")
    assert "GPU available" in out.stdout + out.stderr
