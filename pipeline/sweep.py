"""``bmi sweep``: hyperparameter search with Optuna; each trial is a tracked training run.

The search space is a YAML mapping from dotted config keys to distributions::

    optim.lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}
    model.name: {type: categorical, choices: [eegnet, shallow]}
    model.params.dropout: {type: float, low: 0.1, high: 0.5}
    data.batch_size: {type: int, low: 16, high: 64, step: 16}

``--storage sqlite:///study.db`` (or any database URL Optuna supports, e.g. PostgreSQL) lets several
machines work on one study: start the same command on each.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

KINDS = ("float", "int", "categorical")
#: what fails one trial without stopping the study (bad arguments for that point, or a run that diverged)
TRIAL_ERRORS = (ValueError, TypeError, RuntimeError)


def load_space(path: str | Path) -> dict[str, dict[str, Any]]:
    from datasets.typed import ConfigError, load_yaml

    space = load_yaml(path)
    if not space:
        raise ConfigError(f"Search space {path} is empty.")
    for key, spec in space.items():
        if not isinstance(spec, dict) or spec.get("type") not in KINDS:
            raise ConfigError(f"Search space entry {key!r} must be a mapping with 'type' one of {', '.join(KINDS)}.")
        need = ("choices",) if spec["type"] == "categorical" else ("low", "high")
        missing = [n for n in need if n not in spec]
        if missing:
            raise ConfigError(f"Search space entry {key!r} ({spec['type']}) lacks {missing}.")
    return space


def _suggest(trial, key: str, spec: dict[str, Any]) -> Any:
    if spec["type"] == "float":
        return trial.suggest_float(key, float(spec["low"]), float(spec["high"]), log=bool(spec.get("log", False)))
    if spec["type"] == "int":
        return trial.suggest_int(key, int(spec["low"]), int(spec["high"]), step=int(spec.get("step", 1)))
    # Optuna stores only None, bool, int, float and str choices: a list (a band [8, 30]) goes in as its JSON text
    choices = [json.dumps(c) if isinstance(c, (list, dict)) else c for c in spec["choices"]]
    value = trial.suggest_categorical(key, choices)
    return json.loads(value) if isinstance(value, str) and value in choices and value not in spec["choices"] else value


def _decoded(params: dict[str, Any], space: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """A trial's parameters as the space wrote them (lists back from their JSON text)."""
    out = {}
    for key, value in params.items():
        listed = space.get(key, {}).get("choices", [])
        out[key] = json.loads(value) if isinstance(value, str) and value not in listed and value[:1] in "[{" else value
    return out


