"""``bmi train`` on a MOABB dataset (``data.moabb``) with no other step: a real ``bmi train`` process reads a lab's
own dataset class (``moabb.module``; MOABB's fake dataset made learnable, no download), trains with the defaults
on one session, decodes the held-out session, and the run exports to ONNX like any other."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytest.importorskip("moabb")

TESTS = Path(__file__).resolve().parents[1]


def bmi(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), str(TESTS.parent)]), "WANDB_MODE": "disabled"}
    return subprocess.run([sys.executable, "-m", "pipeline.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)


@pytest.mark.slow  # two real processes (train, export): one to three minutes on two shared cores
def test_bmi_train_reads_a_moabb_dataset_and_decodes_a_held_out_session(tmp_path):
    options = {"n_subjects": 1, "n_sessions": 2, "n_runs": 2, "duration": 60, "n_events": 16, "seed": 7,
               "event_list": ["left_hand", "right_hand"]}
    config = {"data": {"moabb": {"dataset": "LearnableFake", "module": "moabb_learnable", "options": options},
                       "events": {"left_hand": "left", "right_hand": "right"}, "tmin": 0.5, "tmax": 1.5,
                       "split": {"method": "holdout", "by": "session", "test": ["1"]}, "cache_dir": "cache"},
              "trainer": {"max_epochs": 40}, "tracking": {"mode": "disabled"}, "runs_dir": "runs"}
    (tmp_path / "moabb.yaml").write_text(yaml.safe_dump(config))
    trained = bmi("train", "moabb.yaml", "--name", "fake", cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr[-3000:]
    summary = json.loads((tmp_path / "runs" / "fake" / "summary.json").read_text())
    assert "test sessions 1: 32 windows" in trained.stdout  # session 1: 2 runs x 16 cues, never trained on
    assert summary["test"]["balanced_accuracy"] >= 0.9, summary["test"]  # C3 / C4 power triples: chance 0.5
    exported = bmi("export", "runs/fake", cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr[-3000:]
    onnx = list((tmp_path / "runs" / "fake").rglob("*.onnx"))
    assert onnx, exported.stdout
