"""A training run: data module + decoder + Lightning Trainer -> ``runs/<run_id>/`` with everything needed
to compare, evaluate, resume and export it (the run record, :mod:`pipeline.record.run`).

:func:`run_training` is a short list of named steps. Everything that can fail before training starts (the
config, the recordings, the split, a window too short for the model) fails before the run directory exists,
so it leaves nothing; a run that fails later is marked ``failed`` (or ``interrupted``) in ``run.json`` with its
error, and in W&B. A run directory is written by one run only: ``--resume`` is the only way to continue one.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from datasets.atomic import copy_file, write_json

from . import recipe, views
from .record import run as run_record
from .record.config import ExperimentConfig, save_config

RUN_ID_ENV = "BMI_RUN_ID"  # DDP re-launches the command per rank; all ranks must share one run id


@dataclass
class Run:
    """One training run as it goes: its config, where it writes, and what it has built so far."""

    cfg: ExperimentConfig
    config_dir: Path
    run_dir: Path
    run_id: str
    group: str | None
    resume_from: Path | None = None  # last.ckpt when resuming
    notes: list[str] = field(default_factory=list)  # what the 'auto' settings chose
    warnings: list[str] = field(default_factory=list)
    view_check: Any = None  # pipeline.views.ViewCheck: which band separates the training trials (when checked)

    @property
    def rank_zero(self) -> bool:
        return is_rank_zero()


def is_rank_zero() -> bool:
    """The process that writes the run record: srun starts every rank itself (SLURM_PROCID); Lightning's own
    launcher sets LOCAL_RANK / NODE_RANK in the processes it starts."""
    return all(int(os.environ.get(k, "0")) == 0 for k in ("LOCAL_RANK", "NODE_RANK", "SLURM_PROCID"))


def run_training(
    cfg: ExperimentConfig | None,
    config_dir: str | Path | None = None,
    *,
    run_dir: str | Path | None = None,
    resume: str | Path | None = None,
    group: str | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train one decoder and write its run directory; returns the summary (also in ``summary.json``).

    With ``resume=RUN_DIR`` the run continues from its last checkpoint with its own saved config.
    """
    run = open_run(cfg, config_dir, run_dir=run_dir, resume=resume, group=group)
    dm = prepare_data(run)
    net = build_network(run, dm)
    start_record(run, dm)
    logger = None
    try:
        from .tracking import make_wandb_logger

        logger = make_wandb_logger(run.cfg.tracking, run.run_id, run.run_dir, run.group, _config_mapping(run.cfg))
        task = build_task(run, net, dm)
        trainer, kept = build_trainer(run, logger, progress)
        train_seconds = fit(run, trainer, task, dm)
        best = keep_checkpoint(run, trainer, kept)
        val, test = score_kept_model(trainer, task, dm, best)
        if not trainer.is_global_zero:
            return {"run_id": run.run_id, "run_dir": str(run.run_dir), "val": val, "test": test}
        refitted = refit(run, dm, refit_epochs(run, trainer, best), progress) if wants_refit(run, trainer) else None
        summary = write_summary(run, trainer, task, dm, logger, best, val, test, train_seconds, kept, refitted)
        finish_tracking(logger, summary, run.cfg.tracking.log_checkpoint)
        run_record.mark_ended(run.run_dir, None)
        return summary
    except BaseException as err:
        if run.rank_zero:
            run_record.mark_ended(run.run_dir, err)
            fail_tracking(logger, err)
        raise


# -- the steps ------------------------------------------------------------------------------------------------


