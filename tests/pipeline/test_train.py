"""End-to-end training runs on tiny synthetic recordings: the run directory, summary, resume after a real
kill, and bad input."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.record.config import load_config
from pipeline.train import run_training
from wandb_records import complete_records, history

METRIC_KEYS = {"accuracy", "balanced_accuracy", "kappa", "f1_macro"}
ROOT = Path(__file__).resolve().parents[2]


def test_run_directory_and_summary(write_config, capsys):
    cfg, config_dir = load_config(write_config(), ["trainer.max_epochs=2", "tracking.tags=[unit]",
                                                   "tracking.group=g1"])
    summary = run_training(cfg, config_dir, progress=False)
    run_dir = Path(summary["run_dir"])
    assert f"run directory: {run_dir}" in capsys.readouterr().out
    assert run_dir.parent == Path(cfg.runs_dir).resolve() and summary["model"] in run_dir.name
    for rel in ("config.yaml", "summary.json", "metrics.csv", "data_info.json", "checkpoints/best.ckpt",
                "checkpoints/last.ckpt", "plots/learning_curves.png", "plots/confusion_matrix.png"):
        assert (run_dir / rel).is_file() and (run_dir / rel).stat().st_size > 0, rel
    assert not list(run_dir.rglob("*.tmp"))
    assert not (run_dir / "wandb").exists()  # tracking disabled

    on_disk = json.loads((run_dir / "summary.json").read_text())
    assert on_disk == json.loads(json.dumps(summary))
    for key in ("run_id", "model", "model_params", "best_checkpoint", "val", "test", "n_params", "train_seconds",
                "data_hash", "code_version", "group", "tags", "seed", "classes", "n_train", "n_val", "n_test"):
        assert key in on_disk, key
    assert set(on_disk["val"]) == METRIC_KEYS and set(on_disk["test"]) == METRIC_KEYS
    # Two epochs on 30 windows learn little (measured: test balanced accuracy 0.467, 7 of 15), so no learning
    # bound here (test_learning.py has those); instead the test scores recomputed with numpy from the test
    # confusion matrix, which must hold every one of the 15 test windows (5 per class) exactly once
    confusion = np.array(on_disk["test_confusion_matrix"])
    assert confusion.shape == (3, 3) and confusion.sum(axis=1).tolist() == [5, 5, 5]
    n, hits = confusion.sum(), np.trace(confusion)
    chance_agreement = (confusion.sum(axis=0) * confusion.sum(axis=1)).sum() / n**2
    expected = {"accuracy": hits / n, "balanced_accuracy": (np.diag(confusion) / confusion.sum(axis=1)).mean(),
                "kappa": (hits / n - chance_agreement) / (1 - chance_agreement)}
    for key, value in expected.items():
        assert on_disk["test"][key] == pytest.approx(value, abs=1e-6), key
    assert on_disk["model_params"] == {"n_filters": 8} and on_disk["group"] == "g1" and on_disk["tags"] == ["unit"]
    assert on_disk["best_checkpoint"] == "checkpoints/best.ckpt" and on_disk["n_params"] > 0
    assert on_disk["n_test"] == 15 and on_disk["n_train"] + on_disk["n_val"] == 30
    assert on_disk["code_version"] and on_disk["code_version"] != "unknown"

    info = json.loads((run_dir / "data_info.json").read_text())
    assert set(info) >= {"classes", "ch_names", "ch_types", "sfreq", "n_times", "tmin", "tmax", "preprocessing",
                         "normalization", "data_hash", "split_summary"}
    assert info["classes"] == summary["classes"] and len(info["ch_names"]) == 8 and info["sfreq"] == 125.0

    rows = list(csv.DictReader((run_dir / "metrics.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [0, 1]
    assert {"train/loss", "val/loss", "val/balanced_accuracy", "train/balanced_accuracy", "lr"} <= set(rows[0])

    saved, _ = load_config(run_dir / "config.yaml")
    assert saved == cfg
    ckpt = torch.load(run_dir / "checkpoints/best.ckpt", map_location="cpu", weights_only=False)
    assert any(k.startswith("net.") for k in ckpt["state_dict"])
    assert ckpt["hyper_parameters"]["n_classes"] == 3
    # last.ckpt is the latest epoch even when validation did not improve (what --resume needs)
    assert torch.load(run_dir / "checkpoints/last.ckpt", map_location="cpu", weights_only=False)["epoch"] >= 1


def test_run_ids_unique_and_sortable(write_config):
    cfg, config_dir = load_config(write_config(), ["trainer.max_epochs=1", "data.split.val_fraction=0.3"])
    a = run_training(cfg, config_dir, progress=False)["run_id"]
    b = run_training(cfg, config_dir, progress=False)["run_id"]
    assert a != b and a[:15] <= b[:15]


def test_same_seed_same_run(write_config):
    """Deterministic runs (the default) are bit-identical: weights, per-epoch metrics and test results."""
    cfg, config_dir = load_config(write_config(), ["trainer.max_epochs=3", "model.name=eegnet", "model.params={}"])
    a, b = (run_training(cfg, config_dir, progress=False) for _ in range(2))
    weights = [torch.load(Path(s["run_dir"]) / "checkpoints/last.ckpt", map_location="cpu", weights_only=False)["state_dict"]
               for s in (a, b)]
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    rows = [list(csv.DictReader((Path(s["run_dir"]) / "metrics.csv").open())) for s in (a, b)]
    assert rows[0] == rows[1] and len(rows[0]) == 3
    assert a["test"] == b["test"] and a["val"] == b["val"]


def test_wandb_offline_run_is_recorded(write_config, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("WANDB_MODE", "offline")
    cfg, config_dir = load_config(write_config(), ["tracking.mode=auto", "tracking.tags=[t1]", "tracking.group=grp",
                                                   "trainer.max_epochs=3"])
    summary = run_training(cfg, config_dir, progress=False)
    run_dir = Path(summary["run_dir"])
    offline = list((run_dir / "wandb").glob("offline-run-*"))
    assert len(offline) == 1 and list(offline[0].glob("*.wandb"))
    assert summary["tracking"]["mode"] == "offline"
    media = offline[0] / "files" / "media"
    assert list(media.rglob("*confusion_matrix*"))  # the confusion matrix table and image were logged

    # the dashboard's curves: one train row and one val row per epoch, with every metric, steps increasing
    records = complete_records(next(offline[0].glob("*.wandb")))
    assert any(r.WhichOneof("record_type") == "exit" for r in records), "the W&B run file was never completed"
    run = next(r.run for r in records if r.WhichOneof("record_type") == "run")
    assert run.run_group == "grp" and list(run.tags) == ["t1"] and run.run_id == summary["run_id"]
    logged_config = {item.key: json.loads(item.value_json) for item in run.config.update}
    assert logged_config["model"]["name"] == "shallow" and logged_config["trainer"]["max_epochs"] == 3
    rows = history(records)
    epochs = summary["epochs_trained"]
    for stage in ("train", "val"):
        keys = {f"{stage}/{m}" for m in METRIC_KEYS | {"loss"}}
        stage_rows = [r for r in rows if any(k.startswith(f"{stage}/") for k in r)]
        assert [r["epoch"] for r in stage_rows] == list(range(epochs)), stage
        assert all(keys <= set(r) for r in stage_rows), stage
        steps = [r["trainer/global_step"] for r in stage_rows]
        assert steps == sorted(steps) and steps[-1] > steps[0]
    # exactly one model artifact: the best checkpoint, with its validation metrics
    models = [r.artifact for r in records if r.WhichOneof("record_type") == "artifact" and r.artifact.type == "model"]
    assert len(models) == 1 and "best" in models[0].aliases
    assert [m.path for m in models[0].manifest.contents] == ["best.ckpt"]
    metadata = json.loads(models[0].metadata)
    assert metadata["val"] == summary["val"] and metadata["best_epoch"] == summary["best_epoch"]
    test_rows = [r for r in rows if "test/balanced_accuracy" in r]
    assert len(test_rows) == 1 and test_rows[0]["test/balanced_accuracy"] == pytest.approx(summary["test"]["balanced_accuracy"], abs=1e-5)


def test_tracking_mode_resolution(monkeypatch, tmp_path):
    from pipeline.record.config import TrackingConfig
    from pipeline.tracking import resolve_mode

    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc
    monkeypatch.setenv("NETRC", str(tmp_path / ".netrc"))
    assert resolve_mode(TrackingConfig(mode="auto")) == "offline"
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert resolve_mode(TrackingConfig(mode="auto")) == "online"
    assert resolve_mode(TrackingConfig(mode="disabled")) == "disabled"
    assert resolve_mode(TrackingConfig(mode="offline")) == "offline"


def test_one_class_split_is_a_clear_error(write_config):
    cfg, config_dir = load_config(write_config(), ["data.events={grasp: grasp}"])
    with pytest.raises((ValueError, RuntimeError), match="class"):
        run_training(cfg, config_dir, progress=False)


def test_unknown_model_lists_known(write_config):
    cfg, config_dir = load_config(write_config(), ["model.name=transformerx"])
    with pytest.raises(ValueError, match="eegnet"):
        run_training(cfg, config_dir, progress=False)


def test_diverging_training_names_epoch_and_batch(write_config):
    cfg, config_dir = load_config(write_config(), ["optim.lr=1e30", "trainer.gradient_clip_val=null",
                                                   "optim.weight_decay=0", "trainer.max_epochs=3"])
    with pytest.raises(RuntimeError, match=r"epoch \d+, train batch \d+"):
        run_training(cfg, config_dir, progress=False)


def test_resume_needs_checkpoints(tmp_path, write_config):
    with pytest.raises(FileNotFoundError, match="config.yaml"):
        run_training(None, resume=tmp_path)
    cfg, _ = load_config(write_config())
    from pipeline.record.config import save_config

    save_config(cfg, tmp_path / "config.yaml")
    with pytest.raises(FileNotFoundError, match="last.ckpt"):
        run_training(None, resume=tmp_path)


@pytest.mark.slow
def test_resume_after_a_real_kill(write_config, tmp_path):
    """`bmi train` is SIGKILLed once it has saved a checkpoint; `--resume` carries on to max_epochs."""
    max_epochs = 60
    path = write_config("resume.yaml", trainer={"max_epochs": max_epochs, "enable_progress_bar": False,
                                                "early_stopping_patience": None})
    cmd = [sys.executable, "-m", "pipeline.cli", "train", str(path), "--name", "killed", "--no-progress"]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    run_dir = tmp_path / "runs" / "killed"
    last = run_dir / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 60
    try:
        while not last.is_file() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert last.is_file(), proc.communicate(timeout=5)[0].decode()[-2000:]
        time.sleep(0.3)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL, "training finished before it could be killed"
    assert not (run_dir / "summary.json").exists()
    saved = torch.load(last, map_location="cpu", weights_only=False)
    saved_epoch = saved["epoch"]
    assert saved_epoch < max_epochs - 1

    out = subprocess.run([sys.executable, "-m", "pipeline.cli", "train", "--resume", str(run_dir), "--no-progress"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    # continued where the checkpoint left off (not from scratch) and ran to the end
    assert summary["resumed_from_epoch"] >= saved_epoch + 1 > 0
    assert summary["epochs_trained"] == max_epochs
    final = torch.load(last, map_location="cpu", weights_only=False)
    assert final["epoch"] >= max_epochs - 1 and final["global_step"] > saved["global_step"]
    epochs = [int(r["epoch"]) for r in csv.DictReader((run_dir / "metrics.csv").open())]
    assert epochs == list(range(max_epochs))


@pytest.mark.slow
def test_ctrl_c_marks_the_run_interrupted_and_resume_finishes_it(write_config, tmp_path):
    """SIGINT while training: exit 130, run.json says interrupted; --resume continues it to the end."""
    path = write_config("sigint.yaml", trainer={"max_epochs": 60, "enable_progress_bar": False,
                                                "early_stopping_patience": None})
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "train", str(path), "--name", "stopped"], cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    last = tmp_path / "runs" / "stopped" / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 60
    while not last.is_file() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130 and out.rstrip().endswith("Interrupted."), out[-2000:]
    status = json.loads((tmp_path / "runs" / "stopped" / "run.json").read_text())
    assert status["status"] == "interrupted" and status["error"] == "KeyboardInterrupt"
    resumed = subprocess.run([sys.executable, "-m", "pipeline.cli", "train", "--resume", str(tmp_path / "runs" / "stopped")],
                             cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert json.loads((tmp_path / "runs" / "stopped" / "run.json").read_text())["status"] == "finished"
