"""``bmi cv``: grouped k-fold or leave-one-subject-out cross-validation; each fold is its own tracked run
in one group, and the mean and standard deviation per metric are reported.

Every CV writes a folder of its own, ``runs/<group>/`` (``<group>-2``, ... when an earlier CV has that name),
holding ``fold0/``, ``fold1/``, ... and ``cv_summary.json``: a later CV never replaces an earlier one's folds
or summary. The W&B group stays ``tracking.group`` (or ``cv-<time>-<model>``).

Spread over workers (processes, machines, a SLURM array sharing the runs folder): each runs one fold,
``bmi cv CONFIG --group NAME --fold K``, into ``runs/NAME/fold<K>``; the first one writes the folder's plan
(``cv_plan.json``: the split, the number of folds, the experiment), and a worker whose config or split differs
from the plan is refused before it trains. ``bmi cv --collect runs/NAME`` then writes the same
``cv_summary.json`` a single process would have, and refuses (naming the missing folds) until every fold has
finished.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from .metrics import METRICS

METHOD_NAMES = {"kfold": "grouped {n}-fold by {by}", "loso": "leave-one-subject-out"}
PLAN = "cv_plan.json"
SUMMARY = "cv_summary.json"
#: config keys that may differ between the fold workers of one CV (the fold itself, names, W&B bookkeeping)
PLAN_IGNORED = ("name", "runs_dir", "data.cache_dir", "data.split.fold", "tracking.tags", "tracking.mode",
                "tracking.group")


def describe_method(method: str, by: str, n_folds: int) -> str:
    """``grouped 3-fold by run`` or ``leave-one-subject-out`` (LOSO is always by subject)."""
    return METHOD_NAMES.get(method, method).format(n=n_folds, by=by)


def fold_config(cfg, fold: int, group: str):
    """The config of one fold's run: the split's ``fold``, the CV's W&B group, a ``fold<k>`` tag."""
    from dataclasses import replace

    fold_cfg = replace(cfg, data=replace(cfg.data, split=replace(cfg.data.split, fold=fold)), name=None)
    tags = [*cfg.tracking.tags, f"fold{fold}"]
    return replace(fold_cfg, tracking=replace(cfg.tracking, group=group, tags=tags))


def _count_folds(cfg, config_dir: Path, folds: int | None) -> int:
    from datasets.datamodule import EpochsDataModule

    from .train import check_config
    from .views import view_data

    if cfg.data.split.method == "holdout":
        raise ValueError("'data.split.method' is 'holdout'; cross-validation needs 'kfold' (grouped) or 'loso'.")
    check_config(cfg, config_dir)  # before the recordings are read to count the folds
    data = cfg.data if cfg.data.bandpass != "auto" else view_data(cfg.data, "mu_beta")  # groups: any band's
    n_folds = EpochsDataModule(data, config_dir, seed=cfg.seed).n_splits()
    if folds is not None:
        if not 1 <= folds <= n_folds:
            raise ValueError(f"'--folds' ({folds}) must be between 1 and the {n_folds} folds of the split.")
        n_folds = folds
    return n_folds


def fold_result(summary: dict[str, Any], fold: int) -> dict[str, Any]:
    """What the CV summary keeps of one fold's run summary."""
    return {"fold": fold, "run_dir": summary["run_dir"], "val": summary["val"], "test": summary["test"],
            "test_groups": summary.get("test_groups")}


def summarize(plan: dict[str, Any], results: list[dict[str, Any]], group_dir: Path, ensemble: bool = False) -> dict[str, Any]:
    """The CV summary (per fold, and each metric's mean and std over the folds), written to ``cv_summary.json``."""
    from datasets.atomic import write_json

    out: dict[str, Any] = {"group": plan["group"], "folder": str(Path(group_dir).resolve()), "method": plan["method"],
                           "by": plan["by"], "description": plan["description"], "model": plan["model"],
                           "folds": results}
    for stage in ("val", "test"):
        out[stage] = {m: {"mean": float(np.mean([r[stage][m] for r in results])),
                          "std": float(np.std([r[stage][m] for r in results]))} for m in METRICS}
    if ensemble:  # the fold models as one decoder (each keeps its own normalisation through an adapter)
        from .ensemble import build_ensemble

        out["ensemble"] = build_ensemble([r["run_dir"] for r in results], Path(group_dir) / "ensemble")["run_dir"]
    write_json(Path(group_dir) / SUMMARY, out)
    out["path"] = str(Path(group_dir) / SUMMARY)
    return out