def open_run(cfg, config_dir, *, run_dir=None, resume=None, group=None) -> Run:
    """The run's config, id and directory (not created yet); config errors are raised here, before any data."""
    if resume is not None:
        resume = Path(resume)
        cfg, config_dir = run_record.read_config(resume)
        if (resume / run_record.SUMMARY).is_file():
            raise RuntimeError(f"Run {resume} has finished (it has {run_record.SUMMARY}): there is nothing to resume. "
                               "Start a new run with bmi train CONFIG.")
        last = run_record.last_checkpoint(resume)
        run_id, run_dir = resume.name, resume
    else:
        if cfg is None:
            raise ValueError("run_training needs a config (or resume=RUN_DIR).")
        check_config(cfg, config_dir)
        last = None
        # Only DDP child ranks (LOCAL_RANK > 0, launched by Lightning from this process) inherit the id;
        # a later run in the same process must get its own.
        inherited = os.environ.get(RUN_ID_ENV) if int(os.environ.get("LOCAL_RANK", "0")) > 0 else None
        run_id = inherited or cfg.name or run_record.new_run_id(cfg.model.name)
        run_dir = Path(run_dir) if run_dir else Path(cfg.runs_dir) / run_id
        if is_rank_zero():  # a taken name fails now, before any recording is read
            run_record.check_free(run_dir)
    os.environ[RUN_ID_ENV] = run_id
    return Run(cfg=cfg, config_dir=Path(config_dir or ".").resolve(), run_dir=Path(run_dir).resolve(), run_id=run_id,
               group=group or cfg.tracking.group, resume_from=last)


def check_config(cfg: ExperimentConfig, config_dir: str | Path | None = None) -> None:
    """What the config alone can tell is wrong, before any recording is read: the model's name and parameters
    and, with ``config_dir``, recording files that are missing or in a format MNE cannot read."""
    import models

    if config_dir is not None:
        from datasets.reading import list_recordings

        list_recordings(cfg.data, Path(config_dir).resolve())

    names = [cfg.model.name] if cfg.model.name != "auto" else list(recipe.AUTO_MODELS)
    if cfg.model.name == "auto" and (cfg.data.bandpass == "auto" or recipe.keeps_only_slow_fields(cfg.data.bandpass)):
        names.append(recipe.SLOW_FIELDS_MODEL)  # the slow fields' decoder may be chosen too
    for name in names:
        try:
            models.check_params(name, cfg.model.params)
        except TypeError as err:
            raise TypeError(f"'model.params': {err}" + (" ('model.name' is auto: the params must fit every model auto "
                                                          f"may choose, {', '.join(names)})" if len(names) > 1 else "")) from None


def prepare_data(run: Run):
    """Read the recordings (through the cache), split them, and resolve the ``auto`` settings for this data."""
    import pytorch_lightning as pl

    from datasets.datamodule import EpochsDataModule

    from .allocator import keep_freed_memory

    cfg = run.cfg
    if cfg.trainer.keep_freed_memory:
        keep_freed_memory()
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    cfg, view_notes, view_warnings, run.view_check = views.resolve(cfg, run.config_dir, run_record.data_seed(cfg))
    dm = EpochsDataModule(cfg.data, run.config_dir, seed=run_record.data_seed(cfg))
    dm.prepare_data()
    dm.setup("fit")
    run.cfg, notes = recipe.resolve(cfg, dm)  # 'auto' model / batch size / epochs -> the saved config says what ran
    run.notes = [*view_notes, *notes]
    dm.cfg = run.cfg.data
    run.warnings = [*view_warnings, *recipe.split_warnings(run.cfg)] if run.resume_from is None else []
    return dm


def build_network(run: Run, dm):
    """The decoder: a new one from the registry (with its data-dependent set-up), or a pretrained one to fine-tune."""
    import models

    cfg = run.cfg
    if cfg.finetune is not None:
        from .pretrained import pretrained_network

        net, note = pretrained_network(cfg.finetune, dm)
        run.notes.append(note)
        return net
    net = models.build(cfg.model.name, n_chans=dm.n_chans, n_times=dm.n_times, n_outputs=len(dm.classes),
                       sfreq=dm.sfreq, **cfg.model.params)
    if hasattr(net, "fit_data") and run.resume_from is None:  # data-dependent set-up (logvar's whitening, CSP init)
        net.fit_data(dm.model_windows("train"), dm.model_labels("train"))
    return net


