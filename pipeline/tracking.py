"""Experiment tracking: Weights & Biases through Lightning's WandbLogger, and local per-epoch records.

W&B is offline by default when no API key is configured (runs are kept on disk for ``wandb sync``),
online when one is, and off with ``tracking.mode: disabled``. The local ``metrics.csv`` is written
whatever the mode, so ``bmi compare`` works with no network and no account.
"""

from __future__ import annotations

import csv
import netrc
import os
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl

from datasets.atomic import atomic_path

from .record.config import TrackingConfig


def has_wandb_key() -> bool:
    """An API key in the environment or in ~/.netrc (what ``wandb login`` writes)."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        hosts = netrc.netrc().hosts
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False
    return any("wandb" in host for host in hosts)


def resolve_mode(cfg: TrackingConfig) -> str:
    """The W&B mode to use: the config's, ``WANDB_MODE`` from the environment for ``auto``, else key-based."""
    if cfg.mode != "auto":
        return cfg.mode
    env = os.environ.get("WANDB_MODE")
    if env in ("online", "offline", "disabled"):
        return env
    return "online" if has_wandb_key() else "offline"


def grouping(group: str | None, run_dir: Path, config: dict[str, Any]) -> dict[str, Any]:
    """Where a run sits among many: its ``study`` (the sweep's study or the CV's group, also its W&B group), its
    ``fold`` (a CV's split), its sweep ``trial`` (from a ``trial<n>`` run folder) and its ``subject`` where the
    config names one (the held-out subject of a LOSO over listed BIDS subjects, or the only one listed); logged
    as the W&B config's ``grouping`` so the hosted dashboard groups and filters the runs as ``bmi compare`` does."""
    data = config.get("data") or {}
    split = data.get("split") or {}
    method = split.get("method")
    fold = split.get("fold") if method in ("kfold", "loso") else None
    name = Path(run_dir).name
    trial = int(name[5:]) if name.startswith("trial") and name[5:].isdigit() else None
    subjects = sorted(str(s) for s in ((data.get("bids") or {}).get("subjects") or []))
    subject = None
    if method == "loso" and fold is not None and 0 <= fold < len(subjects):
        subject = subjects[fold]
    elif len(subjects) == 1:
        subject = subjects[0]
    return {"study": group or (config.get("tracking") or {}).get("group"), "fold": fold, "trial": trial,
            "subject": subject}


def make_wandb_logger(cfg: TrackingConfig, run_id: str, run_dir: Path, group: str | None, config: dict[str, Any]):
    """A WandbLogger for this run, or None when tracking is disabled. The config gets the run's
    :func:`grouping` (study, fold, trial, subject) beside the experiment config."""
    config = {**config, "grouping": grouping(group or cfg.group, run_dir, config)}
    mode = resolve_mode(cfg)
    if mode == "disabled":
        return None
    from pytorch_lightning.loggers import WandbLogger

    os.environ.setdefault("WANDB_SILENT", "true")
    logger = WandbLogger(
        project=cfg.project,
        entity=cfg.entity,
        name=cfg.name or run_id,
        id=run_id,
        group=group or cfg.group,
        tags=list(cfg.tags),
        save_dir=str(run_dir),
        mode=mode,
        config=config,
        log_model=False,  # Lightning would upload every checkpoint callback's file; train.py logs best.ckpt itself
        resume="allow",
    )
    # Lightning passes anonymous=None, which this W&B version warns about on every run ("has no effect")
    logger._wandb_init.pop("anonymous", None)
    if mode == "online":  # the user asked for the server: fail now, clearly, rather than after training
        try:
            logger.experiment
        except Exception as err:  # wandb raises its own CommError/UsageError types
            raise RuntimeError(
                f"W&B online run could not start ({type(err).__name__}: {err}). Check the network and "
                "`wandb login`, or set 'tracking.mode' to offline (sync later with `wandb sync`) or disabled."
            ) from err
    return logger


class EpochMetricsCSV(pl.Callback):
    """Writes one row per epoch (epoch, step, lr, train/*, val/*) to ``metrics.csv``; keeps earlier rows on resume.

    A row is complete once its epoch is (from the metrics the task computed for it, ``DecoderTask.epoch_metrics``),
    and the file is rewritten atomically: always before a checkpoint is saved (so a run killed right after a
    checkpoint resumes with every epoch of that checkpoint in the file) and when training ends; in between at most
    every ``write_every_s`` seconds (a rewrite costs ~1 ms, a tenth of a short epoch's fixed cost).
    """

    def __init__(self, path: Path, write_every_s: float = 2.0):
        self.path, self.write_every_s = path, write_every_s
        self._pending: dict[str, Any] | None = None  # the epoch being validated: its number and learning rate
        self._rows: list[dict[str, Any]] | None = None  # the file's rows (read once, on resume) and the new ones
        self._unwritten = False
        self._written_at = float("-inf")

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            lr = trainer.optimizers[0].param_groups[0]["lr"] if trainer.optimizers else None
            self._pending = {"epoch": trainer.current_epoch, "lr": lr}  # the rate this epoch trained with

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        self._flush(trainer, pl_module, need_train=True, force=True)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._flush(trainer, pl_module)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._flush(trainer, pl_module, force=True)

    def _flush(self, trainer: pl.Trainer, pl_module: pl.LightningModule, need_train: bool = False,
               force: bool = False) -> None:
        if trainer.global_rank != 0:
            return
        self._complete(pl_module, need_train)
        if self._unwritten and (force or time.monotonic() - self._written_at >= self.write_every_s):
            fields = list(dict.fromkeys(k for r in self._rows for k in r))
            with atomic_path(self.path, ".csv") as tmp, tmp.open("w", newline="") as fh:
                writer = csv.DictWriter(fh, fieldnames=fields)
                writer.writeheader()
                writer.writerows(self._rows)
            self._unwritten, self._written_at = False, time.monotonic()

    def _complete(self, pl_module: pl.LightningModule, need_train: bool) -> None:
        """The pending epoch's row, once its metrics are there (with ``need_train``: its training metrics too)."""
        if self._pending is None:
            return
        epoch = self._pending["epoch"]
        stages = {s: m for s, m in pl_module.epoch_metrics.items() if s in ("train", "val") and m["epoch"] == epoch}
        if need_train and "train" not in stages:
            return
        row = {"epoch": epoch, "step": pl_module.global_step, "lr": self._pending["lr"]}
        for stage in ("train", "val"):
            row.update(sorted((k, v) for k, v in stages.get(stage, {}).items() if k != "epoch"))
        if self._rows is None:
            self._rows = list(csv.DictReader(self.path.open())) if self.path.exists() else []
        self._rows = [r for r in self._rows if int(r["epoch"]) != epoch] + [row]
        self._pending, self._unwritten = None, True


def progress_bar() -> pl.Callback:
    """Lightning's rich bar showing the epoch and its validation balanced accuracy (no W&B version number)."""
    from pytorch_lightning.callbacks import RichProgressBar

    from .task import MONITOR

    class EpochBar(RichProgressBar):
        def get_metrics(self, trainer, pl_module):
            value = super().get_metrics(trainer, pl_module).get(MONITOR)
            return {"val bal_acc": f"{float(value):.3f}"} if value is not None else {}

    return EpochBar()
