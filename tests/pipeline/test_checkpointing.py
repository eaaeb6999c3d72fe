"""When ``last.ckpt`` is written: after the first epoch, then once enough time has passed, and always after the
final epoch (the schedule's last or the one early stopping ends), so ``checkpoint: last`` (copied to best.ckpt)
and a checkpoint named ``last`` always find the run's last epoch there; --resume loses at most the time limit."""

from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

import pipeline.train as train
from pipeline.record.config import load_config
from pipeline.train import run_training


@pytest.fixture
def saves(monkeypatch):
    """The epoch of every last.ckpt written."""
    written = []
    original = pl.Trainer.save_checkpoint

    def save_checkpoint(self, filepath, *args, **kwargs):
        if str(filepath).endswith("last.ckpt"):
            written.append(self.current_epoch)
        return original(self, filepath, *args, **kwargs)

    monkeypatch.setattr(pl.Trainer, "save_checkpoint", save_checkpoint)
    return written


def _last_epoch(summary) -> int:
    return torch.load(Path(summary["run_dir"]) / "checkpoints/last.ckpt", map_location="cpu", weights_only=False)["epoch"]


def test_rarely_written_but_always_the_last_epoch(write_config, monkeypatch, saves):
    monkeypatch.setattr(train, "LAST_CHECKPOINT_SECONDS", 3600.0)
    cfg, config_dir = load_config(write_config(), ["trainer.max_epochs=5"])
    summary = run_training(cfg, config_dir, progress=False)
    assert saves == [0, 4]  # the first epoch (a killed run can resume) and the final one
    assert _last_epoch(summary) == 4 and summary["epochs_trained"] == 5


def test_every_epoch_when_epochs_are_slow(write_config, monkeypatch, saves):
    monkeypatch.setattr(train, "LAST_CHECKPOINT_SECONDS", 0.0)
    cfg, config_dir = load_config(write_config(), ["trainer.max_epochs=3"])
    run_training(cfg, config_dir, progress=False)
    assert saves == [0, 1, 2]


def test_early_stopping_writes_the_epoch_it_ends(write_config, monkeypatch, saves):
    monkeypatch.setattr(train, "LAST_CHECKPOINT_SECONDS", 3600.0)
    cfg, config_dir = load_config(write_config(), ["trainer.max_epochs=40", "trainer.early_stopping_patience=1",
                                                   "trainer.checkpoint=best", "trainer.min_steps=0"])
    summary = run_training(cfg, config_dir, progress=False)
    stopped = summary["epochs_trained"] - 1
    assert stopped < 39, "early stopping did not trigger: the test shows nothing"
    assert saves[0] == 0 and saves[-1] == stopped and _last_epoch(summary) == stopped


def test_monitored_values_are_logged_when_something_reads_them():
    """Each self.log costs ~1 ms per epoch: the task logs the monitored values only for a reader."""
    from pytorch_lightning.callbacks import EarlyStopping, ModelCheckpoint

    from pipeline.task import MONITOR, monitors_read
    from pipeline.tracking import EpochMetricsCSV

    def trainer(*callbacks, progress=False):
        return pl.Trainer(callbacks=list(callbacks), enable_progress_bar=progress, logger=False,
                          enable_model_summary=False, enable_checkpointing=bool(callbacks))

    last = train.last_checkpoint_callback(Path("unused"))
    csv_rows = EpochMetricsCSV(Path("unused.csv"))
    assert not monitors_read(trainer(last, csv_rows), "cosine")
    assert monitors_read(trainer(last, csv_rows), "plateau")
    assert monitors_read(trainer(last, ModelCheckpoint(monitor=MONITOR, mode="max")), "cosine")
    assert monitors_read(trainer(last, EarlyStopping(MONITOR, mode="max")), "cosine")
    assert monitors_read(trainer(last, progress=True), "cosine")