def start_record(run: Run, dm) -> None:
    """Claim the run directory (or reopen the one being resumed), save the resolved config, say what runs."""
    if not run.rank_zero:
        return
    if run.resume_from is None:
        run_record.claim(run.run_dir)
    (run.run_dir / run_record.CHECKPOINTS).mkdir(parents=True, exist_ok=True)
    (run.run_dir / "plots").mkdir(exist_ok=True)
    print(f"run directory: {run.run_dir}", flush=True)
    save_config(run.cfg, run.run_dir / run_record.CONFIG)
    run_record.write_status(run.run_dir, run_id=run.run_id, config_dir=str(run.config_dir), group=run.group,
                            status="running", error=None, started=time.strftime("%Y-%m-%dT%H:%M:%S"))
    for line in [*run.notes, *recipe.describe_split(run.cfg, dm.split_summary)]:
        print(line, flush=True)
    for line in run.warnings:
        print(f"warning: {line}", file=sys.stderr, flush=True)


def build_task(run: Run, net, dm):
    """The LightningModule around the decoder: loss, optimiser, schedule, augmentation."""
    from datasets.augment import BatchAugment

    from .task import DecoderTask

    cfg = run.cfg
    return DecoderTask(
        net, len(dm.classes), lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay, scheduler=cfg.optim.scheduler,
        max_epochs=cfg.trainer.max_epochs, step_size=cfg.optim.step_size, gamma=cfg.optim.gamma,
        class_weights=_class_weights(cfg, dm), label_smoothing=cfg.optim.label_smoothing,
        augment=BatchAugment(cfg.augment, dm.sfreq, seed=cfg.seed) if cfg.augment.enabled else None,
        smoothing_epochs=cfg.trainer.smoothing_epochs, recalibrate_batchnorm=cfg.trainer.recalibrate_batchnorm,
        compile=cfg.trainer.compile,
    )


@dataclass
class _Kept:
    """The callbacks that decide which model the run keeps."""

    checkpoint: Any  # ModelCheckpoint writing best.ckpt ('best' / 'smoothed'), or None ('last')
    early_stopping: Any