def make_plan(cfg, group: str, n_folds: int) -> dict[str, Any]:
    """What every fold of one CV shares: its split, its number of folds, and the experiment (the config without
    the fold-specific keys)."""
    from datasets.typed import to_mapping

    from .compare import _flatten

    split = cfg.data.split
    by = "subject" if split.method == "loso" else split.by
    experiment = {k: v for k, v in _flatten(to_mapping(cfg)).items()
                  if not any(k == i or k.startswith(i + ".") for i in PLAN_IGNORED)}
    return {"group": group, "method": split.method, "by": by, "n_folds": n_folds,
            "description": describe_method(split.method, split.by, n_folds), "model": cfg.model.name,
            "experiment": json.loads(json.dumps(experiment, default=str))}


def claim_plan(group_dir: Path, plan: dict[str, Any]) -> dict[str, Any]:
    """Write the folder's plan if it has none (exclusively: of two workers arriving at once, one writes it), or
    check this worker's plan against it."""
    from datasets.atomic import temporary_sibling

    path = Path(group_dir) / PLAN
    if not path.is_file():
        group_dir.mkdir(parents=True, exist_ok=True)
        tmp = temporary_sibling(path, ".json")
        try:
            tmp.write_text(json.dumps(plan, indent=2))
            os.link(tmp, path)  # fails when another worker's plan is there already: then it is checked below
            return plan
        except FileExistsError:
            pass
        finally:
            tmp.unlink(missing_ok=True)
    stored = json.loads(path.read_text())
    for key in ("method", "by", "n_folds", "model"):
        if stored[key] != plan[key]:
            raise ValueError(f"CV folder {group_dir} was planned with {key} {stored[key]!r}; this worker has "
                             f"{plan[key]!r}: use the same config and '--folds', or another '--group'.")
    ours, theirs = plan["experiment"], stored["experiment"]
    diff = sorted(k for k in {*ours, *theirs} if ours.get(k) != theirs.get(k))
    if diff:
        raise ValueError(f"CV folder {group_dir} was planned with another experiment (differing keys: "
                         f"{', '.join(diff)}): use the same config and --set values, or another '--group'.")
    return stored


def run_cv(cfg, config_dir: Path, *, folds: int | None = None, progress: bool = True, ensemble: bool = False,
           fold: int | None = None) -> dict[str, Any]:
    """Train one run per fold in a new folder; returns per-fold metrics and their mean / std (also written to
    the folder's ``cv_summary.json``).

    With ``fold``, train only that fold into the shared folder ``runs/<tracking.group>/fold<fold>`` (one
    worker of a CV spread over processes or machines) and return its run summary; :func:`collect` reports."""
    from .record.run import new_folder
    from .train import run_training

    if fold is not None and not cfg.tracking.group:
        raise ValueError("'--fold' needs the CV's shared folder name: '--group NAME' (or tracking.group), the same "
                         "for every fold's worker.")
    n_folds = _count_folds(cfg, config_dir, folds)
    group = cfg.tracking.group or f"cv-{time.strftime('%Y%m%d-%H%M%S')}-{cfg.model.name}"
    if fold is not None:
        if not 0 <= fold < n_folds:
            raise ValueError(f"'--fold' ({fold}) must be between 0 and {n_folds - 1} (the split has {n_folds} folds).")
        group_dir = Path(cfg.runs_dir) / group
        claim_plan(group_dir, make_plan(cfg, group, n_folds))
        summary = run_training(fold_config(cfg, fold, group), config_dir, run_dir=group_dir / f"fold{fold}",
                               group=group, progress=progress)
        return {**fold_result(summary, fold), "group": group, "folder": str(group_dir.resolve()), "n_folds": n_folds}
    group_dir = new_folder(Path(cfg.runs_dir), group)
    if group_dir.name != group:
        print(f"{Path(cfg.runs_dir) / group} holds an earlier cross-validation: this one goes to {group_dir}", flush=True)
    plan = claim_plan(group_dir, make_plan(cfg, group, n_folds))
    results = []
    for k in range(n_folds):
        summary = run_training(fold_config(cfg, k, group), config_dir, run_dir=group_dir / f"fold{k}", group=group,
                               progress=progress)
        results.append(fold_result(summary, k))
    return summarize(plan, results, group_dir, ensemble)


