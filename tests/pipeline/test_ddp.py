"""DDP with two CPU processes on gloo, launched the way users do (`bmi train` re-launched per rank by Lightning):
both ranks finish with the same weights and one run directory is written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_two_process_ddp_on_cpu(write_config, tmp_path):
    path = write_config("ddp.yaml", trainer={"max_epochs": 2, "enable_progress_bar": False,
                                             "early_stopping_patience": None, "refit": "auto"})
    env = {k: v for k, v in os.environ.items() if k not in ("LOCAL_RANK", "NODE_RANK", "WORLD_SIZE", "BMI_RUN_ID")}
    env.update(PL_TORCH_DISTRIBUTED_BACKEND="gloo", OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "pipeline.cli", "train", str(path), "--no-progress",
           "--set", "trainer.strategy=ddp", "--set", "trainer.accelerator=cpu", "--set", "trainer.devices=2"]
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-3000:]
    run_dirs = list((tmp_path / "runs").iterdir())
    assert len(run_dirs) == 1, run_dirs  # the re-launched rank inherited the run id: one run directory
    run_dir = run_dirs[0]
    hashes = {p.name: p.read_text() for p in run_dir.glob("weights_rank*.sha256")}
    assert sorted(hashes) == ["weights_rank0.sha256", "weights_rank1.sha256"]
    assert len(set(hashes.values())) == 1, hashes
    summary = json.loads((run_dir / "summary.json").read_text())
    # small data asks for a refit, which runs on one device: the run keeps its first fit and says so
    assert summary["refit"] is None and any("trainer.refit skipped" in n for n in summary["recipe"])
    assert summary["run_id"] == run_dir.name and set(summary["test"]) == {"accuracy", "balanced_accuracy", "kappa",
                                                                       "f1_macro"}
    # test windows are counted once across the ranks (no padding duplicates): the DDP score equals one process
    # scoring the same checkpoint on the whole test split (15 windows: an odd count that padding would change)
    import numpy as np
    import torch

    from datasets.datamodule import EpochsDataModule
    from pipeline.metrics import scores
    from pipeline.record.config import load_config
    from pipeline.record.run import load_network

    net, _, info, _ = load_network(run_dir)
    cfg, config_dir = load_config(run_dir / "config.yaml")
    dm = EpochsDataModule(cfg.data, path.parent, seed=cfg.seed, normalization=info["normalization"])
    X, y = dm.arrays("test")
    assert len(y) % 2 == 1 and summary["n_test"] == len(y)
    with torch.no_grad():
        preds = net(torch.from_numpy(np.ascontiguousarray(X))).argmax(1).numpy()
    assert scores(y, preds)["accuracy"] == pytest.approx(summary["test"]["accuracy"], abs=1e-6)
