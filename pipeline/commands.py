"""``bmi train``, ``bmi evaluate`` and the experiment commands (cv, sweep, compare, baseline)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    from .quiet import add_verbose

    p = subparsers.add_parser(
        "train", help="train a decoder from a YAML config; writes runs/<run_id>/",
        description="Train one decoder (or, with --seeds, one per seed and their ensemble) from a YAML experiment "
                    "config and write its run directory: resolved config, per-epoch metrics, checkpoints, plots, "
                    "data description and summary, with the CSP+LDA and tangent-space references on the same split. "
                    "A run directory is written by one run only: an existing --name is refused; --resume continues a "
                    "killed run.")
    p.add_argument("config", nargs="?", help="experiment config (YAML); optional with --resume")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                   help="dotted overrides without --set (as W&B sweep agents pass them)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="dotted override, e.g. --set optim.lr=3e-3 (repeatable)")
    p.add_argument("--resume", metavar="RUN_DIR",
                   help="continue a killed, failed or interrupted run from its last checkpoint, with its own config "
                        "(the only way to write into an existing run directory)")
    p.add_argument("--name", help="run id (the folder under runs_dir) instead of a generated one; must be new")
    p.add_argument("--seeds", metavar="S1,S2,...",
                   help="train one run per seed on the same split, then combine them into one ensemble run "
                        "(mean probability) that bmi export / evaluate / serve use like any run")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_verbose(p)
    p.set_defaults(func=_train)

    p = subparsers.add_parser(
        "evaluate", help="evaluate a trained run on other recordings (another day)",
        description="Score a trained run's kept model on the recordings another config names, through the run's own "
                    "preprocessing, window, channels and normalisation (calibrate on day one, test on day two).")
    p.add_argument("run_dir", help="a run directory from bmi train")
    p.add_argument("--data", required=True, metavar="CONFIG.yaml", help="config whose data: section names the recordings")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="dotted override of that config")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    add_verbose(p)
    p.set_defaults(func=_evaluate)

    from . import baseline, compare, cv, ensemble, finetune, sweep

    for module in (cv, sweep, compare, baseline, ensemble, finetune):
        module.register(subparsers)


def parse_seeds(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise ValueError(f"'--seeds' ({text!r}) must be comma-separated integers, e.g. 0,1,2.") from None
    if len(seeds) < 2 or len(set(seeds)) != len(seeds):
        raise ValueError(f"'--seeds' ({text!r}) must name at least 2 distinct seeds.")
    return seeds


def train_seeds(cfg, config_dir, seeds: list[int], progress: bool = True) -> dict:
    """One run per seed on the first seed's split (``data_seed``), then their ensemble; returns its summary."""
    from dataclasses import replace

    from .ensemble import build_ensemble
    from .train import run_training

    from .record.run import check_free

    base = cfg.name or None
    if base:  # every member's name and the ensemble's must be free before the first member trains
        for name in [*(f"{base}-seed{seed}" for seed in seeds), f"{base}-ensemble"]:
            check_free(Path(cfg.runs_dir) / name)
    data_seed = cfg.data_seed if cfg.data_seed is not None else seeds[0]
    runs = []
    for seed in seeds:
        member = replace(cfg, seed=seed, data_seed=data_seed, name=f"{base}-seed{seed}" if base else None)
        runs.append(run_training(member, config_dir, progress=progress)["run_dir"])
    return build_ensemble(runs, runs_dir=cfg.runs_dir, name=f"{base}-ensemble" if base else None)


def _train(args: argparse.Namespace) -> int:
    from .record.config import load_config
    from .train import run_training

    if args.resume:
        summary = run_training(None, resume=args.resume, progress=not args.no_progress)
    else:
        if not args.config:
            raise ValueError("bmi train needs a CONFIG.yaml (or --resume RUN_DIR).")
        overrides = list(args.overrides) + list(args.set) + ([f"name={args.name}"] if args.name else [])
        cfg, config_dir = load_config(args.config, overrides)
        if args.seeds:
            summary = train_seeds(cfg, config_dir, parse_seeds(args.seeds), progress=not args.no_progress)
            print(json.dumps({k: summary.get(k) for k in ("run_id", "run_dir", "members", "val", "test")}, indent=2))
            return 0
        summary = run_training(cfg, config_dir, progress=not args.no_progress)
    if "model" in summary:
        print(json.dumps({k: summary[k] for k in ("run_id", "run_dir", "val", "test")}, indent=2))
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from .evaluate import evaluate_run

    metrics = evaluate_run(args.run_dir, args.data, args.set)
    if args.json:
        print(json.dumps(metrics))
    else:
        print(f"{metrics['n_epochs']} epochs from {len(metrics['files'])} file(s)")
        for key in ("accuracy", "balanced_accuracy", "kappa", "f1_macro"):
            print(f"{key:>18}: {metrics[key]:.4f}")
    return 0