def build_trainer(run: Run, logger, progress: bool, *, refit: bool = False):
    """The Lightning Trainer with the run's checkpoints, per-epoch records and (for fine-tuning) freezing.
    For the refit (:func:`refit`): its own checkpoint folder, no per-epoch records, one validation at the end
    (which re-estimates BatchNorm statistics for the final weights)."""
    import pytorch_lightning as pl
    from pytorch_lightning.callbacks import EarlyStopping, ModelCheckpoint

    from .task import MONITOR, SMOOTHED
    from .tracking import EpochMetricsCSV, progress_bar

    cfg, ckpt_dir = run.cfg, run.run_dir / run_record.CHECKPOINTS / ("refit" if refit else "")
    # which model the run keeps: 'best' / 'smoothed' write best.ckpt when their monitor improves; 'last' keeps
    # the model at the end of the schedule (last.ckpt)
    monitor, mode = (MONITOR, "max") if cfg.trainer.checkpoint == "best" else (SMOOTHED, "min")
    checkpoint = ModelCheckpoint(
        dirpath=ckpt_dir, filename="best", monitor=monitor, mode=mode,
        save_top_k=1, auto_insert_metric_name=False, enable_version_counter=False,
    ) if cfg.trainer.checkpoint != "last" else None
    # Lightning >= 2.6 refreshes save_last only when a top-k checkpoint was written in that epoch; resume needs
    # a recent epoch, so "last" is its own unmonitored checkpoint (after the first epoch, then every
    # LAST_CHECKPOINT_SECONDS, and after the final epoch).
    last_checkpoint = last_checkpoint_callback(ckpt_dir, LAST_CHECKPOINT_SECONDS)
    callbacks = [c for c in (checkpoint, last_checkpoint) if c is not None]
    if not refit:
        callbacks.append(EpochMetricsCSV(run.run_dir / run_record.METRICS_CSV))
    show_progress = progress and cfg.trainer.enable_progress_bar
    if show_progress:
        callbacks.append(progress_bar())
    if cfg.finetune is not None:
        from .pretrained import frozen_epochs
        from .task import FreezeSchedule

        callbacks.append(FreezeSchedule(frozen_epochs(cfg)))
    early_stopping = None
    if cfg.trainer.early_stopping_patience:
        early_stopping = EarlyStopping(monitor, mode=mode, patience=cfg.trainer.early_stopping_patience)
        callbacks.append(early_stopping)
    trainer = pl.Trainer(
        accelerator=cfg.trainer.accelerator,
        devices=cfg.trainer.devices,
        num_nodes=cfg.trainer.num_nodes,
        strategy=cfg.trainer.strategy,
        precision=_precision(cfg),
        max_epochs=cfg.trainer.max_epochs,
        min_epochs=cfg.trainer.min_epochs,
        min_steps=cfg.trainer.min_steps,  # early stopping cannot end a run before this many optimiser steps
        gradient_clip_val=cfg.trainer.gradient_clip_val,
        deterministic="warn" if cfg.trainer.deterministic else False,
        callbacks=callbacks,
        logger=logger if logger is not None else False,
        enable_progress_bar=show_progress,
        enable_model_summary=False,
        log_every_n_steps=cfg.trainer.log_every_n_steps,
        limit_train_batches=cfg.trainer.limit_train_batches,
        limit_val_batches=cfg.trainer.limit_val_batches,
        check_val_every_n_epoch=cfg.trainer.max_epochs if refit else 1,
        num_sanity_val_steps=0,
        default_root_dir=str(run.run_dir),
        use_distributed_sampler=False,  # our batch sampler shards by rank itself
    )
    if cfg.trainer.deterministic:
        import torch

        # Deterministic mode NaN-fills every torch.empty by default, ~6% of a CPU training step here; our ops never
        # read uninitialised memory, so runs stay bit-identical without it (tests/pipeline/test_train.py).
        torch.utils.deterministic.fill_uninitialized_memory = False
    return trainer, _Kept(checkpoint, early_stopping)


#: a killed run resumes from at most this many seconds of training ago (``last.ckpt``)
LAST_CHECKPOINT_SECONDS = 30.0


def last_checkpoint_callback(ckpt_dir: Path, min_seconds: float = LAST_CHECKPOINT_SECONDS):
    """``last.ckpt`` (what ``--resume`` continues and what a run that keeps its last epoch copies to best.ckpt),
    written at the end of the first epoch this process trains, then at the end of an epoch once ``min_seconds``
    have passed since the previous one, and always after the final epoch (the schedule's last, or the one early
    stopping ends). Writing it every epoch cost ~14 ms per epoch (12% of a 5-batch epoch); a run killed without
    warning loses at most ``min_seconds`` of training, and the finished run's last.ckpt is its last epoch."""
    from pytorch_lightning.callbacks import ModelCheckpoint

    class LastCheckpoint(ModelCheckpoint):
        def __init__(self):
            super().__init__(dirpath=ckpt_dir, filename="last", monitor=None, save_top_k=1, every_n_epochs=1,
                             auto_insert_metric_name=False, enable_version_counter=False)
            self._saved_at: float | None = None

        def on_train_epoch_end(self, trainer, pl_module) -> None:
            final = trainer.should_stop or (trainer.max_epochs is not None and trainer.max_epochs >= 0
                                            and trainer.current_epoch + 1 >= trainer.max_epochs)
            due = final or self._saved_at is None or time.monotonic() - self._saved_at >= min_seconds
            # every DDP rank must take the same decision (saving meets at a barrier): rank zero's clock decides
            if trainer.strategy.broadcast(bool(due), src=0):
                super().on_train_epoch_end(trainer, pl_module)
                self._saved_at = time.monotonic()

    return LastCheckpoint()


