"""A training run: data module + decoder + Lightning Trainer -> ``runs/<run_id>/`` with everything needed
to compare, evaluate, resume and export it."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from . import recipe
from .config import ExperimentConfig, load_config, save_config

RUN_ID_ENV = "BMI_RUN_ID"  # DDP re-launches the command per rank; all ranks must share one run id


def code_version() -> str:
    """Git commit of this code (with ``-dirty`` when it has local changes), or the package version."""
    root = Path(__file__).resolve().parents[1]
    try:
        sha = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=root, capture_output=True, text=True,
                             timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        from importlib.metadata import PackageNotFoundError, version

        try:
            return "bmi-decoder " + version("bmi-decoder")
        except PackageNotFoundError:
            return "unknown"


def new_run_id(model: str) -> str:
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{model}-{uuid.uuid4().hex[:4]}"


def write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str))
    os.replace(tmp, path)


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
    from . import METRICS

    return {m: round(float(values[f"{stage}/{m}"]), 6) for m in METRICS if f"{stage}/{m}" in values}


def resume_config(run_dir: Path) -> tuple[ExperimentConfig, Path, Path]:
    """The saved config of a run and its last checkpoint; clear errors when either is missing."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise FileNotFoundError(f"{run_dir} is not a run directory: it has no config.yaml.")
    last = run_dir / "checkpoints" / "last.ckpt"
    if not last.is_file():
        raise FileNotFoundError(f"Cannot resume {run_dir}: it has no checkpoints/last.ckpt (the run never finished an epoch).")
    cfg, _ = load_config(run_dir / "config.yaml")
    meta = json.loads((run_dir / "run.json").read_text()) if (run_dir / "run.json").is_file() else {}
    return cfg, Path(meta.get("config_dir", run_dir)), last


