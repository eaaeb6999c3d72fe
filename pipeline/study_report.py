"""A sweep study's report: Optuna's own parallel-coordinate and parameter-importance plots (``bmi compare --study-report``).

A ``bmi sweep`` study folder (``runs/<study>``) holds one ``sweep_summary-trials<a>-<b>.json`` per worker, each
naming the study and its storage. The study is opened from that storage (a database, ``journal:PATH``) and drawn
with ``optuna.visualization.matplotlib`` (matplotlib is already a dependency; Optuna's plotly variants would need
plotly): ``study_parallel_coordinate.png``, ``study_param_importances.png`` and ``study_report.html``, which holds
both images inline with the trial counts, the best trial and the importances as text, so it opens offline, from
the disk or through the console, with no network.

Where the study was in memory (no ``--storage``), its one worker's summary is the whole record (one process, one
study, one folder): the study is rebuilt from it, the ranges of the parameters taken from the values tried (a
float range over two decades or more on a log axis), and the report says so. A storage that cannot be reached (a
database down, a moved file) is refused with a one-line error naming it: the workers' summaries hold only the
trials of the workers that finished, so a report drawn from them could miss trials without saying which.
"""

from __future__ import annotations

import base64
import json
import math
import time
import warnings
from html import escape
from pathlib import Path
from typing import Any

#: the report's files in the study folder (the console's runs page links REPORT where it exists)
REPORT = "study_report.html"
PARALLEL_PNG = "study_parallel_coordinate.png"
IMPORTANCE_PNG = "study_param_importances.png"
SUMMARY_GLOB = "sweep_summary-*.json"
#: Optuna's trial states, as the report counts them
STATE_WORDS = {"COMPLETE": "completed", "FAIL": "failed", "PRUNED": "pruned", "RUNNING": "running", "WAITING": "waiting"}


class StudyReportError(ValueError):
    """What is missing for a study report (no summaries, a storage out of reach, no completed trial)."""


def read_summaries(folder: Path) -> list[dict[str, Any]]:
    """The study folder's sweep summaries (one per worker), checked to name one study in one storage."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"Study folder not found: {folder}")
    paths = sorted(folder.glob(SUMMARY_GLOB))
    if not paths:
        raise StudyReportError(f"{folder} holds no {SUMMARY_GLOB}: not a bmi sweep study folder, or none of its workers "
                               f"has finished (bmi compare {folder}/trial* compares its finished trials).")
    summaries = []
    for path in paths:
        try:
            summary = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise StudyReportError(f"{path} is not JSON ({err}).") from None
        summary["_path"] = path
        summaries.append(summary)
    for key in ("study", "storage"):
        values = {s.get(key) for s in summaries}
        if len(values) > 1:
            raise StudyReportError(f"The sweep summaries in {folder} name different "
                                   f"{'studies' if key == 'study' else 'storages'} ({', '.join(sorted(map(str, values)))}).")
    if not summaries[0].get("study"):
        raise StudyReportError(f"{paths[0]} names no study.")
    return summaries


def _check_reachable(url: str) -> None:
    """Refuse a file storage whose file is gone before Optuna creates an empty one in its place."""
    from .sweep import safe_url

    if url.startswith("journal:"):
        path = Path(url[len("journal:"):].removeprefix("//"))
    elif url.startswith("sqlite:///"):
        path = Path(url[len("sqlite:///"):])
        if str(path) in ("", ":memory:"):
            raise StudyReportError(f"The study's storage {url} was an in-memory database: nothing was kept.")
    else:
        return
    if not path.is_file():
        where = "" if path.is_absolute() else f", relative to {Path.cwd()} (run this where the sweep was run)"
        raise StudyReportError(f"The study's storage {safe_url(url)} cannot be reached: no file {path}{where}.")


def open_study(folder: Path):
    """The study of a sweep folder and a line saying where it was read: ``(study, source, metric)``."""
    import optuna

    from .sweep import safe_url, open_storage

    summaries = read_summaries(folder)
    name, url = summaries[0]["study"], summaries[0].get("storage")
    metric = summaries[0].get("metric")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if url is None:
        if len(summaries) > 1:  # an in-memory study is one process's: several summaries mean a mixed folder
            raise StudyReportError(f"{folder} holds {len(summaries)} summaries of in-memory studies: each was its own "
                                   "study, so there is no one study to draw.")
        study = _rebuild(summaries[0])
        return study, (f"the study was in memory (bmi sweep without --storage): rebuilt from "
                       f"{summaries[0]['_path'].name}, which records each of its trials; parameter ranges are "
                       f"those of the values tried"), metric
    _check_reachable(url)
    try:
        storage = open_storage(url)
    except (RuntimeError, FileNotFoundError) as err:
        raise StudyReportError(f"The study's storage cannot be reached: {err}") from None
    try:
        study = optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        raise StudyReportError(f"Study {name!r} is not in its storage {safe_url(url)} (deleted, or another "
                               "database at that address).") from None
    return study, f"Optuna storage {safe_url(url)}", study.user_attrs.get("bmi_metric", metric)


def _distribution(values: list[Any]):
    """A distribution holding every value tried (the space itself is kept only in the storage)."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if len(numbers) == len(values) and all(isinstance(v, int) for v in numbers):
        return IntDistribution(min(numbers), max(numbers))
    if len(numbers) == len(values) and all(math.isfinite(v) for v in numbers):
        low, high = float(min(numbers)), float(max(numbers))
        return FloatDistribution(low, high, log=low > 0 and high / low >= 100)
    return CategoricalDistribution(sorted({_choice(v) for v in values}, key=str))