def fit(run: Run, trainer, task, dm) -> float:
    """Train (from the last checkpoint when resuming); returns the seconds it took. Under DDP every rank
    records a digest of its final weights, so a run shows its ranks stayed in sync."""
    started = time.monotonic()
    try:
        trainer.fit(task, datamodule=dm, ckpt_path=str(run.resume_from) if run.resume_from else None)
    except SystemExit:
        if trainer.interrupted:  # Lightning answers Ctrl-C with its own shutdown and exit(1): it was a Ctrl-C
            raise KeyboardInterrupt from None
        raise
    seconds = time.monotonic() - started
    if trainer.world_size > 1:
        digest = hashlib.sha256(b"".join(p.detach().cpu().numpy().tobytes() for p in task.net.state_dict().values()))
        (run.run_dir / f"weights_rank{trainer.global_rank}.sha256").write_text(digest.hexdigest())
    return seconds


def keep_checkpoint(run: Run, trainer, kept: _Kept) -> str:
    """``checkpoints/best.ckpt`` is always the model the run keeps (what export and W&B take): the monitored
    best, or with ``checkpoint: last`` a copy of the last epoch's. Returns its path."""
    ckpt_dir = run.run_dir / run_record.CHECKPOINTS
    best = (kept.checkpoint.best_model_path if kept.checkpoint is not None else "") or str(ckpt_dir / "last.ckpt")
    if run.cfg.trainer.checkpoint == "last" and trainer.is_global_zero:
        best = str(copy_file(ckpt_dir / "last.ckpt", ckpt_dir / "best.ckpt"))
    if trainer.world_size > 1:
        trainer.strategy.barrier()
        best = str(ckpt_dir / "best.ckpt") if run.cfg.trainer.checkpoint == "last" else best
    return best


@dataclass
class _Refit:
    """The decoder trained again on training + validation trials (``trainer.refit``): the model the run keeps."""

    dm: Any  # the data module whose training split holds the validation trials too
    task: Any
    best: str  # checkpoints/best.ckpt, a copy of the refit's last epoch
    first_fit: str  # checkpoints/first_fit.ckpt, the first fit's kept model
    test: dict[str, float]
    seconds: float
    epochs: int
    steps: int


def wants_refit(run: Run, trainer) -> bool:
    """``trainer.refit`` (resolved from ``auto``), on one process: under DDP the run keeps its first fit."""
    if not run.cfg.trainer.refit:
        return False
    if trainer.world_size > 1:
        run.notes.append(f"trainer.refit skipped: the refit runs on one device, this run used {trainer.world_size}; "
                         "the kept decoder is the first fit's")
        print(run.notes[-1], flush=True)
        return False
    return True


def refit_epochs(run: Run, trainer, best: str) -> int:
    """As many epochs as the first fit ran (``checkpoint: last``, early stopping included) or chose."""
    if run.cfg.trainer.checkpoint == "last":
        return max(1, trainer.current_epoch)
    kept = _checkpoint_epoch(Path(best))
    return (kept + 1) if kept is not None else max(1, trainer.current_epoch)


