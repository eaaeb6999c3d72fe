"""``bmi compare``: runs side by side, showing only the config keys that differ, sorted by a metric.

Reads local run directories (``summary.json`` + ``config.yaml`` + ``metrics.csv``), so it works with no network
and no account. The terminal table fits the terminal (short run names, metric columns first, differing config
keys shortened to their shortest unambiguous ending with a legend, cells wrapped by rich); CV folds and sweep
trials are listed under their folder. A Markdown (or HTML) report with the full key names and a chart (the
metrics as bars, the learning curves of the selected runs overlaid) are written beside. Failed and unfinished
runs are listed, not compared. ``--study-report FOLDER`` draws a sweep's study instead, with Optuna's own
parallel-coordinate and parameter-importance plots (:mod:`pipeline.study_report`).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import re
from pathlib import Path
from typing import Any

from .record.run import CONFIG, METRICS_CSV, SUMMARY, read_status, relative_to_root

DEFAULT_METRICS = ["test.balanced_accuracy", "val.balanced_accuracy"]
DEFAULT_CURVE = "val/balanced_accuracy"
#: short names of the metrics in the terminal's column headers (the report keeps the full names)
METRIC_SHORT = {"balanced_accuracy": "bal_acc", "accuracy": "acc", "kappa": "kappa", "f1_macro": "f1", "loss": "loss"}
#: config keys that differ between runs without saying anything about them (ids, folders, W&B bookkeeping)
IGNORED_KEYS = ("name", "runs_dir", "data.cache_dir", "data.split.fold", "tracking.")
#: which differing keys come first (and so stay on a narrow terminal): the decoder, its training, then the data
KEY_ORDER = ("model.", "optim.", "data.", "trainer.", "augment.", "seed", "data_seed", "finetune.")
_GENERATED_ID = re.compile(r"^\d{8}-\d{6}-(.+)$")
#: the chart draws the best this many runs (bars and learning curves): a study of hundreds would be unreadable
CHART_RUNS = 20


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict):
        out: dict[str, Any] = {}
        for key, value in data.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: json.dumps(data) if isinstance(data, list) else data}


# -- finding runs -------------------------------------------------------------------------------------------


def find_runs(paths: list[str | Path], runs_dir: str | Path = "runs") -> list[Path]:
    """Finished run directories: the ones given, or every one under ``runs_dir`` (folders holding a summary.json)."""
    if paths:
        runs = []
        for p in map(Path, paths):
            if not (p / SUMMARY).is_file():
                status = read_status(p)
                why = f" ({status['status']}: {status.get('error')})" if status.get("status") in ("failed", "interrupted") else ""
                raise FileNotFoundError(f"{p} is not a finished run directory (no summary.json){why}.")
            runs.append(p)
        return runs
    root = Path(runs_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"Runs folder not found: {root}")
    runs = sorted(p.parent for p in root.glob(f"**/{SUMMARY}"))
    if not runs:
        raise FileNotFoundError(f"No finished runs (summary.json) under {root}.")
    return runs


def unfinished_runs(runs_dir: str | Path) -> list[dict[str, str]]:
    """Runs under ``runs_dir`` that did not finish: failed, interrupted, or running (or killed) without a summary."""
    root = Path(runs_dir)
    out = []
    for run_json in sorted(root.glob("**/run.json")):
        run = run_json.parent
        if (run / SUMMARY).is_file():
            continue
        status = read_status(run)
        out.append({"run": relative_to_root(run, root), "status": status.get("status", "unknown"),
                    "error": status.get("error") or ""})
    return out


def load_run(run_dir: Path, root: Path | None = None) -> dict[str, Any]:
    import yaml

    summary = json.loads((run_dir / SUMMARY).read_text())
    # libyaml's loader where PyYAML has it: ten times faster, which a study of hundreds of runs feels
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    config = yaml.load((run_dir / CONFIG).read_text(), Loader=loader) if (run_dir / CONFIG).is_file() else {}
    name = relative_to_root(run_dir, root) if root is not None else run_dir.name
    return {"dir": run_dir, "name": name, "summary": summary, "config": _flatten(config or {}),
            "metrics": _flatten(summary)}


# -- the table ----------------------------------------------------------------------------------------------


def short_keys(keys: list[str]) -> dict[str, str]:
    """Each dotted key's shortest ending that no other key in ``keys`` shares: ``optim.lr`` -> ``lr``,
    ``model.params.dropout`` and ``data.dropout`` -> ``params.dropout`` and ``data.dropout``."""
    out = {}
    for key in keys:
        parts = key.split(".")
        for n in range(1, len(parts) + 1):
            ending = ".".join(parts[-n:])
            if not any(other != key and (other == ending or other.endswith("." + ending)) for other in keys):
                break
        out[key] = ending
    return out


def short_run_names(names: list[str]) -> dict[str, str]:
    """``20261125-101500-eegnet-3f2a`` -> ``eegnet-3f2a`` (the date is in the id's folder and the run.json); a
    name stays whole where the short one would be ambiguous."""
    def short(name: str) -> str:
        folder, _, leaf = name.rpartition("/")
        match = _GENERATED_ID.match(leaf)
        return (folder + "/" if folder else "") + (match.group(1) if match else leaf)

    shorts = {n: short(n) for n in names}
    counts: dict[str, int] = {}
    for s in shorts.values():
        counts[s] = counts.get(s, 0) + 1
    return {n: s if counts[s] == 1 else n for n, s in shorts.items()}


def compare_runs(
    run_dirs: list[Path], metrics: list[str] | None = None, out: Path | None = None, fmt: str = "md",
    root: Path | None = None, curve: str | None = DEFAULT_CURVE,
) -> dict[str, Any]:
    """Build the comparison table; with ``out`` also write the report and the chart. Returns the table:
    ``columns`` (run, the metrics, then the differing config keys), ``rows`` (sorted by the first metric within
    each folder), ``folders`` (folder -> its rows' names, "" for runs at the top)."""
    metrics = metrics or DEFAULT_METRICS
    root = Path(root) if root is not None else _common_root(run_dirs)
    runs = [load_run(Path(d), root) for d in run_dirs]
    available = sorted({k for r in runs for k, v in r["metrics"].items() if isinstance(v, (int, float))})
    for metric in metrics:
        if metric not in available:
            raise ValueError(f"Unknown metric {metric!r}; the runs have: {', '.join(available)}.")
    keys = sorted({k for r in runs for k in r["config"]})
    differing = [k for k in keys if len({json.dumps(r["config"].get(k), default=str) for r in runs}) > 1
                 and not any(k == i or (i.endswith(".") and k.startswith(i)) for i in IGNORED_KEYS)]
    differing.sort(key=lambda k: (next((i for i, p in enumerate(KEY_ORDER) if k.startswith(p)), len(KEY_ORDER)), k))
    first = metrics[0]

    def score(r):
        value = r["metrics"].get(first)
        return value if isinstance(value, (int, float)) and not math.isnan(value) else float("-inf")

    folders: dict[str, list[dict[str, Any]]] = {}
    for r in sorted(runs, key=score, reverse=True):
        folders.setdefault(r["name"].rpartition("/")[0], []).append(r)
    ordered = [r for folder in sorted(folders, key=lambda f: (f != "", f)) for r in folders[folder]]
    rows = [{"run": r["name"], **{m: r["metrics"].get(m) for m in metrics}, **{k: r["config"].get(k) for k in differing}}
            for r in ordered]
    table = {"columns": ["run", *metrics, *differing], "rows": rows, "metrics": metrics, "config_keys": differing,
             "folders": {f: [r["name"] for r in rs] for f, rs in folders.items()},
             "cv": {f: _cv_summary(root / f) for f in folders if f and (root / f / "cv_summary.json").is_file()},
             "dirs": {r["name"]: str(r["dir"]) for r in ordered}}
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        table["chart"] = str(_chart(table, ordered, out / "comparison.png", curve))
        table["report"] = str(_report(table, out / f"comparison.{fmt}", fmt))
    return table


def _common_root(run_dirs: list[Path]) -> Path:
    parents = [Path(d).resolve().parent for d in run_dirs]
    root = parents[0]
    while not all(p.is_relative_to(root) for p in parents):
        root = root.parent
    return root


def _cv_summary(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "cv_summary.json").read_text())


def format_value(value: Any, metric: bool = False) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return f"{value:.3f}" if metric else f"{value:.4g}"
    text = str(value)
    return text.replace(", ", ",") if text.startswith("[") else text


def render(table: dict[str, Any], width: int = 100, unfinished: list[dict[str, str]] | None = None,
           top: int | None = None):
    """The rich renderables for a terminal ``width`` columns wide: the table (a folder's row holds its runs' mean),
    then the key legend, the differing keys that did not fit, and the runs that were not compared. With ``top``,
    each folder shows its best ``top`` runs and a line counting the others (a study of hundreds of runs)."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    metrics, keys, rows = table["metrics"], table["config_keys"], table["rows"]
    names = short_run_names([r["run"] for r in rows])
    labels = {r["run"]: ("  " + names[r["run"]].rpartition("/")[2]) if "/" in r["run"] else names[r["run"]] for r in rows}
    folder_labels = {f: f"{f}/" for f in table["folders"] if f}
    run_width = min(28, max(len(v) for v in [*labels.values(), *folder_labels.values(), "run"]))
    short = short_keys(keys)
    cells = {k: [format_value(r[k]) for r in rows] for k in keys}
    # every column costs its width plus one space of padding on each side
    used = run_width + 2 + sum(max(7, len(METRIC_SHORT.get(m.partition(".")[2], m))) + 2 for m in metrics)
    shown = []
    for k in keys:  # the differing keys, in order, while they fit (each at most 14 characters wide)
        need = min(14, max(len(short[k]), *map(len, cells[k]))) + 2
        if used + need > width:
            break
        shown.append(k)
        used += need
    hidden = keys[len(shown):]
    view = Table(title=f"{len(rows)} runs, sorted by {metrics[0]}", title_justify="left", box=box.SIMPLE_HEAD,
                 pad_edge=False, padding=(0, 1), show_edge=False)
    view.add_column("run", no_wrap=True, max_width=28, overflow="fold")
    for m in metrics:
        stage, _, name = m.partition(".")
        view.add_column(f"{stage}\n{METRIC_SHORT.get(name, name)}", justify="right", min_width=5)
    for k in shown:
        view.add_column(short[k], overflow="fold", min_width=min(14, len(short[k])), max_width=14)
    by_name = {r["run"]: r for r in rows}
    for folder, members in sorted(table["folders"].items(), key=lambda kv: (kv[0] != "", kv[0])):
        if folder:
            cv = table["cv"].get(folder) or {}
            means = [cv.get(m.partition(".")[0], {}).get(m.partition(".")[2], {}).get("mean") for m in metrics]
            view.add_section()
            view.add_row(Text(folder_labels[folder], style="bold"),
                         *[Text(format_value(v, metric=True), style="italic") if v is not None else "" for v in means],
                         *[""] * len(shown))
        for name in members[:top] if top else members:
            row = by_name[name]
            view.add_row(labels[name], *[format_value(row[m], metric=True) for m in metrics],
                         *[format_value(row[k]) for k in shown])
        if top and len(members) > top:
            view.add_row(Text(f"  … {len(members) - top} more", style="italic"), *[""] * (len(metrics) + len(shown)))
    out = [view]
    if table["cv"]:
        out.append(Text("a CV folder's row: the mean over its folds (cv_summary.json)", style="italic"))
    legend = [f"{short[k]} = {k}" for k in shown if short[k] != k]
    if legend:
        out.append(Text("keys: " + ", ".join(legend), overflow="fold"))
    if hidden:
        out.append(Text(f"{len(hidden)} more differing keys (in the report): " + ", ".join(hidden), overflow="fold"))
    if table.get("chart_runs") is not None and len(table["chart_runs"]) < len(rows):
        out.append(Text(f"the chart shows the best {len(table['chart_runs'])} of {len(rows)} runs", style="italic"))
    if unfinished:
        parts = [f"{u['run']} ({u['status']}{': ' + u['error'] if u['error'] else ''})" for u in unfinished]
        out.append(Text(f"not compared, {len(unfinished)} unfinished: " + "; ".join(parts), overflow="fold"))
    return out


# -- the report and the chart --------------------------------------------------------------------------------


def _curve(run_dir: Path, key: str) -> tuple[list[int], list[float]]:
    path = Path(run_dir) / METRICS_CSV
    if not path.is_file():
        return [], []
    rows = [r for r in csv.DictReader(path.open()) if r.get(key) not in (None, "")]
    return [int(r["epoch"]) for r in rows], [float(r[key]) for r in rows]


def _chart(table: dict[str, Any], runs: list[dict[str, Any]], path: Path, curve: str | None) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from datasets.atomic import atomic_path

    metrics = table["metrics"]
    rows = table["rows"]
    if len(rows) > CHART_RUNS:  # the best runs by the first metric, whatever their folder
        rows = sorted(rows, key=lambda r: r[metrics[0]] if isinstance(r[metrics[0]], (int, float))
                      and not math.isnan(r[metrics[0]]) else float("-inf"), reverse=True)[:CHART_RUNS]
    table["chart_runs"] = [r["run"] for r in rows]
    chosen = set(table["chart_runs"])
    names = short_run_names([r["run"] for r in rows])
    curves = {r["name"]: _curve(r["dir"], curve) for r in runs if r["name"] in chosen} if curve else {}
    with_curves = any(x for x, _ in curves.values())
    table["curves"] = {name: len(x) for name, (x, _) in curves.items() if x}
    bars_width = min(16, max(7, 0.9 * len(rows) * len(metrics)))
    fig, axes = plt.subplots(1, 2 if with_curves else 1, figsize=(bars_width + (8 if with_curves else 0), 4.2), squeeze=False)
    ax = axes[0][0]
    width = 0.8 / len(metrics)
    x = np.arange(len(rows))
    for i, metric in enumerate(metrics):
        ax.bar(x + i * width, [r[metric] or 0 for r in rows], width, label=metric)
    ax.set_xticks(x + width * (len(metrics) - 1) / 2, [names[r["run"]] for r in rows], rotation=25, ha="right", fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_ylabel("score")
    if len(rows) < len(table["rows"]):
        ax.set_title(f"the best {len(rows)} of {len(table['rows'])} runs by {metrics[0]}", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    if with_curves:
        ax = axes[0][1]
        for r in rows:
            epochs, values = curves[r["run"]]
            if epochs:
                ax.plot(epochs, values, marker="o", ms=2, lw=1.2, label=names[r["run"]])
        ax.set_xlabel("epoch")
        ax.set_ylabel(curve)
        ax.set_title(f"learning curves: {curve}", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, ncol=1 + len(rows) // 12)
    fig.tight_layout()
    with atomic_path(path, ".png") as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return path


def _report(table: dict[str, Any], path: Path, fmt: str) -> Path:
    from datasets.atomic import write_text

    cols = table["columns"]

    def cell(row, col):
        return row.get(col) if col == "run" else format_value(row.get(col), metric=col in table["metrics"])

    if fmt == "html":
        from html import escape

        head = "".join(f"<th>{escape(c)}</th>" for c in cols)
        body = "".join("<tr>" + "".join(f"<td>{escape(str(cell(r, c)))}</td>" for c in cols) + "</tr>" for r in table["rows"])
        text = (f"<html><body><h1>Run comparison</h1><p>Sorted by {escape(table['metrics'][0])} within each folder; "
                f"only config keys that differ are shown.</p><table border=1><tr>{head}</tr>{body}</table>"
                f"<img src='comparison.png'></body></html>")
    else:
        lines = ["# Run comparison", "", f"Sorted by `{table['metrics'][0]}` within each folder; only config keys that "
                 "differ are shown.", "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        lines += ["| " + " | ".join(str(cell(r, c)) for c in cols) + " |" for r in table["rows"]]
        lines += ["", "![comparison](comparison.png)", ""]
        text = "\n".join(lines)
    return write_text(path, text)


# -- the command ---------------------------------------------------------------------------------------------


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "compare", help="compare runs side by side (offline), with a report and a chart",
        description="A table of finished runs: the metrics, then only the config keys that differ between them, "
                    "sorted by the first metric; CV folds and sweep trials under their folder. Also writes "
                    "comparison.md (or .html) and comparison.png (metrics as bars, learning curves overlaid). With "
                    "--study-report, a sweep's study drawn by Optuna instead.")
    p.add_argument("run_dirs", nargs="*", help="run directories (default: every finished run under --runs-dir)")
    p.add_argument("--runs-dir", default="runs", help="where to look for runs (default: runs)")
    p.add_argument("--metric", action="append", metavar="STAGE.NAME",
                   help=f"metric to show, repeatable; the first sorts (default: {', '.join(DEFAULT_METRICS)})")
    p.add_argument("--curve", default=DEFAULT_CURVE, metavar="COLUMN",
                   help=f"metrics.csv column whose learning curves are overlaid in the chart, e.g. val/loss "
                        f"(default {DEFAULT_CURVE}; 'none' for no curves)")
    p.add_argument("--out", help="report folder (default: RUNS_DIR/compare)")
    p.add_argument("--format", choices=["md", "html"], default="md", help="report format (default md)")
    p.add_argument("--top", type=int, metavar="N",
                   help="in the terminal, each folder's best N runs only (the report lists them all)")
    p.add_argument("--study-report", metavar="FOLDER",
                   help="instead of the table: a bmi sweep study folder (runs/STUDY) whose study is opened from the "
                        "storage its sweep_summary files name, and drawn with Optuna's parallel-coordinate and "
                        "parameter-importance plots into FOLDER/study_report.html (offline, images inline) and PNGs; "
                        "a study that was in memory is rebuilt from its summary")
    p.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> int:
    from rich.console import Console

    if args.study_report:
        given = [name for name, value in (("run directories", args.run_dirs), ("--metric", args.metric),
                                          ("--out", args.out), ("--top", args.top)) if value]
        if given:
            raise ValueError(f"'--study-report' writes into the study folder and plots the study's own metric: "
                             f"drop {', '.join(given)}.")
        from .study_report import print_report, write_study_report

        print_report(write_study_report(args.study_report))
        return 0
    if args.top is not None and args.top < 1:
        raise ValueError(f"'--top' ({args.top}) must be at least 1.")
    runs = find_runs(args.run_dirs, args.runs_dir)
    out = Path(args.out) if args.out else Path(args.runs_dir) / "compare"
    root = Path(args.runs_dir) if not args.run_dirs else None
    table = compare_runs(runs, args.metric, out, args.format, root=root,
                         curve=None if args.curve in ("", "none") else args.curve)
    console = Console()
    unfinished = unfinished_runs(args.runs_dir) if not args.run_dirs else None
    for item in render(table, width=console.width, unfinished=unfinished, top=args.top):
        console.print(item)
    print(f"report: {table['report']}\nchart: {table['chart']}")
    return 0