def run_training(
    cfg: ExperimentConfig,
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
    import pytorch_lightning as pl
    from pytorch_lightning.callbacks import EarlyStopping, ModelCheckpoint

    import models
    from datasets.datamodule import EpochsDataModule

    from . import plots
    from .allocator import keep_freed_memory
    from datasets.augment import BatchAugment

    from .task import MONITOR, SMOOTHED, DecoderTask
    from .tracking import EpochMetricsCSV, make_wandb_logger

    ckpt_path = None
    if resume is not None:
        cfg, config_dir, ckpt_path = resume_config(Path(resume))
        run_dir = Path(resume)
        run_id = run_dir.name
    else:
        # Only DDP child ranks (LOCAL_RANK > 0, launched by Lightning from this process) inherit the id;
        # a later run in the same process must get its own.
        inherited = os.environ.get(RUN_ID_ENV) if int(os.environ.get("LOCAL_RANK", "0")) > 0 else None
        run_id = inherited or cfg.name or new_run_id(cfg.model.name)
        run_dir = Path(run_dir) if run_dir else Path(cfg.runs_dir) / run_id
    os.environ[RUN_ID_ENV] = run_id
    config_dir = Path(config_dir or ".").resolve()
    run_dir = run_dir.resolve()
    (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    (run_dir / "plots").mkdir(exist_ok=True)
    group = group or cfg.tracking.group
    # srun starts every rank itself (SLURM_PROCID); Lightning's own launcher sets LOCAL_RANK/NODE_RANK
    is_rank_zero = all(int(os.environ.get(k, "0")) == 0 for k in ("LOCAL_RANK", "NODE_RANK", "SLURM_PROCID"))
    if cfg.trainer.keep_freed_memory:
        keep_freed_memory()
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    dm = EpochsDataModule(cfg.data, config_dir, seed=cfg.seed if cfg.data_seed is None else cfg.data_seed)
    dm.prepare_data()
    dm.setup("fit")
    cfg, notes = recipe.resolve(cfg, dm)  # 'auto' model / batch size / epochs -> the saved config says what ran
    dm.cfg = cfg.data
    notes_warn = recipe.split_warnings(cfg) if ckpt_path is None else []
    if is_rank_zero:
        print(f"run directory: {run_dir}", flush=True)
        save_config(cfg, run_dir / "config.yaml")
        write_json(run_dir / "run.json", {"run_id": run_id, "config_dir": str(config_dir), "group": group})
        for line in [*notes, *recipe.describe_split(cfg, dm.split_summary)]:
            print(line, flush=True)
        for line in notes_warn:
            print(f"warning: {line}", file=sys.stderr, flush=True)
    if cfg.finetune is not None:
        from .finetune import frozen_epochs, pretrained_network
        from .task import FreezeSchedule

        net, note = pretrained_network(cfg.finetune, dm)
        if is_rank_zero:
            print(note, flush=True)
    else:
        net = models.build(
            cfg.model.name, n_chans=dm.n_chans, n_times=dm.n_times, n_outputs=len(dm.classes), sfreq=dm.sfreq,
            **cfg.model.params,
        )
        if hasattr(net, "fit_data") and ckpt_path is None:  # data-dependent set-up (logvar's whitening)
            net.fit_data(dm.model_windows("train"))
    task = DecoderTask(
        net, len(dm.classes), lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay, scheduler=cfg.optim.scheduler,
        max_epochs=cfg.trainer.max_epochs, step_size=cfg.optim.step_size, gamma=cfg.optim.gamma,
        class_weights=_class_weights(cfg, dm), label_smoothing=cfg.optim.label_smoothing,
        augment=BatchAugment(cfg.augment, dm.sfreq, seed=cfg.seed) if cfg.augment.enabled else None,
        smoothing_epochs=cfg.trainer.smoothing_epochs, recalibrate_batchnorm=cfg.trainer.recalibrate_batchnorm,
    )
    from datasets.typed import to_mapping

    logger = make_wandb_logger(cfg.tracking, run_id, run_dir, group, to_mapping(cfg))
    # which model the run keeps: 'best' / 'smoothed' write best.ckpt when their monitor improves; 'last' keeps
    # the model at the end of the schedule (last.ckpt)
    monitor, mode = (MONITOR, "max") if cfg.trainer.checkpoint == "best" else (SMOOTHED, "min")
    checkpoint = ModelCheckpoint(
        dirpath=run_dir / "checkpoints", filename="best", monitor=monitor, mode=mode,
        save_top_k=1, auto_insert_metric_name=False, enable_version_counter=False,
    ) if cfg.trainer.checkpoint != "last" else None
    # Lightning >= 2.6 refreshes save_last only when a top-k checkpoint was written in that epoch; resume needs
    # the latest epoch every time, so "last" is its own unmonitored checkpoint, overwritten each epoch.
    last_checkpoint = ModelCheckpoint(
        dirpath=run_dir / "checkpoints", filename="last", monitor=None, save_top_k=1, every_n_epochs=1,
        auto_insert_metric_name=False, enable_version_counter=False,
    )
    callbacks = [c for c in (checkpoint, last_checkpoint) if c is not None] + [EpochMetricsCSV(run_dir / "metrics.csv")]
    if cfg.finetune is not None:
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
        enable_progress_bar=progress and cfg.trainer.enable_progress_bar,
        enable_model_summary=False,
        log_every_n_steps=cfg.trainer.log_every_n_steps,
        limit_train_batches=cfg.trainer.limit_train_batches,
        limit_val_batches=cfg.trainer.limit_val_batches,
        num_sanity_val_steps=0,
        default_root_dir=str(run_dir),
        use_distributed_sampler=False,  # our batch sampler shards by rank itself
    )
    if cfg.trainer.deterministic:
        import torch

        # Deterministic mode NaN-fills every torch.empty by default, ~6% of a CPU training step here; our ops never
        # read uninitialised memory, so runs stay bit-identical without it (tests/pipeline/test_train.py).
        torch.utils.deterministic.fill_uninitialized_memory = False
    started = time.monotonic()
    trainer.fit(task, datamodule=dm, ckpt_path=str(ckpt_path) if ckpt_path else None)
    train_seconds = time.monotonic() - started
    if trainer.world_size > 1:  # every rank records its weights, so a DDP run proves its ranks agree
        digest = hashlib.sha256(b"".join(p.detach().cpu().numpy().tobytes() for p in task.net.state_dict().values()))
        (run_dir / f"weights_rank{trainer.global_rank}.sha256").write_text(digest.hexdigest())

    best = (checkpoint.best_model_path if checkpoint is not None else "") or str(run_dir / "checkpoints" / "last.ckpt")
    if cfg.trainer.checkpoint == "last" and trainer.is_global_zero:
        # checkpoints/best.ckpt is always the model the run keeps (what export and W&B take); here the last epoch's
        best = str(_copy_atomic(run_dir / "checkpoints" / "last.ckpt", run_dir / "checkpoints" / "best.ckpt"))
    if trainer.world_size > 1:
        trainer.strategy.barrier()
        best = str(run_dir / "checkpoints" / "best.ckpt") if cfg.trainer.checkpoint == "last" else best
    trainer.validate(task, datamodule=dm, ckpt_path=best, verbose=False)
    trainer.test(task, datamodule=dm, ckpt_path=best, verbose=False)
    val, test = (_metrics(task.epoch_metrics.get(stage, {}), stage) for stage in ("val", "test"))
    if not trainer.is_global_zero:
        return {"run_id": run_id, "run_dir": str(run_dir), "val": val, "test": test}

    kept_epoch = _checkpoint_epoch(Path(best))
    run_warnings = notes_warn + recipe.training_warnings(
        cfg, trainer.global_step, kept_epoch, trainer.current_epoch - 1,
        early_stopped=bool(early_stopping is not None and early_stopping.stopped_epoch > 0))
    for line in run_warnings[len(notes_warn):]:
        print(f"warning: {line}", file=sys.stderr, flush=True)
    info = dm.data_info()
    write_json(run_dir / "data_info.json", info)
    confusion = task.test_confusion.numpy() if task.test_confusion is not None else None
    plot_paths = []
    if (run_dir / "metrics.csv").is_file():
        plot_paths.append(plots.learning_curves(run_dir / "metrics.csv", run_dir / "plots" / "learning_curves.png"))
    if confusion is not None:
        plot_paths.append(plots.confusion_matrix(confusion, dm.classes, run_dir / "plots" / "confusion_matrix.png"))
    summary = {
        "run_id": run_id,
        "run_dir": str(run_dir),
        "model": cfg.model.name,
        "model_params": dict(cfg.model.params),
        "best_checkpoint": str(Path(best).relative_to(run_dir)) if best else None,
        "best_epoch": kept_epoch,
        "checkpoint_rule": cfg.trainer.checkpoint,
        "epochs_trained": trainer.current_epoch,
        "optimizer_steps": trainer.global_step,
        "recipe": notes,
        "finetuned_from": cfg.finetune.run if cfg.finetune is not None else None,
        "warnings": run_warnings,
        "resumed_from_epoch": task.start_epoch if ckpt_path else None,
        "val": val,
        "test": test,
        "test_confusion_matrix": confusion.tolist() if confusion is not None else None,
        "classes": dm.classes,
        "n_params": int(sum(p.numel() for p in task.net.parameters())),
        "train_seconds": round(train_seconds, 2),
        "data_hash": dm.data_hash,
        "code_version": code_version(),
        "seed": cfg.seed,
        "group": group,
        "tags": list(cfg.tracking.tags),
        "n_train": dm.split_summary["train"]["n_epochs"],
        "n_val": dm.split_summary["val"]["n_epochs"],
        "n_test": dm.split_summary["test"]["n_epochs"],
        "precision": _precision(cfg),
        "accelerator": str(trainer.accelerator.__class__.__name__),
        "tracking": {"mode": logger.experiment.settings.mode if logger is not None else "disabled",
                     "project": cfg.tracking.project, "entity": cfg.tracking.entity,
                     "wandb_dir": str(run_dir / "wandb") if logger is not None else None},
    }
    if dm.test_kept is not None:  # 'reject': the test score on every epoch (above) and on the epochs it keeps
        summary["test_without_rejected"] = _subset_scores(task.net, dm, dm.test_kept)
        summary["n_test_rejected"] = int((~dm.test_kept).sum())
    from .baseline import all_baselines, versus_baselines

    summary["baselines"] = all_baselines(dm)
    summary["baseline"] = summary["baselines"]["csp_lda"]  # the CSP+LDA reference, as before
    summary["versus_baselines"] = versus_baselines(test, summary["baselines"])
    print(versus_line(cfg.model.name, test, summary["baselines"]), flush=True)
    write_json(run_dir / "summary.json", summary)
    if logger is not None:
        _finish_wandb(logger, summary, plot_paths, log_checkpoint=cfg.tracking.log_checkpoint)
    return summary


def _subset_scores(net, dm, mask) -> dict[str, float] | None:
    import numpy as np
    import torch

    from .baseline import scores

    X, y = dm.arrays("test")
    if not mask.any():
        return None
    net = net.eval()
    with torch.no_grad():
        preds = net(torch.from_numpy(np.ascontiguousarray(X[mask])).to(next(net.parameters()).device)).argmax(1).cpu().numpy()
    return scores(y[mask], preds)


def _copy_atomic(src: Path, dst: Path) -> Path:
    import shutil

    tmp = dst.with_name(f".{dst.name}.{uuid.uuid4().hex[:8]}.tmp")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)
    return dst


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


def _finish_wandb(logger, summary: dict[str, Any], plot_paths: list[Path], log_checkpoint: bool) -> None:
    import wandb

    run = logger.experiment
    for stage in ("val", "test"):
        for key, value in summary[stage].items():
            run.summary[f"{stage}/{key}"] = value
    run.summary["n_params"] = summary["n_params"]
    run.log({f"plots/{p.stem}": wandb.Image(str(p)) for p in plot_paths})
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