def _choice(value: Any) -> Any:
    """Optuna's choices are None, bool, int, float or str: a list (a band [8, 30]) as its JSON text, as bmi sweep
    stores it."""
    return json.dumps(value) if isinstance(value, (list, dict)) else value


def _rebuild(summary: dict[str, Any]):
    """An in-memory study from a worker's summary: its trials, values and errors."""
    import optuna
    from optuna.distributions import CategoricalDistribution

    metric = summary.get("metric") or "val.balanced_accuracy"
    stage, _, name = metric.partition(".")
    trials = sorted(summary.get("trials_this_process") or [], key=lambda r: r.get("trial", 0))
    if not trials:
        raise StudyReportError(f"{summary['_path']} records no trial.")
    keys = sorted({k for r in trials for k in r.get("params", {})})
    dists = {k: _distribution([r["params"][k] for r in trials if k in r.get("params", {})]) for k in keys}
    study = optuna.create_study(study_name=summary["study"], direction=summary.get("direction", "maximize"))
    study.set_user_attr("bmi_metric", metric)
    for r in trials:
        params = {k: _choice(v) if isinstance(dists[k], CategoricalDistribution) else v
                  for k, v in r.get("params", {}).items()}
        value = (r.get(stage) or {}).get(name)
        failed = "error" in r or not isinstance(value, (int, float)) or not math.isfinite(value)
        study.add_trial(optuna.trial.create_trial(
            params=params, distributions={k: dists[k] for k in params},
            state=optuna.trial.TrialState.FAIL if failed else optuna.trial.TrialState.COMPLETE,
            value=None if failed else float(value),
            user_attrs={k: v for k, v in (("run_dir", r.get("run_dir")), ("error", r.get("error"))) if v}))
    return study


# -- the plots and the page ----------------------------------------------------------------------------------


def _varied(trials, keys: list[str]) -> list[str]:
    return [k for k in keys if len({json.dumps(t.params.get(k), default=str) for t in trials if k in t.params}) > 1]


def _save(ax, path: Path, width: float) -> bytes:
    from datasets.atomic import atomic_path

    import matplotlib.pyplot as plt

    fig = ax.figure
    fig.set_size_inches(width, 4.8)
    fig.tight_layout()
    with atomic_path(path, ".png") as tmp:
        fig.savefig(tmp, dpi=110, format="png")
        data = tmp.read_bytes()
    plt.close(fig)
    return data


def write_study_report(folder: str | Path) -> dict[str, Any]:
    """Write the study folder's report (``study_report.html`` and the PNGs of the plots); returns what was written
    and found: ``html``, ``pngs``, ``trials`` (count by state), ``best``, ``importances`` (or None) and ``notes``
    (why a plot is missing, where the study was read).

    Raises
    ------
    StudyReportError
        No sweep summary, a storage out of reach, a study not in its storage, no completed trial.
    FileNotFoundError
        The folder does not exist.
    """
    import matplotlib

    matplotlib.use("Agg")
    import optuna
    from optuna.importance import FanovaImportanceEvaluator
    from optuna.visualization import matplotlib as plots

    from datasets.atomic import write_text

    folder = Path(folder)
    study, source, metric = open_study(folder)
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    counts = {word: n for state, word in STATE_WORDS.items() if (n := sum(t.state.name == state for t in trials))}
    if not complete:
        raise StudyReportError(f"Study {study.study_name!r} has no completed trial yet "
                               f"({', '.join(f'{n} {s}' for s, n in counts.items()) or 'no trials'}): nothing to draw.")
    target = metric or "objective value"
    keys = sorted({k for t in complete for k in t.params})
    varied = _varied(complete, keys)
    notes = [f"read from {source}"]
    pngs: dict[str, Path] = {}
    images: dict[str, bytes] = {}
    with warnings.catch_warnings():  # the matplotlib variants are "experimental" in Optuna
        warnings.simplefilter("ignore")
        ax = plots.plot_parallel_coordinate(study, target_name=target)
        images["parallel"] = _save(ax, folder / PARALLEL_PNG, max(8.0, 1.7 * (len(keys) + 1)))
        pngs["parallel_coordinate"] = folder / PARALLEL_PNG
        importances = None
        if len(complete) < 2:
            notes.append(f"parameter importance needs at least 2 completed trials; this study has {len(complete)}")
        elif not varied:
            notes.append("parameter importance needs parameters that vary: every completed trial tried the same values")
        else:
            evaluator = FanovaImportanceEvaluator(seed=0)  # the same report for the same trials
            try:
                importances = optuna.importance.get_param_importances(study, evaluator=evaluator, params=varied)
                ax = plots.plot_param_importances(study, evaluator=FanovaImportanceEvaluator(seed=0), params=varied,
                                                  target_name=target)
                images["importance"] = _save(ax, folder / IMPORTANCE_PNG, 8.0)
                pngs["param_importances"] = folder / IMPORTANCE_PNG
            except RuntimeError as err:  # fANOVA on equal values: "zero total variance"
                notes.append(f"no parameter importance: every completed trial scored the same ({err})")
                importances = None
            if importances is not None and len(complete) < 10:
                notes.append(f"importances from {len(complete)} completed trials are rough (fANOVA's forest on few points)")
    if "importance" not in images:
        (folder / IMPORTANCE_PNG).unlink(missing_ok=True)  # an older report's plot would contradict this one
    best = study.best_trial
    result = {"study": study.study_name, "folder": str(folder), "source": source, "metric": target,
              "direction": study.direction.name.lower(), "trials": counts, "params": keys, "varied": varied,
              "best": {"trial": best.number, "value": best.value, "params": best.params,
                       "run_dir": best.user_attrs.get("run_dir")},
              "importances": importances, "notes": notes, "pngs": {k: str(v) for k, v in pngs.items()}}
    result["html"] = str(write_text(folder / REPORT, _page(result, images)))
    return result