def refit(run: Run, dm, epochs: int, progress: bool) -> _Refit:
    """Train the decoder again from the start (same seed, same recipe) on the training and validation trials
    for ``epochs`` epochs, and make it the run's kept model (``checkpoints/best.ckpt``); the first fit's kept
    model stays as ``checkpoints/first_fit.ckpt``."""
    from dataclasses import replace

    import pytorch_lightning as pl

    from datasets.datamodule import EpochsDataModule

    cfg = run.cfg
    trainer_cfg = replace(cfg.trainer, max_epochs=epochs, checkpoint="last", early_stopping_patience=None, min_steps=0)
    refit_run = replace(run, cfg=replace(cfg, trainer=trainer_cfg), resume_from=None, notes=[])
    print(f"refit: training again on training + validation trials for {epochs} epochs (trainer.refit)", flush=True)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    refit_dm = EpochsDataModule(cfg.data, run.config_dir, seed=run_record.data_seed(cfg), train_on_val=True)
    refit_dm.epochs = dm.epochs  # already read and preprocessed
    refit_dm.setup("fit")
    task = build_task(refit_run, build_network(refit_run, refit_dm), refit_dm)
    trainer, _ = build_trainer(refit_run, None, progress, refit=True)
    seconds = fit(refit_run, trainer, task, refit_dm)
    ckpt_dir = run.run_dir / run_record.CHECKPOINTS
    first_fit = str(copy_file(ckpt_dir / "best.ckpt", ckpt_dir / "first_fit.ckpt"))
    best = str(copy_file(ckpt_dir / "refit" / "last.ckpt", ckpt_dir / "best.ckpt"))
    _quiet_progress(trainer)
    trainer.test(task, datamodule=refit_dm, ckpt_path=best, verbose=False)
    test = _metrics(task.epoch_metrics.get("test", {}), "test")
    return _Refit(refit_dm, task, best, first_fit, test, seconds, epochs, trainer.global_step)


def score_kept_model(trainer, task, dm, best: str) -> tuple[dict[str, float], dict[str, float]]:
    """Validation and test scores of the kept model."""
    _quiet_progress(trainer)
    trainer.validate(task, datamodule=dm, ckpt_path=best, verbose=False)
    trainer.test(task, datamodule=dm, ckpt_path=best, verbose=False)
    return tuple(_metrics(task.epoch_metrics.get(stage, {}), stage) for stage in ("val", "test"))


