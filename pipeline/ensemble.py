"""Ensembles of trained runs (``bmi train --seeds``, the folds of ``bmi cv``, or ``bmi ensemble RUN...``):
one decoder that averages the members' probabilities, written as a run directory that ``bmi evaluate``,
``bmi export`` and so ``bmi serve`` use like any other run.

An ensemble run directory holds ``ensemble.json`` (the member run directories), ``summary.json`` (model
``ensemble``), and the first member's ``data_info.json`` and ``config.yaml``: the ensemble takes windows
preprocessed and normalised as its first member's, and each other member whose training split gave it other
standardisation statistics gets a fixed channel-affine adapter in front (:class:`models.ensemble.ChannelAffine`).
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from .record.run import ENSEMBLE as ENSEMBLE_FILE


def _check_compatible(infos: list[dict[str, Any]], dirs: list[Path]) -> None:
    ref = infos[0]
    for info, d in zip(infos[1:], dirs[1:]):
        for key in ("classes", "ch_names", "n_times", "sfreq", "tmin", "tmax", "preprocessing"):
            if info[key] != ref[key]:
                raise ValueError(f"Run {d.name} differs from {dirs[0].name} in '{key}' ({info[key]!r} vs {ref[key]!r}): "
                                 "ensemble members must take the same windows.")


def predict_proba(net, X: np.ndarray) -> np.ndarray:
    import torch

    with torch.no_grad():
        return np.concatenate([torch.softmax(net(torch.from_numpy(X[i : i + 256])), 1).numpy()
                               for i in range(0, len(X), 256)]) if len(X) else np.zeros((0, 0))


def build_ensemble(members: list[str | Path], out_dir: str | Path | None = None, runs_dir: str | Path = "runs",
                   name: str | None = None) -> dict[str, Any]:
    """Combine finished runs into one ensemble run directory; scores it on the members' shared val/test split."""
    from datasets.atomic import publish_dir, temporary_sibling, write_json

    from .metrics import scores
    from .record.run import (RUN_JSON, RunExistsError, code_version, load_ensemble, load_network, new_run_id,
                             read_status)

    dirs = [Path(m).resolve() for m in members]
    if len(dirs) < 2:
        raise ValueError(f"An ensemble needs at least 2 runs, got {len(dirs)}: {[str(d) for d in dirs]}.")
    for d in dirs:
        if not (d / "summary.json").is_file():
            raise FileNotFoundError(f"{d} is not a finished run directory: it has no summary.json.")
    loaded = [load_network(d) for d in dirs]
    infos = [info for _, _, info, _ in loaded]
    _check_compatible(infos, dirs)
    run_id = name or new_run_id("ensemble")
    out = Path(out_dir) if out_dir else Path(runs_dir) / run_id
    out = out.resolve()
    if out.exists() and any(out.iterdir()):
        raise RunExistsError(f"Ensemble output folder {out} exists and is not empty; choose another --out.")
    tmp = temporary_sibling(out)  # built aside and renamed into place: never a half-written ensemble run
    tmp.mkdir(parents=True)
    try:
        shutil.copy(dirs[0] / "config.yaml", tmp / "config.yaml")
        write_json(tmp / RUN_JSON, {"run_id": run_id, "status": "finished", "group": None,
                                    "config_dir": read_status(dirs[0]).get("config_dir", str(dirs[0]))})
        write_json(tmp / "data_info.json", infos[0])
        write_json(tmp / ENSEMBLE_FILE, {"members": [str(d) for d in dirs], "combine": "mean probability"})
        member_summaries = [s for _, s, _, _ in loaded]
        summary: dict[str, Any] = {
            "run_id": run_id, "run_dir": str(out), "model": "ensemble", "model_params": {},
            "members": [str(d) for d in dirs], "member_models": [s["model"] for s in member_summaries],
            "member_test": [s.get("test") for s in member_summaries], "classes": infos[0]["classes"],
            "best_checkpoint": ENSEMBLE_FILE, "n_params": int(sum(s.get("n_params", 0) for s in member_summaries)),
            "data_hash": member_summaries[0].get("data_hash"), "code_version": code_version(),
            "tracking": {"mode": "disabled"}, "val": {}, "test": {},
        }
        write_json(tmp / "summary.json", summary)
        same_split = all(i.get("split_summary") == infos[0].get("split_summary") for i in infos) and \
            len({s.get("data_hash") for s in member_summaries}) == 1
        if same_split:
            net, _, _, _ = load_ensemble(tmp)
            split = _member_split(dirs[0], infos[0])
            refitted = any(s.get("refit") for s in member_summaries)
            if refitted:
                summary["note"] = "members were refitted on their validation trials (trainer.refit): no validation score"
            for stage, (X, y) in split.items():
                if len(y) and not (refitted and stage == "val"):
                    summary[stage] = scores(y, predict_proba(net, X).argmax(1))
            summary["baselines"] = member_summaries[0].get("baselines")
            if summary["test"] and summary.get("baselines"):
                from .baseline import versus_baselines

                summary["versus_baselines"] = versus_baselines(summary["test"], summary["baselines"])
        else:
            summary["note"] = ("members were trained on different splits (folds): no shared held-out set to score the "
                               "ensemble on; use bmi evaluate on new recordings")
        write_json(tmp / "summary.json", summary)
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.exists():
            out.rmdir()
        publish_dir(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return summary


def _member_split(member_dir: Path, info: dict[str, Any]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The first member's validation and test windows (its split, its normalisation)."""
    from datasets.datamodule import EpochsDataModule

    from .record.run import data_seed, read_config

    cfg, config_dir = read_config(member_dir)
    dm = EpochsDataModule(cfg.data, config_dir, seed=data_seed(cfg), normalization=info["normalization"])
    dm.prepare_data()
    dm.setup("fit")
    return {stage: dm.arrays(stage) for stage in ("val", "test")}


def register(subparsers: argparse._SubParsersAction) -> None:
    from .quiet import add_verbose

    p = subparsers.add_parser(
        "ensemble", help="combine finished runs into one decoder averaging their probabilities",
        description="Combine finished runs that take the same windows into one ensemble run directory (one module "
                    "averaging the members' class probabilities), which bmi evaluate, export and serve use like any "
                    "run. Members trained on one split are scored on it.")
    p.add_argument("runs", nargs="+", help="run directories (e.g. the seeds of one config, or the folds of bmi cv)")
    p.add_argument("--out", help="ensemble run directory (default: runs/<id>)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    add_verbose(p)
    p.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> int:
    summary = build_ensemble(args.runs, args.out)
    if args.json:
        print(json.dumps(summary))
        return 0
    print(f"ensemble of {len(summary['members'])} runs: {summary['run_dir']}")
    for stage in ("val", "test"):
        if summary.get(stage):
            print(f"  {stage} balanced accuracy {summary[stage]['balanced_accuracy']:.3f}")
    if summary.get("note"):
        print(f"  {summary['note']}")
    return 0
