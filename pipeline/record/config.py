"""The experiment config: typed sections loaded from YAML with dotted command-line overrides.

``bmi train configs/demo.yaml --set optim.lr=3e-3 --set model.name=shallow``. Unknown keys are refused
with the valid ones and the closest match. The resolved config is saved with every run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from datasets import atomic
from datasets.config import AugmentConfig, DataConfig
from datasets.typed import ConfigError, apply_overrides, from_mapping, load_yaml, to_mapping


@dataclass
class ModelConfig:
    """A decoder from the registry (``bmi``'s ``models.available()``) and its hyperparameters.

    ``auto`` picks by the training-set size (``pipeline.recipe.choose_model``) and the run says which.
    """

    name: str = "auto"
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrainerConfig:
    """Lightning Trainer settings. ``precision: null`` means bf16-mixed on a CUDA GPU, 32-true otherwise.

    ``max_epochs: auto`` gives about ``target_steps`` optimiser steps (30 to 300 epochs); no run is stopped early
    before ``min_steps``. ``checkpoint`` is which model the run keeps: ``last`` (after the full schedule),
    ``smoothed`` (lowest running mean of the validation loss over ``smoothing_epochs`` epochs) or ``best``
    (highest validation balanced accuracy of any single epoch, which a validation set of a few trials can
    fool). ``recalibrate_batchnorm`` re-estimates BatchNorm statistics on the training windows before every
    validation, so every checkpoint's statistics match its weights.

    ``refit`` trains the decoder once more, from the start, on the training and validation trials together, for
    the number of epochs the first fit ran (or, with ``best`` / ``smoothed``, chose), and keeps that model:
    with a few dozen trials the fifth held out for validation is data the decoder needs. The run's validation
    scores are the first fit's (the refitted model has seen those trials); its test score is the refitted
    model's, and the classical references are fitted on the same trials as it. ``auto``: on below
    ``pipeline.recipe.SMALL_DATA_WINDOWS`` training windows, off above (and on more than one device).

    ``compile`` runs the decoder's forward pass under ``torch.compile`` while fitting; where it cannot compile
    the run trains eagerly and its summary says why (``pipeline.compiling``).
    """

    accelerator: str = "auto"
    devices: Any = "auto"
    num_nodes: int = 1
    strategy: str = "auto"
    precision: str | None = None
    max_epochs: int | Literal["auto"] = "auto"
    min_epochs: int = 1
    min_steps: int = 200
    target_steps: int = 1500
    early_stopping_patience: int | None = None
    checkpoint: Literal["last", "smoothed", "best"] = "last"
    smoothing_epochs: int = 10
    recalibrate_batchnorm: bool = True
    refit: bool | Literal["auto"] = "auto"
    gradient_clip_val: float | None = 1.0
    deterministic: bool = True
    keep_freed_memory: bool = True  # glibc keeps freed activation buffers mapped (pipeline/allocator.py)
    compile: bool = False  # the decoder's forward under torch.compile, eager where it fails (pipeline/compiling.py)
    enable_progress_bar: bool = True
    log_every_n_steps: int = 10
    limit_train_batches: float | None = None
    limit_val_batches: float | None = None

    def __post_init__(self) -> None:
        if self.max_epochs != "auto" and self.max_epochs < 1:
            raise ConfigError(f"'trainer.max_epochs' ({self.max_epochs}) must be at least 1 or 'auto'.")
        for key in ("min_steps", "target_steps", "smoothing_epochs"):
            if getattr(self, key) < (0 if key == "min_steps" else 1):
                raise ConfigError(f"'trainer.{key}' ({getattr(self, key)}) must be at least {0 if key == 'min_steps' else 1}.")
        if self.early_stopping_patience is not None and self.early_stopping_patience < 1:
            raise ConfigError(f"'trainer.early_stopping_patience' ({self.early_stopping_patience}) must be >= 1 or null.")


@dataclass
class OptimConfig:
    """AdamW and its schedule; loss options. ``lr: auto`` is the decoder's own default (``default_lr`` of its
    class: 1e-3 for the convolutional and recurrent decoders, more for the log-variance network)."""

    lr: float | Literal["auto"] = "auto"
    weight_decay: float = 1e-2
    scheduler: Literal["cosine", "plateau", "step", "none"] = "cosine"
    step_size: int = 10
    gamma: float = 0.5
    class_weights: Any = None  # null, "balanced", or a list (one weight per class)
    label_smoothing: float = 0.0

    def __post_init__(self) -> None:
        if self.lr != "auto" and self.lr <= 0:
            raise ConfigError(f"'optim.lr' ({self.lr}) must be positive.")
        if not 0 <= self.label_smoothing < 1:
            raise ConfigError(f"'optim.label_smoothing' ({self.label_smoothing}) must be in [0, 1).")
        if self.class_weights not in (None, "balanced") and not isinstance(self.class_weights, list):
            raise ConfigError(f"'optim.class_weights' ({self.class_weights!r}) must be null, 'balanced' or a list.")


@dataclass
class TrackingConfig:
    """Weights & Biases. ``mode: auto`` is offline when no API key is configured, online otherwise."""

    mode: Literal["auto", "online", "offline", "disabled"] = "auto"
    project: str = "bmi-decoders"
    entity: str | None = None
    group: str | None = None
    tags: list[str] = field(default_factory=list)
    name: str | None = None  # W&B display name; defaults to the run id
    log_checkpoint: bool = True


@dataclass
class FinetuneConfig:
    """Start from a trained run's weights (``bmi finetune``): the classifier alone trains for ``frozen_epochs``
    epochs (``auto``: a third of the run), then every layer, at the pretrained run's learning rate times
    ``lr_scale`` unless ``optim.lr`` is given (small steps keep what the run learnt: 0.1 measured best, see
    ``scripts/bench_sessions.py``)."""

    run: str
    frozen_epochs: int | Literal["auto"] = "auto"
    lr_scale: float = 0.1

    def __post_init__(self) -> None:
        if self.frozen_epochs != "auto" and self.frozen_epochs < 0:
            raise ConfigError(f"'finetune.frozen_epochs' ({self.frozen_epochs}) must be >= 0 or 'auto'.")
        if not 0 < self.lr_scale <= 1:
            raise ConfigError(f"'finetune.lr_scale' ({self.lr_scale}) must be in (0, 1].")


@dataclass
class ExperimentConfig:
    """One training run: data, model, trainer, optimiser, tracking, seed and where runs go."""

    data: DataConfig
    model: ModelConfig = field(default_factory=ModelConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    seed: int = 0
    data_seed: int | None = None
    finetune: FinetuneConfig | None = None  # seeds the split (validation trials); null = seed. Ensembles share one split.
    runs_dir: str = "runs"
    name: str | None = None


def load_config(path: str | Path, overrides: list[str] | None = None) -> tuple[ExperimentConfig, Path]:
    """Read a YAML experiment config, apply ``key.path=value`` overrides, validate; returns (config, its folder)."""
    path = Path(path)
    raw = apply_overrides(load_yaml(path), overrides, ExperimentConfig)
    if "data" not in raw:
        raise ConfigError(f"Config file {path} has no 'data' section (recordings, events, window, ...).")
    return from_mapping(ExperimentConfig, raw, "config"), path.parent.resolve()


def config_from_mapping(raw: dict[str, Any], overrides: list[str] | None = None) -> ExperimentConfig:
    """A config from a plain mapping (a parsed YAML document), with ``key.path=value`` overrides applied.

    Parameters
    ----------
    raw : dict
        The document, with a ``data`` section.
    overrides : list of str, optional
        Dotted overrides, e.g. ``["optim.lr=3e-3"]`` (values read as YAML).

    Returns
    -------
    ExperimentConfig
        The validated config; a bad key or value raises :class:`datasets.typed.ConfigError`.
    """
    return from_mapping(ExperimentConfig, apply_overrides(raw, overrides, ExperimentConfig), "config")


def save_config(cfg: ExperimentConfig, path: Path) -> None:
    """Write the resolved config as YAML, atomically."""
    atomic.write_text(path, yaml.safe_dump(to_mapping(cfg), sort_keys=False))