def write_summary(run: Run, trainer, task, dm, logger, best: str, val, test, train_seconds: float,
                  kept: _Kept, refitted: _Refit | None = None) -> dict[str, Any]:
    """``data_info.json``, the plots and ``summary.json`` (written last), with the classical references beside
    the decoder; prints the run's warnings and its last line. With a refit, the kept model (checkpoint, test
    score, data statistics, classical references' training trials) is the refit's; validation is the first fit's."""
    from . import plots
    from .baseline import all_baselines, refit_baselines, versus_baselines

    cfg, run_dir = run.cfg, run.run_dir
    kept_epoch = _checkpoint_epoch(Path(best))
    first_dm, first_task, first_fit_test = dm, task, test
    if refitted is not None:
        dm, task, best, test = refitted.dm, refitted.task, refitted.best, refitted.test
    new_warnings = recipe.training_warnings(
        cfg, trainer.global_step, kept_epoch, trainer.current_epoch - 1,
        # a stop on the last epoch itself ended nothing early
        early_stopped=bool(kept.early_stopping is not None
                           and 0 < kept.early_stopping.stopped_epoch < cfg.trainer.max_epochs - 1))
    for line in new_warnings:
        print(f"warning: {line}", file=sys.stderr, flush=True)
    write_json(run_dir / run_record.DATA_INFO, dm.data_info())
    confusion = task.test_confusion.numpy() if task.test_confusion is not None else None
    plot_paths = []
    if (run_dir / run_record.METRICS_CSV).is_file():
        plot_paths.append(plots.learning_curves(run_dir / run_record.METRICS_CSV, run_dir / "plots" / "learning_curves.png"))
    if confusion is not None:
        plot_paths.append(plots.confusion_matrix(confusion, dm.classes, run_dir / "plots" / "confusion_matrix.png"))
    summary = {
        "run_id": run.run_id,
        "run_dir": str(run_dir),
        "model": cfg.model.name,
        "model_params": dict(cfg.model.params),
        "best_checkpoint": str(Path(best).relative_to(run_dir)) if best else None,
        "best_epoch": kept_epoch,  # of the first fit (the refit keeps its last epoch)
        "checkpoint_rule": cfg.trainer.checkpoint,
        "epochs_trained": trainer.current_epoch,
        "optimizer_steps": trainer.global_step,
        "recipe": run.notes,
        "view_check": run.view_check.to_dict() if run.view_check is not None else None,
        "finetuned_from": cfg.finetune.run if cfg.finetune is not None else None,
        "warnings": run.warnings + new_warnings,
        "resumed_from_epoch": first_task.start_epoch if run.resume_from else None,
        "val": val,
        "test": test,
        "test_confusion_matrix": confusion.tolist() if confusion is not None else None,
        "classes": dm.classes,
        "n_params": int(sum(p.numel() for p in task.net.parameters())),
        "train_seconds": round(train_seconds, 2),
        "data_hash": dm.data_hash,
        "code_version": run_record.code_version(),
        "seed": cfg.seed,
        "group": run.group,
        "tags": list(cfg.tracking.tags),
        "refit": None if refitted is None else {
            "epochs": refitted.epochs, "optimizer_steps": refitted.steps, "train_seconds": round(refitted.seconds, 2),
            "n_train": refitted.dm.split_summary["train"]["n_epochs"],
            "first_fit_checkpoint": str(Path(refitted.first_fit).relative_to(run_dir)),
            "first_fit_test": first_fit_test, "note": "val: the first fit's score on trials the refit then trained on"},
        "n_train": first_dm.split_summary["train"]["n_epochs"],
        "n_val": first_dm.split_summary["val"]["n_epochs"],
        "n_test": dm.split_summary["test"]["n_epochs"],
        "precision": _precision(cfg),
        "compile": first_task.compile_status,  # trainer.compile: "compiled", why it ran eager, or None (not asked)
        "accelerator": str(trainer.accelerator.__class__.__name__),
        "tracking": {"mode": logger.experiment.settings.mode if logger is not None else "disabled",
                     "project": cfg.tracking.project, "entity": cfg.tracking.entity,
                     "wandb_dir": str(run_dir / "wandb") if logger is not None else None},
        "plots": [str(p) for p in plot_paths],
    }
    if dm.test_kept is not None:  # 'reject': the test score on every epoch (above) and on the epochs it keeps
        summary["test_without_rejected"] = _subset_scores(task.net, dm, dm.test_kept)
        summary["n_test_rejected"] = int((~dm.test_kept).sum())
    summary["baselines"] = all_baselines(dm) if refitted is None else refit_baselines(first_dm, dm)
    summary["baseline"] = summary["baselines"]["csp_lda"]  # the CSP+LDA reference, as before
    summary["versus_baselines"] = versus_baselines(test, summary["baselines"])
    write_json(run_dir / run_record.SUMMARY, summary)
    print(versus_line(cfg.model.name, test, summary["baselines"]), flush=True)
    return summary


def finish_tracking(logger, summary: dict[str, Any], log_checkpoint: bool) -> None:
    """The run's summary, plots, test confusion matrix and kept checkpoint to W&B; the W&B run ends as finished."""
    if logger is None:
        return
    import wandb

    run = logger.experiment
    for stage in ("val", "test"):
        for key, value in summary[stage].items():
            run.summary[f"{stage}/{key}"] = value
    run.summary["n_params"] = summary["n_params"]
    run.log({f"plots/{Path(p).stem}": wandb.Image(p) for p in summary["plots"]})
    if summary.get("test_confusion_matrix"):
        classes = summary["classes"]
        table = wandb.Table(columns=["true", "predicted", "count"])
        for i, row in enumerate(summary["test_confusion_matrix"]):
            for j, count in enumerate(row):
                table.add_data(classes[i], classes[j], int(count))
        run.log({"test/confusion_matrix": table})
    if log_checkpoint and summary["best_checkpoint"]:
        artifact = wandb.Artifact(f"model-{summary['run_id']}", type="model", metadata={
            "model": summary["model"], "best_epoch": summary["best_epoch"], "val": summary["val"], "test": summary["test"]})
        artifact.add_file(str(Path(summary["run_dir"]) / summary["best_checkpoint"]), name="best.ckpt")
        run.log_artifact(artifact, aliases=["best"])
    logger.finalize("success")
    wandb.finish()


