"""The runs under a runs folder, read from their files only (summary.json, config.yaml, metrics.csv, run.json).

Light on purpose (json, csv, yaml): the console runs on the rig, where there is no training stack.

A lab's runs folder holds hundreds of runs (sweep studies, cross-validations): each run's row is kept in memory
and read again only when one of its files changed (their modification times and sizes), so a reload of the
runs page costs a directory walk, not hundreds of YAML parses.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

KEY_CONFIG = {"model": ("model", "name"), "lr": ("optim", "lr"), "batch": ("data", "batch_size"),
              "band": ("data", "bandpass"), "tmin": ("data", "tmin"), "tmax": ("data", "tmax"), "seed": ("seed",),
              "epochs": ("trainer", "max_epochs")}


def _get(doc: dict, path: tuple[str, ...]):
    for key in path:
        if not isinstance(doc, dict):
            return None
        doc = doc.get(key)
    return doc


def _config(run: Path) -> dict:
    import yaml

    path = run / "config.yaml"
    try:  # libyaml's loader where PyYAML has it (ten times faster)
        return yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)) or {} \
            if path.is_file() else {}
    except yaml.YAMLError:
        return {}


def _run_dirs(root: Path) -> list[Path]:
    return sorted({p.parent for pattern in ("**/summary.json", "**/run.json") for p in root.glob(pattern)})


#: a run's row, by its folder, with the stamps of the files it was read from
_ROWS: dict[Path, tuple[tuple, dict[str, Any]]] = {}
_STAMPED = ("summary.json", "run.json", "config.yaml", "metrics.csv")


def _stamp(run: Path) -> tuple:
    out = []
    for name in _STAMPED:
        try:
            st = (run / name).stat()
            out.append((st.st_mtime_ns, st.st_size))
        except FileNotFoundError:
            out.append(None)
    return tuple(out)


def list_runs(root: Path) -> list[dict[str, Any]]:
    """One row per run folder: id, status, model, key config, val/test metrics, date, group, the folder it
    sits in (its study or CV: ``folder``), files. A run's row is read again only when its files changed."""
    rows = []
    root = Path(root)
    for run in _run_dirs(root):
        stamp = _stamp(run)
        cached = _ROWS.get(run)
        if cached is None or cached[0] != stamp or not _files_unchanged(run, cached[1]):
            cached = (stamp, _read_row(root, run))
            _ROWS[run] = cached
        rows.append(cached[1])
    return rows


#: a sweep study folder's report (``bmi compare --study-report``, pipeline/study_report.py) and the workers' summaries
#: that make a folder a study (names kept here: the console never imports the training side)
STUDY_REPORT = "study_report.html"
SWEEP_SUMMARIES = "sweep_summary-*.json"


def studies(root: Path, rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The sweep study folders among the rows' folders (a ``sweep_summary-*.json`` or a report in them): whether
    each has its study report, and the folder's path for the command that makes one. One directory listing per
    folder (a lab's hundreds of runs sit in tens of folders), read at each request: a report made while the page
    is open shows at the next reload."""
    out = {}
    for folder in sorted({r["folder"] for r in rows if r["folder"]}):
        path = Path(root) / folder
        report = path / STUDY_REPORT
        if report.is_file() or next(path.glob(SWEEP_SUMMARIES), None) is not None:
            out[folder] = {"report": report.is_file(), "path": str(path)}
    return out


def study_report(root: Path | None, folder: str) -> Path:
    """A study folder's report (never a path outside the runs folder)."""
    path = _resolve(root, folder) / STUDY_REPORT
    if not path.is_file():
        raise FileNotFoundError(f"no study report in {folder!r} (bmi compare --study-report makes one)")
    return path


def _files(run: Path) -> list[str]:
    files = [p.relative_to(run).as_posix() for p in sorted(run.glob("checkpoints/*.ckpt"))]
    return files + [p.relative_to(run).as_posix() for p in sorted(run.glob("*.onnx"))]


def _files_unchanged(run: Path, row: dict[str, Any]) -> bool:
    return _files(run) == row["files"]


def _read_row(root: Path, run: Path) -> dict[str, Any]:
    summary_path = run / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    meta = json.loads((run / "run.json").read_text()) if (run / "run.json").is_file() else {}
    config = _config(run)
    rel = run.relative_to(root).as_posix()
    files = _files(run)
    return {
        "id": rel, "run_id": summary.get("run_id") or meta.get("run_id") or run.name,
        "folder": rel.rpartition("/")[0],
        # without a summary: what run.json says (failed, interrupted; running, or killed and never marked)
        "status": "finished" if summary else meta.get("status") or "incomplete",
        "error": None if summary else meta.get("error"),
        "date": summary.get("finished") or _date_from_id(run.name),
        "group": summary.get("group") or meta.get("group"),
        "tags": summary.get("tags") or [],
        "config": {k: _get(config, path) for k, path in KEY_CONFIG.items()},
        "val": summary.get("val") or {}, "test": summary.get("test") or {},
        "classes": summary.get("classes"), "confusion": summary.get("test_confusion_matrix"),
        "warnings": summary.get("warnings") or [], "files": files,
        "has_curves": (run / "metrics.csv").is_file(),
    }


def _date_from_id(name: str) -> str | None:
    stamp = name.split("-")[:2]  # run ids start with YYYYmmdd-HHMMSS
    if len(stamp) == 2 and stamp[0].isdigit() and stamp[1].isdigit() and len(stamp[0]) == 8:
        return f"{stamp[0][:4]}-{stamp[0][4:6]}-{stamp[0][6:]} {stamp[1][:2]}:{stamp[1][2:4]}"
    return None


def _resolve(root: Path | None, run_id: str) -> Path:
    if root is None:
        raise FileNotFoundError("this console lists no runs folder (--runs)")
    run = (Path(root) / run_id).resolve()
    if not run.is_relative_to(Path(root).resolve()) or not run.is_dir():
        raise FileNotFoundError(f"no run {run_id!r} under {root}")
    return run


def curves(root: Path | None, run_id: str) -> dict[str, Any]:
    """Every numeric column of the run's metrics.csv, by epoch."""
    path = _resolve(root, run_id) / "metrics.csv"
    if not path.is_file():
        raise FileNotFoundError(f"run {run_id!r} has no metrics.csv")
    columns: dict[str, list[float | None]] = {}
    with path.open() as fh:
        for row in csv.DictReader(fh):
            for key, value in row.items():
                try:
                    number = float(value)
                    columns.setdefault(key, []).append(number if math.isfinite(number) else None)
                except (TypeError, ValueError):
                    columns.setdefault(key, []).append(None)
    return {"run": run_id, "columns": columns}


def run_file(root: Path | None, run_id: str, relative: str) -> Path:
    """A checkpoint or exported model inside a run folder (never a path outside it)."""
    run = _resolve(root, run_id)
    path = (run / relative).resolve()
    if not path.is_relative_to(run) or not path.is_file() or path.suffix not in (".ckpt", ".onnx", ".json", ".csv", ".png", ".yaml"):
        raise FileNotFoundError(f"no file {relative!r} in run {run_id!r}")
    return path