def collect(folder: str | Path, *, ensemble: bool = False) -> dict[str, Any]:
    """The summary of a CV whose folds ran in separate workers: refuses, naming the missing folds, until every
    fold of the plan has finished; then writes ``cv_summary.json`` as a single process would have."""
    from .record.run import SUMMARY as RUN_SUMMARY
    from .record.run import read_status

    folder = Path(folder)
    if not (folder / PLAN).is_file():
        raise FileNotFoundError(f"{folder} is not a CV folder of fold workers: it has no {PLAN} (start its folds with "
                                "bmi cv CONFIG --group NAME --fold K).")
    plan = json.loads((folder / PLAN).read_text())
    missing = []
    for k in range(plan["n_folds"]):
        run = folder / f"fold{k}"
        if not (run / RUN_SUMMARY).is_file():
            status = read_status(run)
            why = status.get("status", "not started") if run.is_dir() else "not started"
            missing.append(f"fold{k} ({why}{': ' + status['error'] if status.get('error') else ''})")
    if missing:
        raise RuntimeError(f"CV {folder} has {plan['n_folds'] - len(missing)} of {plan['n_folds']} folds finished; "
                           f"missing: {', '.join(missing)}. Run them with bmi cv CONFIG --group {plan['group']} "
                           "--fold K, then collect again.")
    results = [fold_result(json.loads((folder / f"fold{k}" / RUN_SUMMARY).read_text()), k) for k in range(plan["n_folds"])]
    return summarize(plan, results, folder, ensemble)


def register(subparsers: argparse._SubParsersAction) -> None:
    from .quiet import add_verbose

    p = subparsers.add_parser("cv", help="cross-validate: grouped k-fold or leave-one-subject-out",
                              description="Train one run per fold (each tracked, in one W&B group) into a new folder "
                                          "runs/<group>/fold<k>, and report the mean and standard deviation of every "
                                          "metric (runs/<group>/cv_summary.json). Spread over workers: each runs "
                                          "--group NAME --fold K, then --collect runs/NAME reports.")
    p.add_argument("config", nargs="?", help="experiment config (YAML) with data.split.method kfold or loso")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="dotted override (repeatable)")
    p.add_argument("--folds", type=int, metavar="N", help="run only the first N folds")
    p.add_argument("--group", metavar="NAME",
                   help="the CV's folder under runs_dir and its W&B group (tracking.group); needed with --fold")
    p.add_argument("--fold", type=int, metavar="K",
                   help="run only fold K (from 0) into runs/<group>/fold<K>: one worker of a CV spread over "
                        "processes or machines (a SLURM array: K=$SLURM_ARRAY_TASK_ID)")
    p.add_argument("--collect", metavar="FOLDER",
                   help="write FOLDER/cv_summary.json from its fold workers' runs (refused until every fold finished)")
    p.add_argument("--ensemble", action="store_true",
                   help="also combine the fold runs into one decoder averaging their probabilities (<group>/ensemble)")
    p.add_argument("--no-progress", action="store_true", help="no training progress bars")
    add_verbose(p)
    p.set_defaults(func=_main)


def _report(result: dict[str, Any]) -> None:
    print(f"cross-validation, {result['description']}: {len(result['folds'])} folds in {result['folder']} "
          f"(W&B group {result['group']})")
    for m in METRICS:
        t = result["test"][m]
        print(f"  test {m:>18}: {t['mean']:.4f} +- {t['std']:.4f}")
    if result.get("ensemble"):
        print(f"ensemble of the folds: {result['ensemble']}")
    print(f"summary: {result['path']}")


def _main(args: argparse.Namespace) -> int:
    from .record.config import load_config

    if args.collect is not None:
        if args.config or args.fold is not None or args.set or args.folds is not None or args.group:
            raise ValueError("'--collect FOLDER' takes no config, --fold, --folds, --group or --set: the folder's "
                             f"{PLAN} holds its plan.")
        _report(collect(args.collect, ensemble=args.ensemble))
        return 0
    if not args.config:
        raise ValueError("bmi cv needs a CONFIG (or '--collect FOLDER').")
    if args.fold is not None and args.ensemble:
        raise ValueError("'--ensemble' goes with '--collect' (or a single-process CV), not with one '--fold'.")
    overrides = [*args.set, *([f"tracking.group={args.group}"] if args.group else [])]
    cfg, config_dir = load_config(args.config, overrides)
    result = run_cv(cfg, config_dir, folds=args.folds, progress=not args.no_progress, ensemble=args.ensemble,
                    fold=args.fold)
    if args.fold is not None:
        print(f"fold {result['fold']} of {result['n_folds']}: {result['run_dir']} (test balanced accuracy "
              f"{result['test']['balanced_accuracy']:.4f}); when every fold is done: bmi cv --collect {result['folder']}")
        return 0
    _report(result)
    return 0
