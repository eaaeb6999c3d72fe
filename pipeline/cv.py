"""``bmi cv``: grouped k-fold or leave-one-subject-out cross-validation; each fold is its own tracked run
in one group, and the mean and standard deviation per metric are reported.

Every CV writes a folder of its own, ``runs/<group>/`` (``<group>-2``, ... when an earlier CV has that name),
holding ``fold0/``, ``fold1/``, ... and ``cv_summary.json``: a later CV never replaces an earlier one's folds
or summary. The W&B group stays ``tracking.group`` (or ``cv-<time>-<model>``).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np

from .metrics import METRICS

METHOD_NAMES = {"kfold": "grouped {n}-fold by {by}", "loso": "leave-one-subject-out"}


def describe_method(method: str, by: str, n_folds: int) -> str:
    """``grouped 3-fold by run`` or ``leave-one-subject-out`` (LOSO is always by subject)."""
    return METHOD_NAMES.get(method, method).format(n=n_folds, by=by)


def run_cv(cfg, config_dir: Path, *, folds: int | None = None, progress: bool = True, ensemble: bool = False) -> dict[str, Any]:
    """Train one run per fold in a new folder; returns per-fold metrics and their mean / std (also written to
    the folder's ``cv_summary.json``)."""
    from dataclasses import replace

    from datasets.atomic import write_json
    from datasets.datamodule import EpochsDataModule

    from .record.run import new_folder
    from .train import check_config, run_training

    if cfg.data.split.method == "holdout":
        raise ValueError("'data.split.method' is 'holdout'; cross-validation needs 'kfold' (grouped) or 'loso'.")
    check_config(cfg, config_dir)  # before the recordings are read to count the folds
    n_folds = EpochsDataModule(cfg.data, config_dir, seed=cfg.seed).n_splits()
    if folds is not None:
        if not 1 <= folds <= n_folds:
            raise ValueError(f"'--folds' ({folds}) must be between 1 and the {n_folds} folds of the split.")
        n_folds = folds
    group = cfg.tracking.group or f"cv-{time.strftime('%Y%m%d-%H%M%S')}-{cfg.model.name}"
    group_dir = new_folder(Path(cfg.runs_dir), group)
    if group_dir.name != group:
        print(f"{Path(cfg.runs_dir) / group} holds an earlier cross-validation: this one goes to {group_dir}", flush=True)
    results = []
    for fold in range(n_folds):
        fold_cfg = replace(cfg, data=replace(cfg.data, split=replace(cfg.data.split, fold=fold)), name=None)
        fold_cfg = replace(fold_cfg, tracking=replace(cfg.tracking, group=group, tags=[*cfg.tracking.tags, f"fold{fold}"]))
        summary = run_training(fold_cfg, config_dir, run_dir=group_dir / f"fold{fold}", group=group, progress=progress)
        results.append({"fold": fold, "run_dir": summary["run_dir"], "val": summary["val"], "test": summary["test"],
                        "test_groups": summary.get("test_groups")})
    split = cfg.data.split
    out: dict[str, Any] = {"group": group, "folder": str(group_dir.resolve()), "method": split.method,
                           "by": "subject" if split.method == "loso" else split.by,
                           "description": describe_method(split.method, split.by, n_folds),
                           "model": cfg.model.name, "folds": results}
    for stage in ("val", "test"):
        out[stage] = {m: {"mean": float(np.mean([r[stage][m] for r in results])),
                          "std": float(np.std([r[stage][m] for r in results]))} for m in METRICS}
    if ensemble:  # the fold models as one decoder (each keeps its own normalisation through an adapter)
        from .ensemble import build_ensemble

        out["ensemble"] = build_ensemble([r["run_dir"] for r in results], group_dir / "ensemble")["run_dir"]
    write_json(group_dir / "cv_summary.json", out)
    out["path"] = str(group_dir / "cv_summary.json")
    return out


def register(subparsers: argparse._SubParsersAction) -> None:
    from .quiet import add_verbose

    p = subparsers.add_parser("cv", help="cross-validate: grouped k-fold or leave-one-subject-out",
                              description="Train one run per fold (each tracked, in one W&B group) into a new folder "
                                          "runs/<group>/fold<k>, and report the mean and standard deviation of every "
                                          "metric (runs/<group>/cv_summary.json).")
    p.add_argument("config", help="experiment config (YAML) with data.split.method kfold or loso")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="dotted override (repeatable)")
    p.add_argument("--folds", type=int, metavar="N", help="run only the first N folds")
    p.add_argument("--ensemble", action="store_true",
                   help="also combine the fold runs into one decoder averaging their probabilities (<group>/ensemble)")
    p.add_argument("--no-progress", action="store_true", help="no training progress bars")
    add_verbose(p)
    p.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> int:
    from .record.config import load_config

    cfg, config_dir = load_config(args.config, args.set)
    result = run_cv(cfg, config_dir, folds=args.folds, progress=not args.no_progress, ensemble=args.ensemble)
    print(f"cross-validation, {result['description']}: {len(result['folds'])} folds in {result['folder']} "
          f"(W&B group {result['group']})")
    for m in METRICS:
        t = result["test"][m]
        print(f"  test {m:>18}: {t['mean']:.4f} +- {t['std']:.4f}")
    if result.get("ensemble"):
        print(f"ensemble of the folds: {result['ensemble']}")
    print(f"summary: {result['path']}")
    return 0