def run_sweep(config_path: Path, space_path: Path, *, trials: int, overrides: list[str] | None = None,
              storage: str | None = None, study_name: str | None = None, metric: str = "val.balanced_accuracy",
              direction: str = "maximize", progress: bool = False) -> dict[str, Any]:
    """Run ``trials`` trials of a study; each trial is a run ``runs/<study>/trial<n>``, and this process's
    summary goes to ``runs/<study>/sweep_summary-trials<first>-<last>.json`` (never replacing another's).

    Without ``storage`` the study lives in this process only, so it gets a folder of its own (``<study>-2``, ...
    when the name is taken); with a shared storage every process and machine adds its trials to one folder."""
    import optuna
    import yaml

    from datasets.atomic import write_json

    from .record.config import load_config
    from .record.run import new_folder
    from .train import check_config, run_training

    space = load_space(space_path)
    base_cfg, config_dir = load_config(config_path, overrides)  # validates the base config once
    check_config(base_cfg, config_dir)
    stage, name = metric.split(".", 1) if "." in metric else ("val", metric)
    study_name = study_name or f"sweep-{time.strftime('%Y%m%d-%H%M%S')}"
    if storage is None:
        folder = new_folder(Path(base_cfg.runs_dir), study_name)
        if folder.name != study_name:
            print(f"{Path(base_cfg.runs_dir) / study_name} holds an earlier sweep: this one (a new study without "
                  f"--storage) goes to {folder}", flush=True)
    else:
        folder = Path(base_cfg.runs_dir) / study_name
        folder.mkdir(parents=True, exist_ok=True)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name=study_name, storage=storage, direction=direction, load_if_exists=True)
    runs: list[dict[str, Any]] = []

    def objective(trial) -> float:
        values = {key: _suggest(trial, key, spec) for key, spec in space.items()}
        sets = [f"{k}={yaml.safe_dump(v, default_flow_style=True).strip().removesuffix('...').strip()}" for k, v in values.items()]
        cfg, _ = load_config(config_path, [*(overrides or []), *sets, f"tracking.group={study_name}",
                                           f"name={folder.name}-trial{trial.number}"])
        try:
            summary = run_training(cfg, config_dir, run_dir=folder / f"trial{trial.number}", group=study_name,
                                   progress=progress)
        except TRIAL_ERRORS as err:  # e.g. a window too short for the model, a diverging learning rate
            runs.append({"trial": trial.number, "params": values, "error": f"{type(err).__name__}: {err}"})
            trial.set_user_attr("error", str(err))
            raise
        runs.append({"trial": trial.number, "params": values, "run_dir": summary["run_dir"], stage: summary[stage]})
        trial.set_user_attr("run_dir", summary["run_dir"])
        return float(summary[stage][name])

    # one bad point of the space fails its trial (recorded), not the study other machines share
    study.optimize(objective, n_trials=trials, catch=TRIAL_ERRORS)
    if not any(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials):
        errors = "; ".join(f"trial {r['trial']}: {r['error']}" for r in runs if "error" in r)
        raise RuntimeError(f"No trial of study {study_name!r} has completed: {errors}")
    best = study.best_trial
    result = {"study": study_name, "folder": str(folder.resolve()), "storage": storage, "metric": metric,
              "direction": direction,
              "best": {"trial": best.number, "value": best.value, "params": _decoded(best.params, space),
                       "run_dir": best.user_attrs.get("run_dir")},
              "trials_this_process": runs, "n_trials_total": len(study.trials),
              "n_failed_this_process": sum("error" in r for r in runs)}
    numbers = [r["trial"] for r in runs]
    out = folder / f"sweep_summary-trials{min(numbers)}-{max(numbers)}.json"
    write_json(out, result)
    result["path"] = str(out)
    return result


def register(subparsers: argparse._SubParsersAction) -> None:
    from .quiet import add_verbose

    p = subparsers.add_parser(
        "sweep", help="hyperparameter search with Optuna (each trial a tracked run)",
        description="Search a space of config values with Optuna: each trial is a training run runs/<study>/trial<n> "
                    "in one W&B group. A trial that cannot train is marked failed and the study goes on. With a shared "
                    "--storage, several processes or machines work on one study.")
    p.add_argument("config", help="base experiment config (YAML)")
    p.add_argument("space", help="search space (YAML): dotted key -> {type, low, high | choices}")
    p.add_argument("--trials", type=int, required=True, metavar="N", help="trials to run in this process")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="dotted override of the base config")
    p.add_argument("--storage", metavar="URL",
                   help="Optuna storage shared by several processes or machines, e.g. sqlite:///sweep.db (default: "
                        "in memory, this process only)")
    p.add_argument("--study-name", metavar="NAME",
                   help="study name, also the runs folder and the W&B group (needed to join an existing study; default "
                        "sweep-<time>)")
    p.add_argument("--metric", default="val.balanced_accuracy",
                   help="summary metric to optimise, STAGE.NAME (default val.balanced_accuracy)")
    p.add_argument("--direction", choices=["maximize", "minimize"], default="maximize",
                   help="whether a higher (maximize, the default) or lower metric is better")
    add_verbose(p)
    p.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> int:
    if args.trials < 1:
        raise ValueError(f"'--trials' ({args.trials}) must be at least 1.")
    result = run_sweep(Path(args.config), Path(args.space), trials=args.trials, overrides=args.set,
                       storage=args.storage, study_name=args.study_name, metric=args.metric, direction=args.direction)
    print(json.dumps(result["best"], indent=2))
    print(f"summary: {result['path']}")
    return 0
