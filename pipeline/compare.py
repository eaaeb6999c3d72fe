"""``bmi compare``: runs side by side, showing only the config keys that differ, sorted by a metric.

Reads local run directories (``summary.json`` + ``config.yaml``), so it works with no network and no
account; writes a Markdown report and a PNG chart.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

DEFAULT_METRICS = ["test.balanced_accuracy", "val.balanced_accuracy"]


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict):
        out: dict[str, Any] = {}
        for key, value in data.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: json.dumps(data) if isinstance(data, list) else data}


def find_runs(paths: list[str | Path], runs_dir: str | Path = "runs") -> list[Path]:
    """Run directories given, or every run under ``runs_dir`` (folders holding a summary.json)."""
    if paths:
        runs = []
        for p in map(Path, paths):
            if not (p / "summary.json").is_file():
                raise FileNotFoundError(f"{p} is not a finished run directory (no summary.json).")
            runs.append(p)
        return runs
    root = Path(runs_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"Runs folder not found: {root}")
    runs = sorted(p.parent for p in root.glob("**/summary.json"))
    if not runs:
        raise FileNotFoundError(f"No finished runs (summary.json) under {root}.")
    return runs


def load_run(run_dir: Path) -> dict[str, Any]:
    import yaml

    summary = json.loads((run_dir / "summary.json").read_text())
    config = yaml.safe_load((run_dir / "config.yaml").read_text()) if (run_dir / "config.yaml").is_file() else {}
    return {"dir": run_dir, "summary": summary, "config": _flatten(config or {}), "metrics": _flatten(summary)}


def compare_runs(
    run_dirs: list[Path], metrics: list[str] | None = None, out: Path | None = None, fmt: str = "md"
) -> dict[str, Any]:
    """Build the comparison table; with ``out`` also write the report and the chart. Returns the table."""
    metrics = metrics or DEFAULT_METRICS
    runs = [load_run(Path(d)) for d in run_dirs]
    available = sorted({k for r in runs for k, v in r["metrics"].items() if isinstance(v, (int, float))})
    for metric in metrics:
        if metric not in available:
            raise ValueError(f"Unknown metric {metric!r}; the runs have: {', '.join(available)}.")
    keys = sorted({k for r in runs for k in r["config"]})
    differing = [k for k in keys if len({json.dumps(r["config"].get(k), default=str) for r in runs}) > 1]
    differing = [k for k in differing if k not in ("name",)]
    first = metrics[0]
    runs.sort(key=lambda r: r["metrics"].get(first, float("-inf")), reverse=True)
    rows = [
        {"run": r["summary"].get("run_id", r["dir"].name), **{k: r["config"].get(k) for k in differing},
         **{m: r["metrics"].get(m) for m in metrics}}
        for r in runs
    ]
    table = {"columns": ["run", *differing, *metrics], "rows": rows, "metrics": metrics}
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        table["chart"] = str(_chart(rows, metrics, out / "comparison.png"))
        table["report"] = str(_report(table, out / f"comparison.{fmt}", fmt))
    return table


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else ("" if value is None else str(value))


def _chart(rows: list[dict[str, Any]], metrics: list[str], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(rows) * len(metrics)), 4))
    width = 0.8 / len(metrics)
    x = np.arange(len(rows))
    for i, metric in enumerate(metrics):
        ax.bar(x + i * width, [r[metric] or 0 for r in rows], width, label=metric)
    ax.set_xticks(x + width * (len(metrics) - 1) / 2, [r["run"] for r in rows], rotation=20, ha="right", fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_ylabel("score")
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _report(table: dict[str, Any], path: Path, fmt: str) -> Path:
    cols = table["columns"]
    if fmt == "html":
        head = "".join(f"<th>{c}</th>" for c in cols)
        body = "".join("<tr>" + "".join(f"<td>{_fmt(r.get(c))}</td>" for c in cols) + "</tr>" for r in table["rows"])
        text = (f"<html><body><h1>Run comparison</h1><table border=1><tr>{head}</tr>{body}</table>"
                f"<img src='comparison.png'></body></html>")
    else:
        lines = ["# Run comparison", "", f"Sorted by `{table['metrics'][0]}`; only config keys that differ are shown.", "",
                 "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        lines += ["| " + " | ".join(_fmt(r.get(c)) for c in cols) + " |" for r in table["rows"]]
        lines += ["", "![comparison](comparison.png)", ""]
        text = "\n".join(lines)
    path.write_text(text)
    return path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("compare", help="compare runs side by side (offline), with a report and a chart")
    p.add_argument("run_dirs", nargs="*", help="run directories (default: every run under --runs-dir)")
    p.add_argument("--runs-dir", default="runs", help="where to look for runs (default: runs)")
    p.add_argument("--metric", action="append", help=f"metric to show, repeatable (default: {', '.join(DEFAULT_METRICS)})")
    p.add_argument("--out", help="report folder (default: RUNS_DIR/compare)")
    p.add_argument("--format", choices=["md", "html"], default="md")
    p.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    runs = find_runs(args.run_dirs, args.runs_dir)
    out = Path(args.out) if args.out else Path(args.runs_dir) / "compare"
    table = compare_runs(runs, args.metric, out, args.format)
    view = Table(title=f"{len(runs)} runs, sorted by {table['metrics'][0]}")
    for col in table["columns"]:
        view.add_column(col, justify="right" if col in table["metrics"] else "left")
    for row in table["rows"]:
        view.add_row(*[_fmt(row.get(c)) for c in table["columns"]])
    Console().print(view)
    print(f"report: {table['report']}\nchart: {table['chart']}")
    return 0