def _page(r: dict[str, Any], images: dict[str, bytes]) -> str:
    """The self-contained page: text, tables and the PNGs inline (no script, no network)."""
    def img(key: str, alt: str) -> str:
        data = base64.b64encode(images[key]).decode()
        return f'<img alt="{escape(alt)}" src="data:image/png;base64,{data}">'

    def value(v: Any) -> str:
        return f"{v:.4g}" if isinstance(v, float) else escape(str(v))

    counts = ", ".join(f"{n} {s}" for s, n in r["trials"].items())
    best = r["best"]
    run = f", run {escape(Path(best['run_dir']).name)}" if best.get("run_dir") else ""
    params = "".join(f"<tr><th>{escape(k)}</th><td>{value(v)}</td></tr>" for k, v in best["params"].items())
    parts = [
        "<!doctype html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>study {escape(r['study'])}</title>",
        "<style>body{font:15px/1.4 system-ui,sans-serif;margin:1.5rem;max-width:1200px;color:#222}"
        "table{border-collapse:collapse;margin:.5rem 0}th,td{border:1px solid #ccc;padding:.2rem .6rem;text-align:left}"
        "img{max-width:100%;border:1px solid #eee}.note{color:#666}</style></head><body>",
        f"<h1>Study {escape(r['study'])}</h1>",
        f"<p>{escape(r['direction'])} <code>{escape(r['metric'])}</code>; trials: {escape(counts)}.</p>",
        f"<h2>Best trial: {best['trial']} ({escape(r['metric'])} = {value(best['value'])}{run})</h2>",
        f"<table data-testid=best-params>{params}</table>",
        "<h2>Parallel coordinates</h2>",
        "<p class=note>Each line is a completed trial through the values it tried, coloured by its objective value.</p>",
        img("parallel", "parallel coordinates of the study's trials"),
        "<h2>Parameter importance (fANOVA)</h2>",
    ]
    if r["importances"] is not None:
        rows = "".join(f"<tr><th>{escape(k)}</th><td>{v:.3f}</td></tr>" for k, v in r["importances"].items())
        parts += [f"<table data-testid=importances><tr><th>parameter</th><th>importance</th></tr>{rows}</table>",
                  img("importance", "parameter importances")]
    parts += [f"<p class=note>{escape(n)}.</p>" for n in r["notes"]]
    parts += [f"<p class=note>Written by bmi compare --study-report on {time.strftime('%Y-%m-%d %H:%M')}; "
              "drawn with Optuna's optuna.visualization.matplotlib.</p>", "</body></html>"]
    return "\n".join(parts) + "\n"


def print_report(result: dict[str, Any]) -> None:
    best = result["best"]
    print(f"study {result['study']}: {', '.join(f'{n} {s}' for s, n in result['trials'].items())}; best trial "
          f"{best['trial']} ({result['metric']} = {best['value']:.4g})")
    if result["importances"]:
        print("importance: " + ", ".join(f"{k} {v:.2f}" for k, v in result["importances"].items()))
    for note in result["notes"]:
        print(f"note: {note}")
    print(f"report: {result['html']}")
    for path in result["pngs"].values():
        print(f"plot: {path}")
