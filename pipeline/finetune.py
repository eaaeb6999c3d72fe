"""Transfer to a new patient: ``bmi finetune RUN --data patient.yaml``.

A decoder pretrained on many subjects or sessions (``bmi train``) starts from its weights and trains on a few
calibration trials of the new patient: first only its classifier (the last linear layer) for
``finetune.frozen_epochs`` epochs, then every layer, with a tenth of the run's learning rate
(``finetune.lr_scale``). The new patient's data go through the pretrained run's
preprocessing (channels, band, rate, window: the network's input must not change), and are normalised on the
patient's own training split; with ``data.euclidean_alignment`` each subject is aligned on its own data
(He & Wu 2020, https://doi.org/10.1109/TBME.2019.2913914), which is what lets one decoder serve several heads.
The fine-tuned run is a run directory like any other (export, evaluate, serve).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

#: data keys that define the network's input: a fine-tuning patient config may not change them
INPUT_KEYS = ("tmin", "tmax", "picks", "montage", "rename", "reference", "notch", "bandpass", "filter_order", "phase",
              "resample", "crop")


def finetune_config(run_dir: str | Path, patient_config: str | Path, overrides: list[str] | None = None):
    """The fine-tuning run's config: the pretrained run's, with the patient's recordings and split and a
    ``finetune`` section pointing at the run. Returns (config, folder the patient's paths are relative to)."""
    from datasets.typed import ConfigError, apply_overrides, load_yaml, to_mapping

    from .record.config import ExperimentConfig, config_from_mapping
    from .record.run import read_config

    run_dir = Path(run_dir).resolve()
    if not (run_dir / "summary.json").is_file():
        raise FileNotFoundError(f"{run_dir} is not a finished run directory: it has no summary.json.")
    summary = json.loads((run_dir / "summary.json").read_text())
    if summary.get("model") == "ensemble":
        raise ValueError(f"{run_dir.name} is an ensemble; fine-tune one of its members: {summary.get('members')}.")
    run_cfg, _ = read_config(run_dir)
    patient = load_yaml(patient_config)
    pdata = patient.get("data", patient) if isinstance(patient, dict) else {}
    base = to_mapping(run_cfg)
    raw: dict[str, Any] = dict(base)
    raw["data"] = {**base["data"], **pdata, "batch_size": pdata.get("batch_size", "auto")}
    if "split" not in pdata:  # the pretrained run's split named its own runs/subjects
        raw["data"]["split"] = {}
    for section in ("trainer", "optim", "augment", "tracking"):
        if section in patient:
            raw[section] = {**base.get(section, {}), **patient[section]}
    # the pretrained run's epochs and refit were chosen for its data size: 'auto' again for the patient's unless given
    raw["trainer"] = {**base["trainer"], "max_epochs": "auto", "refit": "auto", **patient.get("trainer", {})}
    raw["model"] = {"name": summary["model"], "params": summary.get("model_params", {})}
    raw["finetune"] = {**patient.get("finetune", {}), "run": str(run_dir)}
    raw["name"] = None
    for key in ("runs_dir", "seed", "data_seed"):
        if key in patient:
            raw[key] = patient[key]
    base_lr = base["optim"].get("lr")
    scale_base = isinstance(base_lr, (int, float)) and "lr" not in (patient.get("optim") or {})
    if scale_base:  # a run's saved config holds the rate it used; the patient's, if given, comes with the overrides
        raw["optim"] = {k: v for k, v in raw["optim"].items() if k != "lr"}
    raw = apply_overrides(raw, overrides, ExperimentConfig)
    cfg = config_from_mapping(raw)
    if scale_base and "lr" not in (raw.get("optim") or {}):
        cfg = replace(cfg, optim=replace(cfg.optim, lr=float(base_lr) * cfg.finetune.lr_scale))
    data = to_mapping(cfg)["data"]  # compared in their typed form: {types: [eeg]} is the run's full picks
    for key in INPUT_KEYS:
        if data.get(key) != base["data"].get(key):
            raise ConfigError(f"'data.{key}' ({pdata.get(key, data.get(key))!r}) differs from the pretrained run's "
                              f"({base['data'].get(key)!r}): fine-tuning keeps the network's input (channels, band, "
                              "rate, window) unchanged.")
    return cfg, Path(patient_config).resolve().parent


def register(subparsers: argparse._SubParsersAction) -> None:
    from .quiet import add_verbose

    p = subparsers.add_parser(
        "finetune", help="fine-tune a trained run on a new patient's few calibration trials",
        description="Start from a trained run's weights and train on a new patient's recordings through the "
                    "pretrained run's preprocessing and window: the classifier alone first, then every layer. The "
                    "fine-tuned run is a run directory like any other.")
    p.add_argument("run_dir", help="the pretrained run directory (bmi train on many subjects or sessions)")
    p.add_argument("--data", required=True, metavar="PATIENT.yaml",
                   help="config whose data: section names the patient's recordings and split (optional trainer:, "
                        "optim:, augment:, finetune: {frozen_epochs, lr_scale} sections)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="dotted override (repeatable)")
    p.add_argument("--no-progress", action="store_true", help="no training progress bar")
    add_verbose(p)
    p.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> int:
    from .train import run_training

    cfg, config_dir = finetune_config(args.run_dir, args.data, args.set)
    summary = run_training(cfg, config_dir, progress=not args.no_progress)
    print(json.dumps({k: summary[k] for k in ("run_id", "run_dir", "finetuned_from", "val", "test")}, indent=2))
    return 0

