"""``bmi sweep``: hyperparameter search with Optuna; each trial is a tracked training run.

The search space is a YAML mapping from dotted config keys to distributions::

    optim.lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}
    model.name: {type: categorical, choices: [eegnet, shallow]}
    model.params.dropout: {type: float, low: 0.1, high: 0.5}
    data.batch_size: {type: int, low: 16, high: 64, step: 16}

``--storage URL`` lets several processes or machines work on one study: start the same command on each. The
URL is a database Optuna's RDBStorage takes (a lab's PostgreSQL server,
``postgresql+psycopg2://user:password@host:5432/db``; ``sqlite:///study.db`` for processes on one machine) or
``journal:PATH``, Optuna's journal file on a shared file system (no server). On a database, each trial beats a
heartbeat: a trial whose worker stopped beating (killed, machine lost) is marked failed by the next worker that
starts a trial, its run folder is marked failed, and its point of the space is run again once. The search
space, the metric and its direction are stored with the study: a worker with another space or metric is refused
before it trains anything.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path
from typing import Any

KINDS = ("float", "int", "categorical")
#: what fails one trial without stopping the study (bad arguments for that point, or a run that diverged)
TRIAL_ERRORS = (ValueError, TypeError, RuntimeError)
#: the study's user attributes a joining worker must match (what it searches, what it optimises)
STUDY_ATTRS = ("bmi_space", "bmi_metric")
#: seconds between a trial's heartbeats on a database storage, and without one for this long a trial is stale
HEARTBEAT_S, GRACE_FACTOR = 30, 3


def safe_url(url: str) -> str:
    """The storage URL with its password hidden (for messages)."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a database URL (a journal path): nothing secret in it
        return url


def open_storage(url: str | None, *, heartbeat: int = HEARTBEAT_S, retries: int = 1):
    """The Optuna storage for ``url`` (None: in memory), connected and checked now, before any run starts.

    A database URL gets an RDBStorage with a heartbeat every ``heartbeat`` seconds; a trial silent for
    ``GRACE_FACTOR * heartbeat`` seconds is failed by the next worker to start a trial, its run folder is marked
    failed (:func:`mark_stale_trial`) and its parameters are tried again up to ``retries`` times. ``journal:PATH``
    is Optuna's journal file (no server; a shared file system with working file locks).

    Raises
    ------
    ValueError
        The URL is not one Optuna can use (names what is allowed).
    RuntimeError
        The database cannot be reached or refuses the login (the driver's reason, the password hidden).
    """
    if url is None:
        return None
    import optuna

    if heartbeat < 1:
        raise ValueError(f"'--heartbeat' ({heartbeat}) must be at least 1 second.")
    if url.startswith("journal:"):
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        path = Path(url[len("journal:"):].removeprefix("//"))
        if not path.parent.is_dir():
            raise FileNotFoundError(f"Journal storage folder not found: {path.parent} (from --storage {url}).")
        return JournalStorage(JournalFileBackend(str(path)))
    from sqlalchemy.exc import ArgumentError, IntegrityError, ProgrammingError, SQLAlchemyError

    if "://" not in url:
        raise ValueError(f"'--storage' ({url!r}) must be a database URL (postgresql+psycopg2://USER:PASSWORD@HOST:PORT"
                         "/DB, sqlite:///FILE) or journal:PATH.")
    kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if url.startswith("postgresql"):
        kwargs["connect_args"] = {"connect_timeout": 10}
    try:
        for attempt in range(5):
            try:
                with warnings.catch_warnings():  # the heartbeat is "experimental" in Optuna since 2.8
                    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                    callback = StaleTrialCallback(retries)
                    return optuna.storages.RDBStorage(url, engine_kwargs=kwargs, heartbeat_interval=heartbeat,
                                                      grace_period=GRACE_FACTOR * heartbeat,
                                                      heartbeat_stale_trial_callback=callback)
            except (IntegrityError, ProgrammingError):
                # workers starting at once on a new database both create Optuna's tables: one wins, the other
                # finds them there on its next try
                if attempt == 4:
                    raise
                time.sleep(0.5 * (attempt + 1))
    except (ArgumentError, ModuleNotFoundError, ImportError) as err:
        raise ValueError(f"'--storage' ({safe_url(url)}) cannot be used: {type(err).__name__}: "
                         f"{str(err).strip().splitlines()[0]}. Allowed: a database URL (postgresql+psycopg2://..., "
                         "sqlite:///FILE; pip install psycopg2-binary for PostgreSQL) or journal:PATH.") from None
    except SQLAlchemyError as err:
        reason = str(getattr(err, "orig", None) or err).strip().splitlines()[0]
        raise RuntimeError(f"Cannot open the study storage {safe_url(url)}: {reason}") from None


class StaleTrialCallback:
    """Called by Optuna in a live worker for each trial whose worker stopped beating: marks the trial's run
    folder failed (its run.json said "running" forever) and lets Optuna's ``RetryHeartbeatStaleTrialCallback`` queue
    its parameters again."""

    def __init__(self, retries: int):
        from optuna.storages import RetryHeartbeatStaleTrialCallback

        self.retry = RetryHeartbeatStaleTrialCallback(max_retry=retries) if retries > 0 else None

    def __call__(self, study, trial) -> None:
        mark_stale_trial(trial)
        if self.retry is not None:
            self.retry(study, trial)


