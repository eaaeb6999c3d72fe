"""The defaults that depend on the data: which decoder (``model.name: auto``), how many epochs
(``trainer.max_epochs: auto``), and the words a run prints about its split and its training.

A lab's calibration session has a few dozen trials. With them, a decoder needs batches small enough for
several optimiser steps per epoch (``datasets.datamodule.auto_batch_size``), enough epochs for a few hundred
steps, and a checkpoint a validation set of 6-10 trials cannot pick by luck; the accuracy benchmark
(``scripts/bench_accuracy.py``) is the evidence for these choices.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

from datasets.dsp import BAND_PRESETS

#: below this many training windows ``model.name: auto`` picks the low-capacity log-variance network
SMALL_DATA_WINDOWS = 1000
#: the decoders ``model.name: auto`` chooses between (small data, more data)
AUTO_MODELS = ("logvar", "eegnet")
AUTO_EPOCHS = (30, 300)


#: a band whose high edge is at most this (the ``slow`` preset's) keeps only the slow fields, whose waveform, not
#: power, carries the signal: ``model.name: auto`` then takes the decoder that reads it
SLOW_EDGE, SLOW_FIELDS_MODEL = BAND_PRESETS["slow"][1], "amplitude"


def keeps_only_slow_fields(bandpass) -> bool:
    """Whether ``data.bandpass`` is a low-pass at or below :data:`SLOW_EDGE` (the ``slow`` preset or narrower)."""
    return isinstance(bandpass, (list, tuple)) and bandpass[1] is not None and bandpass[1] <= SLOW_EDGE


def choose_model(n_train: int, bandpass=None) -> tuple[str, str]:
    """The decoder for ``model.name: auto`` and why."""
    if keeps_only_slow_fields(bandpass):
        return SLOW_FIELDS_MODEL, (f"model.name auto -> {SLOW_FIELDS_MODEL} (mean amplitude in time bins): the band "
                                   f"{list(bandpass)} Hz keeps the slow fields, whose waveform carries the signal")
    small, large = AUTO_MODELS
    if n_train < SMALL_DATA_WINDOWS:
        return small, (f"model.name auto -> logvar (log-variance network): {n_train} training windows "
                          f"(< {SMALL_DATA_WINDOWS}), few parameters learn from a calibration session")
    return large, f"model.name auto -> {large}: {n_train} training windows (>= {SMALL_DATA_WINDOWS})"


def choose_epochs(steps_per_epoch: int, target_steps: int) -> int:
    """Epochs for about ``target_steps`` optimiser steps, between 30 and 300."""
    lo, hi = AUTO_EPOCHS
    return int(min(hi, max(lo, math.ceil(target_steps / max(1, steps_per_epoch)))))


def resolve(cfg, dm) -> tuple[Any, list[str]]:
    """``cfg`` with ``auto`` values replaced by the choices for this data module (after ``setup``), and the
    notes that say what was chosen."""
    notes = []
    n_train = dm.split_summary["train"]["n_epochs"]
    model = cfg.model
    if model.name == "auto":
        name, note = choose_model(n_train, cfg.data.bandpass)
        model = replace(model, name=name)
        notes.append(note)
    optim = cfg.optim
    if optim.lr == "auto":
        import models

        lr = float(models.default_setting(model.name, model.params, "default_lr", 1e-3))
        optim = replace(optim, lr=lr)
        notes.append(f"optim.lr auto -> {lr:g} ({model.name}'s default)")
    augment = cfg.augment
    if not augment.enabled and augment.decoder_default:
        import models

        preset = dict(models.default_setting(model.name, model.params, "default_augment", {}) or {})
        if preset:
            augment = replace(augment, **preset)
            notes.append(f"augment: none set -> {model.name}'s default {preset} (augment.decoder_default: false for none)")
    batch = dm.batch_size
    repeats = cfg.data.crop.crops_per_epoch if cfg.data.crop is not None else 1
    steps = math.ceil(n_train * repeats / batch)
    data = cfg.data
    if data.batch_size == "auto":
        data = replace(data, batch_size=batch)
        notes.append(f"data.batch_size auto -> {batch} ({steps} optimiser steps per epoch)")
    trainer = cfg.trainer
    if trainer.max_epochs == "auto":
        epochs = choose_epochs(steps, trainer.target_steps)
        trainer = replace(trainer, max_epochs=epochs)
        notes.append(f"trainer.max_epochs auto -> {epochs} (~{epochs * steps} optimiser steps)")
    if trainer.refit == "auto":
        refit = n_train < SMALL_DATA_WINDOWS
        trainer = replace(trainer, refit=refit)
        notes.append(f"trainer.refit auto -> {str(refit).lower()} ({n_train} training windows "
                     + ("< " if refit else ">= ") + f"{SMALL_DATA_WINDOWS})"
                     + (": the kept decoder trains again on training + validation trials" if refit else ""))
    return replace(cfg, model=model, data=data, trainer=trainer, optim=optim, augment=augment), notes


def _groups(part: dict[str, Any], by: str) -> str:
    values = part.get("groups", {}).get(by, [])
    return ", ".join(values) if values else "-"


def describe_split(cfg, split_summary: dict[str, Any]) -> list[str]:
    """Lines saying which runs / sessions / subjects and how many trials train, validate and test."""
    split = cfg.data.split
    by = "subject" if split.method == "loso" else split.by
    tr, va, te = (split_summary[k] for k in ("train", "val", "test"))

    def counts(part):
        return f"{part['n_epochs']} windows ({', '.join(f'{c} {n}' for c, n in part['per_class'].items())})"

    lines = [f"split ({split.method} by {by}): train {by}s {_groups(tr, by)}: {counts(tr)}"]
    if split.val:
        lines.append(f"  validation {by}s {_groups(va, by)}: {counts(va)}")
    else:
        lines.append(f"  validation: {counts(va)}, {split.val_fraction:.0%} of the training {by}s' trials (whole trials)")
    released = split_summary.get("test_release_left_out")
    lines.append(f"  test {by}s {_groups(te, by)}: {counts(te)}"
                 + (f" (the cues' own windows: {released} windows of letting go, data.release, left out)" if released else ""))
    return lines


def split_warnings(cfg) -> list[str]:
    split = cfg.data.split
    if split.method == "holdout" and not split.test:
        return [f"no 'data.split.test' given: the last {split.by} is held out as the test set and does not train "
                "(name the test runs, or list only training files and evaluate later with bmi evaluate)"]
    return []


def training_warnings(cfg, global_step: int, kept_epoch: int | None, stopped_epoch: int, early_stopped: bool) -> list[str]:
    """What a user must know about how the run trained: too few steps, an early stop, a first-epoch model."""
    out = []
    if global_step < cfg.trainer.min_steps:
        out.append(f"the run trained for {global_step} optimiser steps only (fewer than trainer.min_steps = "
                   f"{cfg.trainer.min_steps}): raise trainer.max_epochs or lower data.batch_size")
    if early_stopped:
        out.append(f"early stopping ended the run at epoch {stopped_epoch + 1} of {cfg.trainer.max_epochs} "
                   f"after {global_step} optimiser steps")
    if kept_epoch == 0 and stopped_epoch > 0:
        out.append("the kept checkpoint is the first epoch's model: validation never improved on it, which with "
                   "a few validation trials usually means a flat, noisy curve rather than a good first epoch; "
                   "consider trainer.checkpoint: last")
    return out