def fail_tracking(logger, error: BaseException) -> None:
    """End the W&B run as failed, with the error in its summary (nothing when tracking is off or never started)."""
    if logger is None or getattr(logger, "_experiment", None) is None:
        return
    import wandb

    try:
        logger.experiment.summary["error"] = f"{type(error).__name__}: {error}"
        wandb.finish(exit_code=130 if isinstance(error, KeyboardInterrupt) else 1)
    except Exception as err:  # the run's own error matters more than a tracking one
        print(f"warning: could not mark the W&B run failed: {type(err).__name__}: {err}", file=sys.stderr)


# -- helpers --------------------------------------------------------------------------------------------------


def _config_mapping(cfg: ExperimentConfig) -> dict[str, Any]:
    from datasets.typed import to_mapping

    return to_mapping(cfg)


def _class_weights(cfg: ExperimentConfig, dm) -> list[float] | None:
    weights = cfg.optim.class_weights
    if weights is None:
        return None
    n_classes = len(dm.classes)
    if weights == "balanced":
        import numpy as np

        _, y = dm.arrays("train")
        counts = np.bincount(y, minlength=n_classes).astype(float)
        return (counts.sum() / (n_classes * np.maximum(counts, 1))).tolist()
    if len(weights) != n_classes:
        raise ValueError(f"'optim.class_weights' has {len(weights)} values; the data have {n_classes} classes {dm.classes}.")
    return [float(w) for w in weights]


def _precision(cfg: ExperimentConfig) -> str:
    if cfg.trainer.precision:
        return cfg.trainer.precision
    import torch

    gpu = torch.cuda.is_available() and cfg.trainer.accelerator in ("auto", "gpu", "cuda")
    return "bf16-mixed" if gpu and torch.cuda.is_bf16_supported() else "32-true"


def _metrics(values: dict[str, Any], stage: str) -> dict[str, float]:
    from .metrics import METRICS

    return {m: round(float(values[f"{stage}/{m}"]), 6) for m in METRICS if f"{stage}/{m}" in values}


def _quiet_progress(trainer) -> None:
    """No progress bars for the one-batch validation and test of the kept model (training had its own)."""
    bar = trainer.progress_bar_callback
    if bar is not None:  # removed, not disabled: a disabled rich bar still ends each loop with a blank line
        trainer.callbacks.remove(bar)


def _subset_scores(net, dm, mask) -> dict[str, float] | None:
    import numpy as np
    import torch

    from .metrics import scores

    X, y = dm.arrays("test")
    if not mask.any():
        return None
    net = net.eval()
    with torch.no_grad():
        preds = net(torch.from_numpy(np.ascontiguousarray(X[mask])).to(next(net.parameters()).device)).argmax(1).cpu().numpy()
    return scores(y[mask], preds, len(dm.classes))


def _checkpoint_epoch(path: Path) -> int | None:
    """The (0-based) epoch whose model a checkpoint holds."""
    import torch

    if not path.is_file():
        return None
    return int(torch.load(path, map_location="cpu", weights_only=True).get("epoch", 0))


def versus_line(model: str, test: dict[str, float], baselines: dict[str, Any]) -> str:
    """One line: the decoder's test balanced accuracy beside the classical references'."""
    parts = [f"test balanced accuracy: {model} {test.get('balanced_accuracy', float('nan')):.3f}"]
    for name, b in baselines.items():
        value = b.get("test", {}).get("balanced_accuracy")
        parts.append(f"{b.get('model', name)} {value:.3f}" if value is not None else f"{name} ({b.get('error', 'n/a')})")
    return " | ".join(parts)