def mark_stale_trial(trial) -> None:
    """Mark a stale trial's run folder failed unless it finished (a summary.json), so no later step trusts it."""
    from .record.run import SUMMARY, read_status, write_status

    run_dir = trial.user_attrs.get("run_dir")
    if not run_dir or not Path(run_dir).is_dir() or (Path(run_dir) / SUMMARY).is_file():
        return
    if read_status(Path(run_dir)).get("status") in (None, "running"):
        write_status(Path(run_dir), status="failed", ended=time.strftime("%Y-%m-%dT%H:%M:%S"),
                     error=f"its sweep worker stopped (no Optuna heartbeat): trial {trial.number} marked failed")


def check_study(study, space: dict[str, Any], metric: str, direction: str) -> None:
    """Store the space and metric with a new study; refuse to join one that searches or optimises another."""
    import optuna

    wanted = {"bmi_space": json.loads(json.dumps(space, sort_keys=True)), "bmi_metric": metric}
    want_dir = optuna.study.StudyDirection.MAXIMIZE if direction == "maximize" else optuna.study.StudyDirection.MINIMIZE
    if study.direction != want_dir:
        raise ValueError(f"Study {study.study_name!r} {study.direction.name.lower()}s its metric; this worker asked "
                         f"to {direction} it: use the study's '--direction' or another '--study-name'.")
    for key in STUDY_ATTRS:
        if key not in study.user_attrs:
            study.set_user_attr(key, wanted[key])
    stored = study.user_attrs  # read back: when two workers create the study at once, one space wins
    if stored["bmi_metric"] != metric:
        raise ValueError(f"Study {study.study_name!r} optimises {stored['bmi_metric']!r}, not '--metric' {metric!r}: "
                         "use the study's metric or another '--study-name'.")
    if stored["bmi_space"] != wanted["bmi_space"]:
        ours, theirs = wanted["bmi_space"], stored["bmi_space"]
        diff = sorted(k for k in {*ours, *theirs} if ours.get(k) != theirs.get(k))
        raise ValueError(f"Study {study.study_name!r} was created with another search space (differing keys: "
                         f"{', '.join(diff)}): use the study's space file or another '--study-name'.")


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
              direction: str = "maximize", progress: bool = False, heartbeat: int = HEARTBEAT_S,
              retries: int = 1) -> dict[str, Any]:
    """Run ``trials`` trials of a study; each trial is a run ``runs/<study>/trial<n>``, and this process's
    summary goes to ``runs/<study>/sweep_summary-trials<first>-<last>.json`` (never replacing another's).

    Without ``storage`` the study lives in this process only, so it gets a folder of its own (``<study>-2``, ...
    when the name is taken); with a shared storage every process and machine adds its trials to one folder.
    The storage, the study's space and metric are checked before anything is written in the runs folder."""
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
    if direction not in ("maximize", "minimize"):
        raise ValueError(f"'direction' ({direction!r}) must be maximize or minimize.")
    study_name = study_name or f"sweep-{time.strftime('%Y%m%d-%H%M%S')}"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    shared = open_storage(storage, heartbeat=heartbeat, retries=retries)  # unreachable, wrong password: fail here
    study = optuna.create_study(study_name=study_name, storage=shared, direction=direction, load_if_exists=True)
    check_study(study, space, metric, direction)  # another space or metric: fail here
    if storage is None:
        folder = new_folder(Path(base_cfg.runs_dir), study_name)
        if folder.name != study_name:
            print(f"{Path(base_cfg.runs_dir) / study_name} holds an earlier sweep: this one (a new study without "
                  f"--storage) goes to {folder}", flush=True)
    else:
        folder = Path(base_cfg.runs_dir) / study_name
        folder.mkdir(parents=True, exist_ok=True)
    runs: list[dict[str, Any]] = []

    def objective(trial) -> float:
        values = {key: _suggest(trial, key, spec) for key, spec in space.items()}
        sets = [f"{k}={yaml.safe_dump(v, default_flow_style=True).strip().removesuffix('...').strip()}" for k, v in values.items()]
        cfg, _ = load_config(config_path, [*(overrides or []), *sets, f"tracking.group={study_name}",
                                           f"name={folder.name}-trial{trial.number}"])
        run_dir = folder / f"trial{trial.number}"
        trial.set_user_attr("run_dir", str(run_dir.resolve()))  # before training: a stale trial's folder is found
        try:
            summary = run_training(cfg, config_dir, run_dir=run_dir, group=study_name, progress=progress)
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
    p.add_argument("--heartbeat", type=int, default=HEARTBEAT_S, metavar="SECONDS",
                   help=f"with a database --storage: seconds between a trial's heartbeats; a trial silent for "
                        f"{GRACE_FACTOR}x this long (its worker killed) is marked failed (default {HEARTBEAT_S})")
    p.add_argument("--retries", type=int, default=1, metavar="N",
                   help="times a failed stale trial's parameters are tried again by another worker (default 1)")
    add_verbose(p)
    p.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> int:
    if args.trials < 1:
        raise ValueError(f"'--trials' ({args.trials}) must be at least 1.")
    if args.retries < 0:
        raise ValueError(f"'--retries' ({args.retries}) must be 0 or more.")
    result = run_sweep(Path(args.config), Path(args.space), trials=args.trials, overrides=args.set,
                       storage=args.storage, study_name=args.study_name, metric=args.metric, direction=args.direction,
                       heartbeat=args.heartbeat, retries=args.retries)
    print(json.dumps(result["best"], indent=2))
    print(f"summary: {result['path']}")
    print(f"Optuna's plots of the study: bmi compare --study-report {result['folder']}")
    return 0
